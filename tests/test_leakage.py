"""Leakage filter: n-gram hashing, exact overlap fractions, boilerplate, report and exclusion."""

from __future__ import annotations

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
    assert leakage.read_report(str(path)) == ("t2", "t3")
    assert leakage.read_report(str(path), threshold=0.1) == ("t3",)


def test_level_config_excludes_reported_training_tasks():
    default = levels.build_levels()
    victim = default.train[0].name
    lv = levels.build_levels(levels.LevelConfig(exclude_train_tasks=[victim]))
    assert victim not in {r.name for r in lv.train}
    assert lv.left_out[victim] == "overlaps an evaluation task (leakage report)"
    assert len(lv.train) == len(default.train) - 1
    assert catalog.task(victim).role in ("train", "supervised")
