"""One optimisation step: target-only cross-entropy, optional z-loss, microbatch accumulation.

A packed batch (see contracts: all [batch, length]) such as one row holding two documents

    decoder_input_tokens   2  31414  6  127  |  2  1037  10  |  1  1   (pad id 1)
    decoder_target_tokens  31414  6  127  2  |  1037  10  2  |  1  1
    decoder_loss_weights   0      0  1    1  |  0     1   1  |  0  0   (target + final EOS)
    decoder_segment_ids    1      1  1    1  |  2     2   2  |  0  0
    decoder_positions      0      1  2    3  |  0     1   2  |  0  0

gives per-token losses l_t = CE_t + z_loss * logsumexp_t^2, combined as
    "token":    sum_t w_t l_t / sum_t w_t                      (every target token counts equally)
    "sequence": mean over documents d of sum_{t in d} w_t l_t / sum_{t in d} w_t
Both are (numerator, denominator) sums, so accumulating microbatches and dividing once at the end
gives the same loss and gradient as one big batch. TF-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

Batch = dict[str, jax.Array]
NORMALIZATIONS = ("token", "sequence")


class TrainState(train_state.TrainState):
    """step, params, opt_state (+ apply_fn and tx, static). A pytree Orbax saves as is."""


@jax.custom_vjp
def token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, ...]:
    """Per-token (cross-entropy, logsumexp, correct) for logits [B, L, V] f32, targets [B, L].

    `correct` is 1 where the target's logit is the largest (a tie counts as correct), read off
    the max the logsumexp takes anyway instead of a separate argmax over V. The backward pass
    writes d logits = (g_ce + g_lse) softmax - g_ce onehot(target) in one elementwise pass
    (autodiff of a take_along_axis would scatter into zeros and transpose a [B, L, V] copy).
    """
    return _token_losses(logits, targets)[0]


def _token_losses(logits: jax.Array, targets: jax.Array) -> tuple[tuple[jax.Array, ...], tuple]:
    x = logits.astype(jnp.float32)
    top = jnp.max(x, axis=-1)
    exp = jnp.exp(x - top[..., None])  # kept for the backward: no second pass of exponentials
    lse = top + jnp.log(jnp.sum(exp, axis=-1))
    target_logit = jnp.take_along_axis(x, targets[..., None], axis=-1)[..., 0]
    correct = (target_logit >= top).astype(jnp.float32)
    dtype = jnp.zeros((), logits.dtype)
    return (lse - target_logit, lse, correct), (exp, jnp.exp(top - lse), targets, dtype)


def _token_losses_backward(residuals: tuple, cotangents: tuple) -> tuple[jax.Array, None]:
    exp, scale, targets, dtype = residuals
    g_ce, g_lse, _ = cotangents  # `correct` is a step function: no gradient
    probs = exp * scale[..., None]  # softmax = exp(x - top) * exp(top - lse)
    hit = jnp.arange(exp.shape[-1]) == targets[..., None]
    grad = (g_ce + g_lse)[..., None] * probs - jnp.where(hit, g_ce[..., None], 0.0)
    return grad.astype(dtype.dtype), None


token_losses.defvjp(_token_losses, _token_losses_backward)


def loss_sums(
    logits: jax.Array,
    batch: Batch,
    *,
    normalization: str = "token",
    z_loss: float = 0.0,
    row_length: int | None = None,
) -> dict[str, jax.Array]:
    """Sums over one (micro)batch: `numerator` / `denominator` is the loss (module docstring);
    `ce`, `z`, `correct` are weighted sums and `weight` the target-token count (for metrics).
    `row_length`: the rows' full length when `batch` holds only some positions of each row."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"loss normalization {normalization!r}: choose from {NORMALIZATIONS}")
    ce, lse, correct = token_losses(logits, batch["decoder_target_tokens"])
    w = batch["decoder_loss_weights"].astype(jnp.float32)
    per_token = w * (ce + z_loss * jnp.square(lse)) if z_loss else w * ce
    sums = {
        "ce": jnp.sum(w * ce),
        "z": jnp.sum(w * jnp.square(lse)),
        "correct": jnp.sum(w * correct),
        "weight": jnp.sum(w),
    }
    if normalization == "token":
        sums["numerator"], sums["denominator"] = jnp.sum(per_token), jnp.sum(w)
        return sums
    # Per document: segment s of row b gets id b * (L + 1) + s (segment 0 = padding, weight 0).
    b, length = w.shape[0], row_length or w.shape[1]
    ids = (jnp.arange(b)[:, None] * (length + 1) + batch["decoder_segment_ids"]).reshape(-1)
    doc_loss = jax.ops.segment_sum(per_token.reshape(-1), ids, num_segments=b * (length + 1))
    doc_weight = jax.ops.segment_sum(w.reshape(-1), ids, num_segments=b * (length + 1))
    has_targets = doc_weight != 0  # NaN weights stay in (and poison the loss), as they should
    sums["numerator"] = jnp.sum(
        jnp.where(has_targets, doc_loss / jnp.where(has_targets, doc_weight, 1), 0)
    )
    sums["denominator"] = jnp.sum(has_targets.astype(jnp.float32))
    return sums


