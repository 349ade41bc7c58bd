"""``s2dit train vae``: train the tiny autoencoder on a clip folder (the micro world's VAE).

Loss: object-weighted L1 reconstruction + ``kl_weight`` × KL(posterior ‖ N(0, 1)). Each pixel's L1 is
weighted by ``1 + object_weight × (its largest channel distance from the clip's median colour)``, normalised
to mean 1: in the micro world the median is the background, and small saturated objects would otherwise
count for a few percent of the loss. With a plain L1 the autoencoder learned edges and brightness but
decoded every object grey (no colour detected in the reconstructions after 1,500 steps); weighted, the
reconstructions keep their colours. Every step draws its clips from a
generator seeded by ``(seed, step)``, so a resumed run sees exactly the clips an uninterrupted one would.
The output folder holds ``config.yaml`` (the resolved run config), ``train_log.jsonl``, ``checkpoint.pt``
(model, optimiser, step; written atomically, resumed automatically) and, at the end, the model:
``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (its architecture and the per-channel latent statistics measured
on the data, used to normalise latents).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch
import yaml

from s2dit.atomic import atomic_path
from s2dit.config import VideoSpec, describe_changes, from_dict, save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder


@dataclasses.dataclass
class AETrainConfig:
    """A tiny-autoencoder training run."""

    data: str = "runs/micro"  # a micro world or a captioned video folder
    out: str = "runs/micro_vae"
    video: VideoSpec = dataclasses.field(default_factory=lambda: VideoSpec(frames=9))  # clips as loaded
    crop: list[int] = dataclasses.field(default_factory=lambda: [128, 72])  # random [width, height] crops
    model: TinyAEConfig = dataclasses.field(default_factory=TinyAEConfig)
    batch_size: int = 4
    lr: float = 1e-3
    steps: int = 4000
    kl_weight: float = 1e-4
    object_weight: float = 10.0  # extra L1 weight on pixels far from the clip's median colour
    sample_posterior: bool = True  # decode a sampled latent in training (False: the posterior mean)
    log_every: int = 25
    checkpoint_every: int = 250
    stats_clips: int = 32  # clips used to measure the latent mean/std at the end
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "log_every", "checkpoint_every", "stats_clips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if (
            len(self.crop) != 2
            or any(c < 8 or c % 8 for c in self.crop)
            or self.crop[0] > self.video.width
            or (self.crop[1] > self.video.height)
        ):
            raise ConfigError(
                f"crop: {self.crop} must be [width, height], multiples of 8 within the video size"
            )
        if self.lr <= 0 or self.kl_weight < 0 or self.object_weight < 0:
            raise ConfigError("lr must be positive, kl_weight and object_weight non-negative")


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


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two pixel tensors in [-1, 1]."""
    mse = ((a - b) / 2).square().mean().clamp_min(1e-10)
    return float(-10 * torch.log10(mse))


def _batch(dataset, cfg: AETrainConfig, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = torch.randint(len(dataset), (cfg.batch_size,), generator=g).tolist()
    torch.manual_seed(cfg.seed * 1_000_003 + step)  # the dataset's random start frames
    clips = torch.stack([dataset[i]["pixels"] for i in idx])
    # The autoencoder is convolutional: random crops train it as well as whole frames, for a fraction.
    (cw, ch), (H, W) = cfg.crop, clips.shape[-2:]
    y = int(torch.randint(H - ch + 1, (), generator=g))
    x = int(torch.randint(W - cw + 1, (), generator=g))
    return clips[..., y : y + ch, x : x + cw]


def _save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)


def save_tiny_ae(model: TinyAutoencoder, folder: str | os.PathLike) -> None:
    """Write ``tiny_ae.safetensors`` + ``tiny_ae.yaml`` (architecture and latent statistics) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_path(folder / "tiny_ae.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    save_config(model.config, folder / "tiny_ae.yaml")


def load_tiny_ae(folder: str | os.PathLike, device: str = "cpu") -> TinyAutoencoder:
    """Load a model written by :func:`save_tiny_ae` (or ``s2dit train vae``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "tiny_ae.safetensors").is_file() or not (folder / "tiny_ae.yaml").is_file():
        raise S2DitError(f"{folder} needs tiny_ae.safetensors and tiny_ae.yaml (written by s2dit train vae)")
    config = from_dict(TinyAEConfig, yaml.safe_load((folder / "tiny_ae.yaml").read_text()) or {})
    model = TinyAutoencoder(config)
    model.load_state_dict(load_file(folder / "tiny_ae.safetensors"))
    return model.to(device).eval()


