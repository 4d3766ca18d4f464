"""Look inside the OPT-IML Bench registry from a terminal: tasks, mixtures, examples, export.

    python -m optiml.tools.inspect tasks --benchmark niv2 --category "Grammar Error Correction"
    python -m optiml.tools.inspect tasks --level fully_heldout --split test --present
    python -m optiml.tools.inspect mixture train --steps 4000 --batch 128 --examples-per-row 8
    python -m optiml.tools.inspect examples niv2:task1557_jfleg_answer_generation#2shot --split test
    python -m optiml.tools.inspect export train -n 1000 -o train_1000.jsonl --tokens
    python -m optiml.tools.inspect benchmarks | categories

Every subcommand takes `--json` (machine-readable, on stdout). Text output fits 80-100 columns.
Data comes from $OPTIML_DATA_DIR. `tasks`, `mixture`, `benchmarks`, `categories` and `export`
without `--tokens` are TF-free; `examples` and `export --tokens` tokenize with the OPT
vocabulary (which imports seqio/TensorFlow, ~10 s).

`examples` shows one example the way training sees it: the document `[2] + prompt + target`
(target ends with EOS 2) as `optiml.pipeline.features` lays it out, with the loss mask: prompt
tokens are dimmed (plain output: `|tok`), loss-weighted target tokens marked (`[tok]`).

`export` writes the first N examples the training stream `optiml.pipeline.stream.MixtureStream`
would draw from the mixture with the same seed (before packing, with every task prepared in
its cache): same task choice per example, same per-task epoch permutations, so other tools see
exactly what a run trains on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TextIO

from optiml import token_ids
from optiml.bench import catalog, names
from optiml.pipeline import features
from optiml.tools.inspection import (
    LEVELS,
    benchmark_rows,
    category_rows,
    example_rows,
    export_examples,
    mixture_summary,
    task_rows,
    vocabulary,
)
from optiml.validation import number

DIM, MARK, RESET = "\x1b[2m", "\x1b[1;4m", "\x1b[0m"


# -- text output -------------------------------------------------------------------------------
PERCENT, NUMBER, DECIMAL = "{:.3%}", "{:,.0f}", "{:.2f}"


def epochs(value: float) -> str:
    """Epochs as `20,370`, `6.10` or `0.0056` (2 significant digits below 1)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.2g}"


def width() -> int:
    """The output width: the terminal's, kept within 80-100 columns."""
    return max(80, min(100, shutil.get_terminal_size((100, 24)).columns))


def wrap(text: str) -> str:
    """Lines longer than `width()` wrapped (for display only: --json keeps the exact text)."""
    lines = [textwrap.wrap(line, width()) or [""] for line in text.split("\n")]
    return "\n".join(part for line in lines for part in line)


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: max(size - 1, 0)] + "…"


def table(
    rows: Sequence[dict], columns: Sequence[tuple], out: TextIO, keep_whole: bool = False
) -> None:
    """Columns `(key, header, width[, format])`; width 0 = the rest of the line (text cut with …,
    or with `keep_whole` a longer text gets a line of its own above its row). A format (a format
    string such as PERCENT, or a function) right-aligns the column, as do ints; None is `-`."""
    fixed = sum(c[2] + 1 for c in columns if c[2])
    sizes = [c[2] or max(width() - fixed - 1, 12) for c in columns]
    formats = [c[3] if len(c) > 3 else None for c in columns]
    flex_column = next((c for c in columns if not c[2] and keep_whole), None)
    flex = flex_column[0] if flex_column else None
    numeric = [
        fmt is not None
        or isinstance(next((r[c[0]] for r in rows if r.get(c[0]) is not None), None), int)
        for c, fmt in zip(columns, formats, strict=True)
    ]

    def cell(value, size: int, fmt: str | None, right: bool) -> str:
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif value is None:
            text = "-"
        elif fmt is not None:
            text = fmt(value) if callable(fmt) else fmt.format(value)
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = _cut(str(value), size)
        return text.rjust(size) if right else text.ljust(size)

    specs = list(zip(columns, sizes, formats, numeric, strict=True))
    out.write(" ".join(cell(c[1], s, None, r) for c, s, _, r in specs).rstrip() + "\n")
    for row in rows:
        if flex is not None and len(str(row.get(flex))) > sizes[columns.index(flex_column)]:
            out.write(f"{row[flex]}\n")  # a long name keeps a line of its own, uncut
            row = {**row, flex: ""}
        out.write(" ".join(cell(row.get(c[0]), s, f, r) for c, s, f, r in specs).rstrip() + "\n")


