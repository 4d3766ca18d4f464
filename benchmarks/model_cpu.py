"""optiml's OPT vs transformers' OPTForCausalLM (torch) on this CPU, same config, weights, batch.

    python benchmarks/model_cpu.py [--config 125m] [--layers 4] [--batch 2] [--length 64]
        [--prompt 16] [--new_tokens 16] [--steps 2] [--threads 1]

Defaults (125m widths, 4 layers) finish in about a minute; `--layers 0` keeps all layers.

Prints tokens/s of both and the ratio optiml / torch for
- train: forward + backward (mean token cross-entropy, gradients for every parameter), fp32;
- decode: greedy KV-cache decoding of `new_tokens` after a `prompt`-token prompt (EOS disabled,
  so every row generates all tokens), fp32.
A ratio >= 1.0 means optiml is at least as fast. jit compile time is excluded (one warm-up call).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
_threads = argparse.ArgumentParser(add_help=False)
_threads.add_argument("--threads", type=int, default=0)
THREADS = _threads.parse_known_args()[0].threads
if THREADS == 1:  # XLA's CPU thread pool must be configured before jax starts
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    ).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from optiml.models import convert, decoding, opt  # noqa: E402
from optiml.models.params import param_count  # noqa: E402


def _timed(fn, steps: int) -> float:
    fn()  # warm-up (compiles)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="125m", choices=list(opt.SIZES))
    parser.add_argument("--layers", type=int, default=4, help="override num_layers (0: keep)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=64, help="train sequence length")
    parser.add_argument("--prompt", type=int, default=16, help="decode prompt length")
    parser.add_argument("--new_tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="1: single-threaded torch+XLA")
    args = parser.parse_args()

    if THREADS:
        torch.set_num_threads(THREADS)
    overrides = dict(dtype="float32", dropout=0.0)
    if args.layers:  # 0 keeps the published depth
        overrides["num_layers"] = args.layers
    config = opt.named_config(args.config, **overrides)
    hf_config = transformers.OPTConfig(**{**convert.hf_config_dict(config), "dropout": 0.0})
    hf_config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(hf_config)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    params = jax.device_put(convert.hf_to_params(state.__getitem__, config))
    print(
        f"config {args.config} ({param_count(config) / 1e6:.1f}M params, "
        f"{config.num_layers} layers), batch {args.batch}, CPU threads: torch "
        f"{torch.get_num_threads()}, jax devices {jax.device_count()}"
    )

    # ---- forward + backward
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, config.vocab_size, (args.batch, args.length + 1)).astype(np.int32)
    inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    decoder = opt.OPTDecoder(config)

    @jax.jit
    def grad_step(params):
        def loss(p):
            logits = decoder.apply({"params": p}, inputs)
            return -decoding.token_log_likelihoods(logits, targets).mean()

        return jax.value_and_grad(loss)(params)

    ours = _timed(lambda: jax.block_until_ready(grad_step(params)), args.steps)
    model.train()
    ids = torch.tensor(tokens[:, :-1], dtype=torch.long)
    labels = torch.tensor(tokens[:, 1:], dtype=torch.long)

    def torch_step():
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()

    theirs = _timed(torch_step, args.steps)
    n = args.batch * args.length
    print(
        f"train fwd+bwd  optiml {n / ours:9.1f} tok/s   torch {n / theirs:9.1f} tok/s   "
        f"ratio {theirs / ours:.2f}"
    )

    # ---- greedy decoding with the KV cache
    model.eval()
    no_eos = config.replace(eos_id=-1)
    prompts = tokens[:, : args.prompt].copy()
    prompts[:, 0] = config.bos_id
    lengths = np.full((args.batch,), args.prompt, np.int32)

    def our_decode():
        out = decoding.generate(params, no_eos, prompts, lengths, max_new_tokens=args.new_tokens)
        jax.block_until_ready(out)

    def torch_decode():
        with torch.no_grad():
            model.generate(
                input_ids=torch.tensor(prompts, dtype=torch.long),
                attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                do_sample=False,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                eos_token_id=None,
                pad_token_id=1,
            )

    ours = _timed(our_decode, args.steps)
    theirs = _timed(torch_decode, args.steps)
    n = args.batch * args.new_tokens
    print(
        f"greedy decode  optiml {n / ours:9.1f} tok/s   torch {n / theirs:9.1f} tok/s   "
        f"ratio {theirs / ours:.2f}"
    )


if __name__ == "__main__":
    main()
