"""A run's settings checked before anything runs: one line naming the setting and its value.

    optiml: BATCH_SIZE='8' (trainer.train.batch_size): expected an int, got str
    optiml: trainer.train.checkpoint_every=0: must be >= 1
    optiml: TRAIN_STEPS=50 (trainer.train.steps): must exceed the warm-up,
            optimizer.OptimizerConfig.warmup_steps=60

`optiml.gin_check.check_gin_config()` is what `optiml.main` calls once the gin files are parsed
and before RUN is called (so before any preparation, compilation or step). It reads every binding
with its macros resolved and checks, in this order:

1. its type against the bound function's annotations (int, float, str, bool, None, sequences);
2. its range or name against `RULES` (e.g. lengths, batches, periods >= 1, a known mixture);
3. the rules that tie settings together: the warm-up below the steps, the training batch
   divisible by the microbatches and the data-parallel devices, every mesh against the devices.

`check_call(train, locals())` applies 1 and 2 to a plain Python call, so a function called without
gin refuses the same values. Rules are keyed by the function's full name; a test checks that each
key still names a function. This module never imports gin; `gin_check` (an entry point's job) does.
"""

from __future__ import annotations

import collections.abc
import importlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Rule = Callable[[Any], str | None]  # value -> what is wrong with it, or None


class SettingError(ValueError):
    """A setting out of its type or range; the message is one line naming it and its value."""


@dataclass(frozen=True)
class Reference:
    """A gin `@fn` / `@fn()` reference, left unevaluated (its own bindings are checked where it is
    built); rules let it pass."""

    scope: str
    selector: str
    evaluate: bool


# -- rules on one value -------------------------------------------------------------------------
def at_least(bound: float) -> Rule:
    return lambda v: None if v is None or v >= bound else f"must be >= {bound}"


def above(bound: float) -> Rule:
    return lambda v: None if v is None or v > bound else f"must be > {bound}"


def between(low: float, high: float) -> Rule:
    return lambda v: None if v is None or low <= v <= high else f"must be in [{low}, {high}]"


def one_of(module: str, attribute: str) -> Rule:
    """The value must be a key of `module.attribute` (imported when checked)."""

    def rule(value: Any) -> str | None:
        choices = list(getattr(importlib.import_module(module), attribute))
        return None if value is None or value in choices else f"must be one of {choices}"

    return rule


def each(rule: Rule) -> Rule:
    def check(values: Any) -> str | None:
        for i, value in enumerate(values or ()):
            problem = rule(value)
            if problem:
                return f"item {i} ({value!r}) {problem}"
        return None

    return check


def mesh_axis(value: Any) -> str | None:
    return None if value == -1 or value >= 1 else "must be >= 1, or -1 (all remaining devices)"


def mixture_name(value: Any) -> str | None:
    """A registered mixture or task: optiml's own (TF-free) or any seqio one; an optiml training
    mixture that stops on partial data (optiml.bench.partial_data) is refused with its message."""
    from optiml import paths
    from optiml.bench import mixing, partial_data

    if isinstance(value, Reference):
        return None  # a reference (e.g. `@registry.register_mixture()`) is checked when called
    if value in mixing.MIXTURES:
        try:
            mixing.mixture_rates(value)
        except partial_data.PartialDataError as e:
            return str(e)
        except (OSError, ValueError, paths.DataDirError):  # no data: the run reports it on reading
            pass
        return None
    if not str(value).startswith("optiml_mix:"):
        import seqio

        import optiml.registry  # noqa: F401  (registers every task and mixture)

        if value in seqio.MixtureRegistry.names() or value in seqio.TaskRegistry.names():
            return None
    return f"no such mixture or task (optiml's mixtures: {', '.join(sorted(mixing.MIXTURES))})"


def benchmark_name(value: Any) -> str | None:
    from optiml.bench import catalog

    known = sorted(catalog.benchmarks())
    return None if value in known else f"no such benchmark (known: {', '.join(known)})"


def _cache_pair(value: Any) -> str | None:
    return mixture_name(value[0]) if isinstance(value, list | tuple) and value else None


POSITIVE = at_least(1)


def _level_caps(value: Any) -> str | None:
    """An int >= 1 for every level, or {level: int >= 1}."""
    if not isinstance(value, Mapping):
        return POSITIVE(value)
    from optiml.bench.levels import LEVELS

    unknown = sorted(set(value) - set(LEVELS))
    if unknown:
        return f"unknown level(s) {unknown} (one of {list(LEVELS)})"
    return next((f"{k}: {POSITIVE(v)}" for k, v in value.items() if POSITIVE(v)), None)


