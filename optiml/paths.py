"""Where optiml finds its data, its benchmark catalog (`tasks/`) and its gin configs (`gin/`).

The data directory comes from one environment variable, `OPTIML_DATA_DIR` (CI sets it to
`../shared/data`). The catalog and the gin files ship inside the installed package
(`optiml/_tasks`, `optiml/_gin`); in a source checkout they are the top-level `tasks/` and `gin/`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "OPTIML_DATA_DIR"
# What the data folder holds (one folder per source that a loader reads; the data's README.md):
# any one will do, e.g. a folder holding only crossfit/ serves the CrossFit tasks.
DATA_FOLDERS = (
    "natinst", "gpt2_bpe", "promptsource", "superglue", "piqa", "mmlu", "bbh", "flan", "gsm8k",
    "zero_shot_cot", "reasoning", "crossfit", "exmix", "unifiedskg", "dialogue", "pretrain",
)  # fmt: skip
_PACKAGE = Path(__file__).resolve().parent


class DataDirError(Exception):
    """$OPTIML_DATA_DIR is unset, empty or not the data folder; the message is one line naming
    the variable, the path read and what was expected there. Deliberately not an OSError, so
    that no loader mistakes it for one absent task."""


def _expected() -> str:
    folders = ", ".join(f"{name}/" for name in DATA_FOLDERS[:3])
    return f"the optiml data folder, holding {folders}, ... (README, section Data)"


@functools.cache
def _checked(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    read = value if str(path) == value else f"{value} (= {path})"
    if not path.is_dir():
        raise DataDirError(f"${DATA_DIR_ENV}={read} is not a directory; expected {_expected()}")
    if not any((path / name).is_dir() for name in DATA_FOLDERS):
        folders = ", ".join(f"{name}/" for name in DATA_FOLDERS)
        raise DataDirError(
            f"${DATA_DIR_ENV}={read} is not the optiml data folder: it holds none of {folders} "
            "(README, section Data)"
        )
    return path


def data_dir(required: bool = True) -> Path | None:
    """The directory named by $OPTIML_DATA_DIR (e.g. `../shared/data`), resolved and checked to
    hold at least one of DATA_FOLDERS. `required=False`: None instead of a DataDirError."""
    value = os.environ.get(DATA_DIR_ENV, "")
    try:
        if not value.strip():
            state = "is not set" if DATA_DIR_ENV not in os.environ else "is empty"
            raise DataDirError(f"${DATA_DIR_ENV} {state}; set it to {_expected()}")
        return _checked(value)
    except DataDirError:
        if required:
            raise
        return None


def cache_per_data_dir(maxsize: int | None = None) -> Callable[[Callable], Callable]:
    """`functools.lru_cache(maxsize)` whose key also holds $OPTIML_DATA_DIR and $TFDS_DATA_DIR as
    they are at the call: what was read or counted in one data directory is never returned for
    another (a notebook that points the variable elsewhere, one test after another). The wrapper
    keeps `cache_clear()`."""

    def decorate(fn: Callable) -> Callable:
        @functools.lru_cache(maxsize=maxsize)
        def cached(_data: tuple, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            data = (os.environ.get(DATA_DIR_ENV), os.environ.get("TFDS_DATA_DIR"))
            return cached(data, *args, **kwargs)

        wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _resource_dir(source_name: str, installed_name: str) -> Path:
    source = _PACKAGE.parent / source_name
    if source.is_dir() and (_PACKAGE.parent / "setup.py").exists():
        return source
    installed = _PACKAGE / installed_name
    if installed.is_dir():
        return installed
    raise FileNotFoundError(
        f"neither {source} nor {installed} exists: optiml's {source_name}/ folder was not installed"
    )


def tasks_dir() -> Path:
    """The benchmark catalog folder (`tasks/` in a checkout, `optiml/_tasks` when installed)."""
    return _resource_dir("tasks", "_tasks")


def gin_dir() -> Path:
    """The gin config folder (`gin/` in a checkout, `optiml/_gin` when installed)."""
    return _resource_dir("gin", "_gin")
