"""Partial data is loud: a training mixture whose present data would repeat some benchmark's
tasks more than `max_epochs` times at the paper's scale stops, unless its name says how to
accept it.

Scale: the paper trains 4000 steps x 256 rows of 2048 tokens (Table 3); at ~300 tokens per
example (Table 1: prompts average 261 tokens, plus the answer) that draws ~7.0M examples
(`PAPER_EXAMPLES`). A task below the EPS cap runs share x 7.0M / W epochs, W being its
benchmark's capped total; with the paper's data (Table 1: 280 PromptSource tasks of ~46k
examples each, capped at 4096) that is about 0.45 x 7.0M / (280 x ~3.5k) = 3 epochs, and no
benchmark of Table 1 gets much more. The default limit of 10 epochs (`MAX_EPOCHS`) leaves that
room and stops on a benchmark that is only partly present, e.g. two 32-example FewGLUE tasks
holding PromptSource's 45% share (thousands of epochs).

The epochs of a task are rate x PAPER_EXAMPLES / n; a benchmark's are its tasks' maximum. Every
training mixture `optiml_mix:NAME` stops (`PartialDataError`, one line naming the benchmark, its
present and declared task counts, its epochs and the choices) and has three siblings that accept
partial data (a mixture defined in gin chooses with `mixing.MixtureSpec.partial_data`):

- `NAME.renormalise`: keep the recipe's shares renormalised over what is present (and warn);
- `NAME.cap`: lower each offending benchmark's share until it repeats at most `max_epochs`,
  the freed share going to the other benchmarks in proportion (water-filling; if no benchmark
  can absorb it, all keep the recipe's proportions and the log says by how much they exceed);
- `NAME.drop`: leave the offending benchmarks out (repeatedly, since the others' shares grow).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

POLICIES = ("stop", "renormalise", "cap", "drop")
PAPER_STEPS, PAPER_ROWS, PAPER_LENGTH, EXAMPLE_TOKENS = 4000, 256, 2048, 300
PAPER_EXAMPLES = PAPER_STEPS * PAPER_ROWS * PAPER_LENGTH // EXAMPLE_TOKENS  # 6,990,506
MAX_EPOCHS = 10.0

Rates = list[tuple[str, float]]


class PartialDataError(ValueError):
    """A training mixture would repeat a partly present benchmark too often; one line says
    which, by how much, and the mixture names that accept it."""


def benchmark_epochs(
    rates: Rates, counts: Mapping[str, int], bench_of: Mapping[str, str]
) -> dict[str, float]:
    """{benchmark: most epochs any of its tasks runs at the paper's scale}."""
    out: dict[str, float] = {}
    for name, rate in rates:
        epochs = rate * PAPER_EXAMPLES / counts[name]
        out[bench_of[name]] = max(out.get(bench_of[name], 0.0), epochs)
    return out


def _reshare(rates: Rates, bench_of: Mapping[str, str], shares: Mapping[str, float]) -> Rates:
    """Rates with each benchmark's total set to `shares[b]` (0 drops it), renormalised to 1."""
    old: dict[str, float] = {}
    for name, rate in rates:
        old[bench_of[name]] = old.get(bench_of[name], 0.0) + rate
    new = [(n, r * shares.get(bench_of[n], 0.0) / old[bench_of[n]]) for n, r in rates]
    new = [(n, r) for n, r in new if r > 0]
    total = sum(r for _, r in new)
    return [(n, r / total) for n, r in new]


def _shares(rates: Rates, bench_of: Mapping[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, rate in rates:
        out[bench_of[name]] = out.get(bench_of[name], 0.0) + rate
    return out


def _cap(rates: Rates, counts, bench_of, max_epochs: float) -> Rates:
    shares = _shares(rates, bench_of)
    epochs = benchmark_epochs(rates, counts, bench_of)
    limit = {b: shares[b] * max_epochs / epochs[b] for b in shares}  # share at max_epochs
    fixed: dict[str, float] = {}
    while len(fixed) < len(shares):
        free = {b: s for b, s in shares.items() if b not in fixed}
        room = 1.0 - sum(fixed.values())
        scaled = {b: room * s / sum(free.values()) for b, s in free.items()}
        over = {b: limit[b] for b, s in scaled.items() if s > limit[b]}
        if not over:
            return _reshare(rates, bench_of, {**fixed, **scaled})
        fixed.update(over)
    factor = 1.0 / sum(fixed.values())
    log.warning("every benchmark is over %.0f epochs even when capped: all exceed it %.1fx",
                max_epochs, factor)  # fmt: skip
    return _reshare(rates, bench_of, fixed)


def message(
    mixture: str,
    over: Mapping[str, float],
    shares: Mapping[str, float],
    present: Mapping[str, int],
    declared: Mapping[str, int],
    max_epochs: float,
) -> str:
    """The one-line stop message (module docstring)."""
    what = "; ".join(
        f"{b} has {present[b]} of its {declared[b]} tasks here and its {shares[b]:.1%} share "
        f"repeats a task up to {e:,.{1 if e < 100 else 0}f} epochs"
        for b, e in sorted(over.items(), key=lambda x: -x[1])
    )
    return (
        f"{mixture}: partial data: {what} (limit {max_epochs:g}, at the paper's scale of "
        f"{PAPER_EXAMPLES / 1e6:.1f}M examples). Accept it with the gin binding "
        f"MIXTURE = '{mixture}.renormalise' (keep the shares over the present data), "
        f"'{mixture}.cap' (cap each benchmark at {max_epochs:g} epochs, the rest to the others) "
        f"or '{mixture}.drop' (leave such benchmarks out); a mixture defined in gin takes "
        "mixing.MixtureSpec.partial_data = 'renormalise', 'cap' or 'drop'"
    )


def apply(
    mixture: str,
    policy: str,
    rates: Rates,
    counts: Mapping[str, int],
    bench_of: Mapping[str, str],
    declared: Mapping[str, int],
    max_epochs: float = MAX_EPOCHS,
) -> Rates:
    """The rates of a training mixture under `policy` (one of POLICIES; module docstring)."""
    if policy not in POLICIES:
        raise ValueError(f"{mixture}: unknown partial-data policy {policy!r}; one of {POLICIES}")
    epochs = benchmark_epochs(rates, counts, bench_of)
    over = {b: e for b, e in epochs.items() if e > max_epochs}
    if not over:
        return rates
    present: dict[str, int] = {}
    for name in counts:
        present[bench_of[name]] = present.get(bench_of[name], 0) + 1
    text = message(mixture, over, _shares(rates, bench_of), present, declared, max_epochs)
    if policy == "stop":
        raise PartialDataError(text)
    log.warning("%s (accepted: %s)", text.split(". Choose")[0], policy)
    if policy == "renormalise":
        return rates
    if policy == "cap":
        return _cap(rates, counts, bench_of, max_epochs)
    while over:  # drop
        shares = {b: s for b, s in _shares(rates, bench_of).items() if b not in over}
        if not shares:
            raise PartialDataError(f"{mixture}: every benchmark is over {max_epochs:g} epochs")
        rates = _reshare(rates, bench_of, shares)
        over = {b: e for b, e in benchmark_epochs(rates, counts, bench_of).items()
                if e > max_epochs}  # fmt: skip
    return rates
