r"""IMTL-G — the gradient part of Impartial Multi-Task Learning.

Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021 (openreview.net/forum?id=IMPnRXEWpvr). No official code; reference
re-implementations: LibMTL ``weighting/IMTL.py``, AvivNavon/nash-mtl ``methods/weight_methods.py``,
TorchJD ``aggregation/_imtl_g.py``.

Update rule:
    The paper's gradient balance (IMTL-G): find weights α with :math:`\sum_i \alpha_i = 1` such that
    the aggregated gradient :math:`d = \sum_i \alpha_i g_i` has equal projections on every unit
    gradient :math:`u_i = g_i / \lVert g_i \rVert`; the paper gives the closed form below, with the rows
    :math:`U_i = u_1 - u_i` and :math:`D_i = g_1 - g_i` for :math:`i = 2, \dots, K`:

    .. math::

        \langle d, u_1 - u_i \rangle = 0 \ \ (i = 2, \dots, K), \qquad \sum_{i=1}^{K} \alpha_i = 1, \qquad d = \sum_{i=1}^{K} \alpha_i g_i

    .. math::

        \alpha_{2:K} = g_1 U^\top (D U^\top)^{-1}, \qquad \alpha_1 = 1 - \sum_{i=2}^{K} \alpha_i

    Equivalently :math:`M \alpha = c \, \nu` for some scalar c, with :math:`\nu_i = \lVert g_i \rVert`
    and :math:`M = J J^\top`, i.e. :math:`\alpha \propto M^{-1} \nu` when M is invertible. The code
    solves this system from the Gramian, in float64 on the CPU, in the scale-free variables
    :math:`\beta = \operatorname{diag}(\nu) \, \alpha` with the cosine matrix
    :math:`\hat M = \operatorname{diag}(\nu)^{-1} M \operatorname{diag}(\nu)^{-1}`:

    .. math::

        \hat M \beta = c \, \mathbf{1}, \qquad \sum_{i=1}^{K} \beta_i / \nu_i = 1, \qquad \alpha = \operatorname{diag}(\nu)^{-1} \beta

    For :math:`K = 2` (two non-zero rows) this gives the bisector of the unit gradients in closed
    form, :math:`\alpha = (\nu_2, \nu_1) / (\nu_1 + \nu_2)`. For larger K with a well-conditioned
    cosine matrix (Cholesky pivots above :math:`10^3 K \varepsilon`) it solves
    :math:`\hat M x = \mathbf{1}` and normalises; otherwise (zero rows, rank-deficient cosines) it takes
    the null space of :math:`[\hat M, -\mathbf{1}]` (SVD, relative tolerance :math:`10 K \varepsilon` of
    the input dtype) and the minimum-norm combination of it that satisfies the affine constraint.
    For invertible M this is the paper's closed form (tested); it needs no explicit inverse and
    stays defined when M is singular.

Hyperparameters: none.

Properties: :math:`\langle d, u_i \rangle` is the same for all i; Σα = 1; under per-task loss scaling
:math:`g_i \to c_i g_i` (:math:`c_i > 0`, C = diag(c)) the cosine matrix is unchanged, so
:math:`\alpha(CJ) = C^{-1} \alpha / \sum_i (\alpha_i / c_i)` and :math:`d(CJ) = d(J) / \sum_i (\alpha_i / c_i)`:
the direction changes only by a scalar factor, positive whenever all α are ≥ 0 (α can be
negative: IMTL-G is not a convex combination).

Degenerate inputs (defined results): zero rows get weight 0 and are left out of the conditions;
all-zero J → w = 0, d = 0; identical rows → α = 𝟙/K, d = g; opposite rows g, −g → α = (½, ½),
d = 0 (as the paper's closed form); collinear rows with mixed signs → d = 0 (all projections 0);
when no α with Σα = 1 satisfies the conditions (:math:`\sum_i (M^{-1} \nu)_i = 0`) → w = 0, d = 0 (as
TorchJD); when several do (rank-deficient M), the one with the smallest
:math:`\lVert \operatorname{diag}(\nu) \alpha \rVert` is returned.

Deviations:
    D1. Solved on the Gramian's cosine matrix (closed form for K = 2, Cholesky when well
        conditioned, else a null-space problem by SVD) instead of the paper's explicit inverse
        :math:`(D U^\top)^{-1}` (LibMTL: ``torch.inverse``, singular for collinear gradients; nash-mtl
        adds 1e-8·I; TorchJD uses :math:`\operatorname{pinv}(M) \, \nu`, which for opposite gradients gives
        0/0 → w = 0 instead of the paper's (½, ½); the direction d = 0 is the same).
    D2. The paper applies IMTL-G to the gradients with respect to the shared representation Z; use
        ``backward(..., representation=Z)`` for that; the default uses the shared parameters.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_weighting.imtl_g import IMTLG
    >>> d = IMTLG()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.0767, 1.0000, 1.0000]
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
