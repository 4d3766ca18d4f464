"""Data pipeline benchmark: preparing the token cache (direct path vs seqio) and streaming it.

    OPTIML_DATA_DIR=../shared/data .venv/bin/python benchmarks/data_pipeline.py \
        [--mixture=optiml_mix:niv2_all] [--cache_dir=/tmp/optiml_cache] [--fresh] \
        [--processes=CORES] [--num_shards=1]

Measures, each phase in its own process (machine load printed first and last: it may be shared):
1. paths (`data_preparation.py`): the same --compare_tasks tasks prepared by the direct path
   (the loader's Python rendering + batched `tokenizers`) and by seqio's tf.data path, each in
   --processes forked workers and in one process: wall and CPU seconds per task, examples/s,
   their ratios, byte-identical caches; each path's first task on its own line;
2. prepare: `python -m optiml.pipeline.prepare --processes=N` over the whole mixture (direct
   path), `--num_shards` such commands, imports included (resumable: reruns only check unless
   --fresh);
3. fast: `MixtureStream` from a cold process: seconds to the first packed [batch, 2048] batch
   (imports and rates included), steady examples/s, peak RSS, non-pad fraction, determinism for
   a seed and resume at step N from the small state (no replay);
4. naive: `seqio.get_mixture_or_task(mixture).get_dataset(..., shuffle=True, num_epochs=None)`
   over the same tasks, examples counted one by one (packing left out: the speed-up printed is a
   lower bound), for --naive_seconds after its first example (--naive_build_seconds to build it;
   if it never yields one, its rate is bounded above by one example per budget). Its first draw
   from each task fills that task's shuffle buffer (tokenizing ~1,000 examples), a warm-up spread
   over its first minutes: the rate over all of it and the rate over its last --naive_window
   seconds (nearer its steady state) are printed apart; the speed-up uses the faster of the two.
Prints every figure and its target; exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data_preparation  # noqa: E402  (this folder: the preparation phases)

TARGETS = {
    "prepare_speedup_vs_seqio": (">=", 20.0),
    "prepare_s": ("<=", 60.0),
    "first_batch_s": ("<=", 30.0),
    "steady_examples_per_s": (">=", 5000.0),
    "speedup_vs_naive": (">=", 100.0),
    "peak_rss_gb": ("<", 4.0),
    "non_pad_fraction": (">=", 0.95),
}


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _digest(batch: dict) -> str:
    h = hashlib.sha1()
    for key in sorted(batch):
        h.update(batch[key].tobytes())
    return h.hexdigest()


def _count(batch: dict) -> tuple[int, int]:
    """(documents, non-pad tokens) of a packed batch."""
    seg = batch["decoder_segment_ids"]
    return int(seg.max(axis=1).sum()), int((seg > 0).sum())


# -- phases (each runs in a child process and prints one JSON line) --------------------------
def phase_fast(args: argparse.Namespace) -> dict:
    from optiml.bench import mixing
    from optiml.pipeline.stream import MixtureStream, check_counts, stream_tasks

    tasks, counts = stream_tasks(args.mixture)  # optiml mixtures: TF-free, exact local counts
    absent = mixing.mixture_rates(args.mixture).missing if args.mixture in mixing.MIXTURES else []
    rates_s = time.perf_counter() - START

    def make() -> MixtureStream:
        return MixtureStream(args.cache_dir, tasks, batch_size=args.batch_size, seed=args.seed)

    stream = make()
    check_counts(stream, counts)  # the cache holds exactly the examples the rates were made from
    first = next(stream)
    first_s = time.perf_counter() - START
    digests = [_digest(first)]
    docs, tokens, rows = 0, 0, 0
    for _ in range(args.warmup_batches):
        digests.append(_digest(next(stream)))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.steady_seconds:
        batch = next(stream)
        d, n = _count(batch)
        docs, tokens, rows = docs + d, tokens + n, rows + batch["decoder_segment_ids"].shape[0]
    steady_s = time.perf_counter() - t0
    steps = 1 + args.warmup_batches + rows // args.batch_size

    state = json.loads(json.dumps(stream.get_state()))
    after = [_digest(next(stream)) for _ in range(2)]
    t1 = time.perf_counter()
    resumed = make()
    resumed.set_state(state)
    resumed_after = [_digest(next(resumed)) for _ in range(2)]
    resume_s = time.perf_counter() - t1
    again = make()
    repeat = [_digest(next(again)) for _ in range(len(digests))]
    other = _digest(
        next(MixtureStream(args.cache_dir, tasks, batch_size=args.batch_size, seed=args.seed + 1))
    )
    return {
        "tasks": len(stream.task_names),
        "absent_locally": len(absent),
        "cache_counts_checked": len(counts),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "missing_from_cache": len(stream.missing),
        "rates_s": rates_s,
        "first_batch_s": first_s,
        "steady_examples_per_s": docs / steady_s,
        "steady_tokens_per_s": tokens / steady_s,
        "steady_rows": rows,
        "non_pad_fraction": tokens / (rows * stream.length),
        "examples_per_row": docs / rows,
        "peak_rss_gb": _rss_gb(),
        "deterministic": repeat == digests and other != digests[0],
        "resume_step": steps,
        "resume_exact": resumed_after == after,
        "resume_s": resume_s,
        "state_bytes": len(json.dumps(state)),
    }


def phase_naive(args: argparse.Namespace) -> None:
    """seqio's own mixture over the same tasks, example by example (packing left out: it only
    adds work, so the rate measured is an upper bound for the naive packed pipeline).

    Prints progress lines (JSON) so that the parent can stop it at any time.
    """
    import seqio

    import optiml.registry  # noqa: F401

    def emit(**kv) -> None:
        print(json.dumps(kv), flush=True)

    dataset = seqio.get_mixture_or_task(args.mixture).get_dataset(
        sequence_length={"inputs": 1536, "targets": 512},
        split="train",
        shuffle=True,
        num_epochs=None,
        seed=args.seed,
    )
    emit(event="built", t=time.perf_counter() - START, rss_gb=_rss_gb())
    examples, t_first = 0, None
    for _ in dataset.as_numpy_iterator():
        now = time.perf_counter()
        if t_first is None:
            t_first = now
            emit(event="first", t=now - START, rss_gb=_rss_gb())
            continue
        examples += 1
        emit(
            event="batch",
            t=now - START,
            steady_examples=examples,
            steady_s=now - t_first,
            rss_gb=_rss_gb(),
        )
        if now - t_first > args.naive_seconds or examples >= args.naive_max_examples:
            break


# -- the parent --------------------------------------------------------------------------
def _child(args: argparse.Namespace, phase: str) -> list[str]:
    argv = [sys.executable, __file__, f"--phase={phase}"] + [
        f"--{k}={v}" for k, v in vars(args).items() if k not in ("phase", "fresh", "skip_naive")
    ]
    return argv


def run_phase(args: argparse.Namespace, phase: str) -> dict:
    out = subprocess.run(_child(args, phase), cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{phase} phase failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_naive(args: argparse.Namespace) -> dict:
    """The naive pipeline in a child process, stopped once its time budget is spent."""
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        _child(args, "naive"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    events: dict[str, dict] = {}
    progress: list[tuple[float, int]] = []  # (seconds since the first example, examples)

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                event = json.loads(line)
                events[event["event"]] = event
                if event["event"] == "batch":
                    progress.append((event["steady_s"], event["steady_examples"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    while proc.poll() is None:  # build and first batch, then the steady budget
        waited = time.monotonic() - t0
        if "first" not in events and waited > args.naive_build_seconds:
            break
        if waited > args.naive_build_seconds + args.naive_seconds + 30:
            break
        time.sleep(0.5)
    waited = time.monotonic() - t0
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(timeout=5)
    if proc.returncode and "batch" not in events:
        errors.seek(0)
        print(f"naive phase failed (exit {proc.returncode}):\n{errors.read()[-2000:]}")
    errors.close()
    result = {
        "naive_build_s": events.get("built", {}).get("t"),
        "naive_first_example_s": events.get("first", {}).get("t"),
        "naive_peak_rss_gb": max((e.get("rss_gb", 0.0) for e in events.values()), default=None),
    }
    last = events.get("batch")
    if last and last["steady_examples"] > 0:
        overall = last["steady_examples"] / last["steady_s"]
        start = next((p for p in progress if p[0] >= last["steady_s"] - args.naive_window), None)
        late = (last["steady_examples"] - start[1]) / max(last["steady_s"] - start[0], 1e-9)
        result["naive_examples_per_s_overall"] = overall
        result[f"naive_examples_per_s_last_{args.naive_window:g}s"] = late
        result["naive_examples_per_s"] = max(overall, late)
        result["naive_steady_s"] = last["steady_s"]
        result["naive_bound"] = "measured (the faster of the two rates)"
    else:  # no steady batch at all: at most one example in the time it was given
        result["naive_examples_per_s"] = 1.0 / waited
        result["naive_bound"] = f"upper bound: no steady batch within {waited:.0f} s"
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", default="all", choices=["all", "paths", "fast", "naive"])
    parser.add_argument("--mixture", default="optiml_mix:niv2_all")
    parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(), "optiml_cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_shards", type=int, default=1, help="prepare commands at once")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="workers of each prepare command (default: one per core)",
    )
    parser.add_argument("--compare_tasks", type=int, default=100)
    parser.add_argument("--warmup_batches", type=int, default=20)
    parser.add_argument("--steady_seconds", type=float, default=20.0)
    parser.add_argument("--naive_seconds", type=float, default=60.0)
    parser.add_argument("--naive_window", type=float, default=20.0)
    parser.add_argument("--naive_build_seconds", type=float, default=420.0)
    parser.add_argument("--naive_max_examples", type=int, default=20000)
    parser.add_argument("--fresh", action="store_true", help="delete the cache first")
    parser.add_argument("--skip_naive", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

    if args.phase in ("fast", "paths"):
        phase = {"fast": phase_fast, "paths": lambda a: data_preparation.phase_paths(a, START)}
        print(json.dumps(phase[args.phase](args)))
        return 0
    if args.phase == "naive":
        phase_naive(args)
        return 0

    figures: dict = {"load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    _print("machine (1/5/15-min load average, 2 cores)", figures)
    figures.update(run_phase(args, "paths"))
    _print("paths: direct vs seqio on the same tasks", figures)
    figures.update(data_preparation.run_prepare(args))
    _print("prepare (direct path, whole mixture)", figures)
    figures.update(run_phase(args, "fast"))
    _print("fast stream", figures)
    if not args.skip_naive:
        figures.update(run_naive(args))
        figures["speedup_vs_naive"] = (
            figures["steady_examples_per_s"] / figures["naive_examples_per_s"]
        )
        _print("naive seqio.Mixture", figures)
    figures["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    _print("machine", figures)
    return _verdict(figures)


_PRINTED: set[str] = set()


def _print(title: str, figures: dict) -> None:
    print(f"== {title}")
    for key, value in figures.items():
        if key in _PRINTED:
            continue
        _PRINTED.add(key)
        if isinstance(value, float):
            value = f"{value:,.3f}"
        print(f"  {key:28s} {value}")
    sys.stdout.flush()


def _verdict(figures: dict) -> int:
    print("== targets")
    failed = 0
    checks = {k: v for k, v in TARGETS.items() if k in figures}
    for key, (op, bound) in checks.items():
        value = figures[key]
        ok = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
        failed += not ok
        print(f"  {'PASS' if ok else 'FAIL'}  {key} = {value:,.3f}  (target {op} {bound:g})")
    for key in ("identical_caches", "deterministic", "resume_exact"):
        failed += not figures[key]
        print(f"  {'PASS' if figures[key] else 'FAIL'}  {key}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
