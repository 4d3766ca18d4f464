"""Preemption: SIGTERM -> a checkpoint at the next step boundary -> exit 0; a relaunch resumes.

A TPU VM that is preempted (Spot and queued capacity, maintenance) or stopped by
`tpu_scripts/stop.sh` receives SIGTERM and some time before it is killed. The trainer asks
`Watcher.reached(step)` once after every step; when it says True the trainer saves that step,
prints one line and returns normally, so the program exits 0 and the same command resumes.

- One process: our SIGTERM handler only sets a flag; the step that is running finishes, and the
  next boundary saves.
- Several processes (jax.distributed): the hosts must save the same step together, though the
  signal may reach only some of them. JAX's preemption sync service, started by
  `jax.distributed.initialize`, catches SIGTERM on any host and agrees on a step every host has
  not yet passed (`multihost_utils.reached_preemption_sync_point`); it may be a few steps after
  the signal when steps are short.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import jax
from jax.experimental import multihost_utils


class Watcher:
    """Watches for SIGTERM from construction until `close()`; `reached(step)` once per step."""

    def __init__(self) -> None:
        self.distributed = jax.distributed.is_initialized()
        self.signalled = False
        self._installed = False
        if not self.distributed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True

    def reached(self, step: int) -> bool:
        """Whether to save `step` and stop (collective with several processes: call it on every
        host after every step)."""
        if self.distributed:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signalled

    def close(self) -> None:
        """Gives SIGTERM back to the handler that was there before."""
        if self._installed:  # None: the old handler was not Python's; SIG_DFL is the default
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
            self._installed = False
