"""An OPT model on strings: log-likelihoods and greedy generation, for notebooks and harnesses.

    from optiml import lm

    model = lm.load("facebook-opt-1.3b/")        # an HF folder, metaseq .pt, optiml checkpoint
    model = lm.load("runs/iml-1.3b", step=4000)  # ... or a training run (its newest step if none)
    model.loglikelihood([("Question: Is the sky blue? Answer:", " yes"),
                         ("Question: Is the sky blue? Answer:", " no")])
    # -> [(-0.62, True), (-1.05, False)]: summed log-probability, and whether it is the greedy path
    model.loglikelihood_rolling(["A whole document to score."])    # -> [-27.3]
    model.generate(["Q: 2+2?\\nA:"], max_new_tokens=16, until=["\\n"])  # -> [" 4"]

Conventions (those of lm-evaluation-harness's `hf` backend on an OPT model, so the numbers
compare): every sequence starts with BOS `</s>` (2), as facebook/opt tokenizers add it. A pair's
context is `[2] + tokens(context)` and its continuation the tokens that `tokens(context +
continuation)` has after the context's (a space ending the context moves to the continuation, so
" yes" stays one token); an empty context is `[2]` alone. `loglikelihood_rolling` scores every
token of the text given BOS, in windows of `max_positions` tokens, each seeing the token before it.
`generate` decodes greedily (the paper's decoding, section 4.1) from `[2] + tokens(prompt)`, stops
at EOS unless `eos=False`, and cuts the text at the first `until` string.

Scoring runs through `optiml.evaluation.inference.Inferencer`: contexts shared by several
continuations (a multiple-choice question) are encoded once, batches are length-sorted and padded
to few shapes, and the whole thing runs on any mesh (`mesh=MeshConfig(data=..., model=...)`;
multi-host through the same code). Compute dtype: the checkpoint's (float32 for HF and metaseq
weights, so logits equal transformers'); `dtype="bfloat16"` is one argument away. TF-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from optiml import partitioning
from optiml.evaluation.inference import EvalExample, Inferencer, batch_shards
from optiml.models import formats, opt
from optiml.models.tokenizer import OPTTokenizer

Pair = tuple[str, str]  # (context, continuation)
DEFAULT_BATCH_SIZE = 8


@dataclasses.dataclass
class LM:
    """A loaded OPT model, its tokenizer and its inferencer (batching, mesh)."""

    inferencer: Inferencer
    tokenizer: OPTTokenizer

    @property
    def config(self) -> opt.OPTConfig:
        return self.inferencer.config

    @property
    def max_positions(self) -> int:
        return self.config.max_positions

    def __repr__(self) -> str:
        c = self.config
        return (f"LM({c.num_layers} layers, hidden {c.hidden_size}, compute {c.dtype}, "
                f"batch {self.inferencer.batch_size})")  # fmt: skip

    # -- text -------------------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids with BOS, continuation ids), as lm-evaluation-harness splits them:
        ("Answer:", " yes") -> ([2, 33683, 35], [4420])."""
        bos = self.config.bos_id
        if not context:
            return [bos], self.tokenizer.encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        return [bos] + context_ids, whole[len(context_ids) :]

    def loglikelihood(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        """(sum of log p(continuation tokens | context), whether every one of them is the
        model's argmax) for each (context, continuation); see the module's conventions."""
        return self.score_tokens([self.encode_pair(c, x) for c, x in pairs])

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """log p(text) for each text: every token given BOS and all that precedes it, in
        windows of `max_positions` tokens (each seeing the one token before it)."""
        windows, owners = [], []
        for i, text in enumerate(texts):
            tokens = [self.config.bos_id] + self.tokenizer.encode(text)
            for start in range(1, len(tokens), self.max_positions - 1):
                stop = min(start + self.max_positions - 1, len(tokens))
                windows.append((tokens[start - 1 : start], tokens[start:stop]))
                owners.append(i)
        totals = [0.0] * len(texts)
        for i, (score, _) in zip(owners, self.score_tokens(windows), strict=True):
            totals[i] += score
        return totals

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        until: Sequence[str] | str | None = None,
        eos: bool = True,
    ) -> list[str]:
        """Greedy continuation text of each prompt (without the prompt): at most
        `max_new_tokens` tokens, ended by EOS (`eos=False`: EOS is an ordinary token and every
        row runs `max_new_tokens`), then cut before the first of the `until` strings."""
        stops = [until] if isinstance(until, str) else list(until or [])
        contexts = [[self.config.bos_id] + self.tokenizer.encode(p) for p in prompts]
        texts = [self.tokenizer.decode(ids) for ids in
                 self.generate_tokens(contexts, max_new_tokens, eos=eos)]  # fmt: skip
        return [_cut(text, stops) for text in texts]

    # -- token ids --------------------------------------------------------------------------
    def score_tokens(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[float, bool]]:
        """(sum of log p(continuation ids | context ids), all greedy) for each pair of id lists;
        contexts start with BOS 2 and are never empty. Shared contexts are encoded once."""
        examples, positions = [], []
        for i, (context, continuation) in enumerate(pairs):
            if not context:
                raise ValueError(f"pair {i}: an empty context (put BOS 2 first)")
            if continuation:
                examples.append(EvalExample(len(examples), tuple(context), tuple(continuation)))
                positions.append(i)
        out = [(0.0, True)] * len(pairs)  # an empty continuation: log 1, trivially greedy
        for i, scored in zip(positions, self.inferencer.score_examples(examples, greedy=True),
                             strict=True):  # fmt: skip
            out[i] = scored
        return out

    def generate_tokens(
        self, contexts: Sequence[Sequence[int]], max_new_tokens: int = 256, eos: bool = True
    ) -> list[list[int]]:
        """Greedy new ids after each context (BOS first), without the EOS that ended them."""
        inferencer = dataclasses.replace(
            self.inferencer, max_new_tokens=max_new_tokens, stop_at_eos=eos
        )
        examples = [EvalExample(i, tuple(c), ()) for i, c in enumerate(contexts)]
        return inferencer.generate_examples(examples)


