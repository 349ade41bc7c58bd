"""The live stream's prompt wiring: a switched prompt reaches the sampler, at exactly the chunk it was asked
for, and changes what is drawn from then on (and nothing before). A tiny model with random non-zero
weights, so that the prompt shows in every output."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from s2dit.diffusion import stream_pipeline
from s2dit.diffusion.stream_pipeline import (
    LiveStream,
    StreamModel,
    chunks_for,
    hashed_prompt,
    stream_to_file,
    switch_chunk,
)
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT
from s2dit.videoio import read_video

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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_a_switched_prompt_reaches_the_sampler_at_the_next_chunk(parts, dtype):
    kept, switched = LiveStream(parts, A, seed=3, dtype=dtype), LiveStream(parts, A, seed=3, dtype=dtype)
    # the reference: the sampler itself, with the stream's seed, told the new prompt before chunk 2 (in
    # bfloat16: under autocast, with bfloat16 K/V caches)
    size, settings = parts.latent_size, parts.settings
    reference = StreamSampler(parts.model, parts.encode(A), size, settings, 3, cache_dtype=dtype)
    for k in range(4):
        if k == 2:
            switched.set_prompt(B)
            reference.set_prompt(parts.encode(B))
        a, b = kept.next(), switched.next()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
            expected = reference.next_chunk()
        assert torch.equal(b.latents, expected), f"chunk {k} is not what the sampler makes"
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


def test_of_two_switches_in_one_chunk_the_later_one_wins(parts, tmp_path):
    # 0.13 s and 0.16 s both fall in chunk 3; given out of order, the later time is still the one kept
    late, early = "a green cone", B
    result = stream_to_file(
        parts, A, [(0.16, late), (0.13, early)], seconds=0.4, out=tmp_path / "s.mp4", progress=False
    )
    assert result["switches"] == {"3": late}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_stream_to_file_writes_the_live_streams_chunks_with_its_seed_and_dtype(
    parts, tmp_path, monkeypatch, dtype
):
    # chunk_frames 1 at 50 fps: n chunks make 4n - 3 frames, so 0.4 s (20 frames) takes 6 chunks, the last cut
    assert [chunks_for(s, 50.0, 1) for s in (0.01, 0.02, 0.1, 0.12, 0.4)] == [1, 1, 2, 3, 6]
    made: list[torch.Tensor] = []
    real = LiveStream.next

    def spy(self):
        chunk = real(self)
        made.append(chunk.latents)
        return chunk

    monkeypatch.setattr(stream_pipeline.LiveStream, "next", spy)
    out = tmp_path / "s.mp4"
    result = stream_to_file(parts, A, [(0.12, B)], seconds=0.4, out=out, seed=3, dtype=dtype, progress=False)
    monkeypatch.undo()
    assert result["frames"] == 20 and result["chunks"] == len(made) == 6
    assert len(read_video(out)[0]) == 20
    reference = LiveStream(parts, A, seed=3, dtype=dtype)
    for k, latents in enumerate(made):
        if k == 3:
            reference.set_prompt(B)
        assert torch.equal(latents, reference.next().latents), f"chunk {k} is not the live stream's"


class Clock:
    """A stand-in for the ``time`` module: the time moves only when the test says."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_chunk_timings_and_the_stream_report_come_from_the_clock(parts, tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(stream_pipeline, "time", clock)
    real = StreamSampler.next_chunk

    def slow_chunk(self, *args, **kwargs):
        clock.now += 2.0  # each chunk's sampling takes 2 s
        return real(self, *args, **kwargs)

    class SlowVAE:  # the fixture's decoder, 0.5 s per chunk
        def streaming_decoder(self):
            decoder = parts.vae.streaming_decoder()

            def push(latents):
                clock.now += 0.5
                return decoder.push(latents)

            return types.SimpleNamespace(push=push)

    monkeypatch.setattr(stream_pipeline.StreamSampler, "next_chunk", slow_chunk)
    slow = dataclasses.replace(parts, vae=SlowVAE())
    live = LiveStream(slow, A)
    for _ in range(2):
        chunk = live.next()
        assert (chunk.denoise_s, chunk.decode_s) == (2.0, 0.5)
    result = stream_to_file(slow, A, [], seconds=0.4, out=tmp_path / "s.mp4", progress=False)
    # 6 chunks of 2.5 s make the 20 frames
    assert result["first_chunk_latency_s"] == 2.5
    assert result["fps"] == 20 / 15.0 and result["denoise_fps"] == 20 / 12.0
