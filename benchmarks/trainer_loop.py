"""The training loop's own cost: `optiml.trainer.train` vs the bare jitted step, on the tiny model.

    .venv/bin/python benchmarks/trainer_loop.py [--steps 100] [--batch 8] [--length 64]
        [--log_every 10] [--repeats 3] [--vocab_size 50272]

The same train step (tiny OPT, fp32, synthetic batches, CPU) run two ways:
  bare step   the jitted step in a Python loop over ready device batches, nothing read until
              the end (`benchmarks/train_step.py`'s optiml side): the device-bound floor
  trainer     `trainer.train(log_every=...)`: batches made and sent each step, metrics, progress,
              checkpoint only at the end, no TensorBoard; steady state = the time between asking
              for the second batch and for the last one (the first step compiles before that)
Median over `--repeats` interleaved runs; prints ms/step and the ratio trainer / bare step.
Run it with PYTHONPATH at another checkout to compare trainers (e.g. before and after a change).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
from train_step import batches, time_optiml  # benchmarks/train_step.py

from optiml import optimizer, partitioning, trainer
from optiml.models import opt
from optiml.models.params import param_count
from optiml.synthetic import SyntheticData, SyntheticStream


class TimedStream(SyntheticStream):
    """Synthetic batches; records when each is asked for in `times`."""

    times: list[float]

    def __next__(self):
        self.times.append(time.perf_counter())
        return super().__next__()


def loop(config: opt.OPTConfig, args: argparse.Namespace) -> float:
    """Steady-state seconds per step of `trainer.train`."""
    data = SyntheticData(args.length, config.vocab_size, max_prompt=args.length // 8)
    times: list[float] = []

    def factory(*, batch_size: int, process_index: int = 0, process_count: int = 1):
        stream = TimedStream(data, batch_size, process_index, process_count)
        stream.times = times
        return stream

    with tempfile.TemporaryDirectory() as run_dir:
        trainer.train(
            run_dir=run_dir,
            model_config=config,
            train_data=factory,
            steps=args.steps,
            batch_size=args.batch,
            optimizer=optimizer.OptimizerConfig(warmup_steps=1),
            mesh=partitioning.MeshConfig(data=1),
            checkpoint_every=args.steps,
            log_every=args.log_every,
            async_checkpoints=False,
            tensorboard=False,
        )
    return (times[-1] - times[1]) / (len(times) - 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab_size", type=int, default=50272, help="smaller: less compute")
    args = parser.parse_args()
    config = opt.named_config("tiny", dtype="float32", vocab_size=args.vocab_size)
    devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
    print(f"tiny OPT ({param_count(config):,} params), batch {args.batch} x {args.length}, "
          f"{args.steps} steps, {devices}")  # fmt: skip
    rows = batches(config, args.batch, args.length, 8)
    runs: dict[str, list[float]] = {"bare step": [], "trainer": []}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        runs["bare step"].append(time_optiml(config, rows, args.steps, "none"))
        runs["trainer"].append(loop(config, args))
    bare = statistics.median(runs["bare step"])
    for name, times in runs.items():
        median = statistics.median(times)
        print(
            f"{name:<10} {median * 1e3:8.2f} ms/step   ratio to the bare step {median / bare:.3f}"
        )


if __name__ == "__main__":
    main()
