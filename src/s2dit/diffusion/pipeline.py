"""Bidirectional text-to-video generation from any of our denoisers: ``s2dit generate``.

A trained model folder carries ``pipeline.yaml`` (:class:`PipelineInfo`): the text encoder and VAE it was
trained with, the latent shape, and sampling defaults. The prompt (and the negative prompt, empty by
default) are encoded, the latents sampled with CFG, decoded, and written as an mp4 and a contact sheet.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import torch

from s2dit.config import from_dict
from s2dit.diffusion.sampler_names import BIDIRECTIONAL, listed
from s2dit.diffusion.streaming import StreamSettings
from s2dit.errors import S2DitError
from s2dit.files import read_yaml


@dataclasses.dataclass
class PipelineInfo:
    text: str = "minilm"  # "minilm" or a local text-encoder folder
    text_len: int = 64
    vae: str = ""  # tiny-autoencoder folder or diffusers Wan VAE folder
    latent_shape: list[int] = dataclasses.field(default_factory=lambda: [16, 9, 18, 32])  # C, T, H, W
    fps: float = 16.0
    steps: int = 50
    cfg: float = 5.0  # CFG scale g in u + g·(c - u)
    shift: float = 3.0
    sampler: str = "unipc"
    noise_correlation: float = 0.0  # the training noise's correlation across latent frames (sampled the same)
    stream: StreamSettings = dataclasses.field(default_factory=StreamSettings)  # s2dit stream / serve


def read_pipeline(checkpoint: str | os.PathLike) -> PipelineInfo:
    """The ``pipeline.yaml`` of a model folder or run (defaults when there is none), its paths resolved."""
    path = Path(checkpoint)
    for candidate in (path / "pipeline.yaml", path / "model" / "pipeline.yaml"):
        if candidate.is_file():
            info = from_dict(PipelineInfo, read_yaml(candidate))
            info.vae = resolve_path(info.vae, candidate.parent)
            if info.text not in ("minilm", "hashed"):
                info.text = resolve_path(info.text, candidate.parent)
            return info
    return PipelineInfo()


def resolve_path(value: str, folder: Path) -> str:
    """A path named in a ``pipeline.yaml`` in ``folder``: relative to that folder (``../micro_vae_v1``), so
    the model works from any directory. Older files named paths relative to the repository root (where
    the trainer ran): the working directory, then the repository root, are tried next. Unchanged when
    none exists (the loader then says what is missing)."""
    from s2dit.shipped import REPO

    if not value or Path(value).is_absolute():
        return value
    for base in (folder, Path.cwd(), REPO):
        if (base / value).exists():
            return value if base == Path.cwd() else os.path.normpath(base / value)
    return value


MAX_STEPS = 10_000  # a sampling schedule longer than this is a typo, not a request
MAX_LATENT_FRAMES = 1024  # the temporal positions Wan's RoPE tables cover (diffusers' max_seq_len)


@dataclasses.dataclass
class GenerateRequest:
    prompt: str
    checkpoint: str
    out: str = "out.mp4"
    steps: int | None = None
    cfg: float | None = None
    shift: float | None = None
    sampler: str | None = None
    seed: int = 0
    negative: str = ""
    vae: str | None = None
    frames: int | None = None  # latent frames
    device: str = "cpu"


def generate(req: GenerateRequest, progress: bool = True) -> dict:
    """Write ``req.out`` (mp4) and its contact sheet (``.png`` beside it); returns what was done."""
    from s2dit.diffusion.sampling import SAMPLERS, Condition, generate_latents
    from s2dit.latent.text import load_text_encoder, pad_text
    from s2dit.latent.vae import load_vae
    from s2dit.model.denoiser import load_denoiser, text_dim
    from s2dit.videoio import contact_sheet, pixels_to_uint8, write_video

    if not Path(req.checkpoint).exists():
        raise S2DitError(f"--checkpoint {req.checkpoint} does not exist")
    info = read_pipeline(req.checkpoint)
    steps, cfg = req.steps or info.steps, info.cfg if req.cfg is None else req.cfg
    shift, sampler = req.shift or info.shift, req.sampler or info.sampler
    if req.sampler is None and info.sampler == "stream":
        raise S2DitError(
            f"{req.checkpoint} is a streaming model (its pipeline.yaml says sampler: stream): "
            f"use s2dit stream, or pass --sampler {'|'.join(BIDIRECTIONAL)} "
            "to sample it bidirectionally anyway"
        )
    if sampler not in SAMPLERS:
        raise S2DitError(f"--sampler {sampler!r}: choose from {listed(SAMPLERS)}")
    if not (steps >= 1 and 0 <= cfg < math.inf and 0 < shift < math.inf):  # NaN fails too
        raise S2DitError("--steps must be >= 1, --cfg >= 0 and --shift > 0 (finite)")
    if steps > MAX_STEPS:
        raise S2DitError(f"--steps {steps}: at most {MAX_STEPS}")
    if req.frames is not None and not 1 <= req.frames <= MAX_LATENT_FRAMES:
        raise S2DitError(f"--frames {req.frames}: give 1 to {MAX_LATENT_FRAMES} latent frames")
    if not req.prompt.strip():
        raise S2DitError("the prompt is empty")
    vae_path = req.vae or info.vae
    if not vae_path:
        raise S2DitError(
            "no VAE known for this checkpoint: pass --vae (a tiny_ae folder or a Wan VAE folder)"
        )
    model = load_denoiser(req.checkpoint, req.device)
    encoder = load_text_encoder(info.text, info.text_len)
    texts = []
    for prompt in (req.prompt, req.negative):
        tokens, mask = encoder.encode([prompt])
        texts.append(tokens[0][mask[0]])
    if texts[0].shape[-1] != text_dim(model):
        raise S2DitError(
            f"the text encoder {info.text!r} gives {texts[0].shape[-1]}-d tokens, "
            f"the model expects {text_dim(model)}"
        )
    (text, mask), (neg, neg_mask) = (pad_text([t], info.text_len) for t in texts)
    dev = torch.device(req.device)
    shape = list(info.latent_shape)
    if req.frames is not None:
        shape[1] = req.frames
    latents = generate_latents(
        model,
        Condition(text.to(dev), mask.to(dev)),
        Condition(neg.to(dev), neg_mask.to(dev)),
        tuple(shape),
        steps=steps,
        cfg=cfg,
        shift=shift,
        sampler=sampler,
        seeds=[req.seed],
        progress=progress,
        noise_correlation=info.noise_correlation,
    )
    vae = load_vae(vae_path)
    with torch.no_grad():
        frames = pixels_to_uint8(vae.decode(latents.float().cpu())[0])
    out = Path(req.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, info.fps)
    sheet = out.with_suffix(".png")
    contact_sheet([frames], [req.prompt], sheet)
    return {
        "video": str(out),
        "contact_sheet": str(sheet),
        "frames": len(frames),
        "steps": steps,
        "cfg": cfg,
        "shift": shift,
        "sampler": sampler,
        "seed": req.seed,
    }
