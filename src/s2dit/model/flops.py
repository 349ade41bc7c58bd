"""Parameter and FLOP counts of an S2DiT configuration, by formula (``s2dit model info``).

FLOPs count the matrix products of a bidirectional forward pass (2 per multiply-add: linear layers,
convolutions, attention scores and mixes, linear-attention state products), which is what
``torch.utils.flop_counter`` measures; element-wise work (norms, RoPE, activations) is not counted.
A test holds this formula to the measured count.
"""

from __future__ import annotations

import collections
import math

from s2dit.model.config import ModelConfig
from s2dit.model.ssa import coarse_grid, stages


def block_flops(kind: str, cfg: ModelConfig, tokens: int, frames: int, text_tokens: int) -> int:
    """One block over ``tokens`` video tokens in ``frames`` latent frames (bidirectional)."""
    D, N, d = cfg.width, tokens, cfg.head_dim
    kt = cfg.conv_kernel[0]
    # The causal conv pads time on both sides at the start of a sequence and drops the last k_t - 1 outputs.
    conv_frames = frames + kt - 1 if frames >= kt - 1 else frames
    cross = 2 * N * D * D * 2 + 4 * N * text_tokens * D  # q and out projections; scores + mix
    ffn = 4 * N * D * cfg.ffn_dim
    if kind == "L":
        mixer = (
            2 * N * D * 3 * D  # qkv
            + 2 * (2 * N * D * d)  # feature map on q and k (a d x d matrix per head)
            + 2 * (2 * N * D * d)  # Σ k̃ vᵀ and q̃ · S
            + 2 * N * D  # q · z, the denominator
            + 2 * N // frames * conv_frames * D * math.prod(cfg.conv_kernel)  # depthwise conv
            + 2 * N * D * D * 2  # conv channel mix, output projection
        )
    else:
        mixer = 2 * N * D * 3 * D + 4 * N * N * D + 2 * N * D * D
    return mixer + cross + ffn


def model_flops(cfg: ModelConfig, width: int, height: int, frames: int, text_tokens: int) -> dict[str, int]:
    """FLOPs of one bidirectional forward over a clip of ``frames`` latent frames at ``width × height``
    latent pixels, by part: ``"L"``, ``"S"``, ``"F"`` (blocks of each kind), ``"stages"`` (entry/exit),
    ``"embed"`` (patch, time, output head), ``"text"`` (text projection and per-block text K/V, paid
    once per prompt). Batch 1."""
    D = cfg.width
    full = (frames, height // 2, width // 2)
    coarse = coarse_grid(full)
    n_full, n_coarse = math.prod(full), math.prod(coarse)
    out: dict[str, int] = collections.Counter({"L": 0, "S": 0, "F": 0})
    for kind in cfg.layout:
        n = n_coarse if kind == "S" else n_full
        out[kind] += block_flops(kind, cfg, n, frames, text_tokens)
    out["stages"] = len(stages(cfg.layout)) * (2 * n_coarse * 4 * D * D * 2 + 2 * n_full * D * D)
    out["embed"] = (
        2 * n_full * D * cfg.in_channels * 4  # patch embedding
        + 2 * frames * (cfg.freq_dim * D + D * D + D * 6 * D)  # per-frame time embedding + modulation
        + 2 * n_full * D * cfg.in_channels * 4  # output projection
    )
    out["text"] = 2 * text_tokens * (cfg.text_dim * D + D * D) + len(cfg.layout) * 2 * (
        2 * text_tokens * D * D
    )
    return dict(out)


def parameter_counts(model) -> dict[str, int]:
    """Parameters by part: blocks of each kind, ``"stages"`` and ``"other"`` (embeddings, head)."""
    out = collections.Counter({"L": 0, "S": 0, "F": 0})
    for block in model.blocks:
        out[block.kind] += sum(p.numel() for p in block.parameters())
    out["stages"] = sum(p.numel() for m in (model.stage_down, model.stage_up) for p in m.parameters())
    out["other"] = sum(p.numel() for p in model.parameters()) - sum(out.values())
    return dict(out)
