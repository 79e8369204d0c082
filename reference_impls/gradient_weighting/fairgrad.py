"""FairGrad: α-fair task weights, (M w)_i = w_i^{-1/α}, solved exactly by Newton's method.

Paper: H. Ban and K. Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
arXiv 2402.15638. Official code: github.com/OptMN-Lab/fairgrad (``methods/weight_methods.py``
class FairGrad, ``experiments/*/run.sh``); LibMTL ``weighting/FairGrad.py``.

Implemented: the update d = Gᵀw maximises the α-fair utility Σ_i u_i^{1−α}/(1−α) of the first-order
loss decreases u_i = ⟨g_i, d⟩; its optimality condition (the equation the official code solves) is

    (M w)_i = w_i^{−1/α}  for all i,   w ∈ R^K_{>0},        d = Gᵀ w,

so that ⟨g_i, d⟩ = w_i^{−1/α} > 0: every task decreases to first order. α = 1 is Nash-MTL
((Mw)_i = 1/w_i); α → ∞ tends to max-min fairness: min_i ⟨g_i, d⟩/||d|| grows towards its maximum
||d_MGDA|| (equal ⟨g_i, d⟩ only for the binding tasks; max/min of ⟨g_i, d⟩ need not tend to 1).

Solver (:func:`solve_fair_weights`, shared with Nash-MTL): with D = diag(||g_i||) the equation is
rescaled to unit gradient norms, C = D⁻¹MD⁻¹, and becomes the stationarity condition ∇Φ(β) = 0 of
the strictly convex Φ(β) = ½βᵀCβ − Σ_i κ_i h(β_i), h'(β) = β^{−1/α} (h = log and κ = 𝟙 for α = 1,
so Nash-MTL's solve does not see the task scales at all). Damped Newton on Φ (Hessian
C + diag(κ β^{−1/α−1}/α), a fraction-to-boundary rule keeps β > 0, Armijo backtracking), stopped
when max_i |w_i^{1/α}(Mw)_i − 1| ≤ 1e-12 (or the rounding level of Mw when the gradients are
nearly dependent). It converges quadratically, from the warm start (the previous call's β) or from
the exact solution for orthogonal gradients.

Existence: a positive solution exists iff 0 ∉ conv{g_i} (otherwise Φ is unbounded below along a
v ≥ 0 with Gᵀv = 0, and no d can decrease all tasks). Which case holds is decided first, by the
certified min-norm point λ of the unit gradients ĝ_i = g_i/||g_i|| (solvers.min_norm_point):
0 ∈ conv{g_i} when ||Σ λ_i ĝ_i||² ≤ κ·s(1 + s), the min-norm certificate's own tolerance
(κ = 32·K·ε, ε of the input dtype, s = Σ λ_i ||ĝ_i|| = 1), i.e. ||d_MGDA|| ≲ √κ·||g||, the resolution
of a Gramian. In that case (a zero gradient, opposite or opposing collinear gradients, a
Pareto-stationary point) the answer is defined as follows (D3). The deadlocked tasks S are those with
−ĝ_i in the cone of the others (min_{v ≥ e_i} ||Σ_j v_j ĝ_j|| = 0, certified dual-cone solver, to the same
tolerance): no d decreases one of them without increasing another, since Σ_S v_i ⟨g_i, d⟩ = 0 with v > 0.
They get ⟨g_i, d⟩ = 0, and the other tasks R solve their α-fair equations on their components
orthogonal to span{g_i : i ∈ S} (M' = the Schur complement of M; a positive solution exists there, and
d ≠ 0 unless J is strongly stationary). Strongly stationary J (S = all tasks, e.g. [g; −g]): w = 0, d = 0.
An earlier version solved the regularised M + εI at ε = 1e-8 instead, whose d ≈ 1e-4·||g|| conflicted
with deadlocked tasks at cosines down to −1.

Certificate (every path): a positive solution β must solve its equations per task,
|(Cβ)_i − κ_i β_i^{−1/α}| ≤ max(r·κ_i β_i^{−1/α}, 32·K·ε·(|C|β)_i) (the second term: the rounding
level of (Cβ)_i, ε of the input dtype; r = 1e-6), else SolverError; when Newton stalls on rounding
(tasks whose ⟨g_i, d⟩ is a sum cancelling to ~1e-13 of its terms) its best iterate is returned only if
certified. The D3 answer is certified on the full Gramian: ⟨ĝ_j, d⟩ = w_j^{−1/α}/||g_j|| to the same
tolerance on R, and |⟨ĝ_i, d⟩| ≤ max(32·K·ε·(|C||b|)_i, √(32·K·ε)·Σ|b_j|) on S (b = the weights of the
ĝ_j; the √ term is the Gramian's resolution of a direction when 0 ∈ conv), else SolverError.

Hyperparameters:
    alpha: α = 2.0 (default; every official run.sh). The official class and LibMTL default to 1.0.
    max_norm: 1.0 (default, as the official code): d is scaled to norm ≤ max_norm. The paper's d is
        max_norm=None. Clipping matters: for α > 1, ||d||² = Σ_i w_i^{1−1/α} → ∞ near the Pareto set
        (w_i → ∞), so unclipped steps overshoot. The official code also multiplies d by K before
        clipping; we do not (D2).

Deviations:
    D1. Solver: exact damped Newton (relative residual 1e-12) instead of the official
        ``scipy.optimize.least_squares(Mx − x^{−1/α}, x0 = 𝟙/K, bounds (0, ∞))`` with default
        tolerances (xtol = ftol = gtol = 1e-8).
    D2. The official d is K·Gᵀw, then clipped to norm 1.0; we return Gᵀw clipped to max_norm (no
        ×K, which matters only when the clip is inactive).
    D3. Pareto-stationary inputs (0 ∈ conv{g_i} to the certified tolerance, see Existence): no w > 0
        solves the equations. We return a defined answer: deadlocked tasks get ⟨g_i, d⟩ = 0 (their
        weights w_S = −P w_R, possibly negative, remove from d its component in span{g_S}), the others
        the α-fair solution on the orthogonal complement of the deadlocked gradients; w = 0, d = 0
        at strongly stationary J (and all-zero J). The official code has no such case: it returns
        whatever ``least_squares`` reaches from 𝟙/K (a non-solution with x > 0, so d conflicts with a task).
        K = 1: w = ||g||^{−2α/(1+α)}.

Usage:
    >>> d = FairGrad(alpha=2.0)(J)       # J: (K, n) -> d: (n,), ||d|| ≤ 1
    >>> d = FairGrad(max_norm=None)(J)   # the paper's d = Gᵀw
    >>> w = solve_fair_weights(M, 2.0)   # the weights from a Gramian (numpy, float64)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import KAPPA, SolverError, dual_cone_weights, min_norm_point, min_norm_tolerances

_RTOL = 1e-12  # target for max_i |w_i^{1/α} (Mw)_i − 1|


def solve_fair_weights(M, alpha: float = 1.0, w0=None, *, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve (M w)_i = w_i^{−1/α}, w > 0, for a PSD Gramian M (K, K).

    The problem is first scaled to unit gradient norms: with D = diag(||g_i||), C = D⁻¹MD⁻¹ and
    β = D w/γ, the equations become (Cβ)_i = κ_i β_i^{−1/α} with κ_i = D_i^{1/α−1}/γ^{1+1/α}
    (κ = 𝟙 for Nash-MTL, α = 1; γ makes the geometric mean of κ equal to 1). This makes the solve
    independent of the tasks' gradient scales (exactly so for α = 1).

    Args:
        M: the Gramian (array-like or tensor), finite.
        alpha: α > 0 (α = 1: Nash-MTL).
        w0: optional warm start: the second return value of a previous call (the scaled β).

    Returns:
        (w, beta): the weights (float64 numpy array, K) and the scaled solution β (pass it as ``w0``
        next time). At a Pareto-stationary M (D3): (w, None), w_i ≤ 0 possible for deadlocked tasks;
        w = 0 for a strongly stationary or all-zero M.

    Raises:
        SolverError: no certified solution (Newton failed, or its answer does not pass the per-task
            certificate, or the D3 answer is not certified; see the module docstring).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    M = torch.as_tensor(M).detach()
    eps = torch.finfo(M.dtype).eps if M.is_floating_point() else np.finfo(np.float64).eps  # precision of M
    M = M.cpu().to(torch.float64).numpy()
    w, beta, _ = _solve(0.5 * (M + M.T), 1.0 / alpha, eps, w0, max_iter, depth=0)
    return w, beta


def _solve(
    M: np.ndarray, p: float, eps: float, w0, max_iter: int, depth: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """:func:`solve_fair_weights` on a symmetric float64 Gramian (``eps``: precision of the input dtype); also
    returns the mask of deadlocked tasks (D3; all False when a positive solution exists)."""
    K = M.shape[0]
    D = np.sqrt(np.clip(np.diag(M), 0.0, None))  # ||g_i||
    if not np.any(D > 0):
        return np.zeros(K), None, np.ones(K, dtype=bool)  # all-zero J: d = 0
    D = np.where(D > 0, D, 1.0)  # zero rows stay zero in C (degenerate case)
    C = M / np.outer(D, D)  # unit-diagonal Gramian of g_i/||g_i||
    log_kappa = (p - 1.0) * np.log(D)
    log_gamma = float(np.mean(log_kappa)) / (1.0 + p)
    kappa = np.exp(log_kappa - (1.0 + p) * log_gamma)  # geometric mean 1
    start = w0 if w0 is not None and np.shape(w0) == (K,) and np.all(np.asarray(w0) > 0) else None
    lam = min_norm_point(C, eps)  # certified min-norm point of the unit gradients ĝ_i
    if _stationary(C, lam, eps):  # 0 ∈ conv{g_i}: no positive solution; the deadlocked tasks are held still (D3)
        if depth > K:  # cannot happen: each level removes ≥ 1 task
            raise SolverError(f"FairGrad/Nash-MTL: the deadlock search did not terminate (K = {K})")
        w, deadlocked = _stationary_limit(C, D, p, eps, max_iter, lam, depth)
        return w, None, deadlocked
    beta = _newton(C, kappa, p, start, max_iter)  # 0 ∉ conv{ĝ_i}: a positive solution exists
    if beta is None or _uncertified(C, kappa, p, beta, eps) is not None:
        # Newton stalled on rounding (cancellation in Cβ): keep its best iterate only if it is certified
        beta = _newton(C, kappa, p, start, max_iter, keep_best=True)
        failure = "no iterate" if beta is None else _uncertified(C, kappa, p, beta, eps)
        if failure is not None:
            raise SolverError(f"FairGrad/Nash-MTL: a positive solution exists but Newton did not certify it (K = {K}): {failure}")
    return beta * np.exp(log_gamma) / D, beta, np.zeros(K, dtype=bool)  # w = γ β / D solves (M w)_i = w_i^{−1/α}


def _stationary(C: np.ndarray, lam: np.ndarray, eps: float) -> bool:
    """0 ∈ conv{ĝ_i} to the min-norm certificate's tolerance: ||Σ λ_i ĝ_i||² ≤ κ·S·(1 + S), κ = 32·K·ε,
    S = Σ λ_i ||ĝ_i|| (the rounding level of ||d||² from the Gramian of the input dtype)."""
    norms = np.sqrt(np.clip(np.diag(C), 0.0, None))  # ||ĝ_i|| (1, or less after a projection)
    return float(lam @ C @ lam) <= float(np.max(min_norm_tolerances(C, norms, lam, eps)))


def _project_out(C: np.ndarray, S: np.ndarray, R: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Gramian of the components of ĝ_j (j ∈ R) orthogonal to span{ĝ_i : i ∈ S}, and P with Π_S ĝ_j = Σ_i P_ij ĝ_i.

    C'_RR = C_RR − C_RS C_SS⁺ C_SR (Schur complement), P = C_SS⁺ C_SR; C_SS⁺ drops the eigenvalues below the
    rounding level κ = 32·K·ε of C (the deadlocked gradients are linearly dependent by definition)."""
    C_RR, C_RS, C_SS = C[np.ix_(R, R)], C[np.ix_(R, S)], C[np.ix_(S, S)]
    if S.size == 0:
        return C_RR, np.zeros((0, R.size))
    lam, U = np.linalg.eigh(C_SS)  # C_SS = U diag(λ) Uᵀ
    keep = lam > KAPPA * C.shape[0] * eps
    P = U[:, keep] @ ((U[:, keep].T @ C_RS.T) / lam[keep, None])  # (|S|, |R|) = C_SS⁺ C_SR
    Cp = C_RR - C_RS @ P  # (|R|, |R|)
    return 0.5 * (Cp + Cp.T), P


