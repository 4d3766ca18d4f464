"""Retrieved demonstrations (Agrawal et al. 2022, "In-context examples selection for machine
translation"): a k-shot prompt shows the k training instances of its task that overlap most with
the test input, instead of the default seeded ones.

Overlap is BM25 (Okapi, k1 1.5, b 0.75: `rank_bm25.BM25Okapi`, the library's defaults) over
lower-cased word tokens (`\\w+`): the retrieval stage of the paper's R-BM25 (its re-ranking by
n-gram recall is left out). Ties are broken by the instance's key (its id), so the choice is
deterministic. The pool is the caller's: the task's training instances that no split evaluates
(`split_rows(..., "train")`, NIV2's `demo_pool`), never held-out ones; `top` also never returns the
evaluated instance itself, by key or by an identical text (a duplicate of the test input would
show its answer).

    retriever = Retriever(["the cat sat", "a dog ran", "cats sat down"], keys=["0", "1", "2"])
    retriever.top("the cat sat down", k=2, exclude="9")   # -> [0, 2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rank_bm25 import BM25Okapi

MODES = ("random", "retrieved")  # how a k-shot prompt's demonstrations are chosen; first: default
DESCRIPTIONS = {  # for the report
    "random": "the loaders' seeded ones",
    "retrieved": "the k training instances BM25 ranks first for the test input (Agrawal et al. "
    "2022)",
}
RETRIEVED = "retrieved"  # the loaders' format variant: `optiml:promptsource:<task>#retrieved_5shot`
FORMAT_VARIANT = {RETRIEVED: {"demos": RETRIEVED}}  # a loader's FORMAT_VARIANTS entry
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """BM25's tokens: lower-cased `\\w+` runs ("The cat's hat." -> ["the", "cat", "s", "hat"])."""
    return _WORD.findall(text.lower())


def check_mode(demos: str) -> str:
    if demos not in MODES:
        raise ValueError(f"demos={demos!r}: one of {MODES}")
    return demos


class Retriever:
    """BM25 over a fixed pool of texts, each with a stable key (its instance id)."""

    def __init__(self, texts: Sequence[str], keys: Sequence[str]) -> None:
        if len(texts) != len(keys):
            raise ValueError(f"{len(texts)} texts but {len(keys)} keys")
        self.texts = [t.strip() for t in texts]
        self.keys = [str(k) for k in keys]
        tokens = [words(t) for t in self.texts]
        self._bm25 = BM25Okapi(tokens) if any(tokens) else None  # (no words: all tie at 0)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every pool text for `query` [pool size]."""
        if self._bm25 is None:
            return np.zeros(len(self.texts))
        return np.asarray(self._bm25.get_scores(words(query)), np.float64)

    def top(self, query: str, k: int, exclude: str | None = None) -> list[int]:
        """Pool positions of the `k` best texts for `query` (score, then key), leaving out the
        key `exclude` and any text equal to the query."""
        if k <= 0 or not self.texts:
            return []
        scores, query = self.scores(query), query.strip()
        order = sorted(range(len(self.texts)), key=lambda i: (-scores[i], self.keys[i]))
        return [i for i in order if self.keys[i] != exclude and self.texts[i] != query][:k]
