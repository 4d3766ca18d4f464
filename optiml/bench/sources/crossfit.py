"""CrossFit (Ye et al. 2021): its few-shot-gym tasks in their published text-to-text TSVs, with
one instruction sentence per task (CrossFit itself has keywords only; OPT-IML added a sentence).
Classification (`rank`) tasks are scored over the task's label set (every output in its files).

Data: `$OPTIML_DATA_DIR/crossfit/<task>/<task>_{train,dev,test}.tsv` (the full splits) or the
few-shot files `<task>_<k>_<seed>_{train,dev,test}.tsv` that CrossFit's `_build_gym.py` writes
(the first in sorted order). One line per example, `input<TAB>output[<TAB>output...]`; several
reference answers may also be joined by " [SEP] ". CrossFit's `test` file (the original
validation set) is our evaluation pool:

    inputs  "Classify the sentiment of the text (task: imdb).\\n\\n<review>\\nAnswer:"
    targets " positive"
"""

from __future__ import annotations

import functools
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common

VARIANTS: dict[str, int] = {}
INSTRUCTIONS = {  # taxonomy category -> the instruction sentence (with the task's keyword)
    "Question Answering": "Answer the question",
    "Sentiment Analysis": "Classify the sentiment of the text",
    "Toxic Language Detection": "Decide whether the text is hateful or offensive",
    "Linguistic Probing": "Pick the grammatically acceptable sentence",
    "Textual Entailment": "Decide how the two sentences are related",
    "Text Categorization": "Classify the topic of the text",
    "Information Extraction": "Extract the requested information from the text",
    "Fact Verification": "Decide whether the claim is supported",
    "Summarization": "Summarize the text",
    "Text Matching": "Decide whether the two texts mean the same thing",
    "Coreference Resolution": "Resolve what the pronoun or blank refers to",
    "Dialogue Generation": "Write the next turn of the dialogue",
    "Data to Text": "Write a sentence that describes the data",
    "Text to Code": "Translate the question into a query",
}


def instruction(record: catalog.TaskRecord) -> str:
    """One sentence per task: its category's instruction and its CrossFit name."""
    sentence = INSTRUCTIONS.get(record.category, f"Solve the {record.category.lower()} task")
    return f"{sentence} (task: {record.source_id})."


def parse_line(line: str) -> tuple[str, tuple[str, ...]]:
    text, *outputs = line.rstrip("\n").split("\t")
    outputs = [o.strip() for out in outputs for o in out.split(" [SEP] ") if o.strip()]
    if not outputs:
        raise ValueError("no output column")
    return text, tuple(outputs)


def _file(folder: Path, task: str, split: str) -> Path | None:
    full = folder / f"{task}_{split}.tsv"
    if full.is_file():
        return full
    few = sorted(folder.glob(f"{task}_*_*_{split}.tsv"))
    return few[0] if few else None


def load_rows(task: str, root: Path | None = None) -> dict[str, list[tuple[str, tuple]]]:
    """{"train": [(input, outputs)], "validation": [...]} (CrossFit's test file is ours)."""
    return _load_rows(task, (root or paths.data_dir()) / "crossfit" / task)


@functools.cache
def _load_rows(task: str, folder: Path) -> dict[str, list[tuple[str, tuple]]]:
    out = {}
    for ours, theirs in (("train", "train"), ("validation", "test")):
        path = _file(folder, task, theirs)
        if path is None:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            out[ours] = [parse_line(line) for line in lines if line.strip()]
        except ValueError as err:
            raise common.SourceDataError(f"CrossFit {task}: malformed {path} ({err})") from None
    if not out:
        raise common.SourceDataError(f"CrossFit {task}: no local files in {folder}")
    return out


examples, count_examples, make_source = common.keyword_loader(
    load_rows, instruction, rank_over_label_set=True
)
