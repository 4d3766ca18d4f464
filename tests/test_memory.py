"""optiml.tools.memory: parameter counts against OPT's published sizes, the model and
transformers; the per-device division on hand-computed cases; the CLI."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax.core import meta

from optiml.models.opt import OPTConfig, OPTDecoder, named_config
from optiml.models.params import param_count
from optiml.tools import memory

MESH_222 = {"data": 2, "fsdp": 2, "model": 2}
TINY = named_config("tiny")  # hidden 64, 2 layers, 4 heads (head_dim 16), ffn 256, vocab 50272


def test_opt_125m_has_the_published_parameter_count():
    # OPTForCausalLM("facebook/opt-125m") with its output layer tied to embed_tokens.
    assert param_count(named_config("125m")) == 125_239_296


@pytest.mark.parametrize(
    "size, billions", [("1.3b", 1.3), ("2.7b", 2.7), ("6.7b", 6.7), ("30b", 30.0), ("175b", 175.0)]
)
def test_named_sizes_round_to_their_names(size, billions):
    count = param_count(named_config(size))
    digits = 1 if billions < 100 else 0
    assert round(count / 1e9, digits) == billions


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        named_config("350m"),  # word_embed_proj_dim=512 (project_in/out), post-LayerNorm
        named_config("30b"),
        named_config("175b"),
        OPTConfig(hidden_size=96, num_layers=3, num_heads=6, ffn_dim=200, max_positions=64),
    ],
    ids=["tiny", "350m", "30b", "175b", "odd"],
)
def test_param_count_matches_transformers_on_the_meta_device(config):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from opt_testing import hf_param_count

    assert param_count(config) == hf_param_count(config)


def _model_tensors(config: OPTConfig) -> dict[str, tuple[tuple[int, ...], tuple]]:
    """name -> (shape, logical axes) from the flax model's boxed params, layers folded to `*`."""
    boxed = jax.eval_shape(
        lambda: OPTDecoder(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))
    )["params"]
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        boxed, is_leaf=lambda x: isinstance(x, meta.Partitioned)
    )[0]:
        keys = [p.key for p in path]
        if keys[0].startswith("layers_"):
            keys[0] = "layers/*"
        out["/".join(keys)] = (tuple(leaf.value.shape), tuple(leaf.names))
    return out


@pytest.mark.parametrize(
    "config",
    [TINY, TINY.replace(word_embed_proj_dim=32, do_layer_norm_before=False)],
    ids=["pre-ln", "projection-post-ln"],
)
def test_tensor_table_matches_the_models_params_and_logical_axes(config):
    ours = {t.name: (t.shape, t.axes) for t in memory.param_tensors(config)}
    assert ours == _model_tensors(config)
    counts = {t.name: t.count for t in memory.param_tensors(config)}
    assert counts["layers/*/fc1/kernel"] == config.num_layers
    assert counts["embed_tokens/embedding"] == 1


def test_tensor_table_of_125m_and_350m_by_hand():
    tensors = {
        t.name: (t.shape, t.axes, t.count) for t in memory.param_tensors(named_config("125m"))
    }
    assert tensors["embed_tokens/embedding"] == ((50272, 768), ("vocab", "embed"), 1)
    assert tensors["embed_positions/embedding"] == ((2050, 768), (None, "embed"), 1)
    assert tensors["layers/*/fc1/kernel"] == ((768, 3072), ("embed", "mlp"), 12)
    q, out = "layers/*/self_attn/q_proj/kernel", "layers/*/self_attn/out_proj/kernel"
    assert tensors[q] == ((768, 12, 64), ("embed", "heads", "kv"), 12)
    assert tensors[out] == ((12, 64, 768), ("heads", "kv", "embed"), 12)
    assert len(tensors) == 2 + 16 + 2  # embeddings, 16 per layer, final LayerNorm
    tensors = {t.name: (t.shape, t.axes) for t in memory.param_tensors(named_config("350m"))}
    assert tensors["project_in/kernel"] == ((512, 1024), (None, "embed"))
    assert tensors["project_out/kernel"] == ((1024, 512), ("embed", None))
    assert "final_layer_norm/scale" not in tensors  # post-LN: no final LayerNorm


def test_mesh_split_follows_the_partitioning_rules():
    assert memory.mesh_split(("vocab", "embed"), "standard") == (("model",), ())
    assert memory.mesh_split(("vocab", "embed"), "fsdp") == (("model",), ("fsdp",))
    # Activations: batch takes data and fsdp, so embed stays whole even under the FSDP rules.
    assert memory.mesh_split(("batch", "length", "embed"), "fsdp") == (("data", "fsdp"), (), ())
    with pytest.raises(ValueError, match="unknown rules 'zero3'"):
        memory.mesh_split(("embed",), "zero3")


