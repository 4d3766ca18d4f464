"""What every benchmark here prints the same way: threads, machine load, one-off costs, and the
baseline's warm-up apart from its steady state.

    torch.set_num_threads(2)
    print(header(2))    # "CPU AMD EPYC, avx2; threads: torch 2, XLA one per core (2 cores); ..."
    runs = interleaved({"optiml": ours, "torch": theirs}, repeats=3)
    print(runs["optiml"].line("items", 200))

`interleaved` runs the contenders in turn (A, B, A, B, ...) so that the load the machine carries
(it is shared) falls on each of them alike, and keeps every time: a figure is the median, with
the fastest and slowest run and the load average during the runs beside it. The process's CPU
seconds per run are kept too: on a loaded machine wall time mostly measures waiting for a core,
CPU time what the work costs (threads that spin while waiting count in it, so it is a second
view, not the figure).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def load() -> str:
    """'1.52 0.97 0.60': the 1/5/15-minute load averages (other processes on the machine)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu() -> str:
    """'AMD EPYC, avx2': the processor's name and widest vector set (Linux's /proc/cpuinfo).
    The ratios depend on it: torch's and XLA's kernels are not equally tuned for every CPU."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.machine())  # fmt: skip
    flags = set(info.split())
    vector = next((v for v in ("avx512f", "avx2", "avx", "neon", "asimd") if v in flags), "")
    return f"{name}, {vector}" if vector else name


def header(torch_threads: int) -> str:
    """XLA's CPU client always runs one thread per core (no flag changes it)."""
    return (
        f"CPU {cpu()}; threads: torch {torch_threads}, XLA one per core ({os.cpu_count()} "
        f"cores); load (1/5/15 min) {load()}"
    )


@dataclasses.dataclass
class Runs:
    """Seconds of each timed run of one contender and the 1-minute load after it."""

    name: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)
    loads: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, count: float) -> float:
        return count / self.median

    def line(self, unit: str, count: float) -> str:
        rates = sorted(count / s for s in self.seconds)
        cpu = count / statistics.median(self.cpu_seconds)
        return (
            f"{self.name:24s} {self.rate(count):9.1f} {unit}/s  (median of {len(rates)}: "
            f"{rates[0]:.1f} .. {rates[-1]:.1f}; {cpu:.1f} per CPU second; load "
            f"{min(self.loads):.1f} .. {max(self.loads):.1f})"
        )


def once(fn: Callable[[], object]) -> float:
    """Seconds of one call (a warm-up or a one-off cost, printed on its own line)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, Runs]:
    """Times every contender `repeats` times, in turn; each should already be warmed up."""
    runs = {name: Runs(name) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            cpu = time.process_time()
            runs[name].seconds.append(once(fn))
            runs[name].cpu_seconds.append(time.process_time() - cpu)
            runs[name].loads.append(os.getloadavg()[0])
    return runs


def ratio_line(ours: Runs, theirs: Runs, goal: float) -> str:
    ratio = theirs.median / ours.median
    cpu = statistics.median(theirs.cpu_seconds) / statistics.median(ours.cpu_seconds)
    verdict = "meets" if ratio >= goal else "MISSES"
    return (
        f"ratio {ours.name} / {theirs.name}: {ratio:.2f} wall ({verdict} the goal >= {goal}); "
        f"{cpu:.2f} in CPU time"
    )
