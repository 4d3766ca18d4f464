"""T5 tasks kept by OPT-IML after overlap removal (paper A.1): six WMT pairs and CNN/DailyMail,
read through `seqio.TfdsDataSource` with T5's keyword prompts (instruction type "keywords"):

    wmt14_ende_v003     "translate English to German: That is good."  -> " Das ist gut."
    cnn_dailymail_v002  "summarize: <article>"                         -> " <highlights>"

The prompt ends with the text, so one of the OPT-IML answer delimiters follows (paper §2.4).
Splits: `train` (capped at the curation cap, 100k), `validation` (250) and `test` from TFDS
`validation`.
"""

from __future__ import annotations

from optiml.bench import catalog
from optiml.bench.sources import common, tfds_util

VARIANTS: dict[str, int] = {}
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian"}
# task -> (TFDS name, source language, target language); None: summarization
TASKS = {
    "wmt14_ende_v003": ("wmt14_translate/de-en", "en", "de"),
    "wmt14_enfr_v003": ("wmt14_translate/fr-en", "en", "fr"),
    "wmt15_enfr_v003": ("wmt15_translate/fr-en", "en", "fr"),
    "wmt16_enro_v003": ("wmt16_translate/ro-en", "en", "ro"),
    "wmt19_ende_v003": ("wmt19_translate/de-en", "en", "de"),
    "wmt_t2t_ende_v003": ("wmt_t2t_translate/de-en", "en", "de"),
    "cnn_dailymail_v002": ("cnn_dailymail", None, None),
}


def _spec(record: catalog.TaskRecord) -> tuple[str, str | None, str | None]:
    if record.source_id not in TASKS:
        raise common.SourceDataError(f"T5 {record.source_id}: no TFDS source known")
    return TASKS[record.source_id]


def _cap() -> int:
    return catalog.benchmarks()["t5"].curation_cap


def convert(record: catalog.TaskRecord, row: dict) -> tuple[str, str]:
    """(prompt, answer) in T5's format from a decoded TFDS example."""
    _, src, tgt = _spec(record)
    if src is None:
        return "summarize: " + row["article"].strip(), row["highlights"].strip()
    prompt = f"translate {LANGUAGES[src]} to {LANGUAGES[tgt]}: {row[src].strip()}"
    return prompt, row[tgt].strip()


def examples(
    record: catalog.TaskRecord, split: str, *, num_demos: int = 0, seed: int = 0
) -> list[common.Example]:
    del num_demos
    tfds_name = _spec(record)[0]
    out = []
    for i, row in enumerate(tfds_util.rows(f"T5 {record.task}", tfds_name, split, _cap())):
        prompt, answer = convert(record, row)
        out.append(common.make_example(record.task, str(i), prompt, answer, seed=seed))
    return out


def count_examples(record: catalog.TaskRecord, split: str) -> int:
    return tfds_util.count(f"T5 {record.task}", _spec(record)[0], split, _cap())


make_source = common.lazy_source(examples)
