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

The output folder holds ``config.yaml`` (the resolved run config), ``train_log.jsonl``, ``checkpoints/``
(``step-NNNNNNN.pt``: model, optimiser, step, generators; :mod:`s2dit.train.checkpoint`, written atomically,
resumed automatically, the newest two kept) and, at the end, the model:
``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (its architecture and the per-channel latent statistics measured
on the data, used to normalise latents). ``kind: wan`` trains a small diffusers ``AutoencoderKLWan``
(architecture in ``wan:``) the same way and writes a diffusers VAE folder instead (``config.json`` with the
measured statistics as ``latents_mean``/``latents_std`` + weights).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from s2dit import precision
from s2dit.config import VideoSpec, save_config
from s2dit.errors import ConfigError
from s2dit.files import read_yaml
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae
from s2dit.latent.vae import psnr
from s2dit.latent.wan_vae import WanVAEArch
from s2dit.train import checkpoint
from s2dit.train.clips import ClipSampler, check_clip_settings
from s2dit.train.log import MetricLog, mean_rows
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


def save_checkpoint(out: Path, model, optimizer, step: int, cfg) -> None:
    """``out/checkpoints/step-N.pt`` (:mod:`s2dit.train.checkpoint`), the newest two kept."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": checkpoint.rng_state(),
        "config": dataclasses.asdict(cfg),
    }
    checkpoint.save(out / "checkpoints", step, payload, keep=2)


@torch.no_grad()
def latent_statistics(model: nn.Module, dataset, clips: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over ``clips`` clips."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:clips].tolist()
    z = torch.cat([model.posterior(dataset[i]["pixels"][None])[0] for i in idx], dim=2)  # (1, C, T*, h, w)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-3).tolist()


def check_run_folder(out: Path, cfg) -> None:
    """A run folder with a checkpoint resumes only with the same settings (its location may change)."""
    checkpoint.refuse_old_format(out, "checkpoint.pt")
    saved = out / "config.yaml"
    if saved.is_file() and checkpoint.checkpoint_files(out / "checkpoints"):
        checkpoint.refuse_other_settings(out, read_yaml(saved), cfg)


def resume_step(out: Path, model, optimizer) -> int:
    """Load the newest checkpoint into ``model``, ``optimizer`` and the generators if there is one; the step
    to continue from."""
    payload = checkpoint.load_latest(out / "checkpoints")
    if payload is None:
        return 0
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    checkpoint.set_rng_state(payload["rng"])
    return payload["step"]


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


def fit(
    cfg: ReconTrainConfig,
    model: nn.Module,
    parameters: list[nn.Parameter],
    loss_fn,
    sampler: ClipSampler,
    max_steps: int | None,
    desc: str,
    progress: bool,
) -> tuple[int, dict]:
    """The loop of both reconstruction trainers: resume, then per step a batch, ``loss_fn(model, pixels)
    -> (loss, logs)`` (``logs``: floats, ``loss`` and a ``psnr*`` among them), an AdamW step on
    ``parameters`` at the scheduled rate with the gradient norm clipped to 1, the mean logs every
    ``log_every`` steps and a checkpoint every ``checkpoint_every``. Returns the step reached and the
    last logged row."""
    from tqdm import tqdm

    out = Path(cfg.out)
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=0.0)
    step = resume_step(out, model, optimizer)
    end = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
    metrics: dict = {"step": step}
    bar = tqdm(total=end, initial=step, desc=desc, unit="step", disable=not progress)
    log, window, start = MetricLog(out, step, tensorboard=False), [], time.perf_counter()
    try:
        while step < end:
            loss, logs = loss_fn(model, sampler.batch(step))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            step += 1
            window.append(logs)
            bar.update()
            if step % cfg.log_every == 0 or step == end:
                metrics = {"step": step, **mean_rows(window), "seconds": time.perf_counter() - start}
                log.write(metrics)
                window.clear()
                psnr_key = next(k for k in metrics if k.startswith("psnr"))
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", psnr=f"{metrics[psnr_key]:.1f}")
            if step % cfg.checkpoint_every == 0 or step == end:
                save_checkpoint(out, model, optimizer, step, cfg)
    finally:
        log.close()
        bar.close()
    return step, metrics


def train_autoencoder(cfg: AETrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the last logged metrics. ``max_steps`` stops early (resumable)."""
    out = Path(cfg.out)
    check_run_folder(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    sampler = clip_sampler(cfg, progress)

    def loss_fn(model, pixels):
        with precision.autocast(cfg.precision, "cpu"):
            recon, mean, logvar = model(pixels, sample=cfg.sample_posterior)
        rec = reconstruction_loss(recon, pixels, cfg)
        kl = kl_divergence(mean.float(), logvar.float())
        logs = {"loss": rec.item(), "kl": kl.item(), "psnr": psnr(recon.detach().float(), pixels)}
        return rec + cfg.kl_weight * kl, logs

    torch.manual_seed(cfg.seed)
    model = build_autoencoder(cfg)
    parameters = list(model.parameters())
    step, metrics = fit(cfg, model, parameters, loss_fn, sampler, max_steps, "train vae", progress)
    if step >= cfg.steps:  # finished: measure the latent statistics and write the model
        model.eval()
        latents_mean, latents_std = latent_statistics(model, sampler.dataset, cfg.stats_clips, cfg.seed)
        metrics["model"] = save_autoencoder(model, cfg, latents_mean, latents_std)
    return metrics
