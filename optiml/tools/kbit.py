"""Per-device bytes of an OPT model's weights for inference at each width (`optiml memory`).

The block kernels (q/k/v/out projections, fc1, fc2: `optiml.models.quantize.KERNELS`) take
bits/8 bytes per weight plus one float32 scale per `block` weights; everything else (embeddings,
layer norms, biases) is held in the compute dtype (`config.dtype`), as `evaluate(weight_bits=...)`
holds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optiml.models import quantize
from optiml.models.opt import OPTConfig
from optiml.tools import memory

WIDTHS = (
    ("float32", "float32"),
    ("bfloat16", "bfloat16"),
    ("int8", "int8"),
    ("int4 / fp4", "int4"),
)


def _is_kernel(name: str) -> bool:
    parts = name.split("/")
    return parts[-1] == "kernel" and parts[-2] in quantize.KERNELS


def weight_bytes(
    config: OPTConfig, mesh: Mapping[str, int], rules: str, width: str, block: int = 64
) -> float:
    """Bytes per device of the weights stored as `width` (float32, bfloat16, int8, int4, fp4)."""
    total = 0.0
    for tensor in memory.param_tensors(config):
        local = memory.local_size(tensor, mesh, rules)
        if width in quantize.BITS and _is_kernel(tensor.name):  # blocks along the last axis
            size = min(block, tensor.shape[-1])  # as quantize_array: a shorter axis is one block
            total += local * (quantize.BITS[width] / 8 + 4 / size)
        elif width in quantize.BITS:
            total += local * np.dtype(config.dtype).itemsize
        else:
            total += local * np.dtype(width).itemsize
    return total


def format_rows(
    config: OPTConfig, mesh: Mapping[str, int], rules: Sequence[str], block: int = 64
) -> str:
    """The CLI's inference-weights rows (GiB per device), one column per rule set."""
    lines = [f"{'GiB per device, inference weights':<34}" + "".join(f"{r:>12}" for r in rules)]
    for label, width in WIDTHS:
        cells = "".join(
            f"{weight_bytes(config, mesh, r, width, block) / memory.GIB:>12.2f}" for r in rules
        )
        lines.append(f"{label:<34}{cells}")
    return "\n".join(lines)
