"""PromptSource (T0's prompts): original-task templates, rendered with PromptSource's Jinja.

Templates come from `$OPTIML_DATA_DIR/promptsource/templates/<dataset>[/<subset>]/templates.yaml`
(the files of the `promptsource` package). Only templates whose metadata says `original_task`
are used (paper A.1). Rendering follows `promptsource/templates.py`: a `BaseLoader` Jinja
environment with `zip`/`enumerate` and the `choice`, `most_frequent`, `highlight` filters, every
`}}` truncated to 2048 characters, `|||` inside field values protected, `answer_choices` rendered
from the example, and the text split on `|||` into (prompt, target), both stripped.

Examples are the Hugging Face rows of the dataset (`optiml.bench.sources.hub`): the local
SuperGLUE / FewGLUE / PIQA files converted to the HF schema where present, else
`datasets.load_dataset(<dataset>, <subset>, split=...)` from a local copy of the Hub repository or
the Hub itself; a dataset that cannot be had is named with how to get it.

Splits (paper §4.1): `train` = one template per example, picked at random (seeded) among the
templates that apply to it, so a task keeps N examples whatever its number of templates; `test`
= every (example, template) pair over the templates that apply to *all* test examples (others
are dropped, with the reason logged); `validation` = 250 of those pairs, sampled (seeded).
Demonstrations (`#5shot`) use the same template on the task's training rows (its test rows when
it has none), tried in a seeded order; `#retrieved_5shot` shows the training rows whose prompts
BM25 ranks first for the example's prompt (`retrieval`; no training rows: no demonstrations).
An example of `super_glue/rte` (template "GPT-3 style"):

    inputs  "Dana Reeve, ... died of lung cancer ...\\nQuestion: Christopher Reeve had an
             accident. True or False?\\nAnswer:"     targets " False"
    options ("True", "False")  label 1
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common, hub, retrieval

log = logging.getLogger(__name__)

TEXT_VAR_LENGTH = 2048  # promptsource.templates.TEXT_VAR_LENGTH
PIPE_PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"  # promptsource's placeholder for "|||"
VARIANTS = {"5shot": 5}
FORMAT_VARIANTS = retrieval.FORMAT_VARIANT  # `#retrieved_5shot`: BM25-retrieved demonstrations
DEMO_SEPARATOR = "\n\n"

_rng = random.Random(0)  # the `choice` filter; reseeded per (example, template) before rendering


def _most_frequent(items):
    if not items:
        return None
    counts = Counter(items).most_common()
    return [item for item, n in counts if n == counts[0][1]]


ENV = jinja2.Environment(loader=jinja2.BaseLoader())
ENV.globals.update(zip=zip, enumerate=enumerate)
ENV.filters.update(
    highlight=lambda text: "<span style='color: #F08080'>" + text + "</span>",
    choice=lambda choices: _rng.choice(choices),
    most_frequent=_most_frequent,
)


class TemplateError(ValueError):
    """A template does not apply to an example (render error, empty part, answer not a choice)."""


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    jinja: str
    answer_choices: str | None
    original_task: bool

    @functools.cached_property
    def compiled(self) -> jinja2.Template:
        trunc = f" | string | truncate({TEXT_VAR_LENGTH}) }}}}"
        return ENV.from_string(self.jinja.replace("}}", trunc))

    @functools.cached_property
    def compiled_choices(self) -> jinja2.Template | None:
        return ENV.from_string(self.answer_choices) if self.answer_choices else None


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("!Template", _mapping)
_Loader.add_constructor("!TemplateMetadata", _mapping)


def templates_dir() -> Path:
    return paths.data_dir() / "promptsource" / "templates"


def load_templates(source_id: str, root: Path | None = None) -> tuple[Template, ...]:
    """The original-task templates of `dataset[/subset]`, sorted by name."""
    return _load_templates(source_id, (root or templates_dir()) / source_id / "templates.yaml")


@functools.cache
def _load_templates(source_id: str, path: Path) -> tuple[Template, ...]:
    if not path.is_file():
        raise common.SourceDataError(f"PromptSource {source_id}: no templates file {path}")
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        out = [
            Template(
                id=str(t["id"]),
                name=str(t["name"]),
                jinja=str(t["jinja"]),
                answer_choices=t.get("answer_choices") or None,
                original_task=bool((t.get("metadata") or {}).get("original_task")),
            )
            for t in (spec.get("templates") or {}).values()
        ]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        raise common.SourceDataError(
            f"PromptSource {source_id}: malformed {path} ({err})"
        ) from None
    return tuple(sorted((t for t in out if t.original_task), key=lambda t: t.name))


def _protect(example: dict) -> dict:
    return {k: v.replace("|||", PIPE_PROTECTOR) if isinstance(v, str) else v
            for k, v in example.items()}  # fmt: skip


def _unprotect(text: str) -> str:
    return text.replace(PIPE_PROTECTOR, "|||")


def render(template: Template, example: dict, seed: str = "0") -> tuple[str, str, list[str]]:
    """(prompt, target, answer choices) exactly as PromptSource's `Template.apply` builds them;
    raises TemplateError when the template does not apply to the example."""
    if "answer_choices" in example:
        raise TemplateError("example contains the restricted key 'answer_choices'")
    protected = _protect(example)
    try:
        choices = []
        if template.compiled_choices is not None:
            _rng.seed(f"choices:{seed}")
            rendered = template.compiled_choices.render(**protected)
            choices = [_unprotect(c.strip()) for c in rendered.split("|||")]
        _rng.seed(f"jinja:{seed}")
        text = template.compiled.render(**protected, answer_choices=choices or None)
    except Exception as err:  # any Jinja/Python error in the template means "does not apply"
        raise TemplateError(f"render error: {type(err).__name__}: {err}") from None
    parts = [_unprotect(p).strip() for p in text.split("|||")]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise TemplateError(f"renders to {len(parts)} part(s), need a non-empty prompt and target")
    if choices and parts[1] not in choices:
        raise TemplateError(f"target {parts[1][:40]!r} is not one of the answer choices")
    return parts[0], parts[1], choices


# -- examples ------------------------------------------------------------------------------------
def _row_id(i: int, row: dict) -> str:
    idx = row.get("idx")
    return json.dumps(idx, sort_keys=True) if idx is not None else str(i)


class _Indexed:
    """The source's splits as (row id, row) pairs, each split read when `split_rows` asks."""

    def __init__(self, source) -> None:
        self.source = source

    def get(self, split: str, default=None) -> list[tuple[str, dict]] | None:
        rows = self.source.get(split)
        return default if rows is None else [(_row_id(i, r), r) for i, r in enumerate(rows)]


