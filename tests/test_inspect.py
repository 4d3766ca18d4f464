"""`python -m optiml.tools.inspect` on the real data: every subcommand's text (fits 80 columns) and
JSON, checked against the catalog, the mixing code, seqio's tokenized tasks and the stream."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optiml.bench import catalog, levels, mixing
from optiml.pipeline import cache, stream
from optiml.tools import inspect, inspection

pytestmark = pytest.mark.data
JFLEG = "optiml:niv2:task1557_jfleg_answer_generation"
ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = inspect.main(list(argv), out=out)
    return code, out.getvalue()


def run_json(*argv: str):
    code, text = run(*argv, "--json")
    assert code == 0
    return json.loads(text)


@pytest.fixture(autouse=True)
def narrow_terminal(monkeypatch, data_dir):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))


def assert_fits(text: str, columns: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > columns]
    assert not long, long[:3]


def test_tasks_filter_by_benchmark_category_role_and_level():
    rows = run_json("tasks", "--benchmark", "niv2", "--category", "Grammar Error Correction")
    expected = [r.name for r in catalog.tasks("niv2") if r.category == "Grammar Error Correction"]
    assert [r["name"] for r in rows] == expected and JFLEG in expected
    assert {r["role"] for r in run_json("tasks", "--role", "dev")} == {"dev"}
    heldout = run_json("tasks", "--level", "fully_heldout")
    assert heldout and {r["category"] for r in heldout} <= set(levels.HELDOUT_CATEGORIES)
    assert len(heldout) == len(levels.build_levels().fully_heldout)

    code, text = run("tasks", "--benchmark", "niv2", "--category", "Grammar Error Correction",
                     "--split", "test")  # fmt: skip
    assert code == 0 and "niv2:task1557_jfleg_answer_generation" in text
    assert text.splitlines()[4].endswith(" 100") and "tasks: niv2 2" in text
    assert_fits(text)


def test_tasks_counts_and_present_match_the_loader():
    rows = run_json("tasks", "--benchmark", "niv2", "--level", "niv2_test", "--split", "test")
    assert len(rows) == 61  # the official test tasks OPT-IML evaluates (Tables 12 and 15)
    loader = catalog.loader("niv2")
    for row in rows[:20]:
        record = catalog.task(row["name"])
        if row["examples"] is None:
            assert "missing" in row["reason"]
        else:
            assert row["examples"] == loader.count_examples(record, "test")
    present = run_json("tasks", "--level", "niv2_test", "--split", "test", "--present")
    assert [r["name"] for r in present] == [r["name"] for r in rows if r["examples"]]
    assert 0 < len(present) < 61  # the data folder lacks some of the official test tasks


def test_bad_filters_fail_naming_the_input(capsys):
    assert run("tasks", "--category", "Underwater Basketry")[0] == 2
    assert "Underwater Basketry" in capsys.readouterr().err
    assert run("mixture", "no_such_mixture")[0] == 2
    assert "no_such_mixture" in capsys.readouterr().err
    assert run("examples", "niv2:task000_nothing")[0] == 2
    assert "task000_nothing" in capsys.readouterr().err


def test_benchmarks_and_categories():
    rows = {r["key"]: r for r in run_json("benchmarks")}
    assert rows["niv2"]["catalog_tasks"] == 1613 and rows["niv2"]["has_loader"]
    assert rows["promptsource"]["proportion"] == 45.0
    cats = {r["category"]: r for r in run_json("categories")}
    assert list(cats) == list(catalog.categories())
    assert cats["Grammar Error Correction"]["benchmarks"]["niv2"] == 2
    assert sum(r["tasks"] for r in cats.values()) == len(catalog.tasks())
    for command in ("benchmarks", "categories"):
        code, text = run(command)
        assert code == 0 and "Super-NaturalInstructions" in text or "Sentiment" in text
        assert_fits(text)


def test_mixture_rates_epochs_and_missing_come_from_mixing():
    s = run_json(
        "mixture", "train.renormalise", "--steps", "1000", "--batch", "8", "--examples-per-row", "2"
    )
    rates = mixing.mixture_rates("optiml_mix:train.renormalise")
    assert {t["task"]: t["rate"] for t in s["tasks"]} == dict(rates.rates)
    assert s["drawn"] == 16000
    for t in s["tasks"]:
        assert t["examples"] == rates.counts[t["task"]]
        assert t["epochs"] == pytest.approx(t["rate"] * 16000 / t["examples"], rel=1e-12)
    assert [t["rate"] for t in s["tasks"]] == sorted((t["rate"] for t in s["tasks"]), reverse=True)
    shares = {b["benchmark"]: b["share"] for b in s["benchmarks"]}
    assert shares == rates.benchmark_rates and sum(shares.values()) == pytest.approx(1.0)
    assert shares["reasoning"] == pytest.approx(0.01)  # an absolute extra share
    nominal = {b["benchmark"]: b["recipe_share"] for b in s["benchmarks"]}
    assert nominal["niv2"] == pytest.approx(0.99 * 25 / 100)  # Crossfit/.../U-SKG sum to 100
    assert nominal["reasoning"] == pytest.approx(0.01)
    assert [m["task"] for m in s["missing"]] == rates.missing
    assert s["missing_benchmarks"] == rates.missing_benchmarks

    code, text = run("mixture", "optiml_mix:train.renormalise", "--steps", "1000", "--batch", "8")
    assert code == 0 and "epochs" in text and "absent locally" in text
    assert "more tasks" in text
    assert_fits(text)
    code, everything = run("mixture", "train.renormalise", "--top", "0", "--all-missing")
    assert all(t["task"].split(":", 1)[1] in everything for t in s["tasks"][:50])
    assert all(m.split(":", 1)[1] in everything for m in rates.missing)


def test_two_recipes_differ_where_the_caps_differ():
    opt = run_json("mixture", "train.renormalise")
    flan = run_json("mixture", "train_flan2022.renormalise")
    styled = {t["task"].removesuffix("#flan2022") for t in flan["tasks"]}  # Flan 2022's styles
    assert {t["task"] for t in opt["tasks"]} == styled
    assert opt["recipe"]["eps"] == 4096 and flan["recipe"]["caps"]["niv2"] == 5000
    share = {m["mixture"]: {b["benchmark"]: b["share"] for b in m["benchmarks"]}
             for m in (opt, flan)}  # fmt: skip
    assert share[flan["mixture"]]["reasoning"] == pytest.approx(0.018)
    assert share[opt["mixture"]]["niv2"] != share[flan["mixture"]]["niv2"]


def test_examples_are_the_seqio_tokens_with_the_target_loss_mask():
    import seqio

    import optiml.registry  # noqa: F401

    rows = run_json("examples", JFLEG + "#2shot", "--split", "test", "-n", "2", "--start", "3")
    task = seqio.get_mixture_or_task(JFLEG + "#2shot")
    ds = task.get_dataset(sequence_length=None, split="test", shuffle=False, use_cached=False)
    seqio_rows = list(ds.skip(3).take(2).as_numpy_iterator())
    assert [r["index"] for r in rows] == [3, 4] and rows[0]["of"] == 100
    for row, ex in zip(rows, seqio_rows, strict=True):
        assert row["prompt_ids"] == ex["inputs"].tolist()
        assert row["target_ids"] == ex["targets"].tolist() and row["target_ids"][-1] == 2
        assert row["inputs"] == ex["inputs_pretokenized"].decode()
        assert row["targets"].startswith(" ") and row["inputs"].count("\n\n") == 2  # 2 demos
        f = row["features"]
        p, t = len(row["prompt_ids"]), len(row["target_ids"])
        assert f["decoder_input_tokens"] == [2] + row["prompt_ids"] + row["target_ids"][:-1]
        assert f["decoder_target_tokens"] == row["prompt_ids"] + row["target_ids"]
        assert f["decoder_loss_weights"] == [0.0] * p + [1.0] * t
        assert set(f["decoder_segment_ids"]) == {1} and f["decoder_positions"][-1] == p + t - 1

    code, text = run("examples", JFLEG, "--split", "test", "-n", "1", "--color", "never")
    assert code == 0 and "[</s>]" in text and "loss on" in text and "|tok: loss 0" in text
    target = run_json("examples", JFLEG, "--split", "test", "-n", "1")[0]["targets"]
    assert "[" + target.split()[0] in text.replace("[ ", "[")  # first target token is marked
    assert_fits(text)
    colored = run("examples", JFLEG, "--split", "test", "-n", "1", "--color", "always")[1]
    assert inspect.DIM in colored and inspect.MARK in colored


def test_examples_cut_long_prompts_on_the_left():
    full = run_json("examples", JFLEG, "--split", "test", "-n", "1")[0]
    cut = run_json("examples", JFLEG, "--split", "test", "-n", "1", "--length", "40")[0]
    t = len(full["target_ids"])
    assert cut["cut_prompt_tokens"] == len(full["prompt_ids"]) + t - 40
    kept = full["prompt_ids"][cut["cut_prompt_tokens"] :]
    assert cut["features"]["decoder_target_tokens"] == kept + full["target_ids"]
    assert sum(cut["features"]["decoder_loss_weights"]) == t


def test_stream_order_is_the_training_streams_order(tmp_path):
    rates = [("optiml:niv2:a", 0.5), ("optiml:niv2:b", 0.3), ("optiml:niv2:c", 0.2)]
    counts = {"optiml:niv2:a": 5, "optiml:niv2:b": 7, "optiml:niv2:c": 3}
    for t, (name, _) in enumerate(rates):  # example i of task t = tokens [10 + t, 100 + i, 2]
        examples = [(np.array([10 + t, 100 + i]), np.array([2])) for i in range(counts[name])]
        cache.write_task(tmp_path, "train", name, examples, seed=0, vocab_size=50272)
    s = stream.MixtureStream(tmp_path, rates, batch_size=4, length=12, seed=7, pool_size=1)
    drawn = []
    for _ in range(15):  # 60 rows of 4 documents each
        batch = next(s)
        for row, segs in zip(batch["decoder_target_tokens"], batch["decoder_segment_ids"],
                             strict=True):  # fmt: skip
            for seg in range(1, segs.max() + 1):
                doc = row[segs == seg]
                drawn.append((rates[doc[0] - 10][0], int(doc[1]) - 100))
    assert inspection.stream_order(rates, counts, seed=7, n=len(drawn)) == drawn
    assert len(drawn) == 240 and {n for n, _ in drawn} == set(counts)  # several epochs each


def test_export_writes_the_streams_first_examples(tmp_path):
    path = tmp_path / "train.jsonl"
    code, text = run(
        "export", "train.renormalise", "-n", "30", "-o", str(path), "--seed", "3", "--tokens"
    )
    assert code == 0 and "wrote 30 examples" in text
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    rates = mixing.mixture_rates("optiml_mix:train.renormalise")
    order = inspection.stream_order(rates.rates, rates.counts, seed=3, n=30)
    assert [(r["task"], r["example_index"]) for r in lines] == order
    assert [r["k"] for r in lines] == list(range(30))
    vocab = inspection.vocabulary()
    for row in lines[:5]:
        record = catalog.task(row["task"])
        loader = catalog.loader(record.benchmark)
        ex = loader.examples(record, "train", num_demos=0, seed=inspection.PROMPT_SEED)
        assert (row["inputs"], row["targets"], row["id"]) == (
            ex[row["example_index"]].inputs, ex[row["example_index"]].targets,
            ex[row["example_index"]].id,
        )  # fmt: skip
        assert row["prompt_ids"] == vocab.encode(row["inputs"])
        assert row["target_ids"] == vocab.encode(row["targets"]) + [2]
    code, text = run("export", "mmlu", "-n", "3")  # stdout, evaluation split
    assert code == 0 and [json.loads(x)["split"] for x in text.splitlines()] == ["test"] * 3


def test_inspection_renders_what_the_registry_trains_on(data_dir):
    import seqio

    import optiml.registry  # noqa: F401

    name = "optiml:niv2:task1557_jfleg_answer_generation"
    dataset = seqio.get_mixture_or_task(name).get_dataset(None, split="test", shuffle=False)
    registry = [
        (ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode())
        for ex in dataset.take(8).as_numpy_iterator()
    ]
    shown = [(r["inputs"], r["targets"]) for r in inspection.example_rows(name, "test", n=8)]
    assert shown == registry
    other_seed = inspection.example_rows(name, "test", n=8, prompt_seed=1)
    assert [(r["inputs"], r["targets"]) for r in other_seed] != registry  # the seed shows


def test_module_runs_and_listing_stays_tensorflow_free(data_dir):
    code = (
        "import sys; from optiml.tools import inspect; "
        "assert inspect.main(['tasks', '--benchmark', 'bbh', '--json']) == 0; "
        "assert inspect.main(['mixture', 'bbh']) == 0; "
        "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules"
    )
    env = {**os.environ, "OPTIML_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.split("\n]\n")[0] + "\n]")
    assert len(rows) == 27 and all(r["benchmark"] == "bbh" for r in rows)
    helped = subprocess.run(
        [sys.executable, "-m", "optiml.tools.inspect", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert helped.returncode == 0 and "export" in helped.stdout
