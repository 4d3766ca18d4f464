"""The preparation phases of `data_pipeline.py`: the direct path vs seqio's tf.data path on the
same tasks, and the whole mixture in one command.

`phase_paths` prepares the same `--compare_tasks` tasks four ways, each into a fresh folder, and
checks that every cache equals seqio's byte for byte:

    direct, --processes forked workers   (`prepare --processes N`: what a user runs)
    seqio,  --processes forked workers   (the same workers around seqio's path: each worker's
                                          first task pays TensorFlow's start-up, ~1.5 s once)
    direct, one process                  (rendering thread + `tokenizers`' own threads)
    seqio,  one process                  (seqio's path as seqio runs it: one tf.data per task)

in that order, because a process whose TensorFlow runtime has started must not fork
(`optiml.pipeline.workers`); with `--processes=1` only the last two. Each path's first task
(loading the vocabulary, TensorFlow's start-up) runs before its timing, on its own line. Ratios:
`prepare_speedup_vs_seqio` (the target) = seqio in one process over the direct path's workers;
`..._one_process` and `..._equal_processes` put both paths on the same footing.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_s(who: int) -> float:
    """User + system CPU seconds of this process (every thread) or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def phase_paths(args: argparse.Namespace, start: float) -> dict:
    """Both preparation paths on the same sample of the mixture's tasks (module docstring)."""
    import optiml.registry  # noqa: F401
    from optiml.pipeline import cache, prepare
    from optiml.pipeline.stream import stream_tasks

    names = sorted(name for name, _ in stream_tasks(args.mixture)[0])
    warmup, rest = names[0], names[1:]
    sample = rest[:: max(1, len(rest) // args.compare_tasks)][: args.compare_tasks]
    workers = args.processes
    out: dict = {
        "imports_and_rates_s": time.perf_counter() - start,
        "compared_tasks": len(sample),
        "processes": workers,
    }
    root = Path(tempfile.mkdtemp(prefix="optiml_paths_"))

    def timed(path: str, processes: int, label: str) -> None:
        cpu = cpu_s(resource.RUSAGE_SELF) + cpu_s(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        report = prepare.prepare(sample, root / label, path=path, processes=processes)
        seconds = time.perf_counter() - t0
        cpu = cpu_s(resource.RUSAGE_SELF) + cpu_s(resource.RUSAGE_CHILDREN) - cpu
        out[f"{label}_s_per_task"] = seconds / len(sample)
        out[f"{label}_cpu_s_per_task"] = cpu / len(sample)  # workers included
        out[f"{label}_examples_per_s"] = report.num_examples / seconds
        out[f"{label}_failed"] = len(report.failed)

    def warm(path: str) -> None:
        t0 = time.perf_counter()
        prepare.prepare([warmup], root / f"warmup_{path}", path=path)
        out[f"{path}_warmup_task_s"] = time.perf_counter() - t0

    warm("direct")  # the vocabulary, loaded here, is what the workers inherit
    labels = ["direct"] + (["direct_workers", "seqio_workers"] if workers > 1 else [])
    if workers > 1:
        timed("direct", workers, "direct_workers")
        timed("seqio", workers, "seqio_workers")
    timed("direct", 1, "direct")
    warm("seqio")  # TensorFlow starts in this process from here on: no fork after it
    timed("seqio", 1, "seqio")
    fast = "direct_workers" if workers > 1 else "direct"  # what `prepare --processes` runs
    out["prepare_speedup_vs_seqio"] = out["seqio_s_per_task"] / out[f"{fast}_s_per_task"]
    out["prepare_speedup_one_process"] = out["seqio_s_per_task"] / out["direct_s_per_task"]
    if workers > 1:
        out["prepare_speedup_equal_processes"] = (
            out["seqio_workers_s_per_task"] / out["direct_workers_s_per_task"]
        )
    out["prepare_cpu_ratio_vs_seqio"] = (
        out["seqio_cpu_s_per_task"] / out[f"{fast}_cpu_s_per_task"]
    )  # CPU seconds (every thread and worker) per task: what the load barely changes
    tasks = json.loads((root / "seqio" / "train" / cache.MANIFEST).read_text())["tasks"]
    out["identical_caches"] = all(
        filecmp.cmp(cache.task_dir(root / label, "train", n) / f,
                    cache.task_dir(root / "seqio", "train", n) / f, shallow=False)
        for label in labels for n in tasks for f in (*cache.ARRAYS, "info.json")
    )  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    return out


def run_prepare(args: argparse.Namespace) -> dict:
    """`python -m optiml.pipeline.prepare` over the whole mixture: `--num_shards` commands (one
    by default), each with `--processes` workers; wall and CPU seconds, imports included."""
    if args.fresh:
        shutil.rmtree(args.cache_dir, ignore_errors=True)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optiml.pipeline.prepare",
                f"--mixture={args.mixture}",
                f"--cache_dir={args.cache_dir}",
                f"--seed={args.seed}",
                f"--shard_index={i}",
                f"--num_shards={args.num_shards}",
                f"--processes={args.processes}",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(args.num_shards)
    ]
    cpu = cpu_s(resource.RUSAGE_CHILDREN)
    errs = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - t0
    from optiml.pipeline import prepare  # its absent tasks: recorded as failed, exit 1

    absent = set(prepare.absent_tasks(args.mixture))
    failed = {f.stem for f in (Path(args.cache_dir) / "train" / "_errors").glob("*.json")}
    for p, err in zip(procs, errs, strict=True):
        if p.returncode and not (p.returncode == 1 and failed <= absent):
            raise SystemExit(f"prepare failed:\n{err[-3000:]}")
    cpu = cpu_s(resource.RUSAGE_CHILDREN) - cpu
    manifest = json.loads((Path(args.cache_dir) / "train" / "manifest.json").read_text())
    return {
        "prepare_s": seconds,
        "prepare_cpu_s": cpu,  # every process, worker and thread, imports included
        "prepare_commands": args.num_shards,
        "prepare_processes_each": args.processes,
        "absent_tasks": len(failed),  # declared, their data not here (named in _errors/)
        "cached_tasks": manifest["num_tasks"],
        "cached_examples": manifest["num_examples"],
        "cached_tokens": manifest["num_tokens"],
        "prepare_failed": len(set(manifest["errors"]) - failed),  # absent ones left out
        "cache_mb": sum(f.stat().st_size for f in Path(args.cache_dir).rglob("*") if f.is_file())
        / 2**20,
    }
