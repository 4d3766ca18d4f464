"""The generalization report: OPT-IML's aggregation of per-task scores (paper section 4.1).

Input: one `TaskScore` per evaluated (seqio task, shots), e.g.

    TaskScore(task="mmlu_anatomy_5shot", level="partially_heldout", category="MMLU",
              benchmark="mmlu", name="mmlu", subtask="anatomy", shots=5, metric="accuracy",
              score=31.0)

For each generalization level (`levels.LEVELS`: the paper's fully held-out, partially supervised
and fully supervised levels, keyed `fully_heldout`, `partially_heldout`, `fully_supervised`):
  1. subtasks -> task: mean over the subtasks (MMLU's 57 subjects, Winobias variants, prompts)
     of the same (name, benchmark, shots);
  2. task -> one score per task name: mean over the benchmarks it appears in (COPA from
     PromptSource, NIV2 and FLAN);
  3. category: mean over its tasks, for every shot setting separately (0, 2, 3, 5, ...);
  4. combined: mean of all (category, shots) cells of the level; also the mean per shot setting.
Accuracy and ROUGE-L are averaged together, as the paper does "for presentation purposes".
A per-benchmark view (mean of step-1 task scores per benchmark) is reported beside it.

`build_report(scores)` returns a JSON-able dict; `write_report(report, run_dir)` writes
report.json, report.md and report.png and `format_markdown(report)` is what gets printed.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optiml.bench.levels import LEVELS
from optiml.evaluation import paper

LEVEL_TITLES = {  # the paper's names (§4.1)
    "fully_heldout": "Fully held-out",
    "partially_heldout": "Partially supervised",
    "fully_supervised": "Fully supervised",
}


@dataclasses.dataclass(frozen=True)
class TaskScore:
    """The score (0-100) of one seqio task at one shot setting, with its place in the taxonomy."""

    task: str
    level: str
    category: str
    benchmark: str
    name: str
    shots: int
    metric: str
    score: float
    subtask: str = ""
    num_examples: int = 0

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"task {self.task!r}: unknown level {self.level!r} (one of {LEVELS})")
        if not 0.0 <= float(self.score) <= 100.0:
            raise ValueError(f"task {self.task!r}: score {self.score} is outside [0, 100]")


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _level_report(scores: list[TaskScore]) -> dict[str, Any]:
    # 1. subtasks -> one score per (name, benchmark, shots)
    subtasks: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    for s in scores:
        subtasks[(s.category, s.name, s.benchmark, s.shots)].append(float(s.score))
    per_benchmark_task = {key: _mean(v) for key, v in subtasks.items()}
    # 2. benchmarks -> one score per (name, shots)
    tasks: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (category, name, _, shots), value in per_benchmark_task.items():
        tasks[(category, name, shots)].append(value)
    per_task = {key: _mean(v) for key, v in tasks.items()}
    # 3. tasks -> category, each shot setting separately
    categories: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (category, _, shots), value in per_task.items():
        categories[(category, shots)].append(value)
    per_category = {key: _mean(v) for key, v in categories.items()}
    # 4. per shot setting and combined
    per_shots: dict[int, list[float]] = defaultdict(list)
    for (_, shots), value in per_category.items():
        per_shots[shots].append(value)
    benchmarks: dict[tuple[str, int], list[float]] = defaultdict(list)
    for (_, _, benchmark, shots), value in per_benchmark_task.items():
        benchmarks[(benchmark, shots)].append(value)

    def nested(flat: Mapping[tuple, float]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (*names, shots), value in sorted(flat.items()):
            out[" / ".join(names)][str(shots)] = round(value, 4)
        return dict(out)

    return {
        "tasks": nested(per_task),
        "task_benchmarks": nested(per_benchmark_task),
        "categories": nested(per_category),
        "benchmarks": nested({k: _mean(v) for k, v in benchmarks.items()}),
        "shots": {str(k): round(_mean(v), 4) for k, v in sorted(per_shots.items())},
        "combined": round(_mean(per_category.values()), 4),
        "num_tasks": len({(s.category, s.name) for s in scores}),  # rows of "tasks", not x shots
    }


def build_report(
    scores: Iterable[TaskScore],
    title: str = "",
    notes: Sequence[str] = (),
    paper_model: str | None = "OPT-IML 30B",
    prompt_selection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Aggregate per-task scores level by level (levels without scores are left out); `notes`
    (e.g. how rank classification scored the options) are printed under the title. `paper`
    holds the published cells of `paper_model` (Tables 9-14) that this run also measured, with
    the differences and protocol marks (`optiml.evaluation.paper`); None leaves it out.
    `prompt_selection`: {task: its templates' ranking rows} (`optiml.evaluation.
    prompt_selection`), kept as the report's `prompt_selection` and printed as tables."""
    scores = list(scores)
    if not scores:
        raise ValueError("no task scores to report")
    seen: dict[tuple[str, int], TaskScore] = {}
    for s in scores:
        if (s.task, s.shots) in seen:
            raise ValueError(f"task {s.task!r} has two scores at {s.shots} shots")
        seen[(s.task, s.shots)] = s
    levels = {}
    for level in LEVELS:
        level_scores = [s for s in scores if s.level == level]
        if level_scores:
            levels[level] = _level_report(level_scores)
    rows = [dataclasses.asdict(s) for s in sorted(scores, key=lambda s: (s.task, s.shots))]
    report = {"title": title, "notes": list(notes), "levels": levels, "scores": rows}
    if prompt_selection:
        report["prompt_selection"] = {k: list(v) for k, v in prompt_selection.items()}
    if paper_model:
        report["paper"] = paper.report_section(rows, paper_model)
    return report


