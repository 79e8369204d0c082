"""Tests of EPO Search (reference_impls/finite_set/epo_search.py).

Claim of the paper (Mahapatra & Rajan, arXiv:2108.00597, "touring the Pareto front"; official
``trace_pf.py``): started on the Pareto front at the EPO point of r_a and given r_b, the search
stays on the front at every iterate while it moves to r_b's EPO point. Tested on VLMOP2 (n = 20)
over seeds 0..2 with 4 preference pairs each (r_a = the toy's rays, r_b = the same rays reversed:
12/12 trajectories pass), and over a 3-stage tour (seeds 0..1, 8/8). The warm start is what
keeps the iterates on the front: the cold first leg of the same runs leaves it (control).
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls import metrics
from reference_impls.finite_set.epo import EPO
from reference_impls.finite_set.epo_lp import adjustments, epo_circle_preferences
from reference_impls.finite_set.epo_search import EPOSearch
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

SEEDS = range(3)


def legs(result, p):
    """The iterates (index ranges into result.x) of solution p's legs: [start, switch_1], [switch_1 + 1, ...], ..."""
    m = result.extra["methods"][0]
    cuts = [t + 1 for (t, q, _) in m.switches if q == p]  # iterate index right after each switch
    bounds = [0, *cuts, result.x.shape[0]]
    return [range(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def path_measures(problem, X):
    F, J = problem.losses_and_jacobian(X)
    return F, metrics.pareto_stationarity(J), problem.distance_to_pareto_set(X)


@pytest.fixture(scope="module")
def pair_runs():
    ra = epo_circle_preferences(4)
    rb = ra.flip(0)  # each solution is sent to the opposite ray
    return ra, rb, [run_set("epo-search", "vlmop2", preferences=ra, seed=s, steps=600, params={"tour": [rb]}) for s in SEEDS]


def test_warm_started_search_stays_on_the_front_while_moving_to_the_new_ray(pair_runs):
    """After the switch r_a → r_b (each solution started on the front at r_a's EPO point): at every iterate
    PS-measure < 1e-3 and distance to the Pareto set < 1e-3, the solution moves by more than 0.1 in objective space,
    and it ends at r_b's EPO point (μ(r_b ⊙ l) ≤ ε = 1e-4, EPO's exactness criterion). 12/12 trajectories.
    Control: the cold first leg of the same trajectories has max PS-measure > 0.05 (it starts off the front)."""
    problem = get_problem("vlmop2")
    ra, rb, runs = pair_runs
    for seed, r in zip(SEEDS, runs, strict=True):
        for p in range(4):
            first, second = legs(r, p)
            assert len(second) > 1, (seed, p)  # the switch happened (stopped at r_a's point)
            _, ps1, _ = path_measures(problem, r.x[list(first), p])
            F2, ps2, dist2 = path_measures(problem, r.x[list(second), p])
            assert float(ps1.max()) > 0.05, (seed, p)
            assert float(ps2.max()) < 1e-3 and float(dist2.max()) < 1e-3, (seed, p)
            assert float((F2[-1] - F2[0]).norm()) > 0.1, (seed, p)
            assert float(adjustments(F2[-1:], rb[p : p + 1])[1]) <= 1e-4, (seed, p)


def test_three_stage_tour_traces_the_front():
    """trace_pf.py's chain: a tour r_1 → r_2 → r_3 (each solution its own order of the toy's rays); every leg after
    the first stays within 1e-3 of the Pareto set and ends on its ray (μ ≤ 1e-4). Seeds 0..1, 4 solutions (8/8)."""
    problem = get_problem("vlmop2")
    rays = epo_circle_preferences(4)
    tour = [rays[[2, 3, 0, 1]], rays[[1, 0, 3, 2]]]
    for seed in range(2):
        r = run_set("epo-search", "vlmop2", preferences=rays, seed=seed, steps=900, params={"tour": tour})
        for p in range(4):
            parts = legs(r, p)
            assert len(parts) == 3, (seed, p)
            for stage, part in enumerate(parts[1:], start=1):
                F, _, dist = path_measures(problem, r.x[list(part), p])
                assert float(dist.max()) < 1e-3, (seed, p, stage)
                assert float(adjustments(F[-1:], tour[stage - 1][p : p + 1])[1]) <= 1e-4, (seed, p, stage)


# ------------------------------------------------------------------------------------------------
# The stopping rule and the state
# ------------------------------------------------------------------------------------------------


def random_case(seed: int, P: int = 3, K: int = 2, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.1
    F = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.05
    J = torch.randn(P, K, n, generator=g, dtype=torch.float64)
    return F, J, r / r.sum(1, keepdim=True)


def test_a_solution_stops_when_its_direction_is_below_grad_tol():
    """||d_p||_∞ < grad_tol → D_p = 0 and p stays stopped (no LP solved: mode "stopped"); the others get EPO's D."""
    F, J, r = random_case(0)
    J[1] *= 1e-7  # solution 1: |d|_∞ ≲ 1e-6 < 1e-4
    m = EPOSearch()
    D = m.step(None, F, J, r)
    assert bool((D[1] == 0).all()) and m.stopped.tolist() == [False, True, False]
    torch.testing.assert_close(D[[0, 2]], EPO().step(None, F[[0, 2]], J[[0, 2]], r[[0, 2]]))
    J[1] /= 1e-7  # even with large gradients again, a stopped solution stays put until its tour moves it
    D2 = m.step(None, F, J, r)
    assert bool((D2[1] == 0).all()) and m.last_modes[1] == "stopped"


def test_tour_switches_only_stopped_solutions_and_restarts_them():
    F, J, r = random_case(1)
    nxt = r.flip(1)
    m = EPOSearch(tour=[nxt])
    m.begin(torch.zeros(3, 5), F, r, steps=10)
    assert m.adapt_preferences(None, F, r, 0) is None  # nobody has stopped
    m.stopped[2] = True
    new = m.adapt_preferences(None, F, r, 3)
    torch.testing.assert_close(new[2], nxt[2])
    torch.testing.assert_close(new[:2], r[:2])
    assert m.stopped.tolist() == [False, False, False] and m.stage.tolist() == [0, 0, 1] and m.switches == [(3, 2, 1)]
    m.stopped[2] = True
    assert m.adapt_preferences(None, F, new, 4) is None  # tour exhausted: it stays stopped


def test_single_objective_is_gradient_descent_until_grad_tol():
    F, J, _ = random_case(2, K=1)
    ones = torch.ones(3, 1, dtype=torch.float64)
    torch.testing.assert_close(EPOSearch().step(None, F, J, ones), J[:, 0])
    assert bool((EPOSearch(grad_tol=10.0).step(None, F, J, ones) == 0).all())


def test_relaxed_descent_lp_is_at_least_as_good():
    """relax=True drops αᵀCa ≥ min(max Ca, 0): on the ray (descent mode) its optimum 𝟙ᵀCα is ≥ the restricted one (20 seeds)."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        r = torch.rand(3, 3, generator=g, dtype=torch.float64) + 0.1
        F = (torch.rand(3, 1, generator=g, dtype=torch.float64) + 0.5) / r  # r ⊙ F ∝ 𝟙
        J = torch.randn(3, 3, 4, generator=g, dtype=torch.float64)
        C = J @ J.transpose(1, 2)
        val = []
        for relax in (False, True):
            m = EPOSearch(relax=relax, grad_tol=0.0)
            m.step(None, F, J, r)
            val.append(torch.einsum("pk,pkj->p", m.last_alpha, C))  # 𝟙ᵀCα per solution (C symmetric)
        assert bool((val[1] >= val[0] - 1e-9 * C.abs().sum((1, 2))).all()), seed


def test_invalid_inputs_raise():
    F, J, r = random_case(3)
    with pytest.raises(ValueError, match="strictly positive"):
        EPOSearch(tour=[torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="rows"):
        EPOSearch(tour=[r[:2]]).step(None, F, J, r)
    with pytest.raises(ValueError, match="NaN or infinite"):
        EPOSearch().step(None, F.clone().fill_(math.nan), J, r)
    with pytest.raises(ValueError, match="grad_tol"):
        EPOSearch(grad_tol=-1.0)
