"""Exact match, ROUGE-1 and ROUGE-L F1 exactly as Super-NaturalInstructions' evaluation does them.

Reference: allenai/natural-instructions `eval/automatic/evaluation.py` (exact match and ROUGE-L)
and Tk-Instruct's `src/compute_metrics.py` (the SuperNI paper's code: exact match, ROUGE-1 and
ROUGE-L, each the same way):

- exact match compares `normalize_answer(prediction) == normalize_answer(reference)`, where
  `normalize_answer` lower-cases, drops `string.punctuation` and collapses whitespace (SQuAD v1.1
  without removing articles): "The Cat!" vs "the  cat" -> match.
- ROUGE-1 / ROUGE-L are `rouge_score`'s rouge1 / rougeL F-measures (unigram overlap / longest
  common subsequence) on the RAW strings (no normalize_answer): English
  ("default" track) uses rouge_score's default tokenizer with the Porter stemmer (lower-case,
  non-[a-z0-9] -> space, stem words longer than 3 chars); non-English ("xlingual" track) uses the
  GPT-2 byte-level BPE tokens with the leading "Ġ" stripped and no stemming.
- each example takes the max over its references; a corpus score is the mean x 100, rounded to
  4 decimals.

The GPT-2 tokenizer is built offline from `$OPTIML_DATA_DIR/gpt2_bpe/{encoder.json,vocab.bpe}`
with the `tokenizers` library (the same files as Hugging Face's "gpt2").
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from pathlib import Path

from rouge_score import rouge_scorer

from optiml import paths

_PUNCTUATION = frozenset(string.punctuation)
GPT2_SPECIAL_TOKENS = ("<|endoftext|>",)


def normalize_answer(text: str) -> str:
    """Lower-case, remove ASCII punctuation, collapse whitespace: " A, b!  C " -> "a b c"."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(text.split())


class GPT2Tokenizer:
    """GPT-2 byte-level BPE token strings without the space marker: "Hi there" -> ["Hi", "there"].

    Non-ASCII text comes out as byte-level symbols ("é" -> "Ã©"), exactly like the official
    `AutoTokenizer.from_pretrained("gpt2").tokenize(s)` followed by `t.lstrip("Ġ")`.
    """

    def __init__(self, bpe_dir: str | Path | None = None):
        from tokenizers import Tokenizer, models, pre_tokenizers

        bpe_dir = Path(bpe_dir) if bpe_dir is not None else paths.data_dir() / "gpt2_bpe"
        vocab, merges = bpe_dir / "encoder.json", bpe_dir / "vocab.bpe"
        for path in (vocab, merges):
            if not path.is_file():
                raise FileNotFoundError(
                    f"GPT-2 BPE file {path} is missing (needed for xlingual ROUGE)"
                )
        self._tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tokenizer.add_special_tokens(list(GPT2_SPECIAL_TOKENS))

    def raw_tokens(self, text: str) -> list[str]:
        """The byte-level BPE token strings, "Ġ" kept: "Hi there" -> ["Hi", "Ġthere"]."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def tokenize(self, text: str) -> list[str]:
        return [token.lstrip("Ġ") for token in self.raw_tokens(text)]


ROUGE_TYPES = ("rouge1", "rougeL")


@functools.cache
def _scorer(xlingual: bool) -> rouge_scorer.RougeScorer:
    if xlingual:
        return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=GPT2Tokenizer())
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def exact_match(prediction: str, reference: str, xlingual: bool = False) -> float:
    """1.0 when the normalized strings are equal; `xlingual` is unused, as in the official code."""
    del xlingual
    return float(normalize_answer(prediction) == normalize_answer(reference))


def rouge_l(prediction: str, reference: str, xlingual: bool = False) -> float:
    """ROUGE-L F-measure in [0, 1]; 0.0 when either side has no tokens."""
    return _scorer(xlingual).score(target=reference, prediction=prediction)["rougeL"].fmeasure


def rouge_1(prediction: str, reference: str, xlingual: bool = False) -> float:
    """ROUGE-1 (unigram overlap) F-measure in [0, 1]; 0.0 when either side has no tokens."""
    return _scorer(xlingual).score(target=reference, prediction=prediction)["rouge1"].fmeasure


def max_over_references(
    metric: Callable[..., float], prediction: str, references: Sequence[str], xlingual: bool = False
) -> float:
    """The best score of `prediction` against any reference (at least one is required)."""
    if isinstance(references, str):
        references = [references]
    if len(references) == 0:
        raise ValueError(f"no reference to score the prediction {prediction!r} against")
    return max(metric(prediction, ref, xlingual=xlingual) for ref in references)


METRICS = {"exact_match": exact_match, "rouge1": rouge_1, "rougeL": rouge_l}


def corpus_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str] | str], xlingual: bool = False
) -> dict[str, float]:
    """{"exact_match", "rouge1", "rougeL"}: each the mean over examples of the best score
    against any reference, x 100, rounded to 4 decimals (the official scripts' numbers)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("cannot score an empty set of predictions")
    pairs = list(zip(predictions, references, strict=True))
    return {
        name: round(100.0 * sum(max_over_references(fn, p, r, xlingual) for p, r in pairs)
                    / len(pairs), 4)
        for name, fn in METRICS.items()
    }  # fmt: skip
