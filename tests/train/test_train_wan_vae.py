"""``s2dit train vae --set kind=wan``: a small diffusers AutoencoderKLWan trained by our trainer."""

import json
import subprocess
import sys

import pytest
import torch

from s2dit.config import VideoSpec
from s2dit.errors import ConfigError
from s2dit.latent.wan_vae import WanVAEArch
from s2dit.train.vae import AETrainConfig

SETTINGS = (
    "kind=wan wan.base_dim=4 wan.dim_mult=[1,1,2,2] video.width=64 video.height=48 video.frames=9 "
    "clip_frames=5 strides=[1,2] crop=[32,32] batch_size=2 steps=8 warmup_steps=2 lr=0.003 log_every=1 "
    "checkpoint_every=4 stats_clips=3"
)


def train(out, world, *extra):
    settings = [f"data={world}", f"out={out}", *SETTINGS.split()]
    cmd = [sys.executable, "-m", "s2dit.cli", "train", "vae", *(a for kv in settings for a in ("--set", kv))]
    result = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_a_small_wan_vae_trains_resumes_and_loads_as_a_diffusers_folder(tmp_path, micro_world):
    from diffusers import AutoencoderKLWan

    from s2dit.data.video_folder import VideoFolderDataset
    from s2dit.latent.vae import load_vae
    from s2dit.latent.wan_vae import WanVAE

    out = tmp_path / "wan"
    first = train(out, micro_world, "--max-steps", "4")
    assert [r["step"] for r in first] == [1, 2, 3, 4] and not (out / "config.json").exists()
    log = train(out, micro_world)  # resumes at step 4
    assert [r["step"] for r in log] == list(range(1, 9))
    assert log[-1]["loss"] < log[0]["loss"]

    vae = load_vae(out)  # the run folder is a diffusers VAE folder now
    assert isinstance(vae, WanVAE) and isinstance(vae.vae, AutoencoderKLWan)
    assert vae.vae.config.base_dim == 4 and len(vae.vae.config.latents_mean) == 16
    # Normalised by the statistics measured on the data: about zero mean and unit spread there.
    data = VideoFolderDataset(micro_world, VideoSpec(width=64, height=48, frames=9), random_start=False)
    latents = vae.encode(torch.stack([data[i]["pixels"] for i in range(3)]))
    assert latents.shape == (3, 16, 3, 6, 8)
    assert latents.mean().abs() < 0.5 and 0.5 < latents.std() < 2.0
    assert vae.decode(latents).shape == (3, 3, 9, 48, 64)


def test_wan_settings_are_checked():
    with pytest.raises(ConfigError, match="kind"):
        AETrainConfig(kind="vqgan")
    with pytest.raises(ConfigError, match="dim_mult"):
        WanVAEArch(dim_mult=[1, 2])
