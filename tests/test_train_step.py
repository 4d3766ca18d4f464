"""The loss (target tokens only, per-token or per-document normalisation, z-loss), microbatch
accumulation, and the eval step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import BATCH, synthetic, tiny_config

from optiml import optimizer, train_step
from optiml.models.opt import OPTDecoder


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _packed_example():
    """Two rows; row 0 holds documents 1 (2 target tokens) and 2 (1 target token) + padding."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 5)).astype(np.float32)
    batch = {
        "decoder_target_tokens": np.array([[3, 4, 2, 4, 2, 1], [4, 3, 3, 2, 1, 1]], np.int32),
        "decoder_loss_weights": np.array([[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]], np.float32),
        "decoder_segment_ids": np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0]], np.int32),
    }
    logp = _log_softmax(logits.astype(np.float64))
    ce = -np.take_along_axis(logp, batch["decoder_target_tokens"][..., None], -1)[..., 0]
    lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    return logits, batch, ce, lse


def test_token_normalisation_is_the_mean_over_target_tokens():
    logits, batch, ce, lse = _packed_example()
    w = batch["decoder_loss_weights"]
    sums = train_step.loss_sums(jnp.asarray(logits), batch)
    metrics = train_step.summarize(sums)
    np.testing.assert_allclose(metrics["loss"], (w * ce).sum() / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(metrics["cross_entropy"], (w * ce).sum() / 5, rtol=1e-6)
    correct = logits.argmax(-1) == batch["decoder_target_tokens"]
    np.testing.assert_allclose(metrics["accuracy"], (w * correct).sum() / 5, rtol=1e-6)
    assert float(metrics["tokens"]) == 5.0
    z = train_step.summarize(train_step.loss_sums(jnp.asarray(logits), batch, z_loss=1e-2))
    expected = (w * (ce + 1e-2 * lse**2)).sum() / w.sum()
    np.testing.assert_allclose(z["loss"], expected, rtol=1e-6)
    np.testing.assert_allclose(z["cross_entropy"], metrics["cross_entropy"], rtol=1e-6)


def test_sequence_normalisation_averages_documents():
    logits, batch, ce, _ = _packed_example()
    doc_losses = [
        (ce[0, 1] + ce[0, 2]) / 2,  # row 0, document 1
        ce[0, 4],  # row 0, document 2
        (ce[1, 2] + ce[1, 3]) / 2,  # row 1, document 1
    ]
    sums = train_step.loss_sums(jnp.asarray(logits), batch, normalization="sequence")
    assert float(sums["denominator"]) == 3.0
    np.testing.assert_allclose(train_step.summarize(sums)["loss"], np.mean(doc_losses), rtol=1e-6)


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_a_nan_weight_poisons_the_loss(normalization):
    logits, batch, _, _ = _packed_example()
    batch["decoder_loss_weights"][0, 1] = np.nan
    sums = train_step.loss_sums(jnp.asarray(logits), batch, normalization=normalization)
    assert np.isnan(float(train_step.summarize(sums)["loss"]))


def test_unknown_normalisation_is_rejected():
    logits, batch, _, _ = _packed_example()
    with pytest.raises(ValueError, match="'batch'"):
        train_step.loss_sums(jnp.asarray(logits), batch, normalization="batch")


def _autodiff_token_losses(logits, targets):
    """The textbook loss that `token_losses` must reproduce: (cross-entropy, logsumexp)."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    return lse - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0], lse


@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
def test_token_losses_values_and_gradients_equal_autodiff(z_loss):
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(3, 7, 37)) * 3, jnp.float32)
    targets = jnp.asarray(rng.integers(0, 37, (3, 7)), jnp.int32)
    w = jnp.asarray(rng.integers(0, 2, (3, 7)), jnp.float32)

    def total(fn, x):
        ce, lse = fn(x, targets)[:2]
        return jnp.sum(w * (ce + z_loss * lse**2))

    ours, grad = jax.value_and_grad(lambda x: total(train_step.token_losses, x))(logits)
    ref, ref_grad = jax.value_and_grad(lambda x: total(_autodiff_token_losses, x))(logits)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-7, rtol=1e-6)
    _, _, correct = train_step.token_losses(logits, targets)
    np.testing.assert_array_equal(correct, jnp.argmax(logits, -1) == targets)


def test_token_losses_keep_the_logits_dtype_and_count_a_tie_as_correct():
    logits = jnp.zeros((1, 2, 5), jnp.bfloat16).at[0, 1, 3].set(1.0)
    targets = jnp.array([[4, 3]], jnp.int32)
    _, _, correct = train_step.token_losses(logits, targets)
    assert correct.tolist() == [[1.0, 1.0]]  # row 0: all logits tie
    grad = jax.grad(lambda x: train_step.token_losses(x, targets)[0].sum())(logits)
    assert grad.dtype == jnp.bfloat16


def _state(config):
    model = OPTDecoder(config)
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(learning_rate=1e-3), 100)
    state = train_step.init_train_state(model, tx, jax.random.key(0))
    import flax.linen as nn

    return model, nn.meta.unbox(state)


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_microbatches_give_the_full_batch_step(normalization):
    config = tiny_config(dropout=0.0)
    model, state = _state(config)
    batch = jax.tree.map(jnp.asarray, next(synthetic()(batch_size=BATCH)))
    results = []
    for num in (1, 4):
        step = jax.jit(
            train_step.make_train_step(model, normalization=normalization, num_microbatches=num)
        )
        new_state, metrics = step(state, batch, jax.random.key(1))
        results.append((metrics, new_state.params))
    (m1, p1), *others = results
    for metrics, params in others:
        for key in ("loss", "accuracy", "grad_norm", "tokens"):
            np.testing.assert_allclose(metrics[key], m1[key], rtol=2e-6, err_msg=key)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), params, p1)
    with pytest.raises(ValueError, match="does not split into 3 microbatches"):
        jax.jit(train_step.make_train_step(model, num_microbatches=3))(
            state, batch, jax.random.key(1)
        )


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_logits_only_at_weighted_positions_give_the_same_step(normalization):
    """Targets-only rows (capacity 0.625 x 32 = 24 positions) and rows with more weighted
    positions than that (the fallback) both give the full computation's step."""
    model, state = _state(tiny_config(dropout=0.1))
    sparse = next(synthetic()(batch_size=BATCH))
    dense = {**sparse, "decoder_loss_weights": (sparse["decoder_segment_ids"] > 0) * 1.0}
    assert (sparse["decoder_loss_weights"] > 0).sum(1).max() <= 24
    assert (dense["decoder_loss_weights"] > 0).sum(1).max() > 24
    for batch in (sparse, dense):
        batch = jax.tree.map(jnp.asarray, batch)
        (p1, m1), (p2, m2) = [
            jax.jit(
                train_step.make_train_step(
                    model, normalization=normalization, logits_capacity=capacity
                )
            )(state, batch, jax.random.key(1))
            for capacity in (1.0, 0.625)
        ]
        for key in ("loss", "accuracy", "grad_norm", "tokens"):
            np.testing.assert_allclose(m2[key], m1[key], rtol=2e-6, err_msg=key)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), p2.params, p1.params)


