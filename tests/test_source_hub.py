"""PromptSource rows through Hugging Face `datasets`: Hub-format repositories (parquet / JSON with
the real schemas) read by the same `load_dataset` call, local files converted to those schemas,
and a dataset that cannot be had named with how to get it while the mixture builds."""

from __future__ import annotations

import datasets
import pytest
from hub_testing import FEATURES, write_export, write_repo

from optiml.bench import catalog, mixing
from optiml.bench.sources import common, hub
from optiml.bench.sources import promptsource as ps

AG_NEWS = {
    "train": [
        {"text": "Wall St. Bears Claw Back Into the Black (Reuters) Short-sellers are back.",
         "label": 2},
        {"text": "Sharapova wins in fine style at the Open.", "label": 1},
        {"text": "NASA probe finds water ice near the lunar south pole.", "label": 3},
        {"text": "Talks on the ceasefire resume in Cairo.", "label": 0},
    ],
    "test": [{"text": "Fears for T N pension after talks with union.", "label": 2},
             {"text": "The Race is On: Second Private Team Sets Launch Date.", "label": 3}],
}  # fmt: skip
BOOLQ = {
    "train": [
        {"question": "do iran and afghanistan speak the same language", "idx": 0, "label": 1,
         "passage": "Persian language -- Persian is a Western Iranian language."},
        {"question": "is the sun a star", "idx": 1, "label": 1,
         "passage": "Sun -- The Sun is the star at the center of the Solar System."},
        {"question": "can you drink sea water", "idx": 2, "label": 0,
         "passage": "Seawater -- Drinking seawater dehydrates the body."},
    ],
    "validation": [
        {"question": "does ethanol take more energy make that produces", "idx": 0, "label": 0,
         "passage": "Ethanol fuel -- All biomass goes through at least some of these steps."},
        {"question": "is house tax and property tax are same", "idx": 1, "label": 1,
         "passage": "Property tax -- Property tax or 'house tax' is a local tax on buildings."},
    ],
    "test": [{"question": "is it unlabelled", "passage": "The test split has no labels.",
              "idx": 0, "label": -1}],
}  # fmt: skip
COS_E = {
    "train": [
        {"id": "075e483d21c29a511267ef62bedc0461", "answer": "ignore",
         "question": "The sanctions against the school were a punishing blow, and they seemed "
                     "to what the efforts the school had made to change?",
         "choices": ["ignore", "enforce", "authoritarian", "yell at", "avoid"],
         "abstractive_explanation": "ignore is to not pay attention.",
         "extractive_explanation": "seemed to what the efforts"},
        {"id": "61fe6e879ff18686d7552425a36344c8", "answer": "bedroom",
         "question": "Where would you put a pillow?",
         "choices": ["bedroom", "kitchen", "garage", "lake", "office"],
         "abstractive_explanation": "pillows are kept on the bed in the bedroom.",
         "extractive_explanation": "put a pillow"},
    ],
    "validation": [
        {"id": "d8a1b7c5e0f2", "answer": "bank", "question": "Where do you keep money safe?",
         "choices": ["bank", "street", "river", "shoe", "cloud"],
         "abstractive_explanation": "a bank keeps money safe.",
         "extractive_explanation": "keep money safe"},
    ],
}  # fmt: skip
HELLASWAG = {
    "train": [
        {"ind": 4, "activity_label": "Removing ice from car",
         "ctx_a": "Then, the man writes over the snow covering the window of a car.",
         "ctx_b": "then", "ctx": "Then, the man writes over the snow covering the window of a "
         "car. then", "endings": [", the man adds wax to the windshield.",
                                  ", a person board a ski lift.", ", the man puts on a hat.",
                                  ", the man continues removing the snow on his car."],
         "source_id": "activitynet~v_-1IBHYS3L-Y", "split": "train", "split_type": "indomain",
         "label": "3"},
    ],
    "validation": [
        {"ind": 24, "activity_label": "Roof shingle removal",
         "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
         "ctx": "A man is sitting on a roof. he",
         "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                     "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
         "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain",
         "label": "3"},
    ],
    "test": [{"ind": 14, "activity_label": "Hand washing", "ctx_a": "A woman is outside.",
              "ctx_b": "she", "ctx": "A woman is outside. she", "endings": ["a", "b", "c", "d"],
              "source_id": "x", "split": "test", "split_type": "indomain", "label": ""}],
}  # fmt: skip


@pytest.fixture
def hub_data(tmp_path, data_dir, monkeypatch):
    """A data folder with the real templates and Hub copies of ag_news, super_glue/boolq,
    cos_e/v1.11 (parquet) and hellaswag (JSON lines); the datasets cache in tmp_path."""
    root = tmp_path / "data"
    root.mkdir()
    for name in ("promptsource", "gpt2_bpe"):
        (root / name).symlink_to(data_dir / name)
    mirror = root / hub.MIRROR
    write_repo(mirror, "ag_news", AG_NEWS)
    write_repo(mirror, "super_glue/boolq", BOOLQ)
    write_repo(mirror, "cos_e/v1.11", COS_E)
    write_repo(mirror, "hellaswag", HELLASWAG, fmt="json")
    monkeypatch.setenv("OPTIML_DATA_DIR", str(root))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return root


def _record(task: str) -> catalog.TaskRecord:
    return catalog.task(f"optiml:promptsource:{task}")


