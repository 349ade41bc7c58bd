"""Micro-world scenes: which objects a clip holds and where each one is in every frame.

A scene is sampled from ``numpy.random.Generator`` only, so clip ``i`` of seed ``s`` is the same on every
machine and independent of the other clips (``rng = clip_rng(s, i)``). Motion is defined over the
normalised clip time ``u = f / (F - 1)`` in [0, 1]: each motion plays out over the whole clip whatever its
frame count, and objects never leave the frame or touch each other.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from s2dit.config import VideoSpec
from s2dit.data.micro.vocab import (
    BACKGROUNDS,
    COLORS,
    COMBOS,
    MOTIONS,
    SHAPES,
    SIZES,
    heldout_family,
    is_heldout_combo,
    motion_family,
)
from s2dit.errors import S2DitError

MARGIN = 3.0  # pixels kept between an object and the frame border
GAP = 4.0  # pixels kept between two objects

# Extent of each shape around its centre (the area centroid), in units of its scale s:
# (left, right, up, down). The triangle points up, so its centroid sits 1/3 of its height above the base.
SHAPE_EXTENTS: dict[str, tuple[float, float, float, float]] = {
    "circle": (1.0, 1.0, 1.0, 1.0),
    "square": (0.9, 0.9, 0.9, 0.9),
    "triangle": (1.15, 1.15, 4 / 3, 2 / 3),
    "diamond": (0.95, 0.95, 1.25, 1.25),
}


def shape_radius(shape: str) -> float:
    """Largest distance from the centre to the shape's bounding box, in units of scale."""
    left, right, up, down = SHAPE_EXTENTS[shape]
    return float(np.hypot(max(left, right), max(up, down)))


@dataclasses.dataclass
class SceneObject:
    """One object of a clip, with its per-frame track (pixels, origin at the top-left corner)."""

    shape: str
    color: str
    size: str  # "small" | "large": the scale at the first frame
    motion: str  # one of vocab.MOTIONS
    centers: np.ndarray  # [F, 2] float (x, y) of the area centroid
    scales: np.ndarray  # [F] float: half-extent s in pixels

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLORS[self.color]

    def to_json(self) -> dict:
        return {
            "shape": self.shape,
            "color": self.color,
            "rgb": list(self.rgb),
            "size": self.size,
            "motion": self.motion,
            "centers": np.round(self.centers, 2).tolist(),
            "scales": np.round(self.scales, 2).tolist(),
        }


