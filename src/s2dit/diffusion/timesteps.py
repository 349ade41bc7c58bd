"""How training draws noise levels: the settings (:class:`TimestepSampling`); :func:`s2dit.diffusion.flow.
sample_levels` draws them. Free of torch, so that configs holding these settings load (and the command line
builds options from them) without it."""

from __future__ import annotations

import dataclasses

from s2dit.errors import ConfigError


@dataclasses.dataclass
class TimestepSampling:
    """How training draws noise levels.

    ``distribution``: ``uniform`` (σ ~ U(0, 1)) or ``logit_normal`` (σ = sigmoid(N(mean, std))), then
    shifted by ``shift``. ``per_frame``: one level per latent frame (diffusion-forcing style) instead of one
    per clip. ``min_sigma``/``max_sigma`` restrict the distribution to that range (its shape
    inside kept, nothing piled up at the bounds): the noise levels one expert of a two-expert model trains on.
    """

    distribution: str = "logit_normal"
    shift: float = 1.0
    mean: float = 0.0
    std: float = 1.0
    per_frame: bool = False
    min_sigma: float = 0.0
    max_sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.distribution not in ("uniform", "logit_normal"):
            raise ConfigError(f"distribution: {self.distribution!r} must be 'uniform' or 'logit_normal'")
        if self.shift <= 0 or self.std <= 0:
            raise ConfigError("shift and std must be positive")
        if not 0 <= self.min_sigma < self.max_sigma <= 1:
            raise ConfigError("need 0 <= min_sigma < max_sigma <= 1")
