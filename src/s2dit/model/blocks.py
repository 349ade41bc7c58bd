"""The transformer block, one class for every kind (L, S, F).

A block is the same for every kind but its token mixer (docs/architecture.md §3)::

    x = x + gate1 · mix(modulate(norm1(x), shift1, scale1))      # L / S / F mixer
    x = x + cross(norm_cross(x), text)                           # text cross-attention
    x = x + gate2 · ffn(modulate(norm2(x), shift2, scale2))      # GELU-tanh FFN

with the six modulation vectors per latent frame: the shared time projection plus the block's own bias.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from s2dit.model.attention import LinConvAttention, SoftmaxAttention
from s2dit.model.embeddings import gate, modulate
from s2dit.model.layers import CrossAttention, FeedForward


class Block(nn.Module):
    """One block of kind ``L``, ``S`` or ``F``. ``S`` blocks run on the coarse grid of their stage."""

    def __init__(self, kind: str, dim: int, heads: int, ffn_dim: int, conv_kernel=(3, 3, 3)):
        super().__init__()
        self.kind = kind
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mixer = (
            LinConvAttention(dim, heads, tuple(conv_kernel)) if kind == "L" else SoftmaxAttention(dim, heads)
        )
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ffn = FeedForward(dim, ffn_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 1, 6, dim))  # this block's bias on the shared vectors

    def forward(
        self,
        x: torch.Tensor,
        modulation: torch.Tensor,
        text_kv: tuple[torch.Tensor, torch.Tensor],
        text_mask: torch.Tensor | None,
        mix: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``x [B, T*S, D]``, ``modulation [B, T, 6, D]``; ``mix`` applies this block's mixer in the
        current mode (bidirectional, block-causal or one streamed chunk)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (modulation + self.modulation).unbind(2)  # (B, T, D)
        x = x + gate(mix(modulate(self.norm1(x), shift1, scale1)), gate1)
        x = x + self.cross(self.norm_cross(x), text_kv, text_mask)
        return x + gate(self.ffn(modulate(self.norm2(x), shift2, scale2)), gate2)
