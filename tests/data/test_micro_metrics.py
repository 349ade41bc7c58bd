import colorsys
import json

import numpy as np
import pytest

from s2dit.config import VideoSpec
from s2dit.data.micro.metrics import (
    ObjectTrack,
    classify_motion,
    classify_shape,
    evaluate_folder,
    load_prompts,
    measure_size,
    score_clip,
    temporal_flicker,
    track_objects,
)
from s2dit.data.micro.render import coverage, render_scene
from s2dit.data.micro.scene import Scene, SceneObject
from s2dit.data.micro.vocab import COLORS, SHAPES, SIZES
from s2dit.errors import S2DitError


def test_ground_truth_scores_high_and_shuffled_prompts_low(micro_world):
    truth = evaluate_folder(micro_world, micro_world / "clips.jsonl", progress=False)
    assert truth["clips"] == 24
    assert truth["pass_rate"] >= 0.95 and truth["mean_accuracy"] >= 0.95  # through H.264 at crf 18
    assert all(v >= 0.9 for v in truth["accuracy"].values()), truth["accuracy"]
    assert sum(c["passed"] for c in truth["per_clip"]) == round(24 * truth["pass_rate"])
    shuffled = evaluate_folder(micro_world, micro_world / "clips.jsonl", shuffle=True, progress=False)
    assert shuffled["pass_rate"] <= 0.05 and shuffled["mean_accuracy"] <= 0.5
    assert shuffled["accuracy"]["color"] < 0.5 and shuffled["accuracy"]["motion"] < 0.3
    # Parsing the captions instead of reading the recorded attributes scores the same clips alike.
    captions = micro_world / "captions_only.jsonl"
    rows = [json.loads(x) for x in (micro_world / "clips.jsonl").read_text().splitlines()]
    captions.write_text(
        "".join(json.dumps({"video": r["video"], "caption": r["caption"]}) + "\n" for r in rows)
    )
    parsed = evaluate_folder(micro_world, captions, progress=False)
    assert parsed["accuracy"] == truth["accuracy"] and parsed["pass_rate"] == truth["pass_rate"]


def test_the_hue_table_names_the_nearest_palette_hue_within_the_tolerance():
    """Built at import (so mutation testing cannot reach it through the classifiers): checked here against
    colorsys's hues of the palette, every tenth of a degree, wrap-around included."""
    from s2dit.data.micro import metrics

    table = metrics._hue_table()
    assert table.shape == (3600,) and table.dtype == np.int8
    assert np.array_equal(metrics._HUE_TABLE, table)
    palette = {n: 360 * colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for n, rgb in COLORS.items()}
    names = list(COLORS)
    for i in range(3600):
        h = (i + 0.5) / 10
        gap = {n: min(abs(h - p), 360 - abs(h - p)) for n, p in palette.items()}
        nearest = min(gap, key=gap.get)
        assert table[i] == (names.index(nearest) if gap[nearest] <= 20 else -1), h
    assert table[0] == table[-1] == names.index("red")  # red's hue is 0: both ends of the circle
    assert (table == -1).any()  # some hues (greenish yellow to green) are no palette colour


def _track(centers, areas=None) -> ObjectTrack:
    centers = np.asarray(centers, float)
    areas = np.full(len(centers), 100.0) if areas is None else np.asarray(areas, float)
    return ObjectTrack("red", areas, centers, ["circle"] * len(centers))


@pytest.mark.parametrize(
    "dx, dy, expected",
    [
        (-80, 0, "left"),
        (80, 3, "right"),
        (0, -50, "up"),
        (2, 50, "down"),
        (60, -55, "diagonal_up_right"),
        (-50, 50, "diagonal_down_left"),
        (3, 2, "still"),
    ],
)
def test_classify_linear_motion(dx, dy, expected):
    u = np.linspace(0, 1, 33)[:, None]
    assert classify_motion(_track(np.array([120.0, 70.0]) + u * [dx, dy]), 256, 144) == expected


