"""Scoring and decoding against transformers (fp32, eager attention) and against each other.

JAX matmuls run at precision "highest" so float32 is float32 on every backend.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from opt_testing import CONFIGS, hf_logits, hf_model, params_of

from optiml.models import decoding, opt, rank_scoring

jax.config.update("jax_default_matmul_precision", "highest")

LENGTHS = np.array([5, 9, 2])


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request):
    config = CONFIGS[request.param]
    model = hf_model(config, seed=3)
    return config, model, params_of(model, config)


def _prompts(config, lengths=LENGTHS, seed=0):
    """Right-padded prompts [B, max(lengths)] starting with BOS, padded with 1."""
    rng = np.random.default_rng(seed)
    tokens = np.full((len(lengths), max(lengths)), config.pad_id, np.int32)
    for row, n in enumerate(lengths):
        tokens[row, :n] = rng.integers(4, config.vocab_size, n)
        tokens[row, 0] = config.bos_id
    return tokens


def _left_padded(tokens, lengths):
    left = np.full_like(tokens, 1)
    mask = np.zeros_like(tokens)
    for row, n in enumerate(lengths):
        left[row, tokens.shape[1] - n :] = tokens[row, :n]
        mask[row, tokens.shape[1] - n :] = 1
    return left, mask


def test_score_matches_transformers_log_likelihoods(setup):
    config, model, params = setup
    tokens = _prompts(config, [12, 12], seed=1)
    weights = np.zeros((2, 11), np.float32)
    weights[0, 4:] = 1.0
    weights[1, 7:10] = 1.0
    batch = {
        "decoder_input_tokens": tokens[:, :-1],
        "decoder_target_tokens": tokens[:, 1:],
        "decoder_loss_weights": weights,
    }
    sums, counts = decoding.score(params, config, batch)
    logp = torch.log_softmax(torch.tensor(hf_logits(model, tokens[:, :-1])), -1).numpy()
    ll = np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(sums), (ll * weights).sum(-1), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(np.asarray(counts), [7.0, 3.0])
    extra = {**batch, "targets_pretokenized": np.array([b" yes", b" no"])}  # ignored
    np.testing.assert_array_equal(np.asarray(decoding.score(params, config, extra)[0]), sums)
    with pytest.raises(KeyError, match="decoder_loss_weights"):
        decoding.score(params, config, {k: v for k, v in batch.items() if "loss" not in k})


def test_prefill_logits_equal_full_forward(setup):
    config, _, params = setup
    prompts = _prompts(config)
    last, _, kv_mask = decoding.prefill(params, config, prompts, LENGTHS, 16)
    full = opt.OPTDecoder(config).apply({"params": params}, prompts)
    expected = np.asarray(full)[np.arange(3), LENGTHS - 1]
    np.testing.assert_allclose(np.asarray(last), expected, atol=1e-5, rtol=0)
    assert np.asarray(kv_mask).sum(1).tolist() == [5 + 7, 9 + 7, 2 + 7]


def test_tree_mask_lets_tokens_see_their_prefix_prompt_and_option():
    segments, prompts = (
        jnp.array([[0, 0, 0, 0, 0, 0, 1, -1]]),
        jnp.array([[0, 0, 1, 1, 1, 2, 3, 0]]),
    )
    branches = jnp.array([[0, 0, 0, 1, 2, 0, 0, 0]])
    mask = np.asarray(rank_scoring.tree_mask(segments, prompts, branches))[0, 0]
    assert mask.astype(int).tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0],  # the shared prefix (2 tokens)
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],  # prompt 1 sees the prefix and itself
        [1, 1, 1, 1, 0, 0, 0, 0],  # its option 1 sees prefix, prompt 1 and itself
        [1, 1, 1, 0, 1, 0, 0, 0],  # its option 2 does not see option 1
        [1, 1, 0, 0, 0, 1, 0, 0],  # prompt 2 sees the prefix, never prompt 1 or its options
        [0, 0, 0, 0, 0, 0, 1, 0],  # another segment sees only itself
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding: itself
    ]


def test_score_branches_equals_transformers_on_each_full_sequence(setup):
    """A prompt [2, a, b] with options (c, d) and (e,) in one row [2, a, b, c]: every target
    log-likelihood equals transformers' on the full sequences [2, a, b, c, d] and [2, a, b, e]."""
    config, model, params = setup
    rng = np.random.default_rng(4)
    prompt, first, second = (rng.integers(4, config.vocab_size, n).tolist() for n in (3, 2, 1))
    prompt[0] = config.bos_id
    row = np.array([prompt + first[:1]], np.int32)
    zeros = np.zeros((1, 4), np.int32)
    ll = rank_scoring.score_branches(
        params, config, row, np.array([[0, 1, 2, 3]]), zeros, zeros, np.array([[0, 0, 0, 1]]),
        np.array([[2, 3, 2]]), np.array([first + second]),
    )  # fmt: skip
    expected = []
    for option in (first, second):
        seq = np.array([prompt + option])
        logp = torch.log_softmax(torch.tensor(hf_logits(model, seq[:, :-1])), -1).numpy()[0]
        expected += [logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(option)]
    np.testing.assert_allclose(np.asarray(ll)[0], expected, atol=1e-5, rtol=0)


