"""Two CPU processes with 4 devices each, joined over loopback as one jax.distributed job and
treated as two slices (processes are the DCN granules off TPUs), train like one process with 8
devices: same losses, one checkpoint with both hosts' data positions. Checkpoints move between
the two-slice mesh and a one-slice mesh of the same hosts (2 x v4-128 <-> 1 x v4-256) both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_testing import launch, logged_losses, train_tiny

from optiml import partitioning
from optiml.checkpointing import Checkpointer

ONE_PROCESS = {"data": 4, "model": 2}
TWO_SLICES = {"data": 2, "model": 2, "dcn_data": 2}  # the same (4, 1, 2) mesh, data across DCN


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[int, float]:
    """step -> loss of 5 steps in this process on 8 devices."""
    run_dir = tmp_path_factory.mktemp("one")
    train_tiny(run_dir, steps=5, checkpoint_every=5, mesh=partitioning.MeshConfig(**ONE_PROCESS))
    return logged_losses(run_dir)


def _assert_same_losses(run_dir, expected: dict[int, float]) -> None:
    losses = logged_losses(run_dir)  # written by process 0 only
    assert sorted(losses) == sorted(expected) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(
        [losses[s] for s in range(1, 6)], [expected[s] for s in range(1, 6)], atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_two_processes_as_two_slices_match_one(tmp_path, one_process):
    run_dir = tmp_path / "two"
    results = launch(run_dir, processes=2, devices=4, steps=5, checkpoint_every=5, mesh=TWO_SLICES)
    for code, output in results:
        assert code == 0, output[-3000:]
    _assert_same_losses(run_dir, one_process)
    data = json.loads((run_dir / "checkpoints" / "5" / "data" / "metadata").read_text())
    assert data == {"process_count": 2, "states": [{"index": 5}, {"index": 5}]}


@pytest.mark.slow
def test_checkpoints_move_between_two_slices_and_one(tmp_path, one_process):
    """Steps 1-2 on 2 slices (FSDP 2 per slice), step 3 on the same hosts as 1 slice (FSDP 4),
    steps 4-5 on 2 slices again; each phase ends by a crash in the input pipeline (after
    checkpointing every step), so every phase resumes a checkpoint of the other mesh."""
    two_slices = {"data": 1, "fsdp": 2, "model": 2, "dcn_data": 2, "rules": "fsdp"}
    one_slice = {"data": 1, "fsdp": 4, "model": 2, "dcn_data": 1, "rules": "fsdp"}
    run_dir = tmp_path / "moved"
    # raise_at=N: the crash comes while step N runs, so step N - 1 is the last one saved.
    for mesh, raise_at, saved in [(two_slices, 3, 2), (one_slice, 4, 3), (two_slices, None, 5)]:
        results = launch(
            run_dir, processes=2, devices=4, steps=5, checkpoint_every=1, mesh=mesh,
            raise_at=raise_at,
        )  # fmt: skip
        for code, output in results:
            assert code == (0 if raise_at is None else 1), output[-3000:]
            assert raise_at is None or f"interrupted by the test at batch {raise_at}" in output
        assert Checkpointer(run_dir / "checkpoints", save_every=1).latest_step() == saved
    _assert_same_losses(run_dir, one_process)
