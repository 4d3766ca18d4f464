"""Dialogue: the 6 BlenderBot 3 datasets (paper §4.7, A.2); off by default (role `off`).

Data: ParlAI "Conversations" JSON lines in
`$OPTIML_DATA_DIR/dialogue/<task>/{train,valid,test}.jsonl`,
one dialogue per line: `{"dialog": [[{"id": "partner1", "text": "Hi!"}, {"id": "partner2",
"text": "Hello."}], ...], "context": [{"text": "your persona: ..."}]}` (turn lists may be nested
or flat; `context` texts come first).

Training uses the whole sequence as the target (paper: whole-sequence loss), turns joined by a
single newline: inputs "" and targets " Hi!\\nHello.\\nHow are you?". Evaluation predicts the last
turn from the others: inputs "Hi!\\nHello.", targets " How are you?".
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common

VARIANTS: dict[str, int] = {}
FILES = {"train": "train.jsonl", "validation": "valid.jsonl", "test": "test.jsonl"}


def _turns(node) -> list[str]:
    if isinstance(node, dict):
        return [str(node["text"]).strip()] if str(node.get("text", "")).strip() else []
    if isinstance(node, list):
        return [t for child in node for t in _turns(child)]
    raise TypeError(f"unexpected dialogue entry {node!r:.60}")


def load_dialogues(task: str, root: Path | None = None) -> dict[str, list[list[str]]]:
    """{source split: [[turn, ...], ...]} from the task's ParlAI JSONL files."""
    return _load(task, (root or paths.data_dir()) / "dialogue" / task)


@functools.cache
def _load(task: str, folder: Path) -> dict[str, list[list[str]]]:
    out = {}
    for split, name in FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        dialogues = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                turns = _turns(row.get("context", [])) + _turns(row["dialog"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise common.SourceDataError(f"dialogue {task}: {path}:{i}: {err}") from None
            if len(turns) >= 2:
                dialogues.append(turns)
        out[split] = dialogues
    if not out:
        raise common.SourceDataError(f"dialogue {task}: no local files in {folder}")
    return out


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    """Whole dialogues (train) or last-turn prediction (evaluation); loader protocol."""
    del num_demos, seed
    rows = common.split_rows(record, split, load_dialogues(record.source_id))
    if split == "train":
        return [common.Example(str(i), "", " " + "\n".join(t)) for i, t in enumerate(rows)]
    return [
        common.Example(str(i), "\n".join(t[:-1]), " " + t[-1], (t[-1],)) for i, t in enumerate(rows)
    ]


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    return len(common.split_rows(record, split, load_dialogues(record.source_id)))


make_source = common.lazy_source(examples)
