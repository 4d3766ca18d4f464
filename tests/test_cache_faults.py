"""The token cache under faults (issue 16): a truncated or garbled array, an old format, a mixture
that lost too many tasks, and two writers racing a reader on one task. Each damaged task is named
with its file before the first batch; nothing partial is ever read."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from optiml import errors
from optiml.bench import mixing
from optiml.pipeline import cache, stream

VOCAB = 50272


def _examples(seed: int, n: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(4, 1000, 5 + i % 4), np.array([1000 + i, 2])) for i in range(n)]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    for t, name in enumerate(("task_a", "task_b", "task_c")):
        cache.write_task(tmp_path, "train", name, _examples(t), seed=0, vocab_size=VOCAB)
    return tmp_path


def _stream(cache_dir: Path, **kw) -> stream.MixtureStream:
    tasks = [("task_a", 1.0), ("task_b", 1.0), ("task_c", 1.0)]
    return stream.MixtureStream(cache_dir, tasks, batch_size=2, length=32, **kw)


def _garble(path: Path, values: np.ndarray) -> None:
    """Overwrite an array file's data (same size, same header) with `values`."""
    array = np.load(path, mmap_mode="r+")
    array[:] = values[: len(array)].astype(array.dtype)
    array.flush()


@pytest.mark.parametrize(
    "damage, file, problem",
    [
        ("truncated", "tokens.npy", "unreadable (mmap length is greater than file size)"),
        ("emptied", "offsets.npy", "unreadable (No data left in file)"),
        ("ids above the vocabulary", "tokens.npy", "checksum differs from info.json's"),
        ("ids inside the vocabulary", "tokens.npy", "checksum differs from info.json's"),
        ("offsets garbled", "offsets.npy", "checksum differs from info.json's"),
        ("format 1", "info.json", "cache format 1, this optiml reads 2"),
    ],
)
def test_a_damaged_task_is_named_with_its_file_before_the_first_batch(
    cache_dir: Path, caplog: pytest.LogCaptureFixture, damage: str, file: str, problem: str
) -> None:
    folder = cache.task_dir(cache_dir, "train", "task_b")
    if damage == "truncated":
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[: len(data) - 7])
    elif damage == "emptied":  # e.g. a disk that filled up: np.load raises EOFError
        (folder / file).write_bytes(b"")
    elif damage == "ids above the vocabulary":
        _garble(folder / file, np.full(1000, 60000))
    elif damage == "ids inside the vocabulary":
        _garble(folder / file, np.arange(1000) + 7)
    elif damage == "offsets garbled":
        _garble(folder / file, np.arange(1000) * 3)
    else:
        text = (folder / file).read_text()
        (folder / file).write_text(text.replace('"format": 2', '"format": 1'))
    expected = f"cache task task_b is damaged: {folder / file}: {problem}; prepare it again"

    with pytest.raises(cache.DamagedTask) as error:
        _stream(cache_dir, on_damaged="stop")
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
    assert isinstance(error.value, errors.RunStopped)  # optiml.main: one line, exit 1

    left_out = _stream(cache_dir)  # the default: leave it out, say so in one line
    assert left_out.task_names == ["task_a", "task_c"] and list(left_out.damaged) == ["task_b"]
    [warning] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert expected in warning
    batch = next(left_out)
    assert batch["decoder_target_tokens"].max() < VOCAB


def test_an_intact_cache_passes_and_reads_the_same(cache_dir: Path) -> None:
    task = cache.CachedTask(cache_dir, "train", "task_a")
    prompt, target = _examples(0)[3]
    tokens, prompt_length = task.example(3)
    assert prompt_length == len(prompt)
    np.testing.assert_array_equal(tokens, np.concatenate([prompt, target]))
    info = cache.read_info(cache_dir, "train", "task_a")
    assert info.max_id == max(int(t.max()) for p, t in _examples(0) for t in (p, t))
    assert set(info.checksums) == set(cache.ARRAYS)


def _declared(names: list[str]) -> list[tuple[str, float]]:
    return [(name, 1.0) for name in names]


