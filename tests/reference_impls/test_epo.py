"""Tests of EPO (reference_impls/finite_set/epo.py and the shared LPs in finite_set/epo_lp.py).

Claims of the paper (Mahapatra & Rajan, ICML 2020, Fig. 2 / §5.1) on VLMOP2 (its concave toy,
n = 20) with the official toy settings (step 0.1·10·max(μ, 0.1), 100 iterations, rays at angles
π/20..9π/20): each solution reaches the Pareto front on its own ray l ∝ 1/r (exact Pareto
optimality) while linear scalarisation with the same preferences collapses to the ends; the
non-uniformity μ decreases in balance mode. Seeds 0..2 × 4 rays: 12/12 solutions pass.
Exact properties of the LPs on random inputs (20 seeds): feasibility of α, the constraints' meaning
(per-task relative tolerances), optimality against 20 000 random feasible points of the simplex.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.finite_set.epo import EPO
from reference_impls.finite_set.epo_lp import adjustments, epo_circle_preferences, inverse_rays
from reference_impls.finite_set.ls import LS
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

SEEDS = range(3)


def random_case(seed: int, P: int = 4, K: int = 3, n: int = 6, on_ray: bool = False):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.1
    r = r / r.sum(1, keepdim=True)  # (P, K)
    F = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.05  # (P, K)
    if on_ray:
        F = (torch.rand(P, 1, generator=g, dtype=torch.float64) + 0.5) / r  # r ⊙ F ∝ 𝟙: μ = 0
    scales = 10.0 ** (4 * torch.rand(P, K, 1, generator=g, dtype=torch.float64) - 2)  # per-task norms 1e-2..1e2
    J = torch.randn(P, K, n, generator=g, dtype=torch.float64) * scales  # (P, K, n)
    return F, J, r


# ------------------------------------------------------------------------------------------------
# Paper claims on the toy
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_runs():
    """EPO and LS on VLMOP2 with the toy's 4 rays, seeds 0..2 (shared by the claims below)."""
    prefs = epo_circle_preferences(4)
    return prefs, [(run_set("epo", "vlmop2", preferences=prefs, seed=s), run_set(LS, "vlmop2", preferences=prefs, seed=s)) for s in SEEDS]


def test_epo_reaches_its_rays_on_the_concave_front_where_ls_collapses(toy_runs):
    """VLMOP2, official settings (100 iterations), seeds 0..2, 4 rays each (12/12): μ ≤ 1e-4 (r ⊙ l uniform), angle
    to the ray l ∝ 1/r below 0.01 rad, PS-measure < 1e-2 and distance to the Pareto set < 2e-2 (on the front).
    Linear scalarisation with the same preferences ends within 0.01 of the front's ends, at least 0.15 rad
    (≈ π/20) off every ray."""
    problem = get_problem("vlmop2")
    ends = problem.pareto_front(2)
    prefs, runs = toy_runs
    for seed, (r, ls) in zip(SEEDS, runs, strict=True):
        mu = adjustments(r.f_final, prefs)[1]
        assert float(mu.max()) <= 1e-4, seed
        assert r.extra["metrics"]["preference_angle"] < 1e-2, seed
        assert float(r.ps_measure.max()) < 1e-2 and float(r.distance.max()) < 2e-2, seed
        assert float(torch.cdist(ls.f_final, ends).min(dim=1).values.max()) < 1e-2, seed
        cos = torch.nn.functional.cosine_similarity(ls.f_final, inverse_rays(prefs), dim=1)
        assert float(torch.arccos(cos.clamp(-1, 1)).min()) > 0.15, seed  # the outer rays are π/20 from the axes


def test_mu_decreases_in_balance_mode(toy_runs):
    """Along the runs above (seeds 0..2, 4 rays, 100 steps): μ_{t+1} ≤ μ_t whenever μ_t > 10ε (balance mode moves
    r ⊙ l towards uniform), and every solution reaches μ ≤ ε (12/12).

    Not asserted below 10ε: when the balance direction would increase every loss (J = ∅) the official LP imposes
    pure descent (Cα ≥ 0) and μ can rise a little — seed 1, solution 1 goes from 6.6e-4 to 8.8e-4 over steps 9..20
    after a descent step overshot — before the balance steps bring it down again."""
    eps = 1e-4
    prefs, runs = toy_runs
    for seed, (r, _) in zip(SEEDS, runs, strict=True):
        mu = torch.stack([adjustments(f, prefs)[1] for f in r.f])  # (T + 1, P)
        balance = mu[:-1] > 10 * eps
        assert bool((mu[1:][balance] <= mu[:-1][balance] * (1 + 1e-12)).all()), seed
        assert bool((mu <= eps).any(dim=0).all()), seed


