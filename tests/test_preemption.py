"""SIGTERM, what a preempted TPU VM receives: the trainer saves at the next step boundary, exits
0 with one line, and the same command continues the uninterrupted loss curve; with two hosts
and the signal on one of them, both save the same step."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from train_testing import launch, logged_losses, metric_rows, train_tiny

from optiml import checkpointing, preemption


def test_sigterm_becomes_a_flag_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    watcher = preemption.Watcher()
    try:
        assert not watcher.reached(1)
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (main) thread, not fatal
        assert watcher.reached(2)
    finally:
        watcher.close()
    assert signal.getsignal(signal.SIGTERM) == before


def _saved_steps(run_dir) -> list[int]:
    return checkpointing.Checkpointer(run_dir / "checkpoints", save_every=1000).all_steps()


def _sigterm_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "SIGTERM" in line]


@pytest.mark.slow
def test_sigterm_saves_and_the_resumed_curve_is_the_uninterrupted_one(tmp_path):
    train_tiny(tmp_path / "straight")  # 6 steps, mesh data=8
    expected = logged_losses(tmp_path / "straight")

    run = tmp_path / "preempted"  # SIGTERM while step 4 runs (fetching the batch of step 5)
    [(code, output)] = launch(run, steps=6, mesh={"data": 8}, term_at=4)
    assert code == 0, output[-3000:]
    assert _sigterm_lines(output) == [
        f"optiml: SIGTERM: saved step 4 in {run / 'checkpoints'}; rerun to resume"
    ]
    assert _saved_steps(run) == [4]  # the periodic saves (every 1000 steps) never came
    assert sorted(logged_losses(run)) == [1, 2, 3, 4]

    train_tiny(run)  # the same run again
    assert logged_losses(run) == expected  # exactly, not approximately
    assert [row["step"] for row in metric_rows(run) if "loss" in row] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_sigterm_on_one_host_stops_both_at_the_same_step(tmp_path):
    run = tmp_path / "two_slices"
    results = launch(
        run,
        processes=2,
        devices=4,
        steps=12,
        mesh={"data": 2, "model": 2, "dcn_data": 2},
        only={1: {"term_at": 2, "delay": 0.5}},  # only host 1 is preempted
    )
    for code, output in results:
        assert code == 0, output[-3000:]
    [line] = _sigterm_lines(results[0][1])  # process 0 speaks for the job
    assert not _sigterm_lines(results[1][1])
    step = int(re.search(r"saved step (\d+) in ", line).group(1))
    assert 2 <= step < 12  # JAX's sync service picks a step neither host has passed
    assert _saved_steps(run) == [step]
    assert sorted(logged_losses(run)) == list(range(1, step + 1))
    data = json.loads((run / "checkpoints" / str(step) / "data" / "metadata").read_text())
    assert data == {"process_count": 2, "states": [{"index": step}, {"index": step}]}
