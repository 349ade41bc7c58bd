"""``s2dit train decoder``: distil a fast streaming decoder for another VAE's latents (DESIGN.md §4).

The VAE to imitate (a diffusers Wan VAE folder, e.g. the real Wan2.1 VAE, or a tiny-autoencoder folder)
encodes random crops of random clips; the student, the decoder half of a :class:`TinyAutoencoder`, learns to
decode those (normalised) latents into what the VAE itself decodes (``target: vae``, the default) or into the
input pixels (``target: pixels``), with the object-weighted L1 of ``s2dit train vae``. Only the decoder's
parameters train; the result is a tiny-autoencoder folder whose config names the VAE it decodes for
(``decodes_for``) and refuses to encode. It plugs in wherever a streaming decoder is used (``--vae`` of
``s2dit stream``), and ``s2dit eval vae --vae VAE --decoder OUT`` measures it against the VAE.

Batches come from a generator seeded by ``(seed, step)`` and checkpoints are atomic, so a killed run
resumes to the same result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from s2dit.config import VideoSpec, save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder
from s2dit.latent.train_ae import (
    MetricWindow,
    _batch,
    _save_checkpoint,
    psnr,
    refuse_other_settings,
    resume_step,
    save_tiny_ae,
    weighted_l1,
)


@dataclasses.dataclass
class DecoderTrainConfig:
    """A decoder-distillation run."""

    vae: str = ""  # the VAE whose latents the decoder learns to decode
    data: str = "runs/micro"  # clips to encode (a micro world or a captioned video folder)
    out: str = "runs/fast_decoder"
    target: str = "vae"  # "vae": imitate the VAE's own decode; "pixels": reconstruct the input
    video: VideoSpec = dataclasses.field(default_factory=lambda: VideoSpec(frames=9))
    crop: list[int] = dataclasses.field(default_factory=lambda: [128, 72])
    model: TinyAEConfig = dataclasses.field(default_factory=TinyAEConfig)
    batch_size: int = 4
    lr: float = 1e-3
    steps: int = 2000
    object_weight: float = 10.0
    log_every: int = 25
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in ("vae", "pixels"):
            raise ConfigError(f"target: {self.target!r} must be 'vae' or 'pixels'")
        for name in ("batch_size", "steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if (
            len(self.crop) != 2
            or any(c < 8 or c % 8 for c in self.crop)
            or self.crop[0] > self.video.width
            or self.crop[1] > self.video.height
        ):
            raise ConfigError(
                f"crop: {self.crop} must be [width, height], multiples of 8 within the video size"
            )
        if self.lr <= 0 or self.object_weight < 0:
            raise ConfigError("lr must be positive and object_weight non-negative")


def train_decoder(cfg: DecoderTrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a decoder; returns the last logged metrics. ``max_steps`` stops early."""
    from tqdm import tqdm

    from s2dit.data.encode import load_vae
    from s2dit.data.video_folder import VideoFolderDataset

    if not cfg.vae:
        raise S2DitError("--vae: the VAE to imitate is required (a Wan VAE folder or a tiny_ae folder)")
    out = Path(cfg.out)
    refuse_other_settings(out, cfg)
    teacher = load_vae(cfg.vae)
    dataset = VideoFolderDataset(cfg.data, cfg.video, random_start=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")

    torch.manual_seed(cfg.seed)
    model = TinyAutoencoder(dataclasses.replace(cfg.model, decodes_for=str(cfg.vae)))
    optimizer = torch.optim.AdamW(model.decoder_parameters(), lr=cfg.lr, weight_decay=0.0)
    step = resume_step(out, model, optimizer)
    end = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
    metrics: dict = {"step": step}
    bar = tqdm(total=end, initial=step, desc="train decoder", unit="step", disable=not progress)
    with open(out / "train_log.jsonl", "a") as log:
        window = MetricWindow(log, ("l1", "psnr_vs_target"))
        while step < end:
            pixels = _batch(dataset, cfg, step)
            with torch.no_grad():
                latents = teacher.encode(pixels)
                if latents.shape[1] != cfg.model.latent_channels:
                    raise S2DitError(
                        f"{cfg.vae} makes {latents.shape[1]}-channel latents: set model.latent_channels"
                    )
                target = teacher.decode(latents).clamp(-1, 1) if cfg.target == "vae" else pixels
            decoded = model.decode(latents)
            loss = weighted_l1(decoded, target, cfg.object_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.decoder_parameters(), 1.0)
            optimizer.step()
            step += 1
            window.add(loss.item(), psnr(decoded.detach(), target))
            bar.update()
            if step % cfg.log_every == 0 or step == end:
                metrics = window.write(step)
                bar.set_postfix(l1=f"{metrics['l1']:.4f}", psnr=f"{metrics['psnr_vs_target']:.1f}")
            if step % cfg.checkpoint_every == 0 or step == end:
                _save_checkpoint(out / "checkpoint.pt", model, optimizer, step)
    bar.close()
    if step >= cfg.steps:
        save_tiny_ae(model.eval(), out)
        metrics["model"] = str(out / "tiny_ae.safetensors")
    return metrics
