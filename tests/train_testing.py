"""Shared pieces of the training tests: a tiny fp32 OPT, synthetic batches, a few sharded steps.

Also a subprocess worker for the multi-process and SIGKILL tests:
    python tests/train_testing.py '{"run_dir": ..., "devices": 4, "steps": 6, ...}'
runs `optiml.trainer.train` on the tiny model in a fresh process with `devices` fake CPU devices;
optional keys: "distributed" (coordinator_address, num_processes, process_id), "mesh",
"kill_at" / "term_at" / "raise_at" (SIGKILL itself, SIGTERM itself then "delay" seconds per
later batch, or raise, when asked for batch number N), "checkpoint_every", "full_disk_at" (from
batch N on, once the folder "after" exists, no file may grow beyond "limit" bytes: writes fail
with EFBIG, as on a full disk). A run stopped on a fault it detected (optiml.errors.RunStopped)
prints "optiml: " and its one-line message on stderr and exits 1, as `optiml.main` does.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    ffn_dim=64,
    max_positions=64,
    dtype="float32",
    dropout=0.1,
)
LENGTH = 32
BATCH = 8


def tiny_config(**overrides):
    from optiml.models.opt import OPTConfig

    return OPTConfig(**{**TINY, **overrides})


def synthetic(seed: int = 0):
    from optiml.synthetic import SyntheticData

    return SyntheticData(length=LENGTH, vocab_size=TINY["vocab_size"], seed=seed, max_prompt=6)


def run_steps(partitioner, *, steps=5, config=None, learning_rate=1e-3, **step_options):
    """`steps` train steps of the tiny model on synthetic batches -> (losses, final state)."""
    import jax
    import numpy as np

    from optiml import optimizer, train_step
    from optiml.models.opt import OPTDecoder

    model = OPTDecoder(config or tiny_config())
    tx = optimizer.make_optimizer(
        optimizer.OptimizerConfig(learning_rate=learning_rate, warmup_steps=2), 100
    )
    init = functools.partial(train_step.init_train_state, model, tx)
    state, shardings = partitioner.init(init, jax.random.key(0))
    step = partitioner.jit(
        train_step.make_train_step(model, **step_options),
        (shardings, partitioner.data_sharding, partitioner.replicated),
        (shardings, partitioner.replicated),
        donate_argnums=0,
    )
    stream = synthetic()(batch_size=BATCH)
    losses = []
    for _ in range(steps):
        batch = partitioner.global_batch(next(stream), BATCH)
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    return np.array(losses), state


def metric_rows(run_dir) -> list[dict]:
    from pathlib import Path

    run_dir = Path(run_dir)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def logged_losses(run_dir) -> dict[int, float]:
    """step -> loss; a resumed run's rows for a step replace the killed run's."""
    return {row["step"]: row["loss"] for row in metric_rows(run_dir) if "loss" in row}


def train_tiny(run_dir, **overrides):
    """optiml.trainer.train on the tiny model: 6 steps, data=8 mesh, checkpoints every 2."""
    from optiml import partitioning, trainer
    from optiml.optimizer import OptimizerConfig

    options = dict(
        run_dir=str(run_dir),
        model_config=tiny_config(),
        train_data=synthetic(),
        steps=6,
        batch_size=BATCH,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=2),
        mesh=partitioning.MeshConfig(data=8),
        checkpoint_every=2,
        log_every=1,
        tensorboard=False,
    )
    return trainer.train(**{**options, **overrides})


class _InterruptAt:
    """Wraps a stream factory: when asked for batch `at` the process is interrupted: "kill"
    (SIGKILL: it dies there), "term" (SIGTERM: a preemption notice; then it waits `delay` seconds
    before each later batch, steps as long as on a TPU so that hosts can agree where to stop) or
    "raise" (a RuntimeError, like a crash in the input pipeline)."""

    def __init__(self, factory, at: int, how: str, delay: float = 0.0, **full_disk) -> None:
        self.factory, self.at, self.how, self.delay = factory, at, how, delay
        self.full_disk = full_disk  # how == "full_disk": limit (bytes), after (a folder)

    def __call__(self, **kwargs):
        import time

        stream = self.factory(**kwargs)
        at, how, delay, full_disk = self.at, self.how, self.delay, self.full_disk

        class Stream:
            def __next__(self):
                if stream.index == at and how == "raise":
                    raise RuntimeError(f"interrupted by the test at batch {at}")
                if stream.index == at and how == "full_disk":
                    _limit_file_size(**full_disk)
                    return next(stream)
                if stream.index == at:
                    os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGTERM)
                elif stream.index > at:
                    time.sleep(delay)
                return next(stream)

            def get_state(self):
                return stream.get_state()

            def set_state(self, state):
                stream.set_state(state)

        return Stream()


def _limit_file_size(limit: int, after: str) -> None:
    """Once the folder `after` exists (an earlier checkpoint, finished), no file may grow beyond
    `limit` bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail with EFBIG)."""
    import resource
    import time

    deadline = time.monotonic() + 120
    while not os.path.isdir(after) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    run_dir, *, processes: int = 1, devices: int = 8, only: dict | None = None, **args
) -> list[tuple[int, str]]:
    """Runs `worker` in `processes` fresh Python processes with `devices` fake CPU devices each,
    joined over loopback into one jax.distributed job when processes > 1 -> [(return code,
    stdout + stderr)] in process order. `args` go to every process, `only={i: {...}}` to one."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    address = f"127.0.0.1:{_free_port()}"
    running = []
    for process_id in range(processes):
        worker_args = {"run_dir": str(run_dir), "devices": devices, **args}
        worker_args |= (only or {}).get(process_id, {})
        if processes > 1:
            worker_args["distributed"] = dict(
                coordinator_address=address, num_processes=processes, process_id=process_id
            )
        running.append(
            subprocess.Popen(
                [sys.executable, str(root / "tests" / "train_testing.py"), json.dumps(worker_args)],
                cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = []
    for process in running:
        try:
            out, _ = process.communicate(timeout=300)
        finally:
            process.kill()
        results.append((process.returncode, out))
    return results


def worker(args: dict) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args['devices']}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    from optiml import errors, partitioning

    data = synthetic()
    for how in ("kill", "term", "raise"):
        if args.get(f"{how}_at") is not None:
            data = _InterruptAt(data, args[f"{how}_at"], how, args.get("delay", 0.0))
    if args.get("full_disk_at") is not None:
        full_disk = dict(limit=args["limit"], after=args["after"])
        data = _InterruptAt(data, args["full_disk_at"], "full_disk", **full_disk)
    distributed = args.get("distributed")
    try:
        train_tiny(
            args["run_dir"],
            train_data=data,
            steps=args["steps"],
            mesh=partitioning.MeshConfig(**args.get("mesh", {})),
            distributed=partitioning.DistributedConfig(**distributed) if distributed else None,
            checkpoint_every=args.get("checkpoint_every", 1000),
        )
    except errors.RunStopped as e:
        print(f"optiml: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    worker(json.loads(sys.argv[1]))
