"""T5X-style partitioning: a (data, fsdp, model) device mesh, logical axis rules, sharded init.

The model names every parameter and activation dimension with a *logical* axis (`batch`, `length`,
`embed`, `vocab`, `heads`, `kv`, `mlp`, `layers`); the rules below map those names onto the three
*mesh* axes:

    mesh axis   what is split over it
    data        the batch (pure data parallelism: parameters replicated)
    fsdp        the batch too, and -- with the FSDP rules -- every parameter's `embed` dimension
    model       vocab / heads / mlp (Megatron-style tensor parallelism)

Example: 8 devices, `MeshConfig(data=-1, fsdp=2, model=2)` -> mesh {data: 2, fsdp: 2, model: 2};
an input batch [256, 2048] is split 4 ways on its rows (data x fsdp), an MLP kernel
[embed=1024, mlp=4096] is split 2 ways on `mlp` (and 2 more ways on `embed` with the FSDP rules).

Across TPU pod slices every mesh axis is the product of an in-slice part (ICI, the fast torus)
and an across-slice part (DCN, the data-centre network): `MeshConfig(data=1, fsdp=16, model=8,
dcn_data=4)` on 4 slices of 128 chips -> mesh {data: 4, fsdp: 16, model: 8}, where the 4 rows
of `data` are the 4 slices. JAX's mesh utilities lay each slice out along its physical torus
(`mesh_utils.create_device_mesh`) and stack the slices along the DCN axes
(`create_hybrid_device_mesh`). With the default `dcn_data=-1` the slices go on `data`, so with
either rule set only the batch's gradient (and loss) reduction crosses DCN: tensor-parallel
activation collectives (`model`) and FSDP gathers (`fsdp`) stay inside a slice unless
`dcn_model` / `dcn_fsdp` say otherwise. Off TPUs (CPU, GPU) the whole job is one slice, or,
once a DCN axis is set above 1, each process is one (`process_is_granule`).

The same code runs on 1 CPU, 8 fake CPU devices, a GPU host, a TPU pod slice or several slices;
on several hosts call `initialize_distributed` first and feed each host's rows through
`Partitioner.global_batch`. TF-free: importing this module never imports TensorFlow or seqio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")
LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# T5X's standard rules (t5x/partitioning.py `standard_logical_axis_rules`) on our three axes.
# Earlier rules win when two logical axes of one array want the same mesh axis.
STANDARD_RULES: LogicalRules = (
    ("batch", BATCH_AXES),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("layers", None),
)


# FSDP / ZeRO-3: parameters (and so the optimizer state) are also split over `fsdp` on `embed`.
# Activations keep `embed` whole: their `batch` dimension already took `fsdp`, so the fallback
# ("embed", None) applies to them.
def _with_fsdp(rules: LogicalRules) -> LogicalRules:
    """`rules` with ("embed", "fsdp") inserted before ("embed", None)."""
    at = list(rules).index(("embed", None))
    return (*rules[:at], ("embed", "fsdp"), *rules[at:])


FSDP_RULES: LogicalRules = _with_fsdp(STANDARD_RULES)
RULES = {"standard": STANDARD_RULES, "fsdp": FSDP_RULES}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes inside one slice (`data`, `fsdp`, `model`: one may be -1, it takes the
    slice's remaining devices) and across slices (`dcn_*`: one may be -1, it takes the remaining
    slices), and the rule set's name. Mesh axis `data` has data x dcn_data devices, and so on."""

    data: int = -1
    fsdp: int = 1
    model: int = 1
    dcn_data: int = -1
    dcn_fsdp: int = 1
    dcn_model: int = 1
    rules: str = "standard"  # "standard" or "fsdp"
    constrain_activations: bool = True  # see Partitioner.constrain_activations
    # Let one physical torus axis carry two mesh axes when the sizes need it (JAX's mesh_utils
    # refuses such layouts otherwise); layouts that need no split are unaffected.
    allow_split_physical_axes: bool = True

    def sizes(self, prefix: str = "") -> tuple[int, int, int]:
        """(data, fsdp, model) in-slice sizes, or with prefix "dcn_" the across-slice ones."""
        return tuple(getattr(self, prefix + axis) for axis in MESH_AXES)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How to join a multi-process job; unset fields come from $OPTIML_COORDINATOR_ADDRESS,
    $OPTIML_NUM_PROCESSES, $OPTIML_PROCESS_ID. `auto=True` with nothing set lets JAX detect the
    cluster (TPU pod slices, SLURM, Open MPI) and runs as one process where it finds none."""

    coordinator_address: str | None = None  # e.g. "10.0.0.1:1234" or "127.0.0.1:5555"
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: Sequence[int] | None = None
    auto: bool = False


_ALONE: list[bool] = []  # set once `auto` found no cluster: this process runs on its own


def initialize_distributed(config: DistributedConfig | None = None) -> bool:
    """Joins a `jax.distributed` job if configured (arguments or environment); returns whether the
    process is now part of a multi-process job. Call before anything touches a JAX device; a
    second call gives the first one's answer (optiml.validation counts the devices first)."""
    config = config or DistributedConfig()
    if jax.distributed.is_initialized():
        return True
    env = os.environ
    address = config.coordinator_address or env.get("OPTIML_COORDINATOR_ADDRESS")
    num = config.num_processes or _env_int("OPTIML_NUM_PROCESSES")
    pid = config.process_id if config.process_id is not None else _env_int("OPTIML_PROCESS_ID")
    if address is None and num is None and pid is None:
        if not config.auto or _ALONE:
            return False
        try:
            jax.distributed.initialize()  # TPU pod slices, SLURM, Open MPI, ... find themselves
        except ValueError as e:  # raised before any connection when no cluster is detected
            if "coordinator_address" not in str(e):
                raise
            _ALONE.append(True)
            return False  # a single process on its own
        except RuntimeError as e:
            raise RuntimeError(
                "DistributedConfig(auto=True) must run before JAX touches a device (it did "
                "already in this process); pass auto=False for a single-process run"
            ) from e
        return True
    if address is None or num is None or pid is None:
        raise ValueError(
            "jax.distributed needs coordinator_address, num_processes and process_id together "
            f"(got {address!r}, {num!r}, {pid!r}; from DistributedConfig or $OPTIML_*)"
        )
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=num,
        process_id=pid,
        local_device_ids=config.local_device_ids,
    )
    return True


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer") from None