RULES: dict[str, dict[str, Rule]] = {
    "optiml.trainer.train": {
        "steps": POSITIVE,
        "batch_size": POSITIVE,
        "num_microbatches": POSITIVE,
        "checkpoint_every": POSITIVE,
        "keep_checkpoints": POSITIVE,
        "eval_every": POSITIVE,
        "eval_batches": POSITIVE,
        "log_every": POSITIVE,
        "z_loss": at_least(0),
        "loss_normalization": one_of("optiml.train_step", "NORMALIZATIONS"),
    },
    "optiml.pipeline.stream.from_mixture": {
        "mixture": mixture_name,
        "batch_size": POSITIVE,
        "length": POSITIVE,
        "pool_size": POSITIVE,
        "on_damaged": one_of("optiml.pipeline.stream", "ON_DAMAGED"),
        "max_missing_share": between(0, 1),
    },
    "optiml.pipeline.stream.MixtureStream": {
        "batch_size": POSITIVE,
        "length": POSITIVE,
        "pool_size": POSITIVE,
        "on_damaged": one_of("optiml.pipeline.stream", "ON_DAMAGED"),
    },
    "optiml.optimizer.OptimizerConfig": {
        "learning_rate": at_least(0),
        "warmup_steps": at_least(0),
        "b1": between(0, 1),
        "b2": between(0, 1),
        "eps": at_least(0),
        "weight_decay": at_least(0),
        "clip_norm": above(0),
    },
    "optiml.partitioning.MeshConfig": {
        "data": mesh_axis,
        "fsdp": mesh_axis,
        "model": mesh_axis,
        "dcn_data": mesh_axis,
        "dcn_fsdp": mesh_axis,
        "dcn_model": mesh_axis,
        "rules": one_of("optiml.partitioning", "RULES"),
    },
    "optiml.partitioning.DistributedConfig": {"num_processes": POSITIVE, "process_id": at_least(0)},
    "optiml.models.opt.OPTConfig": {
        "vocab_size": POSITIVE,
        "hidden_size": POSITIVE,
        "num_layers": POSITIVE,
        "num_heads": POSITIVE,
        "ffn_dim": POSITIVE,
        "max_positions": POSITIVE,
        "dropout": between(0, 1),
        "attention_dropout": between(0, 1),
    },
    "optiml.evaluation.evaluate.evaluate": {
        "phase": one_of("optiml.evaluation.plan", "PHASES"),
        "shots": each(at_least(0)),
        "max_examples": POSITIVE,
        "max_tasks_per_level": _level_caps,
        "trained_on": mixture_name,
        "benchmarks": each(benchmark_name),
        "batch_size": POSITIVE,
        "max_new_tokens": POSITIVE,
        "length_normalization": one_of(
            "optiml.evaluation.rank_classification", "LENGTH_NORMALIZATIONS"
        ),
        "on_stale": one_of("optiml.evaluation.runner", "ON_STALE"),
        "select_templates": POSITIVE,
        "selection_inputs": POSITIVE,
        "demos": one_of("optiml.bench.sources.retrieval", "MODES"),
    },
    "optiml.quickstart.run": {"caches": each(_cache_pair)},
}


def number(minimum: float, kind: type = int, strict: bool = False) -> Callable[[str], Any]:
    """An argparse `type=` that refuses values below `minimum` (or equal, if `strict`), so a
    command-line tool names the flag and the value and exits 2, e.g. `type=number(1)`."""

    def parse(text: str) -> Any:
        import argparse

        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind.__name__}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {minimum}")
        return value

    return parse


# -- types from annotations ---------------------------------------------------------------------
def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def type_problem(value: Any, annotation: Any) -> str | None:
    """What is wrong with `value` for `annotation`, checking only plain types: int (not bool),
    float (an int will do), str, bool, None, unions of them and sequences of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        problems = [type_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        return f"expected {' or '.join(_type_name(a) for a in args)}, got {type(value).__name__}"
    if annotation is type(None):
        return None if value is None else "expected None"
    checks = {
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        bool: lambda v: isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }
    if annotation in checks:
        ok = checks[annotation](value)
        return (
            None
            if ok
            else f"expected {'an' if annotation is int else 'a'} "
            + (f"{annotation.__name__}, got {type(value).__name__}")
        )
    sequences = (list, tuple, collections.abc.Sequence)
    if origin in sequences or annotation in sequences:
        if not isinstance(value, list | tuple):
            return f"expected a sequence, got {type(value).__name__}"
        item = args[0] if args and (len(args) == 1 or args[1] is Ellipsis) else None
        for i, v in enumerate(value if item is not None else ()):
            problem = type_problem(v, item)
            if problem:
                return f"item {i}: {problem}"
    return None  # anything else (callables, dataclasses, Any) is not checked here


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: no type checks for this function
        return {}


def _full_name(fn: Any) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def check_value(fn: Any, param: str, value: Any) -> str | None:
    """What is wrong with `value` for `fn`'s `param` (type, then range), or None."""
    annotation = _hints(fn).get(param)
    problem = type_problem(value, annotation) if annotation is not None else None
    if problem is None and param in RULES.get(_full_name(fn), {}):
        try:
            problem = RULES[_full_name(fn)][param](value)
        except TypeError:  # a type the annotations did not catch (e.g. unannotated)
            problem = f"has the wrong type ({type(value).__name__})"
    return problem


def check_call(fn: Any, arguments: Mapping[str, Any]) -> None:
    """Raise SettingError for the first argument of a direct call `fn(**arguments)` that breaks
    its type or RULES, e.g. `check_call(train, locals())` at the top of `train`."""
    for param, value in arguments.items():
        problem = check_value(fn, param, value)
        if problem:
            raise SettingError(f"{fn.__name__}({param}={value!r}): {problem}")
