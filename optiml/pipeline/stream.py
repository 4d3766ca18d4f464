"""The training stream: a mixture of prepared tasks, packed into [batch, 2048] rows, resumable.

    stream = MixtureStream(cache_dir, [("niv2_task001", 0.7), ("niv2_task002", 0.3)],
                           batch_size=256, seed=0)
    batch = next(stream)      # 5 features, each [256, 2048] (see optiml.pipeline.features)
    state = stream.get_state()  # small JSON-able dict
    ...
    stream.set_state(state)   # resumes exactly there, without replaying anything

How example k (k = 0, 1, 2... over the whole run) is chosen: its task is `searchsorted(cumulative
rates, u_k)` with u_k a counter-based uniform (splitmix64 of seed and k); if that task has been
drawn c times before, the example is `perm(task, epoch)[c mod n]` with epoch = c // n and
`perm` a seeded permutation of the task's n examples (a fresh one each epoch). Documents are
packed greedily into rows by `features.Planner` with a small pool (default 64 documents), which
lifts the fill of 2048-token rows from ~90% (next-fit) to ~99%. The state is therefore just
(k, the per-task draw counts c, the pooled documents); the row sequence does not depend on the
batch size or on the number of hosts.

Multi-host: every process plans the same global row sequence from document lengths alone (cheap)
and materialises only its own rows: process p of P gets rows [p * B/P, (p + 1) * B/P) of each
global batch of B rows. The state is the same on every process.

Every task is opened and verified before the first batch (`cache.CachedTask`). Tasks named in
the mixture but absent from the cache are listed in `missing`, damaged ones in `damaged` (each
with a warning line), and the rates of the others are renormalised -- explicitly, never silently;
`from_mixture` refuses a mixture that lost more than `max_missing_share` (default 5%) of its tasks
or of its rate mass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optiml import errors
from optiml.bench import mixing
from optiml.pipeline import cache, features
from optiml.token_ids import BOS_ID

STATE_FORMAT = 1
ON_DAMAGED = ("leave_out", "stop")  # what a stream does with a task that fails verification
_CHUNK = 4096  # task choices are computed this many at a time
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def counter_uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """Uniforms in [0, 1) for counters start..start+count-1: a pure function of (seed, k)."""
    key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    with np.errstate(over="ignore"):
        x = np.arange(start, start + count, dtype=np.uint64) ^ key
    return (_splitmix64(_splitmix64(x)) >> np.uint64(11)).astype(np.float64) * 2.0**-53


class Sampler:
    """The mixture's global example sequence, drawn one example at a time (the module docstring
    says how); its state is `example` (k) and `counts` (draws per task so far).

        >>> s = Sampler(["a", "b"], [0.7, 0.3], sizes=[5, 2], seed=0)
        >>> [s.draw() for _ in range(3)]      # (task position, example index in that task)
        [(0, 0), (0, 3), (1, 0)]
    """

    def __init__(
        self, names: Sequence[str], rates: Sequence[float], sizes: Sequence[int], seed: int
    ) -> None:
        total = float(sum(rates))
        self.rates = np.asarray(rates, np.float64) / total
        self.seed = seed
        self._cumulative = np.cumsum(self.rates)
        self._sizes = np.asarray(sizes, np.int64)
        self._name_keys = [zlib.crc32(n.encode()) for n in names]
        self._perms: dict[int, tuple[int, np.ndarray]] = {}
        self._choice_start, self._choices = -1, np.zeros([0], np.int64)
        self.example, self.counts = 0, np.zeros(len(self._sizes), np.int64)

    def _task_of(self, k: int) -> int:
        start = k - k % _CHUNK
        if start != self._choice_start:
            u = counter_uniforms(self.seed, start, _CHUNK)
            self._choices = np.minimum(
                np.searchsorted(self._cumulative, u, side="right"), len(self._sizes) - 1
            )
            self._choice_start = start
        return int(self._choices[k - start])

    def _permutation(self, t: int, epoch: int) -> np.ndarray:
        cached = self._perms.get(t)
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self._name_keys[t], epoch])
            cached = self._perms[t] = (epoch, rng.permutation(int(self._sizes[t])))
        return cached[1]

    def draw(self) -> tuple[int, int]:
        """The next example: (task position, example index within the task)."""
        t = self._task_of(self.example)
        self.example += 1
        epoch, position = divmod(int(self.counts[t]), int(self._sizes[t]))
        self.counts[t] += 1
        return t, int(self._permutation(t, epoch)[position])


class MixtureStream:
    """An endless iterator of packed batches over prepared tasks, mixed by the given rates.

    Args:
      cache_dir: the folder written by `optiml.pipeline.prepare`.
      tasks: (task name, rate) pairs; rates need not sum to 1 (they are normalised).
      batch_size: GLOBAL rows per batch; each process yields batch_size // process_count rows.
      length: row length (2048).
      seed: everything random derives from it.
      pool_size: documents the packer may choose from (1 = next-fit, seqio's packing).
      split: cache split to read ("train").
      on_damaged: a task whose cache files fail verification (`cache.DamagedTask`, named with its
        file in one warning line) is "leave_out" (like a missing one) or "stop"s the stream.

    Every task is opened and verified here, before the first batch; `missing` lists the tasks
    absent from the cache, `damaged` the damaged ones with their reasons.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        tasks: Sequence[tuple[str, float]],
        *,
        batch_size: int,
        length: int = features.DEFAULT_LENGTH,
        seed: int = 0,
        pool_size: int = 64,
        split: str = "train",
        process_index: int = 0,
        process_count: int = 1,
        bos_id: int = BOS_ID,
        on_damaged: str = "leave_out",
    ) -> None:
        features.check_length(length)
        if on_damaged not in ON_DAMAGED:
            raise ValueError(f"on_damaged={on_damaged!r}: choose from {ON_DAMAGED}")
        if batch_size < 1 or pool_size < 1:
            raise ValueError(f"batch_size {batch_size} and pool_size {pool_size} must be >= 1")
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} is not divisible by {process_count} hosts")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.cache_dir, self.split = Path(cache_dir), split
        self.batch_size, self.length, self.seed = batch_size, length, seed
        self.pool_size, self.bos_id = pool_size, bos_id
        self.local_rows = range(
            process_index * batch_size // process_count,
            (process_index + 1) * batch_size // process_count,
        )

        names, rates, sizes, self.missing = [], [], [], []
        self.damaged: dict[str, str] = {}
        self._tasks: list[cache.CachedTask] = []
        for name, rate in tasks:
            if rate < 0:
                raise ValueError(f"task {name}: negative rate {rate}")
            if rate == 0:
                continue
            try:
                task = cache.CachedTask(cache_dir, split, name)  # verified: sizes, sums, ids
            except FileNotFoundError:
                self.missing.append(name)
                continue
            except cache.DamagedTask as e:
                if on_damaged == "stop":
                    raise
                self.damaged[name] = str(e)
                logging.warning("MixtureStream: left out: %s", e)
                continue
            if len(task) == 0:
                self.missing.append(name)
                continue
            names.append(name)
            rates.append(float(rate))
            sizes.append(len(task))
            self._tasks.append(task)
        if not names:
            raise ValueError(f"none of the {len(tasks)} tasks is prepared in {cache_dir}/{split}")
        if self.missing:
            logging.warning(
                "MixtureStream: %d of %d tasks are not in the cache %s/%s and are left out "
                "(rates renormalised over the rest): %s",
                len(self.missing),
                len(tasks),
                cache_dir,
                split,
                ", ".join(self.missing[:20]) + (" ..." if len(self.missing) > 20 else ""),
            )
        self.task_names = names
        self.num_examples = dict(zip(names, sizes, strict=True))  # cached examples per task
        self.sampler = Sampler(names, rates, sizes, seed)
        self.rates = dict(zip(names, self.sampler.rates.tolist(), strict=True))
        self._fingerprint = hashlib.sha1(
            json.dumps([names, rates, sizes, length, pool_size]).encode()
        ).hexdigest()[:16]
        self.set_state(None)

    # -- the global example sequence --------------------------------------------------------
    def _task(self, t: int) -> cache.CachedTask:
        return self._tasks[t]

    def _draw(self) -> tuple[tuple[int, int], int]:
        """The next example of the global sequence: ((task, index), its length)."""
        t, index = self.sampler.draw()
        return (t, index), int(self._task(t).lengths[index])

    # -- batches -------------------------------------------------------------------------
    def __iter__(self) -> MixtureStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = features.empty_rows(len(self.local_rows), self.length)
        for r in range(self.batch_size):
            row = self._planner.next_row(self._draw)
            self._rows += 1
            if r in self.local_rows:
                self._write_row(out, r - self.local_rows.start, row)
        return out

    def _write_row(self, out: dict[str, np.ndarray], r: int, row: list) -> None:
        start = 0
        for segment, (t, index) in enumerate(row, start=1):
            tokens, prompt_length = self._task(t).example(index)
            if len(tokens) > self.length:
                prompt, target = features.truncate(
                    tokens[:prompt_length], tokens[prompt_length:], self.length
                )
                tokens, prompt_length = np.concatenate([prompt, target]), len(prompt)
            start = features.write_document(
                out, r, start, segment, tokens, prompt_length, self.bos_id
            )

    # -- state ---------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Small JSON-able state: example counter, per-task draw counts, pooled documents."""
        return {
            "format": STATE_FORMAT,
            "fingerprint": self._fingerprint,
            "seed": self.seed,
            "example": self.sampler.example,
            "rows": self._rows,
            "counts": self.sampler.counts.tolist(),
            "pool": [[int(t), int(i)] for (t, i), _ in self._planner.pool],
        }

    def set_state(self, state: dict | None) -> None:
        """Resume from `get_state()` output (None: the start of the stream)."""
        self._planner = features.Planner(self.length, self.pool_size)
        if state is None:
            self._rows = 0
            self.sampler.example, self.sampler.counts = 0, np.zeros(len(self.task_names), np.int64)
            return
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"stream state format {state.get('format')} != {STATE_FORMAT}")
        if state["fingerprint"] != self._fingerprint or state["seed"] != self.seed:
            raise ValueError(
                "stream state was saved for another mixture, seed, length or pool size "
                f"(fingerprint {state['fingerprint']}, seed {state['seed']}; this stream: "
                f"{self._fingerprint}, seed {self.seed})"
            )
        self._rows = int(state["rows"])
        self.sampler.example = int(state["example"])
        self.sampler.counts = np.asarray(state["counts"], np.int64)
        for t, i in state["pool"]:
            self._planner.pool.append(((t, i), min(int(self._task(t).lengths[i]), self.length)))


