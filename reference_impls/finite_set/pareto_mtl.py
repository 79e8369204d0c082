r"""Pareto MTL (id ``pareto-mtl``): one constrained MGDA subproblem per preference vector.

Paper: X. Lin, H.-L. Zhen, Z. Li, Q. Zhang, S. Kwong, "Pareto Multi-Task Learning", NeurIPS 2019,
arXiv:1912.12854. Official code: Xi-L/ParetoMTL ``synthetic_example/run_synthetic_example.py``
(toy) and ``multiMNIST/train.py`` (networks).

The P preference vectors split the objective space into P sectors; solution k minimises the losses
while staying in the sector where its own preference is the closest in angle (paper Eq. 6), by an
initial phase that walks into the sector and a main phase that runs MGDA on the constrained
problem.

Update rule:
    Solution :math:`k` has unit preference :math:`u_k = r_k / \lVert r_k \rVert`, losses
    :math:`F(\theta) \in \mathbb{R}^K` and gradients :math:`g_i = \nabla f_i(\theta)`. Its
    constraints (paper Eq. 6) and their active set (official code, D1 and D2) are

    .. math::

        \mathcal{G}_j(\theta) = (u_j - u_k)^\top F(\theta) \le 0 \quad (j \ne k), \qquad I_k = \{ j \ne k : \mathcal{G}_j(\theta) > 0 \}, \qquad \nabla \mathcal{G}_j = \sum_{i=1}^K (u_j - u_k)_i\, g_i

    Initial phase (paper §3.2, Eq. 12–13; the first ``init_fraction`` = 20 % of the steps, D3):
    :math:`d = 0` when :math:`I_k = \emptyset` (already in the sector), otherwise the min-norm
    point of the active constraints' gradients, a descent direction for every violated constraint:

    .. math::

        \beta^\star = \arg\min_{\beta \in \Delta^{|I_k|}} \left\lVert \sum_{j \in I_k} \beta_j \nabla \mathcal{G}_j \right\rVert^2, \qquad d = \sum_{j \in I_k} \beta^\star_j \nabla \mathcal{G}_j

    Main phase (paper Eq. 10–11, Alg. 1 line 6): the min-norm point of the objectives' and the
    active constraints' gradients together, a direction that decreases every objective and every
    active constraint:

    .. math::

        (\lambda^\star, \beta^\star) = \arg\min_{\lambda, \beta \ge 0,\ \sum_i \lambda_i + \sum_j \beta_j = 1} \left\lVert \sum_{i=1}^K \lambda_i g_i + \sum_{j \in I_k} \beta_j \nabla \mathcal{G}_j \right\rVert^2

    In both phases the direction is formed as loss weights (paper Eq. 14, the official code's
    "reformulate ParetoMTL as linear scalarization"; the weights can be negative), and the runner
    takes a plain gradient step:

    .. math::

        \alpha = \lambda^\star + \sum_{j \in I_k} \beta^\star_j (u_j - u_k), \qquad d = \sum_{i=1}^K \alpha_i g_i, \qquad \theta \leftarrow \theta - \eta\, d

    (in the initial phase :math:`\lambda^\star = 0`). The min-norm problems are solved on the
    Gramian :math:`A (G G^\top) A^\top` of the vectors, with :math:`G` the Jacobian (rows
    :math:`g_i`) and :math:`A` stacking the identity (main phase only) over the rows
    :math:`(u_j - u_k)^\top`, by the certified Wolfe solver
    (:func:`reference_impls.core.solvers.min_norm_weights`); then :math:`\alpha = A^\top (\lambda^\star; \beta^\star)`.

Preferences: rows of non-negative entries (any scale; a zero entry is allowed, e.g. the end points
(1, 0) and (0, 1) of the paper's circle), normalised to unit length. The paper's default set for
K = 2 is the P "circle points" (cos t, sin t) at the angles t = kπ/(2(P − 1)), k = 0..P − 1
(``circle_points`` in the official code); :meth:`ParetoMTL.default_preferences` returns them scaled
onto the simplex. For K ≥ 3 it returns :func:`~reference_impls.core.sets.simplex_preferences`.
The losses are assumed non-negative (sectors live in the positive orthant), as in the paper.

Defaults (official toy, ``run_synthetic_example.py``): plain gradient steps of size 1.0
(``default_optimizer = "sgd"``, ``default_lr = 1.0``), 100 iterations of which the first 20 %
(``init_fraction = 0.2``) are the initial phase; P = 5..10 preferences; starting points uniform in
(−0.5, 0.5) in 20 dimensions.

Degenerate inputs: K = 1: no constraint can be active (all unit preferences are equal), the
initial phase does nothing and the main phase is gradient descent. Duplicate preferences: their
difference is 0, so that constraint is never active (the duplicates share a sector). A solution
whose gradients are all zero gets d = 0. Non-finite losses or Jacobians raise ValueError; a
min-norm problem whose optimality conditions fail raises SolverError.

Deviations:
    D1. Active set :math:`\mathcal{G}_j > 0` (official code) rather than the paper's
        :math:`\mathcal{G}_j \ge -\epsilon` (§3.2): with ε = 0 the two agree except on the sector
        boundary itself, where the paper's rule also adds the constraint; the official code's rule
        is the one whose toy results the paper reports.
    D2. The activation test uses :math:`(u_j - u_k)^\top F`, not
        :math:`(u_j - u_k)^\top F / \lVert F \rVert` as in the official code: the sign, which is
        all the test uses, is the same (and F = 0 needs no special case).
    D3. The initial phase always lasts ``init_fraction``·T steps (official code), with d = 0 once
        the solution is feasible; the paper (Alg. 1) stops it as soon as a feasible point is found,
        which gives the same iterates except that the main phase starts earlier. ``begin`` reads T;
        without ``begin`` the phase lasts ``init_steps`` (default 20, 20 % of the paper's 100).
    D4. The min-norm problems are solved on the Gramian of each solution's Jacobian scaled by its
        largest row norm (the weights are invariant to a common positive factor), so that gradients
        of norm 1e-160 or 1e160 do not under/overflow the Gramian; the official code uses
        MinNormSolver's Frank-Wolfe iterations on the raw vectors, uncertified.
    D5. All P solutions run in one batch (one Gramian per solution, a Python loop only around the
        per-solution min-norm solves); the official code runs the P subproblems one after another
        from independent random starts, which is the same algorithm.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod, check_preferences, simplex_preferences
from reference_impls.core.solvers import min_norm_weights


def circle_preferences(P: int) -> Tensor:
    """The paper's K = 2 preference set (P, 2): unit vectors at angles linspace(0, π/2, P), scaled onto the simplex."""
    if P < 1:
        raise ValueError(f"need P >= 1, got {P}")
    t = torch.linspace(0.0, 0.5 * math.pi, P, dtype=torch.float64)  # (P,), the official circle_points angles
    u = torch.stack([torch.cos(t), torch.sin(t)], dim=1)  # (P, 2) unit vectors
    u = torch.where(u.abs() < 1e-15, torch.zeros_like(u), u)  # cos(π/2) = 6e-17 is an exact zero entry
    return u / u.sum(1, keepdim=True)  # (P, 2) on the simplex


