"""``s2dit train decoder``: a tiny decoder distilled to decode a real diffusers AutoencoderKLWan's latents."""

import json
import os
import subprocess
import sys

import pytest
import torch

from s2dit.errors import S2DitError
from s2dit.latent.tiny_ae import load_tiny_ae

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def wan_vae_folder(tmp_path_factory):
    """A tiny random diffusers AutoencoderKLWan saved with save_pretrained (the VAE to imitate)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    folder = tmp_path_factory.mktemp("wan_vae")
    vae.save_pretrained(folder)
    return folder


def train(out, vae, videos, *extra):
    cmd = [f"{BIN}/s2dit", "train", "decoder", "--vae", str(vae), "--set", f"data={videos}"]
    cmd += [
        "--set",
        f"out={out}",
        "--set",
        "video.width=64",
        "--set",
        "video.height=48",
        "--set",
        "video.frames=5",
        "--set",
        "clip_frames=5",
        "--set",
        "strides=[1]",
    ]
    cmd += [
        "--set",
        "crop=[32,32]",
        "--set",
        "batch_size=2",
        "--set",
        "log_every=1",
        "--set",
        "lr=0.003",
        "--set",
        "warmup_steps=3",
    ]
    cmd += ["--set", "model.widths=[4,8,8,8]", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_a_distilled_decoder_learns_resumes_and_refuses_to_encode(tmp_path, wan_vae_folder, micro_world):
    out = tmp_path / "dec"
    first = train(out, wan_vae_folder, micro_world, "--set", "steps=30", "--max-steps", "10")
    assert [r["step"] for r in first] == list(range(1, 11)) and not (out / "tiny_ae.safetensors").exists()
    log = train(out, wan_vae_folder, micro_world, "--set", "steps=30")  # resumes at step 10
    assert [r["step"] for r in log] == list(range(1, 31))
    assert sum(r["loss"] for r in log[-5:]) < 0.7 * sum(
        r["loss"] for r in log[:5]
    )  # it learns the VAE's decode
    decoder = load_tiny_ae(out)
    assert decoder.config.decodes_for == str(wan_vae_folder)
    with pytest.raises(S2DitError, match="cannot encode"):
        decoder.encode(torch.zeros(1, 3, 5, 48, 64))
    frames = decoder.streaming_decoder().push(torch.randn(1, 16, 2, 6, 8))
    assert frames.shape == (1, 3, 5, 48, 64)


def test_eval_vae_compares_the_decoder_with_the_vae(tmp_path, micro_world):
    from s2dit.eval.vae import evaluate_vae
    from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae

    torch.manual_seed(0)
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])), tmp_path / "vae")
    torch.manual_seed(1)
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 4, 4, 4], decodes_for="vae")), tmp_path / "dec")
    report = evaluate_vae(
        str(tmp_path / "vae"), str(micro_world), clips=1, decoder_path=str(tmp_path / "dec"), progress=False
    )
    assert 0 < report["decoder_psnr_vs_vae_db"] < 60 and report["decoder_frames_per_s"] > 0
    assert report["decoder_speedup"] > 0
    same = evaluate_vae(
        str(tmp_path / "vae"), str(micro_world), clips=1, decoder_path=str(tmp_path / "vae"), progress=False
    )
    assert same["decoder_psnr_vs_vae_db"] > 90  # the VAE against itself: identical frames
    assert len(same["decoder_psnr_vs_vae_db_by_latent_frame"]) == 9
    assert min(same["decoder_psnr_vs_vae_db_by_latent_frame"]) > 90


def test_a_robust_decoder_keeps_the_vae_encoder_and_trains_on_noisy_latents(tmp_path, micro_world):
    """``init`` = the VAE: only the decoder changes (same latents); ``latent_noise`` reaches the decoder."""
    from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae

    torch.manual_seed(0)
    vae = tmp_path / "vae"
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])), vae)
    common = ("--set", f"init={vae}", "--set", "target=pixels", "--set", "steps=4")
    frozen = (*common, "--set", "lr=1e-9")
    clean = train(tmp_path / "clean", vae, micro_world, *frozen)
    noisy = train(tmp_path / "noisy", vae, micro_world, *frozen, "--set", "latent_noise=3.0")
    # the same weights and batch (a run is deterministic): only the noise on the decoder's input differs
    assert noisy[0]["loss"] != pytest.approx(clean[0]["loss"], rel=1e-3)
    train(tmp_path / "robust", vae, micro_world, *common, "--set", "latent_noise=0.5")
    start, robust = load_tiny_ae(vae), load_tiny_ae(tmp_path / "robust")
    assert robust.config.decodes_for == "" and robust.config.latents_std == start.config.latents_std
    before, after = start.state_dict(), robust.state_dict()
    decoder = {n for n, p in robust.named_parameters() if any(p is q for q in robust.decoder_parameters())}
    assert all(torch.equal(before[n], after[n]) for n in after if n not in decoder)  # the VAE's encoder
    assert any(not torch.equal(before[n], after[n]) for n in decoder)  # ... and the decoder trained
    pixels = torch.rand(1, 3, 5, 48, 64) * 2 - 1
    assert torch.equal(robust.encode(pixels), start.encode(pixels))


def test_latent_noise_is_seeded_by_step_and_bounded(tmp_path):
    from s2dit.errors import ConfigError
    from s2dit.train.decoder import DecoderTrainConfig, DecoderTraining

    with pytest.raises(ConfigError, match="latent_noise"):
        DecoderTrainConfig(vae="v", latent_noise=float("nan"))
    training = DecoderTraining.__new__(DecoderTraining)  # only the noise: no data or model needed
    training.cfg, training.step = DecoderTrainConfig(vae="v", latent_noise=0.5), 7
    z = torch.zeros(64, 16, 3, 6, 8)
    a, b = training.noisy(z), training.noisy(z)
    assert torch.equal(a, b)  # a resumed run draws the same noise at the same step
    training.step = 8
    assert not torch.equal(training.noisy(z), a)
    per_clip = a.flatten(1).std(1)
    assert per_clip.max() < 0.55 and per_clip.min() < 0.1 and per_clip.std() > 0.05  # std drawn in [0, 0.5]
    training.cfg = DecoderTrainConfig(vae="v", latent_noise=0.0)
    assert training.noisy(z) is z
