"""Nash-MTL: the Nash bargaining solution of the tasks, (M α)_i = 1/α_i, solved exactly.

Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik and E. Fetaya,
"Multi-Task Learning as a Bargaining Game", ICML 2022, arXiv 2202.01017. Official code:
github.com/AvivNavon/nash-mtl (``methods/weight_methods.py`` class NashMTL; identical in LibMTL
``weighting/Nash_MTL.py``).

Implemented (the paper's Algorithm 1 with its bargaining-solution characterisation): with
G ∈ R^{K×n} the task gradients and M = G Gᵀ, the Nash bargaining solution over the ball of
directions is d = Gᵀα (up to scale) with α ∈ R^K_{>0} solving

    (M α)_i = 1/α_i  for all i   (GᵀG α = 1/α in the paper's notation, G with columns g_i),        d = Σ_i α_i g_i,

hence ⟨g_i, d⟩ = 1/α_i > 0 (every task decreases to first order), ||d||² = αᵀMα = K, and the
solution is invariant to the loss scales: g_i → c_i g_i gives α_i → α_i/c_i and the same d.
The equation is FairGrad's with α_fair = 1, so the solver is
:func:`reference_impls.gradient_weighting.fairgrad.solve_fair_weights` (damped Newton on the
strictly convex ½αᵀMα − Σ log α_i, relative residual 1e-12, warm-started from the previous
step's solution, which the official code also does). The solve works on the Gramian of the
normalised gradients g_i/||g_i||, so it is exactly invariant to the task scales. K = 2 has a closed
form: α_i = 1/(||g_i||·√(1 + cos(g_1, g_2))) (both equations give α_1||g_1|| = α_2||g_2||), used
whenever 0 ∉ conv{g_1, g_2} and certified like the general solve.

Hyperparameters (official defaults): max_norm = 1.0 (after back-propagating Σ α_i f_i the official
code clips the shared gradient's norm to 1.0; since ||d|| = √K > 1 at the exact solution, the clip
is active whenever K ≥ 2 and the official update is d/√K); max_norm=None gives the paper's d.
update_weights_every = 1 and optim_niter = 20 of the official code have no counterpart (D1).

Deviations:
    D1. Solver: exact Newton solve of (Mα)_i = 1/α_i. The official code runs at most 20 steps of a
        sequential convex approximation (cvxpy/ECOS on M/||M||_F with the concave part
        linearised), stopping on ||(M/||M||_F)α − 1/α|| < 1e-3 (a test on the normalised matrix,
        not the equation it solves) or on a change of α below 1e-6, so its α is approximate.
    D2. Clipping (max_norm, default 1.0 as in the official code) breaks the scale invariance of
        the weights; with max_norm=None the method is exactly loss-scale invariant.
    D3. Pareto-stationary inputs (0 ∈ conv{g_i} to the min-norm certificate's tolerance: a zero
        gradient, opposite or opposing collinear gradients, a Pareto-stationary point): no α > 0
        solves the equations and no d decreases every task. Defined answer (FairGrad's module
        docstring): the deadlocked tasks (−g_i in the cone of the others) get ⟨g_i, d⟩ = 0, the others
        the bargaining solution (Mα)_j = 1/α_j on their components orthogonal to the deadlocked
        gradients; strongly stationary J (e.g. [g; −g]) gives α = 0, d = 0. Certified per task, or
        SolverError. The official code instead keeps the previous step's α (𝟙 at the first step)
        when its cvxpy problem is infeasible or ECOS fails (``solve_optimization``: the exception
        resets α to the previous value, and ``_stop_criteria`` stops on a None value), so its d is
        the previous weighting of the new gradients, which generically conflicts with a deadlocked task.
        All-zero J gives α = 0 and d = 0. K = 1: α = 1/||g||, d = g/||g||.
    D4. Task-specific parameters: the official code back-propagates Σ α_i f_i, so each head gets
        α_i ∇f_i; ``backward`` here gives heads their raw task gradient (the project convention).

Usage:
    >>> nash = NashMTL(max_norm=None)
    >>> d = nash(J)                        # J: (K, n) -> d: (n,)
    >>> alpha = nash.weights(J)            # α: (K,)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import _EPS64, combine2, gramian2_rows
from reference_impls.gradient_weighting.fairgrad import clip_weights, fair_weights2, fair_weights2_entries, solve_fair_weights


class NashMTL(GramianWeighting):
    """d = Gᵀα with (Mα)_i = 1/α_i (Nash bargaining), optionally clipped to ||d|| ≤ max_norm."""

    name: ClassVar[str] = "nash-mtl"
    stateful: ClassVar[bool] = True  # warm start of the solver (the solution itself is unique)

    def __init__(self, max_norm: float | None = 1.0) -> None:
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {max_norm!r}")
        self.max_norm = max_norm
        self._beta: np.ndarray | None = None  # warm start (scaled solution of the previous call)

    def reset(self) -> None:
        self._beta = None

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): the closed form of :func:`fair_weights2_entries` from M = J Jᵀ and
        d = Jᵀα on Python floats, the general (batched Gramian) path's bits and warm start; None (no state changed) otherwise."""
        entries = gramian2_rows(rows)  # M as torch's J @ J.T rounds it; None: not two finite rows of two floats
        solved = None if entries is None else fair_weights2_entries(*entries, 1.0, self._beta, self.max_norm, _EPS64)
        if solved is None:
            return None
        a1, a2, self._beta = solved
        return combine2(a1, a2, rows[0], rows[1])  # d = Gᵀα

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        fast = fair_weights2(M, 1.0, self._beta, self.max_norm)  # K = 2: α_i = 1/(||g_i||·√(1 + cos)), certified; else None
        if fast is not None:
            alpha, self._beta = fast
            return alpha
        alpha, self._beta = solve_fair_weights(M, 1.0, self._beta, fast=False)  # (Mα)_i = 1/α_i
        return clip_weights(torch.from_numpy(alpha).to(M), M, self.max_norm)  # d = Gᵀα, ||d|| ≤ max_norm
