"""The main job's composition: prepare the caches once, then train, then evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiml import quickstart


def test_steps_run_in_order_and_none_skips_a_step(tmp_path: Path) -> None:
    calls = []
    result = quickstart.run(
        model_dir=str(tmp_path / "run"),
        cache_dir=None,
        train=lambda: calls.append("train") or {"loss": 1.0},
        evaluate=lambda: calls.append("evaluate") or {"levels": {}},
    )
    assert calls == ["train", "evaluate"] and result == {
        "train": {"loss": 1.0},
        "report": {"levels": {}},
    }
    assert (tmp_path / "run").is_dir()
    assert quickstart.run(model_dir=str(tmp_path), cache_dir=None, train=None, evaluate=None) == {}
    with pytest.raises(ValueError, match="cache_dir"):
        quickstart.run(
            model_dir=str(tmp_path),
            cache_dir=None,
            train=None,
            evaluate=None,
            caches=[("m", "train")],
        )


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
    assert "2 tasks tokenized, 0 already cached, 0 failed" in capsys.readouterr().out
    quickstart.run(train=None, caches=[(mixture, "train")], **kwargs)
    assert "0 tasks tokenized, 2 already cached" in capsys.readouterr().out
