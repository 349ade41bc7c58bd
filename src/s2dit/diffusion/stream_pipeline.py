"""Live streaming from a prompt to video frames, chunk by chunk: the text encoder, the streaming sampler and
the streaming decoder behind one object (:class:`LiveStream`), used by ``s2dit stream``, ``s2dit serve``
and ``s2dit bench stream``.

:func:`load_stream_model` builds the parts from a trained model folder (``pipeline.yaml`` names the text
encoder, the VAE and the stream settings) or, for benchmarking, from a preset with random weights: then the
prompt is embedded by a hash (no text encoder is loaded) and, without ``--vae``, the decoder is an untrained
tiny autoencoder. The frames are noise, but every cost is real.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.errors import S2DitError

PromptEncoder = Callable[[str], Condition]


@dataclasses.dataclass
class StreamModel:
    """Everything a stream needs, loaded once and shared by every stream (weights are read-only)."""

    model: torch.nn.Module
    vae: object  # anything with streaming_decoder() -> push(latents) -> pixels
    encode: PromptEncoder
    latent_size: tuple[int, int]  # (H, W) of latents
    settings: StreamSettings
    fps: float
    random_weights: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.latent_size[1] * 8, self.latent_size[0] * 8


def compile_chunk_step(parts: StreamModel) -> None:
    """Put the model's ``forward_chunk`` (every denoising and commit pass) through ``torch.compile``
    (inductor, static shapes: every chunk of a stream has the same shapes), in place. The first chunk pays
    the compile (~100 s for the micro preset on 2 CPU cores)."""
    parts.model.forward_chunk = torch.compile(parts.model.forward_chunk, dynamic=False)


def hashed_prompt(prompt: str, text_dim: int, tokens: int = 8) -> Condition:
    """A deterministic stand-in embedding ``[1, tokens, text_dim]`` for models with random weights."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:7], "little")
    text = torch.randn(1, tokens, text_dim, generator=torch.Generator().manual_seed(seed))
    return Condition(text, torch.ones(1, tokens, dtype=torch.bool))


