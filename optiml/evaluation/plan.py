"""The evaluation plan: which seqio tasks to evaluate, on which split, and where each score goes.

A plan is a list of `EvalTask`s; `plan_from_registry` builds the OPT-IML one from the levels
(`optiml.bench.levels` decides each task's level), e.g. for phase "dev":

    EvalTask(task="optiml:niv2:task1557_jfleg_answer_generation#2shot", level="fully_heldout",
             category="Grammar Error Correction", benchmark="niv2", name="jfleg",
             subtask="task1557_jfleg_answer_generation", shots=2, split="validation",
             max_examples=250, metric="rougeL", answer_type="generate")

The registry's seqio task already has its shots rendered into the prompt; `max_examples` caps the
examples (250 for dev tasks, None = all for test tasks). A task's report identity is its dataset
(`name`: COPA from PromptSource, NIV2 and FLAN is one task) and the catalog task is the subtask.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import seqio

import optiml.registry  # noqa: F401  (registers every task)
from optiml.bench import catalog, levels, mixing, names
from optiml.bench.sources import retrieval
from optiml.evaluation import rank_classification as rc
from optiml.evaluation.metrics import is_xlingual

PHASES = {"dev": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """One seqio task to evaluate and where its score goes in the report."""

    task: str
    level: str  # one of levels.LEVELS
    category: str
    benchmark: str
    name: str
    shots: int = 0
    split: str = "validation"
    max_examples: int | None = None
    subtask: str = ""
    metric: str = ""
    answer_type: str = "generate"
    xlingual: bool = False
    scoring: rc.Scoring = rc.PAPER  # rank tasks: EOS and length normalization (paper's: default)
    templates: tuple[str, ...] = ()  # only these templates' examples (prompt_selection); () = all
    demos: str = "random"  # how k-shot prompts choose their demonstrations (retrieval.MODES)

    def __post_init__(self) -> None:
        if self.level not in levels.LEVELS:
            raise ValueError(
                f"task {self.task!r}: unknown level {self.level!r} (one of {levels.LEVELS})"
            )


def reachable_shots(
    loader, record: catalog.TaskRecord, split: str, k: int, demos: str = "random"
) -> int:
    """The demonstrations a k-shot variant of `record` really shows (the loader's
    `reachable_shots`, told the mode when demonstrations are retrieved; k for loaders whose
    k-shot prompts always have k, e.g. MMLU's dev set)."""
    if k == 0 or not hasattr(loader, "reachable_shots"):
        return k
    if demos == retrieval.RETRIEVED:
        return int(loader.reachable_shots(record, split, k, demos=demos))
    return int(loader.reachable_shots(record, split, k))


def shot_variant(loader, variant: str | None, k: int, demos: str) -> tuple[str | None, str]:
    """(the registry variant, the demonstration mode it really has) of a k-shot variant with
    `demos` ("random" or "retrieved": the loader's `retrieved_<variant>` where it offers one)."""
    retrieval.check_mode(demos)
    if k == 0 or demos != retrieval.RETRIEVED:
        return variant, "random"
    if retrieval.RETRIEVED not in getattr(loader, "FORMAT_VARIANTS", {}):
        return variant, "random"
    return f"{retrieval.RETRIEVED}_{variant}", retrieval.RETRIEVED


def plan_from_registry(
    *,
    phase: str = "dev",
    level_config: levels.LevelConfig | None = None,
    shots: Sequence[int] | None = None,
    max_examples: int | None = 250,
    benchmarks: Sequence[str] | None = None,
    max_tasks_per_level: int | Mapping[str, int] | None = None,
    trained_on: str | None = None,
    scoring: rc.Scoring = rc.PAPER,
    demos: str = "random",
) -> list[EvalTask]:
    """The evaluation plan of the OPT-IML levels from `optiml.registry`.

    phase "dev": the validation tasks (paper Table 15 + the supervised tasks' validation
    instances), at most `max_examples` (250) examples each; "test": every test task and the
    evaluation-only benchmarks that belong to a level (MMLU), all of their examples
    (`max_examples` is ignored). Every task runs 0-shot and in each few-shot variant its
    loader offers (NIV2 #2shot/#5shot), restricted to `shots` if given; a variant whose task
    cannot show k demonstrations is reported at the k it reached (its own column in the
    report, never averaged with the k-shot ones), and dropped if another variant reached that
    k already. Tasks without local data, or outside the three levels, are logged and skipped.
    `max_tasks_per_level` keeps the first N tasks of each benchmark in each level (quick runs
    that still cover every benchmark: generation and rank classification); a {level: N} mapping
    caps only the levels it names. `trained_on`: the training mixture (e.g.
    "optiml_mix:quickstart"); the fully supervised level then holds only its tasks, the ones the
    model saw, and the levels are the mixture's (its `level_config`) unless `level_config` is
    given. `scoring`: how rank tasks score options. `demos`: "random" (the loaders' seeded
    demonstrations) or "retrieved" (BM25-retrieved ones, `retrieval`, where a loader offers
    them; each entry records the mode it got).
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; one of {list(PHASES)}")
    split = PHASES[phase]
    spec = _mixture(trained_on) if trained_on is not None else None
    lv = levels.build_levels(level_config or (spec and spec.level_config) or levels.LevelConfig())
    records = list(lv.dev if phase == "dev" else lv.test)
    if phase == "test":  # evaluation-only benchmarks placed in a level (MMLU: partially held out)
        records += [r for r in lv.eval_only if lv.level_of(r) is not None]
    registered = set(seqio.TaskRegistry.names())
    trained = {r.name for r in mixing.level_tasks(spec)} if spec is not None else None
    plan: list[EvalTask] = []
    per_level: dict[tuple[str, str], int] = {}
    for record in records:
        if benchmarks is not None and record.benchmark not in benchmarks:
            continue
        level = lv.level_of(record)
        if level is None:
            logging.info("%s: in none of the three levels, not evaluated", record.name)
            continue
        if level == "fully_supervised" and trained is not None and record.name not in trained:
            continue
        if record.name not in registered:
            logging.info("%s: no loader registered it, not evaluated", record.name)
            continue
        count = mixing.count_examples(record, split)
        if isinstance(count, str):
            logging.info("%s: not available locally (%s)", record.name, count)
        if isinstance(count, str) or count == 0:
            continue
        key = (level, record.benchmark)
        cap = (
            max_tasks_per_level.get(level)
            if isinstance(max_tasks_per_level, Mapping)
            else max_tasks_per_level
        )
        if cap is not None and per_level.get(key, 0) >= cap:
            continue
        per_level[key] = per_level.get(key, 0) + 1
        loader = catalog.loader(record.benchmark)
        variants = [(None, 0)] + sorted(getattr(loader, "VARIANTS", {}).items(), key=lambda v: v[1])
        planned: set[int] = set()
        for variant, k in variants:
            if shots is not None and k not in shots:
                continue
            variant, mode = shot_variant(loader, variant, k, demos)
            k = reachable_shots(loader, record, split, k, mode)
            if k in planned:  # e.g. #5shot of a task with 2 demonstrations = its #2shot
                continue
            planned.add(k)
            plan.append(
                EvalTask(
                    task=names.task_name(record.benchmark, record.task, variant),
                    level=level,
                    category=record.category,
                    benchmark=record.benchmark,
                    name=record.dataset,
                    subtask=record.task,
                    shots=k,
                    split=split,
                    max_examples=max_examples if phase == "dev" else None,
                    metric=record.metric if record.answer_type == "generate" else "accuracy",
                    answer_type=record.answer_type,
                    xlingual=is_xlingual(record.languages),
                    scoring=scoring,
                    demos=mode,
                )
            )
    if not plan:
        raise ValueError(f"no {phase} task is available locally: nothing to evaluate")
    return plan


def paper_plan(
    tables: Sequence[str] = ("10", "11", "12", "13"),
    *,
    shots: Sequence[int] | None = None,
    max_examples: int | None = None,
    level_config: levels.LevelConfig | None = None,
    scoring: rc.Scoring = rc.PAPER,
    demos: str = "random",
) -> list[EvalTask]:
    """The test plan that reproduces the paper's Tables 9-14 (`optiml.evaluation.paper`): every
    registry task a table's paper tasks map to, at each shot count the table reports, on its
    test split; Table 12 (SuperNI) scores the first 100 examples of each task (§5.4), the others
    all of them (`max_examples` caps every task, for quick runs). A task without local data, a
    shot count its loader has no variant for, or a task in none of the levels is logged and
    left out; the report's paper section marks what that leaves partial. A k-shot task that
    cannot show k demonstrations is reported at the k it reached. `demos`: as in
    `plan_from_registry`."""
    from optiml.evaluation import paper

    lv = levels.build_levels(level_config or levels.LevelConfig())
    registered = set(seqio.TaskRegistry.names())
    plan: dict[str, EvalTask] = {}
    for (table, paper_task), entry in paper.task_map().items():
        if table not in tables or entry.absent:
            continue
        table_shots = sorted({c.shots for c in paper.cells() if c.table == table})
        cap = 100 if table == "12" else None
        cap = cap if max_examples is None else min(cap or max_examples, max_examples)
        for record in catalog.tasks(entry.benchmark):
            if not paper.covers(entry, record):
                continue
            level = lv.level_of(record)
            count = mixing.count_examples(record, "test")
            if level is None or record.name not in registered or isinstance(count, str):
                why = count if isinstance(count, str) else "in no level or not registered"
                logging.info("Table %s %s: %s left out (%s)", table, paper_task, record.name, why)
                continue
            variants = {0: None} | {
                int(k): v for v, k in reversed(getattr(catalog.loader(record.benchmark),
                                                       "VARIANTS", {}).items())
            }  # fmt: skip
            for k in table_shots:
                if shots is not None and k not in shots:
                    continue
                if k not in variants:
                    logging.info("Table %s %s: %s has no %d-shot variant", table, paper_task,
                                 record.name, k)  # fmt: skip
                    continue
                loader = catalog.loader(record.benchmark)
                variant, mode = shot_variant(loader, variants[k], k, demos)
                task = names.task_name(record.benchmark, record.task, variant)
                plan.setdefault(
                    task,
                    EvalTask(
                        task=task,
                        level=level,
                        category=record.category,
                        benchmark=record.benchmark,
                        name=record.dataset,
                        subtask=record.task,
                        shots=reachable_shots(loader, record, "test", k, mode),
                        split="test",
                        max_examples=cap,
                        metric=record.metric if record.answer_type == "generate" else "accuracy",
                        answer_type=record.answer_type,
                        xlingual=is_xlingual(record.languages),
                        scoring=scoring,
                        demos=mode,
                    ),
                )
    if not plan:
        raise ValueError(f"no task of the paper's Tables {', '.join(tables)} is available locally")
    return list(plan.values())


def _mixture(name: str) -> mixing.MixtureSpec:
    if name not in mixing.MIXTURES:
        raise ValueError(f"trained_on={name!r}: not one of optiml's mixtures")
    return mixing.MIXTURES[name]


def with_demo_separator(plan: Sequence[EvalTask], separator: str | None) -> list[EvalTask]:
    """`plan` with its k-shot tasks in the MetaICL format, demonstrations joined by `separator`
    (paper §4.8: [SEP] = three newlines; Table 20: " \n\n"); each such task is registered as
    `optiml:<benchmark>:<task>#sep<hex>_<k>shot` (`registry.register_separator_task`) at the k
    the plan reached. None: the plan as it is (the loaders' own k-shot prompts, §2.4)."""
    if separator is None:
        return list(plan)
    out = []
    for entry in plan:
        if entry.shots == 0:
            out.append(entry)
            continue
        if entry.demos != "random":
            raise ValueError(f"{entry.task}: a demonstration separator needs demos='random'")
        parsed = names.parse_task_name(entry.task)
        record = catalog.task(names.task_name(parsed.benchmark, parsed.task))
        loader = catalog.loader(record.benchmark)
        task = optiml.registry.register_separator_task(record, loader, entry.shots, separator)
        out.append(dataclasses.replace(entry, task=task))
    return out
