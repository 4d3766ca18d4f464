"""`import optiml.registry` registers every OPT-IML Bench task and mixture with seqio.

Reads no benchmark data: tasks get lazy `FunctionDataSource`s, mixtures get callable rates that
count the local data on first use. Then, with $OPTIML_DATA_DIR set:

    import seqio, optiml.registry
    ds = seqio.get_mixture_or_task("optiml:niv2:task1557_jfleg_answer_generation").get_dataset(
        {"inputs": 1024, "targets": 256}, split="test", shuffle=False)
    ds = seqio.get_mixture_or_task("optiml_mix:train").get_dataset(..., split="train")

Tasks: `optiml:<benchmark>:<task>` for every catalog task whose benchmark has a loader module
(benchmarks.tsv `loader`), plus `#2shot` / `#5shot` variants where the loader offers them and
NIV2's Tk-Instruct format variants `#tk`, `#tk_2shot`, `#tk_5shot`.
Features: `inputs` (prompt ids, no EOS) and `targets` (ids + EOS 2), OPT vocabulary, with
`inputs_pretokenized` / `targets_pretokenized` and the loader's extra fields (`id`, `task`,
`references`). Loader modules: see `optiml.bench.catalog.loader`.

Mixtures (`optiml_mix:<name>`, see `optiml.bench.mixing.DEFAULT_MIXTURES`): tasks whose data is
absent locally are left out of the mixture and listed by `optiml.bench.mixing.mixture_rates(name)`.
"""

from __future__ import annotations

import hashlib
import logging

import seqio

from optiml.bench import catalog, flan2022, levels, metaicl, mixing, names
from optiml.bench.sources import common
from optiml.pipeline import vocab as vocab_lib

log = logging.getLogger(__name__)


def output_features(vocabulary: seqio.Vocabulary | None = None) -> dict[str, seqio.Feature]:
    """OPT features: `inputs` without EOS, `targets` with EOS (2)."""
    vocabulary = vocabulary or vocab_lib.opt_vocabulary()
    return {
        "inputs": seqio.Feature(vocabulary, add_eos=False, required=False, dtype="int32"),
        "targets": seqio.Feature(vocabulary, add_eos=True, dtype="int32"),
    }


PREPROCESSORS = (
    seqio.preprocessors.tokenize,  # keeps inputs_pretokenized / targets_pretokenized
    seqio.preprocessors.append_eos_after_trim,
)


class AvailableMixture(seqio.Mixture):
    """A seqio.Mixture that only uses the tasks present locally (absent ones: rate 0, listed by
    `mixing.mixture_rates`). Rates are resolved on first use, never at registration."""

    def __init__(self, *args, **kwargs):
        self._resolved = False  # seqio.Mixture.__init__ reads `tasks`: no data then
        super().__init__(*args, **kwargs)
        self._resolved = True

    @property
    def tasks(self):
        if not self._resolved:
            return super().tasks
        present = {n for n, _ in mixing.mixture_rates(self.name).rates}
        return [t for t in super().tasks if t.name in present]


def register_task(record: catalog.TaskRecord, loader, variant: str | None = None) -> str:
    """Register one catalog task (optionally a variant: `2shot`, NIV2's `tk_2shot`, ...) with
    seqio; returns its name."""
    options = common.variant_options(loader, variant)
    name = names.task_name(record.benchmark, record.task, variant)
    return _add_task(name, loader.make_source(record, seed=common.PROMPT_SEED, **options))


def _add_task(name: str, source: seqio.DataSource) -> str:
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=list(PREPROCESSORS),
        output_features=output_features(),
        metric_fns=[],
    )
    return name


def register_metaicl_task(record: catalog.TaskRecord, loader, config: metaicl.MetaICLConfig) -> str:
    """Register the MetaICL twin of a task (`optiml:<benchmark>:<task>#metaicl_<hash>`, paper
    §4.8): its `train` split carries demonstrations (`optiml.bench.metaicl`), the other splits
    are the task's 0-shot examples. Nothing is read until a dataset is built."""
    count_tokens = _token_counter() if config.max_tokens is not None else None

    def examples_fn(split: str) -> list[common.Example]:
        shown = loader.examples(record, split, num_demos=0, seed=common.PROMPT_SEED)
        if split != "train":
            return shown
        return metaicl.metaicl_examples(record.name, shown, shown, config, count_tokens)

    name = names.task_name(record.benchmark, record.task, config.variant)
    return _add_task(name, common.function_source(record.source_id, examples_fn))


