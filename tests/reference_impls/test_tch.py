"""Tchebycheff scalarisation (``tch``): subgradient / min-norm direction, the ray points of concave and convex fronts."""

from __future__ import annotations

import pytest
import torch

from reference_impls.core.solvers import min_norm_weights
from reference_impls.finite_set.tch import TCH
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

F64 = torch.float64
EPS = torch.finfo(F64).eps
PREFS = torch.tensor([[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]], dtype=F64)


def _begun(K: int, ideal=None, **kw) -> TCH:
    m = TCH(**kw)
    m.begin(torch.zeros(1, 1, dtype=F64), torch.ones(1, K, dtype=F64), None, steps=1, ideal=torch.zeros(K, dtype=F64) if ideal is None else ideal)
    return m


@pytest.mark.parametrize("seed", range(5))
def test_direction_is_the_gradient_of_the_strictly_largest_term(seed):
    # A unique maximum of r̂_i (f_i − z_i): D_p = r̂_pi ∇f_i exactly (first step: multiplier 1), on random
    # inputs with tasks on scales 1e-3..1e3.
    g = torch.Generator().manual_seed(seed)
    P, K, n = 8, 3, 5
    J = torch.randn(P, K, n, generator=g, dtype=F64) * torch.logspace(-3, 3, K, dtype=F64)[None, :, None]
    F = torch.rand(P, K, generator=g, dtype=F64) + 0.1
    r = torch.rand(P, K, generator=g, dtype=F64) + 0.05
    D = _begun(K, tie_tol=0.0).step(torch.zeros(P, n, dtype=F64), F, J, r)
    r_hat = r / r.sum(1, keepdim=True)
    terms = r_hat * F
    top = terms.argmax(1)
    assert bool((terms.topk(2, dim=1).values[:, 0] - terms.topk(2, dim=1).values[:, 1] > 1e-9).all())  # no tie
    for p in range(P):
        torch.testing.assert_close(D[p], r_hat[p, top[p]] * J[p, top[p]], rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(5))
def test_tied_terms_give_the_certified_min_norm_element_of_their_weighted_gradients(seed):
    # Exact ties (F_i set so that r̂_i f_i are equal for i in A, z = 0): D is the min-norm point of
    # conv{r̂_i ∇f_i : i ∈ A}: KKT ⟨D, r̂_j g_j⟩ ≥ ||D||² for every tied j, each within a tolerance on its
    # own scale (32·K·ε·S·(||r̂_j g_j|| + S), S = Σ_i λ_i ||r̂_i g_i||), and equal to min_norm_weights' point.
    g = torch.Generator().manual_seed(100 + seed)
    P, K, n = 4, 3, 6
    J = torch.randn(P, K, n, generator=g, dtype=F64) * torch.logspace(-2, 2, K, dtype=F64)[None, :, None]
    r = torch.rand(P, K, generator=g, dtype=F64) + 0.05
    r_hat = r / r.sum(1, keepdim=True)
    F = (1.0 / r_hat).clone()  # every term r̂_i f_i = 1: all three tied
    F[:2, 2] *= 0.5  # solutions 0, 1: only tasks 0 and 1 tied
    D = _begun(K, tie_tol=0.0).step(torch.zeros(P, n, dtype=F64), F, J, r)
    for p in range(P):
        tied = [0, 1] if p < 2 else [0, 1, 2]
        G = r_hat[p, tied, None] * J[p, tied]  # (|A|, n)
        lam = min_norm_weights(G @ G.T)
        torch.testing.assert_close(D[p], lam @ G, rtol=1e-13, atol=1e-13 * float(G.norm(dim=1).max()))
        S = float((lam * G.norm(dim=1)).sum())
        for j in range(len(tied)):
            tol = 32 * K * EPS * S * (float(G[j].norm()) + S)
            assert float(D[p] @ G[j]) >= float(D[p] @ D[p]) - tol


@pytest.mark.parametrize("seed", range(3))
def test_reaches_the_ray_points_of_the_concave_vlmop2_front(seed):
    # EPO's claim for Tchebycheff-type targets, where LS collapses (test_ls.py): every solution ends
    # Pareto optimal (distance to the Pareto set < 1e-12, PS-measure < 1e-12) and on its ray
    # F ∝ 1/r from the ideal point (0, 0) within 2e-3 (measured ≤ 4.4e-4; the band tie_tol = 1e-3).
    # SGD lr 0.5, 800 steps; 3 seeds, all pass.
    result = run_set("tch", "vlmop2", preferences=PREFS, steps=800, seed=seed)
    m = result.extra["metrics"]
    assert float(result.distance.max()) < 1e-12 and m["max_pareto_stationarity"] < 1e-12
    assert m["preference_error"] < 2e-3 and m["preference_angle"] < 3e-3, m
    # the middle preference sits at the middle of the front, where LS never goes
    mid = 1 - torch.exp(torch.tensor(-1.0, dtype=F64))  # f at s = 0: 1 − e^{−1}
    torch.testing.assert_close(result.f_final[1], torch.stack([mid, mid]), rtol=0, atol=2e-3)


