"""IMTL-G — the gradient part of Impartial Multi-Task Learning.

Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021 (openreview.net/forum?id=IMPnRXEWpvr). No official code; reference
re-implementations: LibMTL ``weighting/IMTL.py``, AvivNavon/nash-mtl ``methods/weight_methods.py``,
TorchJD ``aggregation/_imtl_g.py``.

What is implemented (the paper's gradient balance, IMTL-G): find weights α with Σ_i α_i = 1 such that the
aggregated gradient d = Σ_i α_i g_i has equal projections on every unit gradient u_i = g_i/||g_i||:

    ⟨d, u_1 − u_i⟩ = 0 for i = 2..K,  Σ_i α_i = 1
    closed form (paper):  α_{2:K} = g_1 Uᵀ (D Uᵀ)^{-1},  α_1 = 1 − Σ α_{2:K},
                          U_i = u_1 − u_i,  D_i = g_1 − g_i  (rows i = 2..K)

Equivalently M α = c·𝔫 for some scalar c (𝔫_i = ||g_i||, M = J Jᵀ), i.e. α ∝ M^{-1}𝔫 when M is
invertible. Here the equivalent system is solved from the Gramian, in float64 on the CPU, in the
scale-free variables β = diag(𝔫) α:

    [M̂, −𝟙] (β, c) = 0  with M̂ = diag(𝔫)^{-1} M diag(𝔫)^{-1} (the cosine matrix),  Σ_i β_i/𝔫_i = 1

by taking the null space of [M̂, −𝟙] (SVD, relative tolerance 10·K·eps of the input dtype) and the
minimum-norm combination of it that satisfies the affine constraint. For invertible M this is the
paper's closed form (tested); it needs no explicit inverse and stays defined when M is singular.

Hyperparameters: none.

Properties: ⟨d, u_i⟩ is the same for all i; Σα = 1; under per-task loss scaling g_i → c_i g_i
(c_i > 0) the cosine matrix is unchanged, so α(CJ) = C^{-1}α / Σ_i(α_i/c_i) and
d(CJ) = d(J) / Σ_i(α_i/c_i): the direction changes only by a scalar factor, positive whenever all
α_i ≥ 0 (α can be negative: IMTL-G is not a convex combination).

Degenerate inputs (defined results): zero rows get weight 0 and are left out of the conditions;
all-zero J → w = 0, d = 0; identical rows → α = 𝟙/K, d = g; opposite rows g, −g → α = (½, ½),
d = 0 (as the paper's closed form); collinear rows with mixed signs → d = 0 (all projections 0);
when no α with Σα = 1 satisfies the conditions (Σ_i (M^{-1}𝔫)_i = 0) → w = 0, d = 0 (as TorchJD);
when several do (rank-deficient M), the one with the smallest ||diag(𝔫)α|| is returned.

Deviations:
    D1. Solved as a null-space problem on the Gramian (SVD) instead of the paper's explicit inverse
        (DUᵀ)^{-1} (LibMTL: ``torch.inverse``, singular for collinear gradients; nash-mtl adds
        1e-8·I; TorchJD uses pinv(M)𝔫, which for opposite gradients gives 0/0 → w = 0 instead of
        the paper's (½, ½); the direction d = 0 is the same).
    D2. The paper applies IMTL-G to the gradients with respect to the shared representation Z; use
        ``backward(..., representation=Z)`` for that; the default uses the shared parameters.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_weighting.imtl_g import IMTLG
    >>> d = IMTLG()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.0767, 1.0767, 1.0767]
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting


def imtl_g_weights(M: Tensor, eps: float) -> Tensor:
    """α (K,) from a float64 Gramian M (K, K); ``eps`` is the machine epsilon of the input dtype."""
    K = M.shape[0]
    M = 0.5 * (M + M.T)  # symmetrise the rounding noise of J Jᵀ
    norms = torch.sqrt(torch.diagonal(M).clamp_min(0.0))  # (K,): 𝔫_i = ||g_i||
    alpha = torch.zeros(K, dtype=M.dtype)
    S = torch.nonzero(norms > 0).flatten()  # tasks with a nonzero gradient
    if S.numel() == 0:
        return alpha  # all-zero J: d = 0
    n_S = norms[S]  # (k,)
    M_hat = M[S][:, S] / (n_S[:, None] * n_S[None, :])  # (k, k): cosines ⟨u_i, u_j⟩
    k = S.numel()
    A = torch.cat([M_hat, -torch.ones(k, 1, dtype=M.dtype)], dim=1)  # (k, k+1): [M̂, −𝟙]
    _, sigma, Vh = torch.linalg.svd(A)  # A = U Σ Vh
    rank = int((sigma > 10 * k * eps * sigma[0]).sum())
    N = Vh[rank:].T  # (k+1, k+1−rank): null space of [M̂, −𝟙], columns (β, c)
    ell = (N[:k] / n_S[:, None]).sum(dim=0)  # (k+1−rank,): Σ_i β_i/𝔫_i of each null vector
    if float(ell.norm()) <= 10 * k * eps * float((1.0 / n_S).max()):
        return alpha  # no α with Σα = 1 has equal projections: w = 0 (TorchJD's convention)
    t = ell / (ell @ ell)  # minimum-norm coefficients with ⟨ℓ, t⟩ = 1
    beta = N[:k] @ t  # (k,): β = diag(𝔫) α
    alpha[S] = beta / n_S  # α = diag(𝔫)^{-1} β, Σα = 1
    return alpha


class IMTLG(GramianWeighting):
    """d = Σ α_i g_i with Σα = 1 and equal projections ⟨d, g_i/||g_i||⟩ for every task."""

    name = "imtl-g"

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        eps = torch.finfo(M.dtype).eps
        alpha = imtl_g_weights(M.detach().to("cpu", torch.float64), eps)  # (K,)
        return alpha.to(device=M.device, dtype=M.dtype)
