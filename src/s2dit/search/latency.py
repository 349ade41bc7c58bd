"""Latency tables for the layout search (docs/architecture.md §6): what each block kind and each stage
transition costs on a device, read from the JSON that ``s2dit bench blocks`` writes (schema
``s2dit.latency/1``) or from a table measured elsewhere (a phone) in the same schema.

The schema (every field checked by :func:`validate`, errors name the field)::

    {"schema": "s2dit.latency/1", "device": str, "dtype": str, "width": int, "heads": int,
     "entries": [{"kind": "L"|"S"|"F"|"stage_down"|"stage_up"|..., "tokens": int, "pass": "forward"|...,
                  "ms": float}, ...]}

``tokens`` are full-resolution tokens; an ``S`` entry at ``tokens = N`` is the block on the coarse grid of
those N tokens (N/4), and ``stage_down``/``stage_up`` enter and leave that grid. Extra fields and kinds
(``L_floor``, ``grid``, ``ms_min``) are allowed. Costs between measured token counts are interpolated
linearly in log-log space (a power law between neighbours); outside the measured range they are refused.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import defaultdict
from pathlib import Path

from s2dit.errors import S2DitError
from s2dit.files import read_json
from s2dit.model.config import KINDS

SCHEMA = "s2dit.latency/1"
TRANSITIONS = ("stage_down", "stage_up")
MAX_MS = 1e9  # about 12 days a pass: anything above is a broken measurement (and overflows the DP's sums)


def _fail(path: str, message: str):
    raise S2DitError(f"latency table: {path}: {message}")


def validate(data: object) -> None:
    """Raise :class:`S2DitError` naming the first bad field of a latency table."""
    if not isinstance(data, dict):
        _fail("(top level)", "must be a JSON object")
    if data.get("schema") != SCHEMA:
        _fail("schema", f"must be {SCHEMA!r}, got {data.get('schema')!r}")
    for key, kind in (("device", str), ("dtype", str), ("width", int), ("heads", int)):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            _fail(key, f"must be a {kind.__name__}, got {value!r}")
    if data["width"] < 1:
        _fail("width", f"must be positive, got {data['width']}")
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        _fail("entries", "must be a non-empty list")
    seen: dict[tuple, int] = {}
    for i, e in enumerate(entries):
        where = f"entries[{i}]"
        if not isinstance(e, dict):
            _fail(where, "must be an object")
        if not isinstance(e.get("kind"), str):
            _fail(f"{where}.kind", f"must be a string, got {e.get('kind')!r}")
        tokens = e.get("tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            _fail(f"{where}.tokens", f"must be a positive integer, got {tokens!r}")
        if not isinstance(e.get("pass"), str):
            _fail(f"{where}.pass", f"must be a string, got {e.get('pass')!r}")
        ms = e.get("ms")
        if not isinstance(ms, int | float) or isinstance(ms, bool) or not 0 < ms <= MAX_MS:
            _fail(f"{where}.ms", f"must be a positive number of milliseconds up to {MAX_MS:g}, got {ms!r}")
        key = (e["kind"], tokens, e["pass"])
        if key in seen:
            _fail(
                where,
                f"measures {key} again (first in entries[{seen[key]}]): keep one entry per kind, "
                "tokens and pass",
            )
        seen[key] = i


class LatencyTable:
    """Per-kind costs in milliseconds as a function of full-resolution tokens, for one pass."""

    def __init__(self, data: dict, pass_: str = "forward"):
        validate(data)
        self.data, self.pass_ = data, pass_
        self.width, self.device, self.dtype = data["width"], data["device"], data["dtype"]
        points: dict[str, dict[int, float]] = defaultdict(dict)
        for e in data["entries"]:
            if e["pass"] == pass_:
                points[e["kind"]][e["tokens"]] = float(e["ms"])
        missing = [k for k in ("L", "S", *TRANSITIONS) if k not in points]
        if missing:
            _fail(
                "entries",
                f"no {pass_!r} entries for kind(s) {', '.join(missing)} (L, S and the stage "
                "entry/exit are required; F is optional)",
            )
        self.points = {k: sorted(v.items()) for k, v in points.items()}

    @classmethod
    def load(cls, path: str | os.PathLike, pass_: str = "forward") -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise S2DitError(
                f"latency table {path} not found (write one with: s2dit bench blocks --json FILE)"
            )
        return cls(read_json(path, mapping=False), pass_)

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if k in self.points]

    def token_range(self, kind: str) -> tuple[int, int]:
        pts = self.points[kind]
        return pts[0][0], pts[-1][0]

    def cost(self, kind: str, tokens: int) -> float:
        """Milliseconds of ``kind`` at ``tokens`` full-resolution tokens (log-log interpolation)."""
        if kind not in self.points:
            raise S2DitError(f"the latency table has no {self.pass_!r} entries for kind {kind!r}")
        pts = self.points[kind]
        lo, hi = pts[0][0], pts[-1][0]
        if not lo <= tokens <= hi:
            raise S2DitError(
                f"{tokens} tokens is outside the latency table's measured range for {kind!r} ({lo}..{hi}): "
                "measure it with s2dit bench blocks --tokens"
            )
        for (n0, t0), (n1, t1) in itertools.pairwise(pts):
            if n0 <= tokens <= n1:
                if tokens in (n0, n1) or n0 == n1:
                    return t0 if tokens == n0 else t1
                f = math.log(tokens / n0) / math.log(n1 / n0)
                return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))
        return pts[0][1]  # a single measured point

    def layout_latency(self, layout: str, tokens: int) -> dict[str, float]:
        """Predicted milliseconds of a layout's blocks and stage transitions at ``tokens``, by part."""
        from s2dit.model.ssa import stages

        out = {k: 0.0 for k in (*KINDS, "stages")}
        for kind in layout:
            out[kind] += self.cost(kind, tokens)
        n_stages = len(stages(layout))
        out["stages"] = n_stages * (self.cost("stage_down", tokens) + self.cost("stage_up", tokens))
        out["total"] = sum(out.values())
        return out
