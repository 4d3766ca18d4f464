"""The on-disk token cache that `prepare` writes and `stream` reads (numpy only, no TensorFlow).

Layout, one folder per task and split (written aside, then swapped in whole, so a folder that
exists is complete):

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

Faults: `info.json` records each array's CRC-32 and the largest token id; `CachedTask` checks the
arrays' sizes against it, their checksums and the ids against the vocabulary when it opens a task,
and names the task and the file of any mismatch (`DamagedTask`). A rewrite is atomic: the new
folder is written aside and exchanged with the old one in one `renameat2(RENAME_EXCHANGE)` (the
old one is deleted after), so readers and concurrent writers never see a partial or missing task.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from optiml import errors

FORMAT_VERSION = 2  # 2: checksums, max_id and vocab_size in info.json
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
    vocab_size: int
    max_id: int  # the largest token id (-1 for no tokens)
    checksums: dict[str, str]  # array file -> CRC-32 of its data, e.g. {"tokens.npy": "1c291ca3"}
    format: int = FORMAT_VERSION


ARRAYS = ("tokens.npy", "offsets.npy", "prompt_lengths.npy")


class DamagedTask(errors.RunStopped, ValueError):
    """A prepared task whose files disagree with its info.json; the message names the file."""

    def __init__(self, folder: Path, file: str, problem: str) -> None:
        self.task, self.file = folder.name, file
        super().__init__(
            f"cache task {folder.name} is damaged: {folder / file}: {problem}; prepare it again "
            f"(python -m optiml.pipeline.prepare --tasks={folder.name} --split={folder.parent.name}"
            f" --cache_dir={folder.parent.parent} --overwrite)"
        )


def checksum(array: np.ndarray, chunk: int = 1 << 26) -> str:
    """CRC-32 (hex) of an array's data bytes, read in 64 MiB chunks (memory maps stay cheap)."""
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, len(data), chunk):
        crc = zlib.crc32(data[start : start + chunk], crc)
    return f"{crc:08x}"


def split_dir(cache_dir: str | Path, split: str) -> Path:
    return Path(cache_dir) / split


def task_dir(cache_dir: str | Path, split: str, name: str) -> Path:
    return split_dir(cache_dir, split) / name


def stored_seed(cache_dir: str | Path, split: str, name: str) -> int | None:
    """The seed a prepared task's info.json records, unverified (`CachedTask` verifies), or None
    if there is none or it cannot be read."""
    try:
        return json.loads((task_dir(cache_dir, split, name) / "info.json").read_text())["seed"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    arrays = {
        "tokens.npy": tokens.astype(dtype),
        "offsets.npy": np.asarray(offsets, np.int64),
        "prompt_lengths.npy": np.asarray(prompt_lengths, np.int32),
    }
    info = TaskInfo(
        name, split, len(prompt_lengths), int(tokens.size), np.dtype(dtype).name, seed,
        vocab_size=vocab_size, max_id=int(tokens.max()) if tokens.size else -1,
        checksums={file: checksum(array) for file, array in arrays.items()},
    )  # fmt: skip
    final = task_dir(cache_dir, split, name)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    for file, array in arrays.items():
        np.save(tmp / file, array)
    (tmp / "info.json").write_text(json.dumps(asdict(info), indent=1))
    _swap_in(tmp, final)
    (split_dir(cache_dir, split) / ERRORS / f"{name}.json").unlink(missing_ok=True)
    return info


def _swap_in(new: Path, final: Path) -> None:
    """Make the complete folder `new` the folder `final` in one step; delete the old one after.

    Absent `final`: a rename. Present: Linux's renameat2(RENAME_EXCHANGE) swaps the two atomically
    (a reader sees the old folder or the new one, never neither), then the old one is deleted.
    Where the file system cannot exchange, the old folder is renamed aside first (a reader may
    find the task missing for that instant). Concurrent writers of one task all succeed."""
    for _ in range(100):  # another writer may put its folder in place between our two steps
        if _rename_unless_taken(new, final):
            return
        if _exchange(new, final):
            shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
            return
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        try:
            if _rename_unless_taken(new, final):
                return
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise OSError(f"could not put {new} in place of {final}")


def _rename_unless_taken(new: Path, final: Path) -> bool:
    """Rename `new` to `final`; False (nothing done) if a non-empty `final` is in the way."""
    try:
        os.rename(new, final)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        return False
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 with RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def write_error(cache_dir: str | Path, split: str, name: str, message: str) -> None:
    """Record why `name` could not be prepared (read back by `read_manifest`)."""
    folder = split_dir(cache_dir, split) / ERRORS
    folder.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "split": split, "error": message, "time": time.time()}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=1))


