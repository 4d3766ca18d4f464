"""CrossFit: the 160 catalog rows, CrossFit's TSV format, one instruction sentence per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, crossfit

FIXTURES = Path(__file__).parent / "fixtures"


def test_catalog_rows_cover_crossfit_and_have_instructions():
    records = catalog.tasks("crossfit")
    assert len(records) == 160  # CrossFit's `all` list (dataloader/custom_tasks_splits)
    assert catalog.task("optiml:crossfit:glue_rte").category == "Textual Entailment"
    assert crossfit.instruction(catalog.task("optiml:crossfit:biomrc")) == (
        "Answer the question (task: biomrc)."
    )
    assert crossfit.instruction(catalog.task("optiml:crossfit:imdb")) == (
        "Classify the sentiment of the text (task: imdb)."
    )


def test_tsv_format_few_shot_files_and_references(monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    imdb = catalog.task("optiml:crossfit:imdb")
    train = crossfit.examples(imdb, "train")  # imdb_16_100_train.tsv sorts before imdb_16_13
    assert len(train) == 2 and train[1].targets == " negative"
    assert imdb.answer_type == "rank" and train[1].options == ("negative", "positive")
    assert train[1].inputs.startswith(
        "Classify the sentiment of the text (task: imdb).\n\nDull and far too long."
    )
    assert crossfit.count_examples(imdb, "test") == 3  # CrossFit's test file
    squad = catalog.task("optiml:crossfit:squad_with_context")
    first, second = crossfit.examples(squad, "train")
    assert first.references == ("Paris", "Paris, France")
    assert second.references == ("Shakespeare", "William Shakespeare")
    assert second.targets[1:] in second.references
    assert crossfit.parse_line("x\ty [SEP] z\tw") == ("x", ("y", "z", "w"))


def test_missing_task_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="CrossFit glue-rte: no local files"):
        crossfit.count_examples(catalog.task("optiml:crossfit:glue_rte"), "train")
