"""The layout DP against brute force, monotone in the budget, within budget, stable in its resolution."""

import itertools
import math
import random

import pytest

from s2dit.errors import S2DitError
from s2dit.search.dp import SearchProblem, pareto_front, solve, solve_stable


def random_problem(rng: random.Random, depth: int, kinds: str, integer: bool, params: bool = False):
    draw = (lambda: rng.randint(1, 9)) if integer else (lambda: rng.uniform(0.5, 9.0))
    return SearchProblem(
        kinds=kinds,
        cost=[{k: draw() for k in kinds} for _ in range(depth)],
        quality=[{k: rng.uniform(-1, 1) for k in kinds} for _ in range(depth)],
        enter_ms=draw(),
        leave_ms=draw(),
        params=[{k: rng.randint(1, 5) for k in kinds} for _ in range(depth)] if params else None,
        stage_params=rng.randint(0, 3) if params else 0,
    )


def brute_force(problem: SearchProblem, budget: float, param_cap: float | None = None) -> float | None:
    best = None
    for layout in map("".join, itertools.product(problem.kinds, repeat=problem.depth)):
        if problem.latency(layout) > budget + 1e-9:
            continue
        if param_cap is not None and problem.parameters(layout) > param_cap:
            continue
        q = problem.score(layout)
        best = q if best is None or q > best else best
    return best


@pytest.mark.parametrize("seed", range(12))
def test_dp_equals_brute_force_on_integer_costs(seed):
    rng = random.Random(seed)
    depth, kinds = rng.randint(1, 10), rng.choice(["LS", "LSF", "SL", "LF"])
    if len(kinds) == 3:
        depth = min(depth, 8)
    problem = random_problem(rng, depth, kinds, integer=True)
    hi = 12 * depth
    for budget in (rng.randint(0, hi) for _ in range(4)):
        found = solve(problem, budget, unit_ms=1.0)  # integer costs: unit 1 is exact
        expected = brute_force(problem, budget)
        if expected is None:
            assert found is None
            continue
        assert found is not None and found.quality == pytest.approx(expected)
        assert found.latency_ms <= budget
        assert problem.score(found.layout) == pytest.approx(found.quality)


@pytest.mark.parametrize("seed", range(6))
def test_parameter_cap_matches_brute_force(seed):
    rng = random.Random(100 + seed)
    problem = random_problem(rng, rng.randint(2, 8), "LS", integer=True, params=True)
    for _ in range(4):
        budget, cap = rng.randint(5, 80), rng.randint(3, 40)
        found = solve(problem, budget, unit_ms=1.0, param_cap=cap, param_buckets=cap)  # 1 bucket = 1 param
        expected = brute_force(problem, budget, cap)
        assert (found is None) == (expected is None)
        if found:
            assert found.quality == pytest.approx(expected)
            assert found.parameters <= cap and found.latency_ms <= budget


@pytest.mark.parametrize("seed", range(6))
def test_real_valued_costs_fit_and_lose_at_most_the_rounding(seed):
    rng = random.Random(200 + seed)
    problem = random_problem(rng, rng.randint(3, 9), "LSF" if seed % 2 else "LS", integer=False)
    unit = 0.05
    for budget in (rng.uniform(5, 90) for _ in range(3)):
        found = solve(problem, budget, unit_ms=unit)
        slack = (2 * problem.depth + 2) * unit  # each rounded cost is over by less than one unit
        relaxed = brute_force(problem, budget - slack)
        if found is None:
            assert relaxed is None
            continue
        assert found.latency_ms <= budget
        assert found.quality >= (relaxed if relaxed is not None else -1e9) - 1e-9
        assert found.quality <= brute_force(problem, budget) + 1e-9


def test_best_quality_never_decreases_with_the_budget():
    rng = random.Random(7)
    problem = random_problem(rng, 12, "LSF", integer=False)
    last = -float("inf")
    for budget in [x * 2.5 for x in range(4, 60)]:
        found = solve(problem, budget)
        quality = -float("inf") if found is None else found.quality
        assert quality >= last - 1e-12
        assert found is None or found.latency_ms <= budget
        last = quality


def test_stable_answer_does_not_change_when_the_resolution_doubles():
    rng = random.Random(3)
    problem = random_problem(rng, 16, "LS", integer=False)
    for budget in (80.0, 100.0, 130.0):
        stable = solve_stable(problem, budget, unit_ms=2.0)
        finer = solve(problem, budget, unit_ms=stable.unit_ms / 2)
        assert finer.layout == stable.layout


def test_transitions_are_charged_per_stage():
    problem = SearchProblem(
        kinds="LS",
        cost=[{"L": 4.0, "S": 1.0}] * 4,
        quality=[{"L": 0.0, "S": 1.0}] * 4,
        enter_ms=2.0,
        leave_ms=3.0,
    )
    assert problem.latency("SSSS") == 4 + 5  # one stage, left after the last block
    assert problem.latency("SLSL") == 1 + 4 + 1 + 4 + 2 * 5
    assert solve(problem, 9.0, unit_ms=1.0).layout == "SSSS"
    assert solve(problem, 8.9, unit_ms=0.1) is None  # nothing fits: all-L costs 16
    assert solve(problem, 16.0, unit_ms=1.0).layout == "SSSS"


