"""seqio metric functions for generation tasks: accuracy, exact match, ROUGE-1 and ROUGE-L (x100).

seqio routes a metric by its argument names: `(targets, predictions)` here, `(targets, scores)` for
rank classification (`optiml.evaluation.rank_classification`). A target is one reference string
or a list of references (NIV2 instances have several outputs; `references_postprocessor` returns
them from the example); a prediction is the decoded model output string.

    >>> rouge(["the cat runs"], ["The cats are running."])
    {'rouge1': 85.7143, 'rougeL': 85.7143}
    >>> exact_match([["Yes", "yes."]], ["YES!"])
    {'exact_match': 100.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optiml.evaluation import rouge as rouge_lib

Target = str | Sequence[str]


def _as_references(target: Target) -> list[str]:
    if isinstance(target, bytes):
        return [target.decode("utf-8")]
    if isinstance(target, str):
        return [target]
    refs = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in target]
    if not refs:
        raise ValueError("a target with no reference string")
    return refs


def _check(targets: Sequence[Any], predictions: Sequence[Any]) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if len(targets) == 0:
        raise ValueError("no examples to score")


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """Percent of predictions equal to their target (or to one of its references)."""
    _check(targets, predictions)
    correct = 0
    for target, prediction in zip(targets, predictions, strict=True):
        if isinstance(target, str | bytes) or not isinstance(target, Sequence):
            correct += prediction == target
        else:
            correct += prediction in target
    return {"accuracy": round(100.0 * correct / len(targets), 4)}


def exact_match(targets: Sequence[Target], predictions: Sequence[str]) -> dict[str, float]:
    """Official SNI exact match (normalize_answer on both sides), max over references, x100."""
    _check(targets, predictions)
    refs = [_as_references(t) for t in targets]
    em = sum(
        rouge_lib.max_over_references(rouge_lib.exact_match, p, r)
        for p, r in zip(predictions, refs, strict=True)
    )
    return {"exact_match": round(100.0 * em / len(refs), 4)}


def rouge(targets: Sequence[Target], predictions: Sequence[str]) -> dict[str, float]:
    """Official SNI ROUGE-1 and ROUGE-L F1 for English (stemmed default tokenizer), max over
    references."""
    return _rouge(targets, predictions, xlingual=False)


def rouge_xlingual(targets: Sequence[Target], predictions: Sequence[str]) -> dict[str, float]:
    """Official SNI ROUGE-1 and ROUGE-L F1 for non-English text (GPT-2 byte-level BPE tokens)."""
    return _rouge(targets, predictions, xlingual=True)


def _rouge(targets: Sequence[Target], predictions: Sequence[str], xlingual: bool) -> dict:
    _check(targets, predictions)
    refs = [_as_references(t) for t in targets]
    scores = rouge_lib.corpus_scores(list(predictions), refs, xlingual=xlingual)
    return {name: scores[name] for name in rouge_lib.ROUGE_TYPES}


def is_xlingual(*languages: str | Sequence[str]) -> bool:
    """True when any of the task's input/output languages is not English (SNI's xlingual track)."""
    flat: list[str] = []
    for lang in languages:
        flat.extend([lang] if isinstance(lang, str) else list(lang))
    return any(lang.strip().lower() != "english" for lang in flat if lang.strip())


def references_postprocessor(
    output: Any, example: Mapping[str, Any] | None = None, is_target: bool = False
) -> Any:
    """Targets: the example's `references` list when present, else the target string.

    Predictions: the decoded string with surrounding whitespace removed (OPT targets begin with a
    space: " Yes" -> "Yes").
    """
    if isinstance(output, bytes):
        output = output.decode("utf-8")
    if not is_target:
        return output.strip() if isinstance(output, str) else output
    if example is not None and "references" in example:
        refs = example["references"]
        refs = refs.tolist() if hasattr(refs, "tolist") else list(refs)
        return [r.decode("utf-8") if isinstance(r, bytes) else str(r) for r in refs]
    return output.strip() if isinstance(output, str) else output
