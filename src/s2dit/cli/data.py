"""``s2dit data ...``: make and inspect datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from s2dit.cli.common import CONFIG_HELP, SET_HELP, console, make_table
from s2dit.errors import S2DitError

app = typer.Typer(
    help="Make and inspect datasets (the procedural micro world, video folders).", no_args_is_help=True
)


@app.command("micro")
def data_micro(
    out: Path = typer.Option(..., "--out", help="Output folder (created; rerun to resume or extend)."),
    n: int = typer.Option(1000, "--n", help="Number of clips the folder should hold."),
    seed: int | None = typer.Option(None, help="World seed (clip i depends only on seed and i) (default 0)."),
    size: str | None = typer.Option(None, help="WIDTHxHEIGHT, multiples of 16 (default 256x144)."),
    frames: int | None = typer.Option(None, help="Frames per clip, 4k+1 (default 33)."),
    fps: float | None = typer.Option(None, help="Frames per second (default 16)."),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    workers: int = typer.Option(0, help="Worker processes (0: one per CPU core)."),
) -> None:
    """Generate a procedural, captioned micro world: mp4 clips + clips.jsonl with per-frame ground truth."""
    from s2dit.config import load_config, parse_size
    from s2dit.data.micro.writer import MicroWorldConfig, write_micro_world

    overrides = list(set_)
    if size is not None:
        w, h = parse_size(size)
        overrides += [f"video.width={w}", f"video.height={h}"]
    overrides += [f"video.frames={frames}"] if frames is not None else []
    overrides += [f"video.fps={fps}"] if fps is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    cfg = load_config(MicroWorldConfig, config, overrides)
    summary = write_micro_world(out, n, cfg, workers=workers)
    console.print(
        f"{out}: {summary['total']} clips ({summary['made']} made in {summary['seconds']:.1f} s, "
        f"{summary['already']} already there) at {cfg.video.size}, {cfg.video.frames} frames, "
        f"{cfg.video.fps:g} fps"
    )


@app.command("encode")
def data_encode(
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP + " E.g. --set videos=DIR --set vae=DIR."),
) -> None:
    """Encode a captioned video folder into shards of latents and text embeddings (resumable, torchrun)."""
    from s2dit.config import load_config
    from s2dit.data.encode import EncodeConfig, encode_folder

    cfg = load_config(EncodeConfig, config, list(set_))
    summary = encode_folder(cfg)
    console.print(
        f"rank {summary['rank']}: {summary['clips']} clips encoded in {summary['shards']} shards, "
        f"{summary['skipped']} skipped -> {cfg.out}"
    )


@app.command("inspect")
def data_inspect(
    folder: Path = typer.Argument(..., help="A micro world or a captioned video folder."),
    sheet: Path | None = typer.Option(None, help="Contact sheet PNG (default FOLDER/inspect.png)."),
    clips: int = typer.Option(8, help="Random clips on the contact sheet."),
    seed: int = typer.Option(0, help="Seed for choosing the clips."),
) -> None:
    """Print clip counts and attribute histograms, and write a contact sheet of random clips."""
    from s2dit.data.inspect import inspect_folder

    if clips < 0:
        raise S2DitError(f"--clips must be 0 or more, got {clips}")

    report = inspect_folder(folder, sheet=sheet, n_sheet=clips, seed=seed)
    console.print(f"{folder}: {report['clips']} clips, {report['captions_unique']} distinct captions")
    for name, counts in report["histograms"].items():
        total = sum(counts.values())
        console.print(
            make_table(
                name, ("value", "count", "share"), [(k, v, f"{v / total:.1%}") for k, v in counts.items()]
            )
        )
    if report["sheet"]:
        console.print(f"contact sheet: {report['sheet']}")