def _cut(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any non-empty stop string."""
    for stop in stops:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def load(
    path: str | Path,
    *,
    dtype: str | None = None,
    step: int | None = None,
    mesh: partitioning.MeshConfig | None = None,
    batch_size: int | None = None,
    tokenizer: OPTTokenizer | None = None,
) -> LM:
    """An `LM` from any checkpoint (format detected, see `optiml.models.formats`).

    dtype: the compute dtype (None: the checkpoint's; float32 for HF / metaseq weights);
    step: a training run's step (None: the newest); mesh: the device mesh (None: every device
    data-parallel); batch_size: rows per batch, a multiple of the data-parallel size (None: 8,
    rounded up to one); tokenizer: None finds the checkpoint's own files, else
    $OPTIML_DATA_DIR/gpt2_bpe.
    """
    config = formats.read_config(path, compute_dtype=dtype)
    partitioner = partitioning.Partitioner.create(mesh or partitioning.MeshConfig())
    abstract, shardings = partitioner.abstract_init(
        lambda rng: opt.init_params(config, rng, unbox=False), jax.random.key(0)
    )
    params, config = formats.read(path, config=config, step=step, target=abstract)
    params = jax.device_put(params, shardings)  # host arrays (HF, metaseq) onto the mesh
    if batch_size is None:
        shards = batch_shards(partitioner)
        batch_size = -(-DEFAULT_BATCH_SIZE // shards) * shards
    inferencer = Inferencer(params, config, partitioner=partitioner, batch_size=batch_size)
    return LM(inferencer, tokenizer or formats.tokenizer_for(path))


def from_params(params: Any, config: opt.OPTConfig, tokenizer: OPTTokenizer, **kwargs) -> LM:
    """An `LM` over params already in memory (e.g. a notebook's training state);
    `kwargs` go to the `Inferencer` (partitioner, batch_size)."""
    return LM(Inferencer(params, config, **kwargs), tokenizer)