def test_epo_reaches_the_closed_form_exact_point_on_a_convex_front():
    """biquad (f_1 = ||x||², f_2 = ||x − e_1||²): the EPO point of r is x* = t·e_1 with r_1 t² = r_2 (1 − t)², i.e.
    t = √r_2/(√r_1 + √r_2). 3 default rays, 100 steps, seeds 0..2 (9/9 solutions): ||x − x*|| < 1e-2 (found: ≤ 3.4e-3), μ ≤ 1e-4."""
    for seed in SEEDS:
        r = run_set("epo", "biquad", solutions=3, seed=seed)
        prefs = r.extra["preferences"]
        t = prefs[:, 1].sqrt() / (prefs[:, 0].sqrt() + prefs[:, 1].sqrt())  # (P,)
        x_star = torch.zeros_like(r.x_final)
        x_star[:, 0] = t
        assert float((r.x_final - x_star).norm(dim=1).max()) < 1e-2, seed
        assert float(adjustments(r.f_final, prefs)[1].max()) <= 1e-4, seed


# ------------------------------------------------------------------------------------------------
# Exact properties of the LPs
# ------------------------------------------------------------------------------------------------


def _lp_data(F, J, r, p):
    rl, mu, a = adjustments(F, r)
    G = J[p].numpy()
    C = G @ G.T
    return rl[p].numpy(), float(mu[p]), a[p].numpy(), C, G


def _random_simplex(K, num, seed):
    w = np.random.default_rng(seed).dirichlet(np.ones(K), num)
    return np.vstack([w, np.eye(K)])


def test_balance_lp_alpha_is_feasible_and_optimal():
    """μ > ε: α ∈ Δ; ⟨g_j, d⟩ ≥ ⟨g_j, Gᵀa⟩ for j ∉ J ∪ J*, ⟨g_j, d⟩ ≥ 0 for j ∈ J* (each within 1e-9·||g_j||·Σ||g||·(1+||a||));
    αᵀCa is at least that of any of 20 000 random feasible simplex points (20 seeds)."""
    checked = 0
    for seed in range(20):
        F, J, r = random_case(seed)
        m = EPO(step_rule=False)
        m.directions(F, J, r)
        for p in range(F.shape[0]):
            if m.last_modes[p] != "balance":
                continue
            rl, mu, a, C, G = _lp_data(F, J, r, p)
            alpha = m.last_alpha[p].numpy()
            norms = np.linalg.norm(G, axis=1)
            tol = 1e-9 * norms * norms.sum() * (1 + np.abs(a).sum())
            Ca = C @ a
            Jset = Ca > 0
            if Jset.any():
                star = rl == rl.max()
                rhs = np.where(star, 0.0, Ca)
                keep = ~Jset | star
            else:
                rhs, keep = np.zeros_like(Ca), np.ones_like(Ca, dtype=bool)
            assert abs(alpha.sum() - 1) < 1e-12 and (alpha >= 0).all()
            assert ((C @ alpha - rhs)[keep] >= -tol[keep]).all(), (seed, p)
            W = _random_simplex(len(a), 20000, seed)
            feasible = ((W @ C - rhs)[:, keep] >= 0).all(axis=1)
            best = (W[feasible] @ Ca).max(initial=-np.inf)
            assert alpha @ Ca >= best - 1e-9 * np.abs(Ca).sum(), (seed, p)
            checked += 1
    assert checked >= 20


def test_descent_lp_gives_a_common_descent_direction():
    """μ ≤ ε (losses on the ray): ⟨g_j, d⟩ ≥ 0 for every task (per-task tolerance 1e-9·||g_j||·Σ||g||), αᵀCa ≥ min(max Ca, 0),
    and 𝟙ᵀCα is at least that of 20 000 random feasible simplex points (20 seeds)."""
    for seed in range(20):
        F, J, r = random_case(seed, on_ray=True)
        m = EPO(step_rule=False)
        D = m.directions(F, J, r)
        assert m.last_modes == ["descent"] * F.shape[0]
        for p in range(F.shape[0]):
            rl, mu, a, C, G = _lp_data(F, J, r, p)
            alpha = m.last_alpha[p].numpy()
            norms = np.linalg.norm(G, axis=1)
            assert (G @ D[p].numpy() >= -1e-9 * norms * norms.sum()).all(), (seed, p)
            Ca = C @ a
            assert alpha @ Ca >= min(Ca.max(), 0.0) - 1e-9 * np.abs(Ca).sum()
            W = _random_simplex(len(a), 20000, seed)
            feasible = ((W @ C) >= 0).all(axis=1) & (W @ Ca >= min(Ca.max(), 0.0))
            assert C.sum(1) @ alpha >= (W[feasible] @ C.sum(1)).max(initial=-np.inf) - 1e-9 * np.abs(C).sum(), (seed, p)


