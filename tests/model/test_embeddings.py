import torch
import torch.nn.functional as F

from s2dit.model.embeddings import (
    PatchEmbed,
    TextEmbedding,
    TimestepEmbedding,
    gate,
    modulate,
    patchify,
    sinusoidal_embedding,
    unpatchify,
)


def test_patchify_and_unpatchify_are_inverse():
    x = torch.randn(2, 16, 3, 10, 14)
    tokens = patchify(x)
    assert tokens.shape == (2, 3 * 5 * 7, 64)
    assert torch.equal(unpatchify(tokens, 3, 5, 7), x)


def test_patch_embed_orders_tokens_like_patchify():
    """PatchEmbed is a linear map of patchify's tokens: same (frame, row, column) order and channel layout."""
    torch.manual_seed(0)
    embed = PatchEmbed(4, 8)
    x = torch.randn(2, 4, 3, 6, 8)
    weight = embed.proj.weight.reshape(8, 4 * 4)  # (D, C, 1, 2, 2) -> (D, C*4)
    expected = F.linear(patchify(x), weight, embed.proj.bias)
    torch.testing.assert_close(embed(x), expected)
    assert embed(x).shape == (2, 3 * 3 * 4, 8)


def test_token_of_a_patch_holds_its_pixels():
    x = torch.zeros(1, 1, 2, 4, 4)
    x[0, 0, 1, 2, 3] = 1.0  # frame 1, row 2, column 3 -> token (1, 1, 1), sub-pixel (0, 1)
    tokens = patchify(x)
    assert tokens.nonzero().tolist() == [[0, 1 * 4 + 1 * 2 + 1, 1]]


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0.0, 500.0]), dim=8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0, :4], torch.ones(4)) and torch.allclose(e[0, 4:], torch.zeros(4))
    assert not torch.allclose(e[1], e[0])


def test_timestep_embedding_is_per_frame():
    torch.manual_seed(0)
    emb = TimestepEmbedding(16, freq_dim=32)
    t = torch.tensor([[1000.0, 500.0, 500.0], [0.0, 250.0, 750.0]])
    temb, mod = emb(t)
    assert temb.shape == (2, 3, 16) and mod.shape == (2, 3, 6, 16)
    torch.testing.assert_close(mod[0, 1], mod[0, 2])  # same t, same modulation
    assert not torch.allclose(mod[0, 0], mod[0, 1])
    t2 = t.clone()
    t2[1, 2] = 10.0
    _, mod2 = emb(t2)
    torch.testing.assert_close(mod2[1, :2], mod[1, :2])  # other frames are unaffected
    assert not torch.allclose(mod2[1, 2], mod[1, 2])


def test_modulate_and_gate_apply_each_frames_vectors_to_its_tokens():
    B, T, S, D = 2, 3, 5, 4
    x = torch.randn(B, T * S, D)
    shift, scale, g = torch.randn(3, B, T, D)
    out = modulate(x, shift, scale).reshape(B, T, S, D)
    gated = gate(x, g).reshape(B, T, S, D)
    xs = x.reshape(B, T, S, D)
    for f in range(T):
        torch.testing.assert_close(out[:, f], xs[:, f] * (1 + scale[:, f, None]) + shift[:, f, None])
        torch.testing.assert_close(gated[:, f], xs[:, f] * g[:, f, None])


def test_text_embedding_shape():
    assert TextEmbedding(384, 32)(torch.randn(2, 7, 384)).shape == (2, 7, 32)
