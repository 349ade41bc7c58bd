"""The settings of the teacher trajectory cache (``s2dit distill cache``, :mod:`s2dit.distill.cache`).

Kept apart from the cache itself, and free of torch, so that the command line can build its options from
these fields (types and defaults) without importing torch at start-up.
"""

from __future__ import annotations

import dataclasses

from s2dit.errors import S2DitError


@dataclasses.dataclass
class CacheConfig:
    teacher: str = ""  # a teacher folder or run (pipeline.yaml names its text encoder and latent shape)
    # one prompt per line, a .jsonl with "caption" (e.g. a micro world's clips.jsonl), or an encoded latent
    # folder (its captions and stored text embeddings: no text encoder needed, e.g. on a GPU box)
    prompts: str = ""
    out: str = "runs/trajectories"
    steps: int = 48
    cfg: float = 6.0  # g in u + g·(c - u)
    shift: float | None = None  # default: the teacher's pipeline.yaml
    keep: str = "all"  # "all", or K: K levels evenly spaced from the noise to the final latents
    negative: str = ""
    seed: int = 0  # sample i starts from noise seeded by seed + i
    batch: int = 4
    frames: int | None = None  # latent frames (default: the teacher's latent shape)
    count: int = 0  # the first N prompts only (0: all), e.g. to keep a world's held-out prompts out

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.cfg < 0 or self.count < 0:
            raise S2DitError("--steps and --batch must be at least 1, --cfg and --count at least 0")
        if self.keep != "all" and not (self.keep.isdigit() and 2 <= int(self.keep) <= self.steps + 1):
            raise S2DitError(f"--keep {self.keep!r}: 'all' or a count from 2 to steps + 1 ({self.steps + 1})")

    def kept_levels(self) -> list[int]:
        """Indices (into the ``steps + 1`` levels) of the states kept."""
        n = self.steps + 1
        if self.keep == "all":
            return list(range(n))
        k = int(self.keep)
        return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
