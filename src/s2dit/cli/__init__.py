"""The ``s2dit`` command. Commands only parse arguments and call library functions.

User mistakes (:class:`~s2dit.errors.S2DitError`) print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from s2dit.errors import ConfigError, S2DitError

app = typer.Typer(
    name="s2dit",
    help="S2DiT: the Streaming Sandwich Diffusion Transformer (text-to-video streaming on small devices).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Make and inspect datasets (the procedural micro world, video folders).", no_args_is_help=True
)
eval_app = typer.Typer(help="Score generated videos.", no_args_is_help=True)
model_app = typer.Typer(
    help="Inspect S2DiT architectures (parameters, FLOPs, layouts); ship trained models into weights/ and "
    "check their recorded scores.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")
bench_app = typer.Typer(
    help="Benchmarks: print tables and write JSON (ratios measured in one run).", no_args_is_help=True
)
train_app = typer.Typer(
    help="Train models (resumable: rerun the same command to continue). "
    "'s2dit train --config FILE' trains a denoiser (under torchrun on several processes, too); "
    "'s2dit train vae' trains the tiny autoencoder.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")
distill_app = typer.Typer(help="2-in-1 distillation: the teacher trajectory cache.", no_args_is_help=True)
app.add_typer(distill_app, name="distill")
export_app = typer.Typer(
    help="On-device export of the streaming model and its decoder (ONNX, ExecuTorch, Core ML); a runner.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")
search_app = typer.Typer(
    help="Budget-aware layout search: quality proxy (supernet), the DP, the Pareto sweep.",
    no_args_is_help=True,
)
app.add_typer(search_app, name="search")

console = Console()


@app.callback()
def _global_options(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show third-party libraries' warnings, log lines and loading bars."
    ),
) -> None:
    """The options before the command: s2dit --verbose stream ..."""
    if not verbose:
        from s2dit.quiet import quiet

        quiet()  # before any command imports torch, transformers or diffusers


CONFIG_HELP = "YAML config file (defaults are the built-in ones)."
SET_HELP = "Dotted override, repeatable: --set video.fps=8."


def _cell(value) -> str:
    """A report value as a table cell: floats to 3 decimals, lists space-separated."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _table(title: str, columns: tuple[str, ...], rows) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*map(str, r))
    return table


# ---------------------------------------------------------------------------------------------------
# s2dit data ...
# ---------------------------------------------------------------------------------------------------


@data_app.command("micro")
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


@data_app.command("encode")
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


@data_app.command("inspect")
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
            _table(name, ("value", "count", "share"), [(k, v, f"{v / total:.1%}") for k, v in counts.items()])
        )
    if report["sheet"]:
        console.print(f"contact sheet: {report['sheet']}")


# ---------------------------------------------------------------------------------------------------
# s2dit eval ...
# ---------------------------------------------------------------------------------------------------


@eval_app.command("micro")
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
    from s2dit.atomic import write_text_atomic
    from s2dit.data.micro.metrics import evaluate_folder

    report = evaluate_folder(videos, prompts, shuffle=shuffle, seed=seed)
    rows = [(a, "-" if v is None else f"{v:.3f}") for a, v in report["accuracy"].items()]
    rows.append(("mean accuracy", f"{report['mean_accuracy']:.3f}"))
    rows.append(("pass rate", f"{report['pass_rate']:.3f}"))
    title = f"micro-world scores, {report['clips']} clips" + (" (shuffled prompts)" if shuffle else "")
    console.print(_table(title, ("attribute", "accuracy"), rows))
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))
        console.print(f"report: {json_out}")


@eval_app.command("vae")
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
    from s2dit.atomic import write_text_atomic
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
    rows = [(k, _cell(v)) for k, v in report.items()]
    console.print(_table("autoencoder", ("metric", "value"), rows))
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))


