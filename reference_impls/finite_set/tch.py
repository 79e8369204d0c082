r"""Tchebycheff scalarisation (id ``tch``): the other baseline every preference-vector paper compares with.

Each solution p minimises its own weighted Tchebycheff function (Bowman 1976; Miettinen,
Nonlinear Multiobjective Optimization, 1999, §3.4) of the losses measured from the ideal point z.
Unlike linear scalarisation it reaches every point of a concave front: for a positive preference
its minimisers over a connected front are the front points on the ray from z along 1/r (the ray
EPO, Mahapatra & Rajan 2020, targets; ``target_rays``). Filed with "Pareto Multi-Task Learning"
(Lin et al., NeurIPS 2019), like ``ls``: the preference-vector papers (ParetoMTL, EPO, PMGDA,
FERERO, UMOD) compare with both.

Update rule:
    Solution :math:`p` at :math:`x_p`, with preference :math:`r_p \ge 0` scaled onto the simplex
    and ideal point :math:`z`, takes a subgradient step on its Tchebycheff function:

    .. math::

        \hat r_p = \frac{r_p}{\sum_i r_{p,i}}, \qquad g_p(x) = \max_{1 \le i \le K} \hat r_{p,i}\,\big(f_i(x) - z_i\big)

    The active set :math:`A_p` holds the positive-weight terms within a band :math:`\tau_p` of the
    largest (:math:`\epsilon` is the dtype's machine epsilon; ``tie_tol`` defaults to 1e-3, D2):

    .. math::

        A_p = \left\{ i : \hat r_{p,i} > 0,\ \hat r_{p,i}(f_i - z_i) \ge g_p(x_p) - \tau_p \right\}, \qquad \tau_p = \mathrm{tie\_tol}\,\lvert g_p(x_p) \rvert + 64\,\epsilon \sum_i \hat r_{p,i}\big(\lvert f_i \rvert + \lvert z_i \rvert\big)

    One active term :math:`i` gives :math:`\tilde D_p = \hat r_{p,i} \nabla f_i(x_p)`; a tie gives
    the min-norm element of the active terms' weighted gradients (the steepest-descent direction of
    :math:`g_p` at an exact tie, solved by the KKT-certified ``min_norm_weights``):

    .. math::

        \lambda^\star = \arg\min_{\lambda \in \Delta^{|A_p|}} \left\lVert \sum_{i \in A_p} \lambda_i\, \hat r_{p,i} \nabla f_i(x_p) \right\rVert^2, \qquad \tilde D_p = \sum_{i \in A_p} \lambda^\star_i\, \hat r_{p,i} \nabla f_i(x_p)

    With ``halve_on_flip`` (default, D3) a per-solution multiplier :math:`s_p \in (0, 1]`, starting
    at 1, is halved when the single active index changed since the previous step and doubled (up
    to 1) at a tie, and otherwise left as it is (halving needs a single active index at both
    steps). The direction handed to the runner's optimiser (the problem's default; with plain
    SGD, :math:`x_p \leftarrow x_p - \eta D_p`) is

    .. math::

        D_p = s_p\, \tilde D_p

Ideal point z: the problem's ideal point when the runner passes ``begin(ideal=...)`` (min of each
objective over the analytic front); otherwise (D1) a running minimum of each objective over every
loss vector the method has seen, minus a margin 0.1·(spread of that objective over the initial set),
or 0.1·|min| when the spread is 0, or 1e-3 when both are 0 (so z stays strictly below the
values reached and every term stays positive).

All single-active solutions are handled in one batched gather; only tied solutions loop (each
needs its own min-norm solve).

Preferences: rows of non-negative entries with a positive entry (ValueError otherwise). A zero
entry drops that objective from the max (a weakly Pareto-optimal limit; its target ray is then the
limit of 1/r, the axis of the zero entries, normalised). K = 1: plain gradient descent on the one
loss. Duplicate rows: equal directions.

Deviations:
    D1. When no ideal point is given, z is a running minimum of each objective over every loss vector
        seen, minus a margin (0.1 times the objective's spread over the initial set, or 0.1 times the
        minimum's magnitude when the spread is 0, or 1e-3 when both are 0); libmoon and MOEA/D also
        use running minima, with their own margins.
    D2. ``tie_tol`` > 0 treats terms within a relative band of the maximum as tied (an ε-subgradient
        steepest-descent step). With a constant step a plain subgradient (exact ties only) zigzags
        across the kink where the two weighted terms are equal, with an amplitude ∝ the step;
        within the band the direction slides along the kink, so the limit is Pareto optimal and
        its terms agree to within ``tie_tol`` (relative). ``tie_tol=0`` gives the plain
        subgradient (ties up to rounding).
    D3. A step-size rule folded into D (``halve_on_flip``, default on): each solution has a
        multiplier s ∈ (0, 1], D ← s·D; s is halved when the single active term changed from the
        previous step (the step jumped over the kink) and doubled (up to 1) at every tied step.
        Without it a constant step leaves a 2-cycle around the kink (measured on biquad,
        r = (½, ½), SGD lr 0.05: the first coordinate of x alternates 0.487 / 0.513, f off the ray
        point by 0.013); with it the same run ends 1e-4 from the ray point, Pareto optimal. Adam
        largely undoes a rescaled D (its step is ~scale-free), so the rule helps SGD runs most.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod, check_preferences
from reference_impls.core.solvers import min_norm_weights


class TCH(SetMethod):
    """Subgradient descent on max_i r̂_pi (f_i − z_i) for each solution p (min-norm element at ties)."""

    name = "tch"
    needs_preferences = True
    stateful = True  # the fallback ideal point is a running minimum

    def __init__(self, tie_tol: float = 1e-3, halve_on_flip: bool = True) -> None:
        if not (tie_tol >= 0 and tie_tol < 1):
            raise ValueError(f"tch: tie_tol must be in [0, 1), got {tie_tol}")
        self.tie_tol = float(tie_tol)
        self.halve_on_flip = bool(halve_on_flip)
        self.reset()

    def reset(self) -> None:
        self._last: Tensor | None = None  # (P,) the single active index at the previous step (−1: a tie)
        self._scale: Tensor | None = None  # (P,) step multipliers s_p (D3)
        self.ideal: Tensor | None = None  # the given ideal point (K,)
        self._running_min: Tensor | None = None  # (K,) fallback: min of every F seen
        self._margin: Tensor | None = None  # (K,)

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self.reset()
        if ideal is not None:
            ideal = torch.as_tensor(ideal, dtype=F0.dtype, device=F0.device).reshape(-1)
            if ideal.shape[0] != F0.shape[1] or not bool(torch.isfinite(ideal).all()):
                raise ValueError(f"tch: the ideal point must be finite with K={F0.shape[1]} entries, got {tuple(ideal.shape)}")
            self.ideal = ideal
        else:
            self._see(F0)

    def update(self, new_F: Tensor) -> None:
        if self.ideal is None:
            self._see(new_F)

    def _see(self, F: Tensor) -> None:
        low = F.detach().min(0).values  # (K,)
        if self._running_min is None:
            spread = F.detach().max(0).values - low  # (K,)
            margin = torch.where(spread > 0, 0.1 * spread, 0.1 * low.abs())
            self._margin = torch.where(margin > 0, margin, torch.full_like(margin, 1e-3))
            self._running_min = low
        else:
            self._running_min = torch.minimum(self._running_min, low)

    def reference_point(self, F: Tensor) -> Tensor:
        """z (K,): the given ideal point, else the running minimum (including F) minus the margin (D1)."""
        if self.ideal is not None:
            return self.ideal.to(F)
        self._see(F)
        return (self._running_min - self._margin).to(F)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if preferences is None:
            raise ValueError("tch needs one preference vector per solution, got None")
        r = check_preferences(preferences, P, K, name="tch preferences").to(J)  # (P, K)
        r_hat = r / r.sum(1, keepdim=True)  # r̂ = r/Σr, (P, K)
        z = self.reference_point(F)  # (K,)
        terms = r_hat * (F - z)  # r̂_i (f_i − z_i), (P, K)
        top = terms.max(1).values  # (P,)
        eps = torch.finfo(J.dtype).eps
        band = self.tie_tol * top.abs() + 64 * eps * (r_hat * (F.abs() + z.abs())).sum(1)  # τ_p, (P,)
        active = terms >= (top - band)[:, None]  # A_p, (P, K)
        active &= r_hat > 0  # a zero-weight term is never the max unless all are 0 (then any is; keep the positive ones)
        weighted = r_hat[:, :, None] * J  # r̂_pi ∇f_i(x_p), (P, K, n)
        first = active.to(torch.int64).argmax(1)  # (P,) an active index
        D = weighted[torch.arange(P), first]  # single-active solutions: D_p = r̂_pi ∇f_i, (P, n)
        tied = active.sum(1) > 1  # (P,)
        for p in torch.nonzero(tied).flatten().tolist():  # ties: min-norm element
            G = weighted[p][active[p]]  # (|A_p|, n)
            lam = min_norm_weights(G @ G.T)  # λ ∈ Δ, certified
            D[p] = lam.to(G) @ G  # Σ_{i∈A_p} λ_i r̂_pi ∇f_i
        if self.halve_on_flip:
            current = torch.where(tied, torch.full_like(first, -1), first)  # (P,)
            if self._last is None or self._last.shape != current.shape:
                self._last, self._scale = current, torch.ones(P, dtype=J.dtype, device=J.device)
            flipped = (current >= 0) & (self._last >= 0) & (current != self._last)  # the kink was stepped over
            self._scale = torch.where(flipped, 0.5 * self._scale, self._scale)  # s_p ← s_p/2 (D3)
            self._scale = torch.where(tied, (2 * self._scale).clamp(max=1.0), self._scale)  # on the kink: s_p ← min(1, 2 s_p)
            self._last = current
            D = self._scale.to(D)[:, None] * D
        return D  # (P, n)

    def target_rays(self, preferences: Tensor) -> Tensor:
        """F − z ∝ 1/r̂ (r̂ ⊙ (F − z) ∝ 𝟙), normalised; rows with zero entries: the axis of the zero entries."""
        r = check_preferences(preferences, name="tch preferences").to(torch.float64)
        zero = r == 0  # (P, K)
        inv = torch.where(zero, torch.zeros_like(r), 1.0 / torch.where(zero, torch.ones_like(r), r))  # 1/r, (P, K)
        rays = torch.where(zero.any(1, keepdim=True), zero.to(r), inv)
        return rays / torch.linalg.vector_norm(rays, dim=1, keepdim=True)  # (P, K)
