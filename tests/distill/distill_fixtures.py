"""A tiny distillation world on top of the shared ``latents`` folder: a random Wan teacher that reads its
text and latents, and its trajectory cache at the student's streaming levels."""

from __future__ import annotations

import torch

from s2dit.config import save_config
from s2dit.diffusion.pipeline import PipelineInfo
from s2dit.diffusion.streaming import StreamSettings
from s2dit.distill.cache import CacheConfig, build_cache
from s2dit.model.denoiser import DenoiserSpec, build_denoiser, save_denoiser
from s2dit.model.wan import WanConfig
from s2dit.train.config import DistillConfig

STREAM = StreamSettings(steps=4, shift=5.0, chunk_frames=1, window_chunks=3, sink_chunks=1)
LATENT_SHAPE = [16, 3, 6, 8]


def make_teacher(folder, seed: int = 0):
    """A random tiny Wan (off its zero init, so prompts and guidance matter) with a pipeline.yaml."""
    torch.manual_seed(seed)
    model = build_denoiser(
        DenoiserSpec(kind="wan", wan=WanConfig(layers=2, heads=2, head_dim=24, ffn_dim=96))
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_denoiser(model, folder)
    save_config(PipelineInfo(text_len=32, latent_shape=LATENT_SHAPE, shift=5.0), folder / "pipeline.yaml")
    return folder


def make_cache(teacher, micro_world, out, count: int = 8, shift: float = 5.0):
    """8 of the world's captions, 8 Euler steps at shift 5: the streaming levels are states 0, 2, 4, 6."""
    cfg = CacheConfig(
        teacher=str(teacher),
        prompts=str(micro_world / "clips.jsonl"),
        out=str(out),
        steps=8,
        cfg=3.0,
        shift=shift,
        batch=4,
        count=count,
    )
    build_cache(cfg, progress=False)
    return out


def distill_config(**kw) -> DistillConfig:
    return DistillConfig(stream=STREAM, **kw)
