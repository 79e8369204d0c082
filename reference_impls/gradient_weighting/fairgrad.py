"""FairGrad: α-fair task weights, (M w)_i = w_i^{-1/α}, solved exactly by Newton's method.

Paper: H. Ban and K. Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
arXiv 2402.15638. Official code: github.com/OptMN-Lab/fairgrad (``methods/weight_methods.py``
class FairGrad, ``experiments/*/run.sh``); LibMTL ``weighting/FairGrad.py``.

Implemented: the update d = Gᵀw maximises the α-fair utility Σ_i u_i^{1−α}/(1−α) of the first-order
loss decreases u_i = ⟨g_i, d⟩; its optimality condition (the equation the official code solves) is

    (M w)_i = w_i^{−1/α}  for all i,   w ∈ R^K_{>0},        d = Gᵀ w,

so that ⟨g_i, d⟩ = w_i^{−1/α} > 0: every task decreases to first order. α = 1 is Nash-MTL
((Mw)_i = 1/w_i); α → ∞ tends to max-min fairness (equal ⟨g_i, d⟩).

Solver (:func:`solve_fair_weights`, shared with Nash-MTL): the equation is the stationarity
condition ∇Φ(w) = 0 of the strictly convex Φ(w) = ½wᵀMw − Σ_i h(w_i), h'(w) = w^{−1/α}
(h = log for α = 1). Damped Newton on Φ (Hessian M + diag(w^{−1/α−1}/α), a fraction-to-boundary
rule keeps w > 0, Armijo backtracking) on the scale-normalised Gramian M/s (s = mean diag M; the
solution then scales as w = s^{−α/(1+α)} w̃), stopped when max_i |w_i^{1/α}(Mw)_i − 1| ≤ 1e-12 (or the rounding level of Mw when the
gradients are nearly dependent).
It converges quadratically, from the warm start (the previous normalised w) or from
w_i = M_ii^{−α/(1+α)} (the exact solution for orthogonal gradients).

Existence: a positive solution exists iff 0 ∉ conv{g_i} (otherwise Φ is unbounded below along a
v ≥ 0 with Gᵀv = 0, and no d can decrease all tasks). In that degenerate case (a zero gradient,
opposite or opposing collinear gradients, a Pareto-stationary point) the equations are solved for
the regularised Gramian M + εI with ε = 1e-8·max_i M_ii (the Gramian of [G, √ε I]); as ε → 0 its d
tends to the limit in which the deadlocked tasks get no first-order change and the others
share the orthogonal complement (e.g. a zero row does not change the other tasks' d; opposite
gradients give d = 0).

Hyperparameters:
    alpha: α = 2.0 (default; every official run.sh). The official class and LibMTL default to 1.0.
    max_norm: None (default): the paper's d. The official code multiplies d by K and clips the
        shared gradient's norm to 1.0; pass max_norm=1.0 for the clipping (not the ×K).

Deviations:
    D1. Solver: exact damped Newton (relative residual 1e-12) instead of the official
        ``scipy.optimize.least_squares(Mx − x^{−1/α}, x0 = 𝟙/K, bounds (0, ∞))`` with default
        tolerances (residual ~1e-8 relative, occasionally a non-converged point).
    D2. The official d is K·Gᵀw, then clipped to norm 1.0; we return Gᵀw, clipped only when
        max_norm is given. Clipping breaks the scale invariance of the weights.
    D3. Degenerate inputs (0 ∈ conv{g_i}): regularised solution (see above), where the official
        least-squares solver returns an arbitrary non-solution. All-zero J gives w = 0, d = 0.
        K = 1: w = ||g||^{−2α/(1+α)}.

Usage:
    >>> d = FairGrad(alpha=2.0)(J)       # J: (K, n) -> d: (n,)
    >>> w = solve_fair_weights(M, 2.0)   # the weights from a Gramian (numpy, float64)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import SolverError

_RTOL = 1e-12  # target for max_i |w_i^{1/α} (Mw)_i − 1|
_REG = 1e-8  # ε / max_i M_ii for the degenerate case


def solve_fair_weights(M, alpha: float = 1.0, w0=None, *, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve (M w)_i = w_i^{−1/α}, w > 0, for a PSD Gramian M (K, K).

    Args:
        M: the Gramian (array-like or tensor), finite.
        alpha: α > 0 (α = 1: Nash-MTL).
        w0: optional warm start for the normalised problem (the second return value of a previous call).

    Returns:
        (w, w_normalised): the weights (float64 numpy array, K) and the solution of the normalised
        problem M/s (pass it as ``w0`` next time). With all-zero M: (zeros, None).

    Raises:
        SolverError: Newton's method did not reach the tolerance (should not happen for PSD M).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    M = np.asarray(torch.as_tensor(M).detach().cpu().to(torch.float64), dtype=np.float64)
    M = 0.5 * (M + M.T)
    K = M.shape[0]
    diag = np.clip(np.diag(M), 0.0, None)
    s = float(diag.mean())
    if s == 0.0:
        return np.zeros(K), None
    Q = M / s  # normalised Gramian: mean diagonal 1
    start = w0 if w0 is not None and np.shape(w0) == (K,) and np.all(np.asarray(w0) > 0) else None
    w = _newton(Q, alpha, start, max_iter)
    if w is None:  # no positive solution: 0 ∈ conv{g_i}; regularise (D3)
        eps = _REG * float(np.max(np.diag(Q)))
        w = _newton(Q + eps * np.eye(K), alpha, None, max_iter, accept=1e-6)
        if w is None:
            raise SolverError(f"FairGrad/Nash-MTL Newton solver failed on the regularised Gramian (K = {K})")
    return w * s ** (-alpha / (1.0 + alpha)), w  # (M w)_i = w_i^{−1/α} for M = s Q


def _newton(Q: np.ndarray, alpha: float, w0: np.ndarray | None, max_iter: int, accept: float = 1e-9) -> np.ndarray | None:
    """Damped Newton on Φ(w) = ½wᵀQw − Σ h(w_i); None when Φ appears unbounded (no solution).

    Armijo backtracking far from the solution; full (fraction-to-boundary) Newton steps once the
    Newton decrement is below 0.25, where the convergence is quadratic and Φ's rounding would
    stall a line search. Returns w when the relative residual reaches 1e-12, or when it stagnates
    below ``accept`` (rounding floor of the regularised degenerate case).
    """
    p = 1.0 / alpha
    if w0 is None:
        w0 = np.clip(np.diag(Q), 1e-12, None) ** (-alpha / (1.0 + alpha))  # exact for orthogonal g_i
    w = np.array(w0, dtype=np.float64)
    if p == 1.0:
        h = np.log  # Nash-MTL: h = log
    else:
        h = lambda v: v ** (1.0 - p) / (1.0 - p)  # noqa: E731  h'(v) = v^{−1/α}
    phi = lambda v: 0.5 * v @ Q @ v - np.sum(h(v))  # noqa: E731
    best = np.inf
    for _ in range(max_iter):
        Qw = Q @ w  # (K,)
        target = w ** (-p)  # w_i^{−1/α}
        residual = float(np.max(np.abs(Qw / target - 1.0)))  # max_i |w_i^{1/α}(Qw)_i − 1|
        # rounding floor of (Qw)_i: nearly dependent gradients make Qw a cancelling sum
        floor = 1e-14 * float(np.max((np.abs(Q) @ w) / np.maximum(np.abs(Qw), 1e-300)))
        if residual <= max(_RTOL, floor):
            return w
        if residual >= best and best <= accept:  # stagnation at the rounding floor
            return w_best
        if residual < best:
            best, w_best = residual, w
        grad = Qw - target  # ∇Φ = Qw − w^{−1/α}
        H = Q + np.diag(p * w ** (-p - 1.0))  # ∇²Φ, positive definite
        try:
            step = -np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            return None
        neg = step < 0
        t = min(1.0, 0.99 * float(np.min(-w[neg] / step[neg]))) if neg.any() else 1.0  # keep w > 0
        slope = float(grad @ step)  # −(Newton decrement)²
        if -slope > 0.0625:  # far from the solution: Armijo backtracking on Φ
            f = phi(w)
            while phi(w + t * step) > f + 1e-4 * t * slope and t > 1e-14:
                t *= 0.5
        w = w + t * step
        if not np.all(np.isfinite(w)) or np.max(w) > 1e12 or t <= 1e-14:
            return None  # Φ unbounded below along a v ≥ 0 with Qv = 0: no positive solution
    return w_best if best <= accept else None


class FairGrad(GramianWeighting):
    """d = Gᵀw with (M w)_i = w_i^{−1/α}: α-fair first-order decreases ⟨g_i, d⟩ = w_i^{−1/α}."""

    name: ClassVar[str] = "fairgrad"
    stateful: ClassVar[bool] = True  # warm start of the solver (the solution itself is unique)

    def __init__(self, alpha: float = 2.0, max_norm: float | None = None) -> None:
        if not alpha > 0 or alpha == float("inf"):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {max_norm!r}")
        self.alpha = float(alpha)
        self.max_norm = max_norm
        self._w_normalised: np.ndarray | None = None

    def reset(self) -> None:
        self._w_normalised = None

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        w, self._w_normalised = solve_fair_weights(M, self.alpha, self._w_normalised)
        return clip_weights(torch.from_numpy(w).to(M), M, self.max_norm)


def clip_weights(w: Tensor, M: Tensor, max_norm: float | None) -> Tensor:
    """Scale w so that ||Gᵀw|| = sqrt(wᵀMw) ≤ max_norm (torch.nn.utils.clip_grad_norm_ on d)."""
    if max_norm is None:
        return w
    norm = float((w @ M @ w).clamp_min(0.0)) ** 0.5  # ||d|| = sqrt(wᵀMw)
    return w * (max_norm / norm) if norm > max_norm else w
