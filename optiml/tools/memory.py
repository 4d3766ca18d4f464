"""How much memory each device needs to fine-tune an OPT model on a (data, fsdp, model) mesh.

Computed, not guessed: every parameter tensor of `optiml.models.opt.OPTDecoder` is read off the
model (`params.param_list`) with its shape and logical axes; `optiml.partitioning`'s rules (T5X's
standard rules, or the FSDP variant that also splits `embed` over `fsdp`) map the axes onto the
mesh; each tensor's per-device share is its shape divided, dimension by dimension (rounded up), by
the mesh axes it is split over. No devices or mesh objects are needed, so the numbers for a
512-chip slice come from a laptop:

    python -m optiml.tools.memory --size 30b --mesh data=1,fsdp=16,model=8 --batch 256 --length 2048

Across TPU slices the mesh takes MeshConfig's DCN sizes too (`fsdp=32,model=2,dcn_data=2`: each
axis is in-slice x across-slice devices); the table then adds the bytes each slice sends over
the data-centre network per step (`optiml.tools.dcn`).

Example, OPT-125m on mesh {data: 2, fsdp: 2, model: 2}: `embed_tokens` [50272, 768] has axes
(vocab, embed); standard rules put vocab on `model` -> [25136, 768] per device; FSDP rules also
put embed on `fsdp` -> [25136, 384] per device.

What is counted per device (fp32 = 4 bytes, bf16 = 2, bool = 1):
- parameters (param_dtype, fp32), their gradients (same dtype and sharding; twice with
  microbatches: the accumulator plus one microbatch's gradients), Adam's mu and nu (fp32,
  sharded like the parameters: optax state inherits their shardings);
- activations kept for the backward pass (compute dtype, bf16), an ESTIMATE from the block's
  structure in the spirit of Korthikanti et al. 2022 ("Reducing Activation Recomputation"):
  per layer the inputs of both LayerNorms and of both matmul groups, q/k/v, the attention
  probabilities (fp32 softmax output + its bf16 copy), the attention context, fc1's output and
  the ReLU output, and the dropout masks; tensors with a `heads`/`mlp` axis are split over
  `model`, all of them over the batch axes. With full remat (`remat_policy="full"`) only each
  block's input is kept, plus one block's activations while it is recomputed;
- the attention mask [b, 1, L, L] (bool) and the logits + log-softmax [b, L, vocab] (fp32);
- a workspace: the transient gradients of one block's backward pass (d attention probabilities
  and d scores in fp32, d fc1 and d ReLU outputs) and, with the FSDP rules, the buffers in
  which one layer's weights and the token embedding are all-gathered over `fsdp` (and their
  gradients before the reduce-scatter).
Activations, mask and logits are for one microbatch (`train(num_microbatches=m)` runs batch / m
rows at a time), so b = batch / m.
Checked against XLA (CPU, float32 compute, 8 fake devices): the argument bytes
equal parameters + Adam exactly (see tests), the saved activations per layer agree within 2%,
and XLA's total temporaries came out up to 15% (standard rules) or 30% (FSDP) above the
estimate (tpu_scripts/README.md has the table): fusion scratch and collective buffers are not
modelled, so keep 20-30% headroom.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from optiml.models.opt import SIZES, OPTConfig, named_config
from optiml.models.params import param_count, param_list
from optiml.partitioning import MESH_AXES, RULES
from optiml.validation import number

Axes = tuple[str | None, ...]
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One array (or `count` identical arrays, e.g. one per layer) with its logical axes."""

    name: str
    shape: tuple[int, ...]
    axes: Axes
    count: int = 1

    @property
    def size(self) -> int:
        return math.prod(self.shape) * self.count


@functools.cache
def param_tensors(config: OPTConfig) -> tuple[Tensor, ...]:
    """The decoder's parameters as the model declares them (`params.param_list` of its scanned
    form): one layer's tensors named `layers/*/...` with count=num_layers. OPT-125m:
    embed_tokens [50272, 768] (vocab, embed), layers/*/fc1/kernel [768, 3072] (embed, mlp) x 12."""
    out = []
    for p in param_list(config.replace(scan_layers=True)):
        if p.path[0] == "layers":
            name = "/".join(("layers/*", *p.path[1:]))
            out.append(Tensor(name, p.shape[1:], p.axes[1:], count=p.shape[0]))
        else:
            out.append(Tensor("/".join(p.path), p.shape, p.axes))
    return tuple(out)