def unit_preferences(preferences: Tensor, P: int, K: int) -> Tensor:
    """u_k = r_k/||r_k|| (P, K), float64, after validating the rows."""
    r = check_preferences(preferences, P, K, name="pareto-mtl preferences").to(torch.float64)  # (P, K)
    return r / r.norm(dim=1, keepdim=True)  # (P, K)


def constraint_vectors(u: Tensor) -> Tensor:
    """W[k, j] = u_j − u_k (P, P, K): the constraint 𝒢_j of solution k is W[k, j]ᵀF ≤ 0."""
    return u[None, :, :] - u[:, None, :]  # (P, P, K)


def active_constraints(W: Tensor, F: Tensor) -> Tensor:
    """Mask (P, P) of the violated constraints 𝒢_j(θ_k) = (u_j − u_k)ᵀF_k > 0, j ≠ k (D1, D2)."""
    P = W.shape[0]
    G = torch.einsum("kjc,kc->kj", W, F.to(W))  # 𝒢_j(θ_k), (P, P)
    return (G > 0) & ~torch.eye(P, dtype=torch.bool, device=W.device)


def sectors(F: Tensor, preferences: Tensor) -> Tensor:
    """argmax_j cos(F_k, u_j) (P,): the index of the preference closest in angle to each solution."""
    u = preferences.to(torch.float64) / preferences.to(torch.float64).norm(dim=1, keepdim=True)  # (P, K)
    Fh = F.to(torch.float64) / F.to(torch.float64).norm(dim=1, keepdim=True)  # (P, K)
    return (Fh @ u.T).argmax(dim=1)  # (P,)


