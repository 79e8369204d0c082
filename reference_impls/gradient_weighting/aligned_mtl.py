"""Aligned-MTL — Independent Component Alignment for Multi-Task Learning.

Paper: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component Alignment for
Multi-Task Learning", CVPR 2023, arXiv 2305.19000. Official code: github.com/SamsungLabs/MTL
(``code/optim/aligned/solver.py`` ``ProcrustesSolver``, ``balancer.py``, ``optimize_toy.py``).

What is implemented (Algorithm 1 of the paper, as in the official solver):

* eigen-decomposition of the Gramian M = J Jᵀ = V Λ Vᵀ; eigenvalues λ ≤ tol = λ_max·K·ε (ε the
  float32 machine epsilon, as ``torch.finfo().eps`` in the official code) are dropped (rank r);
* balance transformation B = σ V_r Λ_r^{-1/2} V_rᵀ with σ = √λ_min ("min", default),
  σ = √median(λ) ("median", torch's lower median) or σ = √mean(λ) ("rmse");
* aligned gradients Ĝ = B J (rows of equal norm σ, mutually orthogonal: Ĝ Ĝᵀ = σ² V_r V_rᵀ, the
  identity times σ² when J has full row rank — condition number 1, the paper's stability criterion);
* d = Ĝᵀ p = Jᵀ (B p), i.e. the weights are α = B p with the task preferences p = 𝟙 (the official
  balancer sums the aligned gradients: ``grads.sum(-1)``, ``weights.sum(-1)``).

Hyperparameters: ``scale_mode`` = "min" (paper and official default); ``pref_vector`` = 𝟙
(official code; TorchJD uses 𝟙/K, which halves d for K = 2).

Properties: Ĝ Ĝᵀ = σ² I for full-rank J; row-permutation invariant; d(cJ) = c·d(J) for c > 0
(B depends on M only up to scale); d = σ·W Uᵀp with J = U S Wᵀ (the polar factor of J).

Degenerate inputs: all-zero J (rank 0) → w = 0, d = 0 (the official code fails there; TorchJD
returns B = I); a zero row spans a dropped eigen-direction and gets weight 0; collinear rows c_i g
(identical, opposite, ...) have rank 1, B = v vᵀ with v = c/||c||, hence d = (pᵀc)·g (identical
rows → K·g, opposite rows → 0); K = 1 → d = g_1 (B = 1); rows of norms 1e8 and 1e-8 → the small
task's eigenvalue (ratio 1e-32) is dropped and it gets weight 0.

Deviations:
    D1. ``torch.linalg.eigh`` in float64 on the CPU replaces the removed ``torch.symeig``.
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

from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting

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
        if self.pref_vector is None:
            p = torch.ones(K, dtype=torch.float64)  # p = 𝟙 (official: sum of aligned gradients)
        elif len(self.pref_vector) != K:
            raise ValueError(f"pref_vector has {len(self.pref_vector)} entries for {K} tasks")
        else:
            p = torch.tensor(self.pref_vector, dtype=torch.float64)
        B, _ = balance_transformation(M.detach().to("cpu", torch.float64), self.scale_mode)  # (K, K)
        alpha = B @ p  # α = B p
        return alpha.to(device=M.device, dtype=M.dtype)
