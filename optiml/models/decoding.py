"""Scoring and decoding with the OPT decoder: log-likelihood scores, prefill into a KV cache,
greedy / temperature / top-k / top-p sampling, and beam search (rank-classification
scoring of prompts and options sharing rows: `rank_scoring`).

Prompts are RIGHT-padded: `prompt_tokens` [B, P] with `prompt_lengths` [B], each row starting
with BOS 2, e.g. [[2, 713, 16, 1, 1], [2, 100, 200, 300, 400]] with lengths [3, 5]. Prefill
left-aligns them internally (row b is shifted right by P - length_b), so every row's next token
goes to the same cache slot; left-pad slots are masked out and positions still start at 0 at BOS.

Generated tokens come back as [B, max_new_tokens] with the EOS (2) included and pad (1) after it.
All functions are jitted with the (hashable) config as a static argument.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from optiml.models.opt import OPTConfig, OPTDecoder

MAX_NEW_TOKENS = 256
NEG_INF = -1e10  # "impossible" log-probability that stays finite under arithmetic


def token_log_likelihoods(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log softmax(logits)[target]: logits [..., V] float32, targets [...] -> [...]."""
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def score(params, config: OPTConfig, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Per-row sum of target log-likelihoods under `decoder_loss_weights`, and the token count.

    batch: the decoder features [B, L] (`decoder_input_tokens`, `decoder_target_tokens`,
    `decoder_loss_weights`, optional `decoder_segment_ids` / `decoder_positions`; other keys are
    ignored). Returns (sums [B] float32, counts [B] float32); sums / counts is the
    length-normalised score. E.g. inputs [[2, 713, 16, 4420]], targets [[713, 16, 4420, 2]],
    weights [[0, 0, 1, 1]] scores " yes" + EOS after the prompt.
    """
    optional = ("decoder_segment_ids", "decoder_positions")
    features = {k: batch[k] for k in _SCORE_FEATURES + optional if batch.get(k) is not None}
    missing = [k for k in _SCORE_FEATURES if k not in features]
    if missing:
        raise KeyError(f"score: batch lacks {missing} (has {sorted(batch)})")
    return _score(params, config, features)


_SCORE_FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")


@functools.partial(jax.jit, static_argnames=("config",))
def _score(params, config: OPTConfig, batch: dict) -> tuple[jax.Array, jax.Array]:
    logits = OPTDecoder(config).apply(
        {"params": params},
        batch["decoder_input_tokens"],
        batch.get("decoder_segment_ids"),
        batch.get("decoder_positions"),
    )
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    ll = token_log_likelihoods(logits, batch["decoder_target_tokens"])
    return (ll * weights).sum(-1), weights.sum(-1)


# ---- the KV cache ----------------------------------------------------------------------------


def init_cache(config: OPTConfig, batch_size: int, max_length: int) -> dict:
    """Zero KV cache for `max_length` slots: per layer cached_key/cached_value
    [B, heads, S, head_dim] (with a leading layers axis when scanned) and cache_index."""
    model = OPTDecoder(config)
    tokens = jnp.ones((batch_size, max_length), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, decode=True))["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _map_kv(cache: dict, config: OPTConfig, fn) -> dict:
    """Applies fn(array, batch_axis) to every cached key/value (not the indices)."""
    axis = 1 if config.scan_layers else 0

    def visit(path, x):
        return x if path[-1].key == "cache_index" else fn(x, axis)

    return jax.tree_util.tree_map_with_path(visit, cache)


def repeat_cache(cache: dict, config: OPTConfig, times: int) -> dict:
    """Each batch row repeated `times` times in place: rows [a, b] -> [a, a, b, b] for times 2."""
    return _map_kv(cache, config, lambda x, axis: jnp.repeat(x, times, axis=axis))


def gather_cache(cache: dict, config: OPTConfig, rows: jax.Array) -> dict:
    """Cache rows reordered/selected by `rows` [B'] (beam search)."""
    return _map_kv(cache, config, lambda x, axis: jnp.take(x, rows, axis=axis))


def _run(params, config, cache, tokens, positions, kv_mask, last_only=False):
    logits, state = OPTDecoder(config).apply(
        {"params": params, "cache": cache},
        tokens,
        positions=positions,
        decode=True,
        kv_mask=kv_mask,
        last_only=last_only,
        mutable=["cache"],
    )
    return logits, state["cache"]


@functools.partial(jax.jit, static_argnames=("config", "max_length"))
def prefill(params, config: OPTConfig, prompt_tokens, prompt_lengths, max_length: int):
    """Encodes right-padded prompts [B, P] into a fresh cache of `max_length` >= P slots.

    Returns (logits of each prompt's last token [B, V], cache, kv_mask [B, max_length]) where
    kv_mask is False on the left-pad slots. The next token of every row goes to slot P.
    """
    batch, length = prompt_tokens.shape
    pad = length - prompt_lengths  # [B] left-pad per row after alignment
    slots = jnp.arange(length)[None, :] - pad[:, None]  # source column of each aligned slot
    aligned = jnp.take_along_axis(prompt_tokens, jnp.maximum(slots, 0), axis=1)
    aligned = jnp.where(slots >= 0, aligned, config.pad_id)
    kv_mask = jnp.arange(max_length)[None, :] >= pad[:, None]
    cache = init_cache(config, batch, max_length)
    positions = jnp.maximum(slots, 0)
    logits, cache = _run(params, config, cache, aligned, positions, kv_mask, last_only=True)
    return logits[:, 0], cache, kv_mask


def _check_lengths(config: OPTConfig, prompt_tokens, prompt_lengths, extra: int) -> None:
    """Clear errors for prompt shapes, lengths outside [1, P], no new token (`extra` < 1) and
    P + extra > max_positions."""
    if extra < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {extra}")
    shape = np.shape(prompt_tokens)
    if len(shape) != 2:
        raise ValueError(f"prompt_tokens must be [batch, length], got shape {shape}")
    lengths = np.asarray(prompt_lengths)
    if lengths.shape != shape[:1] or np.any(lengths < 1) or np.any(lengths > shape[1]):
        raise ValueError(
            f"prompt_lengths {lengths.tolist()} must give each of the {shape[0]} rows at least "
            f"its BOS token and at most the prompt width (1 <= length <= {shape[1]})"
        )
    if shape[1] + extra > config.max_positions:
        raise ValueError(
            f"prompt length {shape[1]} + {extra} new tokens exceeds the model's "
            f"max_positions {config.max_positions}"
        )


# ---- greedy and sampling ---------------------------------------------------------------------


def _filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Sets logits outside the top-k / nucleus top-p set to -inf (float32 [B, V])."""
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the best token always stays)
        keep = (cumulative - jax.nn.softmax(ordered, axis=-1)) < top_p
        threshold = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return logits


@functools.partial(
    jax.jit,
    static_argnames=("config", "max_new_tokens", "temperature", "top_k", "top_p", "stop_at_eos"),
)
def _sample(params, config, prompt_tokens, prompt_lengths, rng, max_new_tokens, temperature,
            top_k, top_p, stop_at_eos):  # fmt: skip
    batch, length = prompt_tokens.shape
    logits, cache, kv_mask = prefill(
        params, config, prompt_tokens, prompt_lengths, length + max_new_tokens
    )
    out = jnp.full((batch, max_new_tokens), config.pad_id, jnp.int32)
    done = jnp.zeros((batch,), bool)

    def choose(logits, key):
        if temperature == 0.0:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        filtered = _filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
        return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)

    def pick(step, logits, out, done, rng):
        """The token of every row at `step` (pad once a row is done), written into `out`."""
        rng, key = jax.random.split(rng)
        token = jnp.where(done, config.pad_id, choose(logits, key))
        out = out.at[:, step].set(token)
        return token, out, done | ((token == config.eos_id) & stop_at_eos), rng

    # the model runs after each of the first max_new_tokens - 1 picks only: the logits after
    # the last token are never used (transformers' generate runs as many forwards)
    def cond(state):
        step, _, _, _, done, _ = state
        return (step < max_new_tokens - 1) & ~jnp.all(done)

    def body(state):
        step, logits, cache, out, done, rng = state
        token, out, done, rng = pick(step, logits, out, done, rng)
        positions = (prompt_lengths + step)[:, None]
        logits, cache = _run(params, config, cache, token[:, None], positions, kv_mask)
        return step + 1, logits[:, 0], cache, out, done, rng

    state = (jnp.array(0), logits, cache, out, done, rng)
    step, logits, _, out, done, rng = jax.lax.while_loop(cond, body, state)
    return pick(step, logits, out, done, rng)[1]  # all pad when every row is done already


def generate(
    params,
    config: OPTConfig,
    prompt_tokens,
    prompt_lengths,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: jax.Array | None = None,
    stop_at_eos: bool = True,
) -> jax.Array:
    """Greedy (temperature 0, the default) or sampled continuations [B, max_new_tokens].

    Sampling divides the logits by `temperature`, keeps the `top_k` best (0: all) and the
    nucleus of mass `top_p`, and draws from `rng`. Rows stop at EOS (kept) and are padded with 1;
    the loop ends when every row has stopped or after `max_new_tokens`. `stop_at_eos=False`:
    an EOS is just another token, every row runs `max_new_tokens`.
    """
    _check_lengths(config, prompt_tokens, prompt_lengths, max_new_tokens)
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: {temperature=}, {top_k=}, {top_p=}")
    if temperature > 0 and rng is None:
        raise ValueError("sampling (temperature > 0) needs an `rng` key")
    rng = jax.random.key(0) if rng is None else rng
    return _sample(
        params, config, jnp.asarray(prompt_tokens), jnp.asarray(prompt_lengths), rng,
        max_new_tokens, float(temperature), int(top_k), float(top_p), bool(stop_at_eos),
    )  # fmt: skip


# ---- beam search -----------------------------------------------------------------------------


@functools.partial(
    jax.jit, static_argnames=("config", "num_beams", "max_new_tokens", "length_penalty")
)
def _beam_search(params, config, prompt_tokens, prompt_lengths, num_beams, max_new_tokens,
                 length_penalty):  # fmt: skip
    batch, length = prompt_tokens.shape
    w, n = num_beams, max_new_tokens
    logits, cache, kv_mask = prefill(params, config, prompt_tokens, prompt_lengths, length + n)
    cache = repeat_cache(cache, config, w)
    kv_mask = jnp.repeat(kv_mask, w, axis=0)
    logits = jnp.repeat(logits, w, axis=0)
    vocab = logits.shape[-1]

    def normalise(logprob, steps):
        return logprob / (steps.astype(jnp.float32) ** length_penalty)

    alive_seq = jnp.full((batch, w, n), config.pad_id, jnp.int32)
    alive_lp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (w - 1)), (batch, 1))  # one live beam
    done_seq = jnp.full((batch, w, n), config.pad_id, jnp.int32)
    done_score = jnp.full((batch, w), NEG_INF)

    def loop_cond(state):
        step, _, _, (alive_lp, _), (done_score, _) = state
        # the best a live beam can still reach (log-probs only fall; as transformers'
        # early_stopping="never": at max length when length_penalty > 0, else now)
        bound_len = jnp.array(n) if length_penalty > 0 else jnp.maximum(step, 1)
        best_alive = normalise(jnp.max(alive_lp, axis=1), bound_len)
        finished = jnp.all(jnp.min(done_score, axis=1) >= best_alive)
        return (step < n) & ~finished

    def select(step, logits, alive, done):
        """One step's pools; the parents' cache rows [B*W] and next tokens [B*W, 1]."""
        alive_lp, alive_seq = alive
        done_score, done_seq = done
        lp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, w, vocab)
        cand = (alive_lp[:, :, None] + lp).reshape(batch, w * vocab)
        top_lp, top_idx = jax.lax.top_k(cand, 2 * w)  # 2W: at least W of them do not end
        beam, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(alive_seq, beam[:, :, None], axis=1)
        seqs = seqs.at[:, :, step].set(token)
        ended = token == config.eos_id
        # finished pool: old finished + candidates among the top W that end here, best W by
        # normalised score (the other W candidates only back up the live beams)
        in_top = jnp.arange(2 * w)[None, :] < w
        new_score = jnp.where(ended & in_top, normalise(top_lp, step + 1), NEG_INF)
        pool_score = jnp.concatenate([done_score, new_score], axis=1)
        pool_seq = jnp.concatenate([done_seq, seqs], axis=1)
        done_score, keep = jax.lax.top_k(pool_score, w)
        done_seq = jnp.take_along_axis(pool_seq, keep[:, :, None], axis=1)
        # alive: best W candidates that do not end
        alive_lp, keep = jax.lax.top_k(jnp.where(ended, NEG_INF, top_lp), w)
        alive_seq = jnp.take_along_axis(seqs, keep[:, :, None], axis=1)
        parent = jnp.take_along_axis(beam, keep, axis=1)  # [B, W] index into old beams
        rows = (jnp.arange(batch)[:, None] * w + parent).reshape(-1)
        tokens = jnp.take_along_axis(token, keep, axis=1).reshape(-1, 1)
        return (alive_lp, alive_seq), (done_score, done_seq), rows, tokens

    def step_fn(state):
        step, logits, cache, alive, done = state
        alive, done, rows, tokens = select(step, logits, alive, done)
        cache = gather_cache(cache, config, rows)
        positions = (jnp.repeat(prompt_lengths, w) + step)[:, None]
        logits, cache = _run(params, config, cache, tokens, positions, kv_mask)
        return step + 1, logits[:, 0], cache, alive, done

    def run_cond(state):  # the model runs after every selection but the last
        return loop_cond(state) & (state[0] < n - 1)

    state = (jnp.array(0), logits, cache, (alive_lp, alive_seq), (done_score, done_seq))
    state = jax.lax.while_loop(run_cond, step_fn, state)
    step, logits, _, alive, done = state
    last = loop_cond(state)  # the last selection, unless the search has finished already
    alive, done = jax.lax.cond(
        last, lambda: select(step, logits, alive, done)[:2], lambda: (alive, done)
    )
    step = step + last.astype(step.dtype)
    (alive_lp, alive_seq), (done_score, done_seq) = alive, done
    # rows with fewer than W finished hypotheses fall back on their live beams
    alive_score = jnp.where(alive_lp > NEG_INF / 2, normalise(alive_lp, step), NEG_INF)
    pool_score = jnp.concatenate([done_score, alive_score], axis=1)
    pool_seq = jnp.concatenate([done_seq, alive_seq], axis=1)
    scores, keep = jax.lax.top_k(pool_score, w)
    return jnp.take_along_axis(pool_seq, keep[:, :, None], axis=1), scores


def beam_search(
    params,
    config: OPTConfig,
    prompt_tokens,
    prompt_lengths,
    *,
    num_beams: int = 4,
    max_new_tokens: int = MAX_NEW_TOKENS,
    length_penalty: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Beam search: (tokens [B, num_beams, max_new_tokens] best first, scores [B, num_beams]).

    A hypothesis ends at EOS (kept in its tokens); its score is its log-probability divided by
    (number of generated tokens incl. EOS) ** length_penalty. The search stops when no live beam
    can still beat the worst finished one, or after `max_new_tokens`; rows with fewer finished
    hypotheses than beams are completed with their live beams.
    """
    _check_lengths(config, prompt_tokens, prompt_lengths, max_new_tokens)
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    return _beam_search(
        params, config, jnp.asarray(prompt_tokens), jnp.asarray(prompt_lengths),
        int(num_beams), int(max_new_tokens), float(length_penalty),
    )  # fmt: skip


__all__ = [
    "MAX_NEW_TOKENS",
    "beam_search",
    "gather_cache",
    "generate",
    "init_cache",
    "prefill",
    "repeat_cache",
    "score",
    "token_log_likelihoods",
]
