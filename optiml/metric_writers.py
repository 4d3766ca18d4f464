"""Where a run's metrics go: clu's metric writers, plus a small JSON-lines writer.

    writer = create_writer(run_dir, tensorboard=True)   # process 0: JSONL + TensorBoard
    writer.write_scalars(10, {"loss": 10.7, "learning_rate": 1e-5})
    writer.close()

`<run_dir>/metrics.jsonl` gets one `{"step": 10, "loss": 10.7, "learning_rate": 1e-05}` per
`write_scalars` (a run resumed at step S first drops the rows after S, which it writes again, so
the file keeps one record per step; then it appends); with `tensorboard`, clu's `SummaryWriter`
also writes TensorBoard event files, asynchronously. Processes other than 0 get a writer that
writes nothing. Importing this module imports clu, hence TensorFlow (CPU only:
`hide_gpus_from_tensorflow`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
from clu import metric_writers
from clu.metric_writers import interface

from optiml.quiet import hide_gpus_from_tensorflow

hide_gpus_from_tensorflow()  # clu imported TensorFlow: keep it off the accelerators


class JsonlWriter(interface.MetricWriter):
    """clu's writer interface over a JSON-lines file: scalars, texts and hparams as one JSON
    object per call; images, videos, audio, histograms and tensor summaries are not written.
    `resumed_at`: the step a resumed run starts from; rows after it (and a line torn by a kill)
    are dropped first."""

    def __init__(self, path: str | Path, resumed_at: int | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if resumed_at is not None:
            _drop_rows_after(Path(path), resumed_at)
        self._file = Path(path).open("a")

    def _line(self, data: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(data) + "\n")
        self._file.flush()

    def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]) -> None:
        self._line({"step": int(step), **{k: float(v) for k, v in scalars.items()}})

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self._line({"step": int(step), **texts})

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._line({"hparams": dict(hparams)})

    def write_summaries(self, step, values, metadata=None) -> None:
        del step, values, metadata

    def write_images(self, step, images) -> None:
        del step, images

    def write_videos(self, step, videos) -> None:
        del step, videos

    def write_audios(self, step, audios, *, sample_rate) -> None:
        del step, audios, sample_rate

    def write_histograms(self, step, arrays, num_buckets=None) -> None:
        del step, arrays, num_buckets

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)

    def step_of(line: str) -> int | None:
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            return None

    keep = [line for line in lines if (s := step_of(line)) is not None and s <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


def create_writer(
    run_dir: str | Path, tensorboard: bool, resumed_at: int | None = None
) -> interface.MetricWriter:
    """Process 0: `metrics.jsonl` in `run_dir` (+ TensorBoard events); other processes: none.
    `resumed_at`: see JsonlWriter."""
    if jax.process_index() != 0:
        return metric_writers.MultiWriter([])
    path = Path(run_dir) / "metrics.jsonl"
    writers: list[interface.MetricWriter] = [JsonlWriter(path, resumed_at)]
    if tensorboard:
        writers.append(metric_writers.AsyncWriter(metric_writers.SummaryWriter(str(run_dir))))
    return metric_writers.MultiWriter(writers)
