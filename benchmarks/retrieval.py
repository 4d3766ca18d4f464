"""Retrieved demonstrations: `retrieval.Retriever.top` (a per-word index over rank_bm25's own
terms) vs what a user would write with rank_bm25 alone (`BM25Okapi.get_scores`, then a sort by
score and key), on GSM8K's training questions (the CoT loader's pool) queried with its test
questions, top 5. Both pick the same demonstrations (checked on every query); the index build is
a one-off cost, printed on its own line. Also prints how many words the demonstrations share with
the question, retrieved vs the loader's seeded ones.

    python benchmarks/retrieval.py [--queries 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timing  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from optiml.bench import catalog  # noqa: E402
from optiml.bench.sources import common, reasoning, retrieval  # noqa: E402


def overlap(ours: retrieval.Retriever, texts: list[str], queries: list[str]) -> dict[str, float]:
    """Mean word Jaccard of each question with its 5 demonstrations: the CoT loader's seeded
    ones (`common.demonstrations`, seed 0) and the retrieved ones."""

    def jaccard(a: str, b: str) -> float:
        x, y = set(retrieval.words(a)), set(retrieval.words(b))
        return len(x & y) / len(x | y)

    out = {}
    for mode in retrieval.MODES:
        values = []
        for i, q in enumerate(queries):
            if mode == retrieval.RETRIEVED:
                shown = [texts[j] for j in ours.top(q, 5)]
            else:
                shown = common.demonstrations([t for t in texts if t != q], 5, 0, "gsm8k", i)
            values += [jaccard(q, d) for d in shown]
        out[mode] = sum(values) / len(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    record = catalog.task("optiml:reasoning:gsm8k")
    rows = reasoning.load_rows(record.source_id)
    texts = [q.strip() for q, _, _ in common.split_rows(record, "train", rows)]
    queries = [q.strip() for q, _, _ in common.split_rows(record, "test", rows)][: args.queries]
    keys = [str(j) for j in range(len(texts))]
    print(f"single-threaded Python and numpy; load (1/5/15 min) {timing.load()}")
    print(f"pool {len(texts)} GSM8K training questions; {len(queries)} test questions, top 5")
    built = {}

    def build_ours() -> None:
        built["ours"] = retrieval.Retriever(texts, keys)

    def build_library() -> None:
        built["lib"] = BM25Okapi([retrieval.words(t) for t in texts])

    print(f"one-off: Retriever index {timing.once(build_ours):.2f} s (BM25Okapi's included)")
    print(f"one-off: BM25Okapi {timing.once(build_library):.2f} s")
    ours, lib = built["ours"], built["lib"]

    def by_library(query: str) -> list[int]:
        scores = lib.get_scores(retrieval.words(query))
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], keys[i]))
        return [i for i in order if texts[i] != query][:5]

    same = sum(ours.top(q, 5) == by_library(q) for q in queries)
    print(f"same top 5 on {same}/{len(queries)} queries")
    everyone = [q.strip() for q, _, _ in common.split_rows(record, "test", rows)]
    for mode, jaccard in overlap(ours, texts, everyone).items():
        print(f"{mode} demonstrations: mean word Jaccard with the question {jaccard:.3f} "
              f"(all {len(everyone)} test questions, 5 each)")  # fmt: skip
    runs = timing.interleaved(
        {
            "optiml Retriever.top": lambda: [ours.top(q, 5) for q in queries],
            "rank_bm25 + sort": lambda: [by_library(q) for q in queries],
        },  # fmt: skip
        args.repeats,
    )
    for r in runs.values():
        print(r.line("queries", len(queries)))
    print(timing.ratio_line(runs["optiml Retriever.top"], runs["rank_bm25 + sort"], goal=10.0))


if __name__ == "__main__":
    main()
