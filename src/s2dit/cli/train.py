"""``s2dit train ...``: train a denoiser (the group's own command), an autoencoder or a decoder."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from s2dit.cli.common import CONFIG_HELP, SET_HELP, console
from s2dit.errors import S2DitError

app = typer.Typer(
    help="Train models (resumable: rerun the same command to continue). "
    "'s2dit train --config FILE' trains a denoiser (under torchrun on several processes, too); "
    "'s2dit train vae' trains the tiny autoencoder.",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
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
    import s2dit.distill.methods  # noqa: F401 - registers the distillation methods with the trainer
    from s2dit.config import load_config
    from s2dit.train.config import TrainConfig
    from s2dit.train.trainer import train

    if config is None:
        raise S2DitError("s2dit train needs --config FILE (or a subcommand: s2dit train vae ...)")
    if max_steps is not None and max_steps < 1:
        raise S2DitError(f"--max-steps must be at least 1, got {max_steps}")
    if max_seconds is not None and not 0 < max_seconds < math.inf:
        raise S2DitError(f"--max-seconds must be positive and finite, got {max_seconds}")
    cfg = load_config(TrainConfig, config, list(set_))
    row = train(cfg, max_steps=max_steps, max_seconds=max_seconds)
    console.print(", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))


@app.command("vae")
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


@app.command("decoder")
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