def _hf_generate(model, prompts, lengths, new, eos, **kw):
    left, mask = _left_padded(prompts, lengths)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(left, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=new,
            eos_token_id=eos,
            pad_token_id=1,
            **kw,
        )
    if isinstance(out, torch.Tensor):
        return out[:, prompts.shape[1] :].numpy()
    return out


def _pad_to(x, n):
    return np.pad(x, ((0, 0), (0, n - x.shape[1])), constant_values=1)


def test_greedy_equals_transformers_generate(setup):
    config, model, params = setup
    prompts = _prompts(config)
    ours = np.asarray(decoding.generate(params, config, prompts, LENGTHS, max_new_tokens=10))
    hf = _hf_generate(model, prompts, LENGTHS, 10, config.eos_id, do_sample=False)
    np.testing.assert_array_equal(ours, _pad_to(hf, 10))
    # make a token greedy actually emits the EOS: rows stop there (EOS kept, then padding)
    eos = int(ours[0, 3])
    stop = config.replace(eos_id=eos)
    ours = np.asarray(decoding.generate(params, stop, prompts, LENGTHS, max_new_tokens=10))
    hf = _hf_generate(model, prompts, LENGTHS, 10, eos, do_sample=False)
    np.testing.assert_array_equal(ours, _pad_to(hf, 10))
    first = list(ours[0]).index(eos)
    assert first <= 3 and set(ours[0, first + 1 :]) <= {1}


def test_greedy_last_token_without_a_forward_after_it(setup):
    """The model runs after each pick but the last: one new token is the prefill's argmax, and
    a loop left early because every row stopped still pads the rest, as transformers does."""
    config, model, params = setup
    prompts = _prompts(config)
    one = np.asarray(decoding.generate(params, config, prompts, LENGTHS, max_new_tokens=1))
    last, _, _ = decoding.prefill(params, config, prompts, LENGTHS, prompts.shape[1])
    np.testing.assert_array_equal(one[:, 0], np.argmax(np.asarray(last), axis=-1))
    np.testing.assert_array_equal(one, _hf_generate(model, prompts, LENGTHS, 1, config.eos_id,
                                                    do_sample=False))  # fmt: skip
    row, length = prompts[:1], LENGTHS[:1]
    eos = int(np.asarray(decoding.generate(params, config, row, length, max_new_tokens=4))[0, 2])
    ours = np.asarray(decoding.generate(params, config.replace(eos_id=eos), row, length,
                                        max_new_tokens=8))  # fmt: skip
    hf = _hf_generate(model, row, length, 8, eos, do_sample=False)
    np.testing.assert_array_equal(ours, _pad_to(hf, 8))
    first = list(ours[0]).index(eos)  # 2, or earlier if the row emits that token before
    assert first <= 2 and set(ours[0, first + 1 :]) == {config.pad_id}


