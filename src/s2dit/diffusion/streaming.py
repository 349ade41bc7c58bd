"""The autoregressive (streaming) sampler: a video made chunk by chunk against a :class:`StreamState`.

Each chunk of ``c`` latent frames starts from noise and takes a few denoising steps (default 4 at
``t = [1000, 750, 500, 250]`` warped by the shift): each step predicts ``x0`` and re-noises it to the next
level with fresh noise; the last prediction is the chunk. One *commit* pass on the finished chunk (at
``t = 0``, or re-noised to a small context level) writes it into the state, and the next chunk begins.
Memory is bounded for any length: softmax-attention blocks keep a window of recent chunks plus sinks.

Noise is drawn per chunk from a generator seeded by ``(seed, chunk)``, so a stream is reproducible and a
chunk's noise does not depend on what came before it (a prompt switch changes only the later chunks).

:func:`sample_block_causal` is the same sampling written without a state: every pass runs the block-causal
model over the whole history (committed chunks as they were committed, then the current chunk). While the
stream still remembers every chunk, the two are equal; tests hold them to it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, shift_sigma, x0_from_velocity
from s2dit.diffusion.sampling import Condition
from s2dit.errors import ConfigError
from s2dit.model.state import StreamSpec

MAX_CHUNKS = 1024  # latent frames per chunk, or chunks in the window: more is a typo (and terabytes of cache)


@dataclasses.dataclass
class StreamSettings:
    """How a stream is sampled (stored in a model's ``pipeline.yaml`` under ``stream``)."""

    steps: int = 4
    shift: float = 5.0
    chunk_frames: int = 3  # latent frames per chunk (3 -> 12 video frames)
    window_chunks: int = 6  # recent chunks kept by softmax-attention blocks
    sink_chunks: int = 1  # first chunks kept for the whole stream
    context_t: float = 0.0  # timestep of the commit pass (0: the clean chunk)

    def __post_init__(self) -> None:
        # Messages name the field only: from_dict adds where it sits (``stream.steps``).
        if not 1 <= self.steps <= NUM_TRAIN_TIMESTEPS:
            raise ConfigError(f"steps: {self.steps} must be in 1..{NUM_TRAIN_TIMESTEPS:g}")
        if not 0 < self.shift < math.inf:  # NaN fails too
            raise ConfigError(f"shift: {self.shift} must be positive and finite")
        sizes = (self.chunk_frames, self.window_chunks, self.sink_chunks + 1)
        if not all(1 <= n <= MAX_CHUNKS for n in sizes):
            raise ConfigError(
                f"chunk_frames {self.chunk_frames} and window_chunks {self.window_chunks} must be in "
                f"1..{MAX_CHUNKS}, sink_chunks {self.sink_chunks} in 0..{MAX_CHUNKS - 1}"
            )
        if not 0 <= self.context_t < NUM_TRAIN_TIMESTEPS:
            raise ConfigError(f"context_t: {self.context_t} must be in [0, {NUM_TRAIN_TIMESTEPS:g})")

    @property
    def spec(self) -> StreamSpec:
        return StreamSpec(self.chunk_frames, self.window_chunks, self.sink_chunks)

    @property
    def sigmas(self) -> list[float]:
        """The chunk's noise levels, one per step: ``1 - i/steps`` warped by the shift."""
        return stream_sigmas(self.steps, self.shift)


def stream_sigmas(steps: int, shift: float) -> list[float]:
    """``steps`` levels ``σ_i = 1 - i/steps`` (t = 1000, 750, 500, 250 for 4), warped by ``shift``."""
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1], shift).tolist()


def chunk_noise(seed: int, chunk: int, shape: tuple[int, ...], draws: int) -> torch.Tensor:
    """``[draws, *shape]`` standard normal noise for chunk ``chunk`` of stream ``seed`` (on the CPU)."""
    sequence = np.random.SeedSequence([seed, chunk])
    generator = torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> 1))
    return torch.randn((draws, *shape), generator=generator)


