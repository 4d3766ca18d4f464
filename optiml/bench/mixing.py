"""Rate-capped mixing: the OPT-IML recipe (and Flan 2022's) over the tasks actually present.

Rates (paper §4.2-4.6), for a training mixture with recipe `MixingConfig`:

    weight(task)      = min(n_task, cap_b)           n = exact local count of the `train` split
    rate(task)        = share(b) * weight(task) / sum of weights in benchmark b
    share(b)          = (1 - present extra shares) * proportion(b) / sum of present proportions
    share(extra e)    = extra_shares[e]               (reasoning 1%, optional plain text 5%)

`cap_b` is `eps` (4096) unless `caps` overrides it per benchmark. Absent tasks (no file, malformed
file, no loader yet) and absent benchmarks are listed and the shares renormalised over what is
present -- logged, and returned by `mixture_rates`. Evaluation mixtures use uncapped counts.
Partial data is loud (`partial_data`): a training mixture that would repeat a benchmark's tasks
more than `max_epochs` (10) times at the paper's scale stops; `<mixture>.renormalise`,
`<mixture>.cap` and `<mixture>.drop` accept it three ways.

    >>> r = mixture_rates("optiml_mix:niv2_train.renormalise")  # the local data is partial
    >>> sum(rate for _, rate in r.rates), r.missing[:1]
    (1.0, ['optiml:niv2:task001_quoref_question_generation'])
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from optiml import paths
from optiml.bench import catalog, flan2022, levels, metaicl, names, partial_data, subsets

log = logging.getLogger(__name__)

OPT_IML_PROPORTIONS = {
    "crossfit": 4.0, "exmix": 2.0, "flan": 20.0, "niv2": 25.0, "promptsource": 45.0,
    "t5": 2.0, "unifiedskg": 2.0,
}  # fmt: skip


@dataclass(frozen=True)
class MixingConfig:
    """A mixing recipe; gin binds its fields, e.g. `mixing.MixingConfig.eps = 512`."""

    eps: int = 4096  # per-task cap on the examples-proportional weight
    proportions: dict[str, float] = field(default_factory=lambda: dict(OPT_IML_PROPORTIONS))
    extra_shares: dict[str, float] = field(default_factory=lambda: {"reasoning": 0.01})
    caps: dict[str, int] = field(default_factory=dict)  # per-benchmark cap overriding eps
    max_epochs: float = partial_data.MAX_EPOCHS  # at the paper's scale (partial_data.py)

    def __hash__(self) -> int:
        return hash(
            (self.eps, *sorted(self.proportions.items()), *sorted(self.extra_shares.items()),
             *sorted(self.caps.items()), self.max_epochs)
        )  # fmt: skip

    def cap(self, benchmark: str) -> int:
        return self.caps.get(benchmark, self.eps)


def opt_iml_recipe(eps: int = 4096, reasoning: float = 0.01, plain_text: float = 0.0):
    """OPT-IML: EPS 4096, Crossfit/ExMix/FLAN/NIV2/PS/T5/U-SKG = 4/2/20/25/45/2/2, +1% reasoning,
    optional +x plain-text (pre-training) share (the final models used 5%)."""
    extra = {"reasoning": reasoning}
    if plain_text:
        extra["pretrain"] = plain_text
    return MixingConfig(eps=eps, extra_shares=extra)


def flan2022_recipe() -> MixingConfig:
    """Flan 2022 (Chung et al., Table 23, proportions B): Muffin 46.0 / T0-SF 27.9 / CoT 1.8 /
    NIV2 24.2 with caps 30k / 20k / 100k / 5k; here FLAN, PromptSource, reasoning, NIV2."""
    return MixingConfig(
        eps=5000,
        proportions={"flan": 46.0, "promptsource": 27.9, "niv2": 24.2},
        extra_shares={"reasoning": 0.018},
        caps={"flan": 30000, "promptsource": 20000, "reasoning": 100000, "niv2": 5000},
    )


@dataclass(frozen=True)
class MixtureSpec:
    """What a registered mixture holds: a level of `levels.Levels`, the split it is read with,
    and the recipe (None: uncapped examples-proportional, for evaluation)."""

    level: str  # a Levels field: train, fully_heldout, ..., or niv2 (all available NIV2 tasks)
    split: str
    recipe: MixingConfig | None = None
    level_config: levels.LevelConfig = levels.LevelConfig()
    benchmarks: tuple[str, ...] | None = None  # restrict to these benchmarks
    tasks: tuple[str, ...] | None = None  # restrict to these catalog task ids (e.g. a paper table)
    # Scaling studies (paper §4.4, `subsets`): the first max_tasks tasks of the seeded nested
    # order (supervised first), the tasks of the first max_categories categories (by size).
    max_tasks: int | None = None
    max_categories: int | None = None
    subset_seed: int = 0
    # Benchmarks off by default whose training tasks (role `off` or `train`) join a training
    # level: ("dialogue",) for the BlenderBot 3 dialogues of §4.7, ("pretrain",) for the plain
    # text of §4.5 (their shares: `MixingConfig.extra_shares["dialogue" / "pretrain"]`).
    off_benchmarks: tuple[str, ...] = ()
    partial_data: str = "stop"  # training mixtures: one of partial_data.POLICIES
    # MetaICL training (paper §4.8): the mixture trains on each task's MetaICL twin
    # `optiml:<benchmark>:<task>#metaicl_<hash>` (optiml.bench.metaicl) at the task's own rate
    metaicl: metaicl.MetaICLConfig | None = None
    # Prompt styles: "flan2022" trains the styled twin `<task>#flan2022` of each task of a
    # benchmark Flan 2022 styles (optiml.bench.flan2022: zero-/few-shot, options, inversions)
    prompt_styles: str | None = None

    def __post_init__(self) -> None:  # gin passes lists: keep the spec hashable
        if not isinstance(self.off_benchmarks, tuple):
            object.__setattr__(self, "off_benchmarks", tuple(self.off_benchmarks))
        if self.prompt_styles not in (None, *flan2022.PROMPT_STYLES):
            raise ValueError(
                f"MixtureSpec.prompt_styles {self.prompt_styles!r}: one of {flan2022.PROMPT_STYLES}"
            )
        if self.prompt_styles and self.metaicl:
            raise ValueError(
                "MixtureSpec: metaicl and prompt_styles both rewrite prompts: pick one"
            )


@dataclass(frozen=True)
class MixtureRates:
    """Effective rates of a mixture over the tasks present locally."""

    mixture: str
    rates: list[tuple[str, float]]  # (task name, rate), rates sum to 1
    counts: dict[str, int]  # exact examples of the split, per present task
    benchmark_rates: dict[str, float]
    missing: list[str]  # declared tasks that are absent, with reasons in `reasons`
    reasons: dict[str, str]
    missing_benchmarks: list[str]  # benchmarks of the recipe with no present task


MIXTURES: dict[str, MixtureSpec] = {}


def define_mixture(mixture: str, spec: MixtureSpec) -> str:
    """Declare a mixture spec under `optiml_mix:<mixture>`; returns the seqio name."""
    name = names.mixture_name(mixture)
    MIXTURES[name] = spec
    mixture_rates.cache_clear()  # a redefined mixture gets fresh rates
    return name


def level_tasks(spec: MixtureSpec) -> list[catalog.TaskRecord]:
    """The catalog records a mixture spec covers (present or not)."""
    lv = levels.build_levels(spec.level_config)
    if spec.level == "niv2":
        records = list(catalog.tasks("niv2"))
    elif spec.level == "evaluation":  # every task the levels evaluate (supervised: held-out part)
        records = list(lv.evaluation()) + list(lv.fully_supervised)
    else:
        records = list(getattr(lv, spec.level))
    if spec.level == "train":
        present = {r.name for r in records}
        for benchmark in spec.off_benchmarks:
            records += [r for r in catalog.tasks(benchmark)
                        if r.role in ("off", "train") and r.name not in present]  # fmt: skip
    if spec.benchmarks is not None:
        records = [r for r in records if r.benchmark in spec.benchmarks]
    if spec.tasks is not None:
        records = [r for r in records if r.task in spec.tasks]
    if spec.max_categories is not None:
        records = subsets.nested_categories(records, spec.max_categories)
    if spec.max_tasks is not None:
        records = subsets.nested_tasks(records, spec.max_tasks, spec.subset_seed)
    return records


def trained_name(record: catalog.TaskRecord, spec: MixtureSpec) -> str:
    """The seqio task a mixture trains on for `record`: its own, its MetaICL twin or its
    prompt-styled twin (`optiml:niv2:<task>#flan2022`)."""
    if spec.prompt_styles and flan2022.style_shares(record.benchmark):
        return names.task_name(record.benchmark, record.task, spec.prompt_styles)
    if spec.metaicl is None or record.benchmark in metaicl.PLAIN_TEXT:
        return record.name
    return names.task_name(record.benchmark, record.task, spec.metaicl.variant)


@paths.cache_per_data_dir()
def count_examples(record: catalog.TaskRecord, split: str) -> int | str:
    """Exact example count of a task's split (its loader's `count_examples`, cached), or the
    reason the task is not available: no loader yet, its data absent or malformed."""
    loader = catalog.loader(record.benchmark)
    if loader is None:
        return f"no loader for benchmark {record.benchmark!r} yet"
    try:
        return int(loader.count_examples(record, split))
    except (OSError, ValueError, KeyError) as err:
        return str(err)


@paths.cache_per_data_dir()
def mixture_rates(mixture: str) -> MixtureRates:
    """Effective per-task rates of a registered optiml mixture (computed once from exact counts)."""
    if mixture not in MIXTURES:
        raise KeyError(f"unknown optiml mixture {mixture!r}; defined: {sorted(MIXTURES)}")
    spec = MIXTURES[mixture]
    records = level_tasks(spec)
    counts, reasons = {}, {}
    for rec in records:  # a MetaICL twin has its task's examples, one each
        n = count_examples(rec, spec.split)
        if isinstance(n, str) or n == 0:
            reasons[trained_name(rec, spec)] = (
                n if isinstance(n, str) else f"no {spec.split!r} examples"
            )
        else:
            counts[trained_name(rec, spec)] = n
    if not counts:
        raise ValueError(f"mixture {mixture}: no task is available locally ({len(reasons)} absent)")
    bench_of = {trained_name(r, spec): r.benchmark for r in records}
    rates, benchmark_rates, missing_benchmarks = compute_rates(
        {name: (bench_of[name], n) for name, n in counts.items()}, spec.recipe
    )
    if spec.recipe is not None:
        declared: dict[str, int] = {}
        for r in records:
            declared[r.benchmark] = declared.get(r.benchmark, 0) + 1
        rates = partial_data.apply(
            mixture, spec.partial_data, rates, counts, bench_of, declared, spec.recipe.max_epochs
        )
        benchmark_rates = {}
        for name, rate in rates:
            benchmark_rates[bench_of[name]] = benchmark_rates.get(bench_of[name], 0.0) + rate
    result = MixtureRates(
        mixture=mixture,
        rates=rates,
        counts=counts,
        benchmark_rates=benchmark_rates,
        missing=sorted(reasons),
        reasons=reasons,
        missing_benchmarks=missing_benchmarks,
    )
    if reasons or missing_benchmarks:
        log.warning(
            "mixture %s: %d of %d tasks absent locally, rates renormalised over the %d present; "
            "benchmarks absent: %s",
            mixture, len(reasons), len(reasons) + len(counts), len(counts),
            missing_benchmarks or "none",
        )  # fmt: skip
    return result


def missing_mass(rates: MixtureRates) -> float:
    """The share of the rate mass that the recipe gives the benchmarks with no present task (what
    the renormalisation spread over the others); 0 for mixtures without a recipe."""
    recipe = MIXTURES[rates.mixture].recipe
    if recipe is None or not rates.missing_benchmarks:
        return 0.0
    every = {b: {b: 1.0} for b in [*recipe.proportions, *recipe.extra_shares]}
    shares, _ = _benchmark_shares(recipe, every)
    return sum(shares.get(b, 0.0) for b in rates.missing_benchmarks)


def compute_rates(
    counts: dict[str, tuple[str, int]], recipe: MixingConfig | None
) -> tuple[list[tuple[str, float]], dict[str, float], list[str]]:
    """The rate formula (module docstring) on {task: (benchmark, exact count)}: returns sorted
    (task, rate) summing to 1, {benchmark: share}, and the recipe's benchmarks with no task."""
    per_benchmark: dict[str, dict[str, float]] = {}
    for name, (bench, n) in counts.items():
        cap = recipe.cap(bench) if recipe else n
        per_benchmark.setdefault(bench, {})[name] = float(min(n, cap))
    shares, missing_benchmarks = _benchmark_shares(recipe, per_benchmark)
    rates = []
    for bench, weights in per_benchmark.items():
        total = sum(weights.values())
        rates += [(name, shares.get(bench, 0.0) * w / total) for name, w in weights.items()]
    rates = [(n, r) for n, r in rates if r > 0]
    norm = sum(r for _, r in rates)
    rates = sorted(((n, r / norm) for n, r in rates), key=lambda x: x[0])
    benchmark_rates = {b: s / norm for b, s in shares.items() if s > 0}
    return rates, benchmark_rates, missing_benchmarks


