"""Micro-world metrics: recover objects from pixels and score a clip against what its prompt asks for.

Pipeline for one clip ``[F, H, W, 3]`` uint8:

1. Segmentation: a pixel belongs to an object color when it is saturated and bright enough
   (micro-world backgrounds are not) and its hue is within ``HUE_TOLERANCE`` of a palette color.
2. Tracks: per color and frame, the connected components above ``min_area``; the largest one gives the
   centroid, area and a shape descriptor (bounding-box fill ratio and vertical centroid offset).
3. Attributes: color present (in at least half the frames), object count, shape (majority vote over
   frames), motion (classified from the centroid and area tracks), persistence (present in the last
   frame), and VBench's temporal-flicker score.

Scores: per prompt object, color / shape / motion / persistence are 0 or 1 (an object whose color is
missing fails all four); per clip, count is 0 or 1 and flicker is in [0, 1]. The overall score is the
mean of the six attribute accuracies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from s2dit.data.micro.captions import parse_caption
from s2dit.data.micro.vocab import COLORS, motion_family
from s2dit.errors import S2DitError

ATTRIBUTES = ("color", "count", "shape", "motion", "persistence", "flicker")
MIN_SATURATION = 0.45
MIN_VALUE = 0.3
HUE_TOLERANCE = 20.0  # degrees

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
class ColorTrack:
    """What one palette color does over a clip (NaN / 0 in frames where it is absent)."""

    color: str
    areas: np.ndarray  # [F] pixels of the largest component
    centers: np.ndarray  # [F, 2] (x, y) of the largest component
    components: np.ndarray  # [F] components above min_area
    shapes: list[str | None]  # [F] shape of the largest component

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


def track_colors(frames: np.ndarray, min_area: int | None = None) -> dict[str, ColorTrack]:
    """Tracks of every palette color that appears in at least one frame."""
    from scipy import ndimage

    F, H, W, _ = frames.shape
    min_area = min_area or max(8, round(4e-4 * H * W))
    labels = segment_colors(frames)
    tracks = {}
    for p, name in enumerate(_PALETTE_NAMES):
        mask = labels == p
        if not mask.any():
            continue
        areas, comps, shapes = np.zeros(F), np.zeros(F, int), [None] * F
        centers = np.full((F, 2), np.nan)
        for f in np.nonzero(mask.reshape(F, -1).any(1))[0]:
            # Opening removes the one-pixel colour fringes that chroma subsampling leaves beside edges.
            lab, n = ndimage.label(ndimage.binary_opening(mask[f], _SQUARE3), structure=_SQUARE3)
            sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
            big = np.nonzero(sizes >= min_area)[0]
            if not len(big):
                continue
            k = big[sizes[big].argmax()] + 1
            comp = lab == k
            ys, xs = np.nonzero(comp)
            areas[f], comps[f] = len(ys), len(big)
            centers[f] = xs.mean() + 0.5, ys.mean() + 0.5  # pixel centres, as the renderer counts them
            shapes[f] = classify_shape(comp)
        if areas.any():
            tracks[name] = ColorTrack(name, areas, centers, comps, shapes)
    return tracks


def classify_motion(track: ColorTrack, width: int, height: int) -> str:
    """Motion of a track: one of vocab.MOTIONS (diagonals and bounces with their direction/axis)."""
    idx = np.nonzero(track.present)[0]
    if len(idx) < 2:
        return "still"
    k = max(1, min(3, len(idx) // 4))
    first, last = idx[:k], idx[-k:]
    growth = np.median(track.areas[last]) / max(np.median(track.areas[first]), 1.0)
    if growth >= 1.6:
        return "grow"
    if growth <= 0.625:
        return "shrink"
    c = track.centers[idx]
    net = c[-1] - c[0]
    # A reversal: the range along an axis exceeds the net displacement by a leg of 10% of the frame.
    back = (c.max(0) - c.min(0)) - np.abs(net)
    legs = back / np.array([width, height])
    if legs.max() >= 0.1:
        return "bounce_horizontal" if legs[0] >= legs[1] else "bounce_vertical"
    dx, dy = net
    if np.hypot(dx, dy) < 0.12 * min(width, height):
        return "still"
    angle = np.degrees(np.arctan2(abs(dy), abs(dx)))
    horiz, vert = ("right" if dx > 0 else "left"), ("down" if dy > 0 else "up")
    if angle < 22.5:
        return horiz
    if angle > 67.5:
        return vert
    return f"diagonal_{vert}_{horiz}"


def temporal_flicker(frames: np.ndarray) -> float:
    """VBench temporal flickering: ``(255 - mean |frame_t+1 - frame_t|) / 255``; 1 is perfectly steady."""
    if len(frames) < 2:
        return 1.0
    x = frames.astype(np.int16)
    return float((255.0 - np.abs(x[1:] - x[:-1]).mean()) / 255.0)


def _motion_matches(asked: str, seen: str) -> bool:
    """Exact match, except that a prompt naming only "diagonal" or "bounce" accepts any direction."""
    if asked in ("diagonal", "bounce"):
        return motion_family(seen) == asked
    return seen == asked


def score_clip(frames: np.ndarray, objects: list[dict]) -> dict:
    """Score one clip against the objects its prompt asks for.

    ``frames``: ``[F, H, W, 3]`` uint8. ``objects``: dicts with ``color`` and optionally ``shape`` and
    ``motion`` (the rows of ``parse_caption`` or a micro-world ``clips.jsonl``). Returns the per-attribute
    scores of this clip (lists of 0/1 per object for object attributes) and what was detected.
    """
    H, W = frames.shape[1:3]
    tracks = track_colors(frames)
    present = {c: t for c, t in tracks.items() if t.present.mean() >= 0.5}
    count = int(sum(int(np.median(t.components[t.present])) for t in present.values()))
    result = {"color": [], "shape": [], "motion": [], "persistence": [], "detected": {}}
    for c, t in present.items():
        result["detected"][c] = {"shape": t.shape_vote(), "motion": classify_motion(t, W, H)}
    for obj in objects:
        seen = result["detected"].get(obj["color"])
        result["color"].append(float(seen is not None))
        if obj.get("shape"):
            result["shape"].append(float(seen is not None and seen["shape"] == obj["shape"]))
        if obj.get("motion"):
            result["motion"].append(
                float(seen is not None and _motion_matches(obj["motion"], seen["motion"]))
            )
        result["persistence"].append(float(seen is not None and bool(present[obj["color"]].present[-1])))
    result["count"] = float(count == len(objects))
    result["flicker"] = temporal_flicker(frames)
    return result


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
    """Score every video of a folder against its prompt; returns a report with per-attribute accuracy.

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
        if frames is None:  # unreadable: every attribute the prompt asks for fails
            objs = row["objects"]
            r = {a: [0.0] * len(objs) for a in ("color", "persistence")}
            r.update({a: [0.0 for o in objs if o.get(a)] for a in ("shape", "motion")})
            r.update(count=0.0, flicker=0.0, detected={})
        else:
            r = score_clip(frames, row["objects"])
        scored.append(r)
        clip_scores = [
            float(np.mean(r[a])) if (not isinstance(r[a], list) or r[a]) else None for a in ATTRIBUTES
        ]
        clips.append(
            {
                "video": str(path.relative_to(videos)) if path.is_relative_to(videos) else str(path),
                "caption": row["caption"],
                "overall": float(np.mean([s for s in clip_scores if s is not None])),
                **{a: s for a, s in zip(ATTRIBUTES, clip_scores, strict=True)},
                "detected": r["detected"],
            }
        )
    accuracy = accuracy_of(scored)
    return {
        "videos": str(videos),
        "prompts": str(prompts),
        "shuffled": shuffle,
        "seed": seed,
        "clips": len(clips),
        "accuracy": accuracy,
        "overall": overall_score(accuracy),
        "per_clip": clips,
    }


def overall_score(accuracy: dict[str, float | None]) -> float:
    """The overall micro score: the mean of the attribute accuracies that apply."""
    return float(np.mean([v for v in accuracy.values() if v is not None]))


def accuracy_of(results: list[dict]) -> dict[str, float | None]:
    """Per-attribute accuracy over :func:`score_clip` results (object attributes pooled over objects)."""
    totals = {a: [] for a in ATTRIBUTES}
    for r in results:
        for a in ATTRIBUTES:
            totals[a].extend(r[a] if isinstance(r[a], list) else [r[a]])
    return {a: float(np.mean(v)) if v else None for a, v in totals.items()}
