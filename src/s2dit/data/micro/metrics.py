"""Micro-world metrics: recover objects from pixels and score a clip against what its prompt asks for.

Pipeline for one clip ``[F, H, W, 3]`` uint8:

1. Segmentation: a pixel belongs to an object color when it is saturated and bright enough
   (micro-world backgrounds are not) and its hue is within ``HUE_TOLERANCE`` of a palette color.
2. Tracks: per color and frame, the connected components above ``min_area``, linked from frame to frame
   by nearest centroid, so two objects of one color are two tracks. A track present in at least half the
   frames is an object; each frame gives its centroid, area and a shape descriptor (bounding-box fill
   ratio and vertical centroid offset).
3. Attributes per object: color, shape (area-weighted vote over frames), size (its half-extent at the
   first frames, from the area and the shape: small 0.09, large 0.15 of the frame height), motion
   (classified from the centroid and area tracks, strictly: a resizing object must stay in place, a moving
   one must keep its size), persistence (present in the last frame); per clip, the object count and
   VBench's temporal-flicker score.

The prompt's objects are matched one to one to the detected objects (same color when the prompt names
one, then as many attributes alike as possible). A clip *passes* its prompt only when it shows exactly the
asked number of objects and every asked object is there, in the last frame too, with the color, shape,
size and motion asked (those the prompt names), the way GenEval scores compositional text-to-image
prompts. The headline is the **pass rate**, the fraction of prompts passed. Beside it come the
per-attribute accuracies (color / shape / size / motion / persistence 0 or 1 per prompt object, count 0 or
1 per clip, flicker in [0, 1]) and ``mean_accuracy``, the mean of the six accuracies scored before size
(the earlier "overall" score, kept to compare with recorded numbers; it is lenient: a frozen first frame
scored 0.84 on it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from s2dit.data.micro.captions import parse_caption
from s2dit.data.micro.vocab import COLORS, SIZES, motion_family
from s2dit.errors import S2DitError

ATTRIBUTES = ("color", "count", "shape", "size", "motion", "persistence", "flicker")
MEAN_ATTRIBUTES = ("color", "count", "shape", "motion", "persistence", "flicker")  # mean_accuracy's
MIN_SATURATION = 0.45
MIN_VALUE = 0.3
HUE_TOLERANCE = 20.0  # degrees
PRESENT = 0.5  # a track is an object when present in at least this share of the frames

# Motion thresholds (see classify_motion).
MIN_MOVE = 0.12  # net displacement of a move, as a fraction of min(W, H); the world moves >= 0.3
MIN_LEG = 0.1  # the way back of a reversal (bounce), as a fraction of the frame along its axis
GROW, SHRINK = 1.6, 0.625  # area ratio last/first of grow and shrink; the world's are >= 2.56, <= 0.38
STEADY = (0.75, 4 / 3)  # area ratio of anything that is not growing or shrinking

# Area of each shape in units of its scale squared (from scene.SHAPE_EXTENTS), to measure size.
SHAPE_AREAS = {"circle": float(np.pi), "square": 1.8**2, "triangle": 2.3, "diamond": 2 * 0.95 * 1.25}
SIZE_BANDS = {  # half-extent at the first frame / frame height: about 1.5x either side of vocab.SIZES
    "small": (SIZES["small"] / 1.55, float(np.sqrt(SIZES["small"] * SIZES["large"]))),
    "large": (float(np.sqrt(SIZES["small"] * SIZES["large"])), SIZES["large"] * 1.55),
}

_PALETTE_NAMES = list(COLORS)
_SQUARE3 = np.ones((3, 3), bool)


def _hue_sat_val(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSV of uint8 RGB ``[..., 3]``: hue in degrees [0, 360), saturation and value in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(mx == r, (g - b) / safe, np.where(mx == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = (hue * 60.0) % 360.0
    sat = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return hue, sat, mx


def _hue_table(resolution: int = 10) -> np.ndarray:
    """Palette index for every hue in steps of 1/resolution degree (-1: no palette hue within tolerance)."""
    palette = _hue_sat_val(np.array(list(COLORS.values()), np.uint8))[0]
    hues = (np.arange(360 * resolution) + 0.5) / resolution
    dist = np.abs(hues[:, None] - palette[None, :])
    dist = np.minimum(dist, 360.0 - dist)
    return np.where(dist.min(1) <= HUE_TOLERANCE, dist.argmin(1), -1).astype(np.int8)


_HUE_TABLE = _hue_table()


def segment_colors(frames: np.ndarray) -> np.ndarray:
    """Palette label per pixel: ``[F, H, W]`` int8, the index into ``COLORS`` or -1 for background."""
    r, g, b = frames[..., 0], frames[..., 1], frames[..., 2]
    mx = np.maximum(np.maximum(r, g), b)
    delta = mx - np.minimum(np.minimum(r, g), b)  # uint8, no overflow: max >= min
    # Saturation and value thresholds in integer arithmetic; hue only for the (few) pixels that pass.
    ok = (delta.astype(np.uint16) * 100 >= round(MIN_SATURATION * 100) * mx.astype(np.uint16)) & (
        mx >= round(MIN_VALUE * 255)
    )
    labels = np.full(frames.shape[:-1], -1, np.int8)
    hue = _hue_sat_val(frames[ok])[0]
    labels[ok] = _HUE_TABLE[
        np.minimum((hue * (len(_HUE_TABLE) / 360.0)).astype(np.int32), len(_HUE_TABLE) - 1)
    ]
    return labels


@dataclasses.dataclass
class ObjectTrack:
    """One object over a clip: a connected component of one palette color followed from frame to frame
    (NaN / 0 in frames where it is absent)."""

    color: str
    areas: np.ndarray  # [F] pixels
    centers: np.ndarray  # [F, 2] (x, y)
    shapes: list[str | None]  # [F]

    @property
    def present(self) -> np.ndarray:
        return self.areas > 0

    def shape_vote(self) -> str | None:
        """The shape seen over the clip: a vote over frames weighted by area (large views are sharper)."""
        votes: dict[str, float] = {}
        for shape, area in zip(self.shapes, self.areas, strict=True):
            if shape is not None:
                votes[shape] = votes.get(shape, 0.0) + float(area)
        return max(votes, key=votes.__getitem__) if votes else None


def classify_shape(mask: np.ndarray) -> str | None:
    """Shape of one binary component: square fills its box, a circle ~79%, triangle and diamond ~50%;
    the (upward-pointing) triangle's centroid sits 1/6 of the box height below the box centre."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 12:
        return None
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = len(ys) / float(h * w)
    offset = (ys.mean() - (ys.min() + ys.max()) / 2) / h
    if fill >= 0.89:
        return "square"
    if fill >= 0.66:
        return "circle"
    return "triangle" if offset > 0.08 else "diamond"


