"""Micro-world captions: varied wording that can be parsed back into attributes.

:func:`write_caption` describes a scene with one of several sentence templates and synonyms for shapes,
sizes, motions and backgrounds. :func:`parse_caption` recovers the attributes a caption asks for (each
object's color, shape, size and motion, and the background), which is what the micro-world metrics score a
generated clip against. Every object is described as ``<size> <color> <shape> <motion>``; colors start
object clauses, so a caption names at most one object per color.
"""

from __future__ import annotations

import re

import numpy as np

from s2dit.data.micro.scene import Scene
from s2dit.data.micro.vocab import (
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    COLORS,
    GRADIENT_WORD,
    MOTION_PHRASES,
    MOTIONS,
    SHAPE_WORDS,
    SIZE_WORDS,
)

_COUNT_WORDS = ("one", "two", "three")
_SCENE_TEMPLATES = (
    "{objects} {bg}.",
    "{Bg}, {objects}.",
    "{Count} {noun} {bg}: {objects}.",
    "A video where {objects}, {bg}.",
)
_DIAGONAL_WORDS = {
    "up": {"v": "up", "vc": "top", "vp": "upper"},
    "down": {"v": "down", "vc": "bottom", "vp": "lower"},
}


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _motion_phrases(motion: str) -> list[str]:
    """Every phrase that describes ``motion`` (diagonal templates filled in)."""
    if motion.startswith("diagonal_"):
        vert, horiz = motion.removeprefix("diagonal_").split("_")
        return [t.format(h=horiz, **_DIAGONAL_WORDS[vert]) for t in MOTION_PHRASES["diagonal"]]
    return list(MOTION_PHRASES[motion])


def _background_phrase(rng: np.random.Generator, name: str) -> str:
    kind = BACKGROUNDS[name][0]
    words = f"plain {name}" if kind == "plain" else f"{name} {GRADIENT_WORD[kind]}"
    if kind == "plain" and rng.random() < 0.5:
        words = name
    return _pick(rng, BACKGROUND_PHRASES).format(bg=words)


def write_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A caption for ``scene`` naming every object's size, color, shape and motion, and the background."""
    clauses = [
        f"a {_pick(rng, SIZE_WORDS[o.size])} {o.color} {_pick(rng, SHAPE_WORDS[o.shape])} "
        f"{_pick(rng, _motion_phrases(o.motion))}"
        for o in scene.objects
    ]
    if len(clauses) == 1:
        objects = clauses[0]
    elif rng.random() < 0.5:
        objects = ", ".join(clauses[:-1]) + " and " + clauses[-1]
    else:
        objects = ", while ".join(clauses) if len(clauses) == 2 else "; ".join(clauses)
    bg = _background_phrase(rng, scene.background)
    n = len(scene.objects)
    text = _pick(rng, _SCENE_TEMPLATES).format(
        objects=objects,
        bg=bg,
        Bg=bg[0].upper() + bg[1:],
        Count=_COUNT_WORDS[n - 1].capitalize(),
        noun="shape" if n == 1 else "shapes",
    )
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------

_WORD_TO_SHAPE = {w: shape for shape, words in SHAPE_WORDS.items() for w in words}
_WORD_TO_SIZE = {w: size for size, words in SIZE_WORDS.items() for w in words}
_PHRASE_TO_MOTION = sorted(  # longest first, so "bounces up and down" wins over "up"
    ((p, m) for m in MOTIONS for p in _motion_phrases(m)),
    key=lambda pm: -len(pm[0]),
)


def _motion_from_keywords(words: list[str]) -> str | None:
    """Fallback for free-form prompts: guess the motion from keywords."""
    has = set(words).__contains__
    vertical = any(map(has, ("up", "upward", "upwards", "top", "upper", "rises", "rising")))
    downward = any(map(has, ("down", "downward", "downwards", "bottom", "lower", "falls", "falling")))
    left, right = has("left") or has("leftward"), has("right") or has("rightward")
    if any(w.startswith("bounc") for w in words):
        if (vertical and downward) or has("vertically"):
            return "bounce_vertical"
        return "bounce_horizontal" if (left and right) or has("sideways") or has("horizontally") else "bounce"
    if any(map(has, ("still", "stationary", "static", "motionless"))):
        return "still"
    if any(map(has, ("grows", "growing", "grow", "bigger", "expands", "expanding"))):
        return "grow"
    if any(map(has, ("shrinks", "shrinking", "shrink", "smaller", "contracts"))):
        return "shrink"
    if (vertical or downward) and (left or right):
        return f"diagonal_{'up' if vertical else 'down'}_{'left' if left else 'right'}"
    if has("diagonal") or has("diagonally"):
        return "diagonal"  # no direction named: any diagonal counts
    for flag, motion in ((left, "left"), (right, "right"), (vertical, "up"), (downward, "down")):
        if flag:
            return motion
    return None


def parse_caption(text: str) -> dict:
    """Attributes a caption asks for.

    Returns ``{"background": name or None, "objects": [{"color", "shape", "size", "motion"}, ...]}``;
    an attribute the caption does not name is None. Objects are found by their color words.
    """
    words = re.findall(r"[a-z]+", text.lower())
    starts = [i for i, w in enumerate(words) if w in COLORS]
    objects = []
    for k, i in enumerate(starts):
        clause = words[i + 1 : starts[k + 1] if k + 1 < len(starts) else len(words)]
        joined = " " + " ".join(clause) + " "
        motion = next((m for p, m in _PHRASE_TO_MOTION if f" {p} " in joined), None)
        objects.append(
            {
                "color": words[i],
                "shape": next((_WORD_TO_SHAPE[w] for w in clause if w in _WORD_TO_SHAPE), None),
                "size": _WORD_TO_SIZE.get(words[i - 1]) if i > 0 else None,
                "motion": motion or _motion_from_keywords(clause),
            }
        )
    background = next((w for w in words if w in BACKGROUNDS), None)
    return {"background": background, "objects": objects}