def test_classify_bounce_and_size_change():
    u = np.linspace(0, 1, 33)
    x = 100 + 120 * np.minimum(u, 1 - u)  # out 60 px and back
    assert classify_motion(_track(np.stack([x, np.full_like(u, 70)], 1)), 256, 144) == "bounce_horizontal"
    y = 40 + 80 * np.abs(u - 0.3)
    assert classify_motion(_track(np.stack([np.full_like(u, 90), y], 1)), 256, 144) == "bounce_vertical"
    still = np.tile([100.0, 70.0], (33, 1))
    assert classify_motion(_track(still, 100 * (1 + 2 * u) ** 2), 256, 144) == "grow"
    assert classify_motion(_track(still, 400 * (1 - 0.5 * u) ** 2), 256, 144) == "shrink"


def test_classify_motion_is_strict():
    u = np.linspace(0, 1, 9)
    right = np.stack([60 + 100 * u, np.full_like(u, 70)], 1)
    assert classify_motion(_track(right), 256, 144) == "right"
    assert classify_motion(_track(right[::-1]), 256, 144) == "left"  # time-reversed
    assert classify_motion(_track(np.repeat(right[:1], 9, 0)), 256, 144) == "still"  # frozen
    # Moving while resizing, or resizing by less than grow/shrink but more than steady, fits no motion.
    assert classify_motion(_track(right, 100 * (1 + 2 * u) ** 2), 256, 144) is None
    still = np.tile([100.0, 70.0], (9, 1))
    assert classify_motion(_track(still, 100 * (1 + 0.2 * u) ** 2), 256, 144) is None
    assert classify_motion(_track(still, 100 * (1 + 0.05 * u) ** 2), 256, 144) == "still"
    # Up to 0.12 of the frame is still; a reversal of 0.1 of the frame is a bounce.
    assert classify_motion(_track(still + u[:, None] * [15, 0]), 256, 144) == "still"
    assert (
        classify_motion(_track(still + np.minimum(u, 1 - u)[:, None] * [0, 40]), 256, 144)
        == "bounce_vertical"
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_measure_size_from_area_and_shape(shape, size):
    spec = VideoSpec(width=256, height=144, frames=5, fps=4)
    s0 = SIZES[size] * spec.height
    obj = SceneObject(
        shape, "blue", size, "grow", np.tile([128.0, 72.0], (5, 1)), s0 * np.linspace(1, 1.8, 5)
    )
    track = track_objects(render_scene(Scene("sand", [obj], spec)))[0]
    measured, scale = measure_size(track, spec.height)
    assert measured == size and scale == pytest.approx(SIZES[size], rel=0.05)  # at the first frame


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [7.0, 13.0, 22.0])
def test_classify_shape_from_rendered_masks(shape, scale):
    alpha, _ = coverage(shape, 40.3, 40.7, scale, 80, 80)
    assert classify_shape(alpha >= 0.5) == shape


def test_temporal_flicker_formula():
    steady = np.full((5, 8, 8, 3), 77, np.uint8)
    assert temporal_flicker(steady) == 1.0
    blink = np.zeros((4, 8, 8, 3), np.uint8)
    blink[1::2] = 255
    assert temporal_flicker(blink) == 0.0
    ramp = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(5)])
    assert temporal_flicker(ramp) == pytest.approx((255 - 10) / 255)


def _scene_frames(objects):
    spec = VideoSpec(width=128, height=96, frames=9, fps=8)
    f = spec.frames
    objs = [
        SceneObject(s, c, "small", "still", np.tile(xy, (f, 1)).astype(float), np.full(f, 12.0))
        for s, c, xy in objects
    ]
    return render_scene(Scene("gray", objs, spec))