def register_separator_task(record: catalog.TaskRecord, loader, k: int, separator: str) -> str:
    """Register a k-shot evaluation twin of a task whose demonstrations are joined by
    `separator` in the MetaICL format (`metaicl.with_demonstrations`; paper §4.8, Table 20):
    `optiml:<benchmark>:<task>#sep<8 hex of the separator>_<k>shot`."""

    def examples_fn(split: str) -> list[common.Example]:
        shown = loader.examples(record, split, num_demos=0, seed=common.PROMPT_SEED)
        pool = shown if split == "train" else loader.examples(
            record, "train", num_demos=0, seed=common.PROMPT_SEED
        )  # fmt: skip
        return metaicl.with_demonstrations(record.name, shown, pool, k, separator)

    digest = hashlib.sha256(separator.encode()).hexdigest()[:8]
    name = names.task_name(record.benchmark, record.task, f"sep{digest}_{k}shot")
    return _add_task(name, common.function_source(record.source_id, examples_fn))


def _token_counter():
    vocabulary = vocab_lib.opt_vocabulary()
    return lambda text: len(vocabulary.encode(text))


def register_styled_task(record: catalog.TaskRecord, loader, styles: str) -> str:
    """Register the prompt-styled twin of a task (`optiml:<benchmark>:<task>#flan2022`): its
    `train` examples in the Flan 2022 style drawn for each (`optiml.bench.flan2022`); the other
    splits are the task's 0-shot examples (few-shot exemplars never come from them)."""

    def examples_fn(split: str) -> list[common.Example]:
        if split != "train":
            return loader.examples(record, split, num_demos=0, seed=common.PROMPT_SEED)
        count = _token_counter()  # (the vocabulary loads on first use, not at registration)
        return flan2022.styled_examples(record, loader, split, common.PROMPT_SEED, count)

    name = names.task_name(record.benchmark, record.task, styles)
    return _add_task(name, common.function_source(record.source_id, examples_fn))


def register_mixture(mixture: str, spec: mixing.MixtureSpec) -> str:
    """Register `optiml_mix:<mixture>` over the registered tasks of its level (gin-callable)."""
    name = mixing.define_mixture(mixture, spec)
    registered = set(seqio.TaskRegistry.names())
    records = [r for r in mixing.level_tasks(spec) if r.name in registered]
    for record in records:
        if mixing.trained_name(record, spec) == record.name:
            continue
        if spec.prompt_styles:
            register_styled_task(record, catalog.loader(record.benchmark), spec.prompt_styles)
        else:
            register_metaicl_task(record, catalog.loader(record.benchmark), spec.metaicl)
    tasks = [mixing.trained_name(r, spec) for r in records]
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    if tasks:
        seqio.MixtureRegistry.add(
            name, [(t, mixing.task_rate(name)) for t in tasks], mixture_cls=AvailableMixture
        )
    else:
        log.info("mixture %s has no task with a loader yet: not registered with seqio", name)
    return name


def register_roles(config: levels.LevelConfig) -> list[str]:
    """Registers again, with the `supervised` role, the tasks `config.supervised_tasks` makes
    fully supervised (each variant too), so that their splits hold out 10% of their instances;
    returns their names. For the process that trains and evaluates with `config` (the
    quickstart); every other use of these names in that process then sees the held-out split."""
    lv = levels.build_levels(config)
    done = []
    for record in lv.fully_supervised:
        if record.name in config.supervised_tasks:
            loader = catalog.loader(record.benchmark)
            done.append(register_task(record, loader))
            done += [register_task(record, loader, v) for v in common.variants(loader)]
    return done


def register_all() -> tuple[list[str], list[str]]:
    """Register every task with a loader and every mixture; returns (task names, mixture names)."""
    task_names = []
    for key in catalog.benchmarks():
        loader = catalog.loader(key)
        if loader is None:
            log.info("benchmark %s: no loader module yet, its tasks are declared only", key)
            continue
        for record in catalog.tasks(key):
            task_names.append(register_task(record, loader))
            for variant in common.variants(loader):
                task_names.append(register_task(record, loader, variant))
    mixture_names = [
        register_mixture(names.parse_mixture_name(m), spec) for m, spec in mixing.MIXTURES.items()
    ]
    return task_names, mixture_names


TASKS, MIXTURES = register_all()
