"""A small synthetic source of packed training batches, for tests, benchmarks and smoke runs.

Same protocol as the real stream (`optiml.pipeline.stream`): an iterator of numpy batch dicts with
the five decoder features, plus `get_state()` / `set_state()` for exact resume. Every row is a pure
function of (seed, batch index, global row index), so a host that loads rows 64..127 of a batch
of 128 (shard 1 of 2) gets exactly the rows a single host would have had there.

Each document is a copy task, [2] + prompt + prompt + [2] with the loss on the copy and the
final EOS, e.g. prompt [17, 9, 33] packs as
    decoder_input_tokens   2  17  9  33  17  9  33
    decoder_target_tokens  17  9  33  17  9  33  2
    decoder_loss_weights   0   0  0   1   1  1   1
so a model can learn it (the loss falls) while staying cheap to generate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optiml.token_ids import BOS_ID, PAD_ID, VOCAB_SIZE


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """A factory, called like the real stream's: `SyntheticData(length=64)(batch_size=8,
    process_index=0, process_count=1)`; `batch_size` is global, each process gets its share."""

    length: int = 64
    vocab_size: int = VOCAB_SIZE
    seed: int = 0
    min_prompt: int = 2
    max_prompt: int = 12

    def __post_init__(self) -> None:
        if self.length < 2 * self.max_prompt + 1:
            raise ValueError(f"length {self.length} cannot hold a prompt of {self.max_prompt}")

    def __call__(
        self, *, batch_size: int, process_index: int = 0, process_count: int = 1
    ) -> SyntheticStream:
        return SyntheticStream(self, batch_size, process_index, process_count)


class SyntheticStream:
    """Rows [p * B/P, (p + 1) * B/P) of each global batch of B rows, for process p of P."""

    def __init__(self, config: SyntheticData, batch_size: int, process_index: int, count: int):
        if batch_size % count or not 0 <= process_index < count:
            raise ValueError(f"process {process_index} of {count} cannot share {batch_size} rows")
        self.config = config
        self.batch_size = batch_size // count
        self.first_row = process_index * self.batch_size
        self.index = 0

    def __iter__(self) -> SyntheticStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rows = [self._row(self.first_row + r) for r in range(self.batch_size)]
        self.index += 1
        return {key: np.stack([row[key] for row in rows]) for key in rows[0]}

    def get_state(self) -> dict[str, Any]:
        return {"index": self.index}

    def set_state(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])

    def _row(self, row: int) -> dict[str, np.ndarray]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.index, row])
        length = cfg.length
        out = {
            "decoder_input_tokens": np.full(length, PAD_ID, np.int32),
            "decoder_target_tokens": np.full(length, PAD_ID, np.int32),
            "decoder_loss_weights": np.zeros(length, np.float32),
            "decoder_segment_ids": np.zeros(length, np.int32),
            "decoder_positions": np.zeros(length, np.int32),
        }
        start, segment = 0, 1
        while True:
            n = int(rng.integers(cfg.min_prompt, cfg.max_prompt + 1))
            prompt = rng.integers(4, cfg.vocab_size, n)
            tokens = np.concatenate([[BOS_ID], prompt, prompt, [BOS_ID]]).astype(np.int32)
            size = len(tokens) - 1
            if start + size > length:
                break
            span = slice(start, start + size)
            out["decoder_input_tokens"][span] = tokens[:-1]
            out["decoder_target_tokens"][span] = tokens[1:]
            out["decoder_loss_weights"][start + n : start + size] = 1.0
            out["decoder_segment_ids"][span] = segment
            out["decoder_positions"][span] = np.arange(size)
            start, segment = start + size, segment + 1
        return out
