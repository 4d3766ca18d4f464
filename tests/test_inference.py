"""Inferencers on a tiny random OPT: feature reading, shared-prompt rows and one-token options
score exactly as each full row, padded last batch and original order, greedy generation, the
same numbers on an 8-device mesh."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from optiml.evaluation import inference
from optiml.evaluation import rank_classification as rc
from optiml.models import decoding, opt

CONFIG = opt.named_config("tiny", dtype="float32", dropout=0.0, max_positions=64)


@pytest.fixture(scope="module")
def params():
    return opt.init_params(CONFIG, jax.random.key(0))


def _features(prompt: list[int], target: list[int], length: int = 12) -> dict:
    """seqio decoder features for prompt ids + target ids (EOS included), right-padded with 0."""
    tokens = [2] + prompt + target
    out = {
        "decoder_input_tokens": np.zeros(length, np.int32),
        "decoder_target_tokens": np.zeros(length, np.int32),
        "decoder_loss_weights": np.zeros(length, np.int32),
    }
    n = len(tokens) - 1
    out["decoder_input_tokens"][:n] = tokens[:-1]
    out["decoder_target_tokens"][:n] = tokens[1:]
    out["decoder_loss_weights"][len(prompt) : n] = 1
    return out


def test_read_examples_recovers_prompt_and_target() -> None:
    (e,) = inference.read_examples([(7, _features([10, 11, 12], [20, 21, 2]))])
    assert e == inference.EvalExample(index=7, prompt=(2, 10, 11, 12), target=(20, 21, 2))
    with pytest.raises(ValueError, match="example 3 has no target"):
        bad = _features([10], [2])
        bad["decoder_loss_weights"][:] = 0
        inference.read_examples([(3, bad)])


def test_eos_padded() -> None:
    assert inference.eos_padded([5, 6], 4, 2).tolist() == [5, 6, 2, 2]


def _rank_rows(rng: np.random.Generator) -> tuple[list, list[rc.Candidate]]:
    """4 examples (prompts of 3..20 tokens) with 2..4 options of 1..5 tokens each, as rows."""
    rows, cands = [], []
    for example in range(4):
        prompt = rng.integers(4, 500, size=int(rng.integers(3, 20))).tolist()
        num_options = int(rng.integers(2, 5))
        label = int(rng.integers(num_options))
        for option in range(num_options):
            target = rng.integers(4, 500, size=int(rng.integers(1, 6))).tolist() + [2]
            rows.append(_features(prompt, target, length=32))
            cands.append(rc.Candidate(example, option, option == label, len(target)))
    return [(i, f) for i, f in enumerate(rows)], cands


def test_shared_prompt_scores_equal_full_scores(params) -> None:
    rows, cands = _rank_rows(np.random.default_rng(0))
    full = inference.Inferencer(params, CONFIG, batch_size=4, share_prompts=False)
    shared = inference.Inferencer(params, CONFIG, batch_size=3, share_prompts=True)
    s_full = dict(full.score_fn(rows))
    s_shared = dict(shared.score_fn(list(reversed(rows))))  # any order in, indices kept
    assert sorted(s_full) == sorted(s_shared) == list(range(len(rows)))
    for i in s_full:
        assert s_shared[i] == pytest.approx(s_full[i], abs=1e-5)
    order = sorted(s_full)
    by_full = [s_full[i] for i in order]
    by_shared = [s_shared[i] for i in order]
    assert rc.rank_classification(cands, by_full) == rc.rank_classification(cands, by_shared)
    by_tokens = [rc.rank_classification(cands, s, "tokens") for s in (by_full, by_shared)]
    assert by_tokens[0] == by_tokens[1]


def _mixed_examples(rng: np.random.Generator) -> list[inference.EvalExample]:
    """Letter-like one-token options (4 per prompt), multi-token options against a prompt that
    begins another (one shares the other's tokens), one short prompt with two 40-token options
    (one row per option is cheaper there), three options with the same first 6 tokens, and
    three prompts after the same 25 tokens."""
    examples = []

    def add(prompt, targets):
        for target in targets:
            examples.append(inference.EvalExample(len(examples), prompt, tuple(target)))

    for n in (3, 11, 7, 19, 5):
        prompt = (2, *rng.integers(4, 500, n - 1).tolist())
        add(prompt, [[t] for t in rng.integers(4, 500, 4).tolist()])
        add(prompt[:-1], [rng.integers(4, 500, k).tolist() + [2] for k in (1, 3, 6)])
    add((2, 17), [rng.integers(4, 500, 40).tolist() for _ in range(2)])
    common = rng.integers(4, 500, 6).tolist()  # PIQA-like options that differ at the end
    add((2, 23, 24), [common + rng.integers(4, 500, k).tolist() + [2] for k in (0, 2, 5)])
    demonstrations = (2, *rng.integers(4, 500, 24).tolist())  # a few-shot-like shared prefix
    for n in (3, 6, 1):
        question = rng.integers(4, 500, n).tolist()
        add((*demonstrations, *question), [[t] for t in rng.integers(4, 500, 3).tolist()])
    return examples


def _score_each_row(params, examples: list[inference.EvalExample]) -> tuple[list, list]:
    """The definition: each full row's target-token log-likelihoods (`decoding.score`'s), summed
    in float64 (`decoding.score` sums in float32: 1.1e-5 off on a 7-token sum of -75.6), and
    whether every target token is the argmax of the full row's logits."""
    tokens = np.ones((len(examples), CONFIG.max_positions), np.int32)
    targets = np.ones_like(tokens)
    weights = np.zeros(tokens.shape, bool)
    for row, e in enumerate(examples):
        seq, p = e.prompt + e.target, len(e.prompt)
        tokens[row, : len(seq) - 1] = seq[:-1]
        targets[row, : len(seq) - 1] = seq[1:]
        weights[row, p - 1 : len(seq) - 1] = True
    logits = _forward(params, tokens)
    ll = np.asarray(decoding.token_log_likelihoods(logits, targets), np.float64)
    hits = np.asarray(logits).argmax(-1) == targets
    greedy = [bool(np.all(hits[row][weights[row]])) for row in range(len(examples))]
    return np.where(weights, ll, 0.0).sum(-1).tolist(), greedy


