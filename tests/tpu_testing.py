"""Helpers of the tpu_scripts/ tests: a fake `gcloud` on PATH that records its argv and runs
`tpu-vm ssh --command=...` locally in a fake worker home, the scripts' dry runs split into words,
and fake workers whose venv python records what a launch passed it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tpu_scripts"
TPU = ["--name", "optiml-30b", "--zone", "us-central2-b"]
SLICES = [*TPU, "--num-slices", "2"]
NODES = ["optiml-30b-0", "optiml-30b-1"]

FAKE_GCLOUD = r"""#!/usr/bin/env python3
# Records its argv; `compute tpus tpu-vm ssh NODE ... --command=CMD` runs CMD with bash in
# $FAKE_HOME/NODE when that folder exists (one worker home per slice), else in $FAKE_HOME;
# `compute tpus tpu-vm describe NODE ...` prints worker 0's internal IP address, 10.0.0.2.
import json, os, subprocess, sys
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
if os.environ.get("FAKE_GCLOUD_FORBID"):
    sys.exit("gcloud must not run in --dry-run mode")
if sys.argv[1:5] == ["compute", "tpus", "tpu-vm", "describe"]:
    print("10.0.0.2")
if sys.argv[1:5] == ["compute", "tpus", "tpu-vm", "ssh"]:
    command = next(a for a in sys.argv if a.startswith("--command="))[len("--command="):]
    home = os.path.join(os.environ["FAKE_HOME"], sys.argv[5])
    cwd = home if os.path.isdir(home) else os.environ["FAKE_HOME"]
    sys.exit(subprocess.call(["bash", "-c", command], cwd=cwd))
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """PATH with a fake gcloud that fails if called (dry runs must not call it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    home = tmp_path / "worker"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPTIML_TPU_")}
    environ.update(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        FAKE_GCLOUD_LOG=str(tmp_path / "gcloud.log"),
        FAKE_GCLOUD_FORBID="1",
        FAKE_HOME=str(home),
    )
    return environ


def script(name: str, *args: str, env: dict[str, str], check: bool = True):
    result = subprocess.run(
        ["bash", str(SCRIPTS / name), *args], capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def dry_run(name: str, *args: str, env: dict[str, str]) -> list[list[str]]:
    """The printed commands, each split into its words exactly as bash would."""
    out = script(name, *args, "--dry-run", env=env).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def flag(words: list[str], name: str) -> str:
    values = [w.split("=", 1)[1] for w in words if w.startswith(name + "=")]
    assert len(values) == 1, (name, words)
    return values[0]


def remote(cmd: list[str], worker: str = "all", node: str = "optiml-30b") -> str:
    assert cmd[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
    assert cmd[5] == node and flag(cmd, "--zone") == "us-central2-b"
    assert flag(cmd, "--worker") == worker
    return flag(cmd, "--command")


GIN = [
    "--gin_file=experiments/opt_iml_30b.gin",
    "--gin_file",
    "runs/extra.gin",
    "--gin.MODEL_DIR='gs://bucket/runs/it''s here'",
    "--gin.trainer.train.steps=4000",
]
DISTRIBUTED = [
    "--gin.trainer.train.distributed=@partitioning.DistributedConfig()",
    "--gin.partitioning.DistributedConfig.auto=True",
]
PYTHON_ARGS = [
    "-m",
    "optiml.main",
    "--gin_file=experiments/opt_iml_30b.gin",
    "--gin_file=runs/extra.gin",
    *DISTRIBUTED,  # before the user's bindings, which win
    "--gin.MODEL_DIR='gs://bucket/runs/it''s here'",
    "--gin.trainer.train.steps=4000",
]


def fake_worker(env: dict[str, str], home: Path | None = None) -> Path:
    """A worker home (default: the fake gcloud's) whose venv python writes its arguments,
    $OPTIML_DATA_DIR and MEGASCALE_* environment into args.txt, data.txt, megascale.txt in its
    working directory (the home), then sleeps."""
    home = home or Path(env["FAKE_HOME"])
    python = home / "optiml-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/usr/bin/env bash\n"
        'env | grep "^MEGASCALE_" | sort > megascale.txt\n'
        'echo "$OPTIML_DATA_DIR" > data.txt\n'
        'printf "%s\\n" "$@" > args.txt\n'
        "echo training step 1\n"
        "exec sleep 60\n"
    )
    python.chmod(0o755)
    env.pop("FAKE_GCLOUD_FORBID", None)
    return home


def wait_for(path: Path) -> None:
    for _ in range(100):
        if path.exists() and path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def wait_until_dead(pid: int) -> None:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run {pid} is still alive after stop.sh")


def kill_leftovers(pid_files: list[Path]) -> None:
    """Cleans up the fake runs a test started, should stop.sh not have."""
    for pid_file in pid_files:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
