"""Rate-capped mixing: exact formula, explicit renormalisation, recipes, the rates command."""

from __future__ import annotations

import io

import pytest

from optiml.bench import catalog, mixing
from optiml.tools import rates

ALL = ("crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg")


def _counts(**benchmarks: list[int]) -> dict[str, tuple[str, int]]:
    return {f"{b}_{i}": (b, n) for b, ns in benchmarks.items() for i, n in enumerate(ns)}


def test_eps_cap_within_a_benchmark_and_proportions_on_top():
    counts = _counts(**{b: [10_000, 1_000] for b in ALL}, reasoning=[50, 50])
    got, shares, missing = mixing.compute_rates(counts, mixing.opt_iml_recipe())
    got = dict(got)
    assert missing == [] and sum(got.values()) == pytest.approx(1.0)
    assert shares["reasoning"] == pytest.approx(0.01)
    for bench, p in mixing.OPT_IML_PROPORTIONS.items():
        assert shares[bench] == pytest.approx(0.99 * p / 100)
        # capped at 4096: weights 4096 vs 1000 inside the benchmark
        assert got[f"{bench}_0"] / got[f"{bench}_1"] == pytest.approx(4096 / 1000)
    assert got["reasoning_0"] == pytest.approx(0.005)


def test_absent_benchmarks_are_listed_and_shares_renormalised():
    counts = _counts(niv2=[100, 300], flan=[200])
    got, shares, missing = mixing.compute_rates(counts, mixing.opt_iml_recipe(eps=128))
    assert missing == ["crossfit", "exmix", "promptsource", "reasoning", "t5", "unifiedskg"]
    assert shares == pytest.approx({"niv2": 25 / 45, "flan": 20 / 45})
    assert dict(got)["niv2_0"] == pytest.approx(25 / 45 * 100 / 228)  # 100 vs min(300, 128)


def test_flan2022_recipe_caps_per_benchmark():
    recipe = mixing.flan2022_recipe()
    assert (recipe.cap("flan"), recipe.cap("niv2"), recipe.cap("reasoning")) == (
        30000,
        5000,
        100000,
    )
    counts = _counts(flan=[40_000, 30_000], niv2=[6_000, 5_000], promptsource=[1], reasoning=[1])
    got = dict(mixing.compute_rates(counts, recipe)[0])
    assert got["flan_0"] == pytest.approx(got["flan_1"]) and got["niv2_0"] == pytest.approx(
        got["niv2_1"]
    )


def test_evaluation_mixtures_are_uncapped_and_extra_shares_checked():
    got = dict(mixing.compute_rates(_counts(niv2=[10_000, 30_000]), None)[0])
    assert got == pytest.approx({"niv2_0": 0.25, "niv2_1": 0.75})
    with pytest.raises(ValueError, match="leave nothing"):
        mixing.compute_rates(_counts(niv2=[1], reasoning=[1]), mixing.opt_iml_recipe(reasoning=1.0))


def test_unknown_mixture_is_named():
    with pytest.raises(KeyError, match="unknown optiml mixture 'optiml_mix:nope'"):
        mixing.mixture_rates("optiml_mix:nope")


@pytest.mark.data
def test_rates_of_the_niv2_training_mixture_from_exact_counts(data_dir, monkeypatch):
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    r = mixing.mixture_rates("optiml_mix:niv2_train")
    assert sum(rate for _, rate in r.rates) == pytest.approx(1.0)
    assert len(r.rates) + len(r.missing) == len(mixing.level_tasks(mixing.MIXTURES[r.mixture]))
    assert all(r.reasons[m].endswith("is missing") for m in r.missing)
    # uncapped at 4096 with <= 200 local instances: rate proportional to the exact count
    name, rate = r.rates[0]
    total = sum(r.counts.values())
    assert rate == pytest.approx(r.counts[name] / total)

    out = io.StringIO()
    rates.report("optiml_mix:niv2_train", steps=1000, batch=8, examples_per_row=2, out=out)
    text = out.getvalue()
    assert f"present tasks: {len(r.rates)}  absent: {len(r.missing)}" in text
    assert "examples drawn: 1000 steps x 8 rows x 2 examples/row = 16,000" in text
    epochs = r.rates[0][1] * 16_000 / r.counts[r.rates[0][0]]
    assert f"{epochs:>8.2f}" in text
    assert r.missing[0] in text


def test_rates_command_rejects_unknown_mixture(capsys):
    with pytest.raises(SystemExit):
        rates.main(["nope"])
    assert "unknown mixture 'optiml_mix:nope'" in capsys.readouterr().err


def test_recipes_and_mixtures_are_gin_configurable():
    import gin

    config = """
    from __gin__ import dynamic_registration
    from optiml.bench import mixing
    from optiml.bench import levels

    mixing.define_mixture.mixture = "gin_niv2_eps128"
    mixing.define_mixture.spec = @mixing.MixtureSpec()
    mixing.MixtureSpec.level = "train"
    mixing.MixtureSpec.split = "train"
    mixing.MixtureSpec.benchmarks = ("niv2",)
    mixing.MixtureSpec.recipe = @mixing.MixingConfig()
    mixing.MixtureSpec.level_config = @levels.LevelConfig()
    levels.LevelConfig.heldout_categories = ["Textual Entailment"]
    mixing.MixingConfig.eps = 128
    mixing.MixingConfig.proportions = {"niv2": 1.0}
    mixing.MixingConfig.extra_shares = {}
    """
    with gin.unlock_config():
        gin.parse_config(config)
    try:
        name = gin.get_configurable(mixing.define_mixture)()
    finally:
        gin.clear_config()
    spec = mixing.MIXTURES.pop(name)
    assert name == "optiml_mix:gin_niv2_eps128"
    assert spec.recipe.eps == 128 and spec.recipe.cap("niv2") == 128
    assert spec.level_config.heldout_categories == ("Textual Entailment",)
    assert {r.benchmark for r in mixing.level_tasks(spec)} == {"niv2"}


def test_paper_heldout_lists_hold_only_evaluation_tasks_of_their_benchmark():
    from optiml.bench import levels

    lv = levels.build_levels(levels.LevelConfig())
    evaluation = {r.name for r in lv.evaluation()}
    trained = {r.name for r in lv.train}
    lists = catalog.task_lists()
    for name, benchmark in (("t0_heldout", "promptsource"), ("flan_heldout", "flan")):
        listed = {task for bench, task in lists[name] if bench == benchmark}
        assert len(listed) == len(lists[name]) == {"t0_heldout": 10, "flan_heldout": 14}[name]
        records = mixing.level_tasks(mixing.MIXTURES["optiml_mix:" + name])
        assert records, name
        assert {r.benchmark for r in records} == {benchmark}
        assert {r.task for r in records} <= listed
        assert {r.name for r in records} <= evaluation and not {r.name for r in records} & trained
    # Table 11's NLI and coreference tasks come from fully held-out categories: all are in.
    flan = {r.task for r in mixing.level_tasks(mixing.MIXTURES["optiml_mix:flan_heldout"])}
    assert {"anli_r1", "cb", "rte", "snli", "wnli", "winogrande", "wsc", "bool_q"} <= flan
