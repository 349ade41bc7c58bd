"""``s2dit bench train``: training throughput of S2DiT presets and the micro teacher (flow-matching steps
on random latents), in several modes side by side.

For each model and mode (dtype, compiled or eager) it times full optimiser steps (forward, backward,
AdamW) at batch ``B`` on clips of ``frames`` latent frames at the given video size, after warm-up, and
reports the first (compiling) step, the median step time, samples/s, tokens/s (full-resolution tokens),
the matmul FLOPs per step (counted by ``torch.utils.flop_counter``), achieved FLOP/s, model FLOPs
utilisation (MFU) against the peak of a large matmul measured in the same run and dtype, and the speed-up
over the first mode (the float32 eager baseline). JSON schema ``s2dit.train_bench/2``.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, flow_matching_loss
from s2dit.eval.machine import machine
from s2dit.model.config import preset
from s2dit.model.transformer import S2DiT

SCHEMA = "s2dit.train_bench/2"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """FLOP/s of an ``n × n`` matmul (the best of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


TEACHER = "teacher"  # the micro teacher's architecture (configs/micro_teacher.yaml): diffusers Wan


def build_model(name: str) -> tuple[torch.nn.Module, int, int]:
    """A model to time: an S2DiT preset or the micro teacher; with its latent channels and text width."""
    if name == TEACHER:
        from s2dit.model.wan import WanConfig, WanDenoiser

        wan = WanConfig()
        return WanDenoiser.from_config(wan), wan.in_channels, wan.text_dim
    cfg = preset(name)
    return S2DiT(cfg), cfg.in_channels, cfg.text_dim


def bench_model(
    name: str,
    size: tuple[int, int],
    frames: int,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    dtype: torch.dtype,
    text_len: int,
    checkpointing: bool,
    compile: bool = False,
) -> dict:
    """Time full optimiser steps of one model in one mode (dtype, compiled or eager)."""
    torch.manual_seed(0)
    model, channels, text_dim = build_model(name)
    model = model.to(device)
    if checkpointing:
        model.enable_activation_checkpointing()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    W, H = size
    x0 = torch.randn(batch, channels, frames, H // 8, W // 8, device=device)
    noise = torch.randn_like(x0)
    text = torch.randn(batch, text_len, text_dim, device=device)
    sigma = torch.rand(batch, 1, device=device).expand(batch, frames)
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with amp:
            v = forward(add_noise(x0, noise, sigma), sigma * NUM_TRAIN_TIMESTEPS, text)
        flow_matching_loss(v, x0, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    _sync(device)
    start = time.perf_counter()
    step()  # the first step compiles
    _sync(device)
    first = time.perf_counter() - start
    times = []
    for i in range(max(0, warmup - 1) + steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= max(0, warmup - 1):
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    tokens = frames * (H // 16) * (W // 16)
    return {
        "model": name,
        "preset": name,
        "layout": getattr(getattr(model, "config", None), "layout", "F" * 8 if name == TEACHER else ""),
        "dtype": str(dtype).removeprefix("torch."),
        "compile": compile,
        "parameters": sum(p.numel() for p in model.parameters()),
        "size": [W, H],
        "latent_frames": frames,
        "batch": batch,
        "first_step_s": first,
        "step_ms": 1000 * median,
        "step_ms_min": 1000 * min(times),
        "samples_per_s": batch / median,
        "tokens_per_s": batch * tokens / median,
        "flops_per_step": step_flops(model, x0, sigma, text),
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def step_flops(model: torch.nn.Module, x0: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> float:
    """Matmul FLOPs of one training step, counted by ``torch.utils.flop_counter`` (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        v = model(x0, sigma * NUM_TRAIN_TIMESTEPS, text)
        v.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def run_bench(
    models: list[str],
    size: tuple[int, int],
    frames: int,
    batch: int,
    steps: int,
    warmup: int,
    device: str,
    modes: list[tuple[str, bool]],
    text_len: int = 32,
    checkpointing: bool = False,
    peak_n: int | None = None,
) -> dict:
    """Each model in each mode ``(dtype, compile)``; the first mode is the baseline of the ratios."""
    dev = torch.device(device)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    n = peak_n or (8192 if dev.type == "cuda" else 2048)
    peaks = {d: matmul_peak(dev, dtypes[d], n) for d in dict.fromkeys(m[0] for m in modes)}
    rows = []
    for name in models:
        base = None
        for dtype, compile in modes:
            row = bench_model(
                name, size, frames, batch, steps, warmup, dev, dtypes[dtype], text_len, checkpointing, compile
            )
            row["achieved_flops"] = row["flops_per_step"] / (row["step_ms"] / 1000)
            row["mfu"] = row["achieved_flops"] / peaks[dtype]
            base = base or row
            row["speedup"] = row["samples_per_s"] / base["samples_per_s"]
            rows.append(row)
    return {
        "schema": SCHEMA,
        **machine(device),
        "matmul_peak_flops": peaks,
        "activation_checkpointing": checkpointing,
        "results": rows,
    }
