import pytest
import torch
import torch.nn.functional as F

from s2dit.ops.causal_conv import causal_depthwise_conv3d


def setup(C=4, kt=3, k=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, C, T, 5, 6, generator=g)
    return x, torch.randn(C, 1, kt, k, k, generator=g), torch.randn(C, generator=g)


def test_equals_left_zero_padding():
    x, w, b = setup()
    expected = F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), w, b, groups=4)
    y, tail = causal_depthwise_conv3d(x, w, b)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(tail, x[:, :, -2:])


@pytest.mark.parametrize("chunk", [1, 2, 3])
@pytest.mark.parametrize("kt", [1, 2, 3])
def test_chunks_with_their_tail_equal_the_whole_sequence(chunk, kt):
    x, w, b = setup(kt=kt, T=5 * chunk)
    whole, _ = causal_depthwise_conv3d(x, w, b)
    tail, parts = None, []
    for s in range(0, x.shape[2], chunk):
        y, tail = causal_depthwise_conv3d(x[:, :, s : s + chunk], w, b, tail)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-6, atol=1e-6)
    assert tail.shape[2] == kt - 1


def test_causal_in_time():
    x, w, b = setup()
    y, _ = causal_depthwise_conv3d(x, w, b)
    x2 = x.clone()
    x2[:, :, 4:] = 0.0
    y2, _ = causal_depthwise_conv3d(x2, w, b)
    torch.testing.assert_close(y2[:, :, :4], y[:, :, :4], rtol=0, atol=0)
    assert not torch.allclose(y2[:, :, 4:], y[:, :, 4:])


def test_even_spatial_kernels_are_refused():
    x, w, b = setup(k=2)
    with pytest.raises(ValueError, match="must be odd"):
        causal_depthwise_conv3d(x, w, b)


@pytest.mark.parametrize("with_tail", [False, True])
def test_the_2d_form_equals_the_3d_convolution(with_tail):
    from s2dit.ops.causal_conv import causal_depthwise_conv3d_2d
    from s2dit.ops.causal_conv import causal_depthwise_conv3d_3d as causal_depthwise_conv3d

    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 6, 4, 5, 7, generator=g), torch.randn(6, 1, 3, 3, 3, generator=g), torch.randn(6)
    tail = torch.randn(2, 6, 2, 5, 7, generator=g) if with_tail else None
    y3, t3 = causal_depthwise_conv3d(x, w, b, tail)
    y2, t2 = causal_depthwise_conv3d_2d(x, w, b, tail)
    torch.testing.assert_close(y2, y3, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t2, t3)