def test_score_clip_per_attribute():
    frames = _scene_frames([("circle", "red", (30, 30)), ("square", "blue", (90, 60))])
    good = [{"color": "red", "shape": "circle", "motion": "still"}, {"color": "blue", "shape": "square"}]
    r = score_clip(frames, good)
    assert r["color"] == [1.0, 1.0] and r["shape"] == [1.0, 1.0] and r["motion"] == [1.0]
    assert r["persistence"] == [1.0, 1.0] and r["count"] == 1.0 and r["flicker"] == 1.0
    assert r["passed"] == 1.0 and r["matched"] == [0, 1]
    assert [(d["color"], d["shape"], d["motion"]) for d in r["detected"]] == [
        ("red", "circle", "still"),
        ("blue", "square", "still"),
    ]
    wrong = [{"color": "red", "shape": "triangle", "motion": "left"}, {"color": "green", "shape": "square"}]
    r = score_clip(frames, wrong)
    assert r["color"] == [1.0, 0.0] and r["shape"] == [0.0, 0.0] and r["motion"] == [0.0]
    assert r["persistence"] == [1.0, 0.0] and r["count"] == 1.0 and r["passed"] == 0.0
    assert score_clip(frames, good[:1])["count"] == 0.0  # an extra object
    assert score_clip(frames, good[:1])["passed"] == 0.0
    # One wrong attribute fails the prompt, whatever the others.
    assert score_clip(frames, [good[0], {**good[1], "motion": "up"}])["passed"] == 0.0
    two_reds = np.concatenate([frames[:, :, :64], frames[:, :, :64]], axis=2)  # the red circle twice
    assert score_clip(two_reds, [{"color": "red"}])["count"] == 0.0
    r = score_clip(two_reds, [{"color": "red", "shape": "circle"}, {"color": "red", "shape": "circle"}])
    assert r["passed"] == 1.0 and sorted(r["matched"]) == [0, 1]  # two objects of one color are two objects


def test_size_is_scored_when_asked():
    frames = _scene_frames([("circle", "red", (30, 30))])  # scale 12 of 96: 0.125, large
    assert score_clip(frames, [{"color": "red", "size": "large"}])["passed"] == 1.0
    r = score_clip(frames, [{"color": "red", "size": "small"}])
    assert r["size"] == [0.0] and r["passed"] == 0.0
    assert score_clip(frames, [{"color": "red"}])["size"] == []  # not asked: not scored


def test_persistence_fails_when_the_object_vanishes():
    frames = _scene_frames([("circle", "red", (30, 30))])
    frames[-1] = frames[-1, 0, 0]  # last frame: background only
    r = score_clip(frames, [{"color": "red", "shape": "circle"}])
    assert r["color"] == [1.0] and r["persistence"] == [0.0]