@dataclasses.dataclass
class Scene:
    """A clip's background and objects (drawn in list order)."""

    background: str
    objects: list[SceneObject]
    video: VideoSpec


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of clip ``index`` of a world made with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _bounds(shape: str, scale: float, video: VideoSpec) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of centres that keep the shape inside the frame."""
    left, right, up, down = (e * scale for e in SHAPE_EXTENTS[shape])
    return (left + MARGIN, video.width - right - MARGIN, up + MARGIN, video.height - down - MARGIN)


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (a ball bouncing between two walls)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _track(rng: np.random.Generator, shape: str, s0: float, motion: str, video: VideoSpec, u: np.ndarray):
    """Sample one object's centres [F, 2] and scales [F] for ``motion``; None if it cannot fit."""
    W, H = video.width, video.height
    scales = np.full_like(u, s0)
    if motion in ("grow", "shrink"):
        factor = rng.uniform(1.6, 2.0) if motion == "grow" else rng.uniform(0.5, 0.62)
        scales = s0 * (1 + (factor - 1) * u)
    s_max = float(scales.max())
    x0, x1, y0, y1 = _bounds(shape, s_max, video)
    if x1 <= x0 or y1 <= y0:
        return None

    def place(lo: float, hi: float, dist: float, positive: bool) -> tuple[float, float] | None:
        """Start and end along one axis for a move of ``dist`` pixels inside [lo, hi]."""
        if hi - lo < dist:
            return None
        start = rng.uniform(lo, hi - dist) if positive else rng.uniform(lo + dist, hi)
        return start, start + dist if positive else start - dist

    if motion in ("grow", "shrink", "still"):
        c = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        return np.tile(c, (len(u), 1)), scales
    if motion in ("left", "right"):
        xs = place(x0, x1, rng.uniform(0.3, 0.5) * W, motion == "right")
        if xs is None:
            return None
        y = rng.uniform(y0, y1)
        return np.stack([xs[0] + (xs[1] - xs[0]) * u, np.full_like(u, y)], -1), scales
    if motion in ("up", "down"):
        ys = place(y0, y1, rng.uniform(0.3, 0.45) * H, motion == "down")
        if ys is None:
            return None
        x = rng.uniform(x0, x1)
        return np.stack([np.full_like(u, x), ys[0] + (ys[1] - ys[0]) * u], -1), scales
    if motion.startswith("diagonal_"):
        vert, horiz = motion.removeprefix("diagonal_").split("_")
        dy = rng.uniform(0.3, 0.45) * H
        dx = dy * rng.uniform(0.8, 1.25)  # 39-51 degrees from horizontal
        xs = place(x0, x1, dx, horiz == "right")
        ys = place(y0, y1, dy, vert == "down")
        if xs is None or ys is None:
            return None
        return np.stack([xs[0] + (xs[1] - xs[0]) * u, ys[0] + (ys[1] - ys[0]) * u], -1), scales
    if motion.startswith("bounce_"):
        horizontal = motion == "bounce_horizontal"
        lo, hi = (x0, x1) if horizontal else (y0, y1)
        span = hi - lo
        # Exactly one reflection, both legs at least 35% of the free span, so the reversal is visible.
        to_wall, back = rng.uniform(0.35, 0.8, size=2) * span
        direction = rng.choice([-1.0, 1.0])
        start = hi - to_wall if direction > 0 else lo + to_wall
        path = _fold(start + direction * (to_wall + back) * u, lo, hi)
        other = rng.uniform(y0, y1) if horizontal else rng.uniform(x0, x1)
        cols = (path, np.full_like(u, other)) if horizontal else (np.full_like(u, other), path)
        return np.stack(cols, -1), scales
    raise ValueError(f"unknown motion {motion!r}")


def _apart(a: SceneObject, b: SceneObject) -> bool:
    """Whether two objects keep their distance in every frame (bounding circles plus GAP)."""
    dist = np.linalg.norm(a.centers - b.centers, axis=-1)
    reach = a.scales * shape_radius(a.shape) + b.scales * shape_radius(b.shape) + GAP
    return bool(np.all(dist >= reach))


def sample_scene(
    rng: np.random.Generator,
    video: VideoSpec,
    min_objects: int = 1,
    max_objects: int = 3,
    combos: str = "all",
) -> Scene:
    """Sample a background and 1-3 objects of distinct colors whose tracks never overlap.

    ``combos``: ``"all"`` draws any (color, shape, motion); ``"train"`` never draws a held-out
    (color, shape, motion family) triple and ``"heldout"`` draws only those (see ``vocab.heldout_family``).
    """
    if combos not in COMBOS:
        raise S2DitError(f"combos: {combos!r} must be one of {', '.join(COMBOS)}")
    background = str(rng.choice(list(BACKGROUNDS)))
    n = int(rng.integers(min_objects, max_objects + 1))
    u = np.linspace(0.0, 1.0, video.frames) if video.frames > 1 else np.zeros(1)
    colors = rng.permutation(list(COLORS))
    for _ in range(50):  # whole scenes: a crowded small frame may need several tries to fit n objects
        objects: list[SceneObject] = []
        for _ in range(100 * n):
            shape = str(rng.choice(SHAPES))
            size = str(rng.choice(list(SIZES)))
            color = str(colors[len(objects)])
            if combos == "heldout":
                family = heldout_family(color, shape)
                motion = str(rng.choice([m for m in MOTIONS if motion_family(m) == family]))
            else:
                motion = str(rng.choice(MOTIONS))
                if combos == "train" and is_heldout_combo(color, shape, motion):
                    continue
            track = _track(rng, shape, SIZES[size] * video.height, motion, video, u)
            if track is None:
                continue
            obj = SceneObject(shape, color, size, motion, track[0], track[1])
            if all(_apart(obj, other) for other in objects):
                objects.append(obj)
                if len(objects) == n:
                    return Scene(background=background, objects=objects, video=video)
    raise S2DitError(
        f"cannot fit {n} separate moving objects in a {video.size} frame: use fewer objects or a larger size"
    )
