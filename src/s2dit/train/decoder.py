"""``s2dit train decoder``: distil a fast streaming decoder for another VAE's latents
(docs/architecture.md §4).

The VAE to imitate (a diffusers Wan VAE folder, e.g. the real Wan2.1 VAE, or a tiny-autoencoder folder)
encodes random crops of random clips; the student, the decoder half of a :class:`TinyAutoencoder`, learns to
decode those (normalised) latents into what the VAE itself decodes (``target: vae``, the default) or into
the input pixels (``target: pixels``), with the loss, batches and schedule of ``s2dit train vae``. Only the
decoder's parameters train; the result is a tiny-autoencoder folder whose config names the VAE it decodes for
(``decodes_for``) and refuses to encode. It plugs in wherever a streaming decoder is used (``--vae`` of
``s2dit stream``), and ``s2dit eval vae --vae VAE --decoder OUT`` measures it against the VAE.

Batches come from a generator seeded by ``(seed, step)`` and checkpoints (``checkpoints/step-N.pt``, as
``s2dit train vae`` writes them) are atomic, so a killed run resumes to the same result. The VAE to imitate
runs in float32; ``precision`` applies to the student.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from s2dit import precision
from s2dit.config import save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.latent.tiny_ae import TinyAutoencoder, save_tiny_ae
from s2dit.latent.vae import psnr
from s2dit.train.vae import ReconTrainConfig, check_run_folder, clip_sampler, fit, reconstruction_loss


@dataclasses.dataclass
class DecoderTrainConfig(ReconTrainConfig):
    """A decoder-distillation run."""

    vae: str = ""  # the VAE whose latents the decoder learns to decode
    out: str = "runs/fast_decoder"
    target: str = "vae"  # "vae": imitate the VAE's own decode; "pixels": reconstruct the input
    steps: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("vae", "pixels"):
            raise ConfigError(f"target: {self.target!r} must be 'vae' or 'pixels'")


def train_decoder(cfg: DecoderTrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a decoder; returns the last logged metrics. ``max_steps`` stops early."""
    from s2dit.latent.vae import load_vae

    if not cfg.vae:
        raise S2DitError("--vae: the VAE to imitate is required (a Wan VAE folder or a tiny_ae folder)")
    out = Path(cfg.out)
    check_run_folder(out, cfg)
    teacher = load_vae(cfg.vae)
    sampler = clip_sampler(cfg, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")

    def loss_fn(model, pixels):
        with torch.no_grad():
            latents = teacher.encode(pixels)
            if latents.shape[1] != cfg.model.latent_channels:
                raise S2DitError(
                    f"{cfg.vae} makes {latents.shape[1]}-channel latents: set model.latent_channels"
                )
            target = teacher.decode(latents).clamp(-1, 1) if cfg.target == "vae" else pixels
        with precision.autocast(cfg.precision, "cpu"):
            decoded = model.decode(latents)
        loss = reconstruction_loss(decoded, target, cfg)
        return loss, {"loss": loss.item(), "psnr_vs_target": psnr(decoded.detach().float(), target)}

    torch.manual_seed(cfg.seed)
    model = TinyAutoencoder(dataclasses.replace(cfg.model, decodes_for=str(cfg.vae)))
    parameters = list(model.decoder_parameters())
    step, metrics = fit(cfg, model, parameters, loss_fn, sampler, max_steps, "train decoder", progress)
    if step >= cfg.steps:
        save_tiny_ae(model.eval(), out)
        metrics["model"] = str(out / "tiny_ae.safetensors")
    return metrics
