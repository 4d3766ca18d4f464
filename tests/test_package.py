"""Packaging and start-up hygiene: the package carries tasks/ and gin/ and imports cheaply."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


# Modules that must stay free of TensorFlow (only the loaders, the pipeline, the registry and
# evaluation may import it). A renamed module fails the import below instead of dropping out.
TF_FREE = [
    "optiml",
    "optiml.paths",
    "optiml.token_ids",
    "optiml.quiet",
    "optiml.cli",
    "optiml.main",
    "optiml.models.opt",
    "optiml.models.decoding",
    "optiml.models.convert",
    "optiml.models.formats",
    "optiml.models.tokenizer",
    "optiml.lm",
    "optiml.evaluation.harness",
    "optiml.partitioning",
    "optiml.tools.memory",
    "optiml.models.params",
]


@pytest.mark.parametrize("module", TF_FREE)
def test_import_does_not_load_tensorflow(module: str, tmp_path: Path) -> None:
    proc = _run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        tmp_path,
        PYTHONPATH=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert "tensorflow" not in imported and "seqio" not in imported, module


@pytest.mark.slow
def test_wheel_installs_with_tasks_and_gin(tmp_path: Path) -> None:
    """`pip install .` (not editable) into a fresh venv; import from elsewhere finds tasks/."""
    wheels = tmp_path / "wheels"
    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = wheels.glob("optiml-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "optiml/_tasks/README.md" in names and "optiml/_gin/README.md" in names
    repo_tasks = {
        str(p.relative_to(REPO / "tasks")) for p in (REPO / "tasks").rglob("*") if p.is_file()
    }
    wheel_tasks = {n[len("optiml/_tasks/") :] for n in names if n.startswith("optiml/_tasks/")}
    assert repo_tasks <= wheel_tasks, repo_tasks - wheel_tasks

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    # The fresh venv sees the dependencies of the current one through a .pth file, so the test
    # installs only optiml itself (the full dependency install is what .ci/run does).
    site = Path(
        _run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            tmp_path,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", str(wheel)], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import optiml, optiml.paths as p; "
        "assert 'site-packages' in optiml.__file__, optiml.__file__; "
        "print(p.tasks_dir()); print(p.gin_dir())"
    )
    proc = _run([str(venv / "bin" / "python"), "-c", code], elsewhere, PYTHONPATH="")
    assert proc.returncode == 0, proc.stderr[-2000:]
    tasks, gin = proc.stdout.split()
    assert tasks.endswith("optiml/_tasks") and (Path(tasks) / "README.md").is_file()
    assert gin.endswith("optiml/_gin") and (Path(gin) / "README.md").is_file()
