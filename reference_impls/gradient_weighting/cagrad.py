r"""CAGrad: conflict-averse gradient descent, with an exact solver of its dual problem.

Paper: B. Liu, X. Liu, X. Jin, P. Stone and Q. Liu, "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021, arXiv 2110.14048. Official code: github.com/Cranial-XIX/CAGrad
(``toy.py``, ``nyuv2/utils.py`` function ``cagrad``, ``nyuv2/run.sh``); LibMTL ``weighting/CAGrad.py``.

Update rule:
    The paper's Algorithm 1 and the dual problem it solves. With
    :math:`g_0 = \tfrac{1}{K} \sum_i g_i` the average gradient, the update maximises the worst
    first-order improvement in a ball of radius :math:`c \lVert g_0 \rVert` around :math:`g_0`:

    .. math::

        d^\star = \arg\max_{\lVert d - g_0 \rVert \le c \lVert g_0 \rVert} \ \min_i \langle g_i, d \rangle

    It is computed through its dual, with :math:`\sqrt{\phi} = c \lVert g_0 \rVert`,
    :math:`g_w = \sum_i w_i g_i` and :math:`\Delta` the probability simplex; the returned direction
    is then multiplied by the factor :math:`\gamma` of ``rescale``: 1 (``rescale=0``, the default:
    Algorithm 1's d), :math:`1/(1 + c^2)` (``rescale=1``, the official NYUv2/Cityscapes code and
    LibMTL) or :math:`1/(1 + c)` (``rescale=2``, the official ``toy.py``); see D2 and D5:

    .. math::

        w^\star = \arg\min_{w \in \Delta} \ g_w^\top g_0 + \sqrt{\phi} \, \lVert g_w \rVert, \qquad d = \gamma \Big( g_0 + \frac{\sqrt{\phi}}{\lVert g_{w^\star} \rVert} \, g_{w^\star} \Big)

    Exact solver (instead of SLSQP, D1): :math:`\sqrt{\phi} \lVert x \rVert = \min_{t > 0} \sqrt{\phi} \, (\lVert x \rVert^2 / (2t) + t/2)`,
    and for fixed t the w-problem is (up to constants) the min-norm problem of the shifted points
    :math:`g_i + (t / \sqrt{\phi}) \, g_0` (Gramian ``reference_impls.core.solvers.shifted_gramian``),
    solved exactly by Wolfe's algorithm. The optimal t is :math:`t^\star = \lVert g_{w(t^\star)} \rVert`;
    the value is convex in t and :math:`\lVert g_{w(t)} \rVert / t` is non-increasing, so
    :math:`t^\star` is bracketed by :math:`[\lVert g_{\mathrm{MGDA}} \rVert, \max_i \lVert g_i \rVert]`.
    On the support S of the current inner solution the weights are affine in
    :math:`s = t / \sqrt{\phi}` (KKT linear system), so :math:`t = \lVert g_{w(t)} \rVert` is a
    quadratic equation in s; its root is certified by the KKT conditions of the shifted min-norm
    problem (all i, including those outside S). A new support is taken from an exact inner solve at
    that root (safeguarded by bisection within the bracket) until the certificate holds; usually
    1–3 inner solves. :math:`K = 2` (the toy problems) takes a closed form of the one-variable dual
    on Python floats (``cagrad_weights2``), checked by the same certificate, and leaves the
    degenerate cases (:math:`0 \in \operatorname{conv}\{g_i\}` to rounding, collinear or zero rows) to
    the general solver; the two agree to the Gramian's resolution (tested).

Numerics (certified, float64 whatever the input dtype): zero rows are removed before any
solve (they keep weight 1/K; g₀ keeps its 1/K factor); the Gramian is divided by the largest
squared gradient norm; tolerances are per task and scale with the input dtype's ε (κ = 32·K·ε, see
:mod:`reference_impls.core.solvers`); "the combined gradient is 0" means its norm is at most
√κ times the weighted sum of the gradient norms, the rounding level of the Gramian. The answer is
certified by the KKT conditions of the primal problem (:func:`_certify`: w = u − 𝟙/K ≥ 0,
‖d − g₀‖ ≤ ρ, and equal ⟨gᵢ, d⟩ = min over j of ⟨gⱼ, d⟩ on the support of w when the ball is
active, or J d ≥ 0 when d is interior), else SolverError is raised. A Jacobian whose Gramian would
underflow (J ≈ 1e-155) is first multiplied by a power of two (the weights are scale-invariant).

Hyperparameters:
    c: 0.5 (default; the paper's toy and LibMTL); the official NYUv2/Cityscapes runs use 0.4.
    rescale: 0 (default: Algorithm 1's d, no rescaling); 1: d/(1 + c²) (official NYUv2/Cityscapes
        ``utils.py`` default and LibMTL's default); 2: d/(1 + c) (official ``toy.py``). The official
        NYUv2/Cityscapes training code then multiplies the update by K (D5).

Deviations:
    D1. Solver: exact (see above) instead of ``scipy.optimize.minimize`` (SLSQP from the uniform
        w, default tolerances; the official toy uses ``minimize_scalar`` over
        :math:`w_1 \in [0, 1]`). The official code also adds 1e-8 (1e-4 in the toy) inside
        :math:`\lVert g_0 \rVert`, :math:`\lVert g_w \rVert` and the multiplier; we do not. Tolerances of the
        certificate: :math:`8 \kappa (\lVert g_i \rVert + S) S` per task for the ball and
        :math:`J d \ge 0`, 128 times that for the equality of :math:`\langle g_i, d \rangle` on the
        support (the bisection exit resolves :math:`t^\star` only to ~1e-15), with
        :math:`S = \sum_j \lvert u_j \rvert \lVert g_j \rVert`; SolverError when they fail.
    D2. Default rescale = 0 (Algorithm 1) whereas the official training code divides by 1 + c².
    D3. Degenerate inputs: c = 0 or :math:`g_0 = 0` gives :math:`d = g_0` (weights 𝟙/K); all-zero J
        gives d = 0. When :math:`g_{w^\star} = 0` (:math:`0 \in \operatorname{conv}\{g_i\}` and the ball
        contains non-conflicting directions) the dual formula is 0/0 and the optimal d is not unique:
        we return the optimal d closest to :math:`g_0`, the projection of :math:`g_0` onto the dual cone
        :math:`\{d : \langle g_i, d \rangle \ge 0 \ \forall i\}` (the limit t → 0 of the construction;
        ``reference_impls.core.solvers.dual_cone_weights``, an active-set solve on the Gramian).
        A zero row puts 0 in the convex hull: with c ≥ 1 the value is 0 and d is that projection;
        otherwise the problem is solved on the other rows (a zero row never binds when the value is
        negative). The official code returns
        :math:`g_0 + \sqrt{\phi} \, g_w / (\lVert g_w \rVert + 10^{-8})` with whatever :math:`g_w` its solver
        stopped at; TorchJD returns 0.
    D4. TorchJD's CAGrad (no rescaling, cvxpy/CLARABEL) is the same method; its documented value on
        ``J_base`` for c = 0.5, [0.1835, 1.2041, 1.2041], is reproduced with ``rescale = 0``.
    D5. The official NYUv2 and Cityscapes code (``overwrite_grad`` in ``nyuv2/utils.py`` and
        ``cityscapes/utils.py``) multiplies the aggregated update by the number of tasks ("to match
        the sum loss": ×3 and ×2) before the optimiser step, for every method it compares; the
        official setting is therefore both ``rescale = 1`` and ×K. We return d (times the rescale factor)
        without the ×K, which with Adam (the official optimiser) changes only ε's relative size.

Usage:
    >>> d = CAGrad(c=0.5)(J)              # J: (K, n) -> d: (n,)
    >>> w = CAGrad(c=0.4, rescale=1).weights(J)
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import (
    _INFO64,
    KAPPA,
    SolverError,
    combine2,
    dual_cone_weights,
    float_info,
    gramian2_entries,
    gramian2_rows,
    gramian64,
    min_norm_point,
    min_norm_tolerances,
    rescaled_gramian,
    small_tensor,
)


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

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        # the weights are invariant to a global factor of J: a vanishing J (M subnormal) is rescaled first
        return self.compute_weights_from_gramian(rescaled_gramian(J), losses)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): :meth:`compute_weights` (the same M, closed form and rescaling
        factor) and d = Jᵀu on Python floats, the general path's bits; None where the general path must decide."""
        if not self.c > 0.0:
            return None
        entries = gramian2_rows(rows)  # M = J Jᵀ as torch rounds it; None: not two finite rows of two floats
        if entries is None or max(entries[0], entries[3]) < _INFO64[1] / _INFO64[0]:
            return None  # rescaled_gramian rescales a vanishing J: the general path
        u = cagrad_weights2(*entries, self.c, *_INFO64)
        if u is None:
            return None
        factor = (1.0, 1.0 / (1.0 + self.c**2), 1.0 / (1.0 + self.c))[self.rescale]
        return combine2(u[0] * factor, u[1] * factor, rows[0], rows[1])  # d = Jᵀu

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        if M.shape[0] == 2 and self.c > 0.0:
            entries = gramian2_entries(M)  # Python floats; None: not a finite 2×2 CPU tensor
            u = None if entries is None else cagrad_weights2(*entries, self.c, *float_info(M.dtype))
            if u is not None:  # K = 2: the one-variable dual in closed form, certified
                factor = (1.0, 1.0 / (1.0 + self.c**2), 1.0 / (1.0 + self.c))[self.rescale]
                return small_tensor((u[0] * factor, u[1] * factor), M.dtype)
        Q, eps = gramian64(M)  # float64, symmetrised; ε of M's dtype for the tolerances
        weights = cagrad_weights(Q, self.c, eps)  # d = Gᵀ weights (Algorithm 1)
        factor = (1.0, 1.0 / (1.0 + self.c**2), 1.0 / (1.0 + self.c))[self.rescale]
        return torch.from_numpy(weights * factor).to(device=M.device, dtype=M.dtype)


