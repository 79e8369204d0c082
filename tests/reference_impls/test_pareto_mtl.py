"""Tests of Pareto MTL (reference_impls/finite_set/pareto_mtl.py).

Claims of the paper (Lin et al., NeurIPS 2019, Fig. 1 and §3) tested on VLMOP2 (its concave toy,
n = 20) with the official toy settings (plain steps of size 1, 100 iterations, 20 % initial phase):
every solution ends in its own sector and is Pareto-stationary (seeds 0..4, P = 5 and P = 8:
10/10 runs pass), while linear scalarisation with the same preferences collapses to the two ends
(seeds 0..4, 5/5). Exact properties (min-norm KKT of the direction with per-vector tolerances,
invariances) on random inputs over 20 seeds.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.finite_set.ls import LS
from reference_impls.finite_set.pareto_mtl import ParetoMTL, active_constraints, circle_preferences, constraint_vectors, sectors
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

SEEDS = range(5)


def random_case(seed: int, P: int = 5, K: int = 3, n: int = 7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    F = torch.rand(P, K, generator=g, dtype=dtype) + 0.1  # (P, K) positive losses
    scales = 10.0 ** (6 * torch.rand(P, K, 1, generator=g, dtype=dtype) - 3)  # per-task norms 1e-3..1e3
    J = torch.randn(P, K, n, generator=g, dtype=dtype) * scales  # (P, K, n)
    prefs = torch.rand(P, K, generator=g, dtype=dtype) + 0.05  # (P, K)
    return F, J, prefs / prefs.sum(1, keepdim=True)


def main_phase(**kw) -> ParetoMTL:
    m = ParetoMTL(init_steps=0, **kw)
    return m


# ------------------------------------------------------------------------------------------------
# Paper claims on the toy
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("P, steps", [(5, 100), (10, 500)])
def test_each_solution_ends_in_its_own_sector_and_is_pareto_stationary(P, steps):
    """VLMOP2, official settings (step 1, 20 % initial phase), seeds 0..4: argmax_j cos(F_k, u_j) = k for every k,
    PS-measure < 1e-6 and every solution within 1e-3 of the Pareto set (10/10 runs).

    P = 10 needs more than the paper's 100 iterations: starts ~ U(−0.5, 0.5)^20 can lie on VLMOP2's plateau
    (F ≈ (0.98, 0.99), ∇F ≈ 0), and with 100 iterations 3 of seeds 0..9 (2 of 10 at P = 8, 0 of 10 at P = 5)
    leave one solution in a neighbouring sector; with 500 iterations 10/10 pass at P = 5, 8 and 10."""
    for seed in SEEDS:
        r = run_set("pareto-mtl", "vlmop2", solutions=P, seed=seed, steps=steps)
        prefs = r.extra["preferences"]
        assert sectors(r.f_final, prefs).tolist() == list(range(P)), seed
        assert float(r.ps_measure.max()) < 1e-6, seed
        assert float(r.distance.max()) < 1e-3, seed


def test_linear_scalarisation_with_the_same_preferences_collapses_to_the_ends():
    """Control of the claim above (paper Fig. 1): LS with ParetoMTL's preferences puts every solution within
    0.01 of one of the two ends of the concave front (5/5 seeds), so at most 2 of the 5 sectors are occupied."""
    problem = get_problem("vlmop2")
    ends = problem.pareto_front(2)  # (2, 2) the two end points
    prefs = circle_preferences(5)
    for seed in SEEDS:
        r = run_set(LS, "vlmop2", preferences=prefs, seed=seed)
        dist = torch.cdist(r.f_final, ends).min(dim=1).values  # (P,)
        assert float(dist.max()) < 1e-2, seed
        assert len(set(sectors(r.f_final, prefs).tolist())) <= 2
        pm = run_set("pareto-mtl", "vlmop2", preferences=prefs, seed=seed)
        assert float(torch.cdist(pm.f_final, ends).min(dim=1).values.max()) > 0.1  # ParetoMTL's middle solutions do not


def test_initial_phase_direction_decreases_every_violated_constraint():
    """Initial phase (Eq. 12–13): d_k is the min-norm point of the violated constraints' gradients, so
    ⟨d, ∇𝒢_j⟩ ≥ ||d||² for every violated j (per-vector tolerance), and d = 0 when none is violated; 20 seeds."""
    for seed in range(20):
        F, J, prefs = random_case(seed, P=6)
        m = ParetoMTL(init_steps=1)
        D = m.step(None, F, J, prefs)
        assert m.last_phase == "init"
        u = prefs / prefs.norm(dim=1, keepdim=True)
        W = constraint_vectors(u)
        act = active_constraints(W, F)
        for k in range(F.shape[0]):
            if not bool(act[k].any()):
                assert bool((D[k] == 0).all())
                continue
            V = W[k, act[k]] @ J[k]  # (a, n) gradients of the violated constraints
            d = D[k]
            S = V.norm(dim=1).max()
            assert float(d.norm()) > 0
            assert bool(((V @ d) >= d @ d - 1e-9 * V.norm(dim=1) * S).all()), (seed, k)


# ------------------------------------------------------------------------------------------------
# Exact properties of the direction
# ------------------------------------------------------------------------------------------------


def test_main_phase_direction_is_the_certified_min_norm_point():
    """d_k = min-norm point of conv({g_i} ∪ {∇𝒢_j : j active}): ⟨d, v⟩ ≥ ||d||² for every vector v of the
    set (each within 1e-9·||v||·S, S = Σ|λ|·||v||), and d = αᵀJ_k; 20 random seeds with per-task norms 1e-3..1e3."""
    for seed in range(20):
        F, J, prefs = random_case(seed)
        m = main_phase()
        D = m.step(None, F, J, prefs)  # (P, n)
        u = prefs / prefs.norm(dim=1, keepdim=True)
        W = constraint_vectors(u)
        act = active_constraints(W, F)
        for k in range(F.shape[0]):
            V = torch.cat([J[k], W[k, act[k]] @ J[k]], dim=0)  # vectors of the min-norm problem
            d = D[k]
            S = (m.last_weights[k].abs()[:, None] * J[k]).norm(dim=1).sum() + V.norm(dim=1).max()
            assert bool(((V @ d) >= d @ d - 1e-9 * V.norm(dim=1) * S).all()), (seed, k)
            torch.testing.assert_close(d, m.last_weights[k] @ J[k])


def test_initial_phase_direction():
    """Initial phase: d = 0 for a solution with no violated constraint; with one violated constraint,
    d = ∇𝒢_j = (u_j − u_k)ᵀJ_k exactly."""
    u = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    F = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.8, 0.3]], dtype=torch.float64)  # solutions 0, 1 feasible; 2 is not
    J = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = ParetoMTL(init_steps=5)
    D = m.step(None, F, J, u)
    assert m.last_phase == "init"
    torch.testing.assert_close(D[:2], torch.zeros(2, 4, dtype=torch.float64), rtol=0, atol=0)
    uh = u / u.norm(dim=1, keepdim=True)
    act = active_constraints(constraint_vectors(uh), F)[2]
    assert act.tolist() == [True, True, False]  # both other sectors are closer to F_2 = (0.8, 0.3)
    Vs = constraint_vectors(uh)[2, act] @ J[2]  # (2, n)
    # two violated constraints: d is the min-norm point of their gradients' hull
    d = D[2]
    assert bool(((Vs @ d) >= d @ d - 1e-12 * Vs.norm(dim=1) ** 2).all())


def test_begin_sets_the_initial_phase_length():
    """begin(steps=T) sets the initial phase to int(0.2·T) steps (official code); it then switches to the main phase."""
    F, J, prefs = random_case(0)
    m = ParetoMTL()
    m.begin(None, F, prefs, steps=10)
    phases = []
    for _ in range(4):
        m.step(None, F, J, prefs)
        phases.append(m.last_phase)
    assert phases == ["init", "init", "main", "main"]


@pytest.mark.parametrize("factor", [1e-150, 1e-8, 1e8, 1e150])
def test_direction_scales_with_the_jacobian(factor):
    """J → cJ gives d → c·d (the weights do not change), even at 1e±150 where J Jᵀ would under/overflow (D4)."""
    for seed in range(10):
        F, J, prefs = random_case(seed)
        D = main_phase().step(None, F, J, prefs)
        Dc = main_phase().step(None, F, J * factor, prefs)
        # per solution, relative to its largest gradient: a min-norm point is resolved to ~√ε of the data
        tol = 1e-7 * J.norm(dim=2).amax(dim=1, keepdim=True)  # (P, 1)
        assert bool(((Dc / factor - D).abs() <= tol).all()), seed


def test_permutation_and_preference_scale_invariance():
    """Permuting the solutions (with their preferences) permutes the directions; a preference row × 7 changes nothing."""
    for seed in range(10):
        F, J, prefs = random_case(seed)
        D = main_phase().step(None, F, J, prefs)
        perm = torch.randperm(F.shape[0], generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(main_phase().step(None, F[perm], J[perm], prefs[perm]), D[perm])
        torch.testing.assert_close(main_phase().step(None, F, J, prefs * 7.0), D)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


def test_single_objective_is_gradient_descent():
    """K = 1: no constraint can be active; main phase d = ∇f, initial phase d = 0."""
    F, J, _ = random_case(1, K=1)
    prefs = torch.ones(F.shape[0], 1, dtype=torch.float64)
    torch.testing.assert_close(main_phase().step(None, F, J, prefs), J[:, 0])
    assert bool((ParetoMTL(init_steps=1).step(None, F, J, prefs) == 0).all())


def test_duplicate_preferences_share_a_sector():
    """Duplicate rows: u_j − u_k = 0 is never active; on VLMOP2 the duplicates end together, the others in their own sectors."""
    prefs = circle_preferences(4)
    prefs = torch.cat([prefs[:2], prefs[1:2], prefs[2:]], dim=0)  # row 1 repeated (P = 5)
    r = run_set("pareto-mtl", "vlmop2", preferences=prefs, seed=0)
    assert sectors(r.f_final, prefs).tolist() == [0, 1, 1, 3, 4]
    assert float(r.ps_measure.max()) < 1e-6


def test_zero_gradients_give_zero_direction():
    F, J, prefs = random_case(2)
    J = torch.zeros_like(J)
    assert bool((main_phase().step(None, F, J, prefs) == 0).all())


def test_non_finite_and_invalid_inputs_raise():
    F, J, prefs = random_case(3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        main_phase().step(None, F.clone().fill_(math.nan), J, prefs)
    J_bad = J.clone()
    J_bad[0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        main_phase().step(None, F, J_bad, prefs)
    with pytest.raises(ValueError, match="non-negative"):
        main_phase().step(None, F, J, -prefs)
    with pytest.raises(ValueError, match="all zero"):
        main_phase().step(None, F, J, prefs * 0)
    with pytest.raises(ValueError, match="preference"):
        main_phase().step(None, F, J, None)


def test_float32_matches_float64():
    """float32 inputs give a float32 direction equal to the float64 one up to float32 rounding."""
    for seed in range(5):
        F, J, prefs = random_case(seed)
        D64 = main_phase().step(None, F, J, prefs)
        D32 = main_phase().step(None, F.float(), J.float(), prefs.float())
        assert D32.dtype == torch.float32
        torch.testing.assert_close(D32.double(), D64, rtol=1e-4, atol=1e-4 * float(D64.abs().max()))


def test_default_preferences_are_the_papers_circle_points():
    """K = 2: angles linspace(0, π/2, P) (official circle_points), scaled onto the simplex, end points exact."""
    p = ParetoMTL().default_preferences(5, 2)
    angles = torch.atan2(p[:, 1], p[:, 0])
    torch.testing.assert_close(angles, torch.linspace(0, math.pi / 2, 5, dtype=torch.float64))
    torch.testing.assert_close(p.sum(1), torch.ones(5, dtype=torch.float64))
    assert p[0, 1] == 0 and p[-1, 0] == 0