def _apply(
    model: nn.Module, params: Any, batch: Batch, rng: jax.Array | None, select: Any = None
) -> jax.Array:
    return model.apply(
        {"params": params},
        batch["decoder_input_tokens"],
        batch["decoder_segment_ids"],
        batch["decoder_positions"],
        deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng},
        select=select,
    )


_PICKED = ("decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids")


def _batch_loss_sums(
    model: nn.Module, params: Any, batch: Batch, rng: jax.Array | None, capacity: float, **loss
) -> dict[str, jax.Array]:
    """`loss_sums` with the output layer run only where it is needed: at each row's positions
    with a loss weight (in order), padded with unweighted ones up to `capacity` x the row
    length (rounded up to 8). A batch with a row holding more weighted positions than that
    runs it at every position (`lax.cond`: the same sums either way, only the cost differs)."""
    length = batch["decoder_target_tokens"].shape[1]
    keep = min(length, -(-math.ceil(capacity * length) // 8) * 8)

    def everywhere() -> dict[str, jax.Array]:
        return loss_sums(_apply(model, params, batch, rng), batch, **loss)

    if keep >= length:
        return everywhere()
    weighted = batch["decoder_loss_weights"] != 0  # NaN weights count (and poison the loss)

    def weighted_only() -> dict[str, jax.Array]:
        select = jnp.argsort(~weighted, axis=1, stable=True)[:, :keep]  # weighted ones first
        picked = {k: jnp.take_along_axis(batch[k], select, axis=1) for k in _PICKED}
        logits = _apply(model, params, batch, rng, select)
        return loss_sums(logits, picked, row_length=length, **loss)

    fits = jnp.max(jnp.sum(weighted, axis=1)) <= keep
    return jax.lax.cond(fits, weighted_only, everywhere)


def _split_microbatches(batch: Batch, num: int) -> Batch:
    """[B, L] -> [num, B / num, L], microbatch m = rows m, m + num, ... so that each microbatch
    takes an equal share of every device's rows (no data moves between devices)."""

    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % num:
            raise ValueError(f"batch of {x.shape[0]} rows does not split into {num} microbatches")
        return jnp.swapaxes(x.reshape(x.shape[0] // num, num, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def make_train_step(
    model: nn.Module,
    *,
    normalization: str = "token",
    z_loss: float = 0.0,
    num_microbatches: int = 1,
    logits_capacity: float = 0.625,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """train_step(state, batch, rng) -> (new state, metrics); dropout keys fold in the step and
    the microbatch index. Metrics: loss, cross_entropy, log_z_squared, accuracy, grad_norm,
    tokens. `logits_capacity`: the output layer runs only at the loss-weighted positions when
    every row has at most this fraction of them (targets-only losses: prompts and padding need
    no logits), else everywhere (`_batch_loss_sums`); 1.0 always everywhere."""
    loss = dict(normalization=normalization, z_loss=z_loss)

    def sums_and_grads(params: Any, batch: Batch, rng: jax.Array) -> tuple[dict, Any]:
        def numerator(p: Any) -> tuple[jax.Array, dict]:
            sums = _batch_loss_sums(model, p, batch, rng, logits_capacity, **loss)
            return sums["numerator"], sums

        (_, sums), grads = jax.value_and_grad(numerator, has_aux=True)(params)
        return sums, grads

    def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(rng, state.step)
        if num_microbatches == 1:
            sums, grads = sums_and_grads(state.params, batch, rng)
        else:
            micro = _split_microbatches(batch, num_microbatches)

            def accumulate(carry: tuple[dict, Any], i: jax.Array) -> tuple[tuple[dict, Any], None]:
                mb = jax.tree.map(lambda x: x[i], micro)
                sums, grads = sums_and_grads(state.params, mb, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, carry, (sums, grads)), None

            zeros = jax.eval_shape(
                sums_and_grads, state.params, jax.tree.map(lambda x: x[0], micro), rng
            )
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
            (sums, grads), _ = jax.lax.scan(accumulate, zeros, jnp.arange(num_microbatches))
        grads = jax.tree.map(lambda g: g / sums["denominator"], grads)
        metrics = summarize(sums)
        metrics["grad_norm"] = optax.global_norm(grads)
        return state.apply_gradients(grads=grads), metrics

    return train_step


def make_eval_step(
    model: nn.Module, *, normalization: str = "token", z_loss: float = 0.0
) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """eval_step(params, batch) -> loss sums (teacher forcing, no dropout); add them up over
    batches and call `summarize` once."""

    def eval_step(params: Any, batch: Batch) -> dict[str, jax.Array]:
        logits = _apply(model, params, batch, None)
        return loss_sums(logits, batch, normalization=normalization, z_loss=z_loss)

    return eval_step


def summarize(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Loss sums -> loss; cross_entropy, log_z_squared, accuracy (per target token); tokens."""
    weight = sums["weight"]
    return {
        "loss": sums["numerator"] / sums["denominator"],
        "cross_entropy": sums["ce"] / weight,
        "log_z_squared": sums["z"] / weight,
        "accuracy": sums["correct"] / weight,
        "tokens": weight,
    }


def init_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """A fresh TrainState with boxed (logically named) params; run it through
    `Partitioner.init` to get it sharded and unboxed."""
    params = model.init(rng, jnp.ones((1, 8), jnp.int32))["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)