def cagrad_weights(M: np.ndarray, c: float, eps: float = float(np.finfo(np.float64).eps)) -> np.ndarray:
    """Weights u with d = Gᵀu = g_0 + (√φ/||g_{w*}||) g_{w*} (no rescaling), from a float64 Gramian M.

    Zero rows (M_ii = 0) are removed first: they do not move g_0's direction, ⟨g_i, d⟩ = 0 for every d, and
    they keep their weight 1/K. ``eps``: precision of M's entries (ε of the input dtype). The answer is
    certified (:func:`_certify`) or SolverError is raised.
    """
    K = M.shape[0]
    uniform = np.full(K, 1.0 / K)
    keep = np.flatnonzero(np.diag(M) > 0.0)
    if keep.size == 0 or c == 0.0:
        return uniform  # all-zero J (d = 0) or a ball of radius 0 (d = g_0)
    Q = M[np.ix_(keep, keep)]
    Q = Q / float(np.max(np.diag(Q)))  # the weights are invariant to a global scale of the gradients
    center = np.full(keep.size, 1.0 / K)  # g_0 = Σ_{kept} g_i / K
    u = uniform.copy()
    u[keep] = _cagrad_kept(Q, center, c, eps, has_zero_rows=keep.size < K)
    return u


def _cagrad_kept(Q: np.ndarray, a: np.ndarray, c: float, eps: float, has_zero_rows: bool) -> np.ndarray:
    """CAGrad on non-zero rows (max ||g_i|| = 1) with g_0 = Gᵀa; returns u with d = Gᵀu."""
    K = Q.shape[0]
    norms = np.sqrt(np.diag(Q))  # ||g_i||, all > 0
    kappa = KAPPA * K * eps
    m = Q @ a  # m_i = ⟨g_i, g_0⟩, (K,)
    mu = float(m @ a)  # ||g_0||²
    if mu <= kappa * float(a @ norms) ** 2:
        return a  # g_0 = 0 to rounding: the ball is a point, d = g_0
    rho = c * np.sqrt(mu)  # √φ = c ||g_0||

    def shifted(s: float) -> np.ndarray:  # Gramian of g_i + s g_0
        return Q + s * (m[:, None] + m[None, :]) + s * s * mu

    def inner(t: float) -> np.ndarray:  # w(t) = argmin_Δ ||g_w + (t/√φ) g_0||²
        return min_norm_point(shifted(t / rho), eps)

    def finish(u: np.ndarray) -> np.ndarray:
        _certify(Q, norms, a, u, rho, kappa)
        return u

    w = min_norm_point(Q, eps)  # t → 0: the MGDA point
    zero_level = np.sqrt(kappa) * float(w @ norms)  # ||g_w|| below this is zero to the rounding of M
    t_lo = float(np.sqrt(max(w @ Q @ w, 0.0)))  # r(t) = ||g_w(t)||/t ≥ 1 below ||g_MGDA||
    t_hi = 1.0  # ||g_w(t)|| ≤ max_i ||g_i|| = 1, so r(t_hi) ≤ 1
    if t_lo <= zero_level or has_zero_rows:  # 0 ∈ conv{g_i} (or a zero row): maybe t* = 0 (D3)
        u = dual_cone_weights(Q, a[None, :], eps=eps)[0]  # Gᵀu: projection of g_0 onto {d : G d ≥ 0}
        if (u - a) @ Q @ (u - a) <= rho**2 * (1.0 + kappa):
            return finish(u)
        t_lo = 0.0
    if t_hi - t_lo <= 1e-12 * t_hi:  # all gradients at the same point (K = 1, identical rows)
        return finish(a + (rho / t_lo) * w)

    for _ in range(100):
        t = 0.5 * (t_lo + t_hi)  # bisection step unless the active-set root lies in the bracket
        for s_root, w_root in _active_set_roots(Q, m, mu, rho, w):
            if rho * s_root <= zero_level:  # t = ||g_w|| = 0 is a spurious root when 0 ∈ conv{g_i}
                continue
            Qs = shifted(s_root)
            ns = np.sqrt(np.clip(np.diag(Qs), 0.0, None))
            if np.min(w_root) >= -1e-12:
                wc = np.clip(w_root, 0.0, None) / np.clip(w_root, 0.0, None).sum()
                Qw = Qs @ wc
                if np.min(Qw - wc @ Qw + min_norm_tolerances(Qs, ns, wc, eps)) >= 0.0:  # per-task KKT at s
                    return finish(a + (rho / np.sqrt(max(wc @ Q @ wc, 1e-300))) * wc)  # d = g_0 + (√φ/||g_w||) g_w
            if t_lo < rho * s_root < t_hi:
                t = rho * s_root
        w = inner(t)
        if np.sqrt(max(w @ Q @ w, 0.0)) >= t:  # r(t) ≥ 1: t* ≥ t
            t_lo = t
        else:
            t_hi = t
        if t_hi - t_lo <= 1e-15:  # bracket at rounding level (Gramians that are PSD only to rounding)
            norm = float(np.sqrt(max(w @ Q @ w, 0.0)))
            if norm > zero_level:
                return finish(a + (rho / norm) * w)
            break
    raise SolverError(f"CAGrad: no certified solution of the dual problem (K = {K})")


