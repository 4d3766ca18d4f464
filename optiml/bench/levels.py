"""The three generalization levels of OPT-IML Bench, plus dev and test, from the catalog.

    >>> lv = build_levels()                     # the paper's defaults
    >>> len(lv.train), lv.fully_heldout[0].category
    (..., 'Cause Effect Classification')

The catalog's `role` says what the paper's tables make of a task (tasks/task_lists.tsv: Tables
9-13 -> `test`, Table 15 -> `dev`, fully supervised -> `supervised`, everything else `train`);
this module turns roles and the configured categories into levels:

- **train**: `train`/`supervised` tasks of enabled benchmarks, in every NIV2 language (paper
  §2.1, Table 1), except those (paper §2.3, each left out with its reason in `left_out`)
  of a fully held-out category; sharing a data source with an evaluation task (dev/test roles,
  MMLU; broad sources such as `synthetic` are exempt; datasets compared after
  `catalog.dataset_aliases()`); sharing one with a fully supervised task when their benchmark
  mixes a dataset's splits (NIV2, CrossFit: they could hold its evaluation instances); paired in
  `tasks/leakage.tsv` with an evaluation task (> 1% of its examples share a 13-gram).
- **fully held-out**: the dev/test tasks of the fully held-out categories (the paper's seven).
- **partially held-out**: the other dev/test tasks (unseen tasks of seen categories) and MMLU.
- **fully supervised**: the `supervised` training tasks, evaluated on their held-out instances
  (`LevelConfig.supervised_tasks` makes more training tasks so, in dev and test: the quickstart's,
  since the local data holds none of the paper's).
- **dev**: Table 15 (the `table15` list: its dev tasks, its fully supervised tasks, MMLU);
  **test**: Tables 9-13 (every other evaluation task; never a dev task); **niv2_test**: the
  official NIV2 test tasks among them (Table 12's 44 and Table 15's NIV2 ones).
- OPT-IML-Max (`train_on_everything`): every task of the enabled benchmarks is trained on except
  what would leak into MMLU and BBH, which Max is evaluated on (Table 14; the default levels do
  not evaluate BBH, paper §6.1, and do not guard it).

Instance split (deterministic, seed-free): a `supervised` task with no evaluation split of its
own holds out its instances with sha256("<key>/<instance>") mod 1000 < 1000 * fraction (10%).
Pure catalog logic: reads no data, TF-free.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field

from optiml.bench import catalog

HELDOUT_CATEGORIES = (
    "Cause Effect Classification", "Grammar Error Correction", "Stereotype Detection",
    "Word Analogy", "Textual Entailment", "Coreference Resolution", "Dialogue Act Recognition",
)  # fmt: skip
PARTIAL_CATEGORIES = (
    "Question Answering", "Toxic Language Detection", "Summarization", "Reasoning", "MMLU",
)  # fmt: skip
# Sources too broad to count as shared data (paper §2.3 keeps pairs sharing e.g. Wikipedia).
BROAD_SOURCES = ("synthetic", "wikipedia")
HELDOUT_FRACTION = 0.1
LEAKAGE_THRESHOLD = 0.01  # paper §2.3: a pair is leaking above 1% of the evaluation examples
EVAL_ROLES = ("dev", "test")
DEV_LIST = "table15"  # the task list (tasks/task_lists.tsv) of the paper's validation tasks
# The three generalization levels (paper §4.1: fully held-out, partially supervised, fully
# supervised) by their `Levels` field names; every evaluation result and report uses these.
LEVELS = ("fully_heldout", "partially_heldout", "fully_supervised")


def heldout_instance(task_id: str, instance_id: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """True for the instances of a `supervised` task that are kept out of training."""
    digest = hashlib.sha256(f"{task_id}/{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 1000 < round(1000 * fraction)


@dataclass(frozen=True)
class LevelConfig:
    """What is held out. gin binds these fields (e.g. `levels.LevelConfig.heldout_categories`)."""

    heldout_categories: tuple[str, ...] = HELDOUT_CATEGORIES
    partial_categories: tuple[str, ...] = PARTIAL_CATEGORIES
    english_only: bool = False  # True: NIV2's English tasks only (the paper keeps all, Table 1)
    benchmarks: tuple[str, ...] | None = None  # None: the enabled ones (benchmarks.tsv)
    broad_sources: tuple[str, ...] = BROAD_SOURCES
    train_on_everything: bool = False  # OPT-IML-Max: every non-excluded task is a training task
    leakage_filter: bool = True  # paper §2.3: leave out training tasks of tasks/leakage.tsv pairs
    exclude_train_tasks: tuple[str, ...] = ()  # any further training tasks to leave out
    # `train` tasks (names, e.g. "optiml:niv2:task195_sentiment140_classification") made fully
    # supervised: trained on, 10% of their instances held out and evaluated (dev and test).
    # Their seqio tasks must be registered with that role: optiml.registry.register_roles.
    supervised_tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # gin passes lists: keep the config hashable
        for name in ("heldout_categories", "partial_categories", "broad_sources", "benchmarks",
                     "exclude_train_tasks", "supervised_tasks"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class Levels:
    """Task records per level (each tuple in catalog order) and why tasks were not trained on."""

    train: tuple[catalog.TaskRecord, ...]
    fully_heldout: tuple[catalog.TaskRecord, ...]
    partially_heldout: tuple[catalog.TaskRecord, ...]
    fully_supervised: tuple[catalog.TaskRecord, ...]
    dev: tuple[catalog.TaskRecord, ...]
    test: tuple[catalog.TaskRecord, ...]
    niv2_test: tuple[catalog.TaskRecord, ...]
    eval_only: tuple[catalog.TaskRecord, ...]
    left_out: dict[str, str] = field(default_factory=dict)  # task name -> reason

    def evaluation(self) -> tuple[catalog.TaskRecord, ...]:
        """Every task some evaluation mixture uses, whole (supervised ones excluded)."""
        seen, out = set(), []
        for group in (self.fully_heldout, self.partially_heldout, self.dev, self.test):
            for rec in group:
                if rec.role != "supervised" and rec.name not in seen:
                    seen.add(rec.name)
                    out.append(rec)
        return tuple(out + [r for r in self.niv2_test if r.name not in seen])

    def level_of(self, record: catalog.TaskRecord) -> str | None:
        """The generalization level (one of LEVELS) `record` is evaluated in; None if none, e.g.
        `optiml:niv2:task1557_jfleg_answer_generation` -> "fully_heldout" (Grammar Error
        Correction is a held-out category)."""
        return self._level_by_name.get(record.name)

    @functools.cached_property
    def _level_by_name(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for level in LEVELS:
            for rec in getattr(self, level):
                out.setdefault(rec.name, level)
        return out


def _check(config: LevelConfig) -> None:
    known = set(catalog.categories())
    for what in ("heldout_categories", "partial_categories"):
        bad = [c for c in getattr(config, what) if c not in known]
        if bad:
            raise ValueError(f"LevelConfig.{what}: unknown categories {bad} (tasks/categories.tsv)")
    overlap = set(config.heldout_categories) & set(config.partial_categories)
    if overlap:
        raise ValueError(f"LevelConfig: categories both fully and partially held out: {overlap}")
    if config.benchmarks is not None:
        unknown = set(config.benchmarks) - set(catalog.benchmarks())
        if unknown:
            raise ValueError(f"LevelConfig.benchmarks: unknown benchmarks {sorted(unknown)}")
    roles = {r.name: r.role for r in catalog.tasks()}
    bad = [n for n in config.supervised_tasks if roles.get(n) not in ("train", "supervised")]
    if bad:
        raise ValueError(f"LevelConfig.supervised_tasks: {bad} are not training tasks (catalog)")


@functools.cache
def build_levels(config: LevelConfig = LevelConfig()) -> Levels:  # noqa: B008 (frozen)
    """Assign every catalog task to the levels (see the module docstring)."""
    _check(config)
    benchmarks = catalog.benchmarks()
    chosen = config.benchmarks or tuple(k for k, b in benchmarks.items() if b.enabled)
    eval_benchmarks = set(chosen) | {k for k, b in benchmarks.items() if b.proportion == 0}
    records = [
        dataclasses.replace(r, role="supervised") if r.name in config.supervised_tasks else r
        for r in catalog.tasks()
        if r.role != "off" and r.benchmark in eval_benchmarks
    ]
    heldout = set(config.heldout_categories)
    broad = set(config.broad_sources)
    everything = config.train_on_everything

    partial = set(config.partial_categories)
    eval_only = [r for r in records if r.role == "eval_only"]
    # the evaluation-only benchmarks evaluated: MMLU (a partially held-out category, footnote 3);
    # OPT-IML-Max is evaluated on MMLU and BBH (Table 14)
    judged = [r for r in eval_only if everything or r.category in partial]
    evaluation = [] if everything else [r for r in records if r.role in EVAL_ROLES]
    supervised = [] if everything else [
        r for r in records if r.role == "supervised" and r.benchmark in chosen
    ]  # fmt: skip
    eval_datasets = {r.dataset for r in evaluation + judged} - broad
    supervised_datasets = {r.dataset for r in supervised} - broad
    evaluated = {r.name for r in evaluation + judged + supervised}
    leaks: dict[str, catalog.Leak] = {}
    if config.leakage_filter:
        for leak in catalog.leakage():
            if leak.eval_task in evaluated and leak.fraction > LEAKAGE_THRESHOLD:
                leaks.setdefault(leak.train_task, leak)

    left_out: dict[str, str] = {}
    train = []
    for r in records:
        trainable = r.role in ("train", "supervised") or (everything and r.role in EVAL_ROLES)
        if r.benchmark not in chosen or not trainable:
            continue
        if r.category in heldout and not everything:
            left_out[r.name] = f"category {r.category!r} is fully held out"
        elif r.dataset in eval_datasets:
            left_out[r.name] = f"shares dataset {r.dataset!r} with an evaluation task"
        elif (
            r.role != "supervised"
            and r.dataset in supervised_datasets
            and not benchmarks[r.benchmark].official_splits
        ):
            left_out[r.name] = (
                f"shares dataset {r.dataset!r} with a fully supervised task, and its instances "
                "may come from that task's evaluation split"
            )
        elif config.english_only and r.benchmark == "niv2" and r.languages != ("English",):
            left_out[r.name] = "not English (LevelConfig.english_only)"
        elif r.name in leaks:
            leak = leaks[r.name]
            left_out[r.name] = (
                f"{leak.fraction:.1%} of {leak.eval_task}'s evaluation examples share a 13-gram "
                "with it (tasks/leakage.tsv)"
            )
        elif r.name in config.exclude_train_tasks:
            left_out[r.name] = "excluded by LevelConfig.exclude_train_tasks"
        else:
            train.append(r)

    trained = {r.name for r in train}
    fully_supervised = tuple(r for r in supervised if r.name in trained)
    in_dev_table = set(catalog.task_lists().get(DEV_LIST, ()))
    in_dev = [
        r for r in fully_supervised
        if (r.benchmark, r.task) in in_dev_table or r.name in config.supervised_tasks
    ]  # fmt: skip
    mmlu_like = [r for r in eval_only if r.category in partial]  # paper footnote 3: MMLU in dev
    niv2_ids = set(catalog.official_split("niv2", "test"))
    return Levels(
        train=tuple(train),
        fully_heldout=tuple(r for r in evaluation if r.category in heldout),
        partially_heldout=tuple([r for r in evaluation if r.category not in heldout] + mmlu_like),
        fully_supervised=fully_supervised,
        dev=tuple([r for r in evaluation if r.role == "dev"] + in_dev + mmlu_like),
        test=tuple(
            [r for r in evaluation if r.role == "test"]
            + [r for r in fully_supervised if r not in in_dev or r.name in config.supervised_tasks]
        ),
        niv2_test=tuple(r for r in evaluation if r.benchmark == "niv2" and r.task in niv2_ids),
        eval_only=tuple(eval_only),
        left_out=left_out,
    )
