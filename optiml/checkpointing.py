"""Orbax checkpoints of a training run: the train state plus the data stream's position.

Layout of `<run_dir>/checkpoints/` (Orbax CheckpointManager; asynchronous saves, keep N):

    checkpoints/400/state/...     step, params, opt_state (OCDBT/Zarr array shards)
    checkpoints/400/data/...      {"process_count": 2, "states": [<host 0 state>, <host 1 state>]}

Each host's data stream state (a small JSON dict from `stream.get_state()`) is gathered onto every
host before the save, so a restore gives each host back its own position. Restoring takes
abstract targets (`jax.ShapeDtypeStruct` with a sharding), so a checkpoint written on one mesh is
read straight onto another: Orbax reads only the shards each device needs.

Initial weights from an imported OPT checkpoint: `load_initial_params` reads the folder that
`python -m optiml.models.convert hf-to-optiml ...` writes; `restore_params` reads only the params
of a training checkpoint (for evaluation). TF-free.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from optiml.models import convert, opt
from optiml.train_step import TrainState


def state_items(state: TrainState) -> dict[str, Any]:
    """The saved part of a TrainState: {"step", "params", "opt_state"} (apply_fn/tx are code)."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


class Checkpointer:
    """Saves at multiples of `save_every` (plus forced saves), keeps the newest `keep`."""

    def __init__(
        self, directory: str | Path, *, save_every: int, keep: int = 3, async_save: bool = True
    ) -> None:
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (a save cut short by a crash does not count)."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self, step: int, state: TrainState, data_state: dict | None, force: bool = False
    ) -> bool:
        """Starts saving `state` and every host's `data_state` at `step` if the save period says
        so (or `force`); returns whether a save started. Collective: call it on every host."""
        if not (force or step % self.save_every == 0):
            return False
        data = {"process_count": jax.process_count(), "states": _allgather_json(data_state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state_items(state)), data=ocp.args.JsonSave(data)
        )
        return self.manager.save(step, args=args, force=True)  # the period is decided above

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, Any]:
        """(state laid out like `abstract_state`'s shardings, this host's data state or None).

        `abstract_state`: a TrainState whose array leaves are ShapeDtypeStructs with shardings
        (`Partitioner.abstract_init`); it may be for a different mesh than the one saved from."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(state_items(abstract_state)), data=ocp.args.JsonRestore()
        )
        restored = self.manager.restore(step, args=args)
        state = abstract_state.replace(**restored["state"])
        return state, _this_host(restored["data"], self.directory / str(step))

    def wait(self) -> None:
        """Blocks until asynchronous saves have reached the disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _allgather_json(value: Any) -> list[Any]:
    """Every host's JSON-serialisable `value`, in process order (no-op with one process)."""
    encoded = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
    if jax.process_count() == 1:
        return [value]
    lengths = multihost_utils.process_allgather(np.array([encoded.size], np.int32))
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: encoded.size] = encoded
    gathered = multihost_utils.process_allgather(padded)
    return [
        json.loads(bytes(row[: int(n)]).decode())
        for row, n in zip(gathered, lengths.reshape(-1), strict=True)
    ]


def _this_host(data: dict | None, where: Path) -> Any:
    if not data:
        return None
    if data["process_count"] != jax.process_count():
        raise ValueError(
            f"{where}: the data stream state was saved by {data['process_count']} processes, "
            f"this job has {jax.process_count()}; resume with the same number of hosts"
        )
    return data["states"][jax.process_index()]


def restore_params(
    checkpoints_dir: str | Path, abstract_params: Any, step: int | None = None
) -> Any:
    """Only the params of a training checkpoint (`<run>/checkpoints/<step>/state`, written by
    `Checkpointer`; the newest complete step unless `step` is given), read into the shardings of
    `abstract_params` (ShapeDtypeStructs); the optimizer state is not read."""
    directory = Path(checkpoints_dir).absolute()
    if step is None:
        step = ocp.CheckpointManager(directory).latest_step() if directory.is_dir() else None
    if step is None:
        raise FileNotFoundError(f"no training checkpoint in {directory}")
    if not (directory / str(step) / "state").is_dir():
        raise FileNotFoundError(f"no checkpoint of step {step} in {directory}")
    target = {"params": abstract_params}
    restored = ocp.PyTreeCheckpointer().restore(
        directory / str(step) / "state",
        args=ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        ),
    )
    logging.info("restored the params of %s, step %d", directory, step)
    return restored["params"]


ARCHITECTURE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "ffn_dim",
    "max_positions",
    "word_embed_proj_dim",
    "do_layer_norm_before",
    "scan_layers",
)


def load_initial_params(folder: str | Path, model_config: opt.OPTConfig, abstract_params: Any):
    """Params from an optiml checkpoint folder (`optiml_config.json` + Orbax `params/`, written by
    `optiml.models.convert`) straight onto the shardings of `abstract_params`. The folder's
    architecture must be the run's (dropout, dtypes and remat may differ)."""
    saved = convert.load_config(folder)
    differ = [
        f"{name}: {getattr(saved, name)} in the checkpoint, "
        f"{getattr(model_config, name)} in the run"
        for name in ARCHITECTURE_FIELDS
        if getattr(saved, name) != getattr(model_config, name)
    ]
    if differ:
        raise ValueError(
            f"{folder}: the checkpoint's model differs from the run's: " + "; ".join(differ)
        )
    params, _ = convert.load_params(folder, target=abstract_params)
    return params
