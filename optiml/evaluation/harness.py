"""An lm-evaluation-harness backend: any lm-eval task on an optiml/HF/metaseq OPT checkpoint in JAX.

    pip install optiml[lm_eval]
    optiml lm-eval run --model optiml --model_args path=CKPT --tasks hellaswag arc_easy
    optiml lm-eval run --model optiml --model_args path=CKPT,dtype=bfloat16,model=4 \
        --tasks my_task --include_path my_tasks/ --batch_size 32

`optiml lm-eval ...` is lm-eval's own command line with the `optiml` model registered (lm-eval
0.4.13 reads no plugin entry points, so the bare `lm_eval` command cannot see it); in Python,
importing this module registers it: `lm_eval.simple_evaluate(model="optiml",
model_args="path=CKPT", tasks=[...])`.

model_args: `path` (any checkpoint `optiml.lm.load` reads: optiml folder, training run, HF
folder, metaseq .pt), `dtype` (compute dtype; default the checkpoint's, float32 for HF/metaseq),
`step` (a training run's step), `data` / `fsdp` / `model` (mesh axis sizes; default every device
data-parallel), `max_gen_toks` (256). `--batch_size N` sets rows per batch, rounded up to a
multiple of the data-parallel size (lm-eval's default 1 and "auto" mean `optiml.lm`'s 8).

The numbers are those of lm-eval's `hf` backend on the same OPT model: log-likelihoods and greedy
generations go through `optiml.lm.LM` (whose conventions are lm-eval's: BOS first, a context's
trailing space moved to the continuation), and rolling log-likelihoods use lm-eval's own windows
over its own encoding, which for OPT (whose tokenizer adds BOS) also scores the first BOS, as
`hf` does. Only greedy decoding: a task asking for sampling is refused with its name. Prompts too
long for the model are cut on the left keeping BOS (`hf` cuts without keeping it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lm_eval import utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

from optiml import lm, partitioning
from optiml.token_ids import NAMES


@register_model("optiml")
class OptimlLM(LM):
    """lm-eval's `LM` interface over `optiml.lm.LM`."""

    def __init__(
        self,
        path: str,
        dtype: str | None = None,
        step: int | None = None,
        data: int = -1,
        fsdp: int = 1,
        model: int = 1,
        max_gen_toks: int = 256,
        batch_size: int | str | None = None,
        **ignored: Any,  # max_batch_size, device: JAX places the model on its mesh
    ) -> None:
        super().__init__()
        rows = None if batch_size in (None, "auto", 1, "1") else int(batch_size)
        mesh = partitioning.MeshConfig(data=data, fsdp=fsdp, model=model)
        self.model = lm.load(path, dtype=dtype, step=step, mesh=mesh, batch_size=rows)
        self.max_gen_toks = int(max_gen_toks)

    # -- lm-eval's three request types -------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """[(log p(continuation | context), is greedy)] for Instance.args = (context, cont)."""
        return self.model.loglikelihood([req.args for req in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text) over lm-eval's disjoint rolling windows of its BOS-first encoding."""
        bos, windows, owners = self.model.config.bos_id, [], []
        for i, (text,) in enumerate(req.args for req in requests):
            tokens = [bos] + self.model.tokenizer.encode(text)
            for context, continuation in map(
                utils.make_disjoint_window,
                utils.get_rolling_token_windows(tokens, bos, self.model.max_positions, 1),
            ):
                windows.append((context, continuation))
                owners.append(i)
        totals = [0.0] * len(requests)
        for i, (score, _) in zip(owners, self.model.score_tokens(windows), strict=True):
            totals[i] += score
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, cut at the request's `until` strings (and "</s>", as `hf`)."""
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(repr(sorted(req.args[1].items())), []).append(i)
        out: list[str] = [""] * len(requests)
        eos = NAMES[self.model.config.eos_id]  # "</s>", as `hf` adds it
        for rows in groups.values():
            first = requests[rows[0]]
            kwargs = normalize_gen_kwargs(first.args[1], self.max_gen_toks)
            if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0.0:
                raise ValueError(
                    f"task {first.task_name!r} asks for sampling ({first.args[1]}); the optiml "
                    "backend decodes greedily (the paper's decoding)"
                )
            until = handle_stop_sequences(kwargs["until"], eos=eos)
            texts = self.model.generate([requests[i].args[0] for i in rows],
                                        kwargs["max_gen_toks"], until=until)  # fmt: skip
            for i, text in zip(rows, texts, strict=True):
                out[i] = text
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """`optiml lm-eval ARGS`: lm-eval's command line with the `optiml` model registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
