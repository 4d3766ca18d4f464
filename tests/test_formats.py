"""Any checkpoint from one path: format detection, compute dtypes, and a training run exported
straight to Hugging Face (`convert optiml-to-hf RUN_DIR`)."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest
import torch
import transformers
from opt_testing import PRE_LN, hf_model, params_of

from optiml import checkpointing, train_step
from optiml.models import convert, formats


@pytest.fixture(scope="module")
def model():
    return hf_model(PRE_LN, seed=11)


def _train_run(run, params_by_step: dict) -> None:
    """What `trainer.train` leaves: optiml_config.json and checkpoints/<step>/state."""
    convert.save_config(run, PRE_LN)
    saver = checkpointing.Checkpointer(run / "checkpoints", save_every=1, async_save=False)
    for step, params in params_by_step.items():
        state = train_step.TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1))
        saver.save(step, state, None, force=True)
    saver.close()


def test_detect_every_format(tmp_path, model):
    model.save_pretrained(tmp_path / "hf")
    convert.main(["hf-to-optiml", str(tmp_path / "hf"), str(tmp_path / "optiml")])
    _train_run(tmp_path / "run", {3: params_of(model, PRE_LN)})
    (tmp_path / "ms").mkdir()
    torch.save({"model": {}}, tmp_path / "ms" / "checkpoint.pt")
    assert formats.detect(tmp_path / "hf") == "hf"
    assert formats.detect(tmp_path / "optiml") == "optiml"
    for where in ("run", "run/checkpoints", "run/checkpoints/3"):
        assert formats.detect(tmp_path / where) == "train"
    assert formats.detect(tmp_path / "ms") == formats.detect(tmp_path / "ms/checkpoint.pt")
    assert formats.detect(tmp_path / "ms") == "metaseq"
    with pytest.raises(ValueError, match="not an OPT checkpoint"):
        formats.detect(tmp_path / "run" / "checkpoints" / "3" / "state")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        formats.detect(tmp_path / "nowhere")


def test_imports_compute_in_float32_unless_asked(tmp_path, model):
    model.save_pretrained(tmp_path / "hf")
    assert formats.read_config(tmp_path / "hf").dtype == "float32"
    assert formats.read_config(tmp_path / "hf", "bfloat16").dtype == "bfloat16"
    argv = ["hf-to-optiml", str(tmp_path / "hf"), str(tmp_path / "bf16")]
    convert.main(argv + ["--compute_dtype", "bfloat16"])
    saved = json.loads((tmp_path / "bf16" / "optiml_config.json").read_text())
    assert (saved["dtype"], saved["param_dtype"]) == ("bfloat16", "float32")
    params, config = formats.read(tmp_path / "hf")
    np.testing.assert_array_equal(
        params["embed_tokens"]["embedding"], params_of(model, PRE_LN)["embed_tokens"]["embedding"]
    )
    assert config == PRE_LN


def test_compute_dtype_is_in_the_cli_help(capsys):
    with pytest.raises(SystemExit):
        convert.main(["hf-to-optiml", "--help"])
    assert "default float32" in " ".join(capsys.readouterr().out.split())


def test_training_run_exports_directly(tmp_path, model):
    old = jax.tree.map(np.zeros_like, params_of(model, PRE_LN))
    _train_run(tmp_path / "run", {2: old, 4: params_of(model, PRE_LN)})
    convert.main(["optiml-to-hf", str(tmp_path / "run"), str(tmp_path / "hf")])
    exported = transformers.OPTForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, exported[name]), name
    convert.main(["optiml-to-hf", str(tmp_path / "run/checkpoints"), str(tmp_path / "hf2"),
                  "--step", "2"])  # fmt: skip
    exported = transformers.OPTForCausalLM.from_pretrained(tmp_path / "hf2").state_dict()
    assert not exported["model.decoder.layers.0.fc1.weight"].any()
    with pytest.raises(FileNotFoundError, match="step 3"):
        convert.main(["optiml-to-hf", str(tmp_path / "run"), str(tmp_path / "x"), "--step", "3"])


def test_a_run_without_its_config_names_the_file(tmp_path, model):
    _train_run(tmp_path / "run", {1: params_of(model, PRE_LN)})
    (tmp_path / "run" / "optiml_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="run/optiml_config.json missing"):
        formats.read(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["optiml-to-hf", str(tmp_path / "nowhere"), str(tmp_path / "x")])
    assert exit_info.value.code == 2


@pytest.mark.data
def test_tokenizer_files_travel_with_the_checkpoint(tmp_path, model, data_dir, monkeypatch):
    from optiml.models.tokenizer import OPTTokenizer

    model.save_pretrained(tmp_path / "hf")
    OPTTokenizer.from_folder(data_dir / "gpt2_bpe").save_hf(tmp_path / "hf")
    convert.main(["hf-to-optiml", str(tmp_path / "hf"), str(tmp_path / "optiml")])
    monkeypatch.delenv("OPTIML_DATA_DIR")  # the checkpoints' own files, not the data dir
    assert (tmp_path / "optiml" / "vocab.json").is_file()
    convert.main(["optiml-to-hf", str(tmp_path / "optiml"), str(tmp_path / "back")])
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert back("Hello, my dog")["input_ids"] == [2, 31414, 6, 127, 2335]
    assert formats.tokenizer_for(tmp_path / "back").encode(" yes") == [4420]
