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

**A decoder robust to sampling errors** (``init`` + ``latent_noise``). A diffusion model's samples are close
to, not on, the latents the encoder makes, and a decoder trained only on encoder outputs can render those
small errors as large ones: with the micro VAE, Gaussian noise of 0.35 latent standard deviations on
ground-truth latents broke objects into fragments and took the strict pass rate of the reconstructions from
0.97 to 0.16 (32 held-out prompts; ``configs/micro_vae_robust.yaml`` has the robust decoder's figures).
``init`` starts the student from a tiny-autoencoder folder's weights (its architecture and latent
statistics replace ``model``), and ``latent_noise`` adds Gaussian noise of a standard deviation drawn
per clip from [0, ``latent_noise``] to the normalised latents before the student decodes them (the target
stays the clean one). With ``init`` equal to ``vae`` only the decoder changes: the result keeps the VAE's
encoder, encodes to exactly the same latents, and is a drop-in replacement for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from s2dit import precision
from s2dit.errors import ConfigError, S2DitError
from s2dit.latent.tiny_ae import TinyAutoencoder, load_tiny_ae, save_tiny_ae
from s2dit.latent.vae import psnr
from s2dit.train.vae import ReconstructionTraining, ReconTrainConfig, reconstruction_loss


@dataclasses.dataclass
class DecoderTrainConfig(ReconTrainConfig):
    """A decoder-distillation run."""

    vae: str = ""  # the VAE whose latents the decoder learns to decode
    out: str = "runs/fast_decoder"
    target: str = "vae"  # "vae": imitate the VAE's own decode; "pixels": reconstruct the input
    init: str = ""  # a tiny_ae folder whose weights (and architecture) start the student
    latent_noise: float = 0.0  # max std of the noise on the student's input latents (drawn per clip)
    steps: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("vae", "pixels"):
            raise ConfigError(f"target: {self.target!r} must be 'vae' or 'pixels'")
        if not 0 <= self.latent_noise <= 10:  # also refuses NaN
            raise ConfigError(f"latent_noise: {self.latent_noise} must be in [0, 10] (latent stds)")

    def keeps_encoder(self) -> bool:
        """True when the student starts from the VAE itself: the result is that VAE with a new decoder."""
        return bool(self.init) and Path(self.init).resolve() == Path(self.vae).resolve()


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
        if cfg.init:
            start = load_tiny_ae(cfg.init)
            decodes_for = "" if cfg.keeps_encoder() else str(cfg.vae)
            model = TinyAutoencoder(dataclasses.replace(start.config, decodes_for=decodes_for))
            model.load_state_dict(start.state_dict())
        else:
            model = TinyAutoencoder(dataclasses.replace(cfg.model, decodes_for=str(cfg.vae)))
        return model, list(model.decoder_parameters())

    def noisy(self, latents: torch.Tensor) -> torch.Tensor:
        """``latents`` + noise of a per-clip std drawn from [0, latent_noise], seeded by (seed, step)."""
        if not self.cfg.latent_noise:
            return latents
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        scale = torch.rand(latents.shape[0], generator=g) * self.cfg.latent_noise
        noise = torch.randn(latents.shape, generator=g)
        return latents + scale.view(-1, 1, 1, 1, 1) * noise

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
            decoded = self.model.decode(self.noisy(latents))
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
