"""Inferencers for `seqio.Evaluator`: a score function and a predict function over the model.

The Evaluator hands us its cached, enumerated model dataset: (index, features) with seqio's
decoder-only features (`DecoderFeatureConverter(pack=False, bos_id=2)`), one unpacked row each:

    decoder_input_tokens   [2, p1 .. pn, t1 .. tm]        BOS, prompt, target
    decoder_target_tokens  [p1 .. pn, t1 .. tm, 2]        shifted left, EOS last
    decoder_loss_weights   [0 .. 0,  1 .. 1,  1]           1 on the target and its EOS

`read_examples` turns each row back into an `EvalExample(index, prompt=(2, p1..pn),
target=(t1..tm, 2))`: the prompt's last position predicts the target's first token.

- `score_fn` -> [(index, sum of target log-likelihoods)]. With `share_prompts` (default) no
  token is computed twice (`rows`): a prompt and all of its options go into one model row, the
  prompt once, then each option's tokens but its last, each option seeing only the prompt and
  itself (`rank_scoring.score_branches`), unless that costs more (long options after a short
  prompt); the tokens all of a prompt's options begin with are computed and scored once, as the
  prompt's end, their score added to each option's; prompts that begin alike (few-shot
  demonstrations) hold their common prefix once; and these are packed into each batch's rows,
  so batches carry little padding. Without it, one row per option.
  A one-token option is scored from the prompt's last position alone, and the output layer
  runs only at the positions that predict a target token.
- `predict_fn` -> [(index, generated ids)]: greedy decoding with the KV cache until EOS or
  `max_new_tokens` (256, the paper's limit), the EOS itself left out.

Batches have a fixed number of rows (the last one padded with dummy rows that are dropped);
rows are sorted by length and each batch is padded to its longest row, `bucket`ed (at most
1/8 extra beyond 64 tokens), so few shapes get compiled (`decoding`'s functions are
jitted per shape). Every process walks the same dataset in the same order and builds the same
global batch; under the partitioner's mesh and rules the model's logical constraints split it
over the data axes, and outputs are gathered back to every process, so results are complete on
every host (the Evaluator re-sorts them by index anyway).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

from optiml.evaluation import rows
from optiml.models import decoding, rank_scoring
from optiml.models.opt import OPTConfig
from optiml.token_ids import PAD_ID


@dataclasses.dataclass(frozen=True)
class EvalExample:
    """One evaluation row: `prompt` = (2, p1..pn), `target` = (t1..tm, 2)."""

    index: int
    prompt: tuple[int, ...]
    target: tuple[int, ...]


def read_examples(dataset: Iterable[Any]) -> list[EvalExample]:
    """(index, features) pairs (a tf.data.Dataset or any iterable of numpy dicts) -> examples."""
    if hasattr(dataset, "as_numpy_iterator"):
        dataset = dataset.as_numpy_iterator()
    examples = []
    for index, features in dataset:
        inputs = np.asarray(features["decoder_input_tokens"])
        targets = np.asarray(features["decoder_target_tokens"])
        weighted = np.flatnonzero(np.asarray(features["decoder_loss_weights"]) > 0)
        if weighted.size == 0:
            raise ValueError(f"example {int(index)} has no target token (all loss weights are 0)")
        start, stop = int(weighted[0]), int(weighted[-1]) + 1
        examples.append(
            EvalExample(
                index=int(index),
                prompt=tuple(int(t) for t in inputs[: start + 1]),
                target=tuple(int(t) for t in targets[start:stop]),
            )
        )
    return examples


def eos_padded(ids: Sequence[int], length: int, eos_id: int) -> np.ndarray:
    """[5, 6] -> [5, 6, eos, eos, ...] of `length` (int32): one shape for every prediction."""
    if len(ids) > length:
        raise ValueError(f"{len(ids)} generated ids do not fit in {length}")
    out = np.full((length,), eos_id, np.int32)
    out[: len(ids)] = ids
    return out


def _to_host(x: Any) -> np.ndarray:
    """A (possibly multi-process) jax.Array -> the whole array as numpy on this process."""
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_shards(partitioner: Any) -> int:
    """How many ways the partitioner splits a batch's rows (its data axes): batch sizes must be
    multiples of it."""
    mesh, spec = partitioner.mesh.shape, partitioner.data_sharding.spec[0]
    return partitioner.data_sharding.num_devices // math.prod(
        size for name, size in mesh.items() if name not in spec
    )


@dataclasses.dataclass
class Inferencer:
    """score_fn / predict_fn for `seqio.Evaluator` over OPT params (any mesh via `partitioner`).

    params: the model params (already placed/sharded as the partitioner expects, or host arrays);
    partitioner: an `optiml.partitioning.Partitioner` (None: the default device, no mesh);
    batch_size: rows per scoring/generation batch (a multiple of the data-parallel size); a
        scoring row is one prompt with all its options (`share_prompts`, when that costs less
        than one row per option) or one prompt + option.
    """

    params: Any
    config: OPTConfig
    partitioner: Any = None
    batch_size: int = 8
    max_new_tokens: int = 256
    stop_at_eos: bool = True  # False: EOS is an ordinary token, generation runs max_new_tokens
    share_prompts: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.partitioner is not None:
            shards = batch_shards(self.partitioner)
            if self.batch_size % shards:
                raise ValueError(
                    f"batch_size={self.batch_size} is not a multiple of the {shards} batch shards"
                )

    # -- device plumbing -------------------------------------------------------------------
    def _run(self, fn: Callable[..., Any], *batch: np.ndarray) -> Any:
        """fn(params, *batch) on host arrays (the same global batch on every process) under the
        partitioner's mesh and rules, so the model's logical constraints split the batch over
        the data axes; outputs come back as numpy arrays, gathered from every process."""
        context = self.partitioner.activate() if self.partitioner else contextlib.nullcontext()
        with context:
            out = fn(self.params, *batch)
        return jax.tree.map(_to_host, out)

    # -- scoring ---------------------------------------------------------------------------
    def score_examples(self, examples: Sequence[EvalExample], greedy: bool = False) -> list:
        """Sum of target log-likelihoods of each example, in the given order; with `greedy`,
        (sum, whether every target token is the model's argmax) pairs.

        A prompt too long for `max_positions` together with the longest target that shares it
        is cut on the left, its BOS kept (the same cut with and without `share_prompts`).
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, e in enumerate(examples):
            if not e.target:
                raise ValueError(f"example {e.index} has an empty target")
            groups.setdefault(e.prompt, []).append(i)
        prompts: list[rows.Prompt] = []
        count = len(examples)  # owners count, count + 1, ..: the lead of each group's options
        for g, (prompt, members) in enumerate(groups.items()):
            room = self.config.max_positions - max(len(examples[i].target) for i in members)
            options = [(i, examples[i].target) for i in members]
            fitted = self._fit(prompt, room)
            prompts += rows.prompts(fitted, options, self.config, self.share_prompts, count + g)
        scores, misses = self._score_prompts(prompts, count + len(groups), greedy)
        for g, members in enumerate(groups.values()):  # each lead's score into its options'
            scores[members] += scores[count + g]
            misses[members] += misses[count + g]
        scores, misses = scores[:count], misses[:count]
        if greedy:
            return [(float(s), bool(m == 0)) for s, m in zip(scores, misses, strict=True)]
        return [float(s) for s in scores]

    def _fit(self, prompt: tuple[int, ...], room: int) -> tuple[int, ...]:
        """Left-truncates a prompt to `room` tokens, keeping its BOS (the contracts' rule)."""
        if room < 1:
            limit = self.config.max_positions
            raise ValueError(f"no room for a prompt within max_positions {limit}")
        if len(prompt) <= room:
            return prompt
        return prompt[:1] + prompt[len(prompt) - room + 1 :]

    def _score_prompts(self, prompts: Sequence[rows.Prompt], count: int,
                       greedy: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Runs `prompts` in batches of `batch_size` rows (with `share_prompts`, prompts sharing
        a prefix in one segment and segments packed into rows, `rows`; else a row each), each
        batch padded to its bucketed longest row, and adds every scored token up into its
        owner's score: (scores [count] float64, target tokens not the argmax [count] int64)."""
        config = self.config
        scores = np.zeros((count,), np.float64)
        misses = np.zeros((count,), np.int64)  # target tokens that are not the argmax

        def fn(params, *arrays):
            return rank_scoring.score_branches(params, config, *arrays, greedy)

        if self.share_prompts:
            segments = rows.segments(prompts, config)
            batches = rows.pack(segments, rows.row_length(config), self.batch_size)
        else:  # one row per prompt, similar lengths together
            alone = sorted(prompts, key=lambda p: (p.length, p.scored))
            batches = [[[rows.Segment(len(p.tokens), (p,))] for p in chunk]
                       for chunk in _chunks(alone, self.batch_size)]  # fmt: skip
        for chunk in batches:
            length = rows.bucket(max(sum(s.length for s in row) for row in chunk))
            scored = rows.bucket(max(sum(s.scored for s in row) for row in chunk))
            arrays = rows.lay_out(chunk, self.batch_size, length, scored)
            owners = arrays.pop("owners")
            out = self._run(fn, *arrays.values())
            ll, hits = out if greedy else (out, None)
            real = owners >= 0
            np.add.at(scores, owners[real], ll[real].astype(np.float64))
            if greedy:
                np.add.at(misses, owners[real], ~hits[real])
        return scores, misses

    def score_fn(self, dataset: Any, model_feature_shapes: Any = None) -> list[tuple[int, float]]:
        """seqio ScoreFnCallable: [(index, log-likelihood of the target)]."""
        del model_feature_shapes
        examples = read_examples(dataset)
        return [(e.index, s) for e, s in zip(examples, self.score_examples(examples), strict=True)]

    # -- generation ------------------------------------------------------------------------
    def generate_examples(self, examples: Sequence[EvalExample]) -> list[list[int]]:
        """Greedy continuation of each prompt, cut before the first EOS (with `stop_at_eos`)."""
        config, max_new, stop = self.config, self.max_new_tokens, self.stop_at_eos
        eos = config.eos_id

        def fn(params, prompt_tokens, prompt_lengths):
            return decoding.generate(params, config, prompt_tokens, prompt_lengths,
                                     max_new_tokens=max_new, stop_at_eos=stop)  # fmt: skip

        room = config.max_positions - max_new
        fitted = [self._fit(e.prompt, room) for e in examples]
        order = sorted(range(len(examples)), key=lambda i: len(fitted[i]))
        outputs: list[list[int]] = [[] for _ in examples]
        for chunk in _chunks(order, self.batch_size):
            plen = min(rows.bucket(max(len(fitted[i]) for i in chunk)), room)
            prompt_tokens = np.full((self.batch_size, plen), PAD_ID, np.int32)
            prompt_lengths = np.ones((self.batch_size,), np.int32)
            for row, i in enumerate(chunk):
                prompt_tokens[row, : len(fitted[i])] = fitted[i]
                prompt_lengths[row] = len(fitted[i])
            out = self._run(fn, prompt_tokens, prompt_lengths)
            for row, i in enumerate(chunk):
                ids = [int(t) for t in out[row]]
                outputs[i] = ids[: ids.index(eos)] if stop and eos in ids else ids
        return outputs

    def predict_fn(
        self, dataset: Any, model_feature_shapes: Any = None
    ) -> list[tuple[int, np.ndarray]]:
        """seqio PredictFnCallable: [(index, ids [max_new_tokens])], the generated ids followed
        by EOS fill (seqio stacks them into one array; `vocab.decode` stops at the first EOS)."""
        del model_feature_shapes
        examples = read_examples(dataset)
        outputs = self.generate_examples(examples)
        return [
            (e.index, eos_padded(ids, self.max_new_tokens, self.config.eos_id))
            for e, ids in zip(examples, outputs, strict=True)
        ]