def _shot_columns(table: Mapping[str, Mapping[str, float]]) -> list[str]:
    return sorted({shots for row in table.values() for shots in row}, key=int)


def _table(table: Mapping[str, Mapping[str, float]], first: str) -> list[str]:
    columns = _shot_columns(table)
    lines = [
        "| " + " | ".join([first] + [f"{c}-shot" for c in columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, row in table.items():
        cells = [f"{row[c]:.1f}" if c in row else "-" for c in columns]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return lines


def format_ranking(rankings: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Markdown lines: one table per task (rank, template, mean log-likelihood, perplexity)."""
    lines = []
    for task, rows in rankings.items():
        lines += [f"### {task}", "", "| rank | template | mean token log-lik. | perplexity | "
                  "prompts | selected |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['rank']} | {r['template']} | {r['log_likelihood']:.4f} | "
                  f"{r['perplexity']:.1f} | {r['prompts']} | {'yes' if r['selected'] else ''} |"
                  for r in rows]  # fmt: skip
        lines.append("")
    return lines


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: per level, category and benchmark tables, then task details."""
    lines = [f"# Generalization report{': ' + report['title'] if report.get('title') else ''}", ""]
    lines += [f"- {note}" for note in report.get("notes", [])] + (
        [""] if report.get("notes") else []
    )
    summary = ["| level | tasks | combined | per shots |", "|---|---|---|---|"]
    for level, data in report["levels"].items():
        shots = ", ".join(f"{k}-shot {v:.1f}" for k, v in data["shots"].items())
        summary.append(
            f"| {LEVEL_TITLES[level]} | {data['num_tasks']} | {data['combined']:.1f} | {shots} |"
        )
    lines += summary + [""]
    for level, data in report["levels"].items():
        lines += [f"## {LEVEL_TITLES[level]} ({data['num_tasks']} tasks)", ""]
        lines += _table(data["categories"], "category") + [""]
        lines += _table(data["benchmarks"], "benchmark") + [""]
        lines += _table(data["tasks"], "category / task") + [""]
    if report.get("prompt_selection"):
        lines += ["## Templates by prompt perplexity (Gonen et al. 2022)", ""]
        lines += format_ranking(report["prompt_selection"])
    if "paper" in report:
        lines += paper.format_markdown(report["paper"])
    return "\n".join(lines)


def plot_report(report: Mapping[str, Any], path: str | Path) -> None:
    """Writes `figure(report)` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(report: Mapping[str, Any]) -> Any:
    """One bar chart per level: category scores, one bar per shot setting, each labelled with its
    value (so that a score of 0 shows as "0.0" rather than as nothing; a shot setting a category
    was not evaluated at has no bar and no label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(report["levels"].items())
    compared = report.get("paper", {}).get("rows")
    panels = len(levels) + (1 if compared else 0)
    fig, axes = plt.subplots(
        panels, 1, figsize=(10, 3.5 * panels), squeeze=False, constrained_layout=True
    )
    if compared:
        paper.plot(axes[-1, 0], report["paper"])
    for ax, (level, data) in zip(axes[:, 0], levels, strict=False):
        names = list(data["categories"])
        columns = _shot_columns(data["categories"])
        width = 0.8 / max(len(columns), 1)
        for i, shots in enumerate(columns):
            values = [data["categories"][n].get(shots) for n in names]  # None: not evaluated
            xs = [x + i * width for x in range(len(names))]
            heights = [0.0 if v is None else v for v in values]
            bars = ax.bar(xs, heights, width=width, label=f"{shots}-shot")
            labels = ["" if v is None else f"{v:.1f}" for v in values]
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
        ax.set_xticks([x + width * (len(columns) - 1) / 2 for x in range(len(names))])
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("score")
        ax.set_title(f"{LEVEL_TITLES[level]}: combined {data['combined']:.1f}")
        ax.legend(fontsize=8)
    return fig


def write_report(report: Mapping[str, Any], run_dir: str | Path) -> dict[str, Path]:
    """Writes report.json, report.md and report.png into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {
        "json": run_dir / "report.json",
        "markdown": run_dir / "report.md",
        "plot": run_dir / "report.png",
    }
    out["json"].write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    out["markdown"].write_text(format_markdown(report) + "\n")
    plot_report(report, out["plot"])
    return out


def load_report(path: str | Path) -> dict[str, Any]:
    """Reads a report.json (or the run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"no report at {path}")
    report = json.loads(path.read_text())
    if "levels" not in report:
        raise ValueError(f"{path} is not an optiml report (no 'levels' key)")
    return report
