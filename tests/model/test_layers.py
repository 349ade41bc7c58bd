import pytest
import torch
import torch.nn.functional as F

from s2dit.model.layers import CrossAttention, FeedForward


def test_cross_attention_ignores_masked_padding():
    torch.manual_seed(0)
    attn = CrossAttention(32, heads=4)
    x, text = torch.randn(2, 10, 32), torch.randn(2, 5, 32)
    out = attn(x, attn.text_kv(text))
    padded = torch.cat([text, torch.randn(2, 3, 32)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    torch.testing.assert_close(attn(x, attn.text_kv(padded), mask), out, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(attn(x, attn.text_kv(padded)), out, atol=1e-3)  # unmasked padding matters


def test_cross_attention_reuses_text_kv():
    torch.manual_seed(0)
    attn = CrossAttention(16, heads=2)
    kv = attn.text_kv(torch.randn(1, 4, 16))
    assert kv[0].shape == (1, 2, 4, 8)
    chunks = torch.randn(1, 12, 16)
    whole = attn(chunks, kv)
    parts = torch.cat([attn(chunks[:, :6], kv), attn(chunks[:, 6:], kv)], dim=1)  # tokens are independent
    torch.testing.assert_close(parts, whole)


def test_cross_attention_checks_heads():
    with pytest.raises(ValueError, match="not divisible"):
        CrossAttention(30, heads=4)


def test_feed_forward_is_gelu_tanh_mlp():
    torch.manual_seed(0)
    ffn = FeedForward(8, 32)
    x = torch.randn(3, 8)
    expected = ffn.fc2(F.gelu(ffn.fc1(x), approximate="tanh"))
    torch.testing.assert_close(ffn(x), expected)
    assert ffn(torch.randn(2, 5, 8)).shape == (2, 5, 8)


def test_rms_norm_matches_nn_rmsnorm_with_one_weight_per_slice():
    from s2dit.model.layers import rms_norm

    torch.manual_seed(0)
    x = torch.randn(3, 7, 2, 16) * 5
    norms = [torch.nn.RMSNorm(16, eps=1e-6) for _ in range(2)]
    for n in norms:
        torch.nn.init.normal_(n.weight)
    expected = torch.stack([norms[i](x[:, :, i]) for i in range(2)], dim=2)
    weight = torch.stack([n.weight for n in norms])
    torch.testing.assert_close(rms_norm(x, weight, 1e-6), expected, rtol=1e-5, atol=1e-6)


def test_rmsnorm_stays_fused_under_bf16_autocast_and_keeps_float32_statistics():
    """Under CPU bf16 autocast ``nn.RMSNorm`` gets a bf16 input and a float32 weight, warns and falls off
    the fused kernel; ours casts the weight and matches the float32 norm to bf16 rounding."""
    import warnings

    from s2dit.model.layers import RMSNorm

    torch.manual_seed(0)
    ours, plain = RMSNorm(64, eps=1e-6), torch.nn.RMSNorm(64, eps=1e-6)
    torch.nn.init.normal_(ours.weight)
    plain.load_state_dict(ours.state_dict())  # same keys and shapes as nn.RMSNorm
    x = torch.randn(4, 9, 64) * 30
    torch.testing.assert_close(ours(x), plain(x), rtol=0, atol=0)  # float32: identical
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dtype-mismatch fallback warns
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = ours(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), plain(x.bfloat16().float()), rtol=1.6e-2, atol=1e-2)
    with pytest.warns(UserWarning, match="Mismatch dtype"), torch.autocast("cpu", dtype=torch.bfloat16):
        plain(x.bfloat16())  # the fallback this class avoids still exists upstream


def test_rmsnorm_adopt_converts_the_wan_qk_norms_in_place():
    from s2dit.model.layers import RMSNorm
    from s2dit.model.wan import WanConfig, WanDenoiser

    torch.manual_seed(0)
    model = WanDenoiser.from_config(WanConfig(layers=1, heads=2, head_dim=8, ffn_dim=32, text_dim=16))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.RMSNorm)]
    assert norms and all(type(m) is RMSNorm for m in norms)


@pytest.mark.parametrize("chunk_frames", [None, 1, 3])
def test_lcha_equals_its_definition_written_out_step_by_step(chunk_frames):
    """The fused mixer (q and k normalised, mapped and rotated together, the gate folded into the state
    read and the channel mix) equals the plain definition: separate norms, explicit rotate-half RoPE,
    [N, N] linear attention, the conv branch, then σ(g)·linear + (1 - σ(g))·conv."""
    from s2dit.model.attention import LinConvAttention
    from s2dit.model.rope import RoPE3D
    from s2dit.ops.causal_conv import causal_depthwise_conv3d_3d
    from s2dit.ops.linear_attention import quadratic_reference

    torch.manual_seed(0)
    dim, heads, grid = 32, 2, (3, 4, 6)
    mixer = LinConvAttention(dim, heads)
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(0.0, 0.3)
    n = grid[0] * grid[1] * grid[2]
    h = torch.randn(2, n, dim)
    cos, sin = RoPE3D(dim // heads)(*grid)

    def rotate(x):  # x [B, h, N, d]
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    q, k, v = mixer.qkv(h).chunk(3, dim=-1)
    q, k = mixer.norm_q(q), mixer.norm_k(k)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d)
    q, k = F.softplus(mixer.feature(q)), F.softplus(mixer.feature(k))
    tokens = None if chunk_frames is None else chunk_frames * grid[1] * grid[2]
    linear = quadratic_reference(q, k, v, rotate(q), rotate(k), chunk_tokens=tokens)
    linear = linear.transpose(1, 2).flatten(2)  # (B, N, D)
    x = h.reshape(2, *grid, dim).permute(0, 4, 1, 2, 3)
    conv = causal_depthwise_conv3d_3d(x, mixer.conv.weight, mixer.conv.bias)[0]
    conv = mixer.conv_mix(conv.permute(0, 2, 3, 4, 1).reshape(2, n, dim))
    g = torch.sigmoid(mixer.gate)
    expected = mixer.out(g * linear + (1 - g) * conv)

    out = mixer(h, (cos, sin), grid, chunk_frames)
    assert ((out - expected).abs().max() / expected.abs().max()).item() <= 1e-5