def _benchmark_shares(
    recipe: MixingConfig | None, present: dict[str, dict[str, float]]
) -> tuple[dict[str, float], list[str]]:
    if recipe is None:  # evaluation: plain examples-proportional over everything present
        total = sum(sum(w.values()) for w in present.values())
        return {b: sum(w.values()) / total for b, w in present.items()}, []
    extras = {b: s for b, s in recipe.extra_shares.items() if b in present}
    base = {b: p for b, p in recipe.proportions.items() if b in present and p > 0}
    missing = sorted(
        b for b in list(recipe.proportions) + list(recipe.extra_shares) if b not in present
    )
    if not base:  # only extra-share benchmarks present: they split everything
        total = sum(extras.values())
        return {b: s / total for b, s in extras.items()}, missing
    remaining = 1.0 - sum(extras.values())
    if remaining <= 0:
        raise ValueError(f"extra shares {recipe.extra_shares} leave nothing for the benchmarks")
    total = sum(base.values())
    shares = {b: remaining * p / total for b, p in base.items()}
    shares.update(extras)
    unlisted = sorted(set(present) - set(shares))
    if unlisted:
        log.warning("benchmarks %s have tasks in the mixture but no share: rate 0", unlisted)
    return shares, missing


# The README's main job (gin/runs/quickstart.gin) tunes a tiny random model on a CPU in minutes:
# NIV2 sentiment and emotion classification tasks with short prompts and one-word answers, made
# fully supervised (QUICKSTART_LEVELS: the local data holds none of the paper's fully supervised
# tasks), so that their held-out instances are the report's fully supervised level. A subset by
# design, for 100 steps rather than the paper's 4000: no partial-data limit (max_epochs inf).
QUICKSTART_TASKS = (  # (SST-2 and the reviews task 888 would leak into each other: not here)
    "task195_sentiment140_classification", "task196_sentiment140_answer_generation",
    "task397_semeval_2018_task1_tweet_anger_detection",
    "task398_semeval_2018_task1_tweet_joy_detection", "task518_emo_different_dialogue_emotions",
    "task761_app_review_classification", "task833_poem_sentiment_classification",
    "task843_financial_phrasebank_classification", "task889_goemotions_classification",
    "task923_event2mind_classifier",
)  # fmt: skip

