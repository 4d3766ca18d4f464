"""Dialogue (BlenderBot 3 sets): ParlAI JSONL, whole-sequence targets, off by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml.bench import catalog, levels
from optiml.bench.sources import common, dialogue

FIXTURES = Path(__file__).parent / "fixtures"


def test_parlai_jsonl_whole_sequence_and_last_turn(monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    record = catalog.task("optiml:dialogue:convai2")
    train = dialogue.examples(record, "train")
    assert [e.inputs for e in train] == ["", ""]  # the one-turn line is skipped
    assert train[0].targets == (
        " your persona: i like to run.\nHi! How are you today?\nGreat, I just got back from a run."
        "\nNice, how far did you go?\nAbout five miles."
    )
    assert train[1].targets == " Do you have pets?\nTwo cats."
    (test,) = dialogue.examples(record, "test")
    assert test.inputs == "What do you do for work?\nI teach math.\nWhich grade?"
    assert test.targets == " Ninth grade." and test.references == ("Ninth grade.",)
    assert dialogue.count_examples(record, "validation") == 1


def test_off_by_default_and_missing_data_named(monkeypatch, tmp_path):
    assert (
        all(r.role == "off" for r in catalog.tasks("dialogue"))
        and len(catalog.tasks("dialogue")) == 6
    )
    assert not any(r.benchmark == "dialogue" for r in levels.build_levels().train)
    (tmp_path / "dialogue").mkdir()  # a data folder without this task
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="dialogue wizard_of_internet: no local files"):
        dialogue.count_examples(catalog.task("optiml:dialogue:wizard_of_internet"), "train")
