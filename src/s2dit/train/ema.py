"""An exponential moving average of the trained parameters (on the same shards as the parameters)."""

from __future__ import annotations

import torch
from torch import nn


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor of the whole value (FSDP2 parameters are sharded DTensors)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class EMA:
    """``ema ← d·ema + (1 - d)·θ`` after every optimiser step.

    ``d = decay``, or with ``warmup`` ``d_k = min(decay, (1 + k) / (10 + k))`` at the k-th update, so that
    the average forgets the random initial weights within the first hundreds of steps instead of carrying
    them for ~1/(1 - decay) steps. The update count is stored in the state dict for exact resume.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p.detach().clone() for _, p in model.named_parameters()]

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = [p.detach() for _, p in model.named_parameters()]
        torch._foreach_lerp_(self.params, current, 1.0 - self.current_decay())
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full tensors by parameter name (a collective under FSDP2: every rank must call)."""
        return {n: _full(p).detach().cpu().clone() for n, p in zip(self.names, self.params, strict=True)}

    def counters(self) -> dict[str, int]:
        return {"updates": self.updates}

    def load_counters(self, state: dict[str, int]) -> None:
        self.updates = int(state.get("updates", 0))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, p in zip(self.names, self.params, strict=True):
            full = state[name].to(p.device, p.dtype)
            if hasattr(p, "device_mesh"):
                from torch.distributed.tensor import distribute_tensor

                full = distribute_tensor(full, p.device_mesh, p.placements)
            p.copy_(full)
