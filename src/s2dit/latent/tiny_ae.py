"""A tiny video autoencoder with the Wan latent convention: 4× time, 8× space, 16 channels
(docs/architecture.md §4).

Mostly per-frame 2D convolutions; time is handled cheaply and causally:

* encoder: each frame goes through a 2D conv stack (8× down); frame 0 is repeated to fill a group of four,
  then every group of 4 consecutive frames is folded into channels and mapped to a latent frame, so latent
  ``t`` depends on frames ``<= 4t`` only (``F = 4k + 1`` frames -> ``1 + k`` latent frames);
* decoder: a causal depthwise temporal conv over latent frames (the only temporal state), then each latent
  frame is unfolded into 4 frames (only the last one for latent 0) and decoded by a 2D conv stack (8× up).

So the decoder streams chunk by chunk (:class:`TinyStreamingDecoder`, equal to a full decode). Latents are
normalised per channel with statistics stored in the config (measured on data after training).

A model folder is ``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (:func:`save_tiny_ae`, :func:`load_tiny_ae`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s2dit.atomic import atomic_path
from s2dit.config import from_dict, save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.files import load_safetensors, read_yaml
from s2dit.ops.causal_conv import causal_depthwise_conv3d


@dataclasses.dataclass
class TinyAEConfig:
    """Architecture of the tiny autoencoder (widths from full resolution down to 1/8)."""

    latent_channels: int = 16
    # Full, 1/2, 1/4, 1/8 resolution. Decoding costs ~0.5 GFLOP per 256x144 frame at these widths.
    widths: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32, 64])
    # Residual blocks at each resolution (full, 1/2, 1/4, 1/8), in the encoder and in the decoder.
    enc_blocks: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 1, 1])
    dec_blocks: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 1, 1])
    temporal_kernel: int = 3  # causal depthwise conv over latent frames in the decoder
    latents_mean: list[float] = dataclasses.field(default_factory=lambda: [0.0] * 16)
    latents_std: list[float] = dataclasses.field(default_factory=lambda: [1.0] * 16)
    # Non-empty for a decoder distilled to decode another VAE's latents (s2dit train decoder): the VAE it
    # decodes for. Such a model has no trained encoder.
    decodes_for: str = ""

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or any(w < 1 for w in self.widths):
            raise ConfigError(
                f"widths: {self.widths} must be 4 positive widths (full, 1/2, 1/4, 1/8 resolution)"
            )
        for name in ("enc_blocks", "dec_blocks"):
            if len(getattr(self, name)) != 4 or any(n < 0 for n in getattr(self, name)):
                raise ConfigError(f"{name}: {getattr(self, name)} must be 4 block counts >= 0 (full to 1/8)")
        if len(self.latents_mean) != self.latent_channels or len(self.latents_std) != self.latent_channels:
            raise ConfigError(f"latents_mean/latents_std need {self.latent_channels} values each")
        if self.temporal_kernel < 1:
            raise ConfigError(f"temporal_kernel: {self.temporal_kernel} must be >= 1")


class ResBlock2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class TinyAutoencoder(nn.Module):
    """See the module docstring. Pixels ``[B, 3, F, H, W]`` in [-1, 1]; latents ``[B, 16, T, H/8, W/8]``."""

    # The causal temporal op; s2dit.export swaps in the 2D-convolution form for runtimes without 3D ones.
    conv_op = staticmethod(causal_depthwise_conv3d)

    def __init__(self, config: TinyAEConfig):
        super().__init__()
        self.config = config
        w, C = config.widths, config.latent_channels
        stages = lambda counts: nn.ModuleList(  # noqa: E731  residual blocks per resolution, full to 1/8
            nn.Sequential(*(ResBlock2d(w[level]) for _ in range(n))) for level, n in enumerate(counts)
        )
        self.enc_in = nn.Conv2d(3, w[0], 3, padding=1)
        self.enc_down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1) for i in range(3))
        self.enc_blocks = stages(config.enc_blocks)
        self.to_latent = nn.Conv2d(4 * w[3], 2 * C, 1)  # 4 frames folded into channels -> mean, log-variance
        self.temporal = nn.Conv3d(C, C, (config.temporal_kernel, 1, 1), groups=C)  # weights for the causal op
        self.from_latent = nn.Conv2d(C, 4 * w[3], 1)  # a latent frame -> 4 frames of features
        self.dec_blocks = stages(config.dec_blocks)
        self.dec_up = nn.ModuleList(
            nn.Conv2d(w[i + 1], w[i], 3, padding=1) for i in range(3)
        )  # 1/2^(i+1) -> 1/2^i
        self.dec_out = nn.Conv2d(w[0], 3, 3, padding=1)
        self.register_buffer("mean", torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.latents_std).view(1, -1, 1, 1, 1), persistent=False)
        with torch.no_grad():  # start the temporal conv as the identity (weight on the current frame)
            self.temporal.weight.zero_()
            self.temporal.weight[:, :, -1] = 1.0
            self.temporal.bias.zero_()

    # ------------------------------------------------------------------------------------------
    # Encoder
    # ------------------------------------------------------------------------------------------

    def posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, F, H, W]`` -> un-normalised ``(mean, logvar)``, each ``[B, C, T, H/8, W/8]``."""
        if self.config.decodes_for:
            raise S2DitError(
                f"this tiny autoencoder is a decoder distilled for {self.config.decodes_for}: "
                "it cannot encode; encode with that VAE"
            )
        B, _, Fr, H, W = pixels.shape
        if (Fr - 1) % 4 or H % 8 or W % 8:
            raise ValueError(f"tiny AE input must be 4k+1 frames of multiples of 8 pixels, got {Fr}x{H}x{W}")
        x = pixels.transpose(1, 2).reshape(B * Fr, 3, H, W)  # per-frame 2D
        x = self.enc_blocks[0](self.enc_in(x))
        for down, blocks in zip(self.enc_down, self.enc_blocks[1:], strict=True):
            x = blocks(down(F.silu(x)))  # (B*F, w3, h, w) after the last level
        x = x.reshape(B, Fr, *x.shape[1:])  # (B, F, w3, h, w)
        x = torch.cat([x[:, :1].expand(-1, 3, -1, -1, -1), x], dim=1)  # frame 0 fills its group of 4
        T = (Fr + 3) // 4
        x = x.reshape(B * T, 4 * x.shape[2], *x.shape[3:])  # 4 frames folded into channels
        mean, logvar = self.to_latent(x).chunk(2, dim=1)  # (B*T, C, h, w)
        unfold = lambda z: z.reshape(B, T, *z.shape[1:]).transpose(1, 2)  # noqa: E731  (B, C, T, h, w)
        return unfold(mean), unfold(logvar).clamp(-30.0, 20.0)

    def encode(self, pixels: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Pixels -> normalised latents (posterior mean, or a sample)."""
        mean, logvar = self.posterior(pixels)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return (z - self.mean) / self.std

    # ------------------------------------------------------------------------------------------
    # Decoder
    # ------------------------------------------------------------------------------------------

    def decode_frames(
        self, latents: torch.Tensor, tail: torch.Tensor | None, first: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised latents ``[B, C, n, h, w]`` after ``tail`` -> ``(frames [B, 3, F, H, W], new tail)``;
        ``first``: the chunk starts the video (its first latent frame gives one frame, not four)."""
        z = latents * self.std + self.mean
        z, tail = self.conv_op(z, self.temporal.weight, self.temporal.bias, tail)
        B, C, n, h, w = z.shape
        x = self.from_latent(z.transpose(1, 2).reshape(B * n, C, h, w))  # (B*n, 4*w3, h, w)
        x = x.reshape(B * n * 4, -1, h, w)  # each latent frame unfolds into 4 frames
        if first:  # latent 0 stands for frame 0 only: keep the last of its four
            x = x.reshape(B, n * 4, *x.shape[1:])[:, 3:].reshape(-1, *x.shape[1:])
        for level in (3, 2, 1):
            x = self.dec_up[level - 1](
                F.interpolate(self.dec_blocks[level](x), scale_factor=2.0, mode="nearest")
            )
        x = self.dec_out(F.silu(self.dec_blocks[0](x)))  # (B*F, 3, H, W)
        frames = x.reshape(B, -1, 3, *x.shape[2:]).transpose(1, 2)
        return frames.clamp(-1.0, 1.0), tail

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, T, h, w]`` -> pixels ``[B, 3, 1 + 4(T-1), 8h, 8w]`` in [-1, 1]."""
        return self.decode_frames(latents, None, first=True)[0]

    def forward(
        self, pixels: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(reconstruction, posterior mean, posterior logvar)``, decoding a sampled latent
        (``sample``) or the posterior mean."""
        mean, logvar = self.posterior(pixels)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decode((z - self.mean) / self.std), mean, logvar

    def streaming_decoder(self) -> TinyStreamingDecoder:
        return TinyStreamingDecoder(self)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The parameters the decoder uses (what ``s2dit train decoder`` trains)."""
        parts = (self.temporal, self.from_latent, self.dec_blocks, self.dec_up, self.dec_out)
        return [p for m in parts for p in m.parameters()]


class TinyStreamingDecoder:
    """``push(latent_chunk) -> frames``, like the Wan VAE's; the state is the temporal conv's tail."""

    def __init__(self, ae: TinyAutoencoder):
        self.ae = ae
        self.reset()

    def reset(self) -> None:
        self._tail: torch.Tensor | None = None

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        frames, self._tail = self.ae.decode_frames(latents, self._tail, first=self._tail is None)
        return frames


def save_tiny_ae(model: TinyAutoencoder, folder: str | os.PathLike) -> None:
    """Write ``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (architecture and latent statistics) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_path(folder / "tiny_ae.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    save_config(model.config, folder / "tiny_ae.yaml")


def load_tiny_ae(folder: str | os.PathLike, device: str = "cpu") -> TinyAutoencoder:
    """Load a model written by :func:`save_tiny_ae` (or ``s2dit train vae``)."""
    folder = Path(folder)
    if not (folder / "tiny_ae.safetensors").is_file() or not (folder / "tiny_ae.yaml").is_file():
        raise S2DitError(f"{folder} needs tiny_ae.safetensors and tiny_ae.yaml (written by s2dit train vae)")
    model = TinyAutoencoder(from_dict(TinyAEConfig, read_yaml(folder / "tiny_ae.yaml")))
    state = load_safetensors(folder / "tiny_ae.safetensors")
    try:
        model.load_state_dict(_renamed_from_one_block_per_level(state))
    except RuntimeError as e:
        raise S2DitError(
            f"{folder}: tiny_ae.safetensors does not match tiny_ae.yaml ({str(e)[:300]})"
        ) from None
    return model.to(device).eval()


def _renamed_from_one_block_per_level(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved before ``enc_blocks``/``dec_blocks`` existed (one residual block at each of 1/2, 1/4 and
    1/8 resolution, stored as ``enc_blocks.i``, ``dec_blocks.j`` coarsest first, ``dec_up.j``) -> today's
    names (``enc_blocks.<level>.0``, ``dec_blocks.<level>.0``, ``dec_up.<level - 1>``)."""
    old = re.compile(r"(enc_blocks|dec_blocks|dec_up)\.(\d)\.(conv1|conv2|weight|bias)")
    if not any(old.match(k) and not k.startswith("dec_up") for k in state):
        return state
    renamed = {}
    for key, value in state.items():
        m = old.match(key)
        if m:
            kind, i, rest = m.group(1), int(m.group(2)), key[m.end(2) + 1 :]
            key = {
                "enc_blocks": f"enc_blocks.{i + 1}.0.{rest}",
                "dec_blocks": f"dec_blocks.{3 - i}.0.{rest}",
                "dec_up": f"dec_up.{2 - i}.{rest}",
            }[kind]
        renamed[key] = value
    return renamed
