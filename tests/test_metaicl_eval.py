"""The evaluation-time demonstration separator (paper §4.8, Table 20) on a local NIV2 task."""

from __future__ import annotations

import pytest
import seqio

from optiml.bench import metaicl
from optiml.bench.sources import common
from optiml.evaluation import plan as plan_lib

pytestmark = pytest.mark.data


def test_k_shot_plan_entries_become_separator_twins_and_zero_shot_ones_stay() -> None:
    entries = plan_lib.plan_from_registry(phase="dev", shots=[0, 2], benchmarks=["niv2"],
                                          max_tasks_per_level=1, max_examples=4)  # fmt: skip
    separated = plan_lib.with_demo_separator(entries, " \n\n")
    assert plan_lib.with_demo_separator(entries, None) == entries
    few = [(a, b) for a, b in zip(entries, separated, strict=True) if a.shots]
    assert few and all(a == b for a, b in zip(entries, separated, strict=True) if not a.shots)
    for before, after in few:
        assert after.task.startswith(before.task.split("#")[0] + "#sep") and after.shots == 2
        task = seqio.get_mixture_or_task(after.task)
        shown = common.python_examples(task.source)("validation")
        plain = common.python_examples(
            seqio.get_mixture_or_task(before.task.split("#")[0]).source
        )("validation")  # fmt: skip
        for s, p in zip(shown, plain, strict=True):
            assert s.inputs.startswith(p.instruction) and s.inputs.endswith(metaicl.body(p))
            assert s.inputs.count(" \n\n") >= 2 and s.targets == p.targets