def _rows(record: catalog.TaskRecord, split: str) -> list[tuple[str, dict]]:
    indexed = _Indexed(hub.load_rows(record.source_id))
    return common.split_rows(record, split, indexed, key=lambda i, pair: pair[0])


def check_templates(record: catalog.TaskRecord, split: str = "test") -> dict[str, str | None]:
    """{template name: None if it applies to every example of the split, else the first reason
    it does not} -- the evaluation rule (paper A.1)."""
    rank = record.answer_type == "rank"
    out: dict[str, str | None] = {}
    rows = _rows(record, split)
    for t in load_templates(record.source_id):
        out[t.name] = "no answer choices in a rank task" if rank and not t.answer_choices else None
        for row_id, row in rows if out[t.name] is None else []:
            try:
                render(t, row, f"{row_id}:{t.id}")
            except TemplateError as err:
                out[t.name] = f"example {row_id}: {err}"
                break
    return out


def _order(seed: int, n: int, *parts: object) -> list[int]:
    """A seeded permutation of range(n)."""
    keys = [common.pick(seed, 2**61, *parts, j) for j in range(n)]
    return sorted(range(n), key=keys.__getitem__)


def _sample(rng: random.Random, pool: list):
    """Random indices into a large pool, without repeats (demonstration candidates)."""
    seen: set[int] = set()
    while len(seen) < len(pool):
        j = rng.randrange(len(pool))
        if j not in seen:
            seen.add(j)
            yield j


def _demos(record, template, pool, exclude: str, k: int, seed: int) -> list[str]:
    """k demonstrations `prompt<delimiter> target` from `pool`, same template, not `exclude`."""
    out = []
    rng = random.Random(f"{seed}:demos:{record.task}:{exclude}")
    for j in rng.sample(range(len(pool)), len(pool)) if len(pool) < 64 else _sample(rng, pool):
        row_id, row = pool[j]
        if row_id == exclude:
            continue
        try:
            prompt, target, _ = render(template, row, f"{seed}:{row_id}:{template.id}")
        except TemplateError:
            continue
        out.append(common.with_delimiter(prompt, seed, record.task, row_id) + " " + target)
        if len(out) == k:
            break
    return out


