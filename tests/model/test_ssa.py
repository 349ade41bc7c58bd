"""SSA's stage entry and exit against a 2×2 space-to-depth written out token by token.

``StageDown`` with an identity projection must put the four full-grid tokens of each 2×2 cell (zero past an
odd edge) into one coarse token, channel ``4·d + 2·dy + dx``; ``StageUp`` must undo it exactly and crop the
padding. A swapped dy/dx, a cell offset by one, a wrong frame stride or a missing crop all fail here.
"""

from __future__ import annotations

import pytest
import torch

from s2dit.model.ssa import StageDown, StageUp, coarse_grid


def space_to_depth(x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``[B, T*h*w, D]`` -> ``[B, T*h2*w2, 4D]`` by explicit loops (the reference)."""
    T, h, w = grid
    B, _, D = x.shape
    _, h2, w2 = coarse_grid(grid)
    full = x.reshape(B, T, h, w, D)
    out = torch.zeros(B, T, h2, w2, 4 * D, dtype=x.dtype)
    for t in range(T):
        for i in range(h2):
            for j in range(w2):
                for dy in range(2):
                    for dx in range(2):
                        y, xx = 2 * i + dy, 2 * j + dx
                        if y < h and xx < w:
                            out[:, t, i, j, 2 * dy + dx :: 4] = full[:, t, y, xx]
    return out.reshape(B, T * h2 * w2, 4 * D)


def depth_to_space(y: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``[B, T*h2*w2, 4D]`` -> ``[B, T*h*w, D]`` by explicit loops, cells past the edge dropped."""
    T, h, w = grid
    _, h2, w2 = coarse_grid(grid)
    B, D = y.shape[0], y.shape[-1] // 4
    coarse = y.reshape(B, T, h2, w2, 4 * D)
    out = torch.empty(B, T, h, w, D, dtype=y.dtype)
    for t in range(T):
        for yy in range(h):
            for xx in range(w):
                out[:, t, yy, xx] = coarse[:, t, yy // 2, xx // 2, 2 * (yy % 2) + xx % 2 :: 4]
    return out.reshape(B, T * h * w, D)


@pytest.mark.parametrize("grid", [(1, 4, 6), (2, 3, 5), (3, 18, 32), (2, 9, 16)])
def test_stage_down_is_a_2x2_space_to_depth_then_its_projection(grid):
    torch.manual_seed(0)
    dim = 3
    T, h, w = grid
    x = torch.randn(2, T * h * w, dim)
    down = StageDown(dim)
    reference = space_to_depth(x, grid)
    with torch.no_grad():
        expected = reference @ down.proj.weight.T + down.proj.bias
    _, h2, w2 = coarse_grid(grid)
    assert (h2, w2) == ((h + 1) // 2, (w + 1) // 2)
    torch.testing.assert_close(down(x, grid), expected)


@pytest.mark.parametrize("grid", [(1, 4, 6), (2, 3, 5), (3, 18, 32)])
def test_stage_up_is_its_projection_then_the_inverse_space_to_depth_cropped_and_fused(grid):
    torch.manual_seed(1)
    dim = 4
    T, h, w = grid
    _, h2, w2 = coarse_grid(grid)
    x = torch.randn(2, T * h2 * w2, dim)
    skip = torch.randn(2, T * h * w, dim)
    up = StageUp(dim)
    with torch.no_grad():
        expected = skip + up.fuse(depth_to_space(up.proj(x), grid))
    torch.testing.assert_close(up(x, skip, grid), expected)


def test_the_two_references_are_inverse_on_the_full_grid():
    x = torch.randn(1, 2 * 5 * 7, 3)
    torch.testing.assert_close(depth_to_space(space_to_depth(x, (2, 5, 7)), (2, 5, 7)), x)
