"""The Wan VAE (diffusers ``AutoencoderKLWan``): normalised encode/decode and a streaming decoder.

Latents follow the Wan convention (DESIGN.md §2): ``[B, 16, T, H/8, W/8]`` with ``T = 1 + (F - 1) / 4``,
normalised per channel, ``latent = (z - mean) / std`` with the 16 means/stds of the VAE's config.

:class:`WanStreamingDecoder` decodes chunk by chunk through the VAE's causal feature cache, one latent
frame at a time exactly as diffusers' full decode does, so the frames it yields equal a full decode of the
whole latent video. Its cache lives in the decoder object, not on the VAE module, so several streams can
share one VAE.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from s2dit.errors import S2DitError


class WanVAE:
    """A diffusers ``AutoencoderKLWan`` with the Wan latent normalisation.

    Args:
        vae: the diffusers module (e.g. from :meth:`from_folder`).
    """

    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str = "cpu") -> WanVAE:
        """Load a diffusers VAE folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), e.g. the
        ``vae/`` folder of Wan2.1-T2V-1.3B-Diffusers. Nothing is downloaded."""
        folder = Path(folder)
        if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
            raise S2DitError(
                f"Wan VAE folder {folder} needs config.json and diffusion_pytorch_model.safetensors "
                "(the vae/ folder of a Wan2.1 diffusers checkpoint)"
            )
        from diffusers import AutoencoderKLWan

        try:
            vae = AutoencoderKLWan.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise S2DitError(f"cannot load the Wan VAE in {folder}: {str(e).splitlines()[0]}") from None
        return cls(vae.to(device))

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """``[B, 3, F, H, W]`` in [-1, 1] (F = 4k+1, H and W multiples of 8) -> normalised latents
        ``[B, 16, 1 + (F-1)/4, H/8, W/8]``: the posterior mean, or a sample when ``sample``."""
        F_, H, W = pixels.shape[2:]
        if (F_ - 1) % 4 or H % 8 or W % 8:
            raise S2DitError(f"Wan VAE input must be 4k+1 frames of multiples of 8 pixels, got {F_}x{H}x{W}")
        dist = self.vae.encode(pixels).latent_dist
        z = dist.sample() if sample else dist.mode()
        mean, std = self._stats(z)
        return (z - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, 16, T, h, w]`` -> pixels ``[B, 3, 1 + 4(T-1), 8h, 8w]`` in [-1, 1]."""
        mean, std = self._stats(latents)
        return self.vae.decode(latents * std + mean).sample

    def streaming_decoder(self) -> WanStreamingDecoder:
        return WanStreamingDecoder(self)


class WanStreamingDecoder:
    """``push(latent_chunk) -> frames``: decodes a stream of latent chunks with the VAE's causal cache.

    The first latent frame gives 1 video frame, every later one 4; ``push`` returns the chunk's frames
    ``[B, 3, n, H, W]`` in [-1, 1] as soon as they are decoded. Call :meth:`reset` to start a new stream.
    """

    def __init__(self, wan: WanVAE):
        self.wan = wan
        self.reset()

    def reset(self) -> None:
        self._cache: list = [None] * self.wan.vae._cached_conv_counts["decoder"]
        self._first = True

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, 16, n, h, w]`` (any n >= 1) -> the next video frames."""
        vae = self.wan.vae
        mean, std = self.wan._stats(latents)
        x = vae.post_quant_conv(latents * std + mean)  # per frame (1x1x1), so chunking does not matter
        frames = []
        for i in range(x.shape[2]):
            # The same calls as diffusers' full decode, with this stream's cache.
            frames.append(
                vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0], first_chunk=self._first)
            )
            self._first = False
        out = torch.cat(frames, dim=2)
        if vae.config.patch_size is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out.clamp(-1.0, 1.0)
