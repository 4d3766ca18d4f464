"""Comparing two token caches (`optiml.pipeline.cache`) in the preparation tests."""

from __future__ import annotations

import filecmp
import json
from collections.abc import Sequence
from pathlib import Path

from optiml.pipeline import cache

FILES = (*cache.ARRAYS, "info.json")  # what one prepared task is on disk


def same_cache(a: Path, b: Path, split: str, tasks: Sequence[str]) -> None:
    """Asserts that `tasks` have byte-identical files in caches `a` and `b`, and that both
    manifests say the same (counts, tasks and error messages)."""
    for name in tasks:
        for f in FILES:
            left, right = cache.task_dir(a, split, name) / f, cache.task_dir(b, split, name) / f
            assert filecmp.cmp(left, right, shallow=False), f"{name}/{f} differs"
    manifests = [json.loads((c / split / cache.MANIFEST).read_text()) for c in (a, b)]
    assert manifests[0] == manifests[1]
