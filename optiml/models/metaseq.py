"""Reading metaseq OPT checkpoints (as released for OPT and OPT-IML) as HF-named tensors.

Two layouts:
- consolidated: one `.pt` whose "model" dict holds full tensors, e.g. `decoder.embed_tokens.weight`
  [50272, 2048], `decoder.layers.0.self_attn.q_proj.weight`, `decoder.layer_norm.weight`;
- model-parallel (Megatron): `reshard-model_part-0.pt` ... `-{N-1}.pt`, each with 1/N of the
  column-parallel tensors (q/k/v/fc1 weights+biases and embed_tokens, split on dim 0) and of the
  row-parallel weights (out_proj/fc2, split on dim 1); their biases, the LayerNorms and the
  positions are replicated. Attention may be fused per part as `self_attn.qkv_proj` stacked
  K, V, Q (metaseq's order, despite the name).
Names map to transformers' (`decoder.layer_norm` -> `final_layer_norm`, `project_in_dim` ->
`project_in`, ...). Files are memory-mapped; one merged tensor is built at a time. FSDP-flattened
shards (`flat_param_*`) must first be consolidated with metaseq's `stitch_fsdp_ckpt.py`.
"""

from __future__ import annotations

import pickle
import re
import types
from pathlib import Path

import numpy as np

from optiml.models import convert, opt

RENAMES = {
    "decoder.project_in_dim.weight": "decoder.project_in.weight",
    "decoder.project_out_dim.weight": "decoder.project_out.weight",
    "decoder.layer_norm.weight": "decoder.final_layer_norm.weight",
    "decoder.layer_norm.bias": "decoder.final_layer_norm.bias",
}
IGNORED = ("decoder.version", "decoder.output_projection.weight", "_float_tensor")
_PART = re.compile(r"model_part-(\d+)")


class _Stub:
    """Stands in for classes of a checkpoint's config (omegaconf, argparse) when unpickling."""

    def __init__(self, *args, **kwargs):
        self.state: dict = dict(kwargs)

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}

    def __call__(self, *args, **kwargs):
        return _Stub()


_SAFE_MODULES = ("torch", "collections", "numpy", "_codecs")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] in _SAFE_MODULES:
            return super().find_class(module, name)
        return _Stub  # never import or call anything else a checkpoint names


_lenient_pickle = types.SimpleNamespace(
    Unpickler=_Unpickler, load=lambda f, **kw: _Unpickler(f, **kw).load(), __name__="lenient"
)


def torch_load(path: Path, lenient: bool = True) -> dict:
    """torch.load, memory-mapped when the file is in the zip format (torch >= 1.6), tensors only
    unless `lenient`: then unknown classes (a checkpoint's config) load as inert stubs."""
    import torch

    def load(**kw):
        try:
            return torch.load(path, map_location="cpu", mmap=True, **kw)
        except RuntimeError as e:  # legacy (non-zip) format: cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", **kw)

    try:
        return load(weights_only=True)
    except pickle.UnpicklingError:
        if not lenient:
            raise
        return load(weights_only=False, pickle_module=_lenient_pickle)


