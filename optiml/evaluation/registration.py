"""Evaluation copies of registry tasks: the same data with the catalog's metric attached.

Registry tasks (`optiml.registry`) carry no metrics. `evaluation_task` registers a twin with the
task's metric functions, the postprocessor they need and, for `rank` tasks, the per-option
expansion (`rank_classification_preprocessor`); with `max_examples` the twin keeps only the first
N examples, cut before the expansion so a rank task keeps every option of each kept example:

    evaluation_task("optiml:niv2:task1557_jfleg_answer_generation#2shot", "rougeL")
        -> "optiml_eval:niv2:task1557_jfleg_answer_generation#2shot"
    evaluation_task("optiml:promptsource:super_glue_cb", "accuracy", "rank", max_examples=250)
        -> "optiml_eval_first250:promptsource:super_glue_cb"   (250 examples, ~750 option rows)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf

from optiml.bench.sources import common
from optiml.evaluation import metrics
from optiml.evaluation import rank_classification as rc
from optiml.fingerprint import json_fingerprint

EVAL_PREFIX = "optiml_eval"


def metric_setup(
    metric: str, answer_type: str, xlingual: bool, scoring: rc.Scoring = rc.PAPER
) -> tuple[Callable, list[Callable]]:
    """(postprocess_fn, metric_fns) for a catalog metric and answer type; the first metric
    function reports the task's score (`accuracy` for rank tasks, ranked as `scoring` says)."""
    if answer_type == "rank":
        return rc.rank_classification_postprocessor, [rc.metric_fn(scoring)]
    rouge = metrics.rouge_xlingual if xlingual else metrics.rouge
    fns = {
        "rougeL": [rouge, metrics.exact_match],
        "exact_match": [metrics.exact_match, rouge],
        "accuracy": [metrics.accuracy, metrics.exact_match],
    }
    if metric not in fns:
        raise ValueError(f"unknown metric {metric!r} for a generation task (one of {list(fns)})")
    return metrics.references_postprocessor, fns[metric]


def _first(dataset: tf.data.Dataset, n: int) -> tf.data.Dataset:
    return dataset.take(n)


def _templates(dataset: tf.data.Dataset, names: tuple[str, ...]) -> tf.data.Dataset:
    """Only the examples whose id `<row>|<template>` names one of `names`."""
    keep = tf.constant(list(names))

    def rendered_by(example):
        template = tf.strings.split(example["id"], common.TEMPLATE_SEPARATOR, maxsplit=1)[-1]
        return tf.reduce_any(tf.equal(template, keep))

    return dataset.filter(rendered_by)


def twin_name(
    name: str,
    max_examples: int | None = None,
    scoring: rc.Scoring | None = None,
    templates: tuple[str, ...] = (),
) -> str:
    """`optiml:mmlu:anatomy#5shot`, 250 -> `optiml_eval_first250:mmlu:anatomy#5shot`; a name
    without a `:` gets a suffix instead (`my_task` -> `my_task_eval`, `my_task_eval_first250`).
    Rank scoring other than the paper's is named too: `optiml_eval_noeos_characters:...`, and a
    choice of templates by its fingerprint: `optiml_eval_t3f9c0a1d:...`."""
    cap = "" if max_examples is None else f"_first{max_examples}"
    if scoring is not None and scoring != rc.PAPER:
        cap += f"_{'eos' if scoring.include_eos else 'noeos'}_{scoring.length_normalization}"
    if templates:
        cap += f"_t{json_fingerprint(sorted(templates))[:8]}"
    if ":" in name:
        return f"{EVAL_PREFIX}{cap}:{name.split(':', 1)[1]}"
    return f"{name}_eval{cap}"


def evaluation_task(
    name: str,
    metric: str,
    answer_type: str = "generate",
    xlingual: bool = False,
    max_examples: int | None = None,
    scoring: rc.Scoring = rc.PAPER,
    templates: Sequence[str] = (),
) -> str:
    """The name of a seqio task that evaluates registry task `name` (registered once).

    A task registered with metric functions keeps them and its postprocessor (and is used as is
    when uncapped);
    otherwise the twin gets `metric_setup(metric, answer_type, xlingual, scoring)` and, for
    `rank` tasks, the per-option expansion, and targets without EOS if `scoring.include_eos` is
    False. `max_examples`: only the first N examples of the split; `templates`: only examples
    whose id names one of these templates (`common.template_of`), before the cap; a source that
    draws one template per row (FLAN, `common.TemplateDraw`) draws among these instead, so every
    row stays."""
    task = seqio.get_mixture_or_task(name)
    rank = answer_type == "rank" and not task.metric_objs
    templates = tuple(sorted(templates))
    if task.metric_objs and max_examples is None and not templates:
        return name
    twin = twin_name(name, max_examples, scoring if rank else None, templates)
    if twin in seqio.TaskRegistry.names():
        return twin
    first = [functools.partial(_templates, names=templates)] if templates else []
    first += [] if max_examples is None else [functools.partial(_first, n=max_examples)]
    features = dict(task.output_features)
    if task.metric_objs:
        postprocess_fn, metric_fns, expand = task.postprocessor, task.metric_fns, []
    else:
        postprocess_fn, metric_fns = metric_setup(metric, answer_type, xlingual, scoring)
        expand = [rc.rank_classification_preprocessor] if rank else []
        if rank and not scoring.include_eos:
            features["targets"] = dataclasses.replace(features["targets"], add_eos=False)
    draw = common.template_draw(task.source) if templates else None
    seqio.TaskRegistry.add(
        twin,
        source=draw.among(templates) if draw else task.source,
        preprocessors=first + expand + list(task.preprocessors),
        output_features=features,
        postprocess_fn=postprocess_fn,
        metric_fns=metric_fns,
    )
    return twin
