"""Tiny training configs shared by the trainer tests."""

from __future__ import annotations

from s2dit.model.config import ModelConfig
from s2dit.model.denoiser import DenoiserSpec
from s2dit.model.wan import WanConfig
from s2dit.train.config import DataConfig, EvalConfig, OptimConfig, TrainConfig

TINY_S2DIT = ModelConfig(layout="LSSL", width=48, heads=2, ffn_dim=96, text_dim=384)
TINY_WAN = WanConfig(layers=2, heads=2, head_dim=24, ffn_dim=96, text_dim=384)


def tiny_config(latents, out, kind: str = "s2dit", **kw) -> TrainConfig:
    """A run that takes a second or two on the CPU."""
    base = dict(
        out=str(out),
        model=DenoiserSpec(kind=kind, s2dit=TINY_S2DIT, wan=TINY_WAN),
        data=DataConfig(latents=str(latents), text_len=32, holdout=4),
        optim=OptimConfig(lr=1e-3, warmup_steps=2),
        eval=EvalConfig(every=0, prompts=2, steps=4),
        steps=6,
        batch_size=4,
        log_every=1,
        checkpoint_every=3,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)