def read_info(cache_dir: str | Path, split: str, name: str) -> TaskInfo | None:
    """The info of a prepared task, or None if it is not in the cache."""
    folder = task_dir(cache_dir, split, name)
    try:
        record = json.loads((folder / "info.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DamagedTask(folder, "info.json", f"unreadable ({e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
        found = record.get("format") if isinstance(record, dict) else None
        raise DamagedTask(
            folder, "info.json", f"cache format {found}, this optiml reads {FORMAT_VERSION}"
        )
    try:
        return TaskInfo(**record)
    except TypeError as e:
        raise DamagedTask(folder, "info.json", f"unexpected fields ({e})") from None


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
        if info_path.parent.name.startswith("."):  # a writer's folder, not (yet) a task
            continue
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
    """Read access to one prepared task through memory maps, verified when opened.

    Opening checks the arrays' shapes and sizes against info.json and, with `verify` (default),
    their CRC-32 checksums and the largest token id against the vocabulary (one pass over the
    files); any mismatch raises DamagedTask naming the file. A task being rewritten at that
    moment is opened again once (the swap is atomic, but a reader may open files of both sides)."""

    def __init__(self, cache_dir: str | Path, split: str, name: str, verify: bool = True) -> None:
        self.name = name
        try:
            self._open(task_dir(cache_dir, split, name), verify)
        except DamagedTask:
            time.sleep(0.05)
            self._open(task_dir(cache_dir, split, name), verify)

    def _open(self, folder: Path, verify: bool) -> None:
        info = read_info(folder.parent.parent, folder.parent.name, folder.name)
        if info is None:
            raise FileNotFoundError(f"task {self.name} ({folder.parent.name}) is not in the cache")
        self.info = info
        arrays = {}
        for file in ARRAYS:
            try:
                arrays[file] = np.load(folder / file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:  # missing, truncated, empty, bad header
                raise DamagedTask(folder, file, f"unreadable ({e})") from None
        self.tokens, self.offsets, self.prompt_lengths = (arrays[f] for f in ARRAYS)
        n = info.num_examples
        expected = {
            "tokens.npy": ((info.num_tokens,), info.dtype),
            "offsets.npy": ((n + 1,), "int64"),
            "prompt_lengths.npy": ((n,), "int32"),
        }
        for file, (shape, dtype) in expected.items():
            if arrays[file].shape != shape or arrays[file].dtype != np.dtype(dtype):
                found = f"{arrays[file].dtype.name} {list(arrays[file].shape)}"
                raise DamagedTask(
                    folder, file, f"holds {found}, info.json says {dtype} {list(shape)}"
                )
        if verify:
            for file in ARRAYS:
                if checksum(arrays[file]) != info.checksums.get(file):
                    raise DamagedTask(folder, file, "checksum differs from info.json's")
            top = int(self.tokens.max()) if len(self.tokens) else -1
            if top >= info.vocab_size or top != info.max_id:
                raise DamagedTask(
                    folder, "tokens.npy", f"largest id {top} (info.json: {info.max_id}, "
                    f"vocabulary {info.vocab_size})",
                )  # fmt: skip
        self.offsets = np.asarray(self.offsets)
        self.prompt_lengths = np.asarray(self.prompt_lengths)
        self.lengths = np.diff(self.offsets)  # prompt + target tokens of each example
        if self.offsets[0] != 0 or (self.lengths < 1).any() or self.offsets[-1] != len(self.tokens):
            raise DamagedTask(folder, "offsets.npy", "offsets do not cut tokens.npy into examples")
        if (self.prompt_lengths < 0).any() or (self.prompt_lengths >= self.lengths).any():
            raise DamagedTask(folder, "prompt_lengths.npy", "a prompt leaves no target")

    def __len__(self) -> int:
        return self.info.num_examples

    def example(self, index: int) -> tuple[np.ndarray, int]:
        """(prompt + target ids as int32, prompt length) of example `index`."""
        start, end = self.offsets[index], self.offsets[index + 1]
        return np.asarray(self.tokens[start:end], np.int32), int(self.prompt_lengths[index])
