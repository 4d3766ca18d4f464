"""`prepare --processes N`: forked workers write the same cache as one process, a broken task is
still recorded by name, a worker that dies stops the run with one line and a rerun resumes, and a
process whose JAX runtime is running prepares alone instead of forking.

The scenarios run in a fresh interpreter (`DRIVER`): whether pytest's own process may fork
depends on which tests ran before (JAX started or not), and the point is to fork for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cache_testing import same_cache

from optiml.pipeline import prepare

TASKS = [f"workers_test_{c}" for c in "abcdef"]

DRIVER = r"""
import json, os, sys
from pathlib import Path

import seqio

from optiml import errors
from optiml.bench.sources import common
from optiml.pipeline import cache, prepare, workers

root = Path(sys.argv[1])
vocab = seqio.ByteVocabulary()
features = {"inputs": seqio.Feature(vocab, add_eos=False),
            "targets": seqio.Feature(vocab, add_eos=True)}
steps = [seqio.preprocessors.tokenize, seqio.preprocessors.append_eos]
names = [f"workers_test_{c}" for c in "abcdef"]
for k, name in enumerate(names):
    rows = [common.Example(str(i), f"{name}: count to {i}.", " " + " ".join(map(str, range(i))))
            for i in range(1, 3 + 2 * k)]
    seqio.TaskRegistry.add(name, source=common.function_source(name, lambda s, r=rows: r),
                           preprocessors=steps, output_features=features)

def broken(split):
    raise common.SourceDataError("workers_test_broken: no local files in /nowhere")

seqio.TaskRegistry.add("workers_test_broken", preprocessors=steps, output_features=features,
                       source=common.function_source("workers_test_broken", broken))
names.append("workers_test_broken")

def summary(report):
    return {"prepared": sorted(report.prepared), "direct": sorted(report.direct),
            "skipped": sorted(report.skipped), "failed": report.failed,
            "examples": report.num_examples}

out = {"reason_before": workers.reason_not_to_fork()}
out["one"] = summary(prepare.prepare(names, root / "one"))
out["two"] = summary(prepare.prepare(names, root / "two", processes=2))

real = prepare.prepare_one
def dying(name, *args, **kwargs):
    if name == "workers_test_c":
        os._exit(3)  # as if killed, or out of memory
    return real(name, *args, **kwargs)

prepare.prepare_one = dying  # the workers fork from here, so they run it
try:
    prepare.prepare(names, root / "died", processes=2)
    out["died"] = None
except errors.RunStopped as error:
    out["died"] = str(error)
prepare.prepare_one = real
out["kept"] = sorted(n for n in names if cache.read_info(root / "died", "train", n))
out["again"] = summary(prepare.prepare(names, root / "died", processes=2))

import jax.numpy as jnp
jnp.zeros(1).block_until_ready()
out["reason_after"] = workers.reason_not_to_fork()
out["alone"] = summary(prepare.prepare(names, root / "alone", processes=2))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("workers")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return root, json.loads(line[len("RESULT ") :]), done.stderr


def test_two_workers_write_the_cache_of_one_process_byte_for_byte(runs) -> None:
    root, out, _ = runs
    assert out["reason_before"] is None  # a fresh process may fork
    assert out["two"] == out["one"]
    assert out["one"]["prepared"] == TASKS and out["one"]["direct"] == TASKS
    assert list(out["one"]["failed"]) == ["workers_test_broken"]
    assert "no local files in /nowhere" in out["two"]["failed"]["workers_test_broken"]
    assert out["one"]["examples"] == sum(2 + 2 * k for k in range(len(TASKS)))
    same_cache(root / "one", root / "two", "train", TASKS)


def test_a_dead_worker_stops_the_run_in_one_line_and_a_rerun_resumes(runs) -> None:
    root, out, _ = runs
    assert out["died"] is not None and "\n" not in out["died"]
    assert "worker process died" in out["died"] and "rerun" in out["died"]
    assert "workers_test_c" not in out["kept"]
    again = out["again"]
    assert again["skipped"] == out["kept"]  # nothing finished is done twice
    assert sorted(again["prepared"] + again["skipped"]) == TASKS
    assert list(again["failed"]) == ["workers_test_broken"]
    same_cache(root / "one", root / "died", "train", TASKS)


def test_with_jax_running_it_prepares_alone_and_says_why(runs) -> None:
    root, out, stderr = runs
    assert out["reason_after"] == "JAX's runtime is running in this process"
    assert out["alone"] == out["one"]
    assert "cannot fork workers: preparing in this process" in stderr
    same_cache(root / "one", root / "alone", "train", TASKS)


def test_the_command_line_checks_processes(tmp_path) -> None:
    base = ["--tasks", "x", "--cache_dir", str(tmp_path), "--module", "seqio"]
    for bad in (["--processes=0"], ["--processes=2", "--runner=DirectRunner"],
                ["--processes=2", "--verify"]):  # fmt: skip
        with pytest.raises(SystemExit) as stop:
            prepare.main(base + bad)
        assert stop.value.code == 2
