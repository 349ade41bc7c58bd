"""The trainer: ``s2dit train --config FILE`` (one process, or many under torchrun).

Every method (``method:`` flow-matching pretraining, or a distillation stage of :mod:`s2dit.distill`:
cached KD, causal ODE regression, DMD with self-forcing) supplies ``loss(model, batch, null, device, step)
-> (loss, logs)`` and may bring its own ``data`` (``batch(positions)``); the trainer does the rest: DDP /
FSDP2, bf16 autocast where it pays (:mod:`s2dit.precision`), ``torch.compile``, EMA (with warm-up), the
learning-rate schedule, caption-swap gaps at checkpoints, periodic evaluation, and the exported model (EMA
weights) in ``out/model``; the loop every s2dit training shares (:mod:`s2dit.train.loop`) does gradient
accumulation and clipping, logging and atomic checkpoints with exact resume.

Run folder::

    config.yaml          the resolved TrainConfig (a rerun with other settings is refused)
    checkpoints/         step-NNNNNNN.pt, the newest keep_checkpoints of them
    model/               the EMA denoiser (load with s2dit generate --checkpoint RUN) + pipeline.yaml
    train_log.jsonl      one row per log_every steps (loss, grad_norm, lr, samples/s, tokens/s, eval)
    tensorboard/         the same scalars for TensorBoard
    samples/step-N/      evaluation videos, contact_sheet.png, prompts.jsonl, scores.json
"""

from __future__ import annotations

from pathlib import Path

import torch

from s2dit import precision
from s2dit.config import save_config
from s2dit.errors import S2DitError
from s2dit.files import read_yaml
from s2dit.model.denoiser import build_denoiser, resolve_spec, same_architecture, save_denoiser
from s2dit.train import methods
from s2dit.train.config import TrainConfig
from s2dit.train.data import LatentBatches, rank_positions
from s2dit.train.distributed import setup, unwrap, wrap
from s2dit.train.ema import EMA
from s2dit.train.loop import LoopSettings, TrainingLoop
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


def latent_source(folder: str) -> dict:
    """What encoded a latent folder: its VAE, text encoder and video spec (from its config.yaml)."""
    path = Path(folder) / "config.yaml"
    return read_yaml(path) if path.is_file() else {}


