"""3D rotary position embedding with real cos/sin tables (exportable: no complex numbers).

The head dimension is split into rotary pairs for time, height and width, Wan-style: height and width get
``(head_dim // 2) // 3`` pairs each and time the rest (for head_dim 128: 22/21/21 pairs = 44/42/42 dims).
Pairs use the rotate-half layout: dimension ``i`` rotates with ``i + head_dim / 2`` (Wan pairs adjacent
dimensions ``2i, 2i + 1`` instead, so loading Wan's Q/K projections means permuting their output rows).

Positions are computed from a temporal offset instead of read from a fixed table, so a stream can go on
past any table length: the tokens of latent frames ``t0 .. t0 + T - 1`` get times ``t0 + arange(T)``.
"""

from __future__ import annotations

import torch
from torch import nn


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Rotary pairs for (time, height, width); they sum to head_dim // 2."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    pairs = head_dim // 2
    hw = pairs // 3
    return pairs - 2 * hw, hw, hw


class RoPE3D(nn.Module):
    """Cos/sin tables for a (frames, height, width) token grid.

    Args:
        head_dim: attention head dimension (even).
        theta: base of the frequencies (Wan: 10000).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.split = rope_split(head_dim)
        # Frequencies are recomputed in float32 on every call, so casting the model to bf16/fp16 cannot
        # round them; this empty buffer only tracks the module's device.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def _inv_freq(self, n: int, device: torch.device) -> torch.Tensor:
        return self.theta ** (-torch.arange(n, device=device, dtype=torch.float32) / max(n, 1))

    def forward(
        self, frames: int, height: int, width: int, t_offset: torch.Tensor | int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for tokens ordered (frame, row, column).

        Args:
            frames, height, width: the token grid (latent frames, token rows, token columns).
            t_offset: time of the first frame (int or 0-d tensor, e.g. a stream position).

        Returns:
            ``(cos, sin)``, each ``[frames * height * width, head_dim]`` float32.
        """
        t = torch.arange(frames, device=self._anchor.device, dtype=torch.float32) + t_offset
        return self.tables(t, height, width)

    def tables(self, times: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for frames at arbitrary times ``times [frames]`` (float), each frame a height×width grid.

        Returns ``(cos, sin)``, each ``[frames * height * width, head_dim]`` float32.
        """
        dev = self._anchor.device
        frames = times.shape[0]
        f_t, f_h, f_w = (self._inv_freq(n, dev) for n in self.split)
        t = times.to(device=dev, dtype=torch.float32)
        h = torch.arange(height, device=dev, dtype=torch.float32)
        w = torch.arange(width, device=dev, dtype=torch.float32)
        angles = torch.cat(
            [
                (t[:, None] * f_t)[:, None, None, :].expand(frames, height, width, -1),
                (h[:, None] * f_h)[None, :, None, :].expand(frames, height, width, -1),
                (w[:, None] * f_w)[None, None, :, :].expand(frames, height, width, -1),
            ],
            dim=-1,
        ).reshape(frames * height * width, -1)  # (N, head_dim / 2)
        angles = torch.cat([angles, angles], dim=-1)  # (N, head_dim), rotate-half layout
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[..., N, head_dim]`` by the tables ``[N, head_dim]``; computed in float32."""
    # Rotate-half without materialising the rotated copy: both halves of the tables are equal.
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    c, s = cos[..., : cos.shape[-1] // 2], sin[..., : sin.shape[-1] // 2]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).type_as(x)
