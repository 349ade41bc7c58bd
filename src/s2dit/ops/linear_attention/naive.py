"""Linear attention in plain PyTorch: the reference for LCHA's linear branch (docs/architecture.md §3).

With positive features ``q = φ(Q)``, ``k = φ(K)`` and their RoPE-rotated copies ``q̃``, ``k̃`` (RoPE on the
numerator only, so the denominator stays positive), token ``i`` reads

    out_i = Σ_j (q̃_i · k̃_j) v_j  /  Σ_j (q_i · k_j)

over the tokens ``j`` it may see. Both sums factor through per-head states ``S = Σ_j k̃_j v_jᵀ`` ``[d, e]``
and ``z = Σ_j k_j`` ``[d]``, accumulated in float32 (a float16 running sum overflows on long streams):

* bidirectional: one state over all tokens;
* block-causal: tokens in chunk ``m`` see chunks ``0..m``: chunk-cumulative states;
* streamed: chunk ``m`` reads the committed state of chunks ``0..m-1`` plus its own tokens; a commit
  adds the chunk to the state. Run chunk by chunk, it equals the block-causal mode.

All tensors are ``[B, h, N, d]`` (values ``[B, h, N, e]``); outputs have the dtype of ``v``. An optional
per-channel ``scale [h, e]`` multiplies the output; it is folded into the ``[d, e]`` state as it is read,
so it costs nothing per token (LCHA's gate uses it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

EPS = 1e-6


class LinearAttentionState(NamedTuple):
    """Committed sums of a stream: ``kv [B, h, d, e]`` (Σ k̃ vᵀ) and ``k_sum [B, h, d]`` (Σ k), float32."""

    kv: torch.Tensor
    k_sum: torch.Tensor

    @staticmethod
    def zeros(batch: int, heads: int, dim: int, value_dim: int, device=None) -> LinearAttentionState:
        return LinearAttentionState(
            torch.zeros(batch, heads, dim, value_dim, device=device, dtype=torch.float32),
            torch.zeros(batch, heads, dim, device=device, dtype=torch.float32),
        )


def _read(q, q_rot, kv, k_sum, scale=None):
    """out = (q̃ · S) / (q · z), with S, z broadcast against q's token axis; ``scale`` broadcasts against
    S's value axis ``[..., 1, e]``."""
    num = q_rot.float() @ (kv if scale is None else kv * scale)  # (..., N, e)
    den = q.float() @ k_sum.unsqueeze(-1)  # (..., N, 1): a matmul beats multiply-and-sum on CPU
    return num / den.clamp_min(EPS)


def _sums(k, v, k_rot) -> LinearAttentionState:
    """The state contributed by a set of tokens: Σ k̃ vᵀ and Σ k over the token axis."""
    return LinearAttentionState(k_rot.float().transpose(-1, -2) @ v.float(), k.float().sum(-2))


def _head_scale(scale):
    """``[h, e]`` -> ``[h, 1, e]``: broadcast against per-head states ``[B, h, d, e]``."""
    return None if scale is None else scale[:, None, :]


def linear_attention(q, k, v, q_rot, k_rot, scale=None) -> torch.Tensor:
    """Bidirectional: every token sees every token. ``[B, h, N, d]`` -> ``[B, h, N, e]``."""
    s = _sums(k, v, k_rot)
    return _read(q, q_rot, s.kv, s.k_sum, _head_scale(scale)).to(v.dtype)


def block_causal_linear_attention(q, k, v, q_rot, k_rot, chunk_tokens: int, scale=None) -> torch.Tensor:
    """Block-causal over chunks of ``chunk_tokens`` tokens (N must be a multiple): full attention inside a
    chunk, causal across chunks. ``[B, h, N, d]`` -> ``[B, h, N, e]``."""
    B, H, N = q.shape[:3]
    if N % chunk_tokens:
        raise ValueError(f"{N} tokens do not split into chunks of {chunk_tokens}")
    C = N // chunk_tokens

    def chunks(x):  # (B, h, N, d) -> (B*h, C, n, d): at most 5-D throughout
        return x.reshape(B * H, C, chunk_tokens, x.shape[-1])

    kv = chunks(k_rot).float().transpose(-1, -2) @ chunks(v).float()  # (B*h, C, d, e)
    k_sum = chunks(k).float().sum(-2)  # (B*h, C, d)
    if scale is not None:  # (h, e) -> (B*h, 1, 1, e)
        scale = scale.repeat(B, 1)[:, None, None, :]
    out = _read(chunks(q), chunks(q_rot), kv.cumsum(1), k_sum.cumsum(1), scale)
    return out.reshape(B, H, N, -1).to(v.dtype)


def linear_attention_chunk(
    q, k, v, q_rot, k_rot, state: LinearAttentionState, commit: bool = False, scale=None
) -> tuple[torch.Tensor, LinearAttentionState]:
    """One streamed chunk: its tokens see the committed ``state`` and each other.

    Returns ``(out [B, h, n, e], state)``. With ``commit=False`` the state is returned unchanged (a
    denoising pass); with ``commit=True`` the chunk's sums are added to it in place and it is returned.
    """
    own = _sums(k, v, k_rot)
    out = _read(q, q_rot, state.kv + own.kv, state.k_sum + own.k_sum, _head_scale(scale)).to(v.dtype)
    if commit:
        state.kv.add_(own.kv)
        state.k_sum.add_(own.k_sum)
    return out, state


def quadratic_reference(q, k, v, q_rot, k_rot, chunk_tokens: int | None = None) -> torch.Tensor:
    """The same attention written with explicit ``[N, N]`` score matrices (float64): the test oracle.

    ``chunk_tokens`` None: bidirectional; otherwise block-causal over chunks of that many tokens.
    """
    num = q_rot.double() @ k_rot.double().transpose(-1, -2)  # (B, h, N, N)
    den = q.double() @ k.double().transpose(-1, -2)
    if chunk_tokens is not None:
        idx = torch.arange(q.shape[-2], device=q.device) // chunk_tokens
        visible = idx[:, None] >= idx[None, :]
        num, den = num * visible, den * visible
    return ((num @ v.double()) / den.sum(-1, keepdim=True).clamp_min(EPS)).to(v.dtype)
