"""Hugging Face OPT folders in and out, one tensor at a time (names and layouts: convert.py).

    reader = HFReader("facebook-opt-1.3b/")       # config.json + safetensors / .bin, sharded or not
    params = convert.hf_to_params(reader.get, reader.config())
    write_hf(params, config, "out/", dtype="float16", tokenizer=OPTTokenizer.from_folder())

`write_hf` writes what `transformers` (5.x) reads without a warning: config.json with current keys
(`dtype`), generation_config.json (OPT's BOS 2, EOS 2, pad 1), the weights and, if given, the
tokenizer files. Source tensors are memory-mapped, so only one is in memory at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from optiml.models import opt
from optiml.models.convert import config_from_hf, hf_config_dict, params_to_hf, special_token_ids
from optiml.models.tokenizer import OPTTokenizer

# ---- reading --------------------------------------------------------------------


class HFReader:
    """`reader.get("model.decoder.layers.0.fc1.weight")` -> numpy, from any HF OPT folder layout
    (also OPTModel checkpoints whose keys lack the "model." prefix)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.folder}: no config.json (not an HF model folder)")
        self.hf_config = json.loads((self.folder / "config.json").read_text())
        self._handles: dict = {}
        weight_map = None
        for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (self.folder / index).is_file():
                weight_map = json.loads((self.folder / index).read_text())["weight_map"]
                break
        if weight_map is None:
            for single in ("model.safetensors", "pytorch_model.bin"):
                if (self.folder / single).is_file():
                    weight_map = {name: single for name in self._open(single).keys()}
                    break
        if weight_map is None:
            raise FileNotFoundError(
                f"{self.folder}: no model.safetensors, pytorch_model.bin or *.index.json"
            )
        self.weight_map = weight_map

    def _open(self, file: str):
        if file not in self._handles:
            path = self.folder / file
            if file.endswith(".safetensors"):
                from safetensors import safe_open

                handle = safe_open(str(path), framework="pt")
            else:
                from optiml.models.metaseq import torch_load

                handle = torch_load(path, lenient=False)
            self._handles[file] = handle
        return self._handles[file]

    def get(self, name: str) -> np.ndarray:
        from optiml.models.metaseq import to_numpy

        key = name if name in self.weight_map else name.removeprefix("model.")
        if key not in self.weight_map:
            raise KeyError(f"{self.folder}: the checkpoint has no tensor {name}")
        handle = self._open(self.weight_map[key])
        tensor = handle.get_tensor(key) if hasattr(handle, "get_tensor") else handle[key]
        return to_numpy(tensor)

    def config(self, **overrides) -> opt.OPTConfig:
        return config_from_hf(self.hf_config, str(self.folder / "config.json"), **overrides)


def write_hf(
    params: dict,
    config: opt.OPTConfig,
    folder: str | Path,
    dtype: str = "float32",
    max_shard_bytes: int = 5 * 2**30,
    tokenizer: OPTTokenizer | None = None,
) -> Path:
    """Writes config.json, generation_config.json (OPT's BOS 2 / EOS 2 / pad 1) and
    model.safetensors (or model-0000i-of-0000n.safetensors + index) that
    `OPTForCausalLM.from_pretrained(folder)` loads without a warning; tensors cast to `dtype`.
    With a `tokenizer`, also its HF files (vocab.json, merges.txt, ...) for `AutoTokenizer`."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch_dtype = getattr(torch, dtype)
    shards: list[dict] = [{}]
    sizes = [0]
    for name, value in params_to_hf(params, config):
        tensor = torch.from_numpy(np.ascontiguousarray(value, np.float32)).to(torch_dtype)
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and sizes[-1] + nbytes > max_shard_bytes:
            _save_shard(shards, folder, save_file)
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += nbytes
    names = _save_shard(shards, folder, save_file, last=True)
    if len(names) > 1:
        weight_map = {}
        for i, file_names in enumerate(names):
            final = f"model-{i + 1:05d}-of-{len(names):05d}.safetensors"
            (folder / f"shard-{i}.tmp").rename(folder / final)
            weight_map.update({n: final for n in file_names})
        index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    else:
        (folder / "shard-0.tmp").rename(folder / "model.safetensors")
    _write_json(folder / "config.json", hf_config_dict(config, dtype=dtype))
    _write_json(folder / "generation_config.json", special_token_ids(config))
    if tokenizer is not None:
        tokenizer.save_hf(folder)
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save_shard(shards: list[dict], folder: Path, save_file, last: bool = False):
    """Saves the newest shard to shard-{i}.tmp and frees it; returns every shard's names."""
    i = len(shards) - 1
    save_file(shards[i], str(folder / f"shard-{i}.tmp"), metadata={"format": "pt"})
    names = [list(s) for s in shards]
    shards[i] = dict.fromkeys(shards[i])  # keep the names, drop the tensors
    return names if last else None
