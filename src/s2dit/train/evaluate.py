"""Periodic evaluation: sample held-out prompts with CFG, decode, write videos and a contact sheet, and
score them with the micro-world metrics when the clips carry micro-world attributes.

Output (``folder``): ``NNN.mp4`` (when PyAV is installed), ``prompts.jsonl`` (rows for
``s2dit eval micro``), ``contact_sheet.png``, ``latents.pt`` and ``scores.json``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from s2dit.atomic import atomic_path, write_text_atomic
from s2dit.diffusion.sampling import Condition, generate_latents
from s2dit.errors import S2DitError


@torch.no_grad()
def stream_latents(
    model, cond: Condition, shape: tuple[int, ...], settings, seeds: list[int], cache_dtype=None
) -> torch.Tensor:
    """``[B, *shape]`` latents streamed chunk by chunk (``s2dit stream``'s sampler, no CFG); stream ``i``
    is seeded by ``seeds[i]``. ``shape = (C, T, H, W)`` with ``T`` a whole number of chunks;
    ``cache_dtype``: the K/V caches' dtype (default: the weights')."""
    from s2dit.diffusion.streaming import StreamSampler

    C, T, H, W = shape
    if T % settings.chunk_frames:
        raise S2DitError(f"{T} latent frames are not whole chunks of {settings.chunk_frames}")
    sampler = StreamSampler(model, cond, (H, W), settings, seed=seeds, channels=C, cache_dtype=cache_dtype)
    return sampler.take(T // settings.chunk_frames)


@torch.no_grad()
def evaluate_heldout(
    model,
    data,
    e,
    vae,
    folder: Path,
    fps: float,
    device,
    amp=None,
    stream=None,
    frames: int | None = None,
    cache_dtype=None,
    noise_correlation: float = 0.0,
) -> dict | None:
    """Sample the first ``e.prompts`` held-out prompts of ``data`` (a ``LatentBatches``) with CFG against
    the empty prompt (or, with ``e.sampler == "stream"``, streamed with the ``stream`` settings), save the
    latents, decode with ``vae`` (if any) and write videos, a contact sheet and scores into ``folder``.
    ``e`` is an ``EvalConfig``; ``frames``: latent frames per clip (default: the data's); ``amp``: the
    sampling's autocast context; ``cache_dtype``: a stream's K/V cache dtype; ``noise_correlation``: the
    initial noise's across latent frames (the model's training noise). Returns the micro
    scores (``pass_rate``, ``accuracy``, ``mean_accuracy``, ``clips``) with ``seconds_per_video``
    (sampling only, no decode) and ``frames_per_second`` (decoded frames per second of that), or None."""
    import time
    from contextlib import nullcontext

    indices = (data.holdout or list(range(data.train_size)))[: e.prompts]
    clips = data.clips(indices)
    null_text, null_mask = data.null_text()
    B = len(indices)
    cond = Condition(clips["text"].to(device), clips["mask"].to(device))
    uncond = Condition(null_text.expand(B, -1, -1).to(device), null_mask.expand(B, -1).to(device))
    shape = list(clips["latents"].shape[1:])
    shape[1] = frames or shape[1]
    seeds = [e.seed + i for i in range(B)]
    tick = time.perf_counter()
    with amp or nullcontext():
        if e.sampler == "stream":
            if stream is None:
                raise S2DitError("streamed evaluation needs the model's stream settings")
            latents = stream_latents(model, cond, tuple(shape), stream, seeds, cache_dtype)
        else:
            latents = generate_latents(
                model,
                cond,
                uncond,
                tuple(shape),
                steps=e.steps,
                cfg=e.cfg,
                shift=e.shift,
                sampler=e.sampler,
                seeds=seeds,
                start_sigma=e.start_sigma,
                init=clips["latents"] if e.start_sigma < 1.0 else None,
                noise_correlation=noise_correlation,
            )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - tick) / B
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(latents.float().cpu(), folder / "latents.pt")
    if vae is None:
        return None
    pixels = vae.decode(latents.float().cpu())
    captions = [r.get("caption", "") for r in clips["rows"]]
    scores = write_samples(folder, pixels, captions, clips["rows"], fps)
    if scores is not None:
        scores["seconds_per_video"] = seconds
        scores["frames_per_second"] = pixels.shape[2] / seconds if seconds > 0 else None
        write_text_atomic(folder / "scores.json", json.dumps(scores, indent=1))
    return scores


def write_samples(
    folder: Path, pixels: torch.Tensor, captions: list[str], rows: list[dict], fps: float
) -> dict | None:
    """Videos, a contact sheet and (for micro-world prompts) scores of decoded ``pixels [B, 3, F, H, W]``."""
    from s2dit.data.micro.captions import parse_caption
    from s2dit.videoio import contact_sheet, pixels_to_uint8, write_video

    try:
        from s2dit.data.micro.metrics import score_clip, summarize
    except ImportError as e:  # scipy missing (a lean GPU box): samples are written, not scored
        warnings.warn(f"micro-world scoring unavailable ({e})", stacklevel=2)
        score_clip = None

    folder.mkdir(parents=True, exist_ok=True)
    clips = [pixels_to_uint8(p) for p in pixels]
    prompt_rows = []
    try:
        for i, clip in enumerate(clips):
            write_video(folder / f"{i:03d}.mp4", clip, fps)
    except S2DitError as e:  # PyAV missing (a lean GPU box): the contact sheet and scores still come
        warnings.warn(f"{e}: no sample videos written", stacklevel=2)
    results = []
    for i, (clip, caption, row) in enumerate(zip(clips, captions, rows, strict=True)):
        objects = row.get("objects") or parse_caption(caption)["objects"]
        prompt_rows.append({"caption": caption, "objects": objects, "video": f"{i:03d}.mp4"})
        if objects and score_clip is not None:
            results.append(score_clip(clip, objects))
    write_text_atomic(folder / "prompts.jsonl", "".join(json.dumps(r) + "\n" for r in prompt_rows))
    try:
        with atomic_path(folder / "contact_sheet.png") as tmp:
            contact_sheet(clips, captions, tmp)
    except ImportError:
        warnings.warn("Pillow is not installed: no contact sheet written", stacklevel=2)
    if not results:
        return None
    scores = {**summarize(results), "clips": len(results)}  # pass_rate (the headline), accuracy, mean
    write_text_atomic(folder / "scores.json", json.dumps(scores, indent=1))
    return scores


def source_pixels(root: Path, video: str, spec) -> torch.Tensor:
    """A source clip as the encoder saw it: ``[3, F, H, W]`` in [-1, 1] at ``spec``'s frames and rate."""
    from s2dit.data.video_folder import resize_center_crop, source_indices
    from s2dit.videoio import read_video

    frames, fps = read_video(root / video)
    idx = source_indices(len(frames), fps, spec)
    if idx is None:
        raise S2DitError(f"{root / video}: too short for {spec.frames} frames at {spec.fps:g} fps")
    return resize_center_crop(torch.from_numpy(frames[idx]), spec.width, spec.height)


