"""The direct preparation path: a task's examples from its loader's Python renderer, tokenized in
large batches by `tokenizers` (Rust, every core) -- the same token arrays as seqio, ~1 s per task
of tf.data tracing saved.

A task takes this path when seqio would do nothing but render and tokenize: its source comes from
`optiml.bench.sources.common.function_source` (every loader: NIV2, PromptSource, CoT, MMLU, BBH,
CrossFit/ExMix/UnifiedSKG/dialogue files, and FLAN/T5 whose rows TFDS reads through tf.data), its
preprocessors are `DIRECT_PREPROCESSORS` (tokenize, then EOS on `targets`) and its features are
`inputs` (no EOS) and `targets` (EOS). Any other task goes through seqio, which stays the
definition: `verify` (`python -m optiml.pipeline.prepare --verify ...`) compares the two paths.

    inputs  "Is the sky blue?\\nAnswer:"  -> [6209, 5, 6360, 2440, 116, 50118, 33683, 35]
    targets " Yes"                        -> [3216, 2]                   (EOS 2 appended)
"""

from __future__ import annotations

import collections
import logging
import os
import string
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import seqio

from optiml.bench.sources import common
from optiml.pipeline import vocab as vocab_lib

log = logging.getLogger(__name__)

DIRECT_PREPROCESSORS = (
    (seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim),
    (seqio.preprocessors.tokenize, seqio.preprocessors.append_eos),
)  # without a sequence length both append EOS to the features with add_eos

Pair = tuple[Sequence[int], Sequence[int]]  # (prompt ids, target ids + EOS)
T = TypeVar("T")
R = TypeVar("R")


def renderer(task: seqio.Task) -> Callable[[str], Sequence[common.Example]] | None:
    """The Python renderer of a task whose seqio preparation the direct path reproduces, else
    None (the task then goes through seqio)."""
    examples_fn = common.python_examples(task.source)
    if examples_fn is None:
        return None
    if tuple(task.preprocessors) not in DIRECT_PREPROCESSORS:
        return None
    features = task.output_features
    if set(features) != {"inputs", "targets"}:
        return None
    inputs, targets = features["inputs"], features["targets"]
    if inputs.add_eos or not targets.add_eos or inputs.vocabulary != targets.vocabulary:
        return None
    return examples_fn


def encode(vocabulary: seqio.Vocabulary, texts: list[str]) -> list[list[int]]:
    """Token ids of many strings: `encode_batch` where the vocabulary has it (OPT's, parallel
    over every core), else `encode` one by one -- the ids seqio's `encode_tf` gives."""
    batch = getattr(vocabulary, "encode_batch", None)
    return batch(texts) if batch is not None else [vocabulary.encode(t) for t in texts]


MIN_SHARED = 32  # characters prompts must share for their common head to be tokenized once


def safe_cut(prefix: str) -> int:
    """The last k > 0 in `prefix` where any text starting with `prefix` has the tokens of
    `text[:k]` followed by those of `text[k:]`; 0 if there is none.

    GPT-2's byte-level pre-tokenizer splits text into pieces (`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+|
    ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`) and BPE never merges across pieces. No piece
    holds a non-space character followed by a space, so a space after a letter, digit or ASCII
    punctuation mark always starts a new piece.
    """
    k = prefix.rfind(" ")
    while k > 0 and not (prefix[k - 1].isalnum() or prefix[k - 1] in string.punctuation):
        k = prefix.rfind(" ", 0, k)
    return max(k, 0)


def shared_cuts(prompts: Sequence[str]) -> list[int]:
    """A safe cut per prompt (0: none) inside a head it shares with other prompts: in sorted
    order, prompts sharing at least MIN_SHARED leading characters form a group, cut at the last
    `safe_cut` of the group's common prefix. NIV2's definition (in each of its prompt formats) or
    a PromptSource template's opening is then tokenized once per task, not once per example."""
    cuts = [0] * len(prompts)
    group: list[int] = []

    def close() -> None:
        if len(group) > 1:
            k = safe_cut(os.path.commonprefix([prompts[group[0]], prompts[group[-1]]]))
            for i in group:
                cuts[i] = k

    head = None  # the group's first MIN_SHARED characters (sharing them = sharing >= MIN_SHARED)
    for i in sorted(range(len(prompts)), key=prompts.__getitem__):
        start = prompts[i][:MIN_SHARED]
        if group and (start != head or len(start) < MIN_SHARED):
            close()
            group = []
        if not group:
            head = start
        group.append(i)
    close()
    return cuts