@pytest.mark.parametrize("share_prompts", [True, False])
def test_scores_equal_scoring_each_full_row(params, share_prompts: bool) -> None:
    examples = _mixed_examples(np.random.default_rng(5))
    path = _naive_greedy(params, (2, 7), 2)  # a target that is the model's greedy path
    other = (path[0], 0 if path[1] else 3)  # after the same first token (a lead), not greedy
    for target in (other, path):
        examples.append(inference.EvalExample(len(examples), (2, 7), tuple(target)))
    infer = inference.Inferencer(params, CONFIG, batch_size=3, share_prompts=share_prompts)
    expected, greedy = _score_each_row(params, examples)
    np.testing.assert_allclose(infer.score_examples(examples), expected, atol=1e-5, rtol=0)
    scored = infer.score_examples(examples, greedy=True)
    np.testing.assert_allclose([s for s, _ in scored], expected, atol=1e-5, rtol=0)
    assert [g for _, g in scored] == greedy and greedy[-1] and not all(greedy)


def test_an_empty_target_is_rejected(params) -> None:
    with pytest.raises(ValueError, match="example 4 has an empty target"):
        inference.Inferencer(params, CONFIG).score_examples([inference.EvalExample(4, (2,), ())])


@jax.jit
def _forward(params, tokens):
    return opt.OPTDecoder(CONFIG).apply({"params": params}, tokens)


def _naive_greedy(params, prompt: tuple[int, ...], steps: int) -> list[int]:
    """Argmax of a full forward pass per step (right padding cannot change earlier logits)."""
    tokens = list(prompt)
    out = []
    for _ in range(steps):
        padded = np.ones((1, 32), np.int32)
        padded[0, : len(tokens)] = tokens
        nxt = int(np.argmax(_forward(params, padded)[0, len(tokens) - 1]))
        out.append(nxt)
        if nxt == 2:
            break
        tokens.append(nxt)
    return out


def test_greedy_generation_matches_a_naive_loop(params) -> None:
    rng = np.random.default_rng(1)
    rows = [
        (i, _features(rng.integers(4, 500, size=n).tolist(), [2], 24))
        for i, n in enumerate([3, 9, 5])
    ]
    infer = inference.Inferencer(params, CONFIG, batch_size=2, max_new_tokens=6)
    predictions = dict(infer.predict_fn(rows))
    for e in inference.read_examples(rows):
        expected = _naive_greedy(params, e.prompt, 6)
        expected = expected[: expected.index(2)] if 2 in expected else expected
        got = predictions[e.index].tolist()
        assert got == inference.eos_padded(expected, 6, 2).tolist()