@pytest.mark.data
def test_hub_repositories_load_through_load_dataset_split_by_split(hub_data, monkeypatch):
    calls = []
    real = datasets.load_dataset

    def spy(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("split")))
        return real(path, name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    boolq = hub.load_rows("super_glue/boolq")
    assert boolq.get("train") == BOOLQ["train"]  # ClassLabel -> int, int32 -> int, as on the Hub
    assert boolq.get("test") == []  # label -1: unlabelled, dropped
    assert boolq.get("nope") is None and calls == [
        (str(hub_data / "huggingface" / "super_glue"), "boolq", "train"),
        (str(hub_data / "huggingface" / "super_glue"), "boolq", "test"),
    ]
    assert hub.load_rows("hellaswag").get("validation") == HELLASWAG["validation"]  # JSON
    assert hub.load_rows("cos_e/v1.11").get("train") == COS_E["train"]

    # rendered with the real templates: train = one template per row, test = rows x templates
    cases = [("ag_news", AG_NEWS, "test"), ("cos_e_v1.11", COS_E, "validation"),
             ("hellaswag", HELLASWAG, "validation")]  # fmt: skip
    for task, data, test_split in cases:
        record = _record(task)
        train = ps.examples(record, "train")
        assert len(train) == len(data["train"]) == ps.count_examples(record, "train")
        kept = [n for n, why in ps.check_templates(record).items() if why is None]
        assert kept and len(ps.examples(record, "test")) == len(data[test_split]) * len(kept)
        assert all(e.targets.startswith(" ") and e.options[e.label] == e.targets[1:]
                   for e in train)  # fmt: skip
    assert ps.examples(_record("ag_news"), "train")[1].targets == " Sports"


def test_a_parquet_export_is_read_from_its_config_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    write_export(tmp_path / hub.MIRROR, "super_glue/boolq", BOOLQ)
    write_export(tmp_path / hub.MIRROR, "ag_news", AG_NEWS)
    boolq = hub.load_rows("super_glue/boolq", tmp_path)
    assert boolq.get("validation") == BOOLQ["validation"] and boolq.get("test") == []
    assert hub.load_rows("ag_news", tmp_path).get("train") == AG_NEWS["train"]
    assert hub.load_rows("ag_news", tmp_path).get("validation") is None


@pytest.mark.data
def test_local_files_convert_to_the_hub_schemas(data_dir, tmp_path, monkeypatch):
    """Every local SuperGLUE/FewGLUE/PIQA dataset has exactly the Hub columns and types: written
    as its Hub repository and read back through `load_dataset`, the rows are the same."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    for source_id in [*hub.LOCAL, "piqa"]:
        local = hub.local_rows(source_id, data_dir)
        assert local, source_id
        features = FEATURES[source_id]
        for split, rows in local.items():
            for row in rows:
                assert set(row) == set(features), (source_id, split, sorted(row))
                features.encode_example(row)  # raises on a wrong type or label
        folder = write_repo(tmp_path / "hub", source_id, local)
        via_hub = hub.HubSplits(source_id, str(folder))
        for split, rows in local.items():
            assert _typed(via_hub.get(split)) == _typed(rows), (source_id, split)


def _typed(value):
    """The value with the type of every leaf, so that True != 1 and "1" != 1."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return type(value).__name__, value


@pytest.mark.data
def test_a_dataset_missing_offline_is_named_and_the_mixture_builds(hub_data):
    missing = _record("piqa")  # no local PIQA file in hub_data, not cached, offline
    with pytest.raises(common.SourceDataError) as err:
        ps.count_examples(missing, "train")
    message = str(err.value)
    assert message.startswith("PromptSource piqa: Hugging Face dataset 'piqa' is not available")
    assert "HF_DATASETS_OFFLINE=1" in message and "load_dataset('piqa')" in message
    assert f"$OPTIML_DATA_DIR/{hub.MIRROR}/piqa" in message and "\n" not in message

    # PIQA is a test task of the paper's Table 9: SciQ, a training task, is the missing one here
    tasks = ("ag_news", "cos_e_v1.11", "hellaswag", "sciq")
    name = mixing.define_mixture(
        "hub_test",
        mixing.MixtureSpec(
            "train",
            "train",
            mixing.opt_iml_recipe(),
            benchmarks=("promptsource",),
            tasks=tasks,
            partial_data="renormalise",  # 3 tiny local copies: accepted on purpose
        ),  # fmt: skip
    )
    mixing.count_examples.cache_clear()
    rates = mixing.mixture_rates(name)
    sciq = _record("sciq").name
    assert sorted(rates.counts) == [_record(t).name for t in tasks[:3]]
    assert rates.missing == [sciq] and rates.reasons[sciq].startswith(
        "PromptSource sciq: Hugging Face dataset 'sciq' is not available"
    )
    assert sum(r for _, r in rates.rates) == pytest.approx(1.0)
    mixing.count_examples.cache_clear()


@pytest.mark.data
def test_an_unreachable_hub_is_named_at_once(hub_data, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    hub.hub_unreachable.cache_clear()
    try:
        with pytest.raises(common.SourceDataError, match=r"the Hub \(http://127.0.0.1:9\) is "
                           r"unreachable .*set HF_DATASETS_OFFLINE=1"):  # fmt: skip
            ps.count_examples(_record("piqa"), "train")
        assert ps.count_examples(_record("ag_news"), "train") == 4  # local copies need no Hub
    finally:
        hub.hub_unreachable.cache_clear()
