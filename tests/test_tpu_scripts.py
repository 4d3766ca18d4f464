"""tpu_scripts/: every script's --dry-run prints the exact gcloud commands (checked word by word),
and launch/logs/stop really run their remote commands against a fake `gcloud` that executes
`tpu-vm ssh --command=...` locally in a fake worker home, so the quoting is tested end to end;
the same for multislice (--num-slices: one queued resource, every worker of every slice, the
MEGASCALE environment)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tpu_scripts"
ALL_SCRIPTS = ["create.sh", "setup.sh", "data.sh", "launch.sh", "logs.sh", "stop.sh", "delete.sh"]
TPU = ["--name", "optiml-30b", "--zone", "us-central2-b"]

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


@pytest.mark.parametrize("name", ALL_SCRIPTS + ["common.sh"])
def test_scripts_are_valid_bash(name):
    subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None and os.environ.get("CI") != "true",
    reason="shellcheck is not installed (.ci/run installs it; in CI this test must run)",
)
def test_scripts_pass_shellcheck():
    subprocess.run(
        ["shellcheck", "-x", *ALL_SCRIPTS, "common.sh"], cwd=SCRIPTS, check=True, timeout=60
    )
    subprocess.run(["shellcheck", REPO / ".ci" / "run"], check=True, timeout=60)


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_every_script_has_help_with_dry_run(name, env):
    result = script(name, "--help", env=env)
    out = result.stdout
    assert result.stderr == ""  # e.g. no stray command substitution in the usage text
    assert out.startswith(f"usage: tpu_scripts/{name}")
    assert "--dry-run" in out and "--name NAME" in out


@pytest.mark.parametrize(
    "accelerator, runtime",
    [
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5p-128", "v2-alpha-tpuv5"),
        ("v5litepod-64", "v2-alpha-tpuv5-lite"),
        ("v6e-64", "v2-alpha-tpuv6e"),
    ],
)
def test_create_a_tpu_vm(accelerator, runtime, env):
    [cmd] = dry_run("create.sh", *TPU, f"--accelerator-type={accelerator}", "--spot", env=env)
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "optiml-30b"]
    assert flag(cmd, "--zone") == "us-central2-b"
    assert flag(cmd, "--accelerator-type") == accelerator
    assert flag(cmd, "--version") == runtime
    assert "--spot" in cmd and "--project" not in " ".join(cmd)


def test_create_a_queued_resource_and_wait(env):
    commands = dry_run(
        "create.sh",
        *TPU,
        "--accelerator-type",
        "v4-128",
        "--queued",
        "--valid-until",
        "6h",
        "--project",
        "my-project",
        env=env,
    )
    create, describe = commands
    assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "optiml-30b"]
    assert flag(create, "--node-id") == "optiml-30b"
    assert flag(create, "--accelerator-type") == "v4-128"
    assert flag(create, "--runtime-version") == "tpu-ubuntu2204-base"
    assert flag(create, "--valid-until-duration") == "6h"
    assert flag(create, "--project") == "my-project"
    assert "--spot" not in create
    assert describe[:5] == ["gcloud", "compute", "tpus", "queued-resources", "describe"]
    assert flag(describe, "--format") == "value(state.state)"


def _remote(cmd: list[str], worker: str = "all", node: str = "optiml-30b") -> str:
    assert cmd[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
    assert cmd[5] == node and flag(cmd, "--zone") == "us-central2-b"
    assert flag(cmd, "--worker") == worker
    return flag(cmd, "--command")


def _lock_jax_version() -> str:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return next(line.split("==")[1] for line in lines if line.startswith("jax=="))


def test_setup_from_a_git_ref_on_every_worker(env):
    [cmd] = dry_run(
        "setup.sh", *TPU, "--git-url", "https://github.com/org/optiml.git", "--ref=v0.1", env=env
    )
    steps = _remote(cmd).split(" && ")
    assert "git clone --quiet https://github.com/org/optiml.git optiml-src" in steps
    assert "git -C optiml-src checkout --quiet v0.1" in steps
    assert "python3.11 -m venv optiml-venv" in steps
    install = next(s for s in steps if " -r " in s)
    assert shlex.split(install) == [
        "optiml-venv/bin/pip",
        "install",
        "--quiet",
        "-r",
        "optiml-src/requirements.lock",
        f"jax[tpu]=={_lock_jax_version()}",
    ]
    assert "optiml-venv/bin/pip install --quiet --no-deps ./optiml-src" in steps
    assert steps[-1].startswith("optiml-venv/bin/python -c 'import jax, optiml;")


def test_setup_from_a_wheel_copies_it_with_the_lock(env, tmp_path):
    wheel = tmp_path / "optiml-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    mkdir, scp, install = dry_run("setup.sh", *TPU, "--wheel", str(wheel), env=env)
    assert _remote(mkdir) == "mkdir -p optiml-install"
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5:8] == [str(wheel), str(REPO / "requirements.lock"), "optiml-30b:optiml-install/"]
    assert flag(scp, "--worker") == "all"
    steps = _remote(install).split(" && ")
    assert f"-r optiml-install/requirements.lock 'jax[tpu]=={_lock_jax_version()}'" in " ".join(
        steps
    )
    assert f"optiml-venv/bin/pip install --quiet --no-deps optiml-install/{wheel.name}" in steps


def test_data_copy_and_mount(env):
    [copy] = dry_run(
        "data.sh", *TPU, "--from", "gs://bucket/optiml/cache", "--to", "optiml-cache", env=env
    )
    assert _remote(copy) == (
        "mkdir -p optiml-cache && gcloud storage rsync --recursive gs://bucket/optiml/cache "
        "optiml-cache"
    )
    [mount] = dry_run(
        "data.sh", *TPU, "--from=gs://bucket/optiml/data", "--to=/mnt/data", "--mount", env=env
    )
    remote = _remote(mount)
    assert "apt-get install -y -qq gcsfuse" in remote
    mount_step = "gcsfuse -o ro --implicit-dirs --only-dir optiml/data bucket /mnt/data"
    assert remote.endswith(f"mkdir -p /mnt/data && {mount_step}")


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


def test_launch_dry_run_passes_gin_files_and_bindings_through(env):
    [cmd] = dry_run("launch.sh", *TPU, "--run", "opt-iml-30b", *GIN, env=env)
    remote = _remote(cmd)
    program = remote.split("; nohup ", 1)[1].split(" > ", 1)[0]
    assert shlex.split(program) == [
        "env",
        "OPTIML_DATA_DIR=optiml-data",
        "optiml-venv/bin/python",
        *PYTHON_ARGS,
    ]
    assert (
        "> optiml-runs/opt-iml-30b.log 2>&1 < /dev/null & echo $! > optiml-runs/opt-iml-30b.pid"
    ) in remote


def test_launch_without_distributed_bindings(env):
    [cmd] = dry_run(
        "launch.sh", *TPU, "--run", "eval", "--gin_file=runs/eval.gin", "--no-distributed", env=env
    )
    program = _remote(cmd).split("; nohup ", 1)[1].split(" > ", 1)[0]
    assert shlex.split(program)[-3:] == ["-m", "optiml.main", "--gin_file=runs/eval.gin"]


def _fake_worker(env: dict[str, str], home: Path | None = None) -> Path:
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


def _wait_for(path: Path) -> None:
    for _ in range(100):
        if path.exists() and path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def _wait_until_dead(pid: int) -> None:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run {pid} is still alive after stop.sh")


def _kill_leftovers(pid_files: list[Path]) -> None:
    """Cleans up the fake runs a test started, should stop.sh not have."""
    for pid_file in pid_files:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def test_launch_logs_stop_run_for_real_on_a_fake_worker(env):
    home = _fake_worker(env)
    args = [*TPU, "--run", "r1", "--data-dir", "/data/optiml", "--env", "LIBTPU_INIT_ARGS=--x=1"]
    pid_file = home / "optiml-runs" / "r1.pid"
    try:
        launched = script("launch.sh", *args, *GIN, env=env)
        assert "started r1 on" in launched.stdout
        _wait_for(home / "args.txt")
        assert (home / "args.txt").read_text().splitlines() == PYTHON_ARGS
        assert (home / "data.txt").read_text().strip() == "/data/optiml"
        assert (home / "megascale.txt").read_text() == ""  # one slice: no DCN runtime
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # alive

        again = script("launch.sh", *args, *GIN, env=env, check=False)
        assert again.returncode != 0 and "run r1 is already running" in again.stderr

        _wait_for(home / "optiml-runs" / "r1.log")
        logs = script("logs.sh", *TPU, "--run", "r1", "--lines", "5", env=env)
        assert "training step 1" in logs.stdout

        stopped = script("stop.sh", *TPU, "--run", "r1", env=env)
        assert "stopped r1 on" in stopped.stdout
        assert not pid_file.exists()
        _wait_until_dead(pid)
    finally:
        _kill_leftovers([pid_file])
    calls = [json.loads(line) for line in Path(env["FAKE_GCLOUD_LOG"]).read_text().splitlines()]
    assert [c[:4] for c in calls] == [["compute", "tpus", "tpu-vm", "ssh"]] * 4
    assert all("--worker=all" in c for c in (calls[0], calls[1], calls[3]))
    assert "--worker=0" in calls[2]  # logs: process 0 by default


def test_logs_follow_and_stop_kill(env):
    [logs] = dry_run("logs.sh", *TPU, "--run", "r1", "--follow", "--worker", "all", env=env)
    assert _remote(logs) == "tail -F -n 100 optiml-runs/r1.log"
    [stop] = dry_run("stop.sh", *TPU, "--run", "r1", "--kill", env=env)
    assert 'kill -KILL "$(cat optiml-runs/r1.pid)"' in _remote(stop)


def test_delete(env):
    [vm] = dry_run("delete.sh", *TPU, env=env)
    assert vm == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "delete",
        "optiml-30b",
        "--zone=us-central2-b",
        "--quiet",
    ]
    [queued] = dry_run("delete.sh", *TPU, "--queued", "--no-wait", env=env)
    assert queued[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "optiml-30b"]
    assert "--force" in queued and "--async" in queued


SLICES = [*TPU, "--num-slices", "2"]
NODES = ["optiml-30b-0", "optiml-30b-1"]


def test_create_multislice_is_one_queued_resource(env):
    create, describe = dry_run(
        "create.sh", *SLICES, "--accelerator-type", "v4-128", "--spot", env=env
    )
    assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "optiml-30b"]
    assert flag(create, "--node-count") == "2" and flag(create, "--node-prefix") == "optiml-30b"
    assert not [word for word in create if word.startswith("--node-id")]
    assert flag(create, "--accelerator-type") == "v4-128" and "--spot" in create
    assert describe[4:6] == ["describe", "optiml-30b"]  # waits until the whole request is ACTIVE
    [delete] = dry_run("delete.sh", *SLICES, env=env)  # the queued resource with both slices
    assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "optiml-30b"]
    assert "--force" in delete


def test_setup_data_stop_and_logs_reach_every_slice(env):
    url = "https://github.com/org/optiml.git"
    setup = dry_run("setup.sh", *SLICES, "--git-url", url, "--ref", "v0.1", env=env)
    assert [_remote(cmd, node=node) for cmd, node in zip(setup, NODES, strict=True)] == [
        _remote(dry_run("setup.sh", *TPU, "--git-url", url, "--ref", "v0.1", env=env)[0])
    ] * 2
    data = dry_run("data.sh", *SLICES, "--from", "gs://b/cache", "--to", "cache", env=env)
    assert [cmd[5] for cmd in data] == NODES
    stop = dry_run("stop.sh", *SLICES, "--run", "r1", env=env)
    assert [cmd[5] for cmd in stop] == NODES and all(flag(c, "--worker") == "all" for c in stop)
    [logs] = dry_run("logs.sh", *SLICES, "--run", "r1", env=env)  # process 0: worker 0 of slice 0
    assert _remote(logs, worker="0", node="optiml-30b-0") == "tail -n 100 optiml-runs/r1.log"
    [logs] = dry_run("logs.sh", *SLICES, "--run", "r1", "--slice", "1", env=env)
    assert logs[5] == "optiml-30b-1"
    every = dry_run("logs.sh", *SLICES, "--run", "r1", "--slice", "all", "--worker=all", env=env)
    assert [_remote(cmd, node=node) for cmd, node in zip(every, NODES, strict=True)]


def _megascale(slice_id: int) -> list[str]:
    return [
        "MEGASCALE_COORDINATOR_ADDRESS=10.0.0.2:8081",
        "MEGASCALE_NUM_SLICES=2",
        f"MEGASCALE_SLICE_ID={slice_id}",
        "MEGASCALE_PORT=8081",
    ]


def test_launch_multislice_dry_run_joins_the_slices(env):
    commands = dry_run(
        "launch.sh", *SLICES, "--run", "opt-iml-30b", "--coordinator", "10.0.0.2", *GIN, env=env
    )
    assert len(commands) == 2
    for slice_id, (cmd, node) in enumerate(zip(commands, NODES, strict=True)):
        program = _remote(cmd, node=node).split("; nohup ", 1)[1].split(" > ", 1)[0]
        assert shlex.split(program) == [
            "env",
            "OPTIML_DATA_DIR=optiml-data",
            *_megascale(slice_id),
            "optiml-venv/bin/python",
            *PYTHON_ARGS,
        ]


def test_multislice_launch_logs_stop_for_real_on_fake_workers(env):
    homes = [_fake_worker(env, Path(env["FAKE_HOME"]) / node) for node in NODES]
    pid_files = [home / "optiml-runs" / "r1.pid" for home in homes]
    try:
        launched = script("launch.sh", *SLICES, "--run", "r1", *GIN, env=env)
        assert launched.stdout.count("started r1 on") == 2
        for slice_id, home in enumerate(homes):
            _wait_for(home / "args.txt")
            assert (home / "args.txt").read_text().splitlines() == PYTHON_ARGS
            assert (home / "megascale.txt").read_text().splitlines() == sorted(_megascale(slice_id))
        pids = [int(pid_file.read_text()) for pid_file in pid_files]
        for home in homes:
            _wait_for(home / "optiml-runs" / "r1.log")
        logs = script("logs.sh", *SLICES, "--run", "r1", "--slice", "all", env=env)
        assert logs.stdout.count("training step 1") == 2
        stopped = script("stop.sh", *SLICES, "--run", "r1", env=env)
        assert stopped.stdout.count("stopped r1 on") == 2
        for pid in pids:
            _wait_until_dead(pid)
    finally:
        _kill_leftovers(pid_files)
    calls = [json.loads(line) for line in Path(env["FAKE_GCLOUD_LOG"]).read_text().splitlines()]
    assert calls[0][:5] == ["compute", "tpus", "tpu-vm", "describe", "optiml-30b-0"]
    assert [call[4] for call in calls[1:]] == NODES * 3  # launch, logs, stop: each slice


def test_tpu_flags_come_from_the_environment(env):
    env.update(OPTIML_TPU_NAME="from-env", OPTIML_TPU_ZONE="europe-west4-a")
    [cmd] = dry_run("delete.sh", env=env)
    assert cmd[5] == "from-env" and flag(cmd, "--zone") == "europe-west4-a"


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("create.sh", ["--zone", "z", "--accelerator-type", "v4-8"], "no TPU name"),
        ("create.sh", [*TPU], "--accelerator-type is required"),
        ("create.sh", [*TPU, "--accelerator-type", "tpu9-8"], "no default runtime version"),
        ("setup.sh", [*TPU], "pass --git-url URL"),
        ("data.sh", [*TPU, "--from", "/local", "--to", "d"], "--from must be a Cloud Storage"),
        ("launch.sh", [*TPU, "--run", "r1"], "at least one --gin_file is required"),
        ("launch.sh", [*TPU, "--run", "a b", "--gin_file=x.gin"], "run name 'a b'"),
        ("logs.sh", [*TPU, "--run", "r1", "--worker", "first"], "--worker must be"),
        ("stop.sh", [*TPU, "--bogus"], "unknown argument '--bogus'"),
        ("stop.sh", [*TPU, "--run", "r1", "--num-slices", "0"], "--num-slices must be a positive"),
        ("logs.sh", [*SLICES, "--run", "r1", "--slice", "2"], "an index below --num-slices 2"),
        (
            "launch.sh",
            [*SLICES, "--run", "r1", "--gin_file=x.gin"],
            "--dry-run with --num-slices needs --coordinator IP, see: gcloud compute tpus tpu-vm "
            "describe optiml-30b-0 --zone=us-central2-b",
        ),
    ],
)
def test_bad_arguments_are_refused_with_a_message(name, args, message, env):
    result = script(name, *args, "--dry-run", env=env, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert not Path(env["FAKE_GCLOUD_LOG"]).exists()
