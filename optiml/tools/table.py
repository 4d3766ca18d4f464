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
from dataclasses import dataclass

from optiml.bench import catalog

# Table 1 of the paper: total examples per benchmark (before filtering and capping).
PAPER_EXAMPLES = {
    "niv2": "12.4M", "promptsource": "12.8M", "crossfit": "7.1M", "flan": "4.4M",
    "exmix": "0.5M", "t5": "1.9M", "unifiedskg": "0.8M", "reasoning": "0.4M",
}  # fmt: skip


@dataclass(frozen=True)
class Row:
    benchmark: str
    declared: int
    available: int
    categories_declared: int
    categories_available: int
    train_examples: int
    test_examples: int
    paper_tasks: int
    paper_categories: int
    paper_examples: str


def _count(loader, record: catalog.TaskRecord, split: str) -> int:
    try:
        return int(loader.count_examples(record, split))
    except (OSError, ValueError, KeyError):
        return 0


def benchmark_rows() -> list[Row]:
    """One row per declared benchmark, counting the local data (exact counts, no sampling)."""
    rows = []
    for key, bench in catalog.benchmarks().items():
        records = catalog.tasks(key)
        loader = catalog.loader(key)
        train = test = 0
        available = []
        for r in records if loader is not None else []:
            n_train, n_test = _count(loader, r, "train"), _count(loader, r, "test")
            train, test = train + n_train, test + n_test
            if n_train or n_test:
                available.append(r)
        rows.append(
            Row(
                benchmark=key,
                declared=len(records),
                available=len(available),
                categories_declared=len({r.category for r in records}),
                categories_available=len({r.category for r in available}),
                train_examples=train,
                test_examples=test,
                paper_tasks=bench.paper_tasks,
                paper_categories=bench.paper_categories,
                paper_examples=PAPER_EXAMPLES.get(key, "-"),
            )
        )
    return rows


HEADER = (
    "benchmark", "tasks declared", "tasks here", "categories declared", "categories here",
    "train examples here", "test examples here", "paper tasks", "paper categories",
    "paper examples",
)  # fmt: skip


def render(rows: Sequence[Row], markdown: bool = True) -> str:
    """The table as markdown (or tab-separated text), with a total row."""
    cells = [[str(getattr(r, f)) for f in Row.__dataclass_fields__] for r in rows]
    summed = ("declared", "available", "train_examples", "test_examples", "paper_tasks")
    fields = list(Row.__dataclass_fields__)[1:]
    cells.append(["total"] + [str(sum(getattr(r, f) for r in rows)) if f in summed else "-"
                              for f in fields])  # fmt: skip
    if not markdown:
        return "\n".join("\t".join(c) for c in [list(HEADER), *cells]) + "\n"
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiml.tools.table", description=__doc__)
    parser.add_argument("--tsv", action="store_true", help="tab-separated instead of markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(render(benchmark_rows(), markdown=not args.tsv), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
