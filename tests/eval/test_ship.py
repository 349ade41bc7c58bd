"""Shipping a trained model into weights/ and its recorded check (s2dit.eval.ship)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from s2dit.diffusion.pipeline import PipelineInfo, read_pipeline
from s2dit.errors import S2DitError
from s2dit.eval import ship as shipping
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae
from s2dit.model.denoiser import load_denoiser, save_denoiser
from s2dit.model.wan import WanConfig, WanDenoiser


def trained_model(root):
    """A run's model/ folder as the trainer writes it: a tiny Wan, float32, and a pipeline.yaml naming a VAE
    by an absolute path elsewhere."""
    torch.manual_seed(0)
    model = WanDenoiser.from_config(WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16))
    folder = root / "run" / "model"
    save_denoiser(model, folder)
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])), root / "vaes" / "vae")
    info = PipelineInfo(vae=str(root / "vaes" / "vae"), steps=7)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({**info.__dict__, "stream": {}}))
    return model, folder


def test_ship_stores_bfloat16_weights_that_load_as_the_float32_model(tmp_path):
    model, _ = trained_model(tmp_path)
    dest = shipping.ship(tmp_path / "run", tmp_path / "weights" / "teacher")  # the run folder works too
    stored = load_file(dest / "diffusion_pytorch_model.safetensors")
    assert stored and all(v.dtype == torch.bfloat16 for v in stored.values() if v.is_floating_point())
    loaded = load_denoiser(dest)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert b.dtype == torch.float32, name
        torch.testing.assert_close(b, a.bfloat16().float(), rtol=0, atol=0)
    # The VAE is named relative to the new folder, so the weights work from any directory.
    raw = yaml.safe_load((dest / "pipeline.yaml").read_text())
    assert raw["vae"] == "../../vaes/vae" and raw["steps"] == 7
    assert read_pipeline(dest).vae == str(tmp_path / "vaes" / "vae")


def test_ship_refuses_a_folder_without_a_pipeline(tmp_path):
    with pytest.raises(S2DitError, match="not a trained model folder"):
        shipping.ship(tmp_path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_check_file_round_trip_and_errors(tmp_path):
    check = shipping.ShippedCheck(
        ["a red circle"], [3], [True], 0.9, steps=4, cfg=5.0, shift=3.0, sampler="unipc"
    )
    (tmp_path / shipping.CHECK_FILE).write_text(json.dumps(check.__dict__))
    assert shipping.read(tmp_path) == check and check.pass_rate == 1.0
    (tmp_path / shipping.CHECK_FILE).write_text("[1, 2]")
    with pytest.raises(S2DitError, match="expected a JSON object"):
        shipping.read(tmp_path)
    (tmp_path / shipping.CHECK_FILE).write_text(json.dumps({**check.__dict__, "seeds": [1, 2]}))
    with pytest.raises(S2DitError, match="equally long"):
        shipping.read(tmp_path)
    with pytest.raises(S2DitError, match="cannot read"):
        shipping.read(tmp_path / "missing")


def test_two_experts_join_route_by_the_boundary_and_ship_in_bfloat16(tmp_path):
    """`s2dit model experts`: the joined folder loads as WanTwoExperts whose velocity is the high model's
    at σ >= boundary and the low model's below; its VAE path still resolves; ship keeps the sub-folders."""
    from s2dit.model.wan import WanTwoExperts

    high, _ = trained_model(tmp_path / "a")
    torch.manual_seed(1)
    low = WanDenoiser.from_config(WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16))
    for p in low.parameters():
        p.data.normal_(0, 0.05)
    save_denoiser(low, tmp_path / "low")
    joined = shipping.join_experts(tmp_path / "a" / "run", tmp_path / "low", tmp_path / "joined", 0.7)
    model = load_denoiser(joined)
    assert isinstance(model, WanTwoExperts) and model.boundary == pytest.approx(700.0)
    assert (
        read_pipeline(joined).vae == str(tmp_path / "a" / "vaes" / "vae") and read_pipeline(joined).steps == 7
    )
    x, text = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 5, 16)
    with torch.no_grad():
        for level, expert in ((700.0, high), (950.0, high), (699.0, low), (100.0, low)):
            t = torch.full((1, 3), level)
            torch.testing.assert_close(model(x, t, text), expert(x, t, text))
        shipped = load_denoiser(shipping.ship(joined, tmp_path / "weights" / "pair"))
        torch.testing.assert_close(
            shipped(x, torch.full((1, 3), 100.0), text),
            WanDenoiser(low.transformer.to(torch.bfloat16).float())(x, torch.full((1, 3), 100.0), text),
        )
    stored = load_file(
        tmp_path / "weights" / "pair" / "transformer_2" / "diffusion_pytorch_model.safetensors"
    )
    assert all(v.dtype == torch.bfloat16 for v in stored.values() if v.is_floating_point())


def test_two_experts_refuse_a_bad_boundary_or_a_model_that_is_not_wan(tmp_path):
    _, folder = trained_model(tmp_path)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(S2DitError, match=r"--boundary .* strictly between 0 and 1"):
            shipping.join_experts(folder, folder, tmp_path / "joined", bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(S2DitError, match=r"^the low expert .*empty is not a Wan model folder"):
        shipping.join_experts(folder, tmp_path / "empty", tmp_path / "joined", 0.5)
    assert not (tmp_path / "joined").exists()
