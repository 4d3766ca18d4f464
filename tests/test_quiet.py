"""Quiet by default: TensorFlow's start-up lines are dropped whoever imports it, absl warnings
show once, and --verbose (quiet.set_verbose) shows everything."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optiml import quiet

REPO = Path(__file__).resolve().parents[1]
SEEN = [  # TensorFlow 2.21's start-up on a CPU machine, as printed (twice) before the filter
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796137960.160187   12659 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796137960.161205   12659 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796138502.500183   23073 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


def test_start_up_lines_are_recognised_and_nothing_else() -> None:
    assert all(quiet.START_UP_LINE.fullmatch(line) for line in SEEN)
    kept = [
        "E0000 00:00:1796138502.5 23073 some_op.cc:52] a real error",
        "W0000 00:00:1796138502.5 23073 loader.cc:9] a warning",
        "Traceback (most recent call last):",
        "optiml: something",
    ]
    assert not any(quiet.START_UP_LINE.fullmatch(line) for line in kept)


def test_a_warning_shows_once_and_an_error_always(caplog: pytest.LogCaptureFixture) -> None:
    absl = logging.getLogger("absl")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            absl.warning("test_quiet: a repeated warning %d", 1)  # (seqio's: once per task)
            absl.warning("'logger_cls' is empty so seqio.Evaluator will not log its results.")
            absl.error("a failure")
    assert [r.getMessage() for r in caplog.records] == [
        "test_quiet: a repeated warning 1",
        "a failure",
        "a failure",
        "a failure",
    ]


def _import_registry(*first: str) -> subprocess.CompletedProcess:
    code = "; ".join([*first, "import optiml.registry, seqio", "print('ok')"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_importing_the_registry_prints_nothing_and_verbose_shows_tensorflow() -> None:
    proc = _import_registry()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")
    verbose = _import_registry("from optiml import quiet", "quiet.set_verbose(True)")
    assert verbose.returncode == 0
    dropped = [line for line in verbose.stderr.splitlines() if quiet.START_UP_LINE.fullmatch(line)]
    assert dropped, "TensorFlow printed none of the start-up lines the filter knows"
