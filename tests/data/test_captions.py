"""parse_caption reads the micro world's own captions exactly and prompts as people write them; what it
cannot place it reports."""

import pytest

from s2dit.config import VideoSpec
from s2dit.data.micro.captions import parse_caption, unknown_words_warning, write_caption
from s2dit.data.micro.scene import clip_rng, sample_scene


def test_every_written_caption_parses_back_exactly():
    for seed in (0, 1, 2, 3):
        for i in range(500):
            rng = clip_rng(seed, i)
            scene = sample_scene(rng, VideoSpec())
            caption = write_caption(rng, scene)
            asked = [
                {"color": o.color, "shape": o.shape, "size": o.size, "motion": o.motion}
                for o in scene.objects
            ]
            assert parse_caption(caption) == {
                "background": scene.background,
                "objects": asked,
                "unknown": [],
            }, caption


def _o(color=None, shape=None, size=None, motion=None) -> dict:
    return {"color": color, "shape": shape, "size": size, "motion": motion}


# (prompt, background, objects): paraphrases of every motion, counts 1-3, sizes and backgrounds.
PARAPHRASES = [
    # Direction phrases with from / to / towards, adverbs.
    ("a red ball slides from left to right", None, [_o("red", "circle", motion="right")]),
    ("a blue box moves from the top to the bottom", None, [_o("blue", "square", motion="down")]),
    (
        "a green triangle heads towards the upper left",
        None,
        [_o("green", "triangle", motion="diagonal_up_left")],
    ),
    (
        "a yellow diamond goes from the bottom left to the top right",
        None,
        [_o("yellow", "diamond", motion="diagonal_up_right")],
    ),
    ("a small pink square moving leftwards", None, [_o("pink", "square", "small", "left")]),
    ("an orange disc drifting rightwards on grey", "gray", [_o("orange", "circle", motion="right")]),
    ("a purple rhombus floats upwards in the fog", "fog", [_o("purple", "diamond", motion="up")]),
    ("a cyan ball heading downward against a sandy backdrop", "sand", [_o("cyan", "circle", motion="down")]),
    ("a red circle starts at the right and moves left", None, [_o("red", "circle", motion="left")]),
    (
        "a blue square rises from the bottom of the frame to the top",
        None,
        [_o("blue", "square", motion="up")],
    ),
    (
        "a green ball moves diagonally down to the right",
        None,
        [_o("green", "circle", motion="diagonal_down_right")],
    ),
    (
        "one yellow triangle moves down and to the left",
        None,
        [_o("yellow", "triangle", motion="diagonal_down_left")],
    ),
    ("a red ball in the top left corner moves right", None, [_o("red", "circle", motion="right")]),
    (
        "a red ball travelling from the right side to the left side",
        None,
        [_o("red", "circle", motion="left")],
    ),
    ("a single orange square descends", None, [_o("orange", "square", motion="down")]),
    # Bounces, growing, shrinking, standing still.
    ("a huge green ball bouncing up and down", None, [_o("green", "circle", "large", "bounce_vertical")]),
    (
        "a tiny cyan box bouncing from side to side on a twilight backdrop",
        "dusk",
        [_o("cyan", "square", "small", "bounce_horizontal")],
    ),
    ("a red ball goes from left to right and back", None, [_o("red", "circle", motion="bounce_horizontal")]),
    ("a blue circle moving up then down", None, [_o("blue", "circle", motion="bounce_vertical")]),
    ("a yellow box moves back and forth", None, [_o("yellow", "square", motion="bounce")]),
    ("a big purple triangle getting bigger", None, [_o("purple", "triangle", "large", "grow")]),
    ("a giant pink diamond shrinking", None, [_o("pink", "diamond", "large", "shrink")]),
    ("a little orange circle that doesn't move", None, [_o("orange", "circle", "small", "still")]),
    ("a red ball staying in place on a misty background", "fog", [_o("red", "circle", motion="still")]),
    ("a pink box is stationary on a dark background", "black", [_o("pink", "square", motion="still")]),
    ("a red ball moves diagonally", None, [_o("red", "circle", motion="diagonal")]),
    # Counts, plurals, "both" / "all" / "each", shared nouns and motions.
    ("two circles, both red, moving left", None, [_o("red", "circle", motion="left")] * 2),
    ("two red squares sliding up", None, [_o("red", "square", motion="up")] * 2),
    ("2 small red circles moving left", None, [_o("red", "circle", "small", "left")] * 2),
    ("a pair of purple diamonds drifting to the right", None, [_o("purple", "diamond", motion="right")] * 2),
    (
        "three small squares all moving up on a plain white background",
        "white",
        [_o(None, "square", "small", "up")] * 3,
    ),
    (
        "three balls, red, green and blue, each rising",
        None,
        [_o(c, "circle", motion="up") for c in ("red", "green", "blue")],
    ),
    (
        "red and blue circles moving down",
        None,
        [_o("red", "circle", motion="down"), _o("blue", "circle", motion="down")],
    ),
    (
        "a red and a blue ball rising",
        None,
        [_o("red", "circle", motion="up"), _o("blue", "circle", motion="up")],
    ),
    ("two balls, one red and one blue", None, [_o("red", "circle"), _o("blue", "circle")]),
    (
        "two squares, one green moving left and the other yellow moving right",
        None,
        [_o("green", "square", motion="left"), _o("yellow", "square", motion="right")],
    ),
    (
        "a red square and a blue one, both falling",
        None,
        [_o("red", "square", motion="down"), _o("blue", "square", motion="down")],
    ),
    (
        "a big red ball and a small blue box moving left over a gray backdrop",
        "gray",
        [_o("red", "circle", "large", "left"), _o("blue", "square", "small", "left")],
    ),
    (
        "the blue ball grows while the red box shrinks",
        None,
        [_o("blue", "circle", motion="grow"), _o("red", "square", motion="shrink")],
    ),
    ("both balls are red and move right", None, [_o("red", "circle", motion="right")] * 2),
    (
        "a large orange cube moving to the right in front of a dusk gradient",
        "dusk",
        [_o("orange", "square", "large", "right")],
    ),
    ("a red thing falls", None, [_o("red", motion="down")]),
]


