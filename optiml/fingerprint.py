"""Fingerprints that say which weights and which settings a saved result came from.

    weights_fingerprint(params)  -> "3f9c0a1d5e7b2c48"   (16 hex digits)
    json_fingerprint(spec_dict)  -> "b41d07e29a0c6f13"

`weights_fingerprint` runs where the arrays live, in one pass: per leaf, two sums of its raw bits
modulo 2^32 (plain, and weighted by each element's position, so a permutation changes it too).
Integer sums are exact and order-free, so the same weights give the same fingerprint on any mesh,
device count or host; any changed bit of any weight changes it (up to a 2^-64 collision per leaf).
The leaves' paths, shapes and dtypes are part of it. TF-free.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def json_fingerprint(value: Any) -> str:
    """16 hex digits of the SHA-256 of `value`'s canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@jax.jit
def _bit_sums(leaves: list[jax.Array]) -> list[jax.Array]:
    out = []
    for x in leaves:
        bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize]).astype(jnp.uint32)
        position = jnp.arange(x.size, dtype=jnp.uint32).reshape(x.shape)
        weight = position * jnp.uint32(2654435761) + jnp.uint32(1)  # Knuth's multiplicative hash
        out.append(jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weight)]))
    return out


def weights_fingerprint(params: Any) -> str:
    """16 hex digits identifying a pytree of arrays by its bits, paths, shapes and dtypes."""
    paths_and_leaves = jax.tree_util.tree_leaves_with_path(params)
    leaves = [jnp.asarray(leaf) for _, leaf in paths_and_leaves]
    sums = jax.device_get(_bit_sums(leaves))
    digest = hashlib.sha256()
    for (path, _), leaf, pair in zip(paths_and_leaves, leaves, sums, strict=True):
        digest.update(f"{jax.tree_util.keystr(path)} {leaf.shape} {leaf.dtype}\n".encode())
        digest.update(np.asarray(pair, np.uint32).tobytes())
    return digest.hexdigest()[:16]
