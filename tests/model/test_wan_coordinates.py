"""``WanConfig.coordinates``: two input planes tell each token where in the frame it is (RoPE alone gives
only relative positions), a trained teacher gains them without changing what it computes, and a saved
folder loads back with them."""

from __future__ import annotations

import dataclasses

import torch

from s2dit.model.denoiser import DenoiserSpec, build_denoiser, save_denoiser
from s2dit.model.wan import WanConfig, WanDenoiser, coordinate_planes, has_coordinates

TINY = WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16, freq_dim=32, patch_kernel=4)


def inputs(frames: int = 2, h: int = 8, w: int = 12):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, frames, h, w, generator=g)
    return x, torch.full((2, frames), 700.0), torch.randn(2, 5, 16, generator=g)


def test_the_planes_span_the_frame_by_row_and_column():
    planes = coordinate_planes(torch.zeros(3, 16, 2, 4, 5))
    assert planes.shape == (3, 2, 2, 4, 5)
    torch.testing.assert_close(planes[0, 0, 0, :, 0], torch.linspace(-1, 1, 4))  # rows
    torch.testing.assert_close(planes[0, 1, 0, 0, :], torch.linspace(-1, 1, 5))  # columns
    assert torch.equal(planes[0, :, 0], planes[2, :, 1])  # the same for every clip and frame


def test_with_planes_a_constant_input_gives_a_place_dependent_velocity():
    """Without them a uniform latent gives the same velocity at every interior token (the patch embedding
    and RoPE attention treat every place alike away from the border); with them it does not."""
    torch.manual_seed(0)
    x = torch.zeros(1, 16, 1, 16, 16)
    t, text = torch.full((1, 1), 900.0), torch.randn(1, 5, 16)
    spread = {}
    for coords in (False, True):
        model = WanDenoiser.from_config(dataclasses.replace(TINY, coordinates=coords))
        with torch.no_grad():
            v = model(x, t, text)[0, :, 0, 4:12, 4:12]  # interior latent pixels, whole tokens
        # tokens are 2x2 latent pixels: compare one sub-pixel across the interior tokens
        spread[coords] = float(v[:, ::2, ::2].std(dim=(1, 2)).max())
    assert spread[False] < 1e-5 < 1e-3 < spread[True], spread


def test_an_init_gains_the_planes_without_changing_what_it_computes(tmp_path):
    torch.manual_seed(0)
    trained = WanDenoiser.from_config(TINY)
    with torch.no_grad():
        trained.transformer.proj_out.weight.normal_()
    trained.save(tmp_path / "teacher")
    grown = build_denoiser(
        DenoiserSpec(
            kind="wan", wan=dataclasses.replace(TINY, coordinates=True), init=str(tmp_path / "teacher")
        )
    )
    assert has_coordinates(grown.transformer) and not has_coordinates(trained.transformer)
    w = grown.transformer.patch_embedding.weight
    assert w.shape[1] == 18 and torch.count_nonzero(w[:, 16:]) == 0
    x, t, text = inputs()
    with torch.no_grad():
        torch.testing.assert_close(grown(x, t, text), trained(x, t, text), rtol=1e-5, atol=1e-5)
    # an init that has them keeps them (and is not grown twice)
    save_denoiser(grown, tmp_path / "grown")
    again = build_denoiser(
        DenoiserSpec(
            kind="wan", wan=dataclasses.replace(TINY, coordinates=True), init=str(tmp_path / "grown")
        )
    )
    assert again.transformer.patch_embedding.weight.shape[1] == 18


def test_a_model_with_planes_saves_and_loads_back_with_them(tmp_path):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, coordinates=True, patch_frames=3))
    with torch.no_grad():
        model.transformer.patch_embedding.weight[:, 16:].normal_()
    model.save(tmp_path / "model")
    loaded = WanDenoiser.from_folder(tmp_path / "model")
    assert has_coordinates(loaded.transformer)
    assert loaded.transformer.patch_embedding.kernel_size == (3, 4, 4)
    x, t, text = inputs(frames=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, text), model(x, t, text))
