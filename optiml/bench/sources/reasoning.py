"""Reasoning: the 14 chain-of-thought datasets of OPT-IML (paper §4.6, A.1) in the paper's
Appendix C format (tasks/prompt_formats.json), and answer extraction for evaluation.

Training rows are Flan's CoT TSVs (`question<TAB>answer<TAB>rationale`, newlines written `\\n`):
`$OPTIML_DATA_DIR/flan/cot_data/<name>_train.tsv` for the Flan 2022 datasets (aqua, creak, ecqa,
esnli, gsm8k, qasc, qed, sensemaking, strategyqa), and the same format in
`$OPTIML_DATA_DIR/reasoning/<task>_train.tsv` for the others (coqa, cos_e, math, proofwriter,
winowhy). Evaluation rows: GSM8K `gsm8k/test.jsonl`, StrategyQA and AQuA from `zero_shot_cot/`.

    inputs  "Solve the math word problem.\\n\\nQ: Natalia sold clips to 48 ...\\nA: Let's think
             step by step."
    targets " Natalia sold 48 / 2 = 24 clips in May. ... So the answer is 72."

`extract_answer(prediction)` gives the final answer ("72"), scored against `answer_of(target)`.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import bbh, common, retrieval

__all__ = [
    "extract_answer",
    "examples",
    "count_examples",
    "make_source",
    "VARIANTS",
    "FORMAT_VARIANTS",
]

VARIANTS = {"5shot": 5}
FORMAT_VARIANTS = retrieval.FORMAT_VARIANT  # `#retrieved_5shot`: BM25-retrieved demonstrations
# task -> its Flan CoT file stem (None: reasoning/<task>_train.tsv)
DATASETS = {
    "aqua_rat": "aqua", "coqa": None, "cos_e": None, "creak": "creak", "ecqa": "ecqa",
    "esnli": "esnli", "gsm8k": "gsm8k", "math": None, "proofwriter": None, "qasc": "qasc",
    "qed": "qed", "sensemaking": "sensemaking", "strategyqa": "strategyqa", "winowhy": None,
}  # fmt: skip


def extract_answer(text: str) -> str | None:
    """The answer of a generated chain of thought, ignoring what follows a blank line (the model
    going on with another question): " 3 + 4 = 7. The answer is 7\n\nQ2? The answer is 9" ->
    "7"."""
    return bbh.extract_answer(text.strip().split("\n\n")[0])


def answer_of(target: str) -> str | None:
    """The final answer inside a rendered target (" ... The answer is 72" -> "72")."""
    return extract_answer(target)


def _tsv(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) != 3:
                raise common.SourceDataError(f"{path}:{i}: expected 3 columns, got {len(row)}")
            rows.append(tuple(c.replace("\\n", "\n").strip() for c in row))
    return rows


def _gsm8k_test(root: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in (root / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        ex = json.loads(line)
        rationale, _, answer = ex["answer"].partition("####")
        rationale = re.sub(r"<<[^>]*>>", "", rationale).strip().replace("\n", " ")
        rows.append((ex["question"].strip(), answer.strip(), rationale))
    return rows


def _strategyqa_test(root: Path) -> list[tuple[str, str, str]]:
    data = json.loads((root / "zero_shot_cot" / "StrategyQA" / "task.json").read_text("utf-8"))
    rows = []
    for ex in data["examples"]:
        answer = max(ex["target_scores"], key=ex["target_scores"].get).lower()
        rationale = ex["target"].split(".", 1)[1].strip() if "." in ex["target"] else ""
        rows.append((ex["input"].strip(), answer, rationale))
    return rows


def _aqua_test(root: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in (root / "zero_shot_cot" / "AQuA" / "test.json").read_text("utf-8").splitlines():
        ex = json.loads(line)
        options = "\n".join(f"({o[0]}) {o[2:].strip()}" for o in ex["options"])
        rationale = ex["rationale"].rsplit("Answer", 1)[0].strip()
        rows.append((f"{ex['question']}\nOptions:\n{options}", f"({ex['correct']})", rationale))
    return rows


EVAL_FILES = {"gsm8k": _gsm8k_test, "strategyqa": _strategyqa_test, "aqua_rat": _aqua_test}


def load_rows(task: str, root: Path | None = None) -> dict[str, list[tuple[str, str, str]]]:
    """{"train": [(question, answer, rationale)], "test": [...]} from the local files."""
    return _load_rows(task, root or paths.data_dir())


@functools.cache
def _load_rows(task: str, root: Path) -> dict[str, list[tuple[str, str, str]]]:
    if task not in DATASETS:
        raise common.SourceDataError(f"reasoning {task}: not one of the 14 CoT datasets")
    stem = DATASETS[task]
    train = root / "flan" / "cot_data" / f"{stem}_train.tsv" if stem else None
    if train is None or not train.is_file():
        train = root / "reasoning" / f"{task}_train.tsv"
    out = {"train": _tsv(train)} if train.is_file() else {}
    try:
        if task in EVAL_FILES:
            out["test"] = EVAL_FILES[task](root)
    except (OSError, KeyError, ValueError) as err:
        raise common.SourceDataError(f"reasoning {task}: bad evaluation file ({err})") from None
    if not out:
        raise common.SourceDataError(f"reasoning {task}: no local data (expected {train})")
    return out


def _format() -> dict:
    return catalog.prompt_formats()["reasoning"]


def instruction(task: str) -> str:
    f = _format()
    return f["math_instruction"] if task in f["math_tasks"] else f["instruction"]


def render_target(answer: str, rationale: str) -> str:
    """ " <rationale> The answer is <answer>" (Appendix C; with OPT's leading space)."""
    text = _format()["target"].format(rationale=rationale.strip(), answer=answer.strip())
    return " " + text.strip()


def render_prompt(
    task: str, question: str, delimiter: str, demos: Sequence[tuple[str, str, str]] = ()
) -> str:
    """Instruction, a new line, the demonstrations and the question (module docstring)."""

    shown = [common.delimited(q.strip(), delimiter) + render_target(a, r) for q, a, r in demos]
    shown.append(common.delimited(question.strip(), delimiter))
    return instruction(task) + "\n" + _format()["demo_separator"].join(shown)


def examples(
    record: catalog.TaskRecord,
    split: str,
    *,
    num_demos: int = 0,
    seed: int = 0,
    demos: str = retrieval.MODES[0],
) -> list[common.Example]:
    """Rendered examples of one split (loader protocol); demonstrations come from the training
    rows: seeded ones, or with `demos="retrieved"` those whose questions BM25 ranks first for the
    example's (`retrieval`); never the example's own question."""
    retrieval.check_mode(demos)
    source = load_rows(record.source_id)
    rows = common.split_rows(record, split, source)
    pool = common.split_rows(record, "train", source) if num_demos else []
    bm25 = None
    if num_demos and demos == retrieval.RETRIEVED:
        bm25 = retrieval.Retriever([q for q, _, _ in pool], [str(j) for j in range(len(pool))])
    out = []
    for i, (question, answer, rationale) in enumerate(rows):
        if bm25:  # `top` leaves out a pool row whose question is this one
            shown = [pool[j] for j in bm25.top(question, num_demos)]
        else:
            others = [d for d in pool if d[0] != question]
            shown = common.demonstrations(others, num_demos, seed, record.task, i)
        delimiter = common.pick_delimiter(seed, record.task, str(i))
        prompt = render_prompt(record.source_id, question, delimiter, shown)
        target = render_target(answer, rationale)
        head = instruction(record.source_id) + "\n"  # demonstrations follow it (Example)
        out.append(common.Example(str(i), prompt, target, (target.strip(),), (), -1, head))
    return out


def reachable_shots(record: catalog.TaskRecord, split: str, k: int, demos: str = "") -> int:
    """Demonstrations a k-shot prompt gets (loader protocol): the task's training rows (retrieved
    or seeded)."""
    del demos
    pool = common.split_rows(record, "train", load_rows(record.source_id))
    return min(k, len(pool) - (split == "train"))


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    return len(common.split_rows(record, split, load_rows(record.source_id)))


make_source = common.lazy_source(examples)
