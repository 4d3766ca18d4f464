"""Rank-classification scoring: prompts and their options share model rows, and the output
layer runs only where a target token is predicted (`evaluation.rows` lays the rows out)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from optiml.models.decoding import token_log_likelihoods
from optiml.models.opt import OPTConfig, OPTDecoder


def tree_mask(segments: jax.Array, prompts: jax.Array, branches: jax.Array) -> jax.Array:
    """[B, L] ids of each token's segment, prompt and option branch -> [B, 1, L, L] bool.

    A row holds segments (-1 on padding); a segment holds a prefix its prompts share (prompt 0),
    each prompt's own tokens (prompt ids unique in the row) and the fed tokens of each of its
    options (branch ids unique in the row; 0 off an option). A token sees, causally, its
    segment's prefix, its own prompt, and its own option. The row [2, 5, 8, 9, 7, 3] with
    segments [0, 0, 0, 0, 0, 1], prompts [0, 0, 1, 1, 2, 3], branches [0, 0, 0, 1, 0, 0] holds
    the prefix (2, 5), prompt 1's token 8 and its option's fed token 9, prompt 2's token 7 (it
    sees 2, 5 and itself, never 8 or 9), and a segment of its own, token 3.
    """
    length = segments.shape[-1]
    causal = jnp.tril(jnp.ones((length, length), bool))

    def ancestor(ids, shared):  # key j visible from query i at this level
        return (ids[:, None, :] == shared) | (ids[:, :, None] == ids[:, None, :])

    same_segment = segments[:, :, None] == segments[:, None, :]
    visible = same_segment & ancestor(prompts, 0) & ancestor(branches, 0)
    return (causal[None] & visible)[:, None]


@functools.partial(jax.jit, static_argnames=("config", "greedy"))
def score_branches(params, config: OPTConfig, tokens, positions, segments, prompts, branches,
                   select, targets, greedy: bool = False):  # fmt: skip
    """Log-likelihoods [B, N] of `targets` [B, N] predicted at the row positions `select` [B, N]
    (with `greedy`, also [B, N] bool: whether each target is the model's argmax there).

    tokens / positions and the ids segments / prompts / branches [B, L] lay out prompts and
    their options' tokens (all but each option's last) as in `tree_mask`; the output layer runs
    at the N selected positions only. A prompt [2, a, b] with options (c, d) and (e,) is the
    row [2, a, b, c], positions [0, 1, 2, 3], branches [0, 0, 0, 1] (segments and prompts 0):
    select [2, 3, 2], targets [c, d, e] (a one-token option is scored from the prompt's last
    position alone).
    """
    logits = OPTDecoder(config).apply(
        {"params": params},
        tokens,
        positions=positions,
        attention=tree_mask(segments, prompts, branches),
        select=select,
    )
    ll = token_log_likelihoods(logits, targets)
    return (ll, jnp.argmax(logits, axis=-1) == targets) if greedy else ll


__all__ = ["score_branches", "tree_mask"]
