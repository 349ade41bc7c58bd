"""Token mixers: softmax self-attention (``F``, and ``S`` on the coarse grid) and LinConv hybrid
attention (``L``), each in the three modes of docs/architecture.md §3.

A mixer maps normalised tokens ``h [B, N, D]`` (N = T·h·w, ordered frame, row, column) to ``[B, N, D]``.
``forward`` covers the bidirectional mode (``chunk_frames=None``) and the block-causal mode;
``forward_chunk`` processes one chunk against a cache and writes the cache only when ``commit``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2dit.model.layers import RMSNorm, rms_norm
from s2dit.model.rope import apply_rope
from s2dit.model.state import ChunkContext, KVCache, LinearCache
from s2dit.ops.causal_conv import causal_depthwise_conv3d
from s2dit.ops.linear_attention import (
    block_causal_linear_attention,
    linear_attention,
    linear_attention_chunk,
)

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each [N, head_dim]


def block_causal_mask(frames: int, tokens_per_frame: int, chunk_frames: int, device=None) -> torch.Tensor:
    """``[N, N]`` bool: token i may see token j iff j's chunk is not after i's (full inside a chunk)."""
    chunk = torch.arange(frames, device=device).repeat_interleave(tokens_per_frame) // chunk_frames
    return chunk[:, None] >= chunk[None, :]


class SoftmaxAttention(nn.Module):
    """Multi-head softmax self-attention with RMS QK-norm (across heads) and 3D RoPE, Wan-style."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = RMSNorm(dim, eps=1e-6)
        self.norm_k = RMSNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, dim)

    def _project(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, N, D]`` -> q, k (normalised, not rotated), v: each ``[B, heads, N, D / heads]``."""
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q, k = self.norm_q(q), self.norm_k(k)
        return tuple(x.unflatten(-1, (self.heads, -1)).transpose(1, 2) for x in (q, k, v))

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        return self.out(out.transpose(1, 2).flatten(2))  # (B, h, N, d) -> (B, N, D)

    def forward(self, h: torch.Tensor, rope: Rope, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask [N, N]`` bool (True: may attend), e.g. :func:`block_causal_mask`; None: bidirectional."""
        q, k, v = self._project(h)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def forward_chunk(self, h: torch.Tensor, ctx: ChunkContext, cache: KVCache) -> torch.Tensor:
        """One chunk ``h [B, n, D]`` attends to the valid cached tokens and to itself."""
        q, k, v = self._project(h)
        keys = torch.cat([apply_rope(cache.k, *ctx.cache_rope), apply_rope(k, *ctx.rope)], dim=2)
        values = torch.cat([cache.v, v], dim=2)
        own = torch.ones(h.shape[1], dtype=torch.bool, device=h.device)  # the chunk sees itself
        visible = torch.cat([ctx.cache_valid, own])  # (slots*n + n,)
        out = F.scaled_dot_product_attention(apply_rope(q, *ctx.rope), keys, values, attn_mask=visible[None])
        if ctx.commit:
            cache.write(k, v, ctx.count, ctx.spec)
        return self._merge(out)


