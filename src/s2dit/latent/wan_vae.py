"""The Wan VAE (diffusers ``AutoencoderKLWan``): normalised encode/decode and a streaming decoder.

Latents follow the Wan convention (docs/architecture.md §2): ``[B, 16, T, H/8, W/8]`` with ``T = 1 + (F - 1) /
4``, normalised per channel, ``latent = (z - mean) / std`` with the 16 means/stds of the VAE's config.

:class:`WanStreamingDecoder` decodes chunk by chunk through the VAE's causal feature cache, one latent
frame at a time exactly as diffusers' full decode does, so the frames it yields equal a full decode of the
whole latent video. Its cache lives in the decoder object, not on the VAE module, so several streams can
share one VAE.

:class:`TrainableWanVAE` gives a fresh ``AutoencoderKLWan`` (built from :class:`WanVAEArch`) the tiny
autoencoder's training interface, so ``s2dit train vae`` with ``kind: wan`` trains small Wan VAEs, e.g. the
VAE that ``s2dit train decoder`` learns to imitate in tests and benchmarks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from s2dit.errors import ConfigError, S2DitError


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
        from safetensors import SafetensorError

        try:
            vae = AutoencoderKLWan.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, SafetensorError) as e:
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


@dataclasses.dataclass
class WanVAEArch:
    """A small ``AutoencoderKLWan`` trained from scratch: 4x time and 8x space compression, like Wan2.1's."""

    base_dim: int = 16  # Wan2.1's VAE: 96
    dim_mult: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 1  # Wan2.1's VAE: 2
    z_dim: int = 16

    def __post_init__(self) -> None:
        if self.base_dim < 1 or self.num_res_blocks < 1 or self.z_dim < 1:
            raise ConfigError("base_dim, num_res_blocks and z_dim must be at least 1")
        if len(self.dim_mult) != 4 or any(m < 1 for m in self.dim_mult):
            raise ConfigError(f"dim_mult: {self.dim_mult} must be 4 positive multipliers")

    def build(self):
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan(
            base_dim=self.base_dim,
            z_dim=self.z_dim,
            dim_mult=list(self.dim_mult),
            num_res_blocks=self.num_res_blocks,
            temperal_downsample=[False, True, True],
        )


class TrainableWanVAE(nn.Module):
    """An ``AutoencoderKLWan`` with the tiny autoencoder's training interface (un-normalised latents)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, F, H, W]`` -> ``(mean, logvar)``, each ``[B, z_dim, T, H/8, W/8]``."""
        dist = self.vae.encode(pixels).latent_dist
        return dist.mean, dist.logvar

    def forward(self, pixels: torch.Tensor, sample: bool = True):
        """``(reconstruction, posterior mean, posterior logvar)``."""
        mean, logvar = self.posterior(pixels)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.vae.decode(z).sample, mean, logvar

    def save(self, folder: str | os.PathLike, latents_mean: list[float], latents_std: list[float]) -> None:
        """Write a diffusers folder (``config.json`` with the measured latent statistics + weights) into
        ``folder``. Each file is written to a temporary name, flushed to disk and renamed, the config last, so
        a crash leaves no partial file and no config pointing at missing weights."""
        from s2dit.atomic import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vae.register_to_config(latents_mean=latents_mean, latents_std=latents_std)
        with tempfile.TemporaryDirectory() as tmp:
            self.vae.save_pretrained(tmp)
            for name in sorted(os.listdir(tmp), key=lambda n: n == "config.json"):  # config last
                with atomic_path(folder / name) as part:
                    shutil.copyfile(Path(tmp) / name, part)
