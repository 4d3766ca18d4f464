"""What every source loader shares: the rendered `Example`, seeded picks, the answer delimiter,
instance splits, and the lazy seqio source over a list of examples.

Every source yields the same fields, so mixtures and evaluation treat all benchmarks alike:

    {"id": "val-3", "task": "super_glue/rte", "inputs": "<prompt>\\nAnswer:",
     "targets": " Yes", "references": ["Yes"], "options": ["Yes", "No"], "label": 0}

`options` is empty and `label` is -1 for generation tasks; `targets` starts with a space
(metaseq joins `src.rstrip() + " " + tgt`).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optiml.bench import catalog, levels
from optiml.bench.sources import retrieval

SPLITS = ("train", "validation", "test")
PROMPT_SEED = 0  # seeds every per-example choice in prompts (delimiter, reference) that training,
# the registry's tasks and the inspection tool render with
VALIDATION_LIMIT = 250  # paper §4.1: at most 250 examples per task in validation
_PYTHON_EXAMPLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # source -> examples_fn
_TEMPLATE_DRAWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # source -> TemplateDraw
# paper §2.4 (tasks/prompt_formats.json; the paper prints the last one as "\output:", read as
# "\noutput:"): one is picked per example
DELIMITERS: tuple[str, ...] = tuple(catalog.prompt_formats()["delimiters"]["values"])
TEMPLATE_SEPARATOR = "|"  # an evaluation example id `<row id>|<template name>` (PromptSource, FLAN)
# between demonstrations, and before the example, for instance-level benchmarks (FLAN, UnifiedSKG)
DEMO_SEPARATOR: str = catalog.prompt_formats()["demo_separator"]["value"]


class SourceDataError(OSError):
    """A task's local data is missing or malformed; the message names the task and the file."""


@dataclass(frozen=True)
class Example:
    """One rendered example. `targets` starts with a space; `options`/`label` for rank tasks.
    `instruction`: the task-level instruction `inputs` starts with (NIV2, CoT: demonstrations go
    after it, paper §2.4, §4.8), "" for instance-level prompts (FLAN, PromptSource, ...)."""

    id: str
    inputs: str
    targets: str
    references: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    label: int = -1
    instruction: str = ""


def pick(seed: int, n: int, *parts: object) -> int:
    """A deterministic choice in [0, n) from the seed and any identifying parts."""
    if n <= 0:
        raise ValueError("pick from an empty set")
    key = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") % n


def delimited(prompt: str, delimiter: str) -> str:
    """Paper §2.4: `prompt` + `delimiter`, unless the prompt already ends with ":"."""
    prompt = prompt.rstrip()
    return prompt if prompt.endswith(":") else prompt + delimiter


def pick_delimiter(seed: int, task: str, example_id: str) -> str:
    """One of the answer delimiters, picked per example (paper §2.4)."""
    return DELIMITERS[pick(seed, len(DELIMITERS), "delimiter", task, example_id)]


def with_delimiter(prompt: str, seed: int, task: str, example_id: str) -> str:
    """`prompt` + the delimiter picked for the example, unless it ends with ":"."""
    return delimited(prompt, pick_delimiter(seed, task, example_id))


def variant_options(loader: Any, variant: str | None) -> dict[str, Any]:
    """The `make_source`/`examples` keyword arguments of a task variant: `2shot` ->
    {"num_demos": 2}; a loader's format variants (`FORMAT_VARIANTS`, NIV2's `tk`) combine with
    them: `tk_2shot` -> {"fmt": "tk_instruct", "num_demos": 2}. KeyError for an unknown one."""
    if variant is None:
        return {"num_demos": 0}
    shots = getattr(loader, "VARIANTS", {})
    formats = getattr(loader, "FORMAT_VARIANTS", {})
    head, _, tail = variant.partition("_")
    if variant in shots:
        return {"num_demos": shots[variant]}
    if head in formats and (not tail or tail in shots):
        return {**formats[head], "num_demos": shots[tail] if tail else 0}
    raise KeyError(f"no variant {variant!r} (shots {list(shots)}, formats {list(formats)})")


