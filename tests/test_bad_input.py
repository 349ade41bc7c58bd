"""Damaged files and impossible values end in one error naming what is wrong, never a traceback.

The readers of :mod:`s2dit.files` on every kind of damage; the loaders built on them (denoisers, the tiny
autoencoder, pipeline.yaml, manifests) on damaged copies of real model folders; the CLI on the values a
parser lets through (NaN, infinities, bytes that are not UTF-8) and on a damaged checkpoint, end to end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from s2dit.config import from_dict
from s2dit.diffusion.pipeline import PipelineInfo, read_pipeline
from s2dit.errors import ConfigError, S2DitError
from s2dit.export.manifest import EntryPoint, Manifest, TensorSpec
from s2dit.files import load_safetensors, open_safetensors, read_json, read_yaml
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, load_tiny_ae, save_tiny_ae
from s2dit.model.denoiser import load_denoiser, save_denoiser
from s2dit.model.transformer import S2DiT
from s2dit.model.wan import WanConfig, WanDenoiser
from s2dit.shipped import WEIGHTS

TEACHER = str(WEIGHTS / "micro_teacher")

TINY = {"width": 32, "heads": 2, "ffn_dim": 64, "text_dim": 8, "layout": "LS"}


def cli(*args: str | bytes) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "s2dit.cli", *args],
        capture_output=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(
        {"empty": b"", "truncated": data[: len(data) // 3], "garbage": b"\x00not a file" * 9}[how]
    )


# --- the readers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_a_damaged_safetensors_file_is_one_error_naming_it(tmp_path, how):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(64, 64), "b": torch.arange(10)}, str(path))
    assert torch.equal(load_safetensors(path)["b"], torch.arange(10))
    with open_safetensors(path) as f:
        assert sorted(f.keys()) == ["a", "b"]
    damage(path, how)
    for read in (load_safetensors, lambda p: open_safetensors(p).__enter__()):
        with pytest.raises(S2DitError, match=r"w\.safetensors: cannot read the weights") as e:
            read(path)
        assert ("empty" in str(e.value)) == (how == "empty")
    with pytest.raises(S2DitError, match="not found"):
        load_safetensors(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [unclosed\n  :: x", "not a readable YAML file"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        ("just words", "expected a mapping at the top level, got str"),
        ("[" * 5000 + "]" * 5000, "not a readable YAML file"),  # nesting deeper than the parser goes
    ],
)
def test_a_yaml_file_that_is_not_a_mapping_is_one_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_yaml(path)


def test_yaml_reads_mappings_empty_files_and_refuses_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb: {c: x}\n")
    assert read_yaml(path) == {"a": 1, "b": {"c": "x"}}
    path.write_text("")
    assert read_yaml(path) == {}
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        read_yaml(path)


@pytest.mark.parametrize(
    ("text", "mapping", "message"),
    [
        ('{"a": ', True, "not a readable JSON file"),
        ("[1, 2]", True, "expected a JSON object at the top level, got list"),
        ('{"ms": NaN}', True, "NaN is not a JSON number"),
        ("[Infinity]", False, "Infinity is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, False, "not a readable JSON file"),
    ],
)
def test_a_json_file_with_damage_or_non_numbers_is_one_error(tmp_path, text, mapping, message):
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(S2DitError, match=message):
        read_json(path, mapping=mapping)


def test_json_reads_objects_and_lists(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"a": [1, 2.5]}')
    assert read_json(path) == {"a": [1, 2.5]}
    path.write_text("[1]")
    assert read_json(path, mapping=False) == [1]


# --- the loaders, on damaged copies of real folders --------------------------------------------------


@pytest.fixture(scope="module")
def s2dit_folder(tmp_path_factory) -> Path:
    from s2dit.model.config import ModelConfig

    folder = tmp_path_factory.mktemp("s2dit") / "model"
    save_denoiser(S2DiT(from_dict(ModelConfig, TINY)), folder)
    return folder


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wan") / "model"
    WanDenoiser.from_config(WanConfig(layers=1, heads=2, head_dim=8, ffn_dim=32, text_dim=8)).save(folder)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_a_denoiser_with_damaged_weights_is_one_error_naming_the_file(
    s2dit_folder, wan_folder, tmp_path, how
):
    assert isinstance(load_denoiser(s2dit_folder), S2DiT)
    assert isinstance(load_denoiser(wan_folder), WanDenoiser)
    for folder, weights in (
        (s2dit_folder, "model.safetensors"),
        (wan_folder, "diffusion_pytorch_model.safetensors"),
    ):
        bad = copy_of(folder, tmp_path / weights)
        damage(bad / weights, how)
        with pytest.raises(S2DitError, match=rf"{weights}: cannot read the weights"):
            load_denoiser(bad)


def test_a_denoiser_with_a_damaged_config_or_foreign_weights_is_one_error(s2dit_folder, wan_folder, tmp_path):
    bad = copy_of(s2dit_folder, tmp_path / "a")
    (bad / "s2dit.yaml").write_text("width: [32\n")
    with pytest.raises(ConfigError, match=r"s2dit\.yaml: not a readable YAML file"):
        load_denoiser(bad)
    bad = copy_of(wan_folder, tmp_path / "b")
    (bad / "config.json").write_text('{"num_layers": ')
    with pytest.raises(S2DitError, match=r"config\.json: not a readable JSON file"):
        load_denoiser(bad)
    bad = copy_of(s2dit_folder, tmp_path / "c")
    save_file({"nothing": torch.zeros(1)}, str(bad / "model.safetensors"))
    with pytest.raises(S2DitError, match="the weights do not fit the model's config"):
        load_denoiser(bad)
    bad = copy_of(wan_folder, tmp_path / "d")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "num_layers": 2}))
    with pytest.raises(S2DitError, match=r"the weights do not fit config\.json"):
        load_denoiser(bad)


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_a_damaged_tiny_autoencoder_is_one_error(tmp_path, how):
    folder = tmp_path / "ae"
    save_tiny_ae(TinyAutoencoder(TinyAEConfig()), folder)
    assert isinstance(load_tiny_ae(folder), TinyAutoencoder)
    damage(folder / "tiny_ae.safetensors", how)
    with pytest.raises(S2DitError, match=r"tiny_ae\.safetensors: cannot read the weights"):
        load_tiny_ae(folder)
    (folder / "tiny_ae.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"tiny_ae\.yaml: expected a mapping"):
        load_tiny_ae(folder)


def test_a_damaged_pipeline_yaml_is_one_error(tmp_path):
    (tmp_path / "pipeline.yaml").write_text("text: [unclosed\n  :: x")
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: not a readable YAML file"):
        read_pipeline(tmp_path)
    (tmp_path / "pipeline.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        read_pipeline(tmp_path)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ({"steps": -1}, r"^stream\.steps: -1 must be in 1\.\.1000$"),  # named once, not stream.stream.steps
        ({"steps": 10**12}, r"^stream\.steps: "),
        ({"shift": math.nan}, r"^stream\.shift: nan must be positive and finite$"),
        ({"chunk_frames": 10**9}, r"^stream\.chunk_frames 1000000000 and window_chunks"),
        ({"sink_chunks": -1}, r"^stream\.chunk_frames .* sink_chunks -1 in 0\.\.1023$"),
    ],
)
def test_stream_settings_errors_name_the_field_once(stream, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(PipelineInfo, {"stream": stream})


def manifest() -> Manifest:
    spec = TensorSpec("x", [1, 16, 3, 18, 32], "float32")
    return Manifest(
        runtime="onnx",
        checkpoint="weights/micro_ar",
        latent_size=[18, 32],
        video_size=[256, 144],
        channels=16,
        text_len=64,
        text_dim=384,
        text_encoder="minilm",
        fps=4.0,
        stream={"steps": 4},
        entry_points={"denoise": EntryPoint("denoise.onnx", "0" * 64, [spec], [spec])},
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: [m], "expected a JSON object at the top level, got list"),
        (lambda m: {**m, "fps": 0}, r"fps must be a number in \(0, 1000\], got 0"),
        (lambda m: {**m, "fps": -4.0}, "fps must be a number"),
        (lambda m: {**m, "text_len": -1}, "text_len must be an integer in 1.."),
        (lambda m: {**m, "channels": 1.5}, "channels must be an integer"),
        (lambda m: {**m, "latent_size": [18]}, "latent_size must be a list of two sizes"),
        (lambda m: {**m, "video_size": [256, 10**12]}, r"video_size\[1\] must be an integer"),
        (lambda m: {**m, "stream": [4]}, "stream must be an object"),
        (lambda m: {**m, "entry_points": []}, "damaged or incomplete"),
        (
            lambda m: {
                **m,
                "entry_points": {
                    "denoise": {
                        **m["entry_points"]["denoise"],
                        "inputs": [{"name": "x", "shape": [10**6] * 3, "dtype": "float32"}],
                    }
                },
            },
            r"tensor 'x' has 1000000000000000000 elements",
        ),
    ],
)
def test_a_manifest_no_export_writes_is_refused_before_anything_is_allocated(tmp_path, edit, message):
    manifest().write(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert Manifest.read(tmp_path) == manifest()
    (tmp_path / "manifest.json").write_text(json.dumps(edit(raw)))
    with pytest.raises(S2DitError, match=message):
        Manifest.read(tmp_path)


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stream", "a red ball", "--seconds", "nan"], "--seconds must be positive and finite"),
        (["stream", "a red ball", "--seconds", "inf"], "--seconds must be positive and finite"),
        (["stream", "a red ball", "--then", "a blue ball", "--at", "nan"], "every --at within"),
        (["stream", b"a red \xff\xfe ball"], r"the prompt 'a red \\udcff\\udcfe ball' is not valid UTF-8"),
        (["generate", b"a \xff ball"], "is not valid UTF-8 text"),
        (
            ["export", "run", "nowhere", "a red ball", "--seconds", "nan"],
            "--seconds must be positive and finite",
        ),
        (
            ["train", "--config", "x.yaml", "--max-seconds", "nan"],
            "--max-seconds must be positive and finite",
        ),
        (
            ["generate", "a red ball", "--checkpoint", str(WEIGHTS / "micro_ar")],
            "is a streaming model .* use s2dit stream, or pass --sampler",
        ),
        (["generate", "a red ball", "--frames", "100000"], "--frames 100000: give 1 to 1024 latent frames"),
        (["generate", "a red ball", "--cfg", "nan"], r"--cfg >= 0 and --shift > 0 \(finite\)"),
        (["generate", "a red ball", "--steps", "100000000"], "--steps 100000000: at most 10000"),
        (
            ["model", "experts", TEACHER, TEACHER, "unused", "--boundary", "1.5"],
            "--boundary 1.5 must lie strictly between 0 and 1",
        ),
        (
            ["model", "experts", str(WEIGHTS / "micro_ar"), TEACHER, "unused", "--boundary", "0.5"],
            "the high expert .*micro_ar is not a Wan model folder",
        ),
        (
            ["eval", "model", "--checkpoint", TEACHER, "--latents", "x", "--out", "y", "--start-sigma", "2"],
            r"--start-sigma 2 must lie in \(0, 1\]",
        ),
    ],
)
def test_values_a_parser_lets_through_are_one_error_line(args, message):
    import re

    result = cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr


def test_streaming_a_damaged_checkpoint_is_one_error_line(tmp_path):
    bad = copy_of(WEIGHTS / "micro_ar", tmp_path)
    damage(bad / "model.safetensors", "truncated")
    result = cli(
        "stream", "a red ball", "--checkpoint", str(bad), "--seconds", "1", "-o", str(tmp_path / "o.mp4")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.safetensors: cannot read the weights" in result.stderr
