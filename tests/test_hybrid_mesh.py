"""Meshes across slices: in-slice (ICI) x across-slice (DCN) sizes, the device order JAX's mesh
utilities give on fake TPU slices and on processes as slices, one-line errors naming the axis,
and -- in a compiled train step -- only reductions (gradients, loss sums) cross the slices."""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import numpy as np
import pytest
from hlo_testing import bytes_per_execution, collectives
from jax.sharding import Mesh
from train_testing import BATCH, synthetic, tiny_config

from optiml import optimizer, partitioning, train_step
from optiml.models.opt import OPTDecoder
from optiml.partitioning import MeshConfig
from optiml.tools import memory


@dataclasses.dataclass(frozen=True)
class FakeTpu:
    """What mesh_utils reads from a TPU device (v4: one device per chip)."""

    id: int
    coords: tuple[int, int, int]
    slice_index: int
    process_index: int
    core_on_chip: int = 0
    platform: str = "tpu"
    device_kind: str = "TPU v4"


@dataclasses.dataclass(frozen=True)
class FakeCpu:
    """A CPU device of a multi-process job (slice_index is 0 on all of them): processes are the
    slices."""

    id: int
    process_index: int
    slice_index: int = 0
    platform: str = "cpu"
    device_kind: str = "cpu"


