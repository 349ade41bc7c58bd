"""``s2dit distill ...``: the teacher trajectory cache."""

from __future__ import annotations

from pathlib import Path

import typer

from s2dit.cli.common import check_device, console

app = typer.Typer(help="2-in-1 distillation: the teacher trajectory cache.", no_args_is_help=True)


@app.command("cache")
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

    check_device(device)
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
