"""BIG-Bench Hard (Suzgun et al.): 27 tasks, generation + exact match, 3-shot with and without
chain of thought from the official `cot-prompts`.

Data: `$OPTIML_DATA_DIR/bbh/bbh/<task>.json` ({"examples": [{"input", "target"}]}) and
`bbh/cot-prompts/<task>.txt` (canary line, `-----`, the task description, then three
`Q: ...\\nA: Let's think step by step.\\n<reasoning> So the answer is <answer>.` exemplars).

Variants (`optiml:bbh:<task>#<variant>`): none = 0-shot, `3shot` = the three exemplars with
their answers only (direct), `3shot_cot` = the exemplars with their reasoning, and the prompt
ends in "A: Let's think step by step." Prompts end with "A:" (no extra delimiter):

    <description>\\n\\nQ: <exemplar>\\nA: (D)\\n\\n ... Q: <input>\\nA:          targets " (B)"

A chain-of-thought generation is scored on `extract_answer(text)` (the text after the last
"the answer is"). `test` = every example, `validation` = the first 250.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common

COT_TRIGGER = "Let's think step by step."


class Shots(int):
    """A number of demonstrations that also says whether they carry their chain of thought."""

    cot: bool

    def __new__(cls, n: int, cot: bool = False) -> Shots:
        obj = super().__new__(cls, n)
        obj.cot = cot
        return obj


VARIANTS = {"3shot": Shots(3), "3shot_cot": Shots(3, cot=True)}


def bbh_dir() -> Path:
    return paths.data_dir() / "bbh"


def load_examples(task: str, root: Path | None = None) -> tuple[tuple[str, str], ...]:
    """((input, target), ...) of bbh/<task>.json."""
    return _load_examples(task, (root or bbh_dir()) / "bbh" / f"{task}.json")


@functools.cache
def _load_examples(task: str, path: Path) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        raise common.SourceDataError(f"BBH {task}: missing file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple((str(e["input"]), str(e["target"])) for e in data["examples"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise common.SourceDataError(f"BBH {task}: malformed {path} ({err})") from None


def load_cot_prompt(task: str, root: Path | None = None) -> tuple[str, tuple[tuple, ...]]:
    """(task description, ((question, reasoning, answer), ...)) from cot-prompts/<task>.txt."""
    return _load_cot_prompt(task, (root or bbh_dir()) / "cot-prompts" / f"{task}.txt")


@functools.cache
def _load_cot_prompt(task: str, path: Path) -> tuple[str, tuple[tuple, ...]]:
    if not path.is_file():
        raise common.SourceDataError(f"BBH {task}: missing file {path}")
    text = path.read_text(encoding="utf-8").split("-----", 1)[-1].strip()
    description, *blocks = re.split(r"\n\n(?=Q: )", text)
    shots = []
    for block in blocks:
        question, sep, answer = block.partition(f"\nA: {COT_TRIGGER}")
        final = extract_answer(answer)
        if not sep or not question.startswith("Q: ") or final is None:
            raise common.SourceDataError(f"BBH {task}: cannot parse exemplar in {path}")
        shots.append((question[3:].strip(), answer.strip(), final))
    return description.strip(), tuple(shots)


def extract_answer(text: str) -> str | None:
    """The answer of a chain of thought: "... So the answer is (D)." -> "(D)"; None if absent.
    Text after a new "\n\nQ:" (the model continuing the pattern) is ignored."""
    text = text.split("\n\nQ:")[0]
    at = text.lower().rfind("the answer is")
    if at < 0:
        return None
    answer = text[at + len("the answer is") :].strip().split("\n")[0].strip()
    return answer.removesuffix(".").strip() or None


def cot_exact_match(targets, predictions) -> dict[str, float]:
    """seqio metric for chain-of-thought generations: exact match x100 of `extract_answer(pred)`
    against the references (each target: a reference string or list, as `references_postprocessor`
    gives them; a reference that is itself a chain of thought is reduced the same way)."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    hits = 0
    for refs, pred in zip(targets, predictions, strict=True):
        refs = [refs] if isinstance(refs, str) else list(refs)
        answers = {(extract_answer(r) or r).strip() for r in refs}
        hits += (extract_answer(pred) or "").strip() in answers
    return {"exact_match_cot": 100.0 * hits / max(len(targets), 1)}


def render_prompt(task: str, question: str, num_demos: int = 0, cot: bool = False) -> str:
    description, shots = load_cot_prompt(task)
    if num_demos > len(shots):
        raise common.SourceDataError(f"BBH {task}: only {len(shots)} exemplars, {num_demos} asked")
    parts = [description]
    for q, reasoning, answer in shots[:num_demos]:
        parts.append(f"Q: {q}\nA: {COT_TRIGGER}\n{reasoning}" if cot else f"Q: {q}\nA: {answer}")
    parts.append(f"Q: {question}\nA:" + (f" {COT_TRIGGER}" if cot else ""))
    return "\n\n".join(parts)


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    """Rendered examples of one split (loader protocol); `num_demos` may be a `Shots`."""
    rows = common.split_rows(record, split, {"test": list(load_examples(record.source_id))})
    cot = bool(getattr(num_demos, "cot", False))
    return [
        common.make_example(
            record.task,
            str(i),
            render_prompt(record.source_id, q, int(num_demos), cot),
            target,
            seed=seed,
            delimiter=False,
        )  # fmt: skip
        for i, (q, target) in enumerate(rows)
    ]


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    load_cot_prompt(record.source_id)  # a task without its prompts is not available
    rows = {"test": list(load_examples(record.source_id))}
    return len(common.split_rows(record, split, rows))


make_source = common.lazy_source(examples)
