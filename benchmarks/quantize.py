"""Weight-only k-bit inference against float32 and bfloat16: error, agreement, memory, speed.

    PYTHONPATH=. python benchmarks/quantize.py [--size 125m] [--params_dir CKPT] [--rows 32]

Model: `--params_dir` (an optiml checkpoint, e.g. one converted from Hugging Face, or a training
run's export) or random weights of the OPT `--size`. For every width (float32 reference,
bfloat16, int8, int4, fp4; blocks of 64):
- the bytes the placed weights actually hold (the device arrays' nbytes);
- logits on `--rows` random rows of 128 tokens: mean / max |error| vs float32 and top-1 agreement;
- greedy decoding of 32 tokens from 8 prompts: the share of tokens equal to float32's;
- scoring throughput (rows/s of `decoding.score`, compute in bfloat16 for every width, after a
  compiled warm-up pass, which is printed on its own line) and its ratio to bfloat16 weights.
Threads: XLA's default (all cores); state the machine's load when quoting.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from optiml.models import convert, decoding, opt, quantize

WIDTHS = ("float32", "bfloat16", "int8", "int4", "fp4")


def _load(args: argparse.Namespace) -> tuple[opt.OPTConfig, dict]:
    if args.params_dir:
        params, config = convert.load_params(args.params_dir)
        return config.replace(dtype="float32"), params
    config = opt.named_config(args.size, dtype="float32", dropout=0.0)
    return config, jax.device_get(opt.init_params(config, jax.random.key(0)))


def _variant(config: opt.OPTConfig, params: dict, width: str) -> tuple[opt.OPTConfig, dict]:
    if width in ("float32", "bfloat16"):
        cast = jax.tree.map(lambda x: jnp.asarray(x, width), params)
        return config, cast
    tree = quantize.quantize_params(params, width, 64, "bfloat16")  # the rest as bfloat16 does
    return config.replace(weights=width), jax.device_put(tree)


def _batch(config: opt.OPTConfig, rows: int, length: int) -> dict:
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, min(config.vocab_size, 50000), size=(rows, length + 1)).astype(
        np.int32
    )
    tokens[:, 0] = config.bos_id
    return {
        "decoder_input_tokens": tokens[:, :-1],
        "decoder_target_tokens": tokens[:, 1:],
        "decoder_loss_weights": np.ones((rows, length), np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="125m")
    parser.add_argument("--params_dir", default="")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    config, params = _load(args)
    print(f"model: {args.params_dir or 'random ' + args.size}, load {os.getloadavg()[0]:.1f}")
    batch = _batch(config, args.rows, args.length)
    prompts = batch["decoder_input_tokens"][:8, :16]
    lengths = np.full((8,), 16, np.int32)
    ref_logits = ref_greedy = None
    speed = {}
    apply = jax.jit(lambda p, t, c: opt.OPTDecoder(c).apply({"params": p}, t), static_argnums=2)
    for width in WIDTHS:
        cfg, placed = _variant(config, params, width)
        held = quantize.param_bytes(placed)
        logits = np.asarray(apply(placed, batch["decoder_input_tokens"], cfg))
        greedy = np.asarray(
            decoding.generate(placed, cfg, prompts, lengths, max_new_tokens=32, stop_at_eos=False)
        )
        if ref_logits is None:
            ref_logits, ref_greedy = logits, greedy
        error = np.abs(logits - ref_logits)
        top1 = float((logits.argmax(-1) == ref_logits.argmax(-1)).mean())
        agree = float((greedy == ref_greedy).mean())
        bf16 = cfg.replace(dtype="bfloat16")
        start = time.perf_counter()
        jax.block_until_ready(decoding.score(placed, bf16, batch))
        warm = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(decoding.score(placed, bf16, batch))
        speed[width] = 3 * args.rows / (time.perf_counter() - start)
        print(
            f"{width:>9}: {held / 2**20:9.1f} MiB held | logits mean|err| {error.mean():.2e} "
            f"max {error.max():.2e} top-1 {top1:.3f} | greedy agree {agree:.3f} | "
            f"score {speed[width]:7.1f} rows/s (warm-up + compile {warm:.1f} s)"
        )
    for width in ("int8", "int4", "fp4"):
        print(f"scoring speed {width} / bfloat16 weights: {speed[width] / speed['bfloat16']:.2f}x")


if __name__ == "__main__":
    main()
