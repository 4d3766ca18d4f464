"""Fetch missing Super-NaturalInstructions task files from the public repository (or a mirror).

    python -m optiml.tools.download                       # into $OPTIML_DATA_DIR/natinst/tasks
    python -m optiml.tools.download --dest DIR --base-url http://mirror/tasks/ --tasks task001_x

Every file is checked against a manifest before it is kept: `tasks/niv2_manifest.tsv` (committed)
holds, per task, the upstream size and git blob SHA-1 (natural-instructions v2.6, the version the
paper used); a mirror's manifest written by `write_manifest` adds SHA-256. A file is verified by
SHA-256 when the manifest has it, else by its git blob SHA-1 (`sha1(b"blob <size>\\0" + data)`).
Downloads go to a temporary name and are renamed only when verified; failures are retried with
exponential backoff, and a tqdm bar shows progress. Files already present are kept as they are.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from optiml import paths
from optiml.validation import number

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/allenai/natural-instructions/v2.6/tasks/"
MANIFEST_COLUMNS = ("task_id", "size", "sha256", "git_blob")


class ChecksumError(ValueError):
    """A downloaded file does not match its manifest entry."""


@dataclass(frozen=True)
class ManifestEntry:
    task_id: str
    size: int | None = None
    sha256: str | None = None
    git_blob: str | None = None


@dataclass
class DownloadReport:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # task id -> last error


def default_manifest() -> Path:
    return paths.tasks_dir() / "niv2_manifest.tsv"


def read_manifest(path: Path | None = None) -> dict[str, ManifestEntry]:
    path = Path(path or default_manifest())
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = {}
    for i, row in enumerate(rows, start=2):
        if not row.get("task_id") or not (row.get("sha256") or row.get("git_blob")):
            raise ValueError(f"{path}:{i}: manifest row needs task_id and sha256 or git_blob")
        out[row["task_id"]] = ManifestEntry(
            row["task_id"], int(row["size"]) if row.get("size") else None,
            row.get("sha256") or None, row.get("git_blob") or None,
        )  # fmt: skip
    return out


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(entry: ManifestEntry, data: bytes) -> None:
    """Raise ChecksumError naming the task unless `data` matches the manifest entry."""
    if entry.size is not None and len(data) != entry.size:
        raise ChecksumError(f"{entry.task_id}: size {len(data)} != manifest {entry.size}")
    if entry.sha256:
        got = hashlib.sha256(data).hexdigest()
        if got != entry.sha256:
            raise ChecksumError(f"{entry.task_id}: sha256 {got} != manifest {entry.sha256}")
    elif entry.git_blob:
        got = git_blob_sha1(data)
        if got != entry.git_blob:
            raise ChecksumError(f"{entry.task_id}: git blob {got} != manifest {entry.git_blob}")
    else:
        raise ChecksumError(f"{entry.task_id}: manifest has no checksum")


def write_manifest(task_dir: Path, path: Path) -> int:
    """Write a manifest (size, sha256, git blob) for every task JSON in `task_dir` (a mirror)."""
    files = sorted(Path(task_dir).glob("task*.json"))
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(MANIFEST_COLUMNS) + "\n")
        for p in files:
            data = p.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            f.write(f"{p.stem}\t{len(data)}\t{sha}\t{git_blob_sha1(data)}\n")
    return len(files)


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http/https)
        return response.read()


def download_tasks(
    dest: Path | None = None,
    task_ids: list[str] | None = None,
    *,
    base_url: str = DEFAULT_BASE_URL,
    manifest: Path | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> DownloadReport:
    """Download the manifest's tasks (or `task_ids`) missing from `dest`; verify each file."""
    dest = Path(dest or paths.data_dir() / "natinst" / "tasks")
    dest.mkdir(parents=True, exist_ok=True)
    entries = read_manifest(manifest)
    wanted = task_ids if task_ids is not None else sorted(entries)
    unknown = [t for t in wanted if t not in entries]
    if unknown:
        raise KeyError(f"tasks not in the manifest {manifest or default_manifest()}: {unknown[:5]}")
    report = DownloadReport()
    todo = []
    for task_id in wanted:
        (report.present if (dest / f"{task_id}.json").is_file() else todo).append(task_id)
    base = base_url if base_url.endswith("/") else base_url + "/"
    for task_id in tqdm(todo, desc="NIV2 tasks", unit="file", disable=not progress):
        error = ""
        for attempt in range(retries + 1):
            try:
                data = _fetch(f"{base}{task_id}.json", timeout)
                verify(entries[task_id], data)
                tmp = dest / f".{task_id}.json.part"
                tmp.write_bytes(data)
                tmp.replace(dest / f"{task_id}.json")
                report.downloaded.append(task_id)
                break
            except (urllib.error.URLError, OSError, ChecksumError) as err:
                error = f"{type(err).__name__}: {err}"
                log.warning(
                    "%s: attempt %d/%d failed: %s", task_id, attempt + 1, retries + 1, error
                )
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
        else:
            report.failed[task_id] = error
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optiml.tools.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dest", type=Path, default=None, help="task folder to fill")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--tasks", nargs="*", default=None, help="task ids (default: all)")
    parser.add_argument("--retries", type=number(0), default=3)
    parser.add_argument(
        "--write-manifest",
        type=Path,
        default=None,
        metavar="OUT",
        help="write a sha256 manifest of --dest's files (a mirror) and exit",
    )
    args = parser.parse_args(argv)
    if args.write_manifest:
        n = write_manifest(args.dest or paths.data_dir() / "natinst" / "tasks", args.write_manifest)
        print(f"wrote {args.write_manifest}: {n} tasks")
        return 0
    report = download_tasks(
        args.dest, args.tasks, base_url=args.base_url, manifest=args.manifest, retries=args.retries
    )
    print(f"downloaded {len(report.downloaded)}, already present {len(report.present)}, "
          f"failed {len(report.failed)}")  # fmt: skip
    for task_id, error in report.failed.items():
        print(f"  FAILED {task_id}: {error}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    from optiml import cli

    cli.run(main)
