"""One-off preparation: tokenize every task of a mixture once into the token cache.

seqio stays the definition of a task: its examples are exactly what
`task.get_dataset(sequence_length=None, split=..., shuffle=False, seed=...)` yields (its source,
preprocessors, vocabulary, `inputs` without EOS, `targets` with EOS). Tasks whose examples are
rendered in Python (every optiml loader) take the direct path (`optiml.pipeline.direct`): the
loader's renderer, then `tokenizers` in large batches -- the same tokens, tens of times faster;
`--verify` checks that against seqio task by task. They are stored once as flat token arrays
(`optiml.pipeline.cache`), which `optiml.pipeline.stream` mixes and packs without TensorFlow.

    python -m optiml.pipeline.prepare --mixture=MIXTURE --cache_dir=DIR [--split=train] [--seed=0]
        [--processes=N] [--shard_index=i --num_shards=n] [--tasks=a,b,...]
        [--module=optiml.registry]
        [--path=direct|seqio] [--verify] [--runner=DirectRunner|DataflowRunner|... BEAM_OPTIONS]

- One machine, every core: `--processes=N` forks N workers that prepare whole tasks each
  (`optiml.pipeline.workers`); the same cache, byte for byte.
- Distributed, simple: task j (in sorted name order) belongs to shard j % n; run one process per
  shard, on one host or many sharing the cache folder (TPU VM hosts). Each shard writes only its
  own tasks' folders.
- Distributed, at scale: `--runner=<Beam runner>` runs the same per-task preparation as an Apache
  Beam pipeline (`optiml.pipeline.beam_prepare`); other flags are Beam pipeline options.
- Resumable: a task whose folder is complete (same seed) is skipped; rerun after a crash.
- A task whose data is missing or malformed is reported by name with its reason (one log line
  each, `_errors/<task>.json`, `manifest.json`) and skipped; the other tasks are still prepared.
  The command exits 1 when any task failed (0 only when all were prepared or already there).
- `--verify` writes nothing: it prepares every task both ways and reports each task whose token
  arrays or example order differ (exit status 1 if any).
- The seed fixes each example's random choices in its preprocessors (e.g. the answer delimiter),
  once: every epoch of training then sees the same rendering of an example.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import seqio
from tqdm import tqdm

from optiml.pipeline import cache, direct, workers
from optiml.validation import number

if TYPE_CHECKING:
    from optiml.pipeline.verification import Verification

log = logging.getLogger(__name__)

PATHS = ("direct", "seqio")  # direct: Python-rendered tasks skip tf.data (same tokens)


@dataclass
class Report:
    """What one `prepare` call did, by task name."""

    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete in the cache
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    direct: list[str] = field(default_factory=list)  # prepared by the direct path
    num_examples: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The command's exit status: 0 only when every task was prepared or already there."""
        return 1 if self.failed else 0


