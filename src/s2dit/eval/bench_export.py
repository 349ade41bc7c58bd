"""``s2dit bench export``: per-step latency of exported graphs against eager PyTorch, in one run.

For each export folder (ONNX, ExecuTorch) of one checkpoint, and for the eager model it came from, the
``denoise``, ``commit`` and ``decoder`` graphs are timed on the same inputs (a cache after a few commits); a
chunk costs ``steps x denoise + commit + decoder``. Ratios are against eager, measured in the same process.
Output schema ``s2dit.export_bench/1``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from s2dit.errors import S2DitError

SCHEMA = "s2dit.export_bench/1"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tick) * 1e3)
    return statistics.median(times)


def _eager_graphs(manifest):
    import warnings

    from s2dit.config import from_dict
    from s2dit.diffusion.stream_pipeline import load_stream_model
    from s2dit.diffusion.streaming import StreamSettings
    from s2dit.export.entry_points import StreamGraphs
    from s2dit.latent.tiny_ae import TinyAutoencoder

    label = manifest.checkpoint
    width, height = manifest.video_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if label.startswith("random-weights:"):
            parts = load_stream_model(None, preset=label.split(":", 1)[1], size=(width, height))
        elif Path(label).exists():
            parts = load_stream_model(label)
        else:
            raise S2DitError(f"the export's checkpoint {label} is not here: eager timing needs it")
    settings = from_dict(StreamSettings, manifest.stream)
    ae = parts.vae if isinstance(parts.vae, TinyAutoencoder) else None
    return StreamGraphs(
        parts.model, ae, tuple(manifest.latent_size), settings.spec, manifest.text_len
    ), settings


def bench_export(folders: list[str], repeats: int = 20) -> dict:
    from s2dit.export.backends import open_entry
    from s2dit.export.manifest import Manifest

    manifests = [Manifest.read(f) for f in folders]
    for f, m in zip(folders, manifests, strict=True):
        m.check(f)
        if m.runtime == "coreml":
            raise S2DitError(f"{f}: Core ML packages run on macOS; time them on the device")
    first = manifests[0]
    for f, m in zip(folders[1:], manifests[1:], strict=True):
        if (m.checkpoint, m.latent_size, m.stream) != (first.checkpoint, first.latent_size, first.stream):
            raise S2DitError(
                f"{f} exports another model or size than {folders[0]}: compare one model at a time"
            )
    graphs, settings = _eager_graphs(first)
    # Inputs: a prompt and a cache after three commits, so every slot kind is in use.
    with torch.no_grad():
        prompt = graphs.modules["prompt"](*graphs.example_inputs("prompt"))
        x = graphs.example_inputs("denoise")[0]
        cache = graphs.initial_cache()
        for _ in range(3):
            cache = list(graphs.modules["commit"](x, torch.zeros(1, x.shape[2]), *prompt, *cache))
    inputs = {
        "denoise": [x, torch.full((1, x.shape[2]), 750.0), *prompt, *cache],
        "commit": [x, torch.zeros(1, x.shape[2]), *prompt, *cache],
    }
    if "decoder" in graphs.modules:
        inputs["decoder"] = list(graphs.example_inputs("decoder"))
    runs = [("eager", None, {n: (lambda n=n: graphs.modules[n](*inputs[n])) for n in inputs}, 0.0)]
    for folder, m in zip(folders, manifests, strict=True):
        calls = {n: open_entry(m.runtime, Path(folder) / m.entry_points[n].file) for n in inputs}
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        label = m.runtime if m.precision == "float32" else f"{m.runtime} {m.precision}"
        runs.append((label, folder, {n: (lambda n=n, c=calls: c[n](inputs[n])) for n in inputs}, size))
    rows = []
    frames = 4 * settings.chunk_frames
    with torch.no_grad():
        for runtime, folder, fns, size in runs:
            ms = {n: _median_ms(fn, repeats) for n, fn in fns.items()}
            chunk = settings.steps * ms["denoise"] + ms["commit"] + ms.get("decoder", 0.0)
            rows.append(
                {
                    "runtime": runtime,
                    "folder": folder,
                    **{f"{n}_ms": v for n, v in ms.items()},
                    "chunk_ms": chunk,
                    "fps": frames / chunk * 1e3,
                    "artefacts_mb": size / 1e6,
                }
            )
    eager = rows[0]["chunk_ms"]
    for r in rows:
        r["speedup_vs_eager"] = eager / r["chunk_ms"]
    return {
        "schema": SCHEMA,
        "checkpoint": first.checkpoint,
        "video_size": first.video_size,
        "chunk_frames": settings.chunk_frames,
        "steps": settings.steps,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
