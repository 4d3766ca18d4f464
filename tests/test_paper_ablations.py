"""The paper's §4 ablation tables as data: the transcription against the paper's text, every sweep
variant mapped to a paper row, and the comparison in the sweep table (md/json/png)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from optiml import paths, sweep
from optiml.evaluation import paper_ablations as pa
from optiml.evaluation import report
from optiml.models import convert, opt

# Cells read from the paper's prose, not from its tables (table, row, level, column, shots).
FROM_PROSE = {
    # §4.3: "the highest accuracy on fully held-out FLAN i.e. 88.8/83.6%"
    ("5", "4/2/20/25/45/2/2", "fully_heldout", "FLAN", 0): 88.8,
    ("5", "4/2/20/25/45/2/2", "fully_heldout", "FLAN", 5): 83.6,
    # §4.3: "fully-held out PromptSource of 79.7/83.5% is achieved with 25% PS"
    ("5", "3/3/35/25/25/7/2", "fully_heldout", "PromptS", 0): 79.7,
    ("5", "3/3/35/25/25/7/2", "fully_heldout", "PromptS", 5): 83.5,
}
# Read by hand from the tables in the paper's text (optiml_facts.md §4.7 quotes Table 7's averages).
BY_HAND = {
    ("7", "Baseline", "-", "Average", 0): 46.0,
    ("7", "+ 0.5% BB3", "-", "Average", 0): 44.8,
    ("7", "+ 0.5% BB3", "-", "Average", 5): 57.5,
    ("4", "2^12", "partially_heldout", "Toxic Det.", 5): 70.0,
    ("4", "10^6", "fully_heldout", "Word Ana.", 0): 8.8,
    ("16", "1531", "-", "Average", 5): 56.0,
    ("19", "1% Reas.", "partially_heldout", "Reas.", 0): 31.3,
    ("20", "Zipf a=2 sf.", "fully_supervised", "Summ.", 5): 28.8,
}
FH, PS = "fully_heldout", "partially_heldout"
NUMBER = re.compile(r"\d+\.\d(/\d+\.\d)?")


def _value(table: str, row: str, level: str, column: str, shots: int) -> float | None:
    for c in pa.cells():
        if (c.table, c.variant, c.level, c.column, c.shots) == (table, row, level, column, shots):
            return c.value
    return None


def test_cells_read_from_the_prose_and_by_hand() -> None:
    for key, value in {**FROM_PROSE, **BY_HAND}.items():
        assert _value(*key) == value, key
    assert _value("4", "2^12", "partially_heldout", "Summ.", 5) is None  # summarization: 0-shot
    assert _value("20", "Baseline", "partially_heldout", "Summ.", 5) == 15.2  # ... except Table 20
    assert _value("19", "Baseline", "-", "Average", 0) is None  # Table 19 has no Average
    assert len(pa.cells()) == 1110


def test_every_average_is_the_mean_of_its_rows_columns() -> None:
    """The paper's Average = the mean of the row's printed cells at those shots (12 categories at
    0-shot, 10 at 5-shot without summarization; Table 20 has all 12), to the printed rounding:
    a check of the transcription and of the rule `compare` uses for our Average."""
    rows: dict[tuple, list[float]] = defaultdict(list)
    averages = {}
    for c in pa.cells():
        key = (c.table, c.variant, c.shots)
        if c.column == pa.AVERAGE:
            averages[key] = c.value
        else:
            rows[key].append(c.value)
    assert len(averages) == 52
    for key, value in averages.items():
        assert sum(rows[key]) / len(rows[key]) == pytest.approx(value, abs=0.05 + 1e-9), key
        assert len(rows[key]) == (12 if key[2] == 0 or key[0] == "20" else 10), key


def test_every_row_has_its_tables_columns() -> None:
    layout_columns: dict[str, list] = defaultdict(list)
    for layout, level, column in pa.columns():
        layout_columns[layout].append((level, column))
    rows: dict[tuple[str, str], list] = defaultdict(list)
    for c in pa.cells():
        rows[(c.table, c.variant)].append((c.level, c.column))
    assert (
        set(t for t, _ in rows)
        == set(pa.tables())
        == {"4", "5", "7", "8", *map(str, range(16, 21))}
    )
    for (table, _), printed in rows.items():
        expected = layout_columns[pa.tables()[table]["columns"]]
        assert list(dict.fromkeys(printed)) == [c for c in expected if c in printed], table
        no_average = set() if ("-", pa.AVERAGE) in printed else {("-", pa.AVERAGE)}
        assert set(printed) == set(expected) - no_average, table


@pytest.mark.data
def test_every_cell_equals_the_paper_text(data_dir: Path) -> None:
    """Each row of Tables 4, 5, 7, 8, 16-20 in the paper's text, number by number, in column
    order, and the printed column headers in the order ablation_columns.tsv gives them."""
    text = (data_dir.parent / "reference" / "opt_iml_paper_v1.txt").read_text().splitlines()
    captions: dict[int, int] = {}
    for i, line in enumerate(text):
        if m := re.match(r"Table ?(\d+):", line):
            captions.setdefault(int(m.group(1)), i)
    ours: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in pa.cells():
        ours[(c.table, c.variant)].append(c.value)
    for table, spec in pa.tables().items():
        end = captions[int(table)]
        start = max(i for i in range(end) if text[i].startswith("Fully Held"))
        header, at = "".join(text[start:end]).replace(" ", ""), 0
        for layout, _, column in pa.columns():
            if layout == spec["columns"] and column != pa.AVERAGE:
                at = header.index(column.replace(" ", ""), at)
        printed: dict[str, list[float]] = {}
        for line in text[start:end]:
            tokens = line.replace("†", "").split()
            n = len(tokens)
            while n and NUMBER.fullmatch(tokens[n - 1]):
                n -= 1
            if n < len(tokens):  # the text drops superscripts (2^7 -> "27") and adds spaces
                cells = [float(v) for x in tokens[n:] for v in x.split("/")]
                printed["".join(tokens[:n])] = cells
        for (t, row), values in ours.items():
            if t == table:
                assert printed.pop(row.replace("^", "").replace(" ", "")) == values, (table, row)
        assert not printed, (table, printed)  # every printed row is transcribed


def test_every_sweep_variant_maps_to_a_paper_row_or_says_why_not() -> None:
    mapped = pa.sweep_map()
    files = sorted((paths.gin_dir() / "experiments" / "ablations").glob("*.gin"))
    assert len(files) >= 7
    declared = set()
    for file in files:
        s, _ = sweep.load_sweep(str(file))
        for variant in s.variants:
            declared.add((file.stem, variant))
            entries = [e for (f, v, _), e in mapped.items() if (f, v) == (file.stem, variant)]
            assert entries, f"{file.name}: variant {variant!r} is not in tasks/paper/sweep_map.tsv"
            for e in entries:
                if e["row"] == "-":
                    assert e["note"], e  # no paper row: the reason is given
                else:
                    assert any(
                        c.table == e["table"] and c.variant == e["row"] for c in pa.cells()
                    ), e
    assert {(f, v) for f, v, _ in mapped} <= declared  # no stale rows


def _report(examples: int = 8) -> dict:
    """A report of 0-shot scores: 3 of the paper's columns (Word Analogy's one dev task, one of
    Cause Effect's, one of Toxic Det.'s, scored by accuracy where the paper has Rouge-L) and a
    category the paper's tables do not have."""
    S = report.TaskScore
    scores = [
        S("a", FH, "Word Analogy", "niv2", "bard", 0, "rougeL", 20.0, num_examples=examples),
        S("b", FH, "Cause Effect Classification", "promptsource", "copa", 0, "accuracy", 70.0),
        S("c", PS, "Toxic Language Detection", "niv2", "civil_comments", 0, "accuracy", 40.0),
        S("d", FH, "Sentiment Analysis", "niv2", "imdb", 0, "rougeL", 90.0),
    ]
    return report.build_report(scores, paper_model=None)


