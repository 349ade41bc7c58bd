"""``s2dit model ...``: inspect architectures; ship trained models into weights/ and check them."""

from __future__ import annotations

from pathlib import Path

import typer

from s2dit.cli.common import console, make_table
from s2dit.diffusion.sampler_names import ALL as SAMPLERS
from s2dit.diffusion.sampler_names import listed
from s2dit.errors import S2DitError

app = typer.Typer(
    help="Inspect S2DiT architectures (parameters, FLOPs, layouts); ship trained models into weights/ and "
    "check their recorded scores.",
    no_args_is_help=True,
)


@app.command("info")
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
        make_table(
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
        make_table(
            "GFLOPs per latent frame (bidirectional pass; text once per prompt)",
            ("part", "GFLOPs", "share"),
            rows,
        )
    )


@app.command("ship")
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


@app.command("experts")
def model_experts(
    high: Path = typer.Argument(..., help="The Wan model for the noisy levels (a run or its model/)."),
    low: Path = typer.Argument(..., help="The Wan model for the levels below the boundary."),
    dest: Path = typer.Argument(..., help="The new two-expert folder (replaced in one step)."),
    boundary: float = typer.Option(..., help="Noise level σ in (0, 1) where the low expert takes over."),
) -> None:
    """Join two Wan models into one Wan2.2-style two-expert folder (transformer/, transformer_2/,
    model_index.json's boundary_ratio), which samples, evaluates and ships like one model."""
    from s2dit.eval.ship import join_experts

    for path in (high, low):
        if not path.exists():
            raise S2DitError(f"{path} does not exist")
    join_experts(high, low, dest, boundary)
    console.print(f"joined {high} (σ >= {boundary:g}) and {low} (below) -> {dest}")


@app.command("check")
def model_check(
    folder: Path = typer.Argument(..., help="A shipped model folder, e.g. weights/micro_teacher."),
    latents: Path = typer.Option(
        ..., help="An encoded micro-world folder whose held-out clips give the prompts."
    ),
    holdout: int = typer.Option(64, help="The folder's last clips held out from training."),
    count: int = typer.Option(8, help="Held-out prompts in the check."),
    sampler: str | None = typer.Option(
        None,
        help=f"{listed(SAMPLERS)} (default: the model's pipeline.yaml; stream: S2DiT chunk by chunk).",
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
    if sampler is not None and sampler not in SAMPLERS:
        raise S2DitError(f"--sampler {sampler!r}: choose from {listed(SAMPLERS)}")
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
