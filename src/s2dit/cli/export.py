"""``s2dit export ...``: on-device export of the streaming model and its decoder; the runner."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from s2dit.cli.common import check_text, console, make_table
from s2dit.errors import S2DitError

app = typer.Typer(
    help="On-device export of the streaming model and its decoder (ONNX, ExecuTorch, Core ML); a runner.",
    no_args_is_help=True,
)


def _export(runtime: str, checkpoint, random_weights, preset, size, chunk, vae, out, quantize=False) -> None:
    from s2dit.config import parse_size
    from s2dit.export.build import export_model

    if (checkpoint is None) == (not random_weights):
        raise S2DitError("pass --checkpoint PATH, or --random-weights to export an untrained --preset")
    manifest = export_model(
        runtime,
        out,
        checkpoint=checkpoint,
        preset=preset,
        size=parse_size(size) if size else None,
        chunk=chunk,
        vae=vae,
        quantize=quantize,
        warn=lambda message: console.print(f"[yellow]warning:[/] {message}"),
    )
    rows = []
    for name, entry in manifest.entry_points.items():
        path = Path(out) / entry.file
        size_mb = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        rows.append((name, entry.file, len(entry.inputs), len(entry.outputs), f"{size_mb / 1e6:.1f}"))
    console.print(
        make_table(f"{runtime} export: {out}", ("entry point", "file", "inputs", "outputs", "MB"), rows)
    )
    w, h = manifest.video_size
    chunk_frames = manifest.stream["chunk_frames"]
    console.print(f"{w}x{h}, chunk {chunk_frames} latent frames; manifest: {Path(out) / 'manifest.json'}")


def _export_options(runtime: str, what: str, quantizes: bool = False):
    """The command of one runtime; ``quantizes`` adds ``--quantize`` (ExecuTorch's int8 graphs)."""

    def command(
        checkpoint: Path | None = typer.Option(None, help="A trained S2DiT run or model folder."),
        random_weights: bool = typer.Option(
            False, help="Export an untrained --preset (sizes and speed only)."
        ),
        preset: str = typer.Option("micro", help="Preset for --random-weights: micro or mobile."),
        size: str | None = typer.Option(
            None, help="Video WxH (default: the model's; 256x144 for --random-weights)."
        ),
        chunk: int | None = typer.Option(
            None, help="Latent frames per chunk (default: the model's stream settings)."
        ),
        vae: Path | None = typer.Option(None, help="The tiny decoder to export (default: the model's VAE)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder (artefacts + manifest.json)."),
        quantize: bool = typer.Option(
            False,
            help="int8 linear layers (dynamic activations) in the per-step graphs, XNNPACK int8 kernels.",
            hidden=not quantizes,
        ),
    ) -> None:
        _export(runtime, checkpoint, random_weights, preset, size, chunk, vae, out, quantize)

    command.__doc__ = f"Export the streaming step (prompt, denoise, commit) and the decoder {what}."
    return command


app.command("onnx")(_export_options("onnx", "to ONNX (run with onnxruntime)"))
app.command("executorch")(
    _export_options(
        "executorch",
        "to ExecuTorch .pte files lowered to XNNPACK (float32, or int8 with --quantize)",
        quantizes=True,
    )
)
app.command("coreml")(
    _export_options("coreml", "to Core ML mlprogram packages (float16, iOS 18; prediction needs macOS)")
)


@app.command("run")
def export_run(
    folder: Path = typer.Argument(..., help="An export folder (ONNX or ExecuTorch) with its manifest.json."),
    prompt: str = typer.Argument(..., help="The text prompt."),
    seconds: float = typer.Option(5.0, help="Length of the video."),
    seed: int = typer.Option(0, help="Seed of the stream's noise."),
    out: Path = typer.Option(Path("exported.mp4"), "-o", "--out", help="The mp4 to write."),
) -> None:
    """Stream a prompt through an exported model, as a phone app would, and write the mp4."""
    from s2dit.export.runner import run_export

    if not 0 < seconds < math.inf:  # NaN fails too
        raise S2DitError("--seconds must be positive and finite")
    check_text([prompt])
    done = run_export(folder, prompt, seconds, out, seed)
    console.print(
        f"wrote {done['out']}: {done['frames']} frames in {done['chunks']} chunks ({done['runtime']})"
    )
