"""FLAN and T5 through seqio.TfdsDataSource, on tfds.testing.mock_data (no download)."""

from __future__ import annotations

import pytest

from optiml.bench import catalog
from optiml.bench.sources import common, flan, t5, tfds_util

ABSENT_FLAN = {"lambada", "unified_qa_science_inst", "trivia_qa_wiki_missing"}  # no 2021 template


def test_t5_keyword_prompts():
    record = catalog.task("optiml:t5:wmt14_ende_v003")
    assert t5.convert(record, {"en": "That is good. ", "de": "Das ist gut."}) == (
        "translate English to German: That is good.", "Das ist gut.",
    )  # fmt: skip
    cnn = catalog.task("optiml:t5:cnn_dailymail_v002")
    assert t5.convert(cnn, {"article": "A B", "highlights": "C"}) == ("summarize: A B", "C")


@pytest.mark.data  # FLAN's templates.py
def test_flan_renders_flans_own_templates(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    record = catalog.task("optiml:flan:rte")
    row = {"premise": "It rains.", "hypothesis": "It is dry.", "label": 1}
    monkeypatch.setattr(flan, "_rows", lambda rec, split: [flan.DATASETS["rte"][1](row)] * 40)
    monkeypatch.setattr(flan, "count_examples", lambda rec, split: 40)
    chosen = flan.templates(record)
    assert len(chosen) == 9  # FLAN's 10 minus the inversion "Generate a context and a hypothesis."
    seen = set()
    for e in flan.examples(record, "train"):
        assert e.targets == " no" and e.options == ("yes", "no") and e.label == 1
        assert "OPTIONS:\n- yes\n- no" in e.inputs and "It is dry." in e.inputs
        seen.add(e.inputs.split("It rains.")[-1].split("OPTIONS")[0])
    assert len(seen) >= 8  # templates are picked per example
    (first,) = flan.examples(record, "test")[:1]
    template = chosen[common.pick(0, len(chosen), "template", "rte", 0)][0]
    assert first.inputs.startswith(template.split("{")[0] + ("It rains." if template.startswith(
        "{premise}") else ""))  # fmt: skip
    # exact: the first template, FLAN's own words, then the delimiter picked for the example
    fields = flan.DATASETS["rte"][1](row)
    assert flan._fill(chosen[0][0], fields) == (
        'It rains.\n\nBased on the paragraph above can we conclude that "It is dry."?\n\n'
        "OPTIONS:\n- yes\n- no"
    )
    five = flan.examples(record, "test", num_demos=5)[0].inputs
    assert five.count("OPTIONS:") == 6 and five.count(" no\n\n") == 5  # 5 answered demos first
    assert flan.reachable_shots(record, "test", 5) == 5
    assert set(flan.DATASETS) | {"unified_qa_science_inst", "trivia_qa_wiki_missing"} == {
        r.task for r in catalog.tasks("flan")
    }


def test_unprepared_dataset_is_reported_by_name(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    tfds_util.source.cache_clear()
    with pytest.raises(common.SourceDataError, match="T5 wmt16_enro_v003: TFDS dataset"):
        t5.count_examples(catalog.task("optiml:t5:wmt16_enro_v003"), "train")
    with pytest.raises(common.SourceDataError, match="FLAN trivia_qa_wiki_missing: no TFDS"):
        flan.count_examples(catalog.task("optiml:flan:trivia_qa_wiki_missing"), "train")
    tfds_util.source.cache_clear()


@pytest.mark.slow
@pytest.mark.data  # the OPT vocabulary's files
def test_every_tfds_task_yields_examples_on_mock_data(data_dir, monkeypatch):
    import seqio
    import tensorflow_datasets as tfds

    import optiml.registry  # noqa: F401

    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    records = [r for r in catalog.tasks("t5") + catalog.tasks("flan") if r.task not in ABSENT_FLAN]
    assert len(records) == 7 + 68
    with tfds.testing.mock_data(num_examples=3):
        for r in records:
            loader = t5 if r.benchmark == "t5" else flan
            examples = loader.examples(r, "train")
            assert len(examples) == loader.count_examples(r, "test") == 3, r.name
            e = examples[0]
            assert e.inputs and e.targets.startswith(" ") and len(e.targets) > 1, r.name
            if r.answer_type == "rank" and e.options:
                assert e.options[e.label] == e.targets[1:], r.name
            if loader is flan:  # the converter fills every field of every original template
                fields = flan._rows(r, "train")[0]
                for inputs, targets in flan.templates(r):
                    assert flan._fill(inputs, fields) and flan._fill(targets, fields), r.name
        # the registry's seqio task reads the same source, tokenized with the OPT vocabulary
        task = seqio.get_mixture_or_task("optiml:flan:rte")
        ds = task.get_dataset({"inputs": 256, "targets": 16}, split="train", shuffle=False)
        first = next(iter(ds.as_numpy_iterator()))
        assert first["targets"][-1] == 2 and first["inputs_pretokenized"].decode()
        assert first["options"].tolist() == [b"yes", b"no"]