def variants(loader: Any) -> list[str]:
    """Every variant name a loader offers: its shot variants, each format variant alone and
    combined with every shot variant (`tk`, `tk_2shot`, ...)."""
    shots = list(getattr(loader, "VARIANTS", {}))
    formats = list(getattr(loader, "FORMAT_VARIANTS", {}))
    return shots + formats + [f"{f}_{s}" for f in formats for s in shots]


def template_of(example_id: str) -> str | None:
    """The template named in an example id (`"3|GPT-3 style"` -> "GPT-3 style"), else None."""
    _, sep, template = example_id.partition(TEMPLATE_SEPARATOR)
    return template if sep else None


def demonstrations(pool: Sequence, k: int, seed: int, task: str, example_id: str) -> list:
    """`k` rows of `pool` (the task's own training rows, never the evaluated one, which the
    caller has left out) in a seeded rotation per example; fewer if the pool is smaller."""
    if k <= 0 or not pool:
        return []
    start = pick(seed, len(pool), "demos", task, example_id)
    return (list(pool[start:]) + list(pool[:start]))[:k]


def make_example(
    task: str,
    example_id: str,
    prompt: str,
    answer: str,
    *,
    seed: int,
    references: Sequence[str] | None = None,
    options: Sequence[str] = (),
    delimiter: bool = True,
) -> Example:
    """An `Example` from a prompt and its answer text (a rank task: `answer` is one of
    `options`)."""
    answer = answer.strip()
    label = -1
    if options:
        options = tuple(o.strip() for o in options)
        if answer not in options:
            raise ValueError(f"{task} example {example_id}: answer {answer!r} not in {options}")
        label = options.index(answer)
    inputs = with_delimiter(prompt, seed, task, example_id) if delimiter else prompt
    refs = tuple(r.strip() for r in references) if references else (answer,)
    return Example(example_id, inputs, " " + answer, refs, tuple(options), label)


def split_rows(
    record: catalog.TaskRecord, split: str, rows: dict[str, list], *, key: Callable = None
) -> list:
    """The raw rows of one of our splits from the source's own splits `rows` ({"train": [...],
    "validation": [...], "test": [...]}, labelled rows only; any may be absent).

    - test: the source's validation rows, else its labelled test rows (paper §2.3: a fully
      supervised task is evaluated on the validation/test sets of the original release); a task
      that is never trained on (dev/test/eval_only roles) falls back to its train rows; a
      `supervised` task whose source has no evaluation rows holds out 10% of its train rows
      (`levels.heldout_instance` of `key(i, row)`).
    - train: the source's train rows, without those held-out ones.
    - validation: the first 250 of test's rows.
    """
    key = key or (lambda i, row: str(i))
    train = rows.get("train") or []
    evaluation = rows.get("validation") or rows.get("test") or []
    hold_out = record.role == "supervised" and not evaluation

    def heldout(i, row):
        return levels.heldout_instance(record.task, key(i, row))

    if split == "train":  # levels.py keeps evaluation tasks out of training mixtures
        return [r for i, r in enumerate(train) if not (hold_out and heldout(i, r))]
    if split not in ("validation", "test"):
        raise ValueError(f"{record.name}: unknown split {split!r}; one of {SPLITS}")
    if hold_out:
        pool = [r for i, r in enumerate(train) if heldout(i, r)]
    else:
        pool = evaluation
        if not pool and record.role in ("dev", "test", "eval_only"):
            pool = train
    return list(pool[:VALIDATION_LIMIT]) if split == "validation" else list(pool)


