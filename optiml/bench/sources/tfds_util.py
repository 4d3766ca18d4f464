"""TFDS-backed sources (FLAN, T5): read a dataset through `seqio.TfdsDataSource`, decoded to
Python, for the loader to convert and render.

TFDS finds prepared data in its data directory (`$TFDS_DATA_DIR`, default
`~/tensorflow_datasets`); a dataset that is not prepared there is reported by name
(SourceDataError) and never takes a mixture down. Tests use `tfds.testing.mock_data`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from optiml.bench.sources import common

# our split -> the TFDS split holding labelled data for it (TFDS test splits are often unlabelled)
TFDS_SPLITS = {"train": "train", "validation": "validation", "test": "validation"}


def decode(value: Any) -> Any:
    """numpy/bytes -> Python: b"x" -> "x", arrays -> lists, dicts recursively."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [decode(v) for v in value.tolist()] if value.ndim else decode(value.item())
    if isinstance(value, list | tuple):
        return [decode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@functools.cache
def source(tfds_name: str):
    """The seqio source; a name without `:version` gets the installed builder's version."""
    import seqio
    import tensorflow_datasets as tfds

    if ":" not in tfds_name:
        tfds_name = f"{tfds_name}:{tfds.builder(tfds_name, try_gcs=False).version}"
    return seqio.TfdsDataSource(tfds_name=tfds_name, splits=tuple(set(TFDS_SPLITS.values())))


def _builder(tfds_name: str):
    import tensorflow_datasets as tfds

    return tfds.builder(tfds_name.split(":")[0], try_gcs=False)


def _fail(what: str, tfds_name: str, err: Exception) -> common.SourceDataError:
    return common.SourceDataError(
        f"{what}: TFDS dataset {tfds_name} is not available ({type(err).__name__}: {err})"
    )


def count(what: str, tfds_name: str, split: str, cap: int = 0) -> int:
    """Examples of one of our splits (validation: at most 250; `cap` > 0 caps every split).
    Raises SourceDataError, without downloading anything, when the dataset is not prepared."""
    try:
        n = int(source(tfds_name).num_input_examples(TFDS_SPLITS[split]))
    except Exception:  # no split metadata (e.g. under tfds.testing.mock_data): count by reading
        try:  # the builder's own reader never downloads (tfds.load would try to)
            ds = _builder(tfds_name).as_dataset(split=TFDS_SPLITS[split], shuffle_files=False)
            n = int(ds.take(cap).reduce(0, lambda k, _: k + 1) if cap else ds.cardinality())
            if n < 0:  # unknown cardinality
                n = int(ds.reduce(0, lambda k, _: k + 1))
        except Exception as err:  # tfds raises many kinds for unprepared data
            raise _fail(what, tfds_name, err) from None
    n = min(n, cap) if cap else n
    return min(n, common.VALIDATION_LIMIT) if split == "validation" else n


def rows(what: str, tfds_name: str, split: str, cap: int = 0) -> list[dict]:
    """Decoded examples of one of our splits, in the dataset's order (capped like `count`)."""
    import tensorflow_datasets as tfds

    limit = count(what, tfds_name, split, cap)
    try:
        ds = source(tfds_name).get_dataset(TFDS_SPLITS[split], shuffle=False).take(limit)
        return [decode(ex) for ex in tfds.as_numpy(ds)]
    except Exception as err:
        raise _fail(what, tfds_name, err) from None
