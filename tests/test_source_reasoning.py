"""Reasoning: the 14 CoT datasets, step-by-step prompts, answer extraction, local files."""

from __future__ import annotations

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common
from optiml.bench.sources import reasoning as rs


def test_appendix_c_cot_format_exact_strings():
    """Paper Appendix C, Figures 63-64 (and Figure 1's math wording): instruction, new line,
    question, delimiter; target "<rationale> The answer is <answer>"."""
    target = rs.render_target("care about", "we care about people we love.")
    assert target == " we care about people we love. The answer is care about"
    assert rs.answer_of(target) == "care about"
    prompt = rs.render_prompt("cos_e", "How do most people feel about a person they love?",
                              " Output:")  # fmt: skip
    assert prompt == ("Answer the following question by reasoning step by step.\n"
                      "How do most people feel about a person they love? Output:")  # fmt: skip
    demo = ("2 + 2?", "4", "2 plus 2 is 4.")
    two = rs.render_prompt("gsm8k", "3 + 4?", "\nAnswer:", [demo, demo])
    assert two == (
        "Answer the following math question by reasoning step by step.\n"
        "2 + 2?\nAnswer: 2 plus 2 is 4. The answer is 4\n\n"
        "2 + 2?\nAnswer: 2 plus 2 is 4. The answer is 4\n\n"
        "3 + 4?\nAnswer:"
    )
    generated = " 3 + 4 = 7. The answer is 7\n\nAnother question? The answer is 9"
    assert rs.extract_answer(generated) == "7"


def test_every_dataset_has_an_instruction():
    assert {r.task for r in catalog.tasks("reasoning")} == set(rs.DATASETS)
    assert len(rs.DATASETS) == 14
    assert rs.instruction("math").startswith("Answer the following math question")
    assert rs.instruction("qed") == "Answer the following question by reasoning step by step."


def test_local_tsv_for_a_dataset_outside_flan(tmp_path, monkeypatch):
    (tmp_path / "reasoning").mkdir()
    (tmp_path / "reasoning" / "winowhy_train.tsv").write_text(
        "The man lifted the boy because he was strong. Who is he?\\nOptions:\\n- man\\n- boy\t"
        "man\tStrong people lift others.\nQ2?\tyes\tbecause\n"
    )
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    record = catalog.task("optiml:reasoning:winowhy")
    (first, second) = rs.examples(record, "train")
    assert first.inputs.startswith(
        "Answer the following question by reasoning step by step.\nThe man lifted the boy because"
        " he was strong. Who is he?\nOptions:\n- man\n- boy"
    )
    assert first.inputs[first.inputs.index("- boy") + 5 :] in common.DELIMITERS
    assert first.targets == " Strong people lift others. The answer is man"
    demo = rs.examples(record, "train", num_demos=1)[1].inputs
    assert demo.count("\n\n") == 1 and "The answer is man\n\nQ2?" in demo
    assert rs.reachable_shots(record, "train", 5) == 1  # the other row only
    with pytest.raises(common.SourceDataError, match="reasoning math: no local data"):
        rs.count_examples(catalog.task("optiml:reasoning:math"), "train")


@pytest.mark.data
def test_local_flan_cot_gsm8k_and_strategyqa(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    counts = {}
    for r in catalog.tasks("reasoning"):
        try:
            counts[r.task] = rs.count_examples(r, "train")
        except common.SourceDataError as err:
            assert r.task in str(err)
    assert counts == {
        "aqua_rat": 2728, "creak": 6915, "ecqa": 7112, "gsm8k": 7473, "qasc": 1084,
        "sensemaking": 6070, "strategyqa": 2061,
    }  # fmt: skip
    gsm8k = catalog.task("optiml:reasoning:gsm8k")  # a dev task: evaluated on GSM8K test
    test = rs.examples(gsm8k, "test")
    assert len(test) == 1319 and rs.answer_of(test[0].targets) == "18"
    assert "<<" not in test[0].targets  # calculator annotations removed
    strategy = rs.examples(catalog.task("optiml:reasoning:strategyqa"), "test")
    assert len(strategy) == 2290 and rs.answer_of(strategy[0].targets) == "yes"
    five = rs.examples(gsm8k, "test", num_demos=5)[0].inputs
    assert five.count("The answer is") == 5 and five.endswith(test[0].inputs.split("\n", 1)[1])
