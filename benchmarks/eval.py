"""Rank-classification speed-up from encoding each shared prompt once (KV cache) vs scoring every
prompt+option row in full, on the same model, the same rows and the same batch size.

    OPTIML_DATA_DIR=../shared/data python benchmarks/eval.py [--size tiny] [--examples 16]
        [--subject anatomy] [--batch 4] [--options text|letters]

Rows: MMLU `--subject` test questions in the 5-shot format (the 5 dev examples as
demonstrations), one row per option (" A".." D" or the answer texts), tokenized with the OPT
vocabulary. Model: random weights of the named OPT size (speed does not depend on the values).
Both variants are compiled on a warm-up pass first; the timed pass runs the same rows again.
Prints rows/s of each, the speed-up, and the largest score difference (must be ~0) and the
accuracy of each variant (equal).
"""

from __future__ import annotations

import argparse
import csv
import time

import jax
import numpy as np

from optiml import paths
from optiml.evaluation import inference
from optiml.evaluation import rank_classification as rc
from optiml.models import opt
from optiml.pipeline.vocab import OPTVocabulary

LETTERS = "ABCD"


def _format(row: dict[str, str], with_answer: bool) -> str:
    lines = [row["question"]] + [f"{LETTERS[i]}. {row[f'choice{i}']}" for i in range(4)]
    text = "\n".join(lines) + "\nAnswer:"
    return text + (f" {LETTERS[int(row['answer'])]}\n\n" if with_answer else "")


def mmlu_rows(subject: str, examples: int, options: str, vocab: OPTVocabulary):
    """(EvalExamples, Candidates) for the first `examples` test questions, 5-shot prompts."""
    folder = paths.data_dir() / "mmlu"
    with open(folder / "dev" / f"{subject}_dev.csv", newline="") as f:
        demos = "".join(_format(r, True) for r in csv.DictReader(f))
    with open(folder / "test" / f"{subject}_test.csv", newline="") as f:
        questions = list(csv.DictReader(f))[:examples]
    rows, cands = [], []
    for n, q in enumerate(questions):
        prompt = (2, *vocab.encode(demos + _format(q, False)))
        for k in range(4):
            text = f" {LETTERS[k]}" if options == "letters" else f" {q[f'choice{k}']}"
            target = (*vocab.encode(text), 2)
            rows.append(inference.EvalExample(len(rows), prompt, target))
            cands.append(rc.Candidate(n, k, k == int(q["answer"]), len(target)))
    return rows, cands


def _timed(infer: inference.Inferencer, rows) -> tuple[list[float], float]:
    infer.score_examples(rows)  # compile every shape
    start = time.perf_counter()
    scores = infer.score_examples(rows)
    return scores, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="tiny", choices=list(opt.SIZES))
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--subject", default="anatomy")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--options", default="text", choices=["text", "letters"])
    args = parser.parse_args()

    config = opt.named_config(args.size, dtype="float32", dropout=0.0)
    params = opt.init_params(config, jax.random.key(0))
    rows, cands = mmlu_rows(args.subject, args.examples, args.options, OPTVocabulary())
    prompt_tokens = np.mean([len(r.prompt) for r in rows])
    option_tokens = np.mean([len(r.target) for r in rows])
    print(
        f"model {args.size}, {len(rows)} rows ({args.examples} MMLU {args.subject} questions x 4),"
        f" prompt {prompt_tokens:.0f} tokens, option {option_tokens:.1f} tokens,"
        f" {args.batch} questions per batch"
    )

    full, t_full = _timed(
        inference.Inferencer(params, config, batch_size=args.batch * 4, share_prompts=False), rows
    )
    shared, t_shared = _timed(
        inference.Inferencer(params, config, batch_size=args.batch, share_prompts=True), rows
    )
    print(f"full rows (prompt re-encoded per option): {len(rows) / t_full:8.1f} rows/s")
    print(f"shared prompt (KV cache, encoded once):  {len(rows) / t_shared:8.1f} rows/s")
    print(f"speed-up: {t_full / t_shared:.2f}x")
    print(f"max |score difference|: {np.max(np.abs(np.subtract(full, shared))):.2e}")
    acc_full = rc.rank_classification(cands, full)["accuracy"]
    acc_shared = rc.rank_classification(cands, shared)["accuracy"]
    print(f"accuracy: full {acc_full:.2f}, shared {acc_shared:.2f}")


if __name__ == "__main__":
    main()
