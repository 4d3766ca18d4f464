"""`import optiml.registry`: registers everything without reading data; seqio then serves it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

IMPORT_PROBE = """
import sys
data = sys.argv[1]
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(data):
        opened.append(args[0])
sys.addaudithook(hook)
import seqio
import optiml.registry as registry
from optiml.bench import catalog
from optiml.bench.sources import common
names = seqio.TaskRegistry.names()
loaders = {b: catalog.loader(b) for b in catalog.benchmarks()}
expected = sum(len(catalog.tasks(b)) * (1 + len(common.variants(m)))
               for b, m in loaders.items() if m)
print(len(registry.TASKS), expected, len(registry.MIXTURES),
      "optiml:niv2:task1557_jfleg_answer_generation#5shot" in names,
      "optiml_mix:train" in seqio.MixtureRegistry.names(), len(opened))
"""


@pytest.mark.slow
@pytest.mark.data
def test_import_registers_everything_and_reads_no_data(tmp_path, data_dir):
    env = dict(os.environ, OPTIML_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, str(data_dir)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tasks, expected, mixtures, variant, train, opened = out.stdout.split()
    # every NIV2 task 0/2/5-shot in the Appendix C and the Tk-Instruct formats, + other sources
    assert int(tasks) == int(expected) >= 6 * 1613
    assert int(mixtures) >= 10 and variant == "True" and train == "True"
    assert opened == "0"  # not one file under the data directory was opened


@pytest.fixture(scope="module")
def registry(data_dir):
    os.environ["OPTIML_DATA_DIR"] = str(data_dir)
    import optiml.registry

    return optiml.registry


@pytest.mark.data
def test_task_get_dataset_has_opt_features(registry, data_dir):
    import seqio

    task = seqio.get_mixture_or_task("optiml:niv2:task1557_jfleg_answer_generation")
    ds = task.get_dataset({"inputs": 512, "targets": 128}, split="test", shuffle=False)
    ex = next(ds.as_numpy_iterator())
    vocab = task.output_features["targets"].vocabulary
    assert ex["targets"][-1] == 2 and 2 not in ex["inputs"].tolist()  # EOS on targets only
    assert vocab.decode(ex["inputs"].tolist()) == ex["inputs_pretokenized"].decode()
    assert ex["targets_pretokenized"].decode().startswith(" ")
    first_line = ex["inputs_pretokenized"].decode().split("\n")[0]  # Appendix C (paper)
    assert (
        first_line.removeprefix("Instructions: ")
        .removeprefix("Task: ")
        .startswith("In this task, you will be shown an incorrect English sentence.")
    )
    assert ex["task"] == b"task1557_jfleg_answer_generation" and len(ex["references"]) >= 1


@pytest.mark.data
def test_mixture_uses_present_tasks_only(registry, data_dir):
    import seqio

    from optiml.bench import mixing

    mix = seqio.get_mixture_or_task("optiml_mix:niv2_test")
    assert len(mix.tasks) == 58  # the official test tasks OPT-IML evaluates: 61, 58 present
    rates = mixing.mixture_rates("optiml_mix:niv2_test")
    assert len(rates.missing) == 3  # 61 - 58
    assert all(rates.reasons[m].endswith("is missing") for m in rates.missing)


@pytest.mark.data
def test_malformed_task_file_is_left_out_and_mixture_still_works(
    registry, data_dir, tmp_path, monkeypatch
):
    import seqio

    from optiml.bench import levels, mixing
    from optiml.bench.sources import niv2

    test_ids = list(levels.build_levels().niv2_test)
    present = niv2.present_task_ids(data_dir / "natinst")
    good, bad = [r for r in test_ids if r.source_id in present][:2]
    (tmp_path / "natinst" / "tasks").mkdir(parents=True)
    shutil.copy(
        niv2.task_path(good.source_id, data_dir / "natinst"), tmp_path / "natinst" / "tasks"
    )
    (tmp_path / "natinst" / "tasks" / f"{bad.source_id}.json").write_text(json.dumps({"x": 1}))
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    caches = (mixing.mixture_rates, mixing.count_examples, niv2.instance_counts, niv2.load_task)
    for fn in caches:
        fn.cache_clear()
    try:
        rates = mixing.mixture_rates("optiml_mix:niv2_test")
        assert [n for n, _ in rates.rates] == [good.name] and rates.rates[0][1] == 1.0
        assert f"NIV2 task {bad.source_id}: malformed" in rates.reasons[bad.name]
        ds = seqio.get_mixture_or_task("optiml_mix:niv2_test").get_dataset(
            {"inputs": 256, "targets": 64}, split="test", shuffle=False
        )
        assert len(list(ds.take(3).as_numpy_iterator())) == 3
    finally:
        for fn in caches:
            fn.cache_clear()


@pytest.mark.data
@pytest.mark.parametrize(
    "name, split",
    [
        ("optiml:niv2:task1557_jfleg_answer_generation#5shot", "test"),  # dev, few-shot
        ("optiml:niv2:task023_cosmosqa_question_generation", "train"),  # train
        ("optiml:niv2:task195_sentiment140_classification", "validation"),  # supervised
    ],
)
def test_seqio_sample_equals_the_pure_python_rendering(registry, name, split):
    """seqio (the source of truth) and the JSON walk in test_niv2 render the same examples."""
    import seqio

    from optiml.bench import catalog, names
    from optiml.bench.sources import niv2

    record = catalog.task(name)
    variant = names.parse_task_name(name).variant
    expected = niv2.examples(record, split, num_demos=niv2.VARIANTS[variant] if variant else 0)
    task = seqio.get_mixture_or_task(name)
    vocab = task.output_features["targets"].vocabulary
    got = list(task.get_dataset(None, split=split, shuffle=False).take(3).as_numpy_iterator())
    assert len(got) == 3
    for ex, want in zip(got, expected, strict=False):
        assert ex["id"].decode() == want.id
        assert ex["inputs_pretokenized"].decode() == want.inputs
        assert ex["inputs"].tolist() == vocab.encode(want.inputs)
        assert ex["targets"].tolist() == vocab.encode(want.targets) + [2]


@pytest.mark.data
def test_register_roles_holds_out_a_made_supervised_tasks_instances(data_dir):
    import seqio

    import optiml.registry as registry
    from optiml.bench import catalog, levels
    from optiml.bench.sources import common

    name = "optiml:niv2:task833_poem_sentiment_classification"

    def sizes() -> list[int]:
        source = seqio.get_mixture_or_task(name).source
        return [sum(1 for _ in source.get_dataset(split)) for split in ("train", "validation")]

    everything, _ = sizes()  # a `train` task: every instance trains
    try:
        assert name in registry.register_roles(levels.LevelConfig(supervised_tasks=(name,)))
        train, heldout = sizes()
        assert train + heldout == everything and 0 < heldout < everything / 5
    finally:  # the catalog's role again, for the other tests of this process
        loader = catalog.loader("niv2")
        record = catalog.task(name)
        for variant in (None, *common.variants(loader)):
            registry.register_task(record, loader, variant)
    assert sizes()[0] == everything
