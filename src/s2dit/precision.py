"""Which precision a run computes in: ``precision: auto`` picks bf16 autocast where bf16 matmuls are faster.

On a GPU bf16 always pays. On a CPU it depends on the chip, and the instruction flags do not tell: a 2-core
Zen 4 EPYC (AVX512-BF16, no AMX) multiplies 2048² bf16 matrices at 0.32 TFLOP/s against 0.13 in float32
(2.5×), while an Intel VM with the same AVX512-BF16 flag ran them at 0.08 against 0.13. So ``auto`` on a CPU
*measures*: once per process it times a 512² matmul in both dtypes (~20 ms) and takes bf16 when it runs at
least :data:`BF16_SPEEDUP_NEEDED` times faster. ``S2DIT_CPU_BF16=1`` (or ``0``) forces the CPU answer, for
tests and for runs that must not depend on a timing.

Master weights and optimiser state stay float32 either way (autocast only changes what matmuls compute in).
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import nullcontext

import torch

from s2dit.errors import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16")
BF16_SPEEDUP_NEEDED = 1.5  # bf16 autocast also adds casts around each matmul: a marginal matmul gain is lost


def _fastest_matmul_s(a: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    a @ b  # warm the kernel and its buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times faster this CPU multiplies 512×512 matrices in bf16 than in float32 (timed once)."""
    with torch.no_grad():
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        return _fastest_matmul_s(a, b) / _fastest_matmul_s(a.bfloat16(), b.bfloat16())


def cpu_bf16_pays() -> bool:
    """Whether bf16 matmuls run clearly faster than float32 on this CPU, or what ``S2DIT_CPU_BF16`` forces."""
    forced = os.environ.get("S2DIT_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"S2DIT_CPU_BF16={forced!r}: must be 0 or 1")
    return cpu_bf16_speedup() >= BF16_SPEEDUP_NEEDED


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype matmuls run in for ``precision`` on ``device``: bf16 or float32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "float32":
        return torch.float32
    kind = torch.device(device).type
    return torch.bfloat16 if kind == "cuda" or (kind == "cpu" and cpu_bf16_pays()) else torch.float32


def autocast(precision: str, device: torch.device | str):
    """The forward pass's context: bf16 autocast where :func:`compute_dtype` says bf16, else nothing."""
    dtype = compute_dtype(precision, device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def compiles(setting: bool | str, precision: str, device: torch.device | str) -> bool:
    """Whether a training step is compiled: ``compile: true|false`` as given; ``"auto"`` where the run
    computes in bf16 (compile fused bf16 autocast's casts and paid 1.76x on a Zen 4 CPU, but lost in float32
    on a Zen 3 one, 0.77x, whose matmuls already ran near the float32 peak)."""
    if setting == "auto":
        return compute_dtype(precision, device) == torch.bfloat16
    return bool(setting)
