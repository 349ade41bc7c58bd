"""The S2DiT transformer: the parity law between streaming and block-causal runs, causality, state
handling, gradients and export. Tiny float32 models; token grid 6×10 so the coarse grid (3×5) is odd."""

import pytest
import torch

from s2dit.errors import ConfigError
from s2dit.model.config import ModelConfig, preset
from s2dit.model.ssa import stages
from s2dit.model.state import StreamSpec, cache_layout
from s2dit.model.transformer import S2DiT

H, W = 12, 20  # latent size: 6×10 tokens, coarse 3×5


def tiny(layout: str, seed: int = 0) -> S2DiT:
    """A tiny model with random (not adaLN-Zero) weights, so every path carries signal."""
    torch.manual_seed(seed)
    model = S2DiT(ModelConfig(layout=layout, width=32, heads=2, ffn_dim=64, text_dim=12)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def inputs(frames: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, frames, H, W, generator=g), torch.rand(1, frames, generator=g) * 1000


def stream(model, x, t, text, spec, denoise_passes: int = 1):
    """Chunk by chunk: denoising passes (recorded), then a commit with the same inputs."""
    state = model.init_state(text, H, W, spec)
    outs, c = [], spec.chunk_frames
    for s in range(0, x.shape[2], c):
        for _ in range(denoise_passes):
            out = model.forward_chunk(x[:, :, s : s + c], t[:, s : s + c], state)
        model.forward_chunk(x[:, :, s : s + c], t[:, s : s + c], state, commit=True)
        outs.append(out)
    return torch.cat(outs, dim=2), state


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("layout", ["LSSFLS", "SFL", "FLLSSF"])
@pytest.mark.parametrize("chunk", [1, 2, 3], ids=lambda c: f"chunk{c}")
@torch.no_grad()
def test_parity_law_stream_equals_block_causal(layout, chunk):
    model = tiny(layout)
    x, t = inputs(5 * chunk)
    text = torch.randn(1, 4, 12)
    expected = model(x, t, text, chunk_frames=chunk)
    streamed, _ = stream(model, x, t, text, StreamSpec(chunk_frames=chunk, window_chunks=5, sink_chunks=1))
    assert rel_err(streamed, expected) <= 1e-5


@torch.no_grad()
def test_bidirectional_equals_block_causal_with_one_chunk():
    model = tiny("LSF")
    x, t = inputs(4)
    text = torch.randn(1, 3, 12)
    assert rel_err(model(x, t, text, chunk_frames=4), model(x, t, text)) <= 1e-6


@torch.no_grad()
def test_block_causal_is_causal_and_bidirectional_is_not():
    model = tiny("LSSF")
    x, t = inputs(6)
    text = torch.randn(1, 3, 12)
    out = model(x, t, text, chunk_frames=2)
    later = x.clone()
    later[:, :, 4:] += 1.0  # change the last chunk
    torch.testing.assert_close(model(later, t, text, chunk_frames=2)[:, :, :4], out[:, :, :4], rtol=0, atol=0)
    earlier = x.clone()
    earlier[:, :, :2] += 1.0  # change the first chunk: every chunk sees it
    diff = (model(earlier, t, text, chunk_frames=2) - out).abs().amax(dim=(0, 1, 3, 4))
    assert (diff > 1e-4).all()
    assert (model(later, t, text) - model(x, t, text))[:, :, :4].abs().max() > 1e-4


@torch.no_grad()
def test_denoising_passes_leave_the_state_untouched_and_commits_write_it():
    model = tiny("LSF")
    x, t = inputs(3)
    text = torch.randn(1, 3, 12)
    state = model.init_state(text, H, W, StreamSpec(chunk_frames=1, window_chunks=2, sink_chunks=1))
    model.forward_chunk(x[:, :, :1], t[:, :1], state, commit=True)
    before = {k: v.clone() for k, v in state.tensors().items()}
    for _ in range(3):
        model.forward_chunk(x[:, :, 1:2], t[:, 1:2], state)
    assert all(torch.equal(before[k], v) for k, v in state.tensors().items())
    model.forward_chunk(x[:, :, 1:2], t[:, 1:2], state, commit=True)
    changed = {k for k, v in state.tensors().items() if not torch.equal(before[k], v)}
    assert "count" in changed and {"block0.kv", "block0.tail", "block1.k", "block2.v"} <= changed
    assert not any(k.endswith(("text_k", "text_v")) for k in changed)


@torch.no_grad()
def test_long_stream_has_constant_state_and_bounded_positions():
    model = tiny("LSF")
    text = torch.randn(1, 3, 12)
    spec = StreamSpec(chunk_frames=1, window_chunks=3, sink_chunks=1)
    state = model.init_state(text, H, W, spec)
    sizes = {k: v.shape for k, v in state.tensors().items()}
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        out = model.forward_chunk(
            torch.randn(1, 16, 1, H, W, generator=g), torch.zeros(1, 1), state, commit=True
        )
    assert {k: v.shape for k, v in state.tensors().items()} == sizes
    assert int(state.count) == 200 and torch.isfinite(out).all()
    valid, position, current = cache_layout(state.count, spec)
    assert valid.all() and position.tolist() == [0, 1, 2, 3] and current.item() == 4


def test_cache_layout_before_and_after_the_window_fills():
    spec = StreamSpec(chunk_frames=2, window_chunks=3, sink_chunks=2)
    valid, position, current = cache_layout(torch.tensor(3), spec)
    assert valid.tolist() == [True, True, False, False, True] and current.item() == 3
    assert position[[0, 1, 4]].tolist() == [0, 1, 2]  # absolute until the window overflows
    valid, position, current = cache_layout(torch.tensor(9), spec)
    assert valid.all() and position.tolist() == [0, 1, 2, 3, 4] and current.item() == 5


@torch.no_grad()
def test_prompt_switch_keeps_the_state_and_changes_the_output():
    model = tiny("LF")
    x, t = inputs(2)
    spec = StreamSpec(chunk_frames=1, window_chunks=2, sink_chunks=0)
    state = model.init_state(torch.randn(1, 3, 12), H, W, spec)
    model.forward_chunk(x[:, :, :1], t[:, :1], state, commit=True)
    cache = {k: v.clone() for k, v in state.tensors().items() if "text" not in k}
    before = model.forward_chunk(x[:, :, 1:], t[:, 1:], state)
    model.set_prompt(state, torch.randn(1, 5, 12))
    after = model.forward_chunk(x[:, :, 1:], t[:, 1:], state)
    assert all(torch.equal(v, state.tensors()[k]) for k, v in cache.items())
    assert (after - before).abs().max() > 1e-4


def test_every_parameter_gets_a_gradient():
    model = tiny("LSSFL").train()
    x, t = inputs(4)
    text = torch.randn(1, 3, 12)
    for chunk_frames in (None, 2):
        model.zero_grad()
        model(x, t, text, chunk_frames=chunk_frames).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
        assert not missing, missing
    names = dict(model.named_parameters())
    assert {
        "blocks.0.mixer.gate",
        "blocks.0.mixer.conv.weight",
        "blocks.0.mixer.feature.weight",
        "stage_down.0.proj.weight",
        "stage_up.0.fuse.weight",
    } <= names.keys()


def test_fresh_model_is_the_identity_map_to_zero_velocity():
    model = S2DiT(ModelConfig(layout="LSF", width=32, heads=2, ffn_dim=64, text_dim=12))
    x, t = inputs(2)
    assert model(x, t, torch.randn(1, 3, 12)).abs().max() == 0  # adaLN-Zero + zero output projection


def test_layouts_stages_and_config_errors():
    assert stages("LSSLS") == [(1, 2), (4, 4)] and stages("FFF") == [] and stages("SS") == [(0, 1)]
    for bad, message in [
        ({"layout": "LXL"}, "layout"),
        ({"layout": ""}, "layout"),
        ({"width": 30, "heads": 4}, "not divisible"),
        ({"width": 8, "heads": 2}, "head dimension"),
        ({"conv_kernel": [3, 2, 3]}, "conv_kernel"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ModelConfig(**bad)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    model = tiny("LF")
    with pytest.raises(ValueError, match="do not split"):
        model(*inputs(3), torch.randn(1, 2, 12), chunk_frames=2)
    state = model.init_state(torch.randn(1, 2, 12), H, W, StreamSpec(chunk_frames=2))
    with pytest.raises(ValueError, match="expects 2"):
        model.forward_chunk(*inputs(3), state)


@pytest.mark.parametrize("layout", ["F", "S"])
@pytest.mark.parametrize(("sinks", "window"), [(0, 1), (1, 1), (2, 1), (1, 2), (2, 3)])
@torch.no_grad()
def test_after_overflow_the_stream_sees_exactly_the_sinks_and_the_window(layout, sinks, window):
    """One softmax block: its cache holds only K/V of whole chunks, so a long stream must equal a fresh
    stream fed only the sink chunks, then the last `window` chunks, then the query chunk."""
    model = tiny(layout)
    spec = StreamSpec(chunk_frames=1, window_chunks=window, sink_chunks=sinks)
    g = torch.Generator().manual_seed(2)
    total = sinks + window + 3  # committed before the query chunk: 3 past the overflow
    xs = [torch.randn(2, 16, 1, H, W, generator=g) for _ in range(total + 1)]
    ts = [torch.rand(2, 1, generator=g) * 1000 for _ in range(total + 1)]
    text, mask = torch.randn(2, 5, 12, generator=g), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()

    def run(indices):
        state = model.init_state(text, H, W, spec, text_mask=mask)
        for i in indices[:-1]:
            model.forward_chunk(xs[i], ts[i], state, commit=True)
        return model.forward_chunk(xs[indices[-1]], ts[indices[-1]], state)

    long = run(list(range(total + 1)))
    kept = run([*range(sinks), *range(total - window, total), total])
    assert rel_err(long, kept) <= 1e-5


@torch.no_grad()
def test_parity_with_a_batch_and_a_padded_prompt():
    model = tiny("LSSF")
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(2, 16, 6, H, W, generator=g), torch.rand(2, 6, generator=g) * 1000
    text = torch.randn(2, 5, 12, generator=g)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])  # a tokenizer's int attention mask
    expected = model(x, t, text, mask, chunk_frames=2)
    state = model.init_state(text, H, W, StreamSpec(chunk_frames=2, window_chunks=3), text_mask=mask)
    outs = []
    for s in range(0, 6, 2):
        outs.append(model.forward_chunk(x[:, :, s : s + 2], t[:, s : s + 2], state))
        model.forward_chunk(x[:, :, s : s + 2], t[:, s : s + 2], state, commit=True)
    assert rel_err(torch.cat(outs, dim=2), expected) <= 1e-5
    padded_differently = text.clone()
    padded_differently[0, 2:] = 0.0  # masked tokens must not matter
    torch.testing.assert_close(model(x, t, padded_differently, mask, chunk_frames=2), expected)


def test_a_chunk_of_the_wrong_size_is_refused():
    model = tiny("SF")
    state = model.init_state(torch.randn(1, 2, 12), W, H, StreamSpec(chunk_frames=1))  # H and W swapped
    with pytest.raises(ValueError, match="the stream was made for"):
        model.forward_chunk(*inputs(1), state)