def test_a_mixture_that_lost_too_much_stops_naming_what_is_missing(cache_dir: Path) -> None:
    """Training on 3 of 20 tasks used to be one warning line."""
    declared = _declared(["task_a", "task_b", "task_c"] + [f"task_{i:02d}" for i in range(17)])
    shrunk = stream.MixtureStream(cache_dir, declared, batch_size=2, length=32)
    with pytest.raises(stream.MixtureShrunk) as error:
        stream.check_shrinkage("my_mixture", shrunk, declared, max_share=0.05)
    message = str(error.value)
    assert message.startswith("my_mixture (train) lost 17 of 20 tasks (85.0%) and 85.0% of its")
    assert "17 not in the cache (task_00, task_01, task_02 ...)" in message
    assert "\n" not in message and isinstance(error.value, errors.RunStopped)
    stream.check_shrinkage("my_mixture", shrunk, declared, max_share=0.9)  # allowed by choice


def test_absent_data_and_benchmarks_count_too(cache_dir: Path, monkeypatch) -> None:
    """optiml mixtures also lose the tasks absent from the local data and the recipe's shares of
    absent benchmarks (renormalised away)."""
    rates = mixing.MixtureRates(
        mixture="optiml_mix:fake", rates=[("task_a", 0.5), ("task_b", 0.3), ("task_c", 0.2)],
        counts={"task_a": 6, "task_b": 6, "task_c": 6}, benchmark_rates={"niv2": 1.0},
        missing=["task_x"], reasons={"task_x": "no file task_x.json"},
        missing_benchmarks=["flan"],
    )  # fmt: skip
    monkeypatch.setitem(mixing.MIXTURES, "optiml_mix:fake", mixing.DEFAULT_MIXTURES["train"])
    monkeypatch.setattr(mixing, "mixture_rates", lambda name: rates)
    full = _stream(cache_dir)
    with pytest.raises(stream.MixtureShrunk, match=r"lost 1 of 4 tasks \(25.0%\) and 19.8% of"):
        stream.check_shrinkage("optiml_mix:fake", full, rates.rates, max_share=0.2)
    with pytest.raises(stream.MixtureShrunk, match=r"1 absent locally \(task_x\)"):
        stream.check_shrinkage("optiml_mix:fake", full, rates.rates, max_share=0.1)
    stream.check_shrinkage("optiml_mix:fake", full, rates.rates, max_share=0.25)


def _writer(root: str, seconds: float) -> int:
    """Rewrites task_w again and again (identical content, as concurrent `prepare` runs do)."""
    writes, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        cache.write_task(root, "train", "task_w", _examples(9, 40), seed=0, vocab_size=VOCAB)
        writes += 1
    return writes


def _reader(root: str, seconds: float) -> int:
    """Opens and verifies task_w again and again; any exception fails the test."""
    reads, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = cache.CachedTask(root, "train", "task_w")
        assert len(task) == 40
        reads += 1
    return reads


def test_two_writers_and_a_reader_never_see_a_partial_task(tmp_path: Path) -> None:
    """Before: write_task deleted then renamed, so readers found the task missing or half
    deleted and 5% of concurrent writes failed with `Directory not empty`."""
    _writer(str(tmp_path), 0)
    cache.write_task(tmp_path, "train", "task_w", _examples(9, 40), seed=0, vocab_size=VOCAB)
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        writers = [pool.apply_async(_writer, (str(tmp_path), 8.0)) for _ in range(2)]
        reader = pool.apply_async(_reader, (str(tmp_path), 8.0))
        writes = [w.get(timeout=120) for w in writers]
        reads = reader.get(timeout=120)
    assert min(writes) > 10 and reads > 10, (writes, reads)
    leftovers = [p.name for p in (tmp_path / "train").iterdir() if p.name != "task_w"]
    assert leftovers == [], leftovers


def test_without_an_atomic_exchange_a_rewrite_still_replaces_the_task(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File systems without renameat2(RENAME_EXCHANGE) (NFS, macOS): the old folder goes aside."""
    monkeypatch.setattr(cache, "_exchange", lambda a, b: False)
    cache.write_task(cache_dir, "train", "task_a", _examples(5), seed=1, vocab_size=VOCAB)
    assert cache.CachedTask(cache_dir, "train", "task_a").info.seed == 1
    assert sorted(p.name for p in (cache_dir / "train").iterdir()) == ["task_a", "task_b", "task_c"]
