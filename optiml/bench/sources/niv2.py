"""Super-NaturalInstructions (NIV2): task files, prompt rendering and seqio sources.

Task files follow the official schema (`Definition`, `Positive Examples`, `Instances` with
`id`/`input`/`output`, ...) under `$OPTIML_DATA_DIR/natinst/tasks/<task id>.json`.

Prompt (Tk-Instruct's encoding, then one of the OPT-IML answer delimiters), for 2 demos:

    Definition: <definition>.\\n\\n
     Positive Example 1 -\\nInput: <input>.\\n Output: <output>.\\n
     Positive Example 2 -\\nInput: <input>.\\n Output: <output>.\\n
    Now complete the following example -\\nInput: <instance input>.<delimiter>

`<delimiter>` is one of `DELIMITERS`, picked per example from (seed, task, instance id); none is
added when the prompt already ends with ":". The target text is `" " + output` (metaseq joins
`src.rstrip() + " " + tgt`); an instance with several reference outputs trains on one picked the
same way, and evaluation keeps all of them in `references`.

Splits: `train` = every instance except the held-out ones of `supervised` tasks; `test` = the
evaluation instances (held-out instances of `supervised` tasks, else the first 100 -- NIV2's
convention); `validation` = the same rule up to 250 (paper §4.1). An instance is held out by
`levels.heldout_instance(<dataset>, <input text>)`: tasks built on the same dataset hold out the
same texts, so one cannot train on what another evaluates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path

from optiml import paths
from optiml.bench import catalog, levels
from optiml.bench.sources import common
from optiml.bench.sources.common import DELIMITERS, Example

log = logging.getLogger(__name__)

SPLIT_LIMITS = {"test": 100, "validation": 250}
SPLITS = ("train", "validation", "test")
VARIANTS = {"2shot": 2, "5shot": 5}  # few-shot evaluation variants: `optiml:niv2:<task>#2shot`


class TaskFileError(ValueError):
    """A task file is missing or malformed; the message names the task and the problem."""


@dataclass(frozen=True)
class NIV2Task:
    """The parts of a task file that prompts need."""

    task_id: str  # file stem, e.g. task1557_jfleg_answer_generation
    definition: str
    positive_examples: tuple[tuple[str, str], ...]  # (input, output)
    instances: tuple[tuple[str, str, tuple[str, ...]], ...]  # (id, input, outputs)


def natinst_dir() -> Path:
    return paths.data_dir() / "natinst"


def task_path(task_id: str, root: Path | None = None) -> Path:
    return (root or natinst_dir()) / "tasks" / f"{task_id}.json"


def parse_task(task_id: str, raw: dict) -> NIV2Task:
    """Validate one decoded task JSON; raises TaskFileError naming the task and the field."""
    try:
        definition = raw["Definition"]
        definition = definition[0] if isinstance(definition, list) else definition
        positives = tuple(
            (str(e["input"]), str(e["output"])) for e in raw.get("Positive Examples", [])
        )
        instances = []
        for inst in raw["Instances"]:
            outputs = inst["output"]
            outputs = tuple(outputs) if isinstance(outputs, list) else (outputs,)
            if not outputs or not all(isinstance(o, str) for o in outputs):
                raise TypeError(f"instance {inst.get('id')!r} has no string output")
            instances.append((str(inst["id"]), str(inst["input"]), outputs))
    except (KeyError, TypeError, IndexError) as err:
        raise TaskFileError(f"NIV2 task {task_id}: malformed task file ({err!r})") from None
    if not isinstance(definition, str) or not instances:
        raise TaskFileError(f"NIV2 task {task_id}: malformed task file (no definition/instances)")
    return NIV2Task(task_id, definition, positives, tuple(instances))


@functools.lru_cache(maxsize=64)
def load_task(task_id: str, root: Path | None = None) -> NIV2Task:
    """Read and validate `<root>/tasks/<task_id>.json` (root: $OPTIML_DATA_DIR/natinst)."""
    path = task_path(task_id, root)
    if not path.is_file():
        raise TaskFileError(f"NIV2 task {task_id}: task file {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskFileError(f"NIV2 task {task_id}: malformed task file {path} ({err})") from None
    return parse_task(task_id, raw)


def _punct(text: str) -> str:
    text = text.strip()
    return text if text and text[-1] in string.punctuation else text + "."


def _pick(seed: int, task_id: str, instance_id: str, what: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{what}:{task_id}:{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % n


def render_prompt(task: NIV2Task, text: str, num_demos: int, delimiter: str) -> str:
    """Definition + first `num_demos` positive examples + input, then `delimiter`."""
    parts = [f"Definition: {_punct(task.definition)}\n\n"]
    for i, (x, y) in enumerate(task.positive_examples[:num_demos]):
        parts.append(f" Positive Example {i + 1} -\nInput: {_punct(x)}\n Output: {_punct(y)}\n")
    parts.append(f"Now complete the following example -\nInput: {_punct(text)}")
    prompt = "".join(parts).rstrip()
    return prompt if prompt.endswith(":") else prompt + delimiter


def heldout_key(record: catalog.TaskRecord) -> str | None:
    """The hold-out namespace of a task: its dataset if it is `supervised`, else None."""
    return record.dataset if record.role == "supervised" else None


def _is_heldout(heldout: str, instance: tuple) -> bool:
    return levels.heldout_instance(heldout, instance[1].strip())


def split_instances(task: NIV2Task, split: str, heldout: str | None = None) -> list[tuple]:
    """The instances of one split; `heldout` is `heldout_key(record)` (module docstring)."""
    if split == "train":
        if heldout is None:
            return list(task.instances)
        return [i for i in task.instances if not _is_heldout(heldout, i)]
    if split not in SPLIT_LIMITS:
        raise ValueError(f"NIV2 task {task.task_id}: unknown split {split!r}")
    pool = task.instances
    if heldout is not None:
        pool = [i for i in pool if _is_heldout(heldout, i)]
    return list(pool[: SPLIT_LIMITS[split]])


def render_examples(
    task: NIV2Task,
    split: str,
    *,
    heldout: str | None = None,
    num_demos: int = 0,
    seed: int = 0,
    limit: int | None = None,
) -> list[Example]:
    """The examples of one split (the first `limit` if given), rendered deterministically."""
    out = []
    for inst_id, text, outputs in split_instances(task, split, heldout)[:limit]:
        delimiter = DELIMITERS[_pick(seed, task.task_id, inst_id, "delimiter", len(DELIMITERS))]
        target = outputs[_pick(seed, task.task_id, inst_id, "output", len(outputs))]
        out.append(
            Example(
                id=inst_id,
                inputs=render_prompt(task, text, num_demos, delimiter),
                targets=" " + target.strip(),
                references=tuple(o.strip() for o in outputs),
            )
        )
    return out


def present_task_ids(root: Path | None = None) -> set[str]:
    """NIV2 task ids whose file exists locally (existence only; validity is checked on load)."""
    folder = (root or natinst_dir()) / "tasks"
    return {p.stem for p in folder.glob("task*.json")}


def availability(root: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(available catalog task ids, {missing or malformed task id: reason}) over all 1613 NIV2
    tasks. Parses every present file once (about a second for 1461 files)."""
    present = present_task_ids(root)
    available, problems = [], {}
    for rec in catalog.tasks("niv2"):
        if rec.source_id not in present:
            problems[rec.task] = "missing"
            continue
        try:
            load_task(rec.source_id, root)
        except TaskFileError as err:
            problems[rec.task] = str(err)
            log.warning("%s (left out)", err)
            continue
        available.append(rec.task)
    return available, problems


@functools.cache
def instance_counts(task_id: str, heldout: str | None, root: Path | None = None) -> tuple[int, int]:
    """(instances, held-out instances) of a present task file (`heldout`: see split_instances)."""
    task = load_task(task_id, root)
    if heldout is None:
        return len(task.instances), 0
    return len(task.instances), sum(_is_heldout(heldout, i) for i in task.instances)


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    """Exact examples of one split (loader protocol; TaskFileError if the file is unusable)."""
    key = heldout_key(record)
    total, heldout = instance_counts(record.source_id, key)
    if split == "train":
        return total - heldout
    if split not in SPLIT_LIMITS:
        raise ValueError(f"NIV2 task {record.task}: unknown split {split!r}")
    return min(total if key is None else heldout, SPLIT_LIMITS[split])


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[Example]:
    """Rendered examples of one split, in pure Python (loader protocol)."""
    return render_examples(
        load_task(record.source_id), split,
        heldout=heldout_key(record), num_demos=num_demos, seed=seed,
    )  # fmt: skip


make_source = common.lazy_source(examples)  # a seqio source; nothing is read until used
