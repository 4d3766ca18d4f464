"""Super-NaturalInstructions (NIV2): task files, prompt rendering and seqio sources.

Task files follow the official schema (`Definition`, `Positive Examples`, `Instances` with
`id`/`input`/`output`, ...) under `$OPTIML_DATA_DIR/natinst/tasks/<task id>.json`.

Prompt formats (tasks/prompt_formats.json), both with k demonstrations between the definition
and the example (paper §2.4): the task's positive examples first, then its own training
instances (never the evaluated one, never one the split evaluates; `reachable_shots`):

- `appendix_c` (default; the paper's Appendix C, Figures 7-16): one of "Instructions: ",
  "Task: " or nothing, the definition, a new line, "Input: " or nothing, the input, then one of
  the answer delimiters (`common.DELIMITERS`; none when the text ends with ":"); all picked per
  example from (seed, task, instance id). Each demonstration reads like the example, followed by
  " <output>", and they are separated by a blank line:

      Task: Answer the question\nInput: What is 1+1?\nAnswer: 2\n\nInput: Is it raining?\nAnswer:

- `tk_instruct` (task variants `#tk`, `#tk_2shot`, `#tk_5shot`): Tk-Instruct's `ni_collator.py`
  byte for byte (definition + positive examples), the prompt ending with "Output:":

      Definition: Answer the question.\n\n Positive Example 1 -\nInput: What is 1+1?\n Output: 2.
      \n\nNow complete the following example -\nInput: Is it raining?\nOutput:

Retrieved demonstrations (variants `#retrieved_2shot`, `#retrieved_5shot`; Agrawal et al. 2022):
the k instances of the same pool that BM25 ranks first for the input (`retrieval`), no positive
examples, never the evaluated instance nor one the split evaluates or holds out.

The target text is `" " + output` (metaseq joins `src.rstrip() + " " + tgt`); an instance with
several reference outputs trains on one picked the same way, evaluation keeps all of them.

Splits: `train` = every instance except the held-out ones of `supervised` tasks; `test` = the
evaluation instances (held-out instances of `supervised` tasks, else the first 100 -- NIV2's
convention); `validation` = the same rule up to 250 (paper §4.1). An instance is held out by
`levels.heldout_instance(<dataset>, <input text>)`: tasks built on the same dataset hold out the
same texts, so one cannot train on what another evaluates.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from optiml import paths
from optiml.bench import catalog, levels
from optiml.bench.sources import common, retrieval

DELIMITERS = common.DELIMITERS  # (paper §2.4; tests read them here)

log = logging.getLogger(__name__)

SPLIT_LIMITS = {"test": 100, "validation": 250}
SPLITS = ("train", "validation", "test")
VARIANTS = {"2shot": 2, "5shot": 5}  # few-shot evaluation variants: `optiml:niv2:<task>#2shot`
FORMATS = ("appendix_c", "tk_instruct")  # tasks/prompt_formats.json, the first is the default
# `optiml:niv2:<task>#tk`, `#tk_2shot`, ...; `#retrieved_2shot`: BM25-retrieved demonstrations
FORMAT_VARIANTS = {"tk": {"fmt": "tk_instruct"}, **retrieval.FORMAT_VARIANT}


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


@paths.cache_per_data_dir(maxsize=64)
def load_task(task_id: str, root: Path | None = None) -> NIV2Task:
    """Read and validate `<root>/tasks/<task_id>.json` (root: $OPTIML_DATA_DIR/natinst)."""
    path = task_path(task_id, root)
    if path.is_dir():
        raise TaskFileError(f"NIV2 task {task_id}: task file {path} is a directory, not JSON")
    if not path.is_file():
        raise TaskFileError(f"NIV2 task {task_id}: task file {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskFileError(f"NIV2 task {task_id}: malformed task file {path} ({err})") from None
    return parse_task(task_id, raw)


def _punct(text: str) -> str:
    """Tk-Instruct's rule: strip, then add "." unless the text ends in punctuation."""
    text = text.strip()
    return text if text and text[-1] in string.punctuation else text + "."


