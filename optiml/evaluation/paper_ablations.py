"""The paper's §4 ablation tables (Tables 4, 5, 7, 8 and 16-20 of Iyer et al. 2022) beside a sweep.

The numbers are data in `tasks/paper/` (its README says how each cell was read):
`ablations.tsv` (one row per printed cell: table, variant = the row label as printed, e.g. `2^7`
for EPS 128, level, column as printed, shots, value), `ablation_columns.tsv` (a printed column ->
the registry's category, or benchmark for Table 5, at its level, and the metric Table 15 gives its
tasks), `ablation_tables.tsv` (each table's training steps and layout) and `sweep_map.tsv`
((sweep file stem, variant) -> (table, paper row) with the protocol difference that remains; row
`-` = no paper row, the note says why). `compare(sweep, reports, run_dirs)` gives one section per
paper table mapped to the sweep:

    {"table": "4", "title": "...", "scale": ["paper: OPT 30b, 4000 steps of 256 x 2048 tokens;
     this run: OPT tiny, 30 steps of 8 x 256 tokens: not comparable in
     scale", "examples: at most 8 per dev task (paper: 250, §4.1)"],
     "rows": [{"variant": "eps_128", "paper_row": "2^7", "cells": [{"level": "fully_heldout",
               "column": "Cause Effect", "shots": 0, "paper": 61.4, "ours": 50.0, "diff": -11.4,
               "tasks": "1/5", "marks": ["partial: 1 of 5 tasks measured"]}, ...],
               "not_measured": ["Fully held-out/Gram. Corr. 5-shot", ...]}],
     "unmapped": [{"variant": "x", "reason": "..."}]}

A cell is compared only where the run measured that level's category (benchmark) at the paper's
shots; every remaining difference (scale, fewer tasks or examples, another metric, a recipe note)
is a mark, and the paper cells the run did not measure are listed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from optiml.evaluation.paper import read_tsv

AVERAGE = "Average"
PAPER_SIZE = "30b"  # §4: every ablation fine-tunes OPT 30B
PAPER_ROWS, PAPER_LENGTH = 256, 2048  # Table 3: 256 sequences of 2048 tokens per step
PAPER_EXAMPLES = 250  # §4.1: 250 examples from each validation task
UNRECORDED = {"size": None, "TRAIN_STEPS": None, "BATCH_SIZE": None, "LENGTH": None}


@dataclasses.dataclass(frozen=True)
class AblationCell:
    """One printed number, e.g. Table 4, row `2^7`, fully_heldout, `Cause Effect`, 0-shot, 61.4."""

    table: str
    variant: str
    level: str
    column: str
    shots: int
    value: float
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Column:
    """A printed column: `kind` category / benchmark / average, `name` the registry's name."""

    kind: str
    name: str
    metric: str


@cache
def cells() -> tuple[AblationCell, ...]:
    """Every printed cell of Tables 4, 5, 7, 8 and 16-20."""
    return tuple(
        AblationCell(**{**r, "shots": int(r["shots"]), "value": float(r["value"])})
        for r in read_tsv("ablations.tsv")
    )


@cache
def columns() -> dict[tuple[str, str, str], Column]:
    """(layout, level, printed column) -> Column; layout `category` or `benchmark` (Table 5)."""
    return {
        (r["layout"], r["level"], r["column"]): Column(r["kind"], r["name"], r["metric"])
        for r in read_tsv("ablation_columns.tsv")
    }


@cache
def tables() -> dict[str, dict[str, str]]:
    """Table -> its row of ablation_tables.tsv (title, rows, steps, columns, notes)."""
    return {r["table"]: r for r in read_tsv("ablation_tables.tsv")}


@cache
def sweep_map() -> dict[tuple[str, str, str], dict[str, str]]:
    """(sweep file stem, variant, table) -> {"row": paper row or "-", "note": a protocol mark,
    "shots": the shots it applies to ("5"; "" = all)}."""
    return {(r["sweep"], r["variant"], r["table"]): r for r in read_tsv("sweep_map.tsv")}


@cache
def dev_tasks() -> dict[tuple[str, str, str], int]:
    """(level, "category" | "benchmark", name) -> the dev level's number of tasks there (Table 15;
    a task = a dataset, as the report counts them)."""
    from optiml.bench import levels

    built = levels.build_levels()
    names: dict[tuple[str, str, str], set] = defaultdict(set)
    for r in built.dev:
        level = built.level_of(r)
        names[(level, "category", r.category)].add(r.dataset)
        names[(level, "benchmark", r.benchmark)].add((r.category, r.dataset))
    return {key: len(v) for key, v in names.items()}


