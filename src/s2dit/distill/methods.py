"""Every training method by its config name (``method:`` of a training config).

The trainer (:mod:`s2dit.train.trainer`) knows flow matching only; the distillation stages sit above it,
so whoever starts a run hands the trainer :func:`build_method` (``s2dit train`` does).
"""

from __future__ import annotations

from s2dit.errors import S2DitError
from s2dit.train.config import TrainConfig
from s2dit.train.distributed import World
from s2dit.train.methods import flow_matching


def build_method(cfg: TrainConfig, world: World):
    """The training method named by ``cfg.method``."""
    d = cfg.distill
    if cfg.method == "flow_matching":
        return flow_matching(cfg, world)
    if cfg.method in ("kd", "causal_ode") and not d.cache:
        raise S2DitError(f"method {cfg.method} needs distill.cache (a folder made by s2dit distill cache)")
    if cfg.method == "kd":
        from s2dit.distill.kd import CachedKD

        return CachedKD(d.cache, cfg.data.text_len, cfg.timesteps, cfg.seed, d.velocity_weight, d.flow_weight)
    if cfg.method == "causal_ode":
        from s2dit.distill.causal_ode import CausalODE

        return CausalODE(d.cache, cfg.data.text_len, d.stream, cfg.seed)
    from s2dit.distill.dmd import DMD

    return DMD(d, world, cfg.seed)
