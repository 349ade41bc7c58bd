"""The distillation stages as training methods (``method: kd | causal_ode | dmd`` of a training config).

The trainer (:mod:`s2dit.train.trainer`) sits below them, so they register themselves in its registry
(:mod:`s2dit.train.methods`) when this module is imported; ``s2dit train`` imports it.
"""

from __future__ import annotations

from s2dit.errors import S2DitError
from s2dit.train.config import TrainConfig
from s2dit.train.distributed import World
from s2dit.train.methods import register


def _cache(cfg: TrainConfig) -> str:
    if not cfg.distill.cache:
        raise S2DitError(f"method {cfg.method} needs distill.cache (a folder made by s2dit distill cache)")
    return cfg.distill.cache


def kd(cfg: TrainConfig, world: World):
    from s2dit.distill.kd import CachedKD

    d = cfg.distill
    return CachedKD(_cache(cfg), cfg.data.text_len, cfg.timesteps, cfg.seed, d.velocity_weight, d.flow_weight)


def causal_ode(cfg: TrainConfig, world: World):
    from s2dit.distill.causal_ode import CausalODE

    return CausalODE(_cache(cfg), cfg.data.text_len, cfg.distill.stream, cfg.seed)


def dmd(cfg: TrainConfig, world: World):
    from s2dit.distill.dmd import DMD

    return DMD(cfg.distill, world, cfg.seed)


register("kd", kd)
register("causal_ode", causal_ode)
register("dmd", dmd)
