r"""Nash-MTL: the Nash bargaining solution of the tasks, Mα = 1/α, solved exactly.

Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik and E. Fetaya,
"Multi-Task Learning as a Bargaining Game", ICML 2022, arXiv 2202.01017. Official code:
github.com/AvivNavon/nash-mtl (``methods/weight_methods.py`` class NashMTL; identical in LibMTL
``weighting/Nash_MTL.py``).

Update rule:
    The paper's Algorithm 1 with its bargaining-solution characterisation: with
    :math:`G \in \mathbb{R}^{K \times n}` the task gradients :math:`g_i` as rows and
    :math:`M = G G^\top` their Gramian, the Nash bargaining solution over the ball of directions is
    :math:`G^\top \alpha` (up to scale), with :math:`\alpha` the positive solution of the system below
    (written :math:`G^\top G \alpha = 1/\alpha` in the paper, whose G has the gradients as columns):

    .. math::

        \alpha \in \mathbb{R}^K_{>0}: \quad (M \alpha)_i = \frac{1}{\alpha_i} \quad \text{for all } i, \qquad d = \min\Big(1, \frac{\tau}{\lVert G^\top \alpha \rVert}\Big) \, G^\top \alpha

    with :math:`\tau` = ``max_norm`` (default 1.0, the official code's clipping of the shared
    gradient's norm after back-propagating :math:`\sum_i \alpha_i f_i`; ``max_norm=None`` gives the
    paper's :math:`d = G^\top \alpha`, see D2). At the solution
    :math:`\langle g_i, G^\top \alpha \rangle = 1/\alpha_i > 0` (every task decreases to first order)
    and :math:`\lVert G^\top \alpha \rVert^2 = \alpha^\top M \alpha = K`, so the default clip is
    active whenever :math:`K \ge 2` and the step is :math:`G^\top \alpha / \sqrt{K}`. The solution is
    invariant to the loss scales: :math:`g_i \to c_i g_i` gives :math:`\alpha_i \to \alpha_i / c_i` and the
    same :math:`G^\top \alpha`.

    The equation is FairGrad's with fairness parameter 1, so the solver is
    ``reference_impls.gradient_weighting.fairgrad.solve_fair_weights``: damped Newton on the
    strictly convex :math:`\tfrac12 \alpha^\top M \alpha - \sum_i \log \alpha_i`, relative residual
    1e-12, warm-started from the previous step's solution (as the official code does), on the
    Gramian of the normalised gradients :math:`g_i / \lVert g_i \rVert`, so it is exactly invariant to
    the task scales. :math:`K = 2` has a closed form (both equations give
    :math:`\alpha_1 \lVert g_1 \rVert = \alpha_2 \lVert g_2 \rVert`), used whenever
    :math:`0 \notin \operatorname{conv}\{g_1, g_2\}` and certified like the general solve:

    .. math::

        \alpha_i = \frac{1}{\lVert g_i \rVert \sqrt{1 + \cos(g_1, g_2)}}

Hyperparameters (official defaults): ``max_norm`` = 1.0 (see the update rule); ``max_norm=None``
gives the paper's d. ``update_weights_every`` = 1 and ``optim_niter`` = 20 of the official code have
no counterpart (D1).

Deviations:
    D1. Solver: exact Newton solve of :math:`(M\alpha)_i = 1/\alpha_i`. The official code runs at most
        20 steps of a sequential convex approximation (cvxpy/ECOS on :math:`M / \lVert M \rVert_F` with
        the concave part linearised), stopping on
        :math:`\lVert (M / \lVert M \rVert_F) \alpha - 1/\alpha \rVert < 10^{-3}` (a test on the
        normalised matrix, not the equation it solves) or on a change of α below 1e-6, so its α is
        approximate.
    D2. Clipping (``max_norm``, default 1.0 as in the official code) breaks the scale invariance of
        the weights; with ``max_norm=None`` the method is exactly loss-scale invariant.
    D3. Pareto-stationary inputs (:math:`0 \in \operatorname{conv}\{g_i\}` to the min-norm
        certificate's tolerance: a zero gradient, opposite or opposing collinear gradients, a
        Pareto-stationary point): no α > 0 solves the equations and no d decreases every task.
        Defined answer (FairGrad's module docstring): the deadlocked tasks (:math:`-g_i` in the cone
        of the others) get :math:`\langle g_i, d \rangle = 0`, the others the bargaining solution
        :math:`(M\alpha)_j = 1/\alpha_j` on their components orthogonal to the deadlocked
        gradients; strongly stationary J (e.g. [g; −g]) gives α = 0, d = 0. Certified per task, or
        SolverError. The official code instead keeps the previous step's α (𝟙 at the first step)
        when its cvxpy problem is infeasible or ECOS fails (``solve_optimization``: the exception
        resets α to the previous value, and ``_stop_criteria`` stops on a None value), so its d is
        the previous weighting of the new gradients, which generically conflicts with a deadlocked task.
        All-zero J gives α = 0 and d = 0. K = 1: α = 1/‖g‖, d = g/‖g‖.
    D4. Task-specific parameters: the official code back-propagates :math:`\sum_i \alpha_i f_i`, so
        each head gets :math:`\alpha_i \nabla f_i`; ``backward`` here gives heads their raw task
        gradient (the project convention).

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