@pytest.mark.slow
def test_train_step_updates_and_uses_dropout():
    model, state = _state(tiny_config(dropout=0.1))
    batch = jax.tree.map(jnp.asarray, next(synthetic()(batch_size=BATCH)))
    step = jax.jit(train_step.make_train_step(model))
    new_state, metrics = step(state, batch, jax.random.key(1))
    assert int(new_state.step) == 1 and float(metrics["grad_norm"]) > 0
    _, again = step(state, batch, jax.random.key(1))
    _, other = step(state, batch, jax.random.key(2))
    assert float(again["loss"]) == float(metrics["loss"])  # same key: same dropout masks
    assert float(other["loss"]) != float(metrics["loss"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state.params, state.params)
    assert all(jax.tree.leaves(changed))


@pytest.mark.slow
def test_eval_step_matches_the_training_loss_without_dropout():
    config = tiny_config(dropout=0.0)
    model, state = _state(config)
    batch = jax.tree.map(jnp.asarray, next(synthetic()(batch_size=BATCH)))
    _, metrics = jax.jit(train_step.make_train_step(model))(state, batch, jax.random.key(1))
    sums = jax.jit(train_step.make_eval_step(model))(state.params, batch)
    half = (
        jax.tree.map(lambda x: x[: BATCH // 2], batch),
        jax.tree.map(lambda x: x[BATCH // 2 :], batch),
    )
    eval_step = jax.jit(train_step.make_eval_step(model))
    added = jax.tree.map(
        jnp.add, eval_step(state.params, half[0]), eval_step(state.params, half[1])
    )
    for key, value in train_step.summarize(sums).items():
        np.testing.assert_allclose(value, metrics[key], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(train_step.summarize(added)[key], value, rtol=1e-6)
