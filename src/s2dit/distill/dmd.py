"""Stage B of 2-in-1 distillation → S2DiT-AR: DMD on the student's own self-forcing rollouts
(docs/architecture.md §7).

Every iteration the block-causal student (the *generator*) streams a clip through
:meth:`~s2dit.diffusion.streaming.StreamSampler.next_chunk`, the very loop ``s2dit stream`` runs: chunk by
chunk, a few steps each, committing every finished chunk into its stream state. One exit step per iteration,
drawn from ``(seed, iteration)`` and so the same on every rank, ends each chunk's loop; only that step carries
gradient, and the history is written without it.

Distribution matching: the rolled-out clip ``x`` is re-noised to a random level ``σ`` (uniform in
``[min_sigma, max_sigma]``, shifted); the *real* score is the frozen teacher with CFG, the *fake* score a
critic trained online with flow matching on the rollouts. The generator's gradient is
``(x0_fake - x0_real) / mean|x - x0_real|`` (per sample), applied through the surrogate
``0.5·mean((x - sg(x - grad))²)``. The critic learns every iteration, the generator every
``generator_every``-th (Adam with β1 = 0 for both).

:func:`dmd_gradient` and :func:`exit_step` are the two pieces the tests pin down.
"""

from __future__ import annotations

import torch
from torch import nn

from s2dit.diffusion.flow import (
    NUM_TRAIN_TIMESTEPS,
    add_noise,
    flow_matching_loss,
    shift_sigma,
    x0_from_velocity,
)
from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import StreamSampler
from s2dit.errors import ConfigError
from s2dit.train.config import DistillConfig
from s2dit.train.data import sample_generator
from s2dit.train.distributed import World, average_gradients, unwrap


def exit_step(seed: int, iteration: int, steps: int) -> int:
    """The exit step of ``iteration``: a function of the seed and the iteration only (never the rank)."""
    return int(torch.randint(steps, (), generator=torch.Generator().manual_seed(seed * 104_729 + iteration)))


def dmd_gradient(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """``(x0_fake - x0_real) / mean|x - x0_real|``, the normaliser per sample (over C, T, H, W)."""
    norm = (x - x0_real).abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return torch.nan_to_num((x0_fake - x0_real) / norm)


def dmd_surrogate(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient in ``x`` is ``grad / x.numel()``."""
    return 0.5 * (x.float() - (x.float() - grad.float()).detach()).square().mean()


class DMD:
    """``method: dmd``. Owns the frozen teacher, the critic and its optimiser; the trainer owns the
    generator. ``loss`` returns ``None`` on critic-only iterations."""

    wraps_model = False  # rollouts call forward_chunk, which DDP cannot see: gradients are averaged by hand

    def __init__(self, cfg: DistillConfig, world: World, seed: int):
        from s2dit.model.denoiser import load_denoiser

        if not cfg.teacher:
            raise ConfigError("method dmd needs distill.teacher (the real score)")
        self.cfg, self.world, self.seed = cfg, world, seed
        self.teacher = load_denoiser(cfg.teacher, world.device).requires_grad_(False)
        self.critic = load_denoiser(cfg.critic or cfg.teacher, world.device).train().requires_grad_(True)
        self.optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.critic_lr, betas=tuple(cfg.critic_betas)
        )

    # -------------------------------------------------------------------------------------------

    def rollout(self, generator: nn.Module, cond: Condition, shape, seeds: list[int], exit: int, grad: bool):
        """A self-forcing clip ``[B, C, T, H, W]`` from ``generator`` (one StreamSampler, chunk by chunk)."""
        C, T, H, W = shape
        s = self.cfg.stream
        if T % s.chunk_frames:
            raise ConfigError(f"{T} latent frames are not whole chunks of {s.chunk_frames} (distill.stream)")
        sampler = StreamSampler(generator, cond, (H, W), s, seed=seeds, channels=C)
        return torch.cat([sampler.next_chunk(exit, grad) for _ in range(T // s.chunk_frames)], dim=2)

    def noise_levels(self, positions: list[int], salt: int) -> tuple[torch.Tensor, list[torch.Generator]]:
        gens = [sample_generator(self.seed + salt, p) for p in positions]
        u = torch.stack([torch.rand((), generator=g) for g in gens])
        lo, hi = self.cfg.min_sigma, self.cfg.max_sigma
        return shift_sigma(lo + (hi - lo) * u, self.cfg.shift), gens

    def noisy(self, x: torch.Tensor, positions: list[int], salt: int) -> tuple[torch.Tensor, ...]:
        """``x`` re-noised per sample: ``(x_σ, noise, σ [B], t [B, T])``."""
        sigma, gens = self.noise_levels(positions, salt)
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device)
        sigma = sigma.to(x.device)
        frames = sigma[:, None].expand(-1, x.shape[2])
        return add_noise(x, noise, frames), noise, sigma, frames * NUM_TRAIN_TIMESTEPS

    def loss(self, model, batch: dict, null, device: torch.device, step: int = 0):
        generator = unwrap(model)
        positions = batch["positions"]
        B = len(positions)
        cond = Condition(batch["text"].to(device), batch["mask"].to(device))
        uncond = Condition(null[0].expand(B, -1, -1).to(device), null[1].expand(B, -1).to(device))
        shape = tuple(batch["latents"].shape[1:])
        seeds = [(self.seed * 1_000_003 + p) % (2**31) for p in positions]
        exit = exit_step(self.seed, step, self.cfg.stream.steps)
        train_generator = step % self.cfg.generator_every == 0
        x = self.rollout(generator, cond, shape, seeds, exit, grad=train_generator)
        logs = {"exit_step": exit}
        loss = None
        if train_generator:
            with torch.no_grad():
                x_t, _, _, t = self.noisy(x.detach(), positions, salt=2)
                sigma = t / NUM_TRAIN_TIMESTEPS
                v_real = self.real_score(x_t, t, cond, uncond)
                v_fake = self.critic(x_t, t, cond.text, cond.mask)
                x0_real = x0_from_velocity(x_t, v_real, sigma)
                x0_fake = x0_from_velocity(x_t, v_fake.float(), sigma)
                grad = dmd_gradient(x.detach(), x0_real, x0_fake)
            loss = dmd_surrogate(x, grad)
            logs["dmd_grad_norm"] = float(grad.float().square().mean().sqrt())
        logs["critic_loss"] = self.critic_step(x.detach(), cond, positions)
        return loss, logs

    def real_score(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition, uncond: Condition):
        """The teacher's guided velocity ``u + g·(c - u)`` (per-sample levels ``t [B, T]``)."""
        c = self.teacher(x_t, t, cond.text, cond.mask).float()
        if self.cfg.cfg == 1.0:
            return c
        u = self.teacher(x_t, t, uncond.text, uncond.mask).float()
        return u + self.cfg.cfg * (c - u)

    def critic_step(self, x: torch.Tensor, cond: Condition, positions: list[int]) -> float:
        """One flow-matching update of the critic on the (detached) rollout."""
        x_t, noise, _, t = self.noisy(x, positions, salt=3)
        loss = flow_matching_loss(self.critic(x_t, t, cond.text, cond.mask), x, noise)
        loss.backward()
        average_gradients(self.critic, self.world)
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    # -------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
