"""Generalization levels, and the leakage test: no task and no instance is both in a training
mixture and in an evaluation mixture."""

from __future__ import annotations

import collections

import pytest

from optiml.bench import catalog, levels, mixing
from optiml.bench.sources import niv2

EVAL_MIXTURES = ("fully_heldout", "partially_heldout", "fully_supervised", "dev", "test",
                 "niv2_test")  # fmt: skip
TRAIN_MIXTURES = ("train", "train_flan2022", "niv2_train")  # train_max trains on everything


def test_paper_defaults():
    lv = levels.build_levels()
    train_categories = {r.category for r in lv.train}
    assert not train_categories & set(levels.HELDOUT_CATEGORIES)
    assert {r.category for r in lv.fully_heldout} <= set(levels.HELDOUT_CATEGORIES)
    assert len(lv.fully_heldout) > 50
    # partially held-out: unseen tasks of categories that are also trained on
    for category in ("Question Answering", "Toxic Language Detection", "Summarization"):
        assert category in train_categories
        assert any(r.category == category for r in lv.partially_heldout)
    assert any(r.benchmark == "mmlu" for r in lv.partially_heldout)
    assert len(lv.niv2_test) == 119
    assert all(r.role == "supervised" for r in lv.fully_supervised) and lv.fully_supervised
    dev = {r.name for r in lv.dev if r.role != "supervised"}
    test = {r.name for r in lv.test if r.role != "supervised"}
    assert dev and test and not dev & test
    assert all(r.languages == ("English",) for r in lv.train if r.benchmark == "niv2")


def test_every_evaluated_task_has_exactly_the_level_it_is_listed_in():
    lv = levels.build_levels()
    jfleg = catalog.task("optiml:niv2:task1557_jfleg_answer_generation")  # Grammar Error Corr.
    assert lv.level_of(jfleg) == "fully_heldout"
    assert lv.level_of(next(r for r in lv.train if r.role == "train")) is None  # trained on
    for level in levels.LEVELS:
        records = getattr(lv, level)
        assert records and all(lv.level_of(r) == level for r in records), level
    mmlu = [r for r in lv.eval_only if r.benchmark == "mmlu"]
    assert mmlu and {lv.level_of(r) for r in mmlu} == {"partially_heldout"}


def test_held_out_categories_are_configurable():
    config = levels.LevelConfig(heldout_categories=("Textual Entailment",))
    lv = levels.build_levels(config)
    assert any(r.category == "Coreference Resolution" for r in lv.train)
    assert not any(r.category == "Textual Entailment" for r in lv.train)
    with pytest.raises(ValueError, match="unknown categories \\['Nope'\\]"):
        levels.build_levels(levels.LevelConfig(heldout_categories=("Nope",)))
    as_list = levels.LevelConfig(heldout_categories=["Textual Entailment"])  # as gin passes it
    assert levels.build_levels(as_list) is lv


def test_english_only_and_train_on_everything():
    default = levels.build_levels()
    multi = levels.build_levels(levels.LevelConfig(english_only=False))
    added = {r.name for r in multi.train} - {r.name for r in default.train}
    assert added and all(catalog.task(n).languages != ("English",) for n in added)
    everything = levels.build_levels(levels.LevelConfig(train_on_everything=True))
    evaluated = {r.name for r in default.evaluation() if r.role != "eval_only"}
    assert evaluated <= {r.name for r in everything.train}  # OPT-IML-Max trains on them too


def test_shared_datasets_are_left_out_of_training_with_a_reason():
    lv = levels.build_levels()
    reasons = lv.left_out
    assert reasons["optiml:niv2:task167_strategyqa_question_generation"].startswith(
        "shares dataset 'strategyqa'"
    )
    eval_datasets = {r.dataset for r in lv.evaluation()} - set(levels.BROAD_SOURCES)
    assert not {r.dataset for r in lv.train if r.role != "supervised"} & eval_datasets


def test_instance_split_is_deterministic_and_about_ten_percent():
    ids = [f"task1-{i}" for i in range(5000)]
    held = [i for i in ids if levels.heldout_instance("task1", i)]
    assert held == [i for i in ids if levels.heldout_instance("task1", i)]
    assert 400 < len(held) < 600


@pytest.mark.data
def test_no_task_and_no_instance_leaks_from_training_into_evaluation(data_dir, monkeypatch):
    """Over the data actually present: the training mixtures' (task, instance) pairs and the
    evaluation mixtures' pairs are disjoint, and so are their data sources."""
    import optiml.registry  # noqa: F401  (defines the mixtures)

    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    records = {r.name: r for r in catalog.tasks()}
    train_tasks = {
        n for m in TRAIN_MIXTURES for n, _ in mixing.mixture_rates(f"optiml_mix:{m}").rates
    }
    eval_tasks = collections.defaultdict(set)  # task name -> splits used for evaluation
    for m in EVAL_MIXTURES:
        spec = mixing.MIXTURES[f"optiml_mix:{m}"]
        for n, _ in mixing.mixture_rates(f"optiml_mix:{m}").rates:
            eval_tasks[n].add(spec.split)
    assert len(train_tasks) >= 600 and len(eval_tasks) >= 150

    # 1. task level: a whole evaluation task is never trained on
    shared = train_tasks & set(eval_tasks)
    assert all(records[n].role == "supervised" for n in shared), sorted(shared)[:5]
    # 2. instance level: supervised tasks train and evaluate on disjoint instances
    assert shared
    for name in shared:
        loader = catalog.loader(records[name].benchmark)
        train_ids = {e.id for e in loader.examples(records[name], "train")}
        for split in eval_tasks[name]:
            eval_ids = {e.id for e in loader.examples(records[name], split)}
            assert eval_ids and not train_ids & eval_ids, name
    # 2b. NIV2 tasks of one dataset hold out the same input texts: no training task of that
    # dataset has an evaluated text among its training instances
    by_dataset = collections.defaultdict(list)
    for name in train_tasks:
        if records[name].benchmark == "niv2":
            by_dataset[records[name].dataset].append(records[name])
    for name in shared:
        rec = records[name]
        if rec.benchmark != "niv2":
            continue
        held = {
            i[1].strip()
            for split in eval_tasks[name]
            for i in niv2.split_instances(niv2.load_task(rec.source_id), split, rec.dataset)
        }
        for other in by_dataset[rec.dataset]:
            task = niv2.load_task(other.source_id)
            trained = {
                i[1].strip() for i in niv2.split_instances(task, "train", niv2.heldout_key(other))
            }
            assert not held & trained, (name, other.name)
    # 3. source level: no evaluation task shares its dataset with a training task
    train_sets = {records[n].dataset for n in train_tasks if n not in shared}
    eval_sets = {records[n].dataset for n in eval_tasks if n not in shared}
    assert not (train_sets & eval_sets) - set(levels.BROAD_SOURCES)
