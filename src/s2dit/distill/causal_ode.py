"""The start of Stage B of 2-in-1 distillation: causal ODE regression on cached teacher trajectories
(docs/architecture.md §7), a training method of the one trainer.

:class:`CausalODE` (``method: causal_ode``, block-causal): each chunk of the clip sits at its own level of
the student's streaming schedule (a random one per chunk), and the student regresses the teacher's final
latents from it. The cache must contain those levels: made with ``--shift`` equal to ``stream.shift`` and
``--steps`` a multiple of ``stream.steps``.

Every random choice comes from generators seeded by the sample's position, so batches do not depend on
the number of processes.
"""

from __future__ import annotations

import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, x0_from_velocity
from s2dit.diffusion.streaming import StreamSettings
from s2dit.distill.cache import TrajectoryBatches
from s2dit.errors import ConfigError
from s2dit.train.data import sample_generator


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
