"""Stride self-attention (``S``) and its low-resolution stages (docs/architecture.md §3).

An ``S`` block is the block of every kind (:class:`s2dit.model.blocks.Block`) whose token mixer is softmax
attention (:class:`s2dit.model.attention.SoftmaxAttention`, the code of ``F``) with 3D RoPE on a 2×2-strided
*coarse grid*: a quarter of the tokens. A maximal run of ``S`` in a layout is one *stage*::

    x ─ StageDown (pad an odd grid, space-to-depth 2×2, Linear 4D→D) ─► coarse tokens
      ─ every S block of the run on the coarse grid (self-attention, cross-attention and FFN) ─►
      ─ StageUp (Linear D→4D, depth-to-space 2×2, crop the padding) + fuse with the entry's skip ─► x

so the whole block, not only its attention, runs on the smaller grid. Several stages make a multi-layer
sandwich (``LLSSLLSSLL``). Everything a stage needs is here: :func:`stages` finds them in a layout (the one
stage counter: the model, the FLOP formula, the latency table and the layout search all use it),
:func:`coarse_grid` sizes their grid, :class:`StageDown`/:class:`StageUp` enter and leave one, and
:func:`run_stages` runs a block list through them. The modules are ops of at most 4-D tensors (phone export).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def stages(layout: str) -> list[tuple[int, int]]:
    """``(first, last)`` block indices of each maximal run of ``S``: ``"LSSLS"`` -> ``[(1, 2), (4, 4)]``."""
    runs, start = [], None
    for i, kind in enumerate(layout + "-"):
        if kind == "S" and start is None:
            start = i
        elif kind != "S" and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def coarse_grid(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The 2×2-strided grid of a stage: odd sizes are padded up."""
    T, h, w = grid
    return T, (h + 1) // 2, (w + 1) // 2


class StageDown(nn.Module):
    """Stage entry: space-to-depth 2×2 + linear, ``[B, T*h*w, D]`` -> ``[B, T*h2*w2, D]``; odd grids are
    zero-padded at the bottom/right first. At most 4-D tensors."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        T, h, w = grid
        B, D = x.shape[0], x.shape[-1]
        y = x.reshape(B * T, h, w, D).permute(0, 3, 1, 2)  # (B*T, D, h, w)
        y = F.pad(y, (0, w % 2, 0, h % 2))
        y = F.pixel_unshuffle(y, 2)  # (B*T, 4D, h2, w2)
        return self.proj(y.permute(0, 2, 3, 1).reshape(B, -1, 4 * D))  # (B, T*h2*w2, D)


class StageUp(nn.Module):
    """Stage exit: linear + depth-to-space 2×2 back to the full grid (padding cropped), fused with the
    skip from the stage entry: ``skip + fuse(up(x))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 4 * dim)
        self.fuse = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        T, h, w = grid
        _, h2, w2 = coarse_grid(grid)
        B, D = x.shape[0], x.shape[-1]
        y = self.proj(x).reshape(B * T, h2, w2, 4 * D).permute(0, 3, 1, 2)  # (B*T, 4D, h2, w2)
        y = F.pixel_shuffle(y, 2)[:, :, :h, :w]  # (B*T, D, h, w)
        return skip + self.fuse(y.permute(0, 2, 3, 1).reshape(B, T * h * w, D))


def run_stages(
    blocks: Sequence[nn.Module],
    runs: list[tuple[int, int]],
    stage_down: Sequence[StageDown],
    stage_up: Sequence[StageUp],
    x: torch.Tensor,
    grid: tuple[int, int, int],
    run_block: Callable[[int, nn.Module, torch.Tensor, tuple[int, int, int]], torch.Tensor],
) -> torch.Tensor:
    """Run ``blocks`` over tokens ``x [B, T*h*w, D]`` of the full ``grid``: each stage in ``runs``
    (:func:`stages` of the layout) is entered by its ``stage_down`` before its first block and left by its
    ``stage_up`` after its last. ``run_block(i, block, x, grid) -> x`` runs block ``i`` at its grid."""
    stage_of_entry = {first: k for k, (first, _) in enumerate(runs)}
    stage_of_exit = {last: k for k, (_, last) in enumerate(runs)}
    full, skip = grid, None
    for i, block in enumerate(blocks):
        if i in stage_of_entry:
            skip, x = x, stage_down[stage_of_entry[i]](x, full)
            grid = coarse_grid(full)
        x = run_block(i, block, x, grid)
        if i in stage_of_exit:
            x, grid = stage_up[stage_of_exit[i]](x, skip, full), full
    return x
