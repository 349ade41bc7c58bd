"""Shipping a trained model into ``weights/<name>``, with a recorded check of the scores claimed for it.

:func:`ship` copies a trained model folder (a run's ``model/``) with its weights in bfloat16 (they load as
float32) and its ``pipeline.yaml``'s VAE path made relative to the new folder. ``weights/<name>/check.json``
holds a few held-out micro-world prompts, the noise seed of each, the
sampling settings and which prompts passed the strict metric when the model was shipped. :func:`score`
samples them again (the model's own pipeline: its text encoder, VAE and sampler) and scores each clip with
:func:`~s2dit.data.micro.metrics.score_clip`; a slow test compares the two.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from s2dit.atomic import write_text_atomic
from s2dit.config import from_dict
from s2dit.errors import S2DitError
from s2dit.files import load_safetensors, read_yaml

CHECK_FILE = "check.json"


@dataclasses.dataclass
class ShippedCheck:
    captions: list[str]
    seeds: list[int]
    passed: list[bool]  # per caption, when shipped
    mean_accuracy: float  # the lenient mean of the per-attribute accuracies over these prompts
    steps: int
    cfg: float
    shift: float
    sampler: str  # "euler", "unipc" or "stream" (chunk by chunk, no CFG)

    def __post_init__(self) -> None:
        if not len(self.captions) == len(self.seeds) == len(self.passed) or not self.captions:
            raise S2DitError(f"{CHECK_FILE}: captions, seeds and passed must be non-empty and equally long")

    @property
    def pass_rate(self) -> float:
        return sum(self.passed) / len(self.passed)


def ship(source: str | Path, dest: str | Path) -> Path:
    """Copy the model folder ``source`` (or a run holding ``model/``) to ``dest`` in one step: the same files,
    floating-point tensors stored as bfloat16, ``pipeline.yaml``'s ``vae`` relative to ``dest``."""
    import shutil

    from safetensors.torch import save_file

    from s2dit.atomic import atomic_folder
    from s2dit.diffusion.pipeline import read_pipeline

    source, dest = Path(source), Path(dest)
    if (source / "model" / "pipeline.yaml").is_file():
        source = source / "model"
    if not (source / "pipeline.yaml").is_file():
        raise S2DitError(f"{source}: not a trained model folder (no pipeline.yaml)")
    read_pipeline(source)  # a damaged pipeline.yaml is one error before anything is written
    with atomic_folder(dest) as tmp:
        for f in sorted(source.rglob("*")):  # two experts keep theirs in transformer/ and transformer_2/
            target = tmp / f.relative_to(source)
            if f.is_dir():
                target.mkdir()
            elif f.suffix == ".safetensors":
                state = load_safetensors(f)
                half = {k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}
                save_file(half, str(target))
            elif f.is_file():
                shutil.copy2(f, target)
        _copy_pipeline(source, tmp, dest)
    return dest


def _copy_pipeline(source: Path, tmp: Path, dest: Path) -> None:
    """``source``'s ``pipeline.yaml`` into ``tmp`` (to become ``dest``), its VAE path relative to ``dest``."""
    import yaml

    from s2dit.diffusion.pipeline import read_pipeline

    pipeline, vae = read_yaml(source / "pipeline.yaml"), read_pipeline(source).vae
    if vae:
        pipeline["vae"] = os.path.relpath(Path(vae).resolve(), dest.resolve())
    write_text_atomic(tmp / "pipeline.yaml", yaml.safe_dump(pipeline, sort_keys=False))


