r"""Aligned-MTL — Independent Component Alignment for Multi-Task Learning.

Paper: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component Alignment for
Multi-Task Learning", CVPR 2023, arXiv 2305.19000. Official code: github.com/SamsungLabs/MTL
(``code/optim/aligned/solver.py`` ``ProcrustesSolver``, ``balancer.py``, ``optimize_toy.py``).

Update rule:
    Algorithm 1 of the paper, as in the official solver. Eigen-decompose the Gramian of the
    Jacobian :math:`J` (rows :math:`g_i`) and keep the :math:`r` eigenvalues above the rank tolerance
    (:math:`\varepsilon_{32}` is the float32 machine epsilon, as ``torch.finfo().eps`` in the
    official code; see D2):

    .. math::

        M = J J^\top = V \Lambda V^\top, \qquad \text{keep } \lambda_j > \lambda_{\max} K \varepsilon_{32} \ \ (V_r, \Lambda_r)

    The balance transformation whitens the gradients and rescales them to a common norm
    :math:`\sigma`, the square root of the smallest retained eigenvalue ("min", the default), of their
    lower median ("median", as ``torch.median``) or of their mean ("rmse"); the step is the sum of
    the aligned gradients weighted by the task preferences :math:`p = \mathbf{1}` (the official
    balancer sums them: ``grads.sum(-1)``, ``weights.sum(-1)``):

    .. math::

        B = \sigma V_r \Lambda_r^{-1/2} V_r^\top, \qquad \hat G = B J, \qquad \alpha = B p, \qquad d = \hat G^\top p = J^\top \alpha

    In general :math:`\hat G \hat G^\top = \sigma^2 V_r V_r^\top`; when J has full row rank this is
    :math:`\sigma^2 I`: the aligned gradients have equal norms σ and are mutually orthogonal
    (condition number 1, the paper's stability criterion).

Hyperparameters: ``scale_mode`` = "min" (paper and official default); ``pref_vector`` = 𝟙
(official code; TorchJD uses 𝟙/K, which halves d for K = 2).

Properties: ĜĜᵀ = σ²I for full-rank J; row-permutation invariant; d(cJ) = c·d(J) for c > 0
(B depends on M only up to scale); d = σ·WUᵀp with J = USWᵀ (the polar factor of J).

Degenerate inputs: all-zero J (rank 0) → w = 0, d = 0 (the official code fails there; TorchJD
returns B = I); a zero row spans a dropped eigen-direction and gets weight 0; collinear rows :math:`c_i g`
(identical, opposite, ...) have rank 1, B = vvᵀ with v = c/‖c‖, hence d = (pᵀc)·g (identical
rows → K·g, opposite rows → 0); K = 1 → d = the single row (B = 1); rows of norms 1e8 and 1e-8 → the small
task's eigenvalue (ratio 1e-32) is dropped and it gets weight 0.

Deviations:
    D1. ``torch.linalg.eigh`` in float64 on the CPU replaces the removed ``torch.symeig``. K = 2 uses the
        2×2 eigen-decomposition in closed form on Python floats (``balance_weights2``), except
        when the smaller eigenvalue lies within 1e-6 (relative) of the rank tolerance, where the rank
        decision would depend on rounding and ``eigh`` decides; agreement with the general path
        tested to a relative 1e-9 · max(1, condition number · 1e-7).
    D2. The rank tolerance keeps the official float32 ε (1.19e-7) whatever the input dtype.
    D3. Rank 0 (all-zero J) returns zero weights instead of failing.
    D4. The -UB variant (gradients with respect to the shared representation) is available through
        ``backward(..., representation=Z)``; decoder-gradient scaling (``scale_decoder_grad``) is
        not implemented (task heads get their own gradients).

Usage::

    >>> import torch
    >>> from reference_impls.gradient_weighting.aligned_mtl import AlignedMTL
    >>> d = AlignedMTL()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.4266, 1.9347, 1.9347]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import gramian2_entries, small_tensor

SCALE_MODES = ("min", "median", "rmse")
FLOAT32_EPS = torch.finfo(torch.float32).eps  # the official code's torch.finfo().eps


def balance_transformation(M: Tensor, scale_mode: str = "min") -> tuple[Tensor, Tensor]:
    """(B, σ²) for a float64 Gramian M (K, K): B = σ V_r Λ_r^{-1/2} V_rᵀ (zero matrix for rank 0)."""
    K = M.shape[0]
    lam, V = torch.linalg.eigh(0.5 * (M + M.T))  # M = V Λ Vᵀ, λ ascending
    tol = lam.max() * K * FLOAT32_EPS
    keep = lam > tol  # (K,): retained components, rank r
    if not bool(keep.any()):
        return torch.zeros_like(M), torch.zeros((), dtype=M.dtype)
    lam_r, V_r = lam[keep], V[:, keep]  # (r,), (K, r)
    if scale_mode == "min":
        sigma2 = lam_r.min()  # σ² = λ_min
    elif scale_mode == "median":
        sigma2 = torch.median(lam_r)  # lower median, as torch.median in the official code
    else:
        sigma2 = lam_r.mean()  # "rmse": σ² = mean(λ)
    B = torch.sqrt(sigma2) * (V_r / torch.sqrt(lam_r)[None, :]) @ V_r.T  # (K, K): σ V Λ^{-1/2} Vᵀ
    return B, sigma2


def balance_weights2(m11: float, m12: float, m21: float, m22: float, p1: float, p2: float, scale_mode: str) -> tuple[float, float] | None:
    """α = B p for a 2×2 Gramian (entries, Python floats) in closed form, or None near the rank threshold.

    With M = ½(M + Mᵀ) = [[a, b], [b, d]]: λ_± = (a + d ± √((a − d)² + 4b²))/2, λ_− = det M/λ_+ (no
    cancellation in the subtraction). Rank 2: M^{-1/2} = (adj M + s I)/(s t), s = √det M, t = √(tr M + 2s)
    (as √M = (M + sI)/t by Cayley–Hamilton), so α = σ (adj M + s I) p/(s t); for "min"/"median" σ² = λ_−
    and σ/s = 1/√λ_+. Rank 1: B = v vᵀ, v the unit eigenvector of λ_+. Rank 0: α = 0.
    """
    a, b, d = m11, 0.5 * (m12 + m21), m22  # ½(M + Mᵀ)
    lam_hi = 0.5 * ((a + d) + math.hypot(a - d, 2.0 * b))  # λ_+ ≥ 0
    if not lam_hi > 0.0:
        return (0.0, 0.0) if lam_hi == 0.0 and a == 0.0 and d == 0.0 and b == 0.0 else None  # rank 0 (D3)
    det = a * d - b * b
    lam_lo = det / lam_hi  # λ_−
    tol = lam_hi * 2 * FLOAT32_EPS  # the rank tolerance λ_max·K·ε
    if abs(lam_lo - tol) <= 1e-6 * tol:
        return None  # the rank decision depends on rounding: eigh decides
    if lam_lo > tol:  # rank 2
        s = math.sqrt(det)
        t = math.sqrt((a + d) + 2.0 * s)
        x1, x2 = (d + s) * p1 - b * p2, (a + s) * p2 - b * p1  # (adj M + s I) p
        if scale_mode == "rmse":
            factor = math.sqrt(0.5 * (a + d)) / (s * t)  # σ/(s t), σ² = mean(λ) = tr M / 2
        else:
            factor = 1.0 / (t * math.sqrt(lam_hi))  # σ/(s t) = 1/(t √λ_+), σ² = λ_− (min and lower median)
        return factor * x1, factor * x2
    # rank 1: v ∝ (λ_+ − d, b) or (b, λ_+ − a), the larger of the two (no cancellation)
    u1, u2 = (lam_hi - d, b) if a >= d else (b, lam_hi - a)
    uu = u1 * u1 + u2 * u2
    if not uu > 0.0:
        return None
    c = (u1 * p1 + u2 * p2) / uu  # α = v vᵀ p = u (uᵀp)/(uᵀu)
    return c * u1, c * u2


class AlignedMTL(GramianWeighting):
    """d = Σ_i p_i ĝ_i with the aligned gradients Ĝ = B J (orthogonal rows of equal norm σ)."""

    name = "aligned-mtl"

    def __init__(self, scale_mode: str = "min", pref_vector: Sequence[float] | Tensor | None = None) -> None:
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {', '.join(SCALE_MODES)}, got {scale_mode!r}")
        self.scale_mode = scale_mode
        self.pref_vector = None if pref_vector is None else [float(p) for p in torch.as_tensor(pref_vector).reshape(-1)]

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        if K == 2 and (self.pref_vector is None or len(self.pref_vector) == 2):
            entries = gramian2_entries(M)  # Python floats; None: not a finite 2×2 CPU tensor
            p1, p2 = (1.0, 1.0) if self.pref_vector is None else self.pref_vector
            alpha = None if entries is None else balance_weights2(*entries, p1, p2, self.scale_mode)
            if alpha is not None:  # closed form (D1)
                return small_tensor(alpha, M.dtype)
        if self.pref_vector is None:
            p = torch.ones(K, dtype=torch.float64)  # p = 𝟙 (official: sum of aligned gradients)
        elif len(self.pref_vector) != K:
            raise ValueError(f"pref_vector has {len(self.pref_vector)} entries for {K} tasks")
        else:
            p = torch.tensor(self.pref_vector, dtype=torch.float64)
        B, _ = balance_transformation(M.detach().to("cpu", torch.float64), self.scale_mode)  # (K, K)
        alpha = B @ p  # α = B p
        return alpha.to(device=M.device, dtype=M.dtype)
