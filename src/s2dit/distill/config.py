"""Settings of the distillation methods (``method: kd | causal_ode | dmd`` in a training config)."""

from __future__ import annotations

import dataclasses

from s2dit.diffusion.streaming import StreamSettings
from s2dit.errors import ConfigError


@dataclasses.dataclass
class DistillConfig:
    """Read by the distillation methods of :mod:`s2dit.distill`; ignored by flow-matching runs.

    ``stream`` is the student's streaming schedule (chunk, steps, shift, commit level): the causal ODE stage
    regresses at its levels, DMD rolls out with it, and the trained model's ``pipeline.yaml`` carries it.
    """

    cache: str = ""  # kd, causal_ode: a trajectory cache made by s2dit distill cache
    velocity_weight: float = 1.0  # kd: teacher velocity matching at cached states
    flow_weight: float = 1.0  # kd: flow matching on the teacher's final latents
    teacher: str = ""  # dmd: the real score (frozen, with CFG)
    critic: str = ""  # dmd: the fake score's starting weights (default: the teacher)
    cfg: float = 5.0  # dmd: CFG scale of the real score, u + g·(c - u)
    generator_every: int = 5  # dmd: one generator update per this many critic updates
    critic_lr: float = 4e-7
    critic_betas: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.999])
    min_sigma: float = 0.02  # dmd: noise levels drawn uniformly in [min_sigma, max_sigma], then shifted
    max_sigma: float = 0.98
    shift: float = 5.0
    stream: StreamSettings = dataclasses.field(default_factory=StreamSettings)

    def __post_init__(self) -> None:
        if self.velocity_weight < 0 or self.flow_weight < 0 or self.velocity_weight + self.flow_weight == 0:
            raise ConfigError("distill: velocity_weight and flow_weight must be >= 0, not both 0")
        if self.generator_every < 1 or self.critic_lr <= 0 or len(self.critic_betas) != 2:
            raise ConfigError(
                "distill: generator_every >= 1, critic_lr > 0 and two critic_betas are required"
            )
        if not 0 <= self.min_sigma < self.max_sigma <= 1 or self.shift <= 0:
            raise ConfigError("distill: need 0 <= min_sigma < max_sigma <= 1 and shift > 0")
        if self.cfg < 0:
            raise ConfigError(f"distill.cfg: {self.cfg} must be >= 0")
