"""Orbax checkpoints: period and retention, data state beside the train state, restore onto
another mesh, initial params."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from train_testing import tiny_config

from optiml import checkpointing, optimizer, train_step
from optiml.models import convert
from optiml.models.opt import OPTDecoder, init_params
from optiml.partitioning import MeshConfig, Partitioner


def _init(partitioner: Partitioner, seed: int = 0):
    model = OPTDecoder(tiny_config())
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(warmup_steps=1), 10)
    init = functools.partial(train_step.init_train_state, model, tx)
    state, _ = partitioner.init(init, jax.random.key(seed))
    abstract, _ = partitioner.abstract_init(init, jax.random.key(seed))
    return state, abstract


def _assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_save_period_retention_and_data_state(tmp_path):
    partitioner = Partitioner.create(MeshConfig(data=8))
    state, abstract = _init(partitioner)
    ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", save_every=2, keep=2)
    saved = [
        step for step in range(1, 7) if ckpt.save(step, state.replace(step=step), {"index": step})
    ]
    assert saved == [2, 4, 6]
    ckpt.wait()
    assert ckpt.all_steps() == [4, 6] and ckpt.latest_step() == 6
    assert ckpt.save(7, state.replace(step=7), {"index": 7}, force=True)
    ckpt.close()

    reopened = checkpointing.Checkpointer(tmp_path / "ckpt", save_every=2)
    restored, data = reopened.restore(abstract)
    assert data == {"index": 7} and int(restored.step) == 7
    _assert_same(restored.params, state.params)
    _assert_same(restored.opt_state, state.opt_state)
    assert reopened.all_steps() == [6, 7]
    older, data = reopened.restore(abstract, step=6)
    assert data == {"index": 6} and int(older.step) == 6
    reopened.close()


def test_kept_steps_outlive_the_retention(tmp_path):
    """checkpoint_start's step 0 (the untuned model) stays however many newer steps follow."""
    partitioner = Partitioner.create(MeshConfig(data=8))
    state, _ = _init(partitioner)
    ckpt = checkpointing.Checkpointer(tmp_path, save_every=1, keep=1, keep_steps=(0,))
    for step in range(4):
        ckpt.save(step, state.replace(step=step), None)
    ckpt.close()
    assert ckpt.all_steps() == [0, 3]
    assert checkpointing.newest_step(tmp_path) == 3
    assert checkpointing.newest_step(tmp_path / "nothing") is None


def test_restore_onto_another_mesh(tmp_path):
    source = Partitioner.create(MeshConfig(data=4, model=2))
    state, _ = _init(source)
    ckpt = checkpointing.Checkpointer(tmp_path, save_every=1)
    ckpt.save(1, state, None)
    ckpt.close()

    target = Partitioner.create(MeshConfig(data=1, fsdp=2, model=4, rules="fsdp"))
    _, abstract = _init(target, seed=1)  # other values: only shapes and shardings are used
    restored, data = checkpointing.Checkpointer(tmp_path, save_every=1).restore(abstract)
    assert data is None
    kernel = restored.params["layers_0"]["fc1"]["kernel"]
    assert kernel.sharding.spec == P("fsdp", "model") and kernel.sharding.mesh == target.mesh
    mu = restored.opt_state[1][0].mu["layers_0"]["fc1"]["kernel"]
    assert mu.sharding.spec == P("fsdp", "model")
    _assert_same(restored.params, state.params)
    _assert_same(restored.opt_state, state.opt_state)


def test_restore_without_checkpoint_fails_clearly(tmp_path):
    _, abstract = _init(Partitioner.create(MeshConfig(data=8)))
    with pytest.raises(FileNotFoundError, match="no checkpoint to restore in"):
        checkpointing.Checkpointer(tmp_path, save_every=1).restore(abstract)


def test_data_state_from_another_process_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="saved by 2 processes, this job has 1"):
        checkpointing._this_host({"process_count": 2, "states": [{}, {}]}, tmp_path)


def test_initial_params_load_onto_the_mesh(tmp_path):
    params = init_params(tiny_config(), jax.random.key(3))
    convert.save_params(tmp_path / "opt", params, tiny_config(dropout=0.0, dtype="bfloat16"))
    partitioner = Partitioner.create(MeshConfig(data=2, model=4))
    boxed = functools.partial(init_params, tiny_config(), unbox=False)
    abstract, _ = partitioner.abstract_init(boxed, jax.random.key(0))
    restored = checkpointing.load_initial_params(tmp_path / "opt", tiny_config(), abstract)
    assert restored["embed_tokens"]["embedding"].sharding.spec == P("model", None)
    _assert_same(restored, params)
    with pytest.raises(FileNotFoundError, match="missing"):
        checkpointing.load_initial_params(tmp_path / "none", tiny_config(), abstract)
    with pytest.raises(ValueError, match="ffn_dim: 64 in the checkpoint, 32 in the run"):
        checkpointing.load_initial_params(tmp_path / "opt", tiny_config(ffn_dim=32), abstract)


def test_params_of_a_training_checkpoint(tmp_path):
    import optax

    from optiml.models import opt
    from optiml.train_step import TrainState

    config = opt.named_config("tiny", dtype="float32")
    params = opt.init_params(config, jax.random.key(1))
    state = TrainState.create(apply_fn=None, params=params, tx=optax.adamw(1e-3))
    saver = checkpointing.Checkpointer(tmp_path / "checkpoints", save_every=1, async_save=False)
    saver.save(7, state, {"position": 3}, force=True)
    saver.close()
    p = Partitioner.create(MeshConfig(data=4, model=2))
    abstract, _ = p.abstract_init(
        lambda rng: opt.init_params(config, rng, unbox=False), jax.random.key(0)
    )
    restored = checkpointing.restore_params(tmp_path / "checkpoints", abstract)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        checkpointing.restore_params(tmp_path / "nothing", abstract)
    with pytest.raises(FileNotFoundError, match="step 8"):
        checkpointing.restore_params(tmp_path / "checkpoints", abstract, step=8)
