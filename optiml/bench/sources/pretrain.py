"""Pre-training text (paper §4.5, Table 6): plain documents whose whole sequence is the target.

The paper mixes in the last shard of OPT's pre-training corpus ("seen only once during
pre-training"); any local corpus works. Data: `$OPTIML_DATA_DIR/pretrain/<task>/`, files read in
name order:

- `*.jsonl`: one document per line, `{"text": "..."}` (OPT's corpus shards use this format);
- `*.txt`: one document per non-empty line.

Training examples are `inputs` "" and `targets` the document (no leading space: nothing precedes
it), so the loss covers every token; the stream packs them into rows like any other task. Only
the train split exists (the mixture's extra share `pretrain`, `mixing.MixingConfig`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common

VARIANTS: dict[str, int] = {}


def load_documents(task: str, root: Path | None = None) -> list[str]:
    """Every document of the task's local files, in file-name then line order."""
    return list(_load((root or paths.data_dir()) / "pretrain" / task))


@functools.cache
def _load(folder: Path) -> tuple[str, ...]:
    files = sorted(p for p in folder.glob("*") if p.suffix in (".jsonl", ".txt"))
    if not files:
        raise common.SourceDataError(f"pretrain: no *.jsonl or *.txt files in {folder}")
    documents = []
    for path in files:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                documents.append(line.strip())
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise common.SourceDataError(f"pretrain: {path}:{i}: {err!r}") from None
            if not isinstance(text, str):
                raise common.SourceDataError(f"pretrain: {path}:{i}: 'text' is not a string")
            if text.strip():
                documents.append(text.strip())
    return tuple(documents)


def _rows(record: catalog.TaskRecord, split: str) -> list[str]:
    if split != "train":
        raise ValueError(f"{record.name}: pre-training text has only a train split, not {split!r}")
    return load_documents(record.source_id)


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    """Whole documents as targets with empty inputs; loader protocol."""
    del num_demos, seed
    return [common.Example(str(i), "", doc) for i, doc in enumerate(_rows(record, split))]


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    return len(_rows(record, split))


make_source = common.lazy_source(examples)