def _run_dir(path: Path, size: str, steps: int, rows: int, length: int) -> Path:
    convert.save_config(path, opt.named_config(size))
    (path / "config.gin").write_text(
        f"BATCH_SIZE = {rows}\nLENGTH = {length}\nTRAIN_STEPS = {steps}\n"
    )
    return path


def test_compare_cells_marks_and_the_average(tmp_path: Path) -> None:
    rep = _report()
    run = _run_dir(tmp_path / "a", "tiny", 30, 8, 256)
    (section,) = pa.compare("dialogue", {"bb3_0.5": rep, "extra": rep}, {"bb3_0.5": run})
    assert section["table"] == "7"
    assert section["scale"] == [
        "paper: OPT 30b, 4000 steps of 256 x 2048 tokens; this run: OPT tiny, 30 steps of 8 x 256 "
        "tokens: not comparable in scale",
        "examples: at most 8 per dev task (paper: 250, §4.1)",
    ]
    (row,) = section["rows"]
    cells = {(c["level"], c["column"]): c for c in row["cells"]}
    word = cells[(FH, "Word Ana.")]
    assert (word["paper"], word["ours"], word["diff"]) == (10.4, 20.0, pytest.approx(9.6))
    assert word["marks"] == [] and word["tasks"] == "1/1"
    wanted = pa.dev_tasks()[(FH, "category", "Cause Effect Classification")]
    assert cells[(FH, "Cause Effect")]["marks"] == [f"partial: 1 of {wanted} tasks measured"]
    toxic = cells[(PS, "Toxic Det.")]["marks"]
    assert "metric: ours accuracy, paper rougeL (Table 15)" in toxic
    average = cells[("-", "Average")]
    assert average["paper"] == 44.8 and average["ours"] == pytest.approx((20 + 70 + 40) / 3)
    assert "partial: average over 3 of 12 columns" in average["marks"]
    assert (
        len(row["cells"]) == 4
    )  # no 5-shot average without 5-shot cells; Sentiment Analysis: none
    assert "Fully held-out/Gram. Corr. 0-shot" in row["not_measured"]
    assert section["unmapped"] == [
        {"variant": "extra", "reason": "not in tasks/paper/sweep_map.tsv"}
    ]
    assert pa.compare("no_such_sweep", {"a": rep}) == []
    (unrecorded,) = pa.compare("dialogue", {"baseline": rep})  # no run directory: never equal
    assert unrecorded["scale"][0].endswith("not recorded: not compared in scale")


