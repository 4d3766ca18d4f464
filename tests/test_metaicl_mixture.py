"""A MetaICL training mixture (paper §4.8) on the local NIV2 data: twin tasks, rates, loss mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import seqio

from optiml import registry
from optiml.bench import catalog, metaicl, mixing
from optiml.bench.sources import common
from optiml.pipeline import direct, features, vocab

pytestmark = pytest.mark.data
TASKS = mixing.QUICKSTART_TASKS[:2]
CONFIG = metaicl.MetaICLConfig(zipf_a=1.0, max_tokens=256)


@pytest.fixture(autouse=True)
def _forget_test_mixtures():
    """The mixtures registered here leave the global registry after each test."""
    yield
    for name in ("test_metaicl_plain", "test_metaicl_twin"):
        mixing.MIXTURES.pop(f"optiml_mix:{name}", None)
        if f"optiml_mix:{name}" in seqio.MixtureRegistry.names():
            seqio.MixtureRegistry.remove(f"optiml_mix:{name}")


def _spec(config: metaicl.MetaICLConfig | None) -> mixing.MixtureSpec:
    return dataclasses.replace(mixing.MIXTURES["optiml_mix:quickstart"], tasks=TASKS,
                               metaicl=config)  # fmt: skip


def test_the_mixture_trains_on_metaicl_twins_at_the_tasks_own_rates() -> None:
    plain = registry.register_mixture("test_metaicl_plain", _spec(None))
    twin = registry.register_mixture("test_metaicl_twin", _spec(CONFIG))
    base, tuned = mixing.mixture_rates(plain).rates, mixing.mixture_rates(twin).rates
    assert [n for n, _ in tuned] == [f"{n}#{CONFIG.variant}" for n, _ in base]
    assert [r for _, r in tuned] == [r for _, r in base]
    names = {t.name for t in seqio.get_mixture_or_task(twin).tasks}
    assert names == {n for n, _ in tuned}


def test_twin_examples_have_k_demonstrations_and_the_loss_covers_only_the_final_target() -> None:
    twin = registry.register_mixture("test_metaicl_twin", _spec(CONFIG))
    name = mixing.mixture_rates(twin).rates[0][0]
    task = seqio.get_mixture_or_task(name)
    record = next(r for r in mixing.level_tasks(_spec(CONFIG)) if name.startswith(r.name + "#"))
    shown = common.python_examples(task.source)("train")
    zero = catalog.loader(record.benchmark).examples(record, "train", seed=common.PROMPT_SEED)
    assert [e.id for e in shown] == [e.id for e in zero]
    assert common.python_examples(task.source)("train") == shown  # deterministic
    with_demos = [s for s, z in zip(shown, zero, strict=True) if s.inputs != z.inputs]
    assert with_demos, "a = 1 gives demonstrations to most examples"
    for s, z in zip(shown, zero, strict=True):
        assert s.targets == z.targets
        assert s.inputs.startswith(z.instruction) and s.inputs.endswith(metaicl.body(z))
        assert s.inputs.count(metaicl.body(z)) == 1  # never the example itself
    pairs = direct.task_examples(task, "train")
    eos = vocab.opt_vocabulary().eos_id
    opt = vocab.opt_vocabulary()
    for (prompt, target), s in list(zip(pairs, shown, strict=True))[:50]:
        rows = features.pack_rows([[(np.asarray(prompt), np.asarray(target))]], length=256)
        weighted = rows["decoder_target_tokens"][0][rows["decoder_loss_weights"][0] > 0]
        assert weighted[-1] == eos and opt.decode(weighted[:-1].tolist()) == s.targets
        assert len(prompt) + len(target) <= 256 + 2  # fitted to the row (joints: a token or two)