def stream_tasks(mixture: str) -> tuple[list[tuple[str, float]], dict[str, int]]:
    """What `MixtureStream` takes for a mixture: (task name, rate) pairs, and the exact example
    counts behind them if known (`check_counts` compares the cache with them).

    optiml's own mixtures (`optiml_mix:*`) come TF-free from `optiml.bench.mixing.mixture_rates`
    (which also lists the absent tasks); any other registered seqio mixture through seqio
    (imports TensorFlow; rates as `seqio.Mixture.get_rate` computes them, counts unknown).
    """
    if mixture in mixing.MIXTURES:
        rates = mixing.mixture_rates(mixture)
        return list(rates.rates), dict(rates.counts)
    import seqio

    provider = seqio.get_mixture_or_task(mixture)
    if isinstance(provider, seqio.Task):
        return [(provider.name, 1.0)], {}
    return [(task.name, float(provider.get_rate(task))) for task in provider.tasks], {}


def check_counts(stream: MixtureStream, counts: dict[str, int]) -> None:
    """Raise if the cache holds other example counts than the data has now (a stale cache)."""
    stale = [
        f"{name} (cache {n}, data {counts[name]})"
        for name, n in stream.num_examples.items()
        if name in counts and counts[name] != n
    ]
    if stale:
        raise ValueError(
            f"the token cache {stream.cache_dir}/{stream.split} is stale for {len(stale)} tasks, "
            f"e.g. {', '.join(stale[:3])}: "
            "re-run `python -m optiml.pipeline.prepare ... --overwrite`"
        )


