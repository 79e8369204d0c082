"""Tests of FERERO (reference_impls/finite_set/ferero.py) and its exact dual QP ``simplex_qp``.

Claim of the paper (Chen et al., NeurIPS 2024, toy of §5 / official ``toy_experiments``): FERERO
reaches its preference ray (exact Pareto optimality: F ∥ v on the front) on the concave VLMOP2 front,
where linear scalarisation with the same preferences collapses to the two ends. Checked for seeds
0..3 × 5 rays (20/20 solutions) with plain SGD, lr 0.1, 300 steps from the problem's U(−0.5, 0.5)
starts (with the official step 0.5 from these starts, 2 of 6 seeds send their outermost solution onto
the plateau f = (1, 1), ∇f ≈ 0, in the first step and it never moves again: see the module docstring).
Exact properties on random inputs: the QP's KKT conditions and optimality against random feasible
points, the primal meaning of the FERERO dual (equality constraint met exactly, cone complementarity),
agreement with the official projected-gradient solver run to convergence, B_h ⊥ v orthonormal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import SolverError
from reference_impls.finite_set.ferero import FERERO, householder_complement, simplex_qp
from reference_impls.finite_set.ls import LS
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

SEEDS = range(4)


def random_case(seed: int, P: int = 4, K: int = 3, n: int = 7):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.05  # rays (P, K)
    F = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.1  # (P, K)
    scales = 10.0 ** (4 * torch.rand(P, K, 1, generator=g, dtype=torch.float64) - 2)  # per-task norms 1e-2..1e2
    J = torch.randn(P, K, n, generator=g, dtype=torch.float64) * scales  # (P, K, n)
    return F, J, v


# ------------------------------------------------------------------------------------------------
# The QP solver
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_simplex_qp_is_optimal_against_random_feasible_points(seed):
    """½yᵀQy − bᵀy at the answer ≤ its value at 20 000 random feasible points (simplex block with lower bounds,
    non-negative block, free block set to its optimal value given the rest), relative to the objective's scale;
    and the answer is feasible."""
    rng = np.random.default_rng(seed)
    P, ns, ng, nf = 3, 3, 1, 1
    N = ns + ng + nf
    A = rng.standard_normal((P, N, N + 1)) * 10.0 ** rng.uniform(-3, 3, size=(P, 1, 1))
    Q = A @ A.transpose(0, 2, 1)  # PSD
    b = rng.standard_normal((P, N)) * np.sqrt(np.einsum("pii->p", Q))[:, None]
    lower = np.full((P, ns), 0.05)
    y = simplex_qp(Q, b, ns, n_nonneg=ng, lower=lower)
    assert (y[:, :ns] >= lower - 1e-15).all() and (y[:, ns : ns + ng] >= 0).all()
    assert np.allclose(y[:, :ns].sum(1), 1.0, atol=1e-13)
    obj = lambda Y, p: 0.5 * np.einsum("ki,ij,kj->k", Y, Q[p], Y) - Y @ b[p]  # noqa: E731
    for p in range(P):
        S = rng.dirichlet(np.ones(ns), size=20000) * (1 - lower[p].sum()) + lower[p]  # feasible simplex block
        U = rng.exponential(1.0, size=(20000, ng)) * abs(y[p, ns]) * 2
        Y = np.concatenate([S, U, np.zeros((20000, nf))], axis=1)
        # best free block given the rest: Q_ff w = b_f − Q_f,rest y_rest
        rest = Y[:, : ns + ng]
        Y[:, ns + ng :] = np.linalg.solve(Q[p][ns + ng :, ns + ng :], (b[p][ns + ng :][None] - rest @ Q[p][: ns + ng, ns + ng :]).T).T
        scale = 0.5 * np.abs(y[p]) @ np.abs(Q[p]) @ np.abs(y[p]) + np.abs(b[p]) @ np.abs(y[p])
        assert obj(y[p][None], p)[0] <= obj(Y, p).min() + 1e-12 * scale


def test_simplex_qp_raises_when_no_face_is_certified():
    """An unbounded dual (free variable with zero curvature but a linear term) has no KKT point: SolverError."""
    Q = np.zeros((1, 2, 2))
    Q[0, 0, 0] = 1.0
    b = np.array([[0.0, 1.0]])  # −y_2 → −∞ along the free coordinate
    with pytest.raises(SolverError, match="no face"):
        simplex_qp(Q, b, 1)


# ------------------------------------------------------------------------------------------------
# Exact properties of the FERERO dual on random inputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("K", [2, 3])
def test_ferero_direction_solves_the_primal_subproblem(seed, K):
    """v = −D solves min c + ½||v||² s.t. ∇F v ≤ c𝟙, B_h ∇F v = −H: the equality holds per row (relative to
    Σ_k |B_jk| ||∇f_k|| ||v|| + |H_j|), λ ≥ 0 sums to 1 on the cone rows, and only the most-increased objectives
    carry weight (complementarity: λ_k > 1e-9 ⇒ ⟨∇f_k, v⟩ = max_i ⟨∇f_i, v⟩ to a per-task tolerance)."""
    F, J, v = random_case(seed, K=K)
    m = FERERO()
    lam = m.weights(F, J, v)  # (P, K)
    D = torch.einsum("pk,pkn->pn", lam, J)
    C, q, p = m.constraint_matrix(v, K)
    Bh = C[:, q + p :]  # (P, K − 1, K)
    H = torch.einsum("pjk,pk->pj", Bh, F)
    Jv = -torch.einsum("pkn,pn->pk", J, D)  # ⟨∇f_k, v⟩, (P, K)
    eps = torch.finfo(torch.float64).eps
    norms = J.norm(dim=2)  # (P, K)
    lhs = torch.einsum("pjk,pk->pj", Bh, Jv)  # B_h ∇F v
    scale = torch.einsum("pjk,pk->pj", Bh.abs(), norms) * D.norm(dim=1, keepdim=True) + H.abs()
    assert bool(((lhs + H).abs() <= 1e4 * eps * scale).all())
    y = _dual_variables(m, F, J, v)  # (λ_f, λ_h): λ_f is not identified by λ alone
    assert torch.allclose(torch.einsum("pr,prk->pk", y, C), lam, rtol=0, atol=1e-12 * float(lam.abs().max()))
    lam_f = y[:, :q]
    assert bool((lam_f >= -1e-12).all()) and torch.allclose(lam_f.sum(1), torch.ones(len(F), dtype=torch.float64), atol=1e-12)
    top = Jv.max(1, keepdim=True).values
    tol = 1e4 * eps * norms * D.norm(dim=1, keepdim=True)
    assert bool(((lam_f <= 1e-9) | ((top - Jv) <= tol)).all())


def _dual_variables(m: FERERO, F, J, v):
    """The QP variables (λ_f, λ_h) as the method computes them (same code path as weights)."""
    C, q, p = m.constraint_matrix(v, J.shape[1])
    M = torch.einsum("pkn,pln->pkl", J, J)
    Q = torch.einsum("prk,pkl,psl->prs", C, M, C)
    b = torch.zeros(len(F), C.shape[1], dtype=torch.float64)
    b[:, q + p :] = m.c_h * torch.einsum("prk,pk->pr", C[:, q + p :], F)
    return torch.from_numpy(simplex_qp(Q.numpy(), b.numpy(), q, n_nonneg=p))


def _official_pgd(Jp: np.ndarray, Fp: np.ndarray, v: np.ndarray, iters: int = 200000, gamma: float = 0.1) -> np.ndarray:
    """The official ``find_min_norm_element_PGD_H`` (K = 2, A = I), run to a tight stop instead of 1e-3."""
    from reference_impls.core.solvers import project_simplex

    Bh = np.array([[v[1], -v[0]]]) / np.linalg.norm(v)
    H = Bh @ Fp
    lam_f, lam_h = np.ones(2) / 2, np.ones(1)
    lam = lam_f + Bh.T @ lam_h
    for _ in range(iters):
        g = Jp @ (Jp.T @ lam)  # ∇F ∇Fᵀ λ
        new_f = project_simplex(torch.from_numpy(lam_f - gamma * g)).numpy()
        new_h = lam_h - gamma * (Bh @ g - H)
        new = new_f + Bh.T @ new_h
        if np.abs(new - lam).sum() < 1e-14:
            break
        lam_f, lam_h, lam = new_f, new_h, new
    return lam


@pytest.mark.parametrize("seed", range(5))
def test_ferero_matches_the_official_pgd_run_to_convergence(seed):
    """K = 2, well-conditioned random gradients (norms ~1): the exact dual equals the official PGD's limit
    (γ = 0.1, stopped at a change < 1e-14) to 1e-8 in λ."""
    g = torch.Generator().manual_seed(100 + seed)
    J = torch.randn(1, 2, 6, generator=g, dtype=torch.float64) / 2.5
    F = torch.rand(1, 2, generator=g, dtype=torch.float64) + 0.2
    v = torch.rand(1, 2, generator=g, dtype=torch.float64) + 0.1
    lam = FERERO().weights(F, J, v)[0].numpy()
    ref = _official_pgd(J[0].numpy(), F[0].numpy(), v[0].numpy())
    assert np.allclose(lam, ref, atol=1e-8), (lam, ref)


@pytest.mark.parametrize("K", [2, 3, 5])
def test_householder_complement_is_an_orthonormal_basis_of_the_ray_complement(K):
    g = torch.Generator().manual_seed(K)
    v = torch.rand(6, K, generator=g, dtype=torch.float64)
    v[0] = 0.0
    v[0, -1] = 1.0  # a ray with zero entries
    v = v / v.norm(dim=1, keepdim=True)
    B = householder_complement(v)  # (6, K − 1, K)
    eye = torch.eye(K - 1, dtype=torch.float64).expand(6, -1, -1)
    assert torch.allclose(B @ B.transpose(1, 2), eye, atol=1e-14)
    assert float(torch.einsum("pjk,pk->pj", B, v).abs().max()) <= 1e-15


# ------------------------------------------------------------------------------------------------
# The paper's claim on the toy
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ferero_reaches_its_rays_on_the_concave_front_where_ls_collapses():
    """VLMOP2 (n = 20), 5 rays, seeds 0..3, SGD lr 0.1, 300 steps (20/20): every solution ends on its ray
    (distance of F from the ray < 1e-6) and on the front (PS-measure < 1e-3, distance to the Pareto set < 1e-3),
    so the set's HV is ≥ 0.26 (front HV 0.342). LS with the same rays (problem defaults: lr 0.5, 500 steps) ends
    within 2e-2 of the front's ends (largest 0.0146: seed 1, r = (½, ½), still sliding towards its end)."""
    problem = get_problem("vlmop2")
    ends = problem.pareto_front(2)
    for seed in SEEDS:
        r = run_set("ferero", "vlmop2", solutions=5, seed=seed, lr=0.1, steps=300, optimizer="sgd")
        m = r.extra["metrics"]
        assert m["preference_error"] < 1e-6, (seed, m)
        assert m["max_pareto_stationarity"] < 1e-3 and float(r.distance.max()) < 1e-3, (seed, m)
        assert m["hypervolume"] >= 0.26, (seed, m)
        ls = run_set(LS, "vlmop2", preferences=r.extra["preferences"], seed=seed)  # the problem's lr 0.5, 500 steps
        assert float(torch.cdist(ls.f_final, ends).min(dim=1).values.max()) < 2e-2, seed