def _fill(sizes: Sequence[int], names: Sequence[str], total: int, unit: str) -> tuple[int, ...]:
    """Sizes with the one -1 filled in so that their product is `total`; a bad size is named in a
    one-line ValueError, e.g. "mesh: model=3 does not divide the 8 devices per slice"."""
    for name, size in zip(names, sizes, strict=True):
        if size == 0 or size < -1:
            raise ValueError(f"mesh: {name}={size}: sizes must be positive (or -1 for the rest)")
    if sum(s == -1 for s in sizes) > 1:
        fill = [n for n, s in zip(names, sizes, strict=True) if s == -1]
        raise ValueError(f"mesh: {' and '.join(fill)} are both -1; at most one may be -1")
    for name, size in zip(names, sizes, strict=True):
        if size != -1 and total % size:
            raise ValueError(f"mesh: {name}={size} does not divide the {total} {unit}")
    fixed = [(n, s) for n, s in zip(names, sizes, strict=True) if s != -1]
    known = math.prod(s for _, s in fixed)
    product = " x ".join(f"{n}={s}" for n, s in fixed)
    if -1 not in sizes:
        if known != total:
            raise ValueError(f"mesh: {product} = {known} {unit}, there are {total}")
        return tuple(sizes)
    if total % known:
        raise ValueError(f"mesh: {product} = {known} does not divide the {total} {unit}")
    filled = [total // known if s == -1 else s for s in sizes]
    return tuple(filled)


def hybrid_shape(
    config: MeshConfig, num_devices: int, num_slices: int = 1
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(in-slice sizes, across-slice sizes), -1s filled in; e.g. MeshConfig(fsdp=-1, model=2,
    dcn_data=-1) on 16 devices in 2 slices -> ((1, 4, 2), (2, 1, 1))."""
    if num_devices % num_slices:
        raise ValueError(f"mesh: {num_devices} devices do not split into {num_slices} slices")
    dcn_names = [f"dcn_{a}" for a in MESH_AXES]
    dcn = _fill(config.sizes("dcn_"), dcn_names, num_slices, "slice(s)")
    ici = _fill(config.sizes(), MESH_AXES, num_devices // num_slices, "devices per slice")
    return ici, dcn  # type: ignore[return-value]


def mesh_shape(config: MeshConfig, num_devices: int, num_slices: int = 1) -> tuple[int, int, int]:
    """(data, fsdp, model) sizes of the whole mesh, e.g. (-1, 2, 2) on 8 -> (2, 2, 2)."""
    ici, dcn = hybrid_shape(config, num_devices, num_slices)
    return tuple(i * d for i, d in zip(ici, dcn, strict=True))  # type: ignore[return-value]


def slices(devices: Sequence[Any], config: MeshConfig) -> list[list[Any]]:
    """The devices grouped into slices (the DCN granules), in slice order: by `slice_index` on
    TPUs; elsewhere (CPU, GPU: a multi-process CPU job reports slice_index 0 everywhere) one
    group, or one per process once a DCN axis is set above 1."""
    if devices[0].platform == "tpu":
        key = "slice_index"
    elif any(size > 1 for size in config.sizes("dcn_")):
        key = "process_index"  # JAX's process_is_granule
    else:
        return [list(devices)]
    groups: dict[int, list[Any]] = {}
    for device in devices:
        groups.setdefault(getattr(device, key), []).append(device)
    out = [groups[k] for k in sorted(groups)]
    sizes = {k: len(g) for k, g in sorted(groups.items())}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"mesh: the slices ({key}) differ in size: {sizes} devices")
    return out


def device_grid(config: MeshConfig, devices: Sequence[Any] | None = None) -> np.ndarray:
    """The devices as a [data, fsdp, model] array: each slice laid out along its physical torus
    (the most communication-intensive axis, `model`, on the most links), slices stacked along
    the DCN axes. Works on any objects with JAX's device attributes (tests use fakes)."""
    devices = list(jax.devices() if devices is None else devices)
    groups = slices(devices, config)
    ici, dcn = hybrid_shape(config, len(devices), len(groups))
    split = config.allow_split_physical_axes
    if len(groups) == 1:
        return mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=split)
    return mesh_utils.create_hybrid_device_mesh(
        ici,
        dcn,
        devices,
        process_is_granule=devices[0].platform != "tpu",
        allow_split_physical_axes=split,
    )


def make_mesh(config: MeshConfig, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh with axes ("data", "fsdp", "model") over `device_grid` and Auto axis types
    (flax.linen's logical partitioning fails on the Explicit axes that `jax.make_mesh` gives)."""
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return Mesh(device_grid(config, devices), MESH_AXES, axis_types=auto)


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """A mesh plus logical rules: shardings for pytrees, sharded init, jit, global batches."""

    mesh: Mesh
    rules: LogicalRules
    # Apply the model's activation constraints (nn.with_logical_constraint) under the mesh, as
    # T5X does. Off: only parameters and input batches are laid out and XLA propagates the rest
    # (same numbers).
    constrain_activations: bool = True

    @classmethod
    def create(
        cls, config: MeshConfig = MeshConfig(), devices: Sequence[Any] | None = None
    ) -> Partitioner:
        if config.rules not in RULES:
            raise ValueError(f"unknown logical rules {config.rules!r}; choose from {list(RULES)}")
        return cls(make_mesh(config, devices), RULES[config.rules], config.constrain_activations)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """The mesh and the rules as context (for tracing model code with logical constraints)."""
        if not self.constrain_activations:
            with nn.logical_axis_rules(self.rules):
                yield
            return
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    def sharding(self, logical_axes: Sequence[str | None]) -> NamedSharding:
        """E.g. ("batch", "length") -> NamedSharding(mesh, P(("data", "fsdp"), None))."""
        spec = nn.logical_to_mesh_axes(tuple(logical_axes), self.rules)
        return NamedSharding(self.mesh, spec)

    @property
    def data_sharding(self) -> NamedSharding:
        """How input batches [batch, length] are laid out: rows over (data, fsdp)."""
        return NamedSharding(self.mesh, PartitionSpec(BATCH_AXES))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def shardings_of(self, boxed_tree: Any) -> Any:
        """NamedShardings for a (possibly abstract) pytree whose leaves are nn.Partitioned boxes
        or plain arrays (replicated), e.g. the output of `jax.eval_shape(init_fn)`."""
        specs = nn.get_partition_spec(boxed_tree)
        return nn.logical_to_mesh_sharding(specs, self.mesh, self.rules)

    def abstract_init(self, init_fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
        """(unboxed ShapeDtypeStructs carrying their shardings, the shardings) of init_fn(*args).

        Traced without the rules active: the boxes carry the logical names, which
        `shardings_of` maps onto the mesh with this partitioner's rules."""
        boxed = jax.eval_shape(init_fn, *args)
        shardings = self.shardings_of(boxed)
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            nn.meta.unbox(boxed),
            shardings,
        )
        return abstract, shardings

    def init(self, init_fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
        """Runs init_fn(*args) under jit so that each device only ever holds its own shards;
        returns (unboxed state, its shardings). Boxed leaves would break Orbax restores."""
        _, shardings = self.abstract_init(init_fn, *args)
        state = jax.jit(init_fn, out_shardings=shardings)(*args)
        return nn.meta.unbox(state), shardings

    def jit(
        self,
        fn: Callable[..., Any],
        in_shardings: Any,
        out_shardings: Any,
        donate_argnums: int | Sequence[int] = (),
    ) -> Callable[..., Any]:
        """jax.jit with explicit shardings, traced and run under this mesh and these rules."""
        jitted = jax.jit(
            fn,
            in_shardings=in_shardings,
            out_shardings=out_shardings,
            donate_argnums=donate_argnums,
        )

        def run(*args: Any) -> Any:
            with self.activate():
                return jitted(*args)

        return run

    def input_shard(self, global_batch_size: int) -> tuple[int, int]:
        """(shard_id, num_shards) of the rows this process must load, e.g. 2 hosts with 4 devices
        each on mesh data=8 and batch 256: host 0 -> (0, 2) = rows 0..127, host 1 -> (1, 2).
        Hosts that share rows (the model axis spans hosts) get the same shard."""
        indices = self.data_sharding.addressable_devices_indices_map((global_batch_size,))
        rows = sorted({(s[0].start or 0, s[0].stop or global_batch_size) for s in indices.values()})
        start, stop = rows[0][0], rows[-1][1]
        per_host = stop - start
        contiguous = all(a[1] >= b[0] for a, b in zip(rows, rows[1:], strict=False))
        if not contiguous or global_batch_size % per_host or start % per_host:
            raise ValueError(f"this process's rows {rows} do not tile batch {global_batch_size}")
        return start // per_host, global_batch_size // per_host

    def global_batch(self, local_batch: Mapping[str, np.ndarray], global_batch_size: int) -> dict:
        """This process's rows [global_batch_size / num_shards, length] -> global jax.Arrays
        [global_batch_size, length] sharded like `data_sharding`."""
        out = {}
        for key, value in local_batch.items():
            value = np.asarray(value)
            shape = (global_batch_size, *value.shape[1:])
            out[key] = jax.make_array_from_process_local_data(self.data_sharding, value, shape)
        return out
