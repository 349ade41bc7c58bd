"""``WanConfig.patch_kernel``: the patch embedding sees a wider window of latents at Wan's stride, the
token grid is unchanged, and a saved folder loads back with the same window."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from s2dit.errors import ConfigError
from s2dit.model.wan import WanConfig, WanDenoiser

TINY = WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16, freq_dim=32)


def tokens_changed(model: WanDenoiser, row: int, col: int) -> set[tuple[int, int]]:
    """Tokens (on the 2x2 grid) whose patch embedding moves when one latent pixel changes."""
    x = torch.zeros(1, 16, 1, 8, 8)
    y = x.clone()
    y[0, :, 0, row, col] = 1.0
    with torch.no_grad():
        delta = model.transformer.patch_embedding(y) - model.transformer.patch_embedding(x)
    return {(i, j) for i, j in (delta[0, :, 0].abs().sum(0) > 0).nonzero().tolist()}


NEIGHBOURS = {(i, j) for i in (1, 2, 3) for j in (1, 2, 3)}


@pytest.mark.parametrize(("kernel", "expected"), [(2, {(2, 2)}), (6, NEIGHBOURS)])
def test_a_latent_pixel_reaches_the_tokens_whose_window_covers_it(kernel, expected):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=kernel))
    assert tokens_changed(model, 4, 4) == expected


@pytest.mark.parametrize("frames", [1, 3])
def test_the_token_grid_and_the_output_shape_stay_wans(tmp_path, frames):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=6, patch_frames=frames))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 6, 8, generator=g)
    t, text = torch.full((2, 3), 500.0), torch.randn(2, 5, 16, generator=g)
    with torch.no_grad():
        v = model(x, t, text)
    assert v.shape == x.shape
    model.save(tmp_path / "teacher")
    loaded = WanDenoiser.from_folder(tmp_path / "teacher")
    assert loaded.transformer.patch_embedding.kernel_size == (frames, 6, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, text), v)


@pytest.mark.parametrize("kernel", [0, 3, 5])
def test_an_odd_or_too_small_kernel_is_a_config_error(kernel):
    with pytest.raises(ConfigError, match="patch_kernel"):
        WanConfig(patch_kernel=kernel)


def test_ema_weights_save_in_the_wider_architecture(tmp_path):
    """The trainer exports EMA weights through ``save_denoiser(model, folder, state_dict)``."""
    from s2dit.model.denoiser import save_denoiser

    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=4))
    state = {k: v + 1.0 for k, v in model.state_dict().items()}
    save_denoiser(model, tmp_path / "model", state)
    loaded = WanDenoiser.from_folder(tmp_path / "model")
    key = "transformer.patch_embedding.weight"
    assert torch.equal(loaded.state_dict()[key], state[key])


def test_weights_with_an_odd_window_are_refused_in_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    from s2dit.errors import S2DitError

    model = WanDenoiser.from_config(TINY)
    model.save(tmp_path / "teacher")
    weights = tmp_path / "teacher" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["patch_embedding.weight"] = torch.zeros(*state["patch_embedding.weight"].shape[:3], 3, 3)
    save_file(state, weights)
    with pytest.raises(S2DitError, match="must be even"):
        WanDenoiser.from_folder(tmp_path / "teacher")


def frames_changed(model: WanDenoiser, frame: int) -> set[int]:
    """Latent frames whose patch embedding moves when one latent pixel of ``frame`` changes."""
    x = torch.zeros(1, 16, 4, 8, 8)
    y = x.clone()
    y[0, :, frame, 4, 4] = 1.0
    with torch.no_grad():
        delta = model.transformer.patch_embedding(y) - model.transformer.patch_embedding(x)
    return set((delta[0].abs().sum((0, 2, 3)) > 0).nonzero().flatten().tolist())


@pytest.mark.parametrize(("frames", "expected"), [(1, {1}), (3, {0, 1, 2})])
def test_a_temporal_window_lets_a_token_see_the_neighbouring_latent_frames(frames, expected):
    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=6, patch_frames=frames))
    assert frames_changed(model, 1) == expected
    assert frames_changed(model, 0) == ({0, 1} if frames == 3 else {0})


@pytest.mark.parametrize("frames", [0, 2])
def test_an_even_frame_window_is_a_config_error(frames):
    with pytest.raises(ConfigError, match="patch_frames"):
        WanConfig(patch_frames=frames)


def test_an_init_grows_its_window_without_changing_what_it_computes(tmp_path):
    """``model.init`` of a trained teacher with a wider window in the config: the trained taps sit at the
    centre of the new window, every new tap starts at zero, and the velocity is the trained model's."""
    from s2dit.model.denoiser import DenoiserSpec, build_denoiser

    torch.manual_seed(0)
    trained = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=4))
    with torch.no_grad():
        trained.transformer.proj_out.weight.normal_()  # diffusers' init is not zero here; make sure
    trained.save(tmp_path / "teacher")
    wider = dataclasses.replace(TINY, patch_kernel=6, patch_frames=3)
    grown = build_denoiser(DenoiserSpec(kind="wan", wan=wider, init=str(tmp_path / "teacher")))
    w = grown.transformer.patch_embedding.weight
    assert grown.transformer.patch_embedding.kernel_size == (3, 6, 6)
    assert torch.equal(w[:, :, 1, 1:5, 1:5], trained.transformer.patch_embedding.weight[:, :, 0])
    outside = torch.ones_like(w, dtype=torch.bool)
    outside[:, :, 1, 1:5, 1:5] = False
    assert torch.count_nonzero(w[outside]) == 0  # nothing outside the trained taps
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 6, 8, generator=g)
    t, text = torch.full((2, 3), 500.0), torch.randn(2, 5, 16, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(grown(x, t, text), trained(x, t, text), rtol=1e-5, atol=1e-5)
    # A narrower window in the config keeps the trained one (an init never loses taps).
    kept = build_denoiser(DenoiserSpec(kind="wan", wan=TINY, init=str(tmp_path / "teacher")))
    assert kept.transformer.patch_embedding.kernel_size == (1, 4, 4)


def test_ema_weights_of_a_temporal_window_save_in_its_architecture(tmp_path):
    from s2dit.model.denoiser import save_denoiser

    torch.manual_seed(0)
    model = WanDenoiser.from_config(dataclasses.replace(TINY, patch_kernel=6, patch_frames=3))
    state = {k: v + 1.0 for k, v in model.state_dict().items()}
    save_denoiser(model, tmp_path / "model", state)
    loaded = WanDenoiser.from_folder(tmp_path / "model")
    key = "transformer.patch_embedding.weight"
    assert torch.equal(loaded.state_dict()[key], state[key])
