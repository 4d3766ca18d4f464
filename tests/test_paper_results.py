"""The paper's Tables 9-14 as data: the transcription against the paper's text, the mapping onto
the registry, and the comparison in reports and in `optiml compare paper:<model>`."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from optiml.bench import catalog
from optiml.evaluation import compare, paper, report

# A few cells read by hand from the paper's PDF text (table, model, task, shots) -> value.
BY_HAND = {
    ("9", "OPT 175B", "MultiRC", 32): 14.0,
    ("10", "OPT-IML 30B", "CB", 5): 66.8,
    ("10", "T0-original-task 11B", "BST", 0): 6.2,
    ("11", "OPT-IML 175B", "WSC", 0): 73.9,
    ("12", "Tk-Instruct 11B", "Avg", 2): 65.3,
    ("13", "OPT-IML 30B", "Spider", 0): 84.3,
    ("14", "OPT-IML-Max 175B", "MMLU", 0): 49.1,
    ("14", "FLAN-T5 11B", "BBH", 3): 45.3,
}
# How the paper's text spells model names that results.tsv writes in full.
SPELLINGS = {
    "OPT 30B": ("OPT 30B", "OPT 30"),
    "OPT 175B": ("OPT 175B", "OPT 175"),
    "OPT-IML 175B": ("OPT-IML 175B", "OPT-IML 175b"),
    "text-davinci-002": ("OpenAI text-davinci-002",),
    "text-davinci-003": ("OpenAI text-davinci-003",),
    "code-davinci-002": ("OpenAI code-davinci-002",),
}


def _value(table: str, model: str, task: str, shots: int) -> float | None:
    for c in paper.cells():
        if (c.table, c.model, c.task, c.shots) == (table, model, task, shots):
            return c.value
    return None


def test_cells_read_by_hand() -> None:
    for key, value in BY_HAND.items():
        assert _value(*key) == value, key
    assert _value("11", "OPT-IML 175B", "WSC", 5) is None  # Table 11 gives WSC 0-shot only
    assert _value("14", "PaLM 62B", "MMLU", 0) is None  # printed "-"
    assert len(paper.cells()) == 564


@pytest.mark.data
def test_every_cell_equals_the_paper_text(data_dir: Path) -> None:
    """Each model row of Tables 9-14 in the paper's text, number by number, in column order."""
    text = (data_dir.parent / "reference" / "opt_iml_paper_v1.txt").read_text().splitlines()
    captions = {}
    for i, line in enumerate(text):
        if m := re.match(r"Table (\d+):", line):
            captions.setdefault(int(m.group(1)), i)
    ours: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in paper.cells():
        ours[(c.table, c.model)].append(c.value)
    for (table, model), values in ours.items():
        published: list[float] = []
        for line in text[captions[int(table) - 1] : captions[int(table)]]:
            for name in SPELLINGS.get(model, (model,)):
                rest = line[len(name) :]
                if line.startswith(name + " ") and re.fullmatch(r"[\d./†–\- ]+", rest.strip()):
                    published += [
                        float(x)
                        for cell in rest.split()
                        for x in cell.replace("†", "").split("/")
                        if x not in ("-", "–")
                    ]
        assert published == values, (table, model)


def test_every_paper_task_maps_to_the_registry() -> None:
    mapped = paper.task_map()
    categories = set(catalog.categories())
    for c in paper.cells():
        if c.task == paper.AVERAGE:
            continue
        entry = mapped[(c.table, c.task)]
        if entry.absent:
            assert entry.protocol.startswith("absent: "), entry
            continue
        records = {r.task: r for r in catalog.tasks(entry.benchmark)}
        if entry.tasks == "*":
            assert records, entry
        elif entry.tasks.startswith("category="):
            category = entry.tasks.removeprefix("category=")
            assert category in categories, entry
            assert any(r.category == category and r.role == "test" for r in records.values())
        else:
            for task in entry.tasks.split():
                assert task in records, (entry, task)


def _score(benchmark: str, subtask: str, shots: int, value: float, **kw: str) -> dict:
    return {"benchmark": benchmark, "subtask": subtask, "shots": shots, "score": value,
            "metric": kw.get("metric", "accuracy"), "category": kw.get("category", "")}  # fmt: skip


def test_compare_same_tasks_shots_and_metric_only() -> None:
    scores = [
        _score("promptsource", "super_glue_cb", 0, 50.0),
        _score("promptsource", "super_glue_cb", 5, 70.0),
        _score("promptsource", "super_glue_rte", 0, 60.0, metric="rougeL"),  # wrong metric
        _score("flan", "cb", 3, 10.0),  # no 3-shot cell
    ]
    rows = paper.compare(scores, "opt-iml-30b")
    by_cell = {(r["table"], r["task"], r["shots"]): r for r in rows}
    # CB of Table 10 (0/5-shot), and Table 9's CB at 0-shot with a prompt mark
    assert by_cell[("10", "CB", 0)]["paper"] == 43.2 and by_cell[("10", "CB", 0)]["ours"] == 50.0
    assert by_cell[("10", "CB", 5)]["diff"] == pytest.approx(70.0 - 66.8)
    assert by_cell[("10", "CB", 0)]["marks"] == []
    assert by_cell[("9", "CB", 0)]["marks"][0].startswith("prompt: ")
    assert ("10", "RTE", 0) not in by_cell and ("11", "CB", 0) not in by_cell
    # The averages exist but say they cover 1 of 12 (Table 10) tasks.
    avg = by_cell[("10", "Avg", 0)]
    assert avg["ours"] == 50.0 and "partial: average over 1 of 12 tasks" in avg["marks"]


