"""Rank-classification scoring speed: optiml's `Inferencer` vs lm-evaluation-harness's `hf`
backend (lm_eval 0.4.13, `HFLM._loglikelihood_tokens`) on the same CPU, model and token rows.

    OPTIML_DATA_DIR=../shared/data python benchmarks/eval.py [--tasks piqa mmlu mmlu5]
        [--items N] [--size 125m] [--batch 8] [--repeats 3] [--threads 2]

Items (`--items`, or 200, 200 and 100): the first PIQA validation questions in lm-eval's `piqa`
format ("Question: {goal}\\nAnswer:", options " {sol1}" / " {sol2}"); MMLU test questions taken
round-robin over the 57 subjects in lm-eval's 0-shot `mmlu` format (optiml's MMLU prompt,
options " A" .. " D"); and `mmlu5`, the paper's 5-shot MMLU setting (§4.1: every result is
0-shot and 5-shot): the first 25 test questions of each subject in order, after the subject's
5 dev questions, as an Evaluator scores them (one task per subject).
They are tokenized once with the OPT vocabulary and both tools get the same ids (tokenizing is
not timed); the options are scored without EOS, lm-eval's convention. Model: a random OPT of
`--size` in fp32 built by transformers (`OPTForCausalLM`, its default attention), the same
weights converted to optiml params. Both get `--batch`: lm-eval `batch_size` requests a batch,
optiml `batch_size` rows a batch (a row: a prompt with all its options).

Prints the threads and the load, the one-off costs on their own lines (optiml: compile + first
pass, and how many shapes it compiled; lm-eval: its first pass, the warm-up), then the steady
state of `--repeats` interleaved passes of each (median, range, load), the ratio (goal >= 1.5),
the largest difference between the two tools' log-likelihoods and both accuracies (equal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402

from optiml import paths  # noqa: E402
from optiml.bench.sources import mmlu  # noqa: E402
from optiml.evaluation import inference  # noqa: E402
from optiml.models import convert, opt, rank_scoring  # noqa: E402
from optiml.models.params import param_count  # noqa: E402

Item = tuple[str, list[str], int]  # (prompt, options, label)


def piqa_items(count: int) -> list[Item]:
    folder = paths.data_dir() / "piqa"
    lines = (folder / "valid.jsonl").read_text().splitlines()[:count]
    labels = (folder / "valid-labels.lst").read_text().split()
    items = []
    for line, label in zip(lines, labels, strict=False):
        row = json.loads(line)
        items.append((f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], int(label)))
    return items


def mmlu_items(count: int) -> list[Item]:
    subjects = sorted(p.name[: -len("_test.csv")] for p in (mmlu.mmlu_dir() / "test").iterdir())
    questions = {s: mmlu.load_questions(s, "test") for s in subjects}
    items: list[Item] = []
    for k in range(max(len(q) for q in questions.values())):
        for subject in subjects:
            if k < len(questions[subject]) and len(items) < count:
                question = questions[subject][k]
                prompt = mmlu.render_prompt(subject, question)
                items.append((prompt, list(mmlu.LETTERS), question[2]))
    return items


def mmlu5_items(count: int, per_subject: int = 25) -> list[Item]:
    subjects = sorted(p.name[: -len("_test.csv")] for p in (mmlu.mmlu_dir() / "test").iterdir())
    items: list[Item] = []
    for subject in subjects:
        demos = mmlu.load_questions(subject, "dev")[:5]
        for question in mmlu.load_questions(subject, "test")[:per_subject]:
            if len(items) < count:
                prompt = mmlu.render_prompt(subject, question, demos)
                items.append((prompt, list(mmlu.LETTERS), question[2]))
    return items


def tokenized(items: list[Item]) -> list[tuple[tuple[int, ...], list[tuple[int, ...]], int]]:
    """(BOS + prompt ids, [option ids (" " + option)], label) per item."""
    from optiml.pipeline.vocab import OPTVocabulary

    vocab = OPTVocabulary()
    return [
        ((2, *vocab.encode(prompt)), [tuple(vocab.encode(" " + o)) for o in options], label)
        for prompt, options, label in items
    ]


def lm_eval_backend(model, batch: int, device: str = "cpu"):
    """lm-eval's HFLM around the transformers model. HFLM wants a tokenizer object; the
    requests carry their token ids, so a stand-in that only knows OPT's special ids will do."""
    import transformers
    from lm_eval.models.huggingface import HFLM
    from tokenizers import Tokenizer, models

    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(specials, unk_token="<unk>")),
        bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
    )  # fmt: skip
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, device=device)


