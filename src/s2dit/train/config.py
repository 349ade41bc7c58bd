"""The training run config: ``s2dit train --config FILE [--set k=v ...]`` (dataclasses <- YAML)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from s2dit.diffusion.sampler_names import ALL as SAMPLERS
from s2dit.diffusion.sampler_names import BIDIRECTIONAL, listed
from s2dit.diffusion.streaming import StreamSettings
from s2dit.diffusion.timesteps import TimestepSampling
from s2dit.errors import ConfigError
from s2dit.model.denoiser import DenoiserSpec


@dataclasses.dataclass
class DataConfig:
    latents: str = "runs/micro_latents"  # a folder written by s2dit data encode
    text_len: int = 64  # prompts are zero-padded (or cut) to this many tokens
    holdout: int = 32  # the folder's last clips, kept out of training for evaluation

    def __post_init__(self) -> None:
        if self.text_len < 1 or self.holdout < 0:
            raise ConfigError("data.text_len must be at least 1 and data.holdout non-negative")


@dataclasses.dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 100  # linear warm-up from 0
    schedule: str = "constant"  # after warm-up: "constant" or "cosine" (down to min_lr_ratio·lr)
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule: {self.schedule!r} must be 'constant' or 'cosine'")
        if self.lr <= 0 or len(self.betas) != 2 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ConfigError("optim: lr > 0, two betas, warmup_steps >= 0 and grad_clip >= 0 are required")


@dataclasses.dataclass
class EvalConfig:
    every: int = 1000  # steps between evaluations (also at the end); 0 disables
    prompts: int = 8  # held-out prompts sampled per evaluation
    steps: int = 50
    cfg: float = 5.0  # classifier-free guidance scale g in u + g·(c - u)
    shift: float = 3.0  # sampling schedule shift
    sampler: str = "unipc"  # sampler_names.ALL; "stream": chunk by chunk with the run's stream settings
    seed: int = 0
    swap_clips: int = 0  # caption-swap loss gaps at every checkpoint on this many held-out and training clips
    start_sigma: float = 1.0  # < 1: sample from the held-out clips noised to this level (SDEdit)

    def __post_init__(self) -> None:
        if not 0.0 < self.start_sigma <= 1.0:
            raise ConfigError(f"eval.start_sigma: {self.start_sigma} must lie in (0, 1]")
        if self.start_sigma < 1.0 and self.sampler == "stream":
            raise ConfigError(
                f"eval.start_sigma below 1 needs a bidirectional sampler ({listed(BIDIRECTIONAL)})"
            )
        if self.swap_clips < 0:
            raise ConfigError(f"eval.swap_clips: {self.swap_clips} must be >= 0")
        if self.every < 0 or self.prompts < 1 or self.steps < 1:
            raise ConfigError("eval: every >= 0, prompts >= 1 and steps >= 1 are required")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"eval.sampler: {self.sampler!r} must be {listed(SAMPLERS)}")


@dataclasses.dataclass
class DistillConfig:
    """The ``distill:`` section: read by the distillation methods of :mod:`s2dit.distill`; ignored by
    flow-matching runs.

    ``stream`` is the student's streaming schedule (chunk, steps, shift, commit level): the causal ODE stage
    regresses at its levels, DMD rolls out with it, and the trained model's ``pipeline.yaml`` carries it.
    """

    cache: str = ""  # kd, causal_ode: a trajectory cache made by s2dit distill cache
    velocity_weight: float = 1.0  # kd: teacher velocity matching at cached states
    flow_weight: float = 1.0  # kd: flow matching on the teacher's final latents
    teacher: str = ""  # dmd: the real score (frozen, with CFG)
    critic: str = ""  # dmd: the fake score's starting weights (default: the teacher)
    cfg: float = 5.0  # dmd: CFG scale of the real score, u + g·(c - u)
    generator_every: int = 5  # dmd: one generator update per this many critic updates
    critic_lr: float = 4e-7
    critic_betas: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.999])
    min_sigma: float = 0.02  # dmd: noise levels drawn uniformly in [min_sigma, max_sigma], then shifted
    max_sigma: float = 0.98
    shift: float = 5.0
    stream: StreamSettings = dataclasses.field(default_factory=StreamSettings)

    def __post_init__(self) -> None:
        if self.velocity_weight < 0 or self.flow_weight < 0 or self.velocity_weight + self.flow_weight == 0:
            raise ConfigError("distill: velocity_weight and flow_weight must be >= 0, not both 0")
        if self.generator_every < 1 or self.critic_lr <= 0 or len(self.critic_betas) != 2:
            raise ConfigError(
                "distill: generator_every >= 1, critic_lr > 0 and two critic_betas are required"
            )
        if not 0 <= self.min_sigma < self.max_sigma <= 1 or self.shift <= 0:
            raise ConfigError("distill: need 0 <= min_sigma < max_sigma <= 1 and shift > 0")
        if self.cfg < 0:
            raise ConfigError(f"distill.cfg: {self.cfg} must be >= 0")


@dataclasses.dataclass
class TrainConfig:
    """A training run. ``batch_size`` is global: split over processes and accumulation steps."""

    out: str = "runs/train"
    # or a distillation stage: "kd", "causal_ode", "dmd" (see distill); checked by the trainer against the
    # registered methods (s2dit.train.methods), which the config cannot see before distill is imported
    method: str = "flow_matching"
    model: DenoiserSpec = dataclasses.field(default_factory=DenoiserSpec)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    timesteps: TimestepSampling = dataclasses.field(default_factory=TimestepSampling)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    vae: str = ""  # decoder for evaluation samples; default: the VAE that encoded data.latents
    steps: int = 10000
    batch_size: int = 8
    grad_accum: int = 1
    cfg_dropout: float = 0.1  # probability of training a sample on the empty prompt (for CFG)
    chunk_frames: int = 0  # 0: bidirectional; c > 0: block-causal over chunks of c latent frames
    # ρ in [0, 1): the training noise's latent frames share a draw, correlated by ρ (PYoCo's mixed noise);
    # written to pipeline.yaml, so the model samples from the noise it learned
    noise_correlation: float = 0.0
    ema_decay: float = 0.999
    ema_warmup: bool = False  # decay min(ema_decay, (1 + k) / (10 + k)) at update k: forget the init fast
    # torch.compile the denoiser (inductor fuses its elementwise work; ~100 s first): true, false, or "auto"
    # (compile where the run computes in bf16, where it pays; float32 on a CPU it did not: 0.77x on Zen 3)
    compile: bool | Literal["auto"] = False
    parallel: str = "ddp"  # "ddp" or "fsdp" (FSDP2 fully_shard) when launched on several processes
    # "auto" (bf16 autocast on GPUs and CPUs where a bf16 matmul measures >= 1.5x float32), float32, bfloat16
    precision: str = "auto"
    device: str = "auto"  # "auto", "cpu" or "cuda"
    activation_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "grad_accum",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)} must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )
        if not 0 <= self.cfg_dropout < 1 or not 0 <= self.ema_decay < 1 or self.chunk_frames < 0:
            raise ConfigError("cfg_dropout and ema_decay must lie in [0, 1); chunk_frames must be >= 0")
        if not 0 <= self.noise_correlation < 1:  # NaN fails too
            raise ConfigError(f"noise_correlation: {self.noise_correlation} must lie in [0, 1)")
        if self.method == "dmd" and self.grad_accum != 1:
            raise ConfigError("method dmd updates two models in turn: grad_accum must be 1")
        if self.parallel not in ("ddp", "fsdp"):
            raise ConfigError(f"parallel: {self.parallel!r} must be 'ddp' or 'fsdp'")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"precision: {self.precision!r} must be 'auto', 'float32' or 'bfloat16'")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: {self.device!r} must be 'auto', 'cpu' or 'cuda'")
