"""Flow matching in the Wan convention (docs/architecture.md §2).

``x_σ = (1 - σ)·x0 + σ·ε``; the network predicts the velocity ``v = ε - x0``; its timestep input is
``t = 1000·σ``; a shift ``s`` warps noise levels towards the noisy end: ``σ' = s·σ / (1 + (s - 1)·σ)``.
Timesteps are per latent frame (``[B, T]``), so one clip may carry several noise levels.
"""

from __future__ import annotations

import math

import torch

from s2dit.diffusion.timesteps import TimestepSampling

NUM_TRAIN_TIMESTEPS = 1000.0


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """``σ' = s·σ / (1 + (s - 1)·σ)``: identity for ``s = 1``; keeps 0 and 1 fixed."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def frame_noise(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    correlation: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ``[C, T, H, W]`` for one clip whose latent frames are correlated by
    ``correlation`` ρ (PYoCo's mixed noise): frame ``t`` is ``√ρ·s + √(1-ρ)·e_t`` with ``s [C, 1, H, W]``
    shared by every frame, so each value stays N(0, 1) and two frames correlate by ρ. ρ = 0 is the plain
    draw (the same numbers as ``torch.randn(shape)``: the ``e_t`` are drawn first)."""
    own = torch.randn(shape, generator=generator, dtype=dtype)
    if correlation == 0.0:
        return own
    shared = torch.randn((shape[0], 1, *shape[2:]), generator=generator, dtype=dtype)
    return math.sqrt(correlation) * shared + math.sqrt(1.0 - correlation) * own


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x_σ`` for latents ``[B, C, T, H, W]`` and per-frame ``sigma [B, T]``."""
    s = sigma[:, None, :, None, None].to(x0.dtype)
    return (1 - s) * x0 + s * noise


def x0_from_velocity(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The clean latent implied by a velocity: ``x0 = x_σ - σ·v``."""
    return x - sigma[:, None, :, None, None].to(x.dtype) * v


def sample_levels(
    spec: TimestepSampling, batch: int, frames: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise levels ``σ [batch, frames]`` in [0, 1], drawn as ``spec`` says."""
    n = frames if spec.per_frame else 1
    lo, hi = spec.min_sigma, spec.max_sigma
    if (lo, hi) == (0.0, 1.0):
        if spec.distribution == "uniform":
            base = torch.rand(batch, n, generator=generator)
        else:
            base = torch.sigmoid(spec.mean + spec.std * torch.randn(batch, n, generator=generator))
    else:  # the distribution restricted to [lo, hi]: uniform between the bounds' probabilities, inverted
        a, b = _probability_below(spec, lo), _probability_below(spec, hi)
        u = a + (b - a) * torch.rand(batch, n, generator=generator, dtype=torch.float64)
        if spec.distribution == "uniform":
            base = u
        else:
            base = torch.sigmoid(spec.mean + spec.std * math.sqrt(2.0) * torch.special.erfinv(2 * u - 1))
        base = base.float()
    sigma = shift_sigma(base, spec.shift).clamp(lo, hi)  # the clamp only catches float rounding
    return sigma.expand(batch, frames).contiguous()


def _probability_below(spec: TimestepSampling, sigma: float) -> float:
    """P(level <= ``sigma``) under ``spec``'s distribution and shift, before any restriction."""
    base = sigma / (spec.shift - (spec.shift - 1) * sigma)  # the shift inverted
    if spec.distribution == "uniform" or base <= 0.0 or base >= 1.0:
        return min(max(base, 0.0), 1.0)
    z = (math.log(base / (1 - base)) - spec.mean) / spec.std
    return 0.5 * (1 + math.erf(z / math.sqrt(2.0)))


def flow_matching_loss(prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted velocity and the target ``ε - x0`` (float32)."""
    return (prediction.float() - (noise.float() - x0.float())).square().mean()
