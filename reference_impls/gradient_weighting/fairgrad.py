r"""FairGrad: α-fair task weights, solved exactly by Newton's method.

Paper: H. Ban and K. Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
arXiv 2402.15638. Official code: github.com/OptMN-Lab/fairgrad (``methods/weight_methods.py``
class FairGrad, ``experiments/*/run.sh``); LibMTL ``weighting/FairGrad.py``.

Update rule:
    The update :math:`d = G^\top w` (rows :math:`g_i` of G, Gramian :math:`M = G G^\top`) maximises, over
    a ball of directions, the α-fair utility of the first-order loss decreases
    :math:`u_i = \langle g_i, d \rangle`, :math:`\sum_i u_i^{1-\alpha} / (1 - \alpha)` (:math:`\sum_i \log u_i`
    for α = 1). Its optimality condition, with the radius chosen so that the multiplier is 1 (the
    radius only scales d), is the equation below, which the official code solves for the weights;
    the direction is then clipped to norm at most
    :math:`\tau` = ``max_norm`` (default 1.0, the official code; ``max_norm=None`` gives the paper's
    :math:`d = G^\top w`; the official code also multiplies by K first, see D2):

    .. math::

        w \in \mathbb{R}^K_{>0}: \quad (M w)_i = w_i^{-1/\alpha} \quad \text{for all } i, \qquad d = \min\Big(1, \frac{\tau}{\lVert G^\top w \rVert}\Big) \, G^\top w

    so that :math:`\langle g_i, G^\top w \rangle = w_i^{-1/\alpha} > 0`: every task decreases to first
    order. α = 1 is Nash-MTL, :math:`(M w)_i = 1 / w_i`; α → ∞ tends to max-min fairness:
    :math:`\min_i \langle g_i, d \rangle / \lVert d \rVert` grows towards its maximum
    :math:`\lVert d_{\mathrm{MGDA}} \rVert` (equal :math:`\langle g_i, d \rangle` only for the binding
    tasks; their max/min ratio need not tend to 1). The default α is 2.0 (every official
    ``run.sh``).

    Solver (``solve_fair_weights``, shared with Nash-MTL): with
    :math:`D = \operatorname{diag}(\lVert g_i \rVert)` the equation is rescaled to unit gradient norms,
    :math:`C = D^{-1} M D^{-1}`, and becomes the stationarity condition of a strictly convex function
    (with :math:`h = \log` and :math:`\kappa = \mathbf{1}` for α = 1, so Nash-MTL's solve does not see
    the task scales at all):

    .. math::

        \nabla \Phi(\beta) = 0, \qquad \Phi(\beta) = \tfrac12 \beta^\top C \beta - \sum_i \kappa_i h(\beta_i), \qquad h'(\beta) = \beta^{-1/\alpha}

    Damped Newton on Φ (Hessian :math:`C + \operatorname{diag}(\kappa \beta^{-1/\alpha - 1} / \alpha)`, a
    fraction-to-boundary rule keeps β > 0, Armijo backtracking), stopped when
    :math:`\max_i \lvert w_i^{1/\alpha} (M w)_i - 1 \rvert \le 10^{-12}` (or the rounding level of
    :math:`M w` when the gradients are nearly dependent). It converges quadratically, from the warm
    start (the previous call's β) or from the exact solution for orthogonal gradients. Near the
    Pareto set (:math:`\cos(g_1, g_2) \to -1`) the residual is limited by rounding in :math:`C\beta`
    (about :math:`\varepsilon / (1 + \cos)`), so Newton stops per task at the float64 rounding level of
    :math:`(C\beta)_i` (below the certificate's tolerance); it used to cap that level at 1e-6 and ran
    2 × 100 iterations per call there (issue 8). :math:`K = 2` (``_solve2``, Python floats): the
    equations reduce to one strictly increasing scalar equation in
    :math:`t = \log(\beta_2 / \beta_1)`, solved by bracketed Newton (closed form for Nash-MTL:
    :math:`w_i = 1 / (\lVert g_i \rVert \sqrt{1 + \cos(g_1, g_2)})`), with the same stationarity test and
    certificate, else the general path.

Existence: a positive solution exists iff :math:`0 \notin \operatorname{conv}\{g_i\}` (otherwise Φ is
unbounded below along a v ≥ 0 with Gᵀv = 0, and no d can decrease all tasks). Which case holds is
decided first, by the certified min-norm point λ of the unit gradients
:math:`\hat g_i = g_i / \lVert g_i \rVert` (``solvers.min_norm_point``): the hull contains 0 when
:math:`\lVert \sum_i \lambda_i \hat g_i \rVert^2 \le \kappa s (1 + s)`, the min-norm certificate's own
tolerance (:math:`\kappa = 32 K \varepsilon`, ε of the input dtype,
:math:`s = \sum_i \lambda_i \lVert \hat g_i \rVert = 1`), i.e.
:math:`\lVert d_{\mathrm{MGDA}} \rVert \lesssim \sqrt{\kappa} \lVert g \rVert`, the resolution of a Gramian.
In that case (a zero gradient, opposite or opposing collinear gradients, a Pareto-stationary point)
the answer is defined as follows (D3). The deadlocked tasks S are those with :math:`-\hat g_i` in the
cone of the others (:math:`\min_{v \ge e_i} \lVert \sum_j v_j \hat g_j \rVert = 0`, certified dual-cone
solver, to the same tolerance): no d decreases one of them without increasing another, since
:math:`\sum_{i \in S} v_i \langle g_i, d \rangle = 0` with v > 0. They get
:math:`\langle g_i, d \rangle = 0`, and the other tasks R solve their α-fair equations on their
components orthogonal to :math:`\operatorname{span}\{g_i : i \in S\}` (M' = the Schur complement of M; a
positive solution exists there, and d ≠ 0 unless J is strongly stationary). Strongly stationary J
(S = all tasks, e.g. [g; −g]): w = 0, d = 0. An earlier version solved the regularised M + εI at
ε = 1e-8 instead, whose d ≈ 1e-4·‖g‖ conflicted with deadlocked tasks at cosines down to −1.

Certificate (every path): a positive solution β must solve its equations per task,
:math:`\lvert (C\beta)_i - \kappa_i \beta_i^{-1/\alpha} \rvert \le \max(r \kappa_i \beta_i^{-1/\alpha}, 32 K \varepsilon (\lvert C \rvert \beta)_i)`
(the second term: the rounding level of :math:`(C\beta)_i`, ε of the input dtype; r = 1e-6), else
SolverError; when Newton stalls on rounding (tasks whose :math:`\langle g_i, d \rangle` is a sum
cancelling to ~1e-13 of its terms) its best iterate is returned only if certified. The D3 answer is
certified on the full Gramian: :math:`\langle \hat g_j, d \rangle = w_j^{-1/\alpha} / \lVert g_j \rVert` to
the same tolerance on R, and
:math:`\lvert \langle \hat g_i, d \rangle \rvert \le \max(32 K \varepsilon (\lvert C \rvert \lvert b \rvert)_i, \sqrt{32 K \varepsilon} \sum_j \lvert b_j \rvert)`
on S (b = the weights of the unit gradients; the square-root term is the Gramian's resolution of a
direction when the hull contains 0), else SolverError.

Hyperparameters:
    alpha: α = 2.0 (default; every official run.sh). The official class and LibMTL default to 1.0.
    max_norm: 1.0 (default, as the official code): d is scaled to norm ≤ ``max_norm``. The paper's d
        is ``max_norm=None``. Clipping matters: for α > 1,
        :math:`\lVert d \rVert^2 = \sum_i w_i^{1 - 1/\alpha} \to \infty` near the Pareto set (the weights
        grow without bound), so unclipped steps overshoot. The official code also multiplies d by K
        before clipping; we do not (D2).

Deviations:
    D1. Solver: exact damped Newton (relative residual 1e-12) instead of the official
        ``scipy.optimize.least_squares(Mx − x^{−1/α}, x0 = 𝟙/K, bounds (0, ∞))`` with default
        tolerances (xtol = ftol = gtol = 1e-8).
    D2. The official d is :math:`K G^\top w`, then clipped to norm 1.0; we return :math:`G^\top w`
        clipped to ``max_norm`` (no ×K, which matters only when the clip is inactive).
    D3. Pareto-stationary inputs (:math:`0 \in \operatorname{conv}\{g_i\}` to the certified tolerance,
        see Existence): no w > 0 solves the equations. We return a defined answer: deadlocked tasks
        get :math:`\langle g_i, d \rangle = 0` (their weights :math:`w_S = -P w_R`, possibly negative,
        remove from d its component in :math:`\operatorname{span}\{g_i : i \in S\}`), the others the
        α-fair solution on the orthogonal complement of the deadlocked gradients; w = 0, d = 0 at
        strongly stationary J (and all-zero J). The official code has no such case: it returns
        whatever ``least_squares`` reaches from 𝟙/K (a non-solution with x > 0, so d conflicts with a
        task). K = 1: :math:`w = \lVert g \rVert^{-2\alpha/(1+\alpha)}`.

Usage:
    >>> d = FairGrad(alpha=2.0)(J)       # J: (K, n) -> d: (n,), ||d|| ≤ 1
    >>> d = FairGrad(max_norm=None)(J)   # the paper's d = Gᵀw
    >>> w = solve_fair_weights(M, 2.0)   # the weights from a Gramian (numpy, float64)
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import (
    _EPS64,
    KAPPA,
    SolverError,
    combine2,
    dual_cone_weights,
    dual_cone_weights2,
    float_info,
    gramian2_entries,
    gramian2_rows,
    min_norm_point,
    min_norm_tolerances,
    min_norm_weights2,
    small_tensor,
)

_RTOL = 1e-12  # target for max_i |w_i^{1/α} (Mw)_i − 1|
# Newton's stop at rounding: |(Cβ)_i − κ_i β_i^{−1/α}| ≤ _ROUNDING·(|C|β)_i, ~4.5 float64 ulps of the terms of (Cβ)_i;
# below the certificate's 32·K·ε·(|C|β)_i (ε ≥ float64's, K ≥ 2), so a β accepted here is always certified
_ROUNDING = 1e-15
_POLISH = 3  # Newton steps taken at that rounding level before the best of them is returned
_NEWTON2_ITER = 100  # K = 2: Newton/bisection steps on the scalar equation (bisection alone needs < 100 in float64)
_TINY64 = float(np.finfo(np.float64).tiny)


def solve_fair_weights(
    M, alpha: float = 1.0, w0=None, *, max_iter: int = 100, fast: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve (M w)_i = w_i^{−1/α}, w > 0, for a PSD Gramian M (K, K).

    The problem is first scaled to unit gradient norms: with D = diag(||g_i||), C = D⁻¹MD⁻¹ and
    β = D w/γ, the equations become (Cβ)_i = κ_i β_i^{−1/α} with κ_i = D_i^{1/α−1}/γ^{1+1/α}
    (κ = 𝟙 for Nash-MTL, α = 1; γ makes the geometric mean of κ equal to 1). This makes the solve
    independent of the tasks' gradient scales (exactly so for α = 1).

    Args:
        M: the Gramian (array-like or tensor), finite.
        alpha: α > 0 (α = 1: Nash-MTL).
        w0: optional warm start: the second return value of a previous call (the scaled β).
        fast: K = 2 inputs with two non-zero gradients are solved by :func:`_solve2` (Python floats, one scalar
            equation, the same stationarity test and certificate; strongly stationary pairs get w = 0 as in D3);
            False always runs the general solve.

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
    M = 0.5 * (M + M.T)
    if fast and M.shape == (2, 2) and np.isfinite(M).all():
        solved = _solve2(float(M[0, 0]), float(M[0, 1]), float(M[1, 1]), 1.0 / alpha, eps, w0)
        if solved is not None:
            w1, w2, b1, b2 = solved
            return np.array([w1, w2]), None if b1 is None else np.array([b1, b2])
    w, beta, _ = _solve(M, 1.0 / alpha, eps, w0, max_iter, depth=0)
    return w, beta


def _solve2(m11: float, m12: float, m22: float, p: float, eps: float, b0) -> tuple[float, float, float | None, float | None] | None:
    """K = 2 on Python floats: (w_1, w_2, β_1, β_2) of :func:`_solve` for the symmetric Gramian [[m11, m12], [m12, m22]],
    or None (the caller runs the general path) unless both gradients are non-zero, 0 ∉ conv{ĝ_1, ĝ_2} (the general
    path's test: the same min-norm point and tolerance) and the answer passes the general path's per-task certificate.

    With C = [[1, c], [c, 1]] (c = cos(g_1, g_2), δ = 1 + c > 0) and ρ = β_2/β_1 = e^t, the equations
    (Cβ)_i = κ_i β_i^{−p} give β_1^{1+p}(1 + cρ) = κ_1 and β_1^{1+p}ρ^p(ρ + c) = κ_2, so t solves the scalar equation

        φ(t) = p·t + log(ρ + c) − log(1 + cρ) − log(κ_2/κ_1) = 0,    φ'(t) = p + ρ(1 − c)δ / ((ρ + c)(1 + cρ)) > 0,

    strictly increasing on the interval where ρ + c > 0 and 1 + cρ > 0: one root, found by Newton's method kept inside
    a bracket (bisection when a step leaves it); then β_1 = (κ_1/(1 + cρ))^{1/(1+p)}, β_2 = ρβ_1. ρ + c = (e^t − 1) + δ
    and 1 + cρ = δ + c(e^t − 1) are formed from δ and expm1(t), so no cancellation beyond that of c itself when the
    gradients are nearly opposite (δ → 0). Nash-MTL (p = 1, κ = 𝟙): t = 0 exactly, β_1 = β_2 = 1/√δ (closed form).
    The unit diagonal is the model; the certificate is checked on the computed C (diagonal 1 to rounding).
    At a Pareto-stationary input: (0, 0, None, None) when both tasks are deadlocked (:func:`_stationary2`), else None.
    """
    if not (m11 > 0.0 and m22 > 0.0):
        return None  # a zero gradient (D3): general path
    D1, D2 = math.sqrt(m11), math.sqrt(m22)  # ||g_i||
    c11, c12, c22 = m11 / (D1 * D1), m12 / (D1 * D2), m22 / (D2 * D2)  # C = D⁻¹MD⁻¹ as in _solve
    if not math.isfinite(c12):
        return None
    # 0 ∉ conv{ĝ_i}, decided as _stationary does (the same certified min-norm point, bit for bit, and tolerance)
    lam = min_norm_weights2(c11, c12, c12, c22, eps, _TINY64)
    if lam is None:
        return None  # not certified: the general path raises
    l1, l2 = lam
    n1, n2 = math.sqrt(c11), math.sqrt(c22)  # ||ĝ_i||
    S = l1 * n1 + l2 * n2
    value = (l1 * c11 + l2 * c12) * l1 + (l1 * c12 + l2 * c22) * l2  # ||Σ λ_i ĝ_i||²
    if not value > KAPPA * 2 * eps * S * (max(n1, n2) + S):
        return _stationary2(c11, c12, c22, eps, l1, l2)  # Pareto-stationary (D3)
    c = max(-1.0, min(1.0, c12))
    delta = 1.0 + c  # δ = 1 + cos > 0 (exact for c ≤ −½: Sterbenz)
    log_k1, log_k2 = (p - 1.0) * math.log(D1), (p - 1.0) * math.log(D2)  # log κ_i before normalisation
    log_gamma = (log_k1 + log_k2) / 2.0 / (1.0 + p)
    k1, k2 = math.exp(log_k1 - (1.0 + p) * log_gamma), math.exp(log_k2 - (1.0 + p) * log_gamma)  # κ, geometric mean 1
    if p == 1.0:
        t = 0.0  # κ = 𝟙: φ(0) = 0 exactly
    else:
        L = log_k2 - log_k1  # log(κ_2/κ_1)
        if c < 0.0:  # domain: ρ + c > 0 and 1 + cρ > 0
            # log ρ > log(−c) = log1p(−δ); at |c| < ε/2, δ rounds to 1 and log1p(−1) would raise: log(−c) directly
            lo, hi = (math.log1p(-delta) if delta < 1.0 else math.log(-c)), math.log1p(delta / -c)
        else:  # φ' ∈ [p, p + 1]: the root lies within |φ(t_0)|/p of any t_0
            lo, hi = -math.inf, math.inf
        t = 0.0
        if b0 is not None and len(b0) == 2 and b0[0] > 0.0 and b0[1] > 0.0:
            t = math.log(b0[1] / b0[0])  # warm start: the previous call's ρ
        if not lo < t < hi:
            t = 0.5 * (lo + hi)
        for _ in range(_NEWTON2_ITER):
            rho, A, B = _rho_terms(t, c, delta)  # ρ, ρ + c, 1 + cρ
            if not (A > 0.0 and B > 0.0):  # at the ends of the domain (rounding): bisect
                lo, hi = (t, hi) if A <= 0.0 else (lo, t)
                t = 0.5 * (lo + hi)
                continue
            f = p * t + math.log(A) - math.log(B) - L  # φ(t)
            if f == 0.0:
                break
            slope = p + rho * (1.0 - c) * delta / (A * B)  # φ'(t)
            if f > 0.0:
                hi = t
            else:
                lo = t
            if math.isinf(lo) or math.isinf(hi):  # c ≥ 0: a finite bracket from φ' ≥ p
                lo, hi = max(lo, t - abs(f) / p - 1.0), min(hi, t + abs(f) / p + 1.0)
            step = -f / slope
            new = t + step
            if not lo < new < hi:
                new = 0.5 * (lo + hi)
                step = new - t
            t = new
            if abs(step) <= 1e-12 * min(1.0, min(A, B) / rho):  # ρ, ρ + c and 1 + cρ moved by < 1e-12 (relative):
                break  # the next step (quadratic convergence) would be at rounding level
        else:
            return None
    rho, _, B = _rho_terms(t, c, delta)
    if not B > 0.0:
        return None
    b1 = (k1 / B) ** (1.0 / (1.0 + p))  # β_1^{1+p}(1 + cρ) = κ_1
    b2 = rho * b1  # β_2 = ρ β_1
    # the general path's certificate (_uncertified): |(Cβ)_i − κ_i β_i^{−p}| ≤ max(1e-6·target, 32·K·ε·(|C|β)_i)
    for k, ci1, ci2, bi in ((k1, c11, c12, b1), (k2, c12, c22, b2)):
        if not (math.isfinite(bi) and bi > 0.0):
            return None
        target = k * bi ** (-p)
        allowed = max(1e-6 * target, KAPPA * 2 * eps * (abs(ci1) * b1 + abs(ci2) * b2))
        if not abs(ci1 * b1 + ci2 * b2 - target) <= allowed:
            return None
    gamma = math.exp(log_gamma)
    return b1 * gamma / D1, b2 * gamma / D2, b1, b2  # w = γβ/D


def _stationary2(c11: float, c12: float, c22: float, eps: float, l1: float, l2: float) -> tuple[float, float, None, None] | None:
    """K = 2, 0 ∈ conv{ĝ_1, ĝ_2}, both gradients non-zero: _stationary_limit's deadlock test on Python floats (the rows
    of solvers.dual_cone_weights2, the same tolerances). When both tasks are deadlocked (J strongly stationary, as for
    every such input of the cagrad-toy run) the D3 answer is w = 0, d = 0; otherwise None (the general path)."""
    kappa_eps = KAPPA * 2 * eps
    rows = dual_cone_weights2(c11, c12, c12, c22, ((1.0, 0.0), (0.0, 1.0)), eps)  # argmin_{v ≥ e_i} ||Σ_j v_j ĝ_j||²
    if rows is None:  # ĝ_1 = −ĝ_2 to 64 ulps (the 2×2 solver declines a numerically singular C)
        # v = (1, 1) is feasible for both rows (v ≥ e_i), so each row's minimum is at most ||ĝ_1 + ĝ_2||²; with half
        # the test's tolerance to spare (size of the minimiser 2 − O(δ)) both tasks are deadlocked
        dist2 = c11 + c22 + 2.0 * c12  # ||ĝ_1 + ĝ_2||²
        return (0.0, 0.0, None, None) if c12 < 0.0 and dist2 <= 0.5 * kappa_eps * 2.0 * 3.0 else None
    deadlocked = []
    for v1, v2 in rows:
        dist2 = v1 * (c11 * v1 + c12 * v2) + v2 * (c12 * v1 + c22 * v2)  # dist(−ĝ_i, cone{ĝ_j : j ≠ i})²
        size = abs(v1) + abs(v2)
        deadlocked.append(dist2 <= kappa_eps * size * (1.0 + size) and size * math.sqrt(kappa_eps) <= 1.0)
    if not any(deadlocked):
        deadlocked = [l1 > 0.0, l2 > 0.0]  # the support of the certified zero min-norm point
    if all(deadlocked):
        return 0.0, 0.0, None, None  # strongly stationary: every task is deadlocked, w = 0, d = 0
    return None


def _rho_terms(t: float, c: float, delta: float) -> tuple[float, float, float]:
    """(ρ, ρ + c, 1 + cρ) at ρ = e^t, without cancellation beyond c's own: for c < 0 (where ρ + c or 1 + cρ can
    vanish) from δ = 1 + c and e^t − 1 (ρ + c = (e^t − 1) + δ, 1 + cρ = δ + c(e^t − 1)); for c ≥ 0 both are sums of
    non-negative terms."""
    rho = math.exp(t)
    if c < 0.0:
        e = math.expm1(t)
        return rho, e + delta, delta + c * e
    return rho, rho + c, 1.0 + c * rho


def fair_weights2(M: Tensor, p: float, b0, max_norm: float | None) -> tuple[Tensor, tuple[float, float] | None] | None:
    """The weights of a 2×2 CPU Gramian tensor by :func:`_solve2`, clipped as :func:`clip_weights` (in float64), and the
    warm start β; None when the general path must run (another shape or device, or :func:`_solve2` declines)."""
    entries = gramian2_entries(M)
    solved = None if entries is None else fair_weights2_entries(*entries, p, b0, max_norm, float_info(M.dtype)[0])
    if solved is None:
        return None
    w1, w2, beta = solved
    return small_tensor((w1, w2), M.dtype), beta


def fair_weights2_entries(
    m11: float, m12: float, m21: float, m22: float, p: float, b0, max_norm: float | None, eps: float
) -> tuple[float, float, tuple[float, float] | None] | None:
    """:func:`fair_weights2` on the entries of a finite 2×2 Gramian (``eps``: its dtype's): (w_1, w_2, warm start β) or
    None. Also the runner's K = 2 protocol (``direction2`` of FairGrad and Nash-MTL, from M = J Jᵀ on Python floats)."""
    solved = _solve2(m11, 0.5 * (m12 + m21), m22, p, eps, b0)
    if solved is None:
        return None
    w1, w2, b1, b2 = solved
    if max_norm is not None:
        norm = math.sqrt(max(0.0, w1 * (m11 * w1 + m12 * w2) + w2 * (m21 * w1 + m22 * w2)))  # ||d|| = sqrt(wᵀMw)
        if norm > max_norm:
            w1, w2 = w1 * (max_norm / norm), w2 * (max_norm / norm)
    return w1, w2, None if b1 is None else (b1, b2)


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


def _residual(C: np.ndarray, kappa: np.ndarray, p: float, b: np.ndarray) -> float:
    """max_i |(Cβ)_i/(κ_i β_i^{−p}) − 1| (inf outside β > 0)."""
    if not (b > 0).all():
        return np.inf
    return float(np.max(np.abs((C @ b) / (kappa * b ** (-p)) - 1.0)))


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
    stall a line search. Returns β when the relative residual reaches 1e-12, the best of a few
    iterates once every task's residual is at the float64 rounding level of its (Cβ)_i (per task,
    :data:`_ROUNDING`; such a β always passes the certificate), when it stalls below 1e-3 with a Newton decrement at rounding level
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
    absC = np.abs(C)
    band_best, b_band, polish = np.inf, None, 0
    for _ in range(max_iter):
        Cb = C @ b  # (K,)
        target = kappa * b ** (-p)  # κ_i β_i^{−1/α}
        error = np.abs(Cb - target)  # |(Cβ)_i − κ_i β_i^{−1/α}|, (K,)
        residual = float(np.max(error / target))
        if (error <= _RTOL * target).all():
            return b  # converged
        # At the float64 rounding level of (Cβ)_i for every task (nearly dependent gradients make Cβ a cancelling
        # sum: ~1e-5 of the target at cos(g_1, g_2) = −1 + 1e-11, so 1e-12 is out of reach): the steps only move
        # along rounding noise; take _POLISH more and return the in-band iterate of smallest residual.
        if (error <= _ROUNDING * (absC @ b) + _RTOL * target).all():
            if residual < band_best:
                band_best, b_band = residual, b
            polish += 1
            if polish > _POLISH:
                return b_band
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
            if -slope > 1e3 * _ROUNDING * (b @ absC @ b + abs(kappa @ h(b))):
                while phi(b + t * step) > f + 1e-4 * t * slope and t > 1e-14:
                    t *= 0.5
            else:  # the decrease is below Φ's rounding (terms βᵀCβ ≫ Φ near opposite gradients): backtrack on the residual
                while t > 1e-14 and _residual(C, kappa, p, b + t * step) >= residual:
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

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): :func:`fair_weights2_entries` from M = J Jᵀ and d = Jᵀw on Python
        floats, the general (batched Gramian) path's bits and warm start; None (no state changed) otherwise."""
        entries = gramian2_rows(rows)  # M as torch's J @ J.T rounds it; None: not two finite rows of two floats
        solved = None if entries is None else fair_weights2_entries(*entries, 1.0 / self.alpha, self._beta, self.max_norm, _EPS64)
        if solved is None:
            return None
        w1, w2, self._beta = solved
        return combine2(w1, w2, rows[0], rows[1])  # d = Jᵀw

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        fast = fair_weights2(M, 1.0 / self.alpha, self._beta, self.max_norm)  # K = 2 (certified), else None
        if fast is not None:
            w, self._beta = fast
            return w
        w, self._beta = solve_fair_weights(M, self.alpha, self._beta, fast=False)
        return clip_weights(torch.from_numpy(w).to(M), M, self.max_norm)


def clip_weights(w: Tensor, M: Tensor, max_norm: float | None) -> Tensor:
    """Scale w so that ||Gᵀw|| = sqrt(wᵀMw) ≤ max_norm (torch.nn.utils.clip_grad_norm_ on d)."""
    if max_norm is None:
        return w
    norm = float((w @ M @ w).clamp_min(0.0)) ** 0.5  # ||d|| = sqrt(wᵀMw)
    return w * (max_norm / norm) if norm > max_norm else w