def test_load_prompts_formats_and_errors(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a big red ball rises\n\na small blue box slides left\n")
    rows = load_prompts(txt)
    assert [r["objects"][0]["motion"] for r in rows] == ["up", "left"] and rows[0]["video"] is None
    with pytest.raises(S2DitError, match="not found"):
        load_prompts(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    with pytest.raises(S2DitError, match=r"bad.jsonl:1: a row needs a 'caption'"):
        load_prompts(bad)
    bad.write_text("not json\n")
    with pytest.raises(S2DitError, match="not a JSON object"):
        load_prompts(bad)


def test_evaluate_folder_errors_and_corrupt_video(micro_world, tmp_path):
    with pytest.raises(S2DitError, match="videos folder not found"):
        evaluate_folder(tmp_path / "none", micro_world / "clips.jsonl", progress=False)
    first = json.loads((micro_world / "clips.jsonl").read_text().splitlines()[0])["video"]
    with pytest.raises(S2DitError, match=rf"videos named in .* are missing, e\.g\. {tmp_path / first}$"):
        evaluate_folder(tmp_path, micro_world / "clips.jsonl", progress=False)
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "notes.md").write_text("not a video")  # only video files are counted
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red ball rises\na blue box falls\n")
    with pytest.raises(S2DitError, match=r"2 prompts but .* 1 videos"):
        evaluate_folder(tmp_path, prompts, progress=False)
    prompts.write_text("a red ball rises\n")
    with pytest.warns(UserWarning, match="cannot read video"):
        report = evaluate_folder(tmp_path, prompts, progress=False)
    assert report["pass_rate"] == 0.0 and report["mean_accuracy"] == 0.0
    assert report["per_clip"][0]["passed"] is False


def test_prompt_rows_must_all_name_a_video_or_none(micro_world, tmp_path):
    prompts = tmp_path / "p.jsonl"
    named = '{"caption": "a red ball rises", "video": "clips/000000.mp4"}\n'
    prompts.write_text(named * 2 + '{"caption": "a blue box"}\n')
    with pytest.raises(S2DitError, match="1 rows have no 'video'"):
        evaluate_folder(micro_world, prompts, progress=False)
    prompts.write_text("[1, 2]\n")
    with pytest.raises(S2DitError, match="not a JSON object"):
        load_prompts(prompts)


def test_unreadable_clips_fail_only_the_attributes_asked_for(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "p.txt").write_text("a red thing\n")  # color only: no shape, no motion
    with pytest.warns(UserWarning):
        report = evaluate_folder(tmp_path, tmp_path / "p.txt", progress=False)
    assert report["accuracy"]["shape"] is None and report["accuracy"]["motion"] is None
    assert report["accuracy"]["color"] == 0.0 and report["pass_rate"] == 0.0  # the asked colour fails
    assert report["per_clip"][0]["detected"] == []
    from s2dit.data.micro.metrics import failed_clip

    failed = failed_clip([{"color": "red", "shape": "circle"}, {"color": "blue"}])  # as score_clip returns
    assert failed["color"] == [0.0, 0.0] and failed["shape"] == [0.0] and failed["size"] == []
    assert failed["matched"] == [None, None] and failed["passed"] == 0.0


def test_shuffled_prompts_never_keep_a_clip_s_own_prompt():
    from s2dit.data.micro.metrics import _derangement

    rng = np.random.default_rng(0)
    assert _derangement(2, rng).tolist() == [1, 0]
    for n in (3, 4, 5, 8):
        for _ in range(20):
            order = _derangement(n, rng)
            assert sorted(order.tolist()) == list(range(n)) and not np.any(order == np.arange(n))
    with pytest.raises(S2DitError, match=r"^shuffling prompts needs at least two clips$"):
        _derangement(1, rng)


def test_a_shuffled_control_is_reproducible_from_its_seed(micro_world, tmp_path):
    prompts = tmp_path / "five.jsonl"
    prompts.write_text("".join((micro_world / "clips.jsonl").read_text().splitlines(True)[:5]))

    def captions(seed):
        report = evaluate_folder(micro_world, prompts, shuffle=True, seed=seed, progress=False)
        assert report["seed"] == seed
        return [c["caption"] for c in report["per_clip"]]

    first = captions(0)
    assert captions(0) == first
    assert any(captions(seed) != first for seed in (1, 2, 3))
    # the report names what it scored; each clip by its path inside the folder, with its own scores
    report = evaluate_folder(micro_world, prompts, progress=False)
    assert (report["videos"], report["prompts"], report["shuffled"]) == (
        str(micro_world),
        str(prompts),
        False,
    )
    rows = [json.loads(x) for x in prompts.read_text().splitlines()]
    assert [c["video"] for c in report["per_clip"]] == [r["video"] for r in rows]
    assert [c["caption"] for c in report["per_clip"]] == [r["caption"] for r in rows]
    for clip, row in zip(report["per_clip"], rows, strict=True):
        assert clip["color"] == clip["shape"] == 1.0 and clip["mean_accuracy"] > 0.9, clip
        # each detected object's measured half-extent, as a fraction of the frame height
        assert all(d["present"] == 1.0 and d["persistent"] for d in clip["detected"])
        scales = sorted(d["scale"] for d in clip["detected"])
        assert scales == pytest.approx(sorted(SIZES[o["size"]] for o in row["objects"]), rel=0.15)


def test_an_attribute_no_prompt_object_asks_for_is_none_in_the_clip_row(micro_world, tmp_path):
    video = json.loads((micro_world / "clips.jsonl").read_text().splitlines()[0])["video"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"video": video, "caption": "a purple triangle"}) + "\n")
    (clip,) = evaluate_folder(micro_world, prompts, progress=False)["per_clip"]
    assert clip["size"] is None and clip["motion"] is None  # not NaN: the report is valid JSON
    assert clip["count"] in (0.0, 1.0) and clip["color"] in (0.0, 1.0)
    json.loads(json.dumps(clip, allow_nan=False))


def test_prompt_rows_may_say_prompt_and_bring_their_own_objects(tmp_path):
    given = [{"color": "blue", "shape": "square", "size": "small", "motion": "still"}]
    rows = tmp_path / "p.jsonl"
    rows.write_text(
        json.dumps({"prompt": "a red circle moving left"})
        + "\n"
        + json.dumps({"caption": "a red circle moving left", "objects": given})
        + "\n"
    )
    parsed, recorded = load_prompts(rows)
    assert parsed["caption"] == "a red circle moving left"
    assert [(o["color"], o["shape"], o["motion"]) for o in parsed["objects"]] == [("red", "circle", "left")]
    assert recorded["objects"] == given  # the recorded attributes, not the caption's
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(S2DitError, match=rf"^{empty}: no prompts$"):
        load_prompts(empty)