def load_stream_model(
    checkpoint: str | None = None,
    *,
    vae: str | None = None,
    preset: str = "micro",
    size: tuple[int, int] = (256, 144),
    settings: StreamSettings | None = None,
    device: str = "cpu",
) -> StreamModel:
    """A trained S2DiT folder (or run), or ``checkpoint=None``: the ``preset`` with random weights at
    ``size`` (width, height). ``settings`` replaces the model's stream settings."""
    from s2dit.config import VideoSpec
    from s2dit.latent.vae import load_vae
    from s2dit.model.config import preset as model_preset
    from s2dit.model.denoiser import load_denoiser
    from s2dit.model.transformer import S2DiT

    if checkpoint is None:
        warnings.warn("streaming with random weights: the frames are noise (for benchmarking)", stacklevel=2)
        spec = VideoSpec(width=size[0], height=size[1], frames=5)  # checks the size
        torch.manual_seed(0)
        model = S2DiT(model_preset(preset)).to(device).eval()
        text_dim = model.config.text_dim
        return StreamModel(
            model=model,
            vae=_on(load_vae(vae) if vae else _untrained_decoder(), device),
            encode=lambda p: _to(hashed_prompt(p, text_dim), device),
            latent_size=(spec.height // 8, spec.width // 8),
            settings=settings or StreamSettings(),
            fps=16.0,
            random_weights=True,
        )
    from s2dit.diffusion.pipeline import read_pipeline

    if not Path(checkpoint).exists():
        raise S2DitError(f"--checkpoint {checkpoint} does not exist")
    info = read_pipeline(checkpoint)
    model = load_denoiser(checkpoint, device)
    if not isinstance(model, S2DiT):
        raise S2DitError(f"{checkpoint} holds a {type(model).__name__}: streaming needs an S2DiT checkpoint")
    vae_path = vae or info.vae
    if not vae_path:
        raise S2DitError(
            "no VAE known for this checkpoint: pass --vae (a tiny_ae folder or a Wan VAE folder)"
        )
    return StreamModel(
        model=model,
        vae=_on(load_vae(vae_path), device),
        encode=_text_encoder(info.text, info.text_len, model.config.text_dim, device),
        latent_size=(info.latent_shape[2], info.latent_shape[3]),
        settings=settings or info.stream,
        fps=info.fps,
    )


def _to(cond: Condition, device) -> Condition:
    return Condition(cond.text.to(device), None if cond.mask is None else cond.mask.to(device))


def _on(vae, device):
    """The decoder on the denoiser's device (a tiny autoencoder is a module; a WanVAE holds one)."""
    module = vae if isinstance(vae, torch.nn.Module) else getattr(vae, "vae", None)
    if module is not None:
        module.to(device)
    return vae


def _untrained_decoder():
    from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder

    torch.manual_seed(0)
    return TinyAutoencoder(TinyAEConfig()).eval()


def _text_encoder(spec: str, length: int, text_dim: int, device: str) -> PromptEncoder:
    from s2dit.latent.text import load_text_encoder, pad_text

    encoder = load_text_encoder(spec, length)

    def encode(prompt: str) -> Condition:
        tokens, mask = encoder.encode([prompt])
        if tokens.shape[-1] != text_dim:
            raise S2DitError(
                f"the text encoder {spec!r} gives {tokens.shape[-1]}-d tokens, the model {text_dim}"
            )
        text, mask = pad_text([tokens[0][mask[0]]], length)
        return Condition(text.to(device), mask.to(device))

    return encode


@dataclasses.dataclass
class StreamChunk:
    """One chunk as it leaves the stream."""

    index: int
    frames: np.ndarray  # [F, H, W, 3] uint8
    latents: torch.Tensor  # [1, C, c, h, w]
    denoise_s: float  # sampling (steps + commit)
    decode_s: float
    prompt: str


class LiveStream:
    """One stream: ``next()`` makes, decodes and returns the next chunk; ``set_prompt`` takes effect at
    the next chunk boundary. ``dtype`` bfloat16 runs the denoiser under autocast with bf16 K/V caches."""

    def __init__(self, parts: StreamModel, prompt: str, seed: int = 0, dtype: torch.dtype = torch.float32):
        if not prompt.strip():
            raise S2DitError("the prompt is empty")
        self.parts = parts
        self.prompt = prompt
        self.dtype = dtype
        cache_dtype = None if dtype == torch.float32 else dtype
        self.sampler = StreamSampler(
            parts.model,
            parts.encode(prompt),
            parts.latent_size,
            parts.settings,
            seed,
            cache_dtype=cache_dtype,
        )
        self.decoder = parts.vae.streaming_decoder()
        self._pending: str | None = None

    @property
    def chunks_done(self) -> int:
        return self.sampler.chunks_done

    def set_prompt(self, prompt: str) -> None:
        if not prompt.strip():
            raise S2DitError("the prompt is empty")
        self._pending = prompt

    def _sync(self) -> float:
        if self.parts.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def next(self) -> StreamChunk:
        from s2dit.videoio import pixels_to_uint8

        if self._pending is not None:
            self.sampler.set_prompt(self.parts.encode(self._pending))
            self.prompt, self._pending = self._pending, None
        start = self._sync()
        device = self.parts.device.type
        with torch.autocast(device, dtype=self.dtype, enabled=self.dtype != torch.float32):
            latents = self.sampler.next_chunk()
        sampled = self._sync()
        pixels = self.decoder.push(latents.float())
        frames = pixels_to_uint8(pixels[0].float().cpu())
        done = self._sync()
        return StreamChunk(
            self.sampler.chunks_done - 1, frames, latents, sampled - start, done - sampled, self.prompt
        )


def frames_before(chunk: int, chunk_frames: int) -> int:
    """Video frames made before chunk ``chunk`` (the first chunk's first latent frame is one frame)."""
    return 0 if chunk == 0 else 4 * chunk * chunk_frames - 3


def chunks_for(seconds: float, fps: float, chunk_frames: int) -> int:
    """Chunks needed for at least ``seconds`` of video."""
    return max(1, math.ceil((seconds * fps + 3) / (4 * chunk_frames)))


def switch_chunk(seconds: float, fps: float, chunk_frames: int) -> int:
    """The first chunk boundary at or after ``seconds``."""
    k = 0
    while frames_before(k, chunk_frames) < seconds * fps - 1e-9:
        k += 1
    return k


def stream_to_file(
    parts: StreamModel,
    prompt: str,
    switches: list[tuple[float, str]],
    seconds: float,
    out: str | Path,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> dict:
    """``s2dit stream``: write frames to ``out`` as each chunk arrives (fragmented mp4: playable if the
    run is interrupted) and report first-chunk latency and FPS. ``switches``: ``(seconds, prompt)``."""
    from tqdm import tqdm

    from s2dit.videoio import VideoWriter

    c = parts.settings.chunk_frames
    at = {switch_chunk(s, parts.fps, c): p for s, p in sorted(switches)}
    total = math.ceil(seconds * parts.fps)
    live = LiveStream(parts, prompt, seed, dtype)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written, first_latency, denoise_s, start = 0, None, 0.0, time.perf_counter()
    with (
        VideoWriter(out, parts.fps) as writer,
        tqdm(total=total, unit="frame", desc="streaming", disable=not progress) as bar,
    ):
        for k in range(chunks_for(seconds, parts.fps, c)):
            if k in at:
                live.set_prompt(at[k])
            chunk = live.next()
            frames = chunk.frames[: total - written]
            writer.write(frames)
            written += len(frames)
            denoise_s += chunk.denoise_s
            elapsed = time.perf_counter() - start
            first_latency = elapsed if first_latency is None else first_latency
            bar.update(len(frames))
            bar.set_postfix(fps=f"{written / elapsed:.1f}", first_chunk=f"{first_latency:.2f}s")
    elapsed = time.perf_counter() - start
    return {
        "video": str(out),
        "frames": written,
        "chunks": live.chunks_done,
        "first_chunk_latency_s": first_latency,
        "fps": written / elapsed,
        "denoise_fps": written / denoise_s,
        "switches": {str(k): p for k, p in at.items()},
    }
