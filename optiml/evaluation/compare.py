"""Two generalization reports side by side with their differences (B - A).

    python -m optiml.evaluation.compare runs/opt_1.3b/report.json runs/opt_iml_1.3b/report.json

Arguments are report.json files or run directories holding one. For every level the command
prints the combined score, the mean per shot setting and every category, as `A | B | B-A`;
a row one report lacks shows "-". Either side may be a model of the paper's Tables 9-14:

    python -m optiml.evaluation.compare paper:opt-iml-30b runs/quickstart
    python -m optiml.evaluation.compare paper:opt-30b paper:opt-iml-30b

A paper model against a run lists every published cell the run also measured (same tasks, shots
and metric), with the protocol marks of `optiml.evaluation.paper`; two paper models, every cell
both have.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from optiml.bench.levels import LEVELS
from optiml.evaluation import paper
from optiml.evaluation.report import LEVEL_TITLES, load_report

PAPER = "paper:"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b - a:+.1f}"


def compare(a: Mapping[str, Any], b: Mapping[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """Markdown tables: for each level, rows (combined, k-shot means, category k-shot)."""
    name_a, name_b = names
    lines = [f"# {name_a} vs {name_b}", ""]
    for level in LEVELS:
        la, lb = a["levels"].get(level), b["levels"].get(level)
        if la is None and lb is None:
            continue
        la, lb = la or {}, lb or {}
        rows: list[tuple[str, float | None, float | None]] = [
            ("combined", la.get("combined"), lb.get("combined"))
        ]
        shots = sorted(set(la.get("shots", {})) | set(lb.get("shots", {})), key=int)
        for k in shots:
            rows.append((f"mean {k}-shot", la.get("shots", {}).get(k), lb.get("shots", {}).get(k)))
        cats_a, cats_b = la.get("categories", {}), lb.get("categories", {})
        for category in sorted(set(cats_a) | set(cats_b)):
            row_a, row_b = cats_a.get(category, {}), cats_b.get(category, {})
            for k in sorted(set(row_a) | set(row_b), key=int):
                rows.append((f"{category} {k}-shot", row_a.get(k), row_b.get(k)))
        lines += [
            f"## {LEVEL_TITLES[level]}",
            "",
            f"| | {name_a} | {name_b} | {name_b} - {name_a} |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r} | {_cell(x)} | {_cell(y)} | {_diff(x, y)} |" for r, x, y in rows]
        lines.append("")
    return "\n".join(lines)


def compare_with_paper(model: str, report: Mapping[str, Any], name: str, paper_first: bool) -> str:
    """Markdown: `model`'s published cells that `report` also measured, paper vs run."""
    model = paper.resolve_model(model)
    left, right = (f"paper: {model}", name) if paper_first else (name, f"paper: {model}")
    lines = [f"# {left} vs {right}", "", f"| cell | {left} | {right} | {right} - {left} | marks |"]
    lines.append("|---|---|---|---|---|")
    for row in paper.compare(report["scores"], model):
        a, b = (row["paper"], row["ours"]) if paper_first else (row["ours"], row["paper"])
        cell = f"Table {row['table']} {row['task']} {row['shots']}-shot {row['metric']}"
        marks = "; ".join(row["marks"])
        lines.append(f"| {cell} | {_cell(a)} | {_cell(b)} | {_diff(a, b)} | {marks} |")
    if len(lines) == 4:
        lines.append(f"| (no cell of {model} was measured by {name}) | | | | |")
    return "\n".join(lines)


def compare_paper_models(a: str, b: str) -> str:
    """Markdown: every cell of Tables 9-14 that both paper models have."""
    a, b = paper.resolve_model(a), paper.resolve_model(b)
    values: dict[tuple, dict[str, float]] = {}
    for c in paper.cells():
        if c.model in (a, b):
            values.setdefault((c.table, c.task, c.shots, c.metric), {})[c.model] = c.value
    lines = [f"# {a} vs {b}", "", f"| cell | {a} | {b} | {b} - {a} |", "|---|---|---|---|"]
    for (table, task, shots, metric), v in values.items():
        if a in v and b in v:
            cell = f"Table {table} {task} {shots}-shot {metric}"
            lines.append(f"| {cell} | {_cell(v[a])} | {_cell(v[b])} | {_diff(v[a], v[b])} |")
    return "\n".join(lines)


def render(a: str, b: str) -> str:
    """The comparison for two command-line arguments (run dirs, report.json files, paper:X)."""
    if a.startswith(PAPER) and b.startswith(PAPER):
        return compare_paper_models(a.removeprefix(PAPER), b.removeprefix(PAPER))
    if a.startswith(PAPER):
        return compare_with_paper(a.removeprefix(PAPER), load_report(b), b, paper_first=True)
    if b.startswith(PAPER):
        return compare_with_paper(b.removeprefix(PAPER), load_report(a), a, paper_first=False)
    return compare(load_report(a), load_report(b), names=(a, b))


def summary(a: Mapping[str, Any], b: Mapping[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """One markdown row per level: its tasks, A's and B's combined scores and B - A, e.g.
    `| Fully supervised | 9 | 0.0 | 48.1 | +48.1 |`."""
    name_a, name_b = names
    lines = [f"| level | tasks | {name_a} | {name_b} | change |", "|---|---|---|---|---|"]
    for level in LEVELS:
        la, lb = a["levels"].get(level), b["levels"].get(level)
        if la is None and lb is None:
            continue
        x, y = (la or {}).get("combined"), (lb or {}).get("combined")
        cells = [LEVEL_TITLES[level], str((lb or la)["num_tasks"]), _cell(x), _cell(y), _diff(x, y)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.evaluation.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("a", help="first report.json, run directory or paper:MODEL")
    parser.add_argument("b", help="second report.json, run directory or paper:MODEL")
    args = parser.parse_args(argv)
    try:
        text = render(args.a, args.b)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
