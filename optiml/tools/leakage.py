"""Leakage filter (paper §2.3): for every pair of tasks (A, B), the fraction of B's evaluation
examples (`test` split) that share any 13-gram with A's training examples (`train` split).

    OPTIML_DATA_DIR=../shared/data python -m optiml.tools.leakage [--out tasks/leakage.tsv]

writes the pairs above 1% (`train_task, eval_task, fraction, shared, eval_examples`) over every
catalog task present locally, whatever its role, so the result holds for any choice of levels:
`levels.build_levels` leaves out of training every task paired there with one of the levels'
evaluation tasks (`LevelConfig.leakage_filter`, on by default), reading `tasks/leakage.tsv` and no
benchmark data. Pairs of tasks on the same (non-broad) dataset are not written: the shared-dataset
rule already keeps them apart. Rerun after adding data (about 2 minutes over ../shared/data).

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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from optiml.bench import catalog, levels
from optiml.validation import number

log = logging.getLogger(__name__)

NGRAM = 13
THRESHOLD = levels.LEAKAGE_THRESHOLD
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
        log.debug("%s: not available locally (%s)", record.name, err)
        return None


def _same_dataset(a: catalog.TaskRecord, b: catalog.TaskRecord) -> bool:
    return a.dataset == b.dataset and a.dataset not in levels.BROAD_SOURCES


def all_pairs(
    n: int = NGRAM,
    train: Sequence[catalog.TaskRecord] | None = None,
    evaluate: Sequence[catalog.TaskRecord] | None = None,
) -> list[Pair]:
    """Every (A, B) pair of present tasks, A of `train` and B of `evaluate` (both: all catalog
    tasks by default), where B's `test` examples share an n-gram with A's `train` examples,
    leaving out pairs on one non-broad dataset (levels.py keeps those apart anyway) and a task
    paired with itself."""
    train = list(catalog.tasks() if train is None else train)
    evaluate = list(catalog.tasks() if evaluate is None else evaluate)
    start = time.time()
    hashed = {}
    for r in train:
        per = example_hashes(_texts(r, "train") or [], n)
        if per:  # one union per task: the index needs no more, and it keeps memory small
            hashed[r.name] = [np.unique(np.concatenate(per))]
    index = NgramIndex(hashed)
    log.info("indexed %d tasks' training examples, %d n-grams in %.0f s", len(hashed), len(index),
             time.time() - start)  # fmt: skip
    by_name = {r.name: r for r in train + evaluate}
    pairs, checked = [], 0
    for r in evaluate:
        texts = _texts(r, "test")
        if texts:
            checked += 1
            pairs += index.overlaps(r.name, example_hashes(texts, n))
    log.info("checked %d tasks' evaluation examples in %.0f s", checked, time.time() - start)
    return [p for p in pairs if not _same_dataset(by_name[p.train_task], by_name[p.eval_task])]


COLUMNS = ("train_task", "eval_task", "fraction", "shared", "eval_examples")


def write_report(pairs: Iterable[Pair], path: str, threshold: float = THRESHOLD) -> int:
    """Write the pairs above `threshold`, most leaking first (then by name); returns how many."""
    rows = sorted(
        (p for p in pairs if p.fraction > threshold),
        key=lambda p: (-p.fraction, p.train_task, p.eval_task),
    )
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        for p in rows:
            w.writerow([p.train_task, p.eval_task, f"{p.fraction:.4f}", p.shared, p.eval_examples])
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.leakage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", default=str(catalog.catalog_dir() / catalog.LEAKAGE_FILE),
        help="report TSV to write (default: the catalog's, which the levels read)",
    )  # fmt: skip
    parser.add_argument("--threshold", type=number(0, float), default=THRESHOLD)
    parser.add_argument("--n", type=number(1), default=NGRAM, help="n-gram length in words")
    args = parser.parse_args(argv)
    log.setLevel(logging.INFO)  # this tool's own progress lines (optiml.cli set up the output)
    logging.getLogger("optiml.bench.sources").setLevel(logging.WARNING)
    pairs = all_pairs(n=args.n)
    kept = write_report(pairs, args.out, args.threshold)
    print(f"{len(pairs)} task pairs share a {args.n}-gram; {kept} above {args.threshold:.2%} "
          f"written to {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
