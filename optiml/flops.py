"""Model FLOPs per token and peak device FLOP/s, for model FLOPs utilisation (MFU).

Training FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B): 6 N + 12 n_layers d L, where
N counts the parameters used in matrix multiplies (every weight except the position table; the
tied token embedding counts once, as the output projection) and the second term is attention
(QK^T and AV, forward + backward) over a row of L tokens. For OPT-1.3B at L=2048:
N = 1.315e9 -> 6N = 7.89e9, attention 12 * 24 * 2048 * 2048 = 1.21e9, total 9.10e9 per token.
MFU = tokens/s * flops_per_token / (devices * peak FLOP/s per device).
"""

from __future__ import annotations

import functools

import jax

from optiml.models import opt
from optiml.models.params import param_count

# Dense bf16 peak FLOP/s per device (vendor data sheets), matched against `device.device_kind`.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
}


@functools.cache  # OPTConfig is hashable; counting traces the model once per config
def matmul_params(config: opt.OPTConfig) -> int:
    """Parameters that take part in matrix multiplies (all but the position embeddings)."""
    positions = (config.max_positions + opt.POSITION_OFFSET) * config.hidden_size
    return param_count(config) - positions


def flops_per_token(config: opt.OPTConfig, length: int) -> float:
    """Training (forward + backward) FLOPs per token for rows of `length` tokens."""
    attention = 12 * config.num_layers * config.hidden_size * length
    return 6.0 * matmul_params(config) + attention


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
    """The table's entry for this device kind (longest match first), None if unknown (CPU)."""
    kind = (device or jax.devices()[0]).device_kind
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_FLOPS[name]
    return None