def cagrad_weights2(m11: float, m12: float, m21: float, m22: float, c: float, eps: float, tiny: float) -> tuple[float, float] | None:
    """:func:`cagrad_weights` for K = 2 (entries of a finite Gramian, Python floats), or None: then the general solver.

    With w = (γ, 1 − γ) the dual is one-dimensional: F(γ) = γ m_1 + (1 − γ) m_2 + ρ √q(γ), m_i = ⟨g_i, g_0⟩,
    ρ = c||g_0||, q(γ) = ||g_w||², convex on [0, 1]. With A = ||g_1 − g_2||², B = M_12 − M_22 and
    s = Aγ + B = ⟨g_w, g_1 − g_2⟩: F'(γ) = −Δ + ρ s/√q, Δ = m_2 − m_1 = (M_22 − M_11)/2, and A q = s² + det M,
    so F' = 0 gives s² (ρ²A − Δ²) = Δ² det M: s* = Δ √(det M/(ρ²A − Δ²)), γ* = (s* − B)/A, when F'(0) < 0 < F'(1)
    (else the minimiser is the end γ = 0 or 1 where F' has the right sign: F is convex, which covers collinear
    and opposite gradients too). g_0 = 0 to rounding (||g_0||² ≤ κ (Σ_i ||g_i||/2)²) gives u = 𝟙/2, d = g_0, the
    general solver's rule (the average-loss stationary points CAGrad converges to for c < 1). Then u = 𝟙/2 + (ρ/||g_w||) w, and the answer passes the general solver's
    certificate (:func:`_certify`, ported to Python floats) or None is returned. None also for the cases the
    general solver treats apart: a zero row, identical rows, and an interior minimiser
    with collinear rows or 0 ∈ conv{g_i} to within twice the rounding level of the Gramian (the dual-cone
    case, D3).
    """
    q11, q12, q22 = 0.5 * (m11 + m11), 0.5 * (m12 + m21), 0.5 * (m22 + m22)  # ½(M + Mᵀ)
    top = max(q11, q22)
    if not (q11 > 0.0 and q22 > 0.0 and top >= tiny and math.isfinite(q11 + q12 + q22)):
        return None
    q11, q12, q22 = q11 / top, q12 / top, q22 / top  # max_i ||g_i|| = 1
    n1, n2 = math.sqrt(q11), math.sqrt(q22)
    kappa = KAPPA * 2 * eps
    m1, m2 = 0.5 * (q11 + q12), 0.5 * (q12 + q22)  # m_i = ⟨g_i, g_0⟩
    mu = 0.5 * (m1 + m2)  # ||g_0||²
    if mu <= kappa * (0.5 * (n1 + n2)) ** 2:
        return 0.5, 0.5  # g_0 = 0 to rounding: the ball is a point, d = g_0 (the general solver's rule)
    rho = c * math.sqrt(mu)  # √φ = c||g_0||
    A = q11 + q22 - 2.0 * q12  # ||g_1 − g_2||²
    B = q12 - q22
    if not A > 0.0:
        return None  # identical gradients (to rounding): the general solver
    delta = 0.5 * (q22 - q11)  # Δ = m_2 − m_1

    def slope(gamma: float) -> float:  # F'(γ) = ⟨g_1 − g_2, d(γ)⟩
        q = gamma * gamma * q11 + 2.0 * gamma * (1.0 - gamma) * q12 + (1.0 - gamma) ** 2 * q22
        return -delta + rho * (A * gamma + B) / math.sqrt(q)

    if slope(0.0) >= 0.0:  # F non-decreasing on [0, 1]: all weight on task 2
        w1, w2 = 0.0, 1.0
    elif slope(1.0) <= 0.0:  # F non-increasing: all weight on task 1
        w1, w2 = 1.0, 0.0
    else:  # an interior minimiser: F' = 0 at a γ with ||g_w|| > 0, unless 0 ∈ conv{g_i} (the kink ||g_w|| = 0)
        det = q11 * q22 - q12 * q12
        if not det > 0.0:
            return None  # collinear gradients: the general solver
        # 0 ∈ conv{g_i} to rounding (the general solver's zero level, with a factor 2 of margin): the general solver
        g_mgda = min(1.0, max(0.0, -B / A))
        q_mgda = det / A if 0.0 < g_mgda < 1.0 else min(q11, q22)  # ||g_MGDA||²
        if q_mgda <= 4.0 * kappa * (g_mgda * n1 + (1.0 - g_mgda) * n2) ** 2:
            return None
        gap = rho * rho * A - delta * delta  # > 0 when F' changes sign
        if not gap > 0.0:
            return None
        root = math.sqrt(det / gap)
        # The smaller weight x is the variable (it keeps its relative precision, no 1 − γ): task a's weight,
        # with b the other task, Δ_a = (M_bb − M_aa)/2 and s = A x + (M_12 − M_bb) = ⟨g_w, g_a − g_b⟩.
        first = (delta * root - B) / A <= 0.5  # γ* = (s* − B)/A, the weight of task 1
        da, Bs = (delta, q12 - q22) if first else (-delta, q12 - q11)
        x = min(1.0, max(0.0, (da * root - Bs) / A))  # the smaller weight, s*_a = Δ_a √(det M/(ρ²A − Δ²))
        w1, w2 = (x, 1.0 - x) if first else (1.0 - x, x)
    qw = w1 * w1 * q11 + 2.0 * w1 * w2 * q12 + w2 * w2 * q22  # ||g_w||² = wᵀQw
    if not qw > 0.0:
        return None
    r = rho / math.sqrt(qw)
    u1, u2 = 0.5 + r * w1, 0.5 + r * w2  # d = g_0 + (√φ/||g_w||) g_w
    # the certificate of _certify (K = 2): w = u − a ≥ 0, the ball, equal ⟨g_i, d⟩ on the support
    v1, v2 = u1 - 0.5, u2 - 0.5
    S = abs(u1) * n1 + abs(u2) * n2
    i1, i2 = q11 * u1 + q12 * u2, q12 * u1 + q22 * u2  # ⟨g_i, d⟩
    t1, t2 = 8.0 * kappa * (n1 + S) * S, 8.0 * kappa * (n2 + S) * S
    ball = v1 * v1 * q11 + 2.0 * v1 * v2 * q12 + v2 * v2 * q22  # ||Gᵀw||²
    ball_tol = 8.0 * kappa * S * S
    wsum = abs(v1) + abs(v2)
    if not (min(v1, v2) >= -kappa * wsum and rho * rho * (1.0 - 1e-6) - ball_tol <= ball <= rho * rho * (1.0 + kappa) + ball_tol):
        return None
    nu = min(i1, i2)
    t_min = t1 if i1 <= i2 else t2
    for v, inner, t in ((v1, i1, t1), (v2, i2, t2)):
        if v > kappa * wsum and inner - nu > 128.0 * (t + t_min):  # w supported on the worst tasks only
            return None
    return u1, u2


