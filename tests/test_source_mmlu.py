"""MMLU: 57 subjects from the local CSVs, Hendrycks' prompt, A-D rank options, 0/5-shot."""

from __future__ import annotations

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, mmlu


def test_prompt_format():
    demo = ("1+1?", ("1", "2", "3", "4"), 1)
    prompt = mmlu.render_prompt("high_school_math", ("2+2?", ("4", "5", "6", "7"), 0), (demo,))
    assert prompt == (
        "The following are multiple choice questions (with answers) about high school math.\n\n"
        "1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "2+2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:"
    )


@pytest.mark.data
def test_all_subjects_zero_and_five_shot(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    records = catalog.tasks("mmlu")
    assert len(records) == 57
    total = sum(mmlu.count_examples(r, "test") for r in records)
    assert total == 14042  # the complete MMLU test set
    record = catalog.task("optiml:mmlu:anatomy")
    assert mmlu.count_examples(record, "train") == 0  # evaluation only
    zero, five = mmlu.examples(record, "test"), mmlu.examples(record, "test", num_demos=5)
    assert len(zero) == len(five) == 135 and mmlu.count_examples(record, "validation") == 135
    assert five[0].inputs.count("\nAnswer: ") == 5 and five[0].inputs.endswith(zero[0].inputs[76:])
    assert (
        zero[0].options == ("A", "B", "C", "D") and zero[0].targets == " " + "ABCD"[zero[0].label]
    )
    with pytest.raises(common.SourceDataError, match="MMLU anatomy: 6-shot needs 6 dev rows"):
        mmlu.examples(record, "test", num_demos=6)


def test_missing_subject_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "mmlu").mkdir()  # a data folder without this subject
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="MMLU anatomy: missing file"):
        mmlu.count_examples(catalog.task("optiml:mmlu:anatomy"), "test")
