import pytest
import torch
import torch.nn.functional as F

from s2dit.model.rope import RoPE3D, apply_rope
from s2dit.ops.linear_attention import (
    LinearAttentionState,
    block_causal_linear_attention,
    linear_attention,
    linear_attention_chunk,
    quadratic_reference,
)


def make_inputs(B=2, H=2, frames=6, h=3, w=5, d=8, e=8, dtype=torch.float32, seed=0):
    """Positive features with RoPE-rotated copies on a (frames, h, w) grid, like LCHA builds them."""
    g = torch.Generator().manual_seed(seed)
    N = frames * h * w
    q = F.softplus(torch.randn(B, H, N, d, generator=g))
    k = F.softplus(torch.randn(B, H, N, d, generator=g))
    v = torch.randn(B, H, N, e, generator=g)
    cos, sin = RoPE3D(d)(frames, h, w)
    q_rot, k_rot = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    return [t.to(dtype) for t in (q, k, v, q_rot, k_rot)]


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def test_bidirectional_matches_the_quadratic_form():
    x = make_inputs()
    assert rel_err(linear_attention(*x), quadratic_reference(*x)) <= 1e-5


@pytest.mark.parametrize("chunk_frames", [1, 2, 3], ids=lambda c: f"chunk{c}")
def test_block_causal_matches_the_quadratic_form(chunk_frames):
    x = make_inputs()
    n = chunk_frames * 3 * 5
    assert rel_err(block_causal_linear_attention(*x, n), quadratic_reference(*x, chunk_tokens=n)) <= 1e-5


def test_one_chunk_is_bidirectional():
    x = make_inputs()
    torch.testing.assert_close(block_causal_linear_attention(*x, 6 * 15), linear_attention(*x))


@pytest.mark.parametrize("chunk_frames", [1, 2, 3], ids=lambda c: f"chunk{c}")
def test_streamed_chunks_equal_block_causal(chunk_frames):
    frames = 5 * chunk_frames  # at least 5 chunks
    q, k, v, q_rot, k_rot = make_inputs(frames=frames)
    n = chunk_frames * 15
    expected = block_causal_linear_attention(q, k, v, q_rot, k_rot, n)
    state = LinearAttentionState.zeros(2, 2, 8, 8)
    outs = []
    for s in range(0, q.shape[2], n):
        part = [t[:, :, s : s + n] for t in (q, k, v, q_rot, k_rot)]
        before = [t.clone() for t in state]
        for _ in range(2):  # denoising passes read the state and leave it alone
            out, state = linear_attention_chunk(*part, state)
            assert all(torch.equal(a, b) for a, b in zip(state, before, strict=True))
        outs.append(out)
        _, state = linear_attention_chunk(*part, state, commit=True)
        assert not torch.equal(state.kv, before[0])
    assert rel_err(torch.cat(outs, dim=2), expected) <= 1e-5


def test_block_causal_is_causal():
    q, k, v, q_rot, k_rot = make_inputs()
    n = 2 * 15
    out = block_causal_linear_attention(q, k, v, q_rot, k_rot, n)
    v2 = v.clone()
    v2[:, :, 2 * n :] += 1.0  # change the last chunk
    out2 = block_causal_linear_attention(q, k, v2, q_rot, k_rot, n)
    torch.testing.assert_close(out2[:, :, : 2 * n], out[:, :, : 2 * n], rtol=0, atol=0)
    v3 = v.clone()
    v3[:, :, :n] += 1.0  # change the first chunk: every later chunk sees it
    out3 = block_causal_linear_attention(q, k, v3, q_rot, k_rot, n)
    assert (out3 - out)[:, :, 2 * n :].abs().min() > 0


def test_gradients_match_the_quadratic_form():
    x = [t.double().requires_grad_() for t in make_inputs(frames=4)]
    x_ref = [t.detach().clone().requires_grad_() for t in x]
    n = 2 * 15
    grad_out = torch.randn(2, 2, 4 * 15, 8, dtype=torch.float64)
    (block_causal_linear_attention(*x, n).double() * grad_out).sum().backward()
    (quadratic_reference(*x_ref, chunk_tokens=n) * grad_out).sum().backward()
    for a, b in zip(x, x_ref, strict=True):
        assert rel_err(a.grad, b.grad) <= 1e-5


def test_low_precision_inputs_keep_a_float32_state():
    x = make_inputs(dtype=torch.bfloat16)
    state = LinearAttentionState.zeros(2, 2, 8, 8)
    out, state = linear_attention_chunk(*[t[:, :, :15] for t in x], state, commit=True)
    assert out.dtype == torch.bfloat16 and state.kv.dtype == torch.float32
    assert rel_err(out, linear_attention(*[t[:, :, :15].float() for t in x])) <= 1e-2


def test_long_stream_state_is_constant_size_and_finite():
    state = LinearAttentionState.zeros(1, 1, 4, 4)
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        q, k = F.softplus(torch.randn(2, 1, 1, 12, 4, generator=g)) * 50
        v = torch.randn(1, 1, 12, 4, generator=g) * 50
        out, state = linear_attention_chunk(q, k, v, q, k, state, commit=True)
    assert state.kv.shape == (1, 1, 4, 4) and torch.isfinite(out).all() and torch.isfinite(state.kv).all()


def test_chunk_size_must_divide_tokens():
    with pytest.raises(ValueError, match="do not split"):
        block_causal_linear_attention(*make_inputs(), chunk_tokens=7)


def test_state_is_float32_whatever_the_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        state = LinearAttentionState.zeros(1, 1, 2, 2)
    finally:
        torch.set_default_dtype(old)
    assert state.kv.dtype == torch.float32 and state.k_sum.dtype == torch.float32
