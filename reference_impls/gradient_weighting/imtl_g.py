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

import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import combine2, gramian2_entries, gramian2_rows, small_tensor


def imtl_g_weights(M: np.ndarray, eps: float) -> np.ndarray:
    """α (K,) from a float64 Gramian M (K, K); ``eps`` is the machine epsilon of the input dtype.

    Runs in NumPy: K is small, and per-call overhead matters more than arithmetic here.
    """
    K = M.shape[0]
    norms = np.sqrt(np.maximum(np.diag(M), 0.0))  # (K,): 𝔫_i = ||g_i||
    if K == 2 and norms.min() > 0:
        # K = 2 in closed form: α ∝ M⁻¹𝔫 = (𝔫_2, 𝔫_1)·(𝔫_1𝔫_2 − M_12)/det M, so α = (𝔫_2, 𝔫_1)/(𝔫_1 + 𝔫_2)
        # and d = 𝔫_1𝔫_2 (u_1 + u_2)/(𝔫_1 + 𝔫_2), the bisector; it has equal projections for
        # collinear gradients too.
        return norms[::-1] / (norms[0] + norms[1])
    if norms.min() > 0:
        # Well-conditioned cosine matrix (the common case): β ∝ M̂⁻¹𝟙 by Cholesky. Near-singular
        # ones (small pivots) take the null-space route below, which decides the rank.
        M_hat = (M + M.T) / (2.0 * np.outer(norms, norms))  # (K, K): cosines ⟨u_i, u_j⟩
        try:
            L = np.linalg.cholesky(M_hat)
        except np.linalg.LinAlgError:
            L = None
        if L is not None and float(np.min(np.diag(L))) ** 2 > 1e3 * K * eps:
            x = np.linalg.solve(M_hat, np.ones(K))  # M̂ x = 𝟙 (equal projections, up to scale)
            return x / norms / float(np.sum(x / norms))  # α = diag(𝔫)⁻¹ β with Σα = 1
    return _null_space_weights(0.5 * (M + M.T), norms, eps)


def _null_space_weights(M: np.ndarray, norms: np.ndarray, eps: float) -> np.ndarray:
    """The general case (zero rows, rank-deficient cosines), via the null space of [M̂, −𝟙]."""
    K = M.shape[0]
    alpha = np.zeros(K)
    S = np.flatnonzero(norms > 0)  # tasks with a nonzero gradient
    if S.size == 0:
        return alpha  # all-zero J: d = 0
    n_S = norms[S]  # (k,)
    M_hat = M[np.ix_(S, S)] / np.outer(n_S, n_S)  # (k, k): cosines ⟨u_i, u_j⟩
    k = S.size
    A = np.hstack([M_hat, -np.ones((k, 1))])  # (k, k+1): [M̂, −𝟙]
    _, sigma, Vh = np.linalg.svd(A)  # A = U Σ Vh
    rank = int((sigma > 10 * k * eps * sigma[0]).sum())
    N = Vh[rank:].T  # (k+1, k+1−rank): null space of [M̂, −𝟙], columns (β, c)
    ell = (N[:k] / n_S[:, None]).sum(axis=0)  # (k+1−rank,): Σ_i β_i/𝔫_i of each null vector
    if float(np.linalg.norm(ell)) <= 10 * k * eps * float((1.0 / n_S).max()):
        return alpha  # no α with Σα = 1 has equal projections: w = 0 (TorchJD's convention)
    t = ell / (ell @ ell)  # minimum-norm coefficients with ⟨ℓ, t⟩ = 1
    beta = N[:k] @ t  # (k,): β = diag(𝔫) α
    alpha[S] = beta / n_S  # α = diag(𝔫)^{-1} β, Σα = 1
    return alpha


class IMTLG(GramianWeighting):
    """d = Σ α_i g_i with Σα = 1 and equal projections ⟨d, g_i/||g_i||⟩ for every task."""

    name = "imtl-g"

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): the closed form below and d = Jᵀα on Python floats, the general
        (batched Gramian) path's bits; None (a zero row, NaN/inf, another shape) where the general path must decide."""
        entries = gramian2_rows(rows)  # M as torch's J @ J.T rounds it
        if entries is None or not (entries[0] > 0.0 and entries[3] > 0.0):
            return None
        n1, n2 = math.sqrt(entries[0]), math.sqrt(entries[3])  # 𝔫_i = ||g_i||
        return combine2(n2 / (n1 + n2), n1 / (n1 + n2), rows[0], rows[1])  # d = Jᵀα, α = (𝔫_2, 𝔫_1)/(𝔫_1 + 𝔫_2)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        if M.shape[0] == 2:
            entries = gramian2_entries(M)  # Python floats; None: not a finite 2×2 CPU tensor
            if entries is not None and entries[0] > 0.0 and entries[3] > 0.0:
                n1, n2 = math.sqrt(entries[0]), math.sqrt(entries[3])  # 𝔫_i = ||g_i||
                # the K = 2 closed form of imtl_g_weights on Python floats (same operations, same bits)
                return small_tensor((n2 / (n1 + n2), n1 / (n1 + n2)), M.dtype)  # α = (𝔫_2, 𝔫_1)/(𝔫_1 + 𝔫_2)
        eps = torch.finfo(M.dtype).eps
        alpha = imtl_g_weights(M.detach().to("cpu", torch.float64).numpy(), eps)  # (K,)
        return torch.from_numpy(alpha).to(device=M.device, dtype=M.dtype)
