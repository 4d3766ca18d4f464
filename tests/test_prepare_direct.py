"""The direct preparation path writes the cache seqio's path writes, byte for byte: the same token
arrays in the same example order, on every Python-rendered source."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import seqio
from cache_testing import same_cache
from hypothesis import given, settings
from hypothesis import strategies as st

from optiml.bench import catalog, mixing, names
from optiml.pipeline import cache, direct, prepare

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def all_data(data_dir, tmp_path, monkeypatch):
    """The real data folder plus the test fixtures of the sources it lacks (CrossFit, ExMix,
    UnifiedSKG, dialogue), so that every loader has tasks to prepare."""
    root = tmp_path / "data"
    root.mkdir()
    for entry in data_dir.iterdir():
        (root / entry.name).symlink_to(entry)
    for entry in FIXTURES.iterdir():
        (root / entry.name).symlink_to(entry.resolve())
    monkeypatch.setenv("OPTIML_DATA_DIR", str(root))
    mixing.count_examples.cache_clear()  # counts are cached per task, not per data folder
    yield root
    mixing.count_examples.cache_clear()


def _identical_caches(a: Path, b: Path, split: str, tasks: list[str]) -> None:
    same_cache(a, b, split, tasks)
    manifest = cache.MANIFEST
    assert filecmp.cmp(a / split / manifest, b / split / manifest, shallow=False)


def _prepare_both_ways(tasks: list[str], split: str, tmp_path: Path) -> prepare.Report:
    fast = prepare.prepare(tasks, tmp_path / "direct", split=split)
    slow = prepare.prepare(tasks, tmp_path / "seqio", split=split, path="seqio")
    assert not fast.failed and not slow.failed, (fast.failed, slow.failed)
    assert sorted(fast.direct) == sorted(tasks) and not slow.direct
    _identical_caches(tmp_path / "direct", tmp_path / "seqio", split, tasks)
    return fast


@pytest.mark.data
def test_a_shared_prefix_is_tokenized_once_without_changing_a_token(data_dir):
    from optiml.pipeline.vocab import OPTVocabulary

    vocabulary = OPTVocabulary(data_dir / "gpt2_bpe")
    head = "Definition: Answer it.\n\nInput:"
    assert direct.safe_cut(head + " Is it") == len(head + " Is")
    assert direct.safe_cut("a  b") == 1  # not between two spaces
    assert direct.safe_cut("\n b") == 0  # nor after a newline
    formats = [f"Task: {'Answer it. ' * 4}\nInput: {x}" for x in ("a", "b", "c")]
    formats += [f"{'Answer it. ' * 4}\nInput:\n{x}" for x in ("d", "e")] + ["alone"]
    cuts = direct.shared_cuts(formats)
    assert cuts[:3] == [len("Task: " + "Answer it. " * 4 + "\nInput:")] * 3
    assert cuts[3:] == [len("Answer it. " * 4) - 1] * 2 + [0]  # the space before "\n"
    assert direct.encode_prompts(vocabulary, formats) == [vocabulary.encode(p) for p in formats]
    pieces = list("ab Z9:.-'s\n\t") + ["\u00a0", "\u3000", "é", "’", "\x1c", "  ", "'ll", "🙂"]
    text = st.lists(st.sampled_from(pieces), max_size=10).map("".join)

    @given(head=text, tails=st.lists(text, min_size=2, max_size=4))
    @settings(max_examples=400, deadline=None)
    def check(head: str, tails: list[str]) -> None:
        prompts = [head + tail for tail in tails]
        expected = [vocabulary.encode(p) for p in prompts]
        assert direct.encode_prompts(vocabulary, prompts) == expected

    check()


@pytest.mark.data
def test_direct_and_seqio_caches_are_identical_and_verify_says_so(all_data, tmp_path):
    import optiml.registry  # noqa: F401

    tasks = [
        "optiml:niv2:task1557_jfleg_answer_generation",
        "optiml:promptsource:super_glue_cb",
        "optiml:crossfit:imdb",
        "optiml:reasoning:creak",
    ]
    _prepare_both_ways(tasks, "train", tmp_path)
    evaluation = ["optiml:mmlu:anatomy#5shot", "optiml:bbh:navigate#3shot_cot"]
    _prepare_both_ways(evaluation, "test", tmp_path)

    checked = prepare.main(["--verify", "--tasks", ",".join(tasks), "--module", "optiml.registry"])
    assert sorted(checked.same) == sorted(tasks) and not checked.differ


def _registered(benchmark: str, variant: str | None = None) -> list[str]:
    out = []
    for name in sorted(seqio.TaskRegistry.names()):
        if name.startswith("optiml:"):
            parsed = names.parse_task_name(name)
            if parsed.benchmark == benchmark and parsed.variant == variant:
                out.append(name)
    return out


def _available(tasks: list[str], split: str) -> list[str]:
    counts = {name: mixing.count_examples(catalog.task(name), split) for name in tasks}
    return [name for name, n in counts.items() if isinstance(n, int) and n > 0]


@pytest.mark.slow
@pytest.mark.data
def test_over_a_hundred_tasks_from_every_python_rendered_source(all_data, tmp_path):
    """NIV2, PromptSource, CoT, MMLU, BBH and the CrossFit/ExMix/UnifiedSKG/dialogue files,
    zero- and few-shot: both paths write byte-identical caches (tokens, offsets, order)."""
    import optiml.registry  # noqa: F401

    def every(tasks: list[str], n: int) -> list[str]:
        return tasks[:: max(1, len(tasks) // n)][:n]

    by_split = {
        "train": every(_available(_registered("niv2"), "train"), 45)
        + _available(_registered("promptsource"), "train")
        + _available(_registered("reasoning"), "train")
        + [t for b in ("crossfit", "exmix", "unifiedskg", "dialogue")
           for t in _available(_registered(b), "train")],
        "test": every(_available(_registered("niv2", "2shot"), "test"), 10)
        + every(_available(_registered("mmlu"), "test"), 12)
        + every(_available(_registered("mmlu", "5shot"), "test"), 4)
        + every(_available(_registered("bbh"), "test"), 8)
        + every(_available(_registered("bbh", "3shot_cot"), "test"), 3)
        + every(_available(_registered("reasoning", "5shot"), "test"), 2)
        + ["optiml:promptsource:super_glue_cb#5shot"],
    }  # fmt: skip
    assert sum(map(len, by_split.values())) >= 100
    benchmarks = {names.parse_task_name(t).benchmark for ts in by_split.values() for t in ts}
    assert benchmarks == {
        "niv2", "promptsource", "reasoning", "mmlu", "bbh", "crossfit", "exmix", "unifiedskg",
        "dialogue",
    }  # fmt: skip
    for split, tasks in by_split.items():
        report = _prepare_both_ways(tasks, split, tmp_path)
        assert report.num_examples > 10 * len(tasks)


def test_ahead_yields_in_order_and_raises_where_fn_raised() -> None:
    calls = []

    def fn(x: int) -> int:
        calls.append(x)
        if x == 3:
            raise KeyError(f"item {x}")
        return x * 10

    got = []
    for item, result in direct.ahead(fn, list(range(6)), depth=2):
        if item == 3:
            with pytest.raises(KeyError, match="item 3"):
                result()
        else:
            got.append(result())
    assert got == [0, 10, 20, 40, 50] and sorted(calls) == list(range(6))

    calls.clear()
    for item, _result in direct.ahead(fn, list(range(100)), depth=2):
        if item == 1:
            break  # the consumer stops: what was not started yet is cancelled
    assert max(calls) <= 3


@pytest.mark.data
def test_rendering_ahead_skips_cached_tasks_and_a_damaged_one_is_redone(
    data_dir, tmp_path, monkeypatch
):
    import optiml.registry  # noqa: F401

    tasks = [
        "optiml:niv2:task1557_jfleg_answer_generation",
        "optiml:niv2:task020_mctaco_span_based_question",
        "optiml:reasoning:creak",
    ]
    rendered = []
    render = direct.render
    monkeypatch.setattr(direct, "render", lambda t, s: rendered.append(t.name) or render(t, s))
    first = prepare.prepare(tasks, tmp_path / "ahead")
    assert sorted(first.direct) == sorted(tasks) and sorted(rendered) == sorted(tasks)
    one_by_one = tmp_path / "one_by_one"  # prepare_one alone renders each task itself
    for name in tasks:
        assert (
            prepare.prepare_one(
                name, one_by_one, split="train", seed=0, overwrite=False, path="direct"
            )[0]
            == "direct"
        )
    cache.write_manifest(one_by_one, "train")
    _identical_caches(tmp_path / "ahead", one_by_one, "train", tasks)

    rendered.clear()
    assert sorted(prepare.prepare(tasks, tmp_path / "ahead").skipped) == sorted(tasks)
    assert rendered == []  # a rerun renders nothing
    (cache.task_dir(tmp_path / "ahead", "train", tasks[1]) / "tokens.npy").write_bytes(b"")
    again = prepare.prepare(tasks, tmp_path / "ahead")
    assert again.prepared == [tasks[1]] and rendered == [tasks[1]]
    _identical_caches(tmp_path / "ahead", one_by_one, "train", tasks)
