"""tpu_scripts/: every script's --dry-run prints the exact gcloud commands (checked word by word),
and launch/logs/stop really run their remote commands against a fake `gcloud` that executes
`tpu-vm ssh --command=...` locally in a fake worker home, so the quoting is tested end to end
(multislice: test_tpu_multislice.py; the fake gcloud and workers: tpu_testing.py)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import tpu_testing
from tpu_testing import (
    GIN,
    PYTHON_ARGS,
    REPO,
    SCRIPTS,
    SLICES,
    TPU,
    dry_run,
    fake_worker,
    flag,
    kill_leftovers,
    remote,
    script,
    wait_for,
    wait_until_dead,
)

ALL_SCRIPTS = ["create.sh", "setup.sh", "data.sh", "launch.sh", "logs.sh", "stop.sh", "delete.sh"]
env = tpu_testing.env  # the fixture: PATH with the fake gcloud


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


def _lock_jax_version() -> str:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return next(line.split("==")[1] for line in lines if line.startswith("jax=="))


def test_setup_from_a_git_ref_on_every_worker(env):
    [cmd] = dry_run(
        "setup.sh", *TPU, "--git-url", "https://github.com/org/optiml.git", "--ref=v0.1", env=env
    )
    steps = remote(cmd).split(" && ")
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
    assert remote(mkdir) == "mkdir -p optiml-install"
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5:8] == [str(wheel), str(REPO / "requirements.lock"), "optiml-30b:optiml-install/"]
    assert flag(scp, "--worker") == "all"
    steps = remote(install).split(" && ")
    assert f"-r optiml-install/requirements.lock 'jax[tpu]=={_lock_jax_version()}'" in " ".join(
        steps
    )
    assert f"optiml-venv/bin/pip install --quiet --no-deps optiml-install/{wheel.name}" in steps


def test_data_copy_and_mount(env):
    [copy] = dry_run(
        "data.sh", *TPU, "--from", "gs://bucket/optiml/cache", "--to", "optiml-cache", env=env
    )
    assert remote(copy) == (
        "mkdir -p optiml-cache && gcloud storage rsync --recursive gs://bucket/optiml/cache "
        "optiml-cache"
    )
    [mount] = dry_run(
        "data.sh", *TPU, "--from=gs://bucket/optiml/data", "--to=/mnt/data", "--mount", env=env
    )
    line = remote(mount)
    assert "apt-get install -y -qq gcsfuse" in line
    mount_step = "gcsfuse -o ro --implicit-dirs --only-dir optiml/data bucket /mnt/data"
    assert line.endswith(f"mkdir -p /mnt/data && {mount_step}")


def test_launch_dry_run_passes_gin_files_and_bindings_through(env):
    [cmd] = dry_run("launch.sh", *TPU, "--run", "opt-iml-30b", *GIN, env=env)
    line = remote(cmd)
    program = line.split("; nohup ", 1)[1].split(" > ", 1)[0]
    assert shlex.split(program) == [
        "env",
        "OPTIML_DATA_DIR=optiml-data",
        "optiml-venv/bin/python",
        *PYTHON_ARGS,
    ]
    assert (
        "> optiml-runs/opt-iml-30b.log 2>&1 < /dev/null & echo $! > optiml-runs/opt-iml-30b.pid"
    ) in line


def test_launch_without_distributed_bindings(env):
    [cmd] = dry_run(
        "launch.sh", *TPU, "--run", "eval", "--gin_file=runs/eval.gin", "--no-distributed", env=env
    )
    program = remote(cmd).split("; nohup ", 1)[1].split(" > ", 1)[0]
    assert shlex.split(program)[-3:] == ["-m", "optiml.main", "--gin_file=runs/eval.gin"]


def test_launch_logs_stop_run_for_real_on_afake_worker(env):
    home = fake_worker(env)
    args = [*TPU, "--run", "r1", "--data-dir", "/data/optiml", "--env", "LIBTPU_INIT_ARGS=--x=1"]
    pid_file = home / "optiml-runs" / "r1.pid"
    try:
        launched = script("launch.sh", *args, *GIN, env=env)
        assert "started r1 on" in launched.stdout
        wait_for(home / "args.txt")
        assert (home / "args.txt").read_text().splitlines() == PYTHON_ARGS
        assert (home / "data.txt").read_text().strip() == "/data/optiml"
        assert (home / "megascale.txt").read_text() == ""  # one slice: no DCN runtime
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # alive

        again = script("launch.sh", *args, *GIN, env=env, check=False)
        assert again.returncode != 0 and "run r1 is already running" in again.stderr

        wait_for(home / "optiml-runs" / "r1.log")
        logs = script("logs.sh", *TPU, "--run", "r1", "--lines", "5", env=env)
        assert "training step 1" in logs.stdout

        stopped = script("stop.sh", *TPU, "--run", "r1", env=env)
        assert "stopped r1 on" in stopped.stdout
        assert not pid_file.exists()
        wait_until_dead(pid)
    finally:
        kill_leftovers([pid_file])
    calls = [json.loads(line) for line in Path(env["FAKE_GCLOUD_LOG"]).read_text().splitlines()]
    assert [c[:4] for c in calls] == [["compute", "tpus", "tpu-vm", "ssh"]] * 4
    assert all("--worker=all" in c for c in (calls[0], calls[1], calls[3]))
    assert "--worker=0" in calls[2]  # logs: process 0 by default


def test_logs_follow_and_stop_kill(env):
    [logs] = dry_run("logs.sh", *TPU, "--run", "r1", "--follow", "--worker", "all", env=env)
    assert remote(logs) == "tail -F -n 100 optiml-runs/r1.log"
    [stop] = dry_run("stop.sh", *TPU, "--run", "r1", "--kill", env=env)
    assert 'kill -KILL "$(cat optiml-runs/r1.pid)"' in remote(stop)


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