def run_protocol(run_dir: str | Path) -> dict[str, Any]:
    """What a variant's run directory says of its scale: the OPT size (`optiml_config.json`) and
    TRAIN_STEPS, BATCH_SIZE, LENGTH (the operative `config.gin`); None where not recorded."""
    from optiml.models import opt

    run_dir = Path(run_dir)
    out: dict[str, Any] = dict(UNRECORDED)
    config = run_dir / "optiml_config.json"
    if config.is_file():
        fields = json.loads(config.read_text())
        sizes = [
            n for n, dims in opt.SIZES.items() if all(fields.get(k) == v for k, v in dims.items())
        ]
        out["size"] = (
            sizes[0] if sizes else f"hidden {fields['hidden_size']}, {fields['num_layers']} layers"
        )
    gin_file = run_dir / "config.gin"
    if gin_file.is_file():
        for key, value in re.findall(
            r"^(TRAIN_STEPS|BATCH_SIZE|LENGTH) = (\d+)$", gin_file.read_text(), re.M
        ):
            out[key] = int(value)
    return out


def _scale(table: str, protocol: Mapping[str, Any]) -> str | None:
    """The whole-table mark when the run's model, steps or batch shape is not the paper's."""
    paper = (PAPER_SIZE, int(tables()[table]["steps"]), PAPER_ROWS, PAPER_LENGTH)
    ours = tuple(protocol[k] for k in UNRECORDED)
    if ours == paper:
        return None
    if not any(ours):
        return "paper: OPT 30b; this run's model and steps are not recorded: not compared in scale"
    shape = "OPT {}, {} steps of {} x {} tokens"
    recorded = (x if x is not None else "not recorded" for x in ours)
    text = f"paper: {shape.format(*paper)}; this run: {shape.format(*recorded)}"
    return text + (": not comparable in scale" if ours[0] != PAPER_SIZE else "")


def _ours(report: Mapping[str, Any], level: str, column: Column, shots: int) -> dict | None:
    data = report["levels"].get(level)
    key = str(shots)
    if data is None:
        return None
    if column.kind == "category":
        value = data["categories"].get(column.name, {}).get(key)
        count = sum(
            1 for k, v in data["tasks"].items() if k.split(" / ")[0] == column.name and key in v
        )
    else:
        value = data["benchmarks"].get(column.name, {}).get(key)
        count = sum(
            1
            for k, v in data["task_benchmarks"].items()
            if k.rsplit(" / ", 1)[1] == column.name and key in v
        )
    if value is None:
        return None
    wanted = dev_tasks().get((level, column.kind, column.name), 0)
    metrics = {
        s["metric"]
        for s in report.get("scores", ())
        if (s["level"], s["shots"], s[column.kind]) == (level, shots, column.name)
    }
    marks = [f"partial: {count} of {wanted} tasks measured"] if count < wanted else []
    if metrics - set(column.metric.split("+")):
        marks.append(f"metric: ours {'+'.join(sorted(metrics))}, paper {column.metric} (Table 15)")
    return {"ours": value, "tasks": f"{count}/{wanted}", "marks": marks}


def _cell(cell: AblationCell, ours: Mapping[str, Any], marks: list[str]) -> dict[str, Any]:
    return {
        "level": cell.level,
        "column": cell.column,
        "shots": cell.shots,
        "paper": cell.value,
        "ours": round(ours["ours"], 4),
        "diff": round(ours["ours"] - cell.value, 4),
        "tasks": ours["tasks"],
        "marks": marks,
    }


def _label(level: str, column: str) -> str:
    """`Fully held-out/Cause Effect` (the Average has no level)."""
    from optiml.evaluation.report import LEVEL_TITLES

    return f"{LEVEL_TITLES[level]}/{column}" if level in LEVEL_TITLES else column


def _row(table: str, variant: str, entry: Mapping[str, str], report: Mapping[str, Any]) -> dict:
    """One variant against its paper row; the map's note marks the cells at `entry["shots"]`
    (every cell when empty)."""
    layout = tables()[table]["columns"]
    printed = [c for c in cells() if c.table == table and c.variant == entry["row"]]
    noted = {int(k) for k in entry["shots"].split(",") if k} or {c.shots for c in printed}
    note = [entry["note"]] if entry["note"] else []
    out: dict[str, Any] = {"variant": variant, "paper_row": entry["row"], "cells": [],
                           "not_measured": []}  # fmt: skip
    for cell in printed:
        if cell.column == AVERAGE:
            continue
        ours = _ours(report, cell.level, columns()[(layout, cell.level, cell.column)], cell.shots)
        if ours is None:
            out["not_measured"].append(f"{_label(cell.level, cell.column)} {cell.shots}-shot")
        else:
            marks = (note if cell.shots in noted else []) + ours["marks"]
            out["cells"].append(_cell(cell, ours, marks))
    for cell in printed:  # the paper's Average: the mean of every category cell at those shots
        parts = [c for c in out["cells"] if c["shots"] == cell.shots]
        if cell.column != AVERAGE or not parts:
            continue
        wanted = sum(1 for c in printed if c.shots == cell.shots and c.column != AVERAGE)
        marks = list(dict.fromkeys(m for c in parts for m in c["marks"]))
        if len(parts) < wanted:
            marks.append(f"partial: average over {len(parts)} of {wanted} columns")
        mean = sum(c["ours"] for c in parts) / len(parts)
        out["cells"].append(_cell(cell, {"ours": mean, "tasks": f"{len(parts)}/{wanted}"}, marks))
    return out


