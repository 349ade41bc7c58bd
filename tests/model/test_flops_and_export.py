import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from s2dit.model.config import ModelConfig, preset
from s2dit.model.flops import model_flops, parameter_counts
from s2dit.model.state import StreamSpec
from s2dit.model.transformer import ExplicitStateStep, S2DiT


def _cpu_flash(q, k, v, *args, out_val=None, **kwargs):
    return sdpa_flop_count(q, k, v)  # torch's counter has no entry for the CPU flash kernel


@pytest.mark.parametrize("layout", ["LSSFL", "FSLS", "LLL"])
def test_flop_formula_equals_the_measured_count(layout):
    cfg = ModelConfig(layout=layout, width=32, heads=2, ffn_dim=48, text_dim=12, conv_kernel=[2, 3, 3])
    model = S2DiT(cfg)
    x, t, text = torch.randn(1, 16, 3, 12, 20), torch.rand(1, 3) * 1000, torch.randn(1, 5, 12)
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter, torch.no_grad():
        model(x, t, text)
    assert (
        sum(model_flops(cfg, width=20, height=12, frames=3, text_tokens=5).values())
        == counter.get_total_flops()
    )


def test_presets_have_the_intended_sizes():
    micro = sum(parameter_counts(S2DiT(preset("micro"))).values())
    assert 5e6 <= micro <= 20e6
    with torch.device("meta"):
        mobile = sum(parameter_counts(S2DiT(preset("mobile"))).values())
    assert 0.4e9 <= mobile <= 0.6e9


def test_parameter_counts_add_up():
    model = S2DiT(ModelConfig(layout="LSF", width=32, heads=2, ffn_dim=64, text_dim=12))
    counts = parameter_counts(model)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["L"] > 0 and counts["S"] > 0 and counts["F"] > 0 and counts["stages"] > 0


@torch.no_grad()
def test_forward_chunk_exports_with_explicit_state():
    torch.manual_seed(0)
    model = S2DiT(preset("micro")).eval()
    for p in model.parameters():
        p.normal_(0.0, 0.02)
    state = model.init_state(torch.randn(1, 8, 384), 18, 32, StreamSpec(chunk_frames=3))
    x, t = torch.randn(1, 16, 3, 18, 32), torch.full((1, 3), 500.0)
    model.forward_chunk(x, t, state, commit=True)  # a non-empty state
    reference = model.forward_chunk(x, t, state)
    named = state.tensors()
    for commit in (False, True):
        step = ExplicitStateStep(model, state, commit=commit)
        prompt = [named[n] for n in step.prompt_names[:-1]] + [torch.ones(1, 8)]  # text_mask as floats
        cache = [named[n] for n in step.cache_names]
        inputs = (x, t, *prompt, *cache)
        before = [c.clone() for c in cache]
        program = torch.export.export(step, inputs)
        eager, exported = step(*inputs), program.module()(*inputs)
        assert len(exported) == 1 + len(cache)
        for a, b in zip(eager, exported, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(eager[0], reference, rtol=1e-5, atol=1e-5)  # the velocity of the state
        assert all(torch.equal(a, b) for a, b in zip(cache, before, strict=True))  # inputs left alone
        changed = [not torch.equal(a, b) for a, b in zip(cache, eager[1:], strict=True)]
        assert any(changed) == commit  # only the commit entry point returns a new cache
