r"""Exact Pareto Optimal search, EPO (id ``epo``): gradient descent with controlled ascent towards r ⊙ l ∝ 𝟙.

Paper: D. Mahapatra, V. Rajan, "Multi-Task Learning with User Preferences: Gradient Descent with
Controlled Ascent in Pareto Optimization", ICML 2020 (PMLR 119). Official code: dbmptr/EPOSearch
``toy_experiments/solvers/epo_lp.py`` (the LPs) and ``toy_experiments/solvers/epo_search.py`` (the
toy loop), ``toy_experiments/compare_solvers.py`` (the toy settings).

Goal (paper Def. 1): the Exact Pareto Optimal point for a positive preference r: a Pareto-optimal
loss vector l whose weighted losses r ⊙ l are all equal, i.e. l on the ray through 1/r
(``target_rays``). Each step solves, per solution, one of two small LPs (paper §4; they live in
:mod:`reference_impls.finite_set.epo_lp`): a balance LP that moves the weighted losses towards the
ray while the non-uniformity μ is above ε, a descent LP that descends every loss once on it.

Update rule:
    For one solution with losses :math:`l \in \mathbb{R}^K_{\ge 0}`, Jacobian :math:`G` (rows
    :math:`g_i = \nabla l_i`) and preference :math:`r > 0`: the normalised weighted losses, their
    non-uniformity (a KL divergence, 0 exactly on the ray) and the adjustments (official
    ``mu`` and ``adjustments``; zero losses: D6), with :math:`C` the Gramian of :math:`G` scaled by
    its largest row norm (D3; :math:`\alpha` is invariant to the scale):

    .. math::

        \hat l = \frac{r \odot l}{\sum_i r_i l_i}, \qquad \mu = \sum_{i=1}^K \hat l_i \log(K \hat l_i) = \operatorname{KL}\big(\hat l \,\Vert\, \tfrac{1}{K}\mathbb{1}\big), \qquad a = r \odot \big(\log(K \hat l) - \mu \mathbb{1}\big), \qquad C = \frac{G G^\top}{\max_i \lVert g_i \rVert^2}

    Balance mode (:math:`\mu > \epsilon`; paper Eq. 21–23, ``EPO_LP.prob_bal``), with
    :math:`J = \{ j : (Ca)_j > 0 \}` the losses the balance direction would increase and
    :math:`J^\ast = \arg\max_j r_j l_j` (all ties):

    .. math::

        \alpha = \arg\max_{\alpha \in \Delta^K} \alpha^\top C a \quad \text{s.t.} \quad (C\alpha)_j \ge (Ca)_j \ (j \notin J \cup J^\ast), \quad (C\alpha)_j \ge 0 \ (j \in J^\ast)

    and, when :math:`J = \emptyset`, the constraints are :math:`C\alpha \ge 0`. Descent mode
    (:math:`\mu \le \epsilon`; ``EPO_LP.prob_dom``, restricted; ``relax=True`` drops the last
    constraint, ``prob_rel``):

    .. math::

        \alpha = \arg\max_{\alpha \in \Delta^K} \mathbb{1}^\top C \alpha \quad \text{s.t.} \quad C\alpha \ge 0, \quad \alpha^\top C a \ge \min\big(\max_j (Ca)_j,\ 0\big)

    Each LP is solved by HiGHS and KKT-certified (D1); :math:`\alpha` is clipped at 0 and
    renormalised (D5). The direction carries the official toy's step factor (D2) and the runner
    steps with plain SGD, :math:`\eta = 0.1` (``default_lr``, the official ``step_size``):

    .. math::

        d = G^\top \alpha, \qquad D = 10 \max(\mu, 0.1)\, d, \qquad x \leftarrow x - \eta D

    (``step_rule=False`` returns :math:`D = d`.)

Defaults (official toy, ``compare_solvers.py``/``epo_search.py``): ε = 1e-4, restricted descent
(relax = False), step_size 0.1, 100 iterations; preferences r = (cos θ, sin θ) with
θ ∈ linspace(π/20, 9π/20, P) (:meth:`EPO.default_preferences` scales them onto the simplex; only
the direction of r matters). The toy's losses are VLMOP2 (``problems/toy_biobjective.py``).

Preferences: rows of positive entries (ValueError for a zero entry: the target 1/r is then not
defined). Losses must be non-negative (μ uses log(r ⊙ l); ValueError otherwise: shift losses by a
known lower bound; zero losses: D6). K = 1: μ = 0 always, the descent LP gives α = 1 and d is the
gradient (gradient descent, step 10·0.1·η). Duplicate preferences are independent copies. A
solution with all-zero gradients gets d = 0. Non-finite losses or Jacobians raise ValueError; an
LP whose KKT conditions fail (or an infeasible one) raises SolverError.

Deviations:
    D1. The LPs are solved with HiGHS (scipy ``linprog``) and certified by their KKT conditions
        (:func:`reference_impls.core.lp.solve_lp`); the official code uses cvxpy + GLPK and trusts
        its status. Same LPs, same optimal value; where the optimal α is not unique the two
        solvers may return different optimal vertices.
    D2. The official step rule x ← x − 10·max(μ, 0.1)·``step_size``·d is split as
        D = 10·max(μ, 0.1)·d (in the direction) and η = ``step_size`` (the runner's learning
        rate). The paper's text uses a plain step η·d; the factor is the official toy code's.
    D3. Each solution's Jacobian is divided by its largest row norm before forming C (α is
        invariant to this), so that gradients of norm 1e±150 do not under/overflow C.
    D4. The official loop stops a run when the largest entry of |d| is below ``grad_tol`` (1e-4);
        here every solution keeps stepping (the steps shrink with d); the stopping rule belongs to
        EPO Search (``epo-search``).
    D5. α is clipped at 0 and renormalised (HiGHS returns −1e-17 on active bounds); the
        certificate has already been checked on the LP's own answer.
    D6. Zero losses (a box problem's iterate on the boundary, e.g. DTLZ2's last objective where
        the first coordinate is 0): the official ``mu`` drops the terms whose normalised loss is
        at most the machine epsilon, but its ``adjustments`` then take log(0) and the LP fails;
        here :math:`\log(K \max(\hat l_i, \epsilon_{\text{mach}}))` is used in a (so a zero loss,
        far below its share, is pushed up by the balance direction) and 0·log 0 = 0 in μ. All
        weighted losses zero: the normalised losses are 𝟙/K (μ = 0, descent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod, simplex_preferences
from reference_impls.finite_set.epo_lp import check_epo_inputs, epo_circle_preferences, epo_directions, inverse_rays


class EPO(SetMethod):
    """EPO: per solution, the balance LP (μ > ε) or the restricted descent LP (μ ≤ ε), d = Gᵀα, D = 10·max(μ, 0.1)·d."""

    name = "epo"
    needs_preferences = True
    default_optimizer = "sgd"  # official toy: x ← x − step·d
    default_lr = 0.1  # official step_size
    default_steps = 100  # official max_iters

    def __init__(self, eps: float = 1e-4, relax: bool = False, step_rule: bool = True) -> None:
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.eps = float(eps)
        self.relax = bool(relax)
        self.step_rule = bool(step_rule)  # fold 10·max(μ, 0.1) into D (official toy); False: D = d
        self.last_mu: Tensor | None = None  # μ (P,) at the last step's input
        self.last_alpha: Tensor | None = None  # α (P, K)
        self.last_modes: list[str] = []  # "balance" | "descent" per solution
        self.last_directions: Tensor | None = None  # d = Gᵀα (P, n), before the step rule

    def default_preferences(self, P: int, K: int) -> Tensor:
        """The EPO toy's rays (K = 2, angles π/20..9π/20, scaled onto the simplex); simplex_preferences otherwise."""
        return epo_circle_preferences(P) if K == 2 else simplex_preferences(P, K)

    def target_rays(self, preferences: Tensor) -> Tensor:
        """l ∝ 1/r: the unit vectors (1/r)/||1/r|| (P, K)."""
        return inverse_rays(preferences)

    def reset(self) -> None:
        self.last_mu, self.last_alpha, self.last_modes, self.last_directions = None, None, [], None

    def directions(self, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        """d = Gᵀα (P, n) for every solution (no step rule); records μ, α and the modes."""
        r = check_epo_inputs(F, J, preferences, self.name)  # (P, K)
        d, alpha, mu, modes = epo_directions(F, J, r, eps=self.eps, relax=self.relax, name=self.name)
        self.last_mu, self.last_alpha, self.last_modes, self.last_directions = mu, alpha, modes, d
        return d

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        d = self.directions(F, J, preferences)  # (P, n)
        if not self.step_rule:
            return d
        factor = 10.0 * self.last_mu.clamp_min(0.1)  # 10·max(μ, 0.1), (P,)
        return d * factor.to(d)[:, None]  # (P, n)
