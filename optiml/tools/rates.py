"""Print the effective rates of an optiml mixture over the data present locally.

    python -m optiml.tools.rates optiml_mix:train --steps 4000 --batch 256 --examples-per-row 8

Prints the per-benchmark shares, every task's exact example count, rate, and (with --steps) the
examples it contributes and its epochs = rate * steps * batch * examples_per_row / count; then
the declared tasks that are absent locally, with the reason. Reads the catalog and counts the
data; no TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from optiml.bench import mixing, names, partial_data
from optiml.tools import inspection
from optiml.validation import number


def report(
    mixture: str,
    steps: int | None = None,
    batch: int = 256,
    examples_per_row: float = 1.0,
    top: int | None = None,
    out: TextIO = sys.stdout,
) -> dict:
    """Write the rate table of `mixture` (`inspection.mixture_summary`) to `out`; return it."""
    summary = inspection.mixture_summary(mixture, steps, batch, examples_per_row)
    drawn, recipe = summary["drawn"], mixing.MIXTURES[summary["mixture"]].recipe
    w = out.write
    w(f"mixture {summary['mixture']}: level={summary['level']} split={summary['split']} ")
    w(f"recipe={'uncapped examples-proportional' if recipe is None else recipe}\n")
    w(f"present tasks: {len(summary['tasks'])}  absent: {len(summary['missing'])}  ")
    w(f"absent benchmarks: {', '.join(summary['missing_benchmarks']) or 'none'}\n")
    if drawn:
        w(f"examples drawn: {steps} steps x {batch} rows x {examples_per_row:g} examples/row ")
        w(f"= {drawn:,.0f}\n")
    w("\nbenchmark            share      tasks   examples\n")
    for b in summary["benchmarks"]:
        w(f"{b['benchmark']:<18} {b['share']:>8.4%} {b['tasks']:>8} {b['examples']:>10,}\n")
    w(f"\n{'task':<72} {'examples':>9} {'rate':>9}")
    w(f" {'drawn':>10} {'epochs':>8}\n" if drawn else "\n")
    for t in summary["tasks"][:top]:
        w(f"{t['task']:<72} {t['examples']:>9,} {t['rate']:>9.5%}")
        w(f" {t['drawn']:>10,.0f} {t['epochs']:>8.2f}\n" if drawn else "\n")
    if top is not None and len(summary["tasks"]) > top:
        w(f"... {len(summary['tasks']) - top} more tasks\n")
    if summary["missing"]:
        w(f"\nabsent locally ({len(summary['missing'])}), left out and rates renormalised:\n")
        for m in summary["missing"]:
            w(f"  {m['task']}: {m['reason']}\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.rates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mixture", help="e.g. optiml_mix:train (the prefix may be left out)")
    parser.add_argument("--steps", type=number(1), default=None, help="training steps")
    parser.add_argument("--batch", type=number(1), default=256, help="packed rows per step")
    parser.add_argument(
        "--examples-per-row",
        type=number(0, float, strict=True),
        default=1.0,
        help="average examples per packed row",
    )
    parser.add_argument("--top", type=number(1), default=None, help="print only the top N tasks")
    args = parser.parse_args(argv)
    mixture = args.mixture if ":" in args.mixture else names.mixture_name(args.mixture)
    if mixture not in mixing.MIXTURES:
        parser.error(f"unknown mixture {mixture!r}; defined: {', '.join(sorted(mixing.MIXTURES))}")
    try:
        report(mixture, args.steps, args.batch, args.examples_per_row, args.top)
    except partial_data.PartialDataError as err:  # one line: which benchmark, and the choices
        print(f"rates: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