def _components(mask: np.ndarray, min_area: int) -> list[tuple[int, np.ndarray, str | None]]:
    """``(area, centre (x, y), shape)`` of every connected component of one frame's color mask."""
    from scipy import ndimage

    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return []
    # Work inside the mask's bounding box (with room for the dilation below): objects are small.
    y0, x0 = max(rows[0] - 3, 0), max(cols[0] - 3, 0)
    mask = mask[y0 : rows[-1] + 4, x0 : cols[-1] + 4]
    # Opening removes the one-pixel colour fringes that chroma subsampling leaves beside edges; the pixels
    # of the mask within 2 pixels of what survives are added back, so a small shape keeps its corners.
    lab, n = ndimage.label(ndimage.binary_opening(mask, _SQUARE3), structure=_SQUARE3)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    out = []
    for k in np.nonzero(sizes >= min_area)[0]:
        comp = ndimage.binary_dilation(lab == k + 1, _SQUARE3, iterations=2) & mask
        ys, xs = np.nonzero(comp)
        # Pixel centres, as the renderer counts them.
        centre = np.array([xs.mean() + x0 + 0.5, ys.mean() + y0 + 0.5])
        out.append((len(ys), centre, classify_shape(comp)))
    return out


def track_objects(frames: np.ndarray, min_area: int | None = None) -> list[ObjectTrack]:
    """Tracks of every object seen in at least one frame, in palette order then order of appearance.

    Per color, each frame's components are linked to the color's tracks by nearest centroid (an optimal
    assignment, up to a jump of 0.4 of the frame's larger side); a component left over starts a track.
    """
    from scipy.optimize import linear_sum_assignment

    F, H, W, _ = frames.shape
    min_area = min_area or max(8, round(4e-4 * H * W))
    gate = 0.4 * max(W, H)
    labels = segment_colors(frames)
    tracks = []
    for p, name in enumerate(_PALETTE_NAMES):
        mask = labels == p
        if not mask.any():
            continue
        mine: list[ObjectTrack] = []
        last: list[np.ndarray] = []  # each track's latest centre
        for f in np.nonzero(mask.reshape(F, -1).any(1))[0]:
            comps = _components(mask[f], min_area)
            free = set(range(len(comps)))
            if mine and comps:
                dist = np.linalg.norm(
                    np.array(last)[:, None] - np.array([c[1] for c in comps])[None], axis=-1
                )
                for t, c in zip(*linear_sum_assignment(dist), strict=True):
                    if dist[t, c] <= gate:
                        free.discard(c)
                        mine[t].areas[f], mine[t].centers[f], mine[t].shapes[f] = comps[c]
                        last[t] = comps[c][1]
            for c in sorted(free):
                track = ObjectTrack(name, np.zeros(F), np.full((F, 2), np.nan), [None] * F)
                track.areas[f], track.centers[f], track.shapes[f] = comps[c]
                mine.append(track)
                last.append(comps[c][1])
        tracks += mine
    return tracks


