"""The README's main job: the same model before and after instruction tuning, on one plan.

    make run      # = python -m optiml.main --gin_file=runs/quickstart.gin --gin.MODEL_DIR=...

`run` is what `gin/runs/quickstart.gin` binds to RUN. Its steps are callables that gin configures
(the same file tunes the tiny model on the CPU or, with a bigger model gin and imported weights,
a real one), each printing one line and a progress bar:

1. prepare: tokenize each (mixture, split) of `caches` once into `cache_dir` through seqio
   (`optiml.pipeline.prepare`); tasks already in the cache are skipped. The tasks a mixture's
   levels make fully supervised (`LevelConfig.supervised_tasks`: the quickstart's ten, since the
   local data holds none of the paper's) are registered so first: 10% of them held out.
2. `train()`: `optiml.trainer.train` with `checkpoint_start`, so checkpoint 0 is the untuned
   model; a run that was cut off resumes.
3. `evaluate(params_dir=MODEL_DIR, step=0, run_dir=MODEL_DIR/untuned)`: the untuned model.
4. `evaluate()`: the tuned model (the newest checkpoint), into MODEL_DIR.
Then both reports side by side per level (`optiml.evaluation.compare.summary`), what a tiny CPU
model can and cannot show, and where the reports are. A rerun redoes nothing that is done
(evaluation results are kept per task).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

UNTUNED_DIR = "untuned"  # MODEL_DIR/untuned: the report of checkpoint 0
NOTE = """\
What this shows: tuning on instructions teaches even a tiny model what the tasks it saw expect.
On held-out instances of those tasks (the fully supervised level) the untuned model, random
weights, answers with noise; after minutes of tuning on a CPU the tuned one answers with a label
word of the task in front of it ("no" for the yes/no tasks, "Happy" for joy detection,
"Positive" or "positive" as each task writes it), mostly one label per task, which is right on
a good share of instances. What it cannot show: reading the input to pick the right label (a
model this small needs far more steps), nor the paper's point, generalization to unseen tasks
(the held-out levels), which needs a pretrained model of billions of parameters: those stay
where they started. No number here is comparable to the paper's; gin/runs/quickstart.gin shows
how to run a real model."""


def prepare_caches(cache_dir: str, caches: Sequence[tuple[str, str]], seed: int = 0) -> None:
    """Tokenizes every (mixture, split) pair into `cache_dir`; broken tasks are only reported."""
    import optiml.registry  # noqa: F401  (registers the mixtures)
    from optiml.pipeline import prepare

    for mixture, split in caches:
        start = time.perf_counter()
        report = prepare.prepare(prepare.mixture_tasks(mixture), cache_dir, split=split, seed=seed)
        _say(
            f"      {len(report.prepared)} tasks tokenized ({report.num_examples} examples), "
            f"{len(report.skipped)} already cached, {len(report.failed)} failed "
            f"({time.perf_counter() - start:.0f} s)"
        )
        for name, message in sorted(report.failed.items()):
            _say(f"      left out {name}: {message}")


def run(
    *,
    model_dir: str,
    cache_dir: str | None,
    train: Callable[..., dict[str, float]] | None,
    evaluate: Callable[..., dict[str, Any]] | None,
    caches: Sequence[tuple[str, str]] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Prepare -> train -> evaluate the untuned and the tuned model; returns {"train": the last
    metrics, "untuned": its report, "report": the tuned model's report}.

    `train` / `evaluate` are gin references (`@trainer.train`, `@evaluate.evaluate`); None skips
    the step: without `train`, `evaluate()` alone evaluates the model it is configured with.
    """
    from optiml import paths

    paths.data_dir()  # no data: stop with one line before anything is written
    if caches and not cache_dir:
        raise ValueError("quickstart.run: `caches` are given but `cache_dir` is not")
    _register_roles(mixture for mixture, _ in caches)
    evaluations = 0 if evaluate is None else 2 if train is not None else 1
    phase = _Phases(bool(caches) + (train is not None) + evaluations)
    if caches:
        phase(f"prepare {', '.join(f'{m} ({s})' for m, s in caches)} in {cache_dir}")
        prepare_caches(cache_dir, caches, seed=seed)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    if train is not None:
        phase(f"fine-tune into {model_dir} (checkpoint 0: the untuned model)")
        result["train"] = train()
    if evaluations == 1:
        phase(f"evaluate into {model_dir}")
        result["report"] = evaluate()
    elif evaluations == 2:
        untuned_dir = str(Path(model_dir) / UNTUNED_DIR)
        phase(f"evaluate the untuned model (step 0) into {untuned_dir}")
        result["untuned"] = evaluate(
            params_dir=model_dir, step=0, run_dir=untuned_dir, print_report=False
        )
        tuned_step = _latest_step(model_dir)
        phase(f"evaluate the tuned model (step {tuned_step}) into {model_dir}")
        result["report"] = evaluate(print_report=False)
        _print_summary(result["untuned"], result["report"], model_dir, untuned_dir, tuned_step)
    return result


class _Phases:
    """Prints `[i/n] what` for the i-th of n phases."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        _say(f"[{self.done}/{self.total}] {what}")


def _print_summary(
    untuned: dict[str, Any], tuned: dict[str, Any], model_dir: str, untuned_dir: str, step: int
) -> None:
    from optiml.evaluation import compare

    names = ("untuned (step 0)", f"tuned (step {step})")
    table = compare.summary(untuned, tuned, names=names)
    files = ", ".join(str(Path(model_dir) / f"report.{ext}") for ext in ("md", "json", "png"))
    _say(
        f"\nBefore -> after, per level (dev instances; scores 0-100, ROUGE-L or accuracy):\n"
        f"{table}\n\n{NOTE}\n\n"
        f"report: {files}\n"
        f"compare two runs: {_python()} -m optiml.evaluation.compare {untuned_dir} {model_dir}"
    )


def _register_roles(mixtures: Iterable[str]) -> None:
    """The tasks a training mixture's levels make fully supervised (optiml_mix:quickstart's ten)
    hold out 10% of their instances in this process: training skips them, evaluation reads them."""
    import optiml.registry as registry
    from optiml.bench import mixing

    for mixture in mixtures:
        if mixture in mixing.MIXTURES:
            registry.register_roles(mixing.MIXTURES[mixture].level_config)


def _latest_step(model_dir: str) -> int:
    from optiml import checkpointing

    step = checkpointing.newest_step(Path(model_dir) / "checkpoints")
    if step is None:
        raise FileNotFoundError(f"no training checkpoint in {model_dir}/checkpoints")
    return step


def _python() -> str:
    """This interpreter as the user can type it: `.venv/bin/python` under the working directory
    (`make run`), else `python`."""
    here = Path(sys.executable)
    return os.path.relpath(here) if here.is_relative_to(Path.cwd()) else "python"


def _say(line: str) -> None:
    print(line, flush=True)
