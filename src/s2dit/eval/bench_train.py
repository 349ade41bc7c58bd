"""``s2dit bench train``: training throughput of S2DiT presets (flow-matching steps on random latents).

For each preset it times full optimiser steps (forward, backward, AdamW) at batch ``B`` on clips of
``frames`` latent frames at the given video size, after warm-up, and reports the median step time,
samples/s, tokens/s (full-resolution tokens), the model FLOPs per step (3 × the forward formula of
``s2dit model info``), achieved FLOP/s, and model FLOPs utilisation (MFU) against the peak of a large
matmul measured in the same run on the same device and dtype. JSON schema ``s2dit.train_bench/1``.
"""

from __future__ import annotations

import platform
import statistics
import time
from contextlib import nullcontext

import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, flow_matching_loss
from s2dit.model.config import preset
from s2dit.model.flops import model_flops
from s2dit.model.transformer import S2DiT

SCHEMA = "s2dit.train_bench/1"


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


def bench_preset(
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
) -> dict:
    cfg = preset(name)
    torch.manual_seed(0)
    model = S2DiT(cfg).to(device)
    if checkpointing:
        model.enable_activation_checkpointing()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    W, H = size
    x0 = torch.randn(batch, cfg.in_channels, frames, H // 8, W // 8, device=device)
    noise = torch.randn_like(x0)
    text = torch.randn(batch, text_len, cfg.text_dim, device=device)
    sigma = torch.rand(batch, 1, device=device).expand(batch, frames)
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with amp:
            v = model(add_noise(x0, noise, sigma), sigma * NUM_TRAIN_TIMESTEPS, text)
        flow_matching_loss(v, x0, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    tokens = frames * (H // 16) * (W // 16)
    flops = 3 * batch * sum(model_flops(cfg, W // 8, H // 8, frames, text_len).values())
    return {
        "preset": name,
        "layout": cfg.layout,
        "parameters": sum(p.numel() for p in model.parameters()),
        "size": [W, H],
        "latent_frames": frames,
        "batch": batch,
        "step_ms": 1000 * median,
        "step_ms_min": 1000 * min(times),
        "samples_per_s": batch / median,
        "tokens_per_s": batch * tokens / median,
        "flops_per_step": flops,
        "achieved_flops": flops / median,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def run_bench(
    presets: list[str],
    size: tuple[int, int],
    frames: int,
    batch: int,
    steps: int,
    warmup: int,
    device: str,
    dtype: str,
    text_len: int = 32,
    checkpointing: bool = False,
    peak_n: int | None = None,
) -> dict:
    dev = torch.device(device)
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    peak = matmul_peak(dev, dt, peak_n or (8192 if dev.type == "cuda" else 2048))
    rows = []
    for name in presets:
        row = bench_preset(name, size, frames, batch, steps, warmup, dev, dt, text_len, checkpointing)
        row["mfu"] = row["achieved_flops"] / peak
        rows.append(row)
    return {
        "schema": SCHEMA,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "torch": torch.__version__,
        "matmul_peak_flops": peak,
        "activation_checkpointing": checkpointing,
        "results": rows,
    }
