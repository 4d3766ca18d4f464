"""Weight fingerprints: the same bits give the same fingerprint on any mesh; any change shows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from train_testing import tiny_config

from optiml import fingerprint
from optiml.models import opt
from optiml.partitioning import MeshConfig, Partitioner


def test_the_same_weights_on_another_mesh_give_the_same_fingerprint() -> None:
    config = tiny_config()
    params = opt.init_params(config, jax.random.key(0))
    expected = fingerprint.weights_fingerprint(params)
    assert len(expected) == 16 and int(expected, 16) >= 0
    for mesh in (MeshConfig(data=8), MeshConfig(data=1, fsdp=4, model=2, rules="fsdp")):
        partitioner = Partitioner.create(mesh)
        _, shardings = partitioner.abstract_init(
            lambda rng: opt.init_params(config, rng, unbox=False), jax.random.key(0)
        )
        assert fingerprint.weights_fingerprint(jax.device_put(params, shardings)) == expected


def test_any_change_changes_it() -> None:
    params = opt.init_params(tiny_config(), jax.random.key(0))
    base = fingerprint.weights_fingerprint(params)
    kernel = params["layers_0"]["fc1"]["kernel"]
    one_bit = np.asarray(kernel).copy()
    one_bit.view(np.uint32)[3, 5] ^= 1  # the lowest mantissa bit of one weight
    swapped = np.asarray(kernel).copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # same values, other places
    variants = [
        {**params, "layers_0": {**params["layers_0"], "fc1": {**params["layers_0"]["fc1"],
                                                              "kernel": jnp.asarray(v)}}}
        for v in (one_bit, swapped)
    ]  # fmt: skip
    variants.append(jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))
    variants.append(opt.init_params(tiny_config(), jax.random.key(1)))
    prints = [fingerprint.weights_fingerprint(v) for v in variants]
    assert base not in prints and len(set(prints)) == len(prints)


def test_json_fingerprint_ignores_key_order() -> None:
    assert fingerprint.json_fingerprint({"a": 1, "b": [2]}) == fingerprint.json_fingerprint(
        {"b": [2], "a": 1}
    )
    assert fingerprint.json_fingerprint({"a": 1}) != fingerprint.json_fingerprint({"a": 2})
