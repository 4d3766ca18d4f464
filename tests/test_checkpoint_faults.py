"""Checkpoints under faults (issue 16): a damaged newest checkpoint, the leftovers of an unfinished
save, a disk too small for the next save, a save that fails half-way. Each: one line naming the
step and the folder, exit 1 where the run stops, and every checkpoint saved before kept and used
(bit-identical losses after the resume)."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from train_testing import logged_losses, metric_rows, tiny_config, train_tiny

from optiml import checkpointing, errors, main, optimizer, train_step
from optiml.models.opt import OPTDecoder
from optiml.partitioning import MeshConfig, Partitioner

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "train_testing.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train_tiny's uninterrupted run: 6 steps, checkpoints 2, 4 and 6."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(run)
    return run


def _abstract():
    """The abstract train state of train_tiny's runs (same model, optimizer and mesh)."""
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(learning_rate=1e-3, warmup_steps=2), 6)
    init = functools.partial(train_step.init_train_state, OPTDecoder(tiny_config()), tx)
    return Partitioner.create(MeshConfig(data=8)).abstract_init(init, jax.random.key(0))[0]


def _same(a, b) -> None:
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def _damage(step_dir: Path, how: str) -> None:
    state = step_dir / "state"
    if how == "half the data files":
        for path in sorted(state.glob("**/d/*"))[::2]:
            path.unlink()
    elif how == "metadata deleted":
        (state / "_METADATA").unlink()
    elif how == "empty manifest.ocdbt":
        (state / "manifest.ocdbt").write_bytes(b"")


