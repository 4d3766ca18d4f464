"""The text API (`optiml.lm`) equals the array API (`decoding`) and transformers on the same
inputs: log-likelihoods and greedy flags, rolling windows, generation (with and without EOS),
any checkpoint format, compute dtype and mesh."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from opt_testing import REAL_VOCAB, hf_model, save_text_model

from optiml import lm
from optiml.models import convert, decoding
from optiml.partitioning import MeshConfig

pytestmark = pytest.mark.data  # the OPT tokenizer's files

CONFIG = REAL_VOCAB.replace(max_positions=48)
PAIRS = [
    ("Question: Is the sky blue? Answer:", " yes"),
    ("Question: Is the sky blue? Answer:", " no"),
    ("Answer: ", "maybe so"),  # the trailing space moves to the continuation
    ("", "Hello world"),  # no context: BOS alone
    ("Q:", ""),  # nothing to score
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data_dir):
    """A tiny random OPT with the real vocabulary, saved as an HF folder with its tokenizer."""
    return save_text_model(tmp_path_factory.mktemp("tiny_opt"), data_dir / "gpt2_bpe", CONFIG)


@pytest.fixture(scope="module")
def model(folder):
    return lm.load(folder)


def _hf_log_probs(folder, ids: list[int]) -> np.ndarray:
    import transformers

    hf = transformers.OPTForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].double().log_softmax(-1).numpy()


def test_encoding_follows_lm_eval(model):
    tok = model.tokenizer
    context, continuation = model.encode_pair("Answer: ", "maybe so")
    assert context == [2] + tok.encode("Answer:")
    assert continuation == tok.encode(" maybe so")
    assert model.encode_pair("", "Hello") == ([2], tok.encode("Hello"))


def test_loglikelihood_equals_the_array_api_and_transformers(model, folder):
    results = model.loglikelihood(PAIRS)
    assert results[-1] == (0.0, True)
    params = model.inferencer.params
    for (context, continuation), (score, greedy) in zip(PAIRS[:-1], results, strict=False):
        ctx, cont = model.encode_pair(context, continuation)
        ids = ctx + cont
        batch = {
            "decoder_input_tokens": np.array([ids[:-1]]),
            "decoder_target_tokens": np.array([ids[1:]]),
            "decoder_loss_weights": np.array([[0.0] * (len(ctx) - 1) + [1.0] * len(cont)]),
        }
        array_api = float(decoding.score(params, model.config, batch)[0][0])
        assert score == pytest.approx(array_api, abs=1e-5)
        log_probs = _hf_log_probs(folder, ids)[len(ctx) - 1 : -1]
        assert score == pytest.approx(log_probs[np.arange(len(cont)), cont].sum(), abs=1e-4)
        assert greedy == bool((log_probs.argmax(-1) == cont).all())


def test_rolling_windows_cover_every_token_once(model, folder):
    tok = model.tokenizer
    short, long = "A short text.", " ".join(f"word{i}" for i in range(50))
    ids = [2] + tok.encode(long)
    assert len(ids) > 2 * CONFIG.max_positions  # three windows of at most 47 scored tokens
    expected = []
    for text in (short, long):
        ids = [2] + tok.encode(text)
        total, step = 0.0, CONFIG.max_positions - 1
        for start in range(1, len(ids), step):  # window: 1 token of context, then up to 47
            window = ids[start - 1 : start + step]
            log_probs = _hf_log_probs(folder, window)[:-1]
            total += log_probs[np.arange(len(window) - 1), window[1:]].sum()
        expected.append(total)
    assert model.loglikelihood_rolling([short, long]) == pytest.approx(expected, abs=2e-4)
    short_ids = [2] + tok.encode(short)
    assert expected[0] == pytest.approx(
        _hf_log_probs(folder, short_ids)[np.arange(len(short_ids) - 1), short_ids[1:]].sum()
    )


@pytest.mark.slow
def test_generate_equals_the_array_api(model):
    prompts = ["Question: Is the sky blue? Answer:", "Hi"]
    texts = model.generate(prompts, max_new_tokens=10)
    for prompt, text in zip(prompts, texts, strict=True):
        ids = np.array([[2] + model.tokenizer.encode(prompt)])
        out = decoding.generate(model.inferencer.params, model.config, ids, [ids.shape[1]],
                                max_new_tokens=10)  # fmt: skip
        tokens = [int(t) for t in out[0] if t != model.config.pad_id]
        assert text == model.tokenizer.decode(tokens)
        word = text.split()[1]  # cut before the second word's first occurrence
        assert model.generate([prompt], 10, until=[word, "zzz"])[0] == text.split(word)[0]


@pytest.mark.slow
def test_eos_can_be_disabled(folder, tmp_path):
    """A model whose every position predicts EOS: eos=True stops at once, eos=False does not."""
    hf = hf_model(CONFIG, seed=4)
    with torch.no_grad():
        eos_row = hf.model.decoder.embed_tokens.weight[2]
        eos_row.mul_(10.0)
        hf.model.decoder.final_layer_norm.weight.zero_()
        hf.model.decoder.final_layer_norm.bias.copy_(eos_row)
    hf.save_pretrained(tmp_path)
    model = lm.load(tmp_path, tokenizer=lm.load(folder).tokenizer)
    assert model.generate_tokens([[2, 100]], max_new_tokens=5) == [[]]
    assert model.generate_tokens([[2, 100]], max_new_tokens=5, eos=False) == [[2] * 5]
    assert model.generate(["Hi"], 5, eos=False) == [""]  # EOS decodes to nothing


@pytest.mark.slow
def test_every_format_dtype_and_mesh_give_the_same_numbers(model, folder, tmp_path):
    expected = [s for s, _ in model.loglikelihood(PAIRS[:3])]
    convert.main(["hf-to-optiml", str(folder), str(tmp_path / "optiml")])
    from_optiml = lm.load(tmp_path / "optiml")
    assert from_optiml.config.dtype == "float32"
    assert [s for s, _ in from_optiml.loglikelihood(PAIRS[:3])] == pytest.approx(expected, abs=1e-5)
    sharded = lm.load(folder, mesh=MeshConfig(data=4, model=2), batch_size=4)
    assert [s for s, _ in sharded.loglikelihood(PAIRS[:3])] == pytest.approx(expected, abs=1e-5)
    half = lm.load(folder, dtype="bfloat16")
    assert half.config.dtype == "bfloat16"
    scores = [s for s, _ in half.loglikelihood(PAIRS[:3])]
    assert scores != expected and scores == pytest.approx(expected, abs=0.5)


@pytest.mark.slow
def test_from_params_and_bad_input(model):
    params = jax.device_get(model.inferencer.params)
    again = lm.from_params(params, model.config, model.tokenizer)
    (score, _), (expected, _) = again.loglikelihood(PAIRS[:1]) + model.loglikelihood(PAIRS[:1])
    assert score == pytest.approx(expected)
    with pytest.raises(ValueError, match="pair 0: an empty context"):
        model.score_tokens([([], [5])])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        lm.load("/nowhere")
