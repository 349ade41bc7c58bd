"""``s2dit bench ...``: the benchmarks (blocks, training, streaming, exported graphs)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from s2dit.cli.common import check_device, check_dtype, console, make_table, write_json
from s2dit.errors import S2DitError

app = typer.Typer(
    help="Benchmarks: print tables and write JSON (ratios measured in one run).", no_args_is_help=True
)


@app.command("blocks")
def bench_blocks(
    width: int = typer.Option(384, help="Model width."),
    heads: int = typer.Option(6, help="Attention heads."),
    tokens: str = typer.Option("1024,4096,8192,16384", help="Full-resolution token counts, comma-separated."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    repeats: int = typer.Option(3, help="Timed runs per entry (the median is reported)."),
    backward: bool = typer.Option(True, help="Also time forward+backward."),
    conv: str = typer.Option(
        "auto",
        help="LCHA's conv branch: auto (3d on CPU, 2d on GPU), 3d (one Conv3d) or 2d (a conv2d per tap).",
    ),
    compiled: bool = typer.Option(
        False, "--compile", help="Run every block through torch.compile (needs a C++ compiler on CPUs)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the latency table here."),
) -> None:
    """Time one block of each kind (L, its floor, F, S) and the stage entry/exit; print ratios."""
    from s2dit.eval.bench_blocks import KINDS, run_bench, summary_rows

    try:
        counts = [int(n) for n in tokens.split(",") if n.strip()]
    except ValueError:
        raise S2DitError(f"--tokens: {tokens!r} should be comma-separated integers") from None
    if repeats < 1:
        raise S2DitError(f"--repeats must be at least 1, got {repeats}")
    table = run_bench(
        width=width,
        heads=heads,
        tokens=counts,
        device=device,
        dtype=dtype,
        repeats=repeats,
        backward=backward,
        conv=conv,
        compiled=compiled,
    )
    columns = ("tokens", *(f"{k} ms" for k in KINDS), "F/L", "L/F", "S/F", "L/floor")
    for pass_ in ("forward", "forward_backward") if backward else ("forward",):
        mode = "compiled" if compiled else "eager"
        title = f"{pass_}: {table['device']}, {dtype}, width {width}, {table['threads']} threads, {mode}"
        console.print(make_table(title, columns, summary_rows(table, pass_)))
    if json_out:
        write_json(json_out, table)
        console.print(f"latency table: {json_out}")


@app.command("train")
def bench_train(
    model: list[str] = typer.Option(
        ["micro"], "--model", "--preset", help="Model(s) to time, repeatable: micro, mobile, teacher."
    ),
    size: str = typer.Option("256x144", help="Video size WxH (multiples of 16)."),
    frames: int = typer.Option(3, help="Latent frames per clip."),
    batch: int = typer.Option(2, help="Clips per step."),
    steps: int = typer.Option(5, help="Timed optimiser steps (after warm-up)."),
    warmup: int = typer.Option(2, help="Untimed steps first (the first one compiles)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option(
        "auto",
        help="The fast mode's dtype: auto (bf16 on GPUs and where a CPU bf16 matmul measures >= 1.5x), "
        "float32 or bfloat16.",
    ),
    compile: bool = typer.Option(True, help="Compile the fast mode (torch.compile, inductor)."),
    checkpointing: bool = typer.Option(False, help="Activation checkpointing."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
) -> None:
    """Training throughput: float32 eager beside the fast mode (the trainer's default: --dtype, --compile),
    with the ratio; samples/s, tokens/s, FLOP/s and MFU against a matmul peak measured in the same run."""
    from s2dit.config import parse_size
    from s2dit.eval.bench_train import TEACHER, run_bench
    from s2dit.model.config import PRESETS

    bad = [p for p in model if p not in (*PRESETS, TEACHER)]
    if bad:
        raise S2DitError(f"unknown model {bad[0]!r} (choose from {', '.join((*PRESETS, TEACHER))})")
    if min(frames, batch, steps) < 1 or warmup < 0:
        raise S2DitError("--frames, --batch and --steps must be at least 1, --warmup at least 0")
    check_device(device)
    fast = str(check_dtype(dtype, device)).removeprefix("torch.")
    modes = [("float32", False)]
    if (fast, compile) != modes[0]:
        modes.append((fast, compile))
    report = run_bench(
        list(model),
        parse_size(size),
        frames,
        batch,
        steps,
        warmup,
        device,
        modes,
        checkpointing=checkpointing,
    )
    title = (
        f"training throughput, {report['device']} ({report['threads']} threads), {size}, "
        f"{frames} latent frames, batch {batch}; matmul peak "
        + ", ".join(f"{d} {p / 1e12:.3g} TFLOP/s" for d, p in report["matmul_peak_flops"].items())
    )
    rows = [
        (
            r["model"],
            f"{r['dtype']}{' compiled' if r['compile'] else ' eager'}",
            f"{r['parameters'] / 1e6:.1f}M",
            f"{r['first_step_s']:.1f}",
            f"{r['step_ms']:.0f}",
            f"{r['samples_per_s']:.3g}",
            f"{r['speedup']:.2f}x",
            f"{r['achieved_flops'] / 1e12:.3g}",
            f"{100 * r['mfu']:.1f}%",
            "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}",
        )
        for r in report["results"]
    ]
    cols = (
        "model",
        "mode",
        "params",
        "1st step s",
        "step ms",
        "samples/s",
        "vs fp32",
        "TFLOP/s",
        "MFU",
        "peak MB",
    )
    console.print(make_table(title, cols, rows))
    if json_out:
        write_json(json_out, report)
        console.print(f"results: {json_out}")


@app.command("stream")
def bench_stream(
    preset: str = typer.Option("micro", help="Preset to time: micro or mobile."),
    size: str = typer.Option("256x144", help="Video size WxH (multiples of 16)."),
    chunks: int = typer.Option(100, help="Chunks streamed per model."),
    steps: int = typer.Option(4, help="Denoising steps per chunk (+ one commit pass)."),
    chunk: int = typer.Option(3, help="Latent frames per chunk."),
    window: int = typer.Option(6, help="Chunks kept in the softmax-attention window (both models)."),
    sink: int = typer.Option(1, help="Sink chunks (both models)."),
    vae: Path | None = typer.Option(None, help="Decoder folder (default: an untrained tiny autoencoder)."),
    full_history: bool = typer.Option(True, help="Also time an all-F model that keeps every chunk."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option(
        "auto", help="auto (what `s2dit stream` uses: bf16 where it measures faster), float32 or bfloat16."
    ),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile each model's chunk step (compiled in the untimed warm-up)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
) -> None:
    """Streaming FPS, first-chunk and per-chunk latency, memory: S2DiT vs the same-width all-F model, and
    the S2DiT model in float32 eager beside the mode asked (--dtype, --compile) when that differs."""
    from s2dit.config import parse_size
    from s2dit.diffusion.streaming import StreamSettings
    from s2dit.eval.bench_stream import BASELINE, run_bench
    from s2dit.model.config import PRESETS

    if preset not in PRESETS:
        raise S2DitError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if min(chunks, steps, chunk, window) < 1 or sink < 0:
        raise S2DitError("--chunks, --steps, --chunk and --window must be at least 1, --sink at least 0")
    check_device(device)
    dtype = str(check_dtype(dtype, device)).removeprefix("torch.")
    settings = StreamSettings(steps=steps, chunk_frames=chunk, window_chunks=window, sink_chunks=sink)
    report = run_bench(
        preset,
        parse_size(size),
        chunks,
        settings,
        device,
        dtype,
        str(vae) if vae else None,
        full_history,
        compile,
    )
    title = (
        f"streaming, {report['device']} ({report['threads']} threads), {dtype}"
        f"{' compiled' if compile else ''}, {size}, preset {preset}, "
        f"{steps} steps + commit, chunk {chunk} latent frames ({4 * chunk} video frames), "
        f"window {window} + sink {sink}, {chunks} chunks; decoder: {report['decoder']}"
    )
    marks = list(report["results"][0]["chunk_latency_s"])
    rows = []
    for r in report["results"]:
        lat = [r["chunk_latency_s"].get(m) for m in marks]
        rows.append(
            (
                r["model"],
                f"{r['parameters'] / 1e6:.1f}M",
                "-" if r["first_chunk_latency_s"] is None else f"{r['first_chunk_latency_s'] * 1000:.0f}",
                f"{r['denoise_fps']:.1f}",
                f"{r['end_to_end_fps']:.1f}",
                *("-" if v is None else f"{v * 1000:.0f}" for v in lat),
                f"{r['state_mb']:.1f}",
                f"{r['peak_memory_mb']:.0f}",
                f"{r['warmup_s']:.1f}",
            )
        )
    cols = ("model", "params", "first chunk ms", "denoise FPS", "end-to-end FPS")
    cols += (*(f"chunk {m} ms" for m in marks), "state MB", "peak MB", "warm-up s")
    Console(width=max(console.width, 150)).print(make_table(title, cols, rows))
    mode = f"{dtype}{' compiled' if compile else ''}"
    for name, ratio in report["ratios"].items():
        label = f"s2dit {mode} vs {name}" if name == BASELINE else f"s2dit vs {name}"
        console.print(f"{label}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    if json_out:
        write_json(json_out, report)
        console.print(f"results: {json_out}")


@app.command("export")
def bench_export_cmd(
    folders: list[Path] = typer.Argument(..., help="Export folders (ONNX, ExecuTorch) of one checkpoint."),
    repeats: int = typer.Option(20, help="Timed calls per graph (the median is reported)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """Per-step latency of exported graphs vs eager PyTorch (same inputs, one run), and artefact sizes."""
    from s2dit.eval.bench_export import bench_export

    if repeats < 1:
        raise S2DitError(f"--repeats {repeats} must be at least 1")
    result = bench_export([str(f) for f in folders], repeats)
    rows = [
        (
            r["runtime"],
            f"{r['denoise_ms']:.1f}",
            f"{r['commit_ms']:.1f}",
            f"{r.get('decoder_ms', 0.0):.1f}",
            f"{r['chunk_ms']:.1f}",
            f"{r['fps']:.1f}",
            f"{r['speedup_vs_eager']:.2f}x",
            f"{r['artefacts_mb']:.1f}" if r["folder"] else "-",
        )
        for r in result["rows"]
    ]
    w, h = result["video_size"]
    title = (
        f"{result['checkpoint']}, {w}x{h}, chunk {result['chunk_frames']}, {result['steps']} steps + commit, "
        f"{result['threads']} torch threads"
    )
    columns = ("runtime", "denoise ms", "commit ms", "decoder ms", "chunk ms", "FPS", "vs eager", "MB")
    console.print(make_table(title, columns, rows))
    if json_out is not None:
        write_json(json_out, result)