def parse_mesh(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(whole mesh, its across-slice part) from in-slice and DCN sizes as in MeshConfig (missing
    axes are 1): "fsdp=16,model=8,dcn_data=2" -> ({"data": 2, "fsdp": 16, "model": 8},
    {"data": 2, "fsdp": 1, "model": 1})."""
    names = [*MESH_AXES, *(f"dcn_{a}" for a in MESH_AXES)]
    sizes = dict.fromkeys(names, 1)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in sizes or not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"mesh {text!r}: expected comma-separated AXIS=SIZE with AXIS in "
                f"{', '.join(names)} and SIZE >= 1, e.g. 'fsdp=16,model=8,dcn_data=2'; "
                f"bad item {item!r}"
            )
        sizes[name] = int(value)
    dcn = {a: sizes[f"dcn_{a}"] for a in MESH_AXES}
    return {a: sizes[a] * dcn[a] for a in MESH_AXES}, dcn


def mesh_split(axes: Axes, rules: str) -> tuple[tuple[str, ...], ...]:
    """Per dimension, the mesh axes it is split over, e.g. (vocab, embed) under "fsdp" ->
    (("model",), ("fsdp",)); flax applies the rules (first match wins, each mesh axis once)."""
    if rules not in RULES:
        raise ValueError(f"unknown rules {rules!r}; choose from {sorted(RULES)}")
    spec = nn.logical_to_mesh_axes(axes, RULES[rules])
    split = []
    for entry in tuple(spec) + (None,) * (len(axes) - len(spec)):
        split.append(() if entry is None else (entry,) if isinstance(entry, str) else tuple(entry))
    return tuple(split)


def local_shape(shape: Sequence[int], axes: Axes, mesh: Mapping[str, int], rules: str):
    """The shape one device holds: each dimension divided (rounded up) by its shards; e.g.
    [50272, 768] (vocab, embed), model=8, fsdp=16, rules "fsdp" -> (6284, 48)."""
    split = mesh_split(axes, rules)
    return tuple(
        -(-dim // math.prod(mesh[a] for a in names))
        for dim, names in zip(shape, split, strict=True)
    )


def local_size(tensor: Tensor, mesh: Mapping[str, int], rules: str) -> int:
    return math.prod(local_shape(tensor.shape, tensor.axes, mesh, rules)) * tensor.count


def uneven(tensor: Tensor, mesh: Mapping[str, int], rules: str) -> list[str]:
    """Dimensions whose size is not a multiple of their shard count (XLA pads those)."""
    out = []
    for dim, names, axis in zip(
        tensor.shape, mesh_split(tensor.axes, rules), tensor.axes, strict=True
    ):
        shards = math.prod(mesh[a] for a in names)
        if dim % shards:
            out.append(f"{tensor.name}: {axis} {dim} over {'x'.join(names)}={shards}")
    return out


def layer_activations(config: OPTConfig, batch: int, length: int) -> list[tuple[Tensor, int]]:
    """(tensor, bytes per element) saved for backward by one decoder block without remat."""
    b, s, h = batch, length, config.hidden_size
    a, d, f = config.num_heads, config.head_dim, config.ffn_dim
    act = jnp.dtype(config.dtype).itemsize
    hidden, heads = ("batch", "length", "embed"), ("batch", "length", "heads", "kv")
    scores = ("batch", "heads", "length", None)
    out = [
        (Tensor("block input (attention LayerNorm input)", (b, s, h), hidden), act),
        (Tensor("attention LayerNorm output", (b, s, h), hidden), act),
        (Tensor("q, k, v", (b, s, a, d), heads, count=3), act),
        (Tensor("attention probabilities (fp32 softmax)", (b, a, s, s), scores), 4),
        (Tensor("attention probabilities (compute dtype)", (b, a, s, s), scores), act),
        (Tensor("attention context (out_proj input)", (b, s, a, d), heads), act),
        (Tensor("MLP LayerNorm input", (b, s, h), hidden), act),
        (Tensor("MLP LayerNorm output (fc1 input)", (b, s, h), hidden), act),
        (Tensor("fc1 output, ReLU output", (b, s, f), ("batch", "length", "mlp"), count=2), act),
    ]
    if config.dropout > 0:
        out.append((Tensor("residual dropout masks", (b, s, h), hidden, count=2), 1))
    if config.attention_dropout > 0:
        out.append((Tensor("attention dropout mask", (b, a, s, s), scores), 1))
    return out


def backward_workspace(config: OPTConfig, batch: int, length: int) -> list[tuple[Tensor, int]]:
    """(tensor, bytes per element) alive only while one block's backward pass runs."""
    b, s, a, f = batch, length, config.num_heads, config.ffn_dim
    act = jnp.dtype(config.dtype).itemsize
    scores, mlp = ("batch", "heads", "length", None), ("batch", "length", "mlp")
    return [
        (Tensor("d attention probabilities, d scores", (b, a, s, s), scores, count=2), 4),
        (Tensor("d fc1 output, d ReLU output", (b, s, f), mlp, count=2), act),
    ]


def fsdp_gathered(config: OPTConfig, mesh: Mapping[str, int], rules: str) -> int:
    """Elements of one layer's weights plus the token embedding as they are after the all-gather
    over `fsdp` (0 when no tensor is split over `fsdp`)."""
    gathered = [t for t in param_tensors(config) if t.name.startswith("layers/")]
    gathered += [t for t in param_tensors(config) if t.name == "embed_tokens/embedding"]
    tensors = [dataclasses.replace(t, count=1) for t in gathered]
    split = [names for t in tensors for names in mesh_split(t.axes, rules)]
    if mesh["fsdp"] == 1 or not any("fsdp" in names for names in split):
        return 0
    return sum(local_size(t, {**mesh, "fsdp": 1}, rules) for t in tensors)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes per device, by kind; `total(remat)` adds them up."""

    params: int
    grads: int
    adam: int
    activations: int  # no remat: every block's saved activations
    activations_remat: int  # full remat: block inputs + one block recomputed
    logits: int  # logits + log-softmax (fp32) and the attention mask
    workspace: int  # one block's backward temporaries + FSDP all-gather buffers
    warnings: tuple[str, ...] = ()

    def total(self, remat: bool) -> int:
        acts = self.activations_remat if remat else self.activations
        return self.params + self.grads + self.adam + acts + self.logits + self.workspace


def estimate(
    config: OPTConfig,
    mesh: Mapping[str, int],
    rules: str,
    batch: int,
    length: int,
    microbatches: int = 1,
) -> Estimate:
    """Per-device bytes for one training step on `batch` rows of `length` tokens, run as
    `microbatches` accumulated microbatches of batch / microbatches rows."""
    rows = mesh["data"] * mesh["fsdp"]
    if microbatches < 1 or batch % (rows * microbatches):
        raise ValueError(
            f"batch {batch} is not divisible by data x fsdp x microbatches = "
            f"{rows} x {microbatches}"
        )
    batch //= microbatches
    if length > config.max_positions:
        raise ValueError(f"length {length} exceeds max_positions {config.max_positions}")
    params = param_tensors(config)
    param_bytes = jnp.dtype(config.param_dtype).itemsize
    weights = sum(local_size(t, mesh, rules) for t in params)
    layer = layer_activations(config, batch, length)
    per_layer = sum(local_size(t, mesh, rules) * nbytes for t, nbytes in layer)
    block_input, block_input_bytes = layer[0]
    saved_input = local_size(block_input, mesh, rules) * block_input_bytes
    logits = Tensor("logits", (batch, length, config.vocab_size), ("batch", "length", "vocab"))
    mask = Tensor("attention mask", (batch, 1, length, length), ("batch", None, "length", None))
    warnings = [w for t in params for w in uneven(t, mesh, rules)]
    warnings += [w for t, _ in layer for w in uneven(t, mesh, rules)]
    transient = backward_workspace(config, batch, length)
    workspace = sum(local_size(t, mesh, rules) * nbytes for t, nbytes in transient)
    workspace += fsdp_gathered(config, mesh, rules) * param_bytes * 2
    return Estimate(
        params=weights * param_bytes,
        grads=weights * param_bytes * (2 if microbatches > 1 else 1),
        adam=weights * 4 * 2,
        activations=per_layer * config.num_layers,
        activations_remat=saved_input * config.num_layers + per_layer,
        logits=local_size(logits, mesh, rules) * 4 * 2 + local_size(mask, mesh, rules),
        workspace=workspace,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def format_table(
    config: OPTConfig,
    mesh: Mapping[str, int],
    batch: int,
    length: int,
    rules: Sequence[str],
    microbatches: int = 1,
    dcn: Mapping[str, int] | None = None,
) -> str:
    """The per-device table (GiB) printed by the CLI, one column per rule set; across slices
    (`dcn`: the across-slice part of each of `mesh`'s axes) also the bytes on DCN."""
    from optiml.tools import dcn as dcn_traffic  # builds on this module

    estimates = {r: estimate(config, mesh, r, batch, length, microbatches) for r in rules}
    devices = math.prod(mesh.values())
    dcn = dcn or dict.fromkeys(MESH_AXES, 1)
    slices = math.prod(dcn.values())
    mesh_text = ",".join(f"{a}={mesh[a]}" for a in MESH_AXES)
    if slices > 1:
        across = ",".join(f"dcn_{a}={dcn[a]}" for a in MESH_AXES if dcn[a] > 1)
        mesh_text += f" = {slices} slices ({across}) of {devices // slices}"
    lines = [
        f"OPT {param_count(config):,} params, mesh {mesh_text} ({devices} devices), "
        f"batch {batch} x length {length} in {microbatches} microbatch(es) "
        f"({batch // (mesh['data'] * mesh['fsdp'] * microbatches)} rows per device at a time), "
        f"params {config.param_dtype}, activations {config.dtype}",
        f"{'GiB per device':<34}" + "".join(f"{r:>12}" for r in rules),
    ]
    rows = [
        ("parameters", lambda e: e.params),
        ("gradients", lambda e: e.grads),
        ("Adam mu + nu (fp32)", lambda e: e.adam),
        ("activations, no remat", lambda e: e.activations),
        ("activations, full remat", lambda e: e.activations_remat),
        ("logits + log-softmax + mask", lambda e: e.logits),
        ("backward + FSDP gather workspace", lambda e: e.workspace),
        ("TOTAL, no remat", lambda e: e.total(remat=False)),
        ("TOTAL, full remat", lambda e: e.total(remat=True)),
    ]
    for label, get in rows:
        lines.append(f"{label:<34}" + "".join(f"{get(estimates[r]) / GIB:>12.2f}" for r in rules))
    warnings = [
        f"warning ({r}): uneven split, padded: {w}" for r in rules for w in estimates[r].warnings
    ]
    if slices > 1:
        sent = {r: dcn_traffic.traffic(config, dcn, r, microbatches) for r in rules}
        lines.append(
            f"{'GiB each slice sends on DCN a step':<34}" + "".join(f"{r:>12}" for r in rules)
        )
        dcn_rows = [
            ("gradient reduction", lambda t: t.gradients),
            ("FSDP weight all-gathers", lambda t: t.weight_gathers),
            (
                "per device (/ devices per slice)",
                lambda t: (t.gradients + t.weight_gathers) / (devices // slices),
            ),
        ]
        for label, get in dcn_rows:
            lines.append(f"{label:<34}" + "".join(f"{get(sent[r]) / GIB:>12.2f}" for r in rules))
        warnings += [f"warning ({r}): {w}" for r in rules for w in sent[r].warnings]
    return "\n".join(lines + warnings)


def format_tensors(config: OPTConfig, mesh: Mapping[str, int], rules: str) -> str:
    """One line per parameter tensor: shape, logical axes, mesh axes, per-device shape."""
    lines = [f"{'tensor':<38}{'count':>6}  {'shape':<20}{'logical axes':<26}{rules + ' -> device'}"]
    for t in param_tensors(config):
        split = mesh_split(t.axes, rules)
        mesh_axes = ",".join("x".join(s) or "-" for s in split)
        local = local_shape(t.shape, t.axes, mesh, rules)
        axes = ",".join(a or "-" for a in t.axes)
        lines.append(
            f"{t.name:<38}{t.count:>6}  {str(list(t.shape)):<20}{axes:<26}"
            f"{mesh_axes} -> {list(local)}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from optiml.tools import kbit  # builds on this module

    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.memory",
        description="Per-device memory to fine-tune an OPT model on a (data, fsdp, model) mesh, "
        "and across TPU slices the bytes each slice sends on DCN per step.",
    )
    parser.add_argument("--size", required=True, choices=sorted(SIZES), help="OPT size, e.g. 30b")
    parser.add_argument(
        "--mesh",
        required=True,
        help="in-slice sizes, and across slices dcn_*, e.g. data=1,fsdp=16,model=8,dcn_data=2",
    )
    parser.add_argument("--batch", type=number(1), required=True, help="global batch (sequences)")
    parser.add_argument("--length", type=number(1), default=2048, help="tokens per sequence")
    parser.add_argument(
        "--microbatches", type=number(1), default=1, help="gradient accumulation steps per batch"
    )
    parser.add_argument(
        "--rules", default="standard,fsdp", help="comma-separated rule sets (standard, fsdp)"
    )
    parser.add_argument(
        "--tensors", action="store_true", help="also list every tensor's per-device shape"
    )
    args = parser.parse_args(argv)
    try:
        mesh, dcn = parse_mesh(args.mesh)
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        config = named_config(args.size)
        print(format_table(config, mesh, args.batch, args.length, rules, args.microbatches, dcn))
        print(kbit.format_rows(config, mesh, rules))
        if args.tensors:
            for r in rules:
                print()
                print(format_tensors(config, mesh, r))
    except ValueError as e:
        print(f"optiml.tools.memory: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