def test_local_shapes_by_hand():
    mesh = {"data": 1, "fsdp": 16, "model": 8}
    assert memory.local_shape((50272, 7168), ("vocab", "embed"), mesh, "fsdp") == (6284, 448)
    assert memory.local_shape((50272, 7168), ("vocab", "embed"), mesh, "standard") == (6284, 7168)
    assert memory.local_shape((7168, 56, 128), ("embed", "heads", "kv"), mesh, "fsdp") == (
        448,
        7,
        128,
    )


# Tiny on mesh data=2, fsdp=2, model=2, element counts per device, worked out by hand:
#   standard: embed_tokens 25136*64 = 1,608,704; positions 2050*64 = 131,200 (replicated);
#     per layer: 2 LayerNorms 256; q/k/v kernels 3 * 64*2*16 = 6,144; their biases 3 * 2*16 = 96;
#     out_proj 2*16*64 = 2,048 + bias 64; fc1 64*128 = 8,192 + bias 128; fc2 8,192 + bias 64
#     -> 25,184 per layer, 50,368 for 2; final LayerNorm 128.  Total 1,790,400.
#   fsdp: every embed dimension halved again: 804,352 + 65,600 + 2 * 12,704 + 64 = 895,424.
@pytest.mark.parametrize("rules, elements", [("standard", 1_790_400), ("fsdp", 895_424)])
def test_parameter_and_optimizer_bytes_by_hand(rules, elements):
    est = memory.estimate(TINY, MESH_222, rules, batch=8, length=16)
    assert est.params == 4 * elements
    assert est.grads == 4 * elements
    assert est.adam == 8 * elements
    assert est.warnings == ()


def test_activation_bytes_by_hand():
    # batch 8 over data*fsdp = 4 -> 2 rows per device, length 16, heads 4 -> 2 per device,
    # ffn 256 -> 128 per device; bf16 = 2 bytes, fp32 = 4, masks 1.
    per_layer = (
        2 * 16 * 64 * 2 * 4  # block input, attention LN output, MLP LN input and output
        + 2 * 16 * 2 * 16 * 2 * 3  # q, k, v
        + 2 * 2 * 16 * 16 * (4 + 2)  # attention probabilities, fp32 and bf16
        + 2 * 16 * 2 * 16 * 2  # attention context
        + 2 * 16 * 128 * 2 * 2  # fc1 output, ReLU output
        + 2 * 16 * 64 * 1 * 2  # two residual dropout masks (dropout 0.1)
    )
    assert per_layer == 51_200
    for rules in ("standard", "fsdp"):
        est = memory.estimate(TINY, MESH_222, rules, batch=8, length=16)
        assert est.activations == 2 * per_layer
        assert est.activations_remat == 2 * (2 * 16 * 64 * 2) + per_layer
        assert est.logits == 2 * 16 * 25136 * 4 * 2 + 2 * 16 * 16
        assert est.total(remat=True) == (
            est.params + est.grads + est.adam + est.activations_remat + est.logits + est.workspace
        )


# Backward workspace of one block, per device: d probabilities and d scores [2, 2, 16, 16] fp32
# (2 * 1,024 * 4 bytes) + d fc1 and d ReLU [2, 16, 128] bf16 (2 * 4,096 * 2) = 24,576 bytes.
# FSDP rules also all-gather one layer (25,184 elements once `fsdp` is undone, as under the
# standard rules above) and embed_tokens (25136 * 64 = 1,608,704) in fp32, plus their gradients.
@pytest.mark.parametrize(
    "rules, workspace", [("standard", 24_576), ("fsdp", 24_576 + (25_184 + 1_608_704) * 4 * 2)]
)
def test_workspace_by_hand(rules, workspace):
    assert memory.estimate(TINY, MESH_222, rules, batch=8, length=16).workspace == workspace
    no_fsdp_axis = {"data": 4, "fsdp": 1, "model": 2}  # nothing to gather
    assert memory.estimate(TINY, no_fsdp_axis, rules, batch=8, length=16).workspace == 24_576


def test_microbatches_shrink_activations_and_double_gradients():
    whole = memory.estimate(TINY, MESH_222, "fsdp", batch=16, length=16)
    half = memory.estimate(TINY, MESH_222, "fsdp", batch=16, length=16, microbatches=2)
    same_rows = memory.estimate(TINY, MESH_222, "fsdp", batch=8, length=16)
    assert half.activations == same_rows.activations == whole.activations // 2
    assert half.logits == same_rows.logits
    assert half.grads == 2 * whole.grads  # accumulator + one microbatch's gradients
    assert (half.params, half.adam) == (whole.params, whole.adam)


def test_no_dropout_means_no_masks():
    with_dropout = memory.estimate(TINY, MESH_222, "fsdp", batch=8, length=16)
    without = memory.estimate(TINY.replace(dropout=0.0), MESH_222, "fsdp", batch=8, length=16)
    assert with_dropout.activations - without.activations == 2 * (2 * 16 * 64 * 2)


