"""Preparing tasks in worker processes: `prepare --processes N` on one machine.

Each worker is forked from the preparing process (the registry it imported comes along: no
worker imports TensorFlow or registers tasks again) and prepares whole tasks, one at a time,
with `tokenizers` single-threaded: on this project's 2-core machine two workers prepare the
local NIV2 tasks 1.3-1.9x faster than one process whose `tokenizers` threads share the cores
with the rendering thread (`benchmarks/data_pipeline.py`). The cache is the same byte for byte:
every task is still written by `prepare.prepare_one`, and the caller writes the manifest.

Forking a process whose JAX or TensorFlow runtime is already running can deadlock the child (their
thread pools do not survive a fork), so `reason_not_to_fork` names that case and `prepare` then
prepares in its own process. A worker that dies (killed, out of memory) stops the run with one
line; the tasks finished are in the cache and a rerun resumes after them.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from optiml import errors

T = TypeVar("T")
R = TypeVar("R")


def reason_not_to_fork() -> str | None:
    """Why this process must not fork workers (JAX's or TensorFlow's runtime has started in it),
    or None when it may (a fresh `python -m optiml.pipeline.prepare` always may)."""
    if "jax" in sys.modules:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return "JAX's runtime is running in this process"
    if "tensorflow" in sys.modules:
        from tensorflow.python.eager import context

        if context.context_safe() is not None and context.context()._initialized:
            return "TensorFlow's runtime is running in this process"
    return None


def _worker_init() -> None:
    """One core per worker: `tokenizers` without its thread pool. Ctrl-C goes to the parent,
    which lets the running tasks finish (each is written whole or not at all)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def imap(fn: Callable[[T], R], items: Sequence[T], processes: int) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) for each item, in order, computed by `processes` forked workers (items
    handed out one at a time, so a long task does not hold up a queue behind it). `fn` and its
    results are pickled: a module-level function, or a `functools.partial` of one."""
    context = multiprocessing.get_context("fork")
    gc.freeze()  # workers' collections then skip what they inherit: no copy-on-write of it
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_init)
    try:
        yield from zip(items, pool.map(fn, items), strict=True)
    except BrokenProcessPool as error:
        raise errors.RunStopped(
            "prepare: a worker process died (killed, or out of memory); every task finished "
            "is in the cache: rerun the same command to resume after them"
        ) from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
