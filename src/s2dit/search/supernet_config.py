"""The settings of the weight-sharing supernet (``s2dit search supernet``, :mod:`s2dit.search.supernet`).

Kept apart from the supernet, and free of torch, so that the command line builds its options from these
fields without importing torch at start-up.
"""

from __future__ import annotations

import dataclasses

from s2dit.diffusion.timesteps import TimestepSampling
from s2dit.errors import S2DitError
from s2dit.model.config import KINDS


@dataclasses.dataclass
class SupernetConfig:
    latents: str = ""  # an encoded latent folder (s2dit data encode)
    out: str = "runs/supernet"
    depth: int = 10
    kinds: str = "LS"
    width: int = 192
    heads: int = 3
    ffn_dim: int = 768
    text_dim: int = 384
    text_len: int = 64
    holdout: int = 64  # the folder's last clips: never trained on, used for scoring
    steps: int = 300
    batch_size: int = 8
    lr: float = 5e-4
    grad_clip: float = 1.0
    eval_clips: int = 16
    eval_layouts: int = 4  # random layouts per (position, kind)
    checkpoint_every: int = 100
    seed: int = 0
    timesteps: TimestepSampling = dataclasses.field(
        default_factory=lambda: TimestepSampling(distribution="logit_normal", shift=3.0)
    )

    def __post_init__(self) -> None:
        if not self.kinds or set(self.kinds) - set(KINDS) or len(set(self.kinds)) != len(self.kinds):
            raise S2DitError(f"kinds: {self.kinds!r} must be distinct letters from {', '.join(KINDS)}")
        if min(self.depth, self.steps, self.batch_size, self.eval_clips, self.eval_layouts) < 1:
            raise S2DitError("depth, steps, batch_size, eval_clips and eval_layouts must be at least 1")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise S2DitError(f"width {self.width} must split into {self.heads} heads of even size")
