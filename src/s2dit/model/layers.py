"""Layers shared by every block kind: the feed-forward network and text cross-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x) * weight`` over the last axis, as ``nn.RMSNorm``, in one reduction pass (a vector norm)
    and two multiplies; ``weight`` broadcasts against ``x`` (e.g. ``[2, D]`` normalises q and k of a
    ``[B, N, 2, D]`` tensor at once)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
    inv = torch.rsqrt(norm.square() / x.shape[-1] + eps)
    return (x * inv.to(x.dtype)) * weight.to(x.dtype)


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` whose weight follows its input's dtype, so that under bf16 autocast the norm stays on
    torch's fused kernel (which keeps its statistics in float32) instead of falling back to the unfused
    ops with a dtype-mismatch warning. Same parameters and state-dict keys as ``nn.RMSNorm``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)

    @classmethod
    def adopt(cls, model: nn.Module) -> nn.Module:
        """Turn every plain ``nn.RMSNorm`` inside ``model`` (e.g. diffusers' Wan attention) into this class,
        in place; parameters and their values are untouched."""
        for m in model.modules():
            if type(m) is nn.RMSNorm:
                m.__class__ = cls
        return model


class FeedForward(nn.Module):
    """``[..., D]`` -> ``[..., D]``: Linear, GELU-tanh, Linear (Wan's FFN)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CrossAttention(nn.Module):
    """Attention from video tokens to text tokens, with RMS-normalised Q and K (across heads, Wan-style).

    The text side is computed once per prompt with :meth:`text_kv` and can be reused for every chunk and
    denoising step of a stream; :meth:`forward` takes it as an argument.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps=1e-6)
        self.norm_k = RMSNorm(dim, eps=1e-6)

    def text_kv(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``text [B, L, D]`` (already at model width) -> ``(k, v)``, each ``[B, heads, L, D / heads]``."""
        k = self.norm_k(self.k(text)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = self.v(text).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return k, v

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, N, D]`` attends to the text ``kv``; ``text_mask [B, L]`` bool (True: a real token;
        None: all tokens are real)."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        mask = None if text_mask is None else text_mask[:, None, None, :]  # (B, 1, 1, L)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)  # (B, h, N, d)
        return self.out(out.transpose(1, 2).flatten(2))
