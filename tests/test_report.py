"""The generalization report: known per-task scores -> hand-computed aggregation, files, compare."""

from __future__ import annotations

import json

import pytest

from optiml.evaluation import compare, report

FH, PS = "fully_heldout", "partially_heldout"


def _scores(copa_ps_0: float = 60.0) -> list[report.TaskScore]:
    S = report.TaskScore
    return [
        # COPA in two benchmarks at 0-shot (accuracy 60, ROUGE-L 40) -> task 50
        S("ps_copa_0", FH, "Cause Effect", "promptsource", "copa", 0, "accuracy", copa_ps_0),
        S("niv2_copa_0", FH, "Cause Effect", "niv2", "copa", 0, "rougeL", 40.0),
        S("ps_copa_5", FH, "Cause Effect", "promptsource", "copa", 5, "accuracy", 80.0),
        S("niv2_cause_0", FH, "Cause Effect", "niv2", "cause_effect", 0, "rougeL", 70.0),
        S("niv2_analogy_0", FH, "Word Analogy", "niv2", "bard", 0, "rougeL", 20.0),
        # MMLU subtasks at 5-shot: 30 and 50 -> 40
        S("mmlu_anatomy", PS, "MMLU", "mmlu", "mmlu", 5, "accuracy", 30.0, subtask="anatomy"),
        S("mmlu_law", PS, "MMLU", "mmlu", "mmlu", 5, "accuracy", 50.0, subtask="law"),
    ]


def test_hand_computed_aggregation() -> None:
    rep = report.build_report(_scores(), title="t")
    fh = rep["levels"][FH]
    assert fh["tasks"] == {
        "Cause Effect / copa": {"0": 50.0, "5": 80.0},
        "Cause Effect / cause_effect": {"0": 70.0},
        "Word Analogy / bard": {"0": 20.0},
    }
    # category 0-shot: mean(copa 50, cause_effect 70) = 60; 5-shot: 80
    assert fh["categories"] == {"Cause Effect": {"0": 60.0, "5": 80.0}, "Word Analogy": {"0": 20.0}}
    assert fh["shots"] == {"0": 40.0, "5": 80.0}  # mean(60, 20); 80
    assert fh["combined"] == round((60 + 80 + 20) / 3, 4)
    # per benchmark: NIV2 0-shot mean(40, 70, 20)
    assert fh["benchmarks"] == {
        "niv2": {"0": round(130 / 3, 4)},
        "promptsource": {"0": 60.0, "5": 80.0},
    }
    assert fh["num_tasks"] == 3  # copa, cause_effect, bard: the rows of "tasks", not x shots
    ps = rep["levels"][PS]
    assert ps["categories"] == {"MMLU": {"5": 40.0}} and ps["combined"] == 40.0
    assert "fully_supervised" not in rep["levels"]


def test_bad_scores_are_named() -> None:
    with pytest.raises(ValueError, match="'x': unknown level 'nope'"):
        report.TaskScore("x", "nope", "c", "b", "n", 0, "accuracy", 1.0)
    with pytest.raises(ValueError, match="outside"):
        report.TaskScore("x", FH, "c", "b", "n", 0, "accuracy", 101.0)
    with pytest.raises(ValueError, match="two scores at 0 shots"):
        report.build_report(_scores() + _scores()[:1])
    with pytest.raises(ValueError, match="no task scores"):
        report.build_report([])


def test_written_files_and_markdown(tmp_path) -> None:
    rep = report.build_report(_scores(), title="tiny")
    paths = report.write_report(rep, tmp_path / "run")
    assert json.loads(paths["json"].read_text()) == rep
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| Fully held-out | 3 | 53.3 | 0-shot 40.0, 5-shot 80.0 |" in md
    assert "| Cause Effect | 60.0 | 80.0 |" in md
    assert "| Word Analogy | 20.0 | - |" in md
    assert report.load_report(tmp_path / "run") == rep


def test_every_bar_is_labelled_with_its_score_zero_included() -> None:
    import matplotlib.pyplot as plt

    scores = [s for s in _scores() if s.level == FH]
    zero = report.TaskScore("z", FH, "Zero Category", "niv2", "zero", 0, "rougeL", 0.0)
    fig = report.figure(report.build_report([*scores, zero]))
    labels = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text()]
    plt.close(fig)
    # Cause Effect (0-shot 60, 5-shot 80), Word Analogy (0-shot 20), Zero Category (0-shot 0)
    assert sorted(labels) == ["0.0", "20.0", "60.0", "80.0"]


def test_compare_side_by_side(tmp_path, capsys) -> None:
    a = report.build_report(_scores(copa_ps_0=60.0))
    b = report.build_report(_scores(copa_ps_0=100.0))  # copa 0-shot 50 -> 70, category 60 -> 70
    text = compare.compare(a, b)
    assert "| Cause Effect 0-shot | 60.0 | 70.0 | +10.0 |" in text
    assert "| Cause Effect 5-shot | 80.0 | 80.0 | +0.0 |" in text
    assert "| combined | 53.3 | 56.7 | +3.3 |" in text
    report.write_report(a, tmp_path / "a")
    report.write_report(b, tmp_path / "b")
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b" / "report.json")]) == 0
    assert "+10.0" in capsys.readouterr().out
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "no report at" in capsys.readouterr().err