def _pick(seed: int, task_id: str, instance_id: str, what: str, n: int) -> int:
    return common.pick(seed, n, what, task_id, instance_id)


def tk_definition(definition: str) -> str:
    """Tk-Instruct's task-level head: "Definition: <definition, punctuated>\n\n"."""
    f = catalog.prompt_formats()["niv2"]["tk_instruct"]
    definition = _punct(definition) if "definition" in f["punctuate"] else definition
    return f["definition"].format(definition=definition)


def render_tk_instruct(definition: str, text: str, demos: Sequence[tuple[str, str]]) -> str:
    """Tk-Instruct's encoding (`ni_collator.py`, definition + positive examples), minus the
    trailing space after its closing "Output:" (the target brings its leading space)."""
    f = catalog.prompt_formats()["niv2"]["tk_instruct"]

    def fill(template: str, **fields: object) -> str:
        return template.format(**{k: _punct(str(v)) if k in f["punctuate"] else v
                                  for k, v in fields.items()})  # fmt: skip

    parts = [tk_definition(definition)]
    parts += [fill(f["demo"], index=i + 1, input=x, output=y) for i, (x, y) in enumerate(demos)]
    parts.append(fill(f["query"], input=text))
    return "".join(parts)


def render_appendix_c(
    definition: str,
    text: str,
    demos: Sequence[tuple[str, str]],
    *,
    instruction: int,
    example: int,
    delimiter: str,
) -> str:
    """The paper's Appendix C format: `instruction`/`example` index the format's choices
    (instruction prefix, input prefix), `delimiter` is one of `DELIMITERS` (module docstring)."""
    f = catalog.prompt_formats()["niv2"]["appendix_c"]

    def block(x: str, y: str | None = None) -> str:
        shown = f["example"][example].format(input=x.strip())
        after = "" if shown.endswith(":") else delimiter
        if y is None:
            return shown + after
        return f["demo"].format(example=shown, delimiter=after, output=y.strip())

    body = f["demo_separator"].join([block(x, y) for x, y in demos] + [block(text)])
    return appendix_c_instruction(definition, instruction) + body


def appendix_c_instruction(definition: str, instruction: int) -> str:
    """The task-level head of an Appendix C prompt: e.g. "Task: <definition>\n"."""
    f = catalog.prompt_formats()["niv2"]["appendix_c"]
    head = f["instruction"][instruction].format(definition=definition.strip())
    return head + f["after_instruction"]


def instruction_prefix(task: NIV2Task, *, fmt: str, seed: int, instance_id: str) -> str:
    """The instruction a prompt of `render_prompt` starts with (`Example.instruction`): the
    Appendix C head, or Tk-Instruct's "Definition: ...\n\n" (its demonstrations follow it)."""
    if fmt == "tk_instruct":
        return tk_definition(task.definition)
    f = catalog.prompt_formats()["niv2"]["appendix_c"]
    pick = _pick(seed, task.task_id, instance_id, "instruction", len(f["instruction"]))
    return appendix_c_instruction(task.definition, pick)


def render_prompt(
    task: NIV2Task,
    text: str,
    demos: Sequence[tuple[str, str]],
    *,
    fmt: str = FORMATS[0],
    seed: int = 0,
    instance_id: str = "",
) -> str:
    """One prompt of `task` for input `text` with the given demonstrations, in format `fmt`;
    the Appendix C choices are picked from (seed, task, instance id)."""
    if fmt == "tk_instruct":
        return render_tk_instruct(task.definition, text, demos)
    if fmt != "appendix_c":
        raise ValueError(
            f"NIV2 task {task.task_id}: unknown prompt format {fmt!r}; one of {FORMATS}"
        )
    f = catalog.prompt_formats()["niv2"]["appendix_c"]
    return render_appendix_c(
        task.definition, text, demos,
        instruction=_pick(seed, task.task_id, instance_id, "instruction", len(f["instruction"])),
        example=_pick(seed, task.task_id, instance_id, "input prefix", len(f["example"])),
        delimiter=common.pick_delimiter(seed, task.task_id, instance_id),
    )  # fmt: skip


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


