r"""EPO Search (id ``epo-search``): EPO with its stopping rule and warm-started tours along the Pareto front.

Paper: D. Mahapatra, V. Rajan, "Exact Pareto Optimal Search for Multi-Task Learning and
Multi-Criteria Decision-Making" (v1: "... Touring the Pareto Front"), arXiv:2108.00597, 2021.
Official code: dbmptr/EPOSearch ``toy_experiments/solvers/epo_search.py`` (the search loop),
``toy_experiments/solvers/epo_lp.py`` (the LPs) and ``toy_experiments/trace_pf.py`` (tracing the
front by chaining warm starts over several preferences).

The search direction is EPO's (:mod:`reference_impls.finite_set.epo`, same LPs in
:mod:`reference_impls.finite_set.epo_lp`). What EPO Search adds, and is implemented here:

1. The stopping rule (``epo_search.py``): a run stops as soon as ‖d‖∞ < ``grad_tol``. Here each
   solution stops on its own (zero direction from then on, and its LP is no longer solved), the
   others go on.
2. Tours of the front from a warm start (paper §"touring the Pareto front"/PESA-EPO; ``trace_pf.py``
   calls ``epo_search`` for each preference with the previous preference's solution as the start):
   ``tour`` is a list of preference matrices (P, K); when a solution has stopped, its preference
   becomes the next one of its tour (:meth:`EPOSearch.adapt_preferences`) and it restarts from
   where it stopped. Started on the front, the iterates stay on the front while moving to the
   new preference's EPO point (the paper's claim: controlled ascent trades one loss for another
   along the front rather than leaving it), which is what ``tests/.../test_epo_search.py`` checks.
3. The relaxed descent LP (``relax=True``: drop the constraint on αᵀCa) is an option of the
   official ``epo_search``; its default, as here, is the restricted LP.

Update rule:
    Per solution :math:`p` that has not stopped, EPO's direction (see ``epo``): the balance LP
    while the non-uniformity :math:`\mu` of :math:`r_p \odot l_p` exceeds :math:`\epsilon`, the
    restricted (or relaxed) descent LP after, giving :math:`\alpha_p \in \Delta^K` and
    :math:`d_p = G_p^\top \alpha_p`. The stopping rule and the step (official ``epo_search``):

    .. math::

        D_p = \begin{cases} 0 \ \text{and } p \text{ stops}, & \lVert d_p \rVert_\infty < \mathrm{grad\_tol} \text{ or } p \text{ has stopped before}, \\ 10 \max(\mu_p, 0.1)\, d_p, & \text{otherwise}, \end{cases} \qquad x_p \leftarrow x_p - \eta D_p

    Tour (``trace_pf.py``'s warm starts, D8): after the step, every stopped solution with tour
    left moves to its next preference and searches again from where it stopped:

    .. math::

        r_p \leftarrow \mathrm{tour}[s_p]_p, \qquad s_p \leftarrow s_p + 1 \qquad (\text{when } p \text{ has stopped and } s_p < \lvert \mathrm{tour} \rvert)

    with :math:`s_p` the number of tour entries solution :math:`p` has already taken
    (``step_rule=False`` drops the factor :math:`10 \max(\mu_p, 0.1)`).

Defaults (official ``epo_search``/``trace_pf.py``): ε = 1e-4, ``grad_tol`` = 1e-4 (``epo_search``;
``trace_pf.py`` passes 1e-5), ``step_size`` η = 0.1 (``default_lr``), ``max_iters`` 500
(``default_steps``, trace_pf's); preferences as :class:`~reference_impls.finite_set.epo.EPO`
(rows r > 0, only their direction matters; ``target_rays`` = 1/r normalised).

State: ``stopped`` (P,) bool, ``stage`` (P,) the index of the current preference in
[initial, *tour], ``switches`` a list of (step, solution, stage), reset by :meth:`begin` and
:meth:`reset`. Without :meth:`begin`, the state is created at the first step.

Degenerate inputs: as EPO (ValueError for zero preference entries, negative or non-finite losses,
non-finite Jacobians; SolverError when an LP's KKT check fails); K = 1 is gradient descent until
the gradient's largest entry is below ``grad_tol``; a solution with zero gradients stops at once;
a tour row equal to the current preference restarts a stopped solution, which stops again at the
next step.

Deviations:
    D1. As EPO's D1: the LPs are solved by HiGHS and certified by their KKT conditions (official:
        cvxpy + GLPK, status trusted).
    D2. As EPO's D2: the official step factor 10·max(μ, 0.1) is folded into the direction, and
        η = ``step_size`` is the runner's learning rate.
    D3. As EPO's D3: each solution's Jacobian is divided by its largest row norm before the LPs.
    D4. EPO's D4 (no stopping rule) does not apply: this class restores the official stopping rule.
    D5. As EPO's D5: α is clipped at 0 and renormalised after the certified solve.
    D6. As EPO's D6: zero losses use the logarithm of K times the larger of the normalised loss and
        the machine epsilon in the adjustments, and 0·log 0 = 0 in μ.
    D7. The official loop stops the single run it performs; here the P solutions share the runner's
        loop, so a stopped solution stays put (zero direction, no LP solved) until its tour moves
        it on.
    D8. A tour switches per solution as soon as that solution has stopped; ``trace_pf.py`` runs the
        preferences one after the other, each with a fixed budget (``max_iters`` = 500) and its own
        step size (``ss`` = 0.05, 0.2, 0.05). One η for all here.
    D9. The paper's PESA-EPO front approximation and GP-EPO preference elicitation, procedures built
        around the search (which preferences to visit), are not implemented; ``tour`` takes the
        preferences from the caller.
    D10. The paper's handling of box and equality constraints on the weights is not implemented; on
        box problems the runner projects the iterates onto the box after each step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.core.sets import check_preferences
from reference_impls.finite_set.epo import EPO
from reference_impls.finite_set.epo_lp import check_epo_inputs, epo_directions


class EPOSearch(EPO):
    """EPO Search: EPO's LP direction, per-solution stop at ||d||_∞ < grad_tol, and warm-started tours of preferences."""

    name = "epo-search"
    stateful = True
    default_optimizer = "sgd"
    default_lr = 0.1  # official step_size
    default_steps = 500  # trace_pf.py max_iters

    def __init__(self, eps: float = 1e-4, relax: bool = False, grad_tol: float = 1e-4,
                 tour: Sequence[Tensor] | Tensor | None = None, step_rule: bool = True) -> None:  # fmt: skip
        super().__init__(eps=eps, relax=relax, step_rule=step_rule)
        if not grad_tol >= 0:
            raise ValueError(f"grad_tol must be non-negative, got {grad_tol}")
        self.grad_tol = float(grad_tol)
        self.tour = [torch.as_tensor(t, dtype=torch.float64) for t in (tour if tour is not None else [])]
        for i, prefs in enumerate(self.tour):
            check_preferences(prefs, name=f"epo-search tour[{i}]")
            if bool((prefs <= 0).any()):
                raise ValueError(f"epo-search tour[{i}]: preferences must be strictly positive")
        self.stopped: Tensor | None = None  # (P,) bool
        self.stage: Tensor | None = None  # (P,) long: 0 = the run's preferences, i = tour[i − 1]
        self.switches: list[tuple[int, int, int]] = []  # (step, solution, new stage)

    def _init_state(self, P: int) -> None:
        self.stopped = torch.zeros(P, dtype=torch.bool)
        self.stage = torch.zeros(P, dtype=torch.long)
        self.switches = []
        for i, prefs in enumerate(self.tour):
            if prefs.shape[0] != P:
                raise ValueError(f"epo-search tour[{i}] has {prefs.shape[0]} rows, the set has {P} solutions")

    def reset(self) -> None:
        super().reset()
        self.stopped, self.stage, self.switches = None, None, []

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self._init_state(X0.shape[0])

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if self.stopped is None or self.stopped.shape[0] != P:
            self._init_state(P)
        r = check_epo_inputs(F, J, preferences, self.name)  # (P, K)
        D = torch.zeros(P, n, dtype=J.dtype, device=J.device)
        moving = (~self.stopped).nonzero().flatten()  # solutions still searching
        mu = torch.zeros(P, dtype=torch.float64)
        alpha = torch.full((P, K), float("nan"), dtype=torch.float64)
        modes = ["stopped"] * P
        if moving.numel():
            d, a, m, md = epo_directions(F[moving], J[moving], r[moving], eps=self.eps, relax=self.relax, name=self.name)
            done = d.abs().amax(dim=1) < self.grad_tol  # official: ||d_nd||_∞ < grad_tol → stop
            factor = 10.0 * m.clamp_min(0.1) if self.step_rule else torch.ones_like(m)  # 10·max(μ, 0.1)
            D[moving] = torch.where(done[:, None], torch.zeros_like(d), d * factor.to(d)[:, None])
            self.stopped[moving[done]] = True
            mu[moving], alpha[moving] = m, a
            for i, p in enumerate(moving.tolist()):
                modes[p] = "stopped" if bool(done[i]) else md[i]
        self.last_mu, self.last_alpha, self.last_modes, self.last_directions = mu, alpha, modes, D
        return D

    def adapt_preferences(self, X: Tensor, F: Tensor, preferences: Tensor | None, t: int) -> Tensor | None:
        """Move every stopped solution with tour left to its next preference (a warm start from where it stopped)."""
        if not self.tour or preferences is None or self.stopped is None:
            return None
        switch = self.stopped & (self.stage < len(self.tour))  # (P,)
        if not bool(switch.any()):
            return None
        new = preferences.clone()
        for p in switch.nonzero().flatten().tolist():
            stage = int(self.stage[p]) + 1
            new[p] = self.tour[stage - 1][p].to(new)
            self.stage[p] = stage
            self.stopped[p] = False
            self.switches.append((t, p, stage))
        return new
