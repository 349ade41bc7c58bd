import pytest
import torch

from s2dit.diffusion.flow import (
    TimestepSampling,
    add_noise,
    flow_matching_loss,
    shift_sigma,
    x0_from_velocity,
)
from s2dit.errors import ConfigError


def test_shift_keeps_the_ends_and_moves_levels_towards_noise():
    sigma = torch.linspace(0, 1, 11)
    assert torch.equal(shift_sigma(sigma, 1.0), sigma)
    shifted = shift_sigma(sigma, 5.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > sigma[1:-1]).all() and (shifted.diff() > 0).all()
    assert shift_sigma(torch.tensor(0.5), 3.0) == pytest.approx(0.75)  # 3·0.5 / (1 + 2·0.5)


def test_noising_and_the_velocity_target_are_consistent():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 6, 8, generator=g), torch.randn(2, 4, 3, 6, 8, generator=g)
    sigma = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.2, 0.9]])
    x = add_noise(x0, noise, sigma)
    assert torch.allclose(x[0, :, 0], x0[0, :, 0]) and torch.allclose(x[0, :, 2], noise[0, :, 2])
    assert torch.allclose(x0_from_velocity(x, noise - x0, sigma), x0, atol=1e-6)
    assert flow_matching_loss(noise - x0, x0, noise) == 0
    assert flow_matching_loss(torch.zeros_like(x0), x0, noise) == pytest.approx(
        float((noise - x0).square().mean())
    )


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
def test_timestep_sampling_per_clip_and_per_frame(distribution):
    g = torch.Generator().manual_seed(0)
    clip = TimestepSampling(distribution=distribution).sample(4000, 5, g)
    assert clip.shape == (4000, 5) and (clip == clip[:, :1]).all()
    assert clip.min() >= 0 and clip.max() <= 1 and abs(float(clip.median()) - 0.5) < 0.03
    frame = TimestepSampling(distribution=distribution, per_frame=True).sample(100, 5, g)
    assert (frame != frame[:, :1]).any()
    shifted = TimestepSampling(distribution=distribution, shift=3.0).sample(4000, 1, g)
    assert float(shifted.median()) > 0.7  # the median level 0.5 moves to 0.75
    clamped = TimestepSampling(distribution=distribution, min_sigma=0.2, max_sigma=0.6).sample(500, 1, g)
    assert clamped.min() >= 0.2 and clamped.max() <= 0.6


def test_bad_timestep_settings_are_config_errors():
    with pytest.raises(ConfigError, match="distribution"):
        TimestepSampling(distribution="beta")
    with pytest.raises(ConfigError, match="min_sigma"):
        TimestepSampling(min_sigma=0.5, max_sigma=0.5)