@torch.no_grad()
def latent_statistics(
    model: TinyAutoencoder, dataset, clips: int, seed: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over ``clips`` clips."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:clips].tolist()
    z = torch.cat([model.posterior(dataset[i]["pixels"][None])[0] for i in idx], dim=2)  # (1, C, T*, h, w)
    flat = z.transpose(0, 1).reshape(z.shape[1], -1)
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-3).tolist()


def refuse_other_settings(out: Path, cfg) -> None:
    """A run folder with a checkpoint resumes only with the same settings (its location may change)."""
    saved = out / "config.yaml"
    if saved.is_file() and (out / "checkpoint.pt").is_file():
        old = dataclasses.replace(from_dict(type(cfg), yaml.safe_load(saved.read_text()) or {}), out=cfg.out)
        if old != cfg:
            raise S2DitError(f"{out} holds a run with other settings ({describe_changes(old, cfg)})")


def resume_step(out: Path, model, optimizer) -> int:
    """Load ``checkpoint.pt`` into ``model`` and ``optimizer`` if there is one; the step to continue from."""
    if not (out / "checkpoint.pt").is_file():
        return 0
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"]


class MetricWindow:
    """Per-step metrics averaged between log lines, appended to ``train_log.jsonl``."""

    def __init__(self, log, names: tuple[str, ...]):
        self.log, self.names, self.rows = log, names, []
        self.start = time.perf_counter()

    def add(self, *values: float) -> None:
        self.rows.append(values)

    def write(self, step: int) -> dict:
        means = (sum(v) / len(self.rows) for v in zip(*self.rows, strict=True))
        metrics = {"step": step, **dict(zip(self.names, means, strict=True))}
        metrics["seconds"] = time.perf_counter() - self.start
        self.log.write(json.dumps(metrics) + "\n")
        self.log.flush()
        self.rows.clear()
        return metrics


def train_tiny_ae(cfg: AETrainConfig, max_steps: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the last logged metrics. ``max_steps`` stops early (resumable)."""
    from tqdm import tqdm

    from s2dit.data.video_folder import VideoFolderDataset

    out = Path(cfg.out)
    refuse_other_settings(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    dataset = VideoFolderDataset(cfg.data, cfg.video, random_start=True)

    torch.manual_seed(cfg.seed)
    model = TinyAutoencoder(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    step = resume_step(out, model, optimizer)
    end = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
    metrics: dict = {"step": step}
    bar = tqdm(total=end, initial=step, desc="train vae", unit="step", disable=not progress)
    with open(out / "train_log.jsonl", "a") as log:
        window = MetricWindow(log, ("l1", "kl", "psnr"))
        while step < end:
            pixels = _batch(dataset, cfg, step)
            recon, mean, logvar = model(pixels, sample=cfg.sample_posterior)
            rec = weighted_l1(recon, pixels, cfg.object_weight)
            kl = kl_divergence(mean, logvar)
            loss = rec + cfg.kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            window.add(rec.item(), kl.item(), psnr(recon.detach(), pixels))
            bar.update()
            if step % cfg.log_every == 0 or step == end:
                metrics = window.write(step)
                bar.set_postfix(l1=f"{metrics['l1']:.4f}", psnr=f"{metrics['psnr']:.1f}")
            if step % cfg.checkpoint_every == 0 or step == end:
                _save_checkpoint(out / "checkpoint.pt", model, optimizer, step)
    bar.close()
    if step >= cfg.steps:  # finished: measure the latent statistics and write the model
        model.eval()
        latents_mean, latents_std = latent_statistics(model, dataset, cfg.stats_clips, cfg.seed)
        model.config = dataclasses.replace(model.config, latents_mean=latents_mean, latents_std=latents_std)
        final = TinyAutoencoder(model.config)
        final.load_state_dict(model.state_dict())
        save_tiny_ae(final, out)
        metrics["model"] = str(out / "tiny_ae.safetensors")
    return metrics