@pytest.mark.parametrize("prompt, background, objects", PARAPHRASES, ids=[p for p, *_ in PARAPHRASES])
def test_paraphrases(prompt, background, objects):
    assert parse_caption(prompt) == {"background": background, "objects": objects, "unknown": []}


@pytest.mark.parametrize(
    "prompt, objects, unknown, background",
    [
        # A colour or shape outside the vocabulary is reported, not dropped or taken as the background.
        (
            "a brown hexagon moving left on a white background",
            [_o(motion="left")],
            ["brown", "hexagon"],
            "white",
        ),
        ("a purple octagon", [_o("purple")], ["octagon"], None),
        ("a red ball on a red background", [_o("red", "circle")], ["red background"], None),
        ("a red ball on a checkered backdrop", [_o("red", "circle")], ["checkered backdrop"], None),
        (
            "a big white ball on a black background",
            [_o(shape="circle", size="large")],
            ["white ball"],
            "black",
        ),
        ("a dark blue box", [_o("blue", "square")], ["dark"], None),
        # So are motions and places the world has no word for.
        ("a red ball spinning slowly", [_o("red", "circle")], ["spinning", "slowly"], None),
        ("a red ball moves toward the blue box", [_o("red", "circle")], ["toward the blue box"], None),
        ("a green box zigzags in a circle", [_o("green", "square")], ["zigzags", "in a circle"], None),
    ],
)
def test_what_cannot_be_placed_is_reported(prompt, objects, unknown, background):
    assert parse_caption(prompt) == {"background": background, "objects": objects, "unknown": unknown}


def test_the_warning_is_one_line_and_only_when_needed():
    assert unknown_words_warning("a large red circle moving right on a white background") is None
    assert unknown_words_warning("two circles, both red, moving left") is None
    warning = unknown_words_warning("a brown hexagon spinning on a red background")
    assert "\n" not in warning and "micro world" in warning
    for word in ("'brown'", "'hexagon'", "'spinning'", "'red background'"):
        assert word in warning
    assert "'a'" not in warning and "'on'" not in warning  # function words are known
    assert "at most 3 objects" in unknown_words_warning("four red balls moving left")
    assert "no object" in unknown_words_warning("moving left")
