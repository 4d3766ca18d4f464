"""The OPT decoder (Zhang et al. 2022) in flax.linen, numerically the model metaseq and
transformers' `OPTForCausalLM` run.

- learned position embeddings looked up at `position + 2` (OPT's offset; table has
  `max_positions + 2` rows), added to the token embeddings, then embedding dropout;
- pre-LayerNorm blocks (post-LayerNorm for OPT-350m, `do_layer_norm_before=False`), ReLU MLP,
  dropout after attention and MLP, attention-probability dropout;
- a final LayerNorm only when `do_layer_norm_before` (transformers' rule, so 350m has none);
- OPT-350m's `word_embed_proj_dim=512`: `project_in` [512 -> 1024] after the token lookup and
  `project_out` [1024 -> 512] before the tied output embedding.

Packed rows: `segment_ids` [B, L] (1, 2, ... per document, 0 on padding) restrict attention to
earlier tokens of the same document; `positions` [B, L] restart at 0 in each document, e.g.
tokens [[2, 10, 11, 2, 20, 1]], segment_ids [[1, 1, 1, 2, 2, 0]], positions [[0, 1, 2, 0, 1, 0]].

Every parameter carries logical axis names (vocab, embed, heads, kv, mlp; layers when scanned)
and the main activations are constrained to (batch, length, embed|heads,kv|mlp|vocab), so a
partitioner maps them onto any mesh; outside `nn.logical_axis_rules` they are no-ops.
Decoding uses a KV cache in the flax "cache" collection (`decode=True`, see `decoding.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml import token_ids
from optiml.models import quantize
from optiml.models.output_layer import tied_logits

POSITION_OFFSET = 2  # OPT looks positions up at index position + 2 (fairseq's padding_idx hack)
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by metaseq and transformers
INIT_STD = 0.02

REMAT_POLICIES: dict[str, Callable | None] = {
    "none": None,  # keep every activation (no rematerialisation)
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the whole block
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep x @ W
}


@dataclasses.dataclass(frozen=True)
class OPTConfig:
    """Hyper-parameters of one OPT decoder; hashable, so it can be a static jit argument."""

    vocab_size: int = token_ids.VOCAB_SIZE
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    max_positions: int = 2048
    word_embed_proj_dim: int | None = None  # 512 for OPT-350m, else None (= hidden_size)
    do_layer_norm_before: bool = True  # False only for OPT-350m (post-LN)
    dropout: float = 0.1
    attention_dropout: float = 0.0
    dtype: str = "bfloat16"  # compute dtype
    param_dtype: str = "float32"
    scan_layers: bool = False  # nn.scan over layers: params stacked on a leading "layers" axis
    remat_policy: str = "none"  # one of REMAT_POLICIES
    weights: str = "float"  # block kernels stored as "int8" | "int4" | "fp4" (quantize.py)
    pad_id: int = token_ids.PAD_ID
    bos_id: int = token_ids.BOS_ID
    eos_id: int = token_ids.EOS_ID

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"OPTConfig: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}"
            )
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(
                f"OPTConfig: remat_policy {self.remat_policy!r} not in {sorted(REMAT_POLICIES)}"
            )
        quantize.check(self.weights, 64)
        for field in ("dtype", "param_dtype"):
            jnp.dtype(getattr(self, field))  # raises TypeError on an unknown dtype name

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def word_dim(self) -> int:
        """Width of the token embedding table (512 for 350m, else hidden_size)."""
        return self.word_embed_proj_dim or self.hidden_size

    @property
    def has_projection(self) -> bool:
        return self.word_dim != self.hidden_size

    @property
    def has_final_layer_norm(self) -> bool:
        return self.do_layer_norm_before

    def replace(self, **changes) -> OPTConfig:
        return dataclasses.replace(self, **changes)


# Published OPT sizes (metaseq / the facebook/opt-* configs on the HF hub).
SIZES: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, ffn_dim=256),
    "125m": dict(hidden_size=768, num_layers=12, num_heads=12, ffn_dim=3072),
    "350m": dict(
        hidden_size=1024,
        num_layers=24,
        num_heads=16,
        ffn_dim=4096,
        word_embed_proj_dim=512,
        do_layer_norm_before=False,
    ),
    "1.3b": dict(hidden_size=2048, num_layers=24, num_heads=32, ffn_dim=8192),
    "2.7b": dict(hidden_size=2560, num_layers=32, num_heads=32, ffn_dim=10240),
    "6.7b": dict(hidden_size=4096, num_layers=32, num_heads=32, ffn_dim=16384),
    "13b": dict(hidden_size=5120, num_layers=40, num_heads=40, ffn_dim=20480),
    "30b": dict(hidden_size=7168, num_layers=48, num_heads=56, ffn_dim=28672),
    "66b": dict(hidden_size=9216, num_layers=64, num_heads=72, ffn_dim=36864),
    "175b": dict(hidden_size=12288, num_layers=96, num_heads=96, ffn_dim=49152),
}


def named_config(size: str, **overrides) -> OPTConfig:
    """`named_config("1.3b", dtype="float32")` -> the published OPT-1.3B dimensions."""
    if size not in SIZES:
        raise KeyError(f"unknown OPT size {size!r}; known: {list(SIZES)}")
    return OPTConfig(**{**SIZES[size], **overrides})


def _init(init: Callable, names: tuple[str | None, ...]) -> Callable:
    return nn.with_logical_partitioning(init, names)


def _normal() -> Callable:
    return nn.initializers.normal(INIT_STD)


def _constrain(x: jax.Array, names: tuple[str, ...]) -> jax.Array:
    return nn.with_logical_constraint(x, names)


def _projection(cfg: OPTConfig, features: int, names: tuple, name: str) -> nn.Dense:
    """OPT-350m's project_in [512 -> 1024] / project_out [1024 -> 512], no bias."""
    return nn.Dense(features, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                    kernel_init=_init(_normal(), names), name=name)  # fmt: skip


