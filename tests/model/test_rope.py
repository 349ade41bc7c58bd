import pytest
import torch

from s2dit.model.rope import RoPE3D, apply_rope, rope_split


def test_split_matches_wan():
    assert rope_split(128) == (22, 21, 21)  # 44/42/42 dims
    assert sum(rope_split(64)) == 32
    with pytest.raises(ValueError, match="even"):
        rope_split(15)


def test_tables_at_an_offset_continue_the_sequence():
    rope = RoPE3D(24)
    cos, sin = rope(6, 3, 4)
    cos_o, sin_o = rope(4, 3, 4, t_offset=2)
    per_frame = 3 * 4
    torch.testing.assert_close(cos_o, cos[2 * per_frame :], rtol=0, atol=1e-6)
    torch.testing.assert_close(sin_o, sin[2 * per_frame :], rtol=0, atol=1e-6)
    cos_t, _ = rope(4, 3, 4, t_offset=torch.tensor(2))
    torch.testing.assert_close(cos_t, cos_o)


def test_scores_depend_on_relative_time_only_and_norms_are_kept():
    torch.manual_seed(0)
    rope = RoPE3D(32)
    q, k = torch.randn(2, 2, 3 * 2 * 5, 32)  # (heads=2, N, d)
    scores = []
    for offset in (0, 11, 1000):
        cos, sin = rope(3, 2, 5, t_offset=offset)
        qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))
        scores.append(qr @ kr.transpose(-1, -2))
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[2], scores[0], rtol=1e-3, atol=1e-3)
    assert not torch.allclose(scores[0], q @ k.transpose(-1, -2), atol=1e-2)  # positions do matter


def test_each_axis_rotates_its_own_dimensions():
    rope = RoPE3D(12)  # pairs: t 2, h 2, w 2
    _, sin = rope(2, 2, 2)
    # Token (t=1, y=0, x=0) is index 4: only the time pairs (dims 0,1 and 6,7) rotate.
    assert torch.allclose(sin[4, [2, 3, 4, 5, 8, 9, 10, 11]], torch.zeros(8))
    assert sin[4, 0].abs() > 0.1
    # Token (t=0, y=0, x=1) is index 1: only the width pairs (dims 4,5 and 10,11) rotate.
    assert torch.allclose(sin[1, [0, 1, 2, 3, 6, 7, 8, 9]], torch.zeros(8))


def test_apply_rope_keeps_dtype():
    rope = RoPE3D(16)
    cos, sin = rope(1, 2, 2)
    x = torch.randn(1, 1, 4, 16, dtype=torch.bfloat16)
    assert apply_rope(x, cos, sin).dtype == torch.bfloat16


def test_casting_the_module_keeps_float32_tables():
    cos, sin = RoPE3D(24)(3, 2, 2, t_offset=200)
    cos16, sin16 = RoPE3D(24).to(torch.bfloat16)(3, 2, 2, t_offset=200)
    assert cos16.dtype == torch.float32
    torch.testing.assert_close(cos16, cos, rtol=0, atol=0)
    torch.testing.assert_close(sin16, sin, rtol=0, atol=0)
