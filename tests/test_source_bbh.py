"""BIG-Bench Hard: 27 tasks, 0-shot and 3-shot prompts with and without chain of thought."""

from __future__ import annotations

import pytest

from optiml.bench import catalog
from optiml.bench.sources import bbh


def test_extract_answer():
    assert bbh.extract_answer("12 + 3 = 15. So the answer is 15.") == "15"
    assert (
        bbh.extract_answer("So the answer is (D).\n\nQ: next question... the answer is (A).")
        == "(D)"
    )
    assert bbh.extract_answer("the answer is ] ]") == "] ]"
    assert bbh.extract_answer("no conclusion") is None


def test_cot_exact_match_scores_the_extracted_answer():
    preds = ["Step one. So the answer is (B).", "So the answer is 7.\n\nQ: x? So the answer is 8.",
             "I am not sure."]  # fmt: skip
    refs = [["(B)"], ["3 + 4 = 7. So the answer is 7."], ["(A)"]]
    assert bbh.cot_exact_match(refs, preds) == {"exact_match_cot": 200 / 3}


def test_variants_are_shot_counts_with_a_cot_flag():
    assert bbh.VARIANTS["3shot"] == bbh.VARIANTS["3shot_cot"] == 3
    assert not bbh.VARIANTS["3shot"].cot and bbh.VARIANTS["3shot_cot"].cot


@pytest.mark.data
def test_all_tasks_and_prompts(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    records = catalog.tasks("bbh")
    assert len(records) == 27
    assert sum(bbh.count_examples(r, "test") for r in records) == 6511
    for r in records:  # every cot prompt parses into a description and three exemplars
        description, shots = bbh.load_cot_prompt(r.source_id)
        assert description and len(shots) == 3 and all(a for _, _, a in shots)
    record = catalog.task("optiml:bbh:date_understanding")
    zero = bbh.examples(record, "test")[0]
    direct = bbh.examples(record, "test", num_demos=bbh.VARIANTS["3shot"])[0]
    cot = bbh.examples(record, "test", num_demos=bbh.VARIANTS["3shot_cot"])[0]
    assert zero.inputs.startswith("Infer the date from context.\n\nQ: Today is Christmas Eve")
    assert zero.inputs.endswith("\nA:") and zero.targets == " (B)"
    assert direct.inputs.count("\nA: (") == 3 and direct.inputs.endswith(zero.inputs[30:])
    assert cot.inputs.count("So the answer is") == 3
    assert cot.inputs.endswith("\nA: Let's think step by step.") and cot.targets == " (B)"
    assert (
        bbh.count_examples(record, "validation") == 250 and bbh.count_examples(record, "train") == 0
    )