@eval_app.command("model")
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
        None, help="euler, unipc or stream (default: each model's; stream: chunk by chunk, S2DiT only)."
    ),
    frames: int | None = typer.Option(
        None, help="Latent frames per video (default: the training length; e.g. 4x it for long streams)."
    ),
    seed: int = typer.Option(0, help="Prompt i's noise is seeded by seed + i."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    ceilings: bool = typer.Option(
        True, help="Also score the prompts' source clips and their VAE reconstructions (the ceilings)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON."),
) -> None:
    """Sample held-out prompts from one or more checkpoints and score them (the training's evaluation),
    with each model's sampling time per video measured in the same run. The headline is the prompt pass
    rate; 'relative' is each model's pass rate over the first's."""
    import json

    import torch

    from s2dit.atomic import write_text_atomic
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.latent.vae import load_vae
    from s2dit.model.denoiser import load_denoiser
    from s2dit.train.config import EvalConfig
    from s2dit.train.data import LatentBatches
    from s2dit.train.evaluate import evaluate_heldout

    _check_device(device)
    for c in checkpoint:
        if not c.exists():
            raise S2DitError(f"--checkpoint {c} does not exist")
    if sampler is not None and sampler not in ("euler", "unipc", "stream"):
        raise S2DitError(f"--sampler {sampler!r}: choose from euler, unipc, stream")
    if frames is not None and frames < 1:
        raise S2DitError(f"--frames {frames} must be at least 1")
    results = []
    for n, path in enumerate(checkpoint):
        info = read_pipeline(path)
        e = EvalConfig(
            prompts=prompts,
            steps=steps or info.steps,
            cfg=info.cfg if cfg is None else cfg,
            shift=shift or info.shift,
            sampler=sampler or info.sampler,
            seed=seed,
        )
        data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
        model = load_denoiser(path, device)
        if e.sampler == "stream" and not hasattr(model, "forward_chunk"):
            raise S2DitError(f"{path} is not an S2DiT: it cannot stream (use --sampler unipc)")
        vae = load_vae(info.vae) if info.vae else None
        folder = out if len(checkpoint) == 1 else out / f"{n}-{path.name}"
        scores = evaluate_heldout(
            model, data, e, vae, folder, info.fps, torch.device(device), stream=info.stream, frames=frames
        )
        if scores is None:
            console.print(f"{path}: latents written to {folder} (no VAE, or no micro-world prompts)")
            continue
        steps_text = f"{info.stream.steps} stream" if e.sampler == "stream" else str(e.steps)
        cfg_text = "-" if e.sampler == "stream" else f"{e.cfg:g}"
        results.append({"checkpoint": str(path), "steps": steps_text, "cfg": cfg_text, **scores})
    if not results:
        return
    if ceilings:
        from s2dit.train.evaluate import evaluate_ceilings
        from s2dit.train.trainer import latent_source

        info = read_pipeline(checkpoint[0])
        data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
        vae = load_vae(info.vae) if info.vae else None
        e = EvalConfig(prompts=prompts, seed=seed)
        found = evaluate_ceilings(data, e, vae, out / "ceilings", info.fps, latent_source(str(latents)))
        for name, scores in found.items():
            results.append(
                {"checkpoint": name, "steps": "-", "cfg": "-", **scores, "seconds_per_video": None}
            )
    reference = results[0]["pass_rate"]
    keys = list(results[0]["accuracy"])
    rows = [
        (
            Path(r["checkpoint"]).name,
            r["steps"],
            r["cfg"],
            f"{r['pass_rate']:.3f}",
            *("-" if r["accuracy"][k] is None else f"{r['accuracy'][k]:.3f}" for k in keys),
            f"{r['mean_accuracy']:.3f}",
            f"{r['pass_rate'] / reference:.3f}" if reference else "-",
            "-" if r["seconds_per_video"] is None else f"{r['seconds_per_video']:.2f}",
        )
        for r in results
    ]
    columns = ("model", "steps", "cfg", "pass rate", *keys, "mean acc", "relative", "s/video")
    console.print(_table(f"{results[0]['clips']} held-out prompts, {device}", columns, rows))
    if json_out is not None:
        payload = {"schema": "s2dit.eval_models/1", "device": device, "frames": frames, "models": results}
        write_text_atomic(json_out, json.dumps(payload, indent=1))
    console.print(f"samples and scores: {out}")


# ---------------------------------------------------------------------------------------------------
# s2dit model ...
# ---------------------------------------------------------------------------------------------------


