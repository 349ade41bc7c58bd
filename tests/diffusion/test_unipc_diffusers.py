"""Our UniPC (``diffusion/sampling.py``) against diffusers' ``UniPCMultistepScheduler`` configured as Wan's
scheduler (flow sigmas, flow prediction, order 2, B(h) = e^{-h} - 1, corrector on, lower orders at the end).

Given the same noise levels, the two take the same steps: equal within 1e-5. The one difference is the
first level: diffusers moves σ = 1 to 1 - 1e-6 so that its log-SNR stays finite, and then keeps that point in
the multistep history; we start at σ = 1 exactly, where the x0 prediction is a pure first-order step, and
leave the noise point out of the history (its log-SNR is -inf). That changes few-step samples slightly
(measured below) and vanishes as the steps grow.
"""

import math

import numpy as np
import pytest
import torch

from s2dit.diffusion.sampling import sigma_schedule, unipc

diffusers = pytest.importorskip("diffusers")


def velocity(x, sigma):
    """A smooth, nonlinear stand-in for a denoiser (what matters is that both samplers see the same one)."""
    return torch.tanh(x) * (1 + sigma) - 0.3 * x * sigma**2 + 0.1 * math.sin(3 * sigma)


def diffusers_unipc(noise, steps, shift):
    """Sample with diffusers' scheduler on our schedule; returns (sample, the levels it used)."""
    scheduler = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000,
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=shift,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
    )
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])  # it applies the shift itself
    sigmas = scheduler.sigmas.tolist()
    x = noise.clone()
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(velocity(x, sigmas[i]), t, x).prev_sample
    return x, sigmas


@pytest.mark.parametrize("steps, shift", [(4, 1.0), (8, 3.0), (20, 5.0), (50, 3.0)], ids=lambda v: str(v))
def test_unipc_takes_diffusers_steps(steps, shift):
    noise = torch.randn(2, 4, 3, 5, 6, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    theirs, sigmas = diffusers_unipc(noise, steps, shift)
    ours_levels = sigma_schedule(steps, shift)
    assert len(sigmas) == len(ours_levels) == steps + 1 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(1 - 1e-6, abs=1e-7)  # their nudge off σ = 1
    assert np.allclose(sigmas[1:], ours_levels[1:], atol=1e-6)  # the rest: our shifted schedule (float32)

    same = unipc(velocity, noise.clone(), sigmas)  # our sampler on exactly their levels
    assert (same - theirs).abs().max().item() < 1e-5

    ours = unipc(velocity, noise.clone(), ours_levels)  # our sampler as it runs, from σ = 1
    gap = (ours - theirs).abs().max().item()
    assert gap < (5e-3 if steps <= 4 else 1e-3 if steps <= 8 else 1e-5)
