import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s2dit.config import VideoSpec
from s2dit.data.micro.captions import parse_caption, write_caption
from s2dit.data.micro.scene import SHAPE_EXTENTS, clip_rng, sample_scene, shape_radius
from s2dit.data.micro.vocab import BACKGROUNDS, COLORS, MOTION_FAMILIES, MOTIONS, SHAPES, SIZES, motion_family
from s2dit.data.micro.writer import MicroWorldConfig, make_clip, read_index, write_micro_world
from s2dit.errors import ConfigError, S2DitError
from s2dit.videoio import read_video


def test_same_seed_same_clip_different_seed_different_clip():
    cfg = MicroWorldConfig(seed=5)
    frames_a, row_a = make_clip(cfg, 7)
    frames_b, row_b = make_clip(cfg, 7)
    assert np.array_equal(frames_a, frames_b) and row_a == row_b
    frames_c, row_c = make_clip(MicroWorldConfig(seed=6), 7)
    assert not np.array_equal(frames_a, frames_c) and row_a["caption"] != row_c["caption"]
    frames_d, _ = make_clip(cfg, 8)
    assert not np.array_equal(frames_a, frames_d)


def test_written_worlds_are_identical_for_one_seed(tmp_path):
    spec = VideoSpec(width=64, height=48, frames=9, fps=8)
    a, b = tmp_path / "a", tmp_path / "b"
    write_micro_world(a, 6, MicroWorldConfig(video=spec, seed=1), workers=1, progress=False)
    write_micro_world(b, 6, MicroWorldConfig(video=spec, seed=1), workers=2, progress=False)
    assert read_index(a) == read_index(b)
    for row in read_index(a):
        assert np.array_equal(read_video(a / row["video"])[0], read_video(b / row["video"])[0])


def _color_centroid(frame: np.ndarray, rgb, center, reach: float) -> np.ndarray:
    """Centroid (x, y) of pixels close to ``rgb`` within ``reach`` px of ``center``, weighted by closeness
    (anti-aliased edges count partly). Objects are kept apart, so the window holds only this one."""
    dist = np.abs(frame.astype(np.float32) - np.asarray(rgb, np.float32)).max(-1)
    weight = np.clip(1.0 - dist / 90.0, 0.0, 1.0)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]] + 0.5
    weight[np.hypot(xs - center[0], ys - center[1]) > reach] = 0.0
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def test_ground_truth_centres_match_the_pixels_of_the_mp4(tmp_path):
    """On plain backgrounds, each object's colour centroid in the decoded mp4 is within 1 px of its
    recorded centre at the first and last frame."""
    cfg = MicroWorldConfig(seed=11)
    checked = 0
    for i in range(60):
        frames, row = make_clip(cfg, i)
        if BACKGROUNDS[row["background"]][0] != "plain":
            continue
        path = tmp_path / f"{i}.mp4"
        from s2dit.videoio import write_video

        write_video(path, frames, cfg.video.fps, crf=cfg.crf)
        decoded, _ = read_video(path)
        assert decoded.shape == frames.shape
        for obj in row["objects"]:
            for f in (0, -1):
                center = np.array(obj["centers"][f])
                reach = shape_radius(obj["shape"]) * obj["scales"][f] + 2
                err = _color_centroid(decoded[f], obj["rgb"], center, reach) - center
                assert np.abs(err).max() <= 1.0, (i, obj["shape"], obj["color"], f, err)
                checked += 1
    assert checked >= 20


def test_objects_stay_inside_the_frame_and_apart():
    spec = VideoSpec()
    for i in range(200):
        scene = sample_scene(clip_rng(0, i), spec)
        assert 1 <= len(scene.objects) <= 3
        assert len({o.color for o in scene.objects}) == len(scene.objects)
        for o in scene.objects:
            left, right, up, down = (np.asarray(SHAPE_EXTENTS[o.shape]) * o.scales[:, None]).T
            assert np.all(o.centers[:, 0] - left >= 0) and np.all(o.centers[:, 0] + right <= spec.width)
            assert np.all(o.centers[:, 1] - up >= 0) and np.all(o.centers[:, 1] + down <= spec.height)


