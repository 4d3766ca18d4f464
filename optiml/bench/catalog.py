"""The benchmark catalog: reads `tasks/` (data, not code) into typed records.

Files (see tasks/README.md): `benchmarks.tsv` (one row per source benchmark),
`catalog/<benchmark>.tsv` (one row per task), `categories.tsv` (the taxonomy: NIV2's 76 + added
ones), `category_map.tsv` (other benchmarks' category names -> taxonomy), `splits/*.txt` (official
task lists), `task_lists.tsv` (the paper's held-out task lists), `leakage.tsv` (task pairs with
> 1% 13-gram overlap, from optiml.tools.leakage), `prompt_formats.json` (prompt formats).

    >>> rec = task("optiml:niv2:task1557_jfleg_answer_generation")
    >>> rec.category, rec.role, rec.answer_type, rec.metric
    ('Grammar Error Correction', 'dev', 'generate', 'rougeL')

Reading the catalog reads no benchmark data; it is TF-free and cached.
"""

from __future__ import annotations

import csv
import functools
import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from optiml import paths
from optiml.bench import names

ROLES = ("train", "supervised", "dev", "test", "excluded", "eval_only", "off")
ANSWER_TYPES = ("rank", "generate", "lm")
TASK_COLUMNS = (
    "task", "source_id", "dataset", "category", "source_category", "role", "answer_type", "metric",
    "template", "languages",
)  # fmt: skip


LEAKAGE_FILE = "leakage.tsv"


class CatalogError(ValueError):
    """A catalog file is malformed; the message names the file, row and field."""


@dataclass(frozen=True)
class Benchmark:
    """One source benchmark (a row of benchmarks.tsv)."""

    key: str
    title: str
    instruction_type: str
    loader: str  # module that turns a catalog row into a seqio source + preprocessors
    enabled: bool  # in the default training recipe
    proportion: float  # default OPT-IML share in percent (Crossfit/ExMix/FLAN/NIV2/PS/T5/U-SKG)
    curation_cap: int  # per-task example cap at curation (paper: 100k, FLAN 30k; 0 = none)
    paper_tasks: int
    paper_categories: int
    # its tasks train on the dataset's official train split only (NIV2's instances come from any
    # split, so another NIV2 task could hold a fully supervised task's evaluation instances)
    official_splits: bool


@dataclass(frozen=True)
class TaskRecord:
    """One task: `name` is its seqio name, e.g. `optiml:niv2:task1557_jfleg_answer_generation`."""

    name: str
    benchmark: str
    task: str
    source_id: str  # the benchmark's own id (NIV2 file stem, PromptSource `dataset/subset`)
    dataset: str  # data source, alias-resolved; train and eval tasks never share one (levels.py)
    category: str  # taxonomy category (categories.tsv)
    source_category: str  # the benchmark's own category name
    role: str  # one of ROLES (tasks/README.md)
    answer_type: str  # rank (score options), generate (free text), lm (plain text)
    metric: str  # accuracy | rougeL | exact_match | perplexity
    template: str  # template reference, `<benchmark>:<template id>`
    languages: tuple[str, ...]


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CatalogError(f"catalog file {path} does not exist")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def catalog_dir() -> Path:
    return paths.tasks_dir()


@functools.cache
def benchmarks() -> dict[str, Benchmark]:
    """All declared source benchmarks by key (niv2, promptsource, flan, ...)."""
    path = catalog_dir() / "benchmarks.tsv"
    out = {}
    for i, row in enumerate(_read_tsv(path), start=2):
        try:
            out[row["benchmark"]] = Benchmark(
                key=row["benchmark"],
                title=row["title"],
                instruction_type=row["instruction_type"],
                loader=row["loader"],
                enabled=row["enabled"] == "true",
                proportion=float(row["proportion"]),
                curation_cap=int(row["curation_cap"]),
                paper_tasks=int(row["paper_tasks"]),
                paper_categories=int(row["paper_categories"]),
                official_splits=row["official_splits"] == "true",
            )
        except (KeyError, ValueError, TypeError) as err:
            raise CatalogError(f"{path}:{i}: bad benchmark row {row}: {err}") from None
    return out


