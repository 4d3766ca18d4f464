"""The model's parameters as data, read off the model itself: names, shapes, logical axes, counts.

    >>> [p for p in param_list(named_config("125m")) if p.path[-2:] == ("fc1", "kernel")][0]
    Param(path=('layers_0', 'fc1', 'kernel'), shape=(768, 3072), axes=('embed', 'mlp'))
    >>> param_count(named_config("125m"))
    125239296

Checkpoint conversion (`convert.tensors`) and the memory estimate (`tools/memory.py`) derive
their tables from `param_list`; nothing else lists the parameters. TF-free.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml.models.opt import OPTConfig, OPTDecoder


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter as the model declares it: `layers_0/fc1/kernel` [768, 3072] ("embed",
    "mlp"); with scan_layers `layers/fc1/kernel` [12, 768, 3072] ("layers", "embed", "mlp")."""

    path: tuple[str, ...]
    shape: tuple[int, ...]
    axes: tuple[str | None, ...]  # logical axes, mapped to the mesh by optiml.partitioning


def param_list(config: OPTConfig) -> list[Param]:
    """Every parameter (sorted by path): `jax.eval_shape` of the model's init (no memory) with
    the logical axes of its partitioning annotations."""
    tokens = jnp.ones((1, 8), jnp.int32)
    boxed = jax.eval_shape(lambda: OPTDecoder(config).init(jax.random.key(0), tokens)["params"])
    leaves, _ = jax.tree_util.tree_flatten_with_path(
        boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    )
    return [
        Param(tuple(k.key for k in path), tuple(leaf.value.shape), tuple(leaf.names))
        for path, leaf in leaves
    ]


def param_count(config: OPTConfig) -> int:
    """Total parameters (the output projection is tied to embed_tokens): 125m -> 125,239,296
    (counted on the scanned form: one layer is traced, whatever the depth)."""
    return sum(math.prod(p.shape) for p in param_list(config.replace(scan_layers=True)))