def function_source(task: str, examples_fn: Callable[[str], Sequence[Example]]):
    """A lazy `seqio.FunctionDataSource`: `examples_fn(split)` runs only when a dataset is built.
    The source remembers `examples_fn` (`python_examples`): preparation renders through it
    directly, without tf.data."""
    import seqio

    def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None):
        del shuffle_files, seed  # order is the loader's; shuffling is seqio's
        rows = [
            {
                "id": e.id,
                "task": task,
                "inputs": e.inputs,
                "targets": e.targets,
                "references": list(e.references) or [e.targets.strip()],
                "options": list(e.options),
                "label": e.label,
            }
            for e in examples_fn(split)
        ]
        return in_memory_dataset(rows, {**TEXT_FIELDS, "options": [str], "label": int})

    source = seqio.FunctionDataSource(dataset_fn, splits=SPLITS)
    _PYTHON_EXAMPLES[source] = examples_fn
    return source


def python_examples(source: Any) -> Callable[[str], Sequence[Example]] | None:
    """`examples_fn(split)` of a source made by `function_source` (the examples its dataset
    yields, in order), or None for any other source."""
    try:
        return _PYTHON_EXAMPLES.get(source)
    except TypeError:  # not weak-referenceable: not ours
        return None


@dataclass(frozen=True)
class TemplateDraw:
    """How a source that draws one template per row (FLAN) renders with fewer templates:
    `names()` its templates' names; `among(names)` the same source drawing each row's template
    among `names` only (a single name: every row rendered with that template)."""

    names: Callable[[], tuple[str, ...]]
    among: Callable[[Sequence[str]], Any]


def drawing_templates(source: Any, draw: TemplateDraw) -> Any:
    """`source`, remembered as drawing its templates as `draw` says (`template_draw`)."""
    _TEMPLATE_DRAWS[source] = draw
    return source


def template_draw(source: Any) -> TemplateDraw | None:
    """The `TemplateDraw` of a source that draws one template per row, else None (PromptSource
    renders every template on evaluation splits: its examples are filtered instead)."""
    try:
        return _TEMPLATE_DRAWS.get(source)
    except TypeError:  # not weak-referenceable: not ours
        return None


# A source row: scalar strings and the reference answers (a list of strings).
TEXT_FIELDS = {"id": str, "task": str, "inputs": str, "targets": str, "references": [str]}


def in_memory_dataset(rows: Sequence[dict[str, Any]], fields: dict[str, Any]) -> Any:
    """A tf.data.Dataset of `rows`, whose `fields` are `str`, `int` (int32) or `[str]` (a
    variable-length list), sliced from tensors. Not `Dataset.from_generator`: TensorFlow
    finalizes a generator's iterator with `KeyError: np.int64(5)` and a traceback when a
    pipeline is torn down before that iterator's first element, e.g. a mixture's repeated tasks
    after the first batch."""
    import tensorflow as tf

    dtypes = {str: tf.string, int: tf.int32}
    columns = {}
    for name, kind in fields.items():
        values = [row[name] for row in rows]
        if isinstance(kind, list):  # ragged [rows, None] -> each row a [None] tensor
            flat = [item for value in values for item in value]
            columns[name] = tf.RaggedTensor.from_row_lengths(
                tf.constant(flat, dtypes[kind[0]], shape=[len(flat)]),
                tf.constant([len(value) for value in values], tf.int64),
            )
        else:
            columns[name] = tf.constant(values, dtypes[kind], shape=[len(values)])
    # map: the ragged rows' RaggedTensorSpec([None], ragged_rank=0) becomes TensorSpec([None])
    return tf.data.Dataset.from_tensor_slices(columns).map(lambda row: row)


def lazy_source(examples_fn: Callable[..., Sequence[Example]]) -> Callable[..., Any]:
    """The loader protocol's `make_source(record, *, num_demos=0, seed=0, **options)` for a
    loader whose `examples(record, split, *, num_demos, seed, **options)` is given: nothing is
    read until a dataset is built (`make_source = common.lazy_source(examples)`)."""

    def make_source(record: catalog.TaskRecord, *, num_demos: int = 0, seed: int = 0, **options):
        return function_source(
            record.source_id,
            lambda split: examples_fn(record, split, num_demos=num_demos, seed=seed, **options),
        )

    return make_source


Rows = dict[str, list[tuple[str, tuple[str, ...]]]]  # source split -> [(input, outputs)]