def test_a_prompt_naming_only_the_motion_family_accepts_any_member():
    from s2dit.data.micro.metrics import _motion_matches

    assert _motion_matches("diagonal", "diagonal_up_left") and _motion_matches("bounce", "bounce_vertical")
    assert not _motion_matches("diagonal", "left") and not _motion_matches("bounce", "diagonal_up_left")
    assert _motion_matches("diagonal_up_left", "diagonal_up_left")
    assert not _motion_matches("diagonal_up_left", "diagonal_down_left") and not _motion_matches("left", None)


def test_nothing_scored_scores_zero_not_nan():
    from s2dit.data.micro.metrics import mean_accuracy, summarize

    assert summarize([])["pass_rate"] == 0.0 and summarize([])["mean_accuracy"] == 0.0
    assert mean_accuracy({"color": None, "shape": None}) == 0.0


def test_the_pass_rate_is_also_given_per_number_of_objects_asked():
    from s2dit.data.micro.metrics import failed_clip, format_by_count, summarize

    one, two, three = ([{"color": "red", "shape": "circle"}] * n for n in (1, 2, 3))
    results = [failed_clip(one), {**failed_clip(one), "passed": 1.0}, failed_clip(three)]
    results += [{**failed_clip(two), "passed": 1.0}]
    found = summarize(results)
    assert found["pass_rate_by_count"] == {"1": 0.5, "2": 1.0, "3": 0.0} and found["pass_rate"] == 0.5
    assert format_by_count(found["pass_rate_by_count"]) == "0.50/1.00/0.00"
    assert summarize([])["pass_rate_by_count"] == {} and format_by_count({}) == "-"


def test_objects_of_one_colour_are_paired_by_their_other_attributes():
    from s2dit.data.micro.metrics import match_objects

    def seen(shape, motion, persistent=True, size="small"):
        return {"color": "red", "shape": shape, "size": size, "motion": motion, "persistent": persistent}

    asked = [
        {"color": "red", "shape": "circle", "motion": "left"},
        {"color": "red", "shape": "square", "motion": "still"},
    ]
    # Listed in the other order: the pairing follows shape and motion, not the order of detection.
    assert match_objects(asked, [seen("square", "still"), seen("circle", "left")]) == [1, 0]
    # Each agreeing attribute counts: the circle that also moves left wins over the one that only is a circle.
    one = [{"color": "red", "shape": "circle", "motion": "left"}]
    assert match_objects(one, [seen("circle", "up"), seen("circle", "left")]) == [1]
    assert match_objects(
        [{"color": "red", "size": "large"}], [seen("circle", "up"), seen("circle", "up", size="large")]
    ) == [1]
    # All else alike, the object that is still there at the end is the one paired.
    assert match_objects([{"color": "red"}], [seen("circle", "left", False), seen("circle", "left")]) == [1]
    # Another colour is never paired, and nothing detected pairs nothing.
    assert match_objects([{"color": "blue"}], [seen("circle", "left")]) == [None]
    assert match_objects(one, []) == [None]


@pytest.mark.parametrize("frames, seen, counted", [(9, 4, False), (9, 5, True), (8, 4, True), (8, 3, False)])
def test_an_object_counts_when_seen_in_at_least_half_the_frames(frames, seen, counted):
    one = _scene_frames([("circle", "red", (30, 30))])[:frames]
    two = _scene_frames([("circle", "red", (30, 30)), ("square", "blue", (90, 60))])[:frames]
    # The blue square shows for the first `seen` frames only (a blob that comes and goes, as samples have).
    clip = np.concatenate([two[:seen], one[seen:]])
    r = score_clip(clip, [{"color": "red", "shape": "circle"}])
    assert [d["color"] for d in r["detected"]] == (["red", "blue"] if counted else ["red"])
    assert r["count"] == float(not counted) and r["passed"] == float(not counted)


def test_hue_saturation_and_value_match_colorsys():
    from s2dit.data.micro.metrics import _hue_sat_val

    rgb = np.random.default_rng(0).integers(0, 256, (2000, 3), dtype=np.uint8)
    rgb = rgb[rgb.max(1) != rgb.min(1)]  # grey has no hue
    hue, sat, val = _hue_sat_val(rgb)
    ref = np.array([colorsys.rgb_to_hsv(*(c / 255 for c in p)) for p in rgb.tolist()])
    gap = np.abs(hue - 360 * ref[:, 0])
    assert np.minimum(gap, 360 - gap).max() < 1e-3
    assert np.abs(sat - ref[:, 1]).max() < 1e-5 and np.abs(val - ref[:, 2]).max() < 1e-5