def test_step_rule_is_the_official_one():
    """D = 10·max(μ, 0.1)·d (official epo_search.py, with η = step_size = 0.1 in the runner)."""
    for seed in range(5):
        F, J, r = random_case(seed)
        m = EPO()
        D = m.step(None, F, J, r)
        factor = 10 * torch.clamp(adjustments(F, r)[1], min=0.1)
        torch.testing.assert_close(D, factor[:, None] * m.last_directions)


@pytest.mark.parametrize("factor", [1e-150, 1e-6, 1e6, 1e150])
def test_direction_scales_with_the_jacobian(factor):
    """J → cJ gives d → c·d: α is invariant (D3), even where C = GGᵀ would under/overflow."""
    for seed in range(5):
        F, J, r = random_case(seed)
        d = EPO(step_rule=False).directions(F, J, r)
        dc = EPO(step_rule=False).directions(F, J * factor, r)
        tol = 1e-7 * J.norm(dim=2).amax(dim=1, keepdim=True)  # per solution
        assert bool(((dc / factor - d).abs() <= tol).all()), seed


def test_target_rays_and_preference_scale():
    """target_rays = (1/r)/||1/r||; scaling a preference row (any positive factor) does not change D."""
    F, J, r = random_case(0)
    rays = EPO().target_rays(r)
    torch.testing.assert_close(rays * r * (1 / r).norm(dim=1, keepdim=True), torch.ones_like(r))
    torch.testing.assert_close(EPO().step(None, F, J, 3.0 * r), EPO().step(None, F, J, r))


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


def test_single_objective_is_gradient_descent():
    """K = 1: μ = 0, descent mode, α = 1, D = 10·0.1·∇f = ∇f."""
    F, J, _ = random_case(1, K=1)
    m = EPO()
    D = m.step(None, F, J, torch.ones(F.shape[0], 1, dtype=torch.float64))
    torch.testing.assert_close(D, J[:, 0])
    assert m.last_modes == ["descent"] * F.shape[0]


def test_zero_gradients_and_duplicate_preferences():
    F, J, r = random_case(2)
    assert bool((EPO().step(None, F, torch.zeros_like(J), r) == 0).all())
    F2, J2, r2 = F[[0, 0]], J[[0, 0]], r[[0, 0]]  # two identical solutions with the same preference
    D = EPO().step(None, F2, J2, r2)
    torch.testing.assert_close(D[0], D[1], rtol=0, atol=0)


def test_zero_losses_have_a_defined_direction():
    """A zero loss (an iterate on a box boundary, EPO D6): finite μ > ε and a finite direction in balance mode.
    All losses zero: μ = 0, descent mode (10 seeds)."""
    for seed in range(10):
        F, J, r = random_case(seed, K=2)
        F[:, 0] = 0.0
        m = EPO(step_rule=False)
        D = m.directions(F, J, r)
        assert bool(torch.isfinite(D).all()) and bool(torch.isfinite(m.last_mu).all())
        assert bool((m.last_mu > 1e-4).all()) and m.last_modes == ["balance"] * F.shape[0]
        m.directions(torch.zeros_like(F), J, r)
        assert m.last_modes == ["descent"] * F.shape[0] and bool((m.last_mu == 0).all())


def test_invalid_inputs_raise():
    F, J, r = random_case(3)
    r0 = r.clone()
    r0[0, 0] = 0.0
    with pytest.raises(ValueError, match="strictly positive"):
        EPO().step(None, F, J, r0)
    with pytest.raises(ValueError, match="losses must be non-negative"):
        EPO().step(None, F - 10, J, r)
    with pytest.raises(ValueError, match="NaN or infinite"):
        EPO().step(None, F.clone().fill_(math.nan), J, r)
    with pytest.raises(ValueError, match="non-negative"):
        EPO().step(None, F, J, -r)
    with pytest.raises(ValueError, match="preference"):
        EPO().step(None, F, J, None)


def test_float32_matches_float64():
    for seed in range(5):
        F, J, r = random_case(seed)
        D64 = EPO().step(None, F, J, r)
        D32 = EPO().step(None, F.float(), J.float(), r.float())
        assert D32.dtype == torch.float32
        tol = 1e-4 * J.norm(dim=2).amax(dim=1, keepdim=True) * 10
        assert bool(((D32.double() - D64).abs() <= tol).all()), seed


def test_default_preferences_are_the_toy_rays():
    """K = 2: angles linspace(π/20, 9π/20, P) (official circle_points), scaled onto the simplex."""
    p = EPO().default_preferences(4, 2)
    torch.testing.assert_close(torch.atan2(p[:, 1], p[:, 0]), torch.linspace(math.pi / 20, 9 * math.pi / 20, 4, dtype=torch.float64))
    torch.testing.assert_close(p.sum(1), torch.ones(4, dtype=torch.float64))
