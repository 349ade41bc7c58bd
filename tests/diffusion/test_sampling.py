import math

import pytest
import torch

from s2dit.diffusion.sampling import Condition, ancestral, euler, guided, sample, sigma_schedule, unipc
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT
from s2dit.model.wan import WanConfig, WanDenoiser

MU, S = 0.7, 0.3  # data ~ N(MU, S²): the exact flow is known in closed form


def gaussian_velocity(x, sigma):
    a = 1 - sigma
    x0 = MU + a * S * S / (a * a * S * S + sigma * sigma) * (x - a * MU)  # E[x0 | x_σ]
    return (x - x0) / sigma


def test_schedule_runs_from_noise_to_data():
    sigmas = sigma_schedule(4, shift=5.0)
    assert len(sigmas) == 5 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert sigmas == sorted(sigmas, reverse=True)
    assert sigmas[1] == pytest.approx(5 * 0.75 / (1 + 4 * 0.75))


def test_a_schedule_entered_part_way_keeps_the_levels_below_its_start():
    full = sigma_schedule(40, shift=3.0)
    part = sigma_schedule(40, shift=3.0, start=0.6)
    assert part[0] == 0.6 and part[1:] == [s for s in full if s < 0.6] and part[-1] == 0.0
    assert sigma_schedule(40, 3.0, start=1.0) == full
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="start"):
            sigma_schedule(4, start=bad)


def test_sdedit_starts_from_the_clean_latents_noised_to_its_level():
    """generate_latents(start_sigma=σ) begins at (1 - σ)·init + σ·noise (the seeded noise of a full run):
    from σ = 0.02 the result stays by the clean latents; a sampler that ignored them would not."""
    from s2dit.diffusion.sampling import generate_latents

    model = tiny_s2dit()
    g = torch.Generator().manual_seed(2)
    cond = Condition(torch.randn(2, 5, 32, generator=g))
    init = 2.0 + torch.randn(2, 16, 3, 8, 6, generator=g)
    kw = dict(steps=8, cfg=1.0, shift=3.0, sampler="euler", seeds=[4, 5])
    near = generate_latents(model, cond, None, (16, 3, 8, 6), start_sigma=0.02, init=init, **kw)
    far = generate_latents(model, cond, None, (16, 3, 8, 6), **kw)
    assert (near - init).abs().mean() < 0.1 < (far - init).abs().mean()
    noise = torch.stack(
        [torch.randn(16, 3, 8, 6, generator=torch.Generator().manual_seed(s)) for s in (4, 5)]
    )
    velocity = guided(model, cond)
    torch.testing.assert_close(near, euler(velocity, 0.98 * init + 0.02 * noise, [0.02, 0.0]))
    with pytest.raises(ValueError, match="clean latents"):
        generate_latents(model, cond, None, (16, 3, 8, 6), start_sigma=0.5, **kw)


def test_generation_starts_from_the_noise_the_model_was_trained_on():
    """generate_latents(noise_correlation=ρ) integrates from frame_noise(ρ) of each seed: one step of
    the ODE from it matches, and it differs from the independent draw's."""
    from s2dit.diffusion.flow import frame_noise
    from s2dit.diffusion.sampling import generate_latents

    model = tiny_s2dit()
    cond = Condition(torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2)))
    kw = dict(steps=1, cfg=1.0, shift=1.0, sampler="euler", seeds=[4, 5])
    mixed = generate_latents(model, cond, None, (16, 3, 8, 6), noise_correlation=0.5, **kw)
    plain = generate_latents(model, cond, None, (16, 3, 8, 6), **kw)
    noise = torch.stack([frame_noise((16, 3, 8, 6), torch.Generator().manual_seed(s), 0.5) for s in (4, 5)])
    torch.testing.assert_close(mixed, euler(guided(model, cond), noise, [1.0, 0.0]))
    assert (mixed - plain).abs().mean() > 0.1


