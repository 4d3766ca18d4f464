"""The flax OPT decoder against transformers' OPTForCausalLM (fp32, eager attention, dropout off).

JAX matmuls run at precision "highest" here so float32 means float32 on every backend.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from opt_testing import CONFIGS, hf_logits, hf_model, hf_param_count, params_of

from optiml.models import opt
from optiml.models.params import param_count

jax.config.update("jax_default_matmul_precision", "highest")


def _logits(config, params, tokens, segment_ids=None, positions=None):
    apply = jax.jit(opt.OPTDecoder(config).apply)  # jitted: eager op-by-op is slow on CPU
    return np.asarray(apply({"params": params}, jnp.asarray(tokens), segment_ids, positions))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name):
    config = CONFIGS[name]
    model = hf_model(config)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (3, 17))
    tokens[:, 0] = config.bos_id
    ours = _logits(config, params_of(model, config), tokens)
    np.testing.assert_allclose(ours, hf_logits(model, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_row_equals_each_example_alone(name):
    config = CONFIGS[name]
    params = params_of(hf_model(config), config)
    rng = np.random.default_rng(1)
    a, b = rng.integers(3, config.vocab_size, 7), rng.integers(3, config.vocab_size, 5)
    a[0] = b[0] = config.bos_id
    packed = np.concatenate([a, b, [config.pad_id] * 4])[None]
    segments = np.array([[1] * 7 + [2] * 5 + [0] * 4])
    positions = np.array([list(range(7)) + list(range(5)) + [0] * 4])
    out = _logits(config, params, packed, segment_ids=segments, positions=positions)[0]
    np.testing.assert_allclose(out[:7], _logits(config, params, a[None])[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out[7:12], _logits(config, params, b[None])[0], atol=1e-5, rtol=0)


def _stack_layers(params, num_layers):
    layers = [params.pop(f"layers_{i}") for i in range(num_layers)]
    return {**params, "layers": jax.tree.map(lambda *xs: np.stack(xs), *layers)}


@pytest.mark.parametrize("remat", ["none", "dots"])
def test_scan_and_remat_give_the_same_logits_and_grads(remat):
    config = CONFIGS["post_ln_350m"]
    params = params_of(hf_model(config), config)
    tokens = np.random.default_rng(2).integers(0, config.vocab_size, (2, 9))
    scanned = config.replace(scan_layers=True, remat_policy=remat)
    stacked = _stack_layers(dict(params), config.num_layers)

    def loss_and_grads(cfg, p):  # one compile per layout: logits ride along as aux
        def loss(p):
            logits = opt.OPTDecoder(cfg).apply({"params": p}, tokens)
            return jnp.mean(logits**2), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(p)

    (_, logits_loop), g_loop = loss_and_grads(config, params)
    (_, logits_scan), g_scan = loss_and_grads(scanned, stacked)
    np.testing.assert_allclose(np.asarray(logits_scan), np.asarray(logits_loop), atol=1e-5)
    for i in range(config.num_layers):
        np.testing.assert_allclose(
            g_scan["layers"]["fc1"]["kernel"][i], g_loop[f"layers_{i}"]["fc1"]["kernel"], atol=1e-6
        )
    np.testing.assert_allclose(
        g_scan["embed_tokens"]["embedding"], g_loop["embed_tokens"]["embedding"], atol=1e-6
    )


def test_every_param_has_logical_axes_and_scan_adds_layers():
    config = CONFIGS["post_ln_350m"].replace(scan_layers=True)
    boxed = jax.eval_shape(lambda: opt.init_params(config, jax.random.key(0), unbox=False))
    specs = nn.get_partition_spec(boxed)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(x, nn.Partitioned) for x in leaves)
    assert specs["layers"]["fc1"]["kernel"] == jax.sharding.PartitionSpec("layers", "embed", "mlp")
    assert specs["layers"]["self_attn"]["q_proj"]["kernel"] == jax.sharding.PartitionSpec(
        "layers", "embed", "heads", "kv"
    )
    assert specs["embed_tokens"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")


def test_bf16_compute_with_fp32_params_and_dropout():
    config = CONFIGS["pre_ln"].replace(dtype="bfloat16", dropout=0.1, attention_dropout=0.1)
    params = params_of(hf_model(config), config)  # fp32 (opt.init_params compiles slowly)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    tokens = jnp.ones((2, 8), jnp.int32)
    model = opt.OPTDecoder(config)
    eval_logits = jax.jit(model.apply)({"params": params}, tokens)
    assert eval_logits.dtype == jnp.float32
    drop = jax.jit(
        lambda seed: model.apply(
            {"params": params}, tokens, deterministic=False, rngs={"dropout": jax.random.key(seed)}
        )
    )
    assert not np.allclose(drop(0), drop(1))
    np.testing.assert_array_equal(drop(3), drop(3))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_param_count_matches_transformers_tiny(name):
    config = CONFIGS[name]
    assert param_count(config) == sum(p.numel() for p in hf_model(config).parameters())


@pytest.mark.parametrize("size", [s for s in opt.SIZES if s != "tiny"])
def test_param_count_matches_transformers_published_sizes(size):
    config = opt.named_config(size, scan_layers=True)  # scan: eval_shape traces one layer
    assert param_count(config) == hf_param_count(config)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        opt.OPTConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="remat_policy"):
        opt.OPTConfig(remat_policy="some")
    with pytest.raises(KeyError, match="unknown OPT size"):
        opt.named_config("7b")


GIN_DIR = Path(__file__).resolve().parents[1] / "gin"


@pytest.mark.parametrize("size", list(opt.SIZES))
def test_gin_model_files_give_the_published_sizes(size):
    import importlib.util  # noqa: F401  (gin's `include` resolver uses importlib.util unimported)

    import gin

    gin.clear_config()
    try:
        gin.add_config_file_search_path(str(GIN_DIR))
        gin.parse_config_file(str(GIN_DIR / "models" / f"{size}.gin"))
        config = gin.get_configurable(opt.OPTConfig)()
    finally:
        gin.clear_config()
    big = size in ("13b", "30b", "66b", "175b")
    expected = opt.named_config(size, scan_layers=big, remat_policy="full" if big else "none")
    assert config == expected


RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("layers", None),
)


@pytest.mark.parametrize("scan", [False, True])
def test_sharded_init_and_forward_on_a_mesh_match_unsharded(scan):
    config = CONFIGS["post_ln_350m"].replace(scan_layers=scan)
    devices = np.array(jax.devices()[:8]).reshape(2, 4)
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.sharding.Mesh(devices, ("data", "model"), axis_types=auto)
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, config.vocab_size, (4, 8)))
    init = lambda: opt.init_params(config, jax.random.key(1), unbox=False)  # noqa: E731
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        specs = nn.get_partition_spec(jax.eval_shape(init))
        shardings = nn.logical_to_mesh_sharding(specs, mesh, RULES)
        params = nn.meta.unbox(jax.jit(init, out_shardings=shardings)())
        logits = jax.jit(lambda p, t: opt.OPTDecoder(config).apply({"params": p}, t))(
            params, tokens
        )
    leaf = params["layers"]["fc1"]["kernel"] if scan else params["layers_0"]["fc1"]["kernel"]
    assert leaf.sharding.spec[-1] == "model"
    unsharded = jax.tree.map(np.asarray, params)
    np.testing.assert_allclose(
        np.asarray(logits), _logits(config, unsharded, tokens), atol=1e-5, rtol=0
    )
