"""The training loop, readable top to bottom: `train(...)` is what `gin/runs/*.gin` bind to RUN.

    python -m optiml.main --gin_file=runs/quickstart.gin --gin.MODEL_DIR="'/tmp/quickstart'"

One call: join the multi-host job (if configured) -> build the mesh -> resume from the newest
checkpoint in `run_dir/checkpoints` (train state + data position), or start from random or
imported weights -> for each step: next batch, sharded train step, metrics, periodic teacher-forced
eval and checkpoint -> final checkpoint.

The loop never waits for the device between steps: each step's metrics stay on the device (the
next batch is prepared while it runs). At every step that logs, evaluates or saves, the metrics
of the steps since the last such read come back in one transfer and are checked in order; the
first step with a NaN/inf loss or gradient norm raises NonFiniteError there, before that step's
checkpoint is started -- checkpoints are only written at such steps, so none holds a non-finite
state, and the error names the step.
On SIGTERM (a preempted TPU VM, `tpu_scripts/stop.sh`) the step boundary after it saves a
checkpoint and `train` returns with one line (`optiml.preemption`); the same command resumes.

Data is pluggable: `train_data` / `eval_data` are factories called as
`factory(batch_size=B, process_index=i, process_count=n)` (B global) that return an iterator of
numpy batch dicts (the five decoder features, [B / n, length]: rows [i B/n, (i+1) B/n) of each
global batch) with `get_state()` / `set_state(state)`: `optiml.synthetic.SyntheticData` in tests,
`optiml.pipeline.stream.from_mixture` (the packed OPT-IML mixture) in the run configs.

Outputs in `run_dir`: `optiml_config.json` (the model's OPTConfig, so that the run is a checkpoint
`optiml.lm.load` and `convert optiml-to-hf` read), `checkpoints/`, TensorBoard event files (loss,
cross_entropy, accuracy, grad_norm, learning_rate, tokens_per_second, mfu, eval/...) and the same
scalars as JSON lines in `metrics.jsonl` (one `{"step": 10, "loss": ...}` per write; a resumed
run first drops the rows written after its checkpoint: one record per step), both through clu's
metric writers (`optiml.metric_writers`).

Faults stop the run with one line (`optiml.errors.RunStopped`, printed by `optiml.main`): a NaN
loss, a checkpoint save that fails or does not fit on disk (checked after every step; earlier
checkpoints stay). A damaged newest checkpoint is set aside and the run resumes from the newest
intact one (see `optiml.checkpointing.Checkpointer`).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
from tqdm import tqdm

from optiml import (
    checkpointing,
    errors,
    flops,
    metric_writers,
    partitioning,
    preemption,
    train_step,
    validation,
)
from optiml.models import convert, opt
from optiml.optimizer import OptimizerConfig, make_optimizer, schedule


class BatchStream(Protocol):
    def __next__(self) -> dict[str, np.ndarray]: ...
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...


DataFactory = Callable[..., BatchStream]  # (batch_size=, process_index=, process_count=)


class NonFiniteError(errors.RunStopped, FloatingPointError):
    """The loss or gradient norm became NaN/inf; nothing from that step was saved."""


def train(
    *,
    run_dir: str,
    model_config: opt.OPTConfig,
    train_data: DataFactory,
    steps: int,
    batch_size: int,
    optimizer: OptimizerConfig | None = None,
    mesh: partitioning.MeshConfig | None = None,
    distributed: partitioning.DistributedConfig | None = None,
    loss_normalization: str = "token",
    z_loss: float = 0.0,
    num_microbatches: int = 1,
    seed: int = 0,
    init_params: str | None = None,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    checkpoint_start: bool = False,
    async_checkpoints: bool = True,
    eval_data: DataFactory | None = None,
    eval_every: int = 500,
    eval_batches: int = 8,
    log_every: int = 10,
    peak_flops_per_device: float | None = None,
    tensorboard: bool = True,
) -> dict[str, float]:
    """Trains `steps` optimizer steps of `batch_size` rows (global); returns the last metrics.

    `init_params`: an optiml checkpoint folder (`python -m optiml.models.convert hf-to-optiml
    facebook-opt-1.3b/ OUT`) to start from when the run directory has no checkpoint yet.
    `checkpoint_start`: also save the state a fresh run starts from as step 0, kept whatever
    `keep_checkpoints` says, so the untuned model can be evaluated (`evaluate(step=0)`).
    Raises NonFiniteError on a NaN/inf loss or gradient norm; the newest checkpoint on disk is
    then the last good one.
    """
    validation.check_call(train, locals())  # the gin entry point checked these already
    run_path = Path(run_dir)
    optimizer = optimizer or OptimizerConfig()
    partitioning.initialize_distributed(distributed)
    partitioner = partitioning.Partitioner.create(mesh or partitioning.MeshConfig())
    model = opt.OPTDecoder(model_config)
    tx = make_optimizer(optimizer, steps)
    learning_rate = schedule(optimizer, steps)
    rng = jax.random.key(seed)
    init_fn = functools.partial(train_step.init_train_state, model, tx)
    abstract_state, shardings = partitioner.abstract_init(init_fn, rng)

    shard_id, num_shards = partitioner.input_shard(batch_size)
    stream = train_data(batch_size=batch_size, process_index=shard_id, process_count=num_shards)
    if jax.process_index() == 0:  # makes the run a checkpoint that optiml.lm / convert can read
        convert.save_config(run_path, model_config)
    checkpointer = checkpointing.Checkpointer(
        run_path / "checkpoints",
        save_every=checkpoint_every,
        keep=keep_checkpoints,
        keep_steps=(0,) if checkpoint_start else (),
        async_save=async_checkpoints,
    )
    if checkpointer.latest_step() is not None:
        state, data_state = checkpointer.restore(abstract_state)
        if data_state is not None:
            stream.set_state(data_state)
        _say(f"resumed from {checkpointer.directory}/{checkpointer.latest_step()}")
    elif init_params:
        params = checkpointing.load_initial_params(init_params, model_config, abstract_state.params)
        create = functools.partial(train_step.TrainState.create, apply_fn=model.apply, tx=tx)
        state = jax.jit(lambda p: create(params=p), out_shardings=shardings)(params)
        _say(f"starting from the params in {init_params}")
    else:
        state, _ = partitioner.init(init_fn, rng)
    start = int(jax.device_get(state.step))
    if checkpoint_start and checkpointer.latest_step() is None:
        checkpointer.save(0, state, stream.get_state(), force=True)

    step_fn = partitioner.jit(
        train_step.make_train_step(
            model,
            normalization=loss_normalization,
            z_loss=z_loss,
            num_microbatches=num_microbatches,
        ),
        in_shardings=(shardings, partitioner.data_sharding, partitioner.replicated),
        out_shardings=(shardings, partitioner.replicated),
        donate_argnums=0,
    )
    evaluate = None
    if eval_data is not None:
        evaluate = _make_evaluator(
            partitioner, model, shardings.params, eval_data, batch_size, eval_batches,
            normalization=loss_normalization, z_loss=z_loss,
        )  # fmt: skip

    writer = metric_writers.create_writer(run_path, tensorboard=tensorboard, resumed_at=start)
    peak = peak_flops_per_device or flops.peak_flops_per_device()
    length = None
    unread: list[dict[str, jax.Array]] = []  # metrics of the steps since the last read, on device
    window: list[dict[str, float]] = []  # metrics of the steps since the last log, read
    metrics: dict[str, float] = {}
    progress = tqdm(
        total=steps, initial=start, desc="train", disable=jax.process_index() != 0, file=sys.stdout
    )
    tick = time.perf_counter()
    watcher = preemption.Watcher()  # SIGTERM: save at the next step boundary, return
    try:
        batch = _next(stream, start) if start < steps else None
        for step in range(start, steps):
            length = batch["decoder_input_tokens"].shape[1]
            global_batch = partitioner.global_batch(batch, batch_size)
            state, step_metrics = step_fn(state, global_batch, rng)
            data_state = stream.get_state()  # the position after the batches `state` has seen
            if step + 1 < steps:
                batch = _next(stream, step + 1)  # host work overlaps the device step
            unread.append(step_metrics)  # not read: the device runs ahead of Python
            checkpointer.check()  # a failed asynchronous save stops the run here
            progress.update(1)

            done = step + 1
            preempted = watcher.reached(done)
            log = done % log_every == 0 or done == steps or preempted
            evaluating = evaluate is not None and (done % eval_every == 0 or done == steps)
            saving = done % checkpoint_every == 0 or done == steps or preempted
            if log or evaluating or saving:  # one transfer; a non-finite step raises here
                window += _read_finite(done - len(unread) + 1, unread, checkpointer)
                unread = []
            if log:
                elapsed, tick = time.perf_counter() - tick, time.perf_counter()
                lr = float(learning_rate(step))
                metrics = _summarize_window(window, lr, elapsed, batch_size * length)
                if peak:
                    flops_per_second = metrics["tokens_per_second"] * flops.flops_per_token(
                        model_config, length
                    )
                    metrics["mfu"] = flops_per_second / (jax.device_count() * peak)
                window = []
                writer.write_scalars(done, metrics)
                progress.set_postfix_str(_short(metrics), refresh=False)
            if evaluating:
                eval_metrics = evaluate(state.params)
                writer.write_scalars(done, {f"eval/{k}": v for k, v in eval_metrics.items()})
                _say(f"step {done}: eval {_short(eval_metrics)}")
                tick = time.perf_counter()  # eval time does not count against tokens/s
            checkpointer.save(done, state, data_state, force=done == steps or preempted)
            if preempted:
                checkpointer.wait()
                progress.close()
                _say(f"SIGTERM: saved step {done} in {checkpointer.directory}; rerun to resume")
                break
    finally:
        watcher.close()
        progress.close()
        writer.close()
        checkpointer.close()  # waits for pending asynchronous saves
    return metrics


def _make_evaluator(
    partitioner: partitioning.Partitioner,
    model: opt.OPTDecoder,
    param_shardings: Any,
    eval_data: DataFactory,
    batch_size: int,
    num_batches: int,
    **loss_options: Any,
) -> Callable[[Any], dict[str, float]]:
    """Teacher-forced eval on the same first `num_batches` held-out batches every time (the
    stream is built once, here, so a missing eval set fails before training starts)."""
    eval_step = partitioner.jit(
        train_step.make_eval_step(model, **loss_options),
        in_shardings=(param_shardings, partitioner.data_sharding),
        out_shardings=partitioner.replicated,
    )
    shard_id, num_shards = partitioner.input_shard(batch_size)
    stream = eval_data(batch_size=batch_size, process_index=shard_id, process_count=num_shards)
    start = stream.get_state()

    def evaluate(params: Any) -> dict[str, float]:
        stream.set_state(start)
        totals: dict[str, Any] = {}
        for _, batch in zip(range(num_batches), _iterate(stream), strict=False):
            sums = eval_step(params, partitioner.global_batch(batch, batch_size))
            totals = sums if not totals else jax.tree.map(lambda a, b: a + b, totals, sums)
        if not totals:
            raise ValueError("the eval data yielded no batches")
        return {k: float(v) for k, v in train_step.summarize(totals).items()}

    return evaluate


def _next(stream: BatchStream, step: int) -> dict[str, np.ndarray]:
    try:
        return next(stream)
    except StopIteration:
        raise RuntimeError(f"the training data ran out before step {step + 1}") from None


def _iterate(stream: BatchStream) -> Iterator[dict[str, np.ndarray]]:
    while True:
        try:
            yield next(stream)
        except StopIteration:
            return


def _read_finite(
    first_step: int, unread: list[dict[str, jax.Array]], checkpointer: checkpointing.Checkpointer
) -> list[dict[str, float]]:
    """The metrics of steps first_step, first_step + 1, ... read from the device in one
    transfer; NonFiniteError at the first step whose loss or gradient norm is NaN/inf."""
    rows = [{k: float(v) for k, v in m.items()} for m in jax.device_get(unread)]
    for step, row in enumerate(rows, start=first_step):
        bad = {k: row[k] for k in ("loss", "grad_norm") if not math.isfinite(row[k])}
        if bad:
            checkpointer.wait()
            last = checkpointer.latest_step()
            where = f"{checkpointer.directory}/{last}" if last is not None else "none saved yet"
            raise NonFiniteError(
                f"step {step}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())}; "
                f"stopped without saving this step. Last good checkpoint: {where}"
            )
    return rows


def _summarize_window(
    window: list[dict[str, float]], learning_rate: float, seconds: float, tokens_per_step: int
) -> dict[str, float]:
    """Means of the per-step metrics since the last log, the last step's learning rate, and
    throughput."""
    out = {k: float(np.mean([m[k] for m in window])) for k in window[0] if k != "tokens"}
    out["learning_rate"] = learning_rate
    out["tokens_per_second"] = len(window) * tokens_per_step / max(seconds, 1e-9)
    return out


def _short(metrics: dict[str, float]) -> str:
    names = {"loss": "loss", "accuracy": "acc", "grad_norm": "gnorm", "learning_rate": "lr"}
    names |= {"tokens_per_second": "tok/s", "mfu": "mfu"}
    return " ".join(f"{short}={metrics[k]:.4g}" for k, short in names.items() if k in metrics)


def _say(message: str) -> None:
    if jax.process_index() == 0:
        tqdm.write(f"optiml: {message}", file=sys.stdout)
