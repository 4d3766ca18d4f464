"""MetaICL training examples (paper §4.8): each carries k demonstrations of its own task.

For every example e of a task, k is drawn from a Zipf distribution over 0..K,

    P(k) = (k + 1)^-a / sum_{j=0..K} (j + 1)^-a        K = 5 (§4.8)

i.e. scipy's `zipfian(a, K + 1)` shifted to start at 0: a = 4 gives 92.5% zero-shot examples
and a = 2 gives 67.1%, the shares §4.8 states (footnote 9 clips k > K to K instead, which would
give 92.4% / 60.8%: the stated shares fix the truncated form). Then k other training examples of
the same task (never e) are drawn at random without replacement, and shown before e, each as
its prompt and answer, separated by [SEP] = three newlines (Min et al. 2021, §4.8). A task-level
instruction (NIV2, CoT: `Example.instruction`) stays first, the demonstrations after it (§4.8);
instance-level prompts (FLAN, PromptSource, ...) get the demonstrations before e. Demonstrations
keep their own rendering (delimiter, input prefix) without their instruction.

The loss (Figure 6): `target` (Min et al., the default) on e's target only; `suffix` on the
first demonstration's target and everything after it (the remaining demonstrations and e whole):

    Task: Say the sentiment.\\nGreat! A: Positive\\n\\n\\nMeh A: Negative\\n\\n\\nOMG A: Positive
    target: inputs = ... "OMG A:"          targets = " Positive"
    suffix: inputs = ... "Great! A:"       targets = " Positive\\n\\n\\nMeh A: Negative...Positive"

With `max_tokens` (the row length), demonstrations are dropped, the farthest from e first, until
instruction + demonstrations + e fit (token counts of the pieces summed, so a document may still
exceed it by the odd token at a joint, which the pipeline's left truncation absorbs); packing
into rows is the pipeline's (`optiml.pipeline.features`). Everything is seeded by (seed, task,
example id): the same config renders the same examples.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from optiml.bench.sources import common

LOSSES = ("target", "suffix")
PLAIN_TEXT = ("pretrain",)  # benchmarks without prompts: trained on as they are


@dataclass(frozen=True)
class MetaICLConfig:
    """MetaICL training (paper §4.8); gin binds its fields, e.g. `metaicl.MetaICLConfig.zipf_a = 2`.
    The paper's runs: K = 5, a in {4, 2}, [SEP] three newlines, loss `target` or `suffix`."""

    max_shots: int = 5  # K
    zipf_a: float = 4.0  # the Zipf shape a: P(k) ∝ (k + 1)^-a
    separator: str = "\n\n\n"  # [SEP] between demonstrations and before the example
    loss: str = "target"  # one of LOSSES (Figure 6)
    max_tokens: int | None = None  # the row length: drop demonstrations that do not fit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_shots < 0:
            raise ValueError(f"MetaICLConfig.max_shots must be >= 0, got {self.max_shots}")
        if self.zipf_a <= 0:
            raise ValueError(f"MetaICLConfig.zipf_a must be > 0, got {self.zipf_a}")
        if self.loss not in LOSSES:
            raise ValueError(f"MetaICLConfig.loss {self.loss!r} is not one of {LOSSES}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"MetaICLConfig.max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def variant(self) -> str:
        """The task-name variant of this config: `metaicl_<8 hex>` (a cache per config)."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"metaicl_{digest[:8]}"


def shot_probabilities(max_shots: int, zipf_a: float) -> np.ndarray:
    """P(k) for k = 0..K (module docstring): [0.925, 0.058, 0.011, ...] for K = 5, a = 4."""
    weights = np.arange(1, max_shots + 2, dtype=np.float64) ** -zipf_a
    return weights / weights.sum()


def _rng(seed: int, what: str, task: str, example_id: str) -> np.random.Generator:
    """A generator seeded per example (common.pick's hash of the seed and the parts)."""
    return np.random.default_rng(common.pick(seed, 2**64, what, task, example_id))


def draw(config: MetaICLConfig, task: str, example_id: str, pool_ids: Sequence[str]) -> list[int]:
    """The demonstrations of one example: k indices into `pool_ids` (never one whose id is
    `example_id`), in the order shown; k as drawn, or fewer when the pool holds fewer others."""
    rng = _rng(config.seed, "metaicl", task, example_id)
    k = int(rng.choice(config.max_shots + 1, p=shot_probabilities(config.max_shots, config.zipf_a)))
    if k == 0:  # most examples (92.5% at a=4): no scan of the pool
        return []
    others = [j for j, i in enumerate(pool_ids) if i != example_id]
    if not others:
        return []
    return [others[j] for j in rng.choice(len(others), size=min(k, len(others)), replace=False)]


def body(example: common.Example) -> str:
    """The prompt of an example without its task-level instruction."""
    if not example.inputs.startswith(example.instruction):
        raise ValueError(f"example {example.id}: inputs do not start with its instruction")
    return example.inputs[len(example.instruction) :]


def compose(
    example: common.Example,
    demos: Sequence[common.Example],
    separator: str,
    loss: str = "target",
) -> common.Example:
    """`example` with `demos` shown before it (after its instruction), split for the `loss`."""
    pieces = [body(d) + d.targets for d in demos] + [body(example) + example.targets]
    text = example.instruction + separator.join(pieces)
    if loss == "suffix" and demos:
        split = len(example.instruction) + len(body(demos[0]))
        targets = text[split:]
        return common.Example(example.id, text[:split], targets, (targets.strip(),),
                              instruction=example.instruction)  # fmt: skip
    split = len(text) - len(example.targets)
    return common.Example(example.id, text[:split], example.targets, example.references,
                          example.options, example.label, example.instruction)  # fmt: skip


def fit(
    example: common.Example,
    demos: list[common.Example],
    separator: str,
    max_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[common.Example]:
    """The demonstrations that fit `max_tokens` with the example (the nearest kept)."""
    sep = count_tokens(separator)
    size = count_tokens(example.inputs) + count_tokens(example.targets)
    kept: list[common.Example] = []
    for demo in reversed(demos):  # the nearest to the example first
        size += sep + count_tokens(body(demo)) + count_tokens(demo.targets)
        if size > max_tokens:
            break
        kept.insert(0, demo)
    return kept


def metaicl_examples(
    task: str,
    examples: Sequence[common.Example],
    pool: Sequence[common.Example],
    config: MetaICLConfig,
    count_tokens: Callable[[str], int] | None = None,
) -> list[common.Example]:
    """MetaICL versions of a task's 0-shot `examples`, demonstrations drawn from `pool` (the
    task's training examples, 0-shot; `examples` itself for the train split: the drawn ids skip
    the example's own). `count_tokens` is needed with `config.max_tokens`."""
    pool_ids = [e.id for e in pool]
    if config.max_tokens is not None and count_tokens is None:
        raise ValueError("MetaICLConfig.max_tokens needs count_tokens")
    if count_tokens is not None:
        count_tokens = functools.cache(count_tokens)  # demonstrations recur
    out = []
    for example in examples:
        demos = [pool[j] for j in draw(config, task, example.id, pool_ids)]
        if config.max_tokens is not None:
            demos = fit(example, demos, config.separator, config.max_tokens, count_tokens)
        out.append(compose(example, demos, config.separator, config.loss))
    return out


def with_demonstrations(
    task: str,
    examples: Sequence[common.Example],
    pool: Sequence[common.Example],
    k: int,
    separator: str,
    seed: int = 0,
) -> list[common.Example]:
    """Evaluation prompts in the MetaICL format (§4.8; Table 20 re-evaluates with `" \\n\\n"`):
    each example after `k` random examples of `pool` (the task's 0-shot training examples;
    never one with the example's id or prompt), joined by `separator` after its instruction."""
    out = []
    for example in examples:
        others = [d for d in pool if d.id != example.id and d.inputs != example.inputs]
        rng = _rng(seed, "metaicl eval", task, example.id)
        chosen = rng.choice(len(others), size=min(k, len(others)), replace=False) if others else []
        out.append(compose(example, [others[j] for j in chosen], separator))
    return out
