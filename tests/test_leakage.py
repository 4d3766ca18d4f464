"""Leakage filter: n-gram hashing, exact overlap fractions, boilerplate, report and exclusion."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optiml.bench import catalog, levels
from optiml.tools import leakage

SECRET = "the quick brown fox jumps over the lazy dog near the old river bank today"
TEMPLATE = "please read the following text carefully and answer the question that comes after it"


def words(i: int, n: int = 20) -> str:
    return " ".join(f"w{i}x{j}" for j in range(n))


def test_ngram_hashes():
    assert len(leakage.ngram_hashes(words(0, 12))) == 0
    assert len(leakage.ngram_hashes(words(0, 13))) == 1
    assert len(leakage.ngram_hashes(words(0, 15))) == 3
    # case and punctuation do not matter; word order does
    a = leakage.ngram_hashes("The, QUICK brown fox " + words(1, 9))
    assert set(a) == set(leakage.ngram_hashes("the quick brown fox " + words(1, 9)))
    assert not set(a) & set(leakage.ngram_hashes("quick the brown fox " + words(1, 9)))


def test_exact_fraction_and_boilerplate():
    train = {
        "train_a": leakage.example_hashes([words(1), f"{words(2)} {SECRET}", words(3)]),
        # train_b has the eval template as *data* in one example: not a leak of eval data
        "train_b": leakage.example_hashes([TEMPLATE, words(4), words(5), words(6)]),
    }
    index = leakage.NgramIndex(train)
    # 8 eval examples, all with the same template (boilerplate: ignored); 2 hold the secret
    texts = [f"{TEMPLATE} {words(100 + i)}" for i in range(8)]
    texts[3] += " " + SECRET
    texts[6] = f"{TEMPLATE} {SECRET} {words(200)}"
    (pair,) = index.overlaps("eval_x", leakage.example_hashes(texts))
    assert (pair.train_task, pair.eval_task, pair.shared, pair.eval_examples) == (
        "train_a", "eval_x", 2, 8,
    )  # fmt: skip
    assert pair.fraction == 0.25
    # a task is never paired with itself
    assert index.overlaps("train_a", train["train_a"]) == []


def test_report_round_trip_and_threshold(tmp_path):
    pairs = [leakage.Pair("t1", "e1", 1, 200), leakage.Pair("t2", "e1", 3, 100),
             leakage.Pair("t3", "e2", 50, 100)]  # fmt: skip
    path = tmp_path / "report.tsv"
    assert leakage.write_report(pairs, str(path)) == 2  # 0.5% is under the 1% default
    lines = path.read_text().splitlines()
    assert lines[0] == "train_task\teval_task\tfraction\tshared\teval_examples"
    assert lines[1] == "t3\te2\t0.5000\t50\t100" and lines[2] == "t2\te1\t0.0300\t3\t100"


def test_the_catalogs_leakage_pairs_leave_training_tasks_out(monkeypatch):
    """tasks/leakage.tsv is read by the levels: a training task paired with an evaluated task
    above 1% is left out with the figures; a pair whose other side is not evaluated is not."""
    evaluated = "optiml:niv2:task1557_jfleg_answer_generation"  # a dev task (Table 15)
    victim, bystander = (r.name for r in levels.build_levels().train[:2])
    fake = (catalog.Leak(victim, evaluated, 0.25, 25, 100),
            catalog.Leak(bystander, victim, 0.5, 50, 100))  # fmt: skip
    monkeypatch.setattr(catalog, "leakage", lambda: fake)
    levels.build_levels.cache_clear()
    try:
        lv = levels.build_levels()
        trained = {r.name for r in lv.train}
        assert victim not in trained and bystander in trained
        assert lv.left_out[victim] == (
            f"25.0% of {evaluated}'s evaluation examples share a 13-gram with it "
            "(tasks/leakage.tsv)"
        )
        off = levels.build_levels(levels.LevelConfig(leakage_filter=False))
        assert victim in {r.name for r in off.train}
    finally:
        levels.build_levels.cache_clear()


def test_leakage_file_is_well_formed():
    leaks = catalog.leakage()
    assert leaks and all(leak.fraction > levels.LEAKAGE_THRESHOLD for leak in leaks)
    for leak in leaks:  # same-dataset pairs are the shared-dataset rule's, not written
        a, b = catalog.task(leak.train_task), catalog.task(leak.eval_task)
        assert a.dataset != b.dataset or a.dataset in levels.BROAD_SOURCES
        assert leak.shared == round(leak.fraction * leak.eval_examples)


@pytest.mark.slow
@pytest.mark.data
def test_no_default_training_task_overlaps_an_evaluation_task(data_dir, monkeypatch):
    """Paper §2.3 on the local data: no training task of the default levels shares a 13-gram
    with more than 1% of any evaluated task's examples (tasks/leakage.tsv is up to date)."""
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    lv = levels.build_levels()
    judged = [r for r in lv.eval_only if lv.level_of(r) is not None]  # MMLU
    evaluated = [*lv.evaluation(), *lv.fully_supervised, *judged]
    pairs = leakage.all_pairs(train=lv.train, evaluate=evaluated)
    over = sorted((p.fraction, p.train_task, p.eval_task) for p in pairs
                  if p.fraction > levels.LEAKAGE_THRESHOLD)  # fmt: skip
    assert not over, over[-5:]
    assert pairs  # small overlaps exist (and are allowed, as in the paper)


@pytest.mark.slow
@pytest.mark.data
def test_no_mmlu_test_question_is_in_a_training_prompt_or_target(data_dir, monkeypatch):
    """Every MMLU test question of at least 8 words (12,815 distinct of 14,042; shorter ones such
    as "Osteoclasts" are not specific to MMLU) is absent, word for word, from every training
    example (prompt and target) of the default training level on the local data."""
    import csv

    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    questions = {}
    for path in sorted((data_dir / "mmlu" / "test").glob("*.csv")):
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                words = re.findall(r"\w+", row["question"].lower())
                if len(words) >= 8:
                    anchor = leakage.ngram_hashes(" ".join(words[:8]), 8)[0]
                    questions.setdefault(anchor, set()).add(" ".join(words))
    assert len({q for qs in questions.values() for q in qs}) == 12_815  # distinct ones
    anchors = np.sort(np.fromiter(questions, np.uint64))  # sorted once (np.isin sorts per call)
    examples = 0
    for rec in levels.build_levels().train:
        loader = catalog.loader(rec.benchmark)
        try:
            rendered = loader.examples(rec, "train")
        except (OSError, ValueError, KeyError):
            continue  # not present here
        for e in rendered:
            examples += 1
            text = e.inputs + " " + e.targets
            hashes = leakage.ngram_hashes(text, 8)
            at = np.minimum(np.searchsorted(anchors, hashes), len(anchors) - 1)
            hits = hashes[anchors[at] == hashes]
            if len(hits):
                words = " " + " ".join(re.findall(r"\w+", text.lower())) + " "
                found = [q for h in hits for q in questions[h] if f" {q} " in words]
                assert not found, (rec.name, e.id, found[:1])
    assert examples > 250_000