class LinConvAttention(nn.Module):
    """LinConv hybrid attention: linear attention and a causal depthwise 3D conv, mixed by a learned gate.

    * linear branch: q, k, v projections, RMS QK-norm, positive features ``φ = softplus(W·x + b)``
      (one ``W`` shared by the heads), RoPE on the numerator features only, float32 sums;
    * conv branch: depthwise 3D conv of the block input, causal in time and "same" in space, then a
      linear channel mix;
    * ``out = W_o (σ(g) ⊙ linear + (1 - σ(g)) ⊙ conv)`` with a per-channel gate ``g`` initialised to 0,
      so both branches start at one half.
    """

    def __init__(self, dim: int, heads: int, conv_kernel: tuple[int, int, int] = (3, 3, 3)):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = RMSNorm(dim, eps=1e-6)
        self.norm_k = RMSNorm(dim, eps=1e-6)
        self.feature = nn.Linear(head_dim, head_dim)
        self.conv = nn.Conv3d(dim, dim, conv_kernel, groups=dim)  # weights only: padding is causal_depthwise
        self.conv_mix = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(dim))
        self.out = nn.Linear(dim, dim)

    # The conv branch's operator: the 3D convolution, or (for export to runtimes without one, set by
    # s2dit.export) the same convolution written with 2D convolutions.
    conv_op = staticmethod(causal_depthwise_conv3d)

    @property
    def conv_tail_frames(self) -> int:
        return self.conv.kernel_size[0] - 1

    def _features(self, h: torch.Tensor, rope: Rope):
        """``h [B, N, D]`` -> (q, k, v, q̃, k̃), each ``[B, heads, N, head_dim]``.

        q and k go through the norm, the feature map and RoPE together, as one ``[B, N, 2, ...]`` tensor: one
        pass of each elementwise step and one feature GEMM instead of two (the per-token work is what L
        pays over its floor)."""
        D = h.shape[-1]
        qkv = self.qkv(h)  # (B, N, 3D)
        qk = qkv[..., : 2 * D].unflatten(-1, (2, D))  # (B, N, 2, D): a view
        qk = rms_norm(qk, torch.stack([self.norm_q.weight, self.norm_k.weight]), self.norm_q.eps)
        phi = F.softplus(self.feature(qk.unflatten(-1, (self.heads, -1))))  # (B, N, 2, h, d)
        cos, sin = (tab[:, None, None] for tab in rope)  # (N, 1, 1, d)
        rot = apply_rope(phi, cos, sin)
        v = qkv[..., 2 * D :].unflatten(-1, (self.heads, -1))  # (B, N, h, d)
        q, k, q_rot, k_rot = (*phi.unbind(2), *rot.unbind(2))
        return tuple(x.transpose(1, 2) for x in (q, k, v, q_rot, k_rot))  # each (B, h, N, d): views

    def _conv(self, h: torch.Tensor, grid: tuple[int, int, int], tail: torch.Tensor | None):
        """Conv branch on a token grid, its channel mix scaled by ``1 - σ(gate)``; returns (tokens
        [B, N, D], new tail)."""
        T, gh, gw = grid
        B, N, D = h.shape
        # Tokens are already channels-last: view them as (B, D, T, h, w) without a copy.
        x = h.reshape(B, T, gh, gw, D).permute(0, 4, 1, 2, 3)
        y, tail = self.conv_op(x, self.conv.weight, self.conv.bias, tail)
        tokens = y.permute(0, 2, 3, 4, 1).reshape(B, N, D)
        # The gate scales the mix's output, not its weights: a quantised export swaps those weights for
        # integer tensors that cannot be multiplied.
        return self.conv_mix(tokens) * (1 - torch.sigmoid(self.gate)), tail

    def _gate(self) -> torch.Tensor:
        """The linear branch's share ``σ(gate)`` per (head, channel), ``[heads, head_dim]``: the linear
        attention folds it into its state as it reads it."""
        return torch.sigmoid(self.gate).unflatten(0, (self.heads, -1))

    def _mix(self, linear: torch.Tensor, conv: torch.Tensor) -> torch.Tensor:
        """``W_o (linear + conv)``: both branches come gated; ``linear [B, h, N, d]`` is added in place
        through a transposed view of ``conv [B, N, D]`` (no copy)."""
        conv.unflatten(-1, (self.heads, -1)).transpose(1, 2).add_(linear)
        return self.out(conv)

    def forward(
        self, h: torch.Tensor, rope: Rope, grid: tuple[int, int, int], chunk_frames: int | None = None
    ) -> torch.Tensor:
        """Bidirectional (``chunk_frames`` None) or block-causal linear attention, plus the conv branch."""
        feats = self._features(h, rope)
        if chunk_frames is None:
            lin = linear_attention(*feats, scale=self._gate())
        else:
            tokens = chunk_frames * grid[1] * grid[2]
            lin = block_causal_linear_attention(*feats, chunk_tokens=tokens, scale=self._gate())
        conv, _ = self._conv(h, grid, None)
        return self._mix(lin, conv)

    def forward_chunk(self, h: torch.Tensor, ctx: ChunkContext, cache: LinearCache) -> torch.Tensor:
        """One chunk against the committed sums and conv tail; a commit adds the chunk to both."""
        feats = self._features(h, ctx.linear_rope)
        lin, _ = linear_attention_chunk(*feats, cache.sums, commit=ctx.commit, scale=self._gate())
        conv, tail = self._conv(h, ctx.grid, cache.tail)
        if ctx.commit:
            cache.tail[:] = tail  # in place: the state tensors keep their identity
        return self._mix(lin, conv)
