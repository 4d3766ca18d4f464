"""The README's main job: prepare the token caches, fine-tune, evaluate the three levels, report.

    make run      # = python -m optiml.main --gin_file=runs/quickstart.gin --gin.MODEL_DIR=...

`run` is what `gin/runs/quickstart.gin` binds to RUN. It is a plain function of three steps, each
a callable that gin configures (so the same file trains the tiny model on the CPU or, with a
bigger model gin and an imported checkpoint, evaluates a real model):

1. `prepare`: tokenize each (mixture, split) in `caches` once into `cache_dir` through seqio
   (`optiml.pipeline.prepare`); tasks already in the cache are skipped, so a rerun starts at once.
2. `train()`: `optiml.trainer.train` -- resumes from MODEL_DIR/checkpoints if a run was cut off.
3. `evaluate()`: `optiml.evaluation.evaluate.evaluate` on the newest checkpoint -- finished
   tasks are not redone -- which writes MODEL_DIR/report.{md,json,png} and prints the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def prepare_caches(cache_dir: str, caches: Sequence[tuple[str, str]], seed: int = 0) -> None:
    """Tokenizes every (mixture, split) pair into `cache_dir`; broken tasks are only reported."""
    import optiml.registry  # noqa: F401  (registers the mixtures)
    from optiml.pipeline import prepare

    progress = logging.getLogger(prepare.__name__)  # "prepare: 100/633 tasks (57 s)" lines
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[prepare] %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False
    for mixture, split in caches:
        start = time.perf_counter()
        names = prepare.mixture_tasks(mixture)
        report = prepare.prepare(names, cache_dir, split=split, seed=seed)
        print(
            f"[prepare] {mixture} ({split}): {len(report.prepared)} tasks tokenized, "
            f"{len(report.skipped)} already cached, {len(report.failed)} failed "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        for name, message in sorted(report.failed.items()):
            print(f"[prepare]   left out {name}: {message}", flush=True)


def run(
    *,
    model_dir: str,
    cache_dir: str | None,
    train: Callable[[], dict[str, float]] | None,
    evaluate: Callable[[], dict[str, Any]] | None,
    caches: Sequence[tuple[str, str]] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Prepare -> train -> evaluate; returns {"train": last metrics, "report": the report}.

    `train` / `evaluate` are zero-argument callables (gin references such as `@trainer.train`);
    None skips the step (e.g. evaluating an imported checkpoint without training).
    """
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    if caches:
        if not cache_dir:
            raise ValueError("quickstart.run: `caches` are given but `cache_dir` is not")
        prepare_caches(cache_dir, caches, seed=seed)
    result: dict[str, Any] = {}
    if train is not None:
        print(f"[train] run directory {model_dir}", flush=True)
        result["train"] = train()
    if evaluate is not None:
        print("[evaluate] the three generalization levels", flush=True)
        result["report"] = evaluate()
    return result
