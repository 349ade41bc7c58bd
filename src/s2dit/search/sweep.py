"""From a latency table and quality scores to search problems, single searches, and the Pareto sweep
(``s2dit search layout`` / ``s2dit search sweep``), with reference layouts (all-``F``, all-``L``, hand-made
sandwiches) placed under the same latency and quality model."""

from __future__ import annotations

import json
from pathlib import Path

from s2dit.atomic import atomic_path, write_text_atomic
from s2dit.errors import S2DitError
from s2dit.model.config import KINDS
from s2dit.search.dp import SearchProblem, Solution, pareto_front, solve_stable
from s2dit.search.latency import LatencyTable


def block_parameters(width: int, heads: int, ffn_dim: int, kinds: str) -> tuple[dict[str, int], int]:
    """Parameters of one block of each kind, and of one stage's entry + exit, at this width."""
    from s2dit.model.blocks import Block
    from s2dit.model.ssa import StageDown, StageUp

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    per_kind = {k: count(Block(k, width, heads, ffn_dim)) for k in kinds}
    return per_kind, count(StageDown(width)) + count(StageUp(width))


def build_problem(
    table: LatencyTable, quality: dict, depth: int, tokens: int, kinds: str | None = None
) -> SearchProblem:
    """The search problem at ``tokens`` full-resolution tokens: costs from the table, scores from
    ``quality`` (a validated ``s2dit.quality/1`` dict), parameters from the table's width."""
    kinds = kinds or "".join(k for k in KINDS if k in quality["kinds"] and k in table.kinds)
    missing = [k for k in kinds if k not in table.kinds]
    if missing:
        raise S2DitError(f"the latency table has no entries for kind(s) {', '.join(missing)}")
    if len(quality["scores"]) != depth:
        raise S2DitError(f"the quality file scores {len(quality['scores'])} positions, not --depth {depth}")
    if set(kinds) - set(quality["kinds"]):
        raise S2DitError(f"the quality file scores kinds {quality['kinds']!r}, the search needs {kinds!r}")
    cost = {k: table.cost(k, tokens) for k in kinds}
    heads = table.data["heads"]
    ffn = table.data.get("ffn_dim", 4 * table.width)
    params, stage_params = block_parameters(table.width, heads, ffn, kinds)
    return SearchProblem(
        kinds=kinds,
        cost=[dict(cost) for _ in range(depth)],
        quality=[{k: float(row[k]) for k in kinds} for row in quality["scores"]],
        enter_ms=table.cost("stage_down", tokens),
        leave_ms=table.cost("stage_up", tokens),
        params=[dict(params) for _ in range(depth)],
        stage_params=stage_params,
    )


def reference_layouts(depth: int, kinds: str, extra: list[str] | None = None) -> dict[str, str]:
    """All-F (when F is a candidate), all-L, and hand-made sandwiches L^a S^b L^a, plus ``extra``."""
    refs = {}
    if "F" in kinds:
        refs["all-F"] = "F" * depth
    refs["all-L"] = "L" * depth
    if "S" in kinds and depth >= 3:
        for outer in sorted({max(1, depth // 5), max(1, depth // 4), max(1, depth // 3)}):
            if depth - 2 * outer >= 1:
                layout = "L" * outer + "S" * (depth - 2 * outer) + "L" * outer
                refs[f"sandwich {layout}"] = layout
    for layout in extra or []:
        if len(layout) != depth or set(layout) - set(kinds):
            raise S2DitError(f"--reference {layout!r}: needs {depth} letters from {kinds!r}")
        if layout not in refs.values():
            refs[f"given {layout}"] = layout
    return refs


def describe(problem: SearchProblem, layout: str) -> dict:
    return {
        "layout": layout,
        "latency_ms": problem.latency(layout),
        "quality": problem.score(layout),
        "parameters": problem.parameters(layout),
    }


def sweep(problem: SearchProblem, points: int = 30) -> tuple[list[Solution], list[Solution]]:
    """Solve at ``points`` budgets from the cheapest to the dearest layout; returns (all, Pareto front)."""
    cheapest = sum(min(c.values()) for c in problem.cost)
    dearest = sum(max(c.values()) for c in problem.cost) + problem.depth * (
        problem.enter_ms + problem.leave_ms
    )
    budgets = [cheapest + (dearest - cheapest) * i / max(1, points - 1) for i in range(points)]
    found = [s for b in budgets if (s := solve_stable(problem, b)) is not None]
    return found, pareto_front(found)


def write_sweep(
    out: str | Path,
    problem: SearchProblem,
    found: list[Solution],
    front: list[Solution],
    refs: dict,
    meta: dict,
    latency_only: dict[str, float] | None = None,
) -> dict:
    """``pareto.json`` and ``pareto.png`` in ``out``; returns the JSON. ``latency_only``: references with
    no quality score (e.g. all-F when F is not a candidate), drawn as vertical lines."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "schema": "s2dit.pareto/1",
        **meta,
        "front": [s.as_dict() for s in front],
        "solutions": [s.as_dict() for s in found],
        "references": {name: describe(problem, layout) for name, layout in refs.items()},
        "latency_only": {name: {"latency_ms": ms} for name, ms in (latency_only or {}).items()},
    }
    write_text_atomic(out / "pareto.json", json.dumps(report, indent=1))
    plot(out / "pareto.png", found, front, report["references"], meta, latency_only or {})
    return report


def plot(
    path: Path, found: list[Solution], front: list[Solution], refs: dict, meta: dict, latency_only: dict
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.scatter([s.latency_ms for s in found], [s.quality for s in found], s=12, c="#bbbbbb", label="searched")
    ax.step(
        [s.latency_ms for s in front],
        [s.quality for s in front],
        where="post",
        c="#1f77b4",
        label="Pareto front",
    )
    ax.scatter([s.latency_ms for s in front], [s.quality for s in front], s=18, c="#1f77b4")
    markers = iter("s^Dvo<>ph")
    for name, r in refs.items():
        ax.scatter([r["latency_ms"]], [r["quality"]], marker=next(markers, "x"), s=60, label=name, zorder=3)
    for name, ms in latency_only.items():
        ax.axvline(ms, ls="--", c="#d62728", lw=1, label=f"{name} (latency only: no quality score)")
    ax.set_xlabel(f"predicted latency (ms) at {meta.get('tokens')} tokens, {meta.get('device')}")
    ax.set_ylabel("quality proxy (sum of position scores)")
    ax.set_title(f"layout search: depth {meta.get('depth')}, kinds {meta.get('kinds')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
