"""SDMGrad: stochastic direction-oriented multi-objective gradient descent (exact inner problem).

Paper: P. Xiao, H. Ban and K. Ji, "Direction-oriented Multi-objective Learning: Simple and
Provable Stochastic Algorithms", NeurIPS 2023, arXiv 2305.18409. Official code:
github.com/OptMN-Lab/sdmgrad (``methods/weight_methods.py`` class SDMGrad, ``experiments/*/run.sh``).

Implemented (the direction-oriented subproblem regularised towards the average gradient
g_0 = (1/K) Σ_i g_i, solved in its dual):

    w* = argmin_{w∈Δ} ½ ||Gᵀw + λ g_0||²,        d = (Gᵀw* + λ g_0) / (1 + λ).

Because Σ w_i = 1 on Δ, Gᵀw + λg_0 = Σ_i w_i (g_i + λ g_0): w* is the min-norm point of the shifted
gradients, computed exactly from M = G Gᵀ by :func:`~reference_impls.core.solvers.shifted_gramian`
and :func:`~reference_impls.core.solvers.min_norm_weights`. The returned weights are
(w* + λ/K)/(1 + λ), so that d = Gᵀ weights. λ = 0 is MGDA; λ → ∞ tends to the mean gradient g_0.

Hyperparameters:
    lamda: λ = 0.3 (default; the official NYUv2/Cityscapes run.sh and LibMTL's default). The
        official class default is 0.6 and the official toy uses λ = 0.01 (with gradient noise).

Deviations:
    D1. Exact inner solve from one Jacobian: the official stochastic algorithm estimates the
        Gramian from two further minibatches (GG = G_ξ G_ξ'ᵀ, normalised by the squared mean of
        √(diag GG + 1e-4)) and runs 20 steps of projected SGD (lr 10, momentum 0.5) on w, warm-started
        across training steps; we minimise the objective exactly (and statelessly) for the given J.
        The double-sampling Gramian is not supported (it is not symmetric PSD, so the min-norm
        solver does not apply). Note: in the official code the three gradient buffers are one
        tensor listed three times (``[torch.Tensor(...)] * 3``), so its three "independent"
        estimates are in fact the same (last) minibatch's gradients.
    D2. The official code multiplies d by K ("to match the sum loss") and clips the shared
        gradient to norm 1.0 (max_norm = 1); we return the paper's d (apply clipping in the
        optimiser if wanted).
    D3. Degenerate inputs: all-zero J gives weights 𝟙/K and d = 0; with λ > 0, g_0 = 0 (e.g.
        opposite gradients) gives w* = MGDA's weights and d = Gᵀw*/(1+λ) (here 0); K = 1 gives d = g_1.

Usage:
    >>> d = SDMGrad(lamda=0.3)(J)      # J: (K, n) -> d: (n,)
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import min_norm_weights, shifted_gramian


class SDMGrad(GramianWeighting):
    """d = (Gᵀw* + λg_0)/(1 + λ) with w* the min-norm point of {g_i + λ g_0}."""

    name: ClassVar[str] = "sdmgrad"

    def __init__(self, lamda: float = 0.3) -> None:
        if not lamda >= 0.0 or lamda == float("inf"):
            raise ValueError(f"lamda must be a finite number >= 0, got {lamda!r}")
        self.lamda = float(lamda)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        w_star = min_norm_weights(shifted_gramian(M, self.lamda))  # w* = argmin_Δ ½||Gᵀw + λg_0||², (K,)
        return (w_star + self.lamda / K) / (1.0 + self.lamda)  # d = (Gᵀw* + λ g_0)/(1 + λ)
