"""The evaluation entry point: a model on the OPT-IML levels -> `<run_dir>/report.{json,md,png}`.

    report = evaluate(run_dir="runs/tiny", model_config=config, params=params, phase="dev")

or from the command line (`evaluate.evaluate.*` binds any argument):

    python -m optiml.main --gin_file=models/tiny.gin --gin_file=runs/eval.gin \
        --gin.MODEL_DIR="'runs/tiny'" --gin.evaluate.evaluate.params_dir="'ckpt/opt_125m'"

with `runs/eval.gin` holding `from optiml.evaluation import evaluate`, `RUN =
@evaluate.evaluate`, `evaluate.evaluate.run_dir = %MODEL_DIR` and `evaluate.evaluate.model_config
= %MODEL_CONFIG`. The jobs live in their own modules: `plan` (which tasks, from the levels),
`registration` (the tasks with metrics), `runner` (resumable, one result file per task), and
`optiml.models.formats.read` (the params of any checkpoint, a training run's included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from optiml import fingerprint, partitioning
from optiml.evaluation import paper, prompt_selection
from optiml.evaluation import rank_classification as rc
from optiml.evaluation.inference import Inferencer
from optiml.evaluation.plan import EvalTask, paper_plan, plan_from_registry, with_demo_separator
from optiml.evaluation.runner import run_plan
from optiml.models import formats, opt, quantize


def evaluate(
    *,
    run_dir: str,
    model_config: opt.OPTConfig,
    params: Any = None,
    params_dir: str | None = None,
    step: int | None = None,
    phase: str = "dev",
    plan: Sequence[EvalTask] | None = None,
    shots: Sequence[int] | None = None,
    max_examples: int | None = 250,
    max_tasks_per_level: int | Mapping[str, int] | None = None,
    trained_on: str | None = None,
    benchmarks: Sequence[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    share_prompts: bool = True,
    include_eos: bool = True,
    length_normalization: str = "none",
    mesh: partitioning.MeshConfig | None = None,
    title: str = "",
    paper_model: str | None = "OPT-IML 30B",
    paper_tables: Sequence[str] | None = None,
    weight_bits: int = 16,
    weight_kind: str = "int",
    weight_block: int = 64,
    select_templates: int | None = None,
    selection_inputs: int = prompt_selection.NUM_INPUTS,
    demos: str = "random",
    demo_separator: str | None = None,
    on_stale: str = "rerun",
    print_report: bool = True,
) -> dict[str, Any]:
    """Evaluates a model on the OPT-IML levels and writes/prints the generalization report.

    The model, one of: `params` (a pytree); `params_dir`, any checkpoint `optiml.models.formats`
    reads: a folder written by `python -m optiml.models.convert`, a training run (its folder,
    its `checkpoints/` or one `checkpoints/<step>`; the newest step unless `step` is given, e.g.
    0 for the untuned model of a run trained with `checkpoint_start`), an HF folder, metaseq .pt
    files; neither: `run_dir` itself as the training run (train, then evaluate into one folder).
    `mesh`: None is one data-parallel mesh over every device. The plan: `plan` if given; else
    with `paper_tables` (e.g. ["10", "11", "12", "13"]) the paper's protocol for those tables
    (`plan.paper_plan`: test splits, the tables' shots, `max_examples` None = all); else
    `plan_from_registry(phase, shots, max_examples, benchmarks, max_tasks_per_level,
    trained_on)`. Rank tasks score each option's summed log-likelihood with its EOS
    (`include_eos`) and rank them as `length_normalization` says
    ("none", "tokens", "characters"); the defaults are the paper's (see rank_classification) and
    the report states them. Per-task results go to `<run_dir>/eval/`, so a rerun resumes. The
    report sets the run beside `paper_model`'s published numbers (a slug such as
    `opt-iml-175b` or the paper's name; None: no comparison). `weight_bits` 8 or 4 (`weight_kind`
    "int" or "float" for 4 bits) evaluates with k-bit block kernels, absmax scales per
    `weight_block` values (`optiml.models.quantize`); the report notes it. Each saved result
    records the checkpoint step, the weights' fingerprint and the settings that shape outputs;
    results saved for other weights are evaluated again (`on_stale="refuse"`: stop instead).
    `select_templates` k: tasks with several templates (PromptSource, FLAN) are evaluated with
    their k lowest-perplexity templates, scored on `selection_inputs` inputs each
    (`prompt_selection`, Gonen et al. 2022); the ranking goes into the report. `demos`:
    "random" (the loaders' seeded demonstrations) or "retrieved" (BM25 over the task's training
    instances, Agrawal et al. 2022) for k-shot tasks; the report notes it. `demo_separator`:
    k-shot prompts in the MetaICL format, demonstrations joined by it (paper §4.8, Table 20:
    " \n\n"; `plan.with_demo_separator`).
    """
    scoring = rc.Scoring(include_eos, length_normalization)
    weights = quantize.weight_format(weight_bits, weight_kind)
    quantize.check(weights, weight_block)
    if paper_model is not None:
        paper.resolve_model(paper_model)  # an unknown name fails now, not after the evaluation
    if params is not None and params_dir is not None:
        raise ValueError("evaluate() takes one model source, got params and params_dir")
    partitioner = partitioning.Partitioner.create(mesh or partitioning.MeshConfig())
    abstract, shardings = partitioner.abstract_init(
        lambda rng: opt.init_params(model_config, rng, unbox=False), jax.random.key(0)
    )
    if params is not None:
        params = jax.device_put(params, shardings)
    else:
        source = params_dir if params_dir is not None else run_dir
        if formats.detect(source) != "train":
            step = None  # (a step names a training checkpoint only)
        elif step is None:
            step = formats.train_step(source)
        params, _ = formats.read(source, step=step, target=abstract, config=model_config)
        params = jax.device_put(params, shardings)  # HF / metaseq weights come as host arrays
    provenance = {
        "weights": fingerprint.weights_fingerprint(params),
        "step": step,
        "weight_format": weights if weights == "float" else f"{weights}/{weight_block}",
        "max_new_tokens": max_new_tokens,
    }
    if weights != "float":  # quantized on the host, then placed like the float kernels
        params = quantize.quantize_params(params, weights, weight_block, model_config.dtype)
        params = jax.device_put(params, quantize.quantized_axes(shardings, weights))
        model_config = model_config.replace(weights=weights)
        title = title or f"{phase}, {weights} weights (blocks of {weight_block})"
    if plan is None and paper_tables:
        plan = paper_plan(
            paper_tables, shots=shots, max_examples=max_examples, scoring=scoring, demos=demos
        )
    if plan is None:
        plan = plan_from_registry(
            phase=phase,
            shots=shots,
            max_examples=max_examples,
            benchmarks=benchmarks,
            max_tasks_per_level=max_tasks_per_level,
            trained_on=trained_on,
            scoring=scoring,
            demos=demos,
        )
    plan = with_demo_separator(plan, demo_separator)
    inferencer = Inferencer(
        params,
        model_config,
        partitioner=partitioner,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        share_prompts=share_prompts,
    )
    rankings = None
    if select_templates is not None:
        plan, rankings = prompt_selection.select(
            plan, inferencer, select_templates, num_inputs=selection_inputs
        )
    return run_plan(
        plan, inferencer, run_dir, provenance=provenance, on_stale=on_stale, title=title or phase,
        paper_model=paper_model, print_fn=print if print_report else None,
        prompt_selection=rankings,
    )  # fmt: skip
