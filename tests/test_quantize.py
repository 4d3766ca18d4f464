"""Weight-only k-bit inference: per-block round trips, the quantized model against float32, and
the sharded quantized forward against the unsharded one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiml import partitioning
from optiml.models import opt
from optiml.models import quantize as Q

FORMATS = ("int8", "int4", "fp4")
# Largest distance from a value to its nearest code, in units of the block's scale.
HALF_STEP = {"int8": 0.5, "int4": 0.5, "fp4": 1.0}  # fp4's widest gap is 4 -> 6


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(4, 128), (3, 5, 64), (2, 6)])
def test_round_trip_error_is_bounded_per_block(fmt: str, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_t(3, size=shape).astype(np.float32)
    q = Q.quantize_array(x, fmt, block_size=64)
    block = min(64, shape[-1])
    assert q["scale"].shape == (*shape[:-1], shape[-1] // block)
    packed = shape[-1] if fmt == "int8" else shape[-1] // 2
    assert q["codes"].shape == (*shape[:-1], packed)
    back = np.asarray(Q.dequantize_array(q, fmt))
    scale = np.repeat(q["scale"], block, axis=-1)
    assert np.all(np.abs(back - x) <= HALF_STEP[fmt] * scale * (1 + 1e-6))
    # each block's absmax is represented exactly (it defines the scale)
    blocks = x.reshape(*shape[:-1], -1, block)
    i = np.abs(blocks).argmax(-1)
    top = np.take_along_axis(blocks, i[..., None], -1)
    assert np.allclose(np.take_along_axis(back.reshape(blocks.shape), i[..., None], -1), top)


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_on_the_grid_are_exact(fmt: str) -> None:
    rng = np.random.default_rng(1)
    # power-of-two scales: absmax / LEVELS then gives the scale back exactly
    scale = (2.0 ** rng.integers(-8, 3, size=(3, 2, 1))).astype(np.float32)
    if fmt == "fp4":
        steps = rng.choice(Q.FP4, size=(3, 2, 32))
        steps[..., 0] = 6.0  # the block's absmax sits on the top code
    else:
        top = Q.LEVELS[fmt]
        steps = rng.integers(-top, top + 1, size=(3, 2, 32)).astype(np.float32)
        steps[..., 0] = -top
    x = (steps * scale).reshape(3, 64).astype(np.float32)
    back = np.asarray(Q.dequantize_array(Q.quantize_array(x, fmt, 32), fmt))
    np.testing.assert_array_equal(back, x)


def test_zero_block_and_bad_arguments() -> None:
    x = np.zeros((2, 64), np.float32)
    for fmt in FORMATS:
        np.testing.assert_array_equal(
            np.asarray(Q.dequantize_array(Q.quantize_array(x, fmt), fmt)), x
        )
    with pytest.raises(ValueError, match="not a multiple of 64"):
        Q.quantize_array(np.ones((2, 96), np.float32), "int8")
    with pytest.raises(ValueError, match="weight_bits=3"):
        Q.weight_format(3)
    assert (Q.weight_format(16), Q.weight_format(8), Q.weight_format(4, "float")) == (
        "float",
        "int8",
        "fp4",
    )
    with pytest.raises(ValueError, match="weights='int2'"):
        opt.named_config("tiny", weights="int2")


def _model() -> tuple[opt.OPTConfig, dict, jax.Array]:
    cfg = opt.named_config("tiny", dtype="float32", vocab_size=512)
    params = opt.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (4, 16), 4, 512)
    return cfg, params, tokens


# Stated bounds on the tiny random fixture, as fractions of the float32 logits' std (0.16):
# (mean |error|, max |error|). Measured: int8 0.7% / 3.7%, int4 12% / 75%, fp4 12% / 69%
# (N(0, 0.02) weights are absmax's worst case: trained weights quantize better, see docs).
LOGIT_BOUND = {"int8": (0.01, 0.05), "int4": (0.15, 1.0), "fp4": (0.15, 1.0)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_logits_within_bound_of_float32(fmt: str) -> None:
    cfg, params, tokens = _model()
    ref = opt.OPTDecoder(cfg).apply({"params": params}, tokens)
    qparams = Q.quantize_params(params, fmt)
    assert Q.param_bytes(qparams) < Q.param_bytes(params)
    qcfg = cfg.replace(weights=fmt)
    out = jax.jit(lambda p, t: opt.OPTDecoder(qcfg).apply({"params": p}, t))(qparams, tokens)
    error, std = jnp.abs(out - ref), float(ref.std())
    mean_bound, max_bound = LOGIT_BOUND[fmt]
    assert 0 < float(error.mean()) < mean_bound * std and float(error.max()) < max_bound * std
    # the kernels that the model dequantizes are exactly the stored codes' values
    q = qparams["layers_0"]["fc1"]["kernel"]
    assert set(q) == {"codes", "scale"} and q["codes"].dtype == (
        np.int8 if fmt == "int8" else np.uint8
    )


def test_sharded_quantized_forward_equals_unsharded() -> None:
    cfg, params, tokens = _model()
    qcfg = cfg.replace(weights="int4")
    qparams = Q.quantize_params(params, "int4")
    apply = lambda p, t: opt.OPTDecoder(qcfg).apply({"params": p}, t)  # noqa: E731
    single = jax.jit(apply)(qparams, tokens)
    partitioner = partitioning.Partitioner.create(partitioning.MeshConfig(data=2, fsdp=2, model=2))
    _, shardings = partitioner.abstract_init(
        lambda rng: opt.init_params(cfg, rng, unbox=False), jax.random.key(0)
    )
    placed = jax.device_put(qparams, Q.quantized_axes(shardings, "int4"))
    codes = placed["layers_0"]["fc1"]["kernel"]["codes"]
    assert len(codes.sharding.device_set) > 1 and not codes.sharding.is_fully_replicated
    with partitioner.activate():
        sharded = jax.jit(apply)(placed, tokens)
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["float32", "int8", "int4", "fp4"])
def test_memory_tool_counts_the_bytes_actually_held(fmt: str) -> None:
    """`optiml memory`'s inference rows equal the bytes of the quantized tree on one device."""
    from optiml.tools import kbit

    cfg, params, _ = _model()
    rest = cfg.dtype  # evaluate() keeps embeddings, norms and biases in the compute dtype
    held = Q.param_bytes(params if fmt == "float32" else Q.quantize_params(params, fmt, 64, rest))
    one = {"data": 1, "fsdp": 1, "model": 1}
    assert kbit.weight_bytes(cfg, one, "standard", fmt) == held
    split = kbit.weight_bytes(cfg, {"data": 1, "fsdp": 1, "model": 4}, "standard", fmt)
    assert held / 4 <= split < held


def test_quantized_greedy_decoding_through_the_kv_cache() -> None:
    """The cache path (init_cache creates the cache through the dequantizing blocks) decodes what
    the full forward of the same quantized weights predicts."""
    from optiml.models import decoding

    cfg, params, tokens = _model()
    qcfg, qparams = cfg.replace(weights="int4"), Q.quantize_params(params, "int4")
    lengths = np.full((tokens.shape[0],), tokens.shape[1], np.int32)
    out = np.asarray(
        decoding.generate(qparams, qcfg, tokens, lengths, max_new_tokens=4, stop_at_eos=False)
    )
    sequence = np.asarray(tokens)
    for step in range(4):
        logits = opt.OPTDecoder(qcfg).apply({"params": qparams}, sequence)
        np.testing.assert_array_equal(out[:, step], np.asarray(logits[:, -1].argmax(-1)))
        sequence = np.concatenate([sequence, out[:, step : step + 1]], axis=1)
