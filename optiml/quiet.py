"""Quiet by default: TensorFlow starts without its start-up lines and on the CPU only, and the
libraries' repeated warnings show once. `import optiml` installs it (`install()`, cheap and
TF-free); `set_verbose(True)` (every command's `--verbose`) lets everything through.

TensorFlow runs optiml's data pipeline (seqio) and clu's TensorBoard writer. Whoever imports it
first (optiml.registry, seqio, clu, a user's gin module), the import goes through `_QuietImport`:
- its C++ start-up lines, written to stderr before its logging is set up (TensorFlow 2.21 ignores
  TF_CPP_MIN_LOG_LEVEL for them, and prints them twice), are dropped: the `WARNING: All log
  messages before absl::InitializeLog() ...` preamble, INFO lines (`I0000 ... port.cc:153] oneDNN
  custom operations are on`, `cudart_stub.cc:31] Could not find cuda drivers`, cpu_feature_guard's
  two lines about AVX) and the error `failed call to cuInit` of a machine without a GPU driver.
  Every other line is written back as it was.
- TF_CPP_MIN_LOG_LEVEL=2 unless set: later C++ lines only for errors.
- every GPU is hidden from it, so it never claims accelerator memory that JAX needs (T5X's main
  does the same); `hide_gpus_from_tensorflow()` does it again where TF may predate optiml.
Warnings: the absl and TensorFlow loggers show each warning once (seqio warns "Using an uncached
FunctionDataset for training is not recommended" once per task: 600 times for a mixture) and
never seqio's "'logger_cls' is empty so seqio.Evaluator will not log its results" (optiml's
evaluation saves its own results). Errors always show.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

START_UP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"  # C++ INFO: I0000 00:00:1796.. 12659 port.cc:153] ..
    r"|To enable the following instructions: .*"  # the second line of cpu_feature_guard's INFO
    r"|E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: .*"
)
USELESS_WARNINGS = ("'logger_cls' is empty so seqio.Evaluator will not log its results",)
FILTERED_LOGGERS = ("absl", "tensorflow")

_verbose = [False]


def set_verbose(verbose: bool) -> None:
    """True: every line and warning shows (TensorFlow's start-up lines too, if it is imported
    after this call); False, the default: the filtering described above."""
    _verbose[0] = verbose


def hide_gpus_from_tensorflow() -> None:
    """Makes every GPU invisible to an already imported TensorFlow (no-op if it is not)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.config.set_visible_devices([], "GPU")


class _WarningFilter(logging.Filter):
    """Drops USELESS_WARNINGS and every repeat of a warning (same logger, same text)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if _verbose[0] or record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        if message.startswith(USELESS_WARNINGS):
            return False
        key = (record.name, message)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def _start_up_lines_dropped() -> Iterator[None]:
    """Runs the block with file descriptor 2 captured (C++ writes there, not to sys.stderr), then
    writes back every captured line that is not a START_UP_LINE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [line for line in lines if not START_UP_LINE.fullmatch(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader with the start-up lines dropped, then hides the GPUs."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # TensorFlow sees its own
        if _verbose[0]:
            self.loader.exec_module(module)
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _start_up_lines_dropped():
            self.loader.exec_module(module)
            hide_gpus_from_tensorflow()  # lists the devices: cuInit's error comes here


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first `import tensorflow` it takes the spec the other finders
    give and runs the import through `_QuietLoader`; then it leaves `sys.meta_path`."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """The warning filter on the absl and TensorFlow loggers, and `_QuietImport` in front of the
    import system if TensorFlow is not imported yet. Once per process (`import optiml` calls it)."""
    loggers = [logging.getLogger(name) for name in FILTERED_LOGGERS]
    if not any(isinstance(f, _WarningFilter) for f in loggers[0].filters):
        warning_filter = _WarningFilter()
        for logger in loggers:
            logger.addFilter(warning_filter)
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietImport())