def keyword_loader(
    load_rows: Callable[[str], Rows],
    instruction: Callable[[catalog.TaskRecord], str],
    *,
    rank_over_label_set: bool = False,
) -> tuple[Callable[..., list[Example]], Callable[..., int], Callable[..., Any]]:
    """The loader protocol (`examples`, `count_examples`, `make_source`) of a keyword-style source
    (CrossFit, ExMix, UnifiedSKG), in a loader module:

        examples, count_examples, make_source = common.keyword_loader(load_rows, instruction)

    `load_rows(source_id)` gives the task's (input, outputs) rows per source split (see
    `split_rows`). An example is `instruction(record)\\n\\n<input>` + a delimiter -> one of the
    outputs (picked per example), all outputs kept as references. With `rank_over_label_set`, a
    `rank` task's options are its label set (every output in its files), its answer the first.
    `num_demos` training rows (never the evaluated one) come first, each answered with its first
    output (instance-level instructions: demonstrations before the example, paper §2.4); seeded
    ones, or with `demos="retrieved"` those whose inputs BM25 ranks first for the example's
    (`retrieval`)."""

    def ask(record: catalog.TaskRecord, text: str, delimiter: str) -> str:
        return delimited(f"{instruction(record)}\n\n{text.strip()}", delimiter)

    def examples(
        record: catalog.TaskRecord,
        split: str,
        *,
        num_demos: int = 0,
        seed: int = 0,
        demos: str = retrieval.MODES[0],
    ) -> list[Example]:
        retrieval.check_mode(demos)
        rows = load_rows(record.source_id)
        label_set = ()
        if rank_over_label_set and record.answer_type == "rank":
            label_set = sorted({o for pairs in rows.values() for _, outs in pairs for o in outs})
        chosen = split_rows(record, split, rows)
        pool = [] if not num_demos else chosen if split == "train" else split_rows(
            record, "train", rows
        )  # fmt: skip
        # the evaluated rows are the pool in training, and where an evaluation task without
        # evaluation rows is tested on its train rows (split_rows)
        same = split == "train" or pool == chosen
        bm25 = None
        if num_demos and demos == retrieval.RETRIEVED:
            bm25 = retrieval.Retriever([x for x, _ in pool], [str(j) for j in range(len(pool))])
        out = []
        for i, (text, outputs) in enumerate(chosen):
            if label_set:
                answer, refs = outputs[0], None
            else:
                answer, refs = outputs[pick(seed, len(outputs), "output", record.task, i)], outputs
            delimiter = pick_delimiter(seed, record.task, str(i))
            if bm25:  # the training rows BM25 ranks first, never the example itself
                shown = [pool[j] for j in bm25.top(text, num_demos, str(i) if same else None)]
            else:
                others = [d for j, d in enumerate(pool) if not (same and j == i)]  # not this one
                shown = demonstrations(others, num_demos, seed, record.task, str(i))
            shown = [f"{ask(record, x, delimiter)} {outs[0].strip()}" for x, outs in shown]
            shown.append(ask(record, text, delimiter))
            out.append(
                make_example(
                    record.task,
                    str(i),
                    DEMO_SEPARATOR.join(shown),
                    answer,
                    seed=seed,
                    references=refs,
                    options=label_set,
                    delimiter=False,
                )  # fmt: skip
            )
        return out

    def count_examples(record: catalog.TaskRecord, split: str) -> int:
        return len(split_rows(record, split, load_rows(record.source_id)))

    return examples, count_examples, lazy_source(examples)


def keyword_shots(load_rows: Callable[[str], Rows]) -> Callable[..., int]:
    """The loader protocol's `reachable_shots(record, split, k)` of a keyword-style source: its
    demonstrations are the task's training rows (less the evaluated one on `train`)."""

    def reachable_shots(record: catalog.TaskRecord, split: str, k: int, demos: str = "") -> int:
        del demos  # retrieved or seeded: the same pool
        train = split_rows(record, "train", load_rows(record.source_id))
        return min(k, len(train) - (split == "train"))

    return reachable_shots
