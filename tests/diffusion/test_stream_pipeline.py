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
    frames_before,
    hashed_prompt,
    load_stream_model,
    stream_to_file,
    switch_chunk,
)
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.errors import S2DitError
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_the_stream_dtype_is_the_autocast_dtype_and_the_caches_dtype(parts, dtype, monkeypatch):
    seen: list[tuple[bool, torch.dtype]] = []
    real = parts.model.forward_chunk

    def spy(*args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(*args, **kwargs)

    monkeypatch.setattr(parts.model, "forward_chunk", spy)
    live = LiveStream(parts, A, dtype=dtype)
    live.next()
    reduced = dtype != torch.float32
    assert seen and all(on == reduced for on, _ in seen)
    if reduced:  # float16 too, so that autocast's own default (bfloat16 on a CPU) cannot stand in
        assert {d for _, d in seen} == {dtype}
    caches = {
        n: t.dtype for n, t in live.sampler.state.tensors().items() if n.endswith((".k", ".v", ".tail"))
    }
    assert caches and set(caches.values()) == {dtype}, caches


def test_an_empty_prompt_is_refused_at_the_start_and_at_a_switch(parts):
    with pytest.raises(S2DitError, match=r"^the prompt is empty$"):
        LiveStream(parts, "  ")
    live = LiveStream(parts, A)
    with pytest.raises(S2DitError, match=r"^the prompt is empty$"):
        live.set_prompt("")
    assert live.next().prompt == A


def test_the_hashed_prompt_is_one_fixed_unmasked_embedding_per_prompt():
    a = hashed_prompt(A, 16)
    assert a.text.shape == (1, 8, 16) and a.mask.dtype == torch.bool and bool(a.mask.all())
    assert a.mask.shape == (1, 8)
    assert torch.equal(a.text, hashed_prompt(A, 16).text)
    assert not torch.allclose(a.text, hashed_prompt(B, 16).text)


def test_a_model_folder_loads_with_its_pipeline_settings_and_text_encoder(repo_root):
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.latent.text import load_text_encoder

    folder = repo_root / "weights" / "micro_ar"
    info = read_pipeline(folder)
    parts = load_stream_model(str(folder))
    assert not parts.random_weights and isinstance(parts.model, S2DiT)
    assert parts.latent_size == tuple(info.latent_shape[2:]) and parts.video_size == (256, 144)
    assert parts.settings == info.stream and parts.fps == info.fps == 4.0
    assert isinstance(parts.vae, TinyAutoencoder)
    prompt = "a red ball moving left"
    cond = parts.encode(prompt)
    tokens, mask = load_text_encoder(info.text, info.text_len).encode([prompt])
    n = int(mask[0].sum())
    assert cond.text.shape == (1, info.text_len, 384) and int(cond.mask.sum()) == n
    assert torch.equal(cond.text[0, :n], tokens[0][mask[0]]) and not cond.text[0, n:].any()
    assert load_stream_model(str(folder), settings=StreamSettings(steps=2)).settings == StreamSettings(
        steps=2
    )


def test_random_weights_are_the_preset_at_the_asked_size_with_a_warning(repo_root):
    with pytest.warns(
        UserWarning, match=r"^streaming with random weights: the frames are noise \(for benchmarking\)$"
    ):
        parts = load_stream_model(None, size=(64, 48))
    assert parts.random_weights and parts.latent_size == (6, 8) and parts.video_size == (64, 48)
    assert all(type(n) is int for n in parts.latent_size)
    assert parts.fps == 16.0 and parts.settings == StreamSettings()
    cond = parts.encode(A)
    assert torch.equal(cond.text, hashed_prompt(A, parts.model.config.text_dim).text)
    assert isinstance(parts.vae, TinyAutoencoder) and not parts.vae.training
    assert LiveStream(parts, A).next().frames.shape[1:] == (48, 64, 3)
    # a VAE named beside random weights is the one that decodes
    from s2dit.latent.vae import load_vae

    folder = repo_root / "weights" / "micro_vae"
    with pytest.warns(UserWarning):
        given = load_stream_model(None, vae=str(folder), size=(64, 48))
    reference = load_vae(str(folder)).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in given.vae.state_dict().items())


def test_loading_what_cannot_stream_is_one_clear_error(repo_root, tmp_path):
    import shutil

    from s2dit.diffusion.stream_pipeline import _text_encoder

    with pytest.raises(S2DitError, match=rf"^--checkpoint {tmp_path / 'none'} does not exist$"):
        load_stream_model(str(tmp_path / "none"))
    teacher = repo_root / "weights" / "micro_teacher"
    with pytest.raises(
        S2DitError, match=rf"^{teacher} holds a WanDenoiser: streaming needs an S2DiT checkpoint$"
    ):
        load_stream_model(str(teacher))
    folder = tmp_path / "ar"
    shutil.copytree(repo_root / "weights" / "micro_ar", folder)
    yaml = folder / "pipeline.yaml"
    yaml.write_text("".join(x for x in yaml.read_text().splitlines(True) if not x.startswith("vae:")))
    with pytest.raises(
        S2DitError,
        match=r"^no VAE known for this checkpoint: pass --vae \(a tiny_ae folder or a Wan VAE folder\)$",
    ):
        load_stream_model(str(folder))
    with pytest.raises(S2DitError, match=r"^the text encoder 'minilm' gives 384-d tokens, the model 100$"):
        _text_encoder("minilm", 64, 100, "cpu")(A)


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


def test_chunk_arithmetic_at_the_shipped_three_latent_frames_per_chunk():
    # chunk 0 makes 1 + 4·2 = 9 frames and every later chunk 12 (chunk_frames 1 cannot tell 4·k·c from 4·k/c)
    assert [frames_before(k, 3) for k in range(4)] == [0, 9, 21, 33]
    # 4 s at 16 fps is 64 frames: 5 chunks make 57, 6 make 69
    assert chunks_for(4.0, 16.0, 3) == 6
    assert chunks_for(57 / 16, 16.0, 3) == 5
    # a switch at 1 s (frame 16) waits for chunk 2 (frame 21); one at frame 9 exactly is chunk 1
    assert switch_chunk(1.0, 16.0, 3) == 2
    assert switch_chunk(9 / 16, 16.0, 3) == 1


def test_stream_to_file_makes_the_folders_it_is_told_to_write_in(parts, tmp_path):
    out = tmp_path / "new" / "nested" / "s.mp4"
    result = stream_to_file(parts, A, [], seconds=0.1, out=out, progress=False)
    assert len(read_video(out)[0]) == 5 and result["video"] == str(out)


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
