"""``s2dit bench stream``: the streaming speed of an S2DiT preset and the same-width all-``F`` model.

Each model streams ``chunks`` chunks through :class:`~s2dit.diffusion.stream_pipeline.LiveStream` (random
weights, hashed prompt embeddings, the same decoder): ``steps`` denoising passes + one commit pass per chunk,
then the streaming decode. Reported per model (docs/architecture.md §9):

* first-chunk latency (sampling + decode of chunk 1, after one untimed warm-up stream of 2 chunks);
* denoise-loop FPS and end-to-end FPS (with decode) over chunks 2..N (the steady state);
* per-chunk latency at chunks 1, 10, 100 and N (median of the 5 chunks ending there; chunk 1 alone);
* the warm-up's seconds (with ``compile``, the compile time);
* the stream state's size and peak memory (CUDA: peak allocated; CPU: the process's peak RSS so far).

Models, in the mode asked (dtype, compile): ``s2dit`` (the preset's layout) and ``all-F`` with the same
window and sinks; ``all-F, full history``, an all-``F`` model whose window holds the whole stream. Its caches
have a fixed size (the whole history) from the first chunk, so its cost per chunk does not depend on the
position: it is timed on 3 chunks with the stream position set to the last chunk. When the mode is not
float32 eager, ``s2dit, float32 eager`` too: the same model, the baseline of the mode's ratio, timed in the
same run. JSON schema ``s2dit.stream_bench/1``.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time

import torch

from s2dit.diffusion.stream_pipeline import LiveStream, StreamModel, compile_chunk_step, load_stream_model
from s2dit.diffusion.streaming import StreamSettings
from s2dit.eval.machine import machine
from s2dit.model.transformer import S2DiT

SCHEMA = "s2dit.stream_bench/1"
MARKS = (1, 10, 100)
BASELINE = "s2dit, float32 eager"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _with_layout(parts: StreamModel, layout: str, settings: StreamSettings) -> StreamModel:
    config = dataclasses.replace(parts.model.config, layout=layout)
    torch.manual_seed(0)
    model = S2DiT(config).to(parts.device).eval()
    return dataclasses.replace(parts, model=model, settings=settings)


def _state_mb(live: LiveStream) -> float:
    return sum(t.numel() * t.element_size() for t in live.sampler.state.tensors().values()) / 2**20


def bench_model(
    name: str, parts: StreamModel, chunks: int, dtype: torch.dtype, jump: bool = False, compile: bool = False
) -> dict:
    """Stream ``chunks`` chunks (or, with ``jump``, 3 chunks at the last position) and time them.
    ``compile``: the model's ``forward_chunk`` goes through ``torch.compile`` (inductor), compiled during
    the untimed warm-up stream, whose length is reported as ``warmup_s``."""
    device = parts.device
    if compile:
        compile_chunk_step(parts)
    tick = time.perf_counter()
    warm = LiveStream(parts, "warm-up", seed=1, dtype=dtype)
    for _ in range(2):
        warm.next()
    del warm
    warmup_s = time.perf_counter() - tick
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    live = LiveStream(parts, "a red ball bounces", seed=0, dtype=dtype)
    if jump:  # the position only changes which cache slots are visible, never the work done
        live.sampler.state.count.fill_(chunks - 1)
        live.sampler.chunks_done = chunks - 1
        live.decoder.push(torch.zeros(live.sampler.chunk_shape, device=device))  # a decoder mid-stream
    records = [live.next() for _ in range(3 if jump else chunks)]
    first = records[0]
    steady = records if jump else records[1:] or records
    frames = sum(len(r.frames) for r in steady)
    denoise = sum(r.denoise_s for r in steady)
    total = denoise + sum(r.decode_s for r in steady)
    marks = sorted({m for m in MARKS if m <= chunks} | {chunks})
    seconds = [r.denoise_s + r.decode_s for r in records]
    if jump:
        latency = {chunks: statistics.median(seconds)}
    else:  # the median of the (up to) 5 chunks ending at each mark; chunk 1 is the first chunk alone
        latency = {m: statistics.median(seconds[max(1, m - 5) : m]) if m > 1 else seconds[0] for m in marks}
    return {
        "model": name,
        "layout": parts.model.config.layout,
        "parameters": sum(p.numel() for p in parts.model.parameters()),
        "window_chunks": parts.settings.window_chunks,
        "sink_chunks": parts.settings.sink_chunks,
        "chunks_timed": len(records),
        "warmup_s": warmup_s,
        "first_chunk_latency_s": None if jump else first.denoise_s + first.decode_s,
        "denoise_fps": frames / denoise,
        "end_to_end_fps": frames / total,
        "decode_share": 1 - denoise / total,
        "chunk_latency_s": {str(k): v for k, v in latency.items()},
        "state_mb": _state_mb(live),
        "peak_memory_mb": _peak_memory_mb(device),
    }


def run_bench(
    preset: str = "micro",
    size: tuple[int, int] = (256, 144),
    chunks: int = 100,
    settings: StreamSettings | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    vae: str | None = None,
    full_history: bool = True,
    compile: bool = False,
) -> dict:
    """Time the preset, the same-width all-F model and (``full_history``) the all-F model that remembers
    every chunk; ``compile``: each through ``torch.compile``. Returns the report (schema
    ``s2dit.stream_bench/1``)."""
    import warnings

    settings = settings or StreamSettings()
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, on purpose
        parts = load_stream_model(None, vae=vae, preset=preset, size=size, settings=settings, device=device)
    depth = len(parts.model.config.layout)
    baseline = None
    if dt != torch.float32 or compile:  # before compiling: compile replaces the model's forward_chunk
        baseline = bench_model(BASELINE, parts, chunks, torch.float32)
    rows = [bench_model("s2dit", parts, chunks, dt, compile=compile)]
    rows.append(bench_model("all-F", _with_layout(parts, "F" * depth, settings), chunks, dt, compile=compile))
    if full_history:
        whole = dataclasses.replace(settings, window_chunks=max(1, chunks - settings.sink_chunks))
        rows.append(
            bench_model(
                "all-F, full history", _with_layout(parts, "F" * depth, whole), chunks, dt, True, compile
            )
        )
    ours = rows[0]
    ratios = {}
    for row in rows[1:]:  # the other layouts, in the same mode
        theirs, mine = row["chunk_latency_s"][str(chunks)], ours["chunk_latency_s"][str(chunks)]
        ratios[row["model"]] = {
            "end_to_end_fps": ours["end_to_end_fps"] / row["end_to_end_fps"],
            "denoise_fps": ours["denoise_fps"] / row["denoise_fps"],
            f"end_to_end_at_chunk_{chunks}": theirs / mine,
        }
    if baseline is not None:
        rows.append(baseline)
        ratios[BASELINE] = {
            "end_to_end_fps": ours["end_to_end_fps"] / baseline["end_to_end_fps"],
            "denoise_fps": ours["denoise_fps"] / baseline["denoise_fps"],
            "first_chunk": baseline["first_chunk_latency_s"] / ours["first_chunk_latency_s"],
        }
    return {
        "schema": SCHEMA,
        **machine(device),
        "dtype": dtype,
        "compile": compile,
        "preset": preset,
        "size": list(size),
        "chunks": chunks,
        "settings": dataclasses.asdict(settings),
        "frames_per_chunk": 4 * settings.chunk_frames,
        "decoder": vae or "tiny autoencoder (untrained)",
        "results": rows,
        "ratios": ratios,
    }
