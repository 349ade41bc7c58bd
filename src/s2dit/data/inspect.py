"""Summaries of a clip folder: counts, attribute histograms and a contact sheet of random clips."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np

from s2dit.data.micro.vocab import motion_family
from s2dit.data.video_folder import read_captions
from s2dit.errors import S2DitError


def inspect_folder(
    root: str | os.PathLike, *, sheet: str | os.PathLike | None = None, n_sheet: int = 8, seed: int = 0
) -> dict:
    """Count the clips of ``root`` and, for a micro world, histogram its attributes.

    Writes a contact sheet of ``n_sheet`` random clips to ``sheet`` (default ``root/inspect.png``).
    Returns ``{"clips", "captions_unique", "histograms": {name: {value: count}}, "sheet"}``.
    """
    from s2dit.videoio import contact_sheet, read_video

    root = Path(root)
    if not root.is_dir():
        raise S2DitError(f"folder not found: {root}")
    pairs = read_captions(root)
    if not pairs:
        raise S2DitError(f"{root}: no clips listed")
    hist: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    index = root / "clips.jsonl"
    if index.is_file():  # a micro world: attributes are recorded per clip
        for line in index.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            objects = row.get("objects", [])
            hist["objects per clip"][len(objects)] += 1
            hist["background"][row.get("background")] += 1
            for o in objects:
                hist["color"][o["color"]] += 1
                hist["shape"][o["shape"]] += 1
                hist["size"][o["size"]] += 1
                hist["motion"][motion_family(o["motion"])] += 1
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pairs), size=min(n_sheet, len(pairs)), replace=False)
    clips, captions = [], []
    for i in sorted(chosen):
        video, caption = pairs[i]
        try:
            clips.append(read_video(root / video)[0])
            captions.append(f"{video}: {caption}")
        except S2DitError:
            continue
    sheet = Path(sheet) if sheet else root / "inspect.png"
    if clips:
        contact_sheet(clips, captions, sheet)
    return {
        "clips": len(pairs),
        "captions_unique": len({c for _, c in pairs}),
        "histograms": {k: dict(sorted(v.items(), key=lambda kv: str(kv[0]))) for k, v in hist.items()},
        "sheet": str(sheet) if clips else None,
    }
