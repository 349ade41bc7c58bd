"""The world guide of ``s2dit stream --help`` and the viewer page names the whole vocabulary."""

import re

from s2dit.data.micro import vocab
from s2dit.data.micro.captions import parse_caption, unknown_words_warning
from s2dit.data.micro.guide import EXAMPLE_PROMPTS, world_guide


def test_the_guide_names_every_color_shape_size_background_and_motion():
    guide = world_guide()
    for word in (*vocab.COLORS, *vocab.SHAPES, *vocab.SIZES, *vocab.BACKGROUNDS):
        assert re.search(rf"\b{word}\b", guide), word
    for phrase in ("moving left", "moving right", "moving up", "moving down", "diagonally", "bouncing"):
        assert phrase in guide
    for phrase in ("growing", "shrinking", "staying still", "1 to 3 objects"):
        assert phrase in guide
    for diagonal in vocab.DIAGONALS:
        assert diagonal.replace("_", "-") in guide


def test_every_motion_the_guide_names_parses_to_its_motion():
    families = {
        "a circle moving left": "left",
        "a circle moving right": "right",
        "a circle moving up": "up",
        "a circle moving down": "down",
        "a circle moving diagonally up-left": "diagonal_up_left",
        "a circle moving diagonally down-right": "diagonal_down_right",
        "a circle bouncing left and right": "bounce_horizontal",
        "a circle bouncing up and down": "bounce_vertical",
        "a circle growing": "grow",
        "a circle shrinking": "shrink",
        "a circle staying still": "still",
    }
    assert {vocab.motion_family(m) for m in families.values()} == set(vocab.MOTION_FAMILIES)
    for prompt, motion in families.items():
        assert parse_caption(prompt)["objects"][0]["motion"] == motion, prompt


def test_the_example_prompts_are_fully_understood():
    for prompt in EXAMPLE_PROMPTS:
        assert prompt in world_guide()
        assert unknown_words_warning(prompt) is None
        parsed = parse_caption(prompt)
        assert parsed["background"] and parsed["objects"]
        assert all(o["color"] and o["shape"] and o["size"] and o["motion"] for o in parsed["objects"])
