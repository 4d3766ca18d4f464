"""The per-benchmark table of OPT-IML Bench here, next to the paper's Table 1, and the levels'
sizes next to the paper's.

    OPTIML_DATA_DIR=../shared/data python -m optiml.tools.table [--tsv]

For every benchmark of `tasks/benchmarks.tsv`: tasks declared in the catalog, tasks available
locally (a loader and at least one example), the categories of the declared / available tasks,
the examples available here (`train` split, and `test` split: what evaluation reads), and the
paper's task count, category count and total examples (Table 1; before filtering and capping).
Then for the levels (`levels.build_levels`: train, OPT-IML-Max's train, dev -- MMLU's 57 subjects
included --, test): the tasks and categories the catalog declares, those with local data, and
the paper's (Table 1, §1, §6.1).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from optiml.bench import levels, mixing
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


# The paper's sizes: Table 1 (train 1,545 tasks in 93 clusters, dev 35 in 7, test 87 in 10) and
# §1/§6.1 (OPT-IML-Max: "our entire benchmark of 1,991 tasks"; no category count given).
PAPER_LEVELS = {"train": (1545, "93"), "train (OPT-IML-Max)": (1991, "-"), "dev": (35, "7"),
                "test": (87, "10")}  # fmt: skip
LEVEL_HEADER = ("level", "tasks declared", "tasks here", "categories declared",
                "categories here", "paper tasks", "paper categories")  # fmt: skip


def _present(record, split: str) -> bool:
    n = mixing.count_examples(record, split)
    return isinstance(n, int) and n > 0


def level_rows() -> list[tuple]:
    """(level, tasks declared, tasks here, categories declared, categories here, paper tasks,
    paper categories) for the default levels and OPT-IML-Max's training level."""
    lv = levels.build_levels()
    everything = levels.build_levels(levels.LevelConfig(train_on_everything=True))
    groups = {"train": lv.train, "train (OPT-IML-Max)": everything.train, "dev": lv.dev,
              "test": lv.test}  # fmt: skip
    rows = []
    for name, records in groups.items():
        split = {"dev": "validation", "test": "test"}.get(name, "train")
        here = [r for r in records if _present(r, split)]
        rows.append((name, len(records), len(here), len({r.category for r in records}),
                     len({r.category for r in here}), *PAPER_LEVELS[name]))  # fmt: skip
    return rows


def render_levels(rows: Sequence[tuple], markdown: bool = True) -> str:
    """`level_rows` as markdown (or tab-separated text)."""
    cells = [[str(c) for c in row] for row in rows]
    if not markdown:
        return "\n".join("\t".join(c) for c in [list(LEVEL_HEADER), *cells]) + "\n"
    lines = ["| " + " | ".join(LEVEL_HEADER) + " |", "|" + "---|" * len(LEVEL_HEADER)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tsv", action="store_true", help="tab-separated instead of markdown")
    args = parser.parse_args(argv)
    print(render(benchmark_table(), markdown=not args.tsv))
    print(render_levels(level_rows(), markdown=not args.tsv), end="")
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
