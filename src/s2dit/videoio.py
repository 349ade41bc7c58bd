"""Video files: streaming mp4 writing, reading, GIFs and contact sheets.

Frames are ``[F, H, W, 3]`` uint8 RGB arrays (or ``[H, W, 3]`` for one frame). PyAV and Pillow are
imported inside the functions that need them, so the model core runs on machines without them.

The mp4 writer makes *fragmented* H.264 files with one fragment per frame and flushes each packet, so a
process killed mid-stream leaves a playable file holding every frame written so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from s2dit.atomic import atomic_path
from s2dit.errors import S2DitError


def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise S2DitError("video I/O needs PyAV: pip install av==18.1.0") from e
    return av


def pixels_to_uint8(pixels) -> np.ndarray:
    """``[3, F, H, W]`` floats in [-1, 1] (torch or numpy) -> ``[F, H, W, 3]`` uint8."""
    x = pixels.detach().cpu().float().numpy() if hasattr(pixels, "detach") else np.asarray(pixels, np.float32)
    x = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


class VideoWriter:
    """Append frames to an H.264 mp4 as they arrive.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=16) as w:
            for chunk in stream:      # [n, H, W, 3] uint8
                w.write(chunk)

    Width and height are taken from the first frame and must be even (yuv420p).
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18, preset: str = "veryfast"):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self._container = None
        self._stream = None
        self._closed = False

    def _open(self, height: int, width: int) -> None:
        av = _import_av()
        if height % 2 or width % 2:
            raise S2DitError(f"mp4 frames need an even size, got {width}x{height}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            mode="w",
            format="mp4",
            # empty_moov + one fragment per frame + flush after each packet: playable at any moment.
            options={"movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"},
        )
        try:
            stream = container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # zerolatency: no lookahead or B-frames, so each frame is encoded (and saved) as it arrives.
            stream.options = {"crf": str(self.crf), "preset": self.preset, "tune": "zerolatency"}
        except Exception:
            container.close()
            raise
        self._container, self._stream = container, stream

    def write(self, frames: np.ndarray) -> None:
        """Append ``[H, W, 3]`` or ``[n, H, W, 3]`` uint8 RGB frames."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [n, H, W, 3], got {frames.dtype} {frames.shape}")
        av = _import_av()
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        if self._container is None:
            self._open(frames.shape[1], frames.shape[2])
        elif frames.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frame size {frames.shape[2]}x{frames.shape[1]} differs from the stream's "
                f"{self._stream.width}x{self._stream.height}"
            )
        for frame in frames:
            for packet in self._stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), "rgb24")
            ):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        self._closed = True
        if self._container is not None:
            try:
                for packet in self._stream.encode():  # flush the encoder
                    self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18) -> None:
    """Write a whole clip ``[F, H, W, 3]`` uint8 to ``path`` atomically (no half-written file on a crash)."""
    with atomic_path(path) as tmp, VideoWriter(tmp, fps, crf=crf) as w:
        w.write(frames)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a container header says about its first video stream."""

    frames: int
    fps: float
    width: int
    height: int


@contextlib.contextmanager
def _open_video(path: str | os.PathLike) -> Iterator[tuple[Any, Any, float]]:
    """Yield ``(container, first video stream, fps)``; any read failure becomes one S2DitError."""
    av = _import_av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise S2DitError(f"{path}: no video stream")
            s = c.streams.video[0]
            yield c, s, float(s.average_rate or s.guessed_rate or 0)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise S2DitError(f"{path}: cannot read video ({e})") from None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the header of a video file (no full decode). Raises S2DitError for unreadable files.

    When the container does not record a frame count, the frames are counted by demuxing packets.
    """
    with _open_video(path) as (c, s, fps):
        n = s.frames or sum(1 for p in c.demux(s) if p.size)
        return VideoInfo(frames=int(n), fps=fps, width=s.codec_context.width, height=s.codec_context.height)


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video into ``([F, H, W, 3] uint8 RGB, fps)``; at most ``max_frames`` frames."""
    frames = []
    with _open_video(path) as (c, s, fps):
        for frame in c.decode(s):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise S2DitError(f"{path}: no frames could be decoded")
    return np.stack(frames), fps


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write ``[F, H, W, 3]`` uint8 frames as a looping GIF, atomically."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )


def contact_sheet(
    clips: list[np.ndarray],
    captions: list[str] | None,
    path: str | os.PathLike,
    *,
    frames_per_clip: int = 6,
    max_width: int = 1600,
) -> None:
    """One row per clip: ``frames_per_clip`` evenly spaced frames, the caption written above them. PNG.

    ``clips`` are ``[F, H, W, 3]`` uint8 arrays (sizes may differ between clips; frames are scaled so
    that a row fits in ``max_width`` pixels).
    """
    from PIL import Image, ImageDraw, ImageFont

    if not clips:
        raise ValueError("contact_sheet needs at least one clip")
    captions = captions or [""] * len(clips)
    font = ImageFont.load_default(size=13)
    line_h = 16
    rows = []
    for clip, caption in zip(clips, captions, strict=True):
        idx = np.linspace(0, len(clip) - 1, min(frames_per_clip, len(clip))).round().astype(int)
        h, w = clip.shape[1:3]
        scale = min(1.0, max_width / (w * len(idx) + 4 * (len(idx) - 1)))
        fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
        row_w = fw * len(idx) + 4 * (len(idx) - 1)
        lines = textwrap.wrap(caption, width=max(20, row_w // 7)) or [""]
        row = Image.new("RGB", (row_w, fh + line_h * len(lines) + 6), (255, 255, 255))
        draw = ImageDraw.Draw(row)
        for i, line in enumerate(lines):
            draw.text((2, 2 + i * line_h), line, fill=(0, 0, 0), font=font)
        for j, k in enumerate(idx):
            frame = Image.fromarray(clip[k]).resize((fw, fh), Image.BILINEAR)
            row.paste(frame, (j * (fw + 4), line_h * len(lines) + 4))
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 8 for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 8
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
