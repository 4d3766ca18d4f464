"""Preparation: seqio tasks -> token cache, exactly; shards, resume, bad tasks reported by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import seqio
import tensorflow as tf

from optiml.pipeline import cache, prepare
from optiml.pipeline.stream import MixtureShrunk, MixtureStream, from_mixture

VOCAB = seqio.ByteVocabulary()
FEATURES = {
    "inputs": seqio.Feature(VOCAB, add_eos=False),
    "targets": seqio.Feature(VOCAB, add_eos=True),
}
PAIRS = {
    "prep_test_a": [("What is 2+2?", "4"), ("Capital of France?", "Paris"), ("Hi", "Hello")],
    "prep_test_b": [(f"Count to {i}.", " ".join(map(str, range(i)))) for i in range(1, 8)],
    "prep_test_c": [("x", "y")],
}


def _source(pairs: list[tuple[str, str]]) -> seqio.FunctionDataSource:
    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del split, shuffle_files, seed
        return tf.data.Dataset.from_tensor_slices(
            {"inputs": [p for p, _ in pairs], "targets": [t for _, t in pairs]}
        )

    return seqio.FunctionDataSource(dataset_fn, splits=["train"])


def _broken(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    raise FileNotFoundError("natinst/tasks/prep_test_broken.json: no such file")


@pytest.fixture(scope="module", autouse=True)
def registered():
    names = [*PAIRS, "prep_test_broken"]
    for name, pairs in PAIRS.items():
        seqio.TaskRegistry.add(
            name,
            source=_source(pairs),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
            output_features=FEATURES,
        )
    seqio.TaskRegistry.add(
        "prep_test_broken",
        source=seqio.FunctionDataSource(_broken, splits=["train"]),
        preprocessors=[seqio.preprocessors.tokenize],
        output_features=FEATURES,
    )
    seqio.MixtureRegistry.add("prep_test_mix", [(n, 1.0) for n in names])
    yield
    seqio.MixtureRegistry.remove("prep_test_mix")
    for name in names:
        seqio.TaskRegistry.remove(name)


def test_cache_holds_exactly_what_seqio_yields(tmp_path: Path) -> None:
    report = prepare.prepare(list(PAIRS), tmp_path)
    assert sorted(report.prepared) == sorted(PAIRS) and not report.failed
    task = cache.CachedTask(tmp_path, "train", "prep_test_a")
    assert len(task) == 3 and task.info.seed == 0
    assert task.tokens.dtype == np.uint16
    tokens, prompt_length = task.example(1)
    prompt, target = VOCAB.encode("Capital of France?"), VOCAB.encode("Paris") + [1]  # EOS 1
    assert tokens.tolist() == prompt + target and prompt_length == len(prompt)
    seqio_examples = list(
        seqio.get_mixture_or_task("prep_test_b")
        .get_dataset(None, split="train", shuffle=False)
        .as_numpy_iterator()
    )
    cached = cache.CachedTask(tmp_path, "train", "prep_test_b")
    for i, ex in enumerate(seqio_examples):
        tokens, prompt_length = cached.example(i)
        np.testing.assert_array_equal(tokens, np.concatenate([ex["inputs"], ex["targets"]]))
        assert prompt_length == len(ex["inputs"])


def test_a_broken_task_is_reported_by_name_and_the_rest_prepared(tmp_path: Path) -> None:
    names = prepare.mixture_tasks("prep_test_mix") + ["prep_test_not_registered"]
    report = prepare.prepare(names, tmp_path)
    assert sorted(report.prepared) == sorted(PAIRS)
    assert set(report.failed) == {"prep_test_broken", "prep_test_not_registered"}
    assert "prep_test_broken.json" in report.failed["prep_test_broken"]
    manifest = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert manifest["num_tasks"] == 3 and manifest["num_examples"] == 3 + 7 + 1
    assert set(manifest["errors"]) == {"prep_test_broken", "prep_test_not_registered"}
    stream = MixtureStream(tmp_path, [(n, 1.0) for n in names], batch_size=2, length=64)
    assert stream.missing == ["prep_test_broken", "prep_test_not_registered"]
    assert next(stream)["decoder_input_tokens"].shape == (2, 64)
    with pytest.raises(MixtureShrunk, match=r"lost 1 of 4 tasks .*1 not in the cache \(prep_"):
        from_mixture("prep_test_mix", tmp_path, batch_size=2, length=64)  # default: 5% at most
    mixed = from_mixture("prep_test_mix", tmp_path, batch_size=2, length=64, max_missing_share=0.3)
    assert mixed.missing == ["prep_test_broken"] and len(mixed.rates) == 3


def test_tasks_absent_from_the_data_are_failures_too(tmp_path: Path, caplog, monkeypatch) -> None:
    """An optiml mixture leaves tasks with broken or missing files out of its seqio mixture;
    `prepare --mixture` used to say only "6 of 10 tasks absent locally" and exit 0."""
    from optiml.bench import mixing

    reasons = {f"niv2_task{i}": f"NIV2 task task{i}: task file /d/task{i}.json is missing"
               for i in range(6)}  # fmt: skip
    fake = mixing.MixtureRates("optiml_mix:fake", [], {}, {}, sorted(reasons), reasons, [])
    monkeypatch.setitem(mixing.MIXTURES, "optiml_mix:fake", mixing.DEFAULT_MIXTURES["train"])
    monkeypatch.setattr(mixing, "mixture_rates", lambda name: fake)
    report = prepare.prepare(
        ["prep_test_b"], tmp_path, absent=prepare.absent_tasks("optiml_mix:fake")
    )
    assert report.failed == reasons and report.prepared == ["prep_test_b"]
    assert report.exit_code == 1
    manifest = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert manifest["errors"] == reasons
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prepare: failed")]
    assert lines == [f"prepare: failed {n}: {m}" for n, m in sorted(reasons.items())]


def test_the_command_names_every_failed_task_and_exits_1(tmp_path: Path, caplog) -> None:
    args = ["--mixture=prep_test_mix", f"--cache_dir={tmp_path}", "--module=seqio"]
    report = prepare.main(args)
    assert report.exit_code == 1 and list(report.failed) == ["prep_test_broken"]
    [line] = [r.getMessage() for r in caplog.records if "failed prep_test_broken" in r.getMessage()]
    assert line.startswith("prepare: failed prep_test_broken: ") and "prep_test_broken.json" in line
    assert prepare.main(["--tasks=prep_test_b", f"--cache_dir={tmp_path}", "--module=seqio"]
                        ).exit_code == 0  # fmt: skip
    with pytest.raises(SystemExit) as error:  # a name that is no task: exit 2 before any work
        prepare.main(["--tasks=prep_test_b,nope", f"--cache_dir={tmp_path}", "--module=seqio"])
    assert error.value.code == 2


def test_shards_partition_tasks_and_a_rerun_resumes(tmp_path: Path) -> None:
    names = list(PAIRS)
    parts = [prepare.shard(names, i, 2) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(names) and not set(parts[0]) & set(parts[1])
    first = prepare.prepare(names, tmp_path, shard_index=1, num_shards=2)
    assert first.prepared == parts[1]
    both = prepare.main(
        ["--tasks", ",".join(names), "--cache_dir", str(tmp_path), "--module", "seqio"]
    )
    assert both.skipped == parts[1] and both.prepared == parts[0]
    again = prepare.prepare(names, tmp_path, seed=1)  # another seed: prepared anew
    assert sorted(again.prepared) == sorted(names)
    with pytest.raises(ValueError, match="shard_index"):
        prepare.shard(names, 2, 2)


@pytest.mark.data
def test_real_niv2_tasks_prepare_and_stream(data_dir: Path, tmp_path: Path) -> None:
    """Registered NIV2 tasks: cached counts = mixing's exact counts, tokens = seqio's."""
    import optiml.registry  # noqa: F401
    from optiml.bench import mixing, names

    rates = mixing.mixture_rates("optiml_mix:niv2_all")
    chosen = sorted(rates.counts)[:3]
    report = prepare.prepare(chosen, tmp_path)
    assert sorted(report.prepared) == chosen and not report.failed
    for name in chosen:
        assert len(cache.CachedTask(tmp_path, "train", name)) == rates.counts[name]
    first = next(
        seqio.get_mixture_or_task(chosen[0])
        .get_dataset(None, split="train", shuffle=False)
        .as_numpy_iterator()
    )
    tokens, prompt_length = cache.CachedTask(tmp_path, "train", chosen[0]).example(0)
    np.testing.assert_array_equal(tokens, np.concatenate([first["inputs"], first["targets"]]))
    assert prompt_length == len(first["inputs"]) and tokens[-1] == 2
    assert names.parse_task_name(chosen[0]).benchmark == "niv2"

    stream = MixtureStream(tmp_path, [(n, rates.counts[n]) for n in chosen], batch_size=2)
    batch = next(stream)
    assert batch["decoder_input_tokens"].shape == (2, 2048)
    starts = (batch["decoder_positions"] == 0) & (batch["decoder_segment_ids"] > 0)
    assert (batch["decoder_input_tokens"][starts] == 2).all()
    assert (batch["decoder_segment_ids"] > 0).mean() > 0.9
