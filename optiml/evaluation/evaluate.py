"""The evaluation runner: every planned task through `seqio.Evaluator`, saved as it finishes,
then the generalization report.

    report = evaluate(run_dir="runs/tiny", model_config=config, params=params, phase="dev")

or from the command line (the gin entry point; `evaluate.evaluate.*` binds any argument):

    python -m optiml.main --gin_file=models/tiny.gin --gin_file=runs/eval.gin \
        --gin.MODEL_DIR="'runs/tiny'" --gin.evaluate.evaluate.params_dir="'ckpt/opt_125m'"

with `runs/eval.gin` holding `from optiml.evaluation import evaluate`, `RUN =
@evaluate.evaluate`, `evaluate.evaluate.run_dir = %MODEL_DIR` and `evaluate.evaluate.model_config
= %MODEL_CONFIG`.

A plan is a list of `EvalTask`s (`plan_from_registry` builds the OPT-IML one): the registry's
seqio task (its shots already rendered into the prompt), the split, an example cap (250 for dev
tasks, None = all for test tasks) and the task's place in the report (level, category,
benchmark, task name, subtask). Registry tasks carry no metrics: `evaluation_task` registers a
twin with the catalog's metric (and, for rank tasks, the per-option expansion). Each finished
task is written to `<run_dir>/eval/<task>.json` (atomically, with 5 sample outputs); a rerun
skips the tasks that have a result, so an interrupted evaluation resumes where it stopped. The
report goes to `<run_dir>/report.{json,md,png}` and is printed.

The score of a task is its primary metric: `accuracy` (rank classification or exact answers),
`rougeL` or `exact_match` -- the first of the task's metrics in that order unless `EvalTask.metric`
names one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optiml.evaluation import report as report_lib

PRIMARY_METRICS = ("accuracy", "rougeL", "exact_match")
SAMPLES = 5  # rows of model output kept in each task's result file, for reading
RESULTS_DIR = "eval"


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One seqio task to evaluate and where its score goes in the report."""

    task: str
    level: str
    category: str
    benchmark: str
    name: str
    shots: int = 0
    split: str = "validation"
    max_examples: int | None = None
    subtask: str = ""
    metric: str = ""
    answer_type: str = "generate"
    xlingual: bool = False

    def __post_init__(self) -> None:
        if self.level not in report_lib.LEVELS:
            raise ValueError(
                f"task {self.task!r}: unknown level {self.level!r} (one of {report_lib.LEVELS})"
            )


# -- tasks with metrics ------------------------------------------------------------------------
EVAL_PREFIX = "optiml_eval"


def _metric_setup(metric: str, answer_type: str, xlingual: bool) -> tuple[Callable, list]:
    """(postprocess_fn, metric_fns) for a catalog metric / answer type."""
    from optiml.evaluation import metrics
    from optiml.evaluation import rank_classification as rc

    if answer_type == "rank":
        return rc.rank_classification_postprocessor, [
            rc.rank_classification,
            rc.rank_classification_length_normalized,
        ]
    rouge = metrics.rouge_l_xlingual if xlingual else metrics.rouge_l
    fns = {
        "rougeL": [rouge, metrics.exact_match],
        "exact_match": [metrics.exact_match, rouge],
        "accuracy": [metrics.accuracy, metrics.exact_match],
    }
    if metric not in fns:
        raise ValueError(f"unknown metric {metric!r} for a generation task (one of {list(fns)})")
    return metrics.references_postprocessor, fns[metric]