def demo_pool(task: NIV2Task, split: str, heldout: str | None = None) -> list[tuple]:
    """The instances a prompt of `split` may show as demonstrations: the task's training
    instances that this split does not evaluate (for `train`, the evaluated one is skipped by
    `render_examples`)."""
    train = split_instances(task, "train", heldout)
    if split == "train":
        return train
    evaluated = {i[0] for i in split_instances(task, split, heldout)}
    return [i for i in train if i[0] not in evaluated]


def _demos(task: NIV2Task, pool: list[tuple], k: int, seed: int, inst_id: str) -> list[tuple]:
    """k demonstrations: the positive examples first, then instances of `pool` (seeded)."""
    demos = list(task.positive_examples[:k])
    others = [i for i in pool if i[0] != inst_id]
    rows = common.demonstrations(others, k - len(demos), seed, task.task_id, inst_id)
    return demos + [(text, outputs[0]) for _, text, outputs in rows]


def render_examples(
    task: NIV2Task,
    split: str,
    *,
    heldout: str | None = None,
    num_demos: int = 0,
    seed: int = 0,
    limit: int | None = None,
    fmt: str = FORMATS[0],
    demos: str = retrieval.MODES[0],
) -> list[common.Example]:
    """The examples of one split (the first `limit` if given), rendered deterministically;
    `demos="retrieved"`: the `num_demos` instances of the demonstration pool that BM25 ranks
    first for the input (`retrieval`), no positive examples."""
    pool = demo_pool(task, split, heldout) if num_demos else []
    bm25 = None
    if retrieval.check_mode(demos) == retrieval.RETRIEVED and num_demos:
        bm25 = retrieval.Retriever([i[1] for i in pool], [i[0] for i in pool])
    out = []
    for inst_id, text, outputs in split_instances(task, split, heldout)[:limit]:
        target = outputs[_pick(seed, task.task_id, inst_id, "output", len(outputs))]
        if bm25 is None:
            shown = _demos(task, pool, num_demos, seed, inst_id)
        else:
            shown = [(pool[j][1], pool[j][2][0]) for j in bm25.top(text, num_demos, inst_id)]
        prompt = render_prompt(task, text, shown, fmt=fmt, seed=seed, instance_id=inst_id)
        out.append(
            common.Example(
                id=inst_id,
                inputs=prompt,
                targets=" " + target.strip(),
                references=tuple(o.strip() for o in outputs),
                instruction=instruction_prefix(task, fmt=fmt, seed=seed, instance_id=inst_id),
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


@paths.cache_per_data_dir()
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
    record: catalog.TaskRecord,
    split: str,
    *,
    num_demos: int = 0,
    seed: int = 0,
    fmt: str = FORMATS[0],
    demos: str = retrieval.MODES[0],
) -> list[common.Example]:
    """Rendered examples of one split, in pure Python (loader protocol)."""
    return render_examples(
        load_task(record.source_id), split,
        heldout=heldout_key(record), num_demos=num_demos, seed=seed, fmt=fmt, demos=demos,
    )  # fmt: skip


def reachable_shots(
    record: catalog.TaskRecord, split: str, k: int, demos: str = retrieval.MODES[0]
) -> int:
    """The demonstrations a `k`-shot prompt of this split really gets (loader protocol): k when
    the positive examples and the demonstration pool hold k (besides the evaluated instance);
    retrieved demonstrations (`demos="retrieved"`) come from the pool alone."""
    task = load_task(record.source_id)
    pool = demo_pool(task, split, heldout_key(record))
    positives = (
        0 if retrieval.check_mode(demos) == retrieval.RETRIEVED else len(task.positive_examples)
    )
    return min(k, positives + len(pool) - (split == "train"))


make_source = common.lazy_source(examples)  # a seqio source; nothing is read until used
