"""Shared fixtures: small micro worlds made once per test session.

``precision: auto`` is pinned to float32 on CPUs (``S2DIT_CPU_BF16=0``, unless the environment sets it) so
that the suite computes the same on every machine, whatever a bf16 matmul measures there; the tests of bf16
paths ask for bf16 explicitly. The subprocesses the tests start inherit it."""

from __future__ import annotations

import os

import pytest
import torch

from s2dit.config import VideoSpec
from s2dit.data.encode import EncodeConfig, encode_folder
from s2dit.data.micro.writer import MicroWorldConfig, write_micro_world
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae

os.environ.setdefault("S2DIT_CPU_BF16", "0")


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    """24 default-size clips (256x144, 33 frames, 16 fps) with seed 3."""
    out = tmp_path_factory.mktemp("micro_world")
    write_micro_world(out, 24, MicroWorldConfig(seed=3), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_spec():
    return VideoSpec(width=64, height=48, frames=9, fps=8.0)


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def latents(micro_world, tmp_path_factory):
    """A small encoded latent folder: micro-world clips at 64x48, 9 frames -> latents [16, 3, 6, 8]."""
    vae = tmp_path_factory.mktemp("train_vae")
    torch.manual_seed(0)
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])), vae)
    out = tmp_path_factory.mktemp("train_latents")
    spec = VideoSpec(width=64, height=48, frames=9, fps=8.0)
    cfg = EncodeConfig(
        videos=str(micro_world), out=str(out), vae=str(vae), video=spec, shard_size=8, text_max_length=32
    )
    encode_folder(cfg, progress=False)
    return out
