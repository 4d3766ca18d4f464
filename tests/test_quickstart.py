"""The main job's composition: prepare the caches once, train, evaluate the untuned and the tuned
model, print them side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml import quickstart


def _report(fully_supervised: float) -> dict:
    level = {"combined": fully_supervised, "num_tasks": 9}
    return {"levels": {"fully_supervised": level}}


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that passes as $OPTIML_DATA_DIR (run() checks it before anything else)."""
    (tmp_path / "data" / "natinst").mkdir(parents=True)
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_train_then_the_untuned_and_the_tuned_model_side_by_side(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optiml import checkpointing

    monkeypatch.setattr(checkpointing, "newest_step", lambda directory: 100)
    calls = []

    def evaluate(**kwargs):
        calls.append(("evaluate", kwargs))
        return _report(0.0 if kwargs.get("step") == 0 else 48.1)

    run_dir = str(tmp_path / "run")
    result = quickstart.run(
        model_dir=run_dir,
        cache_dir=None,
        train=lambda: calls.append(("train", {})) or {"loss": 1.0},
        evaluate=evaluate,
    )
    untuned = str(tmp_path / "run" / "untuned")
    assert calls == [
        ("train", {}),
        ("evaluate", {"params_dir": run_dir, "step": 0, "run_dir": untuned, "print_report": False}),
        ("evaluate", {"print_report": False}),
    ]
    assert result == {"train": {"loss": 1.0}, "untuned": _report(0.0), "report": _report(48.1)}
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"[1/3] fine-tune into {run_dir} (checkpoint 0: the untuned model)",
        f"[2/3] evaluate the untuned model (step 0) into {untuned}",
        f"[3/3] evaluate the tuned model (step 100) into {run_dir}",
    ]
    assert "| Fully supervised | 9 | 0.0 | 48.1 | +48.1 |" in out
    python = quickstart._python()
    assert out[-2:] == [
        f"report: {run_dir}/report.md, {run_dir}/report.json, {run_dir}/report.png",
        f"compare two runs: {python} -m optiml.evaluation.compare {untuned} {run_dir}",
    ]


def test_the_compare_hint_names_the_interpreter_as_the_user_types_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` runs `.venv/bin/python` under the repo root; any other interpreter is `python`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quickstart.sys, "executable", str(tmp_path / ".venv" / "bin" / "python"))
    assert quickstart._python() == ".venv/bin/python"
    monkeypatch.setattr(quickstart.sys, "executable", "/usr/bin/python3")
    assert quickstart._python() == "python"


def test_a_missing_step_is_skipped(data: Path, tmp_path: Path) -> None:
    calls = []
    kwargs = dict(model_dir=str(tmp_path / "run"), cache_dir=None)
    assert quickstart.run(train=None, evaluate=None, **kwargs) == {}
    result = quickstart.run(train=None, evaluate=lambda: calls.append("e") or {"x": 1}, **kwargs)
    assert calls == ["e"] and result == {"report": {"x": 1}}  # an imported model: one evaluation
    with pytest.raises(ValueError, match="cache_dir"):
        quickstart.run(train=None, evaluate=None, caches=[("m", "train")], **kwargs)


def test_without_data_nothing_runs_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optiml import paths

    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(paths.DataDirError, match="OPTIML_DATA_DIR="):
        quickstart.run(model_dir=str(tmp_path / "run"), cache_dir=None, train=None, evaluate=None)
    assert not (tmp_path / "run").exists()


@pytest.mark.data
def test_prepares_a_real_mixture_once_and_the_stream_reads_it(
    data_dir, tmp_path, capsys, request
) -> None:
    import seqio

    import optiml.registry as registry
    from optiml.bench import mixing
    from optiml.pipeline import stream

    tasks = ("task023_cosmosqa_question_generation", "task024_cosmosqa_answer_generation")
    spec = mixing.MixtureSpec(
        "train", "train", mixing.MixingConfig(proportions={"niv2": 1.0}, extra_shares={}),
        benchmarks=("niv2",), tasks=tasks, partial_data="renormalise",  # 2 tasks, on purpose
    )  # fmt: skip
    mixture = registry.register_mixture("quickstart_test", spec)
    request.addfinalizer(
        lambda: (mixing.MIXTURES.pop(mixture), seqio.MixtureRegistry.remove(mixture))
    )
    cache_dir = tmp_path / "cache"

    def train() -> dict[str, float]:
        rows = stream.from_mixture(mixture, cache_dir, batch_size=2, length=128, seed=0)
        batch = next(rows)
        assert batch["decoder_input_tokens"].shape == (2, 128)
        assert batch["decoder_input_tokens"][0, 0] == 2  # each document starts with BOS
        return {"non_pad": float((batch["decoder_segment_ids"] > 0).mean())}

    kwargs = dict(model_dir=str(tmp_path / "run"), cache_dir=str(cache_dir), evaluate=None)
    result = quickstart.run(train=train, caches=[(mixture, "train")], **kwargs)
    assert result["train"]["non_pad"] > 0.9
    assert "2 tasks tokenized (" in capsys.readouterr().out
    quickstart.run(train=None, caches=[(mixture, "train")], **kwargs)
    assert "0 tasks tokenized (0 examples), 2 already cached" in capsys.readouterr().out