@model_app.command("info")
def model_info(
    preset: str = typer.Option("micro", help="Architecture preset: micro or mobile."),
    layout: str | None = typer.Option(None, help="Override the layout, e.g. LLLLSSSSSSSSLLLL."),
    size: str = typer.Option("256x144", help="Video WIDTHxHEIGHT, multiples of 16."),
    frames: int = typer.Option(33, help="Video frames, 4k+1."),
    text_tokens: int = typer.Option(64, help="Text tokens of the prompt."),
) -> None:
    """Print parameters and FLOPs per latent frame by block kind (FLOPs by formula, batch 1)."""
    import dataclasses

    from s2dit.config import VideoSpec, parse_size
    from s2dit.errors import ConfigError
    from s2dit.model.config import preset as get_preset
    from s2dit.model.flops import model_flops, parameter_counts
    from s2dit.model.transformer import S2DiT

    cfg = get_preset(preset)
    if layout is not None:
        cfg = dataclasses.replace(cfg, layout=layout)
    w, h = parse_size(size)
    try:
        video = VideoSpec(width=w, height=h, frames=frames)
    except ConfigError as e:
        raise ConfigError(f"--{str(e).replace('width', 'size').replace('height', 'size')}") from None
    if text_tokens < 1:
        raise S2DitError(f"--text-tokens must be at least 1, got {text_tokens}")
    import torch

    with torch.device("meta"):  # count parameters without allocating them (mobile: 0.5B)
        params = parameter_counts(S2DiT(cfg))
    T = video.latent_frames
    flops = model_flops(cfg, w // 8, h // 8, T, text_tokens)
    console.print(
        f"{preset} ({cfg.layout}), width {cfg.width}, {cfg.heads} heads, FFN {cfg.ffn_dim}; "
        f"{video.size} x {video.frames} frames = {T} latent frames of {(w // 16) * (h // 16)} tokens"
    )
    total_p = sum(params.values())
    console.print(
        _table(
            "parameters",
            ("part", "count", "share"),
            [(k, f"{v / 1e6:.2f}M", f"{v / total_p:.1%}") for k, v in params.items()]
            + [("total", f"{total_p / 1e6:.2f}M", "100%")],
        )
    )
    total_f = sum(flops.values())
    rows = [(k, f"{v / T / 1e9:.3f}", f"{v / total_f:.1%}") for k, v in flops.items()]
    rows.append(("total", f"{total_f / T / 1e9:.3f}", "100%"))
    console.print(
        _table(
            "GFLOPs per latent frame (bidirectional pass; text once per prompt)",
            ("part", "GFLOPs", "share"),
            rows,
        )
    )


@model_app.command("ship")
def model_ship(
    source: Path = typer.Argument(..., help="A trained run, or its model/ folder."),
    dest: Path = typer.Argument(
        ..., help="The new folder, e.g. weights/micro_teacher (replaced in one step)."
    ),
) -> None:
    """Copy a trained model into weights/ in bfloat16 (it loads as float32), its VAE path made relative to
    the new folder. Then record its check with 's2dit model check'."""
    from s2dit.eval.ship import ship

    if not source.exists():
        raise S2DitError(f"{source} does not exist")
    ship(source, dest)
    console.print(f"shipped {source} -> {dest}")


@model_app.command("check")
def model_check(
    folder: Path = typer.Argument(..., help="A shipped model folder, e.g. weights/micro_teacher."),
    latents: Path = typer.Option(
        ..., help="An encoded micro-world folder whose held-out clips give the prompts."
    ),
    holdout: int = typer.Option(64, help="The folder's last clips held out from training."),
    count: int = typer.Option(8, help="Held-out prompts in the check."),
    sampler: str | None = typer.Option(
        None,
        help="euler, unipc or stream (default: the model's pipeline.yaml; stream: S2DiT chunk by chunk).",
    ),
) -> None:
    """Sample a few held-out prompts from a shipped model, score them, and record the result as
    FOLDER/check.json (a slow test samples them again and compares)."""
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.eval.ship import record
    from s2dit.train.data import LatentBatches

    if not folder.exists():
        raise S2DitError(f"{folder} does not exist")
    if count < 1:
        raise S2DitError(f"--count {count} must be at least 1")
    if sampler is not None and sampler not in ("euler", "unipc", "stream"):
        raise S2DitError(f"--sampler {sampler!r}: choose from euler, unipc, stream")
    info = read_pipeline(folder)
    data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
    captions = [r["caption"] for r in data.clips(data.holdout[:count])["rows"]]
    found = record(
        folder,
        captions,
        list(range(len(captions))),
        steps=info.steps,
        cfg=info.cfg,
        shift=info.shift,
        sampler=sampler or info.sampler,
    )
    console.print(
        f"{sum(found.passed)} of {len(captions)} held-out prompts pass, mean accuracy "
        f"{found.mean_accuracy:.3f} ({folder}/check.json)"
    )


# ---------------------------------------------------------------------------------------------------
# s2dit bench ...
# ---------------------------------------------------------------------------------------------------


@bench_app.command("blocks")
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
    from s2dit.atomic import write_text_atomic
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
        console.print(_table(title, columns, summary_rows(table, pass_)))
    if json_out:
        write_text_atomic(json_out, json.dumps(table, indent=1))
        console.print(f"latency table: {json_out}")


@bench_app.command("train")
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
        "auto", help="The fast mode's dtype: auto (bf16 on GPUs and AMX CPUs), float32 or bfloat16."
    ),
    compile: bool = typer.Option(True, help="Compile the fast mode (torch.compile, inductor)."),
    checkpointing: bool = typer.Option(False, help="Activation checkpointing."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
) -> None:
    """Training throughput: float32 eager beside the fast mode (the trainer's default: --dtype, --compile),
    with the ratio; samples/s, tokens/s, FLOP/s and MFU against a matmul peak measured in the same run."""
    from s2dit.atomic import write_text_atomic
    from s2dit.config import parse_size
    from s2dit.eval.bench_train import TEACHER, run_bench
    from s2dit.model.config import PRESETS
    from s2dit.precision import PRECISIONS, compute_dtype

    bad = [p for p in model if p not in (*PRESETS, TEACHER)]
    if bad:
        raise S2DitError(f"unknown model {bad[0]!r} (choose from {', '.join((*PRESETS, TEACHER))})")
    if min(frames, batch, steps) < 1 or warmup < 0:
        raise S2DitError("--frames, --batch and --steps must be at least 1, --warmup at least 0")
    if dtype not in PRECISIONS:
        raise S2DitError(f"--dtype {dtype!r}: choose auto, float32 or bfloat16")
    _check_device(device)
    fast = str(compute_dtype(dtype, device)).removeprefix("torch.")
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
    console.print(_table(title, cols, rows))
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))
        console.print(f"results: {json_out}")


