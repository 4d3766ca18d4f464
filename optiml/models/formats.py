"""Any OPT checkpoint, its format detected: params and OPTConfig from one path.

    params, config = formats.read("facebook-opt-1.3b/")          # an HF folder
    params, config = formats.read("runs/iml-1.3b", step=4000)    # a training run

Formats (`detect`):
- "optiml": a folder with `optiml_config.json` and `params/` (`convert.save_params`);
- "train": a training run (`optiml.trainer.train`'s run directory, its `checkpoints/` or one
  `checkpoints/<step>`), the params of that step folder's step, else of the newest complete step
  unless `step` is given; the model config is the run's `optiml_config.json` (the trainer
  writes it);
- "hf": a folder with `config.json` and OPT weights (safetensors or .bin, sharded or not);
- "metaseq": a `.pt` file, or a folder of them (consolidated or `model_part-{i}`).

Compute dtype: optiml and training checkpoints keep the one in their config; HF and metaseq
weights compute in float32 unless `compute_dtype` says otherwise, so logits equal transformers'
(bfloat16 differs by up to ~5e-3 and can change a greedy decode). TF-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from optiml.models import convert, hf, opt

FORMATS = ("optiml", "train", "hf", "metaseq")
IMPORTED_COMPUTE_DTYPE = "float32"  # for HF and metaseq weights (they carry no compute dtype)
_STEP = re.compile(r"^\d+$")


def detect(path: str | Path) -> str:
    """The format of `path` (one of FORMATS); a clear error naming the path otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".pt":
            return "metaseq"
        raise ValueError(f"{path}: a file that is not a metaseq .pt checkpoint")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder")
    if (path / convert.CONFIG_FILE).is_file() and (path / "params").is_dir():
        return "optiml"
    if _checkpoints_dir(path) is not None:
        return "train"
    if (path / "config.json").is_file():
        return "hf"
    if any(path.glob("*.pt")):
        return "metaseq"
    raise ValueError(
        f"{path}: not an OPT checkpoint (looked for optiml_config.json + params/, a training "
        "run's checkpoints/, an HF config.json, metaseq *.pt files)"
    )


def _checkpoints_dir(path: Path) -> Path | None:
    """The Orbax CheckpointManager folder of a run dir, its checkpoints/ or a step dir."""
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.name == "checkpoints" or any(_STEP.match(p.name) for p in path.glob("*/state")):
        return path
    if _STEP.match(path.name) and (path / "state").is_dir():
        return path.parent
    return None


def train_step(path: str | Path) -> int | None:
    """The step a training checkpoint `path` stands for: a `checkpoints/<step>` folder's own step,
    else its run's newest complete step (None: no checkpoint yet)."""
    from optiml import checkpointing

    path = Path(path)
    if _STEP.match(path.name) and (path / "state").is_dir():
        return int(path.name)
    return checkpointing.newest_step(_checkpoints_dir(path))


def _run_dir(path: Path) -> Path:
    """The training run folder that holds optiml_config.json."""
    checkpoints = _checkpoints_dir(path)
    return checkpoints.parent if checkpoints.name == "checkpoints" else checkpoints


def read_config(path: str | Path, compute_dtype: str | None = None) -> opt.OPTConfig:
    """The OPTConfig of the checkpoint at `path` (any format), `compute_dtype` applied if given
    (imported HF / metaseq weights: float32 by default)."""
    path = Path(path)
    kind = detect(path)
    if kind == "optiml":
        config = convert.load_config(path)
    elif kind == "train":
        run = _run_dir(path)
        if not (run / convert.CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{run / convert.CONFIG_FILE} missing: the trainer writes the run's OPTConfig "
                "there (runs started before it did: write it with optiml.models.convert."
                "save_config(RUN_DIR, config))"
            )
        config = convert.load_config(run)
    elif kind == "hf":
        config = hf.HFReader(path).config(dtype=IMPORTED_COMPUTE_DTYPE)
    else:
        from optiml.models.metaseq import MetaseqReader

        config = MetaseqReader(path).config(dtype=IMPORTED_COMPUTE_DTYPE)
    return config.replace(dtype=compute_dtype) if compute_dtype else config


def read(
    path: str | Path,
    *,
    compute_dtype: str | None = None,
    step: int | None = None,
    target: Any = None,
    config: opt.OPTConfig | None = None,
) -> tuple[dict, opt.OPTConfig]:
    """(params, config) from a checkpoint of any format.

    `target`: ShapeDtypeStructs with shardings to restore optiml / training checkpoints onto
    (each device reads only its shards); HF / metaseq weights and target-less reads come back
    as host arrays. `config`: the model config if already known (else `read_config`).
    """
    path = Path(path)
    config = config or read_config(path, compute_dtype)
    kind = detect(path)
    if kind == "optiml":
        return convert.load_params(path, target)[0], config
    if kind == "train":
        from optiml import checkpointing

        abstract = opt.abstract_params(config) if target is None else target
        step = train_step(path) if step is None else step  # `checkpoints/60`: step 60
        return checkpointing.restore_params(_checkpoints_dir(path), abstract, step), config
    if kind == "hf":
        reader = hf.HFReader(path)
    else:
        from optiml.models.metaseq import MetaseqReader

        reader = MetaseqReader(path)
    return convert.hf_to_params(reader.get, config), config


def tokenizer_for(path: str | Path, required: bool = True):
    """The checkpoint's own tokenizer files (an HF folder's vocab.json + merges.txt, or those an
    import/export wrote beside the params; a training run: its run folder), else
    $OPTIML_DATA_DIR/gpt2_bpe; None if neither exists and not `required`."""
    from optiml import paths
    from optiml.models.tokenizer import OPTTokenizer

    path = Path(path)
    folder = _run_dir(path) if detect(path) == "train" else path if path.is_dir() else path.parent
    if OPTTokenizer.has_files(folder):
        return OPTTokenizer.from_folder(folder)
    data = paths.data_dir(required=required)
    if data is None or (not required and not OPTTokenizer.has_files(data / "gpt2_bpe")):
        return None
    return OPTTokenizer.from_folder(data / "gpt2_bpe")
