"""The top-level commands that make video: ``s2dit generate``, ``s2dit stream`` and ``s2dit serve``."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from s2dit.cli.common import check_device, check_dtype, check_text, console, speaks_micro, warn_unknown_words
from s2dit.diffusion.sampler_names import BIDIRECTIONAL, listed
from s2dit.errors import ConfigError, S2DitError


def generate(
    prompt: str = typer.Argument(..., help="The text prompt."),
    checkpoint: Path | None = typer.Option(
        None,
        help="A trained run folder, its model/ folder, or a Wan folder "
        "(default: the shipped teacher, weights/micro_teacher).",
    ),
    out: Path = typer.Option(
        Path("out.mp4"), "-o", "--out", help="The mp4 to write (a .png contact sheet goes beside it)."
    ),
    steps: int | None = typer.Option(
        None, help="Sampling steps (default: the model's pipeline.yaml, else 50)."
    ),
    cfg: float | None = typer.Option(None, help="CFG scale g in u + g·(c - u); 1 = no guidance."),
    seed: int = typer.Option(0, help="Seed of the initial noise."),
    negative: str = typer.Option("", help="Negative prompt (the unconditional branch of CFG)."),
    shift: float | None = typer.Option(None, help="Schedule shift (default: the model's)."),
    sampler: str | None = typer.Option(
        None, help=f"{listed(BIDIRECTIONAL)} (default: the model's, else unipc)."
    ),
    vae: Path | None = typer.Option(
        None, help="Decoder to use instead of the one the model was trained with."
    ),
    frames: int | None = typer.Option(None, help="Latent frames to generate (default: the training length)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Generate a video bidirectionally from any of our checkpoints (teacher or S2DiT)."""
    from s2dit.diffusion.pipeline import GenerateRequest
    from s2dit.diffusion.pipeline import generate as run
    from s2dit.shipped import GENERATE_MODEL, shipped_model

    check_text([prompt])
    check_text([negative], "--negative")
    checkpoint = checkpoint or shipped_model(GENERATE_MODEL)
    warn_unknown_words([prompt], checkpoint)
    request = GenerateRequest(
        prompt=prompt,
        checkpoint=str(checkpoint),
        out=str(out),
        steps=steps,
        cfg=cfg,
        shift=shift,
        sampler=sampler,
        seed=seed,
        negative=negative,
        vae=str(vae) if vae else None,
        frames=frames,
        device=device,
    )
    done = run(request)
    console.print(f"wrote {done['video']} ({done['frames']} frames) and {done['contact_sheet']}")