@pytest.mark.slow
def test_ferero_reaches_the_rays_of_a_three_objective_problem():
    """3-task biquad (convex, unconstrained, ideal 0; n = 3), rays 𝟙, (1, 2, 3), (3, 1, 1), SGD lr 0.1, 300 steps,
    seeds 0..1 (6/6): F ∥ v to 1e-7 (the K ≥ 3 complement B_h of D2). The first two rays meet the front: there the
    limit is Pareto stationary (PS-measure < 1e-7). The third meets the attainable set only off the front: FERERO
    then ends at the constrained optimum (on the ray, PS-measure ≈ 0.69), which is what its equality constraint asks."""
    v = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [3.0, 1.0, 1.0]], dtype=torch.float64)
    vh = v / v.norm(dim=1, keepdim=True)
    for seed in range(2):
        r = run_set("ferero", "biquad", problem_params={"K": 3, "n": 3}, preferences=v, seed=seed, lr=0.1, steps=300, optimizer="sgd")
        F = r.f_final
        off = (F - (F * vh).sum(1, keepdim=True) * vh).norm(dim=1)
        assert float(off.max()) < 1e-7, (seed, off)
        assert float(r.ps_measure[:2].max()) < 1e-7 and float(r.ps_measure[2]) > 0.5, (seed, r.ps_measure)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