def test_uneven_splits_are_reported():
    # OPT-30B has 56 heads: a model axis of 16 does not divide them.
    est = memory.estimate(
        named_config("30b"), {"data": 1, "fsdp": 8, "model": 16}, "fsdp", 256, 2048
    )
    assert any("heads 56 over model=16" in w for w in est.warnings)


def test_bad_inputs_name_the_culprit():
    with pytest.raises(ValueError, match="bad item 'tensor=4'"):
        memory.parse_mesh("data=2,tensor=4")
    one = {"data": 1, "fsdp": 1, "model": 1}
    assert memory.parse_mesh("fsdp=16,model=8") == ({"data": 1, "fsdp": 16, "model": 8}, one)
    with pytest.raises(ValueError, match=r"batch 6 is not divisible by data x fsdp x micro"):
        memory.estimate(TINY, MESH_222, "fsdp", batch=6, length=16)
    with pytest.raises(ValueError, match=r"= 4 x 4"):
        memory.estimate(TINY, MESH_222, "fsdp", batch=8, length=16, microbatches=4)


def test_cli_prints_the_per_device_table(capsys):
    code = memory.main(
        ["--size", "30b", "--mesh", "data=1,fsdp=16,model=8", "--batch", "256", "--length", "2048"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "OPT 29,974,540,288 params" in out and "128 devices" in out
    assert "1 microbatch(es) (16 rows per device at a time)" in out
    fsdp_params = memory.estimate(
        named_config("30b"), {"data": 1, "fsdp": 16, "model": 8}, "fsdp", 256, 2048
    ).params
    line = next(line for line in out.splitlines() if line.startswith("parameters"))
    assert line.split()[-1] == f"{fsdp_params / memory.GIB:.2f}"


def test_cli_rejects_a_bad_mesh(capsys):
    assert memory.main(["--size", "1.3b", "--mesh", "data=0", "--batch", "8"]) == 2
    assert "optiml.tools.memory: mesh 'data=0'" in capsys.readouterr().err


def test_cli_lists_each_tensors_per_device_shape(capsys):
    args = ["--size", "125m", "--mesh", "data=2,fsdp=2,model=2", "--batch", "8"]
    assert memory.main([*args, "--rules", "fsdp", "--tensors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fc1 = next(line for line in lines if line.startswith("layers/*/fc1/kernel"))
    assert fc1.split()[1:] == [
        "12",
        "[768,",
        "3072]",
        "embed,mlp",
        "fsdp,model",
        "->",
        "[384,",
        "1536]",
    ]


@pytest.mark.slow  # compiles a sharded train step (~10-30 s on 2 shared cores)
def test_parameter_and_adam_bytes_equal_xlas_compiled_train_step():
    """The real thing: the sharded train step compiled on the 8 fake CPU devices takes exactly
    parameters + Adam mu/nu per device as arguments (plus the step counters, rng, batch rows)."""
    import functools

    from optiml import partitioning, train_step
    from optiml.optimizer import OptimizerConfig, make_optimizer

    config = OPTConfig(
        vocab_size=1024, hidden_size=64, num_layers=2, num_heads=4, ffn_dim=256, scan_layers=True
    )
    mesh = {"data": 1, "fsdp": 4, "model": 2}
    partitioner = partitioning.Partitioner.create(partitioning.MeshConfig(rules="fsdp", **mesh))
    model = OPTDecoder(config)
    init_fn = functools.partial(
        train_step.init_train_state, model, make_optimizer(OptimizerConfig(), 100)
    )
    state, shardings = partitioner.abstract_init(init_fn, jax.random.key(0))
    batch = {
        name: jax.ShapeDtypeStruct((8, 32), jnp.int32, sharding=partitioner.data_sharding)
        for name in (
            "decoder_input_tokens",
            "decoder_target_tokens",
            "decoder_segment_ids",
            "decoder_positions",
        )
    }
    batch["decoder_loss_weights"] = jax.ShapeDtypeStruct(
        (8, 32), jnp.float32, sharding=partitioner.data_sharding
    )
    step = jax.jit(
        train_step.make_train_step(model),
        in_shardings=(shardings, partitioner.data_sharding, partitioner.replicated),
    )
    with partitioner.activate():
        analysis = step.lower(state, batch, jax.random.key(1)).compile().memory_analysis()
    est = memory.estimate(config, mesh, "fsdp", batch=8, length=32)
    extras = 5 * 2 * 32 * 4 + 64  # this device's 2 rows of the 5 features, step counters, rng
    state_bytes = est.params + est.adam
    assert state_bytes <= analysis.argument_size_in_bytes <= state_bytes + extras