def part_files(source: str | Path) -> list[Path]:
    """The checkpoint file(s): a `.pt` file, or a folder with one consolidated `.pt` or
    `*model_part-{i}.pt` parts (sorted by part number)."""
    source = Path(source)
    if source.is_file():
        files = [source]
        if _PART.search(source.name):  # a part file names its siblings
            stem = _PART.sub("model_part-*", source.name)
            files = list(source.parent.glob(stem))
    else:
        files = list(source.glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no metaseq checkpoint (*.pt) at {source}")
    parts = [f for f in files if _PART.search(f.name)]
    if parts:
        parts.sort(key=lambda f: int(_PART.search(f.name).group(1)))
        numbers = [int(_PART.search(f.name).group(1)) for f in parts]
        if numbers != list(range(len(parts))):
            raise ValueError(f"{source}: model parts {numbers} are not 0..{len(parts) - 1}")
        return parts
    if len(files) > 1:
        raise ValueError(f"{source}: several .pt files and no model_part-N names: {files}")
    return files


_CFG_KEYS = ("decoder_attention_heads", "dropout", "attention_dropout", "activation_fn")


def _model_cfg(checkpoint: dict) -> dict:
    """The model's hyper-parameters saved with the checkpoint: `cfg["model"]` (metaseq's
    omegaconf) or `args` (older fairseq Namespace), e.g. {"decoder_attention_heads": 32,
    "dropout": 0.1, "attention_dropout": 0.0, "activation_fn": "relu", ...}; {} if absent."""
    for holder in (checkpoint.get("cfg", {}) or {}, checkpoint):
        for key in ("model", "args"):
            node = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(node, _Stub):
                node = node.state
            elif node is not None and not isinstance(node, dict):
                node = vars(node)
            if isinstance(node, dict) and any(k in node for k in _CFG_KEYS):
                return node
    return {}


class MetaseqReader:
    """`reader.get(hf_name)` -> the full numpy tensor, merged over model-parallel parts."""

    def __init__(self, source: str | Path):
        self.files = part_files(source)
        checkpoints = [torch_load(f) for f in self.files]
        self.model_cfg = _model_cfg(checkpoints[0])
        self.parts = [c.get("model", c) for c in checkpoints]
        first = self.parts[0]
        if any(k.startswith("flat_param") or "flat_param_" in k for k in first):
            raise ValueError(
                f"{self.files[0]} holds FSDP-flattened shards (flat_param_*): consolidate them "
                "first with metaseq's metaseq/distributed/stitch_fsdp_ckpt.py"
            )
        self.names = {}  # HF name (model.decoder...) -> metaseq name
        for key in first:
            if any(key.endswith(s) for s in IGNORED):
                continue
            name = RENAMES.get(key, key)
            if ".qkv_proj." in name:
                for proj in ("q_proj", "k_proj", "v_proj"):
                    self.names["model." + name.replace("qkv_proj", proj)] = key
            else:
                self.names["model." + name] = key

    def _merge(self, key: str, dim: int | None):
        import torch

        tensors = [p[key] for p in self.parts]
        if dim is None or len(tensors) == 1:
            return tensors[0]
        return torch.cat(tensors, dim=dim)

    def _shape(self, name: str, split_dim: int | None = None) -> tuple[int, ...]:
        if name not in self.names:
            raise KeyError(f"{self.files[0]}: no tensor for {name}")
        shape = list(self.parts[0][self.names[name]].shape)
        if split_dim is not None:
            shape[split_dim] = sum(p[self.names[name]].shape[split_dim] for p in self.parts)
        return tuple(shape)

    def get(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(f"{self.files[0]}: no tensor for {name} (metaseq names: see RENAMES)")
        key = self.names[name]
        if ".qkv_proj." in key:  # per part [K; V; Q] stacked on dim 0
            which = {"k_proj": 0, "v_proj": 1, "q_proj": 2}[name.split(".")[-2]]
            pieces = [p[key].chunk(3, dim=0)[which] for p in self.parts]
            import torch

            value = torch.cat(pieces, dim=0)
        elif re.search(r"\.(fc1|q_proj|k_proj|v_proj)\.", key) or "embed_tokens" in key:
            value = self._merge(key, 0)  # column-parallel (and vocab-parallel embeddings)
        elif re.search(r"\.(fc2|out_proj)\.weight$", key):
            value = self._merge(key, 1)  # row-parallel weight
        else:
            value = self._merge(key, None)  # replicated
        return to_numpy(value)

    def config(self, **overrides) -> opt.OPTConfig:
        """The OPTConfig these tensors describe. Heads come from the checkpoint's cfg, from the
        published OPT size with this hidden size, or from `overrides["num_heads"]`; dropout and
        attention dropout from the cfg (else OPT's 0.1 / 0.0); an activation other than ReLU is
        refused (optiml's OPT computes ReLU)."""
        vocab, word_dim = self._shape("model.decoder.embed_tokens.weight", split_dim=0)
        positions, hidden = self._shape("model.decoder.embed_positions.weight")
        ffn = self._shape("model.decoder.layers.0.fc1.weight", split_dim=0)[0]
        layers = 1 + max(int(m.group(1)) for m in map(re.compile(r"layers\.(\d+)\.").search,
                                                        self.names) if m)  # fmt: skip
        cfg = self.model_cfg
        heads = cfg.get("decoder_attention_heads") or next(
            (s["num_heads"] for s in opt.SIZES.values() if s["hidden_size"] == hidden), None
        )
        convert.check_activation(
            cfg.get("activation_fn", "relu"),
            cfg.get("activation_dropout", 0.0),
            self.files[0],
            key="activation_fn",
        )
        fields = dict(
            vocab_size=vocab,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            ffn_dim=ffn,
            max_positions=positions - opt.POSITION_OFFSET,
            word_embed_proj_dim=None if word_dim == hidden else word_dim,
            do_layer_norm_before="model.decoder.final_layer_norm.weight" in self.names,
        )
        for key in ("dropout", "attention_dropout"):
            if cfg.get(key) is not None:
                fields[key] = float(cfg[key])
        fields.update(overrides)
        if not fields["num_heads"]:
            raise ValueError(
                f"{self.files[0]}: the number of attention heads is not in the checkpoint and "
                f"hidden size {hidden} is no published OPT size: pass --num_heads"
            )
        return opt.OPTConfig(**{**fields, "num_heads": int(fields["num_heads"])})


def to_numpy(tensor) -> np.ndarray:
    """A torch tensor as numpy (bfloat16 via ml_dtypes, bit-exact)."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()