@pytest.mark.slow
def test_greedy_with_scanned_layers_and_bf16_runs():
    config = CONFIGS["post_ln_350m"]
    params = params_of(hf_model(config), config)
    stacked = {k: v for k, v in params.items() if not k.startswith("layers_")}
    layers = [params[f"layers_{i}"] for i in range(config.num_layers)]
    stacked["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
    prompts = _prompts(config)
    loop = decoding.generate(params, config, prompts, LENGTHS, max_new_tokens=6)
    scan = decoding.generate(
        stacked, config.replace(scan_layers=True), prompts, LENGTHS, max_new_tokens=6
    )
    np.testing.assert_array_equal(np.asarray(loop), np.asarray(scan))
    bf16 = decoding.generate(params, config.replace(dtype="bfloat16"), prompts, LENGTHS,
                             max_new_tokens=6)  # fmt: skip
    assert bf16.shape == (3, 6)


def test_sampling_settings():
    config = CONFIGS["pre_ln"]
    params = params_of(hf_model(config), config)
    prompts = _prompts(config)
    kw = dict(max_new_tokens=8, rng=jax.random.key(7))
    greedy = decoding.generate(params, config, prompts, LENGTHS, max_new_tokens=8)
    top1 = decoding.generate(params, config, prompts, LENGTHS, temperature=1.0, top_k=1, **kw)
    np.testing.assert_array_equal(np.asarray(greedy), np.asarray(top1))
    a = decoding.generate(params, config, prompts, LENGTHS, temperature=1.5, top_p=0.9, **kw)
    b = decoding.generate(params, config, prompts, LENGTHS, temperature=1.5, top_p=0.9, **kw)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(greedy))
    with pytest.raises(ValueError, match="rng"):
        decoding.generate(params, config, prompts, LENGTHS, temperature=1.0, max_new_tokens=8)
    with pytest.raises(ValueError, match="at least its BOS"):
        decoding.generate(params, config, prompts, [5, 0, 2], max_new_tokens=8)
    with pytest.raises(ValueError, match="max_positions"):
        decoding.generate(params, config, prompts, LENGTHS, max_new_tokens=60)
    for search in (decoding.generate, functools.partial(decoding.beam_search, num_beams=2)):
        with pytest.raises(ValueError, match="max_new_tokens must be at least 1, got 0"):
            search(params, config, prompts, LENGTHS, max_new_tokens=0)  # was an IndexError


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keep = lambda **kw: np.isfinite(np.asarray(decoding._filter_logits(logits, **kw)))[0]  # noqa: E731
    assert keep(top_k=2, top_p=1.0).tolist() == [True, True, False, False]
    assert keep(top_k=0, top_p=0.7).tolist() == [True, True, False, False]
    assert keep(top_k=0, top_p=0.5).tolist() == [True, False, False, False]
    assert keep(top_k=0, top_p=0.96).tolist() == [True, True, True, True]


def test_beam_search_equals_transformers(setup):
    config, model, params = setup
    length_penalty = 1.0 if config.do_layer_norm_before else 0.0  # one setting per config
    prompts = _prompts(config)
    tokens, scores = decoding.beam_search(
        params, config, prompts, LENGTHS, num_beams=3, max_new_tokens=5,
        length_penalty=length_penalty,
    )  # fmt: skip
    out = _hf_generate(
        model, prompts, LENGTHS, 5, config.eos_id, do_sample=False, num_beams=3,
        num_return_sequences=3, early_stopping="never", length_penalty=length_penalty,
        return_dict_in_generate=True, output_scores=True,
    )  # fmt: skip
    hf_tokens = out.sequences[:, prompts.shape[1] :].numpy().reshape(3, 3, -1)
    np.testing.assert_array_equal(np.asarray(tokens), hf_tokens)
    np.testing.assert_allclose(
        np.asarray(scores), out.sequences_scores.numpy().reshape(3, 3), atol=1e-4, rtol=0
    )


def test_beam_search_of_one_token_equals_transformers():
    """max_new_tokens=1: the only selection runs after the loop, with no forward after it."""
    config = CONFIGS["pre_ln"]
    model = hf_model(config, seed=3)
    params, prompts = params_of(model, config), _prompts(config)
    tokens, _ = decoding.beam_search(params, config, prompts, LENGTHS, num_beams=3,
                                     max_new_tokens=1)  # fmt: skip
    out = _hf_generate(model, prompts, LENGTHS, 1, config.eos_id, do_sample=False, num_beams=3,
                       num_return_sequences=3, early_stopping="never")  # fmt: skip
    np.testing.assert_array_equal(np.asarray(tokens), out.reshape(3, 3, 1))
