"""The on-disk token cache that `prepare` writes and `stream` reads (numpy only, no TensorFlow).

Layout, one folder per task and split (written to a temporary folder, then renamed, so a folder
that exists is complete):

    <cache_dir>/<split>/<task_name>/tokens.npy          uint16 (int32 if vocab > 65536), [T]
    <cache_dir>/<split>/<task_name>/offsets.npy         int64 [N + 1]; example i is
                                                        tokens[offsets[i]:offsets[i + 1]]
    <cache_dir>/<split>/<task_name>/prompt_lengths.npy  int32 [N]
    <cache_dir>/<split>/<task_name>/info.json           {"name", "split", "num_examples", ...}
    <cache_dir>/<split>/_errors/<task_name>.json        why a task could not be prepared
    <cache_dir>/<split>/manifest.json                   counts of every prepared/failed task

Example i holds the prompt ids followed by the target ids (which end with EOS 2), e.g. prompt
[10, 11] and target [20, 2] are stored as [10, 11, 20, 2] with prompt length 2. No BOS is stored:
the stream adds it (see `optiml.pipeline.features`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
ERRORS = "_errors"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TaskInfo:
    """What `info.json` says about one prepared task."""

    name: str
    split: str
    num_examples: int
    num_tokens: int
    dtype: str
    seed: int
    format: int = FORMAT_VERSION


def split_dir(cache_dir: str | Path, split: str) -> Path:
    return Path(cache_dir) / split


def task_dir(cache_dir: str | Path, split: str, name: str) -> Path:
    return split_dir(cache_dir, split) / name


def write_task(
    cache_dir: str | Path,
    split: str,
    name: str,
    examples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    vocab_size: int,
) -> TaskInfo:
    """Write a task's (prompt ids, target ids) examples atomically and return its info."""
    dtype = np.uint16 if vocab_size <= 1 << 16 else np.int32
    chunks: list[np.ndarray] = []
    offsets = [0]
    prompt_lengths: list[int] = []
    for prompt, target in examples:
        if len(target) == 0:
            raise ValueError(f"task {name}: example {len(prompt_lengths)} has an empty target")
        chunks.append(np.asarray(prompt, np.int64))
        chunks.append(np.asarray(target, np.int64))
        offsets.append(offsets[-1] + len(prompt) + len(target))
        prompt_lengths.append(len(prompt))
    tokens = np.concatenate(chunks) if chunks else np.zeros([0], np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"task {name}: token ids outside [0, {vocab_size})")
    info = TaskInfo(name, split, len(prompt_lengths), int(tokens.size), np.dtype(dtype).name, seed)

    final = task_dir(cache_dir, split, name)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "tokens.npy", tokens.astype(dtype))
    np.save(tmp / "offsets.npy", np.asarray(offsets, np.int64))
    np.save(tmp / "prompt_lengths.npy", np.asarray(prompt_lengths, np.int32))
    (tmp / "info.json").write_text(json.dumps(asdict(info), indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    (split_dir(cache_dir, split) / ERRORS / f"{name}.json").unlink(missing_ok=True)
    return info


def write_error(cache_dir: str | Path, split: str, name: str, message: str) -> None:
    """Record why `name` could not be prepared (read back by `read_manifest`)."""
    folder = split_dir(cache_dir, split) / ERRORS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "split": split, "error": message, "time": time.time()}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=1))


def read_info(cache_dir: str | Path, split: str, name: str) -> TaskInfo | None:
    """The info of a prepared task, or None if it is not in the cache."""
    path = task_dir(cache_dir, split, name) / "info.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable cache info ({e})") from e
    if record.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: cache format {record.get('format')} != {FORMAT_VERSION}")
    return TaskInfo(**record)


def read_errors(cache_dir: str | Path, split: str) -> dict[str, str]:
    """task name -> error message, for tasks that failed to prepare."""
    folder = split_dir(cache_dir, split) / ERRORS
    if not folder.is_dir():
        return {}
    errors = {}
    for path in sorted(folder.glob("*.json")):
        errors[path.stem] = json.loads(path.read_text())["error"]
    return errors


def write_manifest(cache_dir: str | Path, split: str) -> dict:
    """Scan the split's folder and write `manifest.json`: counts per task, totals, failures."""
    root = split_dir(cache_dir, split)
    tasks = {}
    for info_path in sorted(root.glob("*/info.json")):
        info = read_info(cache_dir, split, info_path.parent.name)
        if info is not None:
            tasks[info.name] = {"num_examples": info.num_examples, "num_tokens": info.num_tokens}
    manifest = {
        "split": split,
        "num_tasks": len(tasks),
        "num_examples": sum(t["num_examples"] for t in tasks.values()),
        "num_tokens": sum(t["num_tokens"] for t in tasks.values()),
        "tasks": tasks,
        "errors": read_errors(cache_dir, split),
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, root / MANIFEST)
    return manifest


class CachedTask:
    """Read access to one prepared task through memory maps (nothing is loaded up front)."""

    def __init__(self, cache_dir: str | Path, split: str, name: str) -> None:
        folder = task_dir(cache_dir, split, name)
        info = read_info(cache_dir, split, name)
        if info is None:
            raise FileNotFoundError(f"task {name} ({split}) is not in the cache {cache_dir}")
        self.info = info
        self.name = name
        self.tokens = np.load(folder / "tokens.npy", mmap_mode="r")
        self.offsets = np.load(folder / "offsets.npy")
        self.prompt_lengths = np.load(folder / "prompt_lengths.npy")
        self.lengths = np.diff(self.offsets)  # prompt + target tokens of each example
        if len(self.prompt_lengths) != info.num_examples or self.offsets[-1] != len(self.tokens):
            raise ValueError(f"{folder}: arrays disagree with info.json (damaged cache)")

    def __len__(self) -> int:
        return self.info.num_examples

    def example(self, index: int) -> tuple[np.ndarray, int]:
        """(prompt + target ids as int32, prompt length) of example `index`."""
        start, end = self.offsets[index], self.offsets[index + 1]
        return np.asarray(self.tokens[start:end], np.int32), int(self.prompt_lengths[index])
