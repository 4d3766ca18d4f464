"""The training stream: exact documents, epochs, determinism, resume, rates, hosts, missing tasks.

The fixture cache holds synthetic tasks whose tokens say where they come from: example i of task
t has prompt [100 + t] * p and target [1000 + i, ..., 2], so every packed document names itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from optiml.pipeline import cache, features
from optiml.pipeline.stream import MixtureStream, check_counts, counter_uniforms

SIZES = {"task_a": 5, "task_b": 12, "task_c": 40, "task_d": 3}
LENGTH = 64


def _example(t: int, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    prompt = np.full(rng.integers(1, 30), 100 + t)
    target = np.concatenate([[1000 + i], rng.integers(4, 99, rng.integers(0, 8)), [2]])
    return prompt, target


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    for t, (name, n) in enumerate(SIZES.items()):
        examples = [_example(t, i, rng) for i in range(n)]
        if name == "task_d":  # one example longer than a row: its prompt gets cut on the left
            examples[0] = (np.full(100, 100 + t), np.array([1000, 5, 2]))
        cache.write_task(root, "train", name, examples, seed=0, vocab_size=50272)
    return root


def _stream(cache_dir: Path, tasks: list | None = None, **kw) -> MixtureStream:
    args = dict(batch_size=8, length=LENGTH, seed=3, pool_size=8) | kw
    return MixtureStream(cache_dir, tasks or [(n, 1.0 / len(SIZES)) for n in SIZES], **args)


def _documents(batch: dict[str, np.ndarray]) -> list[tuple]:
    """(task, index, inputs, targets, loss weights) of each packed document, in row order."""
    docs = []
    for r in range(batch["decoder_segment_ids"].shape[0]):
        seg = batch["decoder_segment_ids"][r]
        for s in range(1, seg.max() + 1):
            where = seg == s
            inputs = batch["decoder_input_tokens"][r][where]
            targets = batch["decoder_target_tokens"][r][where]
            weights = batch["decoder_loss_weights"][r][where]
            first_target = targets[weights > 0][0]
            docs.append((int(inputs[1]) - 100, int(first_target) - 1000, inputs, targets, weights))
    return docs


def test_counter_uniforms_are_a_pure_function_of_seed_and_counter() -> None:
    a = counter_uniforms(7, 0, 100)
    np.testing.assert_array_equal(a[40:], counter_uniforms(7, 40, 60))
    assert not np.array_equal(a, counter_uniforms(8, 0, 100))
    assert 0.0 <= a.min() and a.max() < 1.0


def test_documents_equal_the_cached_examples(cache_dir: Path) -> None:
    stream = _stream(cache_dir)
    tasks = {n: cache.CachedTask(cache_dir, "train", n) for n in SIZES}
    names = list(SIZES)
    seen = 0
    for _ in range(5):
        for task, index, inputs, targets, weights in _documents(next(stream)):
            assert _same(tasks[names[task]], index, targets, weights), targets
            assert inputs[0] == 2 and np.array_equal(inputs[1:], targets[:-1])
            seen += 1
    assert seen > 40


def _same(task: cache.CachedTask, index: int, targets: np.ndarray, weights: np.ndarray) -> bool:
    tokens, prompt_length = task.example(index)
    prompt, target = features.truncate(tokens[:prompt_length], tokens[prompt_length:], LENGTH)
    expected = np.concatenate([prompt, target])
    return np.array_equal(expected, targets) and np.array_equal(
        weights, np.arange(len(expected)) >= len(prompt)
    )


def test_rows_are_full_and_long_prompts_are_left_truncated(cache_dir: Path) -> None:
    stream = _stream(cache_dir, tasks=[("task_d", 1.0)], pool_size=1)
    batch = next(stream)
    docs = [d for d in _documents(batch) if d[1] == 0]
    assert docs, "example 0 of task_d should be drawn in the first batch"
    _, _, inputs, targets, weights = docs[0]
    assert len(targets) == LENGTH
    np.testing.assert_array_equal(targets[-3:], [1000, 5, 2])
    np.testing.assert_array_equal(weights[-3:], [1, 1, 1])
    assert weights[:-3].sum() == 0


def test_each_epoch_of_a_task_is_a_permutation(cache_dir: Path) -> None:
    stream = _stream(cache_dir, tasks=[("task_b", 1.0), ("task_c", 1.0)], pool_size=1)
    order: dict[int, list[int]] = {}
    for _ in range(12):  # next-fit keeps draw order
        for task, index, *_ in _documents(next(stream)):
            order.setdefault(task, []).append(index)
    for task, n in ((1, 12), (2, 40)):
        indices = order[task]
        assert len(indices) >= 2 * n
        for e in range(len(indices) // n):
            assert sorted(indices[e * n : (e + 1) * n]) == list(range(n)), (task, e)
        assert indices[:n] != indices[n : 2 * n]  # a fresh permutation per epoch


def test_deterministic_for_a_seed(cache_dir: Path) -> None:
    a, b, c = _stream(cache_dir), _stream(cache_dir), _stream(cache_dir, seed=4)
    for _ in range(3):
        x, y, z = next(a), next(b), next(c)
        for key in features.FEATURES:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(x["decoder_target_tokens"], z["decoder_target_tokens"])


def test_resume_from_state_equals_continuing(cache_dir: Path) -> None:
    stream = _stream(cache_dir)
    for _ in range(4):
        next(stream)
    state = json.loads(json.dumps(stream.get_state()))
    assert len(json.dumps(state)) < 1000
    expected = [next(stream) for _ in range(3)]

    resumed = _stream(cache_dir)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in features.FEATURES:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert resumed.get_state() == stream.get_state()


def test_state_of_another_mixture_is_refused(cache_dir: Path) -> None:
    state = _stream(cache_dir).get_state()
    other = _stream(cache_dir, tasks=[("task_a", 1.0)])
    with pytest.raises(ValueError, match="another mixture"):
        other.set_state(state)


def test_host_slices_partition_the_global_batch(cache_dir: Path) -> None:
    whole = _stream(cache_dir)
    hosts = [_stream(cache_dir, process_index=p, process_count=4) for p in range(4)]
    for _ in range(3):
        want = next(whole)
        parts = [next(h) for h in hosts]
        for key in features.FEATURES:
            got = np.concatenate([p[key] for p in parts])
            np.testing.assert_array_equal(got, want[key], err_msg=key)
    assert all(h.get_state() == whole.get_state() for h in hosts)
    with pytest.raises(ValueError, match="divisible"):
        _stream(cache_dir, process_count=3)


def test_rates_are_honoured(cache_dir: Path) -> None:
    rates = {"task_a": 0.5, "task_b": 0.3, "task_c": 0.15, "task_d": 0.05}
    stream = _stream(cache_dir, tasks=list(rates.items()), batch_size=32)
    emitted = np.zeros(len(SIZES))
    for _ in range(30):
        for task, *_ in _documents(next(stream)):
            emitted[task] += 1
    total = emitted.sum()
    assert total > 2500
    assert sum(stream.get_state()["counts"]) == stream.get_state()["example"] >= total
    for name, count in zip(SIZES, emitted, strict=True):
        p = rates[name]
        assert abs(count / total - p) < 4 * np.sqrt(p * (1 - p) / total), (name, count / total)
    assert stream.rates == rates


def test_missing_tasks_are_reported_and_rates_renormalised(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        stream = _stream(cache_dir, tasks=[("task_a", 0.2), ("task_gone", 0.6), ("task_b", 0.2)])
    assert stream.missing == ["task_gone"]
    assert stream.rates == {"task_a": 0.5, "task_b": 0.5}
    assert "task_gone" in caplog.text
    next(stream)
    with pytest.raises(ValueError, match="none of the 1 tasks"):
        _stream(cache_dir, tasks=[("task_gone", 1.0)])


def test_the_pool_fills_rows_better_than_next_fit(cache_dir: Path) -> None:
    def fill(pool_size: int) -> float:
        stream = _stream(cache_dir, pool_size=pool_size, batch_size=32)
        return float(np.mean([(next(stream)["decoder_segment_ids"] > 0).mean() for _ in range(4)]))

    next_fit, pooled = fill(1), fill(32)
    assert pooled > next_fit
    assert pooled > 0.95


def test_a_stale_cache_is_refused(cache_dir: Path) -> None:
    stream = _stream(cache_dir)
    check_counts(stream, dict(SIZES))  # the data's counts: fine
    with pytest.raises(ValueError, match=r"stale for 1 tasks, e.g. task_b \(cache 12, data 13\)"):
        check_counts(stream, {**SIZES, "task_b": 13})


@pytest.mark.parametrize("kw", [dict(length=0), dict(length=-5), dict(batch_size=0)])
def test_a_stream_with_no_room_is_refused_before_reading_the_cache(cache_dir: Path, kw) -> None:
    """LENGTH=0 used to hang the first `next()`; now the constructor names the setting."""
    with pytest.raises(ValueError, match="length must be an int >= 1|batch_size 0"):
        _stream(cache_dir, **kw)
