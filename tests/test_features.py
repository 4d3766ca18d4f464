"""Exact token arrays for optiml.pipeline.features, and equality with seqio's feature converters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiml.pipeline import features as F


def _a(*values: int) -> np.ndarray:
    return np.array(values, np.int32)


def test_truncate_cuts_the_prompt_on_the_left_and_keeps_the_target() -> None:
    prompt, target = F.truncate(_a(10, 11, 12), _a(20, 2), length=4)
    np.testing.assert_array_equal(prompt, [11, 12])
    np.testing.assert_array_equal(target, [20, 2])
    prompt, target = F.truncate(_a(10, 11, 12), _a(20, 2), length=5)
    np.testing.assert_array_equal(prompt, [10, 11, 12])
    prompt, target = F.truncate(_a(10, 11, 12), _a(20, 2), length=2)
    assert prompt.size == 0
    np.testing.assert_array_equal(target, [20, 2])


def test_truncate_an_overlong_target_keeps_its_head_and_eos() -> None:
    prompt, target = F.truncate(_a(10), _a(20, 21, 22, 23, 2), length=3)
    assert prompt.size == 0
    np.testing.assert_array_equal(target, [20, 21, 2])


def test_pack_rows_exact_arrays() -> None:
    rows = F.pack_rows(
        [[(_a(10, 11), _a(20, 2)), (_a(12), _a(21, 22, 2))], [(_a(13, 14, 15, 16), _a(23, 2))]],
        length=8,
    )
    np.testing.assert_array_equal(
        rows["decoder_input_tokens"],
        [[2, 10, 11, 20, 2, 12, 21, 22], [2, 13, 14, 15, 16, 23, 1, 1]],
    )
    np.testing.assert_array_equal(
        rows["decoder_target_tokens"],
        [[10, 11, 20, 2, 12, 21, 22, 2], [13, 14, 15, 16, 23, 2, 1, 1]],
    )
    np.testing.assert_array_equal(
        rows["decoder_loss_weights"], [[0, 0, 1, 1, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0]]
    )
    np.testing.assert_array_equal(
        rows["decoder_segment_ids"], [[1, 1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0, 0]]
    )
    np.testing.assert_array_equal(
        rows["decoder_positions"], [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 0]]
    )
    assert rows["decoder_loss_weights"].dtype == np.float32
    assert all(rows[k].dtype == np.int32 for k in F.FEATURES if k != "decoder_loss_weights")


def test_pack_rows_left_truncates_an_overlong_prompt() -> None:
    rows = F.pack_rows([[(_a(10, 11, 12, 13, 14), _a(20, 2))]], length=4)
    np.testing.assert_array_equal(rows["decoder_input_tokens"], [[2, 13, 14, 20]])
    np.testing.assert_array_equal(rows["decoder_target_tokens"], [[13, 14, 20, 2]])
    np.testing.assert_array_equal(rows["decoder_loss_weights"], [[0, 0, 1, 1]])


def test_a_document_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        F.pack_rows([[(_a(10, 11), _a(20, 2)), (_a(12), _a(2))]], length=5)


def test_plan_rows_next_fit_and_pool() -> None:
    assert F.plan_rows([3, 3, 2], length=4, pool_size=1) == [[0], [1], [2]]
    assert F.plan_rows([3, 2, 1], length=4, pool_size=1) == [[0], [1, 2]]
    assert F.plan_rows([3, 2, 1], length=4, pool_size=2) == [[0, 2], [1]]
    assert F.plan_rows([9, 1], length=4, pool_size=1) == [[0], [1]]  # 9 counts as 4
    assert F.plan_rows([], length=4) == []


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), max_size=80),
    pool_size=st.integers(1, 16),
)
def test_plan_rows_places_every_document_once_and_rows_fit(
    lengths: list[int], pool_size: int
) -> None:
    rows = F.plan_rows(lengths, length=32, pool_size=pool_size)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))
    for row in rows:
        assert sum(min(lengths[i], 32) for i in row) <= 32
        # A row starts with the oldest document not yet placed (nothing starves).
        assert row[0] == min(i for r in rows[rows.index(row) :] for i in r)


def _random_examples(rng: np.random.Generator, count: int, with_prompt: bool) -> list:
    examples = []
    for _ in range(count):
        prompt = rng.integers(4, 300, rng.integers(1 if with_prompt else 0, 9) * with_prompt)
        target = np.concatenate([rng.integers(4, 300, rng.integers(0, 6)), [2]])
        examples.append((prompt.astype(np.int32), target.astype(np.int32)))
    return examples


def _seqio_packed(examples: list, lengths: dict[str, int], with_prompt: bool) -> dict:
    import seqio
    import tensorflow as tf

    data = {"targets": tf.ragged.constant([t.tolist() for _, t in examples])}
    if with_prompt:
        data["inputs"] = tf.ragged.constant([p.tolist() for p, _ in examples])
    ds = tf.data.Dataset.from_tensor_slices(data).map(
        lambda ex: {k: tf.cast(v, tf.int32) for k, v in ex.items()}
    )
    converter = seqio.DecoderFeatureConverter(pack=True, bos_id=2, loss_on_targets_only=True)
    out = list(converter(ds, lengths).as_numpy_iterator())
    return {k: np.stack([row[k] for row in out]) for k in out[0]}


@pytest.mark.parametrize("with_prompt", [True, False])
def test_equals_seqio_decoder_feature_converter(with_prompt: bool) -> None:
    """seqio's PrefixLM (prompt) / LM (no prompt) packing = ours with next-fit, up to pad value."""
    rng = np.random.default_rng(0)
    # seqio packs blocks of `length` examples separately: stay within one block (30 < 32).
    examples = _random_examples(rng, 30, with_prompt)
    lengths = {"inputs": 10, "targets": 22} if with_prompt else {"targets": 32}
    length = sum(lengths.values())
    theirs = _seqio_packed(examples, lengths, with_prompt)

    sizes = [len(p) + len(t) for p, t in examples]
    plan = F.plan_rows(sizes, length=length, pool_size=1)
    ours = F.pack_rows([[examples[i] for i in row] for row in plan], length=length)

    real = ours["decoder_segment_ids"] > 0
    assert theirs["decoder_target_tokens"].shape == ours["decoder_target_tokens"].shape
    for key in F.FEATURES:
        np.testing.assert_array_equal(ours[key][real], theirs[key][real], err_msg=key)
        if key != "decoder_input_tokens":  # seqio shifts BOS 2 into its first padding position
            np.testing.assert_array_equal(theirs[key][~real], 0, err_msg=key)
    np.testing.assert_array_equal(theirs["decoder_segment_ids"] > 0, real)
    np.testing.assert_array_equal(ours["decoder_input_tokens"][~real], 1)
    np.testing.assert_array_equal(ours["decoder_target_tokens"][~real], 1)


@pytest.mark.parametrize("length", [0, -5, 2.5])
def test_a_row_length_below_one_is_refused_at_once(length) -> None:
    """LENGTH=0 used to spin forever in Planner.next_row (every document fit in 0 tokens)."""
    with pytest.raises(ValueError, match="row length must be an int >= 1"):
        F.Planner(length, pool_size=4)
    with pytest.raises(ValueError, match="row length must be an int >= 1"):
        F.plan_rows([3, 2, 1], length=length)


def test_a_zero_token_document_is_refused_instead_of_filling_a_row_forever() -> None:
    endless_empty = iter(lambda: ("doc", 0), None)
    with pytest.raises(ValueError, match="has 0 tokens"):
        F.Planner(8, pool_size=2).next_row(lambda: next(endless_empty))