def test_vocabulary_is_covered():
    seen = collections.defaultdict(set)
    for i in range(400):
        scene = sample_scene(clip_rng(1, i), VideoSpec())
        seen["background"].add(scene.background)
        seen["count"].add(len(scene.objects))
        for o in scene.objects:
            seen["shape"].add(o.shape)
            seen["color"].add(o.color)
            seen["size"].add(o.size)
            seen["motion"].add(o.motion)
    assert seen["shape"] == set(SHAPES) and len(SHAPES) >= 4
    assert seen["color"] == set(COLORS) and len(COLORS) >= 8
    assert seen["size"] == set(SIZES)
    assert seen["motion"] == set(MOTIONS)
    assert (
        {motion_family(m) for m in MOTIONS}
        == set(MOTION_FAMILIES)
        == {"left", "right", "up", "down", "diagonal", "bounce", "grow", "shrink", "still"}
    )
    assert seen["background"] == set(BACKGROUNDS) and len(BACKGROUNDS) >= 4
    assert {kind for kind, *_ in BACKGROUNDS.values()} >= {"plain", "vertical", "horizontal"}
    assert seen["count"] == {1, 2, 3}


def test_every_caption_names_each_objects_color_shape_size_and_motion():
    templates, words = set(), set()
    for i in range(400):
        rng = clip_rng(2, i)
        scene = sample_scene(rng, VideoSpec())
        caption = write_caption(rng, scene)
        parsed = parse_caption(caption)
        asked = [
            {"color": o.color, "shape": o.shape, "size": o.size, "motion": o.motion} for o in scene.objects
        ]
        assert parsed["objects"] == asked, caption
        assert parsed["background"] == scene.background, caption
        templates.add(caption.split()[0])
        words.update(caption.lower().replace(",", " ").replace(".", " ").split())
    assert len(templates) >= 4  # several sentence templates
    assert {"ball", "box", "rhombus", "big", "tiny", "rises", "falls"} <= words  # synonyms are used


def test_free_form_prompts_parse_by_keywords():
    parsed = parse_caption("A red ball moving left and a blue box bouncing up and down; green square grows")
    assert [(o["color"], o["shape"], o["motion"]) for o in parsed["objects"]] == [
        ("red", "circle", "left"),
        ("blue", "square", "bounce_vertical"),
        ("green", "square", "grow"),
    ]
    assert parse_caption("nothing here") == {"background": None, "objects": [], "unknown": ["nothing"]}


def test_portrait_and_small_sizes():
    for spec in (
        VideoSpec(width=144, height=256),
        VideoSpec(width=64, height=48, frames=5),
        VideoSpec(frames=1),
    ):
        frames, row = make_clip(MicroWorldConfig(video=spec), 0)
        assert frames.shape == (spec.frames, spec.height, spec.width, 3) and frames.dtype == np.uint8
        assert len(row["objects"][0]["centers"]) == spec.frames


def test_resume_repairs_torn_rows_and_missing_clips(tmp_path):
    cfg = MicroWorldConfig(video=VideoSpec(width=64, height=48, frames=9, fps=8))
    write_micro_world(tmp_path, 8, cfg, workers=1, progress=False)
    index = tmp_path / "clips.jsonl"
    first = read_index(tmp_path)
    (tmp_path / first[3]["video"]).unlink()  # a clip lost
    with open(index, "a") as f:
        f.write('{"id": 99, "vid')  # a row torn by a crash
    (tmp_path / "clips" / ".tmp-000005.mp4.abc.mp4").write_bytes(b"partial")  # a half-written clip
    summary = write_micro_world(tmp_path, 8, cfg, workers=1, progress=False)
    assert summary["made"] == 1 and summary["total"] == 8
    assert read_index(tmp_path) == first
    assert not list((tmp_path / "clips").glob(".tmp-*"))


