"""CrossFit: the 160 catalog rows, CrossFit's TSV format, one instruction sentence per task."""

from __future__ import annotations

import dataclasses
import re
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
    (tmp_path / "crossfit").mkdir()  # a data folder without this task
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="CrossFit glue-rte: no local files"):
        crossfit.count_examples(catalog.task("optiml:crossfit:glue_rte"), "train")


@pytest.mark.parametrize("k", [1, 3])
def test_an_evaluation_task_tested_on_its_train_rows_never_shows_itself(monkeypatch, tmp_path, k):
    """An evaluation task whose source has no evaluation rows is tested on its train rows
    (common.split_rows); its demonstrations come from the same rows and never the example
    itself with its answer (they did, by index, before)."""
    folder = tmp_path / "crossfit" / "squad-with_context"
    folder.mkdir(parents=True)
    rows = [f"question {i}\tanswer {i}" for i in range(3)]
    (folder / "squad-with_context_16_100_train.tsv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    crossfit._load_rows.cache_clear()
    record = dataclasses.replace(catalog.task("optiml:crossfit:squad_with_context"), role="test")
    tested = crossfit.examples(record, "test", num_demos=k)
    assert len(tested) == 3
    for i, example in enumerate(tested):
        *shown, asked = re.findall(r"question (\d)", example.inputs)
        assert asked == str(i) and len(shown) == min(k, 2)
        assert str(i) not in shown, example.inputs
