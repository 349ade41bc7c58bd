"""The one training loop of s2dit. Every training is a subclass of :class:`TrainingLoop`: the denoiser and
its distillation stages (:class:`s2dit.train.trainer.Trainer`), the autoencoders and the streaming decoder
(:mod:`s2dit.train.vae`, :mod:`s2dit.train.decoder`) and the layout-search supernet
(:mod:`s2dit.search.supernet`).

A subclass supplies the model (:meth:`~TrainingLoop.build`), the loss of a step
(:meth:`~TrainingLoop.loss`) and, where it needs them, what it keeps besides the weights, what it does at a
checkpoint and at the end. The loop does the rest the same way for all of them:

* one run per folder (:class:`s2dit.lock.FolderLock`), and a rerun with other settings than the newest
  checkpoint's refused with the differences (:func:`s2dit.train.checkpoint.refuse_other_settings`);
* AdamW with a learning rate that is a function of the step (:mod:`s2dit.train.schedule`), so a resumed
  run continues on the same curve; gradient accumulation, clipping, gradient averaging over processes;
* the log ``train_log.jsonl`` (:mod:`s2dit.train.log`): every ``log_every`` steps the mean of the step
  logs, the learning rate and the throughput;
* atomic checkpoints ``checkpoints/step-NNNNNNN.pt`` (:mod:`s2dit.train.checkpoint`) with exact resume:
  ``model``, ``optimizer``, ``step``, ``rng`` and ``config``, plus the subclass's own entries;
* stopping after ``max_steps`` or at the first step boundary after ``max_seconds``, with a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from s2dit.config import save_config, to_dict
from s2dit.lock import FolderLock
from s2dit.train import checkpoint
from s2dit.train.distributed import World, average_gradients, no_sync
from s2dit.train.log import MetricLog, mean_rows


@dataclasses.dataclass
class LoopSettings:
    """How the loop runs one training (built by each subclass from its config)."""

    out: str | Path
    config: object  # the run's config dataclass: saved in config.yaml and in every checkpoint
    steps: int
    learning_rate: Callable[[int], float]  # the rate at a step
    batch_size: int  # samples per optimiser step (for samples/s)
    grad_clip: float = 1.0  # max gradient norm; 0: no clipping
    grad_accum: int = 1  # loss calls per optimiser step
    adamw: dict = dataclasses.field(default_factory=dict)  # AdamW's other settings (default weight decay 0)
    log_every: int = 25
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    resumable: tuple[str, ...] = ("out",)  # config fields a resumed run may change
    old_formats: tuple[str, ...] = ()  # checkpoint files of the formats before checkpoints/step-N.pt
    tensorboard: bool = False
    desc: str = "train"  # the progress bar's label
    bar_keys: tuple[str, ...] = ("loss",)  # logged values shown on the progress bar


def single_process(device: str | torch.device = "cpu") -> World:
    """The world of a training that runs in one process."""
    return World(rank=0, size=1, local_rank=0, device=torch.device(device))


class TrainingLoop:
    """One training run: see the module docstring. Constructing it takes the folder's lock, checks the
    settings, builds the model and resumes from the newest checkpoint; :meth:`run` trains."""

    def __init__(self, settings: LoopSettings, world: World, progress: bool = True):
        self.settings, self.world, self.progress = settings, world, progress
        self.out = Path(settings.out)
        # One run per folder (a second one would delete our temporaries and log to an unlinked file).
        # Under torchrun rank 0 holds it for the job; held until close() or the process ends.
        self._lock = FolderLock(self.out).acquire() if world.is_main else None
        try:
            for name in settings.old_formats:
                checkpoint.refuse_old_format(self.out, name)
            payload = checkpoint.load_latest(self.out / "checkpoints")
            if payload is not None:
                checkpoint.refuse_other_settings(
                    self.out, payload["config"], settings.config, settings.resumable
                )
            self.model, parameters = self.build()
            self.trained_parameters = list(parameters)
            adamw = {"weight_decay": 0.0, **settings.adamw}
            self.optimizer = torch.optim.AdamW(self.trained_parameters, lr=settings.learning_rate(0), **adamw)
            self.step = 0
            if payload is not None:
                checkpoint.restore(self.model, self.optimizer, payload)
                checkpoint.set_rng_state(payload["rng"])
                self.step = payload["step"]
                self.load_extra_state(payload)
            if world.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                save_config(settings.config, self.out / "config.yaml")
        except BaseException:
            self.close()
            raise

    # -- what a training supplies ------------------------------------------------------------------

    def build(self) -> tuple[nn.Module, list[nn.Parameter]]:
        """The model as trained (wrapped under torchrun; its state is the checkpoint's ``model``) and the
        parameters the optimiser updates."""
        raise NotImplementedError

    def loss(self, step: int, micro: int) -> tuple[torch.Tensor | None, dict[str, float]]:
        """The loss of accumulation step ``micro`` of optimiser step ``step`` and numbers to log (floats).
        No loss (None) leaves the model as it is for this step."""
        raise NotImplementedError

    averages_gradients = True  # False: the model is not DDP-wrapped, so the loop averages gradients

    def after_update(self) -> None:
        """Called after every optimiser step (the EMA updates here)."""

    def tokens_per_sample(self) -> int:
        """Tokens in one sample, for the logged tokens/s (0: not logged)."""
        return 0

    def extra_state(self) -> dict:
        """Entries of the checkpoint besides the loop's own (every rank calls; rank 0's are written)."""
        return {}

    def load_extra_state(self, payload: dict) -> None:
        """Restore :meth:`extra_state` from a checkpoint's payload."""

    def checkpoint_due(self, step: int) -> bool:
        """Checkpoint at ``step`` besides every ``checkpoint_every`` steps and at the end."""
        return False

    def at_checkpoint(self, model_state: dict | None) -> list[dict]:
        """After each checkpoint (``model_state``: the full weights on rank 0, None elsewhere): rows to
        log."""
        return []

    def finish(self, row: dict) -> dict:
        """After the loop (also when a finished run is resumed): what :meth:`run` returns."""
        return row

    # -- the loop ----------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimiser step: returns the step's logs, with the mean ``loss`` and the gradient norm
        before clipping (``grad_norm``) when the model was updated."""
        s, world = self.settings, self.world
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = s.learning_rate(self.step)
        total = torch.zeros((), device=world.device)
        logs: dict[str, float] = {}
        updated = True
        for micro in range(s.grad_accum):
            with no_sync(self.model, micro == s.grad_accum - 1):
                loss, extra = self.loss(self.step, micro)
                logs.update({k: float(v) for k, v in extra.items()})
                if loss is None:
                    updated = False
                    continue
                (loss / s.grad_accum).backward()
            total += loss.detach() / s.grad_accum
        if updated:
            if not self.averages_gradients:
                average_gradients(self.model, world)
            max_norm = s.grad_clip if s.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.trained_parameters, max_norm)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.after_update()
            logs.update(loss=float(world.mean(total)), grad_norm=float(norm))
        self.step += 1
        return logs

    def run(self, max_steps: int | None = None, max_seconds: float | None = None) -> dict:
        """Train to ``steps`` (or stop after ``max_steps`` total steps, or at the first step boundary after
        ``max_seconds``, with a checkpoint; rerun to resume); returns :meth:`finish` of the last step's logs
        (the checkpoint's rows merged in)."""
        from tqdm import tqdm

        s = self.settings
        end = min(s.steps, max_steps) if max_steps is not None else s.steps
        deadline = time.monotonic() + max_seconds if max_seconds is not None else math.inf
        log = MetricLog(self.out, self.step, self.world.is_main, s.tensorboard)
        tokens = self.tokens_per_sample()
        show = self.progress and self.world.is_main
        bar = tqdm(total=end, initial=self.step, desc=s.desc, unit="step", disable=not show)
        window: list[dict[str, float]] = []
        row: dict = {"step": self.step}
        tick = time.perf_counter()
        try:
            while self.step < end:
                lr = s.learning_rate(self.step)
                window.append(self.train_step())
                bar.update()
                if self._out_of_time(deadline):
                    end = self.step
                if self.step % s.log_every == 0 or self.step == end:
                    samples = len(window) * s.batch_size / (time.perf_counter() - tick)
                    row = {"step": self.step, **mean_rows(window), "lr": lr, "samples_per_s": samples}
                    if tokens:
                        row["tokens_per_s"] = samples * tokens
                    log.write(row)
                    shown = {k: f"{row[k]:.4g}" for k in s.bar_keys if k in row}
                    if shown:
                        bar.set_postfix(shown)
                    window.clear()
                    tick = time.perf_counter()
                if self.step % s.checkpoint_every == 0 or self.step == end or self.checkpoint_due(self.step):
                    for extra in self.at_checkpoint(self.save_checkpoint()):
                        log.write({"step": self.step, **extra})
                        row.update(extra)  # the end's checkpoint follows the end's log row
                    tick = time.perf_counter()
        finally:
            bar.close()
            log.close()
        return self.finish(row)

    def save_checkpoint(self) -> dict | None:
        """Write ``checkpoints/step-N.pt`` (rank 0 writes; every rank gathers); returns the full model
        state on rank 0."""
        model_state, optim_state = checkpoint.full_state(self.model, self.optimizer, self.world)
        extra = self.extra_state()
        if self.world.is_main:
            payload = {
                "model": model_state,
                "optimizer": optim_state,
                "step": self.step,
                "rng": checkpoint.rng_state(),
                "config": to_dict(self.settings.config),
                **extra,
            }
            checkpoint.save(self.out / "checkpoints", self.step, payload, self.settings.keep_checkpoints)
        self.world.barrier()
        return model_state if self.world.is_main else None

    def close(self) -> None:
        """Release the run folder's lock (the kernel also drops it when the process ends)."""
        if getattr(self, "_lock", None) is not None:
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

    def fit(self, max_steps: int | None = None, max_seconds: float | None = None) -> dict:
        """:meth:`run`, then release the folder."""
        try:
            return self.run(max_steps, max_seconds)
        finally:
            self.close()
