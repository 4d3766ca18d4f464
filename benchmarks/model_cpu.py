"""optiml's OPT vs transformers' OPTForCausalLM (torch) on this CPU, same config, weights, batch.

    python benchmarks/model_cpu.py [--config 125m] [--layers 4] [--batch 2] [--length 64]
        [--prompt 16] [--new_tokens 16] [--repeats 5] [--threads 2]

Defaults (125m widths, 4 layers) finish in about a minute; `--layers 0` keeps all layers.

Prints tokens/s of both and the ratio optiml / torch for
- train: forward + backward (mean token cross-entropy, gradients for every parameter), fp32;
- decode: greedy KV-cache decoding of `new_tokens` after a `prompt`-token prompt (EOS disabled,
  so every row generates all tokens) vs `generate(do_sample=False)`, fp32.
A ratio >= 1.0 means optiml is at least as fast. optiml's compile (its first call) and torch's
first call (the warm-up) are printed on their own lines; the steady state is `--repeats` calls
of each, interleaved (`benchmarks/timing.py`), with the threads and the load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from optiml.models import convert, decoding, opt  # noqa: E402
from optiml.models.params import param_count  # noqa: E402


def _compare(what: str, ours, theirs, tokens: int, repeats: int) -> None:
    """One-off lines (our compile, their warm-up), then the interleaved steady state."""
    print(f"one-off  optiml {what} compile + first call {timing.once(ours):7.2f} s")
    print(f"warm-up  torch {what} first call            {timing.once(theirs):7.2f} s")
    runs = timing.interleaved({f"optiml {what}": ours, f"torch {what}": theirs}, repeats)
    for r in runs.values():
        print(r.line("tok", tokens))
    print(timing.ratio_line(runs[f"optiml {what}"], runs[f"torch {what}"], goal=1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="125m", choices=list(opt.SIZES))
    parser.add_argument("--layers", type=int, default=4, help="override num_layers (0: keep)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=64, help="train sequence length")
    parser.add_argument("--prompt", type=int, default=16, help="decode prompt length")
    parser.add_argument("--new_tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    overrides = dict(dtype="float32", dropout=0.0)
    if args.layers:  # 0 keeps the published depth
        overrides["num_layers"] = args.layers
    config = opt.named_config(args.config, **overrides)
    hf_config = transformers.OPTConfig(**{**convert.hf_config_dict(config), "dropout": 0.0})
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(hf_config)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    params = jax.device_put(convert.hf_to_params(state.__getitem__, config))
    print(
        f"config {args.config} ({param_count(config) / 1e6:.1f}M params, "
        f"{config.num_layers} layers), fp32, batch {args.batch}; transformers attention "
        f"{model.config._attn_implementation}; " + timing.header(torch.get_num_threads())
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

    ids = torch.tensor(tokens[:, :-1], dtype=torch.long)
    labels = torch.tensor(tokens[:, 1:], dtype=torch.long)

    def torch_step():
        model.train()
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()

    print(f"== forward + backward, {args.batch} x {args.length} tokens")
    _compare("fwd+bwd", lambda: jax.block_until_ready(grad_step(params)), torch_step,
             args.batch * args.length, args.repeats)  # fmt: skip

    # ---- greedy decoding with the KV cache
    no_eos = config.replace(eos_id=-1)
    prompts = tokens[:, : args.prompt].copy()
    prompts[:, 0] = config.bos_id
    lengths = np.full((args.batch,), args.prompt, np.int32)
    outputs = {}

    def our_decode():
        out = decoding.generate(params, no_eos, prompts, lengths, max_new_tokens=args.new_tokens)
        outputs["optiml"] = np.asarray(out)

    def torch_decode():
        model.eval()
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor(prompts, dtype=torch.long),
                attention_mask=torch.ones(prompts.shape, dtype=torch.long),
                do_sample=False,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                eos_token_id=None,
                pad_token_id=1,
            )
        outputs["torch"] = out[:, args.prompt :].numpy()

    print(f"== greedy decoding, {args.batch} prompts of {args.prompt} + {args.new_tokens} tokens")
    _compare("greedy", our_decode, torch_decode, args.batch * args.new_tokens, args.repeats)
    same = np.array_equal(outputs["optiml"], outputs["torch"])
    print(f"same tokens as transformers: {same}; load at the end (1/5/15 min): {timing.load()}")


if __name__ == "__main__":
    main()
