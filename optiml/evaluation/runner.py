"""The resumable runner: every task of a plan through `seqio.Evaluator`, saved as it finishes,
then the generalization report.

    report = run_plan(plan, inference.Inferencer(params, config), "runs/tiny",
                      provenance={"weights": weights_fingerprint(params)})

Each finished task is written to `<run_dir>/eval/<task>.json` (atomically: metrics, the score,
the number of rows, seconds, 5 sample outputs, and its provenance: the plan entry, its
fingerprint, and what the caller says the model is -- the weights' fingerprint, the checkpoint
step, the inference settings). A rerun reuses a result only when its plan entry and provenance
equal this run's, so an interrupted evaluation resumes where it stopped; a result saved for other
weights or another plan entry is evaluated again (one warning line), or, with
`on_stale="refuse"`, stops the run with one line. The report goes to
`<run_dir>/report.{json,md,png}` and is printed.

The score of a task is its primary metric: `accuracy` (rank classification or exact answers),
`rougeL` or `exact_match` -- the first of the task's metrics in that order unless `EvalTask.metric`
names one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import seqio
import tensorflow as tf
from tqdm import tqdm

from optiml import errors
from optiml.bench.sources import retrieval
from optiml.evaluation import rank_classification as rc
from optiml.evaluation import report as report_lib
from optiml.evaluation.plan import EvalTask
from optiml.evaluation.registration import evaluation_task
from optiml.fingerprint import json_fingerprint
from optiml.token_ids import BOS_ID

PRIMARY_METRICS = ("accuracy", "rougeL", "exact_match")
SAMPLES = 5  # rows of model output kept in each task's result file, for reading
RESULTS_DIR = "eval"
Record = dict[str, Any]  # a task's saved result (see `evaluate_task`)
ON_STALE = ("rerun", "refuse")  # what run_plan does with a result saved for another model/plan


class StaleResult(errors.RunStopped):
    """Saved results that belong to other weights or another plan entry (on_stale="refuse")."""


class Model(Protocol):
    """What the runner needs of a model: seqio's score and predict callables, e.g.
    `optiml.evaluation.inference.Inferencer`. Both return [(row index, output)]."""

    def score_fn(
        self, dataset: tf.data.Dataset, model_feature_shapes: Mapping[str, int] | None = None
    ) -> Sequence[tuple[int, float]]: ...

    def predict_fn(
        self, dataset: tf.data.Dataset, model_feature_shapes: Mapping[str, int] | None = None
    ) -> Sequence[tuple[int, Any]]: ...


def result_path(run_dir: Path, spec: EvalTask) -> Path:
    """`optiml:niv2:task1152_bard#2shot` -> <run_dir>/eval/optiml__niv2__task1152_bard__2shot.json
    (portable file names)."""
    return run_dir / RESULTS_DIR / (spec.task.replace(":", "__").replace("#", "__") + ".json")


def _write_json_atomic(path: Path, data: Record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _primary(spec: EvalTask, metrics: Mapping[str, float]) -> tuple[str, float]:
    if spec.metric:
        if spec.metric not in metrics:
            raise ValueError(f"task {spec.task!r}: metric {spec.metric!r} not in {sorted(metrics)}")
        return spec.metric, float(metrics[spec.metric])
    for name in PRIMARY_METRICS:
        if name in metrics:
            return name, float(metrics[name])
    raise ValueError(f"task {spec.task!r} reported none of {PRIMARY_METRICS}: {sorted(metrics)}")


def evaluate_task(spec: EvalTask, model: Model) -> Record:
    """Runs one task through seqio.Evaluator; returns its saved record (metrics, score, time)."""
    start = time.time()
    name = evaluation_task(
        spec.task,
        spec.metric or "rougeL",
        spec.answer_type,
        spec.xlingual,
        spec.max_examples,
        spec.scoring,
        spec.templates,
    )
    evaluator = seqio.Evaluator(
        mixture_or_task_name=name,
        feature_converter=seqio.DecoderFeatureConverter(pack=False, bos_id=BOS_ID),
        eval_split=spec.split,
        sequence_length=None,
        shuffle=False,
        use_memory_cache=True,
    )
    future, outputs = evaluator.evaluate(
        compute_metrics=True, score_fn=model.score_fn, predict_fn=model.predict_fn
    )
    metrics = {k: float(v) for k, v in future.result()[name].items()}
    evaluator.close()
    samples = _samples(evaluator, name, outputs[name])
    metric, score = _primary(spec, metrics)
    num_rows = sum(1 for _ in evaluator.cached_task_datasets[name])
    return {
        "spec": dataclasses.asdict(spec),
        "metrics": metrics,
        "metric": metric,
        "score": score,
        "num_rows": num_rows,
        "seconds": round(time.time() - start, 3),
        "samples": samples,
    }


def _samples(
    evaluator: seqio.Evaluator, name: str, outputs: Mapping[str, Sequence[Any]], n: int = SAMPLES
) -> list[dict[str, Any]]:
    """The first `n` rows as {"target", "prediction" (decoded text) and/or "score"}."""
    vocab = seqio.get_mixture_or_task(name).output_features["targets"].vocabulary
    rows = []
    for i, ex in enumerate(evaluator.cached_task_datasets[name].take(n).as_numpy_iterator()):
        row: dict[str, Any] = {"target": ex["targets_pretokenized"].decode("utf-8")}
        for kind, values in outputs.items():
            if kind == seqio.metrics.ModelOutputType.PREDICTION:
                row["prediction"] = vocab.decode([int(t) for t in values[i]])
            elif kind == seqio.metrics.ModelOutputType.SCORE:
                row["score"] = float(values[i])
        rows.append(row)
    return rows


def _task_score(record: Record) -> report_lib.TaskScore:
    spec = record["spec"]
    return report_lib.TaskScore(
        task=spec["task"],
        level=spec["level"],
        category=spec["category"],
        benchmark=spec["benchmark"],
        name=spec["name"],
        shots=int(spec["shots"]),
        metric=record["metric"],
        score=record["score"],
        subtask=spec.get("subtask", ""),
        num_examples=int(record.get("num_rows", 0)),
    )


def describe(provenance: Mapping[str, Any] | None) -> str:
    """E.g. "step 30, weights 3f9c0a1d5e7b2c48" (what a result's provenance says in one line)."""
    if not provenance:
        return "an unrecorded model"
    parts = [f"step {provenance['step']}"] if provenance.get("step") is not None else []
    parts += [f"{k} {v}" for k, v in sorted(provenance.items()) if k != "step"]
    return ", ".join(parts)


def _saved_spec(record: Record) -> dict[str, Any]:
    """A saved plan entry as JSON reads it back, fields added since at their defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(EvalTask)
                if f.default is not dataclasses.MISSING}  # fmt: skip
    return json.loads(json.dumps({**defaults, **record.get("spec", {})}, default=vars))


def _stale(record: Record, spec: EvalTask, provenance: Mapping[str, Any]) -> str | None:
    """Why a saved result cannot stand for this run's task, or None if it can."""
    if _saved_spec(record) != json.loads(json.dumps(dataclasses.asdict(spec))):
        return "it was saved for another plan entry"
    if record.get("provenance") != dict(provenance):
        return f"it was saved for {describe(record.get('provenance'))}, not {describe(provenance)}"
    return None


def _saved(
    plan: Sequence[EvalTask], run_dir: Path, provenance: Mapping[str, Any], on_stale: str
) -> dict[str, Record]:
    """The saved results this run may reuse, by task; stale ones are left out (one warning line
    for all of them) or, with on_stale="refuse", stop the run (one line)."""
    fresh, stale = {}, {}
    for spec in plan:
        path = result_path(run_dir, spec)
        if path.is_file():
            record = json.loads(path.read_text())
            reason = _stale(record, spec, provenance)
            if reason is None:
                fresh[spec.task] = record
            else:
                stale[path] = reason
    if stale:
        path, reason = next(iter(stale.items()))
        others = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
        if on_stale == "refuse":
            raise StaleResult(
                f"{path}{others}: {reason}; delete them, evaluate into another run_dir, "
                "or pass on_stale='rerun'"
            )
        logging.warning("%s%s: %s; evaluating them again", path, others, reason)
    return fresh


def run_plan(
    plan: Sequence[EvalTask],
    model: Model,
    run_dir: str | Path,
    *,
    provenance: Mapping[str, Any],
    on_stale: str = "rerun",
    title: str = "",
    paper_model: str | None = "OPT-IML 30B",
    print_fn: Callable[[str], None] | None = print,
    prompt_selection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluates every task of `plan` not yet saved in `run_dir` for this model, then writes the
    report. `provenance`: what the model is, JSON-able, e.g. {"weights": weights_fingerprint(
    params), "step": 30, "max_new_tokens": 256}; a saved result is reused only if it was saved
    with an equal provenance and plan entry (`on_stale`: "rerun" the others, or "refuse").

    With several processes, all of them run every task (the model is sharded over all) and
    process 0 alone writes; `run_dir` must be shared (e.g. GCS) so that every process sees
    which tasks are done. The report compares with `paper_model`'s published cells, notes how
    k-shot prompts chose their demonstrations, and carries `prompt_selection` (the templates'
    ranking) if given."""
    if on_stale not in ON_STALE:
        raise ValueError(f"on_stale={on_stale!r}: choose from {ON_STALE}")
    chief = jax.process_index() == 0
    run_dir = Path(run_dir)
    tasks = [s.task for s in plan]
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise ValueError(f"tasks planned twice: {duplicates}")
    saved = _saved(plan, run_dir, provenance, on_stale)
    records = []
    bar = tqdm(plan, desc="evaluate", unit="task", file=sys.stdout, disable=not chief)
    for i, spec in enumerate(bar):
        path = result_path(run_dir, spec)
        if spec.task in saved:
            record = saved[spec.task]
            logging.info("[%d/%d] %s: done before (%s)", i + 1, len(plan), spec.task, path)
        else:
            record = evaluate_task(spec, model)
            record["plan_entry"] = json_fingerprint(record["spec"])
            record["provenance"] = dict(provenance)
            if chief:
                _write_json_atomic(path, record)
            done = f"{record['metric']} {record['score']:.2f}"
            logging.info("[%d/%d] %s: %s", i + 1, len(plan), spec.task, done)
        records.append(record)
    notes = sorted({rc.Scoring(**r["spec"]["scoring"]).describe() for r in records
                    if r["spec"]["answer_type"] == "rank" and "scoring" in r["spec"]})  # fmt: skip
    modes = sorted({r["spec"].get("demos", "random") for r in records if r["spec"]["shots"]})
    notes += [f"k-shot demonstrations: {retrieval.DESCRIPTIONS[m]}" for m in modes]
    report = report_lib.build_report(
        [_task_score(r) for r in records], title=title, notes=notes, paper_model=paper_model,
        prompt_selection=prompt_selection,
    )  # fmt: skip
    if chief:
        report_lib.write_report(report, run_dir)
    if print_fn is not None and chief:
        print_fn(report_lib.format_markdown(report))
    return report