def test_scale_marks_at_the_papers_scale(tmp_path: Path) -> None:
    rep = _report(examples=250)
    paper_scale = _run_dir(tmp_path / "a", "30b", 4000, 256, 2048)
    (eps,) = pa.compare("eps_cap", {"eps_4096": rep}, {"eps_4096": paper_scale})
    assert eps["scale"] == []
    (tasks,) = pa.compare("task_scaling", {"tasks_all": rep}, {"tasks_all": paper_scale})
    assert tasks["scale"] == [  # Table 16 ran 2000 steps: marked, but comparable in scale
        "paper: OPT 30b, 2000 steps of 256 x 2048 tokens; this run: OPT 30b, 4000 steps of 256 x "
        "2048 tokens"
    ]
    assert tasks["rows"][0]["cells"][0]["marks"][0].startswith("tasks: all = the registry's")


def test_a_note_marks_only_the_shots_it_names() -> None:
    """metaicl.gin -> Tables 8 and 20; their separator note is about 5-shot prompts only."""
    S = report.TaskScore
    rep = report.build_report([S(f"a{k}", FH, "Word Analogy", "niv2", "bard", k, "rougeL", 30.0)
                               for k in (0, 5)], paper_model=None)  # fmt: skip
    t8, t20 = pa.compare("metaicl", {"zipf_a4": rep})
    assert (t8["table"], t20["table"]) == ("8", "20")
    for section, paper in ((t8, (13.8, 36.5)), (t20, (13.8, 55.8))):
        zero, five, *averages = section["rows"][0]["cells"]
        assert (zero["paper"], five["paper"]) == paper
        assert zero["marks"] == [] and five["marks"][0].startswith("separator: ")
        assert all(a["column"] == pa.AVERAGE for a in averages)


def test_sweep_table_has_the_paper_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A sweep whose variants are done (report + fingerprint): the table is rebuilt with Table 4."""
    file = tmp_path / "eps_cap.gin"
    file.write_text("from __gin__ import dynamic_registration\nfrom optiml import sweep\n"
                    "sweep.Sweep.variants = {'eps_128': ['mixing.MixingConfig.eps = 128'], "
                    "'eps_3': ['mixing.MixingConfig.eps = 3']}\n")  # fmt: skip
    s, _ = sweep.load_sweep(str(file))
    out = tmp_path / "sw"
    for variant in s.variants:
        directory = out / variant
        args = sweep.variant_args(s, variant, str(directory), [], list(s.base))
        _run_dir(directory, "tiny", 30, 8, 256)
        (directory / sweep.FINGERPRINT).write_text(sweep.fingerprint(args, []) + "\n")
        (directory / "report.json").write_text(json.dumps(_report()))
    assert sweep.main([str(file), f"--sweep_dir={out}"]) == 0
    capsys.readouterr()
    table = json.loads((out / "sweep.json").read_text())
    (section,) = table["paper"]
    assert [r["variant"] for r in section["rows"]] == ["eps_128"]
    assert section["unmapped"][0]["variant"] == "eps_3"
    md = (out / "sweep.md").read_text()
    assert "## Compared with the paper: Table 4, EPS" in md
    assert "not comparable in scale**" in md
    assert "| eps_128 | 2^7 | Fully held-out/Word Ana. | 0 | 12.1 | 20.0 | +7.9 | 1/1 |  |" in md
    assert "- not measured (eps_128): every 5-shot cell, Fully held-out/Gram. Corr. 0-shot" in md
    assert (out / "sweep.png").stat().st_size > 0
