"""UnifiedSKG: the released seq2seq records (text_in / struct_in / seq_out), instructions."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml.bench import catalog, levels
from optiml.bench.sources import common, unifiedskg

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_task_has_an_instruction():
    assert {r.source_id for r in catalog.tasks("unifiedskg")} == set(unifiedskg.INSTRUCTIONS)
    assert len(unifiedskg.INSTRUCTIONS) == 21


def test_records_and_supervised_instance_split(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(FIXTURES))
    spider = catalog.task("optiml:unifiedskg:spider")  # fully supervised: held-out instances
    train, test = unifiedskg.examples(spider, "train"), unifiedskg.examples(spider, "test")
    held = [i for i in range(40) if levels.heldout_instance("spider", str(i))]
    assert len(test) == len(held) and len(train) == 40 - len(held) and held
    assert train[0].inputs.startswith(
        "Translate the question into SQL for the database.\n\nHow many singers are older than "
    )
    assert "; structured knowledge: | concert_singer | singer : singer_id" in train[0].inputs
    assert train[0].targets.startswith(" select count(*) from singer where age > ")
    assert not {e.targets for e in train} & {e.targets for e in test}
    dart = catalog.task("optiml:unifiedskg:dart")  # an evaluation task: UnifiedSKG's dev file
    (e,) = unifiedskg.examples(dart, "test")
    assert e.targets == " Mars Hill College joined in 1973."
    (tmp_path / "unifiedskg").mkdir()  # a data folder without this task
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(common.SourceDataError, match="UnifiedSKG totto: no local files"):
        unifiedskg.count_examples(catalog.task("optiml:unifiedskg:totto"), "train")