@bench_app.command("stream")
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
    dtype: str = typer.Option("float32", help="float32, or bfloat16 (autocast)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
) -> None:
    """Streaming FPS, first-chunk and per-chunk latency, memory: S2DiT vs the same-width all-F model."""
    from s2dit.atomic import write_text_atomic
    from s2dit.config import parse_size
    from s2dit.diffusion.streaming import StreamSettings
    from s2dit.eval.bench_stream import run_bench
    from s2dit.model.config import PRESETS

    if preset not in PRESETS:
        raise S2DitError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if min(chunks, steps, chunk, window) < 1 or sink < 0:
        raise S2DitError("--chunks, --steps, --chunk and --window must be at least 1, --sink at least 0")
    if dtype not in ("float32", "bfloat16"):
        raise S2DitError(f"--dtype {dtype!r}: choose float32 or bfloat16")
    _check_device(device)
    settings = StreamSettings(steps=steps, chunk_frames=chunk, window_chunks=window, sink_chunks=sink)
    report = run_bench(
        preset, parse_size(size), chunks, settings, device, dtype, str(vae) if vae else None, full_history
    )
    title = (
        f"streaming, {report['device']} ({report['threads']} threads), {dtype}, {size}, preset {preset}, "
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
            )
        )
    cols = ("model", "params", "first chunk ms", "denoise FPS", "end-to-end FPS")
    cols += (*(f"chunk {m} ms" for m in marks), "state MB", "peak MB")
    Console(width=max(console.width, 150)).print(_table(title, cols, rows))
    for name, ratio in report["ratios"].items():
        console.print(f"s2dit vs {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))
        console.print(f"results: {json_out}")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda") or (device == "cuda" and not _cuda_available()):
        raise S2DitError(f"--device {device!r}: choose cpu, or cuda on a machine with a GPU")


# ---------------------------------------------------------------------------------------------------
# s2dit train ...
# ---------------------------------------------------------------------------------------------------


@train_app.callback(invoke_without_command=True)
def train_denoiser(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, help=CONFIG_HELP + " E.g. configs/micro_teacher.yaml or configs/micro_s2dit.yaml."
    ),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    max_steps: int | None = typer.Option(None, help="Stop after this step (the run can be resumed later)."),
    max_seconds: float | None = typer.Option(
        None, help="Stop (with a checkpoint) at the first step boundary after this many seconds."
    ),
) -> None:
    """Train a denoiser: flow matching on encoded latents, or a distillation stage (method: kd, causal_ode,
    dmd; see configs/micro_kd.yaml); rerun the same command to resume.

    Launch with torchrun for several processes: torchrun --nproc-per-node N $(which s2dit) train --config F
    """
    if ctx.invoked_subcommand is not None:
        return
    from s2dit.config import load_config
    from s2dit.distill.methods import build_method
    from s2dit.train.config import TrainConfig
    from s2dit.train.trainer import train

    if config is None:
        raise S2DitError("s2dit train needs --config FILE (or a subcommand: s2dit train vae ...)")
    if max_steps is not None and max_steps < 1:
        raise S2DitError(f"--max-steps must be at least 1, got {max_steps}")
    if max_seconds is not None and not 0 < max_seconds < math.inf:
        raise S2DitError(f"--max-seconds must be positive and finite, got {max_seconds}")
    cfg = load_config(TrainConfig, config, list(set_))
    row = train(cfg, max_steps=max_steps, max_seconds=max_seconds, build_method=build_method)
    console.print(", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))


def _speaks_micro(checkpoint: Path | None) -> bool:
    """Whether a checkpoint takes micro-world prompts (it reads them with the micro world's text encoder)."""
    if checkpoint is None or not checkpoint.exists():
        return False
    from s2dit.diffusion.pipeline import read_pipeline

    return read_pipeline(checkpoint).text == "minilm"


def _check_text(texts: list[str], what: str = "the prompt") -> None:
    """Refuse text that is not valid Unicode: argument bytes that are not UTF-8 reach Python as lone
    surrogates, which no tokenizer takes."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "backslashreplace").decode()
            raise S2DitError(f"{what} '{shown}' is not valid UTF-8 text") from None


def _warn_unknown_words(prompts: list[str], checkpoint: Path | None) -> None:
    """One line on stderr per micro-world prompt naming what the micro world cannot draw."""
    if not _speaks_micro(checkpoint):
        return
    from s2dit.data.micro.captions import unknown_words_warning

    for prompt in prompts:
        if warning := unknown_words_warning(prompt):
            typer.echo(f"warning: {warning}", err=True)


@app.command("generate")
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
    sampler: str | None = typer.Option(None, help="euler or unipc (default: the model's, else unipc)."),
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

    _check_text([prompt])
    _check_text([negative], "--negative")
    checkpoint = checkpoint or shipped_model(GENERATE_MODEL)
    _warn_unknown_words([prompt], checkpoint)
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

    _check_device(device)
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
PREVIEW_SECONDS = 30  # the GIF beside the mp4 shows at most this much of the stream


def _stream_help() -> str:
    from s2dit.data.micro.guide import world_guide

    return (
        "Stream a video chunk by chunk, writing frames as they arrive (and a GIF of them beside the mp4); "
        f"switch prompts with --then/--at.\n\n{world_guide()}"
    )


@app.command("stream", help=_stream_help())
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
    dtype: str = typer.Option(
        "auto", help="auto (bf16 autocast on GPUs and AMX CPUs, else float32), float32 or bfloat16."
    ),
) -> None:
    from s2dit.diffusion.stream_pipeline import stream_to_file
    from s2dit.precision import PRECISIONS, compute_dtype
    from s2dit.videoio import read_video, write_gif

    if len(then) != len(at):
        raise S2DitError(f"{len(then)} --then prompt(s) but {len(at)} --at time(s): give one --at per --then")
    if not 0 < seconds < math.inf or not all(0 <= a < seconds for a in at):  # NaN fails both
        raise S2DitError("--seconds must be positive and finite and every --at within [0, --seconds)")
    if dtype not in PRECISIONS:
        raise S2DitError(f"--dtype {dtype!r}: choose auto, float32 or bfloat16")
    _check_text([prompt, *then])
    checkpoint = _stream_checkpoint(checkpoint, random_weights)
    _warn_unknown_words([prompt, *then], checkpoint)
    parts = _stream_parts(
        checkpoint, random_weights, preset, size, vae, device, chunk, window, sink, steps, shift
    )
    done = stream_to_file(
        parts, prompt, list(zip(at, then, strict=True)), seconds, out, seed, compute_dtype(dtype, device)
    )
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


@app.command("serve")
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
) -> None:
    """Serve a local web page: type a prompt, watch the stream, change the prompt live, stop."""
    from s2dit.serve.server import serve as make_server

    if not 0 <= port < 65536 or max_streams < 1:
        raise S2DitError("--port must be in [0, 65535] and --max-streams at least 1")
    checkpoint = _stream_checkpoint(checkpoint, random_weights)
    parts = _stream_parts(
        checkpoint, random_weights, preset, size, vae, device, None, window, None, steps, None
    )
    server = make_server(parts, host, port, max_streams, check_prompts=_speaks_micro(checkpoint))
    console.print(f"s2dit live viewer at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@train_app.command("vae")
def train_vae(
    config: Path | None = typer.Option(None, help=CONFIG_HELP + " E.g. configs/micro_vae.yaml."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    max_steps: int | None = typer.Option(None, help="Stop after this step (the run can be resumed later)."),
) -> None:
    """Train an autoencoder on a clip folder: the tiny autoencoder (the micro world's VAE), or a small Wan
    VAE with --set kind=wan."""
    from s2dit.config import load_config
    from s2dit.train.vae import AETrainConfig, train_autoencoder

    cfg = load_config(AETrainConfig, config, list(set_))
    if max_steps is not None and max_steps < 1:
        raise S2DitError(f"--max-steps must be at least 1, got {max_steps}")
    metrics = train_autoencoder(cfg, max_steps=max_steps)
    console.print(
        ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
    )


# ---------------------------------------------------------------------------------------------------
# s2dit search ...
# ---------------------------------------------------------------------------------------------------

LATENCY_HELP = "Latency table JSON (s2dit bench blocks --json, or one measured on a device)."
QUALITY_HELP = "Quality scores JSON (s2dit search supernet writes OUT/quality.json)."
TOKENS_HELP = "Full-resolution tokens per pass (e.g. 432 = one 3-latent-frame chunk at 256x144)."


def _search_inputs(latency: Path, quality: Path, depth: int, tokens: int, kinds: str | None):
    from s2dit.search.latency import LatencyTable
    from s2dit.search.supernet import load_quality
    from s2dit.search.sweep import build_problem

    if depth < 1 or tokens < 1:
        raise S2DitError("--depth and --tokens must be at least 1")
    table = LatencyTable.load(latency)
    scores = load_quality(quality)
    return table, build_problem(table, scores, depth, tokens, kinds)


@search_app.command("supernet")
def search_supernet(
    latents: Path = typer.Option(..., help="Encoded latent folder (s2dit data encode)."),
    out: Path = typer.Option(Path("runs/supernet"), help="Run folder: supernet.pt and quality.json."),
    depth: int = typer.Option(10, help="Depth positions."),
    kinds: str = typer.Option("LS", help="Candidate kinds per position (letters from L, S, F)."),
    preset: str = typer.Option("micro", help="Width, heads, FFN and text width from this preset."),
    steps: int = typer.Option(300, help="Training steps (one random layout each)."),
    batch: int = typer.Option(8, help="Clips per step."),
    lr: float = typer.Option(5e-4, help="Learning rate (AdamW)."),
    holdout: int = typer.Option(64, help="The folder's last clips, never trained on, scored on."),
    eval_clips: int = typer.Option(16, help="Held-out clips for scoring."),
    eval_layouts: int = typer.Option(4, help="Random layouts per (position, kind) when scoring."),
    seed: int = typer.Option(0, help="Seed of layouts, data order and noise."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Train a weight-sharing supernet briefly and score every (position, kind): the quality proxy."""
    from s2dit.model.config import preset as model_preset
    from s2dit.search.supernet import SupernetConfig, train_supernet

    _check_device(device)
    base = model_preset(preset)
    cfg = SupernetConfig(
        latents=str(latents),
        out=str(out),
        depth=depth,
        kinds=kinds,
        width=base.width,
        heads=base.heads,
        ffn_dim=base.ffn_dim,
        text_dim=base.text_dim,
        steps=steps,
        batch_size=batch,
        lr=lr,
        holdout=holdout,
        eval_clips=eval_clips,
        eval_layouts=eval_layouts,
        seed=seed,
    )
    report = train_supernet(cfg, device)
    rows = [(i, *(f"{r[k]:.4f}" for k in kinds), min(r, key=r.get)) for i, r in enumerate(report["losses"])]
    console.print(
        _table("held-out loss per (position, kind)", ("position", *kinds, "best (lowest loss)"), rows)
    )
    console.print(f"quality scores: {out / 'quality.json'}")


@search_app.command("layout")
def search_layout(
    latency: Path = typer.Option(..., help=LATENCY_HELP),
    quality: Path = typer.Option(..., help=QUALITY_HELP),
    budget_ms: float = typer.Option(..., help="Latency budget per pass (ms), blocks and stage transitions."),
    depth: int = typer.Option(..., help="Depth positions (must match the quality file)."),
    tokens: int = typer.Option(..., help=TOKENS_HELP),
    kinds: str | None = typer.Option(None, help="Candidate kinds (default: those in both files)."),
    param_cap: float | None = typer.Option(None, help="Also keep the blocks' parameters under this count."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result here."),
) -> None:
    """The best layout under a latency budget, with its predicted latency and quality."""
    from s2dit.atomic import write_text_atomic
    from s2dit.search.dp import solve_stable
    from s2dit.search.sweep import describe, reference_layouts

    table, problem = _search_inputs(latency, quality, depth, tokens, kinds)
    if not 0 < budget_ms < math.inf:  # NaN fails too
        raise S2DitError(f"--budget-ms must be positive and finite, got {budget_ms}")
    found = solve_stable(problem, budget_ms, param_cap=param_cap)
    if found is None:
        cheapest = min(problem.latency("L" * depth), problem.latency("S" * depth))
        raise S2DitError(
            f"no layout fits {budget_ms} ms (the cheapest uniform layout takes {cheapest:.2f} ms)"
        )
    parts = table.layout_latency(found.layout, tokens)
    console.print(f"layout [bold]{found.layout}[/] for a budget of {budget_ms:g} ms at {tokens} tokens")
    console.print(
        f"predicted {found.latency_ms:.2f} ms ("
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "total")
        + f"), quality {found.quality:+.4f}, {found.parameters / 1e6:.2f}M block parameters"
    )
    refs = {"chosen": found.layout, **reference_layouts(depth, problem.kinds)}
    rows = [
        (name, d["layout"], f"{d['latency_ms']:.2f}", f"{d['quality']:+.4f}", f"{d['parameters'] / 1e6:.2f}M")
        for name, d in ((n, describe(problem, lay)) for n, lay in refs.items())
    ]
    console.print(
        _table(
            f"{table.device}, {table.dtype}, width {table.width}",
            ("", "layout", "ms", "quality", "params"),
            rows,
        )
    )
    if json_out:
        write_text_atomic(json_out, json.dumps({"solution": found.as_dict(), "parts_ms": parts}, indent=1))


@search_app.command("sweep")
def search_sweep(
    latency: Path = typer.Option(..., help=LATENCY_HELP),
    quality: Path = typer.Option(..., help=QUALITY_HELP),
    depth: int = typer.Option(..., help="Depth positions (must match the quality file)."),
    tokens: int = typer.Option(..., help=TOKENS_HELP),
    out: Path = typer.Option(Path("runs/search"), help="Folder for pareto.json and pareto.png."),
    points: int = typer.Option(30, help="Budgets swept, from the cheapest to the dearest layout."),
    kinds: str | None = typer.Option(None, help="Candidate kinds (default: those in both files)."),
    reference: list[str] = typer.Option([], help="A hand-made layout to mark, repeatable."),
) -> None:
    """Sweep budgets: the Pareto front of latency vs quality as JSON and a PNG, with references marked."""
    from s2dit.search.sweep import reference_layouts, sweep, write_sweep

    if not 2 <= points <= 10_000:
        raise S2DitError(f"--points must be in 2..10000, got {points}")
    table, problem = _search_inputs(latency, quality, depth, tokens, kinds)
    refs = reference_layouts(depth, problem.kinds, list(reference))
    found, front = sweep(problem, points)
    meta = {
        "device": table.device,
        "dtype": table.dtype,
        "width": table.width,
        "tokens": tokens,
        "depth": depth,
        "kinds": problem.kinds,
        "latency_table": str(latency),
        "quality": str(quality),
    }
    latency_only = {}
    if "F" in table.kinds and "F" not in problem.kinds:
        latency_only["all-F"] = table.layout_latency("F" * depth, tokens)["total"]
    report = write_sweep(out, problem, found, front, refs, meta, latency_only)
    rows = [(s.layout, f"{s.latency_ms:.2f}", f"{s.quality:+.4f}") for s in front]
    console.print(
        _table(f"Pareto front ({len(front)} of {len(found)} solutions)", ("layout", "ms", "quality"), rows)
    )
    for name, r in report["references"].items():
        console.print(f"{name}: {r['latency_ms']:.2f} ms, quality {r['quality']:+.4f}")
    for name, r in report["latency_only"].items():
        console.print(f"{name}: {r['latency_ms']:.2f} ms (no quality score for its kinds)")
    console.print(f"wrote {out / 'pareto.json'} and {out / 'pareto.png'}")


@train_app.command("decoder")
def train_decoder(
    vae: Path | None = typer.Option(
        None, help="The VAE to imitate: a diffusers Wan VAE folder or a tiny_ae folder."
    ),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP + " E.g. --set data=runs/micro --set out=DIR."),
    max_steps: int | None = typer.Option(None, help="Stop after this step (the run can be resumed later)."),
) -> None:
    """Distil a fast streaming decoder (a tiny autoencoder's decoder) for another VAE's latents."""
    from s2dit.config import load_config
    from s2dit.train.decoder import DecoderTrainConfig
    from s2dit.train.decoder import train_decoder as run

    overrides = list(set_) + ([f"vae={vae}"] if vae else [])
    cfg = load_config(DecoderTrainConfig, config, overrides)
    if max_steps is not None and max_steps < 1:
        raise S2DitError(f"--max-steps must be at least 1, got {max_steps}")
    metrics = run(cfg, max_steps=max_steps)
    console.print(
        ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
    )


@distill_app.command("cache")
def distill_cache(
    teacher: Path = typer.Option(
        ..., help="Teacher folder or run (its pipeline.yaml names text encoder and shape)."
    ),
    prompts: Path = typer.Option(
        ...,
        help="Prompts: one per line, a .jsonl with caption rows, or an encoded latent folder (its "
        "captions and stored text embeddings; no text encoder needed).",
    ),
    out: Path = typer.Option(Path("runs/trajectories"), help="Cache folder."),
    steps: int = typer.Option(48, help="Euler steps of the teacher's ODE."),
    cfg: float = typer.Option(6.0, help="CFG scale g in u + g·(c - u)."),
    shift: float | None = typer.Option(None, help="Schedule shift (default: the teacher's)."),
    keep: str = typer.Option("all", help="Levels kept per sample: all, or a count K (evenly spaced)."),
    negative: str = typer.Option("", help="Negative prompt (the u of CFG)."),
    seed: int = typer.Option(0, help="Sample i starts from noise seeded by seed + i."),
    batch: int = typer.Option(4, help="Prompts per teacher batch."),
    count: int = typer.Option(0, help="Use the first N prompts only (0: all; keep held-out ones out)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Cache teacher ODE trajectories (resumable; under torchrun each rank makes its own samples)."""
    from s2dit.distill.cache import CacheConfig, build_cache

    _check_device(device)
    config = CacheConfig(
        teacher=str(teacher),
        prompts=str(prompts),
        out=str(out),
        steps=steps,
        cfg=cfg,
        shift=shift,
        keep=keep,
        negative=negative,
        seed=seed,
        batch=batch,
        count=count,
    )
    done = build_cache(config, device)
    state = "complete" if done["complete"] else "this rank's part done"
    console.print(
        f"{done['out']}: {done['samples']} samples ({done['made']} made by rank {done['rank']}); {state}"
    )


@bench_app.command("export")
def bench_export_cmd(
    folders: list[Path] = typer.Argument(..., help="Export folders (ONNX, ExecuTorch) of one checkpoint."),
    repeats: int = typer.Option(20, help="Timed calls per graph (the median is reported)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """Per-step latency of exported graphs vs eager PyTorch (same inputs, one run), and artefact sizes."""
    import json

    from s2dit.atomic import write_text_atomic
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
    console.print(_table(title, columns, rows))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result, indent=1))


# ---------------------------------------------------------------------------------------------------
# s2dit export ...
# ---------------------------------------------------------------------------------------------------


def _export(runtime: str, checkpoint, random_weights, preset, size, chunk, vae, out, quantize=False) -> None:
    import dataclasses
    import warnings

    from s2dit.config import parse_size
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.diffusion.stream_pipeline import load_stream_model
    from s2dit.export.build import export_stream
    from s2dit.latent.tiny_ae import TinyAutoencoder

    if (checkpoint is None) == (not random_weights):
        raise S2DitError("pass --checkpoint PATH, or --random-weights to export an untrained --preset")
    width, height = parse_size(size) if size else (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = load_stream_model(
            str(checkpoint) if checkpoint else None,
            vae=str(vae) if vae else None,
            preset=preset,
            size=(width or 256, height or 144),
        )
    latent_size = (height // 8, width // 8) if width and checkpoint else parts.latent_size
    if chunk is not None:
        if chunk < 1:
            raise S2DitError(f"--chunk {chunk} must be at least 1")
        parts.settings = dataclasses.replace(parts.settings, chunk_frames=chunk)
    ae = parts.vae if isinstance(parts.vae, TinyAutoencoder) else None
    if ae is None:
        console.print(
            "[yellow]warning:[/] the model's VAE is not a tiny autoencoder: exporting without a decoder "
            "(distil one with s2dit train decoder and pass it as --vae)"
        )
    if checkpoint:
        info = read_pipeline(checkpoint)
        text, text_len, label = info.text, info.text_len, str(checkpoint)
    else:
        text, text_len, label = "hashed", 8, f"random-weights:{preset}"
    manifest = export_stream(
        parts.model,
        ae,
        runtime,
        out,
        latent_size,
        parts.settings,
        text_len=text_len,
        text_encoder=text,
        fps=parts.fps,
        checkpoint=label,
        quantize=quantize,
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
        _table(f"{runtime} export: {out}", ("entry point", "file", "inputs", "outputs", "MB"), rows)
    )
    w, h = manifest.video_size
    console.print(
        f"{w}x{h}, chunk {parts.settings.chunk_frames} latent frames; manifest: {Path(out) / 'manifest.json'}"
    )


def _export_options(runtime: str, what: str):
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
    ) -> None:
        _export(runtime, checkpoint, random_weights, preset, size, chunk, vae, out)

    command.__doc__ = f"Export the streaming step (prompt, denoise, commit) and the decoder {what}."
    return command


export_app.command("onnx")(_export_options("onnx", "to ONNX (run with onnxruntime)"))


@export_app.command("executorch")
def export_executorch(
    checkpoint: Path | None = typer.Option(None, help="A trained S2DiT run or model folder."),
    random_weights: bool = typer.Option(False, help="Export an untrained --preset (sizes and speed only)."),
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
        False, help="int8 linear layers (dynamic activations) in the per-step graphs, XNNPACK int8 kernels."
    ),
) -> None:
    """Export the streaming step (prompt, denoise, commit) and the decoder to ExecuTorch .pte files lowered
    to XNNPACK (float32, or int8 with --quantize)."""
    _export("executorch", checkpoint, random_weights, preset, size, chunk, vae, out, quantize)


export_app.command("coreml")(
    _export_options("coreml", "to Core ML mlprogram packages (float16, iOS 18; prediction needs macOS)")
)


@export_app.command("run")
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
    _check_text([prompt])
    done = run_export(folder, prompt, seconds, out, seed)
    console.print(
        f"wrote {done['out']}: {done['frames']} frames in {done['chunks']} chunks ({done['runtime']})"
    )


def main() -> None:
    try:
        app()
    except S2DitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
