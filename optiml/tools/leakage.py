"""Leakage filter (paper §2.3): for every (training task, evaluation task) pair, the fraction of the
evaluation task's examples that share any 13-gram with the training task.

    python -m optiml.tools.leakage --out leakage.tsv [--threshold 0.01] [--n 13]

writes the pairs above the threshold (`train_task, eval_task, fraction, shared, eval_examples`).
Exclude their training tasks with `levels.LevelConfig.exclude_train_tasks`, e.g. in gin:

    levels.LevelConfig.exclude_train_tasks = @leakage.read_report()
    leakage.read_report.path = "leakage.tsv"

How: words are lower-cased `\\w+` tokens; an n-gram's 64-bit hash is a polynomial of its tokens'
hashes, computed for a whole example at once with numpy (uint64 arithmetic wraps). Each training
task contributes its set of hashes, all tasks go into one sorted array with task ids, and every
evaluation example is looked up there (`np.isin` + `np.searchsorted`): no pairwise scans.
An n-gram found in more than half of one task's examples (>= 4 examples) is that task's
instruction or template text, not data, and is ignored for that task.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from optiml.bench import catalog, levels
from optiml.validation import number

log = logging.getLogger(__name__)

NGRAM = 13
THRESHOLD = 0.01
_WORD = re.compile(r"\w+")
_BASE = np.uint64(0x100000001B3)  # FNV prime: the polynomial's base
_MIN_EXAMPLES_FOR_BOILERPLATE = 4


@functools.lru_cache(maxsize=1 << 20)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int = NGRAM) -> np.ndarray:
    """Unique uint64 hashes of the word n-grams of `text` (empty if it has fewer than n words)."""
    tokens = _WORD.findall(text.lower())
    if len(tokens) < n:
        return np.zeros(0, np.uint64)
    t = np.fromiter((_token_hash(w) for w in tokens), np.uint64, len(tokens))
    m = len(tokens) - n + 1
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _BASE + t[k : k + m]
    return np.unique(h)


def example_hashes(texts: Sequence[str], n: int = NGRAM) -> list[np.ndarray]:
    """Per-example n-gram hashes without the task's boilerplate (see the module docstring)."""
    per = [ngram_hashes(t, n) for t in texts]
    if len(per) < _MIN_EXAMPLES_FOR_BOILERPLATE:
        return per
    values, counts = np.unique(np.concatenate(per), return_counts=True)
    common = values[counts * 2 > len(per)]
    if not len(common):
        return per
    return [h[~np.isin(h, common, assume_unique=True)] for h in per]


@dataclass(frozen=True)
class Pair:
    train_task: str
    eval_task: str
    shared: int  # evaluation examples sharing an n-gram with the training task
    eval_examples: int

    @property
    def fraction(self) -> float:
        return self.shared / self.eval_examples


class NgramIndex:
    """Sorted n-gram hashes of all training tasks, with the task id of each."""

    def __init__(self, tasks: dict[str, list[np.ndarray]]):
        self.names = list(tasks)
        hashes, ids = [], []
        for i, per in enumerate(tasks.values()):
            h = np.unique(np.concatenate(per)) if per else np.zeros(0, np.uint64)
            hashes.append(h)
            ids.append(np.full(len(h), i, np.int32))
        all_h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
        order = np.argsort(all_h, kind="stable")
        self.hashes, self.ids = all_h[order], all_ids[order]

    def __len__(self) -> int:
        return len(self.hashes)

    def overlaps(self, eval_task: str, per_example: list[np.ndarray]) -> list[Pair]:
        """(train task, eval task) pairs with at least one shared example (vectorised lookup)."""
        if not per_example or not len(self.hashes):
            return []
        sizes = np.array([len(h) for h in per_example])
        hashes = np.concatenate(per_example)
        example = np.repeat(np.arange(len(per_example)), sizes)
        lo = np.searchsorted(self.hashes, hashes, "left")
        hi = np.searchsorted(self.hashes, hashes, "right")
        hit = hi > lo
        lo, hi, example = lo[hit], hi[hit], example[hit]
        counts = hi - lo  # training tasks holding each matched n-gram
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        task = self.ids[starts + np.arange(counts.sum())]
        pairs = np.unique(np.repeat(example, counts).astype(np.int64) * len(self.names) + task)
        shared = np.bincount(pairs % len(self.names), minlength=len(self.names))
        return [
            Pair(self.names[t], eval_task, int(shared[t]), len(per_example))
            for t in np.flatnonzero(shared)
            if self.names[t] != eval_task
        ]


def _texts(record: catalog.TaskRecord, split: str) -> list[str] | None:
    loader = catalog.loader(record.benchmark)
    if loader is None:
        return None
    try:
        return [e.inputs + " " + e.targets for e in loader.examples(record, split)]
    except (OSError, ValueError, KeyError) as err:
        log.info("%s: not available locally (%s)", record.name, err)
        return None


def task_pairs(config: levels.LevelConfig = levels.LevelConfig(), n: int = NGRAM) -> list[Pair]:  # noqa: B008
    """Every (training task, evaluation task) pair of the levels with a shared n-gram, over the
    tasks present locally: training tasks' `train` split against evaluation tasks' `test` split
    (evaluation levels, supervised tasks' held-out instances, MMLU and BBH)."""
    lv = levels.build_levels(config)
    start = time.time()
    train = {}
    for r in lv.train:
        texts = _texts(r, "train")
        if texts:
            train[r.name] = example_hashes(texts, n)
    index = NgramIndex(train)
    log.info("indexed %d training tasks, %d n-grams in %.0f s", len(train), len(index),
             time.time() - start)  # fmt: skip
    evaluation = {r.name: r for r in (*lv.evaluation(), *lv.fully_supervised, *lv.eval_only)}
    pairs = []
    for name, r in evaluation.items():
        texts = _texts(r, "test")
        if texts:
            pairs += index.overlaps(name, example_hashes(texts, n))
    log.info("checked %d evaluation tasks in %.0f s", len(evaluation), time.time() - start)
    return pairs


COLUMNS = ("train_task", "eval_task", "fraction", "shared", "eval_examples")


def write_report(pairs: Iterable[Pair], path: str, threshold: float = THRESHOLD) -> int:
    """Write the pairs above `threshold`, most leaking first; returns how many."""
    rows = sorted((p for p in pairs if p.fraction > threshold), key=lambda p: -p.fraction)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        for p in rows:
            w.writerow([p.train_task, p.eval_task, f"{p.fraction:.4f}", p.shared, p.eval_examples])
    return len(rows)


def read_report(path: str, threshold: float = THRESHOLD) -> tuple[str, ...]:
    """The training tasks of a report's pairs above `threshold` (for
    `LevelConfig.exclude_train_tasks`)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = set(COLUMNS) - set(rows[0] if rows else COLUMNS)
    if missing:
        raise ValueError(f"leakage report {path}: missing columns {sorted(missing)}")
    return tuple(sorted({r["train_task"] for r in rows if float(r["fraction"]) > threshold}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.leakage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="report TSV to write")
    parser.add_argument("--threshold", type=number(0, float), default=THRESHOLD)
    parser.add_argument("--n", type=number(1), default=NGRAM, help="n-gram length in words")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("optiml.bench.sources").setLevel(logging.WARNING)
    pairs = task_pairs(n=args.n)
    kept = write_report(pairs, args.out, args.threshold)
    print(f"{len(pairs)} task pairs share a {args.n}-gram; {kept} above {args.threshold:.2%} "
          f"written to {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
