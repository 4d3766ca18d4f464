"""The rows of a PromptSource dataset in the Hugging Face schema, split by split.

Where they come from, first match wins (source id `dataset[/subset]`, e.g. `super_glue/boolq`):

1. SuperGLUE / FewGLUE / PIQA files in `$OPTIML_DATA_DIR` (`LOCAL`, `piqa`), converted to the
   Hugging Face columns (e.g. RTE `"label": "entailment"` -> `0`; FewGLUE WiC's `version` and
   AX-g's `pair_id` dropped) -- the rows `datasets` would give for the same examples;
2. a local copy of the dataset's Hub repository, `$OPTIML_DATA_DIR/huggingface/<dataset>`
   (parquet/JSON files and the README's `configs`, e.g. from `hf download
   --repo-type dataset <dataset> --local-dir $OPTIML_DATA_DIR/huggingface/<dataset>`), or of
   the Hub's parquet export of it (`... --revision refs/convert/parquet`: `<subset>/<split>/
   *.parquet`, no README) -- the way to datasets that only have a loading script, which
   `datasets` >= 4 no longer runs;
3. the Hugging Face Hub (or its local cache when `HF_DATASETS_OFFLINE=1`).

2 and 3 are the same call, `datasets.load_dataset(<path>, <subset>, split=<split>)` (a parquet
export: `data_dir=<subset>`), one split at a time and only when a split is first asked for. A
dataset that cannot be had (offline and not cached, the Hub unreachable, an unknown name, a
loading script) raises `SourceDataError` with one line naming it and how to get it; mixtures
leave that task out and build from the rest.
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from optiml import paths
from optiml.bench.sources import common

MIRROR = "huggingface"  # $OPTIML_DATA_DIR/huggingface/<dataset>: local copies of Hub datasets
PROBE_TIMEOUT_S = 5.0

Rows = list[dict]


# -- local files in the Hugging Face schema ----------------------------------------------------
def _jsonl(path: Path) -> Rows:
    if not path.is_file():
        return []
    if zipfile.is_zipfile(path):  # the AX-g file is a zip holding one jsonl
        with zipfile.ZipFile(path) as z:
            text = z.read(next(n for n in z.namelist() if n.endswith(".jsonl"))).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _columns(*names: str, labels: list[str] | None = None) -> Callable[[dict], dict]:
    """Keep the Hugging Face columns `names` (+ `label`: an index into `labels`, or a bool)."""

    def convert(row: dict) -> dict:
        label = row["label"]
        return {**{k: row[k] for k in names},
                "label": labels.index(label) if labels else int(bool(label))}  # fmt: skip

    return convert


def _wsc(row: dict) -> dict:
    return {"text": row["text"], **row["target"], "idx": row["idx"], "label": int(row["label"])}


def _multirc(row: dict) -> list[dict]:
    text = row["passage"]["text"]
    return [
        {"paragraph": text, "question": q["question"], "answer": a["text"],
         "idx": {"paragraph": row["idx"], "question": q["idx"], "answer": a["idx"]},
         "label": int(a["label"])}
        for q in row["passage"]["questions"] for a in q["answers"]
    ]  # fmt: skip


def _record(row: dict) -> list[dict]:
    text = row["passage"]["text"]
    entities = sorted({text[e["start"] : e["end"] + 1] for e in row["passage"]["entities"]})
    return [
        {"passage": text, "query": qa["query"], "entities": entities,
         "answers": sorted({a["text"] for a in qa["answers"]}),
         "idx": {"passage": row["idx"], "query": qa["idx"]}}
        for qa in row["qas"]
    ]  # fmt: skip


_NLI2 = ["entailment", "not_entailment"]
_PAIR = ("premise", "hypothesis", "idx")
_SG, _FEW = "superglue", "superglue/fewglue32"
# source id -> (folder under $OPTIML_DATA_DIR, {HF split: file}, row -> HF row(s))
LOCAL = {
    "super_glue/rte": (f"{_SG}/rte", {"train": "train.jsonl", "validation": "val.jsonl"},
                       _columns(*_PAIR, labels=_NLI2)),
    "super_glue/cb": (f"{_SG}/cb", {"train": "train.jsonl", "validation": "val.jsonl"},
                      _columns(*_PAIR, labels=["entailment", "contradiction", "neutral"])),
    "super_glue/wsc.fixed": (f"{_SG}/wsc", {"train": "train.jsonl", "validation": "val.jsonl"},
                             _wsc),
    "super_glue/axg": (f"{_SG}/rte_axg", {"test": "winogender_filtered.jsonl"},
                       _columns(*_PAIR, labels=_NLI2)),
    "super_glue/boolq": (f"{_FEW}/BoolQ", {"train": "train.jsonl"},
                         _columns("question", "passage", "idx")),
    "super_glue/copa": (f"{_FEW}/COPA", {"train": "train.jsonl"},
                        _columns("premise", "choice1", "choice2", "question", "idx")),
    "super_glue/wic": (f"{_FEW}/WiC", {"train": "train.jsonl"},
                       _columns("word", "sentence1", "sentence2", "start1", "start2", "end1",
                                "end2", "idx")),
    "super_glue/multirc": (f"{_FEW}/MultiRC", {"train": "train.jsonl"}, _multirc),
    "super_glue/record": (f"{_FEW}/ReCoRD", {"train": "train.jsonl"}, _record),
}  # fmt: skip


def _piqa(root: Path) -> dict[str, Rows]:
    rows = _jsonl(root / "piqa" / "valid.jsonl")
    labels_file = root / "piqa" / "valid-labels.lst"
    labels = labels_file.read_text().split() if labels_file.is_file() else []
    if len(labels) != len(rows):
        raise common.SourceDataError(f"PromptSource piqa: {len(rows)} rows, {len(labels)} labels")
    fields = ("goal", "sol1", "sol2")
    return {"validation": [{**{k: r[k] for k in fields}, "label": int(y)}
                           for r, y in zip(rows, labels, strict=True)]}  # fmt: skip


def local_rows(source_id: str, root: Path) -> dict[str, Rows] | None:
    """{HF split: rows} from the local SuperGLUE/FewGLUE/PIQA files, or None if there are none."""
    if source_id == "piqa":
        return _piqa(root) if (root / "piqa" / "valid.jsonl").is_file() else None
    if source_id not in LOCAL:
        return None
    folder, files, convert = LOCAL[source_id]
    out = {}
    for split, name in files.items():
        rows = []
        for row in _jsonl(root / folder / name):
            new = convert(row)
            rows += new if isinstance(new, list) else [new]
        if rows:
            out[split] = rows
    return out or None


# -- Hugging Face datasets -----------------------------------------------------------------------
@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (checked once per process), or None. Offline mode
    (`HF_DATASETS_OFFLINE=1`) is not probed: `datasets` then reads its cache only."""
    import datasets

    if datasets.config.HF_HUB_OFFLINE:
        return None
    endpoint = datasets.config.HF_ENDPOINT
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                               timeout=PROBE_TIMEOUT_S).close()  # fmt: skip
    except urllib.error.HTTPError:
        return None  # it answered
    except OSError as err:
        return (
            f"the Hub ({endpoint}) is unreachable ({err}); set HF_DATASETS_OFFLINE=1 to read the "
            "datasets cache without asking it"
        )
    return None