def evaluation_task(
    name: str, metric: str, answer_type: str = "generate", xlingual: bool = False
) -> str:
    """The name of a seqio task that carries metrics for registry task `name`.

    A task registered with metric functions is used as is. Otherwise an evaluation twin is
    registered (once): same source, preprocessors and features, plus -- for `rank` tasks -- the
    per-option expansion first, the postprocessor and the metric functions.
    `optiml:niv2:task1557_jfleg_answer_generation#2shot` -> `optiml_eval:niv2:task1557_...#2shot`.
    """
    import seqio

    from optiml.evaluation import rank_classification as rc

    task = seqio.get_mixture_or_task(name)
    if task.metric_objs:
        return name
    twin = f"{EVAL_PREFIX}:{name.split(':', 1)[1]}" if ":" in name else f"{name}_eval"
    if twin in seqio.TaskRegistry.names():
        return twin
    postprocess_fn, metric_fns = _metric_setup(metric, answer_type, xlingual)
    expand = [rc.rank_classification_preprocessor] if answer_type == "rank" else []
    seqio.TaskRegistry.add(
        twin,
        source=task.source,
        preprocessors=expand + list(task.preprocessors),
        output_features=task.output_features,
        postprocess_fn=postprocess_fn,
        metric_fns=metric_fns,
    )
    return twin


def _result_path(run_dir: Path, spec: EvalTask) -> Path:
    """`optiml:niv2:task1152_bard#2shot` -> <run_dir>/eval/optiml__niv2__task1152_bard__2shot.json
    (portable file names)."""
    return run_dir / RESULTS_DIR / (spec.task.replace(":", "__").replace("#", "__") + ".json")


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _primary(spec: EvalTask, metrics: dict[str, float]) -> tuple[str, float]:
    if spec.metric:
        if spec.metric not in metrics:
            raise ValueError(f"task {spec.task!r}: metric {spec.metric!r} not in {sorted(metrics)}")
        return spec.metric, float(metrics[spec.metric])
    for name in PRIMARY_METRICS:
        if name in metrics:
            return name, float(metrics[name])
    raise ValueError(f"task {spec.task!r} reported none of {PRIMARY_METRICS}: {sorted(metrics)}")


def _row_limit(name: str, split: str, max_examples: int | None) -> int | None:
    """Rows of the first `max_examples` examples. Rank classification tasks have one row per
    option (idx = [example, option]), so the cap counts distinct examples, not rows."""
    if max_examples is None:
        return None
    import numpy as np
    import seqio

    dataset = seqio.get_mixture_or_task(name).get_dataset(
        sequence_length=None, split=split, shuffle=False, num_epochs=1
    )
    rows, examples, last = 0, 0, None
    for ex in dataset.as_numpy_iterator():
        idx = np.asarray(ex["idx"]).reshape(-1) if "idx" in ex else None
        key = int(idx[0]) if idx is not None and idx.size == 2 else rows
        if key != last:
            if examples == max_examples:
                break
            examples, last = examples + 1, key
        rows += 1
    return rows


