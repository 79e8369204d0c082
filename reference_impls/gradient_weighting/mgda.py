"""MGDA and MGDA-UB: the min-norm point of the convex hull of the task gradients.

Paper: O. Sener and V. Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018, arXiv 1810.04650. Official code: github.com/isl-org/MultiObjectiveOptimization
(``multi_task/min_norm_solvers.py``, ``multi_task/train_multi_task.py``).

Implemented (paper Eq. 3 / Algorithm 2, the multiple-gradient descent algorithm of Désidéri 2012):

    λ* = argmin_{λ∈Δ} ||Σ_i λ_i g_i||²,        d = Σ_i λ*_i g_i,

with Δ the probability simplex. d = 0 exactly when 0 ∈ conv{g_i} (the point is Pareto-stationary);
otherwise −d is a descent direction for every task: ⟨g_i, d⟩ ≥ ||d||² > 0 (KKT conditions).
MGDA-UB (paper Section 3.3, the upper bound): the same weights computed from the gradients ∂f_i/∂Z with
respect to the shared representation Z; use ``method.backward(losses, shared, heads,
representation=Z)`` (the base class computes J_Z, calls :meth:`MGDA.weights` and back-propagates
Σ λ_i f_i once).

Hyperparameters:
    normalization: "none" (default; the paper's algorithm), "l2" (g_i/||g_i||), "loss" (g_i/f_i) or
        "loss+" (g_i/(f_i ||g_i||)), the options of the official code's ``gradient_normalizers``,
        which the paper does not describe. The official ``sample.json`` uses "loss+" with
        MGDA-UB. "loss" and "loss+" need the (positive) losses: call ``method(J, losses)``.
    normalized_direction: False (default, official code): λ is computed on the normalised gradients
        and applied to the raw losses, d = Σ λ_i g_i; True (LibMTL ``weighting/MGDA.py``): applied to
        the normalised gradients, d = Σ λ_i g_i/n_i. The two differ unless normalization = "none".

Deviations:
    D1. Solver: the min-norm problem is solved exactly (Wolfe's finite algorithm on the Gramian,
        :func:`reference_impls.core.solvers.min_norm_weights`), in float64, and certified per task:
        ⟨g_i, d⟩ ≥ ||d||² − κ·S·(||g_i|| + S) for every i (S = Σ_j λ_j||g_j||, κ = 32·K·ε with ε of
        the input dtype), so a task 1e6 times smaller than the others keeps its KKT guarantee;
        SolverError otherwise. K = 2 (normalization "none") takes a Python-float path with the same
        closed form and certificate (the paper's Algorithm 1, γ = clip(⟨g_2 − g_1, g_2⟩/||g_1 − g_2||², 0, 1)),
        identical bit for bit (tested), ~20 times cheaper per call. The official code starts from the best pair with γ clipped to
        [0.001, 0.999] and runs at most 250 projected gradient steps with a stopping tolerance of
        1e-5 (its loop counter is never incremented, so it stops only on the tolerance); its λ, and
        hence d, are approximate.
    D2. Zero gradients under "l2"/"loss+" normalisation keep the norm factor 1 (the official code
        divides by zero); non-positive losses under "loss"/"loss+" raise a ValueError (the official
        code divides by them and flips signs).
    D3. Degenerate inputs: all-zero J gives λ = 𝟙/K and d = 0; a zero row gives d = 0 with all
        weight on the first zero row; identical gradients put all weight on the first copy (d is
        unique, λ is not); 0 ∈ conv{g_i} (opposite or opposing collinear gradients) gives d = 0 (to
        the rounding level of the Gramian, ~√ε·Σλ_i||g_i||). K = 1 gives λ = (1,), d = g_1. A
        Jacobian whose Gramian would be subnormal (J ≈ 1e-155) is multiplied by a power of two
        before the Gramian is formed (λ is scale-invariant); a subnormal Gramian passed to
        ``weights_from_gramian`` raises SolverError.
    D4. Task-specific parameters (heads): ``backward`` writes each head's own raw gradient ∇f_i
        (the base-class convention), whereas the official ``train_multi_task.py`` back-propagates
        Σ_t λ_t f_t once, so its heads receive λ_t ∇f_t. With ``representation=Z`` (MGDA-UB) the
        base class back-propagates Σ λ_i f_i, as the official code does.

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
