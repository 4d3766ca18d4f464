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

from optiml.bench import mixing, names
from optiml.validation import number


def report(
    mixture: str,
    steps: int | None = None,
    batch: int = 256,
    examples_per_row: float = 1.0,
    top: int | None = None,
    out: TextIO = sys.stdout,
) -> mixing.MixtureRates:
    """Write the rate table of `mixture` to `out` and return its MixtureRates."""
    rates = mixing.mixture_rates(mixture)
    spec = mixing.MIXTURES[mixture]
    drawn = steps * batch * examples_per_row if steps else None
    w = out.write
    recipe = spec.recipe
    w(f"mixture {mixture}: level={spec.level} split={spec.split} ")
    w(f"recipe={'uncapped examples-proportional' if recipe is None else recipe}\n")
    w(f"present tasks: {len(rates.rates)}  absent: {len(rates.missing)}  ")
    w(f"absent benchmarks: {', '.join(rates.missing_benchmarks) or 'none'}\n")
    if drawn:
        w(f"examples drawn: {steps} steps x {batch} rows x {examples_per_row:g} examples/row ")
        w(f"= {drawn:,.0f}\n")
    w("\nbenchmark            share      tasks   examples\n")
    for bench, share in sorted(rates.benchmark_rates.items(), key=lambda x: -x[1]):
        members = [n for n, _ in rates.rates if names.parse_task_name(n).benchmark == bench]
        total = sum(rates.counts[n] for n in members)
        w(f"{bench:<18} {share:>8.4%} {len(members):>8} {total:>10,}\n")
    w(f"\n{'task':<72} {'examples':>9} {'rate':>9}")
    w(f" {'drawn':>10} {'epochs':>8}\n" if drawn else "\n")
    ordered = sorted(rates.rates, key=lambda x: (-x[1], x[0]))
    for name, rate in ordered[:top]:
        n = rates.counts[name]
        w(f"{name:<72} {n:>9,} {rate:>9.5%}")
        w(f" {rate * drawn:>10,.0f} {rate * drawn / n:>8.2f}\n" if drawn else "\n")
    if top is not None and len(ordered) > top:
        w(f"... {len(ordered) - top} more tasks\n")
    if rates.missing:
        w(f"\nabsent locally ({len(rates.missing)}), left out and rates renormalised:\n")
        for name in rates.missing:
            w(f"  {name}: {rates.reasons[name]}\n")
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiml.tools.rates", description=__doc__)
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
    report(mixture, args.steps, args.batch, args.examples_per_row, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