def test_samplers_converge_to_the_exact_flow_and_unipc_is_higher_order():
    """Integrate 1 -> 0.05 (the last jump to 0 lands on the x0 prediction, which hides the order)."""
    eps = torch.randn(1, 1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end = 0.05
    exact = (1 - end) * MU + math.sqrt((1 - end) ** 2 * S * S + end**2) * eps  # the ODE's exact x(σ)
    err = {}
    for name, fn in (("euler", euler), ("unipc", unipc)):
        for n in (16, 32, 64):
            sigmas = torch.linspace(1.0, end, n + 1, dtype=torch.float64).tolist()
            err[name, n] = float((fn(gaussian_velocity, eps, sigmas) - exact).abs().max())
    assert 1.7 < err["euler", 32] / err["euler", 64] < 2.3  # first order
    assert err["unipc", 32] / err["unipc", 64] > 3.4  # at least second order
    assert err["unipc", 32] < err["euler", 32] / 10
    full = sample(gaussian_velocity, eps, 64, 1.0, "unipc")
    assert float((full - (MU + S * eps)).abs().max()) < 5e-3  # all the way to data


def test_ancestral_without_fresh_noise_is_the_euler_step():
    """η = 0 is DDIM, which on the flow path x_σ = (1 - σ)·x0 + σ·ε takes exactly Euler's step."""
    eps = torch.randn(1, 1, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = sigma_schedule(12, shift=3.0)

    def never() -> torch.Tensor:
        raise AssertionError("η = 0 draws no noise")

    got = ancestral(gaussian_velocity, eps, sigmas, never, eta=0.0)
    torch.testing.assert_close(got, euler(gaussian_velocity, eps, sigmas), rtol=0, atol=1e-12)


def test_ancestral_sampling_draws_the_data_distribution_from_fresh_noise():
    """With the exact velocity of N(MU, S²) data, ancestral sampling converges (first order: each step
    plugs in E[x0 | x_t] and loses its variance) to N(MU, S²); and its end depends on the fresh draws:
    it correlates with the initial noise far less than the ODE's end, which is a function of it."""
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(40_000, 1, 1, 1, 1, generator=g, dtype=torch.float64)

    def fresh() -> torch.Tensor:
        return torch.randn(eps.shape, generator=g, dtype=eps.dtype)

    std = {}
    for n in (100, 400, 1600):
        out = ancestral(gaussian_velocity, eps, sigma_schedule(n, shift=3.0), fresh)
        assert abs(float(out.mean()) - MU) < 0.01
        std[n] = float(out.std())
    assert std[100] < std[400] < std[1600] and abs(std[1600] - S) < 0.02 * S, std
    ode = euler(gaussian_velocity, eps, sigma_schedule(100, shift=3.0))
    assert float(torch.corrcoef(torch.stack([ode.flatten(), eps.flatten()]))[0, 1]) > 0.99
    assert float(torch.corrcoef(torch.stack([out.flatten(), eps.flatten()]))[0, 1]) < 0.5


def test_ancestral_generation_is_reproducible_per_prompt_whatever_the_batch():
    from s2dit.diffusion.sampling import generate_latents

    model = tiny_s2dit()
    text = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2))
    kw = dict(steps=6, cfg=1.0, shift=3.0, sampler="ancestral", noise_correlation=0.5)
    both = generate_latents(model, Condition(text), None, (16, 3, 8, 6), seeds=[4, 5], **kw)
    alone = generate_latents(model, Condition(text[1:]), None, (16, 3, 8, 6), seeds=[5], **kw)
    torch.testing.assert_close(both[1:], alone)
    ode = generate_latents(
        model, Condition(text), None, (16, 3, 8, 6), seeds=[4, 5], **{**kw, "sampler": "euler"}
    )
    assert (both - ode).abs().mean() > 1e-3  # the fresh noise is used


def tiny_s2dit():
    torch.manual_seed(0)
    model = S2DiT(ModelConfig(layout="LSF", width=48, heads=2, ffn_dim=96, text_dim=32)).eval()
    for p in model.parameters():  # adaLN-Zero starts at v = 0: give every weight a value
        p.data.normal_(0, 0.05)
    return model


def test_cfg_scale_one_is_the_conditional_prediction():
    model = tiny_s2dit()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 8, 6, generator=g)
    cond = Condition(torch.randn(2, 5, 32, generator=g), torch.ones(2, 5, dtype=torch.bool))
    uncond = Condition(torch.randn(2, 5, 32, generator=g))
    with torch.no_grad():
        c = model(x, torch.full((2, 3), 400.0), cond.text, cond.mask)
        u = model(x, torch.full((2, 3), 400.0), uncond.text)
        assert torch.equal(guided(model, cond, uncond, 1.0)(x, 0.4), c)
        assert torch.allclose(guided(model, cond, uncond, 4.0)(x, 0.4), u + 4.0 * (c - u), atol=1e-6)
        assert not torch.allclose(c, u)  # the prompt matters, so the test above means something


@pytest.mark.parametrize("sampler", ["euler", "unipc", "ancestral"])
@pytest.mark.parametrize("size", [(8, 12), (12, 8)], ids=["landscape", "portrait"])
def test_samplers_keep_shapes_for_both_denoisers(sampler, size):
    torch.manual_seed(0)
    wan = WanDenoiser.from_config(WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=32)).eval()
    for model in (tiny_s2dit(), wan):
        noise = torch.randn(1, 16, 2, *size)
        cond, uncond = Condition(torch.randn(1, 4, 32)), Condition(torch.zeros(1, 4, 32))
        with torch.no_grad():
            out = sample(guided(model, cond, uncond, 3.0), noise, 3, 2.0, sampler)
        assert out.shape == noise.shape and torch.isfinite(out).all()
        assert not torch.allclose(out, noise)
