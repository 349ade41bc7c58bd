"""Drawing micro-world scenes into frames.

Shapes are anti-aliased by supersampling (4×4 samples per pixel), so an object's colour centroid in the
frame matches its recorded centre to a fraction of a pixel.
"""

from __future__ import annotations

import numpy as np

from s2dit.data.micro.scene import SHAPE_EXTENTS, Scene
from s2dit.data.micro.vocab import BACKGROUNDS

SUPERSAMPLE = 4


def background(name: str, width: int, height: int) -> np.ndarray:
    """The background image ``[H, W, 3]`` float32 in 0..255."""
    kind, a, b = BACKGROUNDS[name]
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    if kind == "plain":
        w = np.zeros((height, width), np.float32)
    elif kind == "vertical":
        w = np.broadcast_to(ys[:, None], (height, width))
    elif kind == "horizontal":
        w = np.broadcast_to(xs[None, :], (height, width))
    elif kind == "diagonal":
        w = (ys[:, None] + xs[None, :]) / 2
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return a + (b - a) * w[..., None]


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    """Boolean mask of sample offsets (dx, dy) from the centre that fall inside the shape of scale s."""
    if shape == "circle":
        return dx * dx + dy * dy <= s * s
    if shape == "square":
        a = SHAPE_EXTENTS["square"][0] * s
        return (np.abs(dx) <= a) & (np.abs(dy) <= a)
    if shape == "triangle":
        half_base, _, up, down = (e * s for e in SHAPE_EXTENTS["triangle"])
        height = up + down
        # Apex at dy = -up, base at dy = +down; the half-width grows linearly from apex to base.
        return (dy <= down) & (np.abs(dx) <= half_base * (dy + up) / height)
    if shape == "diamond":
        half_w, _, half_h, _ = (e * s for e in SHAPE_EXTENTS["diamond"])
        return np.abs(dx) / half_w + np.abs(dy) / half_h <= 1.0
    raise ValueError(f"unknown shape {shape!r}")


def coverage(shape: str, cx: float, cy: float, s: float, width: int, height: int):
    """Fractional pixel coverage of one shape: ``(alpha [h, w] float32, (y0, y1, x0, x1))`` over its box."""
    left, right, up, down = (e * s for e in SHAPE_EXTENTS[shape])
    x0, x1 = max(0, int(np.floor(cx - left)) - 1), min(width, int(np.ceil(cx + right)) + 2)
    y0, y1 = max(0, int(np.floor(cy - up)) - 1), min(height, int(np.ceil(cy + down)) + 2)
    n = SUPERSAMPLE
    offs = (np.arange(n, dtype=np.float32) + 0.5) / n
    sx = (np.arange(x0, x1, dtype=np.float32)[:, None] + offs[None, :]).reshape(-1) - cx  # sample x offsets
    sy = (np.arange(y0, y1, dtype=np.float32)[:, None] + offs[None, :]).reshape(-1) - cy
    mask = _inside(shape, sx[None, :], sy[:, None], s)  # [(y1-y0)*n, (x1-x0)*n]
    alpha = mask.reshape(y1 - y0, n, x1 - x0, n).mean(axis=(1, 3), dtype=np.float32)
    return alpha, (y0, y1, x0, x1)


def render_scene(scene: Scene) -> np.ndarray:
    """All frames of a scene: ``[F, H, W, 3]`` uint8 RGB."""
    W, H, F = scene.video.width, scene.video.height, scene.video.frames
    bg = background(scene.background, W, H)
    frames = np.empty((F, H, W, 3), np.uint8)
    for f in range(F):
        img = bg.copy()
        for obj in scene.objects:
            (cx, cy), s = obj.centers[f], float(obj.scales[f])
            alpha, (y0, y1, x0, x1) = coverage(obj.shape, float(cx), float(cy), s, W, H)
            region = img[y0:y1, x0:x1]
            region += (np.asarray(obj.rgb, np.float32) - region) * alpha[..., None]
        frames[f] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames
