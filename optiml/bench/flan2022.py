"""Flan 2022's prompt styles (Chung et al. 2022; google-research/FLAN `flan/v2`), as data.

The Flan collection trains every task in several prompt styles (tasks/prompt_formats.json
`flan2022`, read here): zero-shot (`zs`) or few-shot (`fs`), with the answer options listed
(`opt`), without them (`noopt`), or input-inverted (`inv`). The weights per benchmark:

    flan, promptsource (FLAN 2021, T0)   zs_opt : zs_noopt : fs_opt : fs_noopt = 1 : 1 : 1 : 1
    niv2                                 zs_opt : fs_opt = 1 : 1
    reasoning (CoT)                      zs_opt : fs_opt : zs_inv : fs_inv = 1 : 1 : 0.3 : 0.3

Each example's style is drawn from (seed, task, example id) with those weights. What a style
changes in the rendered text:

- `opt` / `noopt`: FLAN 2021 tasks use FLAN's v2 templates with their `{options_}` slot filled
  ("OPTIONS:\\n- yes\\n- no") or cut (`flan_templates.without_options`); a PromptSource (T0)
  prompt gets FLAN's options block after it (v2's `t0_multiple_choice_separated_options`) or stays
  as it is. Tasks without options read the same in both.
- inversions: FLAN 2021 tasks draw their template from every v2 template of the dataset, the
  input inversions included (v2's `template_0to10` tasks; the paper's A.1 leaves them out); CoT
  `inv` examples ask for the question given the rationale and the answer (v2's
  `cot_stream_general_input_inversion` templates, read from the templates file as data).
- `fs`: `shots` (5) other examples of the task in the same style, each its prompt and answer,
  joined by `example_separator` ("\\n\\n\\n") after a task-level instruction (NIV2, CoT);
  exemplars that would take the prompt past `max_tokens` (1920) are dropped, farthest first.

    >>> styled_examples(record, catalog.loader("niv2"), "train")   # Example per training example
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from optiml.bench import catalog, metaicl
from optiml.bench.sources import common, flan_templates

PROMPT_STYLES = ("flan2022",)  # the values of `MixtureSpec.prompt_styles`


def _format() -> dict:
    return catalog.prompt_formats()["flan2022"]


def style_shares(benchmark: str) -> dict[str, float]:
    """{style: share} of a benchmark's examples ({} for a benchmark Flan 2022 does not style)."""
    weights = _format()["styles"].get(benchmark, {})
    total = sum(weights.values())
    return {style: w / total for style, w in weights.items()}


def draw_style(benchmark: str, task: str, example_id: str, seed: int = 0) -> str:
    """The style of one example, drawn with `style_shares(benchmark)`."""
    shares = style_shares(benchmark)
    u = common.pick(seed, 2**53, "flan2022 style", task, example_id) / 2**53
    cumulative = np.cumsum(list(shares.values()))
    return list(shares)[min(int(np.searchsorted(cumulative, u, side="right")), len(shares) - 1)]


def options_block(example: common.Example, seed: int, task: str) -> common.Example:
    """A PromptSource example with FLAN's options block after its prompt, before its delimiter
    (`"<prompt>\\nOPTIONS:\\n- yes\\n- no\\nAnswer:"`); unchanged without options."""
    if not example.options:
        return example
    delimiter = common.pick_delimiter(seed, task, example.id)
    prompt = example.inputs.removesuffix(delimiter)
    inputs = common.delimited(prompt + "\n" + flan_templates.options_block(example.options),
                              delimiter)  # fmt: skip
    return common.Example(example.id, inputs, example.targets, example.references,
                          example.options, example.label, example.instruction)  # fmt: skip


@functools.cache
def inversion_templates() -> tuple[flan_templates.Template, ...]:
    """The v2 templates that invert a chain-of-thought example (module docstring)."""
    patterns = flan_templates.read_patterns(flan_templates.templates_file("v2"))
    return tuple(patterns[_format()["inversion_templates"]])


def inverted_cot(record: catalog.TaskRecord, split: str, seed: int) -> list[common.Example]:
    """The CoT rows of a split as input inversions: one v2 inversion template per example,
    filled with the question, rationale (`chain_of_thought`) and answer."""
    from optiml.bench.sources import reasoning

    rows = common.split_rows(record, split, reasoning.load_rows(record.source_id))
    templates = inversion_templates()
    out = []
    for i, (question, answer, rationale) in enumerate(rows):
        prompt_t, target_t = templates[common.pick(seed, len(templates), "inversion",
                                                   record.task, i)]  # fmt: skip
        fields = {"question": question.strip(), "answer": answer.strip(),
                  "chain_of_thought": rationale.strip()}  # fmt: skip
        prompt = common.with_delimiter(prompt_t.format(**fields), seed, record.task, str(i))
        target = target_t.format(**fields).strip()
        out.append(common.Example(str(i), prompt, " " + target, (target,)))
    return out


def zero_shot(record: catalog.TaskRecord, loader, split: str, kind: str, seed: int) -> list:
    """The 0-shot examples of one kind (`opt`, `noopt`, `inv`), in the loader's order."""
    if record.benchmark == "flan":
        return loader.examples(record, split, seed=seed, templates_version="v2",
                               inversions=True, options_shown=kind == "opt")  # fmt: skip
    if kind == "inv":
        return inverted_cot(record, split, seed)
    shown = loader.examples(record, split, num_demos=0, seed=seed)
    if record.benchmark == "promptsource" and kind == "opt":
        return [options_block(e, seed, record.task) for e in shown]
    return shown


def styled_examples(
    record: catalog.TaskRecord,
    loader,
    split: str,
    seed: int = common.PROMPT_SEED,
    count_tokens: Callable[[str], int] | None = None,
) -> list[common.Example]:
    """A task's examples, each in the Flan 2022 style drawn for it (module docstring);
    `count_tokens` prunes few-shot exemplars to `max_tokens` (none pruned without it)."""
    shares = style_shares(record.benchmark)
    if not shares:
        raise ValueError(f"{record.name}: Flan 2022 has no prompt styles for {record.benchmark}")
    kinds = {style.split("_")[1] for style in shares}
    variants = {kind: zero_shot(record, loader, split, kind, seed) for kind in sorted(kinds)}
    lengths = {len(v) for v in variants.values()}
    if len(lengths) != 1:
        raise ValueError(f"{record.name}: the styles render different example counts {lengths}")
    f = _format()
    count = functools.cache(count_tokens) if count_tokens else None
    out = []
    for i, example in enumerate(next(iter(variants.values()))):
        style = draw_style(record.benchmark, record.task, example.id, seed)
        shots, kind = style.split("_")
        pool = variants[kind]
        chosen = pool[i]
        if shots == "fs":
            demos = [pool[j] for j in exemplars(seed, record.task, example.id, len(pool), i,
                                                f["shots"])]  # fmt: skip
            if count is not None:
                demos = metaicl.fit(chosen, demos, f["example_separator"], f["max_tokens"], count)
            chosen = metaicl.compose(chosen, demos, f["example_separator"])
        out.append(chosen)
    return out


def exemplars(seed: int, task: str, example_id: str, n: int, own: int, k: int) -> Sequence[int]:
    """`k` random indices of range(n) other than `own` (fewer if n - 1 < k), seeded."""
    key = common.pick(seed, 2**63, "flan2022 exemplars", task, example_id)
    others = [j for j in range(n) if j != own]
    if not others:
        return []
    rng = np.random.default_rng(key)
    return [others[j] for j in rng.choice(len(others), size=min(k, len(others)), replace=False)]
