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

import torch

from s2dit import precision
from s2dit.errors import ConfigError, S2DitError
from s2dit.latent.tiny_ae import TinyAutoencoder, save_tiny_ae
from s2dit.latent.vae import psnr
from s2dit.train.vae import ReconstructionTraining, ReconTrainConfig, reconstruction_loss


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


class DecoderTraining(ReconstructionTraining):
    """``s2dit train decoder``: only the decoder's parameters train; at the end the folder is written."""

    desc = "train decoder"
    bar_keys = ("loss", "psnr_vs_target")

    def __init__(self, cfg: DecoderTrainConfig, progress: bool = True):
        if not cfg.vae:
            raise S2DitError("--vae: the VAE to imitate is required (a Wan VAE folder or a tiny_ae folder)")
        super().__init__(cfg, progress)

    def build(self):
        from s2dit.latent.vae import load_vae

        cfg = self.cfg
        self.teacher = load_vae(cfg.vae)
        self.clips()  # the clip folder is read (and checked) before the first step
        torch.manual_seed(cfg.seed)
        model = TinyAutoencoder(dataclasses.replace(cfg.model, decodes_for=str(cfg.vae)))
        return model, list(model.decoder_parameters())

    def reconstruct(self, pixels):
        cfg = self.cfg
        with torch.no_grad():
            latents = self.teacher.encode(pixels)
            if latents.shape[1] != cfg.model.latent_channels:
                raise S2DitError(
                    f"{cfg.vae} makes {latents.shape[1]}-channel latents: set model.latent_channels"
                )
            target = self.teacher.decode(latents).clamp(-1, 1) if cfg.target == "vae" else pixels
        with precision.autocast(cfg.precision, "cpu"):
            decoded = self.model.decode(latents)
        loss = reconstruction_loss(decoded, target, cfg)
        return loss, {"loss": loss.item(), "psnr_vs_target": psnr(decoded.detach().float(), target)}

    def finish(self, row: dict) -> dict:
        if self.step >= self.cfg.steps:
            save_tiny_ae(self.model.eval(), self.out)
            row["model"] = str(self.out / "tiny_ae.safetensors")
        return row


def train_decoder(cfg: DecoderTrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a decoder; returns the last logged metrics. ``max_steps`` stops early."""
    return DecoderTraining(cfg, progress).fit(max_steps)