def encode_prompts(vocabulary: seqio.Vocabulary, prompts: list[str]) -> list[list[int]]:
    """`encode(vocabulary, prompts)`, each shared head tokenized once (`shared_cuts`) when the
    vocabulary is OPT's byte-level BPE."""
    if not isinstance(vocabulary, vocab_lib.OPTVocabulary):
        return encode(vocabulary, prompts)
    cuts = shared_cuts(prompts)
    heads = list(dict.fromkeys(p[:k] for p, k in zip(prompts, cuts, strict=True) if k))
    ids = encode(vocabulary, heads + [p[k:] for p, k in zip(prompts, cuts, strict=True)])
    head_ids = dict(zip(heads, ids, strict=False))
    tails = ids[len(heads) :]
    return [
        head_ids[p[:k]] + tail if k else tail
        for p, k, tail in zip(prompts, cuts, tails, strict=True)
    ]


def tokenize(task: seqio.Task, examples: Sequence[common.Example]) -> list[Pair]:
    """(prompt ids, target ids + EOS) of every example, in order, as seqio's preprocessors."""
    vocabulary = task.output_features["targets"].vocabulary
    prompts = encode_prompts(vocabulary, [e.inputs for e in examples])
    targets = encode(vocabulary, [e.targets for e in examples])
    eos = [vocabulary.eos_id]
    return [(p, t + eos) for p, t in zip(prompts, targets, strict=True)]


def task_examples(
    task: seqio.Task, split: str, rendered: Sequence[common.Example] | None = None
) -> list[Pair] | None:
    """The task's examples of `split` by the direct path, or None if it does not apply;
    `rendered`: its examples already rendered (`render`), else they are rendered here."""
    examples_fn = renderer(task)
    if examples_fn is None:
        return None
    return tokenize(task, rendered if rendered is not None else render(task, split))


def render(task: seqio.Task, split: str) -> list[common.Example] | None:
    """The task's examples of `split` as its Python renderer gives them (pure Python: the part
    of the direct path that holds the GIL), or None if the direct path does not apply."""
    examples_fn = renderer(task)
    return None if examples_fn is None else list(examples_fn(split))


def ahead(
    fn: Callable[[T], R], items: Sequence[T], depth: int = 2
) -> Iterator[tuple[T, Callable[[], R]]]:
    """(item, result) for each item in order; `result()` returns `fn(item)` (or raises what it
    raised), computed up to `depth` items ahead in one background thread. `prepare` renders the
    next tasks (Python, holding the GIL) while `tokenizers` encodes the current one (Rust,
    without it), so the two overlap on a 2-core machine instead of taking turns."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="optiml-render")
    pending = collections.deque(pool.submit(fn, item) for item in items[:depth])
    try:
        for i, item in enumerate(items):
            if i + depth < len(items):
                pending.append(pool.submit(fn, items[i + depth]))
            yield item, pending.popleft().result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a consumer that stops early


def compare(direct: Sequence[Pair], reference: Sequence[Pair]) -> str | None:
    """None if both paths give the same examples in the same order, else where they differ."""
    if len(direct) != len(reference):
        return f"{len(direct)} examples by the direct path, {len(reference)} by seqio"
    for i, ((p, t), (q, u)) in enumerate(zip(direct, reference, strict=True)):
        for part, a, b in (("prompt", p, q), ("target", t, u)):
            a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
            if not np.array_equal(a, b):
                n = min(len(a), len(b))
                j = int(np.argmax(a[:n] != b[:n])) if (a[:n] != b[:n]).any() else n
                return (
                    f"example {i}: {part} ids differ from token {j} ({len(a)} vs {len(b)} "
                    f"tokens): {a[j : j + 6].tolist()} vs {b[j : j + 6].tolist()}"
                )
    return None
