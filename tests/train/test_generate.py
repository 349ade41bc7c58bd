import os
import subprocess
import sys

import numpy as np
import pytest
from train_fixtures import tiny_config

from s2dit.diffusion.pipeline import GenerateRequest, generate, read_pipeline
from s2dit.errors import S2DitError
from s2dit.train.trainer import train
from s2dit.videoio import read_video

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def run(latents, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "run"
    train(tiny_config(latents, out, steps=2), progress=False)
    return out


def test_the_run_records_what_generation_needs(run, latents):
    info = read_pipeline(run)
    assert info.latent_shape == [16, 3, 6, 8] and info.text == "minilm" and info.text_len == 32
    assert info.vae and os.path.isdir(info.vae) and info.fps == 8.0


def test_generate_writes_a_video_and_a_contact_sheet(run, tmp_path):
    out = tmp_path / "clip.mp4"
    cmd = [
        f"{BIN}/s2dit",
        "generate",
        "a small red circle moving left",
        "--checkpoint",
        str(run),
        "--steps",
        "2",
        "--cfg",
        "3",
        "-o",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    frames, _ = read_video(out)
    assert frames.shape == (9, 48, 64, 3)
    assert out.with_suffix(".png").stat().st_size > 0


def test_generation_is_seeded(run, tmp_path):
    def frames(seed, name):
        generate(
            GenerateRequest("a blue square", str(run), str(tmp_path / name), steps=2, seed=seed),
            progress=False,
        )
        return read_video(tmp_path / name)[0]

    a, b, c = frames(1, "a.mp4"), frames(1, "b.mp4"), frames(2, "c.mp4")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_requests_are_clear_errors(run, tmp_path):
    with pytest.raises(S2DitError, match="sampler 'ddim'"):
        generate(GenerateRequest("a red circle", str(run), str(tmp_path / "x.mp4"), sampler="ddim"))
    with pytest.raises(S2DitError, match="prompt is empty"):
        generate(GenerateRequest("  ", str(run), str(tmp_path / "x.mp4")))
    with pytest.raises(S2DitError, match="not a denoiser folder"):
        generate(GenerateRequest("a red circle", str(tmp_path), str(tmp_path / "x.mp4"), vae=str(run)))


def test_stream_from_a_trained_run_with_a_prompt_switch(run, tmp_path):
    out = tmp_path / "stream.mp4"
    cmd = [f"{BIN}/s2dit", "stream", "a small red circle", "--checkpoint", str(run), "--seconds", "4"]
    cmd += ["--then", "a big blue square", "--at", "2", "--chunk", "1", "--steps", "2", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "first chunk" in result.stdout and "FPS end to end" in result.stdout
    frames, fps = read_video(out)
    assert frames.shape == (32, 48, 64, 3) and fps == 8.0  # 4 s at the run's 8 fps


def test_only_an_s2dit_can_stream(tmp_path):
    from train_fixtures import TINY_WAN

    from s2dit.diffusion.stream_pipeline import load_stream_model
    from s2dit.model.denoiser import DenoiserSpec, build_denoiser, save_denoiser

    save_denoiser(build_denoiser(DenoiserSpec(kind="wan", wan=TINY_WAN)), tmp_path / "wan")
    with pytest.raises(S2DitError, match="streaming needs an S2DiT"):
        load_stream_model(str(tmp_path / "wan"), vae=str(tmp_path))


def test_eval_model_scores_held_out_prompts_like_the_trainer(run, latents, tmp_path):
    import json

    import torch

    out = tmp_path / "eval"
    cmd = [
        f"{BIN}/s2dit",
        "eval",
        "model",
        "--checkpoint",
        str(run),
        "--latents",
        str(latents),
        "--out",
        str(out),
    ]
    cmd += ["--holdout", "4", "--prompts", "2", "--steps", "2", "--cfg", "3"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pass rate" in result.stdout
    assert torch.load(out / "latents.pt").shape == (2, 16, 3, 6, 8)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["clips"] == 2 and 0 <= scores["pass_rate"] <= 1 and 0 <= scores["mean_accuracy"] <= 1
    assert len((out / "prompts.jsonl").read_text().splitlines()) == 2
    # FPS: the decoded frames (4(T-1)+1 for T latent frames) over the sampling seconds of one video.
    assert scores["frames_per_second"] == pytest.approx(9 / scores["seconds_per_video"])
    assert "FPS" in result.stdout
    # The ceilings, on the same prompts: the source clips and their VAE reconstructions.
    assert "ground truth" in result.stdout and "VAE reconstruction" in result.stdout
    truth = json.loads((out / "ceilings" / "ground_truth" / "scores.json").read_text())
    recon = json.loads((out / "ceilings" / "vae_reconstruction" / "scores.json").read_text())
    assert truth["clips"] == recon["clips"] == 2
    # The source clips score well on their own prompts (64x48 is small: one may miss); the fixture's VAE is
    # untrained, so its reconstructions score far below them.
    assert truth["pass_rate"] >= 0.5 and truth["mean_accuracy"] > recon["mean_accuracy"] + 0.3


@pytest.mark.parametrize("sampler", ["unipc", "stream"])
def test_eval_model_in_bf16_follows_float32(run, latents, tmp_path, sampler):
    import torch

    from s2dit.eval.models import compare_models

    found = {}
    for dtype in (torch.float32, torch.bfloat16):
        out = tmp_path / str(dtype)
        kw = dict(holdout=4, prompts=2, steps=2, cfg=3.0, sampler=sampler, ceilings=False, dtype=dtype)
        (row,) = compare_models([run], latents, out, notice=pytest.fail, **kw)
        assert row["clips"] == 2
        found[dtype] = torch.load(out / "latents.pt")
    f32, bf16 = found[torch.float32], found[torch.bfloat16]
    # bf16 really computes (the samples change) and stays close to float32 (a matmul's bf16 rounding, 2^-8).
    assert not torch.equal(f32, bf16)
    assert (bf16 - f32).abs().max() < 0.1 * f32.abs().max()


def test_eval_model_from_a_noise_level_starts_at_the_held_out_clips(run, latents, tmp_path):
    """--start-sigma (SDEdit): from σ = 0.05 the samples stay by the prompts' own clips, far closer than
    samples from pure noise; bad values and a streamed model are one clear error each."""
    import torch

    from s2dit.errors import S2DitError
    from s2dit.eval.models import compare_models
    from s2dit.train.data import LatentBatches

    kw = dict(holdout=4, prompts=2, steps=4, cfg=3.0, ceilings=False, notice=pytest.fail)
    compare_models([run], latents, tmp_path / "near", start_sigma=0.05, sampler="euler", **kw)
    compare_models([run], latents, tmp_path / "far", sampler="euler", **kw)
    data = LatentBatches(str(latents), 64, 4, seed=0)
    clean = data.clips(data.holdout[:2])["latents"].float()
    near = (torch.load(tmp_path / "near" / "latents.pt") - clean).abs().mean()
    far = (torch.load(tmp_path / "far" / "latents.pt") - clean).abs().mean()
    assert near < 0.2 * far
    for bad, message in ((0.0, "must lie in"), (1.5, "must lie in")):
        with pytest.raises(S2DitError, match=f"^--start-sigma {bad:g} {message}"):
            compare_models([run], latents, tmp_path / "bad", start_sigma=bad, **kw)
    with pytest.raises(S2DitError, match=r"^--start-sigma below 1 needs --sampler unipc, euler or ancestral"):
        compare_models([run], latents, tmp_path / "bad", start_sigma=0.5, sampler="stream", **kw)
    with pytest.raises(S2DitError, match="leave --frames out"):
        compare_models([run], latents, tmp_path / "bad", start_sigma=0.5, frames=6, **kw)
