"""Training-step speed: optiml's sharded JAX train step vs a transformers OPT step in torch.

    .venv/bin/python benchmarks/train_step.py [--size bench] [--batch 8] [--length 256]
        [--steps 5] [--dtype float32] [--threads 2] [--no_torch]

Both sides run the same model shape (random weights), the same [batch, length] token rows, the
loss on the same target tokens, dropout 0.1, AdamW (0.9, 0.95, weight decay 0.1) with clipping
at 1.0: optiml through `optiml.trainer`'s pieces (partitioner over the local devices, jit with
donation, fp32 AdamW state), torch through `OPTForCausalLM(...)` + `torch.optim.AdamW` (its
default attention, `--threads` threads). optiml's compile + first step and torch's first step
(its warm-up) are printed on their own lines; then `--steps` steps of each, interleaved
(`benchmarks/timing.py`: median, range, CPU time, load). Prints tokens/s of each, the ratio
(goal >= 1.0) and MFU: model FLOPs per token (`optiml.flops`, 6N + attention) x tokens/s over
the peak FLOP/s -- on a CPU the peak is measured here (the best of a few large fp32 matmuls
through XLA), on GPU/TPU it is the data-sheet bf16 peak (OPT-1.3B on a GPU, the paper's shapes:
`benchmarks/accelerator.py`).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import jax.numpy as jnp
import numpy as np
import timing  # noqa: E402  (benchmarks/timing.py)

from optiml import flops, optimizer, partitioning, train_step
from optiml.models import convert, opt
from optiml.models.params import param_count
from optiml.synthetic import SyntheticData

SIZES = {"bench": dict(hidden_size=256, num_layers=4, num_heads=4, ffn_dim=1024)}
RNG = jax.random.key(1)


def model_config(size: str, dtype: str) -> opt.OPTConfig:
    dims = SIZES.get(size) or opt.SIZES[size]
    return opt.OPTConfig(**dims, dtype=dtype, dropout=0.1)


def batches(config: opt.OPTConfig, batch: int, length: int, count: int) -> list[dict]:
    data = SyntheticData(length=length, vocab_size=config.vocab_size, max_prompt=length // 8)
    stream = data(batch_size=batch)
    return [next(stream) for _ in range(count)]


def optiml_step(config: opt.OPTConfig, rows: list[dict], remat: str) -> Callable[[], None]:
    """One optiml train step per call (partitioner over the local devices, jit with donation)."""
    config = config.replace(remat_policy=remat)
    partitioner = partitioning.Partitioner.create(partitioning.MeshConfig(data=-1))
    model = opt.OPTDecoder(config)
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(warmup_steps=1), 1000)
    init = functools.partial(train_step.init_train_state, model, tx)
    state, shardings = partitioner.init(init, jax.random.key(0))
    step = partitioner.jit(
        train_step.make_train_step(model),
        (shardings, partitioner.data_sharding, partitioner.replicated),
        (shardings, partitioner.replicated),
        donate_argnums=0,
    )
    size = rows[0]["decoder_input_tokens"].shape[0]
    arrays = [partitioner.global_batch(b, size) for b in rows]
    carry = {"state": state, "i": 0}

    def run() -> None:
        carry["state"], metrics = step(carry["state"], arrays[carry["i"] % len(arrays)], RNG)
        carry["i"] += 1
        jax.block_until_ready((carry["state"].params, metrics))

    return run


def time_optiml(config: opt.OPTConfig, rows: list[dict], steps: int, remat: str) -> float:
    """Seconds per optiml step after a compile and a warm-up step (`trainer_loop.py`'s floor)."""
    run = optiml_step(config, rows, remat)
    run(), run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) / steps


def torch_step(config: opt.OPTConfig, rows: list[dict], device: str = "cpu") -> Callable[[], None]:
    """One transformers OPTForCausalLM + torch.optim.AdamW step per call (fp32 weights and
    Adam; under bf16 autocast when `config.dtype` is bfloat16, as optiml computes)."""
    import contextlib

    import torch
    import transformers

    hf = transformers.OPTConfig(**convert.hf_config_dict(config))
    model = transformers.OPTForCausalLM(hf).to(device)
    model.train()
    bf16 = config.dtype == "bfloat16"
    adam = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.95), weight_decay=0.1)
    tensors = []
    for b in rows:
        # HF shifts labels itself: labels[t] is the target of input t-1; -100 = no loss.
        tokens = np.concatenate([b["decoder_input_tokens"][:, :1], b["decoder_target_tokens"]], 1)
        labels = np.where(b["decoder_loss_weights"] > 0, b["decoder_target_tokens"], -100)
        labels = np.concatenate([np.full_like(labels[:, :1], -100), labels], 1)
        pair = (torch.tensor(tokens[:, :-1]).long(), torch.tensor(labels[:, :-1]).long())
        tensors.append(tuple(t.to(device) for t in pair))
    count = [0]

    def run() -> None:
        tokens, labels = tensors[count[0] % len(tensors)]
        count[0] += 1
        autocast = torch.autocast(device, torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = model(input_ids=tokens, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        adam.step()
        adam.zero_grad(set_to_none=True)
        if device != "cpu":
            torch.cuda.synchronize()

    return run


def measured_peak_flops() -> float:
    """Best fp32 matmul FLOP/s through XLA on this host (the CPU's practical peak)."""
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="bench", help="bench (256 x 4 layers) or an OPT size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--remat", default="none", choices=sorted(opt.REMAT_POLICIES))
    parser.add_argument("--no_torch", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    config = model_config(args.size, args.dtype)
    rows = batches(config, args.batch, args.length, 4)
    tokens = args.batch * args.length
    per_token = flops.flops_per_token(config, args.length)
    peak = flops.peak_flops_per_device()
    peak_note = "data-sheet bf16 peak"
    if peak is None:
        peak, peak_note = measured_peak_flops(), "measured fp32 matmul peak"
    total_peak = peak * jax.local_device_count()
    print(
        f"OPT {args.size}: {param_count(config) / 1e6:.1f}M params, batch {args.batch} x "
        f"{args.length}, {args.dtype}, {per_token / 1e6:.1f} MFLOP/token; "
        f"{jax.local_device_count()} x {jax.devices()[0].device_kind}, "
        f"peak {total_peak / 1e9:.1f} GFLOP/s ({peak_note}); " + timing.header(args.threads)
    )

    ours = optiml_step(config, rows, args.remat)
    print(f"one-off  optiml compile + first step   {timing.once(ours):8.1f} s")
    contenders = {"optiml": ours}
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
        theirs = torch_step(config, rows)
        print(f"warm-up  torch first step              {timing.once(theirs):8.1f} s")
        contenders["torch"] = theirs
    runs = timing.interleaved(contenders, args.steps)
    for r in runs.values():
        mfu = r.rate(tokens) * per_token / total_peak
        print(f"{r.line('tok', tokens)}  MFU {mfu:6.1%}")
    if not args.no_torch:
        print(timing.ratio_line(runs["optiml"], runs["torch"], goal=1.0))
    print(f"load at the end (1/5/15 min): {timing.load()}")


if __name__ == "__main__":
    main()
