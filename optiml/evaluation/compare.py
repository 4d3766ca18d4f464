"""Two generalization reports side by side with their differences (B - A).

    python -m optiml.evaluation.compare runs/opt_1.3b/report.json runs/opt_iml_1.3b/report.json

Arguments are report.json files or run directories holding one. For every level the command
prints the combined score, the mean per shot setting and every category, as `A | B | B-A`;
a row one report lacks shows "-".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from optiml.bench.levels import LEVELS
from optiml.evaluation.report import LEVEL_TITLES, load_report


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.evaluation.compare", description=__doc__
    )
    parser.add_argument("a", help="first report.json (or run directory)")
    parser.add_argument("b", help="second report.json (or run directory)")
    args = parser.parse_args(argv)
    try:
        report_a, report_b = load_report(args.a), load_report(args.b)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(compare(report_a, report_b, names=(args.a, args.b)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