def loader(benchmark: str):
    """The benchmark's loader module (benchmarks.tsv `loader`), or None while it has none.

    A loader module provides `make_source(record, *, num_demos, seed)` (a lazy seqio source),
    `count_examples(record, split)` (exact count; raises OSError/ValueError if the task's data is
    absent or malformed), `examples(record, split, *, num_demos=0, seed=0)` (rendered examples
    in pure Python, each with `.id` unique within the task, `.inputs`, `.targets`) and
    `VARIANTS` ({"2shot": 2, ...}); see optiml.bench.sources.niv2."""
    module = benchmarks()[benchmark].loader
    if importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


@functools.cache
def categories() -> tuple[str, ...]:
    """The category taxonomy: NIV2's 76 categories first, then the added ones."""
    return tuple(r["category"] for r in _read_tsv(catalog_dir() / "categories.tsv"))


@functools.cache
def niv2_categories() -> tuple[str, ...]:
    rows = _read_tsv(catalog_dir() / "categories.tsv")
    return tuple(r["category"] for r in rows if r["origin"] == "niv2")


@functools.cache
def category_map() -> dict[tuple[str, str], str]:
    """(benchmark, its category name) -> taxonomy category, e.g. ('flan', 'Natural Language
    Inference') -> 'Textual Entailment'."""
    path = catalog_dir() / "category_map.tsv"
    known = set(categories())
    out = {}
    for i, row in enumerate(_read_tsv(path), start=2):
        if row["category"] not in known:
            raise CatalogError(f"{path}:{i}: unknown category {row['category']!r}")
        out[(row["benchmark"], row["source_category"])] = row["category"]
    return out


@functools.cache
def dataset_aliases() -> dict[str, str]:
    """Other names of a dataset -> its one name across benchmarks (dataset_aliases.tsv), e.g.
    `super_glue_copa` -> `copa`, `squad1.1` -> `squad_v1`: leakage checks compare these."""
    return {r["alias"]: r["dataset"] for r in _read_tsv(catalog_dir() / "dataset_aliases.tsv")}


def _record(benchmark: str, row: dict[str, str], where: str, known: set[str]) -> TaskRecord:
    missing = [c for c in TASK_COLUMNS if row.get(c) is None]
    if missing:
        raise CatalogError(f"{where}: missing column(s) {missing}")
    if row["category"] not in known:
        raise CatalogError(
            f"{where}: task {row['task']!r} has unknown category {row['category']!r}"
        )
    if row["role"] not in ROLES:
        raise CatalogError(f"{where}: task {row['task']!r} has role {row['role']!r}, not {ROLES}")
    if row["answer_type"] not in ANSWER_TYPES:
        raise CatalogError(f"{where}: task {row['task']!r} has answer_type {row['answer_type']!r}")
    try:
        name = names.task_name(benchmark, row["task"])
    except ValueError as err:
        raise CatalogError(f"{where}: {err}") from None
    return TaskRecord(
        name=name,
        benchmark=benchmark,
        task=row["task"],
        source_id=row["source_id"],
        dataset=dataset_aliases().get(row["dataset"], row["dataset"]),
        category=row["category"],
        source_category=row["source_category"],
        role=row["role"],
        answer_type=row["answer_type"],
        metric=row["metric"],
        template=row["template"],
        languages=tuple(x for x in row["languages"].split(",") if x),
    )


@functools.cache
def _all_tasks() -> dict[str, TaskRecord]:
    known = set(categories())
    out: dict[str, TaskRecord] = {}
    for key in benchmarks():
        path = catalog_dir() / "catalog" / f"{key}.tsv"
        for i, row in enumerate(_read_tsv(path), start=2):
            rec = _record(key, row, f"{path}:{i}", known)
            if rec.name in out:
                raise CatalogError(f"{path}:{i}: duplicate task {rec.task!r}")
            out[rec.name] = rec
    return out


