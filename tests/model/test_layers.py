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