def _stream_parts(checkpoint, random_weights, preset, size, vae, device, chunk, window, sink, steps, shift):
    """The model, decoder and text encoder of ``s2dit stream`` / ``s2dit serve``."""
    import dataclasses
    import warnings

    from s2dit.config import parse_size
    from s2dit.diffusion.stream_pipeline import load_stream_model

    check_device(device)
    with warnings.catch_warnings():  # said once, below
        warnings.simplefilter("ignore")
        parts = load_stream_model(
            str(checkpoint) if checkpoint else None,
            vae=str(vae) if vae else None,
            preset=preset,
            size=parse_size(size),
            device=device,
        )
    overrides = {"chunk_frames": chunk, "window_chunks": window, "sink_chunks": sink, "steps": steps}
    overrides["shift"] = shift
    try:
        parts.settings = dataclasses.replace(
            parts.settings, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ConfigError as e:
        raise S2DitError(f"stream {e} (from --chunk, --window, --sink, --steps, --shift)") from None
    if random_weights:
        console.print("[yellow]warning:[/] random weights: the frames are noise (for benchmarking only)")
    return parts


def _stream_checkpoint(checkpoint: Path | None, random_weights: bool) -> Path | None:
    """The model to stream: --checkpoint, none for --random-weights, else the shipped S2DiT-AR."""
    from s2dit.shipped import STREAM_MODEL, shipped_model

    if checkpoint is not None and random_weights:
        raise S2DitError("pass --checkpoint PATH or --random-weights, not both")
    return None if random_weights else checkpoint or shipped_model(STREAM_MODEL)


STREAM_OPTIONS_HELP = "Default: the model's pipeline.yaml (stream section)."
CHECKPOINT_HELP = (
    "A trained S2DiT run folder or model folder (default: the shipped S2DiT-AR, weights/micro_ar)."
)
DTYPE_HELP = (
    "auto (bf16 autocast on GPUs and on CPUs where a bf16 matmul measures >= 1.5x float32, else float32), "
    "float32 or bfloat16."
)
PREVIEW_SECONDS = 30  # the GIF beside the mp4 shows at most this much of the stream


def stream_help() -> str:
    from s2dit.data.micro.guide import world_guide

    return (
        "Stream a video chunk by chunk, writing frames as they arrive (and a GIF of them beside the mp4); "
        f"switch prompts with --then/--at.\n\n{world_guide()}"
    )


def stream(
    prompt: str = typer.Argument(..., help="The text prompt."),
    then: list[str] = typer.Option([], help="A later prompt, repeatable; each needs an --at."),
    at: list[float] = typer.Option([], help="When (seconds) the matching --then prompt starts."),
    seconds: float = typer.Option(10.0, help="Length of the video."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    random_weights: bool = typer.Option(False, help="Stream an untrained --preset (benchmarking)."),
    preset: str = typer.Option("micro", help="Preset for --random-weights: micro or mobile."),
    size: str = typer.Option("256x144", help="Video size WxH for --random-weights."),
    out: Path = typer.Option(Path("stream.mp4"), "-o", "--out", help="The mp4, written as frames arrive."),
    seed: int = typer.Option(0, help="Seed of the stream's noise."),
    steps: int | None = typer.Option(None, help="Denoising steps per chunk. " + STREAM_OPTIONS_HELP),
    shift: float | None = typer.Option(None, help="Shift of the step list. " + STREAM_OPTIONS_HELP),
    chunk: int | None = typer.Option(None, help="Latent frames per chunk. " + STREAM_OPTIONS_HELP),
    window: int | None = typer.Option(None, help="Chunks remembered (window). " + STREAM_OPTIONS_HELP),
    sink: int | None = typer.Option(None, help="First chunks always remembered. " + STREAM_OPTIONS_HELP),
    vae: Path | None = typer.Option(None, help="Streaming decoder (tiny_ae folder or Wan VAE folder)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the chunk step: ~2x the FPS on a 2-core CPU, after ~100 s of compiling.",
    ),
) -> None:
    from s2dit.diffusion.stream_pipeline import compile_chunk_step, stream_to_file
    from s2dit.videoio import read_video, write_gif

    if len(then) != len(at):
        raise S2DitError(f"{len(then)} --then prompt(s) but {len(at)} --at time(s): give one --at per --then")
    if not 0 < seconds < math.inf or not all(0 <= a < seconds for a in at):  # NaN fails both
        raise S2DitError("--seconds must be positive and finite and every --at within [0, --seconds)")
    amp = check_dtype(dtype, device)
    check_text([prompt, *then])
    checkpoint = _stream_checkpoint(checkpoint, random_weights)
    warn_unknown_words([prompt, *then], checkpoint)
    parts = _stream_parts(
        checkpoint, random_weights, preset, size, vae, device, chunk, window, sink, steps, shift
    )
    if compile:
        compile_chunk_step(parts)
    done = stream_to_file(parts, prompt, list(zip(at, then, strict=True)), seconds, out, seed, amp)
    frames, fps = read_video(out, max_frames=round(PREVIEW_SECONDS * parts.fps))
    gif = out.with_suffix(".gif")
    write_gif(gif, frames, fps)
    console.print(
        f"wrote {done['video']}: {done['frames']} frames in {done['chunks']} chunks; "
        f"first chunk {done['first_chunk_latency_s']:.2f} s; {done['fps']:.1f} FPS end to end "
        f"({done['denoise_fps']:.1f} FPS denoising)",
        soft_wrap=True,
    )
    shown = "" if len(frames) == done["frames"] else f" (the first {PREVIEW_SECONDS} s)"
    console.print(f"preview: {gif}{shown}", soft_wrap=True)


def serve(
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    random_weights: bool = typer.Option(False, help="Serve an untrained --preset (benchmarking)."),
    preset: str = typer.Option("micro", help="Preset for --random-weights: micro or mobile."),
    size: str = typer.Option("256x144", help="Video size WxH for --random-weights."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (the default is this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on (0: any free port)."),
    max_streams: int = typer.Option(2, help="Streams allowed at once (each client has at most one)."),
    steps: int | None = typer.Option(None, help="Denoising steps per chunk. " + STREAM_OPTIONS_HELP),
    window: int | None = typer.Option(None, help="Chunks remembered (window). " + STREAM_OPTIONS_HELP),
    vae: Path | None = typer.Option(None, help="Streaming decoder (tiny_ae folder or Wan VAE folder)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Serve a local web page: type a prompt, watch the stream, change the prompt live, stop."""
    from s2dit.serve.server import serve as make_server

    if not 0 <= port < 65536 or max_streams < 1:
        raise S2DitError("--port must be in [0, 65535] and --max-streams at least 1")
    amp = check_dtype(dtype, device)
    checkpoint = _stream_checkpoint(checkpoint, random_weights)
    parts = _stream_parts(
        checkpoint, random_weights, preset, size, vae, device, None, window, None, steps, None
    )
    server = make_server(parts, host, port, max_streams, check_prompts=speaks_micro(checkpoint), dtype=amp)
    console.print(f"s2dit live viewer at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