def test_segmentation_thresholds_and_background_label():
    from s2dit.data.micro.metrics import segment_colors

    # saturation exactly 0.45 (delta 90 of max 200) is coloured, 89 of 200 is not; value 76 (of 0.3·255 =
    # 76.5, rounded) is coloured, 75 is not; white and grey are background
    pixels = [(200, 110, 110), (200, 111, 111), (76, 0, 0), (75, 0, 0), (255, 255, 255), (128, 128, 128)]
    labels = segment_colors(np.array(pixels, np.uint8)[None, None])
    assert labels.dtype == np.int8
    red = list(COLORS).index("red")
    assert labels[0, 0].tolist() == [red, -1, red, -1, -1, -1]


def test_specks_are_not_objects_and_a_jump_across_the_frame_starts_another_track():
    # at the default 256x144 the smallest object is max(8, 4e-4·H·W) = 15 pixels: a 3x4 speck (12 pixels,
    # which survives the 3x3 opening) is not an object
    frames = np.full((4, 144, 256, 3), 255, np.uint8)
    frames[:, 20:23, 20:24] = COLORS["red"]
    frames[:, 60:72, 60:72] = COLORS["blue"]
    tracks = track_objects(frames)
    assert [t.color for t in tracks] == ["blue"]
    # a red square that is at the left for 4 frames and at the right for 4 (a jump of 190 pixels, more
    # than 0.4 of the width) is two tracks, not one object moving right
    clip = np.full((8, 144, 256, 3), 255, np.uint8)
    clip[:4, 60:72, 20:32] = COLORS["red"]
    clip[4:, 60:72, 210:222] = COLORS["red"]
    assert [t.present.tolist() for t in track_objects(clip)] == [
        [True] * 4 + [False] * 4,
        [False] * 4 + [True] * 4,
    ]


def test_a_tracked_centre_is_the_rendered_centre():
    # the renderer's centre is the area centroid in pixel-centre coordinates; the tracker's, from a
    # thresholded mask, agrees to a fraction of a pixel (a half-pixel convention slip is off by 0.5 or 1)
    frames = _scene_frames([("circle", "red", (30.0, 40.0)), ("square", "blue", (90.25, 60.5))])
    (red,), (blue,) = track_objects(frames[:, :, :64]), track_objects(frames[:, :, 64:])
    assert np.abs(red.centers - [30.0, 40.0]).max() < 0.3
    assert np.abs(blue.centers - [90.25 - 64, 60.5]).max() < 0.3


def test_flicker_of_clips_too_short_to_change():
    assert temporal_flicker(np.zeros((1, 4, 4, 3), np.uint8)) == 1.0
    two = np.zeros((2, 4, 4, 3), np.uint8)
    two[1] = 51
    assert temporal_flicker(two) == pytest.approx(0.8)


def test_pairing_follows_shape_alone_and_a_motion_family():
    from s2dit.data.micro.metrics import match_objects

    def seen(shape, motion):
        return {"color": "red", "shape": shape, "size": "small", "motion": motion, "persistent": True}

    asked = [{"color": "red", "shape": "circle"}, {"color": "red", "shape": "square"}]
    assert match_objects(asked, [seen("square", "left"), seen("circle", "left")]) == [1, 0]
    family = [{"color": "red", "motion": "diagonal"}]
    assert match_objects(family, [seen("circle", "left"), seen("circle", "diagonal_up_left")]) == [1]


def test_a_tracks_shape_is_the_area_weighted_vote_of_its_frames():
    track = ObjectTrack(
        "red", np.array([300.0, 100.0, 100.0, 0.0]), np.zeros((4, 2)), ["circle", "square", "square", None]
    )
    assert track.shape_vote() == "circle"  # 300 pixels of circle outvote 200 of square
    track.areas[1:3] = 200.0
    assert track.shape_vote() == "square"
    assert ObjectTrack("red", np.zeros(2), np.zeros((2, 2)), [None, None]).shape_vote() is None
