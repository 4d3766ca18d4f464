"""Retrieved demonstrations: BM25 order with key tie-breaks, never the evaluated instance (by id
or by text), never an evaluated or held-out instance of the task; deterministic; selectable per
run through the plan (`#retrieved_<k>shot` variants), recorded in each plan entry and the report."""

from __future__ import annotations

import pytest
from rank_bm25 import BM25Okapi

from optiml.bench import catalog, levels
from optiml.bench.sources import niv2, retrieval


def test_top_follows_bm25_then_the_key() -> None:
    texts = ["red apple pie", "green apple", "blue sky", "red apple pie", "sky"]
    keys = ["b", "a", "c", "e", "d"]
    bm25 = retrieval.Retriever(texts, keys)
    expected = BM25Okapi([t.split() for t in texts]).get_scores(["red", "apple"])
    assert list(bm25.scores("Red, apple!")) == pytest.approx(list(expected))
    assert bm25.top("red apple", k=3) == [0, 3, 1]  # b and e tie: key order
    assert bm25.top("red apple", k=3, exclude="b") == [3, 1, 2]  # then "c" < "d", both 0
    assert bm25.top("red apple pie", k=5) == [1, 2, 4]  # never the input itself (its text)
    assert bm25.top("nothing shared", k=2) == [1, 0]  # all 0: key order
    assert retrieval.Retriever([], []).top("x", 3) == []


def test_scores_are_rank_bm25s_bit_for_bit() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    vocab = [f"w{j}" for j in range(40)]
    texts = [" ".join(rng.choice(vocab, rng.integers(1, 30))) for _ in range(300)] + ["", "w1"]
    bm25 = retrieval.Retriever(texts, [str(i) for i in range(len(texts))])
    library = BM25Okapi([retrieval.words(t) for t in texts])
    for query in ["w1", "w3 w3 w7 nothing", "W0, w39! w12 w5 w5 w5", "absent", texts[7]]:
        assert np.array_equal(bm25.scores(query), library.get_scores(retrieval.words(query)))


def test_an_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match="demos='bm25'"):
        retrieval.check_mode("bm25")


def _task() -> niv2.NIV2Task:
    topics = ["apple", "river", "violin", "planet", "garden", "engine", "castle", "forest"]
    instances = tuple(
        (f"id{i}", f"tell me about the {topics[i % 8]} number {i}", (f"out{i}",))
        for i in range(150)
    )
    return niv2.NIV2Task("task_x", "Define.", (("pos in", "pos out"),), instances)


def _shown(prompt: str) -> set[str]:
    return {line.split("number ")[1].split()[0] for line in prompt.splitlines() if "number" in line}


@pytest.mark.parametrize("heldout", [None, "some_dataset"])
def test_niv2_retrieves_training_instances_only(heldout) -> None:
    task = _task()
    evaluated = {i[0] for i in niv2.split_instances(task, "test", heldout)}
    held = {i[0] for i in task.instances if heldout and niv2._is_heldout(heldout, i)}
    examples = niv2.render_examples(task, "test", heldout=heldout, num_demos=3, demos="retrieved")
    again = niv2.render_examples(task, "test", heldout=heldout, num_demos=3, demos="retrieved")
    assert examples == again and examples
    for example in examples:
        own = example.id[2:]
        shown = _shown(example.inputs) - {own}
        assert len(shown) == 3 and "pos in" not in example.inputs  # no positive examples
        assert not {f"id{n}" for n in shown} & (evaluated | held)
        topic = next(w for w in example.inputs.split("about the ")[-1].split())
        assert example.inputs.count(f"about the {topic} ") == 4  # the same topic retrieved


def test_niv2_random_demonstrations_are_unchanged_by_default() -> None:
    task = _task()
    default = niv2.render_examples(task, "test", num_demos=2)
    assert default == niv2.render_examples(task, "test", num_demos=2, demos="random")
    assert "pos in" in default[0].inputs


@pytest.mark.data
def test_promptsource_retrieves_training_rows_never_test_rows(data_dir) -> None:
    from optiml.bench.sources import promptsource as ps

    record = next(r for r in catalog.tasks("promptsource") if r.task == "super_glue_cb")
    template = ps.load_templates(record.source_id)[0]
    train = {
        ps.render(template, row, f"0:{i}:{template.id}")[0] for i, row in ps._rows(record, "train")
    }
    test = {
        ps.render(template, row, f"0:{i}:{template.id}")[0] for i, row in ps._rows(record, "test")
    }
    examples = [e for e in ps.examples(record, "test", num_demos=2, demos="retrieved")
                if e.id.endswith(f"|{template.name}")]  # fmt: skip
    assert examples == [e for e in ps.examples(record, "test", num_demos=2, demos="retrieved")
                        if e.id.endswith(f"|{template.name}")]  # fmt: skip
    for example in examples:
        *demos, _ = example.inputs.split(ps.DEMO_SEPARATOR)
        assert len(demos) == 2
        for demo in demos:
            assert any(demo.startswith(p) for p in train)
            assert not any(demo.startswith(p) for p in test - train)


@pytest.mark.data
def test_the_plan_selects_retrieved_variants_and_records_the_mode(data_dir) -> None:
    from optiml.evaluation import plan

    entries = plan.plan_from_registry(
        phase="dev", benchmarks=["promptsource", "niv2"], max_tasks_per_level=1, demos="retrieved"
    )
    few = [e for e in entries if e.shots]
    assert few and all(e.demos == "retrieved" and "#retrieved_" in e.task for e in few)
    assert all(e.demos == "random" and "#" not in e.task for e in entries if not e.shots)
    assert levels.LEVELS  # (the levels decide which instances are held out)