class MixtureShrunk(errors.RunStopped):
    """A mixture lost more of its tasks or rate mass than the run allows; the message names them."""


def check_shrinkage(
    mixture: str, stream: MixtureStream, rates: Sequence[tuple[str, float]], max_share: float
) -> None:
    """Raise MixtureShrunk if the tasks the mixture declares but the stream lacks (absent from
    the local data, from the cache, or damaged) are more than `max_share` of its tasks, or carry
    more than `max_share` of its rate mass (absent benchmarks' recipe shares included)."""
    absent, benchmark_mass = {}, 0.0
    if mixture in mixing.MIXTURES:
        declared = mixing.mixture_rates(mixture)
        absent, benchmark_mass = dict(declared.reasons), mixing.missing_mass(declared)
    uncached = {name: "not in the cache" for name in stream.missing}
    lost = {**absent, **uncached, **stream.damaged}
    total_rate = sum(r for _, r in rates) or 1.0
    cache_mass = sum(r for n, r in rates if n in uncached or n in stream.damaged) / total_rate
    mass = benchmark_mass + (1 - benchmark_mass) * cache_mass
    tasks = len(lost) / (len(absent) + len(rates))
    if tasks <= max_share and mass <= max_share:
        return

    def some(names: dict[str, str]) -> str:
        return ", ".join(list(names)[:3]) + (" ..." if len(names) > 3 else "")

    parts = [
        f"{len(group)} {what} ({some(group)})"
        for what, group in (("absent locally", absent), ("not in the cache", uncached),
                            ("damaged", stream.damaged))
        if group
    ]  # fmt: skip
    raise MixtureShrunk(
        f"{mixture} ({stream.split}) lost {len(lost)} of {len(absent) + len(rates)} tasks "
        f"({tasks:.1%}) and {mass:.1%} of its rate mass, more than max_missing_share={max_share}: "
        f"{'; '.join(parts)}. Prepare them (python -m optiml.pipeline.prepare --mixture={mixture}"
        f" --split={stream.split} --cache_dir={stream.cache_dir}) or allow more"
    )


