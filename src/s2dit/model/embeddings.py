"""Embeddings shared by every block kind: patches, per-frame timesteps, text.

Shapes: latents ``[B, C, T, H, W]``; tokens ``[B, N, D]`` with ``N = T * h * w`` ordered (frame, row,
column), ``h = H / 2``, ``w = W / 2``; timesteps ``[B, T]`` (one per latent frame, docs/architecture.md §2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """(1, 2, 2) patches of a latent video -> tokens: ``[B, C, T, H, W]`` -> ``[B, T*h*w, D]``.

    A Conv3d with kernel = stride = (1, 2, 2), the same parameter shape as Wan's ``patch_embedding``,
    computed frame by frame as a 2D convolution (4-D tensors export to every runtime).
    """

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        y = F.conv2d(frames, self.proj.weight[:, :, 0], self.proj.bias, stride=2)  # (B*T, D, h, w)
        return y.reshape(B, T, y.shape[1], -1).permute(0, 1, 3, 2).reshape(B, -1, y.shape[1])  # (B, N, D)


def unpatchify(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    """Tokens of 2×2 patches back to a latent video: ``[B, T*h*w, C*4]`` -> ``[B, C, T, 2h, 2w]``.

    Channel ``c * 4 + 2 * i + j`` of a token is pixel ``(2y + i, 2x + j)`` of channel ``c`` (the layout of
    ``pixel_shuffle``). Written with at most 5-D tensors so that it exports.
    """
    B, P = tokens.shape[0], tokens.shape[-1]
    C = P // 4
    x = tokens.reshape(B * frames, height, width, P).permute(0, 3, 1, 2)  # (B*T, C*4, h, w)
    x = F.pixel_shuffle(x, 2)  # (B*T, C, 2h, 2w)
    return x.reshape(B, frames, C, 2 * height, 2 * width).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`unpatchify`: ``[B, C, T, H, W]`` -> ``[B, T*h*w, C*4]``."""
    B, C, T, H, W = latents.shape
    x = latents.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    x = F.pixel_unshuffle(x, 2)  # (B*T, C*4, h, w)
    return x.permute(0, 2, 3, 1).reshape(B, T * (H // 2) * (W // 2), C * 4)


def sinusoidal_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """``[...]`` timesteps (0..1000) -> ``[..., dim]`` float32 features, cos first then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    """Per-frame timesteps -> an embedding and the shared adaLN modulation.

    ``t [B, T]`` -> ``(temb [B, T, D], modulation [B, T, 6, D])``. Each block adds its own learned bias to
    the 6 modulation vectors (shift/scale/gate for self-attention and for the FFN), Wan-style.
    """

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.to_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        temb = self.mlp(sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))  # (B, T, D)
        modulation = self.to_modulation(temb).unflatten(-1, (6, -1))  # (B, T, 6, D)
        return temb, modulation


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-frame adaLN, ``x * (1 + scale) + shift``: ``x [B, T*S, D]``; ``shift``, ``scale`` ``[B, T, D]``."""
    B, N, D = x.shape
    T = shift.shape[1]
    x = x.reshape(B, T, N // T, D)  # (B, T, S, D)
    return (x * (1 + scale[:, :, None]) + shift[:, :, None]).reshape(B, N, D)


def gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-frame gate: ``x [B, T*S, D]`` times ``g [B, T, D]``."""
    B, N, D = x.shape
    T = g.shape[1]
    return (x.reshape(B, T, N // T, D) * g[:, :, None]).reshape(B, N, D)


class TextEmbedding(nn.Module):
    """Text states to model width, ``[B, L, text_dim]`` -> ``[B, L, D]``: Linear, GELU-tanh, Linear."""

    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(text)
