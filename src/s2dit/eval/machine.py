"""What a benchmark report records about the machine it ran on."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from s2dit.precision import cpu_bf16_pays, cpu_bf16_speedup


def cpu_name() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``), else what :mod:`platform` knows, else ``cpu``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def machine(device: torch.device | str) -> dict:
    """``device`` (the GPU's name, or the CPU's model), ``threads`` (torch's intra-op threads), ``torch``
    (its version) and, on a CPU, ``bf16_speedup`` (bf16 over float32 matmul speed, measured) and ``bf16_auto``
    (whether ``precision: auto`` picks bf16 there): the fields every benchmark report starts with."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    report = {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if dev.type != "cuda":
        report["bf16_speedup"] = round(cpu_bf16_speedup(), 2)
        report["bf16_auto"] = cpu_bf16_pays()
    return report