def compare(
    sweep: str,
    reports: Mapping[str, Mapping[str, Any]],
    run_dirs: Mapping[str, str | Path] | None = None,
) -> list[dict[str, Any]]:
    """One section per paper table mapped to `sweep` (a sweep file stem, e.g. `eps_cap`) in
    sweep_map.tsv; `reports` = variant -> report.json, `run_dirs` = variant -> its run directory
    (for the scale marks). [] when no table maps to the sweep."""
    mapped, run_dirs = sweep_map(), run_dirs or {}
    sections = []
    for table in dict.fromkeys(t for (s, _, t) in mapped if s == sweep):
        section: dict[str, Any] = {"table": table, "title": tables()[table]["title"], "scale": [],
                                   "rows": [], "unmapped": []}  # fmt: skip
        for variant, report in reports.items():
            entry = mapped.get((sweep, variant, table))
            if entry is None or entry["row"] == "-":
                reason = entry["note"] if entry else "not in tasks/paper/sweep_map.tsv"
                section["unmapped"].append({"variant": variant, "reason": reason})
                continue
            section["rows"].append(_row(table, variant, entry, report))
            recorded = run_protocol(run_dirs[variant]) if variant in run_dirs else UNRECORDED
            scale = _scale(table, recorded)
            examples = [s.get("num_examples", 0) for s in report.get("scores", ())]
            for mark in (scale, _examples(examples)):
                if mark and mark not in section["scale"]:
                    section["scale"].append(mark)
        sections.append(section)
    return sections


def _examples(counts: list[int]) -> str | None:
    if counts and 0 < max(counts) < PAPER_EXAMPLES:
        return f"examples: at most {max(counts)} per dev task (paper: {PAPER_EXAMPLES}, §4.1)"
    return None


def format_markdown(section: Mapping[str, Any]) -> list[str]:
    """A sweep.md section: the whole-table marks in bold, then one line per compared cell (`*` =
    a mark applies), the paper cells not measured and the variants without a paper row."""
    lines = ["", f"## Compared with the paper: Table {section['table']}, {section['title']}", ""]
    lines += [f"- **{m}**" for m in section["scale"]]
    compared = [(r, c) for r in section["rows"] for c in r["cells"]]
    if not compared:
        lines.append(f"- No cell of Table {section['table']} was measured by this sweep.")
    else:
        lines += [
            "",
            "| variant | paper row | column | shots | paper | ours | diff | tasks | marks |",
        ]
        lines.append("|---" * 9 + "|")
        for row, c in compared:
            column = _label(c["level"], c["column"]) + ("*" if c["marks"] else "")
            lines.append(
                f"| {row['variant']} | {row['paper_row']} | {column} "
                f"| {c['shots']} | {c['paper']:.1f} | {c['ours']:.1f} | {c['diff']:+.1f} | "
                f"{c['tasks']} | {'; '.join(c['marks'])} |"
            )
    missing: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for row in section["rows"]:
        if row["not_measured"]:
            missing[_shorten(row)].append(row["variant"])
    lines += [""] if missing or section["unmapped"] else []
    for cells_, variants in missing.items():
        lines.append(f"- not measured ({', '.join(variants)}): {', '.join(cells_)}")
    for u in section["unmapped"]:
        lines.append(f"- `{u['variant']}`: no paper row ({u['reason']})")
    return lines


def _shorten(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A row's unmeasured cells, `every 5-shot cell` where no cell at those shots was measured."""
    measured = {f"{c['shots']}-shot" for c in row["cells"]}
    shots = {label.rsplit(" ", 1)[1] for label in row["not_measured"]} - measured
    kept = [label for label in row["not_measured"] if label.rsplit(" ", 1)[1] not in shots]
    return (*(f"every {k} cell" for k in sorted(shots)), *kept)


def plot(ax: Any, section: Mapping[str, Any]) -> None:
    """A sweep.png panel: ours (y) against the paper (x) for every compared cell, one colour per
    variant, hollow where a mark applies; the diagonal is ours = paper."""
    for i, row in enumerate(section["rows"]):
        colour = f"C{i % 10}"
        for n, marked in enumerate(sorted({bool(c["marks"]) for c in row["cells"]})):
            pts = [c for c in row["cells"] if bool(c["marks"]) == marked]
            ax.scatter([c["paper"] for c in pts], [c["ours"] for c in pts], s=18, color=colour,
                       facecolors="none" if marked else colour,
                       label=None if n else row["variant"])  # fmt: skip
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8)
    ax.set_xlim(-3, 103)  # a score of 0 stays visible
    ax.set_ylim(-3, 103)
    ax.set_xlabel(f"paper (Table {section['table']})")
    ax.set_ylabel("ours")
    scale = (
        " (not comparable in scale)" if any("not comparable" in m for m in section["scale"]) else ""
    )
    ax.set_title(
        f"Table {section['table']} vs this sweep{scale}; hollow = protocol differs", fontsize=9
    )
    if section["rows"]:
        ax.legend(fontsize=7)
