"""The reference runner: a whole stream through an export folder, the loop a phone app runs.

Per prompt: ``prompt`` once. Per chunk: seeded noise, ``denoise`` at each of the few levels (re-noising the
prediction to the next level between them), ``commit`` on the finished chunk, ``decoder`` on its latents. The
few-step loop is the sampler's own (:func:`~s2dit.diffusion.streaming.denoise_chunk`, the same noise), so an
exported stream can be compared with ``s2dit stream`` number for number.
"""

from __future__ import annotations

from pathlib import Path

import torch

from s2dit.config import from_dict
from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS
from s2dit.diffusion.streaming import StreamSettings, chunk_noise, commit_input, denoise_chunk
from s2dit.errors import S2DitError
from s2dit.export.backends import open_entry
from s2dit.export.manifest import Manifest

DTYPES = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool, "float16": torch.float16}


class ExportedStream:
    """Streams from an export folder (ONNX or ExecuTorch); ``runtime`` names the one expected."""

    def __init__(self, folder: str | Path, runtime: str | None = None, seed: int = 0):
        self.folder = Path(folder)
        self.manifest = m = Manifest.read(folder)
        m.check(folder, runtime)
        self.calls = {name: open_entry(m.runtime, self.folder / e.file) for name, e in m.entry_points.items()}
        self.settings = from_dict(StreamSettings, m.stream, prefix="manifest stream.")
        self.seed = seed
        self.shape = (1, m.channels, self.settings.chunk_frames, *m.latent_size)
        self.reset()

    def reset(self) -> None:
        """A new stream: an empty cache (every cache tensor starts at zero) and no decoded frames."""
        denoise = self.manifest.entry_points["denoise"].inputs
        self.cache = [
            torch.zeros(s.shape, dtype=DTYPES[s.dtype]) for s in denoise[2 + self._prompt_count() :]
        ]
        self.prompt_tensors: list[torch.Tensor] | None = None
        self.chunks_done = 0
        if "decoder" in self.manifest.entry_points:
            tail = self.manifest.entry_points["decoder"].inputs[1]
            self.tail = torch.zeros(tail.shape, dtype=DTYPES[tail.dtype])

    def _prompt_count(self) -> int:
        return len(self.manifest.entry_points["prompt"].outputs)

    def set_prompt(self, text: torch.Tensor, mask: torch.Tensor) -> None:
        """``text [1, L, D]`` and ``mask [1, L]`` (L = the manifest's text_len): used from the next chunk."""
        m = self.manifest
        if tuple(text.shape) != (1, m.text_len, m.text_dim):
            raise S2DitError(f"the export takes text [1, {m.text_len}, {m.text_dim}], got {list(text.shape)}")
        self.prompt_tensors = self.calls["prompt"]([text.float(), mask.float()])

    def _t(self, sigma: float) -> torch.Tensor:
        return torch.full((1, self.settings.chunk_frames), sigma * NUM_TRAIN_TIMESTEPS)

    def next_latents(self) -> torch.Tensor:
        """The next chunk's clean latents ``[1, C, c, H, W]`` (committed into the cache)."""
        if self.prompt_tensors is None:
            raise S2DitError("set a prompt before streaming")
        s, prompt = self.settings, self.prompt_tensors

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x0 = self.calls["denoise"]([x, t, *prompt, *self.cache])[0]
            return (x - x0) / (t / NUM_TRAIN_TIMESTEPS)[:, None, :, None, None]

        noise = chunk_noise(self.seed, self.chunks_done, self.shape, s.steps + 1)
        x0 = denoise_chunk(velocity, noise, s.sigmas, self._t)
        context = commit_input(x0, noise[-1], s.context_t)
        self.cache = self.calls["commit"](
            [context, self._t(s.context_t / NUM_TRAIN_TIMESTEPS), *prompt, *self.cache]
        )
        self.chunks_done += 1
        return x0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames ``[1, 3, F, H, W]`` in [-1, 1] of a chunk (the first chunk of a video gives 4c - 3)."""
        if "decoder" not in self.calls:
            raise S2DitError(f"{self.folder} was exported without a decoder")
        first = self.chunks_done == 1
        frames, self.tail = self.calls["decoder"]([latents, self.tail])
        return frames[:, :, 3:] if first else frames


def run_export(
    folder: str | Path, prompt: str, seconds: float, out: str | Path, seed: int = 0, progress: bool = True
) -> dict:
    """Stream ``prompt`` for ``seconds`` through an export folder into an mp4; returns a summary."""
    import math

    from tqdm import tqdm

    from s2dit.latent.text import pad_text
    from s2dit.videoio import pixels_to_uint8, write_video

    stream = ExportedStream(folder, seed=seed)
    m = stream.manifest
    if m.text_encoder == "hashed":
        from s2dit.diffusion.stream_pipeline import hashed_prompt

        cond = hashed_prompt(prompt, m.text_dim)
        tokens = cond.text[0][cond.mask[0]] if cond.mask is not None else cond.text[0]
    else:
        from s2dit.latent.text import load_text_encoder

        encoded, mask = load_text_encoder(m.text_encoder, m.text_len).encode([prompt])
        tokens = encoded[0][mask[0]]
    text, mask = pad_text([tokens.float()], m.text_len)
    stream.set_prompt(text, mask)
    per_chunk = 4 * stream.settings.chunk_frames
    chunks = max(1, math.ceil((seconds * m.fps - 1) / per_chunk) + 1)
    frames = []
    for _ in tqdm(range(chunks), desc="streaming (exported)", unit="chunk", disable=not progress):
        frames.append(stream.decode(stream.next_latents()))
    video = pixels_to_uint8(torch.cat(frames, dim=2)[0])
    write_video(out, video, m.fps)
    return {"out": str(out), "frames": len(video), "chunks": chunks, "runtime": m.runtime}
