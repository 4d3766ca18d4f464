"""OPT checkpoints in and out: Hugging Face <-> optiml <-> metaseq, tensor by tensor.

    python -m optiml.models.convert hf-to-optiml HF_DIR OUT_DIR [--scan_layers] \
        [--compute_dtype float32|bfloat16] [--param_dtype float32]
    python -m optiml.models.convert metaseq-to-optiml CKPT OUT_DIR [--size 30b | --num_heads N]
    python -m optiml.models.convert optiml-to-hf OPTIML_DIR_OR_TRAIN_RUN HF_DIR [--step N] \
        [--dtype float16]

HF folders (hf.py): config.json + model.safetensors or pytorch_model.bin, or their sharded
`*.index.json` form. metaseq (metaseq.py): a consolidated `.pt` or `reshard-model_part-{i}.pt`
parts; its saved cfg gives heads, dropout, attention dropout and the activation. optiml
checkpoints: a folder with `optiml_config.json` (the OPTConfig fields) and `params/`, an Orbax
PyTree checkpoint (ocp.StandardCheckpointer) of the unboxed param dict; `load_params` restores it,
onto given shardings if asked. A training run (formats.py) exports directly. Imports write the
compute dtype float32 into optiml_config.json unless `--compute_dtype` says otherwise, and keep
the HF folder's tokenizer files. Source tensors are memory-mapped and converted one at a time, so
only the converted model (plus one tensor) is ever in memory.

Names: HF `model.decoder.layers.3.self_attn.q_proj.weight` [out=H, in=H] <-> optiml
`layers_3/self_attn/q_proj/kernel` [H, heads, head_dim] (or `layers/...` [num_layers, ...] with
`scan_layers`). torch Linear weights are [out, in]; flax kernels are [in, out].
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optiml.models import opt
from optiml.models.params import param_list
from optiml.models.tokenizer import OPTTokenizer

CONFIG_FILE = "optiml_config.json"


@dataclass(frozen=True)
class Tensor:
    """One HF tensor and where it lives in the optiml tree."""

    hf_name: str  # e.g. "model.decoder.layers.0.fc1.weight"
    path: tuple[str, ...]  # e.g. ("layers_0", "fc1", "kernel") or ("layers", "fc1", "kernel")
    layer: int | None  # index on the stacked leading axis when scan_layers, else None
    hf_shape: tuple[int, ...]  # torch shape, e.g. (ffn_dim, hidden_size)
    linear: bool  # a torch Linear weight: transposed between the two layouts


HF_LEAF = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias"}


def torch_shape(shape: tuple[int, ...], axes: tuple[str | None, ...], linear: bool):
    """A param's torch shape: `heads` x `kv` is one dimension, and a Linear kernel [in, out]
    is [out, in]: q_proj [H, heads, head_dim] -> (H, H), fc1 [H, F] -> (F, H)."""
    dims: list[tuple[str | None, int]] = []
    for size, axis in zip(shape, axes, strict=True):
        if axis == "kv" and dims and dims[-1][0] == "heads":
            dims[-1] = ("heads", dims[-1][1] * size)
        else:
            dims.append((axis, size))
    sizes = tuple(size for _, size in dims)
    return sizes[::-1] if linear else sizes


def tensors(config: opt.OPTConfig) -> list[Tensor]:
    """Every parameter of the model (`params.param_list`) with its HF name and torch shape: the
    global ones, then layer by layer; `layers_3/self_attn/q_proj/kernel` (or `layers/...` with
    `scan_layers`) <-> `model.decoder.layers.3.self_attn.q_proj.weight`."""
    out, per_layer = [], []
    for p in param_list(config.replace(scan_layers=True)):
        in_layer = p.path[0] == "layers"
        shape, axes = (p.shape[1:], p.axes[1:]) if in_layer else (p.shape, p.axes)
        linear = p.path[-1] == "kernel"
        hf = ".".join((*p.path[int(in_layer) : -1], HF_LEAF[p.path[-1]]))
        spec = (hf, p.path[1:], torch_shape(shape, axes, linear), linear)
        if in_layer:
            per_layer.append(spec)
        else:
            out.append(Tensor(f"model.decoder.{hf}", p.path, None, spec[2], linear))
    for i in range(config.num_layers):
        for hf, sub, hf_shape, linear in per_layer:
            path, layer = (
                (("layers", *sub), i) if config.scan_layers else ((f"layers_{i}", *sub), None)
            )
            out.append(Tensor(f"model.decoder.layers.{i}.{hf}", path, layer, hf_shape, linear))
    return out


def _get(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def hf_to_params(
    get: Callable[[str], np.ndarray], config: opt.OPTConfig, dtype: str | None = None
) -> dict:
    """Builds the optiml param tree (numpy, `config.param_dtype`) by calling `get(hf_name)` once
    per tensor, so only the result and one source tensor are in memory at a time."""
    abstract = opt.abstract_params(config)
    params: dict = {}
    for t in tensors(config):
        target = _get(abstract, t.path)
        leaf_dtype = np.dtype(dtype) if dtype else target.dtype
        value = np.asarray(get(t.hf_name))
        if value.shape != t.hf_shape:
            raise ValueError(
                f"checkpoint tensor {t.hf_name} has shape {value.shape}, "
                f"config expects {t.hf_shape}: wrong --size/config?"
            )
        value = value.T if t.linear else value
        node = params
        for key in t.path[:-1]:
            node = node.setdefault(key, {})
        if t.layer is None:
            node[t.path[-1]] = value.reshape(target.shape).astype(leaf_dtype)
        else:
            if t.path[-1] not in node:
                node[t.path[-1]] = np.empty(target.shape, leaf_dtype)
            node[t.path[-1]][t.layer] = value.reshape(target.shape[1:])
    return params


def params_to_hf(params: dict, config: opt.OPTConfig) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (HF name, torch-layout numpy array) one tensor at a time (no lm_head: it is tied)."""
    for t in tensors(config):
        value = np.asarray(_get(params, t.path))
        if t.layer is not None:
            value = value[t.layer]
        if t.linear:
            yield t.hf_name, np.ascontiguousarray(value.reshape(t.hf_shape[::-1]).T)
        else:
            yield t.hf_name, value.reshape(t.hf_shape)