def evaluate_task(spec: EvalTask, inferencer: Any) -> dict[str, Any]:
    """Runs one task through seqio.Evaluator; returns its saved record (metrics, score, time)."""
    import seqio

    from optiml.pipeline.vocab import BOS_ID

    start = time.time()
    name = evaluation_task(spec.task, spec.metric or "rougeL", spec.answer_type, spec.xlingual)
    evaluator = seqio.Evaluator(
        mixture_or_task_name=name,
        feature_converter=seqio.DecoderFeatureConverter(pack=False, bos_id=BOS_ID),
        eval_split=spec.split,
        sequence_length=None,
        num_examples=_row_limit(name, spec.split, spec.max_examples),
        shuffle=False,
        use_memory_cache=True,
    )
    future, outputs = evaluator.evaluate(
        compute_metrics=True, score_fn=inferencer.score_fn, predict_fn=inferencer.predict_fn
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


def _samples(evaluator: Any, name: str, outputs: dict, n: int = SAMPLES) -> list[dict[str, Any]]:
    """The first `n` rows as {"target", "prediction" (decoded text) and/or "score"}."""
    import seqio

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


def _task_score(record: dict[str, Any]) -> report_lib.TaskScore:
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


def run_plan(
    plan: Sequence[EvalTask],
    inferencer: Any,
    run_dir: str | Path,
    *,
    title: str = "",
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluates every task of `plan` not yet saved in `run_dir`, then writes the report.

    With several processes, all of them run every task (the model is sharded over all) and
    process 0 alone writes; `run_dir` must be shared (e.g. GCS) so that every process sees
    which tasks are done."""
    import jax

    chief = jax.process_index() == 0
    run_dir = Path(run_dir)
    tasks = [s.task for s in plan]
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise ValueError(f"tasks planned twice: {duplicates}")
    records = []
    for i, spec in enumerate(plan):
        path = _result_path(run_dir, spec)
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("spec") != dataclasses.asdict(spec):
                raise ValueError(f"{path} was saved for another plan entry: delete it to redo it")
            logging.info("[%d/%d] %s: done before (%s)", i + 1, len(plan), spec.task, path)
        else:
            record = evaluate_task(spec, inferencer)
            if chief:
                _write_json_atomic(path, record)
            logging.info(
                "[%d/%d] %s: %s %.2f",
                i + 1,
                len(plan),
                spec.task,
                record["metric"],
                record["score"],
            )
        records.append(record)
    report = report_lib.build_report([_task_score(r) for r in records], title=title)
    if chief:
        report_lib.write_report(report, run_dir)
    if print_fn is not None and chief:
        print_fn(report_lib.format_markdown(report))
    return report


# -- the plan from the registry ---------------------------------------------------------------
PHASES = {"dev": "validation", "test": "test"}


def plan_from_registry(
    *,
    phase: str = "dev",
    level_config: Any = None,
    shots: Sequence[int] | None = None,
    max_examples: int | None = 250,
    benchmarks: Sequence[str] | None = None,
    max_tasks_per_level: int | None = None,
) -> list[EvalTask]:
    """The evaluation plan of the OPT-IML levels from `optiml.registry`.

    phase "dev": the validation tasks (paper Table 15 + the supervised tasks' validation
    instances), at most `max_examples` (250) examples each; "test": every test task and the
    evaluation-only benchmarks that belong to a level (MMLU), all of their examples
    (`max_examples` is ignored). Every task runs 0-shot and in each few-shot variant its
    loader offers (NIV2 #2shot/#5shot), restricted to `shots` if given. A task's report identity
    is its dataset (COPA from PromptSource, NIV2 and FLAN is one task) and the catalog task is
    the subtask. Tasks without local data, or outside the three levels, are logged and skipped.
    `max_tasks_per_level` keeps the first N tasks of each benchmark in each level (quick runs that
    still cover every benchmark: generation and rank classification).
    """
    import importlib

    import seqio

    import optiml.registry  # noqa: F401  (registers every task)
    from optiml.bench import catalog, levels, names
    from optiml.evaluation.metrics import is_xlingual

    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; one of {list(PHASES)}")
    split = PHASES[phase]
    lv = levels.build_levels(level_config or levels.LevelConfig())
    fully = {r.name for r in lv.fully_heldout}
    partially = {r.name for r in lv.partially_heldout}
    records = list(lv.dev if phase == "dev" else lv.test)
    if phase == "test":  # evaluation-only benchmarks placed in a level (MMLU: partially held out)
        records += [r for r in lv.eval_only if r.name in fully | partially]
    registered = set(seqio.TaskRegistry.names())
    plan: list[EvalTask] = []
    per_level: dict[tuple[str, str], int] = {}
    for record in records:
        if benchmarks is not None and record.benchmark not in benchmarks:
            continue
        if record.name in fully:
            level = "fully_held_out"
        elif record.role == "supervised":
            level = "fully_supervised"
        elif record.name in partially:
            level = "partially_supervised"
        else:
            logging.info("%s: in none of the three levels, not evaluated", record.name)
            continue
        if record.name not in registered:
            logging.info("%s: no loader registered it, not evaluated", record.name)
            continue
        loader = importlib.import_module(catalog.benchmarks()[record.benchmark].loader)
        try:
            available = loader.count_examples(record, split) > 0
        except (OSError, ValueError, KeyError) as error:
            logging.info("%s: not available locally (%s)", record.name, error)
            continue
        if not available:
            continue
        key = (level, record.benchmark)
        if max_tasks_per_level is not None and per_level.get(key, 0) >= max_tasks_per_level:
            continue
        per_level[key] = per_level.get(key, 0) + 1
        variants = [(None, 0)] + sorted(getattr(loader, "VARIANTS", {}).items(), key=lambda v: v[1])
        for variant, k in variants:
            if shots is not None and k not in shots:
                continue
            plan.append(
                EvalTask(
                    task=names.task_name(record.benchmark, record.task, variant),
                    level=level,
                    category=record.category,
                    benchmark=record.benchmark,
                    name=record.dataset,
                    subtask=record.task,
                    shots=k,
                    split=split,
                    max_examples=max_examples if phase == "dev" else None,
                    metric=record.metric if record.answer_type == "generate" else "accuracy",
                    answer_type=record.answer_type,
                    xlingual=is_xlingual(record.languages),
                )
            )
    if not plan:
        raise ValueError(f"no {phase} task is available locally: nothing to evaluate")
    return plan


# -- the gin entry point -------------------------------------------------------------------------
def restore_trained_params(checkpoints_dir: str | Path, abstract: Any, step: int | None = None):
    """Only the params of a training checkpoint (`<train run>/checkpoints/<step>/state`, written
    by `optiml.checkpointing.Checkpointer`; the newest complete step unless `step` is given),
    read into the shardings of `abstract` (ShapeDtypeStructs); the optimizer state is skipped."""
    import orbax.checkpoint as ocp

    directory = Path(checkpoints_dir).absolute()
    if step is None:
        step = ocp.CheckpointManager(directory).latest_step() if directory.is_dir() else None
    if step is None:
        raise FileNotFoundError(f"no training checkpoint in {directory}")
    target = {"params": abstract}
    restored = ocp.PyTreeCheckpointer().restore(
        directory / str(step) / "state",
        args=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        ),
    )
    logging.info("evaluating the params of %s, step %d", directory, step)
    return restored["params"]


def evaluate(
    *,
    run_dir: str,
    model_config: Any,
    params: Any = None,
    params_dir: str | None = None,
    train_dir: str | None = None,
    step: int | None = None,
    phase: str = "dev",
    plan: Sequence[EvalTask] | None = None,
    shots: Sequence[int] | None = None,
    max_examples: int | None = 250,
    max_tasks_per_level: int | None = None,
    benchmarks: Sequence[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    share_prompts: bool = True,
    mesh: Any = None,
    title: str = "",
) -> dict[str, Any]:
    """Evaluates a model on the OPT-IML levels and writes/prints the generalization report.

    The model, one of: `params` (a pytree); `params_dir` (an optiml checkpoint folder written by
    `python -m optiml.models.convert` / `convert.save_params`); `train_dir` (a training run:
    the params of its newest checkpoint, or of `step`); none of them: `run_dir` itself as the
    training run (train then evaluate into one directory). `mesh`: an
    `optiml.partitioning.MeshConfig` (None: one data-parallel mesh over every device). The plan:
    `plan` if given, else `plan_from_registry(phase, shots, max_examples, benchmarks,
    max_tasks_per_level)`. Per-task results go to `<run_dir>/eval/`, so a rerun resumes.
    """
    import jax

    from optiml import partitioning
    from optiml.evaluation.inference import Inferencer
    from optiml.models import opt

    given = [n for n, v in (("params", params), ("params_dir", params_dir),
                            ("train_dir", train_dir)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise ValueError(f"evaluate() takes one model source, got {given}")
    partitioner = partitioning.Partitioner.create(mesh or partitioning.MeshConfig())
    abstract, shardings = partitioner.abstract_init(
        lambda rng: opt.init_params(model_config, rng, unbox=False), jax.random.key(0)
    )
    if params is not None:
        params = jax.device_put(params, shardings)
    elif params_dir is not None:
        from optiml.models import convert

        params, _ = convert.load_params(params_dir, target=abstract)
    else:
        params = restore_trained_params(Path(train_dir or run_dir) / "checkpoints", abstract, step)
    if plan is None:
        plan = plan_from_registry(
            phase=phase,
            shots=shots,
            max_examples=max_examples,
            benchmarks=benchmarks,
            max_tasks_per_level=max_tasks_per_level,
        )
    inferencer = Inferencer(
        params,
        model_config,
        partitioner=partitioner,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        share_prompts=share_prompts,
    )
    return run_plan(plan, inferencer, run_dir, title=title or f"{phase} ({len(plan)} tasks)")
