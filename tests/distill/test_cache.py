"""The teacher trajectory cache: the sampler's trajectories, resume, damage redone, rank split, refusals."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from s2dit.config import save_config
from s2dit.diffusion.pipeline import PipelineInfo
from s2dit.diffusion.sampling import Condition, sample
from s2dit.distill.cache import COMPLETE, CacheConfig, TrajectoryCache, build_cache, sample_path
from s2dit.errors import S2DitError
from s2dit.model.denoiser import DenoiserSpec, build_denoiser, load_denoiser, save_denoiser
from s2dit.model.wan import WanConfig

BIN = os.path.dirname(sys.executable)
PROMPTS = [
    "a small red circle moving left",
    "a big blue square",
    "a green triangle bounces",
    "",
    "a pink disc",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny random diffusers Wan teacher with MiniLM text, saved like a trained run's model/."""
    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    model = build_denoiser(
        DenoiserSpec(kind="wan", wan=WanConfig(layers=2, heads=2, head_dim=24, ffn_dim=96))
    )
    with torch.no_grad():
        for p in model.parameters():  # off the zero init, so guidance and prompts matter
            p.add_(0.05 * torch.randn_like(p))
    save_denoiser(model, folder)
    save_config(PipelineInfo(text_len=32, latent_shape=[16, 2, 4, 6], shift=3.0), folder / "pipeline.yaml")
    return folder


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(p or "an empty field" for p in PROMPTS) + "\n")
    return path


def config(teacher, prompts, out, **kw) -> CacheConfig:
    return CacheConfig(
        teacher=str(teacher), prompts=str(prompts), out=str(out), steps=4, cfg=3.0, batch=2, **kw
    )


def test_cache_holds_the_teachers_guided_euler_trajectories(teacher, prompts, tmp_path):
    out = tmp_path / "cache"
    done = build_cache(config(teacher, prompts, out, seed=10), progress=False)
    assert done["complete"] and done["made"] == 5 and (out / COMPLETE).is_file()
    meta = json.loads((out / "cache.json").read_text())
    assert meta["cfg"] == 3.0 and meta["cfg_form"] == "u + g*(c - u)" and meta["shift"] == 3.0
    assert meta["steps"] == 4 and meta["kept_levels"] == [0, 1, 2, 3, 4] and meta["samples"] == 5
    cache = TrajectoryCache(out)
    item = cache[1]
    assert item["states"].shape == (5, 16, 2, 4, 6) and item["prompt"] == "a big blue square"
    assert item["sigmas"][0] == 1.0 and item["sigmas"][-1] == 0.0
    # the first state is the seeded noise; the last is what the Euler sampler gives with the same CFG
    noise = torch.randn((16, 2, 4, 6), generator=torch.Generator().manual_seed(11))
    assert torch.equal(item["states"][0], noise)
    from s2dit.latent.text import load_text_encoder, pad_text

    enc = load_text_encoder("minilm", 32)
    tokens, mask = enc.encode(["a big blue square"])
    assert torch.allclose(item["text"], tokens[0][mask[0]])
    nt, nm = enc.encode([""])
    text, tmask = pad_text([tokens[0][mask[0]]], 32)
    neg, nmask = pad_text([nt[0][nm[0]]], 32)
    from s2dit.diffusion.sampling import guided

    model = load_denoiser(teacher)
    with torch.no_grad():
        expected = sample(
            guided(model, Condition(text, tmask), Condition(neg, nmask), 3.0), noise[None], 4, 3.0, "euler"
        )
    assert torch.allclose(item["states"][-1], expected[0], atol=1e-5)


def test_keep_k_levels(teacher, prompts, tmp_path):
    build_cache(config(teacher, prompts, tmp_path / "k", keep="3"), progress=False)
    item = TrajectoryCache(tmp_path / "k")[0]
    assert item["states"].shape[0] == 3 and item["sigmas"][0] == 1.0 and item["sigmas"][-1] == 0.0
    assert json.loads((tmp_path / "k" / "cache.json").read_text())["kept_levels"] == [0, 2, 4]


