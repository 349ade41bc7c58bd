"""The micro world's closed vocabulary and the words used for it in captions.

Object colors are saturated and backgrounds are not (saturation below 0.3), so that objects can be
segmented from pixels by hue alone (see :mod:`s2dit.data.micro.metrics`).
"""

from __future__ import annotations

# name -> RGB. Hues (degrees): red 0, orange 31, yellow 53, green 128, cyan 186, blue 228, purple 274,
# pink 325: at least 22 degrees apart.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (250, 135, 10),
    "yellow": (240, 215, 25),
    "green": (40, 185, 60),
    "cyan": (20, 195, 215),
    "blue": (35, 75, 230),
    "purple": (140, 50, 210),
    "pink": (240, 70, 170),
}

SHAPES = ("circle", "square", "triangle", "diamond")

# Half-extent of an object, as a fraction of the frame height.
SIZES: dict[str, float] = {"small": 0.09, "large": 0.15}

# Backgrounds: name -> (kind, first RGB, second RGB). Gradients run top->bottom ("vertical"),
# left->right ("horizontal") or corner to corner ("diagonal").
BACKGROUNDS: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int]]] = {
    "white": ("plain", (236, 236, 236), (236, 236, 236)),
    "gray": ("plain", (128, 128, 128), (128, 128, 128)),
    "black": ("plain", (18, 18, 18), (18, 18, 18)),
    "dusk": ("vertical", (38, 40, 56), (104, 100, 110)),
    "fog": ("horizontal", (206, 210, 214), (150, 154, 158)),
    "sand": ("diagonal", (205, 190, 165), (165, 152, 132)),
}

# Motions. Families: left, right, up, down, diagonal, bounce, grow, shrink, still.
DIAGONALS = ("up_left", "up_right", "down_left", "down_right")
MOTIONS = (
    "left",
    "right",
    "up",
    "down",
    *(f"diagonal_{d}" for d in DIAGONALS),
    "bounce_horizontal",
    "bounce_vertical",
    "grow",
    "shrink",
    "still",
)
MOTION_FAMILIES = ("left", "right", "up", "down", "diagonal", "bounce", "grow", "shrink", "still")


def motion_family(motion: str) -> str:
    """``"diagonal_up_left"`` -> ``"diagonal"``; ``"bounce_vertical"`` -> ``"bounce"``; others unchanged."""
    return motion.split("_", 1)[0]


# ---------------------------------------------------------------------------------------------------
# Words. Every synonym is a single lowercase word that no other list uses, so captions parse back.
# ---------------------------------------------------------------------------------------------------

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid"),
    "diamond": ("diamond", "rhombus"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
BACKGROUND_PHRASES = (
    "on a {bg} background",
    "against a {bg} backdrop",
    "in front of a {bg} background",
    "over a {bg} backdrop",
)
GRADIENT_WORD = {"plain": "plain", "vertical": "gradient", "horizontal": "gradient", "diagonal": "gradient"}

# Motion phrases; {v} is up/down and {h} is left/right for diagonals.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moves to the left", "slides left", "drifts leftward", "travels to the left"),
    "right": ("moves to the right", "slides right", "drifts rightward", "travels to the right"),
    "up": ("moves up", "rises", "floats upward", "climbs upward"),
    "down": ("moves down", "falls", "sinks downward", "drops down"),
    "diagonal": (
        "moves diagonally {v} and to the {h}",
        "drifts toward the {vc} {h} corner",
        "glides diagonally to the {vp} {h}",
    ),
    "bounce_horizontal": (
        "bounces left and right",
        "bounces back and forth sideways",
        "bounces between the sides",
    ),
    "bounce_vertical": ("bounces up and down", "bounces between the top and bottom", "bounces vertically"),
    "grow": ("grows", "gets bigger", "expands", "swells up"),
    "shrink": ("shrinks", "gets smaller", "contracts", "dwindles"),
    "still": ("stays still", "sits still", "does not move", "rests in place"),
}


# ---------------------------------------------------------------------------------------------------
# The compositional split: (color, shape, motion family) triples that a "train" world never draws and a
# "heldout" world draws exclusively. For each (color, shape) pair exactly one family is held out, chosen
# so that every pair of attributes (color-shape, color-family, shape-family) still occurs in training:
# only the triple is new. 32 of the 288 triples (8 colors x 4 shapes x 9 families).
# ---------------------------------------------------------------------------------------------------

COMBOS = ("all", "train", "heldout")


def heldout_family(color: str, shape: str) -> str:
    """The motion family held out for objects of this color and shape."""
    c, s = list(COLORS).index(color), SHAPES.index(shape)
    return MOTION_FAMILIES[(-(c + 2 * s)) % len(MOTION_FAMILIES)]


def is_heldout_combo(color: str, shape: str, motion: str) -> bool:
    """Whether an object's (color, shape, motion family) belongs to the compositional held-out split."""
    return motion_family(motion) == heldout_family(color, shape)
