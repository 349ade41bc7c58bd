import pytest
import torch
from diffusers import WanTransformer3DModel

from s2dit.errors import S2DitError
from s2dit.model.denoiser import load_denoiser
from s2dit.model.wan import WanDenoiser

CONFIG = dict(
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=32,
    ffn_dim=48,
    num_layers=2,
)


@pytest.fixture(scope="module")
def wan():
    torch.manual_seed(0)
    model = WanTransformer3DModel(**CONFIG).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)  # no zero-initialised output: outputs must depend on the weights
    return model


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 16, 3, 8, 12, generator=g), torch.randn(2, 7, 32, generator=g)


@pytest.mark.parametrize("layout", ["transformer folder", "pipeline folder"])
def test_the_adapter_loads_a_diffusers_folder_and_gives_the_same_velocity(wan, tmp_path, layout):
    folder = tmp_path / "wan"
    wan.save_pretrained(folder / "transformer" if layout == "pipeline folder" else folder)
    model = load_denoiser(folder)
    assert isinstance(model, WanDenoiser) and model.text_dim == 32
    x, text = inputs()
    t = torch.full((2, 3), 700.0)
    with torch.no_grad():
        expected = wan(x, torch.full((2,), 700.0), text, return_dict=False)[0]
        assert torch.allclose(model(x, t, text), expected, atol=1e-6)


def test_per_frame_timesteps_go_through_the_per_token_path(wan):
    model = WanDenoiser(wan)
    x, text = inputs()
    with torch.no_grad():
        same = model(x, torch.full((2, 3), 300.0), text)
        per_token = wan(x, torch.full((2, 3 * 4 * 6), 300.0), text, return_dict=False)[0]
        assert torch.allclose(same, per_token, atol=1e-5)  # the two paths agree on one level
        mixed = model(x, torch.tensor([[100.0, 500.0, 900.0]] * 2), text)
        # Frame 0 at level 100 differs from the clip at level 300.
        assert not torch.allclose(mixed[:, :, 0], same[:, :, 0], atol=1e-4)


def test_masked_text_tokens_count_as_zero_padding(wan):
    model = WanDenoiser(wan)
    x, text = inputs()
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[:, 4:] = False
    padded = text.clone()
    padded[:, 4:] = 0
    t = torch.full((2, 3), 500.0)
    with torch.no_grad():
        assert torch.equal(model(x, t, text, mask), model(x, t, padded))


def test_missing_weights_are_named(wan, tmp_path):
    wan.save_pretrained(tmp_path / "w")
    (tmp_path / "w" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(S2DitError, match=r"missing diffusion_pytorch_model\.safetensors"):
        load_denoiser(tmp_path / "w")
    with pytest.raises(S2DitError, match="not a denoiser folder"):
        load_denoiser(tmp_path)


def test_the_shipped_micro_teacher_loads_and_predicts(repo_root):
    import torch

    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.model.denoiser import load_denoiser
    from s2dit.model.wan import WanDenoiser

    folder = repo_root / "weights" / "micro_teacher"
    model = load_denoiser(folder)
    assert isinstance(model, WanDenoiser) and next(model.parameters()).dtype == torch.float32
    info = read_pipeline(folder)
    assert (repo_root / info.vae / "tiny_ae.safetensors").is_file() and info.latent_shape == [16, 3, 18, 32]
    x, t, text = torch.randn(1, 16, 3, 18, 32), torch.full((1, 3), 700.0), torch.randn(1, 12, 384)
    with torch.no_grad():
        v = model(x, t, text)
    assert (
        v.shape == x.shape and torch.isfinite(v).all() and v.abs().mean() > 0.1
    )  # trained: not the zero init


def test_wan22_two_experts_route_each_frame_by_the_boundary(wan, tmp_path):
    import json

    from s2dit.model.wan import WanTwoExperts

    folder = tmp_path / "wan22"
    wan.save_pretrained(folder / "transformer")
    torch.manual_seed(5)
    low = WanTransformer3DModel(**CONFIG).eval()
    for p in low.parameters():
        p.data.normal_(0, 0.05)
    low.save_pretrained(folder / "transformer_2")
    with pytest.raises(S2DitError, match="boundary_ratio"):
        load_denoiser(folder)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "WanPipeline", "boundary_ratio": 0.875})
    )
    model = load_denoiser(folder)
    assert isinstance(model, WanTwoExperts) and model.boundary == 875.0
    x, text = inputs()
    high_only, low_only = WanDenoiser(wan), WanDenoiser(low)
    with torch.no_grad():
        for level, expert in ((900.0, high_only), (875.0, high_only), (500.0, low_only)):
            t = torch.full((2, 3), level)
            assert torch.allclose(model(x, t, text), expert(x, t, text), atol=1e-6)
        mixed = torch.tensor([[950.0, 700.0, 100.0], [880.0, 880.0, 874.0]])
        out, hi, lo = model(x, mixed, text), high_only(x, mixed, text), low_only(x, mixed, text)
    for b in range(2):
        for f in range(3):
            want = hi if mixed[b, f] >= 875 else lo
            assert torch.allclose(out[b, :, f], want[b, :, f], atol=1e-6)
