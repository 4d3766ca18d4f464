"""Decoder-only model features: one (prompt, target) example -> tokens, then packing into rows.

The OPT/metaseq layout (see the cross-team contracts). One example with prompt ids `P` (no BOS, no
EOS) and target ids `T` (ending with EOS 2, as seqio's `targets` feature with `add_eos=True`) is the
document `[2] + P + T`. Its model features, for P = [10, 11] and T = [20, 2]:

    decoder_input_tokens   [ 2, 10, 11, 20]     tokens[:-1], starts with BOS 2
    decoder_target_tokens  [10, 11, 20,  2]     tokens[1:]
    decoder_loss_weights   [ 0,  0,  1,  1]     1.0 on the target and its final EOS
    decoder_segment_ids    [ 1,  1,  1,  1]     1, 2, 3... per packed document, 0 on padding
    decoder_positions      [ 0,  1,  2,  3]     restarting at 0 in each document

A document takes `len(P) + len(T)` positions of a row. When that exceeds the row length, the
prompt is cut on the LEFT (its end, next to the answer, is kept) and the target is kept; a target
that alone exceeds the row keeps its first `length - 1` tokens and its final EOS (seqio's
`append_eos_after_trim` convention) and loses the whole prompt.

Packing concatenates documents into rows of `length` (2048 by default); the rest of a row is
padding: token 1 (`<pad>`), loss weight 0, segment id 0, position 0. Models read masks from
segment ids and loss weights, never from token values.

With no truncation and next-fit packing these arrays equal seqio's
`PrefixLMFeatureConverter(pack=True, bos_id=2)` outputs on (inputs=P, targets=T), except that seqio
pads with 0 (tests/test_features.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from optiml.token_ids import BOS_ID, PAD_ID

DEFAULT_LENGTH = 2048

FEATURES = (
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_loss_weights",
    "decoder_segment_ids",
    "decoder_positions",
)


def check_length(length: int) -> None:
    """Rows need at least one position: a 0-length row would take documents forever."""
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"row length must be an int >= 1, got {length!r}")


def truncate(
    prompt: np.ndarray, target: np.ndarray, length: int = DEFAULT_LENGTH
) -> tuple[np.ndarray, np.ndarray]:
    """Cut (prompt, target) so that `len(prompt) + len(target) <= length`.

    The prompt loses tokens on the left; the target is kept whole unless it alone is longer than
    `length`, in which case it keeps `target[:length - 1]` plus its last token (the EOS).
    E.g. length 4: P=[10, 11, 12], T=[20, 2] -> P=[11, 12], T=[20, 2].
    """
    check_length(length)
    prompt = np.asarray(prompt)
    target = np.asarray(target)
    if len(target) > length:
        target = np.concatenate([target[: length - 1], target[-1:]])
        return prompt[:0], target
    keep = length - len(target)
    if len(prompt) > keep:
        prompt = prompt[len(prompt) - keep :]
    return prompt, target


def empty_rows(num_rows: int, length: int = DEFAULT_LENGTH) -> dict[str, np.ndarray]:
    """All-padding feature arrays of shape [num_rows, length] (int32; loss weights float32)."""
    rows = {name: np.zeros((num_rows, length), np.int32) for name in FEATURES}
    rows["decoder_input_tokens"].fill(PAD_ID)
    rows["decoder_target_tokens"].fill(PAD_ID)
    rows["decoder_loss_weights"] = np.zeros((num_rows, length), np.float32)
    return rows


def write_document(
    rows: dict[str, np.ndarray],
    row: int,
    start: int,
    segment: int,
    tokens: np.ndarray,
    prompt_length: int,
    bos_id: int = BOS_ID,
) -> int:
    """Write one already-truncated document `tokens = P + T` at `rows[...][row, start:]`.

    `prompt_length = len(P)`. Returns the end position `start + len(tokens)`.
    """
    end = start + len(tokens)
    if end > rows["decoder_target_tokens"].shape[1]:
        raise ValueError(f"document of {len(tokens)} tokens does not fit at {start} in its row")
    rows["decoder_input_tokens"][row, start] = bos_id
    rows["decoder_input_tokens"][row, start + 1 : end] = tokens[:-1]
    rows["decoder_target_tokens"][row, start:end] = tokens
    rows["decoder_loss_weights"][row, start + prompt_length : end] = 1.0
    rows["decoder_segment_ids"][row, start:end] = segment
    rows["decoder_positions"][row, start:end] = np.arange(len(tokens), dtype=np.int32)
    return end


def pack_rows(
    rows_of_examples: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
    length: int = DEFAULT_LENGTH,
    bos_id: int = BOS_ID,
) -> dict[str, np.ndarray]:
    """Features for explicit rows: `rows_of_examples[r]` is the list of (prompt, target) in row r.

    Each example is truncated to `length` first; the examples of a row must then fit in it.
    """
    out = empty_rows(len(rows_of_examples), length)
    for r, examples in enumerate(rows_of_examples):
        start = 0
        for segment, (prompt, target) in enumerate(examples, start=1):
            prompt, target = truncate(prompt, target, length)
            tokens = np.concatenate([prompt, target]).astype(np.int32)
            start = write_document(out, r, start, segment, tokens, len(prompt), bos_id)
    return out


def plan_rows(
    lengths: Iterable[int], length: int = DEFAULT_LENGTH, pool_size: int = 1
) -> list[list[int]]:
    """Greedy packing plan: which documents (by index in `lengths`) go into each row.

    Documents arrive in order into a pool of at most `pool_size`. A row starts with the oldest
    pooled document, then repeatedly takes the oldest pooled document that still fits, refilling
    the pool after each placement; it closes when nothing in the pool fits. `pool_size=1` is
    next-fit (seqio's packing order). Every document is placed within `pool_size` rows of its
    arrival, so none starves. Lengths above `length` count as `length` (they get truncated).
    E.g. lengths [3, 3, 2], length 4: pool 1 -> [[0], [1], [2]]; pool 2 -> [[0], [1], [2]]
    ... lengths [3, 2, 1], pool 2 -> [[0, 2], [1]].
    """
    planner = Planner(length, pool_size)
    rows: list[list[int]] = []
    source = iter(enumerate(lengths))

    def draw() -> tuple[int, int] | None:
        return next(source, None)

    while True:
        row = planner.next_row(draw)
        if not row:
            return rows
        rows.append(row)


class Planner:
    """The packing planner behind `plan_rows`, with its pool as explicit, saveable state.

    Pool items are `(payload, length)`; `draw()` returns the next item or None when the source is
    exhausted. `next_row` returns the payloads of the next row ([] once everything is placed).
    """

    def __init__(self, length: int = DEFAULT_LENGTH, pool_size: int = 1) -> None:
        check_length(length)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.length = length
        self.pool_size = pool_size
        self.pool: list[tuple[object, int]] = []

    def next_row(self, draw: Callable[[], tuple[object, int] | None]) -> list:
        """Bounded: every pass places a document of >= 1 token or closes the row, so a row takes
        at most `length` passes (a 0-token document is refused: it would fill a row forever)."""
        row: list = []
        space = self.length
        while True:
            while len(self.pool) < self.pool_size:
                item = draw()
                if item is None:
                    break
                payload, size = item
                if size < 1:
                    raise ValueError(f"document {payload!r} has {size} tokens; packing needs >= 1")
                self.pool.append((payload, min(int(size), self.length)))
            for i, (payload, size) in enumerate(self.pool):
                if size <= space:
                    del self.pool[i]
                    row.append(payload)
                    space -= size
                    break
            else:
                return row