def _layer_norm(cfg: OPTConfig, name: str) -> nn.LayerNorm:
    """torch.nn.LayerNorm numerics: eps 1e-5, two-pass variance, fp32 statistics."""
    return nn.LayerNorm(
        epsilon=LAYER_NORM_EPS,
        use_fast_variance=False,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        scale_init=_init(nn.initializers.ones, ("embed",)),
        bias_init=_init(nn.initializers.zeros, ("embed",)),
        name=name,
    )


def attention_mask(segment_ids: jax.Array) -> jax.Array:
    """[B, L] segment ids -> [B, 1, L, L] bool: causal and within the same segment."""
    length = segment_ids.shape[-1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (causal[None] & same)[:, None]


class _HeadsDense(nn.Module):
    """A Linear layer to or from heads: x [B, L, hidden] -> [B, L, heads, head_dim] with kernel
    [hidden, heads, head_dim] (`to_heads`), or [B, L, heads, head_dim] -> [B, L, hidden] with
    kernel [heads, head_dim, hidden]. (nn.DenseGeneral initialises a flattened 2-D kernel, which
    breaks 3-D logical partitioning under a mesh.)"""

    config: OPTConfig
    to_heads: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        heads = (cfg.num_heads, cfg.head_dim)
        if self.to_heads:
            shape, names = (cfg.hidden_size, *heads), ("embed", "heads", "kv")
            bias_shape, bias_names = heads, ("heads", "kv")
        else:
            shape, names = (*heads, cfg.hidden_size), ("heads", "kv", "embed")
            bias_shape, bias_names = (cfg.hidden_size,), ("embed",)
        kernel = self.param("kernel", _init(_normal(), names), shape, cfg.param_dtype)
        bias = self.param(
            "bias", _init(nn.initializers.zeros, bias_names), bias_shape, cfg.param_dtype
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=cfg.dtype)
        if self.to_heads:
            return jnp.einsum("blh,hnd->blnd", x, kernel) + bias
        # [B, L, h*d] @ [h*d, hidden]: the einsum contracted (d, h), which made XLA copy a
        # transposed kernel on every call (each decoding step)
        return x.reshape(*x.shape[:-2], -1) @ kernel.reshape(-1, cfg.hidden_size) + bias


class OPTAttention(nn.Module):
    """Multi-head self-attention; q is scaled by head_dim**-0.5 after its bias (as in OPT)."""

    config: OPTConfig
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, kv_mask: jax.Array | None):
        cfg = self.config
        names = ("batch", "length", "heads", "kv")
        q = _HeadsDense(cfg, to_heads=True, name="q_proj")(x) * cfg.head_dim**-0.5
        q = _constrain(q, names)
        k = _constrain(_HeadsDense(cfg, to_heads=True, name="k_proj")(x), names)
        v = _constrain(_HeadsDense(cfg, to_heads=True, name="v_proj")(x), names)
        kv = "bkhd"
        if self.decode:  # keys/values come from the cache, laid out [B, h, S, d]
            k, v, mask = self._update_cache(k, v, kv_mask)
            kv = "bhkd"
        scores = jnp.einsum(f"bqhd,{kv}->bhqk", q, k).astype(jnp.float32)
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)
        probs = nn.Dropout(cfg.attention_dropout)(probs, deterministic=self.deterministic)
        # into [B, h, Lq, d], then transposed: XLA's CPU product straight into bqhd took twice
        # the time of the whole attention (benchmarks/README.md)
        out = jnp.einsum(f"bhqk,{kv}->bhqd", probs, v).transpose(0, 2, 1, 3)
        out = _constrain(out, names)
        return _HeadsDense(cfg, to_heads=False, name="out_proj")(out)

    def _update_cache(self, k: jax.Array, v: jax.Array, kv_mask: jax.Array | None):
        """Writes k/v [B, Lq, h, d] at the cache index; returns the whole cache and its mask.

        The cache holds keys/values [B, h, S, d] for S slots (heads before slots: the attention
        products read it as it lies, with no per-step transposed copy); query i (slot index + i)
        sees slots j <= index + i where `kv_mask[b, j]` (False on left padding). Called by
        `init` (no cache yet) it only creates zero variables for the input's Lq slots.
        """
        k, v = (x.transpose(0, 2, 1, 3) for x in (k, v))  # [B, h, Lq, d]
        initialized = self.has_variable("cache", "cached_key")
        cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        length = k.shape[2]
        if not initialized:
            return k, v, attention_mask(jnp.ones(k.shape[:1] + k.shape[2:3], jnp.int32))
        i = index.value
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, 0, i, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, 0, i, 0))
        index.value = i + length
        slots = cached_k.value.shape[2]
        query_slot = i + jnp.arange(length)
        mask = (jnp.arange(slots)[None, :] <= query_slot[:, None])[None, None]
        if kv_mask is not None:
            mask = mask & kv_mask[:, None, None, :]
        return cached_k.value, cached_v.value, mask


