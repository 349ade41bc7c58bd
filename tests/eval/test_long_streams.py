"""Long streams and prompt switches scored window by window (s2dit.eval.long_streams).

The scoring is checked on constructed streams with known answers (ground-truth clips concatenated, a clip
going blank, a switched pair); the streaming wiring on a tiny random S2DiT: a switch changes the stream
from its chunk on and not before, and ``s2dit eval streams`` reports what the scoring gives.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from s2dit.config import VideoSpec
from s2dit.data.micro.metrics import score_clip
from s2dit.data.micro.render import render_scene
from s2dit.data.micro.scene import clip_rng, sample_scene
from s2dit.diffusion.pipeline import PipelineInfo
from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.errors import S2DitError
from s2dit.eval.long_streams import (
    drift,
    evaluate_streams,
    score_after_switch,
    score_windows,
    window_frames,
)
from s2dit.model.config import ModelConfig
from s2dit.model.denoiser import save_denoiser
from s2dit.model.transformer import S2DiT

SPEC = VideoSpec(width=128, height=80, frames=9, fps=4.0)


def _prompt(scene) -> list[dict]:
    return [{"color": o.color, "shape": o.shape, "size": o.size, "motion": o.motion} for o in scene.objects]


def _scenes(n: int) -> list:
    """``n`` ground-truth scenes whose clips pass their own prompts."""
    out, i = [], 0
    while len(out) < n:
        scene = sample_scene(clip_rng(11, i), SPEC)
        if score_clip(render_scene(scene), _prompt(scene))["passed"]:
            out.append(scene)
        i += 1
    return out


def _clips(n: int) -> list[tuple[np.ndarray, list[dict]]]:
    """``n`` ground-truth clips that pass their own prompts, with those prompts."""
    return [(render_scene(s), _prompt(s)) for s in _scenes(n)]


def test_window_frames_is_the_decoded_length():
    assert [window_frames(t) for t in (1, 3, 12)] == [1, 9, 45]


def test_each_window_of_a_repeated_clip_passes_and_nothing_drifts():
    (frames, prompt), (_, other) = _clips(2)
    stream = np.concatenate([frames] * 3)
    windows = score_windows(stream, prompt, 9)
    assert [w["passed"] for w in windows] == [1.0, 1.0, 1.0]
    assert [w["passed"] for w in score_windows(stream, other, 9)] == [0.0, 0.0, 0.0]
    found = drift([windows])
    assert found["window_pass_rates"] == [1.0, 1.0, 1.0] and found["first"] == found["last"] == 1.0
    assert found["drift"] == 0.0 and found["accuracy_drift"] == 0.0


def test_a_stream_that_goes_blank_drifts_down_by_the_share_of_prompts_it_loses():
    windows = []
    for k, scene in enumerate(_scenes(4)):
        frames = render_scene(scene)
        tail = render_scene(dataclasses.replace(scene, objects=[])) if k < 2 else frames  # the background
        windows.append(score_windows(np.concatenate([frames, tail]), _prompt(scene), 9))
    found = drift(windows)
    assert found["window_pass_rates"] == [1.0, 0.5]
    assert found["first"] == 1.0 and found["last"] == 0.5 and found["drift"] == -0.5
    first, last = found["window_mean_accuracy"]
    assert first > last and found["accuracy_drift"] == last - first


def test_a_tail_shorter_than_a_window_is_not_scored():
    (frames, prompt), *_ = _clips(1)
    stream = np.concatenate([frames, frames, np.zeros_like(frames[:4])])
    assert [w["passed"] for w in score_windows(stream, prompt, 9)] == [1.0, 1.0]


def test_the_frames_after_a_switch_are_scored_against_the_new_prompt():
    (a, prompt_a), (b, prompt_b) = _clips(2)
    assert not score_clip(b, prompt_a)["passed"] and not score_clip(a, prompt_b)["passed"]
    stream = np.concatenate([a, b])
    assert score_after_switch(stream, 9, prompt_b, 9)["passed"] == 1.0
    assert score_after_switch(stream, 9, prompt_a, 9)["passed"] == 0.0
    assert score_after_switch(stream, 0, prompt_b, 9)["passed"] == 0.0  # before the switch: the old prompt


def test_streams_too_short_to_score_are_refused():
    (frames, prompt), *_ = _clips(1)
    with pytest.raises(S2DitError, match="no whole window"):
        score_windows(frames[:5], prompt, 9)
    with pytest.raises(S2DitError, match="no whole window"):
        score_after_switch(frames, 4, prompt, 9)
    with pytest.raises(S2DitError, match="equally long"):
        drift([[{"passed": 1.0}], [{"passed": 1.0}, {"passed": 0.0}]])


# --- streaming, on a tiny random S2DiT ------------------------------------------------------------

TEXT_DIM = 384  # the shared latents fixture's MiniLM token states


def _model(seed: int = 0) -> S2DiT:
    torch.manual_seed(seed)
    model = S2DiT(ModelConfig(layout="LSSL", width=32, heads=2, ffn_dim=64, text_dim=TEXT_DIM)).eval()
    with torch.no_grad():  # off the zero init, so the prompt changes the output
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _conds(batch: int, seed: int) -> Condition:
    g = torch.Generator().manual_seed(seed)
    return Condition(torch.randn(batch, 5, TEXT_DIM, generator=g), torch.ones(batch, 5, dtype=torch.bool))


def test_a_switch_changes_the_stream_from_its_chunk_on_and_not_before():
    model, settings = _model(), StreamSettings(steps=2, chunk_frames=1, window_chunks=3, sink_chunks=1)
    plain = StreamSampler(model, _conds(2, 0), (6, 8), settings, seed=[0, 1]).take(4)
    switched = StreamSampler(model, _conds(2, 0), (6, 8), settings, seed=[0, 1]).take(4, (2, _conds(2, 1)))
    assert plain.shape == (2, 16, 4, 6, 8)
    torch.testing.assert_close(switched[:, :, :2], plain[:, :, :2], rtol=0, atol=0)
    assert (switched[:, :, 2:] - plain[:, :, 2:]).abs().amax() > 1e-3


def _streaming_checkpoint(root, latents):
    folder = root / "student"
    save_denoiser(_model(), folder)
    stream = {"steps": 2, "shift": 5.0, "chunk_frames": 1, "window_chunks": 3, "sink_chunks": 1}
    info = PipelineInfo(text_len=32, vae=str(latents_vae(latents)), latent_shape=[16, 3, 6, 8], fps=8.0)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({**info.__dict__, "stream": stream}))
    return folder


def latents_vae(latents) -> str:
    return yaml.safe_load((latents / "config.yaml").read_text())["vae"]


def test_eval_streams_scores_every_window_and_the_switch(tmp_path, latents):
    checkpoint = _streaming_checkpoint(tmp_path, latents)
    report = evaluate_streams(checkpoint, latents, tmp_path / "out", holdout=4, prompts=3, lengths=(1, 2))
    assert report["window_frames"] == 9 and report["prompts"] == 3
    one, two = report["lengths"][1], report["lengths"][2]
    assert (one["latent_frames"], one["windows"]) == (3, 1)
    assert (two["latent_frames"], two["windows"]) == (6, 2)  # 21 frames: two windows of 9, a tail of 3
    for r in (one, two):
        assert r["drift"] == r["last"] - r["first"] and all(0 <= p <= 1 for p in r["window_pass_rates"])
    # Same seeds, same prompts: the first window is the same whether the stream goes on or not.
    assert one["first"] == two["first"]
    switch = report["switch"]
    assert switch["chunk"] == 3 and switch["frame"] == 9  # the first frame the switched chunk makes
    assert switch["to_prompt"] == [1, 2, 0] and switch["fresh_start_pass_rate"] == one["first"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "length-2x.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["window_passed"]) == 2 for r in rows)
    assert json.loads((tmp_path / "out" / "streams.json").read_text()) == json.loads(json.dumps(report))


def test_eval_streams_refuses_what_cannot_stream(tmp_path, latents):
    with pytest.raises(S2DitError, match="does not exist"):
        evaluate_streams(tmp_path / "missing", latents, tmp_path / "out")
    checkpoint = _streaming_checkpoint(tmp_path, latents)
    with pytest.raises(S2DitError, match="--lengths"):
        evaluate_streams(checkpoint, latents, tmp_path / "out", lengths=(0,))
    with pytest.raises(S2DitError, match="at least 2 prompts"):
        evaluate_streams(checkpoint, latents, tmp_path / "out", holdout=4, prompts=1)


def test_eval_streams_cli_prints_the_tables_and_one_line_errors(tmp_path, latents):
    checkpoint = _streaming_checkpoint(tmp_path, latents)
    args = ["--checkpoint", str(checkpoint), "--latents", str(latents), "--out", str(tmp_path / "o")]
    cmd = [sys.executable, "-m", "s2dit.cli", "eval", "streams", *args, "--holdout", "4", "--prompts", "2"]
    done = subprocess.run([*cmd, "--lengths", "1", "--json", str(tmp_path / "r.json")], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert "drift" in done.stdout.decode() and "prompt switch" in done.stdout.decode()
    assert json.loads((tmp_path / "r.json").read_text())["lengths"]["1"]["windows"] == 1
    bad = subprocess.run([*cmd, "--lengths", "4,x"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --lengths '4,x': whole numbers separated by commas, e.g. 4,16"
    ]
