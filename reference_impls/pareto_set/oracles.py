"""Closed-form (or certified numerical) preference-to-solution maps of the toy problems.

A Pareto-set model learns a map r ↦ x(r). Which map depends on its training criterion (the
model's ``target`` class attribute):

* ``"ls"``: the linear-scalarisation optimum x*(r) = argmin_x Σ_i r_i f_i(x) (PHN-LS, COSMOS with
  λ = 0, YOTO, PaMaL);
* ``"ray"``: the ray point of EPO / Tchebycheff, r ⊙ (f(x*) − z) ∝ 𝟙 with z the ideal point, i.e.
  f(x*) − z ∝ 1/r (PHN-EPO; the Tchebycheff optimum min_x max_i r_i (f_i(x) − z_i) where all terms
  are active).

Oracles (each returns ``(X* (B, n), F* (B, K))`` for preferences (B, K), rows on the simplex, zero
entries allowed):

=============  =====  ===============================================================================
problem        map    how
=============  =====  ===============================================================================
biquad         ls     x* = Σ_i r_i s_i a_i / Σ_i r_i s_i (closed form; the problem's scales s_i)
biquad         ray    K = 2: x* = a_1 + t(a_2 − a_1), t = √(r_2 s_2)/(√(r_1 s_1) + √(r_2 s_2)) (closed
                      form); K ≥ 3: the Tchebycheff optimum by its concave dual over λ ∈ Δ
                      (x(λ) = Σ μ_i a_i, μ ∝ λ ⊙ r ⊙ s), its active set polished to equal
                      weighted losses, certified by the duality gap (≤ 1e-12 relative)
vlmop2         ray    x* = (s/√n)𝟙 with r_1 f_1(s) = r_2 f_2(s) on the front s ∈ [−1, 1]: one monotone
                      1-D root, bracketed and certified (|h(s)| and the bracket width)
vlmop2         ls     x* = (s*/√n)𝟙, s* the global minimiser of Σ r_i f_i(s) on [−1, 1] (near one
                      end: LS only reaches the front near its ends); grid + Brent, certified by the
                      slope; r_1 = r_2 has two optima: ValueError
cpfl-ex1/ex2   ray    r_1 f_1 = r_2 f_2 on the Pareto set: a quadratic's root in closed form, certified
                      (``chebyshev_solution`` of problems/cpfl_toys.py; also takes a lower bound c)
mtl-linear     ls     w* = Σ_k μ_k ŵ_k, μ = r/Σr (f_k(w) = (w − ŵ_k)ᵀΣ̂(w − ŵ_k) + c_k with one Σ̂);
                      certified by the relative gradient norm of Σ r_k f_k at w*
lowrank-       ls     W* = Σ_k μ_k Ŵ_k (the same shared-Hessian argument, matrix-valued); certified
regression            as mtl-linear
=============  =====  ===============================================================================

Every oracle checks its result (certified numerics) and raises
:class:`~reference_impls.core.solvers.SolverError` when the check fails; a problem or criterion
without an oracle gives None from :func:`oracle_for` (the evaluation then reports no solution error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.sets import check_preferences
from reference_impls.core.solvers import SolverError

Oracle = Callable[[Tensor], tuple[Tensor, Tensor]]


def _unit_rows(preferences: Tensor, K: int) -> Tensor:
    """Validated preferences (B, K) float64, each row divided by its sum (rows on the simplex)."""
    r = check_preferences(torch.as_tensor(preferences, dtype=torch.float64), None, K, name="oracle preferences")
    return r / r.sum(1, keepdim=True)  # (B, K)


def biquad_ls(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """argmin_x Σ_i r_i s_i ||x − a_i||² = Σ_i r_i s_i a_i / Σ_i r_i s_i, (B, n), and its losses (B, K)."""
    r = _unit_rows(preferences, problem.K).to(problem.dtype)  # (B, K)
    w = r * problem.scales  # r_i s_i, (B, K)
    X = (w / w.sum(1, keepdim=True)) @ problem.anchors  # x* = Σ μ_i a_i, μ ∝ r ⊙ s, (B, n)
    return X, problem.losses(X)


def _biquad_ray_k2(problem: Any, r: Tensor) -> Tensor:
    """K = 2: r_1 s_1 t² D² = r_2 s_2 (1 − t)² D² on the segment, so t = √(r_2 s_2)/(√(r_1 s_1) + √(r_2 s_2))."""
    u = torch.sqrt(r * problem.scales)  # √(r_i s_i), (B, 2)
    t = u[:, 1] / u.sum(1)  # (B,)
    a1, a2 = problem.anchors[0], problem.anchors[1]
    return a1 + t[:, None] * (a2 - a1)  # (B, n)


def _biquad_tchebycheff(problem: Any, r: np.ndarray) -> np.ndarray:
    """min_x max_i r_i s_i ||x − a_i||² for one r (K,), certified; returns x (n,).

    Dual: g(λ) = min_x Σ_i λ_i r_i s_i ||x − a_i||², attained at x(λ) = Σ μ_i a_i with μ ∝ λ ⊙ r ⊙ s;
    max_i w_i f_i(x) ≥ g(λ) for every λ ∈ Δ (w = r ⊙ s), with equality at the optimum. (1) SLSQP
    maximises g over Δ (two starts); (2) the active set A = {i : λ_i > 1e-6} is polished by solving
    w_i f_i(x(μ)) = w_j f_j(x(μ)) (i, j ∈ A) for μ on A's simplex (Levenberg–Marquardt); (3) the
    certificate: with λ ∝ μ / w on A (so x(λ) = x), g(λ) = Σ_A λ_i w_i f_i(x) and the gap
    max_i w_i f_i(x) − g(λ) must be ≤ 1e-12 relative to the value plus 100× the rounding of x
    (eps·Σ_i ||∇(w_i f_i)||·(||x|| + ||a_i||), each task's own), with μ ≥ 0 (else SolverError).
    """
    from scipy.optimize import least_squares, minimize

    A = problem.anchors.cpu().numpy().astype(np.float64)  # (K, n)
    w = r * problem.scales.cpu().numpy().astype(np.float64)  # r_i s_i, (K,)
    K = A.shape[0]
    pos = w > 0

    def x_of(lam: np.ndarray) -> np.ndarray:
        c = np.clip(lam, 0, None) * w
        return (c / c.sum()) @ A if c.sum() > 0 else A.mean(0)

    def terms(x: np.ndarray) -> np.ndarray:
        return w * ((x[None, :] - A) ** 2).sum(1)  # w_i f_i = r_i s_i ||x − a_i||², (K,)

    def neg_dual(lam: np.ndarray) -> float:
        return -float(np.clip(lam, 0, None) @ terms(x_of(lam)))

    inv = np.where(pos, 1.0 / np.where(pos, w, 1.0), 0.0)
    best = None
    for start in (np.where(pos, 1.0, 0.0) / pos.sum(), inv / inv.sum()):
        res = minimize(neg_dual, start, method="SLSQP", bounds=[(0.0, 1.0)] * K,
                       constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0}], options={"ftol": 1e-15, "maxiter": 500})  # fmt: skip
        lam = np.clip(np.asarray(res.x, dtype=np.float64), 0, None)
        if best is None or -neg_dual(lam) > -neg_dual(best):
            best = lam
    active = np.flatnonzero((best > 1e-6) & pos)  # (|A|,)
    if active.size == 0:
        raise SolverError(f"biquad Tchebycheff oracle: no active objective (r = {r.tolist()})")
    mu0 = best[active] * w[active]
    mu0 = mu0 / mu0.sum()  # (|A|,)

    def x_of_mu(m: np.ndarray) -> np.ndarray:
        full = np.append(m, 1.0 - m.sum())  # μ on A's simplex, (|A|,)
        return full @ A[active]

    if active.size > 1:
        def equalities(m: np.ndarray) -> np.ndarray:
            t = terms(x_of_mu(m))[active]  # (|A|,)
            return (t[1:] - t[:-1]) / max(t.mean(), np.finfo(np.float64).tiny)

        sol = least_squares(equalities, mu0[:-1], method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        mu = np.append(sol.x, 1.0 - sol.x.sum())
    else:
        mu = np.ones(1)
    x = mu @ A[active]  # (n,)
    values = terms(x)  # (K,)
    lam = np.zeros(K)
    lam[active] = mu / w[active]
    lam = lam / lam.sum()  # the dual point whose x(λ) is x
    primal, dual = float(values.max()), float(lam @ values)
    gap = primal - dual
    grads = 2.0 * w * np.linalg.norm(x[None, :] - A, axis=1)  # ||∇(w_i f_i)||, (K,)
    rounding = np.finfo(np.float64).eps * float((grads * (np.linalg.norm(x) + np.linalg.norm(A, axis=1))).sum())  # x stored to eps
    if not (mu.min() >= -1e-12 and gap <= 1e-12 * primal + 100 * rounding + np.finfo(np.float64).tiny):
        raise SolverError(f"biquad Tchebycheff oracle: duality gap {gap:.3e} at value {primal:.3e}, min μ {mu.min():.2e} (r = {r.tolist()})")
    return x


def biquad_ray(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """The ray point r ⊙ f ∝ 𝟙 (z = 0) of the bi-quadratic: closed form for K = 2, certified dual for K ≥ 3.

    A zero entry r_i = 0 (a simplex vertex e_j for K = 2) gives the minimiser of the other objective(s)
    (K = 2: t = 0 or 1; the Tchebycheff optimum of the positive entries for K ≥ 3).
    """
    r = _unit_rows(preferences, problem.K)  # (B, K) float64
    if problem.K == 1:
        X = problem.anchors[:1].expand(r.shape[0], -1).clone()  # the single objective's minimiser
    elif problem.K == 2:
        X = _biquad_ray_k2(problem, r.to(problem.dtype))
    else:
        X = torch.stack([torch.from_numpy(_biquad_tchebycheff(problem, row)) for row in r.numpy()]).to(problem.anchors)
    return X, problem.losses(X)


def _vlmop2_h(s: float, r1: float, r2: float) -> float:
    """h(s) = r_1 f_1(s) − r_2 f_2(s) on the front (decreasing in s ∈ [−1, 1])."""
    return r1 * -math.expm1(-((s - 1.0) ** 2)) - r2 * -math.expm1(-((s + 1.0) ** 2))


def vlmop2_ray(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """The ray point r_1 f_1 = r_2 f_2 on VLMOP2's front: x* = (s/√n)𝟙, s the root of h on [−1, 1].

    f_1(s) = 1 − e^{−(s−1)²} decreases and f_2(s) = 1 − e^{−(s+1)²} increases on [−1, 1], so h is
    strictly decreasing for r > 0 with h(−1) = r_1(1 − e^{−4}) > 0 > h(1): one root, found by
    bisection to the float64 resolution of s and certified (bracket width ≤ 4 eps, |h| ≤ 1e-12
    relative to r_1 + r_2). r = e_1 gives s = 1 (the minimiser of f_1), r = e_2 gives s = −1.
    """
    r = _unit_rows(preferences, 2)  # (B, 2)
    s_values = []
    for r1, r2 in r.tolist():
        if r2 == 0.0:
            s_values.append(1.0)  # only f_1 counts: its minimiser
            continue
        if r1 == 0.0:
            s_values.append(-1.0)
            continue
        lo, hi = -1.0, 1.0  # h(lo) > 0 > h(hi)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if _vlmop2_h(mid, r1, r2) > 0:
                lo = mid
            else:
                hi = mid
        s = 0.5 * (lo + hi)
        if not (hi - lo <= 4 * np.finfo(np.float64).eps and abs(_vlmop2_h(s, r1, r2)) <= 1e-12 * (r1 + r2)):
            raise SolverError(f"vlmop2 ray oracle: no certified root for r = ({r1}, {r2}): bracket [{lo}, {hi}]")
        s_values.append(s)
    s_t = torch.tensor(s_values, dtype=problem.dtype, device=problem.device)  # (B,)
    X = s_t[:, None] * problem._c  # x* = (s/√n)𝟙, (B, n)
    return X, problem.losses(X)


def vlmop2_ls(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """argmin_x Σ r_i f_i(x) on VLMOP2: x* = (s*/√n)𝟙 with s* = argmin_{s∈[−1,1]} r_1 f_1(s) + r_2 f_2(s).

    A minimiser of Σ r_i f_i with r > 0 is Pareto optimal, so it lies on the Pareto set (s/√n)𝟙; the
    1-D objective has a local minimum near each end (the front is concave away from its ends, so LS
    only reaches points near the two minimisers: |s*| > 0.957 for every r (computed); not exactly ±1,
    since f_1'(1) = 0 while f_2'(1) > 0). Found on a 20001-point grid, refined by bounded Brent
    minimisation in the neighbouring grid cells, and certified: |φ'(s*)| ≤ 1e-8·(r_1|f_1'| + r_2|f_2'|)
    + 1e-12 at an interior s*, and φ(s*) ≤ the grid minimum. r_1 = r_2 has two optima: ValueError.
    """
    from scipy.optimize import minimize_scalar

    r = _unit_rows(preferences, 2)  # (B, 2)
    if bool((r[:, 0] == r[:, 1]).any()):
        raise ValueError("vlmop2 LS oracle: r_1 = r_2 has two optima (mirror images near both ends of the front)")
    grid = np.linspace(-1.0, 1.0, 20001)
    h = grid[1] - grid[0]
    f1 = lambda s: -np.expm1(-((s - 1.0) ** 2))  # noqa: E731
    f2 = lambda s: -np.expm1(-((s + 1.0) ** 2))  # noqa: E731
    d1 = lambda s: 2.0 * (s - 1.0) * np.exp(-((s - 1.0) ** 2))  # noqa: E731  f_1'(s)
    d2 = lambda s: 2.0 * (s + 1.0) * np.exp(-((s + 1.0) ** 2))  # noqa: E731  f_2'(s)
    s_values = []
    for r1, r2 in r.tolist():
        phi = lambda s, r1=r1, r2=r2: r1 * f1(s) + r2 * f2(s)  # noqa: E731  Σ r_i f_i on the Pareto set
        values = phi(grid)
        j = int(np.argmin(values))
        lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
        res = minimize_scalar(phi, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14})
        s = float(res.x) if phi(res.x) <= values[j] else float(grid[j])
        slope = r1 * d1(s) + r2 * d2(s)
        interior = -1.0 + h < s < 1.0 - h
        if phi(s) > values.min() + 1e-15 or (interior and abs(slope) > 1e-8 * (r1 * abs(d1(s)) + r2 * abs(d2(s))) + 1e-12):
            raise SolverError(f"vlmop2 LS oracle: no certified minimiser for r = ({r1}, {r2}) (s = {s}, slope {slope:.3e})")
        s_values.append(s)
    s_t = torch.tensor(s_values, dtype=problem.dtype, device=problem.device)  # (B,)
    X = s_t[:, None] * problem._c  # x* = (s*/√n)𝟙, (B, n)
    return X, problem.losses(X)


def mtl_linear_ls(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """argmin_w Σ_k r_k (1/N)||Xw − y_k||² = Σ_k μ_k ŵ_k, μ = r/Σr (weighted least squares), certified (also ``lowrank-regression``).

    Check: ||∇ Σ_k μ_k f_k(w*)|| ≤ 1e-8·(Σ_k μ_k ||∇f_k(w*)|| + max_k ||∇f_k(0)|| + tiny): each task's own gradient
    norm, plus each task's gradient scale at the origin (at a vertex r = e_k with noise-free data ∇f_k(w*) is itself
    at roundoff level, so a purely relative check could not pass).
    """
    mu = _unit_rows(preferences, problem.K).to(problem.dtype)  # (B, K)
    W = mu @ problem.W_hat  # w* = Σ_k μ_k ŵ_k, (B, p)
    J = problem.jacobian(W)  # (B, K, p)
    grad = torch.einsum("bk,bkp->bp", mu, J).norm(dim=1)  # ||Σ μ_k ∇f_k||, (B,)
    origin = float(problem.jacobian(torch.zeros_like(W[:1])).norm(dim=2).max())  # max_k ||∇f_k(0)||
    scale = torch.einsum("bk,bk->b", mu, J.norm(dim=2)) + origin + torch.finfo(problem.dtype).tiny  # (B,)
    if not bool((grad <= 1e-8 * scale).all()):
        raise SolverError(f"mtl-linear LS oracle: stationarity residual {float((grad / scale).max()):.3e} (relative)")
    return W, problem.losses(W)


def cpfl_ray(problem: Any, preferences: Tensor) -> tuple[Tensor, Tensor]:
    """The Chebyshev map of the CPFL examples (``cpfl-ex1``, ``cpfl-ex2``) with z = c = 0: r_1 f_1 = r_2 f_2
    on the Pareto set, closed form and certified by ``problem.chebyshev_solution`` (problems/cpfl_toys.py)."""
    return problem.chebyshev_solution(preferences)


_ORACLES: dict[tuple[str, str], Callable[[Any, Tensor], tuple[Tensor, Tensor]]] = {
    ("biquad", "ls"): biquad_ls,
    ("biquad", "ray"): biquad_ray,
    ("vlmop2", "ray"): vlmop2_ray,
    ("vlmop2", "ls"): vlmop2_ls,
    ("mtl-linear", "ls"): mtl_linear_ls,
    ("lowrank-regression", "ls"): mtl_linear_ls,  # the same shared-Hessian map: reads problem.W_hat (K, n)
    ("cpfl-ex1", "ray"): cpfl_ray,
    ("cpfl-ex2", "ray"): cpfl_ray,
}


def oracle_for(problem: Any, target: str | None) -> Oracle | None:
    """The map r (B, K) -> (X* (B, n), F* (B, K)) of ``problem`` under the criterion ``target``, or None."""
    fn = _ORACLES.get((getattr(problem, "id", ""), target)) if target is not None else None
    if fn is None:
        return None
    return lambda preferences: fn(problem, preferences)


__all__ = ["Oracle", "biquad_ls", "biquad_ray", "cpfl_ray", "mtl_linear_ls", "oracle_for", "vlmop2_ls", "vlmop2_ray"]
