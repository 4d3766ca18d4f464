"""The train loop end to end on the tiny model: gin quickstart through optiml.main, exact resume
after SIGKILL, a NaN stops the run with the last good checkpoint intact, imported weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from train_testing import BATCH, logged_losses, metric_rows, synthetic, tiny_config, train_tiny

from optiml import checkpointing, main, trainer
from optiml.models import convert
from optiml.models.opt import init_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_gin_runs_through_main(tmp_path):
    """runs/quickstart.gin's training with the synthetic source in place of the mixture."""
    config = tmp_path / "quickstart_synthetic.gin"
    config.write_text(
        "from __gin__ import dynamic_registration\n"
        "include 'runs/quickstart.gin'\n"
        "from optiml import synthetic\n"
        "from optiml import partitioning\n"
        "from optiml import trainer\n"
        "RUN = @trainer.train  # the training step of the quickstart only\n"
        "trainer.train.train_data = @train/synthetic.SyntheticData()\n"
        "trainer.train.eval_data = @eval/synthetic.SyntheticData()\n"
        "synthetic.SyntheticData.length = 64\n"
        "eval/synthetic.SyntheticData.seed = 1\n"
    )
    run_dir = tmp_path / "run"
    bindings = [
        f"--gin.MODEL_DIR='{run_dir}'",
        "--gin.CACHE_DIR='unused'",
        "--gin.TRAIN_STEPS=4",
        "--gin.trainer.train.log_every=2",
        "--gin.trainer.train.eval_every=4",
        "--gin.trainer.train.checkpoint_every=2",
        "--gin.optimizer.OptimizerConfig.warmup_steps=1",
        "--gin.partitioning.DistributedConfig.auto=False",  # JAX already runs in this process
    ]
    metrics = main.main([f"--gin_file={config}", *bindings])
    rows = metric_rows(run_dir)
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    assert [r["step"] for r in rows if "eval/loss" in r] == [4]
    for key in ("loss", "accuracy", "grad_norm", "learning_rate", "tokens_per_second"):
        assert np.isfinite(metrics[key]), key
    assert 10.0 < metrics["loss"] < 11.5  # ln(50272) = 10.8 for a fresh model
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["0", "2", "4"]  # 0: the untuned model
    assert "BATCH_SIZE = 8" in (run_dir / "config.gin").read_text()


@pytest.mark.slow
def test_sigkill_and_resume_give_the_uninterrupted_loss_curve(tmp_path):
    train_tiny(tmp_path / "straight")
    expected = logged_losses(tmp_path / "straight")
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]

    killed = tmp_path / "killed"
    args = dict(run_dir=str(killed), devices=8, steps=6, checkpoint_every=2, kill_at=5)
    args["mesh"] = {"data": 8}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "train_testing.py"), json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -9, result.stderr[-3000:]
    before = logged_losses(killed)
    assert sorted(before) == [1, 2, 3, 4]  # killed while fetching the batch of step 6
    resumed_from = checkpointing.Checkpointer(killed / "checkpoints", save_every=2).latest_step()
    assert resumed_from in (2, 4)  # step 4's asynchronous save may not have finished

    train_tiny(killed)
    after = logged_losses(killed)
    assert after == expected  # exactly, not approximately
    rows = [r["step"] for r in metric_rows(killed) if "loss" in r]
    assert rows == [1, 2, 3, 4, 5, 6]  # one record per step: the resume drops what it redoes


def poisoned(at: int):
    """A synthetic data factory whose batch of step `at` has a NaN loss weight."""

    class Poisoned:
        def __init__(self, **kwargs):
            self.stream = synthetic()(**kwargs)

        def __next__(self):
            batch = next(self.stream)
            if self.stream.index == at:
                batch["decoder_loss_weights"][0, 5] = np.nan
            return batch

        def get_state(self):
            return self.stream.get_state()

        def set_state(self, state):
            self.stream.set_state(state)

    return Poisoned


def test_nan_in_a_batch_stops_cleanly(tmp_path):
    run_dir = tmp_path / "nan"
    with pytest.raises(trainer.NonFiniteError, match=r"step 4: non-finite loss=nan.*checkpoints/2"):
        train_tiny(run_dir, train_data=poisoned(4))
    assert sorted(logged_losses(run_dir)) == [1, 2, 3]
    ckpt = checkpointing.Checkpointer(run_dir / "checkpoints", save_every=2)
    assert ckpt.all_steps() == [2]
    ckpt.close()


