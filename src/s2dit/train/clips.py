"""Training batches for the autoencoder trainers (``s2dit train vae`` and ``s2dit train decoder``).

A batch is ``batch_size`` short clips of ``clip_frames`` frames, each cut from a random video of the
folder at a random frame stride (from ``strides``), a random start and a random ``crop``. Strides 1, 2 and 4
of 16 fps videos train one autoencoder for the rates it meets: 16 fps clips (``s2dit eval vae``) and the
4 fps latents of the micro chain. Every draw comes from a generator seeded by ``(seed, step)``, so a resumed
run sees exactly the batches an uninterrupted one would.

With ``preload`` the videos are decoded once into memory as uint8 (the micro world's 1,000 clips are
3.6 GB); otherwise each batch decodes its videos, which on two cores costs about as much as the step.
"""

from __future__ import annotations

import numpy as np
import torch

from s2dit.errors import ConfigError


def check_clip_settings(clip_frames: int, strides: list[int], crop: list[int], video) -> None:
    """Raise a one-line ConfigError unless the clips fit in the loaded videos."""
    if clip_frames < 1 or (clip_frames - 1) % 4:
        raise ConfigError(f"clip_frames: {clip_frames} is not of the form 4k+1 (e.g. 5, 9, 17)")
    if not strides or any(s < 1 for s in strides):
        raise ConfigError(f"strides: {strides} must be a non-empty list of frame strides >= 1")
    span = (clip_frames - 1) * max(strides) + 1
    if span > video.frames:
        raise ConfigError(
            f"clip_frames {clip_frames} at stride {max(strides)} spans {span} frames; "
            f"the videos are loaded with video.frames={video.frames}"
        )
    if len(crop) != 2 or any(c < 8 or c % 8 for c in crop) or crop[0] > video.width or crop[1] > video.height:
        raise ConfigError(f"crop: {crop} must be [width, height], multiples of 8 within the video size")


class ClipSampler:
    """Seeded random clips from a video dataset; ``batch(step)`` -> pixels ``[B, 3, clip_frames, h, w]``."""

    def __init__(
        self,
        dataset,
        clip_frames: int,
        strides: list[int],
        crop: list[int],
        batch_size: int,
        seed: int,
        preload: bool,
        progress: bool = True,
    ):
        self.dataset, self.clip_frames, self.strides = dataset, clip_frames, list(strides)
        self.crop, self.batch_size, self.seed = list(crop), batch_size, seed
        self.videos: list[torch.Tensor] | None = None
        if preload:
            from tqdm import tqdm

            self.videos = [
                self._to_uint8(dataset[i]["pixels"])
                for i in tqdm(range(len(dataset)), desc="loading clips", unit="clip", disable=not progress)
            ]

    @staticmethod
    def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
        return ((pixels + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)

    def _video(self, i: int) -> torch.Tensor:
        """Video ``i`` as uint8 ``[3, F, H, W]``."""
        return self.videos[i] if self.videos is not None else self._to_uint8(self.dataset[i]["pixels"])

    def batch(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        (cw, ch), clips = self.crop, []
        for _ in range(self.batch_size):
            video = self._video(int(rng.integers(len(self.dataset))))
            (frames, H, W), stride = video.shape[1:], self.strides[int(rng.integers(len(self.strides)))]
            span = (self.clip_frames - 1) * stride + 1
            t0, y, x = (int(rng.integers(n + 1)) for n in (frames - span, H - ch, W - cw))
            clips.append(video[:, t0 : t0 + span : stride, y : y + ch, x : x + cw])
        return torch.stack(clips).float().div_(127.5).sub_(1.0)
