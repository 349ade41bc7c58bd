"""``model.init`` of a Wan teacher with more layers in the config: the trained blocks stay, the new ones
start as the identity (zero residual outputs), the velocity is the trained model's, and the deeper model
saves, loads and trains as one."""

from __future__ import annotations

import dataclasses

import torch

from s2dit.model.denoiser import DenoiserSpec, build_denoiser
from s2dit.model.wan import WanConfig, WanDenoiser

TINY = WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16, freq_dim=32, patch_kernel=4)


def inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 6, 8, generator=g)
    return x, torch.full((2, 3), 500.0), torch.randn(2, 5, 16, generator=g)


def trained_teacher(folder) -> WanDenoiser:
    torch.manual_seed(0)
    model = WanDenoiser.from_config(TINY)
    with torch.no_grad():
        model.transformer.proj_out.weight.normal_()  # a velocity that is clearly not zero
    model.save(folder)
    return model


def residual_outputs(block) -> list[torch.nn.Linear]:
    return [block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]]


def test_an_init_grows_its_depth_without_changing_what_it_computes(tmp_path):
    trained = trained_teacher(tmp_path / "teacher")
    deeper = build_denoiser(
        DenoiserSpec(kind="wan", wan=dataclasses.replace(TINY, layers=3), init=str(tmp_path / "teacher"))
    )
    blocks = deeper.transformer.blocks
    assert len(blocks) == 3 and deeper.transformer.config.num_layers == 3
    first = {k: v for k, v in deeper.state_dict().items() if ".blocks.0." in k}
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in first.items())
    for block in blocks[1:]:
        assert all(
            torch.count_nonzero(p) == 0 for layer in residual_outputs(block) for p in layer.parameters()
        )
        assert torch.count_nonzero(block.attn1.to_q.weight) > 0  # the rest is freshly initialised
    x, t, text = inputs()
    with torch.no_grad():
        assert torch.equal(deeper(x, t, text), trained(x, t, text))


def test_a_shallower_config_keeps_the_trained_depth(tmp_path):
    trained_teacher(tmp_path / "teacher")
    kept = build_denoiser(
        DenoiserSpec(kind="wan", wan=dataclasses.replace(TINY, layers=1), init=str(tmp_path / "teacher"))
    )
    assert len(kept.transformer.blocks) == 1


def test_the_grown_model_saves_loads_and_trains_every_new_block(tmp_path):
    trained_teacher(tmp_path / "teacher")
    deeper = build_denoiser(
        DenoiserSpec(kind="wan", wan=dataclasses.replace(TINY, layers=2), init=str(tmp_path / "teacher"))
    )
    x, t, text = inputs()
    (deeper(x, t, text) - x).square().mean().backward()
    # The zero outputs get gradient at once (their inputs are not zero), so the new blocks learn.
    assert all(layer.weight.grad.abs().sum() > 0 for layer in residual_outputs(deeper.transformer.blocks[1]))
    with torch.no_grad():
        for layer in residual_outputs(deeper.transformer.blocks[1]):
            layer.weight.normal_()
        v = deeper(x, t, text)
    deeper.save(tmp_path / "deeper")
    loaded = WanDenoiser.from_folder(tmp_path / "deeper")
    assert len(loaded.transformer.blocks) == 2
    with torch.no_grad():
        assert torch.equal(loaded(x, t, text), v)