def _certify(Q: np.ndarray, norms: np.ndarray, a: np.ndarray, u: np.ndarray, rho: float, kappa: float) -> None:
    """KKT of the primal max_{||d − g_0|| ≤ ρ} min_i ⟨g_i, d⟩ at d = Gᵀu, per task, or SolverError.

    With w = u − a (d − g_0 = Gᵀw): w ≥ 0, ||Gᵀw|| ≤ ρ, and either the ball is active and w is supported
    on the minimisers of ⟨g_i, d⟩ (then Gᵀw is the outer normal: optimal), or d is inside the ball and
    non-conflicting (the value 0 is the maximum when 0 ∈ conv{g_i}, D3). Tolerances: 8κ·(||g_i|| + S)·S with
    S = Σ_j |u_j| ||g_j||, κ = 32·K·ε.
    """
    w = u - a
    S = float(np.abs(u) @ norms)
    inner = Q @ u  # ⟨g_i, d⟩
    tol = 8.0 * kappa * (norms + S) * S  # 8κ: the inner certificate is on the shifted points, mapped by 1/s
    ball = float(w @ Q @ w)
    nu = float(inner.min())
    ball_tol = 8.0 * kappa * S * S  # rounding of ||Gᵀw||² = wᵀQw
    ok = np.isfinite(u).all() and w.min() >= -kappa * float(np.abs(w).sum()) and ball <= rho**2 * (1.0 + kappa) + ball_tol
    if ok and ball >= rho**2 * (1.0 - 1e-6) - ball_tol:  # ball active: w supported on the worst tasks
        support = w > kappa * float(np.abs(w).sum())
        # equality on the support to 128·tol: the bisection-bracket exit resolves t* only to ~1e-15 (measured
        # excess up to 20·tol on the nearly opposite gradients of the CAGrad toy)
        ok = bool((inner[support] - nu <= 128.0 * (tol[support] + tol[int(np.argmin(inner))])).all())
    elif ok:  # interior point: must be non-conflicting (D3)
        ok = bool((inner >= -tol).all())
    if not ok:
        raise SolverError(
            f"CAGrad: solution not certified (K = {Q.shape[0]}): ||d − g_0||²/ρ² = {ball / rho**2:.6g}, "
            f"min_i ⟨g_i, d⟩ = {nu:.3e}, min w = {w.min():.3e}, max support excess / tol = "
            f"{float(((inner - nu) / tol)[w > kappa * float(np.abs(w).sum())].max(initial=0.0)):.3g}"
        )


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
