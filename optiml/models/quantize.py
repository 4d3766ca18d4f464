"""Weight-only k-bit inference (Dettmers & Zettlemoyer 2022, "The case for 4-bit precision").

Every dense kernel of the decoder blocks (q/k/v/out projections, fc1, fc2) is stored as codes
plus one float32 absmax scale per block of `block_size` (default 64) consecutive values along its
last axis, and dequantized inside the block under `jit` (`dequantizing`), so only one layer's
kernels exist in float at a time. Formats:

- `int8`: codes -127..127, value = code * absmax / 127;
- `int4`: codes -7..7, value = code * absmax / 7, two codes per byte;
- `fp4`: the 4-bit float E2M1 (values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives),
  value = FP4[code] * absmax / 6, two codes per byte (Dettmers & Zettlemoyer's float type).

A kernel [768, 3072] in int4 becomes {"codes": uint8 [768, 1536], "scale": float32 [768, 48]}:
0.5 + 4/64 = 0.5625 bytes per weight instead of 4 (float32) or 2 (bfloat16). The embeddings,
the layer norms and the biases stay in float, in the compute dtype when evaluating (the token
table is 1.2% of OPT-30B's weights, 31% of OPT-125m's).
Codes and scales keep their kernel's logical axes, so they shard like the float weights
(`quantized_axes`). Quantization runs once on the host (numpy) when the weights are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ("float", "int8", "int4", "fp4")  # "float": no quantization
BITS = {"float": 16, "int8": 8, "int4": 4, "fp4": 4}
LEVELS = {"int8": 127.0, "int4": 7.0, "fp4": 6.0}  # the code value that absmax maps to
FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
KERNELS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def weight_format(bits: int, kind: str = "int") -> str:
    """(16, *) -> "float"; (8, "int") -> "int8"; (4, "int") -> "int4"; (4, "float") -> "fp4"."""
    name = {16: "float", 8: "int8"}.get(bits) or {"int": "int4", "float": "fp4"}.get(kind, "")
    if bits not in (16, 8, 4) or not name or (bits == 8 and kind != "int"):
        raise ValueError(f"weight_bits={bits} with kind {kind!r}: use 16, 8 (int) or 4 (int|float)")
    return name


def check(fmt: str, block_size: int) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"weights={fmt!r}: one of {FORMATS}")
    if block_size < 2 or block_size % 2:
        raise ValueError(f"weight_block={block_size}: an even number >= 2")


def _blocks(x: np.ndarray, block_size: int) -> tuple[np.ndarray, int]:
    size = min(block_size, x.shape[-1])
    if x.shape[-1] % size:
        raise ValueError(f"last axis of a kernel {x.shape} is not a multiple of {size}")
    return x.reshape(*x.shape[:-1], x.shape[-1] // size, size), size


def quantize_array(x: np.ndarray, fmt: str, block_size: int = 64) -> dict[str, np.ndarray]:
    """A float kernel [..., n] -> {"codes": int8 [..., n] (int8) or uint8 [..., n/2] (4-bit),
    "scale": float32 [..., n/b]}."""
    blocks, _ = _blocks(np.asarray(x, np.float32), block_size)
    absmax = np.abs(blocks).max(axis=-1, keepdims=True)
    scale = absmax / LEVELS[fmt]
    safe = np.where(scale > 0, scale, 1.0)
    y = blocks / safe
    if fmt == "fp4":  # nearest E2M1 value by the midpoints between the positive ones; sign bit 8
        index = np.searchsorted((FP4[1:8] + FP4[:7]) / 2, np.abs(y)).astype(np.uint8)
        codes = index | np.where(y < 0, np.uint8(8), np.uint8(0))
    else:
        q = np.clip(np.rint(y), -LEVELS[fmt], LEVELS[fmt]).astype(np.int8)
        codes = q if fmt == "int8" else (q.astype(np.uint8) & 0xF)
    codes = codes.reshape(x.shape)
    if fmt != "int8":  # two 4-bit codes per byte: even index in the low nibble
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return {"codes": codes, "scale": scale[..., 0].astype(np.float32)}


def dequantize_array(q: Mapping[str, jax.Array], fmt: str, dtype: Any = jnp.float32) -> jax.Array:
    """The inverse of `quantize_array` (jit-able): codes and scales -> float kernel [..., n]."""
    codes, scale = jnp.asarray(q["codes"]), jnp.asarray(q["scale"], jnp.float32)
    if fmt == "int8":
        values = codes.astype(jnp.float32)
    else:
        nibbles = jnp.stack([codes & 0xF, codes >> 4], axis=-1).reshape(*codes.shape[:-1], -1)
        if fmt == "int4":
            values = ((nibbles.astype(jnp.int32) ^ 8) - 8).astype(jnp.float32)
        else:
            values = jnp.asarray(FP4)[nibbles]
    n = values.shape[-1]
    size = n // scale.shape[-1]
    blocks = values.reshape(*values.shape[:-1], n // size, size) * scale[..., None]
    return blocks.reshape(values.shape).astype(dtype)


def _is_quantized(node: Any) -> bool:
    return isinstance(node, Mapping) and set(node) == {"codes", "scale"}


def _map_kernels(tree: Any, fn: Callable[[Any], Any], inside: bool = False) -> Any:
    """Applies `fn` to every `kernel` of a KERNELS module (or to a quantized one)."""
    if _is_quantized(tree):
        return fn(tree)
    if not isinstance(tree, Mapping):
        return tree
    out = {}
    for key, value in tree.items():
        if key == "kernel" and inside:
            out[key] = fn(value)
        else:
            out[key] = _map_kernels(value, fn, inside=key in KERNELS)
    return out


def quantize_params(params: Any, fmt: str, block_size: int = 64, rest_dtype: Any = None) -> Any:
    """Host-side: every block kernel of an OPT params tree -> {"codes", "scale"} (numpy); the
    other weights (embeddings, norms, biases) cast to `rest_dtype` (e.g. the compute dtype) if
    given. With `scan_layers`, stacked kernels [layers, ...] are quantized layer by layer alike."""
    check(fmt, block_size)
    if fmt == "float":
        return params
    tree = _map_kernels(
        jax.device_get(params), lambda k: quantize_array(np.asarray(k), fmt, block_size)
    )
    if rest_dtype is None:
        return tree
    cast = lambda x: x if _is_quantized(x) else np.asarray(x).astype(rest_dtype)  # noqa: E731
    return jax.tree.map(cast, tree, is_leaf=_is_quantized)


def dequantize_params(tree: Any, fmt: str, dtype: Any) -> Any:
    """Inside `jit`: quantized kernels -> float kernels of `dtype`; everything else unchanged."""
    return _map_kernels(tree, lambda q: dequantize_array(q, fmt, dtype) if _is_quantized(q) else q)


def dequantizing(block: type[nn.Module], fmt: str, dtype: Any) -> type[nn.Module]:
    """`block` reading quantized kernels: dequantized when the block runs (per layer)."""
    if fmt == "float":
        return block
    return nn.map_variables(
        block,
        "params",
        trans_in_fn=lambda variables: dequantize_params(variables, fmt, dtype),
        mutable=True,  # init (e.g. of a KV cache) creates float params through it
    )


def quantized_axes(tree: Any, fmt: str) -> Any:
    """A tree of per-leaf values for the float params (e.g. PartitionSpecs or shardings) -> the
    same for the quantized params: codes and scale of a kernel both take the kernel's."""
    if fmt == "float":
        return tree
    return _map_kernels(tree, lambda spec: {"codes": spec, "scale": spec})


def param_bytes(tree: Any) -> int:
    """Bytes actually held by a params tree (codes, scales and float leaves)."""
    return int(sum(x.nbytes for x in jax.tree.leaves(tree)))
