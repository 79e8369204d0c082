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
v ≥ 0 with Gᵀv = 0, and no d can decrease all tasks). In that degenerate case (a zero gradient,
opposite or opposing collinear gradients, a Pareto-stationary point) the equations are solved for
the regularised Gramian M + ε diag(M), ε = 1e-8 (C + εI; a zero row gets ε; ε is raised above the
rounding level of M for float32 inputs or a numerically indefinite M), whose d tends as
ε → 0 to the limit in which the deadlocked tasks get no first-order change and the others share
the orthogonal complement (a zero row does not change the other tasks' d; opposite gradients give
d = 0). Very large α (≳ 50) can require exponentially small weights and may raise SolverError.

Certificate (every path, including the fallback): the returned β must solve its equations per task,
|(Cβ)_i − κ_i β_i^{−1/α}| ≤ max(r·κ_i β_i^{−1/α}, 32·K·ε·(|C|β)_i) (the second term: the rounding
level of (Cβ)_i, ε of the input dtype; r = 1e-6, and 1e-4 for the regularised equations, whose
condition number is ~1/ε), else SolverError. The regularised fallback is used only when
the certified min-norm point of the unit gradients has ||Σλ_i ĝ_i||² ≤ ε (0 ∈ conv{g_i} up to the
regularisation); otherwise a positive solution exists, and when Newton stalls on rounding (tasks whose
⟨g_i, d⟩ is a sum cancelling to ~1e-13 of its terms) its best iterate is returned only if certified.

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
    D3. Degenerate inputs (0 ∈ conv{g_i}): regularised solution (see above, certified for the
        regularised equations), where the official least-squares solver returns an arbitrary
        non-solution. All-zero J gives w = 0, d = 0.
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
from reference_impls.core.solvers import KAPPA, SolverError, min_norm_point

_RTOL = 1e-12  # target for max_i |w_i^{1/α} (Mw)_i − 1|
_REG = 1e-8  # ε (relative to each ||g_i||²) for the degenerate case


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
        next time). With all-zero M: (zeros, None).

    Raises:
        SolverError: no certified solution (Newton failed, or its answer does not pass the per-task
            certificate; see the module docstring).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    M = torch.as_tensor(M).detach()
    eps = torch.finfo(M.dtype).eps if M.is_floating_point() else np.finfo(np.float64).eps  # precision of M
    M = M.cpu().to(torch.float64).numpy()
    M = 0.5 * (M + M.T)
    K = M.shape[0]
    D = np.sqrt(np.clip(np.diag(M), 0.0, None))  # ||g_i||
    if not np.any(D > 0):
        return np.zeros(K), None  # all-zero J: d = 0
    D = np.where(D > 0, D, 1.0)  # zero rows stay zero in C (degenerate case)
    C = M / np.outer(D, D)  # unit-diagonal Gramian of g_i/||g_i||
    p = 1.0 / alpha
    log_kappa = (p - 1.0) * np.log(D)
    log_gamma = float(np.mean(log_kappa)) / (1.0 + p)
    kappa = np.exp(log_kappa - (1.0 + p) * log_gamma)  # geometric mean 1
    start = w0 if w0 is not None and np.shape(w0) == (K,) and np.all(np.asarray(w0) > 0) else None
    beta = _newton(C, kappa, p, start, max_iter)
    if beta is None or _uncertified(C, kappa, p, beta, eps) is not None:
        # ε = 1e-8, raised above the rounding of M (float32 Gramians are PSD only to ~1e-7)
        eps_reg = max(_REG, 100.0 * eps, -2.0 * float(np.linalg.eigvalsh(C)[0]))
        lam = min_norm_point(C, eps)  # certified min-norm point of the unit gradients ĝ_i
        if float(lam @ C @ lam) > eps_reg:  # 0 ∉ conv{ĝ_i}, even after regularisation: a positive solution exists
            # Newton stalled on rounding (cancellation in Cβ): keep its best iterate only if it is certified
            beta = _newton(C, kappa, p, start, max_iter, keep_best=True)
            failure = "no iterate" if beta is None else _uncertified(C, kappa, p, beta, eps)
            if failure is not None:
                raise SolverError(f"FairGrad/Nash-MTL: a positive solution exists but Newton did not certify it (K = {K}): {failure}")
        else:  # no positive solution: 0 ∈ conv{g_i} up to ε; regularise (D3)
            C_reg = C + eps_reg * np.eye(K)
            beta = _newton(C_reg, kappa, p, None, max_iter, accept=1e-6)
            # the regularised system has condition ~1/ε: its equations are certified to 1e-4 relative per task
            failure = "no iterate" if beta is None else _uncertified(C_reg, kappa, p, beta, eps, rel=1e-4)
            if failure is not None:
                raise SolverError(f"FairGrad/Nash-MTL Newton solver failed on the regularised Gramian (K = {K}): {failure}")
    return beta * np.exp(log_gamma) / D, beta  # w = γ β / D solves (M w)_i = w_i^{−1/α}


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
    ``accept`` (regularised degenerate case). ``keep_best``: run all ``max_iter`` steps (no early stall
    exits) and return the iterate of smallest residual, for the caller to certify.
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
        if accept >= 1e-6 and 0 <= -slope <= 1e-12 * max(1.0, abs(phi(b))):
            return b  # regularised case: Φ converged to rounding, where the residual can stall above 1e-6
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
