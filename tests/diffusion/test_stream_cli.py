"""``s2dit stream`` and ``s2dit bench stream`` as a user runs them: real processes, real mp4 files."""

import json
import os
import signal
import subprocess
import sys
import time

from s2dit.videoio import probe_video, read_video

BIN = os.path.dirname(sys.executable)


def stream_cmd(out, *extra):
    return [
        f"{BIN}/s2dit",
        "stream",
        "a red ball",
        "--random-weights",
        "--size",
        "64x48",
        "-o",
        str(out),
        *extra,
    ]


def test_random_weights_stream_warns_and_writes_every_frame(tmp_path):
    out = tmp_path / "s.mp4"
    result = subprocess.run(stream_cmd(out, "--seconds", "2", "--steps", "2"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "random weights" in result.stdout
    frames, fps = read_video(out)
    assert frames.shape == (32, 48, 64, 3) and fps == 16.0


def test_an_interrupted_stream_leaves_a_playable_mp4(tmp_path):
    out = tmp_path / "killed.mp4"
    proc = subprocess.Popen(
        stream_cmd(out, "--seconds", "600"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until two chunks (9 + 12 frames) are on disk
            time.sleep(0.2)
            try:
                if out.exists() and probe_video(out).frames >= 21:
                    break
            except Exception:  # the file is still being started
                continue
        else:
            raise AssertionError("the stream wrote nothing in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    frames, _ = read_video(out)
    assert len(frames) >= 21 and frames.shape[1:] == (48, 64, 3)


def test_bad_stream_requests_are_one_line_errors(tmp_path):
    cases = [
        (["--seconds", "2", "--then", "x"], "give one --at per --then"),
        (["--seconds", "2", "--then", "x", "--at", "5"], "within [0, --seconds)"),
        (["--seconds", "2", "--dtype", "int8"], "--dtype 'int8'"),
    ]
    for extra, message in cases:
        result = subprocess.run(stream_cmd(tmp_path / "x.mp4", *extra), capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    both = [*stream_cmd(tmp_path / "x.mp4"), "--checkpoint", str(tmp_path)]
    result = subprocess.run(both, capture_output=True, text=True)
    assert result.returncode == 2 and "--checkpoint PATH or --random-weights, not both" in result.stderr


def test_bench_stream_writes_the_table_and_ratios(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [f"{BIN}/s2dit", "bench", "stream", "--size", "64x48", "--chunks", "12", "--steps", "2"]
    cmd += ["--dtype", "float32"]  # float32 eager is its own baseline: no extra row
    result = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["schema"] == "s2dit.stream_bench/1"
    names = [r["model"] for r in report["results"]]
    assert names == ["s2dit", "all-F", "all-F, full history"]
    ours, full = report["results"][0], report["results"][2]
    assert set(ours["chunk_latency_s"]) == {"1", "10", "12"} and list(full["chunk_latency_s"]) == ["12"]
    assert full["window_chunks"] == 11 and report["results"][1]["window_chunks"] == 6
    assert full["state_mb"] > report["results"][1]["state_mb"]  # the whole history costs memory
    assert set(report["ratios"]) == {"all-F", "all-F, full history"}
    assert "end_to_end_at_chunk_12" in report["ratios"]["all-F"]
    assert "s2dit vs all-F" in result.stdout


def test_bench_stream_times_float32_eager_beside_a_bf16_mode(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [f"{BIN}/s2dit", "bench", "stream", "--size", "64x48", "--chunks", "4", "--steps", "1"]
    cmd += ["--dtype", "bfloat16", "--no-full-history", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dtype"] == "bfloat16"
    assert [r["model"] for r in report["results"]] == ["s2dit", "all-F", "s2dit, float32 eager"]
    ours, base = report["results"][0], report["results"][2]
    assert ours["state_mb"] < base["state_mb"]  # bf16 K/V caches and conv tails: the baseline ran float32
    ratio = report["ratios"]["s2dit, float32 eager"]
    assert ratio["end_to_end_fps"] == ours["end_to_end_fps"] / base["end_to_end_fps"]
    assert "s2dit bfloat16 vs s2dit, float32 eager: end_to_end_fps" in result.stdout
