"""Settings checked before anything runs: one line naming the binding and its value, exit code 2,
nothing written. Issue 16's config rows: a string batch, batch -8 / 0, steps below the warm-up, an
unknown mixture, a mesh that does not divide the devices, a string checkpoint period, LENGTH=0."""

from __future__ import annotations

import importlib
import importlib.util  # noqa: F401  (gin's `include` resolution needs it loaded)
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optiml import gin_check, main, trainer, validation

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ["--gin_file=runs/quickstart.gin", "--gin.partitioning.DistributedConfig.auto=False"]


def _check(tmp_path: Path, *bindings: str) -> None:
    run_dir = tmp_path / "run"
    args = [*QUICKSTART, f"--gin.MODEL_DIR='{run_dir}'", *(f"--gin.{b}" for b in bindings)]
    try:
        main.parse_config(*main.parse_args(args))
        gin_check.check_gin_config()
    finally:
        assert not run_dir.exists(), "a refused configuration must not write anything"


@pytest.mark.parametrize(
    "binding, message",
    [
        ("BATCH_SIZE='8'", "BATCH_SIZE='8' (trainer.train.batch_size): expected an int, got str"),
        ("BATCH_SIZE=-8", "BATCH_SIZE=-8 (trainer.train.batch_size): must be >= 1"),
        ("BATCH_SIZE=0", "BATCH_SIZE=0 (trainer.train.batch_size): must be >= 1"),
        ("BATCH_SIZE=12", "BATCH_SIZE=12 (trainer.train.batch_size): must be divisible by the 8"),
        (
            "TRAIN_STEPS=5",
            "TRAIN_STEPS=5 (trainer.train.steps): must exceed the warm-up, "
            "optimizer.OptimizerConfig.warmup_steps=10",
        ),
        ("MIXTURE='optiml_mix:nope'", "MIXTURE='optiml_mix:nope' (train/stream.from_mixture"),
        (
            "partitioning.MeshConfig.data=3",
            "MeshConfig.data=3: mesh: data=3 does not divide the 8 devices per slice",
        ),
        ("partitioning.MeshConfig.model=0", "MeshConfig.model=0: must be >= 1, or -1"),
        ("trainer.train.checkpoint_every='5'", "trainer.train.checkpoint_every='5': expected an"),
        ("trainer.train.checkpoint_every=0", "trainer.train.checkpoint_every=0: must be >= 1"),
        ("trainer.train.eval_every=-1", "trainer.train.eval_every=-1: must be >= 1"),
        ("trainer.train.num_microbatches=3", "divisible by trainer.train.num_microbatches=3"),
        ("LENGTH=0", "LENGTH=0 (train/stream.from_mixture.length): must be >= 1"),
        ("LENGTH=-5", "LENGTH=-5 (train/stream.from_mixture.length): must be >= 1"),
        ("LENGTH=2.5", "LENGTH=2.5 (train/stream.from_mixture.length): expected an int, got"),
        ("evaluate.evaluate.shots=[0,-1]", "evaluate.evaluate.shots=[0, -1]: item 1 (-1) must be"),
        ("evaluate.evaluate.phase='tset'", "evaluate.evaluate.phase='tset': must be one of"),
        ("opt.OPTConfig.num_heads=5", "opt.OPTConfig: hidden_size 64 is not divisible by"),
        ("EVAL_MIXTURE='nope'", "EVAL_MIXTURE='nope' (eval/stream.from_mixture.mixture): no such"),
        (
            "quickstart.run.caches=[('optiml_mix:dev','validation'),('nope','train')]",
            "quickstart.run.caches=[('optiml_mix:dev', 'validation'), ('nope', 'train')]: item 1",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, binding: str, message: str) -> None:
    with pytest.raises(validation.SettingError) as error:
        _check(tmp_path, binding)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_shipped_configs_pass(tmp_path: Path, monkeypatch) -> None:
    from optiml.bench import mixing
    from optiml.bench.sources import niv2

    _check(tmp_path)  # quickstart on this machine's 8 fake devices
    # the experiments train on the full benchmark: on partial local data they are refused
    # (optiml.bench.partial_data, tested in test_mixing), so check them without the data
    caches = (mixing.count_examples, mixing.mixture_rates, niv2.load_task, niv2.instance_counts)
    monkeypatch.delenv("OPTIML_DATA_DIR", raising=False)
    try:
        for cached in caches:
            cached.cache_clear()
        for experiment, devices in (("opt_iml_1.3b", 8), ("opt_iml_30b", 128)):
            args = [f"--gin_file=experiments/{experiment}.gin", "--gin.MODEL_DIR='m'"]
            main.parse_config(*main.parse_args([*args, "--gin.CACHE_DIR='c'"]))
            gin_check.check_gin_config(devices=devices)
    finally:  # counts made without the data must not outlive the test
        for cached in caches:
            cached.cache_clear()


def test_from_the_command_line_it_is_exit_2_and_one_line(tmp_path: Path) -> None:
    """The real entry point, before any preparation, compilation or step: LENGTH=0 used to hang."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "optiml.main", "--gin_file=runs/quickstart.gin"]
        + [f"--gin.MODEL_DIR='{run_dir}'", "--gin.LENGTH=0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [  # TensorFlow's import lines too are gone
        "optiml: LENGTH=0 (train/stream.from_mixture.length): must be >= 1"
    ]
    assert not run_dir.exists()


def test_a_direct_call_is_checked_with_the_same_rules(tmp_path: Path) -> None:
    with pytest.raises(validation.SettingError, match=r"train\(checkpoint_every=0\): must be >= 1"):
        trainer.train(
            run_dir=str(tmp_path), model_config=None, train_data=None, steps=4, batch_size=8,
            checkpoint_every=0,
        )  # fmt: skip
    assert not any(tmp_path.iterdir())


def test_every_rule_names_a_parameter_that_exists() -> None:
    """A rule keyed by a moved or renamed function would check nothing: fail here instead."""
    for selector, rules in validation.RULES.items():
        module, _, name = selector.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
        assert set(rules) <= set(inspect.signature(fn).parameters), selector


@pytest.mark.parametrize(
    "value, annotation, problem",
    [
        (8, int, None),
        (True, int, "expected an int, got bool"),
        (2, float, None),
        (None, int | None, None),
        ("8", int | None, "expected int or NoneType, got str"),
        ([0, 2], list[int], None),
        ([0, "2"], list[int], "item 1: expected an int, got str"),
        ("ab", list[int], "expected a sequence, got str"),
    ],
)
def test_type_problem(value, annotation, problem) -> None:
    assert validation.type_problem(value, annotation) == problem


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("optiml.tools.rates", ["optiml_mix:train", "--batch", "0"], "--batch: 0 must be >= 1"),
        ("optiml.tools.memory", ["--size=125m", "--mesh=data=1", "--batch=-8"], "-8 must be >= 1"),
        ("optiml.tools.inspect", ["mixture", "train", "--steps", "x"], "'x' is not int"),
        ("optiml.pipeline.prepare", ["--tasks=a", "--cache_dir=c", "--num_shards=0"], "be >= 1"),
        (
            "optiml.pipeline.prepare",
            ["--tasks=a", "--cache_dir=c", "--shard_index=2", "--num_shards=2"],
            "--shard_index 2 must be below --num_shards 2",
        ),
    ],
)
def test_command_line_tools_refuse_out_of_range_numbers(
    module: str, args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
