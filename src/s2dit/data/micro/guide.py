"""What the micro world can draw, in a few sentences for people: ``s2dit stream --help`` and the live
viewer's page. Written from :mod:`s2dit.data.micro.vocab`, so it names every color, shape, size, motion
and background the world has, and nothing else.
"""

from __future__ import annotations

from s2dit.data.micro.vocab import BACKGROUNDS, COLORS, DIAGONALS, MOTION_FAMILIES, SHAPES, SIZES

EXAMPLE_PROMPTS = (
    "a large red circle moving right on a white background",
    "two small blue squares bouncing up and down on a black background",
)

# How a prompt asks for each motion family (the caption parser reads these; see captions.parse_caption).
_MOTION_WORDS = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "diagonal": "moving diagonally (" + ", ".join(d.replace("_", "-") for d in DIAGONALS) + ")",
    "bounce": "bouncing left and right or up and down",
    "grow": "growing",
    "shrink": "shrinking",
    "still": "staying still",
}


def _either(words) -> str:
    """``["a", "b", "c"]`` -> ``"a, b or c"``."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def world_guide() -> str:
    """One paragraph: what a micro-world model draws, then two example prompts."""
    from s2dit.data.micro.writer import MicroWorldConfig

    world = MicroWorldConfig()
    motions = _either(_MOTION_WORDS[f] for f in MOTION_FAMILIES)
    examples = "; ".join(f'"{p}"' for p in EXAMPLE_PROMPTS)
    return (
        f"The micro world, which the shipped models draw: {world.min_objects} to {world.max_objects} "
        f"objects, each a {_either(SIZES)} {_either(SHAPES)} in {_either(COLORS)}, {motions}, on a "
        f"{_either(BACKGROUNDS)} background. Examples: {examples}."
    )