def join_experts(high: str | Path, low: str | Path, dest: str | Path, boundary: float) -> Path:
    """A Wan2.2-style two-expert folder at ``dest`` (in one step): ``high``'s Wan model as ``transformer/``
    (noise levels σ >= ``boundary``), ``low``'s as ``transformer_2/`` (below), ``model_index.json`` with
    ``boundary_ratio``, and ``high``'s ``pipeline.yaml`` (its VAE path made relative to ``dest``). Each of
    ``high`` and ``low`` is a Wan model folder or a run holding ``model/``."""
    import shutil

    from s2dit.atomic import atomic_folder
    from s2dit.model.denoiser import load_denoiser
    from s2dit.model.wan import WanDenoiser, WanTwoExperts

    if not 0.0 < boundary < 1.0:
        raise S2DitError(f"--boundary {boundary:g} must lie strictly between 0 and 1 (a noise level)")
    folders, experts = [], []
    for role, path in (("high", Path(high)), ("low", Path(low))):
        if (path / "model" / "config.json").is_file():
            path = path / "model"
        model = load_denoiser(path) if (path / "config.json").is_file() else None
        if not isinstance(model, WanDenoiser):
            raise S2DitError(f"the {role} expert {path} is not a Wan model folder (config.json + weights)")
        folders.append(path)
        experts.append(model)
    WanTwoExperts(*experts, boundary * 1000.0)  # refuses experts that read text of different widths
    dest = Path(dest)
    with atomic_folder(dest) as tmp:
        for name, path in zip(("transformer", "transformer_2"), folders, strict=True):
            (tmp / name).mkdir()
            for f in path.iterdir():
                if f.is_file() and (f.name == "config.json" or f.suffix == ".safetensors"):
                    shutil.copy2(f, tmp / name / f.name)
        index = {"_class_name": "WanPipeline", "boundary_ratio": boundary}
        write_text_atomic(tmp / "model_index.json", json.dumps(index, indent=1))
        if (folders[0] / "pipeline.yaml").is_file():
            _copy_pipeline(folders[0], tmp, dest)
    return dest


def score(
    folder: str | Path,
    captions: list[str],
    seeds: list[int],
    *,
    steps: int,
    cfg: float,
    shift: float,
    sampler: str,
    device: str = "cpu",
) -> dict:
    """Sample each caption from the model in ``folder`` with its seed and score it: ``passed`` (per caption,
    the strict metric) and ``mean_accuracy`` (over all of them)."""
    from s2dit.data.micro.captions import parse_caption
    from s2dit.data.micro.metrics import score_clip, summarize
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.diffusion.sampling import Condition, generate_latents
    from s2dit.latent.text import load_text_encoder, pad_text
    from s2dit.latent.vae import load_vae
    from s2dit.model.denoiser import load_denoiser
    from s2dit.train.evaluate import stream_latents
    from s2dit.videoio import pixels_to_uint8

    info = read_pipeline(folder)
    if not info.vae:
        raise S2DitError(f"{folder}: its pipeline.yaml names no VAE, so its clips cannot be scored")
    model = load_denoiser(folder, device)
    encoder = load_text_encoder(info.text, info.text_len)
    tokens, mask = encoder.encode([*captions, ""])
    text, text_mask = pad_text([t[m] for t, m in zip(tokens, mask, strict=True)], info.text_len)
    dev = torch.device(device)
    cond = Condition(text[:-1].to(dev), text_mask[:-1].to(dev))
    B = len(captions)
    uncond = Condition(text[-1:].expand(B, -1, -1).to(dev), text_mask[-1:].expand(B, -1).to(dev))
    shape = tuple(info.latent_shape)
    if sampler == "stream":
        latents = stream_latents(model, cond, shape, info.stream, seeds)
    else:
        latents = generate_latents(
            model,
            cond,
            uncond,
            shape,
            steps=steps,
            cfg=cfg,
            shift=shift,
            sampler=sampler,
            seeds=seeds,
            noise_correlation=info.noise_correlation,
        )
    with torch.no_grad():
        pixels = load_vae(info.vae).decode(latents.float().cpu())
    results = [
        score_clip(pixels_to_uint8(clip), parse_caption(caption)["objects"])
        for clip, caption in zip(pixels, captions, strict=True)
    ]
    return {
        "passed": [bool(r["passed"]) for r in results],
        "mean_accuracy": summarize(results)["mean_accuracy"],
    }


def record(folder: str | Path, captions: list[str], seeds: list[int], **settings) -> ShippedCheck:
    """Sample and score ``captions`` now and write the result as ``folder/check.json``."""
    found = score(folder, captions, seeds, **settings)
    check = ShippedCheck(captions=list(captions), seeds=list(seeds), **found, **settings)
    write_text_atomic(Path(folder) / CHECK_FILE, json.dumps(dataclasses.asdict(check), indent=1))
    return check


def read(folder: str | Path) -> ShippedCheck:
    """``folder/check.json``; a one-line error when it is missing or malformed."""
    path = Path(folder) / CHECK_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise S2DitError(f"{path}: cannot read the recorded check ({e})") from None
    if not isinstance(data, dict):
        raise S2DitError(f"{path}: expected a JSON object")
    return from_dict(ShippedCheck, data)