def _retriever(record, template, pool, seed) -> tuple[retrieval.Retriever, list[str]]:
    """BM25 over the prompts `template` renders for the `pool` rows it applies to, and each
    one's demonstration text `prompt<delimiter> target`."""
    texts, keys, shown = [], [], []
    for row_id, row in pool:
        try:
            prompt, target, _ = render(template, row, f"{seed}:{row_id}:{template.id}")
        except TemplateError:
            continue
        texts.append(prompt)
        keys.append(row_id)
        shown.append(common.with_delimiter(prompt, seed, record.task, row_id) + " " + target)
    return retrieval.Retriever(texts, keys), shown


def _example(record, template, row_id, row, seed, example_id, demos=()) -> common.Example:
    prompt, target, choices = render(template, row, f"{seed}:{row_id}:{template.id}")
    return common.make_example(
        record.task, example_id, DEMO_SEPARATOR.join([*demos, prompt]), target, seed=seed,
        options=choices if record.answer_type == "rank" else (),
    )  # fmt: skip


def _examples(
    record, split: str, num_demos: int, seed: int, demos: str = retrieval.MODES[0]
) -> tuple[common.Example, ...]:
    retrieval.check_mode(demos)
    return _cached_examples(record, split, num_demos, seed, demos, paths.data_dir())


@functools.lru_cache(maxsize=32)
def _cached_examples(record, split, num_demos, seed, demos, root) -> tuple[common.Example, ...]:
    del root  # the cache key: examples of one data directory
    templates = load_templates(record.source_id)
    if not templates:
        raise common.SourceDataError(f"PromptSource {record.source_id}: no original-task template")
    if split == "train":
        out = []
        for row_id, row in _rows(record, "train"):
            for j in _order(seed, len(templates), "template", record.task, row_id):
                try:
                    out.append(_example(record, templates[j], row_id, row, seed, row_id))
                    break
                except TemplateError:
                    continue
        return tuple(out)
    if split not in ("validation", "test"):
        raise ValueError(f"{record.name}: unknown split {split!r}; one of {common.SPLITS}")
    rows = _rows(record, "test")
    checks = check_templates(record, "test")
    for name, reason in checks.items():
        if reason:
            log.info("PromptSource %s: template %r dropped in evaluation: %s", record.source_id,
                     name, reason)  # fmt: skip
    kept = [t for t in templates if checks[t.name] is None]
    demo_pool = _rows(record, "train") if record.role != "supervised" else []
    demo_pool = demo_pool or rows
    retrieved = num_demos and demos == retrieval.RETRIEVED
    retrievers = {t.name: _retriever(record, t, _rows(record, "train"), seed)
                  for t in kept} if retrieved else {}  # fmt: skip
    out = []
    for row_id, row in rows:
        for t in kept:
            shown = ()
            if retrieved:  # training rows only (never held-out ones), never this row
                bm25, texts = retrievers[t.name]
                query = render(t, row, f"{seed}:{row_id}:{t.id}")[0]
                shown = [texts[i] for i in bm25.top(query, num_demos, exclude=row_id)]
            elif num_demos:
                shown = _demos(record, t, demo_pool, row_id, num_demos, seed)
            example_id = f"{row_id}{common.TEMPLATE_SEPARATOR}{t.name}"
            out.append(_example(record, t, row_id, row, seed, example_id, shown))
    if split == "validation":
        chosen = sorted(
            _order(seed, len(out), "validation", record.task)[: common.VALIDATION_LIMIT]
        )
        out = [out[j] for j in chosen]
    return tuple(out)


def examples(
    record: catalog.TaskRecord,
    split: str,
    *,
    num_demos: int = 0,
    seed: int = 0,
    demos: str = retrieval.MODES[0],
) -> list[common.Example]:
    """Rendered examples of one split (module docstring), in pure Python (loader protocol);
    `demos="retrieved"`: evaluation prompts show the training rows BM25 ranks first for the row's
    prompt (`retrieval`) instead of seeded ones."""
    return list(_examples(record, split, num_demos, seed, demos))


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    """Exact examples of one split; SourceDataError (an OSError) when the data is absent."""
    return len(_examples(record, split, 0, 0))


def make_source(
    record: catalog.TaskRecord, *, num_demos: int = 0, seed: int = 0, demos: str = "random"
):
    """A lazy seqio source (loader protocol): nothing is read until a dataset is built."""
    return common.function_source(
        record.source_id, lambda split: _examples(record, split, num_demos, seed, demos)
    )