def test_niv2_reachable_shots_in_retrieved_mode_count_the_pool_alone(monkeypatch) -> None:
    """Retrieved demonstrations never include the positive examples, so a 5-shot prompt of a
    task with a small pool reaches one demonstration fewer than in the default mode."""
    small = niv2.NIV2Task("task_x", "Define.", (("pos in", "pos out"),), _task().instances[:4])
    monkeypatch.setattr(niv2, "load_task", lambda task_id, root=None: small)
    record = next(r for r in catalog.tasks("niv2") if r.role == "train")
    pool = niv2.demo_pool(small, "train", niv2.heldout_key(record))
    assert 1 < len(pool) < 5
    assert niv2.reachable_shots(record, "train", 5) == min(5, 1 + len(pool) - 1)
    assert niv2.reachable_shots(record, "train", 5, demos="retrieved") == len(pool) - 1
    rendered = niv2.render_examples(small, "train", num_demos=5, demos="retrieved")
    assert {len(_shown(e.inputs) - {e.id[2:]}) for e in rendered} == {len(pool) - 1}


TOPICS = ["apple", "river", "violin", "planet", "garden", "engine", "castle", "forest"]


def _about(i: int) -> str:
    return f"tell me about the {TOPICS[i % 8]} number {i}"


@pytest.mark.parametrize("loader", ["flan", "unifiedskg", "reasoning"])
def test_other_loaders_offer_retrieved_variants(loader) -> None:
    from optiml.bench.sources import common
    from optiml.evaluation import plan

    module = catalog.loader(loader)
    assert "retrieved_5shot" in common.variants(module)
    assert plan.shot_variant(module, "5shot", 5, "retrieved") == ("retrieved_5shot", "retrieved")


def _numbers(prompt: str) -> list[str]:
    """The row numbers `_about` prompts show, in order, one per line that has one."""
    return [line.split("number ")[1].split()[0].strip('"?') for line in prompt.splitlines()
            if "number " in line]  # fmt: skip


@pytest.mark.parametrize("role", ["test", "supervised"])
def test_keyword_loaders_retrieve_training_rows_only(role) -> None:
    """UnifiedSKG (and any keyword loader): the highest-overlap training rows, never the
    evaluated row nor a held-out one (a supervised task without evaluation rows holds out 10%)."""
    import dataclasses

    from optiml.bench.sources import common

    rows = {"train": [(_about(i), (f"out{i}",)) for i in range(60)]}
    if role == "test":
        rows["validation"] = [("the violin and the violin bow", ("v",))]
    record = dataclasses.replace(catalog.task("optiml:unifiedskg:dart"), role=role)
    examples, _, _ = common.keyword_loader(lambda source_id: rows, lambda r: "Say.")
    shown = examples(record, "test", num_demos=3, demos="retrieved")
    assert shown == examples(record, "test", num_demos=3, demos="retrieved") and shown
    held = {str(i) for i in range(60) if levels.heldout_instance("dart", str(i))}
    assert bool(held) == (role == "supervised") or role == "test"
    for example in shown:
        *demos, own = _numbers(example.inputs) or ["-"]
        if role == "test":  # hand-made: only the violin rows share words with the input
            assert _numbers(example.inputs) == ["10", "18", "2"]  # BM25 ties: key (str) order
            continue
        assert own in held and len(demos) == 3 and not set(demos) & held  # training rows only
        assert {int(d) % 8 for d in demos} == {int(own) % 8}  # the same topic: highest overlap
    train = examples(record, "train", num_demos=2, demos="retrieved")
    for example in train:  # never the evaluated row itself
        *demos, own = _numbers(example.inputs)
        assert (
            len(demos) == 2 and own not in demos and {int(d) % 8 for d in demos} == {int(own) % 8}
        )


@pytest.mark.data  # FLAN's templates.py
def test_flan_retrieves_the_highest_overlap_training_rows(data_dir, monkeypatch) -> None:
    from optiml.bench.sources import flan

    record = catalog.task("optiml:flan:rte")
    convert = flan.DATASETS["rte"][1]
    train = [convert({"premise": _about(i), "hypothesis": "It is.", "label": i % 2})
             for i in range(40)]  # fmt: skip
    test = [convert({"premise": "the castle number 30 stands", "hypothesis": "It is.", "label": 0})]
    monkeypatch.setattr(flan, "_rows", lambda rec, split: train if split == "train" else test)
    (example,) = flan.examples(record, "test", num_demos=2, demos="retrieved")
    assert example == flan.examples(record, "test", num_demos=2, demos="retrieved")[0]
    assert _numbers(example.inputs) == ["30", "14", "30"]  # the row sharing "30", a castle, itself
    assert example.inputs != flan.examples(record, "test", num_demos=2)[0].inputs
    assert example.id.startswith("0|template ")
    for e in flan.examples(record, "train", num_demos=2, demos="retrieved"):
        *demos, own = _numbers(e.inputs)  # never the evaluated row itself
        assert own == e.id and own not in demos and len(demos) == 2
        assert {int(d) % 8 for d in demos} == {int(own) % 8}


def test_reasoning_retrieves_by_question_never_the_same_question(monkeypatch) -> None:
    from optiml.bench.sources import reasoning

    record = catalog.task("optiml:reasoning:gsm8k")
    pool = [(_about(i) + "?", str(i), "Because.") for i in range(30)]
    rows = {"train": pool, "test": [(_about(9) + "?", "9", "Because.")]}
    monkeypatch.setattr(reasoning, "load_rows", lambda source_id: rows)
    (example,) = reasoning.examples(record, "test", num_demos=2, demos="retrieved")
    assert example == reasoning.examples(record, "test", num_demos=2, demos="retrieved")[0]
    assert _numbers(example.inputs) == ["1", "17", "9"]  # 2 river rows, never its own question