def test_long_prompts_are_cut_on_the_left(params) -> None:
    infer = inference.Inferencer(params, CONFIG, batch_size=2, max_new_tokens=4)
    assert infer._fit((2, 5, 6, 7, 8), 3) == (2, 7, 8)
    long_row = (0, _features(list(range(4, 104)), [9, 2], length=128))  # 100 + 2 > 64 positions
    ((_, s_shared),) = inference.Inferencer(params, CONFIG, batch_size=2).score_fn([long_row])
    ((_, s_full),) = inference.Inferencer(params, CONFIG, share_prompts=False).score_fn([long_row])
    assert s_shared == pytest.approx(s_full, abs=1e-4)
    ((_, ids),) = infer.predict_fn([long_row])
    assert ids.shape == (4,)


@pytest.mark.slow
def test_same_scores_and_predictions_on_a_mesh(params) -> None:
    partitioning = pytest.importorskip("optiml.partitioning")
    p = partitioning.Partitioner.create(partitioning.MeshConfig(data=4, model=2))
    sharded, _ = p.init(
        lambda rng: opt.OPTDecoder(CONFIG).init(rng, np.ones((1, 8), np.int32))["params"],
        jax.random.key(0),
    )
    rows, _ = _rank_rows(np.random.default_rng(0))
    local = dict(inference.Inferencer(params, CONFIG, batch_size=4).score_fn(rows))
    meshed = dict(inference.Inferencer(sharded, CONFIG, partitioner=p, batch_size=4).score_fn(rows))
    for i in local:
        assert meshed[i] == pytest.approx(local[i], abs=1e-4)
    gen_rows = rows[:5]
    a = dict(
        inference.Inferencer(params, CONFIG, batch_size=4, max_new_tokens=5).predict_fn(gen_rows)
    )
    b = dict(
        inference.Inferencer(
            sharded, CONFIG, partitioner=p, batch_size=4, max_new_tokens=5
        ).predict_fn(gen_rows)
    )
    assert {k: v.tolist() for k, v in a.items()} == {k: v.tolist() for k, v in b.items()}


WORKER = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"
address, pid = sys.argv[1], int(sys.argv[2])
import json

import jax
from optiml import partitioning
partitioning.initialize_distributed(partitioning.DistributedConfig(address, 2, pid))
import numpy as np
sys.path.insert(0, "tests")
from test_inference import CONFIG, _rank_rows
from optiml.evaluation import inference
from optiml.models import opt
p = partitioning.Partitioner.create(partitioning.MeshConfig(data=4, model=2))
params, _ = p.init(
    lambda rng: opt.OPTDecoder(CONFIG).init(rng, np.ones((1, 8), np.int32))["params"],
    jax.random.key(0),
)
rows, _ = _rank_rows(np.random.default_rng(0))
scores = inference.Inferencer(params, CONFIG, partitioner=p, batch_size=4).score_fn(rows)
infer = inference.Inferencer(params, CONFIG, partitioner=p, batch_size=4, max_new_tokens=5)
predictions = [(i, ids.tolist()) for i, ids in infer.predict_fn(rows[:5])]
print("RESULT " + json.dumps({"scores": scores, "predictions": predictions}))
"""


@pytest.mark.slow
def test_two_processes_give_every_host_all_results(params) -> None:
    """Two CPU processes x 4 devices as one jax.distributed job: each gets every score and
    prediction, equal to one process without a mesh."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, address, str(pid)], cwd=root, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for pid in range(2)
    ]  # fmt: skip
    results = []
    for worker in workers:
        try:
            out, _ = worker.communicate(timeout=400)
        finally:
            worker.kill()
        assert worker.returncode == 0, out[-3000:]
        (line,) = [x for x in out.splitlines() if x.startswith("RESULT ")]
        results.append(json.loads(line[len("RESULT ") :]))
    assert results[0] == results[1]
    rows, _ = _rank_rows(np.random.default_rng(0))
    local = dict(inference.Inferencer(params, CONFIG, batch_size=4).score_fn(rows))
    for i, score in results[0]["scores"]:
        assert score == pytest.approx(local[i], abs=1e-4)
    plain = inference.Inferencer(params, CONFIG, batch_size=4, max_new_tokens=5)
    expected = {i: ids.tolist() for i, ids in plain.predict_fn(rows[:5])}
    assert {i: ids for i, ids in results[0]["predictions"]} == expected
