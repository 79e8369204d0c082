"""TCH-Set and STCH-Set ("Few for Many", Lin et al., ICLR 2025): smoothing bounds, gradients, the clusters claims.

Notation as in the module: P solutions (the paper's K), K objectives (the paper's m), F (P, K), J (P, K, n).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from reference_impls.core.solvers import min_norm_weights
from reference_impls.finite_set.stch_set import STCHSet, TCHSet, stch_set_value, tch_set_direction, tch_set_value
from reference_impls.finite_set.sum_of_minimum import SumOfMinimum
from reference_impls.loss_balancing.stch import smooth_tchebycheff, smooth_tchebycheff_weights
from reference_impls.problems.clusters import Clusters, minimum_enclosing_ball

F64, F32 = torch.float64, torch.float32
EPS = torch.finfo(F64).eps


def _random_set(seed: int, dtype=F64):
    """Random F (P, K), J (P, K, n), λ > 0 (entries up to 3, not normalised), z, μ; scales 1e-12..1e12."""
    g = torch.Generator().manual_seed(seed)
    P = int(torch.randint(1, 7, (1,), generator=g))
    K = int(torch.randint(1, 41, (1,), generator=g))
    scale = 10.0 ** float(torch.empty(1).uniform_(-12, 12, generator=g))
    F = (torch.rand(P, K, generator=g, dtype=F64) * 4 - 1) * scale
    J = torch.randn(P, K, 3, generator=g, dtype=F64) * scale
    lam = torch.rand(K, generator=g, dtype=F64) * 3 + 0.01
    z = (torch.rand(K, generator=g, dtype=F64) - 0.5) * scale
    mu = scale * 10.0 ** float(torch.empty(1).uniform_(-9, 1, generator=g))
    return F.to(dtype), J.to(dtype), lam.to(dtype), z.to(dtype), mu


def _rounding(F: Tensor, lam: Tensor, z: Tensor, mu: float) -> float:
    """A bound on the rounding error of g and g_μ: 64 ε (max_i λ_i (|a_i| + |z_i|) + μ (log P + log K + 1))."""
    a = F.min(0).values
    eps = torch.finfo(F.dtype).eps
    return 64 * eps * (float((lam * (a.abs() + z.abs())).max()) + mu * (math.log(F.shape[0]) + math.log(F.shape[1]) + 1))


# ---------------------------------------------------------------------------------------------
# Smoothing bounds (derived in the module docstring from the paper's definitions)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_smoothing_bounds_hold_with_their_exact_constants(seed):
    # max_i λ_i (a_i − μ log P − z_i) ≤ g_μ ≤ g + μ log K on random sets: P in 1..6, K in 1..40, λ_i up to 3
    # (not normalised), losses on scales 1e-12..1e12, μ from 1e-9 to 10 times the scale (so g_μ → g is
    # covered at μ/scale = 1e-9, where the stable formulation must return g to rounding).
    # The left side is ≥ g − μ·λ_{i*}·log P ≥ g − μ·max λ·log P (the paper's "g − μ log K_sol" for max λ ≤ 1).
    F, _, lam, z, mu = _random_set(seed)
    P, K = F.shape
    g = float(tch_set_value(F, lam, z))
    g_mu = float(stch_set_value(F, mu, lam, z))
    tol = _rounding(F, lam, z, mu)
    lower = float((lam * (F.min(0).values - mu * math.log(P) - z)).max())
    assert lower - tol <= g_mu <= g + mu * math.log(K) + tol, (lower, g_mu, g + mu * math.log(K))
    i_star = int((lam * (F.min(0).values - z)).argmax())
    assert lower >= g - mu * float(lam[i_star]) * math.log(P) - tol


@pytest.mark.parametrize("P, K", [(1, 1), (2, 7), (5, 128)])
def test_the_lower_bound_is_approached_by_coincident_solutions_and_one_dominant_objective(P, K):
    # P identical solutions (smin_i = a_i − μ log P exactly) and objective 0 above the others by Δ:
    # g_μ − (g − μ λ_0 log P) = μ log(1 + Σ_{i>0} e^{−Δ_i/μ}) ≤ μ (K − 1) e^{−Δ/μ} → 0 as Δ/μ grows.
    mu = 0.1
    lam = torch.linspace(0.5, 2.0, K, dtype=F64)
    for delta in (0.5, 2.0, 5.0):
        row = torch.zeros(K, dtype=F64)
        row[0] = (1.0 + delta) / lam[0]  # t_0 = 1 + Δ, every other t_i = 0 − λ_i μ log P < 1
        row[1:] = 1.0 / lam[1:]
        F = row.expand(P, K).clone()
        g = float(tch_set_value(F, lam))
        gap = float(stch_set_value(F, mu, lam)) - (g - mu * float(lam[0]) * math.log(P))
        assert -1e-14 <= gap <= mu * (K - 1) * math.exp(-delta / mu) + 1e-14, (delta, gap)


@pytest.mark.parametrize("K", [1, 3, 128])
def test_the_upper_bound_is_approached_by_separated_solutions_and_equal_terms(K):
    # P = K solutions, solution i best for objective i by Δ, every λ_i (a_i − z_i) = c: smin_i → a_i and the
    # outer log-sum-exp of K equal terms is c + μ log K, so g_μ − (g + μ log K) → 0 (≤ max λ·μ (P−1) e^{−Δ/μ}).
    mu = 0.1
    g_ = torch.Generator().manual_seed(K)
    lam = torch.rand(K, generator=g_, dtype=F64) + 0.5
    z = torch.randn(K, generator=g_, dtype=F64)
    c = 0.7
    best = c / lam + z  # a_i, (K,)
    for delta in (1.0, 3.0, 6.0):
        F = best.expand(K, K).clone() + delta * (1 - torch.eye(K, dtype=F64))  # (P = K, K)
        g = float(tch_set_value(F, lam, z))
        gap = g + mu * math.log(K) - float(stch_set_value(F, mu, lam, z))
        assert abs(g - c) < 1e-14
        assert -1e-13 <= gap <= float(lam.max()) * mu * (K - 1) * math.exp(-delta / mu) + 1e-13, (delta, gap)


def test_the_papers_lower_constant_needs_max_lambda_at_most_one():
    # With λ = 2 (outside the simplex) and P coincident solutions, g_μ = g − 2 μ log P < g − μ log P: the
    # paper's form "TCH-Set − μ log K_sol" is wrong there, the derived μ·max λ·log P is exact.
    P, mu = 4, 0.1
    F = torch.full((P, 1), 3.0, dtype=F64)
    lam = torch.tensor([2.0], dtype=F64)
    g, g_mu = float(tch_set_value(F, lam)), float(stch_set_value(F, mu, lam))
    assert g_mu < g - mu * math.log(P) - 0.1
    assert abs(g_mu - (g - 2 * mu * math.log(P))) < 1e-14


# ---------------------------------------------------------------------------------------------
# Gradients and exact properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mu", [1.0, 0.3])
def test_stch_set_direction_is_the_gradient_by_finite_differences(seed, mu):
    # D = STCHSet.step equals ∇_X g_μ(F(X)) on clusters (K = 16, P = 3, random X in the anchors' box),
    # by 4th-order central differences (h = 1e-3); per solution within 1e-7 of its own ||D_p||.
    pb = Clusters(m=16, k=3, seed=seed)
    X = pb.initial_points(seed, num=3)
    F, J = pb.value_and_jacobian(X)
    D = STCHSet(mu=mu).step(X, F, J, None)
    h = 1e-3
    fd = torch.zeros_like(X)
    for p in range(X.shape[0]):
        for j in range(X.shape[1]):
            e = torch.zeros_like(X)
            e[p, j] = h

            def gm(s):
                return float(stch_set_value(pb.losses(X + s * e), mu))

            fd[p, j] = (-gm(2) + 8 * gm(1) - 8 * gm(-1) + gm(-2)) / (12 * h)  # O(h⁴)
    for p in range(X.shape[0]):
        assert float(D[p].norm()) > 1e-6  # every solution's share is resolvable at these μ
        assert float((D[p] - fd[p]).norm()) <= 1e-7 * float(D[p].norm()), (p, D[p], fd[p])


@pytest.mark.parametrize("seed", range(6))
def test_stch_set_direction_tends_to_the_tch_set_gradient_as_mu_tends_to_zero(seed):
    # Where one piece (i*, p*) is strictly active, the softmax/softmin weights become one-hot as μ → 0:
    # ||D_μ − λ_i* ∇f_i*(x_p*) e_p*|| ≤ 2 (K + P) e^{−gap/μ} + 1e-13, gap = the margin of
    # the winning term over the rest (both in the max over objectives and the min over solutions), in units
    # of λ_max max ||J_pi||.
    F, J, lam, z, _ = _random_set(100 + seed)
    F, J, z = F / F.abs().max(), J, z / F.abs().max()
    P, K = F.shape
    u = lam * (F - z)  # (P, K)
    t = u.min(0).values
    i_star = int(t.argmax())
    p_star = int(u[:, i_star].argmin())
    gap_obj = min([float(t.max() - t[i]) for i in range(K) if i != i_star], default=1.0)  # margin in the max
    gap_sol = min([float(F[p, i_star] - F[p_star, i_star]) for p in range(P) if p != p_star], default=1.0)  # in the min
    gap = min(gap_obj, gap_sol)
    assert gap > 1e-9  # no tie: one active piece
    D_tch = tch_set_direction(F, J, lam, z, tie_tol=0.0)
    ref = torch.zeros_like(D_tch)
    ref[p_star] = lam[i_star] * J[p_star, i_star]
    torch.testing.assert_close(D_tch, ref, rtol=0, atol=0)  # one active piece: its gradient, nothing else
    scale = float(lam.max()) * float(J.norm(dim=2).max())
    for ratio in (5.0, 20.0, 60.0):
        mu = gap / ratio
        m = STCHSet(mu=mu, preference=lam)
        m.begin(torch.zeros(P, 3, dtype=F64), F, None, steps=1, ideal=z)
        D = m.step(torch.zeros(P, 3, dtype=F64), F, J, None)
        err = float((D - ref).norm())
        assert err <= 2 * (K + P) * math.exp(-ratio) * scale + 1e-13 * scale, (ratio, err, scale)


@pytest.mark.parametrize("seed", range(5))
def test_exact_invariances_of_stch_set(seed):
    # (a) permuting the solutions permutes D; (b) with λ = 𝟙, adding c to every loss shifts g_μ by c and leaves D;
    # (c) homogeneity at s = 1e±12: g_{sμ}(sF) = s g_μ(F), and the weights ∂g/∂F are unchanged (D too, J fixed);
    # (d) P identical solutions: each gets 1/P of the single-solution direction. Relative tolerance 1e-12
    # of each solution's own norm.
    F, J, _, _, _ = _random_set(200 + seed)
    F, J = F / F.abs().max() * 3, J / J.abs().max()
    P, K = F.shape
    mu = 0.2
    m = STCHSet(mu=mu)
    X = torch.zeros(P, 3, dtype=F64)
    D = m.step(X, F, J, None)

    def close(A, B):
        for p in range(A.shape[0]):
            assert float((A[p] - B[p]).norm()) <= 1e-12 * max(float(B[p].norm()), float(A[p].norm())) + 1e-300, (p, A[p], B[p])

    perm = torch.randperm(P, generator=torch.Generator().manual_seed(seed))
    close(m.step(X[perm], F[perm], J[perm], None), D[perm])  # (a)
    c = 123.25
    assert abs(float(stch_set_value(F + c, mu)) - float(stch_set_value(F, mu)) - c) <= 64 * EPS * (c + 3 + mu * math.log(K * P))
    close(m.step(X, F + c, J, None), D)  # (b)
    for s in (1e-12, 1e12):
        assert abs(float(stch_set_value(s * F, s * mu)) - s * float(stch_set_value(F, mu))) <= 64 * EPS * s * (3 + mu * math.log(K * P))
        close(STCHSet(mu=s * mu).step(X, s * F, J, None), D)  # (c)
    single = m.step(X[:1], F[:1], J[:1], None)  # (1, n)
    same = m.step(X[:1].expand(4, 3), F[:1].expand(4, K), J[:1].expand(4, K, 3), None)
    close(same, single.expand(4, 3) / 4)  # (d)


@pytest.mark.parametrize("seed", range(4))
def test_one_solution_is_the_smooth_tchebycheff_of_lin_et_al_2024(seed):
    # P = 1: smin_i = f_i exactly, so g_μ is the smooth Tchebycheff scalarisation (loss_balancing/stch.py,
    # ICML 2024) and D = J^T ∂g_μ/∂f. Equal within 1e-13 relative.
    F, J, lam, z, _ = _random_set(300 + seed)
    F, J, z = F[:1] / F.abs().max(), J[:1], z / F.abs().max()
    mu = 0.05
    ref = float(smooth_tchebycheff(F[0], lam, z, mu))
    assert abs(float(stch_set_value(F, mu, lam, z)) - ref) <= 1e-13 * (abs(ref) + mu)
    m = STCHSet(mu=mu, preference=lam)
    m.begin(torch.zeros(1, 3, dtype=F64), F, None, steps=1, ideal=z)
    D = m.step(torch.zeros(1, 3, dtype=F64), F, J, None)
    expect = smooth_tchebycheff_weights(F[0], lam, z, mu) @ J[0]  # (n,)
    assert float((D[0] - expect).norm()) <= 1e-13 * float(expect.norm())


def test_tch_set_direction_at_ties_is_the_certified_min_norm_element():
    # Objectives 0 and 1 tie for the max (a = 1, z = 0, λ = 1) and objective 0 has two tied best solutions:
    # the active pieces are (0, p0), (0, p1), (1, p2). D is the min-norm point of their hull: KKT
    # ⟨D, G_j⟩ ≥ ||D||² − 32 A ε S (||G_j|| + S) per generator, D = Σ ν_j G_j with ν from min_norm_weights.
    g = torch.Generator().manual_seed(7)
    P, K, n = 3, 4, 5
    J = torch.randn(P, K, n, generator=g, dtype=F64) * torch.logspace(-2, 2, K, dtype=F64)[None, :, None]
    F = torch.full((P, K), 5.0, dtype=F64)
    F[0, 0] = F[1, 0] = 1.0
    F[2, 1] = 1.0
    F[:, 2:] = 0.5
    D = tch_set_direction(F, J, tie_tol=0.0)
    G = torch.zeros(3, P, n, dtype=F64)
    G[0, 0], G[1, 1], G[2, 2] = J[0, 0], J[1, 0], J[2, 1]
    Gf = G.reshape(3, -1)
    nu = min_norm_weights(Gf @ Gf.T)
    torch.testing.assert_close(D.reshape(-1), nu @ Gf, rtol=1e-13, atol=1e-13 * float(Gf.norm(dim=1).max()))
    S = float((nu * Gf.norm(dim=1)).sum())
    for j in range(3):
        assert float(D.reshape(-1) @ Gf[j]) >= float(D.reshape(-1) @ D.reshape(-1)) - 32 * 3 * EPS * S * (float(Gf[j].norm()) + S)


@pytest.mark.parametrize("seed", range(3))
def test_tch_set_direction_vanishes_at_the_proven_minimax_optimum(seed):
    # At the clusters' minimax centres (the planted clusters' minimum enclosing balls, Lemma 2 of
    # problems/clusters.py) the worst cluster's boundary anchors tie; the centre lies in the convex hull
    # of its boundary points, so the min-norm direction is 0 (the optimum is a fixed point), while
    # autograd's one-piece subgradient (the official code's) is not: ||D|| ≤ 1e-9 ||one piece||.
    pb = Clusters(m=64, k=4, seed=seed)
    X = pb.minimax_centres()
    F, J = pb.value_and_jacobian(X)
    D = TCHSet().step(X, F, J, None)
    served = F.min(0).values
    i = int(served.argmax())
    p = int(F[:, i].argmin())
    piece = float(J[p, i].norm())
    assert abs(float(served.max()) - pb.optimal_tch_set()) <= 1e-12
    assert float(D.norm()) <= 1e-9 * piece, (float(D.norm()), piece)


def test_tch_set_ties_between_identical_solutions_share_the_direction():
    # P identical solutions tie for every objective: the generators λ_i ∇f_i in P orthogonal rows get
    # equal weight, so each row is 1/P of the single-solution direction (a defined result, not a pick).
    pb = Clusters(m=32, k=2, seed=1)
    x = pb.initial_points(3, num=1)
    F1, J1 = pb.value_and_jacobian(x)
    single = TCHSet().step(x, F1, J1, None)
    X = x.expand(3, 2).clone()
    F, J = pb.value_and_jacobian(X)
    D = TCHSet().step(X, F, J, None)
    torch.testing.assert_close(D, single.expand(3, 2) / 3, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# Degenerate inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_float32_agrees_with_float64_and_huge_losses_do_not_overflow(seed):
    # float32 value and directions within 1e3 ε₃₂ (relative, per solution) of float64, at scale 1 and
    # at losses ~1e30 with μ = 0.1 (F/μ ~ 1e31 in float32: the shifted formulation never exponentiates it).
    F, J, lam, z, _ = _random_set(400 + seed)
    F, J, z = F / F.abs().max(), J / J.abs().max(), z / F.abs().max()
    eps32 = torch.finfo(F32).eps
    for scale in (1.0, 1e30):
        Fs, zs = F * scale, z * scale
        mu = 0.1 * scale if scale == 1.0 else 0.1
        v64 = float(stch_set_value(Fs, mu, lam, zs))
        v32 = float(stch_set_value(Fs.to(F32), mu, lam.to(F32), zs.to(F32)))
        assert math.isfinite(v32) and abs(v32 - v64) <= 1e3 * eps32 * (abs(v64) + mu * 10)
        for method in (STCHSet(mu=mu, preference=lam), TCHSet(preference=lam)):
            out = {}
            for dt in (F64, F32):
                method.begin(torch.zeros(F.shape[0], 3, dtype=dt), Fs.to(dt), None, steps=1, ideal=zs.to(dt))
                out[dt] = method.step(torch.zeros(F.shape[0], 3, dtype=dt), Fs.to(dt), J.to(dt), None)
            assert out[F32].dtype == F32 and bool(torch.isfinite(out[F32]).all())
            for p in range(F.shape[0]):
                ref = float(out[F64][p].norm())
                assert float((out[F32][p].double() - out[F64][p]).norm()) <= 1e3 * eps32 * float(J.abs().max()) * float(lam.max()), (method.name, scale, p, ref)


def test_degenerate_shapes_and_tiny_losses_have_defined_results():
    # K = 1: TCH-Set moves only the best solution (λ ∇f there); STCH-Set moves each by its softmin share π_p,
    # summing to λ. Tiny losses (1e-300 scale) with μ = 0.1: π and w uniform, D = mean of the gradients / P·K weights.
    F = torch.tensor([[2.0], [1.0], [3.0]], dtype=F64)
    J = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]], dtype=F64)
    D = TCHSet().step(torch.zeros(3, 2, dtype=F64), F, J, None)
    torch.testing.assert_close(D, torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=F64), rtol=0, atol=0)
    mu = 0.5
    Ds = STCHSet(mu=mu).step(torch.zeros(3, 2, dtype=F64), F, J, None)
    pi = torch.softmax(-F[:, 0] / mu, 0)
    torch.testing.assert_close(Ds, pi[:, None] * J[:, 0], rtol=1e-14, atol=0)
    tiny = torch.rand(4, 6, generator=torch.Generator().manual_seed(0), dtype=F64) * 1e-300
    Jt = torch.randn(4, 6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    Dt = STCHSet().step(torch.zeros(4, 2, dtype=F64), tiny, Jt, None)
    torch.testing.assert_close(Dt, Jt.mean(1) / 4, rtol=1e-12, atol=0)
    assert float(stch_set_value(tiny, 0.1)) == pytest.approx(0.1 * (math.log(6) - math.log(4)), rel=1e-12)
    Z = torch.zeros(4, 6, 2, dtype=F64)
    assert float(TCHSet().step(torch.zeros(4, 2, dtype=F64), tiny, Z, None).abs().max()) == 0.0
    assert float(STCHSet().step(torch.zeros(4, 2, dtype=F64), tiny, Z, None).abs().max()) == 0.0


def test_invalid_inputs_raise_value_errors():
    F = torch.rand(3, 4, dtype=F64)
    J = torch.randn(3, 4, 2, dtype=F64)
    X = torch.zeros(3, 2, dtype=F64)
    for method in (STCHSet(), TCHSet()):
        for bad_F, bad_J in ((F.clone().fill_(float("nan")), J), (F, J.clone().fill_(float("inf"))), (F.clone().fill_(float("inf")), J)):
            with pytest.raises(ValueError, match="NaN or infinite"):
                method.step(X, bad_F, bad_J, None)
        with pytest.raises(ValueError):
            method.step(X, F, J[:, :3], None)
        with pytest.raises(ValueError, match="preference"):
            type(method)(preference=[1.0, 0.0, 1.0, 1.0])
        m = type(method)(preference=[1.0, 1.0])
        with pytest.raises(ValueError, match="K=4"):
            m.begin(X, F, None, steps=1)
        with pytest.raises(ValueError, match="ideal"):
            method.begin(X, F, None, steps=1, ideal=torch.tensor([0.0, float("nan"), 0.0, 0.0], dtype=F64))
    for mu in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mu"):
            STCHSet(mu=mu)
    big = torch.full((2, 2), 3e38, dtype=F32)
    with pytest.raises(ValueError, match="overflows"):
        stch_set_value(big, 0.1, torch.tensor([10.0, 1.0], dtype=F32))


# ---------------------------------------------------------------------------------------------
# The paper's claims on the clusters problem (m = 128 objectives, k = 5 solutions)
# ---------------------------------------------------------------------------------------------


def _run(method, pb: Clusters, X0: torch.Tensor, steps: int = 300, lr: float = 1e-2, optimizer=torch.optim.Adam):
    """The set loop (D = step, then the optimiser) from X0; returns X and min_p f_i(x_p) per objective, (m,)."""
    X = X0.clone().requires_grad_(True)
    opt = optimizer([X], lr=lr)
    F, J = pb.value_and_jacobian(X.detach())
    method.begin(X0, F, None, steps=steps, ideal=pb.ideal_point())
    for _ in range(steps):
        opt.zero_grad()
        X.grad = method.step(X.detach(), F, J, None)
        opt.step()
        F, J = pb.value_and_jacobian(X.detach())
    return X.detach(), F.min(0).values


def _one_anchor_per_cluster(pb: Clusters, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for c in range(pb.k):
        members = torch.nonzero(pb.labels == c).flatten()
        rows.append(pb.anchors[members[int(torch.randint(len(members), (1,), generator=g))]])
    return torch.stack(rows)  # (k, n)


@pytest.mark.parametrize("seed", range(3))
def test_stch_set_worst_objective_approaches_the_minimax_optimum_and_beats_sum_of_minimum(seed):
    # From one anchor of each planted cluster (the basin of the planted optima), Adam lr 1e-2, 300 steps:
    # * the worst objective max_i min_p f_i falls as μ falls (0.1 → 0.01 → 0.001), to within 5 % of the
    #   proven TCH-Set optimum max_c R_c² at μ = 0.001 (measured: within 1.8 % over seeds 0-3);
    # * at every μ it is below the worst objective of sum-of-minimum (finite_set/sum_of_minimum.py run as
    #   Lloyd's algorithm from the same start: SGD lr 1/2, 30 steps), which reaches the proven sum-of-minimum
    #   optimum there (the planted means, Lemma 1 of problems/clusters.py): the paper's claim (measured margin
    #   ≥ 1 % at μ = 0.1, the paper's default, which on losses ~0.02 smooths towards the mean);
    # * it is far below the best single solution's (k = 1: the squared radius of the minimum enclosing ball
    #   of all anchors, ≈ 1.2): below 3 % of it.
    # Seeds 0, 1, 2 (problem seed = start seed); all pass (seed 3 also passes, not run to keep CI short).
    pb = Clusters(m=128, k=5, seed=seed)
    X0 = _one_anchor_per_cluster(pb, seed)
    opt = pb.optimal_tch_set()
    som_worst = float(torch.cdist(pb.anchors, pb.optimal_centres()).pow(2).min(1).values.max())
    single = minimum_enclosing_ball(pb.anchors.numpy())[1]
    assert opt < som_worst  # the two optima differ on this instance
    _, som_served = _run(SumOfMinimum(seeding="none"), pb, X0, steps=30, lr=0.5, optimizer=torch.optim.SGD)
    assert abs(float(som_served.max()) - som_worst) <= 1e-9 * som_worst  # Lloyd reached the proven optimum
    worst = []
    for mu in (0.1, 0.01, 0.001):
        _, served = _run(STCHSet(mu=mu), pb, X0)
        worst.append(float(served.max()))
    assert worst[0] > worst[1] > worst[2] >= opt * (1 - 1e-9), worst
    assert worst[2] <= 1.05 * opt, (worst[2], opt)
    assert max(worst) < som_worst, (worst, som_worst)
    assert max(worst) < 0.03 * single, (worst, single)


def test_smoothing_finds_more_clusters_than_tch_set_from_random_starts():
    # The paper's case for STCH-Set over TCH-Set: TCH-Set's subgradient moves only the best solution of the
    # worst objective, so solutions stranded between clusters never move; STCH-Set (μ = 0.1, the paper's)
    # gives every solution a share. From the problem's random starts (uniform in the anchors' box), Adam
    # lr 1e-2, 300 steps, seeds 0-3: STCH-Set finds (a solution within ρ_c of) at least as many planted
    # clusters as TCH-Set on every seed, and strictly more in total. Measured found clusters: STCH-Set 5, 5,
    # 2, 5; TCH-Set 0, 5, 1, 5 (seeds 4-7: 5, 5, 3, 5 vs 0, 5, 0, 1).
    found = {"stch": [], "tch": []}
    for seed in range(4):
        pb = Clusters(m=128, k=5, seed=seed)
        X0 = pb.initial_points(seed, num=5)
        for key, method in (("stch", STCHSet()), ("tch", TCHSet())):
            X, served = _run(method, pb, X0)
            found[key].append(pb.extra_metrics(X, pb.losses(X))["clusters_found"])
    assert all(s >= t for s, t in zip(found["stch"], found["tch"])), found
    assert sum(found["stch"]) > sum(found["tch"]), found


def test_runs_on_clusters_through_the_runner():
    # The runner path with the paper's optimiser (SGD lr 1e-2; 400 steps here) on clusters: the worst
    # objective falls from that of the problem's starting set.
    from reference_impls.set_runner import run_set

    res = run_set("stch-set", "clusters", solutions=5, steps=400, seed=1)
    X0 = Clusters().initial_points(1, num=5)
    start = float(Clusters().losses(X0).min(0).values.max())
    assert float(res.f_final.min(0).values.max()) < 0.5 * start, (res.f_final.min(0).values.max(), start)
