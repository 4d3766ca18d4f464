"""Flan 2022's prompt styles (optiml.bench.flan2022): shares, options, inversions, few-shot."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from optiml.bench import catalog, flan2022, metaicl, mixing
from optiml.bench.sources import common, flan, reasoning

SEP = "\n\n\n"


def _within_sampling_error(styles: list[str], shares: dict[str, float]) -> None:
    n, seen = len(styles), Counter(styles)
    assert set(seen) == set(shares)
    for style, p in shares.items():
        assert abs(seen[style] / n - p) <= 4 * np.sqrt(p * (1 - p) / n), (style, seen, shares)


def test_configured_shares_are_flan_v2s_submixture_weights() -> None:
    assert flan2022.style_shares("flan") == dict.fromkeys(
        ["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"], 0.25
    )
    assert flan2022.style_shares("niv2") == {"zs_opt": 0.5, "fs_opt": 0.5}
    cot = flan2022.style_shares("reasoning")  # CoT-II (inversions) at 0.3 of CoT's rate
    assert cot["zs_inv"] / cot["zs_opt"] == pytest.approx(0.3)
    assert sum(cot.values()) == pytest.approx(1.0)
    assert flan2022.style_shares("crossfit") == {}


@pytest.mark.parametrize("benchmark", ["flan", "niv2", "reasoning"])
def test_drawn_styles_match_the_shares_within_sampling_error(benchmark: str) -> None:
    styles = [flan2022.draw_style(benchmark, "t", str(i)) for i in range(4000)]
    _within_sampling_error(styles, flan2022.style_shares(benchmark))
    assert styles == [flan2022.draw_style(benchmark, "t", str(i)) for i in range(4000)]


def test_promptsource_options_block_goes_before_the_delimiter() -> None:
    example = common.make_example("t", "7", "Is it dry?", "no", seed=0, options=("yes", "no"))
    delimiter = common.pick_delimiter(0, "t", "7")
    shown = flan2022.options_block(example, 0, "t")
    assert shown.inputs == "Is it dry?\nOPTIONS:\n- yes\n- no" + delimiter
    assert shown.targets == example.targets and shown.options == example.options
    plain = common.make_example("t", "7", "Say hi.", "hi", seed=0)
    assert flan2022.options_block(plain, 0, "t") == plain  # no options: the same text


@pytest.mark.data  # FLAN's v2 templates.py
def test_flan_styles_change_options_inversions_and_shots_as_stated(monkeypatch) -> None:
    record = catalog.task("optiml:flan:rte")
    convert = flan.DATASETS["rte"][1]
    rows = [convert({"premise": f"Fact {i}.", "hypothesis": f"Claim {i}.", "label": i % 2})
            for i in range(400)]  # fmt: skip
    monkeypatch.setattr(flan, "_rows", lambda rec, split: rows)
    out = flan2022.styled_examples(record, flan, "train")
    styles = [flan2022.draw_style("flan", "rte", e.id) for e in out]
    _within_sampling_error(styles, flan2022.style_shares("flan"))
    inverted = 0
    for e, style in zip(out, styles, strict=True):
        answer = e.targets.strip() in ("yes", "no")
        inverted += not answer
        if style.endswith("noopt"):
            assert "OPTIONS:" not in e.inputs
        elif answer:  # an inversion template has no options slot
            assert "OPTIONS:\n- yes\n- no" in e.inputs
        own = f"Fact {e.id}."
        assert (e.inputs + e.targets).count(own) == 1  # never its own exemplar
        if style.startswith("fs"):
            assert e.inputs.count(SEP) == 5
        else:
            assert SEP not in e.inputs
    # v2's rte has 1 inversion among 10 templates ("Generate a context and a hypothesis.")
    assert 0.02 < inverted / len(out) < 0.25
    assert "Generate a context and a hypothesis." in "".join(e.inputs for e in out)


@pytest.mark.data  # the local CoT data and FLAN's v2 templates.py
def test_cot_inversions_ask_for_the_question_from_rationale_and_answer() -> None:
    record = catalog.task("optiml:reasoning:creak")
    rows = common.split_rows(record, "train", reasoning.load_rows(record.source_id))
    inverted = flan2022.inverted_cot(record, "train", 0)
    assert len(inverted) == len(rows)
    for (question, answer, rationale), e in list(zip(rows, inverted, strict=True))[:200]:
        text = e.inputs + e.targets
        assert question.strip() in text and answer.strip() in text and rationale.strip() in text
        template = next(
            t for t in flan2022.inversion_templates() if t[1].split("{")[0] in e.targets
        )
        assert "{question}" in template[1] or "{chain_of_thought}" in template[1]
    out = flan2022.styled_examples(record, reasoning, "train")
    styles = [flan2022.draw_style("reasoning", "creak", e.id) for e in out]
    _within_sampling_error(styles, flan2022.style_shares("reasoning"))
    plain = reasoning.examples(record, "train")
    for e, p, inv, style in zip(out, plain, inverted, styles, strict=True):
        own = {"zs_opt": p, "fs_opt": p, "zs_inv": inv, "fs_inv": inv}[style]
        assert e.targets == own.targets and e.inputs.endswith(metaicl.body(own))
        assert e.inputs.startswith(own.instruction)
        assert e.inputs.count(SEP) == (5 if style.startswith("fs") else 0)


@pytest.mark.data
def test_train_flan2022_trains_styled_twins_at_the_recipes_rates() -> None:
    import optiml.registry  # noqa: F401

    styled = mixing.mixture_rates("optiml_mix:train_flan2022.renormalise")
    plain = mixing.MIXTURES["optiml_mix:train_flan2022.renormalise"]
    assert plain.prompt_styles == "flan2022"
    assert all(name.endswith("#flan2022") for name, _ in styled.rates)
    assert styled.benchmark_rates["reasoning"] == pytest.approx(0.018)