class OPTBlock(nn.Module):
    """One decoder layer: x [B, L, hidden] -> (x [B, L, hidden], None) (scan-compatible)."""

    config: OPTConfig
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, kv_mask: jax.Array | None):
        cfg = self.config
        layer_norm = functools.partial(_layer_norm, cfg)
        dropout = nn.Dropout(cfg.dropout)
        pre_ln = cfg.do_layer_norm_before

        residual = x
        h = layer_norm(name="self_attn_layer_norm")(x) if pre_ln else x
        h = OPTAttention(cfg, self.deterministic, self.decode, name="self_attn")(h, mask, kv_mask)
        x = residual + dropout(h, deterministic=self.deterministic)
        if not pre_ln:
            x = layer_norm(name="self_attn_layer_norm")(x)
        x = _constrain(x, ("batch", "length", "embed"))

        residual = x
        h = layer_norm(name="final_layer_norm")(x) if pre_ln else x
        h = nn.Dense(
            cfg.ffn_dim,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            kernel_init=_init(_normal(), ("embed", "mlp")),
            bias_init=_init(nn.initializers.zeros, ("mlp",)),
            name="fc1",
        )(h)
        h = _constrain(nn.relu(h), ("batch", "length", "mlp"))
        h = nn.Dense(
            cfg.hidden_size,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            kernel_init=_init(_normal(), ("mlp", "embed")),
            bias_init=_init(nn.initializers.zeros, ("embed",)),
            name="fc2",
        )(h)
        x = residual + dropout(h, deterministic=self.deterministic)
        if not pre_ln:
            x = layer_norm(name="final_layer_norm")(x)
        return _constrain(x, ("batch", "length", "embed")), None


