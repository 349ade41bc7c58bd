"""The trainer: ``s2dit train --config FILE`` (one process, or many under torchrun).

Every method (``method:`` flow-matching pretraining, or a distillation stage of :mod:`s2dit.distill`:
cached KD, causal ODE regression, DMD with self-forcing) supplies ``loss(model, batch, null, device, step)
-> (loss, logs)`` and may bring its own ``data`` (``batch(positions)``); the trainer does the rest: DDP /
FSDP2, bf16 autocast where it pays (:mod:`s2dit.precision`), ``torch.compile``, gradient accumulation and
clipping, EMA (with warm-up), the learning-rate schedule, logging (caption-swap gaps at checkpoints),
atomic checkpoints with exact resume, periodic evaluation, and the exported model (EMA weights) in
``out/model``.

Run folder::

    config.yaml          the resolved TrainConfig (a rerun with other settings is refused)
    checkpoints/         step-NNNNNNN.pt, the newest keep_checkpoints of them
    model/               the EMA denoiser (load with s2dit generate --checkpoint RUN) + pipeline.yaml
    train_log.jsonl      one row per log_every steps (loss, grad_norm, lr, samples/s, tokens/s, eval)
    tensorboard/         the same scalars for TensorBoard
    samples/step-N/      evaluation videos, contact_sheet.png, prompts.jsonl, scores.json
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from s2dit import precision
from s2dit.config import save_config
from s2dit.errors import S2DitError
from s2dit.files import read_yaml
from s2dit.lock import FolderLock
from s2dit.model.denoiser import build_denoiser, resolve_spec, same_architecture, save_denoiser
from s2dit.train import checkpoint, methods
from s2dit.train.config import TrainConfig
from s2dit.train.data import LatentBatches, rank_positions
from s2dit.train.distributed import World, average_gradients, no_sync, setup, unwrap, wrap
from s2dit.train.ema import EMA
from s2dit.train.log import MetricLog, mean_rows
from s2dit.train.schedule import learning_rate

# Settings a resumed run may change: where it lives, how long it runs, how often it reports, compiling.
RESUMABLE_CHANGES = (
    "out",
    "steps",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "eval",
    "vae",
    "compile",
)


def check_run_folder(cfg: TrainConfig) -> None:
    """Refuse to continue a run folder made with other settings (except :data:`RESUMABLE_CHANGES`)."""
    saved = Path(cfg.out) / "config.yaml"
    if saved.is_file() and checkpoint.checkpoint_files(Path(cfg.out) / "checkpoints"):
        checkpoint.refuse_other_settings(cfg.out, read_yaml(saved), cfg, RESUMABLE_CHANGES)


def latent_source(folder: str) -> dict:
    """What encoded a latent folder: its VAE, text encoder and video spec (from its config.yaml)."""
    path = Path(folder) / "config.yaml"
    return read_yaml(path) if path.is_file() else {}


class Trainer:
    """One training run; see the module docstring. ``cfg.method`` names a registered method
    (:mod:`s2dit.train.methods`): flow matching always, the distillation stages once
    :mod:`s2dit.distill.methods` is imported."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        methods.check(cfg.method)
        self.cfg, self.progress = cfg, progress
        self.world: World = setup(cfg.device)
        self.out = Path(cfg.out)
        # One run per folder (a second one would delete our temporaries and log to an unlinked file).
        # Under torchrun rank 0 holds it for the job; held until close() or the process ends.
        self._lock = FolderLock(self.out).acquire() if self.world.is_main else None
        check_run_folder(cfg)
        per_rank = cfg.grad_accum * self.world.size
        if cfg.batch_size % per_rank:
            raise S2DitError(
                f"batch_size {cfg.batch_size} does not split over {self.world.size} processes × "
                f"{cfg.grad_accum} accumulation steps"
            )
        self.data = LatentBatches(cfg.data.latents, cfg.data.text_len, cfg.data.holdout, cfg.seed)
        self.source = latent_source(cfg.data.latents)
        self.method = methods.build(cfg, self.world)
        self.train_data = getattr(self.method, "data", None) or self.data
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.spec = resolve_spec(cfg.model)
        model = build_denoiser(self.spec).to(self.world.device)
        if cfg.activation_checkpointing:
            model.enable_activation_checkpointing()
        # A method that calls the model outside forward (self-forcing rollouts) averages gradients itself.
        self.wrapped = getattr(self.method, "wraps_model", True)
        if cfg.compile:
            # In place: the module (and its state-dict names) stay as they are; inductor fuses the
            # elementwise work of the forward and backward passes.
            model.compile()
        self.model = wrap(model, self.world, cfg.parallel) if self.wrapped else model
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: learning_rate(
                s, steps=cfg.steps, warmup_steps=o.warmup_steps, schedule=o.schedule, min_ratio=o.min_lr_ratio
            ),
        )
        self.ema = EMA(unwrap(self.model), cfg.ema_decay, cfg.ema_warmup)
        self.step = 0
        payload = checkpoint.load_latest(self.out / "checkpoints")
        if payload is not None:
            checkpoint.restore(self.model, self.optimizer, payload, self.world)
            self.scheduler.load_state_dict(payload["scheduler"])
            self.ema.load_state_dict(payload["ema"])
            self.ema.load_counters(payload.get("ema_counters", {}))
            checkpoint.set_rng_state(payload["rng"])
            self.step = payload["step"]
            if "method" in payload:
                self.method.load_state_dict(payload["method"])
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        self.null = self.data.null_text()
        self._vae = None
        self._swaps = None

    # -------------------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimiser step over the global batch; returns the mean loss, the gradient norm before
        clipping and the method's own numbers (rank 0's). A method may return no loss (DMD's critic-only
        iterations): the model is then left as it is."""
        cfg, world = self.cfg, self.world
        self.model.train()
        total = torch.zeros((), device=world.device)
        logs: dict[str, float] = {}
        updated = True
        for micro in range(cfg.grad_accum):
            positions = rank_positions(
                self.step, micro, cfg.batch_size, cfg.grad_accum, world.rank, world.size
            )
            batch = self.train_data.batch(positions)
            with no_sync(self.model, micro == cfg.grad_accum - 1):
                with precision.autocast(cfg.precision, world.device):
                    loss, extra = self.method.loss(self.model, batch, self.null, world.device, self.step)
                logs.update({k: float(v) for k, v in extra.items()})
                if loss is None:
                    updated = False
                    continue
                (loss / cfg.grad_accum).backward()
            total += loss.detach() / cfg.grad_accum
        if updated:
            if not self.wrapped:
                average_gradients(self.model, world)
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.ema.update(unwrap(self.model))
            logs.update(loss=float(world.mean(total)), grad_norm=float(norm))
        self.scheduler.step()
        self.step += 1
        return logs

    def run(self, max_steps: int | None = None, max_seconds: float | None = None) -> dict:
        """Train to ``cfg.steps`` (or stop after ``max_steps`` total steps, or at the first step boundary
        after ``max_seconds``, with a checkpoint; rerun to resume)."""
        from tqdm import tqdm

        cfg = self.cfg
        end = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
        deadline = time.monotonic() + max_seconds if max_seconds is not None else math.inf
        log = MetricLog(self.out, self.step, self.world.is_main)
        shape = self.data.dataset[0]["latents"].shape
        tokens = shape[1] * (shape[2] // 2) * (shape[3] // 2)
        bar = tqdm(
            total=end,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not (self.progress and self.world.is_main),
        )
        window: list[dict[str, float]] = []
        row: dict = {"step": self.step}
        tick = time.perf_counter()
        try:
            while self.step < end:
                window.append(self.train_step())
                bar.update()
                if self._out_of_time(deadline):
                    end = self.step
                if self.step % cfg.log_every == 0 or self.step == end:
                    seconds = time.perf_counter() - tick
                    samples = len(window) * cfg.batch_size
                    row = {
                        "step": self.step,
                        **mean_rows(window),
                        "lr": self.scheduler.get_last_lr()[0],
                        "samples_per_s": samples / seconds,
                        "tokens_per_s": samples * tokens / seconds,
                    }
                    log.write(row)
                    if "loss" in row:
                        bar.set_postfix(loss=f"{row['loss']:.4f}")
                    window.clear()
                    tick = time.perf_counter()
                evaluate = cfg.eval.every and (self.step % cfg.eval.every == 0 or self.step == cfg.steps)
                if self.step % cfg.checkpoint_every == 0 or self.step == end or evaluate:
                    ema_state = self.save()
                    gaps = self.swap_gaps(ema_state)
                    if gaps:
                        log.write({"step": self.step, **gaps})
                    if evaluate:
                        scores = self.evaluate(ema_state)
                        if scores is not None:
                            row = {
                                "step": self.step,
                                "eval_micro_score": scores["mean_accuracy"],
                                "eval_pass_rate": scores["pass_rate"],
                            }
                            log.write(row)
                    tick = time.perf_counter()
        finally:
            bar.close()
            log.close()
        return row

    def close(self) -> None:
        """Release the run folder's lock (the kernel also drops it when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _out_of_time(self, deadline: float) -> bool:
        """Past the deadline, by rank 0's clock (so every rank stops at the same step)."""
        if deadline == math.inf:
            return False
        over = torch.tensor(float(time.monotonic() > deadline), device=self.world.device)
        if self.world.distributed:
            torch.distributed.broadcast(over, 0)
        return bool(over)

    # -------------------------------------------------------------------------------------------

    def save(self) -> dict | None:
        """Checkpoint (rank 0 writes; every rank gathers) and export the EMA denoiser to ``out/model``.
        Returns the full EMA state dict on rank 0."""
        model_state, optim_state = checkpoint.full_state(self.model, self.optimizer, self.world)
        ema_state = self.ema.state_dict()
        if self.world.is_main:
            payload = {
                "model": model_state,
                "ema": ema_state,
                "ema_counters": self.ema.counters(),
                "optimizer": optim_state,
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "samples_seen": self.step * self.cfg.batch_size,
                "rng": checkpoint.rng_state(),
                "config": dataclasses.asdict(self.cfg),
            }
            if hasattr(self.method, "state_dict"):
                payload["method"] = self.method.state_dict()
            checkpoint.save(self.out / "checkpoints", self.step, payload, self.cfg.keep_checkpoints)
            exported = {**model_state, **ema_state}
            save_denoiser(unwrap(self.model), self.out / "model", exported)
            save_config(self.pipeline(), self.out / "model" / "pipeline.yaml")
        self.world.barrier()
        return {**model_state, **ema_state} if self.world.is_main else None

    def pipeline(self):
        """What generation needs besides the weights: text encoder, VAE, latent shape, sampling defaults."""
        from s2dit.diffusion.pipeline import PipelineInfo

        shape = list(self.data.dataset[0]["latents"].shape)
        video = self.source.get("video", {})
        return PipelineInfo(
            text=self.source.get("text", "minilm"),
            text_len=self.cfg.data.text_len,
            vae=self.vae_path(),
            latent_shape=shape,
            fps=float(video.get("fps", 16.0)),
            steps=self.cfg.eval.steps,
            cfg=self.cfg.eval.cfg,
            shift=self.cfg.eval.shift,
            sampler=self.cfg.eval.sampler,
            stream=self.cfg.distill.stream,
        )

    def vae_path(self) -> str:
        return self.cfg.vae or str(self.source.get("vae", ""))

    def ema_model(self, state: dict) -> torch.nn.Module:
        """A plain copy of the denoiser holding ``state`` (the EMA weights), in eval mode."""
        model = same_architecture(unwrap(self.model))
        model.load_state_dict(state)
        return model.to(self.world.device).eval()

    def swap_gaps(self, state: dict | None) -> dict[str, float]:
        """Caption-swap loss gaps of the EMA weights (rank 0; ``eval.swap_clips`` held-out clips as
        ``swap_gap_<attribute>``, as many training clips as ``swap_gap_train_<attribute>``); {} if off."""
        k = self.cfg.eval.swap_clips
        if not (k and self.world.is_main and self.data.dataset[0].get("objects")):
            return {}
        if self._swaps is None:
            from s2dit.latent.text import load_text_encoder
            from s2dit.train.caption_swap import CaptionSwap

            encoder = load_text_encoder(self.source.get("text", "minilm"), 128)
            held, train = self.data.holdout[:k], list(range(min(k, self.data.train_size)))
            self._swaps = {
                "swap_gap": CaptionSwap(self.data, held, encoder, self.cfg.data.text_len),
                "swap_gap_train": CaptionSwap(self.data, train, encoder, self.cfg.data.text_len),
            }
        model = self.ema_model(state)
        with precision.autocast(self.cfg.precision, self.world.device):
            return {
                f"{prefix}_{attr}": gap
                for prefix, swap in self._swaps.items()
                for attr, gap in swap.gaps(model, self.world.device).items()
            }

    def evaluate(self, state: dict | None) -> dict | None:
        """Sample held-out prompts with the EMA weights (rank 0), decode and score them."""
        scores = None
        if self.world.is_main:
            from s2dit.train.evaluate import evaluate_heldout

            model = self.ema_model(state)
            folder = self.out / "samples" / f"step-{self.step:07d}"
            amp = precision.autocast(self.cfg.precision, self.world.device)
            vae = self.load_vae()
            scores = evaluate_heldout(
                model,
                self.data,
                self.cfg.eval,
                vae,
                folder,
                self.pipeline().fps,
                self.world.device,
                amp,
                stream=self.cfg.distill.stream,
            )
        self.world.barrier()
        return scores

    def load_vae(self):
        if self._vae is None and self.vae_path():
            from s2dit.latent.vae import load_vae

            self._vae = load_vae(self.vae_path())
        return self._vae


def train(
    cfg: TrainConfig,
    max_steps: int | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
) -> dict:
    """Train (or resume) a run; returns the last logged row."""
    trainer = Trainer(cfg, progress=progress)
    try:
        return trainer.run(max_steps, max_seconds)
    finally:
        trainer.close()
