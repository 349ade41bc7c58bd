"""Training methods: each turns a batch into a loss. The trainer owns everything else (processes,
precision, accumulation, clipping, EMA, checkpoints, logging), so KD and DMD plug in as new methods.

The methods by their ``method:`` name are one dict, filled by :func:`register`. Flow matching registers
below; the distillation stages sit above the trainer (docs/architecture.md §1) and register when
:mod:`s2dit.distill.methods` is imported (``s2dit train`` imports it), so the trainer names none of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from s2dit.diffusion.flow import (
    NUM_TRAIN_TIMESTEPS,
    add_noise,
    flow_matching_loss,
    frame_noise,
    sample_levels,
)
from s2dit.diffusion.timesteps import TimestepSampling
from s2dit.errors import ConfigError
from s2dit.train.data import sample_generator


class FlowMatching:
    """Flow-matching pretraining (docs/architecture.md §2): per-sample noise (its latent frames correlated
    by ``noise_correlation``, :func:`~s2dit.diffusion.flow.frame_noise`), noise levels (per frame if
    asked) and prompt dropout drawn from generators seeded by the sample's position. The loss is the plain
    mean over positions: a weight that depends on the clean latents (say, more weight where objects are)
    would bias the learned distribution towards what it weights (docs/architecture.md, the micro teacher)."""

    def __init__(
        self,
        timesteps: TimestepSampling,
        cfg_dropout: float,
        seed: int,
        chunk_frames: int = 0,
        noise_correlation: float = 0.0,
    ):
        self.timesteps, self.cfg_dropout, self.seed = timesteps, cfg_dropout, seed
        self.chunk_frames = chunk_frames or None
        self.noise_correlation = noise_correlation

    def inputs(self, batch: dict, null: tuple[torch.Tensor, torch.Tensor]) -> dict:
        """Noise, noise levels and dropped prompts for a batch (CPU tensors)."""
        x0, text, mask = batch["latents"], batch["text"].clone(), batch["mask"].clone()
        noise, sigma = torch.empty_like(x0), torch.empty(x0.shape[0], x0.shape[2])
        for i, p in enumerate(batch["positions"]):
            g = sample_generator(self.seed, p)
            noise[i] = frame_noise(x0.shape[1:], g, self.noise_correlation, x0.dtype)
            sigma[i] = sample_levels(self.timesteps, 1, x0.shape[2], g)[0]
            if float(torch.rand((), generator=g)) < self.cfg_dropout:
                text[i], mask[i] = null[0][0], null[1][0]
        return {"x0": x0, "noise": noise, "sigma": sigma, "text": text, "mask": mask}

    def loss(self, model, batch: dict, null, device, step: int = 0) -> tuple[torch.Tensor, dict]:
        d = {k: v.to(device) for k, v in self.inputs(batch, null).items()}
        x = add_noise(d["x0"], d["noise"], d["sigma"])
        v = model(x, d["sigma"] * NUM_TRAIN_TIMESTEPS, d["text"], d["mask"], chunk_frames=self.chunk_frames)
        return flow_matching_loss(v, d["x0"], d["noise"]), {}


# name -> builder(cfg, world) -> method
_BUILDERS: dict[str, Callable] = {}


def register(name: str, builder: Callable) -> None:
    """Make ``method: name`` build its method with ``builder(cfg, world)``."""
    if _BUILDERS.get(name, builder) is not builder:
        raise ValueError(f"training method {name!r} is registered twice")
    _BUILDERS[name] = builder


def names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_BUILDERS)


def check(name: str) -> None:
    """Refuse a ``method:`` that no imported module registered."""
    if name not in _BUILDERS:
        raise ConfigError(f"method: {name!r} must be one of {', '.join(_BUILDERS)}")


def build(cfg, world=None):
    """The method named by ``cfg.method`` (a ``TrainConfig``), built for ``world``."""
    check(cfg.method)
    return _BUILDERS[cfg.method](cfg, world)


def flow_matching(cfg, world=None) -> FlowMatching:
    """``method: flow_matching``, from a ``TrainConfig``."""
    return FlowMatching(cfg.timesteps, cfg.cfg_dropout, cfg.seed, cfg.chunk_frames, cfg.noise_correlation)


register("flow_matching", flow_matching)
