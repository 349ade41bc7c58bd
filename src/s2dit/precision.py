"""Which precision a run computes in: ``precision: auto`` picks bf16 autocast where bf16 matrix units exist.

bf16 only pays on a CPU with native bf16 *matrix* units (Intel AMX tiles): there a bf16 matmul runs several
times faster than float32. AVX512-BF16 alone (a bf16 dot-product instruction) does not: measured on a
2-core AVX512-BF16 VM without AMX, a 2048² bf16 matmul ran at 0.08 TFLOP/s against 0.13 in float32, and a
teacher training step under bf16 autocast was slower than in float32. So ``auto`` means bf16 on CUDA and on
AMX CPUs, float32 elsewhere. ``S2DIT_CPU_BF16=1`` (or ``0``) forces the CPU answer, for tests and for
machines whose hypervisor hides the flag.

Master weights and optimiser state stay float32 either way (autocast only changes what matmuls compute in).
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from s2dit.errors import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX), or what ``S2DIT_CPU_BF16`` forces."""
    forced = os.environ.get("S2DIT_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"S2DIT_CPU_BF16={forced!r}: must be 0 or 1")
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype matmuls run in for ``precision`` on ``device``: bf16 or float32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "float32":
        return torch.float32
    kind = torch.device(device).type
    return (
        torch.bfloat16 if kind == "cuda" or (kind == "cpu" and cpu_has_bf16_matrix_units()) else torch.float32
    )


def autocast(precision: str, device: torch.device | str):
    """The forward pass's context: bf16 autocast where :func:`compute_dtype` says bf16, else nothing."""
    dtype = compute_dtype(precision, device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
