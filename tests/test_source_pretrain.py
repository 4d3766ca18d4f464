"""Pre-training text (§4.5): local JSONL/text documents become whole-sequence targets, packed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, pretrain

TASK = "optiml:pretrain:opt_pretraining_last_shard"


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pretrain" / "opt_pretraining_last_shard"
    folder.mkdir(parents=True)
    docs = [{"text": "You could make it a full group party."}, {"text": "  "},
            {"text": "Watch some comedy. Ask the members."}]  # fmt: skip
    (folder / "a.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (folder / "b.txt").write_text("Do a music night.\n\nBring your favourite music.\n")
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    pretrain._load.cache_clear()
    yield folder
    pretrain._load.cache_clear()


def test_documents_are_whole_targets_with_empty_inputs(corpus: Path) -> None:
    record = catalog.task(TASK)
    examples = pretrain.examples(record, "train")
    assert [e.targets for e in examples] == [
        "You could make it a full group party.", "Watch some comedy. Ask the members.",
        "Do a music night.", "Bring your favourite music.",
    ]  # fmt: skip
    assert all(e.inputs == "" for e in examples) and pretrain.count_examples(record, "train") == 4
    with pytest.raises(ValueError, match="only a train split"):
        pretrain.examples(record, "validation")


def test_bad_files_name_the_line(corpus: Path) -> None:
    (corpus / "c.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(common.SourceDataError, match=r"c.jsonl:2"):
        pretrain.load_documents("opt_pretraining_last_shard")
    pretrain._load.cache_clear()
    with pytest.raises(common.SourceDataError, match="no \\*.jsonl"):
        pretrain.load_documents("absent")


@pytest.mark.data
def test_packed_rows_put_loss_on_every_document_token(
    data_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    import optiml.registry  # noqa: F401  (registers the pretrain task: its loader exists now)
    from optiml.pipeline import prepare
    from optiml.pipeline.stream import MixtureStream

    (tmp_path / "gpt2_bpe").symlink_to(data_dir / "gpt2_bpe")  # the OPT vocabulary
    report = prepare.prepare([TASK], tmp_path / "cache", split="train", seed=0)
    assert TASK in report.prepared, report.failed
    rows = next(iter(MixtureStream(tmp_path / "cache", [(TASK, 1.0)], batch_size=1, length=64,
                                   seed=0, split="train")))  # fmt: skip
    segments, weights = rows["decoder_segment_ids"][0], rows["decoder_loss_weights"][0]
    assert segments.max() >= 2  # several documents packed into one row
    # every real token is a target (the loss covers the whole sequence), padding is not
    assert np.array_equal(weights > 0, segments > 0)
