"""A torch ``Dataset`` over a folder of captioned videos.

Accepted folders:

* a micro world (``clips.jsonl`` with ``video`` and ``caption`` per row), or
* any folder of mp4/webm/mov/mkv files with ``captions.jsonl`` (rows ``{"video": ..., "caption": ...}``)
  or ``captions.csv`` (a header with ``video`` (or ``file``/``path``) and ``caption`` (or ``text``/
  ``prompt``) columns). Video paths are relative to the folder.

Each item is a clip of ``spec.frames`` frames resampled to ``spec.fps``, resized to cover
``spec.width × spec.height`` and centre-cropped: ``{"pixels": [3, F, H, W] float32 in [-1, 1],
"caption": str, "video": str}``. Files that cannot be read, or are too short for ``spec.frames`` frames
at ``spec.fps``, are skipped with a warning and counted in ``dataset.skipped``; they never stop a run.
(Files that fail only when decoded are counted in the process that decodes them: with DataLoader workers,
the warning is what reaches you.)
"""

from __future__ import annotations

import collections
import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from s2dit.config import VideoSpec
from s2dit.errors import S2DitError

_VIDEO_KEYS = ("video", "file", "path")
_CAPTION_KEYS = ("caption", "text", "prompt")


def _pick_key(row: dict, keys: tuple[str, ...]):
    return next((row[k] for k in keys if row.get(k)), None)


def read_captions(root: str | os.PathLike) -> list[tuple[str, str]]:
    """``(relative video path, caption)`` pairs of a folder (see the module docstring for the formats)."""
    root = Path(root)
    for name in ("clips.jsonl", "captions.jsonl"):
        if (root / name).is_file():
            pairs = []
            for i, line in enumerate((root / name).read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(f"{root / name}:{i}: not JSON, skipped", stacklevel=2)
                    continue
                if not isinstance(row, dict):
                    warnings.warn(f"{root / name}:{i}: not a JSON object, skipped", stacklevel=2)
                    continue
                video, caption = _pick_key(row, _VIDEO_KEYS), _pick_key(row, _CAPTION_KEYS)
                if video and caption is not None:
                    pairs.append((str(video), str(caption)))
            return pairs
    if (root / "captions.csv").is_file():
        with open(root / "captions.csv", newline="", encoding="utf-8-sig") as f:  # tolerate a BOM
            return [
                (str(_pick_key(row, _VIDEO_KEYS)), str(_pick_key(row, _CAPTION_KEYS) or ""))
                for row in csv.DictReader(f)
                if _pick_key(row, _VIDEO_KEYS)
            ]
    raise S2DitError(f"{root}: no clips.jsonl, captions.jsonl or captions.csv with video paths and captions")


def source_indices(n_source: int, source_fps: float, spec: VideoSpec, start: int = 0) -> np.ndarray | None:
    """Source frame indices for ``spec.frames`` frames at ``spec.fps``, from frame ``start``.

    Each target frame takes the source frame on screen at its time (frames repeat when upsampling the
    rate and are dropped when downsampling); None when the source is too short.
    """
    idx = start + np.floor(np.arange(spec.frames) * source_fps / spec.fps + 1e-6).astype(int)
    return idx if idx[-1] < n_source else None


def resize_center_crop(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[F, h, w, 3]`` uint8 -> ``[3, F, H, W]`` float32 in [-1, 1]: scale to cover, then centre-crop."""
    x = frames.permute(0, 3, 1, 2).float()  # (F, 3, h, w)
    h, w = x.shape[-2:]
    scale = max(width / w, height / h)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        x = Fn.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - height) // 2, (nw - width) // 2
    x = x[:, :, top : top + height, left : left + width]
    return (x / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()  # (3, F, H, W)


class VideoFolderDataset(torch.utils.data.Dataset):
    """Captioned clips from a folder; see the module docstring.

    Args:
        root: the folder.
        spec: size, frame count and frame rate of the returned clips.
        random_start: take each clip from a random start frame (else from the first frame).
    """

    def __init__(self, root: str | os.PathLike, spec: VideoSpec, *, random_start: bool = False):
        from s2dit.videoio import probe_video

        self.root = Path(root)
        if not self.root.is_dir():
            raise S2DitError(f"dataset folder not found: {self.root}")
        self.spec = spec
        self.random_start = random_start
        self.skipped: collections.Counter[str] = collections.Counter()
        self.items: list[tuple[str, str, int, float]] = []  # (video, caption, source frames, source fps)
        for video, caption in read_captions(self.root):
            path = self.root / video
            if not path.is_file():
                self._skip("missing", video, "file not found")
                continue
            try:
                info = probe_video(path)
            except S2DitError as e:
                self._skip("unreadable", video, str(e))
                continue
            if info.fps <= 0 or source_indices(info.frames, info.fps, spec) is None:
                self._skip("too_short", video, f"{info.frames} frames at {info.fps:g} fps")
                continue
            self.items.append((video, caption, info.frames, info.fps))
        if not self.items:
            raise S2DitError(f"{self.root}: no usable videos ({dict(self.skipped) or 'none listed'})")
        if self.skipped:
            warnings.warn(
                f"{self.root}: skipped {sum(self.skipped.values())} of "
                f"{len(self.items) + sum(self.skipped.values())} videos ({dict(self.skipped)})",
                stacklevel=2,
            )

    def _skip(self, reason: str, video: str, detail: str) -> None:
        self.skipped[reason] += 1
        warnings.warn(f"skipping {video}: {reason.replace('_', ' ')} ({detail})", stacklevel=3)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int) -> dict:
        from s2dit.videoio import read_video

        video, caption, n_source, fps = self.items[i]
        span = source_indices(n_source, fps, self.spec)[-1]
        start = int(torch.randint(0, n_source - span, ()).item()) if self.random_start else 0
        idx = source_indices(n_source, fps, self.spec, start)
        frames, _ = read_video(self.root / video, max_frames=int(idx[-1]) + 1)
        if len(frames) <= idx[-1]:  # the header promised more frames than the file holds
            raise S2DitError(f"{video}: only {len(frames)} frames decodable")
        pixels = resize_center_crop(torch.from_numpy(frames[idx]), self.spec.width, self.spec.height)
        return {"pixels": pixels, "caption": caption, "video": video}

    def __getitem__(self, i: int) -> dict:
        # A file that fails only at decode time is skipped too: take the next one that works.
        for k in range(len(self.items)):
            j = (i + k) % len(self.items)
            try:
                return self._load(j)
            except S2DitError as e:
                self._skip("undecodable", self.items[j][0], str(e))
        raise S2DitError(f"{self.root}: no video in the dataset can be decoded")
