"""How rank-classification scoring lays examples out in model rows, so that no token is computed
twice and little of a batch is padding (`Inferencer.score_examples` uses it).

Three levels, each computed once and kept apart by `rank_scoring.tree_mask`:

- `Prompt`: a prompt and every option scored against it, the prompt once, then each option's
  tokens but its last (a one-token option feeds nothing: the prompt's last position predicts it);
  the tokens all its options begin with (PIQA's two solutions often differ only at the end) go
  to the prompt's end as its `lead`, computed and scored once for all of them;
- `Segment`: prompts that begin with the same tokens (a task's instructions or demonstrations
  before each question, MMLU's "The following are multiple choice questions (with answers) about
  anatomy.") hold that prefix once, then each prompt's own tokens, when that costs less; every
  prompt's positions continue from the prefix, so each sees exactly its own full sequence;
- batch: segments are packed first-fit into its rows of at least `row_length(config)` tokens.

The cost model (`cost`) is a forward's time in token units. In FLOPs a token costs
2 (4 d^2 + 2 d f) a layer and a (query, key) pair 4 d, since dense masked attention computes
every pair of a row: n + n^2 / (2 d + f) for a row of n tokens. Attention runs slower per FLOP
than the dense layers (small per-head products, the softmax, the mask): on XLA's CPU backend (a
2-core host of 2026-12-01) 2,048 tokens of 125m took 10% (quiet machine) to 24% (loaded) longer
as 8 rows of 256 than as 32 rows of 64, where the FLOPs differ by 4%, so its term is weighted by
ATTENTION = 4. The output layer is left out: it runs at the same scored positions whatever the
layout. The model only decides the layout: the scores are the same whatever it chooses (up to
float rounding).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from optiml.models.opt import OPTConfig
from optiml.token_ids import PAD_ID

Option = tuple[int, tuple[int, ...]]  # (example position, target ids)


def bucket(n: int) -> int:
    """A padded length for n: a multiple of 8 up to 64, then 8 steps per octave (72, 80, ..,
    128, 144, ..), so padding adds at most 1/8 beyond 64 and few shapes get compiled."""
    step = max(8, 1 << max(0, n.bit_length() - 4))
    return -(-max(n, 1) // step) * step


ATTENTION = 4  # attention's time per FLOP over the dense layers' (module docstring)


def cost(n: int, config: OPTConfig) -> float:
    """A row of n tokens in token units (see the module docstring)."""
    return n + ATTENTION * n * n / (2 * config.hidden_size + config.ffn_dim)


def packed_cost(n: int, config: OPTConfig) -> float:
    """n tokens of a row packed to `row_length` (each sees the whole row's attention), or of a
    row of their own when longer."""
    return n * cost(max(n, row_length(config)), config) / max(n, row_length(config))


def row_length(config: OPTConfig) -> int:
    """The length rows are packed to: where attention adds 5% to a row's cost,
    (2 d + f) / (20 ATTENTION) tokens, at least 64 (64 for 125m's d = 768, f = 3072; 160 for
    1.3b; 960 for 175b)."""
    return max(64, bucket((2 * config.hidden_size + config.ffn_dim) // (20 * ATTENTION)))


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A prompt (BOS first) and the options scored against it. With a `lead` (owner, ids), the
    tokens end with those ids, which the options had in common: they are scored once, under
    that owner, and the caller adds its score to each option's."""

    tokens: tuple[int, ...]
    options: tuple[Option, ...]
    lead: Option | None = None

    @property
    def fed(self) -> int:
        return sum(len(t) - 1 for _, t in self.options)

    @property
    def length(self) -> int:
        return len(self.tokens) + self.fed

    @property
    def scored(self) -> int:
        return sum(len(t) for _, t in self.options) + (len(self.lead[1]) if self.lead else 0)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prompts(tokens: tuple[int, ...], options: Sequence[Option], config: OPTConfig,
            share: bool, lead_owner: int | None = None) -> list[Prompt]:  # fmt: skip
    """One `Prompt` holding all the options when `share` and that costs less than one `Prompt`
    per option (it does not for long options after a short prompt: attention over the row).
    Given a `lead_owner` (an owner id no option has), options that begin alike leave their
    common tokens (all but at least one of each) to the shared prompt, as its `lead`: [2, 9]
    with (5, 6, 7) and (5, 6, 8) is the prompt [2, 9, 5, 6] with lead (lead_owner, (5, 6)) and
    options (7,) and (8,)."""
    alone = [Prompt(tokens, (o,)) for o in options]
    targets = [t for _, t in options]
    common = min(len(t) for t in targets) - 1
    for t in targets[1:]:
        common = min(common, _common(targets[0], t))
    if lead_owner is not None and len(options) > 1 and common > 0:
        lead = targets[0][:common]
        rest = tuple((owner, t[common:]) for owner, t in options)
        shared = Prompt(tokens + lead, rest, (lead_owner, lead))
    else:
        shared = Prompt(tokens, tuple(options))
    cheaper = cost(shared.length, config) <= sum(cost(p.length, config) for p in alone)
    return [shared] if share and cheaper else alone


@dataclasses.dataclass(frozen=True)
class Segment:
    """Prompts whose first `shared` tokens are the same, those tokens held once."""

    shared: int
    prompts: tuple[Prompt, ...]

    @property
    def length(self) -> int:
        return self.shared + sum(p.length - self.shared for p in self.prompts)

    @property
    def scored(self) -> int:
        return sum(p.scored for p in self.prompts)


def segments(items: Sequence[Prompt], config: OPTConfig) -> list[Segment]:
    """The prompts in token order, cut into runs that each hold their common prefix once, the
    cuts chosen for the least total `packed_cost` (dynamic programming over the cut points):
    within a packed row a run saves its shared tokens; beyond, a longer row's attention costs
    more. A run of several prompts stays within max_positions tokens (the longest row the model
    is given otherwise: attention memory grows with the row)."""
    order = sorted(items, key=lambda p: p.tokens)
    common = [_common(a.tokens, b.tokens) for a, b in zip(order, order[1:], strict=False)]
    best = [0.0] + [math.inf] * len(order)  # best[i]: the least cost of order[:i]
    start = [0] * (len(order) + 1)  # where the last run of that best cut starts
    for i in range(1, len(order) + 1):
        shared, total = len(order[i - 1].tokens), 0
        for j in range(i - 1, -1, -1):  # the run order[j:i]
            shared = min(shared, common[j]) if j < i - 1 else shared
            total += order[j].length
            length = total - (i - 1 - j) * shared
            if length > config.max_positions and j < i - 1:
                break  # runs only grow longer further back
            if best[j] + packed_cost(length, config) < best[i]:
                best[i], start[i] = best[j] + packed_cost(length, config), j
    out, i = [], len(order)
    while i:
        run = order[start[i] : i]
        shared = len(run[0].tokens) if len(run) == 1 else min(common[start[i] : i - 1])
        out.append(Segment(shared, tuple(run)))
        i = start[i]
    return out[::-1]


def pack(items: Sequence[Segment], limit: int, batch: int) -> list[list[list[Segment]]]:
    """Batches of `batch` rows: each batch's rows are `bucket(max(limit, its longest segment))`
    tokens, the longest segment left first, filled first-fit with the longest segments that
    still fit, so a batch is little padding (a short segment in a long row costs that row's
    attention, far less than a padded position)."""
    remaining = sorted(items, key=lambda s: -s.length)
    batches: list[list[list[Segment]]] = []
    while remaining:
        room = [bucket(max(limit, remaining[0].length))] * batch
        rows: list[list[Segment]] = [[] for _ in range(batch)]
        rest = []
        for s in remaining:
            fits = [r for r in range(batch) if s.length <= room[r]]
            if fits:
                rows[fits[0]].append(s)
                room[fits[0]] -= s.length
            else:
                rest.append(s)
        batches.append([row for row in rows if row])
        remaining = rest
    return batches


def lay_out(rows: Sequence[Sequence[Segment]], batch: int, length: int,
            scored: int) -> dict[str, np.ndarray]:  # fmt: skip
    """`rank_scoring.score_branches` inputs for `rows` (dummy rows up to `batch`) plus `owners`
    [batch, scored]: the example position each scored token adds to (-1 on padding)."""
    out = {
        "tokens": np.full((batch, length), PAD_ID, np.int32),
        "positions": np.zeros((batch, length), np.int32),
        "segments": np.full((batch, length), -1, np.int32),
        "prompts": np.zeros((batch, length), np.int32),
        "branches": np.zeros((batch, length), np.int32),
        "select": np.zeros((batch, scored), np.int32),
        "targets": np.full((batch, scored), PAD_ID, np.int32),
        "owners": np.full((batch, scored), -1, np.int32),
    }
    for r, row in enumerate(rows):
        column, slot, prompt_id, branch = 0, 0, 0, 0
        for s_id, segment in enumerate(row):
            prefix = segment.prompts[0].tokens[: segment.shared]
            end = column + segment.shared
            out["tokens"][r, column:end] = prefix
            out["positions"][r, column:end] = np.arange(segment.shared)
            out["segments"][r, column:end] = s_id
            last = end - 1  # the column of the prompt's last token
            column = end
            for prompt in segment.prompts:
                prompt_id += 1
                own = prompt.tokens[segment.shared :]
                p, end = len(prompt.tokens), column + len(own)
                out["tokens"][r, column:end] = own
                out["positions"][r, column:end] = np.arange(segment.shared, p)
                out["segments"][r, column:end] = s_id
                out["prompts"][r, column:end] = prompt_id
                if prompt.lead:  # predicted from the prompt's positions before each lead token
                    owner, lead = prompt.lead
                    at = np.arange(p - len(lead) - 1, p - 1)  # prompt token indices
                    start = last + 1 - segment.shared  # the segment's first column
                    cols = np.where(at < segment.shared, start + at, column + at - segment.shared)
                    out["select"][r, slot : slot + len(lead)] = cols
                    out["targets"][r, slot : slot + len(lead)] = lead
                    out["owners"][r, slot : slot + len(lead)] = owner
                    slot += len(lead)
                prompt_last = end - 1 if own else last
                column = end
                for owner, target in prompt.options:
                    branch += 1
                    fed, m = len(target) - 1, len(target)
                    end = column + fed
                    out["tokens"][r, column:end] = target[:-1]
                    out["positions"][r, column:end] = p + np.arange(fed)
                    out["segments"][r, column:end] = s_id
                    out["prompts"][r, column:end] = prompt_id
                    out["branches"][r, column:end] = branch
                    out["select"][r, slot] = prompt_last
                    out["select"][r, slot + 1 : slot + m] = column + np.arange(fed)
                    out["targets"][r, slot : slot + m] = target
                    out["owners"][r, slot : slot + m] = owner
                    column, slot = end, slot + m
    return out
