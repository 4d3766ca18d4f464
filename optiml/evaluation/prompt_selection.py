"""Template selection by prompt perplexity (Gonen et al. 2022, "Demystifying prompts in language
models via perplexity estimation"): the lower a prompt's perplexity under the model, the better it
tends to do, so a task with several templates is evaluated with its k lowest-perplexity ones.

A template's score is the mean, over a sample of the task's inputs, of its prompt's mean token
log-likelihood `log p(prompt tokens | BOS) / tokens` -- the 0-shot prompt exactly as the evaluation
shows it (template, input and answer delimiter; never the target). Higher is better (perplexity
`exp(-score)`); ties go to the template's name. The inputs are the evaluated split's examples of
the template whose row ids come first in a seeded order, so on the test split (every kept template
renders every row) each template is scored on the same `num_inputs` inputs. All prompts of a task
are scored in one batched pass of `Inferencer.score_examples`; a prompt longer than the model's
`max_positions` - 1 tokens is scored on its first ones (an exact prefix log-likelihood).

Which template rendered an example is in its id (`common.template_of`: `row|template`).
PromptSource renders every template on the evaluation splits; FLAN draws one per row
(`common.TemplateDraw`), so its prompts are rendered here once per template on every row
(`among((name,))`), and its evaluation redraws each row's template among the k chosen: every row
is still evaluated. Other tasks of a plan (their ids name no template) are evaluated as they are.

    python -m optiml.evaluation.prompt_selection CKPT --tasks optiml:promptsource:super_glue_cb \
        [--split test] [--num_inputs 32] [--top 3] [--batch_size 8]   # or: optiml prompts ...

and in the evaluation: `--gin.evaluate.evaluate.select_templates=3` (the ranking and the scores
go into the report).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optiml.bench import names
from optiml.bench.sources import common
from optiml.evaluation.inference import EvalExample, Inferencer
from optiml.evaluation.plan import EvalTask

NUM_INPUTS = 32  # inputs per template (Gonen et al. average over a sample of the task's inputs)


@dataclasses.dataclass(frozen=True)
class TemplateScore:
    """One template's score: the mean over `prompts` of each prompt's mean token log-likelihood."""

    template: str
    log_likelihood: float
    prompts: int
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(-self.log_likelihood)


def sample_prompts(
    examples: Sequence[common.Example], num_inputs: int = NUM_INPUTS, seed: int = 0, key: str = ""
) -> dict[str, list[str]]:
    """{template: the `inputs` of its first `num_inputs` examples in a seeded order of their row
    ids} for examples whose ids name their template; templates sorted by name. E.g. ids
    "0|GPT-3 style", "0|MNLI crowdsource", "1|GPT-3 style" -> {"GPT-3 style": [...], ...}."""
    if num_inputs < 1:
        raise ValueError(f"num_inputs must be positive, got {num_inputs}")
    by_template: dict[str, list[tuple[int, str, str]]] = {}
    for e in examples:
        template = common.template_of(e.id)
        if template is None:
            continue
        row = e.id[: -len(template) - len(common.TEMPLATE_SEPARATOR)]
        order = common.pick(seed, 2**61, "prompt selection", key, row)
        by_template.setdefault(template, []).append((order, row, e.inputs))
    return {t: [text for *_, text in sorted(rows)[:num_inputs]]
            for t, rows in sorted(by_template.items())}  # fmt: skip


def score_templates(
    prompts: Mapping[str, Sequence[str]],
    inferencer: Inferencer,
    encode: Callable[[str], Sequence[int]],
) -> list[TemplateScore]:
    """The templates ranked best first (highest mean token log-likelihood, then by name); every
    prompt of every template in one batched `score_examples` call."""
    config = inferencer.config
    rows, owners = [], []
    for template, texts in prompts.items():
        for text in texts:
            ids = tuple(int(t) for t in encode(text))[: config.max_positions - 1]
            if ids:
                rows.append(EvalExample(len(rows), (config.bos_id,), ids))
                owners.append(template)
    sums = inferencer.score_examples(rows) if rows else []
    means: dict[str, list[float]] = {t: [] for t in prompts}
    tokens = dict.fromkeys(prompts, 0)
    for template, row, total in zip(owners, rows, sums, strict=True):
        means[template].append(total / len(row.target))
        tokens[template] += len(row.target)
    scores = [TemplateScore(t, sum(v) / len(v), len(v), tokens[t]) for t, v in means.items() if v]
    return sorted(scores, key=lambda s: (-s.log_likelihood, s.template))


def task_examples(task: str, split: str) -> list[common.Example]:
    """The 0-shot examples of a registry task (any `#variant` dropped) on `split`; a task that
    draws one template per row (FLAN): every row rendered with each of its templates."""
    import seqio

    parsed = names.parse_task_name(task)
    base = names.task_name(parsed.benchmark, parsed.task)
    source = seqio.get_mixture_or_task(base).source
    draw = common.template_draw(source)
    sources = [draw.among((name,)) for name in draw.names()] if draw else [source]
    out = []
    for each in sources:
        examples_fn = common.python_examples(each)
        if examples_fn is None:
            raise ValueError(f"{base}: not an optiml loader's task (no Python examples)")
        out += examples_fn(split)
    return out


def rank_task(
    task: str,
    split: str,
    inferencer: Inferencer,
    encode: Callable[[str], Sequence[int]],
    num_inputs: int = NUM_INPUTS,
    seed: int = 0,
) -> list[TemplateScore]:
    """`task`'s templates ranked by prompt perplexity on `split` (empty: its ids name none)."""
    prompts = sample_prompts(task_examples(task, split), num_inputs, seed, key=task.split("#")[0])
    return score_templates(prompts, inferencer, encode)


