"""``s2dit eval ...``: score generated videos, autoencoders and checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from s2dit.cli.common import cell, check_device, check_dtype, console, make_table, write_json
from s2dit.diffusion.sampler_names import ALL as SAMPLERS
from s2dit.diffusion.sampler_names import listed

app = typer.Typer(help="Score generated videos.", no_args_is_help=True)


@app.command("micro")
def eval_micro(
    videos: Path = typer.Option(..., help="Folder of generated (or ground-truth) videos."),
    prompts: Path = typer.Option(
        ...,
        help="clips.jsonl / prompts.jsonl (rows with caption, video), or a "
        "text file with one prompt per line (videos in sorted order).",
    ),
    shuffle: bool = typer.Option(False, help="Score each clip against another clip's prompt (chance level)."),
    seed: int = typer.Option(0, help="Seed of the shuffle."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report (per clip) here."),
) -> None:
    """Score videos against micro-world prompts: the pass rate (a clip passes when it shows exactly the
    asked objects, each with the color, shape, size and motion asked), and the accuracy of color, count,
    shape, size, motion, persistence and flicker."""
    from s2dit.data.micro.metrics import evaluate_folder, format_by_count

    report = evaluate_folder(videos, prompts, shuffle=shuffle, seed=seed)
    rows = [(a, "-" if v is None else f"{v:.3f}") for a, v in report["accuracy"].items()]
    rows.append(("mean accuracy", f"{report['mean_accuracy']:.3f}"))
    rows.append(("pass rate", f"{report['pass_rate']:.3f}"))
    counts = "/".join(report["pass_rate_by_count"])
    rows.append((f"pass rate, prompts of {counts} objects", format_by_count(report["pass_rate_by_count"])))
    title = f"micro-world scores, {report['clips']} clips" + (" (shuffled prompts)" if shuffle else "")
    console.print(make_table(title, ("attribute", "accuracy"), rows))
    if json_out:
        write_json(json_out, report)
        console.print(f"report: {json_out}")


@app.command("vae")
def eval_vae(
    vae: Path = typer.Option(..., help="A tiny-autoencoder folder or a diffusers Wan VAE folder."),
    videos: Path = typer.Option(
        ..., help="Held-out clips (a micro world or a captioned folder), read at 256x144."
    ),
    clips: int = typer.Option(32, help="Clips to evaluate."),
    frames: int = typer.Option(33, help="Frames per clip (4k+1), taken at --fps."),
    fps: float = typer.Option(16.0, help="Frame rate the clips are resampled to (the micro chain uses 4)."),
    chunk: int = typer.Option(3, help="Latent frames per streamed decode chunk."),
    decoder: Path | None = typer.Option(
        None, help="A distilled decoder (s2dit train decoder) to compare with the VAE's own decode."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report here."),
    recon: Path | None = typer.Option(
        None,
        help="Write the reconstructions here (mp4 + clips.jsonl), to score with "
        "s2dit eval micro --videos DIR --prompts DIR/clips.jsonl.",
    ),
) -> None:
    """Reconstruction PSNR, encode speed and streaming decode frames/s of an autoencoder."""
    from s2dit.config import VideoSpec
    from s2dit.eval.vae import evaluate_vae

    report = evaluate_vae(
        str(vae),
        str(videos),
        clips=clips,
        chunk=chunk,
        decoder_path=str(decoder) if decoder else None,
        recon_dir=str(recon) if recon else None,
        spec=VideoSpec(frames=frames, fps=fps),
    )
    rows = [(k, cell(v)) for k, v in report.items()]
    console.print(make_table("autoencoder", ("metric", "value"), rows))
    if json_out:
        write_json(json_out, report)


@app.command("model")
def eval_model(
    checkpoint: list[Path] = typer.Option(
        ...,
        help="A trained run, its model/ folder, or a Wan folder with pipeline.yaml. Repeat to compare "
        "models in one run: the first is the reference of the 'relative' column.",
    ),
    latents: Path = typer.Option(
        ..., help="The encoded latent folder whose held-out clips give the prompts."
    ),
    out: Path = typer.Option(
        ..., help="Folder for latents.pt, videos, contact sheet, prompts.jsonl, scores.json (one per model)."
    ),
    holdout: int = typer.Option(64, help="The folder's last clips held out from training."),
    prompts: int = typer.Option(16, help="Held-out prompts to sample."),
    steps: int | None = typer.Option(None, help="Sampling steps (default: each model's pipeline.yaml)."),
    cfg: float | None = typer.Option(None, help="CFG scale g (default: each model's)."),
    shift: float | None = typer.Option(None, help="Schedule shift (default: each model's)."),
    sampler: str | None = typer.Option(
        None, help=f"{listed(SAMPLERS)} (default: each model's; stream: chunk by chunk, S2DiT only)."
    ),
    frames: int | None = typer.Option(
        None, help="Latent frames per video (default: the training length; e.g. 4x it for long streams)."
    ),
    seed: int = typer.Option(0, help="Prompt i's noise is seeded by seed + i."),
    start_sigma: float = typer.Option(
        1.0,
        help="Below 1: start from each held-out clip noised to this level and run the rest of the schedule "
        "(SDEdit), to see at which noise levels a model loses what the prompt asks.",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    ceilings: bool = typer.Option(
        True, help="Also score the prompts' source clips and their VAE reconstructions (the ceilings)."
    ),
    dtype: str = typer.Option(
        "float32",
        help="float32 (the default: recorded scores do not depend on the machine), bfloat16 or auto "
        "(bf16 where a bf16 matmul measures >= 1.5x float32): what sampling computes in.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON."),
) -> None:
    """Sample held-out prompts from one or more checkpoints and score them (the training's evaluation),
    with each model's sampling time per video measured in the same run (FPS: decoded frames per second of
    sampling, the decode left out). The headline is the prompt pass rate; 'relative' is each model's pass
    rate over the first's."""
    from s2dit.data.micro.metrics import format_by_count
    from s2dit.eval.models import compare_models

    compute = check_dtype(dtype, device)
    results = compare_models(
        checkpoint,
        latents,
        out,
        holdout=holdout,
        prompts=prompts,
        steps=steps,
        cfg=cfg,
        shift=shift,
        sampler=sampler,
        frames=frames,
        start_sigma=start_sigma,
        seed=seed,
        device=device,
        ceilings=ceilings,
        dtype=compute,
        notice=console.print,
    )
    if not results:
        return
    reference = results[0]["pass_rate"]
    keys = list(results[0]["accuracy"])
    rows = [
        (
            Path(r["checkpoint"]).name,
            r["steps"],
            r["cfg"],
            f"{r['pass_rate']:.3f}",
            format_by_count(r.get("pass_rate_by_count", {})),
            *("-" if r["accuracy"][k] is None else f"{r['accuracy'][k]:.3f}" for k in keys),
            f"{r['mean_accuracy']:.3f}",
            f"{r['pass_rate'] / reference:.3f}" if reference else "-",
            "-" if r["seconds_per_video"] is None else f"{r['seconds_per_video']:.2f}",
            "-" if r.get("frames_per_second") is None else f"{r['frames_per_second']:.1f}",
        )
        for r in results
    ]
    counts = "/".join(results[0].get("pass_rate_by_count", {}))
    by_count = f"pass {counts} obj"
    columns = (
        "model",
        "steps",
        "cfg",
        "pass rate",
        by_count,
        *keys,
        "mean acc",
        "relative",
        "s/video",
        "FPS",
    )
    console.print(make_table(f"{results[0]['clips']} held-out prompts, {device}", columns, rows))
    if json_out is not None:
        payload = {"schema": "s2dit.eval_models/1", "device": device, "frames": frames, "models": results}
        write_json(json_out, payload)
    console.print(f"samples and scores: {out}")


