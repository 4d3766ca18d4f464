"""MMLU (Hendrycks et al.): 57 subjects, rank classification over the letters A-D, 0/5-shot.

Data: `$OPTIML_DATA_DIR/mmlu/{dev,test}/<subject>_{dev,test}.csv`, header
`question,choice0,choice1,choice2,choice3,answer` (answer 0-3). The prompt is Hendrycks' format;
the k-shot demonstrations are the subject's first k dev questions (dev has 5 per subject):

    The following are multiple choice questions (with answers) about abstract algebra.

    <dev question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: B\\n\\n       (k times)
    <test question>\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:

targets " B", options ("A", "B", "C", "D"), label 1. `test` = every test question, `validation`
= the first 250 (MMLU has no other labelled split here); no `train` split (evaluation only).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from optiml import paths
from optiml.bench import catalog
from optiml.bench.sources import common

LETTERS = ("A", "B", "C", "D")
VARIANTS = {"5shot": 5}


def mmlu_dir() -> Path:
    return paths.data_dir() / "mmlu"


def load_questions(subject: str, split: str, root: Path | None = None) -> tuple[tuple, ...]:
    """((question, (4 choices), answer index), ...) of `<subject>_<split>.csv` (split dev/test)."""
    return _load_questions(subject, (root or mmlu_dir()) / split / f"{subject}_{split}.csv")


@functools.cache
def _load_questions(subject: str, path: Path) -> tuple[tuple, ...]:
    if not path.is_file():
        raise common.SourceDataError(f"MMLU {subject}: missing file {path}")
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                choices = tuple(row[f"choice{j}"].strip() for j in range(4))
                answer = int(row["answer"])
                if not 0 <= answer < 4:
                    raise ValueError(f"answer {answer} not in 0-3")
                out.append((row["question"].strip(), choices, answer))
            except (KeyError, ValueError, AttributeError) as err:
                raise common.SourceDataError(
                    f"MMLU {subject}: {path}:{i}: bad row ({err})"
                ) from None
    return tuple(out)


def format_question(question: str, choices: tuple[str, ...], answer: int | None = None) -> str:
    lines = [question] + [f"{letter}. {c}" for letter, c in zip(LETTERS, choices, strict=True)]
    return (
        "\n".join(lines) + "\nAnswer:" + (f" {LETTERS[answer]}\n\n" if answer is not None else "")
    )


def render_prompt(subject: str, question: tuple, demos: tuple[tuple, ...] = ()) -> str:
    topic = subject.replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {topic}.\n\n"
    return header + "".join(format_question(*d) for d in demos) + format_question(*question[:2])


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    """The rendered questions of one split (loader protocol); `seed` is unused (no choice)."""
    del seed
    rows = common.split_rows(
        record, split, {"test": list(load_questions(record.source_id, "test"))}
    )
    demos = load_questions(record.source_id, "dev")[:num_demos] if num_demos else ()
    if len(demos) < num_demos:
        raise common.SourceDataError(
            f"MMLU {record.source_id}: {num_demos}-shot needs {num_demos} dev rows"
        )
    out = []
    for i, q in enumerate(rows):
        prompt = render_prompt(record.source_id, q, demos)
        out.append(common.make_example(record.task, str(i), prompt, LETTERS[q[2]], seed=0,
                                       options=LETTERS, delimiter=False))  # fmt: skip
    return out


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    test = {"test": list(load_questions(record.source_id, "test"))}
    return len(common.split_rows(record, split, test))


make_source = common.lazy_source(examples)