def _copy(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


@pytest.mark.slow  # (the `trained` fixture trains: ~40 s)
@pytest.mark.parametrize("how", ["half the data files", "metadata deleted", "empty manifest.ocdbt"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(
    trained: Path, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy(trained, tmp_path)
    _damage(run / "checkpoints" / "6", how)
    with caplog.at_level(logging.WARNING, logger="optiml.checkpointing"):
        ckpt = checkpointing.Checkpointer(run / "checkpoints", save_every=2)
        state, data = ckpt.restore(_abstract())
    ckpt.close()
    [record] = [r for r in caplog.records if r.name == "optiml.checkpointing"]
    assert record.getMessage().startswith("checkpoints: step 6 does not read back (")
    assert record.getMessage().endswith("6.damaged, resuming from step 4")
    assert "\n" not in record.getMessage()
    assert int(state.step) == 4
    pristine = checkpointing.Checkpointer(trained / "checkpoints", save_every=2)
    expected, expected_data = pristine.restore(_abstract(), step=4)
    pristine.close()
    assert data == expected_data
    _same(state.params, expected.params)
    _same(state.opt_state, expected.opt_state)
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6.damaged"]


@pytest.mark.slow
def test_when_no_checkpoint_reads_back_nothing_is_moved(trained: Path, tmp_path: Path) -> None:
    run = _copy(trained, tmp_path)
    for step in ("2", "4", "6"):
        _damage(run / "checkpoints" / step, "empty manifest.ocdbt")
    ckpt = checkpointing.Checkpointer(run / "checkpoints", save_every=2)
    with pytest.raises(checkpointing.CheckpointError) as error:
        ckpt.restore(_abstract())
    ckpt.close()
    message = str(error.value)
    assert "\n" not in message and "reads back (3 tried); the newest, step 6: DATA_LOSS" in message
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]


@pytest.mark.slow
def test_leftovers_of_an_unfinished_save_are_removed_at_start(
    trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy(trained, tmp_path)
    leftover = run / "checkpoints" / "8.orbax-checkpoint-tmp-1234" / "state"
    leftover.mkdir(parents=True)
    (leftover / "d").write_bytes(b"\0" * 100_000)
    with caplog.at_level(logging.WARNING, logger="optiml.checkpointing"):
        ckpt = checkpointing.Checkpointer(run / "checkpoints", save_every=2)
    assert ckpt.all_steps() == [2, 4, 6]
    ckpt.close()
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]
    [record] = [r for r in caplog.records if r.name == "optiml.checkpointing"]
    assert "removed 1 unfinished save(s) of an earlier run" in record.getMessage()


@pytest.mark.slow
def test_training_resumes_past_a_damaged_checkpoint_with_the_same_losses(
    trained: Path, tmp_path: Path
) -> None:
    run = _copy(trained, tmp_path)
    _damage(run / "checkpoints" / "6", "empty manifest.ocdbt")
    train_tiny(run)  # resumes from step 4, redoes steps 5 and 6
    assert logged_losses(run) == logged_losses(trained)  # exactly
    assert [r["step"] for r in metric_rows(run)] == [1, 2, 3, 4, 5, 6]  # one record per step
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6", "6.damaged"]


def _worker(args: dict, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, str(WORKER), json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _optiml_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("optiml: ")]


@pytest.mark.slow
def test_a_save_that_fails_half_way_stops_the_run_and_keeps_the_earlier_ones(
    trained: Path, tmp_path: Path
) -> None:
    """The disk fills during the step-4 save (a file-size limit from then on: EFBIG, as ENOSPC).
    Before: the save failed in the background, training ran on and died in hundreds of lines;
    the restart then tripped over the unfinished save's folder."""
    run = tmp_path / "run"
    args = dict(run_dir=str(run), devices=8, steps=6, checkpoint_every=2, mesh={"data": 8})
    full = dict(full_disk_at=4, limit=30_000, after=str(run / "checkpoints" / "2"))
    failed = _worker({**args, **full})
    assert failed.returncode == 1, failed.stderr[-3000:]
    [line] = _optiml_lines(failed.stderr)
    assert line.startswith(f"optiml: checkpoint 4 could not be saved in {run / 'checkpoints'}: ")
    assert line.endswith("; training stopped (checkpoints kept: 2)")
    assert "Traceback" not in failed.stderr
    assert max(r["step"] for r in metric_rows(run)) <= 6

    ckpt = checkpointing.Checkpointer(run / "checkpoints", save_every=2)
    saved, _ = ckpt.restore(_abstract())
    ckpt.close()
    pristine = checkpointing.Checkpointer(trained / "checkpoints", save_every=2)
    expected, _ = pristine.restore(_abstract(), step=2)
    pristine.close()
    assert int(saved.step) == 2
    _same(saved.params, expected.params)

    resumed = _worker(args)  # no limit: the leftover goes, the run resumes from 2 and finishes
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert logged_losses(run) == logged_losses(trained)
    assert [r["step"] for r in metric_rows(run)] == [1, 2, 3, 4, 5, 6]
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]


def _tmpfs_prefix(mount: Path, size: str, out: Path) -> tuple[str, ...] | None:
    """`unshare` + a tmpfs of `size` at `mount` (private to the command; its files are copied to
    `out` when the command ends), or None where this machine cannot make one."""
    probe = mount.parent / "probe"
    probe.mkdir(exist_ok=True)
    if not shutil.which("unshare"):
        return None
    check = f"mount -t tmpfs -o size=1m tmpfs {probe}"
    if subprocess.run(["unshare", "-rm", "sh", "-c", check], capture_output=True).returncode:
        return None
    mount.mkdir(exist_ok=True)
    script = (
        f'mount -t tmpfs -o size={size} tmpfs {mount} && "$@"; rc=$?; '
        f"cp -a {mount}/. {out}/; exit $rc"
    )
    return ("unshare", "-rm", "sh", "-c", script, "sh")


@pytest.mark.slow
def test_a_disk_too_small_for_the_next_save_stops_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MiB tmpfs (the state is 280 kB; a checkpoint takes 0.6 MB and Orbax more while
    writing): the step-2 save is refused before writing, naming the folder and the bytes."""
    mount, out = tmp_path / "disk", tmp_path / "out"
    out.mkdir()
    prefix = _tmpfs_prefix(mount, "1m", out)
    if prefix is None:  # no tmpfs here: the same check against an injected free-space figure
        usage = shutil.disk_usage(tmp_path)._replace(free=1 << 20)
        monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage)
        with pytest.raises(checkpointing.CheckpointError) as error:
            train_tiny(tmp_path / "run")
        lines, run = [f"optiml: {error.value}"], tmp_path / "run"
    else:
        args = dict(run_dir=str(mount / "run"), devices=8, steps=6, checkpoint_every=2)
        result = _worker({**args, "mesh": {"data": 8}}, prefix)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        lines, run = _optiml_lines(result.stderr), out / "run"
    [line] = lines
    assert line.startswith("optiml: checkpoint 2 not saved: ")
    assert " bytes free, the save needs about " in line
    assert line.endswith("; training stopped (no checkpoint yet)")
    assert [r["step"] for r in metric_rows(run)] == [1, 2]  # no step ran after the refused save
    assert not list((run / "checkpoints").iterdir())


def test_the_entry_point_prints_a_stopped_run_as_one_line(tmp_path: Path) -> None:
    (tmp_path / "stopjob.py").write_text(
        "from optiml import errors\n"
        "def run():\n"
        "    raise errors.RunStopped('checkpoint 4 could not be saved in /x: disk full')\n"
    )
    (tmp_path / "stop.gin").write_text(
        "from __gin__ import dynamic_registration\nimport stopjob\nRUN = @stopjob.run\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "optiml.main", f"--gin_file={tmp_path / 'stop.gin'}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "optiml: checkpoint 4 could not be saved in /x: disk full"
    ]
    assert issubclass(checkpointing.CheckpointError, errors.RunStopped)
    assert main.console_main  # the path under test


def test_a_resumed_run_keeps_one_metrics_record_per_step(tmp_path: Path) -> None:
    """Before: metrics.jsonl repeated the steps between the last checkpoint and the kill."""
    from optiml import metric_writers

    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 7)]
    path.write_text("".join(rows) + '{"step": 7, "lo')  # killed mid-line
    writer = metric_writers.JsonlWriter(path, resumed_at=4)  # the checkpoint it resumes from
    writer.write_scalars(5, {"loss": 0.5})
    writer.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4, 5]


def _orbax_error(message: str) -> None:
    """An ERROR record as Orbax's threads log one (through absl's logger, from Orbax's code)."""
    record = logging.LogRecord(
        "absl", logging.ERROR, "/site-packages/orbax/x.py", 1, message, (), None
    )
    logging.getLogger("absl").handle(record)


def test_a_late_orbax_error_of_another_folder_is_not_this_runs_failed_save(tmp_path: Path) -> None:
    """CI found it: the failed read of another run's damaged checkpoint, logged by Orbax's threads
    after that restore returned, stopped the next run as "checkpoint None could not be saved".
    And a failed run's Checkpointer left open must not swallow this one's failed save."""
    stale = checkpointing.Checkpointer(tmp_path / "failed", save_every=2)
    stale._saving, stale._failed = 2, True  # a run that failed and never closed its Checkpointer
    ckpt = checkpointing.Checkpointer(tmp_path / "mine", save_every=2)
    other = f'Error reading "x/.zarray" in OCDBT database at local file "{tmp_path}/other/6/state/"'
    _orbax_error(other)  # no save in flight
    ckpt.check()
    ckpt._saving = 4  # a save in flight: another folder's error is still not ours
    _orbax_error(other)
    ckpt.check()
    _orbax_error(f'Error writing local file "{tmp_path}/mine/4/state/d/0": EFBIG')
    with pytest.raises(
        checkpointing.CheckpointError, match="checkpoint 4 could not be saved.*EFBIG"
    ):
        ckpt.check()
    ckpt._failed = True
    ckpt.close()