def accuracy(scores: list[float], items) -> float:
    hits, start = 0, 0
    for _, options, label in items:
        hits += int(np.argmax(scores[start : start + len(options)])) == label
        start += len(options)
    return 100.0 * hits / len(items)


def compare(name: str, items, ours: inference.Inferencer, lm, repeats: int) -> None:
    """Scores every option of `items` ((prompt ids, [option ids], label)) with optiml and with
    lm-eval's backend `lm`; prints one-off costs, the steady state, the ratio and the check."""
    rows: list[inference.EvalExample] = []
    for prompt, options, _ in items:
        rows += [inference.EvalExample(len(rows) + k, prompt, o) for k, o in enumerate(options)]
    requests = [(("", ""), list(r.prompt), list(r.target)) for r in rows]
    positions = sum(len(r.prompt) + len(r.target) - 1 for r in rows)
    print(
        f"== {name}: {len(items)} items, {len(rows)} options; prompt "
        f"{np.mean([len(p) for p, _, _ in items]):.0f} tokens, option "
        f"{np.mean([len(r.target) for r in rows]):.1f} tokens (mean); {positions} positions "
        "without any sharing"
    )
    results: dict[str, list[float]] = {}

    def run_ours() -> None:
        results["optiml"] = ours.score_examples(rows)

    def run_theirs() -> None:
        out = lm._loglikelihood_tokens(requests, disable_tqdm=True)
        results["lm-eval"] = [ll for ll, _ in out]

    compiled = rank_scoring.score_branches._cache_size()
    print(f"one-off  optiml compile + first pass   {timing.once(run_ours):8.1f} s "
          f"({rank_scoring.score_branches._cache_size() - compiled} shapes compiled)")  # fmt: skip
    print(f"warm-up  lm-eval hf first pass         {timing.once(run_theirs):8.1f} s")
    runs = timing.interleaved({"optiml": run_ours, "lm-eval hf": run_theirs}, repeats)
    for r in runs.values():
        print(r.line("items", len(items)))
    print(timing.ratio_line(runs["optiml"], runs["lm-eval hf"], goal=1.5))
    diff = np.max(np.abs(np.subtract(results["optiml"], results["lm-eval"])))
    acc = {name: accuracy(scores, items) for name, scores in results.items()}
    print(
        f"max |log-likelihood difference| {diff:.1e}; accuracy optiml {acc['optiml']:.1f}, "
        f"lm-eval {acc['lm-eval']:.1f}"
    )


def random_model(size: str, dtype: str = "float32"):
    """(transformers OPTForCausalLM with random weights, the same weights as optiml params,
    optiml config), fp32 weights; `dtype` is optiml's compute dtype."""
    import torch
    import transformers

    config = opt.named_config(size, dtype=dtype, dropout=0.0)
    torch.manual_seed(0)
    hf_config = transformers.OPTConfig(**{**convert.hf_config_dict(config), "dropout": 0.0})
    model = transformers.OPTForCausalLM(hf_config).eval()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return model, jax.device_put(convert.hf_to_params(state.__getitem__, config)), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    loaders = {"piqa": piqa_items, "mmlu": mmlu_items, "mmlu5": mmlu5_items}
    counts = {"piqa": 200, "mmlu": 200, "mmlu5": 100}
    parser.add_argument("--tasks", nargs="+", default=list(loaders), choices=list(loaders))
    parser.add_argument("--items", type=int, default=0, help="items per task (0: 200/200/100)")
    parser.add_argument("--size", default="125m", choices=list(opt.SIZES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, params, config = random_model(args.size)
    print(
        f"OPT {args.size} random, fp32 ({param_count(config) / 1e6:.0f}M params); batch "
        f"{args.batch}; transformers attention {model.config._attn_implementation}; "
        + timing.header(torch.get_num_threads())
    )
    for name in args.tasks:
        ours = inference.Inferencer(params, config, batch_size=args.batch)
        lm = lm_eval_backend(model, args.batch)
        compare(name, tokenized(loaders[name](args.items or counts[name])), ours, lm, args.repeats)
    print(f"load at the end (1/5/15 min): {timing.load()}")


if __name__ == "__main__":
    main()
