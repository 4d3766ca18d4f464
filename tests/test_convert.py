"""Checkpoint conversion: HF (safetensors / pytorch_model.bin, single and sharded) and metaseq
(consolidated and 2-part model-parallel, separate and fused qkv) into optiml, and back to HF
bit-identically. Fixtures are tiny random transformers models written offline."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest
import torch
import transformers
from opt_testing import CONFIGS, hf_model, params_of
from safetensors.torch import load_file

from optiml.models import convert, hf


def _assert_trees_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_trees_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def _hf_tensors(folder) -> dict:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("scan", [False, True])
def test_hf_to_optiml_to_hf_is_bit_identical(tmp_path, name, scan):
    config = CONFIGS[name]
    model = hf_model(config, seed=5)
    model.save_pretrained(tmp_path / "hf")
    argv = ["hf-to-optiml", str(tmp_path / "hf"), str(tmp_path / "optiml")]
    convert.main(argv + (["--scan_layers"] if scan else []))
    convert.main(["optiml-to-hf", str(tmp_path / "optiml"), str(tmp_path / "back")])

    original, back = _hf_tensors(tmp_path / "hf"), _hf_tensors(tmp_path / "back")
    original.pop("lm_head.weight", None)  # tied to embed_tokens
    assert original.keys() == back.keys()
    for key in original:
        assert torch.equal(original[key], back[key]), key
    reloaded = transformers.OPTForCausalLM.from_pretrained(tmp_path / "back").eval()
    theirs = reloaded.state_dict()
    assert model.state_dict().keys() == theirs.keys()
    for k, a in model.state_dict().items():
        assert torch.equal(a, theirs[k]), k
    params, loaded_config = convert.load_params(tmp_path / "optiml")
    assert loaded_config == config.replace(scan_layers=scan, dropout=0.0, dtype="float32")
    if not scan:
        _assert_trees_equal(params, params_of(model, config))


def _save_bin(state: dict, folder, shards: int, legacy: bool = False) -> None:
    """pytorch_model.bin (legacy: torch's pre-1.6 non-zip format, not memory-mappable), or
    `shards` files + pytorch_model.bin.index.json."""
    names = list(state)
    if shards == 1:
        zip_format = not legacy
        torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
        return
    weight_map = {}
    size = -(-len(names) // shards)
    for i, chunk in enumerate(names[j : j + size] for j in range(0, len(names), size)):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: state[n] for n in chunk}, folder / file)
        weight_map.update({n: file for n in chunk})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    "layout", ["sharded_safetensors", "bin", "legacy_bin", "sharded_bin", "opt_model"]
)
def test_hf_layouts_read_the_same_params(tmp_path, layout):
    config = CONFIGS["post_ln_350m"]
    model = hf_model(config, seed=6)
    folder = tmp_path / layout
    if layout == "sharded_safetensors":
        model.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").is_file()
    else:
        folder.mkdir()
        model.config.to_json_file(folder / "config.json")
        state = {k: v.clone() for k, v in model.state_dict().items()}
        if layout == "opt_model":  # OPTModel checkpoints: "decoder.*" keys, no lm_head
            state = {k.removeprefix("model."): v for k, v in state.items() if "lm_head" not in k}
        shards = 3 if layout == "sharded_bin" else 1
        _save_bin(state, folder, shards, legacy=layout == "legacy_bin")
    reader = hf.HFReader(folder)
    assert reader.config(dropout=0.0, dtype="float32") == config
    _assert_trees_equal(convert.hf_to_params(reader.get, config), params_of(model, config))


def _metaseq_state(model) -> dict:
    renames = {v: k for k, v in convert_metaseq_renames().items()}
    state = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        key = key.removeprefix("model.")
        state[renames.get(key, key)] = value.clone()
    state["decoder.version"] = torch.tensor([3.0])
    state["decoder.output_projection.weight"] = state["decoder.embed_tokens.weight"]
    return state


def convert_metaseq_renames() -> dict:
    from optiml.models import metaseq

    return metaseq.RENAMES


def _model_parallel(state: dict, parts: int, fused: bool) -> list[dict]:
    """Megatron split of a consolidated metaseq state dict."""
    out = [{} for _ in range(parts)]
    for key, value in state.items():
        if any(f".{p}." in key for p in ("q_proj", "k_proj", "v_proj", "fc1")) or (
            "embed_tokens" in key or "output_projection" in key
        ):
            pieces = value.chunk(parts, dim=0)
        elif key.endswith(("fc2.weight", "out_proj.weight")):
            pieces = value.chunk(parts, dim=1)
        else:
            pieces = [value] * parts
        for i in range(parts):
            out[i][key] = pieces[i].clone()
    if fused:
        for part in out:
            for key in [k for k in part if ".q_proj." in k]:
                q = part.pop(key)
                k = part.pop(key.replace("q_proj", "k_proj"))
                v = part.pop(key.replace("q_proj", "v_proj"))
                part[key.replace("q_proj", "qkv_proj")] = torch.cat([k, v, q], dim=0)
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_metaseq_consolidated_with_cfg(tmp_path, name):
    config = CONFIGS[name]
    model = hf_model(config, seed=7)
    cfg = {"model": argparse.Namespace(decoder_attention_heads=config.num_heads)}
    torch.save({"model": _metaseq_state(model), "cfg": cfg}, tmp_path / "consolidated.pt")
    convert.main(["metaseq-to-optiml", str(tmp_path / "consolidated.pt"), str(tmp_path / "out")])
    params, loaded = convert.load_params(tmp_path / "out")
    # this cfg carries no dropout: OPT's 0.1; imports compute in float32
    assert loaded == config.replace(dropout=0.1, dtype="float32")
    _assert_trees_equal(params, params_of(model, config))


@pytest.mark.parametrize("fused", [False, True])
def test_metaseq_model_parallel_parts(tmp_path, fused):
    config = CONFIGS["pre_ln"]
    model = hf_model(config, seed=8)
    for i, part in enumerate(_model_parallel(_metaseq_state(model), 2, fused)):
        torch.save({"model": part}, tmp_path / f"reshard-model_part-{i}.pt")
    with pytest.raises(ValueError, match="--num_heads"):
        convert.main(["metaseq-to-optiml", str(tmp_path), str(tmp_path / "out")])
    first = str(tmp_path / "reshard-model_part-0.pt")
    convert.main(["metaseq-to-optiml", first, str(tmp_path / "out"), "--num_heads", "4"])
    params, loaded = convert.load_params(tmp_path / "out")
    assert loaded.num_heads == 4 and loaded.num_layers == config.num_layers
    _assert_trees_equal(params, params_of(model, config))


def test_export_bfloat16_sharded_loads_in_transformers(tmp_path):
    config = CONFIGS["pre_ln"]
    model = hf_model(config, seed=9)
    params = params_of(model, config)
    hf.write_hf(params, config, tmp_path / "bf16", dtype="bfloat16", max_shard_bytes=8000)
    assert (tmp_path / "bf16" / "model.safetensors.index.json").is_file()
    reloaded = transformers.OPTForCausalLM.from_pretrained(tmp_path / "bf16")
    theirs = reloaded.state_dict()
    for k, a in model.state_dict().items():
        assert theirs[k].dtype == torch.bfloat16 and torch.equal(a.to(torch.bfloat16), theirs[k]), k


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf.HFReader(tmp_path)
    config = CONFIGS["pre_ln"]
    model = hf_model(config)
    model.save_pretrained(tmp_path / "hf")
    reader = hf.HFReader(tmp_path / "hf")
    with pytest.raises(ValueError, match="embed_tokens.weight has shape"):
        convert.hf_to_params(reader.get, config.replace(vocab_size=100))
    with pytest.raises(ValueError, match="activation_function='gelu' is not supported"):
        convert.config_from_hf({**convert.hf_config_dict(config), "activation_function": "gelu"})
    with pytest.raises(FileNotFoundError, match="optiml_config.json"):
        convert.load_params(tmp_path / "hf")


def test_conversion_modules_do_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, optiml.models.convert, optiml.models.decoding, optiml.models.formats; " \
        "print('tensorflow' in sys.modules or 'seqio' in sys.modules)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("cfg", "want"),
    [
        ({"dropout": 0.0, "attention_dropout": 0.05, "activation_fn": "relu"}, (0.0, 0.05)),
        ({"dropout": 0.2}, (0.2, 0.0)),  # attention dropout absent: OPT's 0.0
    ],
)
def test_metaseq_import_keeps_the_checkpoint_cfg(tmp_path, cfg, want):
    config = CONFIGS["pre_ln"]
    model = hf_model(config, seed=10)
    cfg = {"model": {"decoder_attention_heads": config.num_heads, **cfg}}
    torch.save({"model": _metaseq_state(model), "cfg": cfg}, tmp_path / "checkpoint.pt")
    convert.main(["metaseq-to-optiml", str(tmp_path / "checkpoint.pt"), str(tmp_path / "out")])
    loaded = convert.load_config(tmp_path / "out")
    assert (loaded.dropout, loaded.attention_dropout) == want
    convert.main(["optiml-to-hf", str(tmp_path / "out"), str(tmp_path / "hf")])
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (exported["dropout"], exported["attention_dropout"]) == want
    assert exported["activation_function"] == "relu"


def test_metaseq_refuses_another_activation(tmp_path):
    config = CONFIGS["pre_ln"]
    cfg = {"model": {"decoder_attention_heads": 4, "activation_fn": "gelu"}}
    torch.save({"model": _metaseq_state(hf_model(config)), "cfg": cfg}, tmp_path / "gelu.pt")
    with pytest.raises(ValueError, match=r"gelu.pt: activation_fn='gelu' is not supported"):
        convert.main(["metaseq-to-optiml", str(tmp_path / "gelu.pt"), str(tmp_path / "out")])


def test_export_writes_current_keys_and_generation_config(tmp_path, caplog):
    config = CONFIGS["pre_ln"]
    hf.write_hf(params_of(hf_model(config), config), config, tmp_path, dtype="bfloat16")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["dtype"] == "bfloat16" and "torch_dtype" not in written
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}
    transformers.logging.enable_propagation()
    transformers.logging.set_verbosity_warning()
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as python_warnings:
        warnings.simplefilter("always")
        model = transformers.OPTForCausalLM.from_pretrained(tmp_path)
        loaded = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert [r.getMessage() for r in caplog.records if r.levelname != "INFO"] == []
    assert [str(w.message) for w in python_warnings] == []
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (2, 2, 1)
    assert model.generation_config.eos_token_id == 2
