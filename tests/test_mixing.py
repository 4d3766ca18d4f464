"""Rate-capped mixing: exact formula, explicit renormalisation, recipes, the rates command."""

from __future__ import annotations

import io

import pytest

from optiml.bench import catalog, mixing, partial_data
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
    r = mixing.mixture_rates("optiml_mix:niv2_train.renormalise")
    assert sum(rate for _, rate in r.rates) == pytest.approx(1.0)
    assert len(r.rates) + len(r.missing) == len(mixing.level_tasks(mixing.MIXTURES[r.mixture]))
    assert all(r.reasons[m].endswith("is missing") for m in r.missing)
    # uncapped at 4096 with <= 200 local instances: rate proportional to the exact count
    name, rate = r.rates[0]
    total = sum(r.counts.values())
    assert rate == pytest.approx(r.counts[name] / total)

    out = io.StringIO()
    rates.report(
        "optiml_mix:niv2_train.renormalise", steps=1000, batch=8, examples_per_row=2, out=out
    )
    text = out.getvalue()
    assert f"present tasks: {len(r.rates)}  absent: {len(r.missing)}" in text
    assert "examples drawn: 1000 steps x 8 rows x 2 examples/row = 16,000" in text
    epochs = r.rates[0][1] * 16_000 / r.counts[r.rates[0][0]]
    assert f"{epochs:>8.2f}" in text
    assert r.missing[0] in text


@pytest.mark.data
def test_counts_follow_the_data_directory_without_clearing_caches(data_dir, monkeypatch, tmp_path):
    """CI found it: a test that pointed $OPTIML_DATA_DIR at an empty folder left every count
    cached as "missing", and every later mixture said "no task is available locally"."""
    (tmp_path / "natinst").mkdir()  # a data folder that holds no task
    monkeypatch.setenv("OPTIML_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="no task is available locally"):
        mixing.mixture_rates("optiml_mix:niv2_train.renormalise")
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    assert len(mixing.mixture_rates("optiml_mix:niv2_train.renormalise").rates) > 500


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


def test_paper_task_lists_are_mixtures_of_evaluated_tasks():
    from optiml.bench import levels

    lv = levels.build_levels(levels.LevelConfig())
    evaluated = {r.name for r in lv.evaluation()} | {r.name for r in lv.fully_supervised}
    trained = {r.name for r in lv.train} - {r.name for r in lv.fully_supervised}
    lists = catalog.task_lists()
    for name, rows in lists.items():
        records = mixing.level_tasks(mixing.MIXTURES["optiml_mix:" + name])
        assert {(r.benchmark, r.task) for r in records} == set(rows), name  # all of them
        assert {r.name for r in records} <= evaluated and not {r.name for r in records} & trained


def _partial(policy: str, **benchmarks: list[int]):
    """compute_rates + partial_data.apply on {benchmark: counts} with the OPT-IML recipe."""
    counts = _counts(**benchmarks)
    rates, _, _ = mixing.compute_rates(counts, mixing.opt_iml_recipe())
    bench_of = {t: b for t, (b, _) in counts.items()}
    declared = {b: 100 for b in benchmarks}
    n = {t: c for t, (_, c) in counts.items()}
    return partial_data.apply("optiml_mix:x", policy, rates, n, bench_of, declared), n, bench_of


def test_partial_data_stops_with_one_line_naming_benchmark_tasks_epochs_and_bindings():
    # two 32-example PromptSource tasks next to 1000 NIV2 tasks of 4096: PS's share 45/70 = 64.3%
    # repeats them 0.643 x 6,990,506 / 64 = 70,217 times at the paper's scale
    with pytest.raises(partial_data.PartialDataError) as err:
        _partial("stop", niv2=[4096] * 1000, promptsource=[32, 32])
    text = str(err.value)
    assert "\n" not in text and text.startswith("optiml_mix:x: partial data: promptsource has 2 of")
    assert "its 100 tasks here and its 64.3% share repeats a task up to 70,217 epochs" in text
    assert "limit 10" in text and "niv2" not in text.split("(limit")[0]
    for policy in ("renormalise", "cap", "drop"):
        assert "MIXTURE = 'optiml_mix:x.renormalise'" in text and f"'optiml_mix:x.{policy}'" in text
    assert text.endswith("mixing.MixtureSpec.partial_data = 'renormalise', 'cap' or 'drop'")
    # full-scale data passes untouched
    rates, _, _ = _partial("stop", niv2=[4096] * 1000, promptsource=[4096] * 300)
    assert len(rates) == 1300


def test_partial_data_policies():
    rates, n, bench_of = _partial("renormalise", niv2=[4096] * 1000, promptsource=[32, 32])
    assert partial_data.benchmark_epochs(rates, n, bench_of)["promptsource"] > 60_000
    capped, n, bench_of = _partial("cap", niv2=[4096] * 1000, promptsource=[32, 32])
    epochs = partial_data.benchmark_epochs(capped, n, bench_of)
    assert epochs["promptsource"] == pytest.approx(10.0) and epochs["niv2"] < 10
    assert sum(r for _, r in capped) == pytest.approx(1.0)
    dropped, n, bench_of = _partial("drop", niv2=[4096] * 1000, promptsource=[32, 32])
    assert {bench_of[t] for t, _ in dropped} == {"niv2"}
    assert sum(r for _, r in dropped) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown partial-data policy 'nope'"):
        _partial("nope", niv2=[1])


def test_every_training_mixture_has_its_three_accepting_siblings():
    training = [m for m, spec in mixing.MIXTURES.items() if spec.recipe is not None and
                "." not in m]  # fmt: skip
    assert {"optiml_mix:train", "optiml_mix:train_max", "optiml_mix:niv2_train"} <= set(training)
    for m in training:
        for policy in ("renormalise", "cap", "drop"):
            sibling = mixing.MIXTURES[f"{m}.{policy}"]
            assert sibling.partial_data == policy and sibling.level == mixing.MIXTURES[m].level


@pytest.mark.data
def test_the_local_data_stops_the_default_mixture(data_dir, monkeypatch, capsys):
    """On ../shared/data PromptSource has one training task (FewGLUE ReCoRD, 32 examples) and NIV2
    200 instances per task: the default training mixture stops; `.renormalise` keeps the
    recipe's shares, `.cap` gives PromptSource no more than 10 epochs."""
    monkeypatch.setenv("OPTIML_DATA_DIR", str(data_dir))
    with pytest.raises(partial_data.PartialDataError, match="promptsource has 1 of its 207"):
        mixing.mixture_rates("optiml_mix:train")
    accepted = mixing.mixture_rates("optiml_mix:train.renormalise")
    assert accepted.benchmark_rates["promptsource"] > 0.6
    capped = mixing.mixture_rates("optiml_mix:train.cap")
    assert capped.benchmark_rates["promptsource"] < 0.01
    from optiml import validation  # a gin run is refused before anything runs

    assert validation.mixture_name("optiml_mix:train").startswith("optiml_mix:train: partial")
    assert validation.mixture_name("optiml_mix:train.cap") is None
    assert rates.main(["train"]) == 2  # the rates command: one line, exit 2
    err = capsys.readouterr().err
    assert err.startswith("rates: optiml_mix:train: partial data:") and err.count("\n") == 1
