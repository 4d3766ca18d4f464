"""§4.4's scaling subsets: nested, deterministic per seed, supervised tasks and the always-kept
categories first, and reachable from a mixture spec (gin binds its fields)."""

from __future__ import annotations

from collections import Counter

import pytest

from optiml.bench import levels, mixing, subsets


@pytest.fixture(scope="module")
def train() -> list:
    return list(levels.build_levels(levels.LevelConfig()).train)


def test_task_subsets_are_nested_deterministic_and_keep_supervised_first(train) -> None:
    sizes = (4, 16, 64, 256)
    picked = [{r.name for r in subsets.nested_tasks(train, n, seed=3)} for n in sizes]
    assert [len(p) for p in picked] == list(sizes)
    assert all(small < big for small, big in zip(picked, picked[1:], strict=False))
    assert picked[1] == {r.name for r in subsets.nested_tasks(train, 16, seed=3)}
    assert picked[1] != {r.name for r in subsets.nested_tasks(train, 16, seed=4)}
    supervised = {r.name for r in train if r.role == "supervised"}
    assert 4 < len(supervised) < 64
    assert picked[0] < supervised and supervised < picked[2]
    assert len(subsets.nested_tasks(train, 10**6)) == len(train)


def test_category_subsets_order_by_size_after_the_always_kept_ones(train) -> None:
    counts = Counter(r.category for r in train)
    order = subsets.category_order(train)
    present = [c for c in subsets.ALWAYS_CATEGORIES if c in counts]
    assert order[: len(present)] == present
    rest = [counts[c] for c in order[len(present) :]]
    assert rest == sorted(rest, reverse=True) and len(order) == len(counts)
    four = subsets.nested_categories(train, 4)
    assert {r.category for r in four} == set(order[:4])
    assert len(four) == sum(counts[c] for c in order[:4])
    assert {r.name for r in four} <= {r.name for r in subsets.nested_categories(train, 16)}
    with pytest.raises(ValueError, match="max_categories"):
        subsets.nested_categories(train, 0)


def test_mixture_spec_applies_both_subsets() -> None:
    base = mixing.MixtureSpec("train", "train", mixing.opt_iml_recipe())
    spec = mixing.MixtureSpec(
        "train", "train", mixing.opt_iml_recipe(), max_categories=8, max_tasks=20, subset_seed=1
    )
    records = mixing.level_tasks(spec)
    inside = subsets.nested_categories(mixing.level_tasks(base), 8)
    assert len(records) == 20
    assert {r.name for r in records} == {r.name for r in subsets.nested_tasks(inside, 20, 1)}
