"""The benchmark scripts' shared timing and the accelerator script's CPU smoke run (tiny config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import timing  # noqa: E402


def test_interleaved_runs_take_turns_and_report_median_range_and_load():
    calls = []
    runs = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 3
    assert [len(r.seconds) for r in runs.values()] == [3, 3]
    assert len(runs["a"].cpu_seconds) == len(runs["a"].loads) == 3
    runs["a"].seconds, runs["b"].seconds = [1.0, 2.0, 4.0], [4.0, 4.0, 4.0]
    assert runs["a"].rate(10) == 5.0  # median 2 s
    assert "5.0 items/s  (median of 3: 2.5 .. 10.0;" in runs["a"].line("items", 10)
    runs["a"].cpu_seconds, runs["b"].cpu_seconds = [1.0] * 3, [3.0] * 3
    assert timing.ratio_line(runs["a"], runs["b"], goal=1.5) == (
        "ratio a / b: 2.00 wall (meets the goal >= 1.5); 3.00 in CPU time"
    )
    assert "MISSES" in timing.ratio_line(runs["b"], runs["a"], goal=1.0)
    assert "load (1/5/15 min)" in timing.header(2)


@pytest.mark.slow
def test_the_accelerator_script_runs_on_cpu_with_a_tiny_config():
    small = "--size tiny --dtype float32 --batch 2 --length 64 --steps 1 --score_items 4 "
    small += "--score_batch 2 --decode_batch 2 --prompt 8 --new_tokens 4 --repeats 1"
    out = subprocess.run(
        [sys.executable, "benchmarks/accelerator.py", *small.split()],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    expected = [
        "one-off  optiml compile + first step",
        "warm-up  torch first step",
        "ratio optiml / torch:",
        "ratio optiml / lm-eval hf:",
        "ratio optiml / transformers:",
        "tokens equal to transformers': 100.0%",
    ]
    for line in expected:
        assert line in out.stdout, out.stdout
    diff = float(out.stdout.split("max |log-likelihood difference| ")[1].split(";")[0])
    assert diff < 1e-4