QUICKSTART_LEVELS = levels.LevelConfig(
    supervised_tasks=tuple(names.task_name("niv2", t) for t in QUICKSTART_TASKS)
)

DEFAULT_MIXTURES = {
    # training (read with split "train")
    "train": MixtureSpec("train", "train", opt_iml_recipe()),
    "train_flan2022": MixtureSpec("train", "train", flan2022_recipe(), prompt_styles="flan2022"),
    "train_max": MixtureSpec(
        "train", "train", opt_iml_recipe(), levels.LevelConfig(train_on_everything=True)
    ),
    "niv2_train": MixtureSpec(
        "train",
        "train",
        MixingConfig(proportions={"niv2": 1.0}, extra_shares={}),
        benchmarks=("niv2",),
    ),
    "niv2_all": MixtureSpec("niv2", "train"),
    "quickstart": MixtureSpec(
        "train",
        "train",
        MixingConfig(proportions={"niv2": 1.0}, extra_shares={}, max_epochs=float("inf")),
        QUICKSTART_LEVELS,
        benchmarks=("niv2",),
        tasks=QUICKSTART_TASKS,
    ),
    # evaluation (split "test"; dev with "validation")
    "fully_heldout": MixtureSpec("fully_heldout", "test"),
    "partially_heldout": MixtureSpec("partially_heldout", "test"),
    "fully_supervised": MixtureSpec("fully_supervised", "test"),
    "dev": MixtureSpec("dev", "validation"),
    "test": MixtureSpec("test", "test"),
    "niv2_test": MixtureSpec("niv2_test", "test"),
    "mmlu": MixtureSpec("eval_only", "test", benchmarks=("mmlu",)),
    "bbh": MixtureSpec("eval_only", "test", benchmarks=("bbh",)),
}
# The paper's task lists (tasks/task_lists.tsv: opt_suite = Table 9, t0_heldout = Table 10,
# flan_heldout = Table 11, niv2_heldout = Table 12, unifiedskg_heldout = Table 13, table15 =
# Table 15), each restricted to the tasks the levels evaluate (under another LevelConfig a listed
# task may be trained on: it is then left out rather than evaluated after training on it).
for _list, _rows in catalog.task_lists().items():
    DEFAULT_MIXTURES[_list] = MixtureSpec(
        "evaluation", "test", benchmarks=tuple(sorted({b for b, _ in _rows})),
        tasks=tuple(t for _, t in _rows),
    )  # fmt: skip
for _mixture, _spec in list(DEFAULT_MIXTURES.items()):
    if _spec.recipe is not None:  # training mixtures: the siblings that accept partial data
        for _policy in partial_data.POLICIES[1:]:
            DEFAULT_MIXTURES[f"{_mixture}.{_policy}"] = dataclasses.replace(
                _spec, partial_data=_policy
            )
for _mixture, _spec in DEFAULT_MIXTURES.items():
    define_mixture(_mixture, _spec)


def task_rate(mixture: str):
    """A seqio rate callable for one mixture: rate(task) from `mixture_rates` (0 if absent)."""

    def rate(task) -> float:
        return dict(mixture_rates(mixture).rates).get(task.name, 0.0)

    return rate