def _stationary_limit(
    C: np.ndarray, D: np.ndarray, p: float, eps: float, max_iter: int, lam: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """D3: the defined answer when 0 ∈ conv{g_i} (no w > 0 solves the equations).

    S = the deadlocked tasks, the maximal support of a v ≥ 0 with Gᵀv = 0: i ∈ S iff −g_i lies in the
    cone of the other gradients, i.e. min_{v ≥ e_i} ||Σ_j v_j ĝ_j|| = 0 (the certified dual-cone solver,
    one row per task; zero to the min-norm certificate's tolerance κ·s(1 + s), with s = Σ_j |v_j| ≤ 1/√κ).
    No d can decrease a task of S without increasing another (Σ_S v_i ⟨g_i, d⟩ = 0); the answer gives
    them ⟨g_i, d⟩ = 0 and solves the α-fair problem of the other tasks R on their components orthogonal
    to span{g_S} (Gramian M' = the Schur complement), recursively: in exact arithmetic 0 ∉ conv of those
    components, but rounding can hide a task's share in S, and the recursion then finds it. Strongly
    stationary J (S = all tasks): w = 0, d = 0. w_S = −P w_R may be negative. Certified per task
    (|⟨ĝ_i, d⟩| at the Gramian's resolution on S, the equations to 1e-6 on R), else SolverError.
    """
    K = C.shape[0]
    V = dual_cone_weights(C, np.eye(K), eps=eps)  # row i: argmin_{v ≥ e_i} ||Σ_j v_j ĝ_j||², certified (K, K)
    dist2 = np.einsum("ij,jk,ik->i", V, C, V)  # dist(−ĝ_i, cone{ĝ_j : j ≠ i})²: 0 iff i ∈ S
    size = np.abs(V).sum(axis=1)  # Σ_j |v_j|: the rounding scale of Σ_j v_j ĝ_j
    kappa_eps = KAPPA * K * eps
    # deadlocked: zero to the min-norm certificate's tolerance, with g_i's share 1/s of the combination resolved
    # above that tolerance (float32 Gramians are PSD only to rounding: a cone of the others can reach −ĝ_i up to
    # that rounding with weights s ~ 1e7 that give g_i no real share)
    S = (dist2 <= kappa_eps * size * (1.0 + size)) & (size * np.sqrt(kappa_eps) <= 1.0)
    if not S.any():  # every share at the noise level: the support of the certified zero min-norm point
        S = lam > 0
    w = np.zeros(K)
    if S.all():
        return w, S  # strongly stationary: every task is deadlocked, d = 0
    R, Si = np.flatnonzero(~S), np.flatnonzero(S)
    Cp, P = _project_out(C, Si, R, eps)
    # (M'w_R)_j = w_j^{−1/α}; the projected tasks may still deadlock among themselves (rounding hid a share): recurse
    w[R], _, S[R] = _solve(Cp * np.outer(D[R], D[R]), p, eps, None, max_iter, depth + 1)  # M' = D_R C' D_R
    w[Si] = -(P @ (w[R] * D[R])) / D[Si]  # d = Σ_R w_j (g_j − Π_S g_j) = Gᵀw
    b = D * w  # d = Σ_i b_i ĝ_i
    Cb = C @ b  # ⟨ĝ_i, d⟩
    rounding = kappa_eps * (np.abs(C) @ np.abs(b))  # rounding level of (Cb)_i
    target = np.zeros(K)
    free = ~S
    target[free] = w[free] ** (-p) / D[free]  # ⟨ĝ_j, d⟩ = w_j^{−1/α}/||g_j|| for the free tasks, 0 on S
    # on S: the Gramian resolves the direction of d only to √κ·Σ|b_i| (solvers.py: the inherent limit when 0 ∈ conv)
    floor = np.where(S, np.sqrt(kappa_eps) * float(np.abs(b).sum()), 0.0)
    allowed = np.maximum(np.maximum(1e-6 * target, rounding), np.maximum(floor, np.finfo(np.float64).tiny))
    excess = np.where(np.diag(C) > 0.5, np.abs(Cb - target) / allowed, 0.0)  # zero rows do not move d
    i = int(np.argmax(excess))
    if not (np.isfinite(w).all() and excess[i] <= 1.0):
        role = "deadlocked" if S[i] else "free"
        raise SolverError(
            f"FairGrad/Nash-MTL at a Pareto-stationary input (K = {K}, {S.sum()} deadlocked tasks): {role} task {i} has "
            f"|⟨ĝ_i, d⟩ − target| = {excess[i]:.3g} × its tolerance"
        )
    return w, S


def _uncertified(C: np.ndarray, kappa: np.ndarray, p: float, b: np.ndarray, eps: float, rel: float = 1e-6) -> str | None:
    """None if β solves (Cβ)_i = κ_i β_i^{−p} for every task i to max(rel·κ_i β_i^{−p}, 32·K·ε·(|C|β)_i), the
    rounding level of (Cβ)_i (per task, ε of the input dtype); otherwise a description of the worst violation.
    Zero rows (C_ii = 0 before regularisation, diagonal ≤ ε after) do not move d and are not checked."""
    if not (np.isfinite(b).all() and (b > 0).all()):
        return "non-finite or non-positive weights"
    target = kappa * b ** (-p)  # κ_i β_i^{−1/α}
    allowed = np.maximum(rel * target, KAPPA * C.shape[0] * eps * (np.abs(C) @ b))
    excess = np.where(np.diag(C) > 0.5, np.abs(C @ b - target) / allowed, 0.0)  # unit diagonal except zero rows
    i = int(np.argmax(excess))
    return None if excess[i] <= 1.0 else f"task {i}: |(Cβ)_i − κ_i β_i^(−1/α)| = {excess[i]:.3g} × its tolerance"


def _newton(
    C: np.ndarray,
    kappa: np.ndarray,
    p: float,
    b0: np.ndarray | None,
    max_iter: int,
    accept: float = 1e-9,
    keep_best: bool = False,
) -> np.ndarray | None:
    """Damped Newton on Φ(β) = ½βᵀCβ − Σ κ_i h(β_i), h' = β^{−p}; None when Φ seems unbounded (no solution).

    Armijo backtracking far from the solution; full (fraction-to-boundary) Newton steps once the
    Newton decrement is below 0.25, where the convergence is quadratic and Φ's rounding would
    stall a line search. Returns β when the relative residual reaches 1e-12 (or the rounding level
    of Cβ, at most 1e-6), when it stalls below 1e-3 with a Newton decrement at rounding level
    (cancellation in Cβ for tasks whose gradients differ by ~1e12 in norm), or when it stalls below
    ``accept``. ``keep_best``: run all ``max_iter`` steps (no early stall exits) and return the iterate
    of smallest residual, for the caller to certify.
    """
    b = np.array(kappa ** (1.0 / (1.0 + p)) if b0 is None else b0, dtype=np.float64)  # exact for orthogonal g_i
    if p == 1.0:
        h = np.log  # Nash-MTL: h = log
    else:
        h = lambda v: v ** (1.0 - p) / (1.0 - p)  # noqa: E731  h'(v) = v^{−p}
    phi = lambda v: 0.5 * v @ C @ v - kappa @ h(v)  # noqa: E731
    best, b_best = np.inf, b
    for _ in range(max_iter):
        Cb = C @ b  # (K,)
        target = kappa * b ** (-p)  # κ_i β_i^{−1/α}
        residual = float(np.max(np.abs(Cb / target - 1.0)))
        # rounding floor of (Cβ)_i: nearly dependent gradients make Cβ a cancelling sum
        with np.errstate(over="ignore"):
            floor = 1e-15 * float(np.max((np.abs(C) @ b) / np.maximum(np.abs(Cb), 1e-300)))
        if residual <= max(_RTOL, min(floor, 1e-6)):
            return b
        stalled = residual >= best and not keep_best
        if stalled and best <= accept:  # stagnation at the rounding floor
            return b_best
        if residual < best:
            best, b_best = residual, b
        grad = Cb - target  # ∇Φ
        H = C + np.diag(p * target / b)  # ∇²Φ = C + diag(p κ β^{−p−1}), positive definite
        try:
            step = -np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            return None
        neg = step < 0
        t = min(1.0, 0.99 * float(np.min(-b[neg] / step[neg]))) if neg.any() else 1.0  # keep β > 0
        slope = float(grad @ step)  # −(Newton decrement)²
        if stalled and best <= 1e-3 and 0 <= -slope <= 1e-20 * max(1.0, abs(phi(b))):
            return b_best  # stagnation with a vanishing Newton decrement: the residual is limited by cancellation in Cβ
        if not slope < 0:  # H numerically indefinite (rounding): diagonally scaled gradient step instead
            step = -grad / np.diag(H)
            t = min(1.0, 0.99 * float(np.min(-b[step < 0] / step[step < 0]))) if (step < 0).any() else 1.0
            slope = float(grad @ step)
            f = phi(b)
            while phi(b + t * step) > f + 1e-4 * t * slope and t > 1e-14:
                t *= 0.5
            b = b + t * step
            continue
        if -slope > 0.0625:  # far from the solution: Armijo backtracking on Φ
            f = phi(b)
            while phi(b + t * step) > f + 1e-4 * t * slope and t > 1e-14:
                t *= 0.5
        b = b + t * step
        if not np.all(np.isfinite(b)) or np.max(b) > 1e12 or t <= 1e-14:
            return None  # Φ unbounded below along a v ≥ 0 with Cv = 0: no positive solution
    return b_best if best <= accept or keep_best else None


class FairGrad(GramianWeighting):
    """d = Gᵀw with (M w)_i = w_i^{−1/α}: α-fair first-order decreases ⟨g_i, d⟩ = w_i^{−1/α}."""

    name: ClassVar[str] = "fairgrad"
    stateful: ClassVar[bool] = True  # warm start of the solver (the solution itself is unique)

    def __init__(self, alpha: float = 2.0, max_norm: float | None = 1.0) -> None:
        if not alpha > 0 or alpha == float("inf"):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {max_norm!r}")
        self.alpha = float(alpha)
        self.max_norm = max_norm
        self._beta: np.ndarray | None = None  # warm start (scaled solution of the previous call)

    def reset(self) -> None:
        self._beta = None

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        w, self._beta = solve_fair_weights(M, self.alpha, self._beta)
        return clip_weights(torch.from_numpy(w).to(M), M, self.max_norm)


def clip_weights(w: Tensor, M: Tensor, max_norm: float | None) -> Tensor:
    """Scale w so that ||Gᵀw|| = sqrt(wᵀMw) ≤ max_norm (torch.nn.utils.clip_grad_norm_ on d)."""
    if max_norm is None:
        return w
    norm = float((w @ M @ w).clamp_min(0.0)) ** 0.5  # ||d|| = sqrt(wᵀMw)
    return w * (max_norm / norm) if norm > max_norm else w
