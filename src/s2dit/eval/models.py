"""``s2dit eval model``: sample held-out prompts from one or more checkpoints and score them.

Each model samples the same held-out prompts of an encoded latent folder with the same seeds (the
training's evaluation, :func:`s2dit.train.evaluate.evaluate_heldout`), with its sampling time per video
measured in the same run; the prompts' source clips and their VAE reconstructions are scored beside them
as the ceilings. The headline of each row is the prompt pass rate (docs/architecture.md, the metric).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from s2dit.diffusion.sampler_names import ALL as SAMPLERS
from s2dit.diffusion.sampler_names import BIDIRECTIONAL, listed
from s2dit.errors import S2DitError
from s2dit.precision import autocast


def compare_models(
    checkpoints: list[str | os.PathLike],
    latents: str | os.PathLike,
    out: str | os.PathLike,
    *,
    holdout: int = 64,
    prompts: int = 16,
    steps: int | None = None,
    cfg: float | None = None,
    shift: float | None = None,
    sampler: str | None = None,
    frames: int | None = None,
    start_sigma: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    ceilings: bool = True,
    dtype: torch.dtype = torch.float32,
    notice=print,
) -> list[dict]:
    """One result row per scored model (then the ceilings): ``checkpoint``, ``steps``, ``cfg`` (as shown),
    the scores of :func:`~s2dit.train.evaluate.evaluate_heldout` (``pass_rate``, ``accuracy``, ...) and
    ``seconds_per_video`` and ``frames_per_second`` (decoded frames per second of sampling, decode
    excluded). ``steps``/``cfg``/``shift``/``sampler`` left ``None`` take each model's
    ``pipeline.yaml``; ``frames`` (latent frames per video) the training length; ``start_sigma < 1``
    samples from the held-out clips noised to that level (SDEdit), to find where a model loses a prompt.
    ``dtype`` bfloat16 samples under bf16 autocast (streams with bf16 K/V caches; linear-attention sums
    stay float32). Outputs go to ``out`` (one sub-folder per model when there are several); ``notice``
    hears about models it could not score."""
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.latent.vae import load_vae
    from s2dit.model.denoiser import load_denoiser
    from s2dit.train.config import EvalConfig
    from s2dit.train.data import LatentBatches
    from s2dit.train.evaluate import evaluate_ceilings, evaluate_heldout
    from s2dit.train.trainer import latent_source

    paths = [Path(c) for c in checkpoints]
    out = Path(out)
    for c in paths:
        if not c.exists():
            raise S2DitError(f"--checkpoint {c} does not exist")
    if sampler is not None and sampler not in SAMPLERS:
        raise S2DitError(f"--sampler {sampler!r}: choose from {listed(SAMPLERS)}")
    if frames is not None and frames < 1:
        raise S2DitError(f"--frames {frames} must be at least 1")
    if not 0.0 < start_sigma <= 1.0:
        raise S2DitError(f"--start-sigma {start_sigma:g} must lie in (0, 1]")
    if start_sigma < 1.0 and frames is not None:
        raise S2DitError("--start-sigma below 1 starts from the held-out clips: leave --frames out")
    bf16 = dtype == torch.bfloat16
    results = []
    for n, path in enumerate(paths):
        info = read_pipeline(path)
        if start_sigma < 1.0 and (sampler or info.sampler) == "stream":
            raise S2DitError(
                f"--start-sigma below 1 needs --sampler {listed(BIDIRECTIONAL)} ({path} streams)"
            )
        e = EvalConfig(
            prompts=prompts,
            steps=steps or info.steps,
            cfg=info.cfg if cfg is None else cfg,
            shift=shift or info.shift,
            sampler=sampler or info.sampler,
            seed=seed,
            start_sigma=start_sigma,
        )
        data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
        model = load_denoiser(path, device)
        if e.sampler == "stream" and not hasattr(model, "forward_chunk"):
            raise S2DitError(f"{path} is not an S2DiT: it cannot stream (use --sampler unipc)")
        vae = load_vae(info.vae) if info.vae else None
        folder = out if len(paths) == 1 else out / f"{n}-{path.name}"
        amp = autocast("bfloat16" if bf16 else "float32", device)
        scores = evaluate_heldout(
            model,
            data,
            e,
            vae,
            folder,
            info.fps,
            torch.device(device),
            amp=amp,
            stream=info.stream,
            frames=frames,
            cache_dtype=torch.bfloat16 if bf16 else None,
            noise_correlation=info.noise_correlation,
        )
        if scores is None:
            notice(f"{path}: latents written to {folder} (no VAE, or no micro-world prompts)")
            continue
        steps_text = f"{info.stream.steps} stream" if e.sampler == "stream" else str(e.steps)
        cfg_text = "-" if e.sampler == "stream" else f"{e.cfg:g}"
        results.append({"checkpoint": str(path), "steps": steps_text, "cfg": cfg_text, **scores})
    if results and ceilings:
        info = read_pipeline(paths[0])
        data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
        vae = load_vae(info.vae) if info.vae else None
        e = EvalConfig(prompts=prompts, seed=seed)
        found = evaluate_ceilings(data, e, vae, out / "ceilings", info.fps, latent_source(str(latents)))
        for name, scores in found.items():
            results.append(
                {
                    "checkpoint": name,
                    "steps": "-",
                    "cfg": "-",
                    **scores,
                    "seconds_per_video": None,
                    "frames_per_second": None,
                }
            )
    return results