class Trainer(TrainingLoop):
    """One denoiser training run (the loop of :mod:`s2dit.train.loop`); see the module docstring.
    ``cfg.method`` names a registered method (:mod:`s2dit.train.methods`): flow matching always, the
    distillation stages once :mod:`s2dit.distill.methods` is imported."""

    def __init__(self, cfg: TrainConfig, progress: bool = True):
        methods.check(cfg.method)
        self.cfg = cfg
        world = setup(cfg.device)
        per_rank = cfg.grad_accum * world.size
        if cfg.batch_size % per_rank:
            raise S2DitError(
                f"batch_size {cfg.batch_size} does not split over {world.size} processes × "
                f"{cfg.grad_accum} accumulation steps"
            )
        o = cfg.optim
        settings = LoopSettings(
            out=cfg.out,
            config=cfg,
            steps=cfg.steps,
            learning_rate=self.rate,
            batch_size=cfg.batch_size,
            grad_clip=o.grad_clip,
            grad_accum=cfg.grad_accum,
            adamw={"betas": tuple(o.betas), "eps": o.eps, "weight_decay": o.weight_decay},
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            keep_checkpoints=cfg.keep_checkpoints,
            resumable=RESUMABLE_CHANGES,
            tensorboard=True,
        )
        self._vae = None
        self._swaps = None
        super().__init__(settings, world, progress)

    def rate(self, step: int) -> float:
        """The learning rate at ``step``: ``optim.lr`` × the warm-up ramp × the schedule."""
        o = self.cfg.optim
        factor = learning_rate(
            step,
            steps=self.cfg.steps,
            warmup_steps=o.warmup_steps,
            schedule=o.schedule,
            min_ratio=o.min_lr_ratio,
        )
        return o.lr * factor

    def build(self):
        cfg = self.cfg
        self.data = LatentBatches(cfg.data.latents, cfg.data.text_len, cfg.data.holdout, cfg.seed)
        self.source = latent_source(cfg.data.latents)
        self.method = methods.build(cfg, self.world)
        self.train_data = getattr(self.method, "data", None) or self.data
        self.null = self.data.null_text()
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.spec = resolve_spec(cfg.model)
        model = build_denoiser(self.spec).to(self.world.device)
        if cfg.activation_checkpointing:
            model.enable_activation_checkpointing()
        # A method that calls the model outside forward (self-forcing rollouts) averages gradients itself.
        self.averages_gradients = getattr(self.method, "wraps_model", True)
        if precision.compiles(cfg.compile, cfg.precision, self.world.device):
            # In place: the module (and its state-dict names) stay as they are; inductor fuses the
            # elementwise work of the forward and backward passes.
            model.compile()
        model = wrap(model, self.world, cfg.parallel) if self.averages_gradients else model
        self.ema = EMA(unwrap(model), cfg.ema_decay, cfg.ema_warmup)
        return model, list(model.parameters())

    def loss(self, step: int, micro: int):
        cfg, world = self.cfg, self.world
        positions = rank_positions(step, micro, cfg.batch_size, cfg.grad_accum, world.rank, world.size)
        batch = self.train_data.batch(positions)
        with precision.autocast(cfg.precision, world.device):
            return self.method.loss(self.model, batch, self.null, world.device, step)

    def after_update(self) -> None:
        self.ema.update(unwrap(self.model))

    def tokens_per_sample(self) -> int:
        shape = self.data.dataset[0]["latents"].shape
        return shape[1] * (shape[2] // 2) * (shape[3] // 2)

    def extra_state(self) -> dict:
        state = {
            "ema": self.ema.state_dict(),
            "ema_counters": self.ema.counters(),
            "samples_seen": self.step * self.cfg.batch_size,
        }
        if hasattr(self.method, "state_dict"):
            state["method"] = self.method.state_dict()
        return state

    def load_extra_state(self, payload: dict) -> None:
        self.ema.load_state_dict(payload["ema"])
        self.ema.load_counters(payload.get("ema_counters", {}))
        if "method" in payload:
            self.method.load_state_dict(payload["method"])

    def _evaluates(self, step: int) -> bool:
        every = self.cfg.eval.every
        return bool(every) and (step % every == 0 or step == self.cfg.steps)

    def checkpoint_due(self, step: int) -> bool:
        return self._evaluates(step)

    def at_checkpoint(self, model_state: dict | None) -> list[dict]:
        """Export the EMA denoiser to ``out/model``, then the caption-swap gaps and (at evaluation steps)
        the sampled held-out scores."""
        ema_state = self.export(model_state)
        rows = []
        gaps = self.swap_gaps(ema_state)
        if gaps:
            rows.append(gaps)
        if self._evaluates(self.step):
            scores = self.evaluate(ema_state)
            if scores is not None:
                rows.append(
                    {"eval_micro_score": scores["mean_accuracy"], "eval_pass_rate": scores["pass_rate"]}
                )
        return rows

    def export(self, model_state: dict | None) -> dict | None:
        """Write the EMA denoiser and its pipeline.yaml to ``out/model`` (rank 0); returns the full EMA
        state dict on rank 0."""
        ema_state = self.ema.state_dict()
        exported = None
        if self.world.is_main:
            exported = {**model_state, **ema_state}
            save_denoiser(unwrap(self.model), self.out / "model", exported)
            save_config(self.pipeline(), self.out / "model" / "pipeline.yaml")
        self.world.barrier()
        return exported

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
            noise_correlation=self.cfg.noise_correlation,
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
                noise_correlation=self.cfg.noise_correlation,
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
    return Trainer(cfg, progress=progress).fit(max_steps, max_seconds)
