"""Nested training subsets for the scaling studies of paper §4.4 (Tables 16 and 17).

- Tasks: "we randomly sample 16, 64, 256, and 1024 sets of tasks such that smaller sets are
  subset of bigger sets, and fully supervised tasks are always selected". One order per seed:
  the `supervised` tasks first, then the others, each group sorted by sha256("<seed>/<task
  name>"); a subset of n tasks is the first n of that order, so for one seed every smaller subset
  lies inside every bigger one, and the same seed gives the same subsets on every machine.
- Categories: "we order the clusters based on the decreasing order of the number of tasks present
  in each cluster and select the first 4, 16, 64, and 93 (i.e., all) clusters. Additionally, we
  make sure that Question Answering, Summarization, and Dialogue Generation clusters are always
  represented". The order: those always-kept categories (the ones present), then the others by
  decreasing task count (ties by name); a subset of m categories is the first m, again nested.
  No seed: the paper's order is by size.

Pure catalog logic: records in, records out (in their input order).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from optiml.bench import catalog

ALWAYS_CATEGORIES = ("Question Answering", "Summarization", "Dialogue Generation")


def _key(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"{seed}/{name}".encode()).digest()


def task_order(records: Sequence[catalog.TaskRecord], seed: int) -> list[str]:
    """Task names in subset order: `supervised` tasks first, then the rest, each by seeded hash."""
    role = {r.name: r.role for r in records}
    return sorted(role, key=lambda n: (role[n] != "supervised", _key(seed, n)))


def nested_tasks(
    records: Sequence[catalog.TaskRecord], n: int, seed: int = 0
) -> list[catalog.TaskRecord]:
    """The first `n` tasks of `task_order(records, seed)` (all of them if there are fewer)."""
    if n < 1:
        raise ValueError(f"max_tasks must be >= 1, got {n}")
    keep = set(task_order(records, seed)[:n])
    return [r for r in records if r.name in keep]


def category_order(
    records: Sequence[catalog.TaskRecord], always: Sequence[str] = ALWAYS_CATEGORIES
) -> list[str]:
    """Categories in subset order: `always` (those present), then by decreasing task count."""
    counts = Counter(r.category for r in records)
    first = [c for c in always if c in counts]
    rest = sorted((c for c in counts if c not in first), key=lambda c: (-counts[c], c))
    return first + rest


def nested_categories(
    records: Sequence[catalog.TaskRecord], m: int, always: Sequence[str] = ALWAYS_CATEGORIES
) -> list[catalog.TaskRecord]:
    """The tasks of the first `m` categories of `category_order` (every task if fewer)."""
    if m < 1:
        raise ValueError(f"max_categories must be >= 1, got {m}")
    keep = set(category_order(records, always)[:m])
    return [r for r in records if r.category in keep]