def shard(names: Sequence[str], shard_index: int, num_shards: int) -> list[str]:
    """The tasks of one shard: every `num_shards`-th name in sorted order, from `shard_index`."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    return sorted(set(names))[shard_index::num_shards]


def mixture_tasks(name: str) -> list[str]:
    """Names of the tasks in a registered seqio mixture (or the task itself)."""
    return [t.name for t in seqio.get_subtasks(seqio.get_mixture_or_task(name))]


def absent_tasks(name: str) -> dict[str, str]:
    """Tasks an optiml mixture declares that the local data cannot provide (so the registry left
    them out of the seqio mixture), with the reason: {task: "NIV2 task ...: task file ... is
    missing"}; {} for other mixtures."""
    from optiml.bench import mixing

    return dict(mixing.mixture_rates(name).reasons) if name in mixing.MIXTURES else {}


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


def registered_task(name: str) -> seqio.Task:
    task = seqio.get_mixture_or_task(name)
    if not isinstance(task, seqio.Task):
        raise ValueError(f"{name} is a mixture, not a task")
    return task


def examples_of(
    task: seqio.Task, split: str, seed: int, path: str = "direct", rendered: list | None = None
):
    """(examples as (prompt ids, target ids) pairs, the path that made them); `rendered`: the
    direct path's rendering of the task, when `render_ahead` made it already."""
    if split not in task.splits:
        raise ValueError(f"task {task.name} has no split {split!r} (it has {list(task.splits)})")
    if path not in PATHS:
        raise ValueError(f"path {path!r} is not one of {PATHS}")
    pairs = direct.task_examples(task, split, rendered) if path == "direct" else None
    if pairs is not None:
        return pairs, "direct"
    return list(task_examples(task, split, seed)), "seqio"


def prepare_task(
    name: str,
    cache_dir: str | Path,
    *,
    split: str,
    seed: int,
    path: str = "direct",
    rendered: list | None = None,
) -> tuple[cache.TaskInfo, str]:
    """Tokenize one registered task and write it into the cache; returns (info, path used)."""
    task = registered_task(name)
    vocab_size = task.output_features["targets"].vocabulary.vocab_size
    examples, used = examples_of(task, split, seed, path, rendered)
    if not examples:
        raise ValueError(f"task {name} has no examples in split {split!r}")
    info = cache.write_task(cache_dir, split, name, examples, seed=seed, vocab_size=vocab_size)
    return info, used


def prepare_one(
    name: str,
    cache_dir: str | Path,
    *,
    split: str,
    seed: int,
    overwrite: bool,
    path: str,
    rendered: Callable[[], list | None] | None = None,
) -> tuple[str, int, str]:
    """Prepare one task unless the cache has it: (status, examples, error), status one of
    `direct`/`seqio` (the path that prepared it), `skipped`, `failed` (recorded in the cache).
    `rendered`: gives the `render_ahead` result (raising what rendering raised)."""
    try:
        info = cache.CachedTask(cache_dir, split, name).info  # verified
    except FileNotFoundError:
        info = None
    except cache.DamagedTask as e:
        log.warning("prepare: %s: doing that now", e)
        info = None
    if info is not None and info.seed == seed and not overwrite:
        return "skipped", info.num_examples, ""
    try:
        examples = rendered() if rendered is not None else None
        info, used = prepare_task(
            name, cache_dir, split=split, seed=seed, path=path, rendered=examples
        )
    except Exception as e:  # one bad task must not stop the others
        message = f"{type(e).__name__}: {e}"
        log.warning("prepare: task %s skipped: %s", name, message)
        cache.write_error(cache_dir, split, name, message)
        return "failed", 0, message
    return used, info.num_examples, ""


def prepare(
    names: Sequence[str],
    cache_dir: str | Path,
    *,
    split: str = "train",
    seed: int = 0,
    shard_index: int = 0,
    num_shards: int = 1,
    overwrite: bool = False,
    path: str = "direct",
    absent: dict[str, str] | None = None,
    processes: int = 1,
) -> Report:
    """Prepare this shard's tasks; failures are recorded and skipped, never raised. `absent`:
    tasks that cannot be prepared at all ({name: reason}, e.g. `absent_tasks(mixture)`), recorded
    as failed beside the others (log, `_errors/`, manifest). `processes` > 1: that many forked
    workers (`optiml.pipeline.workers`), unless this process may not fork (then it says why
    and prepares alone); a worker that dies raises `errors.RunStopped`."""
    start = time.perf_counter()
    report = Report()
    absent = absent or {}
    record_absent(report, absent, cache_dir, split, shard(list(absent), shard_index, num_shards))
    mine = shard(names, shard_index, num_shards)
    log.info(
        "prepare: shard %d/%d has %d of %d tasks",
        shard_index,
        num_shards,
        len(mine),
        len(set(names)),
    )
    options = dict(split=split, seed=seed, overwrite=overwrite, path=path)
    results = prepared(mine, cache_dir, options, processes)
    bar = tqdm(results, total=len(mine), desc=f"prepare {split}", unit="task", file=sys.stdout)
    for i, (name, (status, n, error)) in enumerate(bar):
        if status == "skipped":
            report.skipped.append(name)
            continue
        if status == "failed":
            report.failed[name] = error
            continue
        report.prepared.append(name)
        report.direct += [name] if status == "direct" else []
        report.num_examples += n
        if (i + 1) % 100 == 0:
            log.info("prepare: %d/%d tasks (%.0f s)", i + 1, len(mine), time.perf_counter() - start)
    cache.write_manifest(cache_dir, split)
    report.seconds = time.perf_counter() - start
    log.info(
        "prepare: shard %d/%d done in %.1f s: %d prepared (%d examples; %d direct, %d through "
        "seqio), %d already there, %d failed%s",
        shard_index,
        num_shards,
        report.seconds,
        len(report.prepared),
        report.num_examples,
        len(report.direct),
        len(report.prepared) - len(report.direct),
        len(report.skipped),
        len(report.failed),
        " (each below)" if report.failed else "",
    )
    for name, message in sorted(report.failed.items()):
        log.warning("prepare: failed %s: %s", name, message)
    return report


def prepared(
    names: Sequence[str], cache_dir: str | Path, options: dict, processes: int
) -> Iterator[tuple[str, tuple[str, int, str]]]:
    """(name, `prepare_one`'s result) for each task in order: by `processes` forked workers,
    or in this process, rendering the next tasks in a thread (`render_ahead`)."""
    if processes > 1 and len(names) > 1:
        reason = workers.reason_not_to_fork()
        if reason is None:
            one = functools.partial(prepare_one, cache_dir=cache_dir, **options)
            yield from workers.imap(one, names, processes)
            return
        log.warning("prepare: %s, so it cannot fork workers: preparing in this process", reason)
    ahead = direct.ahead(lambda name: render_ahead(name, cache_dir, **options), names)
    for name, rendered in ahead:
        yield name, prepare_one(name, cache_dir, rendered=rendered, **options)


def render_ahead(
    name: str, cache_dir: str | Path, *, split: str, seed: int, overwrite: bool, path: str
) -> list | None:
    """The direct path's rendering of a task that `prepare_one` will prepare, made one task ahead
    in a thread (`direct.ahead`) while `tokenizers` encodes the previous one outside the GIL.
    None (prepare_one then does it all) for the seqio path, an unknown split, or a task the
    cache seems to hold already (`prepare_one` verifies it and renders itself if it must)."""
    if path != "direct" or (not overwrite and cache.stored_seed(cache_dir, split, name) == seed):
        return None
    task = registered_task(name)
    return direct.render(task, split) if split in task.splits else None


def record_absent(
    report: Report, absent: dict[str, str], cache_dir: str | Path, split: str, names: Sequence[str]
) -> None:
    """Record `names` of the `absent` tasks as failed: in the report and under `_errors/`."""
    for name in names:
        cache.write_error(cache_dir, split, name, absent[name])
        report.failed[name] = absent[name]


def main(argv: Sequence[str] | None = None) -> Report | Verification:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.pipeline.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--mixture", help="a registered seqio mixture (or task) name")
    group.add_argument("--tasks", help="comma-separated registered task names")
    parser.add_argument("--cache_dir", help="the token cache (required unless --verify)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard_index", type=number(0), default=0)
    parser.add_argument("--num_shards", type=number(1), default=1)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--processes", type=number(1), default=1,
        help="worker processes preparing whole tasks at once (forked; one per core is fastest)",
    )  # fmt: skip
    parser.add_argument(
        "--path", choices=PATHS, default="direct",
        help="direct: Python-rendered tasks skip tf.data (same tokens); seqio: every task "
        "through seqio's tf.data pipeline",
    )  # fmt: skip
    parser.add_argument(
        "--verify", action="store_true",
        help="write nothing; compare both paths on every task (exit 1 if any differs)",
    )  # fmt: skip
    parser.add_argument(
        "--runner",
        help="prepare as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, "
        "FlinkRunner, SparkRunner, ...); unknown flags are passed on as Beam pipeline options",
    )
    parser.add_argument(
        "--module",
        action="append",
        default=None,
        help="module(s) to import first to register tasks (default: optiml.registry)",
    )
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.runner:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if args.shard_index >= args.num_shards:
        parser.error(
            f"--shard_index {args.shard_index} must be below --num_shards {args.num_shards}"
        )
    if args.runner and (args.num_shards > 1 or args.processes > 1 or args.verify):
        parser.error(
            "--runner distributes the tasks itself: drop --num_shards / --processes / --verify"
        )
    if args.verify and args.processes > 1:
        parser.error("--processes prepares; --verify compares in one process: drop one")
    if not args.cache_dir and not args.verify:
        parser.error("--cache_dir is required (unless --verify)")
    log.setLevel(logging.INFO)  # this tool's own progress lines (optiml.cli set up the output)
    modules = args.module or ["optiml.registry"]
    for module in modules:
        importlib.import_module(module)
    try:
        names = mixture_tasks(args.mixture) if args.mixture else args.tasks.split(",")
    except ValueError as e:  # seqio: no such mixture or task
        parser.error(f"--mixture: {e}")
    unknown = [n for n in names if n not in seqio.TaskRegistry.names()]
    if unknown:
        parser.error(f"--tasks: no registered task named {', '.join(unknown)}")
    absent = absent_tasks(args.mixture) if args.mixture else {}
    if args.verify:
        from optiml.pipeline import verification

        return verification.verify(
            names, split=args.split, seed=args.seed, shard_index=args.shard_index,
            num_shards=args.num_shards,
        )  # fmt: skip
    if args.runner:
        from optiml.pipeline import beam_prepare

        report = beam_prepare.run(
            names, args.cache_dir, split=args.split, seed=args.seed, overwrite=args.overwrite,
            path=args.path, modules=modules, pipeline_args=["--runner", args.runner, *beam_args],
        )  # fmt: skip
        record_absent(report, absent, args.cache_dir, args.split, sorted(absent))
        cache.write_manifest(args.cache_dir, args.split)
        return report
    return prepare(
        names,
        args.cache_dir,
        split=args.split,
        seed=args.seed,
        shard_index=args.shard_index,
        num_shards=args.num_shards,
        overwrite=args.overwrite,
        path=args.path,
        absent=absent,
        processes=args.processes,
    )


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)  # exits with the Report's or Verification's exit_code
