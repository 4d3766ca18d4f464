"""FLAN and T5 through seqio.TfdsDataSource, on tfds.testing.mock_data (no download)."""

from __future__ import annotations

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, flan, t5, tfds_util

ABSENT_FLAN = {"fix_punct", "true_case", "word_segment", "unified_qa_science_inst",
               "trivia_qa_wiki_missing"}  # fmt: skip


def test_t5_keyword_prompts():
    record = catalog.task("optiml:t5:wmt14_ende_v003")
    assert t5.convert(record, {"en": "That is good. ", "de": "Das ist gut."}) == (
        "translate English to German: That is good.", "Das ist gut.",
    )  # fmt: skip
    cnn = catalog.task("optiml:t5:cnn_dailymail_v002")
    assert t5.convert(cnn, {"article": "A B", "highlights": "C"}) == ("summarize: A B", "C")


def test_flan_templates_and_options():
    record = catalog.task("optiml:flan:rte")
    _, convert, family = flan.DATASETS["rte"]
    fields = convert({"sentence1": "It rains.", "sentence2": "It is dry.", "label": 1})
    seen = set()
    for i in range(30):
        e = tfds_util.render("rte", str(i), {"context": "", **fields}, flan.TEMPLATES[family],
                             seed=0, rank=record.answer_type == "rank")  # fmt: skip
        assert e.targets == " no" and e.options == ("yes", "no") and e.label == 1
        assert "OPTIONS:\n- yes\n- no" in e.inputs and "It is dry." in e.inputs
        seen.add(e.inputs.split("OPTIONS")[0])
    assert len(seen) == 3  # every template is used
    assert set(flan.DATASETS) | ABSENT_FLAN == {r.task for r in catalog.tasks("flan")}


def test_unprepared_dataset_is_reported_by_name(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    tfds_util.source.cache_clear()
    with pytest.raises(common.SourceDataError, match="T5 wmt16_enro_v003: TFDS dataset"):
        t5.count_examples(catalog.task("optiml:t5:wmt16_enro_v003"), "train")
    with pytest.raises(common.SourceDataError, match="FLAN word_segment: no TFDS source"):
        flan.count_examples(catalog.task("optiml:flan:word_segment"), "train")
    tfds_util.source.cache_clear()


@pytest.mark.slow
@pytest.mark.data  # the OPT vocabulary's files
def test_every_tfds_task_yields_examples_on_mock_data(data_dir, monkeypatch):
    import seqio
    import tensorflow_datasets as tfds

    import optiml.registry  # noqa: F401

    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    records = [r for r in catalog.tasks("t5") + catalog.tasks("flan") if r.task not in ABSENT_FLAN]
    assert len(records) == 7 + 66
    with tfds.testing.mock_data(num_examples=3):
        for r in records:
            loader = t5 if r.benchmark == "t5" else flan
            examples = loader.examples(r, "train")
            assert len(examples) == loader.count_examples(r, "test") == 3, r.name
            e = examples[0]
            assert e.inputs and e.targets.startswith(" ") and len(e.targets) > 1, r.name
            if r.answer_type == "rank" and e.options:
                assert e.options[e.label] == e.targets[1:], r.name
        # the registry's seqio task reads the same source, tokenized with the OPT vocabulary
        task = seqio.get_mixture_or_task("optiml:flan:rte")
        ds = task.get_dataset({"inputs": 256, "targets": 16}, split="train", shuffle=False)
        first = next(iter(ds.as_numpy_iterator()))
        assert first["targets"][-1] == 2 and first["inputs_pretokenized"].decode()
        assert first["options"].tolist() == [b"yes", b"no"]
