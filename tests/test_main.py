"""The gin entry point: bindings, macros, RUN, config.gin, and one-line configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optiml import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module `ginjob` with an entry function, and a gin file `job.gin` that runs it."""
    (tmp_path / "ginjob.py").write_text(
        textwrap.dedent(
            """
            def train(*, model_dir, steps=3, lr=0.1):
                import pathlib
                pathlib.Path(model_dir, "result.txt").write_text(f"{steps} {lr}")
                return steps, lr
            """
        )
    )
    (tmp_path / "job.gin").write_text(
        textwrap.dedent(
            """
            from __gin__ import dynamic_registration
            import ginjob
            MODEL_DIR = %gin.REQUIRED
            STEPS = 5
            RUN = @ginjob.train
            ginjob.train.model_dir = %MODEL_DIR
            ginjob.train.steps = %STEPS
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_runs_the_function_bound_to_run_and_writes_config(job: Path) -> None:
    run_dir = job / "run"
    result = main.main(
        ["--gin_file=job.gin", f"--gin.MODEL_DIR='{run_dir}'", "--gin.ginjob.train.lr=0.5"]
    )
    assert result == (5, 0.5)
    assert (run_dir / "result.txt").read_text() == "5 0.5"
    config = (run_dir / "config.gin").read_text()
    assert "ginjob.train.lr = 0.5" in config and "ginjob.train.steps = %STEPS" in config
    assert "STEPS = 5" in config


def test_later_binding_wins_and_macros_can_be_overridden(job: Path) -> None:
    args = ["--gin_file", "job.gin", f"--gin.MODEL_DIR='{job}/r'", "--gin.STEPS=7"]
    assert main.main(args + ["--gin.ginjob.train.lr=1", "--gin.ginjob.train.lr=2"]) == (7, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gin.NO_SUCH_THING=1"], "NO_SUCH_THING"),
        (["--gin_file=job.gin", "--gin.MODEL_DIR='x'", "--gin.NOPE=1"], "NOPE"),
        (["--gin_file=missing.gin"], "missing.gin"),
        (["--gin_file=job.gin"], "MODEL_DIR"),
        (["--gin_file=job.gin", "--gin.MODEL_DIR='x'", "--gin.ginjob.train.nope=3"], "nope"),
        (["--gin_file=job.gin", "--gin.MODEL_DIR='x'", "--gin.nomodule.f.x=3"], "nomodule.f"),
        (["--gin_file=job.gin", "--gin.MODEL_DIR='x'", "--gin.ginjob.train.lr=(1"], "lr=(1"),
        (["--gin_file=job.gin", "--gin.MODEL_DIR='x'", "--gin.ginjob.train.lr=%ZZ"], "%ZZ"),
        (["--gin_file=job.gin", "--bogus"], "--bogus"),
    ],
)
def test_configuration_errors_name_the_culprit(job: Path, args: list[str], message: str) -> None:
    with pytest.raises(main.ConfigError, match=message.replace("(", r"\(")):
        main.main(args)
    assert not (job / "x").exists(), "nothing may run when the configuration is wrong"


def test_run_macro_is_required(job: Path) -> None:
    (job / "norun.gin").write_text("X = 1\n")
    with pytest.raises(main.ConfigError, match="RUN"):
        main.main(["--gin_file=norun.gin"])


def test_command_line_error_is_one_line_and_nonzero(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "optiml.main", "--gin.NO_SUCH_THING=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "NO_SUCH_THING" in lines[0], proc.stderr


@pytest.mark.parametrize("tool", sorted(main.TOOLS))
def test_every_tool_parses_its_arguments(tool: str, capsys) -> None:
    """`optiml TOOL --help` reaches the tool's own argument parser: its usage, exit 0."""
    import importlib

    module = importlib.import_module(main.TOOLS[tool].module)
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0, main.TOOLS[tool]
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and len(out.splitlines()) > 2, out[:500]


def test_console_script_dispatches_tools(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optiml.main",
            "memory",
            "--size",
            "125m",
            "--mesh",
            "data=8",
            "--batch",
            "8",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "125,239,296 params" in proc.stdout


def test_missing_include_names_the_file(job: Path) -> None:
    (job / "inc.gin").write_text("include 'models/nope.gin'\n")
    with pytest.raises(main.ConfigError, match="inc.gin.*models/nope.gin"):
        main.main(["--gin_file=inc.gin"])


def test_includes_resolve_in_optiml_gin_folder(job: Path) -> None:
    (job / "model.gin").write_text("include 'models/tiny.gin'\nRUN = @ginjob.train\n")
    (job / "full.gin").write_text(
        "from __gin__ import dynamic_registration\nimport ginjob\ninclude 'model.gin'\n"
        "ginjob.train.model_dir = %MODEL_CONFIG\n"
    )
    function, _ = main.parse_config(["full.gin"], [], [])
    assert function.__name__ == "train"


@pytest.mark.parametrize("holds_runs", [True, False])
def test_quickstart_gin_parses_again_and_again_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holds_runs: bool
) -> None:
    """`make run` twice: the first run leaves ./runs/, and `python -m` puts the working directory
    on sys.path, so `runs` is importable as a namespace package; `include 'runs/finetune.gin'`
    must still read optiml's gin file (gin's package lookup failed with a TypeError here)."""
    if holds_runs:
        (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for _ in range(2):
        function, model_dir = main.parse_config(
            ["runs/quickstart.gin"], ["MODEL_DIR = 'runs/quickstart'"], []
        )
        assert (function.__module__, function.__name__) == ("optiml.quickstart", "run")
        assert model_dir == "runs/quickstart"
