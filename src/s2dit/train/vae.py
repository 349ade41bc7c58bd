"""``s2dit train vae``: train an autoencoder on a clip folder (the tiny one is the micro world's VAE).

Loss: object-weighted L1 + ``mse_weight`` × MSE + ``kl_weight`` × KL(posterior ‖ N(0, 1)). Each pixel's L1
is weighted by ``1 + object_weight × (its largest channel distance from the clip's median colour)``,
normalised to mean 1: in the micro world the median is the background, and small saturated objects would
otherwise count for a few percent of the loss. With a plain L1 the autoencoder learned edges and brightness
but decoded every object grey (no colour detected in the reconstructions after 1,500 steps); weighted, the
reconstructions keep their colours. The MSE term is what PSNR measures: without it the smooth backgrounds,
which the weighting discounts, held most of the error. The learning rate is a cosine decay over the whole
run to ``final_lr_ratio`` × ``lr``, multiplied by a linear warm-up ramp over the first ``warmup_steps``.
Batches come from :class:`s2dit.train.clips.ClipSampler` (seeded by ``(seed, step)``, so a resumed run sees
exactly the clips an uninterrupted one would).

The run is the loop every s2dit training shares (:mod:`s2dit.train.loop`). The output folder holds
``config.yaml`` (the resolved run config), ``train_log.jsonl``, ``checkpoints/`` (``step-NNNNNNN.pt``:
model, optimiser, step, generators; written atomically, resumed automatically, the newest two kept) and,
at the end, the model:
``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (its architecture and the per-channel latent statistics measured
on the data, used to normalise latents). ``kind: wan`` trains a small diffusers ``AutoencoderKLWan``
(architecture in ``wan:``) the same way and writes a diffusers VAE folder instead (``config.json`` with the
measured statistics as ``latents_mean``/``latents_std`` + weights).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from s2dit import precision
from s2dit.config import VideoSpec
from s2dit.errors import ConfigError
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae
from s2dit.latent.vae import psnr
from s2dit.latent.wan_vae import WanVAEArch
from s2dit.train.clips import ClipSampler, check_clip_settings
from s2dit.train.loop import LoopSettings, TrainingLoop, single_process
from s2dit.train.schedule import learning_rate


@dataclasses.dataclass
class ReconTrainConfig:
    """What the two autoencoder trainers share: data, batches, optimisation and the reconstruction loss."""

    data: str = "runs/micro"  # a micro world or a captioned video folder
    out: str = "runs/micro_vae"
    video: VideoSpec = dataclasses.field(default_factory=VideoSpec)  # videos as loaded
    clip_frames: int = 9  # frames per training clip (4k+1), cut from a loaded video ...
    strides: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4])  # ... at one of these strides
    crop: list[int] = dataclasses.field(default_factory=lambda: [128, 72])  # random [width, height] crops
    preload: bool = False  # decode every video once into memory (uint8; 3.6 GB for 1,000 micro clips)
    model: TinyAEConfig = dataclasses.field(default_factory=TinyAEConfig)
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" (to final_lr_ratio × lr over the run) or "constant"; × the warm-up
    final_lr_ratio: float = 0.05
    steps: int = 4000
    object_weight: float = 10.0  # extra L1 weight on pixels far from the clip's median colour
    mse_weight: float = 5.0  # + this × MSE
    precision: str = "float32"  # or "bfloat16": autocast (about 2x faster on CPUs with AVX512-BF16)
    log_every: int = 25
    checkpoint_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.seed < 0:
            raise ConfigError(f"seed: {self.seed} must be >= 0")
        check_clip_settings(self.clip_frames, self.strides, self.crop, self.video)
        if self.lr <= 0 or self.object_weight < 0 or self.mse_weight < 0 or self.warmup_steps < 0:
            raise ConfigError("lr must be positive; object_weight, mse_weight and warmup_steps non-negative")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule: {self.schedule!r} must be 'cosine' or 'constant'")
        if not 0 <= self.final_lr_ratio <= 1:
            raise ConfigError(f"final_lr_ratio: {self.final_lr_ratio} must be in [0, 1]")
        if self.precision not in ("float32", "bfloat16"):
            raise ConfigError(f"precision: {self.precision!r} must be 'float32' or 'bfloat16'")


@dataclasses.dataclass
class AETrainConfig(ReconTrainConfig):
    """An autoencoder training run: the tiny autoencoder (``model``) or a small Wan VAE (``wan``)."""

    kind: str = "tiny"  # "tiny" (TinyAutoencoder, configured by model) or "wan" (AutoencoderKLWan, by wan)
    wan: WanVAEArch = dataclasses.field(default_factory=WanVAEArch)
    kl_weight: float = 0.0  # latents are normalised by measured statistics, so no KL is needed by default
    sample_posterior: bool = False  # decode a sampled latent in training (False: the posterior mean)
    stats_clips: int = 32  # clips used to measure the latent mean/std at the end

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stats_clips < 1:
            raise ConfigError(f"stats_clips: {self.stats_clips} must be at least 1")
        if self.kind not in ("tiny", "wan"):
            raise ConfigError(f"kind: {self.kind!r} must be 'tiny' or 'wan'")
        if self.kl_weight < 0:
            raise ConfigError(f"kl_weight: {self.kl_weight} must be non-negative")


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean KL(N(mean, exp(logvar)) ‖ N(0, 1)) per latent element."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


def weighted_l1(recon: torch.Tensor, pixels: torch.Tensor, object_weight: float) -> torch.Tensor:
    """L1 with pixels weighted by their distance from the clip's median colour (mean weight 1)."""
    err = (recon - pixels).abs()
    if object_weight == 0:
        return err.mean()
    median = pixels.flatten(2).median(-1).values[..., None, None, None]  # (B, 3, 1, 1, 1)
    weight = 1 + object_weight * (pixels - median).abs().amax(1, keepdim=True)
    return (err * weight).mean() / weight.mean()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, cfg: ReconTrainConfig) -> torch.Tensor:
    """Object-weighted L1 + ``mse_weight`` × MSE, in float32."""
    recon = recon.float()
    loss = weighted_l1(recon, target, cfg.object_weight)
    return loss + cfg.mse_weight * (recon - target).square().mean() if cfg.mse_weight else loss