def from_mixture(
    mixture: str,
    cache_dir: str | Path,
    *,
    batch_size: int,
    length: int = features.DEFAULT_LENGTH,
    seed: int = 0,
    pool_size: int = 64,
    split: str = "train",
    process_index: int = 0,
    process_count: int = 1,
    on_damaged: str = "leave_out",
    max_missing_share: float = 0.05,
) -> MixtureStream:
    """`MixtureStream` over a mixture's rates (the trainer's `train_data` / `eval_data`), e.g.
    `from_mixture("optiml_mix:train", cache_dir, batch_size=256, seed=0)`. The cache must hold
    the split: `python -m optiml.pipeline.prepare --mixture=... --split=...`; a cache whose counts
    differ from the data's exact counts (prepared before the data or the task changed) is refused,
    and so is a mixture that lost more than `max_missing_share` of its tasks or rate mass
    (`check_shrinkage`: absent data, unprepared or damaged tasks), before the first batch.
    """
    rates, counts = stream_tasks(mixture)
    stream = MixtureStream(
        cache_dir,
        rates,
        batch_size=batch_size,
        length=length,
        seed=seed,
        pool_size=pool_size,
        split=split,
        process_index=process_index,
        process_count=process_count,
        on_damaged=on_damaged,
    )
    check_counts(stream, counts)
    check_shrinkage(mixture, stream, rates, max_missing_share)
    return stream
