"""What the registry holds, as plain data: tasks, benchmarks, categories, mixture rates, the
examples a task renders (tokenized, with their model features) and the training stream's order.

The functions return lists of dicts (JSON-ready) for `python -m optiml.tools.inspect` and the
notebooks/explore_mixtures.ipynb notebook:

    task_rows(benchmark="niv2", level="fully_heldout", split="test")   # catalog + local counts
    mixture_summary("train", steps=4000, batch=128)    # rates per benchmark/task, epochs, absent
    example_rows("niv2:task1557_jfleg_answer_generation#2shot", "test", n=1)[0]["features"]
    export_examples("train", n=100, seed=0)             # the training stream's first examples

Everything is TF-free except tokenizing (`example_rows`, `export_examples(tokens=True)`), which
uses the OPT vocabulary (seqio, TensorFlow: ~10 s to import).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np

from optiml.bench import catalog, flan2022, levels, mixing, names
from optiml.bench.sources import common
from optiml.bench.sources.common import PROMPT_SEED
from optiml.pipeline import features, stream

LEVELS = tuple(f for f in levels.Levels.__dataclass_fields__ if f != "left_out")


# -- names -------------------------------------------------------------------------------------
def full_task_name(name: str) -> str:
    """`niv2:task001_x` or `optiml:niv2:task001_x[#2shot]` -> the seqio task name."""
    full = name if name.startswith(names.TASK_PREFIX + ":") else f"{names.TASK_PREFIX}:{name}"
    names.parse_task_name(full)  # ValueError naming the input if malformed
    return full


def full_mixture_name(name: str) -> str:
    """`train` or `optiml_mix:train` -> `optiml_mix:train` (KeyError if not defined)."""
    full = name if ":" in name else names.mixture_name(name)
    if full not in mixing.MIXTURES:
        raise KeyError(f"unknown mixture {name!r}; defined: {', '.join(sorted(mixing.MIXTURES))}")
    return full


# -- tasks, benchmarks, categories -------------------------------------------------------------
def task_rows(
    benchmark: str | None = None,
    category: str | None = None,
    role: str | None = None,
    level: str | None = None,
    split: str | None = None,
    present: bool = False,
) -> list[dict]:
    """Catalog tasks as dicts (name, benchmark, task, category, role, answer_type, metric,
    template, dataset, languages), filtered; with `split` also `examples` (exact local count,
    None if absent) and `reason` (why absent). `present` keeps tasks with examples only."""
    records = catalog.tasks(benchmark)
    if category is not None:
        if category not in catalog.categories():
            raise KeyError(f"unknown category {category!r} (tasks/categories.tsv)")
        records = [r for r in records if r.category == category]
    if role is not None:
        if role not in catalog.ROLES:
            raise KeyError(f"unknown role {role!r}; roles: {', '.join(catalog.ROLES)}")
        records = [r for r in records if r.role == role]
    if level is not None:
        if level not in LEVELS:
            raise KeyError(f"unknown level {level!r}; levels: {', '.join(LEVELS)}")
        members = {r.name for r in getattr(levels.build_levels(), level)}
        records = [r for r in records if r.name in members]
    rows = []
    for r in records:
        row = asdict(r)
        row["languages"] = list(r.languages)
        if split is not None or present:
            n = mixing.count_examples(r, split or "train")
            row["examples"], row["reason"] = (None, n) if isinstance(n, str) else (n, None)
            if present and not row["examples"]:
                continue
        rows.append(row)
    return rows


def benchmark_rows(count: bool = False) -> list[dict]:
    """One dict per declared benchmark: its benchmarks.tsv fields, `catalog_tasks` and
    `has_loader` (its loader module exists yet); with `count`, the local data too (exact counts):
    `tasks_here` (tasks with an example), `categories` (of the catalog tasks), `categories_here`,
    `train_examples`, `test_examples` (the `test` split: what evaluation reads)."""
    rows = []
    for key, b in catalog.benchmarks().items():
        records = catalog.tasks(key)
        row = {**asdict(b), "catalog_tasks": len(records)}
        row["has_loader"] = catalog.loader(key) is not None
        if count:
            sizes = {r.name: [_examples(r, s) for s in ("train", "test")] for r in records}
            here = [r for r in records if any(sizes[r.name])]
            row.update(tasks_here=len(here), categories=len({r.category for r in records}))
            row.update(categories_here=len({r.category for r in here}))
            row["train_examples"] = sum(n for n, _ in sizes.values())
            row["test_examples"] = sum(n for _, n in sizes.values())
        rows.append(row)
    return rows


def _examples(record: catalog.TaskRecord, split: str) -> int:
    n = mixing.count_examples(record, split)
    return 0 if isinstance(n, str) else n


def category_rows() -> list[dict]:
    """One dict per taxonomy category: its catalog task count per benchmark."""
    counts: dict[str, Counter] = {c: Counter() for c in catalog.categories()}
    for r in catalog.tasks():
        counts[r.category][r.benchmark] += 1
    niv2 = set(catalog.niv2_categories())
    return [
        {
            "category": c,
            "origin": "niv2" if c in niv2 else "added",
            "tasks": sum(n.values()),
            "benchmarks": dict(n),
        }
        for c, n in counts.items()
    ]


# -- mixtures ----------------------------------------------------------------------------------
def mixture_summary(
    mixture: str, steps: int | None = None, batch: int = 256, examples_per_row: float = 1.0
) -> dict:
    """Effective rates of a mixture (from `mixing.mixture_rates`) per benchmark and task, with
    `drawn` = rate * steps * batch * examples_per_row and `epochs` = drawn / examples when
    `steps` is given, and the absent tasks with their reasons."""
    mixture = full_mixture_name(mixture)
    spec = mixing.MIXTURES[mixture]
    rates = mixing.mixture_rates(mixture)
    drawn = steps * batch * examples_per_row if steps else None
    recipe = spec.recipe
    nominal = {}  # the recipe's shares if every benchmark were present: one task each
    if recipe is not None:
        everything = {**recipe.proportions, **recipe.extra_shares}
        _, nominal, _ = mixing.compute_rates({b: (b, 1) for b in everything}, recipe)

    def with_drawn(row: dict, rate: float, n: int) -> dict:
        if drawn:
            row["drawn"], row["epochs"] = rate * drawn, rate * drawn / n
        return row

    tasks = []
    for name, rate in sorted(rates.rates, key=lambda x: (-x[1], x[0])):
        bench, n = names.parse_task_name(name).benchmark, rates.counts[name]
        row = {"task": name, "benchmark": bench, "examples": n, "rate": rate}
        tasks.append(with_drawn(row, rate, n))
    benchmarks = []
    for bench, share in sorted(rates.benchmark_rates.items(), key=lambda x: -x[1]):
        members = [t for t in tasks if t["benchmark"] == bench]
        n = sum(t["examples"] for t in members)
        row = {"benchmark": bench, "share": share, "recipe_share": nominal.get(bench)}
        row.update(tasks=len(members), examples=n)
        benchmarks.append(with_drawn(row, share, n))
    return {
        "mixture": mixture,
        "level": spec.level,
        "split": spec.split,
        "recipe": None if recipe is None else asdict(recipe),
        "steps": steps,
        "batch": batch,
        "examples_per_row": examples_per_row,
        "drawn": drawn,
        "benchmarks": benchmarks,
        "tasks": tasks,
        "missing": [{"task": t, "reason": rates.reasons[t]} for t in rates.missing],
        "missing_benchmarks": list(rates.missing_benchmarks),
        "styles": style_shares(spec, rates.benchmark_rates),
    }


def style_shares(spec: mixing.MixtureSpec, benchmark_rates: dict[str, float]) -> list[dict]:
    """The prompt styles of a styled mixture (`MixtureSpec.prompt_styles`, e.g. Flan 2022's):
    per benchmark and style its share of the benchmark and of the mixture, then each style over
    the whole mixture (benchmark `all`); [] for a mixture without styles."""
    if not spec.prompt_styles:
        return []
    rows, total = [], {}
    for bench, share in sorted(benchmark_rates.items(), key=lambda x: -x[1]):
        for style, part in (flan2022.style_shares(bench) or {"plain": 1.0}).items():
            rows.append({"benchmark": bench, "style": style, "of_benchmark": part,
                         "share": share * part})  # fmt: skip
            total[style] = total.get(style, 0.0) + share * part
    rows += [{"benchmark": "all", "style": style, "of_benchmark": None, "share": share}
             for style, share in sorted(total.items(), key=lambda x: -x[1])]  # fmt: skip
    return rows


def stream_order(
    rates: Sequence[tuple[str, float]], counts: dict[str, int], seed: int, n: int
) -> list[tuple[str, int]]:
    """The first `n` (task, example index) that `MixtureStream(cache, rates, seed=seed)` draws
    (before packing) when every task is in its cache with `counts[task]` examples: the stream's
    own `stream.Sampler`, over the tasks with a positive rate."""
    tasks = [(t, r) for t, r in rates if r > 0]
    sampler = stream.Sampler(
        [t for t, _ in tasks], [r for _, r in tasks], [counts[t] for t, _ in tasks], seed
    )
    return [(tasks[t][0], index) for t, index in (sampler.draw() for _ in range(n))]


def export_examples(
    mixture: str, n: int, seed: int = 0, tokens: bool = False, prompt_seed: int = PROMPT_SEED
) -> Iterator[dict]:
    """The first `n` examples the training stream draws from `mixture` (see `stream_order`),
    rendered by their loader: dicts with k, task, example_index, id, inputs, targets,
    references, options, label (+ prompt_ids/target_ids with `tokens`)."""
    mixture = full_mixture_name(mixture)
    split = mixing.MIXTURES[mixture].split
    rates = mixing.mixture_rates(mixture)
    rendered: dict[str, list] = {}
    vocab = vocabulary() if tokens else None
    for k, (name, index) in enumerate(stream_order(rates.rates, rates.counts, seed, n)):
        if name not in rendered:
            rendered[name] = _render(name, split, prompt_seed)
        if len(rendered[name]) != rates.counts[name]:
            raise ValueError(
                f"{name}: {len(rendered[name])} examples, counted {rates.counts[name]}"
            )
        ex = rendered[name][index]
        row = {"k": k, "task": name, "split": split, "example_index": index, **_fields(ex)}
        if vocab is not None:
            row["prompt_ids"], row["target_ids"] = _tokenize(vocab, ex.inputs, ex.targets)
        yield row


# -- examples ----------------------------------------------------------------------------------
def vocabulary():
    """The shared OPT vocabulary (imports seqio and TensorFlow on first call)."""
    from optiml.pipeline import vocab

    return vocab.opt_vocabulary()


def _render(name: str, split: str, prompt_seed: int) -> list:
    parsed = names.parse_task_name(name)
    record = catalog.task(name)
    loader = catalog.loader(record.benchmark)
    if loader is None:
        raise ValueError(f"task {name}: benchmark {record.benchmark!r} has no loader module yet")
    try:
        options = common.variant_options(loader, parsed.variant)
    except KeyError as err:
        examples_fn = _registered_examples(name) if prompt_seed == PROMPT_SEED else None
        if examples_fn is None:  # a MetaICL or prompt-styled twin: its registered source
            raise KeyError(f"task {name}: {err.args[0]}") from None
        return list(examples_fn(split))
    return loader.examples(record, split, seed=prompt_seed, **options)


def _registered_examples(name: str):
    import seqio

    import optiml.registry  # noqa: F401  (registers the twins of the registry's mixtures)

    if name not in seqio.TaskRegistry.names():
        return None
    return common.python_examples(seqio.get_mixture_or_task(name).source)


def _fields(ex) -> dict:
    return {
        "id": ex.id,
        "inputs": ex.inputs,
        "targets": ex.targets,
        "references": list(getattr(ex, "references", ())),
        "options": list(getattr(ex, "options", ())),
        "label": getattr(ex, "label", -1),
    }


def _tokenize(vocab, inputs: str, targets: str) -> tuple[list[int], list[int]]:
    """seqio's `tokenize` + `append_eos_after_trim` for OPT: prompt ids, target ids + EOS 2."""
    prompt, target = vocab.encode_batch([inputs, targets])
    return prompt, target + [vocab.eos_id]


def example_rows(
    task: str,
    split: str = "train",
    n: int = 3,
    start: int = 0,
    length: int = features.DEFAULT_LENGTH,
    prompt_seed: int = PROMPT_SEED,
) -> list[dict]:
    """Examples `start..start+n-1` of a task's split, rendered and tokenized as training does,
    with the model features of each example alone in a row of its own length (cut to `length`):
    e.g. `features["decoder_loss_weights"]` = [0]*len(prompt) + [1]*len(target incl. EOS)."""
    name = full_task_name(task)
    record = catalog.task(name)
    examples = _render(name, split, prompt_seed)
    if not 0 <= start < len(examples):
        raise IndexError(f"task {name} ({split}): start {start} not in [0, {len(examples)})")
    vocab = vocabulary()
    rows = []
    for i, ex in enumerate(examples[start : start + n], start=start):
        prompt, target = _tokenize(vocab, ex.inputs, ex.targets)
        cut_prompt, cut_target = features.truncate(np.array(prompt), np.array(target), length)
        size = len(cut_prompt) + len(cut_target)
        row = features.pack_rows([[(cut_prompt, cut_target)]], length=size)
        info = {"task": name, "split": split, "index": i, "of": len(examples), **_fields(ex)}
        info.update(template=record.template, category=record.category)
        info.update(answer_type=record.answer_type, metric=record.metric)
        info.update(prompt_ids=prompt, target_ids=target)
        info["cut_prompt_tokens"] = len(prompt) - len(cut_prompt)
        info["cut_target_tokens"] = len(target) - len(cut_target)
        info["features"] = {k: v[0].tolist() for k, v in row.items()}
        rows.append(info)
    return rows
