"""The training loop's own cost: `optiml.trainer.train` vs the bare jitted step, on the tiny model.

    .venv/bin/python benchmarks/trainer_loop.py [--steps 200] [--batch 8] [--length 64]
        [--log_every 10] [--repeats 3]

Three ways to run the same train step (tiny OPT, synthetic batches, CPU, one device):
  bare, no sync    the jitted step in a Python loop, nothing read until the end
  bare, sync       the same loop reading loss and grad_norm after every step (what a loop that
                   checks every step for NaN does: the host waits for each step)
  trainer          `trainer.train(log_every=...)`, checkpoints only at the end, no TensorBoard
Seconds per step are steady-state: the time between fetching the second batch and the last one
(the first step, which compiles, is before that), median over `--repeats` runs. Prints each
and the ratios to the bare loop without sync (1.0 = no overhead). On a CPU the host and the
"device" share cores, so the difference is small there; on a GPU/TPU a per-step sync leaves the
accelerator idle while Python prepares the next step.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import jax

from optiml import optimizer, partitioning, train_step, trainer
from optiml.models import opt
from optiml.synthetic import SyntheticData


class TimedData:
    """A data factory that records when each batch is asked for."""

    def __init__(self, length: int, vocab_size: int) -> None:
        self.data = SyntheticData(length=length, vocab_size=vocab_size, max_prompt=length // 8)
        self.times: list[float] = []

    def __call__(self, **kwargs):
        stream = self.data(**kwargs)
        outer = self

        class Stream:
            def __next__(self):
                outer.times.append(time.perf_counter())
                return next(stream)

            def get_state(self):
                return stream.get_state()

            def set_state(self, state):
                stream.set_state(state)

        return Stream()

    def per_step(self) -> float:
        return (self.times[-1] - self.times[1]) / (len(self.times) - 2)


def bare(config: opt.OPTConfig, args: argparse.Namespace, sync: bool) -> float:
    partitioner = partitioning.Partitioner.create(partitioning.MeshConfig(data=1))
    model = opt.OPTDecoder(config)
    tx = optimizer.make_optimizer(optimizer.OptimizerConfig(warmup_steps=1), args.steps)
    init = functools.partial(train_step.init_train_state, model, tx)
    state, shardings = partitioner.init(init, jax.random.key(0))
    step = partitioner.jit(
        train_step.make_train_step(model),
        (shardings, partitioner.data_sharding, partitioner.replicated),
        (shardings, partitioner.replicated),
        donate_argnums=0,
    )
    data = TimedData(args.length, config.vocab_size)
    stream = data(batch_size=args.batch)
    rng = jax.random.key(0)
    for _ in range(args.steps):
        batch = partitioner.global_batch(next(stream), args.batch)
        state, metrics = step(state, batch, rng)
        if sync:
            float(metrics["loss"]), float(metrics["grad_norm"])
    jax.block_until_ready(state)
    return data.per_step()


def loop(config: opt.OPTConfig, args: argparse.Namespace) -> float:
    data = TimedData(args.length, config.vocab_size)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer.train(
            run_dir=run_dir,
            model_config=config,
            train_data=data,
            steps=args.steps,
            batch_size=args.batch,
            optimizer=optimizer.OptimizerConfig(warmup_steps=1),
            mesh=partitioning.MeshConfig(data=1),
            checkpoint_every=args.steps,
            log_every=args.log_every,
            async_checkpoints=False,
            tensorboard=False,
        )
    return data.per_step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = opt.named_config("tiny", dtype="float32")
    devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
    print(f"tiny OPT ({opt.param_count(config):,} params), batch {args.batch} x {args.length}, "
          f"{args.steps} steps, {devices}")  # fmt: skip
    runs = {"bare, no sync": [], "bare, sync": [], "trainer": []}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every variant alike
        runs["bare, no sync"].append(bare(config, args, sync=False))
        runs["bare, sync"].append(bare(config, args, sync=True))
        runs["trainer"].append(loop(config, args))
    base = statistics.median(runs["bare, no sync"])
    for name, times in runs.items():
        ms = statistics.median(times) * 1e3
        print(f"{name:<16} {ms:8.2f} ms/step   ratio to bare, no sync {ms / 1e3 / base:6.3f}")


if __name__ == "__main__":
    main()
