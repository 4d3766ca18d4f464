"""Preparation as an Apache Beam pipeline (DirectRunner): the same cache, byte for byte, as the
local path; failures recorded alike; pipeline options passed through `prepare`'s command line."""

from __future__ import annotations

import pytest
import seqio
from cache_testing import same_cache

from optiml.bench.sources import common
from optiml.pipeline import beam_prepare, cache, prepare

VOCAB = seqio.ByteVocabulary()
FEATURES = {
    "inputs": seqio.Feature(VOCAB, add_eos=False),
    "targets": seqio.Feature(VOCAB, add_eos=True),
}
EXAMPLES = {
    "beam_test_a": [("What is 2+2?", " 4"), ("Capital of France?", " Paris")],
    "beam_test_b": [(f"Count to {i}.", " " + " ".join(map(str, range(i)))) for i in range(1, 9)],
}


def _missing(split: str):
    raise common.SourceDataError("beam_test_broken: no local files in /nowhere")


@pytest.fixture(scope="module", autouse=True)
def registered():
    for name, pairs in EXAMPLES.items():
        rendered = [common.Example(str(i), p, t) for i, (p, t) in enumerate(pairs)]
        seqio.TaskRegistry.add(
            name,
            source=common.function_source(name, lambda split, r=rendered: r),
            preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
            output_features=FEATURES,
        )
    seqio.TaskRegistry.add(
        "beam_test_broken",
        source=common.function_source("beam_test_broken", _missing),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=FEATURES,
    )
    yield
    for name in [*EXAMPLES, "beam_test_broken"]:
        seqio.TaskRegistry.remove(name)


def test_direct_runner_writes_the_local_cache_byte_for_byte(tmp_path):
    names = [*EXAMPLES, "beam_test_broken"]
    local = prepare.prepare(names, tmp_path / "local")
    assert sorted(local.direct) == sorted(EXAMPLES) and list(local.failed) == ["beam_test_broken"]
    report = beam_prepare.run(names, tmp_path / "beam", modules=["seqio"])
    assert sorted(report.prepared) == sorted(EXAMPLES) and report.num_examples == 10
    assert "no local files in /nowhere" in report.failed["beam_test_broken"]
    same_cache(tmp_path / "local", tmp_path / "beam", "train", list(EXAMPLES))
    errors = cache.read_errors(tmp_path / "beam", "train")
    assert errors == cache.read_errors(tmp_path / "local", "train")

    again = beam_prepare.run(names, tmp_path / "beam", modules=["seqio"])  # a rerun resumes
    assert sorted(again.prepared) == sorted(EXAMPLES)
    same_cache(tmp_path / "local", tmp_path / "beam", "train", list(EXAMPLES))


def test_the_command_line_passes_beam_options_through(tmp_path):
    argv = ["--tasks", ",".join(EXAMPLES), "--cache_dir", str(tmp_path / "cli"), "--module",
            "seqio", "--runner=DirectRunner", "--direct_num_workers=1", "--path=seqio"]  # fmt: skip
    report = prepare.main(argv)
    assert sorted(report.prepared) == sorted(EXAMPLES) and not report.failed
    prepare.prepare(list(EXAMPLES), tmp_path / "local")
    same_cache(tmp_path / "local", tmp_path / "cli", "train", list(EXAMPLES))
    with pytest.raises(SystemExit):  # an unknown flag without --runner is an error
        prepare.main(argv[:5] + ["--direct_num_workers=1"])


@pytest.mark.slow
@pytest.mark.data
def test_two_worker_processes_prepare_real_tasks(data_dir, tmp_path, monkeypatch):
    """Worker processes import the registry themselves (DoFn.setup) and read the data."""
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    import optiml.registry  # noqa: F401

    names = [
        "optiml:niv2:task1557_jfleg_answer_generation",
        "optiml:niv2:task1294_wiki_qa_answer_verification",
        "optiml:promptsource:super_glue_cb",
        "optiml:mmlu:anatomy",
    ]
    local = prepare.prepare(names, tmp_path / "local", split="test")
    assert sorted(local.prepared) == sorted(names)
    options = ["--runner", "DirectRunner", "--direct_num_workers=2",
               "--direct_running_mode=multi_processing"]  # fmt: skip
    report = beam_prepare.run(names, tmp_path / "beam", split="test", pipeline_args=options)
    assert sorted(report.prepared) == sorted(names) and not report.failed
    same_cache(tmp_path / "local", tmp_path / "beam", "test", names)
