import pytest
import torch

from s2dit.diffusion.flow import (
    add_noise,
    flow_matching_loss,
    frame_noise,
    sample_levels,
    shift_sigma,
    x0_from_velocity,
)
from s2dit.diffusion.timesteps import TimestepSampling
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


def test_noising_keeps_the_latents_dtype():
    """bf16 latents with float32 levels stay bf16 (no silent float32 copies of every latent)."""
    x0, noise, sigma = (
        torch.ones(1, 2, 3, 2, 2, dtype=torch.bfloat16),
        torch.zeros(1, 2, 3, 2, 2),
        torch.rand(1, 3),
    )
    assert add_noise(x0, noise.bfloat16(), sigma).dtype == torch.bfloat16
    assert x0_from_velocity(x0, x0, sigma).dtype == torch.bfloat16
    assert flow_matching_loss(noise - x0, x0, noise) == 0
    assert flow_matching_loss(torch.zeros_like(x0), x0, noise) == pytest.approx(
        float((noise - x0).square().mean())
    )


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
def test_timestep_sampling_per_clip_and_per_frame(distribution):
    g = torch.Generator().manual_seed(0)
    clip = sample_levels(TimestepSampling(distribution=distribution), 4000, 5, g)
    assert clip.shape == (4000, 5) and (clip == clip[:, :1]).all()
    assert clip.min() >= 0 and clip.max() <= 1 and abs(float(clip.median()) - 0.5) < 0.03
    frame = sample_levels(TimestepSampling(distribution=distribution, per_frame=True), 100, 5, g)
    assert (frame != frame[:, :1]).any()
    shifted = sample_levels(TimestepSampling(distribution=distribution, shift=3.0), 4000, 1, g)
    assert float(shifted.median()) > 0.7  # the median level 0.5 moves to 0.75
    narrow = TimestepSampling(distribution=distribution, min_sigma=0.2, max_sigma=0.6)
    inside = sample_levels(narrow, 500, 1, g)
    assert inside.min() >= 0.2 and inside.max() <= 0.6


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_a_restricted_range_is_the_distribution_conditioned_on_it(distribution, shift):
    """An expert's levels: the full distribution's draws that fall in [min_sigma, max_sigma] (found by
    rejection here), with the same quantiles; a clamp would pile the outside mass up at the bounds."""
    full = TimestepSampling(distribution=distribution, shift=shift)
    draws = sample_levels(full, 200000, 1, torch.Generator().manual_seed(0)).flatten()
    for lo, hi in ((0.0, 0.6), (0.7, 1.0), (0.2, 0.5)):
        kept = draws[(draws >= lo) & (draws <= hi)]
        spec = TimestepSampling(distribution=distribution, shift=shift, min_sigma=lo, max_sigma=hi)
        got = sample_levels(spec, 20000, 1, torch.Generator().manual_seed(1)).flatten()
        assert got.min() >= lo and got.max() <= hi
        q = torch.tensor([0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
        assert torch.allclose(got.quantile(q), kept.quantile(q), atol=0.01), (lo, hi)
        at_bounds = float(((got - lo).abs() < 1e-6).float().mean() + ((got - hi).abs() < 1e-6).float().mean())
        assert at_bounds < 0.001, (lo, hi)


def test_the_full_range_draws_as_it_always_did():
    """[0, 1] keeps the unrestricted draw (a run resumed across this change sees the same levels)."""
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    spec = TimestepSampling(shift=3.0)
    expected = shift_sigma(torch.sigmoid(torch.randn(64, 1, generator=g2)), 3.0)
    assert torch.equal(sample_levels(spec, 64, 1, g1), expected)


def test_each_distribution_has_its_shape_and_draws_from_the_generator_alone():
    """Uniform levels fill [0, 1] evenly; logit-normal ones gather in the middle (P(σ < 0.1) =
    Φ(logit 0.1) ≈ 0.014) around sigmoid(mean); the global RNG does not change a seeded draw."""
    for distribution, below_a_tenth in (("uniform", 0.1), ("logit_normal", 0.014)):
        spec = TimestepSampling(distribution=distribution)
        torch.manual_seed(0)
        a = sample_levels(spec, 20000, 1, torch.Generator().manual_seed(3))
        torch.manual_seed(1)
        b = sample_levels(spec, 20000, 1, torch.Generator().manual_seed(3))
        assert torch.equal(a, b), distribution
        assert float((a < 0.1).float().mean()) == pytest.approx(below_a_tenth, abs=0.006), distribution
    lifted = sample_levels(TimestepSampling(mean=1.0), 20000, 1, torch.Generator().manual_seed(3))
    assert float(lifted.median()) == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))), abs=0.01)


def test_bad_timestep_settings_are_config_errors():
    with pytest.raises(ConfigError, match="distribution"):
        TimestepSampling(distribution="beta")
    for bad in ({"shift": 0.0}, {"std": 0.0}, {"shift": -1.0}):
        with pytest.raises(ConfigError, match=r"^shift and std must be positive$"):
            TimestepSampling(**bad)
    for low, high in ((0.5, 0.5), (-0.1, 1.0), (0.0, 1.5)):
        with pytest.raises(ConfigError, match=r"^need 0 <= min_sigma < max_sigma <= 1$"):
            TimestepSampling(min_sigma=low, max_sigma=high)


def test_uncorrelated_frame_noise_is_the_plain_draw():
    a = frame_noise((2, 3, 4, 5), torch.Generator().manual_seed(7))
    b = torch.randn((2, 3, 4, 5), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.9])
def test_frame_noise_is_standard_normal_with_frames_correlated_by_rho(rho):
    n = frame_noise((4, 3, 64, 64), torch.Generator().manual_seed(0), rho)  # 16k values per frame
    assert abs(float(n.mean())) < 0.02 and abs(float(n.std()) - 1) < 0.02
    frames = n.transpose(0, 1).reshape(3, -1)
    corr = torch.corrcoef(frames)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert abs(float(corr[i, j]) - rho) < 0.03, (i, j, float(corr[i, j]))
    # the shared part is per position: different positions stay independent
    flat = n.reshape(4, 3, -1)
    assert abs(float(torch.corrcoef(torch.stack([flat[0, 0, :-1], flat[0, 1, 1:]]))[0, 1])) < 0.03
