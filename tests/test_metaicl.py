"""MetaICL training examples (paper §4.8, optiml.bench.metaicl)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optiml.bench import metaicl
from optiml.bench.sources.common import Example

SEP = "\n\n\n"


def _task(n: int = 40, instruction: str = "") -> list[Example]:
    return [
        Example(
            f"i{i}",
            f"{instruction}Input: text {i}\nAnswer:",
            f" label{i}",
            (f"label{i}",),
            instruction=instruction,
        )  # fmt: skip
        for i in range(n)
    ]


def test_shot_distribution_gives_the_papers_zero_shot_shares() -> None:
    # §4.8: "When a = 4, 92.5% of the examples are zero-shot ...; when a = 2, 67.1%", K = 5
    assert round(metaicl.shot_probabilities(5, 4.0)[0], 3) == 0.925
    assert round(metaicl.shot_probabilities(5, 2.0)[0], 3) == 0.671
    p = metaicl.shot_probabilities(5, 2.0)
    assert len(p) == 6 and np.isclose(p.sum(), 1.0) and np.all(np.diff(p) < 0)


def test_drawn_shots_follow_the_distribution_within_sampling_error() -> None:
    config = metaicl.MetaICLConfig(zipf_a=2.0)
    pool = [f"i{i}" for i in range(20)]
    n = 4000
    ks = np.bincount([len(metaicl.draw(config, "t", f"e{j}", pool)) for j in range(n)], minlength=6)
    p = metaicl.shot_probabilities(5, 2.0)
    assert np.all(np.abs(ks / n - p) <= 4 * np.sqrt(p * (1 - p) / n)), (ks / n, p)


@pytest.mark.parametrize("instruction", ["", "Task: Copy the label.\n"])
def test_examples_carry_exactly_k_demonstrations_of_the_task_never_themselves(
    instruction: str,
) -> None:
    examples = _task(instruction=instruction)
    config = metaicl.MetaICLConfig(zipf_a=1.0, separator=SEP)  # a = 1: many k > 0
    out = metaicl.metaicl_examples("t", examples, examples, config)
    by_id = {e.id: e for e in examples}
    shots = []
    for e, m in zip(examples, out, strict=True):
        demos = [examples[j].id for j in metaicl.draw(config, "t", e.id, list(by_id))]
        assert e.id not in demos and len(set(demos)) == len(demos)
        shots.append(len(demos))
        assert m.targets == e.targets and m.references == e.references  # loss: final target only
        shown = [metaicl.body(by_id[d]) + by_id[d].targets for d in demos]
        assert m.inputs == instruction + SEP.join([*shown, metaicl.body(e)])
        assert m.inputs.count(SEP) == len(demos)
        assert not instruction or m.inputs.count(instruction) == 1
        assert m.inputs.count(f"text {e.id[1:]}\n") == 1  # the example appears once, last
    assert set(shots) == set(range(6))  # every k from 0 to K occurs
    assert metaicl.metaicl_examples("t", examples, examples, config) == out  # deterministic
    other = dataclasses.replace(config, seed=1)
    assert metaicl.metaicl_examples("t", examples, examples, other) != out


def test_suffix_loss_starts_at_the_first_demonstrations_target() -> None:
    examples = _task(instruction="Task: Copy.\n")
    config = metaicl.MetaICLConfig(zipf_a=1.0, loss="suffix")
    out = metaicl.metaicl_examples("t", examples, examples, config)
    target_only = metaicl.metaicl_examples(
        "t", examples, examples, dataclasses.replace(config, loss="target")
    )
    by_id = {e.id: e for e in examples}
    for e, m, t in zip(examples, out, target_only, strict=True):
        demos = [examples[j].id for j in metaicl.draw(config, "t", e.id, list(by_id))]
        assert m.inputs + m.targets == t.inputs + t.targets  # the same text, split elsewhere
        if not demos:
            assert m == t
            continue
        first = by_id[demos[0]]
        assert m.inputs == "Task: Copy.\n" + metaicl.body(first)
        assert m.targets.startswith(first.targets + "\n\n\n") and m.targets.endswith(e.targets)


def test_demonstrations_that_do_not_fit_the_row_are_dropped_farthest_first() -> None:
    examples = _task()
    wide = metaicl.MetaICLConfig(zipf_a=0.5)
    narrow = dataclasses.replace(wide, max_tokens=60)
    full = metaicl.metaicl_examples("t", examples, examples, wide, len)
    fitted = metaicl.metaicl_examples("t", examples, examples, narrow, len)
    for f, n in zip(full, fitted, strict=True):
        assert len(n.inputs) + len(n.targets) <= 60 or n.inputs.count("\n\n\n") == 0
        assert f.inputs.endswith(n.inputs)  # the nearest demonstrations kept, in order
    assert any(f != n for f, n in zip(full, fitted, strict=True))


def test_bad_configs_fail_naming_the_field() -> None:
    with pytest.raises(ValueError, match="loss"):
        metaicl.MetaICLConfig(loss="lm")
    with pytest.raises(ValueError, match="zipf_a"):
        metaicl.MetaICLConfig(zipf_a=0)
    with pytest.raises(ValueError, match="max_tokens needs count_tokens"):
        metaicl.metaicl_examples("t", _task(), _task(), metaicl.MetaICLConfig(max_tokens=9))
    assert metaicl.MetaICLConfig().variant != metaicl.MetaICLConfig(loss="suffix").variant


def test_evaluation_prompts_join_k_demonstrations_by_the_separator() -> None:
    pool = _task(instruction="Task: Copy.\n")
    evaluated = [Example(f"i{i}", f"Task: Copy.\nInput: new {i}\nAnswer:", " x",
                         instruction="Task: Copy.\n") for i in range(5)]  # fmt: skip
    out = metaicl.with_demonstrations("t", evaluated, pool, 3, " \n\n")
    for e, m in zip(evaluated, out, strict=True):
        assert m.inputs.startswith("Task: Copy.\nInput: text") and m.targets == e.targets
        assert m.inputs.count(" \n\n") == 3 and m.inputs.endswith(metaicl.body(e))
        assert f"text {e.id[1:]}\n" not in m.inputs  # an evaluated id is never shown
    assert metaicl.with_demonstrations("t", evaluated, pool, 3, " \n\n") == out
