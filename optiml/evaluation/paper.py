"""The paper's published results (Tables 9-14 of Iyer et al. 2022) beside a run's own scores.

The numbers are data in `tasks/paper/`: `results.tsv` (one row per published cell, keyed by
table, model, paper task, shots and metric, e.g. `10  OPT-IML 30B  CB  5  accuracy  66.8`),
`task_map.tsv` (each paper task -> the registry's benchmark and catalog tasks, with the protocol
differences that remain) and `tables.tsv` (each table's protocol). `compare(scores, model)` puts a
report's scores next to one paper model's cells:

    {"table": "10", "task": "CB", "shots": 0, "metric": "accuracy", "paper": 43.2,
     "ours": 51.0, "diff": 7.8, "tasks": "1/1", "marks": []}

A cell is compared only where the run measured the same benchmark task(s) at the same shots with
the same metric; anything that still differs (a prompt the registry does not have, tasks missing
from the run, an average over fewer tasks) is listed in `marks`, never compared silently.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from optiml import paths

AVERAGE = "Avg"


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """One published number, e.g. Table 12, "OPT-IML 30B", "Textual Entailment", 2, rougeL, 47.8."""

    table: str
    model: str
    task: str
    shots: int
    metric: str
    value: float
    note: str = ""


@dataclasses.dataclass(frozen=True)
class PaperTask:
    """Where a paper task lives in the registry: `tasks` are catalog task ids of `benchmark`,
    `category=<name>` (the benchmark's test tasks of that category) or `*` (all of them)."""

    table: str
    task: str
    benchmark: str
    tasks: str
    protocol: str

    @property
    def absent(self) -> bool:
        return self.benchmark == "-"


def read_tsv(name: str) -> list[dict[str, str]]:
    """The rows of `tasks/paper/<name>` (tab-separated, a header line); a short row fails naming
    the file and line."""
    path = paths.tasks_dir() / "paper" / name
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for line, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            raise ValueError(f"{path}:{line}: wrong number of columns")
    return rows


@cache
def cells() -> tuple[PaperCell, ...]:
    """Every published cell of Tables 9-14 (564 numbers)."""
    out = []
    for row in read_tsv("results.tsv"):
        out.append(
            PaperCell(
                table=row["table"],
                model=row["model"],
                task=row["task"],
                shots=int(row["shots"]),
                metric=row["metric"],
                value=float(row["value"]),
                note=row["note"],
            )
        )
    return tuple(out)


@cache
def task_map() -> dict[tuple[str, str], PaperTask]:
    """(table, paper task) -> where the registry has it; every non-average paper task is here."""
    return {
        (r["table"], r["paper_task"]): PaperTask(**_fields(r)) for r in read_tsv("task_map.tsv")
    }


def _fields(row: Mapping[str, str]) -> dict[str, str]:
    return {
        "table": row["table"],
        "task": row["paper_task"],
        "benchmark": row["benchmark"],
        "tasks": row["tasks"],
        "protocol": row["protocol"],
    }


def slug(model: str) -> str:
    """`OPT-IML 30B` -> `opt-iml-30b` (the name `optiml compare paper:<slug>` takes)."""
    return re.sub(r"[^a-z0-9.]+", "-", model.lower()).strip("-")


def models() -> dict[str, str]:
    """Slug -> the paper's model name, for every model of Tables 9-14."""
    return {slug(c.model): c.model for c in cells()}


def resolve_model(name: str) -> str:
    """A slug (`opt-iml-30b`) or a paper name (`OPT-IML 30B`) -> the paper's name; else one line."""
    known = models()
    if name in known.values():
        return name
    if slug(name) in known:
        return known[slug(name)]
    raise ValueError(f"unknown paper model {name!r}: one of {', '.join(sorted(known))}")


def _catalog_count(entry: PaperTask) -> int:
    from optiml.bench import catalog

    records = catalog.tasks(entry.benchmark)
    if entry.tasks == "*":
        return len(records)
    category = entry.tasks.removeprefix("category=")
    return sum(1 for r in records if r.category == category and r.role == "test")


def covers(entry: PaperTask, record: Any) -> bool:
    """Whether a catalog record (`optiml.bench.catalog.TaskRecord`) is one of the entry's tasks."""
    if record.benchmark != entry.benchmark:
        return False
    if entry.tasks == "*":
        return True
    if entry.tasks.startswith("category="):
        return record.category == entry.tasks.removeprefix("category=") and record.role == "test"
    return record.task in entry.tasks.split()


def _matches(entry: PaperTask, score: Mapping[str, Any]) -> bool:
    if score["benchmark"] != entry.benchmark:
        return False
    if entry.tasks == "*":
        return True
    if entry.tasks.startswith("category="):
        return score["category"] == entry.tasks.removeprefix("category=")
    return score["subtask"] in entry.tasks.split()


def _ours(
    entry: PaperTask, cell: PaperCell, scores: list[Mapping[str, Any]]
) -> dict[str, Any] | None:
    hits = [
        s
        for s in scores
        if _matches(entry, s) and int(s["shots"]) == cell.shots and s["metric"] == cell.metric
    ]
    if not hits:
        return None
    # The paper averages a task's prompts first, then the tasks (one mean per catalog task).
    per_task: dict[str, list[float]] = {}
    for s in hits:
        per_task.setdefault(s["subtask"], []).append(float(s["score"]))
    values = [sum(v) / len(v) for v in per_task.values()]
    wanted = len(entry.tasks.split()) if "=" not in entry.tasks and entry.tasks != "*" else None
    wanted = wanted if wanted is not None else _catalog_count(entry)
    marks = [entry.protocol] if entry.protocol else []
    if len(per_task) < wanted:
        marks.append(f"partial: {len(per_task)} of {wanted} tasks measured")
    return {"ours": sum(values) / len(values), "tasks": f"{len(per_task)}/{wanted}", "marks": marks}


def compare(scores: Iterable[Mapping[str, Any]], model: str = "OPT-IML 30B") -> list[dict]:
    """One row per cell of `model` that the run also measured (report.json's `scores` entries:
    benchmark, subtask, category, shots, metric, score), with the paper's value and the difference.
    A table's average is compared only over the tasks both sides have, and marked if incomplete."""
    model = resolve_model(model)
    scores = list(scores)
    rows: list[dict[str, Any]] = []
    for cell in cells():
        if cell.model != model or cell.task == AVERAGE:
            continue
        entry = task_map()[(cell.table, cell.task)]
        ours = None if entry.absent else _ours(entry, cell, scores)
        if ours is not None:
            rows.append(_row(cell, ours))
    for cell in cells():
        if cell.model == model and cell.task == AVERAGE:
            parts = [r for r in rows if r["table"] == cell.table and r["shots"] == cell.shots]
            if not parts:
                continue
            table_tasks = {c.task for c in cells() if c.table == cell.table and c.model == model}
            table_tasks -= {AVERAGE}
            measured = {r["task"] for r in parts}
            ours = {
                "ours": sum(r["ours"] for r in parts) / len(parts),
                "tasks": f"{len(measured)}/{len(table_tasks)}",
                "marks": sorted({m for r in parts for m in r["marks"]})
                + (
                    [f"partial: average over {len(measured)} of {len(table_tasks)} tasks"]
                    if len(measured) < len(table_tasks)
                    else []
                ),
            }
            rows.append(_row(cell, ours))
    return rows


def _row(cell: PaperCell, ours: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "table": cell.table,
        "task": cell.task,
        "shots": cell.shots,
        "metric": cell.metric,
        "paper": cell.value,
        "ours": round(ours["ours"], 4),
        "diff": round(ours["ours"] - cell.value, 4),
        "tasks": ours["tasks"],
        "marks": list(ours["marks"]),
    }


def format_markdown(comparison: Mapping[str, Any]) -> list[str]:
    """The report's "Compared with the paper" section (a `*` marks a protocol difference)."""
    lines = [f"## Compared with the paper: {comparison['model']}", ""]
    if not comparison["rows"]:
        return lines + ["No cell of the paper's Tables 9-14 was measured by this run.", ""]
    lines += [
        "| table | task | shots | metric | paper | ours | diff | tasks | marks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in comparison["rows"]:
        star = "*" if r["marks"] else ""
        lines.append(
            f"| {r['table']} | {r['task']}{star} | {r['shots']} | {r['metric']} | "
            f"{r['paper']:.1f} | {r['ours']:.1f} | {r['diff']:+.1f} | {r['tasks']} | "
            f"{'; '.join(r['marks'])} |"
        )
    return lines + [""]


def report_section(scores: Iterable[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """What `report.build_report` stores under `paper`: the model and the compared rows."""
    model = resolve_model(model)
    return {"model": model, "rows": compare(scores, model)}


def plot(ax: Any, comparison: Mapping[str, Any]) -> None:
    """The report.png panel: ours beside the paper's value for every compared cell (hatched where
    a protocol mark applies)."""
    rows = comparison["rows"]
    ys = range(len(rows))
    ours = [r["ours"] for r in rows]
    ax.barh([y + 0.2 for y in ys], ours, height=0.4, label="ours")
    ax.barh([y - 0.2 for y in ys], [r["paper"] for r in rows], height=0.4, label="paper")
    for y, r in zip(ys, rows, strict=True):
        if r["marks"]:
            ax.text(r["ours"] + 1, y + 0.2, "*", va="center", fontsize=8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([f"T{r['table']} {r['task']} {r['shots']}-shot" for r in rows], fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_title(f"Compared with the paper: {comparison['model']} (* protocol differs)")
    ax.legend(fontsize=8)
