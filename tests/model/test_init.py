import pytest
import torch

from s2dit.model.config import ModelConfig
from s2dit.model.init import init_from_full_attention
from s2dit.model.transformer import S2DiT


def wan_model(layers: int = 3, width_heads: int = 2, head_dim: int = 16):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=width_heads,
        attention_head_dim=head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=12,
        freq_dim=256,
        ffn_dim=64,
        num_layers=layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
    ).eval()
    with torch.no_grad():
        for p in wan.parameters():
            p.normal_(0.0, 0.1)
    return wan


def test_an_all_f_model_with_wan_weights_is_wan():
    """Our F blocks are Wan blocks: loaded from diffusers' WanTransformer3DModel, the outputs agree."""
    wan = wan_model()
    ours = S2DiT(ModelConfig(layout="FFF", width=32, heads=2, ffn_dim=64, text_dim=12)).eval()
    report = init_from_full_attention(ours, wan.state_dict())
    assert not report.fresh and not report.skipped
    x, text = torch.randn(1, 16, 3, 12, 20), torch.randn(1, 5, 12)
    with torch.no_grad():
        expected = wan(x, torch.tensor([400.0]), text, return_dict=False)[0]
        out = ours(x, torch.full((1, 3), 400.0), text)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_a_sandwich_takes_what_it_shares_with_wan():
    wan = wan_model(layers=2)
    ours = S2DiT(ModelConfig(layout="LSSL", width=32, heads=2, ffn_dim=64, text_dim=12))
    report = init_from_full_attention(ours, wan.state_dict())
    fresh = set(report.fresh)
    assert {
        "blocks.0.mixer.feature.weight",
        "blocks.0.mixer.conv.weight",
        "blocks.0.mixer.gate",
        "blocks.3.mixer.conv_mix.weight",
        "stage_down.0.proj.weight",
        "stage_up.0.fuse.weight",
    } <= fresh
    assert {
        "blocks.0.mixer.qkv.weight",
        "blocks.1.mixer.qkv.weight",
        "blocks.3.ffn.fc2.weight",
        "blocks.2.cross.k.weight",
        "blocks.1.modulation",
    } <= set(report.loaded)
    assert not any(
        "feature" not in k and "conv" not in k and "gate" not in k and "stage" not in k for k in fresh
    )
    # Depths differ: student blocks 0..3 take teacher blocks 0, 0, 1, 1.
    sd = wan.state_dict()
    torch.testing.assert_close(ours.blocks[3].ffn.fc2.weight, sd["blocks.1.ffn.net.2.weight"])
    torch.testing.assert_close(ours.blocks[1].ffn.fc2.weight, sd["blocks.0.ffn.net.2.weight"])
    assert "loaded" in report.format() and "fresh:" in report.format()


def test_from_another_s2dit_and_shape_mismatches():
    source = S2DiT(ModelConfig(layout="FF", width=32, heads=2, ffn_dim=64, text_dim=12))
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    target = S2DiT(ModelConfig(layout="LFFL", width=32, heads=2, ffn_dim=48, text_dim=12))
    report = init_from_full_attention(target, source.state_dict())
    assert ("blocks.0.ffn.fc1.weight", "shape (64, 32) vs (48, 32)") in report.skipped
    torch.testing.assert_close(target.blocks[3].mixer.qkv.weight, source.blocks[1].mixer.qkv.weight)
    torch.testing.assert_close(target.patch.proj.weight, source.patch.proj.weight)


@pytest.mark.parametrize("head_dim", [12, 16])
def test_rope_layouts_agree_for_other_head_sizes(head_dim):
    wan = wan_model(layers=1, head_dim=head_dim)
    ours = S2DiT(ModelConfig(layout="F", width=2 * head_dim, heads=2, ffn_dim=64, text_dim=12)).eval()
    init_from_full_attention(ours, wan.state_dict())
    x, text = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 3, 12)
    with torch.no_grad():
        expected = wan(x, torch.tensor([900.0]), text, return_dict=False)[0]
        torch.testing.assert_close(ours(x, torch.full((1, 2), 900.0), text), expected, rtol=1e-5, atol=1e-5)


def test_wan_heads_of_another_size_leave_qk_fresh():
    wan = wan_model(layers=1, width_heads=4, head_dim=8)  # width 32 as 4 heads of 8
    ours = S2DiT(ModelConfig(layout="F", width=32, heads=2, ffn_dim=64, text_dim=12))  # 2 heads of 16
    report = init_from_full_attention(ours, wan.state_dict(), wan_heads=4)
    assert {"blocks.0.mixer.qkv.weight", "blocks.0.mixer.norm_q.weight"} <= set(report.fresh)
    assert "blocks.0.cross.q.weight" in report.loaded
