"""Bytes that cross the data-centre network (DCN) between TPU slices in one training step.

Across slices every mesh axis is in-slice (ICI) x across-slice (DCN) devices
(`optiml.partitioning.MeshConfig`, e.g. data=1, fsdp=16, model=8, dcn_data=4 on four slices).
With the partitioning rules and the slices on `data` (the default), the only collectives whose
device groups span slices are the reductions of the gradients (and of a few loss scalars) over
the batch; `tests/test_hybrid_mesh.py` checks that on the compiled train step. Counted here:

- every parameter's gradient (param dtype, fp32) is summed over the batch axes: first inside
  each slice over ICI, then the slices exchange one copy of their partial sums (how multislice
  XLA runs it, and the least that must cross). Over k slices a ring all-reduce sends
  2 (k - 1) / k of that copy from each slice; across `dcn_fsdp`, tensors that the FSDP rules
  split over `fsdp` are reduce-scattered instead: (k - 1) / k.
- with m microbatches the reduction runs m times a step: the compiled step reduces inside its
  accumulation loop (the HLO shows it in the loop body).
- `dcn_fsdp` > 1 (FSDP rules) also all-gathers those tensors across slices before use:
  (k - 1) / k of each per gather, twice per microbatch (forward, and the backward pass's
  recomputation under remat).
- `dcn_model` > 1 puts every layer's tensor-parallel activation collectives on DCN: not
  counted, only warned about.

Example: OPT-30B on 2 slices, dcn_data=2: 29,974,540,288 fp32 gradients = 111.66 GiB, so each
slice sends 2 x 1/2 x 111.66 = 111.66 GiB per microbatch (and receives as much).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax.numpy as jnp

from optiml.models.opt import OPTConfig
from optiml.partitioning import MESH_AXES
from optiml.tools.memory import mesh_split, param_tensors


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Bytes each slice sends over DCN in one training step (it receives as many)."""

    slices: int
    gradients: int  # the gradient reduction, all microbatches
    weight_gathers: int  # FSDP weight all-gathers across dcn_fsdp (0 without), all microbatches
    warnings: tuple[str, ...] = ()


def traffic(
    config: OPTConfig, dcn: Mapping[str, int], rules: str, microbatches: int = 1
) -> Traffic:
    """DCN bytes per slice and step for slices along `dcn` = {"data": 2, "fsdp": 1, "model": 1}
    (the across-slice part of each mesh axis) under the rule set `rules`."""
    k_data, k_fsdp, k_model = (dcn[axis] for axis in MESH_AXES)
    itemsize = jnp.dtype(config.param_dtype).itemsize
    gradients = gathers = 0.0
    for tensor in param_tensors(config):
        split = {axis for names in mesh_split(tensor.axes, rules) for axis in names}
        copy = tensor.size * itemsize / (k_model if "model" in split else 1)  # a slice's share
        if "fsdp" in split:  # reduce-scatter over dcn_fsdp, then all-reduce the shard over data
            gradients += copy * (k_fsdp - 1) / k_fsdp
            gradients += copy / k_fsdp * 2 * (k_data - 1) / k_data
            gathers += 2 * copy * (k_fsdp - 1) / k_fsdp
        else:
            k = k_data * k_fsdp
            gradients += copy * 2 * (k - 1) / k
    warnings = ()
    if k_model > 1:
        warnings = (
            f"dcn_model={k_model}: every layer's tensor-parallel activation collectives cross "
            "DCN (not counted)",
        )
    return Traffic(
        slices=math.prod(dcn[axis] for axis in MESH_AXES),
        gradients=round(gradients * microbatches),
        weight_gathers=round(gathers * microbatches),
        warnings=warnings,
    )