def test_resume_redoes_missing_and_damaged_samples_only(teacher, prompts, tmp_path):
    out = tmp_path / "cache"
    build_cache(config(teacher, prompts, out), progress=False)
    # copies: safetensors maps files into memory, and the test tears one of them below
    reference = {i: {k: v.clone() for k, v in load_file(sample_path(out, i)).items()} for i in range(5)}
    sample_path(out, 1).unlink()  # lost
    data = sample_path(out, 3).read_bytes()
    sample_path(out, 3).write_bytes(data[: len(data) // 2])  # a torn file
    untouched = sample_path(out, 0).stat().st_mtime_ns
    done = build_cache(config(teacher, prompts, out), progress=False)
    assert done["made"] == 2 and sample_path(out, 0).stat().st_mtime_ns == untouched
    for i in range(5):  # the same samples (up to the rounding of a different batch composition)
        again = load_file(sample_path(out, i))
        assert torch.equal(again["text"], reference[i]["text"])
        assert torch.allclose(again["states"], reference[i]["states"], atol=1e-5)


def test_ranks_split_the_samples_and_the_last_marks_complete(teacher, prompts, tmp_path, monkeypatch):
    out = tmp_path / "split"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    first = build_cache(config(teacher, prompts, out), progress=False)
    assert first["made"] == 2 and not first["complete"] and not (out / COMPLETE).exists()
    assert sorted(p.name for p in out.glob("sample-*")) == [
        "sample-000001.safetensors",
        "sample-000003.safetensors",
    ]
    monkeypatch.setenv("RANK", "0")
    second = build_cache(config(teacher, prompts, out), progress=False)
    assert second["made"] == 3 and second["complete"]
    whole = tmp_path / "whole"
    monkeypatch.setenv("WORLD_SIZE", "1")
    build_cache(config(teacher, prompts, whole), progress=False)
    for i in range(5):
        assert torch.equal(
            load_file(sample_path(out, i))["states"], load_file(sample_path(whole, i))["states"]
        )


def test_refusals(teacher, prompts, tmp_path):
    out = tmp_path / "cache"
    build_cache(config(teacher, prompts, out), progress=False)
    with pytest.raises(S2DitError, match=r"other settings .*cfg"):
        build_cache(dataclass_replace(config(teacher, prompts, out), cfg=5.0), progress=False)
    with pytest.raises(S2DitError, match="--keep"):
        config(teacher, prompts, out, keep="9")
    with pytest.raises(S2DitError, match="not a complete trajectory cache"):
        TrajectoryCache(tmp_path)
    cmd = [f"{BIN}/s2dit", "distill", "cache", "--teacher", str(tmp_path / "none"), "--prompts", str(prompts)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and "does not exist" in result.stderr


def dataclass_replace(base, **kw):
    import dataclasses

    return dataclasses.replace(base, **kw)


def test_a_latent_folder_gives_its_captions_and_stored_embeddings(teacher, latents, micro_world, tmp_path):
    """No text encoder needed: the same trajectories as from the captions themselves."""
    from_folder = tmp_path / "from_folder"
    build_cache(
        CacheConfig(teacher=str(teacher), prompts=str(latents), out=str(from_folder), steps=3, count=3),
        progress=False,
    )
    from_text = tmp_path / "from_text"
    build_cache(
        CacheConfig(
            teacher=str(teacher),
            prompts=str(micro_world / "clips.jsonl"),
            out=str(from_text),
            steps=3,
            count=3,
        ),
        progress=False,
    )
    a, b = TrajectoryCache(from_folder), TrajectoryCache(from_text)
    assert len(a) == len(b) == 3
    for i in range(3):
        assert a[i]["prompt"] == b[i]["prompt"]
        assert torch.allclose(a[i]["text"], b[i]["text"], atol=1e-5)
        assert torch.allclose(a[i]["states"], b[i]["states"], atol=1e-4)
    with pytest.raises(S2DitError, match="only"):
        build_cache(
            CacheConfig(teacher=str(teacher), prompts=str(latents), out=str(tmp_path / "c"), count=10_000),
            progress=False,
        )
