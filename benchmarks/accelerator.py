"""The accelerator run, one GPU lease of about five minutes: OPT-1.3B training MFU with the
paper's recipe shapes, then scoring and greedy-decoding throughput against transformers on the
same GPU.

    PYTHONUNBUFFERED=1 python benchmarks/accelerator.py        # on the GPU: OPT-1.3B, bf16
    python benchmarks/accelerator.py --size tiny --dtype float32 --batch 2 --length 64 \\
        --steps 1 --score_items 4 --score_batch 2 --decode_batch 2 --prompt 8 --new_tokens 4
                                                               # the CPU smoke run of the tests

1. train: a random OPT-`--size` with `--dtype` compute and fp32 params and AdamW state (the
   paper's fp32 Adam, betas (0.9, 0.95), clip 1.0, dropout 0.1, §3.3; bf16 in place of its fp16
   with dynamic loss scaling), `--batch` rows per device of `--length` packed tokens (§3.2:
   2048-token packed sequences; 8 sequences per GPU, the 30B recipe's per-GPU batch). Prints
   tokens/s and MFU against the data-sheet bf16 peak (`optiml.flops`, goal >= 50%) of optiml,
   and of transformers' OPTForCausalLM + torch AdamW under bf16 autocast on the same rows.
2. scoring: PIQA-shaped rank classification with random ids (the data folder does not travel to
   the GPU machine): `--score_items` items of a 12..40-token prompt and two 8..40-token options,
   optiml's Inferencer vs lm-eval's hf backend (`benchmarks/eval.py`'s comparison).
3. decoding: greedy, `--decode_batch` prompts of `--prompt` tokens + `--new_tokens` new ones,
   optiml's `decoding.generate` vs transformers' `generate` (EOS off: every row runs to the end).
Each prints its one-off costs (compile, warm-up) on their own lines, then the steady state.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval as scoring  # noqa: E402  (benchmarks/eval.py)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402
import train_step as training  # noqa: E402  (benchmarks/train_step.py)

from optiml import flops  # noqa: E402
from optiml.evaluation import inference  # noqa: E402
from optiml.models import decoding, opt  # noqa: E402


def train(args: argparse.Namespace, device: str) -> None:
    config = training.model_config(args.size, args.dtype)
    rows = training.batches(config, args.batch * jax.local_device_count(), args.length, 4)
    tokens = rows[0]["decoder_input_tokens"].size
    per_token = flops.flops_per_token(config, args.length)
    peak = flops.peak_flops_per_device()
    peak = (peak or training.measured_peak_flops()) * jax.local_device_count()
    print(f"== train: OPT {args.size} {args.dtype}, {jax.local_device_count()} x "
          f"{jax.devices()[0].device_kind}, rows {len(rows[0]['decoder_input_tokens'])} x "
          f"{args.length}, remat {args.remat}, peak {peak / 1e12:.3g} TFLOP/s")  # fmt: skip
    ours = training.optiml_step(config, rows, args.remat)
    print(f"one-off  optiml compile + first step   {timing.once(ours):8.1f} s")
    theirs = training.torch_step(config, rows, device)
    print(f"warm-up  torch first step              {timing.once(theirs):8.1f} s")
    runs = timing.interleaved({"optiml": ours, "torch": theirs}, args.steps)
    for r in runs.values():
        print(f"{r.line('tok', tokens)}  MFU {r.rate(tokens) * per_token / peak:6.1%}")
    print(timing.ratio_line(runs["optiml"], runs["torch"], goal=1.0))


def synthetic_items(count: int, vocab: int, seed: int = 0):
    """PIQA-shaped items of random ids: (BOS + 12..40 prompt ids, [2 options of 8..40], 0)."""
    rng = np.random.default_rng(seed)

    def ids(low: int, high: int) -> tuple[int, ...]:
        return tuple(int(t) for t in rng.integers(4, vocab, int(rng.integers(low, high + 1))))

    return [((2, *ids(12, 40)), [ids(8, 40), ids(8, 40)], 0) for _ in range(count)]


def score_and_decode(args: argparse.Namespace, device: str) -> None:
    import torch

    model, params, config = scoring.random_model(args.size, args.dtype)
    if args.dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    model = model.to(device)
    ours = inference.Inferencer(params, config, batch_size=args.score_batch)
    lm = scoring.lm_eval_backend(model, args.score_batch, device)
    items = synthetic_items(args.score_items, config.vocab_size)
    scoring.compare(f"scoring, {args.dtype}", items, ours, lm, args.repeats)

    no_eos = config.replace(eos_id=-1)
    rng = np.random.default_rng(1)
    prompts = rng.integers(4, config.vocab_size, (args.decode_batch, args.prompt)).astype(np.int32)
    prompts[:, 0] = config.bos_id
    lengths = np.full((args.decode_batch,), args.prompt, np.int32)
    outputs = {}

    def our_decode() -> None:
        out = decoding.generate(params, no_eos, prompts, lengths, max_new_tokens=args.new_tokens)
        outputs["optiml"] = np.asarray(out)

    def torch_decode() -> None:
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor(prompts, dtype=torch.long, device=device),
                attention_mask=torch.ones(prompts.shape, dtype=torch.long, device=device),
                do_sample=False,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                eos_token_id=None,
                pad_token_id=1,
            )
        outputs["torch"] = out[:, args.prompt :].cpu().numpy()

    print(f"== greedy decoding, {args.dtype}: {args.decode_batch} prompts of {args.prompt} + "
          f"{args.new_tokens} tokens")  # fmt: skip
    print(f"one-off  optiml compile + first call   {timing.once(our_decode):8.1f} s")
    print(f"warm-up  transformers first call       {timing.once(torch_decode):8.1f} s")
    runs = timing.interleaved({"optiml": our_decode, "transformers": torch_decode}, args.repeats)
    for r in runs.values():
        print(r.line("tok", args.decode_batch * args.new_tokens))
    print(timing.ratio_line(runs["optiml"], runs["transformers"], goal=1.0))
    agree = np.mean(outputs["optiml"] == outputs["torch"])
    print(f"tokens equal to transformers': {agree:.1%} (in bf16, rounding may split near-ties)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1.3b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=8, help="training rows per device")
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--remat", default="dots_no_batch", choices=sorted(opt.REMAT_POLICIES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--score_items", type=int, default=512)
    parser.add_argument("--score_batch", type=int, default=32)
    parser.add_argument("--decode_batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "score"])
    args = parser.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__} on "
          f"{device}; " + timing.header(torch.get_num_threads()))  # fmt: skip
    if "train" not in args.skip:
        train(args, device)
    if "score" not in args.skip:
        score_and_decode(args, device)


if __name__ == "__main__":
    main()
