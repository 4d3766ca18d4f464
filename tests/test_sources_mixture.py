"""The new sources inside mixtures and evaluation: present tasks are mixed, absent ones are listed
by name with the reason, and rank tasks expand into per-option candidates."""

from __future__ import annotations

import pytest


@pytest.mark.data
def test_absent_sources_are_named_and_never_take_the_mixture_down(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir / "no_tfds_here"))
    import optiml.registry  # noqa: F401
    from optiml.bench import mixing

    mixing.mixture_rates.cache_clear()
    mixing.count_examples.cache_clear()
    r = mixing.mixture_rates("optiml_mix:train.renormalise")  # the local data is partial
    rates = dict(r.rates)
    assert sum(rates.values()) == pytest.approx(1.0)
    for present in ("optiml:promptsource:super_glue_record", "optiml:reasoning:creak"):
        assert rates[present] > 0
    assert r.benchmark_rates["reasoning"] == pytest.approx(0.01)
    assert "dataset 'ag_news' is not available" in r.reasons["optiml:promptsource:ag_news"]
    assert "TFDS dataset" in r.reasons["optiml:flan:aeslc"]
    assert "UnifiedSKG totto: no local files" in r.reasons["optiml:unifiedskg:totto"]
    assert "ExMix cogs: no local files" in r.reasons["optiml:exmix:cogs"]
    mmlu = mixing.mixture_rates("optiml_mix:mmlu")
    assert len(mmlu.rates) == 57 and not mmlu.missing


@pytest.mark.data
def test_rank_task_expands_to_options_through_seqio(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    import seqio

    import optiml.registry  # noqa: F401
    from optiml.evaluation import rank_classification as rc

    task = seqio.get_mixture_or_task("optiml:mmlu:anatomy#5shot")
    ds = task.source.get_dataset("test", shuffle=False).take(2)
    rows = list(rc.rank_classification_preprocessor(ds).as_numpy_iterator())
    assert len(rows) == 8  # 2 questions x 4 options
    assert [r["targets"] for r in rows[:4]] == [b" A", b" B", b" C", b" D"]
    assert sum(r["is_correct"] for r in rows[:4]) == 1
    assert rows[0]["inputs"].decode().count("\nAnswer: ") == 5