def test_pareto_front_keeps_only_undominated_points():
    rng = random.Random(1)
    problem = random_problem(rng, 8, "LS", integer=True)
    points = [s for b in range(10, 90, 5) if (s := solve(problem, b, unit_ms=1.0))]
    front = pareto_front(points)
    for a in front:
        assert not any(b.latency_ms <= a.latency_ms and b.quality > a.quality + 1e-12 for b in points)
    assert [s.latency_ms for s in front] == sorted(s.latency_ms for s in front)


def test_bad_problems_are_refused():
    with pytest.raises(S2DitError, match="kinds"):
        SearchProblem("LQ", [{"L": 1, "Q": 1}], [{"L": 1, "Q": 1}], 1, 1)
    with pytest.raises(S2DitError, match="position 0"):
        SearchProblem("LS", [{"L": 1}], [{"L": 1, "S": 1}], 1, 1)
    with pytest.raises(S2DitError, match="parameter cap"):
        solve(SearchProblem("LS", [{"L": 1, "S": 1}], [{"L": 1, "S": 1}], 1, 1), 5, param_cap=3)


def test_the_pareto_front_is_exactly_the_undominated_points():
    from s2dit.search.dp import Solution

    def point(ms, q):
        return Solution("L", ms, q, 0.0, ms, 1.0)

    points = [point(5, 0.1), point(3, 0.2), point(4, 0.2), point(1, -1.0), point(2, 0.2), point(6, 0.5)]
    front = pareto_front(points)
    assert [(s.latency_ms, s.quality) for s in front] == [(1, -1.0), (2, 0.2), (6, 0.5)]
    assert pareto_front([point(2, 0.3), point(2, 0.1)]) == [point(2, 0.3)]  # same latency: the better one


def test_solutions_report_what_was_asked_and_what_was_found():
    problem = SearchProblem("LS", [{"L": 2.0, "S": 0.5}] * 3, [{"L": 1.0, "S": 0.0}] * 3, 0.25, 0.25)
    found = solve(problem, 5.2)  # all-L takes 6 ms; one S (with its stage's 0.5 ms) fits
    assert found.layout.count("L") == 2 and found.quality == 2.0
    assert found.budget_ms == 5.2 and found.parameters == 0.0 and found.unit_ms == pytest.approx(0.25 / 64)
    assert found.latency_ms == pytest.approx(problem.latency(found.layout)) == 5.0


def test_free_blocks_fit_a_zero_budget():
    problem = SearchProblem("LS", [{"L": 1.0, "S": 0.0}] * 3, [{"L": 1.0, "S": 0.5}] * 3, 0.0, 0.0)
    assert solve(problem, 0.0, unit_ms=0.25).layout == "SSS"


def test_the_stable_search_keeps_the_parameter_cap():
    rng = random.Random(11)
    for _ in range(5):
        problem = random_problem(rng, 6, "LS", integer=True, params=True)
        free = solve_stable(problem, 60.0, unit_ms=1.0)
        cap = problem.parameters(free.layout) - 2
        capped = solve_stable(problem, 60.0, unit_ms=1.0, param_cap=cap)
        assert (capped is None) == (brute_force(problem, 60.0, cap) is None)
        assert capped is None or capped.parameters <= cap < free.parameters


def test_every_bad_number_in_a_problem_is_refused():
    def problem(cost=1.0, quality=1.0, enter=1.0, leave=1.0, depth=1, qualities=1):
        return SearchProblem(
            "LS", [{"L": 1.0, "S": cost}] * depth, [{"L": 1.0, "S": quality}] * qualities, enter, leave
        )

    problem(cost=0.0, enter=0.0, leave=0.0)  # free blocks and transitions are fine
    for bad in ({"cost": -1.0}, {"cost": math.inf}, {"cost": math.nan}, {"quality": math.nan}):
        with pytest.raises(S2DitError, match=r"^position 0, kind 'S': costs must be finite and >= 0$"):
            problem(**bad)
    for bad in ({"enter": -1.0}, {"leave": -1.0}):
        with pytest.raises(S2DitError, match=r"^stage transition costs must be >= 0$"):
            problem(**bad)
    for depth, qualities in ((2, 1), (0, 0)):
        with pytest.raises(S2DitError, match=r"^cost and quality need one entry per depth position$"):
            problem(depth=depth, qualities=qualities)
    with pytest.raises(S2DitError, match=r"^kinds: 'LQ' must be distinct letters from L, S, F$"):
        SearchProblem("LQ", [{"L": 1, "Q": 1}], [{"L": 1, "Q": 1}], 1, 1)
    with pytest.raises(S2DitError, match=r"^the budget must be >= 0 and the unit > 0$"):
        solve(problem(), -1.0)
    with pytest.raises(S2DitError, match=r"^10000000 latency buckets: use a coarser unit than 1e-06 ms$"):
        solve(problem(), 10.0, unit_ms=1e-6)
    with pytest.raises(S2DitError, match=r"^a parameter cap needs per-kind parameter counts$"):
        solve(problem(), 5, param_cap=3)


def test_the_default_unit_is_a_64th_of_the_cheapest_positive_cost():
    from s2dit.search.dp import default_unit

    problem = SearchProblem(
        "LS", [{"L": 3.0, "S": 0.0}, {"L": 0.8, "S": 2.0}], [{"L": 0, "S": 0}] * 2, 0.0, 1.6
    )
    assert default_unit(problem) == pytest.approx(0.8 / 64)
    free = SearchProblem("LS", [{"L": 0.0, "S": 0.0}], [{"L": 0, "S": 0}], 0.0, 0.0)
    assert default_unit(free) == 1.0