def tpu_slices(num_slices: int, dims: tuple[int, int, int]) -> list[FakeTpu]:
    """`num_slices` slices of an x*y*z torus each, in jax.devices() order (x fastest), 4 chips
    per host; e.g. (2, 2, 2) is a v4-16."""
    per_slice = int(np.prod(dims))
    out = []
    for s in range(num_slices):
        for i, (z, y, x) in enumerate(itertools.product(*(range(d) for d in reversed(dims)))):
            index = s * per_slice + i
            out.append(FakeTpu(index, (x, y, z), slice_index=s, process_index=index // 4))
    return out


def test_two_v4_16_slices_follow_the_torus_and_stack_along_dcn():
    grid = partitioning.device_grid(MeshConfig(fsdp=2, model=4), tpu_slices(2, (2, 2, 2)))
    assert grid.shape == (2, 2, 4)  # dcn_data=-1 took both slices
    for d, f, m in np.ndindex(grid.shape):
        device = grid[d, f, m]
        assert device.slice_index == d  # the data axis is the slices
        # model (the most traffic) gets the 2x2 x-y plane, fsdp the z axis
        assert device.coords == (m // 2, m % 2, f)


def test_four_v4_128_slices():
    devices = tpu_slices(4, (4, 4, 4))[::-1]  # any input order: slices are sorted by index
    grid = partitioning.device_grid(MeshConfig(data=1, fsdp=16, model=4), devices)
    assert grid.shape == (4, 16, 4)
    for d, f, m in np.ndindex(grid.shape):
        assert grid[d, f, m].slice_index == d
        assert grid[d, f, m].coords == (m, f // 4, f % 4)  # model: a ring along x


def test_fsdp_across_slices():
    grid = partitioning.device_grid(
        MeshConfig(data=1, fsdp=8, model=1, dcn_data=1, dcn_fsdp=2), tpu_slices(2, (2, 2, 2))
    )
    assert grid.shape == (1, 16, 1)
    assert [device.slice_index for device in grid.ravel()] == [0] * 8 + [1] * 8


def test_processes_are_the_slices_off_tpus():
    devices = [FakeCpu(i, process_index=i // 4) for i in range(8)]
    ids = np.vectorize(lambda device: device.id)
    hybrid = partitioning.device_grid(MeshConfig(data=2, model=2, dcn_data=2), devices)
    assert ids(hybrid).tolist() == [[[0, 1]], [[2, 3]], [[4, 5]], [[6, 7]]]
    across_fsdp = partitioning.device_grid(
        MeshConfig(data=1, fsdp=2, model=2, dcn_data=1, dcn_fsdp=2), devices
    )
    assert ids(across_fsdp).tolist() == [[[0, 1], [2, 3], [4, 5], [6, 7]]]
    # No DCN axis above 1: the whole job is one slice, in jax.devices() order (as before).
    one = partitioning.device_grid(MeshConfig(data=2, fsdp=2, model=2), devices)
    assert ids(one).tolist() == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    with pytest.raises(ValueError, match="mesh: data=4 x fsdp=1 x model=2 = 8 devices per slice"):
        partitioning.device_grid(MeshConfig(data=4, model=2, dcn_data=2), devices)


def test_hybrid_shapes_fill_the_minus_ones():
    assert partitioning.hybrid_shape(MeshConfig(fsdp=-1, data=1, model=2), 16, 2) == (
        (1, 4, 2),
        (2, 1, 1),
    )
    config = MeshConfig(data=1, fsdp=16, model=8, dcn_data=2, dcn_fsdp=-1)
    assert partitioning.hybrid_shape(config, 512, 4) == ((1, 16, 8), (2, 2, 1))
    assert partitioning.mesh_shape(config, 512, 4) == (2, 32, 8)


@pytest.mark.parametrize(
    "config, devices, slices, message",
    [
        (MeshConfig(dcn_fsdp=3), 16, 2, "mesh: dcn_fsdp=3 does not divide the 2 slice(s)"),
        (
            MeshConfig(dcn_data=2),
            32,
            4,
            "mesh: dcn_data=2 x dcn_fsdp=1 x dcn_model=1 = 2 slice(s), there are 4",
        ),
        (MeshConfig(dcn_data=-1, dcn_model=-1), 16, 2, "mesh: dcn_data and dcn_model are both"),
        (MeshConfig(dcn_model=0), 16, 2, "mesh: dcn_model=0: sizes must be positive"),
        (MeshConfig(model=3), 16, 2, "mesh: model=3 does not divide the 8 devices per slice"),
        (
            MeshConfig(fsdp=4, model=4),
            16,
            2,
            "mesh: fsdp=4 x model=4 = 16 does not divide the 8 devices per slice",
        ),
        (MeshConfig(), 12, 8, "mesh: 12 devices do not split into 8 slices"),
    ],
)
def test_bad_meshes_name_the_axis_in_one_line(config, devices, slices, message):
    with pytest.raises(ValueError) as error:
        partitioning.hybrid_shape(config, devices, slices)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_uneven_slices_are_refused():
    devices = tpu_slices(2, (2, 2, 2))[:12]
    with pytest.raises(ValueError, match=r"slices \(slice_index\) differ in size: \{0: 8, 1: 4\}"):
        partitioning.device_grid(MeshConfig(), devices)


def _cross_slice_collectives(rules: str, config: MeshConfig, microbatches: int):
    """Compiles the tiny model's train step on a 2-slice mesh of the 8 CPU devices (processes as
    slices, as on a 2-host CPU job) -> ({op: [lines]} of collectives with a group spanning both
    slices, the compiled HLO text)."""
    fakes = [FakeCpu(i, process_index=i // 4) for i in range(8)]
    real = {device.id: device for device in jax.devices()}
    grid = np.vectorize(lambda fake: real[fake.id], otypes=[object])(
        partitioning.device_grid(config, fakes)
    )
    auto = (jax.sharding.AxisType.Auto,) * 3
    partitioner = partitioning.Partitioner(
        Mesh(grid, partitioning.MESH_AXES, axis_types=auto), partitioning.RULES[rules]
    )
    model = OPTDecoder(tiny_config())
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(), 100)
    init = functools.partial(train_step.init_train_state, model, tx)
    state, shardings = partitioner.abstract_init(init, jax.random.key(0))
    batch = partitioner.global_batch(next(synthetic()(batch_size=BATCH)), BATCH)
    step = jax.jit(
        train_step.make_train_step(model, num_microbatches=microbatches),
        in_shardings=(shardings, partitioner.data_sharding, partitioner.replicated),
        out_shardings=(shardings, partitioner.replicated),
    )
    with partitioner.activate():
        hlo = step.lower(state, batch, jax.random.key(1)).compile().as_text()
    slice_of = {position: device.id // 4 for position, device in enumerate(grid.flat)}
    crossing: dict[str, list[str]] = {}
    for op, groups, line in collectives(hlo, 8):
        if any(len({slice_of[d] for d in group}) > 1 for group in groups):
            crossing.setdefault(op, []).append(line)
    return crossing, hlo


@pytest.mark.slow  # compiles two sharded train steps (~10-20 s on 2 shared cores)
@pytest.mark.parametrize(
    "rules, config, microbatches",
    [
        ("standard", MeshConfig(data=2, model=2, dcn_data=2), 1),
        ("fsdp", MeshConfig(data=1, fsdp=2, model=2, dcn_data=2), 2),
    ],
)
def test_only_reductions_cross_the_slices(rules, config, microbatches):
    """Activations (tensor-parallel `model` collectives, FSDP gathers, the embedding lookup)
    stay inside a slice; the gradient and loss reductions over `data` are all that crosses."""
    crossing, hlo = _cross_slice_collectives(rules, config, microbatches)
    assert set(crossing) == {"all-reduce"}, {op: lines[:2] for op, lines in crossing.items()}
    if rules == "standard":
        # What crosses is each device's whole gradient shard (memory's parameter bytes), plus
        # the tied embedding's second gradient part (XLA reduces lookup and output separately)
        # and a few loss scalars: the volume optiml.tools.dcn counts.
        mesh = dict(zip(partitioning.MESH_AXES, partitioning.mesh_shape(config, 8, 2), strict=True))
        gradient = memory.estimate(tiny_config(), mesh, rules, batch=BATCH, length=32).params
        embedding = memory.local_size(memory.param_tensors(tiny_config())[0], mesh, rules) * 4
        # (the train step's lax.cond between the output layer at every position and at the
        # loss-weighted ones holds one gradient reduction per branch; one branch runs)
        sent = bytes_per_execution(hlo, crossing["all-reduce"])
        assert gradient <= sent <= gradient + embedding + 64
