"""Regression on cached teacher trajectories (DESIGN.md §7), as training methods of the one trainer.

* :class:`CachedKD` (``method: kd``, Stage A → S2DiT-KD, bidirectional): *velocity matching* at a cached
  state, against the teacher's guided velocity there (the finite difference to the next kept state: exact
  when the cache keeps every Euler step), plus *flow matching* on the teacher's final latents. The targets
  carry the teacher's CFG, so the student samples without guidance (``cfg: 1``).
* :class:`CausalODE` (``method: causal_ode``, the start of Stage B, block-causal): each chunk of the clip
  sits at its own level of the student's streaming schedule (a random one per chunk), and the student
  regresses the teacher's final latents from it. The cache must contain those levels: made with
  ``--shift`` equal to ``stream.shift`` and ``--steps`` a multiple of ``stream.steps``.

Every random choice comes from generators seeded by the sample's position, so batches do not depend on
the number of processes.
"""

from __future__ import annotations

import torch

from s2dit.diffusion.flow import (
    NUM_TRAIN_TIMESTEPS,
    TimestepSampling,
    add_noise,
    flow_matching_loss,
    x0_from_velocity,
)
from s2dit.diffusion.streaming import StreamSettings
from s2dit.distill.cache import TrajectoryBatches
from s2dit.errors import ConfigError
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
            sigma[i] = self.timesteps.sample(1, T, g)[0]
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


def stream_level_indices(cache_sigmas: list[float], settings: StreamSettings) -> list[int]:
    """Where the student's streaming levels sit among a cache's kept levels (an error if missing)."""
    found = []
    for sigma in settings.sigmas:
        near = [i for i, s in enumerate(cache_sigmas) if abs(s - sigma) < 1e-5]
        if not near:
            raise ConfigError(
                f"the trajectory cache lacks the streaming level σ = {sigma:.4f} (steps {settings.steps}, "
                f"shift {settings.shift:g}): make it with --shift {settings.shift:g}, --steps a multiple of "
                f"{settings.steps} and --keep all (or a count that keeps those levels)"
            )
        found.append(near[0])
    return found


class CausalODE:
    """Stage B's start: block-causal x0 regression with one streaming level per chunk (module docstring)."""

    def __init__(self, cache: str, text_len: int, settings: StreamSettings, seed: int):
        self.settings, self.seed = settings, seed
        self.data = TrajectoryBatches(cache, text_len, seed, self.levels)
        self.stream_levels = stream_level_indices(self.data.sigmas, settings)
        frames = self.data.cache.meta["latent_shape"][1]
        if frames % settings.chunk_frames:
            raise ConfigError(
                f"the cached clips have {frames} latent frames: not a whole number of "
                f"{settings.chunk_frames}-frame chunks (distill.stream.chunk_frames)"
            )

    def levels(self, position: int, sigmas: list[float]) -> list[int]:
        """The streaming levels, then the final latents."""
        return [*self.stream_levels, len(sigmas) - 1]

    def loss(
        self, model, batch: dict, null, device: torch.device, step: int = 0
    ) -> tuple[torch.Tensor, dict]:
        states, sigmas = batch["states"], batch["sigmas"]  # [B, steps + 1, C, T, H, W], [B, steps + 1]
        B, n, _, T = states.shape[:4]
        c, levels = self.settings.chunk_frames, n - 1
        pick = torch.stack(
            [
                torch.randint(levels, (T // c,), generator=sample_generator(self.seed, p))
                for p in batch["positions"]
            ]
        ).repeat_interleave(c, dim=1)  # [B, T]: the level of each frame's chunk
        frame = torch.arange(T)
        x = states[torch.arange(B)[:, None], pick, :, frame].permute(0, 2, 1, 3, 4)  # [B, C, T, H, W]
        sigma = sigmas.gather(1, pick)  # [B, T]
        x, sigma, x_final = x.to(device), sigma.to(device), states[:, -1].to(device)
        v = model(
            x, sigma * NUM_TRAIN_TIMESTEPS, batch["text"].to(device), batch["mask"].to(device), chunk_frames=c
        )
        x0 = x0_from_velocity(x, v.float(), sigma)
        return (x0 - x_final).square().mean(), {}
