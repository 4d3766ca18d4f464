"""tpu_scripts/ on several slices (--num-slices): one queued resource, every worker of every
slice reached, each slice's MEGASCALE environment, launch/logs/stop for real on fake workers."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import tpu_testing
from tpu_testing import (
    GIN,
    NODES,
    PYTHON_ARGS,
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

env = tpu_testing.env  # the fixture: PATH with the fake gcloud


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
    assert [remote(cmd, node=node) for cmd, node in zip(setup, NODES, strict=True)] == [
        remote(dry_run("setup.sh", *TPU, "--git-url", url, "--ref", "v0.1", env=env)[0])
    ] * 2
    data = dry_run("data.sh", *SLICES, "--from", "gs://b/cache", "--to", "cache", env=env)
    assert [cmd[5] for cmd in data] == NODES
    stop = dry_run("stop.sh", *SLICES, "--run", "r1", env=env)
    assert [cmd[5] for cmd in stop] == NODES and all(flag(c, "--worker") == "all" for c in stop)
    [logs] = dry_run("logs.sh", *SLICES, "--run", "r1", env=env)  # process 0: worker 0 of slice 0
    assert remote(logs, worker="0", node="optiml-30b-0") == "tail -n 100 optiml-runs/r1.log"
    [logs] = dry_run("logs.sh", *SLICES, "--run", "r1", "--slice", "1", env=env)
    assert logs[5] == "optiml-30b-1"
    every = dry_run("logs.sh", *SLICES, "--run", "r1", "--slice", "all", "--worker=all", env=env)
    assert [remote(cmd, node=node) for cmd, node in zip(every, NODES, strict=True)]


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
        program = remote(cmd, node=node).split("; nohup ", 1)[1].split(" > ", 1)[0]
        assert shlex.split(program) == [
            "env",
            "OPTIML_DATA_DIR=optiml-data",
            *_megascale(slice_id),
            "optiml-venv/bin/python",
            *PYTHON_ARGS,
        ]


def test_multislice_launch_logs_stop_for_real_on_fake_workers(env):
    homes = [fake_worker(env, Path(env["FAKE_HOME"]) / node) for node in NODES]
    pid_files = [home / "optiml-runs" / "r1.pid" for home in homes]
    try:
        launched = script("launch.sh", *SLICES, "--run", "r1", *GIN, env=env)
        assert launched.stdout.count("started r1 on") == 2
        for slice_id, home in enumerate(homes):
            wait_for(home / "args.txt")
            assert (home / "args.txt").read_text().splitlines() == PYTHON_ARGS
            assert (home / "megascale.txt").read_text().splitlines() == sorted(_megascale(slice_id))
        pids = [int(pid_file.read_text()) for pid_file in pid_files]
        for home in homes:
            wait_for(home / "optiml-runs" / "r1.log")
        logs = script("logs.sh", *SLICES, "--run", "r1", "--slice", "all", env=env)
        assert logs.stdout.count("training step 1") == 2
        stopped = script("stop.sh", *SLICES, "--run", "r1", env=env)
        assert stopped.stdout.count("stopped r1 on") == 2
        for pid in pids:
            wait_until_dead(pid)
    finally:
        kill_leftovers(pid_files)
    calls = [json.loads(line) for line in Path(env["FAKE_GCLOUD_LOG"]).read_text().splitlines()]
    assert calls[0][:5] == ["compute", "tpus", "tpu-vm", "describe", "optiml-30b-0"]
    assert [call[4] for call in calls[1:]] == NODES * 3  # launch, logs, stop: each slice