# ---- configs ---------------------------------------------------------------------------------


def hf_config_dict(config: opt.OPTConfig, dtype: str = "float32") -> dict:
    """The config.json that transformers' OPTForCausalLM reads for `config` (current keys:
    `dtype`, not the deprecated `torch_dtype`)."""
    return {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "ffn_dim": config.ffn_dim,
        "max_position_embeddings": config.max_positions,
        "word_embed_proj_dim": config.word_dim,
        "do_layer_norm_before": config.do_layer_norm_before,
        "_remove_final_layer_norm": False,
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": 0.0,
        "activation_function": "relu",
        "layerdrop": 0.0,
        "init_std": opt.INIT_STD,
        "enable_bias": True,
        "layer_norm_elementwise_affine": True,
        "tie_word_embeddings": True,
        "use_cache": True,
        "dtype": dtype,
        **special_token_ids(config),
    }


def special_token_ids(config: opt.OPTConfig) -> dict:
    """OPT's {"bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}: config.json and
    generation_config.json both carry them."""
    return {"bos_token_id": config.bos_id, "eos_token_id": config.eos_id,
            "pad_token_id": config.pad_id}  # fmt: skip


def check_activation(
    activation: str, activation_dropout: float, source: str | Path, key: str = "activation_function"
) -> None:
    """optiml's OPT computes ReLU with no dropout after it: refuse another activation (it would
    change every output); a non-zero activation dropout only matters for training: say so."""
    if activation != "relu":
        raise ValueError(f"{source}: {key}={activation!r} is not supported (OPT uses 'relu')")
    if activation_dropout:
        logging.warning(
            "%s: activation_dropout=%s is not modelled (optiml's OPT has no dropout after the "
            "ReLU); inference is unaffected, fine-tuning runs without it", source,
            activation_dropout,
        )  # fmt: skip


def config_from_hf(hf: dict, source: str = "config.json", **overrides) -> opt.OPTConfig:
    """OPTConfig from an HF OPT config dict (e.g. facebook/opt-1.3b's config.json)."""
    unsupported = {
        "enable_bias": (True, hf.get("enable_bias", True)),
        "layer_norm_elementwise_affine": (True, hf.get("layer_norm_elementwise_affine", True)),
        "_remove_final_layer_norm": (False, hf.get("_remove_final_layer_norm", False)),
    }
    for key, (want, got) in unsupported.items():
        if got != want:
            raise ValueError(f"{source}: {key}={got!r} is not supported (optiml needs {want!r})")
    check_activation(
        hf.get("activation_function", "relu"), hf.get("activation_dropout", 0.0), source
    )
    if hf.get("model_type", "opt") != "opt":
        raise ValueError(f"{source}: model_type {hf.get('model_type')!r} is not 'opt'")
    hidden = hf["hidden_size"]
    word_dim = hf.get("word_embed_proj_dim") or hidden
    fields = dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hidden,
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        ffn_dim=hf["ffn_dim"],
        max_positions=hf["max_position_embeddings"],
        word_embed_proj_dim=None if word_dim == hidden else word_dim,
        do_layer_norm_before=hf.get("do_layer_norm_before", True),
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        pad_id=hf.get("pad_token_id", 1),
        bos_id=hf.get("bos_token_id", 2),
        eos_id=hf.get("eos_token_id", 2),
    )
    return opt.OPTConfig(**{**fields, **overrides})


# ---- optiml checkpoints ----------------------------------------------------------------------


