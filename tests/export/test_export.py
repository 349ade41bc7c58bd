"""Exported streaming graphs: per-step numerics against eager PyTorch, a 10-chunk stream through the
reference runner against s2dit stream's sampler, the manifest and its refusals, Core ML conversion."""

import dataclasses
import json
import shutil
import subprocess

import pytest
import torch

from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import StreamSampler, StreamSettings
from s2dit.errors import S2DitError
from s2dit.export.backends import open_entry
from s2dit.export.build import export_stream
from s2dit.export.entry_points import StreamGraphs
from s2dit.export.manifest import Manifest
from s2dit.export.runner import ExportedStream
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT


def need(module: str):
    """The export extra's packages: skipped locally without them, required in CI (which installs them)."""
    import importlib
    import os

    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


need("onnxruntime")

SETTINGS = StreamSettings(chunk_frames=2, window_chunks=2, sink_chunks=1)
SIZE = (6, 10)  # latent H, W (an odd coarse grid for the S blocks)
TEXT_LEN, TEXT_DIM = 8, 384  # MiniLM's width, so a saved tiny folder loads with its real text encoder


def tiny_parts():
    torch.manual_seed(0)
    model = S2DiT(ModelConfig(layout="LSSF", width=48, heads=2, ffn_dim=96, text_dim=TEXT_DIM)).eval()
    ae = TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])).eval()
    with torch.no_grad():  # off the zero init, so every path matters
        for p in [*model.parameters(), *ae.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    return model, ae


def export(runtime, out, **kw):
    model, ae = tiny_parts()
    return export_stream(
        model,
        ae,
        runtime,
        out,
        SIZE,
        SETTINGS,
        text_len=TEXT_LEN,
        text_encoder="hashed",
        fps=8.0,
        checkpoint="tiny",
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module", params=["onnx", "executorch"])
def exported(request, tmp_path_factory):
    need("executorch" if request.param == "executorch" else "onnxscript")
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, folder, export(request.param, folder)


def prompt():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, TEXT_LEN, TEXT_DIM, generator=g), torch.tensor([[1.0] * 6 + [0.0] * 2])


def test_each_entry_point_matches_eager(exported):
    runtime, folder, manifest = exported
    model, ae = tiny_parts()
    graphs = StreamGraphs(model, ae, SIZE, SETTINGS.spec, TEXT_LEN)
    text, mask = prompt()
    with torch.no_grad():
        prompt_out = graphs.modules["prompt"](text, mask)
        x, t = torch.randn(1, 16, 2, *SIZE), torch.full((1, 2), 700.0)
        cache = list(graphs.modules["commit"](x, t, *prompt_out, *graphs.initial_cache()))  # a written cache
        inputs = {
            "prompt": (text, mask),
            "denoise": (torch.randn(1, 16, 2, *SIZE), torch.full((1, 2), 800.0), *prompt_out, *cache),
            "commit": (torch.randn(1, 16, 2, *SIZE), torch.zeros(1, 2), *prompt_out, *cache),
            "decoder": (torch.randn(1, 16, 2, *SIZE), torch.randn(1, 16, 2, *SIZE)),
        }
    assert set(manifest.entry_points) == set(inputs)
    for name, args in inputs.items():
        with torch.no_grad():
            want = graphs.modules[name](*args)
        want = want if isinstance(want, tuple) else (want,)
        got = open_entry(runtime, folder / manifest.entry_points[name].file)(list(args))
        assert len(got) == len(want) == len(manifest.entry_points[name].outputs)
        for a, b in zip(got, want, strict=True):
            scale = b.float().abs().max().clamp_min(1e-6)
            assert float((a.float() - b.float()).abs().max() / scale) <= 1e-4, name


def test_a_10_chunk_stream_through_the_runner_matches_the_eager_stream(exported):
    runtime, folder, _ = exported
    model, ae = tiny_parts()
    text, mask = prompt()
    runner = ExportedStream(folder, runtime, seed=5)
    runner.set_prompt(text, mask)
    sampler = StreamSampler(model, Condition(text, mask.bool()), SIZE, SETTINGS, seed=5)
    decoder = ae.streaming_decoder()
    for _ in range(10):  # past the window: slots are overwritten and sinks kept
        got = runner.next_latents()
        want = sampler.next_chunk()
        assert float((got - want).abs().max() / want.abs().max()) <= 1e-4
        frames, ref = runner.decode(got), decoder.push(got)
        assert frames.shape == ref.shape and float((frames - ref).abs().max()) <= 1e-4


def test_the_manifest_round_trips_and_describes_the_graphs(exported):
    runtime, folder, manifest = exported
    again = Manifest.read(folder)
    assert again == manifest and again.runtime == runtime
    denoise = again.entry_points["denoise"]
    assert [s.name for s in denoise.inputs[:3]] == ["x", "t", "block0.text_k"]
    assert denoise.inputs[0].shape == [1, 16, 2, *SIZE] and denoise.outputs[0].name == "x0"
    commit_out = [s.name for s in again.entry_points["commit"].outputs]
    assert commit_out[0] == "new.count" and all(n.startswith("new.") for n in commit_out)
    assert again.stream["chunk_frames"] == 2 and again.video_size == [80, 48]


def test_the_runner_refuses_a_folder_its_manifest_does_not_describe(tmp_path):
    need("onnxscript")
    folder = tmp_path / "ok"
    export("onnx", folder)
    with pytest.raises(S2DitError, match="not executorch"):
        ExportedStream(folder, "executorch")
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    with open(copy / "denoise.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(S2DitError, match="does not match the manifest"):
        ExportedStream(copy)
    (copy / "denoise.onnx").unlink()
    with pytest.raises(S2DitError, match="missing"):
        ExportedStream(copy)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["schema"] = "s2dit.export/0"
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(S2DitError, match="schema"):
        ExportedStream(copy)
    (copy / "manifest.json").write_text("{")
    with pytest.raises(S2DitError, match="not a readable JSON file"):
        ExportedStream(copy)
    with pytest.raises(S2DitError, match=r"no manifest\.json"):
        ExportedStream(tmp_path)
    stream = ExportedStream(folder)
    with pytest.raises(S2DitError, match="set a prompt"):
        stream.next_latents()
    with pytest.raises(S2DitError, match="text"):
        stream.set_prompt(torch.zeros(1, 3, TEXT_DIM), torch.ones(1, 3))


@pytest.mark.slow
def test_export_and_run_from_the_command_line(tmp_path):
    need("onnxscript")
    import os
    import sys

    bin_dir = os.path.dirname(sys.executable)
    out = tmp_path / "onnx"
    cmd = [f"{bin_dir}/s2dit", "export", "onnx", "--random-weights", "--size", "64x48", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "manifest.json").is_file() and "denoise" in result.stdout
    video = tmp_path / "run.mp4"
    result = subprocess.run(
        [f"{bin_dir}/s2dit", "export", "run", str(out), "a red circle", "--seconds", "2", "-o", str(video)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from s2dit.videoio import probe_video

    assert probe_video(video).frames >= 8
    bad = subprocess.run(
        [f"{bin_dir}/s2dit", "export", "run", str(tmp_path), "x"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0 and "no manifest.json" in (bad.stdout + bad.stderr)
    assert "Traceback" not in bad.stderr


def tiny_checkpoint(folder):
    """A model folder as training leaves it: the tiny S2DiT, its tiny decoder, pipeline.yaml naming MiniLM."""
    import yaml

    from s2dit.latent.tiny_ae import save_tiny_ae
    from s2dit.model.denoiser import save_denoiser

    model, ae = tiny_parts()
    save_denoiser(model, folder / "model")
    save_tiny_ae(ae, folder / "vae")
    pipeline = {
        "text": "minilm",
        "text_len": TEXT_LEN,
        "vae": "../vae",
        "latent_shape": [model.config.in_channels, 2, *SIZE],
        "fps": 8.0,
        "stream": dataclasses.asdict(SETTINGS),
    }
    (folder / "model" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    return folder / "model"


@pytest.mark.slow
def test_quantised_executorch_and_core_ml_exports_and_their_benchmark_from_the_command_line(tmp_path):
    """``export executorch --quantize``, ``export coreml`` and ``bench export`` as a user runs them on a
    trained folder: the manifests say what was asked, the int8 graph stays close to eager (close, not
    equal), the Core ML packages declare the manifest's inputs and outputs, the benchmark times eager beside
    ExecuTorch, and the refusals (Core ML timed off macOS, --quantize for another runtime, bad options) are
    one line, no traceback."""
    need("executorch")
    ct = need("coremltools")
    import os
    import sys

    bin_dir = os.path.dirname(sys.executable)

    def s2dit(*args):
        env = {**os.environ, "COLUMNS": "200"}
        return subprocess.run(
            [f"{bin_dir}/s2dit", *args], capture_output=True, text=True, timeout=900, env=env
        )

    checkpoint = str(tiny_checkpoint(tmp_path))
    int8 = tmp_path / "et8"
    result = s2dit("export", "executorch", "--checkpoint", checkpoint, "--quantize", "-o", str(int8))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "denoise.pte" in result.stdout and "80x48, chunk 2 latent frames" in result.stdout
    manifest = Manifest.read(int8)
    assert manifest.precision == "int8-dynamic" and manifest.checkpoint == checkpoint
    assert manifest.text_len == TEXT_LEN and manifest.stream == dataclasses.asdict(SETTINGS)
    reference, ae = tiny_parts()
    graphs = StreamGraphs(reference, ae, SIZE, SETTINGS.spec, TEXT_LEN)
    args = graphs.example_inputs("denoise")
    with torch.no_grad():
        want = graphs.modules["denoise"](*args)
    got = open_entry("executorch", int8 / "denoise.pte")(list(args))[0]
    error = float((got - want).abs().max() / want.abs().max())
    assert 0 < error <= 2e-2  # int8: close, not equal

    report = tmp_path / "bench.json"
    result = s2dit("bench", "export", str(int8), "--repeats", "2", "--json", str(report))
    assert result.returncode == 0, result.stderr[-2000:]
    bench = json.loads(report.read_text())
    assert bench["chunk_frames"] == 2 and bench["video_size"] == [80, 48]
    rows = bench["rows"]
    assert [r["runtime"] for r in rows] == ["eager", "executorch int8-dynamic"]
    assert rows[0]["speedup_vs_eager"] == 1.0
    for r in rows:
        chunk = bench["steps"] * r["denoise_ms"] + r["commit_ms"] + r["decoder_ms"]
        assert r["chunk_ms"] == pytest.approx(chunk) and r["fps"] == pytest.approx(8 / chunk * 1e3)

    coreml = tmp_path / "cm"
    result = s2dit("export", "coreml", "--checkpoint", checkpoint, "-o", str(coreml))
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = Manifest.read(coreml)
    assert manifest.precision == "float16" and manifest.stream["chunk_frames"] == 2
    for name, entry in manifest.entry_points.items():
        spec = ct.utils.load_spec(str(coreml / entry.file))
        assert spec.WhichOneof("Type") == "mlProgram", name
        inputs, outputs = spec.description.input, spec.description.output
        assert len(inputs) == len(entry.inputs) and len(outputs) == len(entry.outputs), name
        for declared, wanted in zip(inputs, entry.inputs, strict=True):
            assert list(declared.type.multiArrayType.shape) == (wanted.shape or [1]), (name, wanted.name)
    with pytest.raises(S2DitError, match="macOS"):
        ExportedStream(coreml)

    random = ["--random-weights", "--size", "64x48"]
    for args, message in (
        (["bench", "export", str(coreml)], "Core ML packages run on macOS"),
        (["bench", "export", str(int8), "--repeats", "0"], "--repeats 0"),
        (
            ["export", "onnx", *random, "--quantize", "-o", str(tmp_path / "q")],
            "--quantize is for ExecuTorch",
        ),
        (["export", "executorch", "-o", str(tmp_path / "x")], "pass --checkpoint PATH, or --random-weights"),
        (["export", "executorch", *random, "--chunk", "0", "-o", str(tmp_path / "x")], "--chunk 0"),
    ):
        result = s2dit(*args)
        assert result.returncode != 0 and message in result.stdout + result.stderr, args
        assert "Traceback" not in result.stderr, args
    with pytest.raises(S2DitError, match="quantize"):
        export("onnx", tmp_path / "x", quantize=True)