def _short(name: str) -> str:
    return name.removeprefix(names.TASK_PREFIX + ":")


def print_tasks(rows: list[dict], out: TextIO) -> None:
    columns = [
        ("short", "task", 0),
        ("category", "category", 26),
        ("role", "role", 10),
        ("answer_type", "answer", 8),
    ]
    if rows and "examples" in rows[0]:
        columns.append(("examples", "examples", 8))
    table([{**r, "short": _short(r["name"])} for r in rows], columns, out, keep_whole=True)
    per = Counter(r["benchmark"] for r in rows)
    out.write(f"\n{len(rows)} tasks: " + ", ".join(f"{b} {n}" for b, n in per.items()) + "\n")


def print_benchmarks(rows: list[dict], out: TextIO) -> None:
    columns = [
        ("key", "benchmark", 13),
        ("title", "title", 0),
        ("enabled", "on", 4),
        ("proportion", "share %", 8, DECIMAL),
        ("catalog_tasks", "tasks", 6),
        ("paper_tasks", "paper", 6),
        ("has_loader", "loader", 6),
    ]
    table(rows, columns, out)


def print_categories(rows: list[dict], out: TextIO) -> None:
    rows = [{**r, "by": ", ".join(f"{b} {n}" for b, n in r["benchmarks"].items())} for r in rows]
    columns = [
        ("category", "category", 36),
        ("origin", "origin", 6),
        ("tasks", "tasks", 6),
        ("by", "per benchmark", 0),
    ]
    table(rows, columns, out)


def print_mixture(s: dict, out: TextIO, top: int = 20, all_missing: bool = False) -> None:
    w, r = out.write, s["recipe"]
    w(f"{s['mixture']}: level {s['level']}, split {s['split']}\n")
    recipe = "uncapped examples-proportional rates"
    if r is not None:
        caps = ", ".join(f"{b} {c}" for b, c in r["caps"].items())
        recipe = f"per-task cap {r['eps']}" + (f" ({caps})" if caps else "")
    w(_cut(f"recipe: {recipe}", width()) + "\n")
    total = sum(t["examples"] for t in s["tasks"])
    w(f"present: {len(s['tasks'])} tasks, {total:,} examples; absent: {len(s['missing'])} tasks\n")
    if s["missing_benchmarks"]:
        w(wrap(f"recipe benchmarks with no task here: {', '.join(s['missing_benchmarks'])}") + "\n")
    extra = []
    if s["drawn"]:
        w(f"drawn: {s['steps']:,} steps x {s['batch']} rows x {s['examples_per_row']:g} ")
        w(f"examples/row = {s['drawn']:,.0f} examples\n")
        extra = [("drawn", "drawn", 11, NUMBER), ("epochs", "epochs", 8, epochs)]
    w("\n")
    columns = [
        ("benchmark", "benchmark", 0),
        ("share", "share", 9, PERCENT),
        ("recipe_share", "recipe", 9, PERCENT),
        ("tasks", "tasks", 6),
        ("examples", "examples", 10),
    ]
    table(s["benchmarks"], columns + extra, out)
    w("\n")
    if s.get("styles"):
        w("prompt styles (zs/fs: zero-/few-shot; opt/noopt: answer options shown or not; inv: ")
        w("input inversion):\n")
        columns = [
            ("benchmark", "benchmark", 14),
            ("style", "style", 10),
            ("of_benchmark", "of bench", 9, PERCENT),
            ("share", "of mixture", 11, PERCENT),
        ]
        table(s["styles"], columns, out)  # fmt: skip
        w("\n")
    shown = s["tasks"][:top] if top else s["tasks"]
    columns = [("short", "task", 0), ("examples", "examples", 9), ("rate", "rate", 9, PERCENT)]
    table([{**t, "short": _short(t["task"])} for t in shown], columns + extra, out, True)
    if len(shown) < len(s["tasks"]):
        w(f"... {len(s['tasks']) - len(shown)} more tasks (--top 0 shows all)\n")
    if not s["missing"]:
        return
    w(f"\nabsent locally ({len(s['missing'])}), left out and rates renormalised:\n")
    if all_missing:
        for m in s["missing"]:
            w(_cut(f"  {_short(m['task'])}: {m['reason']}", width()) + "\n")
        return
    groups: dict[str, list[dict]] = {}
    for m in s["missing"]:
        groups.setdefault(names.parse_task_name(m["task"]).benchmark, []).append(m)
    for bench, members in groups.items():
        w(_cut(f"  {bench}: {len(members)} tasks, e.g. {members[0]['reason']}", width()) + "\n")
    w("  (--all-missing lists every task with its reason)\n")