def tasks(benchmark: str | None = None) -> list[TaskRecord]:
    """All declared tasks (of one benchmark if given), in catalog order."""
    if benchmark is not None and benchmark not in benchmarks():
        raise KeyError(f"unknown benchmark {benchmark!r}; declared: {sorted(benchmarks())}")
    return [r for r in _all_tasks().values() if benchmark is None or r.benchmark == benchmark]


def task(name: str) -> TaskRecord:
    """One task's record by seqio name (`optiml:<benchmark>:<task>`; a `#variant` is ignored)."""
    parsed = names.parse_task_name(name)
    key = names.task_name(parsed.benchmark, parsed.task)
    try:
        return _all_tasks()[key]
    except KeyError:
        raise KeyError(f"task {name!r} is not in the catalog (tasks/catalog/)") from None


@functools.cache
def official_split(benchmark: str, split: str) -> tuple[str, ...]:
    """An official task list as catalog task ids, e.g. `official_split("niv2", "test")` -> the
    119 NIV2 test tasks (tasks/splits/niv2_default_test.txt holds the official raw ids)."""
    path = catalog_dir() / "splits" / f"{benchmark}_default_{split}.txt"
    if not path.is_file():
        raise CatalogError(f"no official split file {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(names.sanitize(line) for line in lines if line.strip())


@functools.cache
def task_lists() -> dict[str, tuple[tuple[str, str], ...]]:
    """The paper's task lists (task_lists.tsv) as {list: ((benchmark, catalog task id), ...)},
    e.g. `task_lists()["flan_heldout"][0]` -> `("flan", "anli_r1")` (Table 11). A listed task the
    catalog lacks (T0's `blended_skill_talk`) stays listed; a mixture of the list leaves it out."""
    path = catalog_dir() / "task_lists.tsv"
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for i, row in enumerate(_read_tsv(path), start=2):
        if row.get("benchmark") not in benchmarks() or not row.get("task") or not row.get("list"):
            raise CatalogError(f"{path}:{i}: bad task list row {row} (list, benchmark, task)")
        out[row["list"]] = (*out.get(row["list"], ()), (row["benchmark"], row["task"]))
    return out


@dataclass(frozen=True)
class Leak:
    """A row of leakage.tsv: `fraction` of `eval_task`'s test examples share a 13-gram with
    `train_task`'s training examples (both seqio task names)."""

    train_task: str
    eval_task: str
    fraction: float
    shared: int
    eval_examples: int


@functools.cache
def leakage() -> tuple[Leak, ...]:
    """The task pairs above the paper's 1% 13-gram threshold (paper §2.3), as computed over the
    local data by `python -m optiml.tools.leakage` (tasks/leakage.tsv); `levels` leaves their
    training side out whenever the other task is evaluated."""
    path = catalog_dir() / LEAKAGE_FILE
    out = []
    for i, row in enumerate(_read_tsv(path), start=2):
        try:
            leak = Leak(row["train_task"], row["eval_task"], float(row["fraction"]),
                        int(row["shared"]), int(row["eval_examples"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise CatalogError(f"{path}:{i}: bad leakage row {row}: {err}") from None
        for name in (leak.train_task, leak.eval_task):
            if name not in _all_tasks():
                raise CatalogError(f"{path}:{i}: unknown task {name!r} (rerun the leakage tool)")
        out.append(leak)
    return tuple(out)


@functools.cache
def prompt_formats() -> dict:
    """The prompt formats of tasks/prompt_formats.json (answer delimiters, NIV2's Appendix C and
    Tk-Instruct formats, the chain-of-thought format, the demonstration separator)."""
    path = catalog_dir() / "prompt_formats.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CatalogError(f"prompt formats {path}: {err}") from None
