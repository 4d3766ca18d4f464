"""Orbax's error output folded into one line per fault (used by `optiml.checkpointing`).

A failed asynchronous save logs hundreds of traceback lines from Orbax's threads, a failed read
~60 "Event loop is closed" tracebacks from TensorStore's callbacks: `OrbaxErrors` keeps the first
line of the first error that belongs to a Checkpointer's save for the CheckpointError that
reports it, and drops the rest; `first_line` shortens any Orbax/TensorStore error to one line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Protocol


class Owner(Protocol):
    """What OrbaxErrors reads of its Checkpointer: its folder and the save in flight (or None)."""

    directory: Any
    _saving: int | None


class OrbaxErrors:
    """Orbax's own error output, held back while a Checkpointer is open so that a fault is one
    line: its ERROR log records (tracebacks from its save threads, hundreds of lines for one
    failed write) are dropped, the first line of the first kept in `first` for the
    CheckpointError that reports it (so none goes unreported); and TensorStore's "Event loop is
    closed" noise after a failed read is not printed (`quiet_closed_event_loops`). Orbax logs
    through absl's `absl` logger; asyncio logs the failures of Orbax's tasks no one awaited.

    Only a record that can belong to this Checkpointer's save is kept: one that arrives while a
    save is in flight and names no file outside its folder. Orbax's threads may log late, e.g.
    the failed read of another folder's damaged checkpoint after that restore returned; such a
    record is dropped, never reported as this run's failed save. One filter serves every open
    Checkpointer in the process (newest first), so one left open after a failure (its late
    noise still dropped) never hides a later Checkpointer's failed save.
    """

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.first = ""
        _FILTER.install()
        _OPEN.append(self)

    def claim(self, error: BaseException | str) -> bool:
        """Keep `error` if it can be this Checkpointer's failed save (see the class doc)."""
        if self.owner._saving is None:
            return False
        folder = str(self.owner.directory) + os.sep
        text = str(error)
        if not all((path + os.sep).startswith(folder) for path in _LOCAL_FILE.findall(text)):
            return False
        self.first = self.first or first_line(error)
        return True

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)


class _Filter(logging.Filter):
    """On the `absl` and `asyncio` loggers: Orbax's ERROR records go to the open OrbaxErrors
    (newest first) and are not printed; with none open, everything passes."""

    LOGGERS = ("absl", "asyncio")  # asyncio: "Task exception was never retrieved" of its tasks

    def install(self) -> None:
        for name in self.LOGGERS:
            if self not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(self)
        quiet_closed_event_loops()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _OPEN or record.levelno < logging.ERROR or not _from_orbax(record):
            return True
        error = record.exc_info[1] if record.exc_info else record.getMessage()
        for errors in reversed(_OPEN):  # the newest open Checkpointer first
            if errors.claim(error):
                break
        return False


_OPEN: list[OrbaxErrors] = []
_FILTER = _Filter()


def _from_orbax(record: logging.LogRecord) -> bool:
    """Whether a log record comes from Orbax's code or carries an exception raised in it."""
    if "orbax" in record.pathname:
        return True
    trace = record.exc_info[2] if record.exc_info else None
    while trace is not None:
        if "orbax" in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False


def quiet_closed_event_loops() -> None:
    """After a failed read TensorStore's pending callbacks reach an event loop that Orbax has
    closed and raise "Event loop is closed" into `sys.unraisablehook` (~60 tracebacks, possibly
    after the restore returned): those, and only those, are not printed. Installed once."""
    previous = sys.unraisablehook
    if getattr(previous, "optiml_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook.optiml_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first line of an error, without TensorStore's JSON specs, at most `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = _TENSORSTORE_SPEC.sub("", lines[0]) if lines else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


_LOCAL_FILE = re.compile(r'local file "([^"]+)"')  # how TensorStore names the file at fault
_TENSORSTORE_SPEC = re.compile(r"\s*\[tensorstore_spec(\[\d+\])?='.*?'\]")
