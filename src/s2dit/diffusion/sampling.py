"""Bidirectional samplers for flow matching: Euler and a UniPC-style multistep predictor-corrector (the
probability-flow ODE) and an ancestral sampler (fresh noise at every step), each driven by a velocity
function, with classifier-free guidance and a negative prompt.

A *velocity function* maps ``(x [B, C, T, H, W], sigma: float) -> v``; :func:`guided` builds one from any
denoiser with the signature ``denoiser(x, t [B, T], text, text_mask) -> v`` (S2DiT, the Wan adapter).
Guidance is written ``u + g·(c - u)`` (g is the standard CFG scale; g = 1 is the conditional prediction).
:func:`generate_latents` is the whole job for a batch of prompts: seeded noise per sample, CFG, a sampler.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, frame_noise, shift_sigma
from s2dit.diffusion.sampler_names import BIDIRECTIONAL, listed

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
SAMPLERS = BIDIRECTIONAL


def sigma_schedule(steps: int, shift: float = 1.0, start: float = 1.0) -> list[float]:
    """``steps + 1`` noise levels from 1 to 0: uniform in σ, then shifted. ``start < 1``: only the levels
    below ``start``, after ``start`` itself (the same schedule entered part-way, as SDEdit does)."""
    if steps < 1:
        raise ValueError(f"steps: {steps} must be at least 1")
    if not 0.0 < start <= 1.0:
        raise ValueError(f"start: {start} must lie in (0, 1]")
    sigmas = shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).tolist()
    return sigmas if start == 1.0 else [start, *(s for s in sigmas if s < start)]


@dataclasses.dataclass
class Condition:
    """Text tokens ``[B, L, D]`` and their mask ``[B, L]`` (True: a real token)."""

    text: torch.Tensor
    mask: torch.Tensor | None = None


def guided(denoiser, cond: Condition, uncond: Condition | None = None, scale: float = 1.0) -> VelocityFn:
    """Classifier-free guidance ``u + g·(c - u)``; ``uncond`` is the negative (or empty) prompt.

    With ``scale == 1`` (or no ``uncond``) only the conditional pass runs.
    """

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = torch.full(x.shape[:1] + x.shape[2:3], sigma * NUM_TRAIN_TIMESTEPS, device=x.device)
        c = denoiser(x, t, cond.text, cond.mask)
        if uncond is None or scale == 1.0:
            return c
        u = denoiser(x, t, uncond.text, uncond.mask)
        return u + scale * (c - u)

    return velocity


def euler(
    velocity: VelocityFn, noise: torch.Tensor, sigmas: list[float], progress=None, record: list | None = None
) -> torch.Tensor:
    """First-order steps ``x ← x + (σ_next - σ)·v`` from ``noise`` at ``sigmas[0]`` down to ``sigmas[-1]``.
    ``record``: a list that receives every state, the noise included (a teacher trajectory)."""
    x = noise
    if record is not None:
        record.append(x)
    for sigma, nxt in itertools.pairwise(sigmas):
        x = x + (nxt - sigma) * velocity(x, sigma)
        if record is not None:
            record.append(x)
        if progress is not None:
            progress()
    return x


def ancestral(
    velocity: VelocityFn,
    noise: torch.Tensor,
    sigmas: list[float],
    fresh: Callable[[], torch.Tensor],
    progress=None,
    eta: float = 1.0,
) -> torch.Tensor:
    """Ancestral steps: at each level ``t`` the velocity gives the clean estimate ``x0 = x - t·v`` and the
    noise estimate ``ε = x + (1 - t)·v``; the next level ``s`` is drawn from DDPM's posterior
    ``q(x_s | x_t, x0)`` on the flow path ``x_σ = (1 - σ)·x0 + σ·ε``, in DDIM's form
    ``x_s = (1 - s)·x0 + √(s² - c²)·ε + c·z`` with ``c = η·s·√(t² - r²s²)/t``, ``r = (1 - t)/(1 - s)``
    and ``z = fresh()`` (standard normal, shaped like ``x``). ``η = 1`` is the posterior; ``η = 0`` is
    DDIM, which on this path is exactly the Euler step."""
    x = noise
    for t, s in itertools.pairwise(sigmas):
        v = velocity(x, t)
        x0, eps = x - t * v, x + (1 - t) * v
        if s <= 0.0:
            x = x0
        else:
            r = (1 - t) / (1 - s)
            c = eta * s * math.sqrt(max(t * t - r * r * s * s, 0.0)) / t
            x = (1 - s) * x0 + math.sqrt(max(s * s - c * c, 0.0)) * eps
            if c > 0.0:
                x = x + c * fresh().to(x)
        if progress is not None:
            progress()
    return x


def _lambda(sigma: float) -> float:
    """Half log-SNR of the flow path: ``log((1 - σ) / σ)`` (-inf at pure noise)."""
    return -math.inf if sigma >= 1.0 else math.log((1 - sigma) / sigma)


def _unipc_coefficients(rks: list[float], h: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The linear system ``R ρ = b`` of UniPC's B(h) = e^{-h} - 1 variant in data-prediction form."""
    hh = -h
    h_phi_k = math.expm1(hh) / hh - 1
    b_h = math.expm1(hh)
    factorial = 1
    R, b = [], []
    for i in range(1, len(rks) + 1):
        R.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return torch.tensor(R, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), b_h