def test_metrics_are_read_only_at_log_eval_and_checkpoint_steps(tmp_path, monkeypatch):
    """log every 3, save every 4, 6 steps: reads at 3, 4 and 6, each covering every step since
    the last; a NaN at step 5 is caught at 6, before step 6's save (step 4's is the last)."""
    reads = []
    read = trainer._read_finite

    def counted(first_step, unread, checkpointer):
        reads.append((first_step, len(unread)))
        return read(first_step, unread, checkpointer)

    monkeypatch.setattr(trainer, "_read_finite", counted)
    options = dict(log_every=3, checkpoint_every=4, async_checkpoints=False)
    train_tiny(tmp_path / "ok", **options)
    assert reads == [(1, 3), (4, 1), (5, 2)]
    assert [r["step"] for r in metric_rows(tmp_path / "ok")] == [3, 6]

    with pytest.raises(trainer.NonFiniteError, match=r"step 5: non-finite loss=nan.*checkpoints/4"):
        train_tiny(tmp_path / "nan", train_data=poisoned(5), **options)
    ckpt = checkpointing.Checkpointer(tmp_path / "nan" / "checkpoints", save_every=4)
    assert ckpt.all_steps() == [4]
    ckpt.close()


@pytest.mark.slow
def test_starts_from_imported_params_and_fails_when_data_runs_out(tmp_path):
    params = init_params(tiny_config(), jax.random.key(7))
    convert.save_params(tmp_path / "opt", params, tiny_config())
    train_tiny(
        tmp_path / "run",
        model_config=tiny_config(dropout=0.0),
        init_params=str(tmp_path / "opt"),
        steps=3,
    )
    assert convert.load_config(tmp_path / "run") == tiny_config(dropout=0.0)  # the run's model
    from optiml.models.opt import OPTDecoder
    from optiml.train_step import loss_sums, summarize

    batch = next(synthetic()(batch_size=BATCH))
    logits = OPTDecoder(tiny_config(dropout=0.0)).apply(
        {"params": params},
        batch["decoder_input_tokens"],
        batch["decoder_segment_ids"],
        batch["decoder_positions"],
    )
    expected = float(summarize(loss_sums(logits, batch))["loss"])
    np.testing.assert_allclose(logged_losses(tmp_path / "run")[1], expected, rtol=1e-5)

    class Short:
        def __init__(self, **kwargs):
            self.left = 2
            self.stream = synthetic()(**kwargs)

        def __next__(self):
            if not self.left:
                raise StopIteration
            self.left -= 1
            return next(self.stream)

        def get_state(self):
            return {}

    with pytest.raises(RuntimeError, match="ran out before step 3"):
        train_tiny(tmp_path / "short", train_data=Short)


@pytest.mark.slow
def test_the_real_mixture_stream_plugs_in_and_resumes(tmp_path):
    """optiml.pipeline.stream.MixtureStream over a small token cache: crash in step 3, resume."""
    import functools

    from optiml.pipeline import cache
    from optiml.pipeline.stream import MixtureStream

    rng = np.random.default_rng(0)
    for name in ("task_a", "task_b"):
        examples = [
            (rng.integers(4, 128, rng.integers(1, 12)), np.append(rng.integers(4, 128, 4), 2))
            for _ in range(30)
        ]
        cache.write_task(tmp_path / "cache", "train", name, examples, seed=0, vocab_size=128)
    mixture = functools.partial(
        MixtureStream, tmp_path / "cache", [("task_a", 0.3), ("task_b", 0.7)], length=32, seed=5
    )
    train_tiny(tmp_path / "straight", train_data=mixture, steps=4)

    class CrashAtStep4:
        def __init__(self, **kwargs):
            self.stream, self.calls = mixture(**kwargs), 0

        def __next__(self):
            self.calls += 1
            if self.calls == 4:  # fetching the batch of step 4, after step 3 began
                raise OSError("disk went away")
            return next(self.stream)

        def get_state(self):
            return self.stream.get_state()

    with pytest.raises(OSError, match="disk went away"):
        train_tiny(tmp_path / "crashed", train_data=CrashAtStep4, steps=4)
    assert sorted(logged_losses(tmp_path / "crashed")) == [1, 2]
    train_tiny(tmp_path / "crashed", train_data=mixture, steps=4)  # resumes from step 2
    assert logged_losses(tmp_path / "crashed") == logged_losses(tmp_path / "straight")