def test_compare_averages_prompts_then_tasks_and_marks_missing_tasks() -> None:
    te = "Textual Entailment"
    tests = [r.task for r in catalog.tasks("niv2") if r.category == te and r.role == "test"]
    assert len(tests) >= 2
    scores = [
        _score("niv2", tests[0], 2, 40.0, metric="rougeL", category=te),
        _score("niv2", tests[1], 2, 60.0, metric="rougeL", category=te),
    ]
    (row,) = [r for r in paper.compare(scores, "OPT-IML 175B") if r["task"] == te]
    assert (row["ours"], row["paper"], row["shots"]) == (50.0, 51.0, 2)
    if len(tests) > 2:
        assert row["marks"] == [f"partial: 2 of {len(tests)} tasks measured"]
    with pytest.raises(ValueError, match="unknown paper model 'opt-iml-7b'"):
        paper.compare(scores, "opt-iml-7b")


def test_report_carries_the_paper_column(tmp_path: Path) -> None:
    S = report.TaskScore
    scores = [
        S("ps_cb_0", "fully_heldout", "Textual Entailment", "promptsource", "cb", 0, "accuracy",
          55.0, subtask="super_glue_cb"),
        S("ps_cb_5", "fully_heldout", "Textual Entailment", "promptsource", "cb", 5, "accuracy",
          0.0, subtask="super_glue_cb"),
    ]  # fmt: skip
    rep = report.build_report(scores, title="t")
    assert rep["paper"]["model"] == "OPT-IML 30B"
    assert {(r["table"], r["task"], r["shots"]) for r in rep["paper"]["rows"]} >= {
        ("10", "CB", 0),
        ("10", "CB", 5),
    }
    md = report.format_markdown(rep)
    assert "## Compared with the paper: OPT-IML 30B" in md
    assert "| 10 | CB | 0 | accuracy | 43.2 | 55.0 | +11.8 | 1/1 |  |" in md
    assert "| 9 | CB* | 0 |" in md  # OPT's own prompt is not in the registry: marked
    paths = report.write_report(rep, tmp_path)
    assert paths["plot"].stat().st_size > 0
    assert "paper" not in report.build_report(scores, paper_model=None)


def test_compare_command_with_paper_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert compare.main(["paper:opt-30b", "paper:opt-iml-30b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# OPT 30B vs OPT-IML 30B"
    assert "| Table 10 CB 5-shot accuracy | 24.5 | 66.8 | +42.3 |" in out
    S = report.TaskScore
    run = report.build_report([S("ps_cb_0", "fully_heldout", "Textual Entailment", "promptsource",
                                 "cb", 0, "accuracy", 55.0, subtask="super_glue_cb")])  # fmt: skip
    report.write_report(run, tmp_path)
    assert compare.main(["paper:opt-iml-175b", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| Table 10 CB 0-shot accuracy | 56.4 | 55.0 | -1.4 |  |" in out
    assert compare.main(["paper:gpt-5", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown paper model 'gpt-5'")


@pytest.mark.slow
@pytest.mark.data
def test_released_model_command_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    """runs/paper_eval.gin on a tiny HF checkpoint standing in for facebook/opt-iml-*: convert,
    evaluate Table 10's tasks with the paper's protocol (here 0-shot, 2 examples), compare."""
    import json
    import subprocess
    import sys

    from opt_testing import hf_model

    from optiml.models import convert, opt

    hf_model(opt.named_config("tiny"), seed=3).save_pretrained(tmp_path / "hf")
    convert.main(["hf-to-optiml", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    run = tmp_path / "run"
    argv = [
        sys.executable, "-m", "optiml.main", "--gin_file=models/tiny.gin",
        "--gin_file=runs/paper_eval.gin", f"--gin.MODEL_DIR='{run}'",
        f"--gin.evaluate.evaluate.params_dir='{tmp_path / 'ckpt'}'",
        "--gin.evaluate.evaluate.paper_tables=['10']", "--gin.evaluate.evaluate.shots=[0]",
        "--gin.evaluate.evaluate.max_examples=2", "--gin.evaluate.evaluate.max_new_tokens=4",
        "--gin.opt.OPTConfig.dtype='float32'",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rep = json.loads((run / "report.json").read_text())
    rows = {(r["table"], r["task"], r["shots"]): r for r in rep["paper"]["rows"]}
    assert rep["paper"]["model"] == "OPT-IML 30B"
    assert ("10", "CB", 0) in rows and rows[("10", "CB", 0)]["paper"] == 43.2
    assert {s["shots"] for s in rep["scores"]} == {0} and {s["benchmark"] for s in rep["scores"]}
    # Table 9 shares tasks with Table 10 (CB, RTE, ...): compared too, marked for OPT's prompts
    assert all(r["table"] == "10" or r["marks"][0].startswith("prompt: ") for r in rows.values())
    assert "partial: average over" in " ".join(rows[("10", "Avg", 0)]["marks"])
    assert "## Compared with the paper: OPT-IML 30B" in (run / "report.md").read_text()
