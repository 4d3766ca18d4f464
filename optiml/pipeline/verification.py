"""`python -m optiml.pipeline.prepare --verify`: both preparation paths on every task, compared.

The direct path (`optiml.pipeline.direct`) must give seqio's token arrays in seqio's order; this
prepares each task both ways (nothing written) and names every task where they differ, with the
first differing token."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from optiml.pipeline import direct, prepare

log = logging.getLogger(__name__)


@dataclass
class Verification:
    """What `verify` found, by task name."""

    same: list[str] = field(default_factory=list)  # identical tokens and order
    differ: dict[str, str] = field(default_factory=dict)  # name -> first difference
    seqio_only: list[str] = field(default_factory=list)  # no direct path: nothing to compare
    unavailable: dict[str, str] = field(default_factory=dict)  # both paths failed alike

    @property
    def exit_code(self) -> int:
        return 1 if self.differ else 0


def verify_task(name: str, *, split: str, seed: int) -> tuple[str, str]:
    """("same" | "differ" | "seqio_only" | "unavailable", detail) for one task."""
    task = prepare.registered_task(name)
    outcomes = []
    for path in prepare.PATHS:
        try:
            outcomes.append(prepare.examples_of(task, split, seed, path))
        except Exception as e:  # noqa: BLE001 - a failure is an outcome to compare
            outcomes.append((None, f"{type(e).__name__}: {e}"))
    (fast, fast_path), (slow, slow_error) = outcomes
    if fast is not None and fast_path == "seqio":
        return "seqio_only", ""
    if fast is None and slow is None:
        return "unavailable", slow_error
    if fast is None or slow is None:
        return "differ", f"only one path failed: direct {fast_path!r}, seqio {slow_error!r}"
    problem = direct.compare(fast, slow)
    return ("differ", problem) if problem else ("same", "")


def verify(
    names: Sequence[str], *, split: str = "train", seed: int = 0, shard_index: int = 0,
    num_shards: int = 1,
) -> Verification:  # fmt: skip
    """Prepare this shard's tasks both ways (nothing written) and compare them task by task."""
    result = Verification()
    mine = prepare.shard(names, shard_index, num_shards)
    for i, name in enumerate(mine):
        outcome, detail = verify_task(name, split=split, seed=seed)
        if outcome == "same":
            result.same.append(name)
        elif outcome == "seqio_only":
            result.seqio_only.append(name)
        else:
            getattr(result, outcome)[name] = detail
            if outcome == "differ":
                log.error("verify: task %s differs: %s", name, detail)
        if (i + 1) % 100 == 0:
            log.info("verify: %d/%d tasks, %d differ", i + 1, len(mine), len(result.differ))
    log.info(
        "verify: %d tasks identical, %d differ%s, %d seqio only, %d unavailable",
        len(result.same), len(result.differ),
        (": " + ", ".join(sorted(result.differ))) if result.differ else "",
        len(result.seqio_only), len(result.unavailable),
    )  # fmt: skip
    return result
