"""ExMix: JSON-lines per task, one instruction sentence per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, exmix

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_task_has_an_instruction():
    assert {r.source_id for r in catalog.tasks("exmix")} == set(exmix.INSTRUCTIONS)


def test_jsonl_rows(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    record = catalog.task("optiml:exmix:shakespearizing_modern_english")
    first, second = exmix.examples(record, "train")
    assert first.inputs.startswith(
        "Rewrite the modern English sentence in Shakespeare's style.\n\nI have a headache."
    )
    assert first.targets == " My head doth ache."
    assert second.references == ("Whither goest thou?", "Where goest thou?")
    (test,) = exmix.examples(record, "test")
    assert (
        test.targets == " Thou art my friend." and exmix.count_examples(record, "validation") == 1
    )
    bad = tmp_path / "exmix" / "cogs"
    bad.mkdir(parents=True)
    (bad / "train.jsonl").write_text('{"input": "x"}\n')
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="ExMix cogs: .*train.jsonl:1"):
        exmix.count_examples(catalog.task("optiml:exmix:cogs"), "train")
    with pytest.raises(common.SourceDataError, match="ExMix styleptb: no local files"):
        exmix.count_examples(catalog.task("optiml:exmix:styleptb"), "train")
