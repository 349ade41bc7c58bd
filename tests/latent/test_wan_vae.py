import pytest
import torch

from s2dit.errors import S2DitError
from s2dit.latent.wan_vae import WanVAE


def tiny_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    # Non-trivial statistics, so that the normalisation is exercised.
    vae.register_to_config(
        latents_mean=torch.linspace(-1, 1, 16).tolist(), latents_std=torch.linspace(0.5, 2, 16).tolist()
    )
    return WanVAE(vae)


def test_encode_decode_shapes_and_normalisation():
    wan = tiny_vae()
    pixels = torch.rand(2, 3, 9, 32, 48) * 2 - 1
    latents = wan.encode(pixels)
    assert latents.shape == (2, 16, 3, 4, 6)
    raw = wan.vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(latents * wan.std + wan.mean, raw, rtol=1e-5, atol=1e-5)
    out = wan.decode(latents)
    assert out.shape == pixels.shape and out.min() >= -1 and out.max() <= 1
    with pytest.raises(S2DitError, match="4k\\+1 frames"):
        wan.encode(torch.zeros(1, 3, 8, 32, 48))


@pytest.mark.parametrize("chunks", [[1, 3, 3], [2, 2, 3], [7]], ids=lambda c: "-".join(map(str, c)))
def test_streaming_decode_equals_full_decode(chunks):
    wan = tiny_vae()
    latents = torch.randn(1, 16, sum(chunks), 4, 6)
    full = wan.decode(latents)
    decoder = wan.streaming_decoder()
    parts, start = [], 0
    for n in chunks:
        part = decoder.push(latents[:, :, start : start + n])
        assert part.shape[2] == (1 + 4 * (n - 1) if start == 0 else 4 * n)  # frames arrive with their chunk
        parts.append(part)
        start += n
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=1e-5, atol=1e-5)
    decoder.reset()  # a new stream starts from an empty cache
    torch.testing.assert_close(decoder.push(latents[:, :, :1]), full[:, :, :1], rtol=1e-5, atol=1e-5)


def test_folder_round_trip_and_errors(tmp_path):
    wan = tiny_vae()
    wan.vae.save_pretrained(tmp_path)
    loaded = WanVAE.from_folder(tmp_path)
    latents = torch.randn(1, 16, 2, 4, 6)
    torch.testing.assert_close(loaded.decode(latents), wan.decode(latents))
    with pytest.raises(S2DitError, match=r"needs config\.json and diffusion_pytorch_model\.safetensors"):
        WanVAE.from_folder(tmp_path / "missing")
