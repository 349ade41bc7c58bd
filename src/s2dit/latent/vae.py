"""What every autoencoder shares: loading one from its folder, and the measure its reconstructions get.

:func:`load_vae` takes a tiny-autoencoder folder (``tiny_ae.safetensors``, written by ``s2dit train vae`` or
``s2dit train decoder``) or a diffusers Wan VAE folder (``config.json``) and returns an object with
``encode(pixels)``, ``decode(latents)`` and ``streaming_decoder()``. :func:`psnr` is the reconstruction PSNR
that training logs and ``s2dit eval vae`` report.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from s2dit.errors import S2DitError


def load_vae(path: str | os.PathLike):
    """A tiny-autoencoder folder or a diffusers Wan VAE folder -> an object with ``encode(pixels)``."""
    path = Path(path)
    if (path / "tiny_ae.safetensors").is_file():
        from s2dit.latent.tiny_ae import load_tiny_ae

        return load_tiny_ae(path)
    if (path / "config.json").is_file():
        from s2dit.latent.wan_vae import WanVAE

        return WanVAE.from_folder(path)
    raise S2DitError(
        f"--vae {path}: expected tiny_ae.safetensors (s2dit train vae) or a diffusers Wan VAE folder"
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two pixel tensors in [-1, 1]."""
    mse = ((a - b) / 2).square().mean().clamp_min(1e-10)
    return float(-10 * torch.log10(mse))
