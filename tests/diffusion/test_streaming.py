"""The streaming sampler: equal to block-causal sampling, prompt switches, bounded memory, seeding."""

import math

import pytest
import torch

from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import (
    StreamSampler,
    StreamSettings,
    chunk_noise,
    commit_input,
    denoise_chunk,
    sample_block_causal,
    stream_sigmas,
)
from s2dit.errors import ConfigError
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT

SIZE = (12, 20)  # latent H, W: 6x10 tokens, an odd 3x5 coarse grid


def tiny(layout: str = "LSSF") -> S2DiT:
    """Random (not adaLN-Zero) weights so every path carries signal."""
    torch.manual_seed(0)
    model = S2DiT(ModelConfig(layout=layout, width=32, heads=2, ffn_dim=64, text_dim=12)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def prompt(seed: int, batch: int = 1) -> Condition:
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, 5, 12, generator=g)
    mask = torch.ones(batch, 5, dtype=torch.bool)
    mask[:, -1] = False
    return Condition(text, mask)


def run_stream(model, cond, chunks, settings, seed=0, switch=None):
    sampler = StreamSampler(model, cond, SIZE, settings, seed)
    out = []
    for k in range(chunks):
        if switch is not None and k == switch[0]:
            sampler.set_prompt(switch[1])
        out.append(sampler.next_chunk())
    return torch.cat(out, dim=2), sampler


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_step_list_is_the_warped_uniform_grid():
    assert stream_sigmas(4, 1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    warped = stream_sigmas(4, 5.0)  # effective t ≈ [1000, 937, 833, 625]
    assert [round(1000 * s) for s in warped] == [1000, 938, 833, 625]


@pytest.mark.parametrize("layout", ["LSSF", "FLS"])
@pytest.mark.parametrize("context_t", [0.0, 40.0])
def test_stream_equals_block_causal_sampling(layout, context_t):
    model = tiny(layout)
    settings = StreamSettings(steps=3, chunk_frames=2, window_chunks=4, sink_chunks=1, context_t=context_t)
    cond = prompt(1, batch=2)
    streamed, _ = run_stream(model, cond, 5, settings, seed=7)  # 5 chunks = sinks + window: nothing dropped
    reference = sample_block_causal(model, cond, SIZE, 5, settings, seed=7)
    assert streamed.shape == (2, 16, 10, *SIZE)
    assert rel_err(streamed, reference) <= 1e-5


def test_prompt_switch_changes_only_later_chunks():
    model = tiny()
    settings = StreamSettings(chunk_frames=2, window_chunks=4)
    a, b = prompt(1), prompt(2)
    plain, _ = run_stream(model, a, 5, settings)
    switched, _ = run_stream(model, a, 5, settings, switch=(3, b))
    assert torch.equal(switched[:, :, :6], plain[:, :, :6])  # chunks 0-2 untouched
    for k in (3, 4):
        assert rel_err(switched[:, :, 2 * k : 2 * k + 2], plain[:, :, 2 * k : 2 * k + 2]) > 1e-3
    # the state is kept: a fresh stream on prompt b differs from the switched one after the switch
    fresh, _ = run_stream(model, b, 5, settings)
    assert rel_err(switched[:, :, 6:], fresh[:, :, 6:]) > 1e-3


def test_streams_are_reproducible_and_seeded():
    model = tiny()
    settings = StreamSettings(chunk_frames=2, window_chunks=2)
    one, _ = run_stream(model, prompt(1), 3, settings, seed=3)
    two, _ = run_stream(model, prompt(1), 3, settings, seed=3)
    other, _ = run_stream(model, prompt(1), 3, settings, seed=4)
    assert torch.equal(one, two)
    assert rel_err(one, other) > 1e-2
    # a chunk's noise depends on (seed, chunk) only
    assert torch.equal(chunk_noise(3, 2, (1, 4), 2), chunk_noise(3, 2, (1, 4), 2))
    assert not torch.equal(chunk_noise(3, 2, (1, 4), 2), chunk_noise(3, 1, (1, 4), 2))


def test_long_stream_has_bounded_state():
    model = tiny("LSF")
    settings = StreamSettings(steps=2, chunk_frames=1, window_chunks=2, sink_chunks=1)
    sampler = StreamSampler(model, prompt(1), SIZE, settings)
    sizes = []
    for _ in range(12):  # far past sinks + window
        chunk = sampler.next_chunk()
        assert torch.isfinite(chunk).all()
        sizes.append(sum(t.numel() for t in sampler.state.tensors().values()))
    assert len(set(sizes)) == 1
    assert int(sampler.state.count) == 12


def test_bad_settings_and_models_are_refused():
    with pytest.raises(ConfigError, match="steps"):
        StreamSettings(steps=0)
    with pytest.raises(ConfigError, match="context_t"):
        StreamSettings(context_t=1000)
    with pytest.raises(ConfigError, match=r"^Linear cannot stream: streaming needs an S2DiT"):
        StreamSampler(torch.nn.Linear(2, 2), prompt(1), SIZE)
    sampler = StreamSampler(tiny(), prompt(1), SIZE)
    with pytest.raises(ValueError, match=r"^the stream has batch 1, the new prompt 2$"):
        sampler.set_prompt(prompt(2, batch=2))
    with pytest.raises(ValueError, match=r"^1 seeds for a batch of 2 streams$"):
        StreamSampler(tiny(), prompt(1, batch=2), SIZE, seed=[4]).next_chunk()


def test_a_batch_of_seeded_streams_is_each_stream_on_its_own():
    """Per-stream seeds: row i of the batch is the single stream with seed i (its prompt, its noise)."""
    model = tiny()
    settings = StreamSettings(steps=2, chunk_frames=2, window_chunks=2, sink_chunks=1)
    cond = prompt(3, batch=2)
    batched, _ = run_stream(model, cond, 3, settings, seed=[5, 9])
    for i, seed in enumerate((5, 9)):
        row = Condition(cond.text[i : i + 1], cond.mask[i : i + 1])
        single, _ = run_stream(model, row, 3, settings, seed)
        assert rel_err(batched[i : i + 1], single) <= 1e-5, i


def test_a_prompt_set_before_the_first_chunk_is_a_fresh_stream_on_it():
    """set_prompt takes the new prompt's mask too (prompt() masks its last token), and sampling carries no
    autograd graph unless asked."""
    model = tiny()
    settings = StreamSettings(steps=2, chunk_frames=2, window_chunks=2)
    switched, sampler = run_stream(model, prompt(1), 2, settings, switch=(0, prompt(2)))
    fresh, _ = run_stream(model, prompt(2), 2, settings)
    assert rel_err(switched, fresh) <= 1e-6
    assert not sampler.next_chunk().requires_grad


def test_bfloat16_caches_follow_the_float32_stream():
    model = tiny()
    settings = StreamSettings(chunk_frames=2, window_chunks=2)
    exact, _ = run_stream(model, prompt(1), 3, settings)
    sampler = StreamSampler(model, prompt(1), SIZE, settings, cache_dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = torch.cat([sampler.next_chunk() for _ in range(3)], dim=2)
    kinds = {name.split(".")[-1]: t.dtype for name, t in sampler.state.tensors().items()}
    assert kinds["k"] == kinds["v"] == kinds["tail"] == torch.bfloat16
    assert kinds["kv"] == kinds["k_sum"] == torch.float32  # linear sums stay float32
    assert low.dtype == torch.float32 and 1e-4 < rel_err(low, exact) < 0.05


def test_the_chunk_loop_and_the_commit_input_follow_their_formulas():
    """One chunk, written out by hand: x0 = x - σ·v(x, 1000σ), then x = (1 - σ')·x0 + σ'·noise[i + 1];
    the stream and its block-causal reference share this loop, so only this test pins it down."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 1, 2, 1, 2, 2, generator=g)  # 3 steps + the commit's draw
    sigmas = [1.0, 0.8, 0.5]
    seen = []

    def velocity(x, t):  # depends on x and t, so a wrong level or a wrong scale of t shows
        seen.append(float(t[0, 0]))
        return 0.5 * x + t[:, None, :, None, None] / 1000

    def timesteps(sigma):
        return torch.full((1, 1), sigma * 1000)

    x, want = noise[0], []
    for i, sigma in enumerate(sigmas):
        x0 = x - sigma * (0.5 * x + sigma)
        want.append(x0)
        if i + 1 < len(sigmas):
            x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * noise[i + 1]
    got = denoise_chunk(velocity, noise, sigmas, timesteps)
    assert torch.allclose(got, want[-1], atol=1e-6) and seen == [1000.0, 800.0, 500.0]
    assert torch.allclose(denoise_chunk(velocity, noise, sigmas, timesteps, exit_step=0), want[0], atol=1e-6)
    early = denoise_chunk(velocity, noise.requires_grad_(), sigmas, timesteps, exit_step=1, grad=True)
    assert torch.allclose(early, want[1], atol=1e-6) and early.requires_grad
    assert not denoise_chunk(velocity, noise, sigmas, timesteps).requires_grad
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=rf"^exit_step {bad} is not one of the 3 steps$"):
            denoise_chunk(velocity, noise, sigmas, timesteps, exit_step=bad)

    x0, draw = want[-1], noise[-1].detach()
    assert commit_input(x0, draw, 0.0) is x0  # a clean commit
    assert torch.allclose(commit_input(x0, draw, 250.0), 0.75 * x0 + 0.25 * draw, atol=1e-6)


def test_stream_settings_take_every_value_inside_their_bounds_and_none_outside():
    for ok in (
        {"steps": 1},
        {"steps": 1000},
        {"shift": 0.5},
        {"chunk_frames": 1024, "window_chunks": 1024, "sink_chunks": 1023},
        {"sink_chunks": 0},
    ):
        StreamSettings(**ok)
    for bad, message in (
        ({"steps": 1001}, r"^steps: 1001 must be in 1\.\.1000$"),
        ({"shift": 0.0}, r"^shift: 0\.0 must be positive and finite$"),
        ({"shift": math.inf}, r"^shift: inf must be positive and finite$"),
        ({"chunk_frames": 1025}, r"^chunk_frames 1025 and window_chunks 6 must be in 1\.\.1024, "),
        ({"sink_chunks": 1024}, r"sink_chunks 1024 in 0\.\.1023$"),
        ({"window_chunks": 0}, r"window_chunks 0 must be in 1\.\.1024"),
    ):
        with pytest.raises(ConfigError, match=message):
            StreamSettings(**bad)
