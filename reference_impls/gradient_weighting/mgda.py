r"""MGDA and MGDA-UB: the min-norm point of the convex hull of the task gradients.

Paper: O. Sener and V. Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018, arXiv 1810.04650. Official code: github.com/isl-org/MultiObjectiveOptimization
(``multi_task/min_norm_solvers.py``, ``multi_task/train_multi_task.py``).

Update rule:
    With :math:`g_1, \dots, g_K` the task gradients (the rows of the Jacobian :math:`G`) and
    :math:`\Delta` the probability simplex, MGDA solves the min-norm problem of the paper's Eq. 3
    (Algorithm 2, the multiple-gradient descent algorithm of Désidéri 2012) and returns the
    min-norm element of the convex hull of the gradients; the parameters step along :math:`-d`:

    .. math::

        \lambda^\star = \arg\min_{\lambda \in \Delta} \left\lVert \sum_{i=1}^{K} \lambda_i \frac{g_i}{n_i} \right\rVert^2, \qquad d = \sum_{i=1}^{K} \lambda^\star_i g_i

    The normalisation factors :math:`n_i` are 1 by default (``normalization="none"``, the paper's
    algorithm), :math:`\lVert g_i \rVert` ("l2"), :math:`f_i` ("loss") or :math:`f_i \lVert g_i \rVert`
    ("loss+"); with ``normalized_direction=True`` the direction is
    :math:`d = \sum_i \lambda^\star_i g_i / n_i` instead. Without normalisation, :math:`d = 0` exactly
    when :math:`0 \in \operatorname{conv}\{g_1, \dots, g_K\}` (the point is Pareto-stationary);
    otherwise :math:`-d` decreases every task, by the KKT conditions of the min-norm problem:

    .. math::

        \langle g_i, d \rangle \ge \lVert d \rVert^2 > 0 \quad \text{for every } i

    MGDA-UB (paper Section 3.3, the upper bound) computes the same weights from the gradients
    :math:`\partial f_i / \partial Z` with respect to the shared representation :math:`Z` and
    back-propagates :math:`\sum_i \lambda^\star_i f_i` once: use ``method.backward(losses, shared,
    heads, representation=Z)`` (the base class computes the Jacobian with respect to :math:`Z` and
    calls ``MGDA.weights``).

Hyperparameters:
    normalization: "none" (default; the paper's algorithm), "l2" (:math:`g_i / \lVert g_i \rVert`),
        "loss" (:math:`g_i / f_i`) or "loss+" (:math:`g_i / (f_i \lVert g_i \rVert)`), the options of the official code's ``gradient_normalizers``,
        which the paper does not describe. The official ``sample.json`` uses "loss+" with
        MGDA-UB. "loss" and "loss+" need the (positive) losses: call ``method(J, losses)``.
    normalized_direction: False (default, official code): λ is computed on the normalised gradients
        and applied to the raw losses, :math:`d = \sum_i \lambda_i g_i`; True (LibMTL
        ``weighting/MGDA.py``): applied to the normalised gradients, :math:`d = \sum_i \lambda_i g_i / n_i`. The two differ unless normalization = "none".

Deviations:
    D1. Solver: the min-norm problem is solved exactly (Wolfe's finite algorithm on the Gramian,
        ``reference_impls.core.solvers.min_norm_weights``), in float64, and certified per task:
        :math:`\langle g_i, d \rangle \ge \lVert d \rVert^2 - \kappa S (\lVert g_i \rVert + S)` for every
        :math:`i` (:math:`S = \sum_j \lambda_j \lVert g_j \rVert`, :math:`\kappa = 32 K \varepsilon` with
        :math:`\varepsilon` the machine epsilon of the input dtype), so a task 1e6 times smaller than the others keeps its KKT guarantee;
        SolverError otherwise. K = 2 (normalization "none") takes a Python-float path with the same
        closed form and certificate (the paper's Algorithm 1,
        :math:`\gamma = \operatorname{clip}(\langle g_2 - g_1, g_2 \rangle / \lVert g_1 - g_2 \rVert^2, 0, 1)`),
        identical bit for bit (tested), ~20 times cheaper per call. The official code starts from the best pair with γ clipped to
        [0.001, 0.999] and runs at most 250 projected gradient steps with a stopping tolerance of
        1e-5 (its loop counter is never incremented, so it stops only on the tolerance); its λ, and
        hence d, are approximate.
    D2. Zero gradients under "l2"/"loss+" normalisation keep the norm factor 1 (the official code
        divides by zero); non-positive losses under "loss"/"loss+" raise a ValueError (the official
        code divides by them and flips signs).
    D3. Degenerate inputs: all-zero J gives λ = 𝟙/K and d = 0; a zero row gives d = 0 with all
        weight on the first zero row; identical gradients put all weight on the first copy (d is
        unique, λ is not); :math:`0 \in \operatorname{conv}\{g_i\}` (opposite or opposing collinear
        gradients) gives d = 0 (to the rounding level of the Gramian,
        :math:`\sim \sqrt{\varepsilon} \sum_i \lambda_i \lVert g_i \rVert`). K = 1 gives λ = (1,),
        :math:`d = g_1`. A
        Jacobian whose Gramian would be subnormal (J ≈ 1e-155) is multiplied by a power of two
        before the Gramian is formed (λ is scale-invariant); a subnormal Gramian passed to
        ``weights_from_gramian`` raises SolverError.
    D4. Task-specific parameters (heads): ``backward`` writes each head's own raw gradient
        :math:`\nabla f_i` (the base-class convention), whereas the official ``train_multi_task.py``
        back-propagates :math:`\sum_t \lambda_t f_t` once, so its heads receive
        :math:`\lambda_t \nabla f_t`. With ``representation=Z`` (MGDA-UB) the base class
        back-propagates :math:`\sum_i \lambda_i f_i`, as the official code does.

Usage:
    >>> mgda = MGDA()
    >>> d = mgda(J)                   # J: (K, n) task gradients -> d: (n,)
    >>> lam = mgda.weights(J)         # λ*: (K,)
    >>> mgda.backward(losses, encoder.parameters(), heads.parameters(), representation=Z)  # MGDA-UB
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import (
    _INFO64,
    combine2,
    float_info,
    gramian2_entries,
    gramian2_rows,
    min_norm_weights,
    min_norm_weights2,
    rescaled_gramian,
    small_tensor,
)

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDA(GramianWeighting):
    """Multiple-gradient descent: d = argmin_{d ∈ conv{g_i}} ||d||."""

    name: ClassVar[str] = "mgda"

    def __init__(self, normalization: str = "none", normalized_direction: bool = False) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.normalized_direction = bool(normalized_direction)
        self.needs_losses = normalization in ("loss", "loss+")  # instance value overrides the class flag

    def _norm_factors(self, M: Tensor, losses: Tensor | None) -> Tensor:
        """n_i of the official ``gradient_normalizers``: 1, ||g_i||, f_i or f_i ||g_i||."""
        norms = M.diagonal().clamp_min(0.0).sqrt()  # ||g_i||, (K,)
        norms = torch.where(norms > 0, norms, torch.ones_like(norms))  # D2: zero rows keep factor 1
        if self.normalization == "none":
            return torch.ones_like(norms)
        if self.normalization == "l2":
            return norms
        assert losses is not None
        if not bool((losses > 0).all()):
            raise ValueError(f"MGDA normalization {self.normalization!r} needs positive losses, got {losses.tolist()}")
        losses = losses.to(M)
        return losses if self.normalization == "loss" else losses * norms

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        # λ is invariant to a global factor of J: a vanishing J (M subnormal) is rescaled first (D3)
        return self.compute_weights_from_gramian(rescaled_gramian(J), losses)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        if self.normalization == "none" and M.shape[0] == 2:
            entries = gramian2_entries(M)  # Python floats; None: not a finite 2×2 CPU tensor
            lam = None if entries is None else min_norm_weights2(*entries, *float_info(M.dtype))
            if lam is not None:  # K = 2 in closed form, certified: min_norm_weights' answer bit for bit (D1)
                return small_tensor(lam, M.dtype)
        n = self._norm_factors(M, losses)  # (K,)
        M_hat = M / (n[:, None] * n[None, :])  # Gramian of the normalised gradients g_i/n_i, (K, K)
        lam = min_norm_weights(M_hat)  # λ* = argmin_{λ∈Δ} λᵀ M̂ λ   (paper Eq. 3)
        return lam / n if self.normalized_direction else lam  # d = Σ λ_i g_i/n_i  or  Σ λ_i g_i

    def weights2_rows(self, rows) -> tuple[float, float] | None:
        """:meth:`compute_weights` of a two-task float64 Jacobian given as Python lists (``J.tolist()``, n = 2), on
        Python floats: the same M and closed form (D1), bit for bit; None where the general path must decide (another
        normalisation or shape, a non-finite or vanishing M that rescaled_gramian would rescale, no certificate)."""
        if self.normalization != "none":
            return None
        entries = gramian2_rows(rows)  # M = J Jᵀ as torch rounds it; None: not two finite rows of two floats
        if entries is None or max(entries[0], entries[3]) < _INFO64[1] / _INFO64[0]:
            return None  # rescaled_gramian rescales a vanishing J (D3): the general path
        return min_norm_weights2(*entries, *_INFO64)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): d = Jᵀλ* on Python floats, the general path's bits, or None."""
        lam = self.weights2_rows(rows)
        return None if lam is None else combine2(lam[0], lam[1], rows[0], rows[1])  # d = Σ λ_i g_i