def lr_at(cfg: ReconTrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps`` times constant or a cosine decay over the whole run to
    ``final_lr_ratio`` × lr (:func:`s2dit.train.schedule.learning_rate`)."""
    return learning_rate(
        step,
        steps=cfg.steps,
        warmup_steps=cfg.warmup_steps,
        schedule=cfg.schedule,
        min_ratio=cfg.final_lr_ratio,
        decay_start=0,
        peak=cfg.lr,
    )


def clip_sampler(cfg: ReconTrainConfig, progress: bool) -> ClipSampler:
    """The run's batches (see :mod:`s2dit.train.clips`)."""
    from s2dit.data.video_folder import VideoFolderDataset

    dataset = VideoFolderDataset(cfg.data, cfg.video, random_start=False)
    return ClipSampler(
        dataset, cfg.clip_frames, cfg.strides, cfg.crop, cfg.batch_size, cfg.seed, cfg.preload, progress
    )


@torch.no_grad()
def latent_statistics(model: nn.Module, dataset, clips: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over ``clips`` clips."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:clips].tolist()
    z = torch.cat([model.posterior(dataset[i]["pixels"][None])[0] for i in idx], dim=2)  # (1, C, T*, h, w)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-3).tolist()


def build_autoencoder(cfg: AETrainConfig) -> nn.Module:
    """A fresh model to train: :class:`TinyAutoencoder` or a :class:`TrainableWanVAE`."""
    if cfg.kind == "wan":
        from s2dit.latent.wan_vae import TrainableWanVAE

        return TrainableWanVAE(cfg.wan.build())
    return TinyAutoencoder(cfg.model)


def save_autoencoder(model: nn.Module, cfg: AETrainConfig, mean: list[float], std: list[float]) -> str:
    """Write the trained model with its latent statistics into ``cfg.out``; returns the weights' path."""
    if cfg.kind == "wan":
        model.save(cfg.out, mean, std)
        return str(Path(cfg.out) / "config.json")
    config = dataclasses.replace(model.config, latents_mean=mean, latents_std=std)
    final = TinyAutoencoder(config)
    final.load_state_dict(model.state_dict())
    save_tiny_ae(final, cfg.out)
    return str(Path(cfg.out) / "tiny_ae.safetensors")


class ReconstructionTraining(TrainingLoop):
    """What the autoencoder and decoder trainings share: one process, batches of clips seeded by
    ``(seed, step)``, AdamW on the scheduled rate (:func:`lr_at`) with the gradient norm clipped to 1, the
    loop's log and checkpoints. A subclass supplies ``build`` and ``reconstruct(pixels) -> (loss, logs)``
    (``logs``: floats, with ``loss`` and a ``psnr*`` among them)."""

    desc = "train"
    bar_keys = ("loss", "psnr")

    def __init__(self, cfg: ReconTrainConfig, progress: bool = True):
        self.cfg = cfg
        settings = LoopSettings(
            out=cfg.out,
            config=cfg,
            steps=cfg.steps,
            learning_rate=lambda step: lr_at(cfg, step),
            batch_size=cfg.batch_size,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            old_formats=("checkpoint.pt",),
            desc=self.desc,
            bar_keys=self.bar_keys,
        )
        super().__init__(settings, single_process("cpu"), progress)

    def clips(self) -> ClipSampler:
        """The run's batches (built once; see :mod:`s2dit.train.clips`)."""
        if getattr(self, "_sampler", None) is None:
            self._sampler = clip_sampler(self.cfg, self.progress)
        return self._sampler

    def loss(self, step: int, micro: int):
        return self.reconstruct(self.clips().batch(step))

    def reconstruct(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class AutoencoderTraining(ReconstructionTraining):
    """``s2dit train vae``; at the end the latent statistics are measured and the model written."""

    desc = "train vae"

    def build(self):
        self.clips()  # the clip folder is read (and checked) before the model is built
        torch.manual_seed(self.cfg.seed)
        model = build_autoencoder(self.cfg)
        return model, list(model.parameters())

    def reconstruct(self, pixels):
        cfg = self.cfg
        with precision.autocast(cfg.precision, "cpu"):
            recon, mean, logvar = self.model(pixels, sample=cfg.sample_posterior)
        rec = reconstruction_loss(recon, pixels, cfg)
        kl = kl_divergence(mean.float(), logvar.float())
        logs = {"loss": rec.item(), "kl": kl.item(), "psnr": psnr(recon.detach().float(), pixels)}
        return rec + cfg.kl_weight * kl, logs

    def finish(self, row: dict) -> dict:
        cfg = self.cfg
        if self.step >= cfg.steps:  # finished: measure the latent statistics and write the model
            self.model.eval()
            mean, std = latent_statistics(self.model, self.clips().dataset, cfg.stats_clips, cfg.seed)
            row["model"] = save_autoencoder(self.model, cfg, mean, std)
        return row


def train_autoencoder(cfg: AETrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the last logged metrics. ``max_steps`` stops early (resumable)."""
    return AutoencoderTraining(cfg, progress).fit(max_steps)