def test_rerun_with_other_settings_is_refused(tmp_path):
    spec = VideoSpec(width=64, height=48, frames=5)
    write_micro_world(tmp_path, 2, MicroWorldConfig(video=spec), workers=1, progress=False)
    with pytest.raises(S2DitError, match=r"video\.fps: 16\.0 -> 8\.0"):
        write_micro_world(tmp_path, 2, MicroWorldConfig(video=VideoSpec(64, 48, 5, 8.0)), progress=False)


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_n_valid_clips(tmp_path):
    n = 400
    out = tmp_path / "world"
    cmd = [
        sys.executable,
        "-m",
        "s2dit.cli",
        "data",
        "micro",
        "--out",
        str(out),
        "--n",
        str(n),
        "--size",
        "64x48",
        "--frames",
        "9",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    index = out / "clips.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if index.exists() and len(index.read_text().splitlines()) >= 20:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the CLI and its worker processes
    proc.wait()
    rows = [json.loads(line) for line in index.read_text().splitlines() if line.endswith("}")]
    assert 20 <= len(rows) < n, "the run was not interrupted mid-way"
    for row in rows:  # every recorded clip is complete
        assert read_video(out / row["video"])[0].shape == (9, 48, 64, 3)

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == list(range(n))
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"{i:06d}.mp4" for i in range(n)]
    for row in rows:
        assert read_video(out / row["video"])[0].shape == (9, 48, 64, 3)
    assert rows[17] == make_clip(MicroWorldConfig(video=VideoSpec(64, 48, 9, 16.0)), 17)[1]


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid``, from /proc (psutil may not be installed)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (now init) has not reaped it yet


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
    out = tmp_path / "world"
    cmd = [sys.executable, "-m", "s2dit.cli", "data", "micro", "--out", str(out), "--n", "2000"]
    cmd += ["--size", "64x48", "--frames", "9", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (len(workers) >= 2 and list((out / "clips").glob("*.mp4"))):
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2 and proc.poll() is None, "the run did not get going"
        proc.kill()  # SIGKILL the parent alone: nothing of it runs to tell the workers
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    finally:
        proc.kill()
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)


def test_a_smaller_n_than_the_folder_holds_is_refused(tmp_path):
    cfg = MicroWorldConfig(video=VideoSpec(64, 48, 5, 8.0))
    write_micro_world(tmp_path, 3, cfg, workers=1, progress=False)
    with pytest.raises(S2DitError, match="already holds clips up to id 2: use --n 3"):
        write_micro_world(tmp_path, 2, cfg, workers=1, progress=False)


def test_a_folder_without_clips_accepts_new_settings(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 5\n")  # a first run that failed before any clip
    summary = write_micro_world(
        tmp_path, 1, MicroWorldConfig(video=VideoSpec(64, 48, 5, 8.0)), progress=False
    )
    assert summary["made"] == 1


def test_the_object_count_is_honoured_in_small_frames():
    spec = VideoSpec(width=64, height=48, frames=9)
    for i in range(40):
        assert len(sample_scene(clip_rng(0, i), spec, 3, 3).objects) == 3


def test_written_files_get_the_usual_permissions(tmp_path):
    write_micro_world(tmp_path, 1, MicroWorldConfig(video=VideoSpec(64, 48, 5, 8.0)), progress=False)
    umask = os.umask(0)
    os.umask(umask)
    for p in (tmp_path / "config.yaml", tmp_path / "clips.jsonl", tmp_path / "clips" / "000000.mp4"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_motion_without_a_direction_parses_to_its_family():
    assert parse_caption("a red ball bounces")["objects"][0]["motion"] == "bounce"
    assert parse_caption("a blue box moves diagonally")["objects"][0]["motion"] == "diagonal"


def test_compositional_split_keeps_heldout_triples_out_of_training():
    """A "train" world never draws a held-out (color, shape, motion family) triple, a "heldout" world draws
    only those, and every pair of attributes still occurs in training."""
    from s2dit.data.micro.vocab import heldout_family, is_heldout_combo

    held = {(c, s, heldout_family(c, s)) for c in COLORS for s in SHAPES}
    assert len(held) == 32
    everything = {(c, s, f) for c in COLORS for s in SHAPES for f in MOTION_FAMILIES}
    train = everything - held
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert {(t[i], t[j]) for t in train} == {(t[i], t[j]) for t in everything}
    seen = {"train": set(), "heldout": set()}
    for combos in seen:
        for i in range(150):
            for o in sample_scene(clip_rng(3, i), VideoSpec(), combos=combos).objects:
                assert is_heldout_combo(o.color, o.shape, o.motion) == (combos == "heldout")
                seen[combos].add((o.color, o.shape))
    assert len(seen["heldout"]) > 20  # the held-out world covers most (color, shape) pairs
    with pytest.raises(S2DitError, match="combos"):
        sample_scene(clip_rng(0, 0), VideoSpec(), combos="some")
    with pytest.raises(ConfigError, match="combos"):
        MicroWorldConfig(combos="some")
