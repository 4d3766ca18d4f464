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
        self._postings = _postings(BM25Okapi(tokens)) if any(tokens) else {}  # no words: all 0
        self._key_rank = np.argsort(np.argsort(np.array(self.keys), kind="stable"), kind="stable")

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every pool text for `query` [pool size]: `BM25Okapi.get_scores`, bit
        for bit (the same terms added in the same order), from each word's postings; the
        library's own loop reads every pool text for every query word (GSM8K's 7.5k-question
        pool: 0.14 s a query)."""
        score = np.zeros(len(self.texts))
        for word in words(query):
            if word in self._postings:
                docs, weights = self._postings[word]
                score[docs] += weights
        return score

    def top(self, query: str, k: int, exclude: str | None = None) -> list[int]:
        """Pool positions of the `k` best texts for `query` (score, then key), leaving out the
        key `exclude` and any text equal to the query."""
        if k <= 0 or not self.texts:
            return []
        query, out = query.strip(), []
        for i in np.lexsort((self._key_rank, -self.scores(query))).tolist():  # score, then key
            if self.keys[i] != exclude and self.texts[i] != query:
                out.append(i)
                if len(out) == k:
                    break
        return out


def _postings(bm25: BM25Okapi) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{word: (the pool positions that hold it, its term of `get_scores` in each)}: rank_bm25's
    `idf * tf (k1 + 1) / (tf + k1 (1 - b + b len / avglen))`, computed as the library does."""
    docs: dict[str, list[int]] = {}
    for i, freqs in enumerate(bm25.doc_freqs):
        for word in freqs:
            docs.setdefault(word, []).append(i)
    doc_len = np.array(bm25.doc_len)
    out = {}
    for word, positions in docs.items():
        at = np.array(positions)
        tf = np.array([bm25.doc_freqs[i][word] for i in positions])
        norm = bm25.k1 * (1 - bm25.b + bm25.b * doc_len[at] / bm25.avgdl)
        out[word] = (at, (bm25.idf.get(word) or 0) * (tf * (bm25.k1 + 1) / (tf + norm)))
    return out