@pytest.mark.parametrize("seed", range(5))
def test_reaches_the_analytic_ray_points_of_the_biquad_front(seed):
    # f = (t², (1 − t)²) on the front; r_1 t² = r_2 (1 − t)² gives t = √r_2/(√r_1 + √r_2) (z = 0).
    # SGD lr 0.05, 400 steps, 5 seeds: within 1e-3 of the analytic point and 1e-5 of the Pareto set
    # (measured ≤ 1.0e-4 and 2.1e-6).
    result = run_set("tch", "biquad", preferences=PREFS, steps=400, seed=seed)
    t = PREFS[:, 1].sqrt() / (PREFS[:, 0].sqrt() + PREFS[:, 1].sqrt())
    torch.testing.assert_close(result.f_final, torch.stack([t**2, (1 - t) ** 2], 1), rtol=0, atol=1e-3)
    assert float(result.distance.max()) < 1e-5


def test_without_an_ideal_point_z_is_the_running_minimum_minus_a_margin():
    # D1: z = min over every F seen − 0.1·(spread of the initial set), updated by update().
    m = TCH()
    F0 = torch.tensor([[1.0, 4.0], [3.0, 2.0]], dtype=F64)
    m.begin(torch.zeros(2, 1, dtype=F64), F0, None, steps=5, ideal=None)
    torch.testing.assert_close(m.reference_point(F0), torch.tensor([1.0 - 0.2, 2.0 - 0.2], dtype=F64))
    m.update(torch.tensor([[0.5, 5.0], [2.0, 3.0]], dtype=F64))
    torch.testing.assert_close(m.reference_point(F0), torch.tensor([0.5 - 0.2, 2.0 - 0.2], dtype=F64))
    # a set of identical points: margin 0.1·|min|, or 1e-3 at 0
    m.begin(torch.zeros(2, 1, dtype=F64), torch.tensor([[2.0, 0.0], [2.0, 0.0]], dtype=F64), None, steps=1)
    torch.testing.assert_close(m.reference_point(torch.tensor([[2.0, 0.0]], dtype=F64)), torch.tensor([1.8, -1e-3], dtype=F64))
    # and a run without the problem's ideal point still ends at the Pareto set of biquad (measured
    # distance ≤ 4e-5 after 400 steps, seed 0), with no ray error reported (no ideal point to measure from)
    problem = get_problem("biquad")
    problem.ideal_point = lambda: None
    result = run_set("tch", problem, preferences=PREFS, steps=400)
    assert float(result.distance.max()) < 1e-3
    assert result.extra["ideal"] is None and result.extra["metrics"]["preference_error"] is None


def test_degenerate_inputs():
    problem = get_problem("biquad")
    # zero entry: the other objective alone (r = (0, 1): x → a_2 = e_1); target ray = the zero entry's axis
    result = run_set("tch", problem, preferences=torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64), steps=400)
    torch.testing.assert_close(result.x_final, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64), rtol=0, atol=1e-6)
    torch.testing.assert_close(result.extra["target_rays"], torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert result.extra["metrics"]["preference_error"] < 1e-6  # (1, 0) lies on the f_1 axis from z = 0
    # duplicate preferences and starts: identical directions
    J = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    J[1] = J[0]
    D = _begun(2).step(torch.zeros(2, 3, dtype=F64), torch.ones(2, 2, dtype=F64), J, torch.tensor([[0.3, 0.7]] * 2, dtype=F64))
    assert torch.equal(D[0], D[1])
    # K = 1: gradient descent on f_1
    one = get_problem("biquad", K=1)
    res1 = run_set("tch", one, solutions=2, steps=300)
    torch.testing.assert_close(res1.x_final, one.anchors[0].expand(2, -1), rtol=0, atol=1e-10)
    # invalid inputs: clear errors
    with pytest.raises(ValueError, match="non-negative"):
        run_set("tch", problem, preferences=torch.tensor([[-1.0, 2.0]], dtype=F64), steps=1)
    with pytest.raises(ValueError, match="tie_tol"):
        TCH(tie_tol=-0.1)
    with pytest.raises(ValueError, match="ideal point"):
        TCH().begin(torch.zeros(1, 1, dtype=F64), torch.ones(1, 2, dtype=F64), None, steps=1, ideal=torch.tensor([float("nan"), 0.0], dtype=F64))
