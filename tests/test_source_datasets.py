"""The loaders' tf.data datasets: rows sliced from tensors (`common.in_memory_dataset`), never
`Dataset.from_generator`, whose iterators TensorFlow finalizes with a `KeyError` traceback when
a pipeline is torn down mid-read (a mixture's repeated tasks after the first batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optiml.bench.sources import common

REPO = Path(__file__).resolve().parents[1]
FIELDS = {**common.TEXT_FIELDS, "options": [str], "label": int}


def _row(i: int, references: list[str], options: list[str]) -> dict:
    text = {k: f"{k} {i}" for k in ("id", "task", "inputs", "targets")}
    return {**text, "references": references, "options": options, "label": i}


def test_rows_come_back_with_the_generator_era_types() -> None:
    tf = pytest.importorskip("tensorflow")
    rows = [_row(0, ["a", "b"], []), _row(1, [], ["x", "y", "z"])]
    ds = common.in_memory_dataset(rows, FIELDS)
    spec = ds.element_spec
    assert spec["inputs"] == tf.TensorSpec([], tf.string)
    assert spec["references"] == tf.TensorSpec([None], tf.string)
    assert spec["label"] == tf.TensorSpec([], tf.int32)
    got = [
        {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in ex.items()}
        for ex in ds.as_numpy_iterator()
    ]
    assert got == [
        {k: (v.encode() if isinstance(v, str) else [x.encode() for x in v] if isinstance(v, list)
             else v) for k, v in row.items()}
        for row in rows
    ]  # fmt: skip
    empty = common.in_memory_dataset([], FIELDS)
    assert empty.element_spec == spec and list(empty) == []


TEARDOWN = """
import gc, sys
from optiml import quiet
quiet.set_verbose(True)  # C++ warnings on: the finalization error is one
import tensorflow as tf
from optiml.bench.sources import common

rows = [{"inputs": "a"}]
if sys.argv[1] == "generator":
    make = lambda: tf.data.Dataset.from_generator(
        lambda: iter(rows), output_signature={"inputs": tf.TensorSpec([], tf.string)})
else:
    make = lambda: common.in_memory_dataset(rows, {"inputs": str})
for _ in range(40):  # read one element of a repeated, prefetched pipeline, then tear it down
    it = iter(make().repeat().map(lambda x: x, num_parallel_calls=4).prefetch(16))
    next(it)
    del it
    gc.collect()
"""


def _teardowns(kind: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", TEARDOWN, kind], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


@pytest.mark.slow
def test_tearing_a_pipeline_down_mid_read_leaves_no_traceback() -> None:
    assert "KeyError" not in _teardowns("sliced")
    # the control: TensorFlow's generator iterators fail like this (about 1 teardown in 5 on an
    # idle machine; a race, so rarer under other timings: up to 3 x 40 teardowns)
    if not any("KeyError: np.int64(" in _teardowns("generator") for _ in range(3)):
        pytest.skip("TensorFlow's generator teardown error did not occur in 120 teardowns here")


@pytest.mark.data
def test_the_loaders_build_no_generator_dataset(data_dir) -> None:
    import seqio

    import optiml.registry  # noqa: F401

    for name in ("optiml:niv2:task195_sentiment140_classification", "optiml:mmlu:anatomy"):
        split = "train" if "niv2" in name else "test"
        ds = seqio.get_mixture_or_task(name).source.get_dataset(split, shuffle=False)
        graph = ds._as_serialized_graph().numpy()  # the pipeline's ops
        assert b"GeneratorDataset" not in graph and b"TensorSliceDataset" in graph, name
