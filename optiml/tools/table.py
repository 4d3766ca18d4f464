"""The per-benchmark table of OPT-IML Bench here, next to the paper's Table 1.

    OPTIML_DATA_DIR=../shared/data python -m optiml.tools.table [--markdown]

For every benchmark of `tasks/benchmarks.tsv`: tasks declared in the catalog, tasks available
locally (a loader and at least one example), the categories of the declared / available tasks,
the examples available here (`train` split, and `test` split: what evaluation reads), and the
paper's task count, category count and total examples (Table 1; before filtering and capping).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from optiml.tools import inspection

# Table 1 of the paper: total examples per benchmark (before filtering and capping).
PAPER_EXAMPLES = {
    "niv2": "12.4M", "promptsource": "12.8M", "crossfit": "7.1M", "flan": "4.4M",
    "exmix": "0.5M", "t5": "1.9M", "unifiedskg": "0.8M", "reasoning": "0.4M",
}  # fmt: skip
COLUMNS = {  # row key -> column title, in table order
    "key": "benchmark", "catalog_tasks": "tasks declared", "tasks_here": "tasks here",
    "categories": "categories declared", "categories_here": "categories here",
    "train_examples": "train examples here", "test_examples": "test examples here",
    "paper_tasks": "paper tasks", "paper_categories": "paper categories",
    "paper_examples": "paper examples",
}  # fmt: skip
SUMMED = ("catalog_tasks", "tasks_here", "train_examples", "test_examples", "paper_tasks")


def benchmark_table() -> list[dict]:
    """`inspection.benchmark_rows(count=True)` (exact counts of the local data, no sampling),
    each with the paper's `paper_examples`."""
    rows = inspection.benchmark_rows(count=True)
    return [{**r, "paper_examples": PAPER_EXAMPLES.get(r["key"], "-")} for r in rows]


def render(rows: Sequence[dict], markdown: bool = True) -> str:
    """The table's COLUMNS as markdown (or tab-separated text), with a total row."""
    cells = [[str(r[c]) for c in COLUMNS] for r in rows]
    cells.append(["total"] + [str(sum(r[c] for r in rows)) if c in SUMMED else "-"
                              for c in list(COLUMNS)[1:]])  # fmt: skip
    header = list(COLUMNS.values())
    if not markdown:
        return "\n".join("\t".join(c) for c in [header, *cells]) + "\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiml.tools.table", description=__doc__)
    parser.add_argument("--tsv", action="store_true", help="tab-separated instead of markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(render(benchmark_table(), markdown=not args.tsv), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