def _piece(vocab, token: int) -> str:
    if token in token_ids.NAMES:
        return token_ids.NAMES[token]
    return vocab.decode([token]).replace("\n", "\\n")


def token_cells(row: dict, prompt_tokens: int = 32) -> tuple[int, list[tuple[str, float]]]:
    """(prompt tokens left out, [(token text, loss weight)]) of an `example_rows` row: the BOS
    input token, then each `decoder_target_tokens` position with its `decoder_loss_weights`;
    only the last `prompt_tokens` prompt tokens (0: all)."""
    f, vocab = row["features"], vocabulary()
    loss = f["decoder_loss_weights"]
    first = loss.index(1.0) if 1.0 in loss else len(loss)
    skip = max(first - prompt_tokens, 0) if prompt_tokens else 0
    cells = [] if skip else [(token_ids.NAMES[f["decoder_input_tokens"][0]], 0.0)]
    targets = f["decoder_target_tokens"]
    return skip, cells + [(_piece(vocab, targets[i]), loss[i]) for i in range(skip, len(loss))]


def print_example(row: dict, out: TextIO, color: bool, prompt_tokens: int = 32) -> None:
    w = out.write
    n_prompt, n_target = len(row["prompt_ids"]), len(row["target_ids"])
    loss = row["features"]["decoder_loss_weights"]
    w("-" * width() + "\n")
    w(f"{_short(row['task'])}\n")
    w(wrap(f"{row['split']} example {row['index']} of {row['of']}, id {row['id']}") + "\n")
    about = f"template {row['template']} | {row['category']} | {row['answer_type']}"
    w(wrap(f"{about}, {row['metric']}") + "\n")
    total = f"BOS + {n_prompt} prompt + {n_target} target (with EOS) = {n_prompt + n_target + 1}"
    w(wrap(f"tokens: {total}; loss on {int(sum(loss))} of {len(loss)} positions") + "\n")
    if row["cut_prompt_tokens"] or row["cut_target_tokens"]:
        w(f"cut to fit the row: {row['cut_prompt_tokens']} prompt tokens on the left, ")
        w(f"{row['cut_target_tokens']} target tokens\n")
    if row["options"]:
        w(f"options: {row['options']} (label {row['label']})\n")
    w(f"\n{wrap(row['inputs'])}\n")
    target = wrap(">>>" + row["targets"])
    w((f"{MARK}{target[3:]}{RESET}" if color else target) + "\n")
    skip, cells = token_cells(row, prompt_tokens)
    w(f"\ntokens ({'dim' if color else '|tok'}: loss 0, ")
    w(f"{'underlined' if color else '[tok]'}: loss 1)")
    w(f", {skip} earlier prompt tokens not shown:\n" if skip else ":\n")
    line, size = "", 0
    for text, weight in cells:
        plain = f"[{text}]" if weight else f"|{text}"
        shown = plain if not color else f"{MARK if weight else DIM}{text}{RESET} "
        if line and size + len(plain) + 1 > width():
            w(line.rstrip() + "\n")
            line, size = "", 0
        line, size = line + shown, size + len(plain) + (1 if color else 0)
    w(line.rstrip() + "\n")


