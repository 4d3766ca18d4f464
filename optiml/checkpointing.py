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
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from optiml import errors, orbax_errors
from optiml.models import convert, opt
from optiml.train_step import TrainState

log = logging.getLogger(__name__)


def state_items(state: TrainState) -> dict[str, Any]:
    """The saved part of a TrainState: {"step", "params", "opt_state"} (apply_fn/tx are code)."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


class CheckpointError(errors.RunStopped):
    """A checkpoint could not be saved or no intact one could be restored; one line says which
    step, which folder and why. Training stops; every checkpoint saved before stays on disk."""


class Checkpointer:
    """Saves at multiples of `save_every` (plus forced saves), keeps the newest `keep` and every
    step in `keep_steps` (e.g. 0: the untuned model).

    Faults: unfinished `*.orbax-checkpoint-tmp*` folders of an earlier run are removed when it
    opens; a save first checks that the folder has room for the state (else CheckpointError, before
    writing); an asynchronous save that fails raises CheckpointError at the next `check()` (the
    trainer calls it after every step), with Orbax's own error lines folded into that one line; a
    restore that fails falls back to the newest intact checkpoint and sets the damaged newer ones
    aside as `<step>.damaged` (one log line each)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        save_every: int,
        keep: int = 3,
        keep_steps: Sequence[int] = (),
        async_save: bool = True,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        self._saving: int | None = None  # the step of the save that may still be in flight
        self._failed = False  # a lost save was reported: the run is stopping
        self._orbax_errors = orbax_errors.OrbaxErrors(self)  # held from here to close()
        self._remove_unfinished_saves()
        policies = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(
                [policies.LatestN(n=keep), policies.CustomSteps(keep_steps)]
            ),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _remove_unfinished_saves(self) -> None:
        """Delete the `<step>.orbax-checkpoint-tmp*` folders that a run stopped mid-save left
        (they only take space: Orbax never reads them), one log line; the primary host deletes."""
        leftovers = sorted(self.directory.glob("*.orbax-checkpoint-tmp*"))
        if leftovers and jax.process_index() == 0:
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            log.warning(
                "checkpoints: removed %d unfinished save(s) of an earlier run in %s: %s",
                len(leftovers), self.directory, ", ".join(p.name for p in leftovers),
            )  # fmt: skip
        if leftovers and jax.process_count() > 1:
            multihost_utils.sync_global_devices("optiml unfinished checkpoints removed")

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (a save cut short by a crash does not count)."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self, step: int, state: TrainState, data_state: dict | None, force: bool = False
    ) -> bool:
        """Starts saving `state` and every host's `data_state` at `step` if the save period says
        so (or `force`); returns whether a save started. Collective: call it on every host.
        Raises CheckpointError if the previous save failed or the folder lacks room for this one."""
        if not (force or step % self.save_every == 0):
            return False
        self.wait()  # Orbax waits for the previous save anyway; its outcome and its bytes count
        self._check_space(step, state)
        data = {"process_count": jax.process_count(), "states": _allgather_json(data_state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state_items(state)), data=ocp.args.JsonSave(data)
        )
        self._saving = step
        try:
            started = self.manager.save(step, args=args, force=True)  # period decided above
        except Exception as e:
            raise self._lost(step, e) from None
        self.check()
        return started

    def check(self) -> None:
        """Raises CheckpointError if an asynchronous save has failed (cheap: call every step)."""
        try:
            self.manager.check_for_errors()
        except Exception as e:
            raise self._lost(self._saving, e) from None
        if self._orbax_errors.first:
            raise self._lost(self._saving, None)

    def _check_space(self, step: int, state: TrainState) -> None:
        """Refuse a save that cannot fit: the larger of the state's bytes (global arrays) and the
        newest checkpoint's bytes on disk, plus 10% and 1 MiB (Orbax's metadata), against the
        free bytes of the folder's file system (local folders only)."""
        if not self.directory.is_dir():
            return
        nbytes = sum(x.nbytes for x in jax.tree.leaves(state_items(state)) if hasattr(x, "nbytes"))
        newest = self.latest_step()
        if newest is not None:
            files = (self.directory / str(newest)).rglob("*")
            nbytes = max(nbytes, sum(f.stat().st_size for f in files if f.is_file()))
        needed = int(nbytes * 1.1) + (1 << 20)
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise self._stop(
                f"checkpoint {step} not saved: {self.directory} has {free:,} bytes free, the save "
                f"needs about {needed:,}"
            )

    def _lost(self, step: int | None, error: BaseException | None) -> CheckpointError:
        reason = orbax_errors.first_line(error) if error is not None else self._orbax_errors.first
        self._orbax_errors.first = ""
        try:
            self.manager.reload()  # forget the failed step; the earlier ones are untouched
        except Exception:  # noqa: S110 - the error returned below is what matters
            pass
        return self._stop(f"checkpoint {step} could not be saved in {self.directory}: {reason}")

    def _stop(self, message: str) -> CheckpointError:
        self._saving, self._failed = None, True
        steps = self.all_steps()
        kept = f"checkpoints kept: {', '.join(map(str, steps))}" if steps else "no checkpoint yet"
        return CheckpointError(f"{message}; training stopped ({kept})")

    def restore(
        self, abstract_state: TrainState, step: int | None = None
    ) -> tuple[TrainState, Any]:
        """(state laid out like `abstract_state`'s shardings, this host's data state or None).

        `abstract_state`: a TrainState whose array leaves are ShapeDtypeStructs with shardings
        (`Partitioner.abstract_init`); it may be for a different mesh than the one saved from.
        Without `step`: the newest checkpoint that reads back; newer ones that do not are set
        aside as `<step>.damaged` once an older one has restored (if none restores, nothing is
        moved and CheckpointError names the newest step and its error)."""
        steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(state_items(abstract_state)), data=ocp.args.JsonRestore()
        )
        damaged: list[tuple[int, str]] = []
        for candidate in steps:
            try:
                restored = self.manager.restore(candidate, args=args)
            except Exception as e:
                damaged.append((candidate, orbax_errors.first_line(e)))
                continue
            finally:
                self._orbax_errors.first = ""
            self._set_aside(damaged, candidate)
            state = abstract_state.replace(**restored["state"])
            return state, _this_host(restored["data"], self.directory / str(candidate))
        newest, reason = damaged[0]
        raise CheckpointError(
            f"no checkpoint in {self.directory} reads back ({len(damaged)} tried); "
            f"the newest, step {newest}: {reason}"
        )

    def _set_aside(self, damaged: list[tuple[int, str]], restored: int) -> None:
        """Rename damaged step folders to `<step>.damaged[-n]` (Orbax no longer lists them, and the
        run can save those steps again), one log line each; the primary host renames."""
        if not damaged:
            return
        if jax.process_index() == 0:
            for step, reason in damaged:
                target, n = self.directory / f"{step}.damaged", 1
                while target.exists():
                    target, n = self.directory / f"{step}.damaged-{n}", n + 1
                (self.directory / str(step)).rename(target)
                log.warning(
                    "checkpoints: step %d does not read back (%s); set aside as %s, resuming "
                    "from step %d", step, reason, target, restored,
                )  # fmt: skip
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("optiml checkpoints set aside")
        self.manager.reload()

    def wait(self) -> None:
        """Blocks until asynchronous saves have reached the disk; CheckpointError if one failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._lost(self._saving, e) from None
        self.check()
        self._saving = None  # on disk: a later Orbax error is not this save's

    def close(self) -> None:
        """Waits for a pending save (CheckpointError if it failed, unless a failure was already
        reported: then the run is stopping and the same failure is not raised twice)."""
        try:
            self.wait()
        except CheckpointError:
            if not self._failed:
                raise
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self._failed:
                    raise
            if not self._failed:  # after a failure Orbax's threads may still log their part of it
                self._orbax_errors.close()


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


def newest_step(checkpoints_dir: str | Path) -> int | None:
    """The newest complete checkpoint's step in a training run's `checkpoints/`, or None."""
    directory = Path(checkpoints_dir).absolute()
    return ocp.CheckpointManager(directory).latest_step() if directory.is_dir() else None


def restore_params(
    checkpoints_dir: str | Path, abstract_params: Any, step: int | None = None
) -> Any:
    """Only the params of a training checkpoint (`<run>/checkpoints/<step>/state`, written by
    `Checkpointer`; the newest complete step unless `step` is given), read into the shardings of
    `abstract_params` (ShapeDtypeStructs); the optimizer state is not read."""
    directory = Path(checkpoints_dir).absolute()
    step = newest_step(directory) if step is None else step
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