class HubSplits:
    """{HF split: labelled rows} of one dataset read through `datasets.load_dataset(path,
    subset, split=...)`, each split on first use; `get` gives None for a split it lacks.
    `export=True`: `path` is a copy of the Hub's parquet export (`<subset or default>/<split>/
    *.parquet`, no README), read as `load_dataset(path, data_dir=<subset or default>, split=...)`.
    """

    def __init__(self, source_id: str, path: str, export: bool = False) -> None:
        self.source_id, self.path = source_id, path
        self.dataset, _, subset = source_id.partition("/")
        self.subset = subset or None
        # the subset: the config name (second argument), or the export's folder (data_dir)
        self._where = ((), {"data_dir": subset or "default"}) if export else ((self.subset,), {})
        self._splits: dict[str, Rows | None] = {}
        self._names: list[str] | Exception | None = None

    def _fail(self, why: str) -> common.SourceDataError:
        args = repr(self.dataset) + (f", {self.subset!r}" if self.subset else "")
        return common.SourceDataError(
            f"PromptSource {self.source_id}: Hugging Face dataset {args} is not available: {why}. "
            f'Get it once online: `python -c "import datasets; datasets.load_dataset({args})"` '
            "(kept in the datasets cache, read offline with HF_DATASETS_OFFLINE=1), or copy its "
            f"Hub repository or parquet export to $OPTIML_DATA_DIR/{MIRROR}/{self.dataset} "
            "(tasks/README.md)"
        )

    def _call(self, fn: Callable, *args, **kwargs):
        import datasets

        if not Path(self.path).is_dir() and (why := hub_unreachable()):
            raise self._fail(why)
        try:
            config_args, config_kwargs = self._where
            return fn(self.path, *config_args, *args, **config_kwargs, **kwargs)
        except Exception as err:  # offline and not cached, unknown name or subset, bad files...
            if datasets.config.HF_HUB_OFFLINE and isinstance(err, ConnectionError):
                cache = datasets.config.HF_DATASETS_CACHE
                raise self._fail(f"HF_DATASETS_OFFLINE=1 and not in the cache {cache}") from None
            first_line = (str(err).splitlines() or [""])[0]
            raise self._fail(f"{type(err).__name__}: {first_line}") from None

    def names(self) -> list[str]:
        """The dataset's split names (asked once; a failure is kept and raised again)."""
        if self._names is None:
            import datasets

            try:
                self._names = list(self._call(datasets.get_dataset_split_names))
            except common.SourceDataError as err:
                self._names = err
        if isinstance(self._names, Exception):
            raise self._names
        return self._names

    def get(self, split: str, default=None) -> Rows | None:
        if split not in self._splits:
            rows = None
            if split in self.names():
                import datasets

                table = self._call(datasets.load_dataset, split=split)
                rows = [r for r in table.to_list() if r.get("label", 0) != -1]  # -1: unlabelled
            self._splits[split] = rows
        rows = self._splits[split]
        return default if rows is None else rows


def load_rows(source_id: str, root: Path | None = None) -> dict[str, Rows] | HubSplits:
    """{HF split: labelled rows in the HF schema}: local files, else a local Hub copy, else the
    Hub (module docstring). Hub rows are read lazily, one split at a time (`.get(split)`)."""
    return _load_rows(source_id, root or paths.data_dir())


@functools.cache
def _load_rows(source_id: str, root: Path) -> dict[str, Rows] | HubSplits:
    local = local_rows(source_id, root)
    if local is not None:
        return local
    dataset = source_id.partition("/")[0]
    mirror = root / MIRROR / dataset
    if not mirror.is_dir():
        return HubSplits(source_id, dataset)
    return HubSplits(source_id, str(mirror), export=not (mirror / "README.md").is_file())