# -- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m optiml.tools.inspect",
        description="Inspect OPT-IML Bench tasks, mixtures and examples ($OPTIML_DATA_DIR).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tasks", help="list catalog tasks, filtered")
    t.add_argument("--benchmark", help="e.g. niv2 (see `benchmarks`)")
    t.add_argument("--category", help="a taxonomy category (see `categories`)")
    t.add_argument("--role", choices=catalog.ROLES, help="the task's role (tasks/README.md)")
    t.add_argument("--level", choices=LEVELS, help="a generalization level (levels.py)")
    t.add_argument("--split", help="add exact local example counts of this split")
    t.add_argument("--present", action="store_true", help="only tasks with local examples")
    sub.add_parser("benchmarks", help="list the source benchmarks")
    sub.add_parser("categories", help="list the category taxonomy with task counts")
    m = sub.add_parser("mixture", help="effective rates, epochs and absent tasks of a mixture")
    m.add_argument("mixture", help="e.g. train or optiml_mix:train_flan2022")
    m.add_argument(
        "--steps", type=number(1), help="training steps (adds drawn examples and epochs)"
    )
    m.add_argument("--batch", type=number(1), default=256, help="packed rows per step")
    m.add_argument(
        "--examples-per-row",
        type=number(0, float, strict=True),
        default=1.0,
        help="mean examples per row",
    )
    m.add_argument("--top", type=number(0), default=20, help="tasks shown (0: all)")
    m.add_argument("--all-missing", action="store_true", help="list every absent task")
    e = sub.add_parser("examples", help="rendered and tokenized examples with the loss mask")
    e.add_argument("task", help="e.g. niv2:task1557_jfleg_answer_generation[#2shot]")
    e.add_argument("--split", default="train")
    e.add_argument("-n", type=number(1), default=2, help="number of examples")
    e.add_argument("--start", type=number(0), default=0, help="index of the first example")
    e.add_argument("--length", type=number(1), default=features.DEFAULT_LENGTH, help="row length")
    e.add_argument(
        "--prompt-tokens", type=number(0), default=32, help="prompt tokens shown (0: all)"
    )
    e.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    x = sub.add_parser("export", help="write the first N training-stream examples as JSON lines")
    x.add_argument("mixture")
    x.add_argument("-n", type=number(1), default=100, help="number of examples")
    x.add_argument("-o", "--output", default="-", help="JSON lines file ('-': stdout)")
    x.add_argument("--seed", type=int, default=0, help="the training stream's seed")
    x.add_argument("--tokens", action="store_true", help="add prompt_ids and target_ids")
    for s in sub.choices.values():
        s.add_argument("--json", action="store_true", help="JSON on stdout, for scripts")
    return p


def _write_jsonl(rows: Iterator[dict], sink: TextIO) -> Counter:
    per_task: Counter = Counter()
    for row in rows:
        sink.write(json.dumps(row, ensure_ascii=False) + "\n")
        per_task[row["task"]] += 1
    return per_task


def _run(args: argparse.Namespace, out: TextIO) -> None:
    def show(data, printer) -> None:
        if args.json:
            out.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        else:
            printer(data, out)

    if args.command == "tasks":
        filters = (args.benchmark, args.category, args.role, args.level, args.split)
        show(task_rows(*filters, present=args.present), print_tasks)
    elif args.command == "benchmarks":
        show(benchmark_rows(), print_benchmarks)
    elif args.command == "categories":
        show(category_rows(), print_categories)
    elif args.command == "mixture":
        summary = mixture_summary(args.mixture, args.steps, args.batch, args.examples_per_row)
        show(summary, lambda s, o: print_mixture(s, o, args.top, args.all_missing))
    elif args.command == "examples":
        color = args.color == "always" or (args.color == "auto" and out.isatty())
        rows = example_rows(args.task, args.split, args.n, args.start, args.length)
        show(rows, lambda rs, o: [print_example(r, o, color, args.prompt_tokens) for r in rs])
    elif args.command == "export":
        rows = export_examples(args.mixture, args.n, args.seed, args.tokens)
        if args.output == "-":
            _write_jsonl(rows, out)
            return
        with open(args.output, "w", encoding="utf-8") as sink:
            per_task = _write_jsonl(rows, sink)
        summary = {"output": args.output, "examples": sum(per_task.values())}
        summary.update(tasks=len(per_task), seed=args.seed)
        show(
            summary,
            lambda s, o: o.write(
                f"wrote {s['examples']} examples of {s['tasks']} tasks to {s['output']}\n"
            ),
        )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The command line; returns the exit status (2 with a message naming the bad input)."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        _run(args, out)
    except BrokenPipeError:  # e.g. `| head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit-time flush
    except (KeyError, ValueError, IndexError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"python -m optiml.tools.inspect {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