class OPTDecoder(nn.Module):
    """tokens [B, L] int32 -> logits [B, L, vocab] float32.

    Params: embed_tokens, embed_positions, [project_in, project_out], layers_0..N-1 (or `layers`
    stacked on a leading axis when `scan_layers`), [final_layer_norm]. With `decode=True` the
    layers read and extend the "cache" collection (make it mutable); `kv_mask` [B, S] marks the
    cache slots that hold real tokens (False on left padding). `last_only` returns the logits of
    the last position only, [B, 1, vocab] (prefill); `select` [B, N] only those of the given
    positions, [B, N, vocab] (scoring). `attention` [B, 1, L, L] bool replaces the mask made from
    `segment_ids` (e.g. prompts and their options sharing a row, `rank_scoring.tree_mask`).
    """

    config: OPTConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
        kv_mask: jax.Array | None = None,
        last_only: bool = False,
        select: jax.Array | None = None,
        attention: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.config
        batch, length = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
        mask = attention
        if not decode and mask is None:
            if segment_ids is None:
                segment_ids = jnp.ones((batch, length), jnp.int32)
            mask = attention_mask(segment_ids)

        embed = nn.Embed(
            cfg.vocab_size,
            cfg.word_dim,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            embedding_init=_init(_normal(), ("vocab", "embed")),
            name="embed_tokens",
        )
        # The lookup reads whole rows: gather the table's `embed` shards first (an FSDP gather
        # inside a slice), else XLA reshards the looked-up activations across the batch axes.
        table = _constrain(embed.embedding, ("vocab", None)).astype(cfg.dtype)
        x = jnp.take(table, tokens, axis=0)
        if cfg.has_projection:
            x = _projection(cfg, cfg.hidden_size, (None, "embed"), "project_in")(x)
        x = x + nn.Embed(
            cfg.max_positions + POSITION_OFFSET,
            cfg.hidden_size,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            embedding_init=_init(_normal(), (None, "embed")),
            name="embed_positions",
        )(positions + POSITION_OFFSET)
        x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
        x = _constrain(x, ("batch", "length", "embed"))

        block = quantize.dequantizing(OPTBlock, cfg.weights, cfg.dtype)
        policy = REMAT_POLICIES[cfg.remat_policy]
        if cfg.remat_policy != "none":
            block = nn.remat(block, policy=policy, prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            layers = nn.scan(
                block,
                variable_axes={"params": 0, "cache": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = layers(cfg, deterministic, decode, name="layers")(x, mask, kv_mask)
        else:
            for i in range(cfg.num_layers):
                x, _ = block(cfg, deterministic, decode, name=f"layers_{i}")(x, mask, kv_mask)

        if last_only:
            x = x[:, -1:]
        if select is not None:
            x = jnp.take_along_axis(x, select[:, :, None], axis=1)
        if cfg.has_final_layer_norm:
            x = _layer_norm(cfg, name="final_layer_norm")(x)
        if cfg.has_projection:
            x = _projection(cfg, cfg.word_dim, ("embed", None), "project_out")(x)
        x, embedding = nn.dtypes.promote_dtype(x, embed.embedding, dtype=cfg.dtype)
        logits = tied_logits(x, embedding).astype(jnp.float32)  # = embed.attend(x)
        return _constrain(logits, ("batch", "length", "vocab"))


def init_params(config: OPTConfig, rng: jax.Array, unbox: bool = True) -> dict:
    """Random params {"embed_tokens": ..., "layers_0": ..., ...} (fp32 by default), unboxed."""
    tokens = jnp.ones((1, 8), jnp.int32)
    params = jax.jit(lambda key: OPTDecoder(config).init(key, tokens)["params"])(rng)
    return nn.meta.unbox(params) if unbox else params


def abstract_params(config: OPTConfig) -> dict:
    """Shapes/dtypes of the params as jax.ShapeDtypeStruct, with no memory allocated."""
    return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
