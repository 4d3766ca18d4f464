"""The three generalization levels of OPT-IML Bench, plus dev and test, from the catalog.

    >>> lv = build_levels()                     # the paper's defaults
    >>> len(lv.train), lv.fully_heldout[0].category
    (..., 'Cause Effect Classification')

- **train**: `train`/`supervised` tasks of enabled benchmarks whose category is not fully held out,
  that share no dataset with any evaluation task (paper §2.3: train and eval tasks never share a
  data source; broad sources such as `synthetic` are exempt) nor, unless fully supervised
  themselves, with a fully supervised task (they could hold its held-out instances), and, for
  NIV2, are English. Datasets are compared after `catalog.dataset_aliases()`.
- **fully held-out**: every task of a fully held-out category (the paper's seven by default).
- **partially held-out**: evaluation tasks (`dev`/`eval`/`test` roles, MMLU) of the other
  categories, i.e. unseen tasks of seen categories (QA, toxic language, summarization, ...).
- **fully supervised**: the `supervised` training tasks, evaluated on their held-out instances.
- **dev** (Table 15): `dev` tasks + the supervised tasks' validation instances; **test**: every
  other evaluation task (never a dev task); **niv2_test**: NIV2's official 119-task test split.

Instance split (deterministic, seed-free): an instance of a `supervised` task is held out iff
sha256("<task id>/<instance id>") mod 1000 < 1000 * fraction (10% by default). Pure catalog
logic: reads no data, TF-free.
"""

from __future__ import annotations

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
BROAD_SOURCES = ("synthetic", "wikipedia", "mmlu", "bbh")
HELDOUT_FRACTION = 0.1
EVAL_ROLES = ("dev", "eval", "test")
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
    english_only: bool = True  # NIV2: English tasks only; False adds the non-English ones
    benchmarks: tuple[str, ...] | None = None  # None: the enabled ones (benchmarks.tsv)
    broad_sources: tuple[str, ...] = BROAD_SOURCES
    train_on_everything: bool = False  # OPT-IML-Max: every non-excluded task is a training task
    exclude_train_tasks: tuple[str, ...] = ()  # e.g. leakage.read_report(path) (paper §2.3)

    def __post_init__(self) -> None:  # gin passes lists: keep the config hashable
        for name in ("heldout_categories", "partial_categories", "broad_sources", "benchmarks",
                     "exclude_train_tasks"):  # fmt: skip
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


@functools.cache
def build_levels(config: LevelConfig = LevelConfig()) -> Levels:  # noqa: B008 (frozen)
    """Assign every catalog task to the levels (see the module docstring)."""
    _check(config)
    chosen = config.benchmarks or tuple(k for k, b in catalog.benchmarks().items() if b.enabled)
    eval_benchmarks = set(chosen) | {
        k for k, b in catalog.benchmarks().items() if b.proportion == 0
    }
    records = [r for r in catalog.tasks() if r.role != "off" and r.benchmark in eval_benchmarks]
    heldout = set(config.heldout_categories)
    left_out: dict[str, str] = {}

    if config.train_on_everything:
        evaluation: list[catalog.TaskRecord] = []
    else:
        evaluation = [
            r
            for r in records
            if r.role in EVAL_ROLES or (r.category in heldout and r.role in ("train", "supervised"))
        ]
    eval_names = {r.name for r in evaluation}
    eval_datasets = {r.dataset for r in evaluation} - set(config.broad_sources)

    # Another task of a fully supervised task's dataset could train on its held-out instances.
    supervised_datasets = set()
    if not config.train_on_everything:
        supervised_datasets = {
            r.dataset for r in records if r.role == "supervised" and r.benchmark in chosen
        } - set(config.broad_sources)
    train = []
    for r in records:
        if r.benchmark not in chosen or r.role == "eval_only":
            continue
        non_english = r.benchmark == "niv2" and r.languages != ("English",)
        candidate = r.role in ("train", "supervised")
        candidate |= r.role == "excluded" and non_english and not config.english_only
        candidate |= config.train_on_everything and r.role in EVAL_ROLES
        if not candidate or r.name in eval_names:
            continue
        if r.dataset in eval_datasets:
            left_out[r.name] = f"shares dataset {r.dataset!r} with an evaluation task"
        elif r.role != "supervised" and r.dataset in supervised_datasets:
            left_out[r.name] = f"shares dataset {r.dataset!r} with a fully supervised task"
        elif config.english_only and non_english:
            left_out[r.name] = "not English"
        elif r.name in config.exclude_train_tasks:
            left_out[r.name] = "overlaps an evaluation task (leakage report)"
        else:
            train.append(r)

    supervised = tuple(r for r in train if r.role == "supervised")
    eval_only = tuple(r for r in records if r.role == "eval_only")
    partial = set(config.partial_categories)
    fully = tuple(r for r in evaluation if r.category in heldout)
    partially = tuple(
        [r for r in evaluation if r.category not in heldout]
        + [r for r in eval_only if r.category in partial]
    )
    dev = tuple([r for r in evaluation if r.role == "dev"] + list(supervised))
    test = tuple([r for r in evaluation if r.role != "dev"] + list(supervised))
    niv2_ids = set(catalog.official_split("niv2", "test"))
    niv2_test = tuple(r for r in catalog.tasks("niv2") if r.task in niv2_ids)
    return Levels(
        train=tuple(train),
        fully_heldout=fully,
        partially_heldout=partially,
        fully_supervised=supervised,
        dev=dev,
        test=test,
        niv2_test=niv2_test,
        eval_only=eval_only,
        left_out=left_out,
    )
