"""The live stream's prompt wiring: a switched prompt reaches the sampler, at exactly the chunk it was asked
for, and changes what is drawn from then on (and nothing before). A tiny model with random non-zero
weights, so that the prompt shows in every output."""

from __future__ import annotations

import pytest
import torch

from s2dit.diffusion import stream_pipeline
from s2dit.diffusion.stream_pipeline import (
    LiveStream,
    StreamModel,
    hashed_prompt,
    stream_to_file,
    switch_chunk,
)
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT

A, B = "a red ball", "a blue cube"


@pytest.fixture(scope="module")
def parts() -> StreamModel:
    torch.manual_seed(0)
    model = S2DiT(ModelConfig(layout="LSSL", width=32, heads=2, ffn_dim=64, text_dim=16)).eval()
    for p in model.parameters():  # no zero-initialised outputs: the prompt must change the velocity
        p.data.normal_(0, 0.05)
    vae = TinyAutoencoder(TinyAEConfig(widths=[4, 4, 8, 8])).eval()
    return StreamModel(
        model=model,
        vae=vae,
        encode=lambda p: hashed_prompt(p, 16),
        latent_size=(6, 8),
        settings=StreamSettings(steps=2, chunk_frames=1, window_chunks=2),
        fps=50.0,
        random_weights=True,
    )


def test_a_switched_prompt_reaches_the_sampler_at_the_next_chunk(parts):
    kept, switched = LiveStream(parts, A), LiveStream(parts, A)
    # the reference: the sampler itself, told the new prompt before chunk 2
    reference = StreamSampler(parts.model, parts.encode(A), parts.latent_size, parts.settings, 0)
    for k in range(4):
        if k == 2:
            switched.set_prompt(B)
            reference.set_prompt(parts.encode(B))
        a, b = kept.next(), switched.next()
        assert torch.equal(b.latents, reference.next_chunk()), f"chunk {k} is not what the sampler makes"
        if k < 2:
            assert torch.equal(a.latents, b.latents) and b.prompt == A
        else:
            assert not torch.allclose(a.latents, b.latents, atol=1e-3), f"chunk {k} still follows {A!r}"
            assert b.prompt == B
        assert b.index == k


def test_set_prompt_waits_for_the_chunk_boundary(parts):
    live = LiveStream(parts, A)
    live.next()
    live.set_prompt(B)
    assert live.prompt == A  # nothing changes mid-chunk
    assert live.next().prompt == B


def test_stream_to_file_switches_at_the_chunk_the_time_falls_in(parts, tmp_path, monkeypatch):
    # chunk_frames 1 at 50 fps: chunk k starts at frame 4k - 3 (k >= 1), so 0.12 s (frame 6) is chunk 3
    assert [switch_chunk(s, 50.0, 1) for s in (0.0, 0.02, 0.1, 0.12)] == [0, 1, 2, 3]
    told: list[tuple[int, torch.Tensor]] = []
    real = StreamSampler.set_prompt

    def spy(self, cond):
        told.append((self.chunks_done, cond.text.clone()))
        real(self, cond)

    monkeypatch.setattr(stream_pipeline.StreamSampler, "set_prompt", spy)
    result = stream_to_file(parts, A, [(0.12, B)], seconds=0.4, out=tmp_path / "s.mp4", progress=False)
    assert result["switches"] == {"3": B}
    assert len(told) == 1
    at, text = told[0]
    assert at == 3, f"the sampler heard the new prompt before chunk {at}, not 3"
    assert torch.equal(text, parts.encode(B).text)
