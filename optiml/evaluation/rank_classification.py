"""Rank classification, T5's design re-implemented: one scored candidate per option, then argmax.

1. `rank_classification_preprocessor` (seqio preprocessor, before tokenization) turns an example
   with `options` and `label` into one example per option:

       {"inputs": "Q: 2+2?", "options": ["3", "4"], "label": 1, "idx": 7}
       -> {"inputs": "Q: 2+2?", "targets": " 3", "idx": [7, 0], "is_correct": False}
          {"inputs": "Q: 2+2?", "targets": " 4", "idx": [7, 1], "is_correct": True}

   (the stripped option text gets OPT's leading space, like every target; see the contracts).
2. The model scores every candidate: the sum of the log-likelihoods of its target tokens
   (`optiml.evaluation.inference`), with or without the EOS after them (`Scoring.include_eos`:
   the evaluation twin's targets get EOS or not, `registration.evaluation_task`).
3. `rank_classification_postprocessor` turns each target into a `Candidate` (example, option,
   is_correct, number of scored tokens, characters of the option); scores pass through untouched.
4. `rank_classification` groups the candidates by example, takes the argmax of the scores --
   divided by the option's tokens or characters if `length_normalization` says so -- (the first
   option wins ties) and reports {"accuracy": x100}.

The conventions (`Scoring`), with the paper's choice as default (Iyer et al. 2022, section 4.1
"Decoding": "we score each candidate based on their likelihood and output the highest-scoring
candidate"; section 5.1: "the candidate with the highest likelihood"): the summed log-likelihood,
no length normalization. Whether that likelihood covers the EOS the paper does not say; the
default counts it, the option as the model was trained to produce it (section 3.1, eq. 1: the
loss over the target tokens, which in metaseq's fine-tuning data end with `</s>`).
lm-evaluation-harness's equivalents: `acc` = Scoring(include_eos=False, "none"), `acc_norm` =
Scoring(include_eos=False, "characters") (it divides by `len(choice)`); it never scores an EOS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LENGTH_NORMALIZATIONS = ("none", "tokens", "characters")


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How options are scored and ranked (defaults: the paper's, see the module docstring)."""

    include_eos: bool = True  # the option's EOS token is part of its score
    length_normalization: str = "none"  # divide the score by the option's tokens / characters

    def __post_init__(self) -> None:
        if self.length_normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(
                f"length_normalization {self.length_normalization!r} is not one of "
                f"{LENGTH_NORMALIZATIONS}"
            )

    def describe(self) -> str:
        """E.g. "rank classification: summed option log-likelihood, EOS included, no length
        normalization" (what the report states)."""
        norm = {
            "none": "no length normalization",
            "tokens": "divided by the option's tokens",
            "characters": "divided by the option's characters",
        }[self.length_normalization]
        eos = "EOS included" if self.include_eos else "EOS not scored"
        return f"rank classification: summed option log-likelihood, {eos}, {norm}"


PAPER = Scoring()


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One (example, option) pair as the metric sees it."""

    example: int
    option: int
    is_correct: bool
    num_tokens: int  # the scored target tokens (EOS counted when scored)
    num_chars: int = 0  # characters of the option text (no leading space)


def rank_classification_preprocessor(dataset, target_prefix: str = " "):
    """tf.data: {inputs, options, label, idx} -> one {inputs, targets, idx, is_correct} per option.

    `idx` defaults to the example's position in the dataset when the field is absent. Works on raw
    strings, so it goes before `seqio.preprocessors.tokenize`.
    """
    import tensorflow as tf

    spec = dataset.element_spec
    for key in ("inputs", "options", "label"):
        if key not in spec:
            raise ValueError(f"rank classification needs the feature {key!r}; got {sorted(spec)}")
    if "idx" not in spec:
        dataset = dataset.enumerate().map(lambda i, ex: {**ex, "idx": i})

    def expand(ex: Mapping[str, Any]):
        options = ex["options"]
        n = tf.shape(options)[0]
        j = tf.range(n, dtype=tf.int32)
        example_idx = tf.fill([n], tf.cast(ex["idx"], tf.int32))
        return tf.data.Dataset.from_tensor_slices(
            {
                "inputs": tf.fill([n], ex["inputs"]),
                "targets": tf.strings.join([target_prefix, tf.strings.strip(options)]),
                "idx": tf.stack([example_idx, j], axis=1),
                "is_correct": tf.equal(j, tf.cast(ex["label"], tf.int32)),
            }
        )

    return dataset.flat_map(expand)


def rank_classification_postprocessor(
    output: Any, example: Mapping[str, Any] | None = None, is_target: bool = False
) -> Any:
    """Targets -> `Candidate` from the example's idx, is_correct and tokenized targets."""
    if not is_target:
        return output
    if example is None or "idx" not in example or "is_correct" not in example:
        raise ValueError("rank classification targets need the example's 'idx' and 'is_correct'")
    idx = np.asarray(example["idx"]).reshape(-1)
    text = example.get("targets_pretokenized", b"")
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    return Candidate(
        example=int(idx[0]),
        option=int(idx[1]),
        is_correct=bool(np.asarray(example["is_correct"])),
        num_tokens=int(np.asarray(example["targets"]).shape[0]) if "targets" in example else 1,
        num_chars=len(text.strip()),
    )


def group_predictions(
    targets: Sequence[Candidate], scores: Sequence[float], length_normalization: str = "none"
) -> dict[int, tuple[int, bool]]:
    """example -> (chosen option, whether it is correct). Options are ordered by their index;
    with `length_normalization` "tokens" / "characters" a score is divided by the candidate's
    `num_tokens` / `num_chars` (at least 1)."""
    Scoring(length_normalization=length_normalization)  # validates the name
    if len(targets) != len(scores):
        raise ValueError(f"{len(targets)} candidates but {len(scores)} scores")
    if not targets:
        raise ValueError("no candidates to rank")
    by_example: dict[int, list[tuple[int, float, bool]]] = {}
    for cand, score in zip(targets, scores, strict=True):
        length = {"none": 1, "tokens": cand.num_tokens, "characters": cand.num_chars}
        value = float(score) / max(length[length_normalization], 1)
        by_example.setdefault(cand.example, []).append((cand.option, value, cand.is_correct))
    chosen = {}
    for example, options in by_example.items():
        options.sort(key=lambda o: o[0])
        best = int(np.argmax([o[1] for o in options]))
        chosen[example] = (options[best][0], options[best][2])
    return chosen


def rank_classification(
    targets: Sequence[Candidate], scores: Sequence[float], length_normalization: str = "none"
) -> dict[str, float]:
    """{"accuracy": x100} of the best option per example (see `group_predictions`)."""
    chosen = group_predictions(targets, scores, length_normalization)
    return {"accuracy": round(100.0 * float(np.mean([c for _, c in chosen.values()])), 4)}


def metric_fn(scoring: Scoring = PAPER):
    """The seqio metric function for `scoring` (seqio routes it by its `scores` argument)."""

    def rank_classification_metric(
        targets: Sequence[Candidate], scores: Sequence[float]
    ) -> dict[str, float]:
        return rank_classification(targets, scores, scoring.length_normalization)

    return rank_classification_metric
