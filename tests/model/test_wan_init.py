"""``WanConfig.zero_init``: every residual branch's output projection and the final layer start at zero
(each block the identity, the velocity zero), and training moves all of them."""

from __future__ import annotations

import dataclasses

import torch

from s2dit.model.wan import WanConfig, WanDenoiser, zero_init_layers

TINY = WanConfig(layers=2, heads=2, head_dim=12, ffn_dim=32, text_dim=16, freq_dim=32)


def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 6, 8, generator=g)
    return x, torch.full((2, 3), 500.0), torch.randn(2, 5, 16, generator=g)


def test_zero_init_starts_every_block_as_the_identity_and_still_learns():
    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, zero_init=True))
    layers = zero_init_layers(model.transformer)
    assert len(layers) == 3 * TINY.layers + 1
    assert all(not layer.weight.any() and not layer.bias.any() for layer in layers)
    x, t, text = inputs()
    assert not model(x, t, text).any()
    # The final layer gets a gradient at once, the branches behind it from the second step on.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        ((model(x, t, text) - x) ** 2).mean().backward()
        opt.step()
    assert all(layer.weight.any() for layer in layers)


def test_by_default_the_branches_start_as_diffusers_draws_them():
    torch.manual_seed(0)
    model = WanDenoiser.from_config(TINY)
    assert all(layer.weight.any() for layer in zero_init_layers(model.transformer))
    x, t, text = inputs()
    assert model(x, t, text).abs().mean() > 0.01
