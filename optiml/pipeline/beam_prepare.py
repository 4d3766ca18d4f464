"""Preparation as an Apache Beam pipeline: one command prepares a mixture on any Beam runner
(DirectRunner on one machine, Dataflow, Flink, Spark on many) into the same cache layout.

    python -m optiml.pipeline.prepare --mixture=optiml_mix:train --cache_dir=/shared/cache \\
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \\
        --setup_file=./setup.py --max_num_workers=100

The pipeline: the task names -> reshuffled over the workers -> each task prepared by
`prepare.prepare_one` (the same code as the local path: direct or seqio, skipped when already
in the cache, a failure recorded under `_errors/`) -> once all are done, `manifest.json`. Every
worker must see the cache folder (a shared file system: NFS, Filestore, a mounted bucket) and
the data (`OPTIML_DATA_DIR`, passed on to the workers), and have optiml installed (Dataflow:
`--setup_file` or `--sdk_container_image`). Flags that `prepare` does not know are Beam
pipeline options.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from optiml import paths
from optiml.pipeline import cache, prepare

log = logging.getLogger(__name__)
NAMESPACE = "optiml.prepare"


class PrepareTask(beam.DoFn):
    """Prepares one task per element; emits (name, status, examples, error)."""

    def __init__(self, cache_dir: str, *, split: str, seed: int, overwrite: bool, path: str,
                 modules: Sequence[str], data_dir: str | None) -> None:  # fmt: skip
        self.cache_dir, self.split, self.seed = cache_dir, split, seed
        self.overwrite, self.path = overwrite, path
        self.modules, self.data_dir = tuple(modules), data_dir
        self.counters = {}

    def setup(self) -> None:
        if self.data_dir and not os.environ.get(paths.DATA_DIR_ENV):
            os.environ[paths.DATA_DIR_ENV] = self.data_dir
        for module in self.modules:  # registers the tasks in this worker
            importlib.import_module(module)
        for status in ("direct", "seqio", "skipped", "failed", "examples"):
            self.counters[status] = Metrics.counter(NAMESPACE, status)

    def process(self, name: str):
        status, n, error = prepare.prepare_one(
            name, self.cache_dir, split=self.split, seed=self.seed, overwrite=self.overwrite,
            path=self.path,
        )  # fmt: skip
        self.counters[status].inc()
        self.counters["examples"].inc(n if status in ("direct", "seqio") else 0)
        yield name, status, n, error


def _finish(outcomes: list[tuple[str, str, int, str]], cache_dir: str, split: str) -> None:
    """After every task: the manifest, and the run's summary in the log."""
    cache.write_manifest(cache_dir, split)
    counts = {s: sum(o[1] == s for o in outcomes) for s in ("direct", "seqio", "skipped")}
    failed = sorted(o[0] for o in outcomes if o[1] == "failed")
    log.info(
        "prepare (beam): %d tasks: %d direct, %d through seqio, %d already there, %d failed%s",
        len(outcomes), counts["direct"], counts["seqio"], counts["skipped"], len(failed),
        (": " + ", ".join(failed)) if failed else "",
    )  # fmt: skip


def build(pipeline: beam.Pipeline, names: Sequence[str], cache_dir: str, **kwargs) -> None:
    """Add the preparation of `names` to `pipeline` (kwargs: those of `PrepareTask`)."""
    split = kwargs["split"]
    _ = (
        pipeline
        | "Tasks" >> beam.Create(sorted(set(names)))
        | "Spread" >> beam.Reshuffle()
        | "Prepare" >> beam.ParDo(PrepareTask(cache_dir, **kwargs))
        | "All" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(_finish, cache_dir, split)
    )


def run(
    names: Sequence[str],
    cache_dir: str | Path,
    *,
    split: str = "train",
    seed: int = 0,
    overwrite: bool = False,
    path: str = "direct",
    modules: Sequence[str] = ("optiml.registry",),
    pipeline_args: Sequence[str] = ("--runner", "DirectRunner"),
) -> prepare.Report:
    """Run the pipeline and wait for it. The report lists the requested tasks now in the cache
    as `prepared` (newly or already) and those that failed, read back from the cache."""
    start = time.perf_counter()
    data_dir = paths.data_dir(required=False)
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        build(
            pipeline, names, str(cache_dir), split=split, seed=seed, overwrite=overwrite,
            path=path, modules=modules, data_dir=str(data_dir) if data_dir else None,
        )  # fmt: skip
    wanted = set(names)
    errors = cache.read_errors(cache_dir, split)
    report = prepare.Report(failed={n: e for n, e in errors.items() if n in wanted})
    for name in sorted(wanted - set(report.failed)):
        info = cache.read_info(cache_dir, split, name)
        if info is not None:
            report.prepared.append(name)
            report.num_examples += info.num_examples
    report.seconds = time.perf_counter() - start
    log.info(
        "prepare (beam): %d of %d tasks in the cache (%d examples), %d failed, %.1f s",
        len(report.prepared), len(wanted), report.num_examples, len(report.failed),
        report.seconds,
    )  # fmt: skip
    return report
