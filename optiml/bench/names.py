"""The one builder and the one parser of optiml's seqio task and mixture names.

seqio names must match `^[\\w\\d\\.\\:_#]+$` (no hyphens, slashes or spaces). optiml names are

    optiml:<benchmark>:<task>[#<variant>]        e.g. optiml:niv2:task1356_xlsum_title_generation
                                                      optiml:niv2:task1356_xlsum_title_generation#2shot
    optiml_mix:<mixture>                          e.g. optiml_mix:train, optiml_mix:niv2_test

`<benchmark>` is a catalog benchmark key (niv2, promptsource, flan, ...), `<task>` the task id in
the catalog (already seqio-safe: `sanitize` makes it so), `<variant>` an optional evaluation
variant such as `2shot`. Everything outside [A-Za-z0-9_.] in a task id becomes `_`
(`super_glue/rte` -> `super_glue_rte`), so a raw dataset id never reaches seqio unsanitised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TASK_PREFIX = "optiml"
MIXTURE_PREFIX = "optiml_mix"
SEQIO_NAME_RE = re.compile(r"^[\w\d\.\:_#]+$")
_PART_RE = re.compile(r"^[A-Za-z0-9_.]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def sanitize(raw: str) -> str:
    """A seqio-safe name part: `super_glue/rte` -> `super_glue_rte`, `anli-r1` -> `anli_r1`."""
    part = _UNSAFE.sub("_", raw.strip()).strip("_")
    if not part:
        raise ValueError(f"cannot build a task name part from {raw!r}")
    return part


@dataclass(frozen=True)
class TaskName:
    """A parsed task name: benchmark key, task id and optional variant (e.g. `2shot`)."""

    benchmark: str
    task: str
    variant: str | None = None

    def __str__(self) -> str:
        return task_name(self.benchmark, self.task, self.variant)


def _check_part(what: str, value: str) -> None:
    if not _PART_RE.match(value):
        raise ValueError(f"invalid {what} {value!r}: only letters, digits, '_' and '.' allowed")


def task_name(benchmark: str, task: str, variant: str | None = None) -> str:
    """`task_name("niv2", "task001_quoref_question_generation", "2shot")`
    -> `"optiml:niv2:task001_quoref_question_generation#2shot"`."""
    _check_part("benchmark", benchmark)
    _check_part("task", task)
    name = f"{TASK_PREFIX}:{benchmark}:{task}"
    if variant is not None:
        _check_part("variant", variant)
        name += f"#{variant}"
    return name


def parse_task_name(name: str) -> TaskName:
    """Inverse of `task_name`; raises ValueError naming the bad input."""
    head, _, variant = name.partition("#")
    parts = head.split(":")
    if len(parts) != 3 or parts[0] != TASK_PREFIX:
        raise ValueError(
            f"not an optiml task name: {name!r} (expected '{TASK_PREFIX}:<benchmark>:<task>"
            "[#<variant>]')"
        )
    parsed = TaskName(parts[1], parts[2], variant or None)
    try:
        rebuilt = task_name(parsed.benchmark, parsed.task, parsed.variant)
    except ValueError as err:
        raise ValueError(f"not an optiml task name: {name!r} ({err})") from None
    if rebuilt != name:
        raise ValueError(f"not an optiml task name: {name!r}")
    return parsed


def mixture_name(mixture: str) -> str:
    """`mixture_name("train")` -> `"optiml_mix:train"`."""
    _check_part("mixture", mixture)
    return f"{MIXTURE_PREFIX}:{mixture}"


def parse_mixture_name(name: str) -> str:
    """Inverse of `mixture_name`: `"optiml_mix:train"` -> `"train"`."""
    prefix, _, mixture = name.partition(":")
    if prefix != MIXTURE_PREFIX or not _PART_RE.match(mixture):
        raise ValueError(f"not an optiml mixture name: {name!r} (expected 'optiml_mix:<name>')")
    return mixture