def test_degenerate_inputs_have_defined_results():
    F, J, v = random_case(0, P=3, K=2)
    m = FERERO()
    # zero Jacobian: no constraint can be corrected (D3), D = 0
    assert torch.equal(m.step(None, F, torch.zeros_like(J), v), torch.zeros(3, J.shape[2], dtype=torch.float64))
    # K = 1: plain gradient descent
    D1 = m.step(None, F[:, :1], J[:, :1], torch.ones(3, 1, dtype=torch.float64))
    assert torch.allclose(D1, J[:, 0], rtol=0, atol=1e-15)
    # duplicate preferences: identical rows give identical directions
    Fd, Jd = F[:1].expand(2, -1), J[:1].expand(2, -1, -1)
    Dd = m.step(None, Fd, Jd, v[:1].expand(2, -1))
    assert torch.equal(Dd[0], Dd[1])
    # a zero entry asks for f_2 = 0: the equality row is B_h = [0, −1], so the direction decreases f_2
    e1 = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    De = m.step(None, F, J, e1)
    assert bool(((J[:, 1] * De).sum(1) > 0).all())
    # preference scale does not matter
    assert torch.allclose(m.step(None, F, J, 7.0 * v), m.step(None, F, J, v), rtol=1e-12, atol=0)
    # huge and tiny gradient scales: finite, and B_h J D = H to the rounding of its terms, 1e4·ε·(Σ_k|B_k| ||c∇f_k|| ||D|| + |H|)
    # (at c = 1e12 the terms are ~1e24 and H ~ 1: the equality is then kept only to that precision, as for any Gramian method)
    Bh = m.constraint_matrix(v, 2)[0][:, 2:]  # (P, 1, 2)
    H = torch.einsum("pjk,pk->pj", Bh, F)
    for c in (1e-12, 1e12):
        Dc = m.step(None, F, c * J, v)
        assert bool(torch.isfinite(Dc).all())
        lhs = torch.einsum("pjk,pk->pj", Bh, torch.einsum("pkn,pn->pk", c * J, Dc))
        scale = torch.einsum("pjk,pk->pj", Bh.abs(), c * J.norm(dim=2)) * Dc.norm(dim=1, keepdim=True) + H.abs()
        assert bool(((lhs - H).abs() <= 1e4 * torch.finfo(torch.float64).eps * scale).all()), c


def test_invalid_inputs_raise_clear_errors():
    F, J, v = random_case(1, P=2, K=2)
    m = FERERO()
    with pytest.raises(ValueError, match="non-negative"):
        m.step(None, F, J, -v)
    with pytest.raises(ValueError, match="all zero"):
        m.step(None, F, J, torch.zeros_like(v))
    with pytest.raises(ValueError, match="shape"):
        m.step(None, F, J, v[:, :1])
    with pytest.raises(ValueError, match="None"):
        m.step(None, F, J, None)
    Jn = J.clone()
    Jn[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        m.step(None, F, Jn, v)
    with pytest.raises(ValueError):
        FERERO(c_h=0.0)


def test_float32_matches_float64():
    """float32 inputs: the direction agrees with the float64 one to 1e-4 relative (the QP runs in float64)."""
    F, J, v = random_case(2, P=3, K=2)
    m = FERERO()
    D64 = m.step(None, F, J, v)
    D32 = m.step(None, F.float(), J.float(), v.float())
    assert D32.dtype == torch.float32
    assert float((D32.double() - D64).norm() / D64.norm()) < 1e-4