class ParetoMTL(SetMethod):
    """Pareto MTL: per preference u_k, MGDA on the sector-constrained subproblem (initial phase, then main phase)."""

    name = "pareto-mtl"
    needs_preferences = True
    stateful = True
    default_optimizer = "sgd"  # official toy: x ← x − step_size·d
    default_lr = 1.0  # official toy step_size
    default_steps = 100  # official toy t_iter

    def __init__(self, init_fraction: float = 0.2, init_steps: int = 20) -> None:
        if not 0.0 <= init_fraction <= 1.0:
            raise ValueError(f"init_fraction must be in [0, 1], got {init_fraction}")
        if int(init_steps) != init_steps or init_steps < 0:
            raise ValueError(f"init_steps must be a non-negative integer, got {init_steps}")
        self.init_fraction = float(init_fraction)
        self.init_steps = int(init_steps)  # used until begin() sets it from the planned number of steps
        self._default_init_steps = int(init_steps)
        self.t = 0  # steps taken
        self.last_phase: str | None = None  # "init" or "main", for inspection
        self.last_weights: Tensor | None = None  # α (P, K), the equivalent loss weights of the last step

    def default_preferences(self, P: int, K: int) -> Tensor:
        """The paper's circle points (K = 2, scaled onto the simplex); simplex_preferences otherwise."""
        return circle_preferences(P) if K == 2 else simplex_preferences(P, K)

    def reset(self) -> None:
        self.t = 0
        self.init_steps = self._default_init_steps
        self.last_phase = None
        self.last_weights = None

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        """The initial phase lasts int(init_fraction·steps) steps (official code: int(t_iter·0.2))."""
        self.t = 0
        self.init_steps = int(steps * self.init_fraction)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if preferences is None:
            raise ValueError("pareto-mtl needs one preference vector per solution, got None")
        if F.shape != (P, K):
            raise ValueError(f"pareto-mtl: F must have shape ({P}, {K}), got {tuple(F.shape)}")
        if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
            raise ValueError("pareto-mtl: the losses or the Jacobians contain NaN or infinite entries")
        u = unit_preferences(preferences, P, K)  # (P, K)
        W = constraint_vectors(u)  # (P, P, K)
        active = active_constraints(W, F)  # (P, P)
        init_phase = self.t < self.init_steps
        J64 = J.detach().to(torch.float64)  # (P, K, n)
        scale = J64.norm(dim=2).amax(dim=1)  # (P,) largest gradient norm per solution (D4)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        Js = J64 / scale[:, None, None]  # (P, K, n)
        gram = Js @ Js.transpose(1, 2)  # J Jᵀ per solution, (P, K, K)
        eye = torch.eye(K, dtype=torch.float64)
        alpha = torch.zeros(P, K, dtype=torch.float64)  # loss weights α_k (P, K)
        for k in range(P):
            Wk = W[k, active[k]]  # (a, K): rows u_j − u_k of the active constraints
            if init_phase:
                if Wk.shape[0] == 0:
                    continue  # feasible: d = 0 during the initial phase
                A = Wk  # vectors ∇𝒢_j = (u_j − u_k)ᵀJ, Eq. 12
            else:
                A = torch.cat([eye, Wk], dim=0)  # (K + a, K): vectors g_i and ∇𝒢_j, Eq. 10
            M = A @ gram[k] @ A.T  # Gramian of the vectors, (K + a, K + a)
            lam = min_norm_weights(M)  # (λ; β) on the simplex, certified
            alpha[k] = A.T @ lam  # α = λ + Σ_j β_j (u_j − u_k), Eq. 14
        self.t += 1
        self.last_phase = "init" if init_phase else "main"
        self.last_weights = alpha.to(J.dtype)
        return torch.einsum("pk,pkn->pn", alpha.to(J), J)  # d_k = Σ_i α_ki g_ki, (P, n)
