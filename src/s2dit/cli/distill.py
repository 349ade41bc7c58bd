"""``s2dit distill ...``: the teacher trajectory cache."""

from __future__ import annotations

import typer

from s2dit.cli.common import check_device, config_options, console
from s2dit.distill.cache_config import CacheConfig

app = typer.Typer(help="2-in-1 distillation: the teacher trajectory cache.", no_args_is_help=True)


CACHE_HELP = {
    "teacher": "Teacher folder or run (its pipeline.yaml names text encoder and shape).",
    "prompts": "Prompts: one per line, a .jsonl with caption rows, or an encoded latent folder (its "
    "captions and stored text embeddings; no text encoder needed).",
    "out": "Cache folder.",
    "steps": "Euler steps of the teacher's ODE.",
    "cfg": "CFG scale g in u + g·(c - u).",
    "shift": "Schedule shift (default: the teacher's).",
    "keep": "Levels kept per sample: all, or a count K (evenly spaced).",
    "negative": "Negative prompt (the u of CFG).",
    "seed": "Sample i starts from noise seeded by seed + i.",
    "batch": "Prompts per teacher batch.",
    "frames": "Latent frames per sample (default: the teacher's latent shape).",
    "count": "Use the first N prompts only (0: all; keep held-out ones out).",
}


@app.command("cache")
@config_options(CacheConfig, CACHE_HELP, required=("teacher", "prompts"))
def distill_cache(config: CacheConfig, device: str = typer.Option("cpu", help="cpu or cuda.")) -> None:
    """Cache teacher ODE trajectories (resumable; under torchrun each rank makes its own samples)."""
    from s2dit.distill.cache import build_cache

    check_device(device)
    done = build_cache(config, device)
    state = "complete" if done["complete"] else "this rank's part done"
    console.print(
        f"{done['out']}: {done['samples']} samples ({done['made']} made by rank {done['rank']}); {state}"
    )
