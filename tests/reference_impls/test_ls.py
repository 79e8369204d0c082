"""Linear scalarisation (``ls``): D_p = Σ_i r̂_pi ∇f_i(x_p); analytic limits on convex fronts, collapse on a concave one."""

from __future__ import annotations

import pytest
import torch

from reference_impls.finite_set.ls import LS
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

F64 = torch.float64
SEEDS = range(5)


def _random_inputs(seed: int, P: int = 6, K: int = 3, n: int = 7):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(P, K, n, generator=g, dtype=F64) * torch.logspace(-3, 3, K, dtype=F64)[None, :, None]  # tasks on scales 1e-3..1e3
    F = torch.rand(P, K, generator=g, dtype=F64)
    r = torch.rand(P, K, generator=g, dtype=F64) + 0.01
    return torch.zeros(P, n, dtype=F64), F, J, r


@pytest.mark.parametrize("seed", SEEDS)
def test_direction_is_the_normalised_preference_weighted_sum_of_the_gradients(seed):
    # Exact property on random inputs with tasks on scales 1e-3..1e3: ⟨D_p, u⟩ = Σ_i r̂_pi ⟨∇f_i, u⟩, checked
    # per task on its own scale (each task's contribution is recovered by zeroing the others' weights),
    # and D depends on r only through r/Σr.
    X, F, J, r = _random_inputs(seed)
    D = LS().step(X, F, J, r)
    r_hat = r / r.sum(1, keepdim=True)
    for i in range(J.shape[1]):
        only = torch.zeros_like(r)
        only[:, i] = r[:, i]
        Di = LS().step(X, F, J, only + 0.0)  # only task i: D = ∇f_i (its row normalised to 1)
        torch.testing.assert_close(Di, J[:, i], rtol=1e-15, atol=0)
    expected = torch.einsum("pk,pkn->pn", r_hat, J)
    scale = (r_hat[:, :, None].abs() * J.abs()).sum(1)  # per-entry rounding bound of the sum
    assert bool(((D - expected).abs() <= 8 * torch.finfo(F64).eps * scale).all())
    torch.testing.assert_close(LS().step(X, F, J, 1e6 * r), D, rtol=1e-15, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_biquad_each_solution_reaches_its_weighted_sum_minimiser(seed):
    # f_i = ||x − a_i||² (a_1 = 0, a_2 = e_1, D = 1): Σ w_i f_i is minimised at x* = Σ w_i a_i, where
    # f = (w_2², w_1²) (the front point whose normal is w). SGD lr 0.05, 400 steps, every seed.
    w = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1], [0.35, 0.65]], dtype=F64)
    result = run_set("ls", "biquad", preferences=w, steps=400, seed=seed)
    expected_x = torch.zeros(4, 2, dtype=F64)
    expected_x[:, 0] = w[:, 1]  # Σ w_i a_i = w_2 e_1
    torch.testing.assert_close(result.x_final, expected_x, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.f_final, w.flip(1) ** 2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_zdt1_reaches_the_front_point_whose_normal_is_r(seed):
    # On ZDT1's convex front f_2 = 1 − √f_1, r_1 f_1 + r_2 f_2 is minimal where r_1 = r_2/(2√f_1), i.e.
    # f_1 = (r_2/(2 r_1))², x_{2..n} = 0 (the box's 1e-6 face). Adam lr 0.01, 1500 steps, every seed.
    r = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.8, 0.2]], dtype=F64)
    result = run_set("ls", "zdt1", preferences=r, steps=1500, seed=seed)
    f1 = (r[:, 1] / (2 * r[:, 0])) ** 2
    torch.testing.assert_close(result.f_final[:, 0], f1, rtol=1e-4, atol=0)
    assert float(result.distance.max()) < 1e-5  # on the Pareto set (up to the box's 1e-6 margin)
    assert result.extra["metrics"]["max_pareto_stationarity"] < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
def test_collapses_to_the_ends_of_the_concave_vlmop2_front(seed):
    # VLMOP2's front is concave: for interior r, r·f has no interior minimiser on the front; every
    # solution ends within 0.01 of an end (0, 0.982) or (0.982, 0) (the exact LS minimiser sits ~1e-4
    # inside the end: ∇f of the far objective is not 0 there). 5 seeds, all pass; the middle of the
    # front (both f_i < 0.9) is never reached, while TCH reaches it (test_tch.py).
    r = torch.tensor([[0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.6, 0.4], [0.8, 0.2]], dtype=F64)
    result = run_set("ls", "vlmop2", preferences=r, steps=500, seed=seed)
    end = 1 - torch.exp(torch.tensor(-4.0, dtype=F64))
    ends = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64) * end  # (2, 2)
    gap = torch.cdist(result.f_final, ends).min(1).values  # (P,)
    assert float(gap.max()) < 0.01, result.f_final
    assert float(result.distance.max()) < 1e-10  # Pareto optimal all the same
    assert result.extra["metrics"]["preference_error"] is None  # LS targets no ray


def test_degenerate_preferences():
    problem = get_problem("biquad")
    # zero entry: solution p minimises the other objective alone (x → a_1 = 0 for r = (1, 0))
    result = run_set("ls", problem, preferences=torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64), steps=400)
    torch.testing.assert_close(result.x_final, torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64), rtol=0, atol=1e-12)
    # duplicate rows: identical directions for identical inputs
    X, F, J, r = _random_inputs(0, P=2)
    J[1], r[1] = J[0], r[0]
    D = LS().step(X, F, J, r)
    assert torch.equal(D[0], D[1])
    # K = 1: plain gradient descent on f_1
    one = get_problem("biquad", K=1)
    res1 = run_set("ls", one, solutions=3, steps=300)
    torch.testing.assert_close(res1.x_final, one.anchors[0].expand(3, -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(res1.extra["preferences"], torch.ones(3, 1, dtype=F64))
    # invalid preferences: a clear error
    for bad, match in [([[-0.1, 1.1]], "non-negative"), ([[0.0, 0.0]], "all zero"), ([[float("nan"), 1.0]], "NaN"), ([[1.0, 0.0, 0.0]], "shape")]:
        with pytest.raises(ValueError, match=match):
            LS().step(X[:1], F[:1, :2], J[:1, :2], torch.tensor(bad, dtype=F64))
    with pytest.raises(ValueError, match="preference"):
        LS().step(X, F, J, None)
    assert LS().target_rays(r) is None
