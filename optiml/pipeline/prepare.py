"""One-off preparation: tokenize every task of a mixture once, through seqio, into the token cache.

seqio stays the source of truth for what a task is: each task's examples are exactly what
`task.get_dataset(sequence_length=None, split=..., shuffle=False, seed=...)` yields (its source,
preprocessors, vocabulary, `inputs` without EOS, `targets` with EOS). They are stored once as
flat token arrays (see `optiml.pipeline.cache`), which `optiml.pipeline.stream` then mixes and packs
without TensorFlow.

    python -m optiml.pipeline.prepare --mixture=MIXTURE --cache_dir=DIR [--split=train] [--seed=0]
        [--shard_index=i --num_shards=n] [--tasks=a,b,...] [--module=optiml.registry]

- Distributed: task j (in sorted name order) belongs to shard j % n; run one process per shard,
  on one host or many sharing the cache folder. Each shard writes only its own tasks' folders.
- Resumable: a task whose folder is complete (same seed) is skipped; rerun after a crash.
- A task whose data is missing or malformed is reported by name (log, `_errors/<task>.json`,
  `manifest.json`) and skipped; the other tasks are still prepared.
- The seed fixes each example's random choices in its preprocessors (e.g. the answer delimiter),
  once: every epoch of training then sees the same rendering of an example.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import seqio

from optiml.pipeline import cache
from optiml.validation import number

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What one `prepare` call did, by task name."""

    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete in the cache
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    num_examples: int = 0
    seconds: float = 0.0


def shard(names: Sequence[str], shard_index: int, num_shards: int) -> list[str]:
    """The tasks of one shard: every `num_shards`-th name in sorted order, from `shard_index`."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    return sorted(set(names))[shard_index::num_shards]


def mixture_tasks(name: str) -> list[str]:
    """Names of the tasks in a registered seqio mixture (or the task itself)."""
    return [t.name for t in seqio.get_subtasks(seqio.get_mixture_or_task(name))]


def task_examples(task: seqio.Task, split: str, seed: int):
    """(prompt ids, target ids) of every example of a task's split, in seqio's order."""
    if "targets" not in task.output_features:
        raise ValueError(f"task {task.name} has no 'targets' feature")
    ds = task.get_dataset(
        sequence_length=None, split=split, use_cached=False, shuffle=False, seed=seed
    )
    empty = np.zeros([0], np.int32)
    for ex in ds.as_numpy_iterator():
        yield ex.get("inputs", empty), ex["targets"]


def prepare_task(name: str, cache_dir: str | Path, *, split: str, seed: int) -> cache.TaskInfo:
    """Tokenize one registered task through seqio and write it into the cache."""
    task = seqio.get_mixture_or_task(name)
    if not isinstance(task, seqio.Task):
        raise ValueError(f"{name} is a mixture, not a task")
    if split not in task.splits:
        raise ValueError(f"task {name} has no split {split!r} (it has {list(task.splits)})")
    vocab_size = task.output_features["targets"].vocabulary.vocab_size
    examples = list(task_examples(task, split, seed))
    if not examples:
        raise ValueError(f"task {name} has no examples in split {split!r}")
    return cache.write_task(cache_dir, split, name, examples, seed=seed, vocab_size=vocab_size)


def prepare(
    names: Sequence[str],
    cache_dir: str | Path,
    *,
    split: str = "train",
    seed: int = 0,
    shard_index: int = 0,
    num_shards: int = 1,
    overwrite: bool = False,
) -> Report:
    """Prepare this shard's tasks; failures are recorded and skipped, never raised."""
    start = time.perf_counter()
    report = Report()
    mine = shard(names, shard_index, num_shards)
    log.info(
        "prepare: shard %d/%d has %d of %d tasks",
        shard_index,
        num_shards,
        len(mine),
        len(set(names)),
    )
    for i, name in enumerate(mine):
        try:
            info = cache.read_info(cache_dir, split, name)
        except ValueError:
            info = None  # damaged or old format: prepare it again
        if info is not None and info.seed == seed and not overwrite:
            report.skipped.append(name)
            continue
        try:
            info = prepare_task(name, cache_dir, split=split, seed=seed)
        except Exception as e:  # one bad task must not stop the others
            message = f"{type(e).__name__}: {e}"
            log.warning("prepare: task %s skipped: %s", name, message)
            cache.write_error(cache_dir, split, name, message)
            report.failed[name] = message
            continue
        report.prepared.append(name)
        report.num_examples += info.num_examples
        if (i + 1) % 100 == 0:
            log.info("prepare: %d/%d tasks (%.0f s)", i + 1, len(mine), time.perf_counter() - start)
    cache.write_manifest(cache_dir, split)
    report.seconds = time.perf_counter() - start
    log.info(
        "prepare: shard %d/%d done in %.1f s: %d prepared (%d examples), %d already there, "
        "%d failed%s",
        shard_index,
        num_shards,
        report.seconds,
        len(report.prepared),
        report.num_examples,
        len(report.skipped),
        len(report.failed),
        (": " + ", ".join(sorted(report.failed))) if report.failed else "",
    )
    return report


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--mixture", help="a registered seqio mixture (or task) name")
    group.add_argument("--tasks", help="comma-separated registered task names")
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard_index", type=number(0), default=0)
    parser.add_argument("--num_shards", type=number(1), default=1)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--module",
        action="append",
        default=None,
        help="module(s) to import first to register tasks (default: optiml.registry)",
    )
    args = parser.parse_args(argv)
    if args.shard_index >= args.num_shards:
        parser.error(
            f"--shard_index {args.shard_index} must be below --num_shards {args.num_shards}"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for module in args.module or ["optiml.registry"]:
        importlib.import_module(module)
    names = mixture_tasks(args.mixture) if args.mixture else args.tasks.split(",")
    return prepare(
        names,
        args.cache_dir,
        split=args.split,
        seed=args.seed,
        shard_index=args.shard_index,
        num_shards=args.num_shards,
        overwrite=args.overwrite,
    )


if __name__ == "__main__":
    main()
