"""The budget-aware layout search (docs/architecture.md §6): a dynamic program over depth positions.

A layout picks a kind (``L``, ``S``, optionally ``F``) at every position. Its latency is the sum of its
blocks' costs plus, for every low-resolution stage (a maximal run of ``S``), the cost of entering it and of
leaving it (a run that reaches the last block is left after it). Its quality is the sum of per-(position,
kind) scores. :func:`solve` maximises quality subject to latency ≤ budget (and optionally parameters ≤ a cap).

State after position ``i``: (resolution: full or coarse, latency used in buckets of ``unit_ms``[, parameters
used in buckets]). Costs are rounded *up* to whole buckets, so every answer truly fits its budget; with a
fixed unit a larger budget only adds feasible layouts, so the best quality never decreases as the budget
grows. :func:`solve_stable` halves the unit until the answer no longer changes. The arrays are vectorised
over the buckets with numpy; backtracking through the stored choices gives the layout.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from s2dit.errors import S2DitError
from s2dit.model.config import KINDS
from s2dit.model.ssa import stages

FULL, COARSE = 0, 1


@dataclasses.dataclass
class SearchProblem:
    """Per-position costs and scores of each candidate kind, and the stage transition costs."""

    kinds: str  # candidate kinds, e.g. "LS" or "LSF"
    cost: list[dict[str, float]]  # per position: kind -> milliseconds
    quality: list[dict[str, float]]  # per position: kind -> score (higher is better)
    enter_ms: float  # entering a low-resolution stage
    leave_ms: float  # leaving it
    params: list[dict[str, float]] | None = None  # per position: kind -> parameters
    stage_params: float = 0.0  # parameters of one stage's entry + exit

    def __post_init__(self) -> None:
        if not self.kinds or set(self.kinds) - set(KINDS) or len(set(self.kinds)) != len(self.kinds):
            raise S2DitError(f"kinds: {self.kinds!r} must be distinct letters from {', '.join(KINDS)}")
        if len(self.cost) != len(self.quality) or not self.cost:
            raise S2DitError("cost and quality need one entry per depth position")
        for i, (c, q) in enumerate(zip(self.cost, self.quality, strict=True)):
            for k in self.kinds:
                if k not in c or k not in q:
                    raise S2DitError(f"position {i}: no cost or quality for kind {k!r}")
                if c[k] < 0 or not math.isfinite(c[k]) or not math.isfinite(q[k]):
                    raise S2DitError(f"position {i}, kind {k!r}: costs must be finite and >= 0")
        if self.enter_ms < 0 or self.leave_ms < 0:
            raise S2DitError("stage transition costs must be >= 0")

    @property
    def depth(self) -> int:
        return len(self.cost)

    def latency(self, layout: str) -> float:
        """Exact milliseconds of a layout (blocks + transitions)."""
        blocks = sum(self.cost[i][k] for i, k in enumerate(layout))
        return blocks + len(stages(layout)) * (self.enter_ms + self.leave_ms)

    def score(self, layout: str) -> float:
        return sum(self.quality[i][k] for i, k in enumerate(layout))

    def parameters(self, layout: str) -> float:
        if self.params is None:
            return 0.0
        return sum(self.params[i][k] for i, k in enumerate(layout)) + len(stages(layout)) * self.stage_params


@dataclasses.dataclass
class Solution:
    layout: str
    latency_ms: float  # exact, from the problem's costs
    quality: float
    parameters: float
    budget_ms: float
    unit_ms: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _buckets(value: float, unit: float) -> int:
    """Whole buckets covering ``value`` (rounded up; exact multiples are not bumped by float noise)."""
    return max(0, math.ceil(value / unit - 1e-9))


def _shift(a: np.ndarray, dp: int, db: int) -> np.ndarray:
    """``out[p, b] = a[p - dp, b - db]`` (-inf where that falls outside)."""
    out = np.full_like(a, -np.inf)
    P, B = a.shape
    if dp < P and db < B:
        out[dp:, db:] = a[: P - dp, : B - db]
    return out


def default_unit(problem: SearchProblem) -> float:
    """1/64 of the cheapest positive cost: fine against every block, independent of the budget."""
    costs = [c[k] for c in problem.cost for k in problem.kinds] + [problem.enter_ms, problem.leave_ms]
    positive = [c for c in costs if c > 0]
    return min(positive) / 64 if positive else 1.0


def solve(
    problem: SearchProblem,
    budget_ms: float,
    unit_ms: float | None = None,
    param_cap: float | None = None,
    param_buckets: int = 256,
) -> Solution | None:
    """The highest-quality layout whose latency (and parameters) fit; None if nothing fits."""
    unit = unit_ms or default_unit(problem)
    if budget_ms < 0 or unit <= 0:
        raise S2DitError("the budget must be >= 0 and the unit > 0")
    B = math.floor(budget_ms / unit + 1e-9)
    if B > 5_000_000:
        raise S2DitError(f"{B} latency buckets: use a coarser unit than {unit:g} ms")
    if param_cap is not None and problem.params is None:
        raise S2DitError("a parameter cap needs per-kind parameter counts")
    P, punit = (1, 1.0) if param_cap is None else (param_buckets + 1, param_cap / param_buckets)
    kinds = problem.kinds

    def step_cost(i: int, r: int, k: str) -> tuple[int, int, int]:
        r_next = COARSE if k == "S" else FULL
        ms = problem.cost[i][k]
        n_stage = 0
        if r == FULL and r_next == COARSE:
            ms, n_stage = ms + problem.enter_ms, 1  # a stage's parameters are charged at its entry
        elif r == COARSE and r_next == FULL:
            ms += problem.leave_ms
        pb = 0
        if param_cap is not None:
            pb = _buckets(problem.params[i][k] + n_stage * problem.stage_params, punit)
        return r_next, _buckets(ms, unit), pb

    value = [np.full((P, B + 1), -np.inf), np.full((P, B + 1), -np.inf)]
    value[FULL][0, 0] = 0.0
    choices = []  # per position: [r_next] -> int array of (r * len(kinds) + kind index), -1 = unreachable
    for i in range(problem.depth):
        nxt = [np.full((P, B + 1), -np.inf), np.full((P, B + 1), -np.inf)]
        choice = [np.full((P, B + 1), -1, dtype=np.int16), np.full((P, B + 1), -1, dtype=np.int16)]
        for r in (FULL, COARSE):
            if not np.isfinite(value[r]).any():
                continue
            for ki, k in enumerate(kinds):
                r_next, db, dp = step_cost(i, r, k)
                cand = _shift(value[r], dp, db) + problem.quality[i][k]
                better = cand > nxt[r_next]
                nxt[r_next] = np.where(better, cand, nxt[r_next])
                choice[r_next][better] = r * len(kinds) + ki
        value = nxt
        choices.append(choice)

    # a stage that reaches the last block is left after it
    final = [value[FULL], _shift(value[COARSE], 0, _buckets(problem.leave_ms, unit))]
    best, where = -np.inf, None
    for r in (FULL, COARSE):
        if np.isfinite(final[r]).any():
            p, b = np.unravel_index(np.argmax(final[r]), final[r].shape)
            if final[r][p, b] > best:
                best, where = final[r][p, b], (r, int(p), int(b))
    if where is None:
        return None
    r, p, b = where
    if r == COARSE:
        b -= _buckets(problem.leave_ms, unit)
    layout = []
    for i in reversed(range(problem.depth)):
        code = int(choices[i][r][p, b])
        r_prev, k = divmod(code, len(kinds))
        _, db, dp = step_cost(i, r_prev, kinds[k])
        layout.append(kinds[k])
        r, p, b = r_prev, p - dp, b - db
    text = "".join(reversed(layout))
    return Solution(
        text, problem.latency(text), problem.score(text), problem.parameters(text), budget_ms, unit
    )


def solve_stable(
    problem: SearchProblem,
    budget_ms: float,
    unit_ms: float | None = None,
    param_cap: float | None = None,
    max_halvings: int = 6,
) -> Solution | None:
    """:func:`solve`, halving the unit until the answer is the same at the unit and at half of it."""
    unit = unit_ms or default_unit(problem)
    best = solve(problem, budget_ms, unit, param_cap)
    for _ in range(max_halvings):
        finer = solve(problem, budget_ms, unit / 2, param_cap)
        if (finer is None) == (best is None) and (best is None or finer.layout == best.layout):
            return best
        unit, best = unit / 2, finer
    return best


def pareto_front(points: list[Solution]) -> list[Solution]:
    """The solutions no other one beats on both latency (lower) and quality (higher), by latency."""
    front, best_q = [], -math.inf
    for s in sorted(points, key=lambda s: (s.latency_ms, -s.quality)):
        if s.quality > best_q + 1e-12:
            front.append(s)
            best_q = s.quality
    return front
