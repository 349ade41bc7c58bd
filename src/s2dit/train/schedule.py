"""The learning-rate schedule of every s2dit training: a linear warm-up ramp times a constant or a cosine."""

from __future__ import annotations

import math


def learning_rate(
    step: int,
    *,
    steps: int,
    warmup_steps: int,
    schedule: str = "constant",
    min_ratio: float = 0.0,
    decay_start: int | None = None,
    peak: float = 1.0,
) -> float:
    """The learning rate at ``step`` (of ``steps``): ``peak`` × the warm-up ramp × the decay.

    The ramp is ``min(1, (step + 1) / warmup_steps)`` (1 without warm-up); the decay is 1 (``schedule:
    constant``) or a cosine from 1 at ``decay_start`` down to ``min_ratio`` at ``steps`` (``cosine``). The
    denoiser trainer decays after the warm-up (``decay_start = warmup_steps``, the default) and hands the
    result (``peak`` 1) to ``LambdaLR`` as a factor; the autoencoder trainers decay over the whole run,
    under the ramp (``decay_start = 0``), and set the rate itself (``peak = lr``).
    """
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    start = warmup_steps if decay_start is None else decay_start
    if schedule == "constant" or step < start:
        return peak * warm
    progress = min(1.0, (step - start) / max(1, steps - start))
    return peak * warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
