import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from s2dit.errors import S2DitError
from s2dit.videoio import (
    VideoWriter,
    contact_sheet,
    pixels_to_uint8,
    probe_video,
    read_video,
    write_gif,
    write_video,
)


def smooth_clip(frames=17, height=96, width=128) -> np.ndarray:
    """A smooth moving colour gradient, [F, H, W, 3] uint8."""
    t = np.arange(frames)[:, None, None]
    y, x = np.mgrid[:height, :width]
    r = 128 + 100 * np.sin(2 * np.pi * (x / width + t / frames))
    g = 128 + 100 * np.cos(2 * np.pi * (y / height - t / (2 * frames)))
    b = 128 + 60 * np.sin(2 * np.pi * (x + y) / (width + height))
    b = np.broadcast_to(b, r.shape)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_mp4_round_trip(tmp_path):
    clip = smooth_clip()
    write_video(tmp_path / "a.mp4", clip, fps=16)
    out, fps = read_video(tmp_path / "a.mp4")
    assert out.shape == clip.shape and fps == 16
    assert psnr(out, clip) >= 35
    info = probe_video(tmp_path / "a.mp4")
    assert (info.frames, info.width, info.height, info.fps) == (17, 128, 96, 16)
    assert read_video(tmp_path / "a.mp4", max_frames=5)[0].shape[0] == 5
    assert not list(tmp_path.glob(".tmp-*"))


def test_writer_appends_chunks_and_checks_input(tmp_path):
    clip = smooth_clip(frames=12)
    with VideoWriter(tmp_path / "b.mp4", fps=8) as w:
        for chunk in np.split(clip, 4):
            w.write(chunk)
        w.write(clip[0])  # a single frame
        with pytest.raises(ValueError, match="differs from the stream"):
            w.write(np.zeros((1, 32, 32, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8 frames"):
            w.write(clip.astype(np.float32))
    assert w.frames_written == 13
    assert read_video(tmp_path / "b.mp4")[0].shape[0] == 13
    with pytest.raises(S2DitError, match="even size"):
        VideoWriter(tmp_path / "c.mp4", fps=8).write(np.zeros((1, 15, 16, 3), np.uint8))


def test_killed_writer_leaves_a_playable_file(tmp_path):
    path = tmp_path / "live.mp4"
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from s2dit.videoio import VideoWriter
        w = VideoWriter({str(path)!r}, fps=16)
        for i in range(100000):
            w.write(np.full((64, 64, 3), i % 250, np.uint8))
            print(i, flush=True)
            time.sleep(0.002)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    written = -1
    while written < 40:
        written = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    frames, _ = read_video(path)
    assert len(frames) >= 40  # every frame reported as written survives the kill
    assert abs(int(frames[10].mean()) - 10) <= 2


def test_unreadable_files_raise_user_errors(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2000))
    with pytest.raises(S2DitError, match="cannot"):
        read_video(tmp_path / "junk.mp4")
    with pytest.raises(S2DitError, match="cannot"):
        probe_video(tmp_path / "junk.mp4")
    with pytest.raises(S2DitError):
        read_video(tmp_path / "missing.mp4")


def test_gif_and_contact_sheet(tmp_path):
    from PIL import Image

    clip = smooth_clip(frames=9, height=48, width=64)
    write_gif(tmp_path / "a.gif", clip, fps=8)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 9 and im.size == (64, 48)
    contact_sheet([clip, clip[:3]], ["first caption", "second"], tmp_path / "sheet.png", frames_per_clip=4)
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.width == 4 * 64 + 3 * 4 and im.height > 2 * 48
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.std() > 10  # frames were pasted, not a blank page


def test_pixels_to_uint8():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 4, 1, 1).expand(3, 4, 1, 1)
    out = pixels_to_uint8(x)
    assert out.shape == (4, 1, 1, 3) and out.dtype == np.uint8
    assert out[:, 0, 0, 0].tolist() == [0, 128, 255, 255]


def test_writer_latency_is_per_frame(tmp_path):
    """Frames reach the file as they are written (not at close): the size grows after each write."""
    path = tmp_path / "grow.mp4"
    w = VideoWriter(path, fps=8)
    sizes = []
    for i in range(3):
        w.write(np.full((32, 32, 3), 60 * i, np.uint8))
        time.sleep(0.01)
        sizes.append(path.stat().st_size)
    w.close()
    assert sizes[0] > 0 and sizes[0] < sizes[1] < sizes[2]


def test_writer_refuses_writes_after_close_and_bad_rates(tmp_path):
    w = VideoWriter(tmp_path / "a.mp4", fps=8)
    w.write(np.zeros((2, 16, 16, 3), np.uint8))
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(np.zeros((1, 16, 16, 3), np.uint8))
    assert read_video(tmp_path / "a.mp4")[0].shape[0] == 2
    bad = VideoWriter(tmp_path / "b.mp4", fps=float("nan"))
    with pytest.raises((ValueError, OverflowError)):
        bad.write(np.zeros((1, 16, 16, 3), np.uint8))
    bad.close()  # no secondary error
