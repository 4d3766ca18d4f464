"""Small datasets in the formats the Hugging Face Hub serves, for the PromptSource tests.

`FEATURES` are the real column schemas of the datasets (their Hub dataset cards / the
`datasets` builders: super_glue 1.0.2, piqa 1.1.0, ag_news, cos_e, hellaswag). `write_repo`
writes a folder laid out like the dataset's Hub repository -- a README.md whose YAML `configs`
name the data files of every config and split, and the files themselves (parquet with the
schema in its metadata, or JSON lines) -- which `datasets.load_dataset(folder, config,
split=...)` reads exactly as it reads the Hub; `write_export` writes the Hub's parquet export of
a dataset (how datasets that only have a loading script are read).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import yaml

V, S, I32 = datasets.Value, datasets.Sequence, datasets.Value("int32")
STR = V("string")
BINARY = datasets.ClassLabel(names=["False", "True"])
NLI2 = datasets.ClassLabel(names=["entailment", "not_entailment"])

FEATURES: dict[str, datasets.Features] = {
    "ag_news": datasets.Features(
        {
            "text": STR,
            "label": datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"]),
        }  # fmt: skip
    ),
    "cos_e/v1.11": datasets.Features(
        {
            "id": STR,
            "question": STR,
            "choices": S(STR),
            "answer": STR,
            "abstractive_explanation": STR,
            "extractive_explanation": STR,
        }  # fmt: skip
    ),
    "hellaswag": datasets.Features(
        {
            "ind": I32,
            "activity_label": STR,
            "ctx_a": STR,
            "ctx_b": STR,
            "ctx": STR,
            "endings": S(STR),
            "source_id": STR,
            "split": STR,
            "split_type": STR,
            "label": STR,
        }
    ),  # fmt: skip
    "piqa": datasets.Features(
        {"goal": STR, "sol1": STR, "sol2": STR, "label": datasets.ClassLabel(names=["0", "1"])}
    ),
    "super_glue/boolq": datasets.Features(
        {"question": STR, "passage": STR, "idx": I32, "label": BINARY}
    ),
    "super_glue/cb": datasets.Features(
        {
            "premise": STR,
            "hypothesis": STR,
            "idx": I32,
            "label": datasets.ClassLabel(names=["entailment", "contradiction", "neutral"]),
        }
    ),  # fmt: skip
    "super_glue/copa": datasets.Features(
        {
            "premise": STR,
            "choice1": STR,
            "choice2": STR,
            "question": STR,
            "idx": I32,
            "label": datasets.ClassLabel(names=["choice1", "choice2"]),
        }
    ),  # fmt: skip
    "super_glue/multirc": datasets.Features(
        {
            "paragraph": STR,
            "question": STR,
            "answer": STR,
            "idx": {"paragraph": I32, "question": I32, "answer": I32},
            "label": BINARY,
        }
    ),  # fmt: skip
    "super_glue/record": datasets.Features(
        {
            "passage": STR,
            "query": STR,
            "entities": S(STR),
            "answers": S(STR),
            "idx": {"passage": I32, "query": I32},
        }
    ),  # fmt: skip
    "super_glue/rte": datasets.Features(
        {"premise": STR, "hypothesis": STR, "idx": I32, "label": NLI2}
    ),
    "super_glue/axg": datasets.Features(
        {"premise": STR, "hypothesis": STR, "idx": I32, "label": NLI2}
    ),
    "super_glue/wic": datasets.Features(
        {
            "word": STR,
            "sentence1": STR,
            "sentence2": STR,
            "start1": I32,
            "start2": I32,
            "end1": I32,
            "end2": I32,
            "idx": I32,
            "label": BINARY,
        }
    ),  # fmt: skip
    "super_glue/wsc.fixed": datasets.Features(
        {
            "text": STR,
            "span1_index": I32,
            "span2_index": I32,
            "span1_text": STR,
            "span2_text": STR,
            "idx": I32,
            "label": BINARY,
        }
    ),  # fmt: skip
}


def write_repo(
    root: Path, source_id: str, splits: dict[str, list[dict]], fmt: str = "parquet"
) -> Path:
    """Add one config (`dataset/subset`; no subset: `default`) of a dataset to its repository
    folder `root/<dataset>` and return that folder. `fmt`: parquet | json (JSON lines)."""
    dataset, _, subset = source_id.partition("/")
    config = subset or "default"
    folder = root / dataset
    data_dir = folder / (subset or "data")
    data_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for split, rows in splits.items():
        table = datasets.Dataset.from_list(rows, features=FEATURES[source_id])
        name = f"{split}-00000-of-00001.{'parquet' if fmt == 'parquet' else 'jsonl'}"
        if fmt == "parquet":
            table.to_parquet(data_dir / name)
        else:
            table.to_json(data_dir / name, lines=True)
        files.append({"split": split, "path": f"{data_dir.name}/{split}-*"})
    readme = folder / "README.md"
    card = yaml.safe_load(readme.read_text().split("---")[1]) if readme.is_file() else {}
    configs = [c for c in card.get("configs", []) if c["config_name"] != config]
    card["configs"] = [*configs, {"config_name": config, "data_files": files}]
    readme.write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n# {dataset}\n")
    return folder


def write_export(root: Path, source_id: str, splits: dict[str, list[dict]]) -> Path:
    """Add one config to `root/<dataset>` laid out as the Hub's parquet export
    (`refs/convert/parquet`: `<config>/<split>/0000.parquet`, no README); return the folder."""
    dataset, _, subset = source_id.partition("/")
    for split, rows in splits.items():
        folder = root / dataset / (subset or "default") / split
        folder.mkdir(parents=True, exist_ok=True)
        table = datasets.Dataset.from_list(rows, features=FEATURES[source_id])
        table.to_parquet(folder / "0000.parquet")
    return root / dataset