def ranking_record(ranked: Sequence[TemplateScore], k: int | None) -> list[dict[str, Any]]:
    """The report's rows of one task: rank, template, scores, and whether it was selected."""
    return [
        {"rank": i + 1, "template": s.template, "log_likelihood": round(s.log_likelihood, 6),
         "perplexity": round(s.perplexity, 4), "prompts": s.prompts, "tokens": s.tokens,
         "selected": k is not None and i < k}
        for i, s in enumerate(ranked)
    ]  # fmt: skip


def select(
    plan: Sequence[EvalTask],
    inferencer: Inferencer,
    k: int,
    *,
    num_inputs: int = NUM_INPUTS,
    seed: int = 0,
) -> tuple[list[EvalTask], dict[str, list[dict[str, Any]]]]:
    """(the plan with each templated task restricted to its `k` best templates, {0-shot task:
    its ranking rows}); a task's ranking is computed once for all of its shot variants, on the
    split it is evaluated on, with the seqio task's own vocabulary."""
    import seqio

    if k < 1:
        raise ValueError(f"select_templates must be positive, got {k}")
    out, rankings = [], {}
    for spec in plan:
        base = spec.task.split("#")[0]
        key = f"{base} ({spec.split})"
        if key not in rankings:
            vocab = seqio.get_mixture_or_task(base).output_features["inputs"].vocabulary
            ranked = rank_task(base, spec.split, inferencer, vocab.encode, num_inputs, seed)
            rankings[key] = ranking_record(ranked, k) if ranked else None
        rows = rankings[key]
        chosen = tuple(sorted(r["template"] for r in rows if r["selected"])) if rows else ()
        out.append(dataclasses.replace(spec, templates=chosen) if chosen else spec)
    return out, {key: rows for key, rows in rankings.items() if rows}


def main(argv: Sequence[str] | None = None) -> int:
    """The command: rank each task's templates for a checkpoint and print the tables."""
    import json

    from optiml import lm
    from optiml.evaluation import report

    parser = argparse.ArgumentParser(
        prog="python -m optiml.evaluation.prompt_selection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="any checkpoint optiml.lm.load reads")
    parser.add_argument("--tasks", required=True, help="comma-separated optiml task names")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--num_inputs", type=int, default=NUM_INPUTS)
    parser.add_argument("--top", type=int, default=None, help="mark the k best as selected")
    parser.add_argument("--seed", type=int, default=common.PROMPT_SEED)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--step", type=int, default=None, help="a training run's step")
    parser.add_argument("--json", default=None, help="also write the rankings to this file")
    args = parser.parse_args(argv)
    import seqio

    import optiml.registry  # noqa: F401  (registers the tasks)

    model = lm.load(args.checkpoint, step=args.step, batch_size=args.batch_size)
    rankings = {}
    for task in [t for t in args.tasks.split(",") if t]:
        if task not in seqio.TaskRegistry.names():
            print(f"error: --tasks: unknown task {task!r}", file=sys.stderr)
            return 2
        vocab = seqio.get_mixture_or_task(task).output_features["inputs"].vocabulary
        ranked = rank_task(task, args.split, model.inferencer, vocab.encode, args.num_inputs,
                           args.seed)  # fmt: skip
        if not ranked:
            print(f"error: {task}: its example ids name no template", file=sys.stderr)
            return 2
        rankings[f"{task} ({args.split})"] = ranking_record(ranked, args.top)
    print("\n".join(report.format_ranking(rankings)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rankings, f, indent=2)
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