def _first_order(x: torch.Tensor, m0: torch.Tensor, s0: float, t: float) -> torch.Tensor:
    """The data-prediction step from σ = s0 to σ = t (equal to an Euler step on the flow)."""
    return (t / s0) * x + (1 - t / s0) * m0


def _multistep(
    x: torch.Tensor,
    history: list[tuple[float, torch.Tensor]],
    t: float,
    m_t: torch.Tensor | None,
) -> torch.Tensor:
    """From the last history point ``(σ_s0, x0-prediction m0)`` to σ = t.

    Predictor (``m_t`` None): uses the older history points. Corrector: also the output ``m_t`` at t.
    """
    s0, m0 = history[-1]
    out = _first_order(x, m0, s0, t)
    if t <= 0.0:
        return out  # the last step lands on the x0 prediction
    h = _lambda(t) - _lambda(s0)
    older = [(s, m) for s, m in history[:-1] if 0.0 < s < 1.0]
    rks = [(_lambda(s) - _lambda(s0)) / h for s, _ in older]
    d1s = [(m - m0) / r for (_, m), r in zip(older, rks, strict=True)]
    if m_t is not None:
        rks, d1s = [*rks, 1.0], [*d1s, m_t - m0]
    if not d1s:
        return out
    R, b, b_h = _unipc_coefficients([*rks, 1.0] if m_t is None else rks, h)
    if len(d1s) == 1:
        rhos = [0.5]
    else:
        n = len(d1s)
        rhos = torch.linalg.solve(R[:n, :n], b[:n]).tolist()
    alpha_t = 1 - t
    correction = sum(rho * d for rho, d in zip(rhos, d1s, strict=True))
    return out - alpha_t * b_h * correction


def unipc(
    velocity: VelocityFn, noise: torch.Tensor, sigmas: list[float], order: int = 2, progress=None
) -> torch.Tensor:
    """A UniPC-style multistep sampler: a predictor of up to ``order`` using past x0-predictions, and a
    corrector that reuses each new model output (no extra evaluations). Same cost as :func:`euler`."""
    if order < 1:
        raise ValueError(f"order: {order} must be at least 1")
    x, prev_x, used = noise, None, []
    history: list[tuple[float, torch.Tensor]] = []
    for i, sigma in enumerate(sigmas[:-1]):
        m = x - sigma * velocity(x, sigma)  # x0 prediction at this level
        if prev_x is not None:  # correct the point just predicted, with its own model output
            x = _multistep(prev_x, used, sigma, m)
        history = [*history, (sigma, m)][-order:]
        used = history[-min(order, len(sigmas) - 1 - i) :]  # lower orders for the final steps
        prev_x, x = x, _multistep(x, used, sigmas[i + 1], None)
        if progress is not None:
            progress()
    return x


def sample(
    velocity: VelocityFn,
    noise: torch.Tensor,
    steps: int,
    shift: float = 1.0,
    sampler: str = "unipc",
    progress=None,
    start: float = 1.0,
    fresh: Callable[[], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sample from ``noise`` (at σ = ``start``) to σ = 0 on the ``steps``-step schedule (fewer model
    evaluations when it is entered part-way). ``fresh``: the ancestral sampler's new noise at each step
    (default: independent standard normal)."""
    sigmas = sigma_schedule(steps, shift, start)
    if sampler == "euler":
        return euler(velocity, noise, sigmas, progress)
    if sampler == "unipc":
        return unipc(velocity, noise, sigmas, progress=progress)
    if sampler == "ancestral":
        return ancestral(velocity, noise, sigmas, fresh or (lambda: torch.randn_like(noise)), progress)
    raise ValueError(f"sampler: {sampler!r} must be {listed(SAMPLERS)}")


@torch.no_grad()
def generate_latents(
    model,
    cond: Condition,
    uncond: Condition | None,
    shape: tuple[int, ...],
    *,
    steps: int,
    cfg: float,
    shift: float,
    sampler: str,
    seeds: list[int],
    progress: bool = False,
    start_sigma: float = 1.0,
    init: torch.Tensor | None = None,
    noise_correlation: float = 0.0,
) -> torch.Tensor:
    """Sample ``[B, *shape]`` latents: sample ``i``'s noise comes from ``seeds[i]`` (reproducible per
    prompt, whatever the batch), its latent frames correlated by ``noise_correlation`` (the noise the
    model was trained on, :func:`~s2dit.diffusion.flow.frame_noise`). ``start_sigma < 1`` starts from
    the clean latents ``init [B, *shape]`` noised to that level and runs the rest of the schedule
    (SDEdit): where a model loses a prompt."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    generators = [torch.Generator().manual_seed(s) for s in seeds]

    def draw() -> torch.Tensor:  # each sample's noise from its own generator, as it was trained on
        return torch.stack([frame_noise(shape, g, noise_correlation) for g in generators])

    noise = draw()
    if start_sigma < 1.0:
        if init is None or init.shape != noise.shape:
            raise ValueError(f"start_sigma {start_sigma} needs clean latents of shape {tuple(noise.shape)}")
        noise = (1 - start_sigma) * init.float().cpu() + start_sigma * noise
    velocity = guided(model, cond, uncond, cfg)
    total = len(sigma_schedule(steps, shift, start_sigma)) - 1
    with tqdm(total=total, desc="sampling", unit="step", disable=not progress) as bar:
        return sample(
            velocity,
            noise.to(device),
            steps,
            shift,
            sampler,
            progress=bar.update,
            start=start_sigma,
            fresh=draw,
        )