def save_config(folder: str | Path, config: opt.OPTConfig) -> Path:
    """folder/optiml_config.json: the OPTConfig fields (architecture, dtypes, dropout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return folder / CONFIG_FILE


def save_params(folder: str | Path, params: dict, config: opt.OPTConfig) -> Path:
    """Saves `params` (unboxed, numpy or jax) as an Orbax PyTree under folder/params and the
    config as folder/optiml_config.json."""
    import orbax.checkpoint as ocp

    folder = Path(folder).resolve()
    save_config(folder, config)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(folder / "params", params, force=True)
    checkpointer.wait_until_finished()
    return folder


def load_config(folder: str | Path) -> opt.OPTConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {folder} is not an optiml checkpoint")
    return opt.OPTConfig(**json.loads(path.read_text()))


def load_params(folder: str | Path, target=None) -> tuple[dict, opt.OPTConfig]:
    """(params, config) from `save_params`' folder. `target`: a pytree of
    jax.ShapeDtypeStruct (with shardings) to restore onto; default host numpy arrays."""
    import orbax.checkpoint as ocp

    folder = Path(folder).resolve()
    config = load_config(folder)
    target = opt.abstract_params(config) if target is None else target
    return ocp.StandardCheckpointer().restore(folder / "params", target), config


# ---- command line ----------------------------------------------------------------------------


DTYPES = ["float32", "bfloat16", "float16"]
COMPUTE_DTYPE_HELP = (
    "compute dtype written into optiml_config.json (default float32: logits as transformers "
    "computes them; bfloat16 differs by up to ~5e-3 and can change a greedy decode, but halves "
    "activation memory; optiml.lm.load(..., dtype=...) overrides it at load time)"
)


def main(argv: list[str] | None = None) -> None:
    from optiml.models import formats, hf

    parser = argparse.ArgumentParser(
        prog="python -m optiml.models.convert", description="Convert OPT checkpoints."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, source_help in (
        ("hf-to-optiml", "an HF OPT folder (config.json + weights)"),
        ("metaseq-to-optiml", "a metaseq .pt, a *model_part-0.pt, or a folder of them"),
    ):
        p = sub.add_parser(name, help=f"{source_help} -> an optiml checkpoint folder")
        p.add_argument("source", help=source_help)
        p.add_argument("output", help="the optiml checkpoint folder to write")
        p.add_argument("--scan_layers", action="store_true", help="stack layers (nn.scan)")
        p.add_argument("--param_dtype", default="float32", help="param dtype on disk")
        p.add_argument("--compute_dtype", default=formats.IMPORTED_COMPUTE_DTYPE,
                       choices=DTYPES, help=COMPUTE_DTYPE_HELP)  # fmt: skip
    p = sub.choices["metaseq-to-optiml"]
    p.add_argument("--size", choices=list(opt.SIZES), help="published size (checks shapes)")
    p.add_argument("--num_heads", type=int, help="needed if neither cfg nor size gives it")
    p = sub.add_parser("optiml-to-hf", help="an optiml checkpoint or training run -> HF folder")
    p.add_argument("source", help="an optiml checkpoint folder, or a training run directory "
                   "(its checkpoints/ or one checkpoints/<step>)")  # fmt: skip
    p.add_argument("output", help="the HF folder to write")
    p.add_argument("--step", type=int, help="training run: this step (default: the newest)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="tensor dtype on disk")
    p.add_argument("--max_shard_gb", type=float, default=5.0)
    args = parser.parse_args(argv)

    if args.command == "optiml-to-hf":
        try:
            kind = formats.detect(args.source)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        if kind not in ("optiml", "train"):
            parser.error(f"{args.source} is a {kind} checkpoint, not optiml or a training run")
        params, config = formats.read(args.source, step=args.step)
        tokenizer = formats.tokenizer_for(args.source, required=False)
        max_bytes = int(args.max_shard_gb * 2**30)
        hf.write_hf(params, config, args.output, args.dtype, max_bytes, tokenizer=tokenizer)
        note = "with" if tokenizer else "without (set $OPTIML_DATA_DIR for)"
        print(f"wrote {args.output} ({config.num_layers} layers, {args.dtype}, {note} tokenizer)")
        return
    overrides = dict(
        scan_layers=args.scan_layers, param_dtype=args.param_dtype, dtype=args.compute_dtype
    )
    if args.command == "hf-to-optiml":
        reader = hf.HFReader(args.source)
        config = reader.config(**overrides)
    else:
        from optiml.models.metaseq import MetaseqReader

        reader = MetaseqReader(args.source)
        if args.num_heads:
            overrides["num_heads"] = args.num_heads
        size = opt.SIZES[args.size] if args.size else {}
        config = reader.config(**{**size, **overrides})
    params = hf_to_params(reader.get, config)
    save_params(args.output, params, config)
    if args.command == "hf-to-optiml" and OPTTokenizer.has_files(args.source):
        OPTTokenizer.from_folder(args.source).save_hf(args.output)  # keeps the folder whole
    print(f"wrote {args.output}: {sum(x.size for x in _leaves(params)):,} params, {config}")


def _leaves(tree):
    for value in tree.values():
        yield from (_leaves(value) if isinstance(value, dict) else [value])


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