class StreamSampler:
    """Samples a stream chunk by chunk: ``next_chunk()`` returns the next clean latent chunk
    ``[B, C, c, H, W]`` and commits it. ``set_prompt`` switches the prompt before the next chunk.

    ``model`` is an :class:`~s2dit.model.transformer.S2DiT` (it needs ``init_state``/``forward_chunk``);
    ``size`` is the latent ``(H, W)``; ``channels`` the latent channels; ``cache_dtype`` the dtype of the
    K/V caches (default: the weights'). ``seed``: one seed for the batch, or one per stream (then each
    stream's noise is its own, whatever else is in the batch: what distributed training needs).
    """

    def __init__(
        self,
        model,
        cond: Condition,
        size: tuple[int, int],
        settings: StreamSettings | None = None,
        seed: int | list[int] = 0,
        channels: int | None = None,
        cache_dtype: torch.dtype | None = None,
    ):
        if not hasattr(model, "forward_chunk"):
            raise ConfigError(
                f"{type(model).__name__} cannot stream: streaming needs an S2DiT (a block-causal student)"
            )
        self.model = model
        self.settings = settings or StreamSettings()
        self.seed = seed
        self.size = size
        self.channels = channels or model.config.in_channels
        self.batch = cond.text.shape[0]
        self.device = next(model.parameters()).device
        self.state = model.init_state(cond.text, size[0], size[1], self.settings.spec, cond.mask, cache_dtype)
        self.chunks_done = 0

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels, self.settings.chunk_frames, *self.size)

    def set_prompt(self, cond: Condition) -> None:
        """From the next chunk on, follow ``cond`` (text K/V replaced, everything remembered kept)."""
        if cond.text.shape[0] != self.batch:
            raise ValueError(f"the stream has batch {self.batch}, the new prompt {cond.text.shape[0]}")
        self.model.set_prompt(self.state, cond.text, cond.mask)

    def _timesteps(self, sigma: float) -> torch.Tensor:
        return torch.full(
            (self.batch, self.settings.chunk_frames), sigma * NUM_TRAIN_TIMESTEPS, device=self.device
        )

    def _noise(self) -> torch.Tensor:
        draws, k = self.settings.steps + 1, self.chunks_done
        if isinstance(self.seed, int):
            return chunk_noise(self.seed, k, self.chunk_shape, draws)
        if len(self.seed) != self.batch:
            raise ValueError(f"{len(self.seed)} seeds for a batch of {self.batch} streams")
        one = (1, *self.chunk_shape[1:])
        return torch.cat([chunk_noise(s, k, one, draws) for s in self.seed], dim=1)

    def next_chunk(self, exit_step: int | None = None, grad: bool = False) -> torch.Tensor:
        """Denoise the next chunk (state read-only), commit it, return its clean latents.

        Self-forcing training (``s2dit.distill.dmd``) rolls out through this same method:
        ``exit_step`` stops the chunk's loop after that step (its x0 prediction is the chunk) and ``grad``
        keeps the autograd graph of that one step. Earlier steps and the commit never carry gradient.
        """
        s = self.settings
        noise = self._noise().to(self.device)
        x0 = denoise_chunk(
            lambda x, t: self.model.forward_chunk(x, t, self.state),
            noise,
            s.sigmas,
            self._timesteps,
            exit_step,
            grad,
        )
        with torch.no_grad():
            context = commit_input(x0.detach(), noise[-1], s.context_t)
            self.model.forward_chunk(
                context, self._timesteps(s.context_t / NUM_TRAIN_TIMESTEPS), self.state, True
            )
        self.chunks_done += 1
        return x0

    @torch.no_grad()
    def take(self, chunks: int, switch: tuple[int, Condition] | None = None) -> torch.Tensor:
        """``[B, C, chunks·c, H, W]``: the next ``chunks`` chunks, concatenated in time. ``switch =
        (k, cond)`` follows ``cond`` from the ``k``-th of them on (a prompt switch mid-stream)."""
        out = []
        for k in range(chunks):
            if switch is not None and k == switch[0]:
                self.set_prompt(switch[1])
            out.append(self.next_chunk())
        return torch.cat(out, dim=2)


def denoise_chunk(
    velocity,
    noise: torch.Tensor,
    sigmas: list[float],
    timesteps,
    exit_step: int | None = None,
    grad: bool = False,
) -> torch.Tensor:
    """The few-step loop of one chunk: ``x0 = x - σ·v``, re-noised with ``noise[i + 1]`` to the next
    level. ``velocity(x, t)``; ``noise [steps + 1, B, C, c, H, W]`` (the last draw is for the commit).

    ``exit_step``: stop after that step (default: the last); ``grad``: record the autograd graph of the
    exit step only (the steps before it run without gradient).
    """
    last = len(sigmas) - 1 if exit_step is None else exit_step
    if not 0 <= last < len(sigmas):
        raise ValueError(f"exit_step {exit_step} is not one of the {len(sigmas)} steps")
    x = noise[0].to(dtype=torch.float32)
    x0 = x
    for i, sigma in enumerate(sigmas[: last + 1]):
        with torch.set_grad_enabled(grad and i == last):
            t = timesteps(sigma)
            x0 = x0_from_velocity(x, velocity(x, t).float(), t / NUM_TRAIN_TIMESTEPS)
        if i < last:
            x = add_noise(x0, noise[i + 1].float(), torch.full_like(t, sigmas[i + 1]))
    return x0


def commit_input(x0: torch.Tensor, noise: torch.Tensor, context_t: float) -> torch.Tensor:
    """What the commit pass sees: the clean chunk, or it re-noised to ``context_t``."""
    if context_t == 0:
        return x0
    sigma = torch.full(x0.shape[:1] + x0.shape[2:3], context_t / NUM_TRAIN_TIMESTEPS, device=x0.device)
    return add_noise(x0, noise.float(), sigma)


@torch.no_grad()
def sample_block_causal(
    model,
    cond: Condition,
    size: tuple[int, int],
    chunks: int,
    settings: StreamSettings | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The stream of :class:`StreamSampler` without a state: ``[B, C, chunks·c, H, W]``.

    Each pass runs ``model(..., chunk_frames=c)`` over the committed chunks (the commit inputs, at the
    commit timestep) followed by the current chunk. Quadratic in the length: a reference, not a sampler.
    """
    s = settings or StreamSettings()
    c, B, C = s.chunk_frames, cond.text.shape[0], model.config.in_channels
    device = next(model.parameters()).device
    shape = (B, C, c, *size)
    history, history_t, out = [], [], []
    for k in range(chunks):
        noise = chunk_noise(seed, k, shape, s.steps + 1).to(device)

        def velocity(x, t, k=k):
            xs, ts = torch.cat([*history, x], dim=2), torch.cat([*history_t, t], dim=1)
            return model(xs, ts, cond.text, cond.mask, chunk_frames=c)[:, :, k * c :]

        def timesteps(sigma):
            return torch.full((B, c), sigma * NUM_TRAIN_TIMESTEPS, device=device)

        x0 = denoise_chunk(velocity, noise, s.sigmas, timesteps)
        history.append(commit_input(x0, noise[-1], s.context_t))
        history_t.append(timesteps(s.context_t / NUM_TRAIN_TIMESTEPS))
        out.append(x0)
    return torch.cat(out, dim=2)
