"""Regenerate the derived catalog files from the public source metadata in $OPTIML_DATA_DIR.

    OPTIML_DATA_DIR=../shared/data python tasks/build_catalog.py

Writes splits/niv2_default_{train,test,excluded}.txt (the official lists), catalog/niv2.tsv (all
1613 tasks, from natinst/task_index.tsv + each present task JSON's `Source`),
catalog/promptsource.tsv (one row per templates.yaml dataset), catalog/flan.tsv (FLAN
2021 original tasks from flan/flan_collection_info.csv), catalog/mmlu.tsv and catalog/bbh.tsv, and
categories.tsv (NIV2's 76 categories + the extra ones the mapping table introduces). Every other
catalog file is written by hand. Categories of other benchmarks go through category_map.tsv.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "task",
    "source_id",
    "dataset",
    "category",
    "source_category",
    "role",
    "answer_type",
    "metric",
    "template",
    "languages",
]
# Paper roles come from task_lists.tsv (Tables 9-13, 15): `dev` (Table 15), `test` (Tables 9-13),
# `supervised` (the paper's fully supervised tasks: trained on, evaluated on held-out instances).
DEV_LIST = "table15"
# PromptSource datasets the paper evaluates although this PromptSource version marks none of their
# templates `original_task` (answer type, metric): Table 10 / 15.
PS_WITHOUT_ORIGINAL = {
    "blended_skill_talk": ("generate", "rougeL"),
    "crows_pairs": ("rank", "accuracy"),
}
# PromptSource collections whose subsets are separate datasets (super_glue/copa -> super_glue_copa)
COLLECTIONS = {"super_glue", "glue", "tweet_eval", "kilt_tasks", "blimp", "bigbench"}
RANK_FLAN_CATEGORIES = {
    "Natural Language Inference",
    "Sentiment Analysis",
    "Paraphrasing Identification",
    "Coreference Resolution",
    "Next Sentence Prediction",
    "Topic Classification",
    "Multiple-Choice QA (no trivia knowledge required)",
    "Closed-Book QA",
    "Grammatical Acceptability",
    "Word Sense Disambiguation",
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.]+", "_", text.lower()).strip("_")


def sanitize(task_id: str) -> str:  # = optiml.bench.names.sanitize
    return re.sub(r"[^A-Za-z0-9_.]+", "_", task_id.strip()).strip("_")


def paper_roles() -> dict[tuple[str, str], str]:
    """(benchmark, task) -> role for every task the paper's tables name (task_lists.tsv):
    `supervised` where a table says fully supervised, else `dev` if Table 15 lists it (COPA is
    in Tables 9 and 15), else `test`."""
    rank = {"test": 0, "dev": 1, "supervised": 2}
    roles: dict[tuple[str, str], str] = {}
    with open(HERE / "task_lists.tsv", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            role = "dev" if r["list"] == DEV_LIST else "test"
            role = "supervised" if r["level"] == "fully_supervised" else role
            key = (r["benchmark"], r["task"])
            roles[key] = max(role, roles.get(key, role), key=rank.get)
    return roles


def task_datasets() -> dict[str, str]:
    """NIV2 task id -> dataset, for the tasks whose `Source` field names the wrong data source
    (dataset_aliases.tsv rows whose alias is a task id, e.g. task105's `Source` says `pib`)."""
    with open(HERE / "dataset_aliases.tsv", encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {r["alias"]: r["dataset"] for r in rows if re.match(r"task\d+_", r["alias"])}


def category_map() -> dict[tuple[str, str], str]:
    with open(HERE / "category_map.tsv", encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {(r["benchmark"], r["source_category"]): r["category"] for r in rows}


def write(name: str, rows: list[dict]) -> None:
    path = HERE / "catalog" / f"{name}.tsv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["task"]))
    print(f"{path.relative_to(HERE)}: {len(rows)} tasks")


def niv2(data: Path, cmap: dict, roles: dict) -> list[dict]:
    """Every NIV2 task, in every language (paper §2.1 takes NIV2 v2.6 whole; Table 1's arithmetic
    needs the non-English tasks): `train` unless the paper's tables name it."""
    rows, fixed = [], task_datasets()
    with open(data / "natinst" / "task_index.tsv", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            task_file = data / "natinst" / "tasks" / f"{r['task']}.json"
            if task_file.is_file():  # `Source` names the dataset; absent tasks: the name's token
                dataset = slug(json.loads(task_file.read_text(encoding="utf-8"))["Source"][0])
            else:
                dataset = r["task"].split("_")[1].lower()
            task = sanitize(r["task"])
            langs = sorted({r["input_lang"], r["output_lang"]})
            rows.append(
                dict(
                    task=task,
                    source_id=r["task"],
                    dataset=fixed.get(task, dataset),
                    category=cmap.get(("niv2", task), r["category"]),
                    source_category=r["category"],
                    role=roles.get(("niv2", task), "train"),
                    answer_type="generate",
                    metric="rougeL",
                    template="niv2:definition_demos_input",
                    languages=",".join(langs),
                )
            )
    return rows


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!Template", lambda loader, node: loader.construct_mapping(node, True))
_Loader.add_constructor(
    "!TemplateMetadata", lambda loader, node: loader.construct_mapping(node, True)
)


def promptsource(data: Path, cmap: dict, roles: dict) -> list[dict]:
    rows = []
    root = data / "promptsource" / "templates"
    for path in sorted(root.rglob("templates.yaml")):
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        templates = [
            t for t in (spec.get("templates") or {}).values() if t["metadata"]["original_task"]
        ]
        ds_id = str(path.parent.relative_to(root))
        task = slug(ds_id.replace("/", "_"))
        if task in PS_WITHOUT_ORIGINAL:
            ranked = PS_WITHOUT_ORIGINAL[task][0] == "rank"
        elif not templates:
            continue  # no original-task template: the paper drops such datasets
        else:
            ranked = sum(bool(t.get("answer_choices")) for t in templates) * 2 >= len(templates)
        source = ds_id.split("/")[0]  # category by hand per task id, else per dataset
        dataset = task if source in COLLECTIONS else slug(source)
        category = cmap.get(("promptsource", task)) or cmap.get(("promptsource", source))
        if category is None:
            sys.exit(f"category_map.tsv: no promptsource category for {task} ({source})")
        role = roles.get(("promptsource", task), "train")
        rows.append(
            dict(
                task=task,
                source_id=ds_id,
                dataset=dataset,
                category=category,
                source_category=source,
                role=role,
                answer_type="rank" if ranked else "generate",
                metric="accuracy" if ranked else "rougeL",
                template=f"promptsource:{ds_id}",
                languages="English",
            )
        )
    return rows


def flan_info(data: Path) -> list[dict]:
    with open(data / "flan" / "flan_collection_info.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def flan(info: list[dict], cmap: dict, roles: dict) -> list[dict]:
    rows, seen = [], set()
    for r in info:
        source_category = r["Specific Task Category"]
        if r["Source"] not in ("FLAN", "FLAN/T0") or source_category.startswith("Inverted"):
            continue
        task = slug(r["Dataset"])
        if task in seen:
            continue
        seen.add(task)
        ranked = source_category in RANK_FLAN_CATEGORIES
        role = roles.get(("flan", task), "train")
        rows.append(
            dict(
                task=task,
                source_id=r["Dataset"],
                dataset=task,
                category=cmap.get(("flan", task)) or cmap[("flan", source_category)],
                source_category=source_category,
                role=role,
                answer_type="rank" if ranked else "generate",
                metric="accuracy" if ranked else "rougeL",
                template=f"flan:{task}",
                languages="English",
            )
        )
    return rows


def mmlu(data: Path) -> list[dict]:
    subjects = sorted(p.name.removesuffix("_test.csv") for p in (data / "mmlu" / "test").iterdir())
    return [
        dict(
            task=s,
            source_id=s,
            dataset="mmlu",
            category="MMLU",
            source_category=s,
            role="eval_only",
            answer_type="rank",
            metric="accuracy",
            template="mmlu:5shot",
            languages="English",
        )
        for s in subjects
    ]


def bbh(data: Path) -> list[dict]:
    files = sorted((data / "bbh" / "bbh").glob("*.json"))
    return [
        dict(
            task=slug(p.stem),
            source_id=p.stem,
            dataset="bbh",
            category="BIG-Bench Hard",
            source_category=p.stem,
            role="eval_only",
            answer_type="generate",
            metric="exact_match",
            template="bbh:3shot_cot_prompts",
            languages="English",
        )
        for p in files
    ]


def categories(catalog_dir: Path, niv2_rows: list[dict]) -> None:
    niv2_names = sorted({r["category"] for r in niv2_rows})
    extra: set[str] = set()
    for path in catalog_dir.glob("*.tsv"):
        with open(path, encoding="utf-8") as f:
            extra |= {r["category"] for r in csv.DictReader(f, delimiter="\t")}
    with open(HERE / "category_map.tsv", encoding="utf-8") as f:
        extra |= {r["category"] for r in csv.DictReader(f, delimiter="\t")}
    with open(HERE / "categories.tsv", "w", encoding="utf-8") as f:
        f.write("category\tkey\torigin\n")
        for name in niv2_names:
            f.write(f"{name}\t{slug(name)}\tniv2\n")
        for name in sorted(extra - set(niv2_names)):
            f.write(f"{name}\t{slug(name)}\tadded\n")
    print(f"categories.tsv: {len(niv2_names)} NIV2 + {len(extra - set(niv2_names))} added")


def niv2_splits(data: Path) -> None:
    """Copy the official `default` split lists (task names only) into splits/."""
    (HERE / "splits").mkdir(exist_ok=True)
    for split in ("train", "test", "excluded"):
        source = data / "natinst" / "splits" / "default" / f"{split}_tasks.txt"
        tasks = [t.strip() for t in source.read_text(encoding="utf-8").split() if t.strip()]
        (HERE / "splits" / f"niv2_default_{split}.txt").write_text("\n".join(tasks) + "\n")
        print(f"splits/niv2_default_{split}.txt: {len(tasks)} tasks")


def niv2_manifest(data: Path) -> None:
    """Upstream size and git blob SHA-1 of every task file (for optiml.tools.download)."""
    with open(data / "natinst" / "task_index.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(HERE / "niv2_manifest.tsv", "w", encoding="utf-8") as f:
        f.write("task_id\tsize\tsha256\tgit_blob\n")
        for r in rows:
            f.write(f"{r['task']}\t{r['orig_bytes']}\t\t{r['blob']}\n")
    print(f"niv2_manifest.tsv: {len(rows)} tasks")


def main() -> None:
    data = Path(os.environ.get("OPTIML_DATA_DIR", "")).resolve()
    if not (data / "natinst" / "task_index.tsv").is_file():
        sys.exit("set OPTIML_DATA_DIR to the data directory (natinst/, flan/, promptsource/, ...)")
    cmap, info, roles = category_map(), flan_info(data), paper_roles()
    niv2_rows = niv2(data, cmap, roles)
    write("niv2", niv2_rows)
    write("promptsource", promptsource(data, cmap, roles))
    write("flan", flan(info, cmap, roles))
    write("mmlu", mmlu(data))
    write("bbh", bbh(data))
    categories(HERE / "catalog", niv2_rows)
    niv2_splits(data)
    niv2_manifest(data)


if __name__ == "__main__":
    main()
