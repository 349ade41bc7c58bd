"""``s2dit search ...``: the budget-aware layout search."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import typer

from s2dit.cli.common import check_device, config_options, console, make_table, write_json
from s2dit.errors import S2DitError
from s2dit.search.supernet_config import SupernetConfig

app = typer.Typer(
    help="Budget-aware layout search: quality proxy (supernet), the DP, the Pareto sweep.",
    no_args_is_help=True,
)


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


SUPERNET_HELP = {
    "latents": "Encoded latent folder (s2dit data encode).",
    "out": "Run folder: checkpoints/ and quality.json.",
    "depth": "Depth positions.",
    "kinds": "Candidate kinds per position (letters from L, S, F).",
    "steps": "Training steps (one random layout each).",
    "batch_size": "Clips per step.",
    "lr": "Learning rate (AdamW).",
    "holdout": "The folder's last clips, never trained on, scored on.",
    "eval_clips": "Held-out clips for scoring.",
    "eval_layouts": "Random layouts per (position, kind) when scoring.",
    "seed": "Seed of layouts, data order and noise.",
}


@app.command("supernet")
@config_options(SupernetConfig, SUPERNET_HELP, required=("latents",), names={"batch_size": "batch"})
def search_supernet(
    config: SupernetConfig,
    preset: str = typer.Option("micro", help="Width, heads, FFN and text width from this preset."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
) -> None:
    """Train a weight-sharing supernet briefly and score every (position, kind): the quality proxy."""
    from s2dit.model.config import preset as model_preset
    from s2dit.search.supernet import train_supernet

    check_device(device)
    base = model_preset(preset)
    cfg = dataclasses.replace(
        config, width=base.width, heads=base.heads, ffn_dim=base.ffn_dim, text_dim=base.text_dim
    )
    report = train_supernet(cfg, device)
    kinds = cfg.kinds
    rows = [(i, *(f"{r[k]:.4f}" for k in kinds), min(r, key=r.get)) for i, r in enumerate(report["losses"])]
    console.print(
        make_table("held-out loss per (position, kind)", ("position", *kinds, "best (lowest loss)"), rows)
    )
    console.print(f"quality scores: {Path(cfg.out) / 'quality.json'}")


@app.command("layout")
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
        make_table(
            f"{table.device}, {table.dtype}, width {table.width}",
            ("", "layout", "ms", "quality", "params"),
            rows,
        )
    )
    if json_out:
        write_json(json_out, {"solution": found.as_dict(), "parts_ms": parts})


@app.command("sweep")
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
        make_table(
            f"Pareto front ({len(front)} of {len(found)} solutions)", ("layout", "ms", "quality"), rows
        )
    )
    for name, r in report["references"].items():
        console.print(f"{name}: {r['latency_ms']:.2f} ms, quality {r['quality']:+.4f}")
    for name, r in report["latency_only"].items():
        console.print(f"{name}: {r['latency_ms']:.2f} ms (no quality score for its kinds)")
    console.print(f"wrote {out / 'pareto.json'} and {out / 'pareto.png'}")
