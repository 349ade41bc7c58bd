"""Stage A of 2-in-1 distillation → S2DiT-KD: regression on cached teacher trajectories
(docs/architecture.md §7), a training method of the one trainer.

:class:`CachedKD` (``method: kd``, bidirectional): *velocity matching* at a cached state, against the
teacher's guided velocity there (the finite difference to the next kept state: exact when the cache keeps
every Euler step), plus *flow matching* on the teacher's final latents. The targets carry the teacher's CFG,
so the student samples without guidance (``cfg: 1``).

Every random choice comes from generators seeded by the sample's position, so batches do not depend on
the number of processes.
"""

from __future__ import annotations

import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, flow_matching_loss, sample_levels
from s2dit.diffusion.timesteps import TimestepSampling
from s2dit.distill.cache import TrajectoryBatches
from s2dit.train.data import sample_generator


def _frames(sigma: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-sample levels ``[B]`` -> per-frame timesteps ``[B, T]``."""
    return (sigma[:, None] * NUM_TRAIN_TIMESTEPS).expand(-1, frames)


class CachedKD:
    """Stage A: see the module docstring. ``loss = velocity_weight·L_v + flow_weight·L_fm``."""

    def __init__(
        self,
        cache: str,
        text_len: int,
        timesteps: TimestepSampling,
        seed: int,
        velocity_weight: float = 1.0,
        flow_weight: float = 1.0,
    ):
        self.timesteps, self.seed = timesteps, seed
        self.velocity_weight, self.flow_weight = velocity_weight, flow_weight
        self.data = TrajectoryBatches(cache, text_len, seed, self.levels)

    def levels(self, position: int, sigmas: list[float]) -> list[int]:
        """A random cached state ``j`` (not the last), the next one, and the final latents."""
        j = int(torch.randint(len(sigmas) - 1, (), generator=sample_generator(self.seed + 1, position)))
        return [j, j + 1, len(sigmas) - 1]

    def loss(
        self, model, batch: dict, null, device: torch.device, step: int = 0
    ) -> tuple[torch.Tensor, dict]:
        states, sigmas = batch["states"], batch["sigmas"]
        x_j, x_next, x_final = states[:, 0], states[:, 1], states[:, 2]
        s_j, s_next = sigmas[:, 0], sigmas[:, 1]
        target_v = (x_next - x_j) / (s_next - s_j)[:, None, None, None, None]
        B, T = x_j.shape[0], x_j.shape[2]
        noise, sigma = torch.empty_like(x_final), torch.empty(B, T)
        for i, p in enumerate(batch["positions"]):
            g = sample_generator(self.seed, p)
            noise[i] = torch.randn(x_final.shape[1:], generator=g)
            sigma[i] = sample_levels(self.timesteps, 1, T, g)[0]
        x_fm = add_noise(x_final, noise, sigma)
        # One pass over both halves: the cached states, then the flow-matching inputs.
        x = torch.cat([x_j, x_fm]).to(device)
        t = torch.cat([_frames(s_j, T), sigma * NUM_TRAIN_TIMESTEPS]).to(device)
        text, mask = (torch.cat([batch[k], batch[k]]).to(device) for k in ("text", "mask"))
        v = model(x, t, text, mask)
        loss_v = (v[:B].float() - target_v.to(device)).square().mean()
        loss_fm = flow_matching_loss(v[B:], x_final.to(device), noise.to(device))
        loss = self.velocity_weight * loss_v + self.flow_weight * loss_fm
        return loss, {"velocity_loss": loss_v.item(), "flow_loss": loss_fm.item()}
