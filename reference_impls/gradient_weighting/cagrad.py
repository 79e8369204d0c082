"""CAGrad: conflict-averse gradient descent, with an exact solver of its dual problem.

Paper: B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, arXiv 2110.14048. Official code: github.com/Cranial-XIX/CAGrad
(``toy.py``, ``nyuv2/utils.py`` function ``cagrad``, ``nyuv2/run.sh``); LibMTL ``weighting/CAGrad.py``.

Implemented (the paper's Algorithm 1 and the dual problem it solves): with g_0 = (1/K) Σ_i g_i the average gradient, the
update maximises the worst first-order improvement in a ball around g_0,

    d* = argmax_{||d − g_0|| ≤ c||g_0||} min_i ⟨g_i, d⟩,

through its dual: with √φ = c||g_0|| and g_w = Σ_i w_i g_i,

    w* = argmin_{w∈Δ} g_wᵀ g_0 + √φ ||g_w||,        d = g_0 + (√φ / ||g_{w*}||) g_{w*}.

Exact solver (instead of SLSQP): √φ||x|| = min_{t>0} √φ(||x||²/(2t) + t/2), and for fixed t the
w-problem is (up to constants) the min-norm problem of the shifted points g_i + (t/√φ) g_0 (Gramian
:func:`~reference_impls.core.solvers.shifted_gramian`), solved exactly by Wolfe's algorithm. The
optimal t is t* = ||g_{w(t*)}||; the value is convex in t and ||g_{w(t)}||/t is non-increasing, so
t* is bracketed by [||g_MGDA||, max_i ||g_i||]. On the support S of the current inner solution the
weights are affine in s = t/√φ (KKT linear system), so t = ||g_{w(t)}|| is a quadratic equation in
s; its root is certified by the KKT conditions of the shifted min-norm problem (all i, including
i ∉ S). A new support is taken from an exact inner solve at that root (safeguarded by bisection
within the bracket) until the certificate holds; usually 1–3 inner solves.

Hyperparameters:
    c: 0.5 (default; the paper's toy and LibMTL); the official NYUv2/Cityscapes runs use 0.4.
    rescale: 0 (default: Algorithm 1's d, no rescaling); 1: d/(1 + c²) (official NYUv2/Cityscapes
        ``utils.py`` default and LibMTL's default); 2: d/(1 + c) (official ``toy.py``).

Deviations:
    D1. Solver: exact (see above) instead of ``scipy.optimize.minimize`` (SLSQP from the uniform
        w, default tolerances; the official toy uses ``minimize_scalar`` over w_1 ∈ [0, 1]). The
        official code also adds 1e-8 (1e-4 in the toy) inside ||g_0||, ||g_w|| and the multiplier;
        we do not.
    D2. Default rescale = 0 (Algorithm 1) whereas the official training code divides by 1 + c².
    D3. Degenerate inputs: c = 0 or g_0 = 0 gives d = g_0 (weights 𝟙/K); all-zero J gives d = 0.
        When g_{w*} = 0 (0 ∈ conv{g_i} and the ball contains non-conflicting directions) the dual
        formula is 0/0 and the optimal d is not unique: we return the optimal d closest to g_0, the
        projection of g_0 onto the dual cone {d : ⟨g_i, d⟩ ≥ 0 ∀i} (the limit t → 0 of the
        construction; bounded least squares on the Gramian). The official code returns
        g_0 + (√φ/(||g_w|| + 1e-8)) g_w with whatever g_w its solver stopped at; TorchJD returns 0.
    D4. TorchJD's CAGrad (no rescaling, cvxpy/CLARABEL) is the same method; its documented value on
        J_base for c = 0.5, [0.1835, 1.2041, 1.2041], is reproduced with rescale = 0.

Usage:
    >>> d = CAGrad(c=0.5)(J)              # J: (K, n) -> d: (n,)
    >>> w = CAGrad(c=0.4, rescale=1).weights(J)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import SolverError, min_norm_weights

_TOL = 1e-11  # KKT tolerance on the Gramian normalised to max_i ||g_i||² = 1
_ZERO = 1e-7  # ||g_w|| below this (relative to max_i ||g_i||) is zero: M's rounding gives norms to ~1e-8


class CAGrad(GramianWeighting):
    """d = g_0 + (c||g_0||/||g_w||) g_w with w the exact solution of CAGrad's dual."""

    name: ClassVar[str] = "cagrad"

    def __init__(self, c: float = 0.5, rescale: int = 0) -> None:
        if not c >= 0.0 or c == float("inf"):
            raise ValueError(f"c must be a finite number >= 0, got {c!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"rescale must be 0 (none), 1 (1/(1+c^2)) or 2 (1/(1+c)), got {rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        Q = M.detach().to("cpu", torch.float64).numpy()
        weights = cagrad_weights(0.5 * (Q + Q.T), self.c)  # d = Gᵀ weights (Algorithm 1)
        factor = (1.0, 1.0 / (1.0 + self.c**2), 1.0 / (1.0 + self.c))[self.rescale]
        return torch.from_numpy(weights * factor).to(device=M.device, dtype=M.dtype)


def cagrad_weights(M: np.ndarray, c: float) -> np.ndarray:
    """Weights u with d = Gᵀu = g_0 + (√φ/||g_{w*}||) g_{w*} (no rescaling), from the Gramian M."""
    K = M.shape[0]
    uniform = np.full(K, 1.0 / K)
    scale = float(np.max(np.diag(M)))
    if scale <= 0.0:
        return uniform  # all-zero J: d = g_0 = 0
    Q = M / scale  # the weights are invariant to a global scale of the gradients
    m = Q @ uniform  # m_i = ⟨g_i, g_0⟩, (K,)
    mu = float(m @ uniform)  # ||g_0||²
    if c == 0.0 or mu <= 1e-24:
        return uniform  # ball of radius 0, or g_0 = 0: d = g_0
    rho = c * np.sqrt(mu)  # √φ = c ||g_0||

    def shifted(s: float) -> np.ndarray:  # Gramian of g_i + s g_0
        return Q + s * (m[:, None] + m[None, :]) + s * s * mu

    def inner(t: float) -> np.ndarray:  # w(t) = argmin_Δ ||g_w + (t/√φ) g_0||²
        return min_norm_weights(torch.from_numpy(shifted(t / rho))).numpy()

    w = min_norm_weights(torch.from_numpy(Q)).numpy()  # t → 0: the MGDA point
    t_lo = float(np.sqrt(max(w @ Q @ w, 0.0)))  # r(t) = ||g_w(t)||/t ≥ 1 below ||g_MGDA||
    t_hi = 1.0  # ||g_w(t)|| ≤ max_i ||g_i|| = 1, so r(t_hi) ≤ 1
    if t_lo <= _ZERO:  # 0 ∈ conv{g_i} (up to the rounding of M): maybe t* = 0 (D3)
        u = _dual_cone_projection_weights(Q, uniform)
        if np.sqrt(max((u - uniform) @ Q @ (u - uniform), 0.0)) <= rho * (1.0 + 1e-9):
            return u
        t_lo = 0.0
    if t_hi - t_lo <= 1e-12 * t_hi:  # all gradients at the same point (K = 1, identical rows)
        return uniform + (rho / t_lo) * w

    for _ in range(100):
        t = 0.5 * (t_lo + t_hi)  # bisection step unless the active-set root lies in the bracket
        for s_root, w_root in _active_set_roots(Q, m, mu, rho, w):
            if rho * s_root <= _ZERO:  # t = ||g_w|| = 0 is a spurious root when 0 ∈ conv{g_i}
                continue
            Qs = shifted(s_root)
            if np.min(w_root) >= -1e-12 and np.min(Qs @ w_root) >= w_root @ Qs @ w_root - _TOL:  # KKT at s
                w_root = np.clip(w_root, 0.0, None) / np.clip(w_root, 0.0, None).sum()
                return uniform + (rho / np.sqrt(max(w_root @ Q @ w_root, 1e-300))) * w_root  # d = g_0 + (√φ/||g_w||) g_w
            if t_lo < rho * s_root < t_hi:
                t = rho * s_root
        w = inner(t)
        if np.sqrt(max(w @ Q @ w, 0.0)) >= t:  # r(t) ≥ 1: t* ≥ t
            t_lo = t
        else:
            t_hi = t
        if t_hi - t_lo <= 1e-15:  # bracket at rounding level (happens for Gramians that are PSD only to rounding)
            norm = float(np.sqrt(max(w @ Q @ w, 0.0)))
            if norm > _ZERO:
                return uniform + (rho / norm) * w
            u = _dual_cone_projection_weights(Q, uniform)  # t* = 0: the D3 construction, pulled into the ball
            dev = float(np.sqrt(max((u - uniform) @ Q @ (u - uniform), 0.0)))
            return uniform + min(1.0, rho / dev) * (u - uniform) if dev > 0 else uniform
    raise SolverError(f"CAGrad: no certified solution of the dual problem (K = {K})")


def _active_set_roots(Q, m, mu, rho, w) -> list[tuple[float, np.ndarray]]:
    """On the support S of w: w(s) = a + s b (affine min-norm weights of {g_i + s g_0}_S); the
    roots s > 0 of ρ² s² = ||G_Sᵀ w(s)||² (t = ρ s = ||g_w||) with their weights w(s)."""
    K = Q.shape[0]
    S = np.flatnonzero(w > 0)
    k = S.size
    A = np.zeros((k + 1, k + 1))
    A[:k, :k] = Q[np.ix_(S, S)]
    A[:k, k] = 1.0
    A[k, :k] = 1.0
    rhs = np.zeros((k + 1, 2))
    rhs[k, 0] = 1.0  # Q_SS a + ν_a 𝟙 = 0, 𝟙ᵀa = 1
    rhs[:k, 1] = -m[S]  # Q_SS b + ν_b 𝟙 = −m_S, 𝟙ᵀb = 0
    try:
        sol = np.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        return []
    a, b = np.zeros(K), np.zeros(K)
    a[S], b[S] = sol[:k, 0], sol[:k, 1]
    B0, B1, B2 = a @ Q @ a, a @ Q @ b, b @ Q @ b  # ||x(s)||² = B0 + 2 B1 s + B2 s²
    qa, qb, qc = rho**2 - B2, -2.0 * B1, -B0  # ρ² s² = ||x(s)||²  ⇔  qa s² + qb s + qc = 0
    if abs(qa) <= 1e-14 * max(rho**2, B2):
        roots = [-qc / qb] if qb != 0.0 else []
    else:
        disc = qb * qb - 4.0 * qa * qc
        if disc < 0.0:
            return []
        q = -0.5 * (qb + np.copysign(np.sqrt(disc), qb))  # stable quadratic formula
        roots = [q / qa] + ([qc / q] if q != 0.0 else [])
    return [(float(r), a + r * b) for r in sorted(roots) if r > 0.0]


def _dual_cone_projection_weights(Q: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """u = 𝟙/K + μ*, μ* = argmin_{μ≥0} ||Gᵀ(𝟙/K + μ)||²: Gᵀu is the projection of g_0 onto {d : Gd ≥ 0}."""
    eigval, U = np.linalg.eigh(Q)
    A = np.sqrt(np.clip(eigval, 0.0, None))[:, None] * U.T  # AᵀA = Q
    # bounded-variable least squares: scipy's nnls mis-terminates on the rank-deficient A of this case
    mu_star = scipy.optimize.lsq_linear(A, -A @ uniform, bounds=(0.0, np.inf), method="bvls", tol=1e-15).x
    return uniform + mu_star