@app.command("streams")
def eval_streams(
    checkpoint: Path = typer.Option(..., help="A streaming S2DiT: a trained run or its model/ folder."),
    latents: Path = typer.Option(
        ..., help="The encoded latent folder whose held-out clips give the prompts."
    ),
    out: Path = typer.Option(..., help="Folder for streams.json and the per-window scores."),
    holdout: int = typer.Option(64, help="The folder's last clips held out from training."),
    prompts: int = typer.Option(16, help="Held-out prompts to stream."),
    lengths: str = typer.Option(
        "4,16", help="Stream lengths, as multiples of the training length, comma-separated."
    ),
    switches: bool = typer.Option(
        True, help="Also stream prompt switches and score the frames after each switch."
    ),
    seed: int = typer.Option(0, help="Prompt i's noise is seeded by seed + i."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
) -> None:
    """Stream held-out prompts far past the training length and across prompt switches, and score each
    training-length window of the video: drift is the last window's pass rate minus the first's; after a
    switch, the frames made after it are scored against the new prompt, beside that prompt's pass rate
    from a fresh start."""
    from s2dit.errors import S2DitError
    from s2dit.eval.long_streams import evaluate_streams

    check_device(device)
    try:
        multiples = tuple(int(x) for x in lengths.split(","))
    except ValueError:
        raise S2DitError(f"--lengths {lengths!r}: whole numbers separated by commas, e.g. 4,16") from None
    report = evaluate_streams(
        checkpoint,
        latents,
        out,
        holdout=holdout,
        prompts=prompts,
        lengths=multiples,
        switches=switches,
        seed=seed,
        device=device,
        progress=lambda text: console.print(text, style="dim"),
    )
    rows = [
        (
            f"{n}x",
            str(r["windows"]),
            f"{r['first']:.3f}",
            f"{r['last']:.3f}",
            f"{r['drift']:+.3f}",
            f"{r['window_mean_accuracy'][0]:.3f} -> {r['window_mean_accuracy'][-1]:.3f}",
        )
        for n, r in report["lengths"].items()
    ]
    title = f"{report['prompts']} held-out prompts, windows of {report['window_frames']} frames"
    columns = ("length", "windows", "first pass", "last pass", "drift", "mean accuracy first -> last")
    console.print(make_table(title, columns, rows))
    if "switch" in report:
        s = report["switch"]
        ratio = "-" if s["ratio"] is None else f"{s['ratio']:.3f}"
        rows = [(f"{s['pass_rate_after_switch']:.3f}", f"{s['fresh_start_pass_rate']:.3f}", ratio)]
        console.print(make_table("prompt switch", ("after the switch", "fresh start", "ratio"), rows))
    if json_out is not None:
        write_json(json_out, report)
    console.print(f"scores: {out}")