@torch.no_grad()
def evaluate_ceilings(data, e, vae, folder: Path, fps: float, source: dict) -> dict[str, dict]:
    """The metric's ceilings on the prompts :func:`evaluate_heldout` samples: the source clips themselves
    (``"ground truth"``, when the folder that was encoded is still there) and their latents decoded by the
    VAE (``"VAE reconstruction"``: what a perfect denoiser would score). Scores by name; {} if none."""
    from s2dit.config import VideoSpec, from_dict

    indices = (data.holdout or list(range(data.train_size)))[: e.prompts]
    clips = data.clips(indices)
    captions = [r.get("caption", "") for r in clips["rows"]]
    out = {}
    root = Path(source.get("videos", ""))
    if source.get("videos") and all((root / r.get("video", "")).is_file() for r in clips["rows"]):
        spec = from_dict(VideoSpec, source.get("video", {}))
        pixels = torch.stack([source_pixels(root, r["video"], spec) for r in clips["rows"]])
        scores = write_samples(folder / "ground_truth", pixels, captions, clips["rows"], fps)
        if scores is not None:
            out["ground truth"] = scores
    if vae is not None:
        pixels = vae.decode(clips["latents"].float())
        scores = write_samples(folder / "vae_reconstruction", pixels, captions, clips["rows"], fps)
        if scores is not None:
            out["VAE reconstruction"] = scores
    return out
