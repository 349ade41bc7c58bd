"""What a benchmark report records about the machine it ran on."""

from __future__ import annotations

import platform

import torch


def machine(device: torch.device | str) -> dict:
    """``device`` (the GPU's name, or the CPU's processor), ``threads`` (torch's intra-op threads) and
    ``torch`` (its version): the fields every benchmark report starts with."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