def measure_size(track: ObjectTrack, height: int) -> tuple[str | None, float]:
    """``(size, scale)``: the half-extent at the first frames the object is seen, as a fraction of the
    frame height (from its area and shape), and the size word whose band holds it (None: neither)."""
    idx = np.nonzero(track.present)[0]
    if not len(idx):
        return None, 0.0
    k = max(1, min(3, len(idx) // 4))
    area = float(np.median(track.areas[idx[:k]]))
    scale = float(np.sqrt(area / SHAPE_AREAS[track.shape_vote() or "circle"])) / height
    size = next((name for name, (lo, hi) in SIZE_BANDS.items() if lo <= scale < hi), None)
    return size, scale


def classify_motion(track: ObjectTrack, width: int, height: int) -> str | None:
    """Motion of a track: one of vocab.MOTIONS (diagonals and bounces with their direction/axis), or None
    when none fits.

    Strict, as the world's motions are: grow and shrink change the area at least ``GROW`` / ``SHRINK``
    times and stay in place; every other motion keeps the area within ``STEADY``. A move goes at least
    ``MIN_MOVE`` of the frame (its angle picks left/right/up/down or a diagonal); a bounce comes back at
    least ``MIN_LEG`` of the frame along one axis; "still" does neither. So a moving object that resizes,
    or one that resizes by a factor between steady and grow, fits no motion.
    """
    idx = np.nonzero(track.present)[0]
    if len(idx) < 2:
        return "still"
    k = max(1, min(3, len(idx) // 4))
    growth = np.median(track.areas[idx[-k:]]) / max(np.median(track.areas[idx[:k]]), 1.0)
    c = track.centers[idx]
    net = c[-1] - c[0]
    # A reversal: the range along an axis exceeds the net displacement by a leg of MIN_LEG of the frame.
    legs = ((c.max(0) - c.min(0)) - np.abs(net)) / np.array([width, height])
    moved = np.hypot(*net) >= MIN_MOVE * min(width, height)
    bounced = legs.max() >= MIN_LEG
    if growth >= GROW or growth <= SHRINK:
        if moved or bounced:
            return None
        return "grow" if growth >= GROW else "shrink"
    if not STEADY[0] <= growth <= STEADY[1]:
        return None
    if bounced:
        return "bounce_horizontal" if legs[0] >= legs[1] else "bounce_vertical"
    if not moved:
        return "still"
    dx, dy = net
    angle = np.degrees(np.arctan2(abs(dy), abs(dx)))
    horiz, vert = ("right" if dx > 0 else "left"), ("down" if dy > 0 else "up")
    if angle < 22.5:
        return horiz
    if angle > 67.5:
        return vert
    return f"diagonal_{vert}_{horiz}"


def describe_track(track: ObjectTrack, width: int, height: int) -> dict:
    """What one detected object looks like: the attributes a prompt can ask for, and its measurements."""
    size, scale = measure_size(track, height)
    return {
        "color": track.color,
        "shape": track.shape_vote(),
        "size": size,
        "motion": classify_motion(track, width, height),
        "persistent": bool(track.present[-1]),
        "scale": round(scale, 4),
        "present": round(float(track.present.mean()), 3),
    }


def temporal_flicker(frames: np.ndarray) -> float:
    """VBench temporal flickering: ``(255 - mean |frame_t+1 - frame_t|) / 255``; 1 is perfectly steady."""
    if len(frames) < 2:
        return 1.0
    x = frames.astype(np.int16)
    return float((255.0 - np.abs(x[1:] - x[:-1]).mean()) / 255.0)


def _motion_matches(asked: str, seen: str | None) -> bool:
    """Exact match, except that a prompt naming only "diagonal" or "bounce" accepts any direction."""
    if seen is None:
        return False
    if asked in ("diagonal", "bounce"):
        return motion_family(seen) == asked
    return seen == asked


def _agrees(asked: dict, seen: dict, attribute: str) -> bool:
    """Whether a detected object has the ``attribute`` (shape, size, motion) a prompt object asks for."""
    if attribute == "motion":
        return _motion_matches(asked["motion"], seen["motion"])
    return seen[attribute] == asked[attribute]


def match_objects(objects: list[dict], detected: list[dict]) -> list[int | None]:
    """Pair each prompt object with a detected one (its index, or None): one to one, the same color when
    the prompt names one, and as many of shape, size, motion and persistence alike as can be."""
    from scipy.optimize import linear_sum_assignment

    if not objects or not detected:
        return [None] * len(objects)
    score = np.full((len(objects), len(detected)), -1.0)
    for i, asked in enumerate(objects):
        for j, seen in enumerate(detected):
            if asked.get("color") in (None, seen["color"]):
                alike = sum(_agrees(asked, seen, a) for a in ("shape", "size", "motion") if asked.get(a))
                score[i, j] = 100.0 + alike + seen["persistent"]
    match: list[int | None] = [None] * len(objects)
    for i, j in zip(*linear_sum_assignment(score, maximize=True), strict=True):
        if score[i, j] > 0:
            match[i] = int(j)
    return match


def score_clip(frames: np.ndarray, objects: list[dict]) -> dict:
    """Score one clip against the objects its prompt asks for.

    ``frames``: ``[F, H, W, 3]`` uint8. ``objects``: dicts with optional ``color``, ``shape``, ``size``
    and ``motion`` (the rows of ``parse_caption`` or a micro-world ``clips.jsonl``). Returns ``passed``
    (1.0 when the clip shows exactly these objects with every attribute asked, each one in the last frame
    too), the per-attribute scores (lists of 0/1 per prompt object for object attributes, over the objects
    that ask for the attribute), what was detected and which detected object each prompt object matched.
    """
    H, W = frames.shape[1:3]
    tracks = [t for t in track_objects(frames) if t.present.mean() >= PRESENT]
    detected = [describe_track(t, W, H) for t in tracks]
    match = match_objects(objects, detected)
    result = {a: [] for a in ("color", "shape", "size", "motion", "persistence")}
    passed = len(detected) == len(objects)
    for asked, j in zip(objects, match, strict=True):
        seen = None if j is None else detected[j]
        if asked.get("color"):
            result["color"].append(float(seen is not None))
        for a in ("shape", "size", "motion"):
            if asked.get(a):
                ok = seen is not None and _agrees(asked, seen, a)
                result[a].append(float(ok))
                passed &= ok
        persistent = seen is not None and seen["persistent"]
        result["persistence"].append(float(persistent))
        passed &= persistent
    result["count"] = float(len(detected) == len(objects))
    result["flicker"] = temporal_flicker(frames)
    result["passed"] = float(passed)
    result["detected"] = detected
    result["matched"] = match
    return result


def failed_clip(objects: list[dict]) -> dict:
    """The :func:`score_clip` result of a clip that could not be read: everything asked for fails."""
    r = {a: [0.0 for o in objects if o.get(a)] for a in ("color", "shape", "size", "motion")}
    r.update(persistence=[0.0] * len(objects), count=0.0, flicker=0.0, passed=0.0)
    r.update(detected=[], matched=[None] * len(objects))
    return r


# ---------------------------------------------------------------------------------------------------
# Folders of videos
# ---------------------------------------------------------------------------------------------------

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")


def load_prompts(path: str | os.PathLike) -> list[dict]:
    """Prompts with the attributes to score: rows ``{"caption", "objects", "video"?}``.

    ``.jsonl``: rows with ``caption`` (or ``prompt``), optionally ``objects`` (ground-truth attributes,
    as in a micro world's ``clips.jsonl``; otherwise parsed from the caption) and ``video`` (a path
    relative to the videos folder). Any other file: one prompt per line, matched to the videos in
    sorted order.
    """
    path = Path(path)
    if not path.is_file():
        raise S2DitError(f"prompts file not found: {path}")
    rows = []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    for i, line in enumerate(lines, 1):
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise S2DitError(f"{path}:{i}: not a JSON object") from None
            if not isinstance(row, dict):
                raise S2DitError(f"{path}:{i}: not a JSON object")
            caption = row.get("caption", row.get("prompt"))
            if not isinstance(caption, str):
                raise S2DitError(f"{path}:{i}: a row needs a 'caption' (or 'prompt') string")
            objects = row.get("objects") or parse_caption(caption)["objects"]
            rows.append({"caption": caption, "objects": objects, "video": row.get("video")})
        else:
            rows.append({"caption": line.strip(), "objects": parse_caption(line)["objects"], "video": None})
    if not rows:
        raise S2DitError(f"{path}: no prompts")
    return rows


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed points (every clip gets another clip's prompt)."""
    if n < 2:
        raise S2DitError("shuffling prompts needs at least two clips")
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def evaluate_folder(
    videos: str | os.PathLike,
    prompts: str | os.PathLike,
    *,
    shuffle: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Score every video of a folder against its prompt; returns a report with the pass rate (the
    headline), per-attribute accuracy, ``mean_accuracy`` and per clip what passed and what was seen.

    ``shuffle``: give each clip another clip's prompt (a chance-level control; scores must drop).
    """
    from tqdm import tqdm

    from s2dit.videoio import read_video

    videos = Path(videos)
    if not videos.is_dir():
        raise S2DitError(f"videos folder not found: {videos}")
    rows = load_prompts(prompts)
    named = [bool(r["video"]) for r in rows]
    if any(named) and not all(named):
        raise S2DitError(
            f"{prompts}: {named.count(False)} rows have no 'video'; name a video in every row or none"
        )
    if all(named):
        paths = [videos / r["video"] for r in rows]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise S2DitError(f"{len(missing)} videos named in {prompts} are missing, e.g. {missing[0]}")
    else:
        paths = sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if len(paths) != len(rows):
            raise S2DitError(f"{prompts} has {len(rows)} prompts but {videos} has {len(paths)} videos")
    order = _derangement(len(rows), np.random.default_rng(seed)) if shuffle else np.arange(len(rows))
    scored, clips = [], []
    for i, path in enumerate(tqdm(paths, desc="scoring", unit="clip", disable=not progress)):
        row = rows[order[i]]
        try:
            frames, _ = read_video(path)
        except S2DitError as e:
            warnings.warn(f"{e}; scored as 0", stacklevel=2)
            frames = None
        r = failed_clip(row["objects"]) if frames is None else score_clip(frames, row["objects"])
        scored.append(r)
        clip_scores = {
            a: float(np.mean(r[a])) if (not isinstance(r[a], list) or r[a]) else None for a in ATTRIBUTES
        }
        clips.append(
            {
                "video": str(path.relative_to(videos)) if path.is_relative_to(videos) else str(path),
                "caption": row["caption"],
                "passed": bool(r["passed"]),
                **clip_scores,
                "mean_accuracy": mean_accuracy(clip_scores),
                "detected": r["detected"],
            }
        )
    return {
        "videos": str(videos),
        "prompts": str(prompts),
        "shuffled": shuffle,
        "seed": seed,
        "clips": len(clips),
        **summarize(scored),
        "per_clip": clips,
    }


def summarize(results: list[dict]) -> dict:
    """The scores of many :func:`score_clip` results: ``pass_rate`` (the headline: the fraction of prompts
    passed), ``pass_rate_by_count`` (the same over the prompts asking for 1, 2, ... objects: the number
    of objects a prompt asks for is what makes it hard), ``accuracy`` per attribute and ``mean_accuracy``."""
    accuracy = accuracy_of(results)
    rate = float(np.mean([r["passed"] for r in results])) if results else 0.0
    asked: dict[int, list[float]] = {}
    for r in results:
        asked.setdefault(len(r["matched"]), []).append(r["passed"])
    by_count = {str(n): float(np.mean(asked[n])) for n in sorted(asked)}
    return {
        "pass_rate": rate,
        "pass_rate_by_count": by_count,
        "accuracy": accuracy,
        "mean_accuracy": mean_accuracy(accuracy),
    }


def format_by_count(by_count: dict[str, float]) -> str:
    """``0.50/0.25/0.00``: the pass rate per number of objects asked (the keys' order), for a table cell."""
    return "/".join(f"{v:.2f}" for v in by_count.values()) or "-"


def mean_accuracy(accuracy: dict[str, float | None]) -> float:
    """The earlier overall micro score: the mean of the ``MEAN_ATTRIBUTES`` accuracies that apply.
    Lenient (a frozen clip scores high on it); the pass rate is the headline."""
    values = [accuracy[a] for a in MEAN_ATTRIBUTES if accuracy.get(a) is not None]
    return float(np.mean(values)) if values else 0.0


def accuracy_of(results: list[dict]) -> dict[str, float | None]:
    """Per-attribute accuracy over :func:`score_clip` results (object attributes pooled over objects)."""
    totals = {a: [] for a in ATTRIBUTES}
    for r in results:
        for a in ATTRIBUTES:
            totals[a].extend(r[a] if isinstance(r[a], list) else [r[a]])
    return {a: float(np.mean(v)) if v else None for a, v in totals.items()}
