"""The §4 knobs the ablation sweeps bind change the mixture as the paper states (rates computed
by `mixing.compute_rates` from exact counts, no data read)."""

from __future__ import annotations

import pytest

from optiml.bench import mixing

COUNTS = {"a": ("niv2", 100), "b": ("niv2", 10_000), "p": ("promptsource", 50)}


def test_eps_cap_128_vs_4096_gives_the_exact_rates() -> None:
    recipe = lambda eps: mixing.MixingConfig(  # noqa: E731
        eps=eps, proportions={"niv2": 1.0}, extra_shares={}
    )
    niv2 = {k: v for k, v in COUNTS.items() if v[0] == "niv2"}
    assert dict(mixing.compute_rates(niv2, recipe(128))[0]) == pytest.approx(
        {"a": 100 / 228, "b": 128 / 228}
    )
    assert dict(mixing.compute_rates(niv2, recipe(4096))[0]) == pytest.approx(
        {"a": 100 / 4196, "b": 4096 / 4196}
    )


def test_reasoning_share_taken_from_niv2_keeps_the_other_benchmarks() -> None:
    """reasoning.gin: extra share x with NIV2 at 40 - 100x leaves PromptSource at its 27%."""
    counts = {**COUNTS, "r": ("reasoning", 30)}
    for x in (0.01, 0.02, 0.04):
        props = {"niv2": 40 - 100 * x, "promptsource": 27.0, "flan": 33.0}
        recipe = mixing.MixingConfig(proportions=props, extra_shares={"reasoning": x})
        shares = mixing.compute_rates({**counts, "f": ("flan", 9)}, recipe)[1]
        assert shares["reasoning"] == pytest.approx(x)
        assert shares["promptsource"] == pytest.approx(0.27)
        assert shares["niv2"] == pytest.approx(0.40 - x)


def test_dialogue_tasks_join_the_training_level_only_when_switched_on() -> None:
    base = dict(level="train", split="train", recipe=mixing.opt_iml_recipe())
    names = lambda spec: {r.name for r in mixing.level_tasks(spec)}  # noqa: E731
    off = names(mixing.MixtureSpec(**base))
    on = names(mixing.MixtureSpec(**base, off_benchmarks=["dialogue"]))
    dialogue = on - off
    assert len(dialogue) == 6 and all(n.startswith("optiml:dialogue:") for n in dialogue)
    assert not any(n.startswith("optiml:dialogue:") for n in off)
    recipe = mixing.MixingConfig(proportions={"niv2": 1.0}, extra_shares={"dialogue": 0.005})
    shares = mixing.compute_rates({"a": ("niv2", 10), "d": ("dialogue", 5)}, recipe)[1]
    assert shares == pytest.approx({"niv2": 0.995, "dialogue": 0.005})


def test_pretraining_text_joins_the_training_level_only_when_switched_on() -> None:
    base = dict(level="train", split="train", recipe=mixing.opt_iml_recipe(plain_text=0.05))
    names = lambda spec: {r.name for r in mixing.level_tasks(spec)}  # noqa: E731
    added = names(mixing.MixtureSpec(**base, off_benchmarks=("pretrain",))) - names(
        mixing.MixtureSpec(**base)
    )
    assert added == {"optiml:pretrain:opt_pretraining_last_shard"}
    shares = mixing.compute_rates(
        {"a": ("niv2", 10), "t": ("pretrain", 5), "r": ("reasoning", 3)},
        mixing.opt_iml_recipe(plain_text=0.05),
    )[1]
    assert shares == pytest.approx({"niv2": 0.94, "pretrain": 0.05, "reasoning": 0.01})
