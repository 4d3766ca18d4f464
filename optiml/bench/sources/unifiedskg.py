"""UnifiedSKG (Xie et al. 2022): 21 structured-knowledge grounding tasks from the instantiated
examples the authors released (paper A.1), with one instruction sentence per task.

Data: `$OPTIML_DATA_DIR/unifiedskg/<task>/{train,dev,test}.json` (a JSON list) or `.jsonl`,
records with UnifiedSKG's seq2seq fields `text_in`, `struct_in` and `seq_out`. The input is
UnifiedSKG's own linearisation, `"<text_in> ; structured knowledge: <struct_in>"`:

    inputs  "Translate the question into SQL for the database.\\n\\nHow many singers are there?
             ; structured knowledge: | concert_singer | singer : singer_id , name ...\\nAnswer:"
    targets " select count(*) from singer"

UnifiedSKG's `dev` split is our evaluation pool (its `test` is used when there is no dev file).
`#5shot` (paper Table 13 reports 0/5-shot) puts 5 training examples before the example;
`#retrieved_5shot` the 5 whose inputs BM25 ranks first for the example's (`retrieval`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from optiml import paths
from optiml.bench.sources import common, retrieval

VARIANTS = {"5shot": 5}  # paper Table 13: 0/5-shot
FORMAT_VARIANTS = retrieval.FORMAT_VARIANT  # `#retrieved_5shot`: BM25-retrieved demonstrations
INSTRUCTIONS = {
    "compwebq": "Answer the complex question using the knowledge base.",
    "cosql": "Translate the user's request in the conversation into SQL for the database.",
    "dart": "Write a sentence that describes the data triples.",
    "fetaqa": "Answer the question about the table in a full sentence.",
    "feverous": "Decide whether the table and text support or refute the claim.",
    "grailqa": "Translate the question into a logical form over the knowledge base.",
    "hybridqa": "Answer the question using the table and its linked passages.",
    "kvret": "Write the assistant's next response using the knowledge base.",
    "logic2text": "Describe the logical form over the table in a sentence.",
    "mmqa": "Answer the question using the table, passages and images' captions.",
    "mtop": "Translate the request into a task-oriented semantic parse.",
    "multiwoz": "Track the dialogue state of the conversation.",
    "sparc": "Translate the question in context into SQL for the database.",
    "spider": "Translate the question into SQL for the database.",
    "sqa": "Answer the sequential question about the table.",
    "sql2text": "Explain what the SQL query asks, in English.",
    "tab_fact": "Decide whether the statement is entailed or refuted by the table.",
    "totto": "Describe the highlighted cells of the table in one sentence.",
    "webqsp": "Translate the question into a logical form over the knowledge base.",
    "wikisql": "Answer the question about the table.",
    "wikitq": "Answer the question about the table.",
}


def _records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else data["data"]


def load_rows(task: str, root: Path | None = None) -> dict[str, list[tuple[str, tuple]]]:
    return _load_rows(task, (root or paths.data_dir()) / "unifiedskg" / task)


@functools.cache
def _load_rows(task: str, folder: Path) -> dict[str, list[tuple[str, tuple]]]:
    out = {}
    for ours, theirs in (("train", "train"), ("validation", "dev"), ("test", "test")):
        path = next((p for p in (folder / f"{theirs}.json", folder / f"{theirs}.jsonl")
                     if p.is_file()), None)  # fmt: skip
        if path is None:
            continue
        try:
            out[ours] = [
                (f"{r['text_in']} ; structured knowledge: {r['struct_in']}", (str(r["seq_out"]),))
                for r in _records(path)
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise common.SourceDataError(f"UnifiedSKG {task}: malformed {path} ({err!r})") from None
    if not out:
        raise common.SourceDataError(f"UnifiedSKG {task}: no local files in {folder}")
    return out


examples, count_examples, make_source = common.keyword_loader(
    load_rows, lambda record: INSTRUCTIONS[record.source_id]
)
reachable_shots = common.keyword_shots(load_rows)
