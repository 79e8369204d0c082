r"""FORUM — a first-order multi-gradient algorithm for multi-objective bi-level optimisation.

Paper: F. Ye, B. Lin, X. Cao, Y. Zhang, I. Tsang, "A First-Order Multi-Gradient Algorithm for
Multi-Objective Bi-Level Optimization", ECAI 2024 (arXiv 2401.09257). Official code:
github.com/Baijiong-Lin/FORUM, ``LibMTL/trainer.py`` (``train_FORUM``, ``UL_alpha``), README (flags
``--rho 0.1 --eta 0.1 --inner_step 5``), ``LibMTL/config.py`` (their defaults).

Update rule:
    The multi-task bi-level problem of MOML (the weights :math:`\mathrm{softmax}(\alpha)` weigh the
    training losses of the lower level, the K validation losses :math:`F_i` are the upper objectives),
    rewritten with the value function as one constrained multi-objective problem in
    :math:`z = (\alpha, \omega)`, where :math:`w_{\mathrm{d}}` is the loop's weight decay (D5):

    .. math::

        \min_{z}\ \big( F_1(\omega), \dots, F_K(\omega) \big) \quad \text{s.t.} \quad
        q(z) = f(\alpha, \omega) - \min_{\omega'} f(\alpha, \omega') \le 0, \qquad
        f(\alpha, \omega) = \sum_{i=1}^{K} \mathrm{softmax}(\alpha)_i\, f_i^{\mathrm{tr}}(\omega) + \tfrac{1}{2} w_{\mathrm{d}} \lVert \omega \rVert^2

    One outer step (``train_FORUM``; equation numbers are the paper's). The lower-level minimum is
    approximated by :math:`\omega_T`, T steps of SGD (learning rate :math:`\eta`) on
    :math:`f(\alpha, \cdot)` from :math:`\omega`, not differentiated through; the upper gradients are
    normalised and have no :math:`\alpha` part (a zero one stays zero, D2):

    .. math::

        \nabla q = \nabla_z f(\alpha, \omega) - \begin{bmatrix} \nabla_\alpha f(\alpha, \omega_T) \\ 0 \end{bmatrix}, \qquad
        \nabla F_i = \begin{bmatrix} 0 \\ \nabla_\omega F_i / \lVert \nabla_\omega F_i \rVert \end{bmatrix}, \qquad
        \pi_i = \rho - \frac{\langle \nabla q, \nabla F_i \rangle}{\lVert \nabla q \rVert^2}

    Problem (14), a QP in :math:`w \in \mathbb{R}^{K+1}` with :math:`A` the K + 1 rows
    :math:`\nabla F_1, \dots, \nabla F_K, \nabla q`, solved exactly (D1):

    .. math::

        \min_{w \ge 0}\ \lVert A^\top w \rVert^2 - w_{K+1}\, \rho \lVert \nabla q \rVert^2 \quad \text{s.t.} \quad
        \sum_{i=1}^{K} w_i = 1, \qquad w_{K+1} \ge \sum_{i=1}^{K} w_i \pi_i

    Its first K weights are averaged over steps (:math:`\lambda` starts at 0, so :math:`\lambda = w`
    in the first epoch; :math:`e` is the 0-based epoch, D7), and problem (12) gives the joint
    direction, applied to :math:`\alpha` by Adam (learning rate 1e-3) and to :math:`\omega` by plain
    SGD with the loop's learning rate :math:`\gamma` (D4; the loop takes no other model step):

    .. math::

        \lambda \leftarrow \lambda + \beta (w_{1:K} - \lambda), \quad \beta = (e + 1)^{-3/4}, \qquad
        \nu = \max\Big( \sum_{i=1}^{K} \lambda_i \pi_i,\ 0 \Big), \qquad
        d = \sum_{i=1}^{K} \lambda_i \nabla F_i + \nu \nabla q

    .. math::

        \alpha \leftarrow \operatorname{Adam}(\alpha;\ d_\alpha), \qquad \omega \leftarrow \omega - \gamma\, d_\omega

    Why :math:`\langle d, \nabla q \rangle \ge \rho \lVert \nabla q \rVert^2` for any :math:`\lambda` on
    the simplex: with :math:`s = \langle \sum_i \lambda_i \nabla F_i, \nabla q \rangle / \lVert \nabla q \rVert^2`,
    :math:`\sum_i \lambda_i \pi_i = \rho - s`, so
    :math:`\langle d, \nabla q \rangle = (s + \nu) \lVert \nabla q \rVert^2 \ge \rho \lVert \nabla q \rVert^2`:
    the step decreases the constraint q at rate :math:`\rho \lVert \nabla q \rVert^2`. When
    :math:`\nabla q = 0`, :math:`\pi_i = \rho` (the official code's value).

The QP (problem (14)) is solved exactly by :func:`forum_qp_weights`: it is a convex QP in K + 1
variables with one equality and K + 2 inequalities; the solver enumerates active sets (free
variables, and whether :math:`w_{K+1} \ge \sum_i w_i \pi_i` is active), solves each face's KKT system (Ruiz-equilibrated LU, with
iterative refinement), and returns the first point meeting every KKT condition — optimal because
the problem is convex — after certifying it with per-row tolerances; it raises
:class:`~reference_impls.core.solvers.SolverError` when no face certifies. It works in
:math:`v = \lVert \nabla q \rVert\, w_{K+1}` on :math:`\hat q = \nabla q / \lVert \nabla q \rVert`, so that
‖∇q‖ from 1e-150 to 1e150 next to the unit :math:`\nabla F_i` stays well scaled
(:math:`w_{K+1} \sim 1/\lVert \nabla q \rVert` near convergence). It is not a min-norm problem:
eliminating :math:`w_{K+1}` (its optimum is :math:`\max(0, \sum_i w_i \pi_i)`, see the tests) leaves
:math:`\lVert P u \rVert^2 + \rho \langle u, \nabla q \rangle` (:math:`u = \sum_i w_i \nabla F_i`, P the
projection orthogonal to ∇q) where :math:`\sum_i w_i \pi_i \ge 0` and :math:`\lVert u \rVert^2` elsewhere:
a linear term in w, which no min-norm or dual-cone problem has.

Defaults (source): ρ = 0.1, η = 0.1, T = 5 (README for NYUv2/Office; ``config.py``); α initialised to
the constant 1/K (``UL_alpha``), outer optimiser Adam lr 1e-3 (``_prepare_optimizer``).

Interface: a :class:`~reference_impls.core.loss_weighting.BilevelLossWeighting` with ``moves_model =
True``: ``outer_step`` updates α and the params in place. ``weights`` returns softmax(α) (the
lower-level weights). ``last`` holds the quantities of the last step (∇q, π, w, λ, ν, d, q).

Degenerate inputs: non-finite training or validation losses (also inside the T inner steps) raise
:class:`~reference_impls.core.aggregator.NonFiniteError` naming the method, the split and the task;
∇q = 0 (ω already minimises f(α, ·) and its minimum is flat in α): the constraint gives no direction,
:math:`\pi_i = \rho` (the official code's value, from its +1e-8), the QP reduces to the min-norm problem
of the :math:`\nabla F_i` (:func:`~reference_impls.core.solvers.min_norm_weights`) and ν∇q = 0; a zero
:math:`\nabla_\omega F_i` stays zero; K = 1 works (softmax is constant: :math:`d_\alpha = 0`, λ = 1).

Deviations:
    D1. The QP is solved by the certified active-set enumeration above instead of cvxpy (whose status
        the official code does not check); the official code also passes the matrix square root of
        AAᵀ through an eigen-decomposition, which we do not need.
    D2. No +1e-8 in the normalisation of :math:`\nabla_\omega F_i` and in :math:`\lVert \nabla q \rVert^2`
        (a zero vector stays zero; :math:`\nabla q = 0` is handled as stated above).
    D3. The upper objectives are the validation losses given by the loop; the official code draws a
        second batch of the *training* split for the upper level.
    D4. ω moves by plain SGD with the loop's lr; the official code gives :math:`d_\omega` to the model
        optimiser (Adam, lr 1e-4, weight decay 1e-5 in LibMTL's config).
    D5. The lower level includes the loop's L2 term ½·wd·‖ω‖² (the ridge of ``bilevel-ridge``), in q and
        in the T inner steps; the official inner SGD has weight_decay 0.
    D6. The official inner loop stops early when f > 1e5; we raise on non-finite losses instead.
    D7. The epoch counter e of β comes from ``on_epoch_end`` (one epoch per step on full-batch toys).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import BilevelLossWeighting
from reference_impls.core.solvers import KAPPA, SolverError, gramian64, min_norm_point
from reference_impls.loss_balancing.moml import check_losses

_EPS64 = float(np.finfo(np.float64).eps)
MAX_TASKS_QP = 14  # the active-set enumeration visits at most 2^(K+2) faces


def forum_qp_weights(M, rho: float, *, eps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solve FORUM's problem (14) from the Gramian M = AAᵀ (K+1, K+1) of A = [∇F_1; …; ∇F_K; ∇q].

    min_{w ≥ 0} wᵀMw − w_{K+1}·ρ·M_{K+1,K+1}  s.t.  Σ_{i≤K} w_i = 1,  w_{K+1} ≥ Σ_{i≤K} w_i π_i,
    with π_i = ρ − M_{i,K+1}/M_{K+1,K+1}. Returns (w (K+1,), π (K,)) as float64 numpy arrays.

    Certificate (checked): w ≥ 0, Σ_{i≤K} w_i = 1, w_{K+1} − πᵀw_{1:K} ≥ −tol, and the KKT stationarity
    (2Mw + c)_j = μ·e_j + ξ·g_j + η_j with η_j ≥ 0, η_j w_j = 0, ξ ≥ 0, ξ·(w_{K+1} − πᵀw_{1:K}) = 0, each
    row j to a tolerance κ·(K+1)·ε·(its own magnitude), all in the scaled variable v = ‖∇q‖·w_{K+1}.
    Raises SolverError when no face certifies.
    """
    Q, eps_in = gramian64(M)
    eps = max(eps_in, eps or 0.0, _EPS64)
    K1 = Q.shape[0]
    K = K1 - 1
    if K < 1:
        raise ValueError(f"forum: the Gramian must be (K+1, K+1) with K >= 1, got {Q.shape}")
    if K > MAX_TASKS_QP:
        raise ValueError(f"forum: the exact QP solver enumerates 2^(K+2) faces; K = {K} > {MAX_TASKS_QP} is not supported")
    a = float(Q[K, K])  # ‖∇q‖²
    if a <= 0.0:  # ∇q = 0: π_i = ρ, the w_{K+1} terms vanish; w_{1:K} is the min-norm point of the ∇F_i
        w = np.zeros(K1)
        w[:K] = min_norm_point(Q[:K, :K], eps)
        w[K] = rho  # any w_{K+1} ≥ ρ is optimal; the smallest feasible one
        return w, np.full(K, float(rho))
    pi = rho - Q[:K, K] / a  # (K,)
    # Solved in v = ‖∇q‖·w_{K+1} on the unit vector q̂ = ∇q/‖∇q‖: when ∇q is small next to the unit
    # ∇F_i (near convergence), w_{K+1} ~ 1/‖∇q‖ and the problem in w_{K+1} is badly scaled; in v all
    # entries are O(1). Objective ‖Σw_i∇F_i + v q̂‖² − v·ρ‖∇q‖, constraint v ≥ ‖∇q‖·πᵀw = ρ‖∇q‖ − ⟨Σw_i∇F_i, q̂⟩.
    r = float(np.sqrt(a))  # ‖∇q‖
    S = Q.copy()
    S[:K, K] = S[K, :K] = Q[:K, K] / r  # ⟨∇F_i, q̂⟩
    S[K, K] = 1.0
    top = max(float(np.max(np.diag(S))), rho * r)  # objective scale: quadratic terms and the linear one
    Qs = 2.0 * S / top  # Hessian of the objective, scaled: same minimiser
    c = np.zeros(K1)
    c[K] = -rho * r / top  # linear term −ρ‖∇q‖·v, scaled
    e = np.ones(K1)
    e[K] = 0.0  # Σ_{i≤K} w_i = 1
    g = np.append(S[:K, K] - rho * r, 1.0)  # gᵀz = v − ‖∇q‖πᵀw ≥ 0  (‖∇q‖π_i = ρ‖∇q‖ − ⟨∇F_i, q̂⟩)
    norms = np.sqrt(np.maximum(np.diag(Qs), 0.0))  # √2·‖row j‖/√top, (K+1,)

    best = None
    for size in range(K1, 0, -1):  # large faces first: interior solutions are the common case
        for free in itertools.combinations(range(K1), size):
            if not any(j < K for j in free):
                continue  # Σ_{i≤K} w_i = 1 needs a free task weight
            for active in (False, True):
                sol = _face_kkt(Qs, c, e, g, list(free), active)
                if sol is None:
                    continue
                w, mu, xi = sol
                if _kkt_violation(Qs, c, e, g, w, mu, xi, norms, eps) is None:
                    best = (w, mu, xi)
                    break
            if best is not None:
                break
        if best is not None:
            break
    if best is None:
        raise SolverError(f"forum: no face of the QP (14) satisfies the KKT conditions (K = {K}, ρ = {rho}, ‖∇q‖² = {a:.3e})")
    w = best[0].copy()
    w[K] = w[K] / r  # back from v = ‖∇q‖·w_{K+1}
    return w, pi


def _face_kkt(Q, c, e, g, free: list[int], active: bool):
    """KKT point of the face {w_j = 0 for j ∉ free} (and gᵀw = 0 when ``active``): (w, μ, ξ) or None."""
    n = len(free)
    m = n + 1 + int(active)
    Kmat = np.zeros((m, m))
    rhs = np.zeros(m)
    F = np.array(free)
    Kmat[:n, :n] = Q[np.ix_(F, F)]
    Kmat[:n, n] = -e[F]  # −μ e_j
    Kmat[n, :n] = e[F]
    rhs[:n] = -c[F]
    rhs[n] = 1.0
    if active:
        Kmat[:n, n + 1] = -g[F]  # −ξ g_j
        Kmat[n + 1, :n] = g[F]
    with np.errstate(all="ignore"):  # a nearly singular face may overflow: it then fails the checks below
        solve = _linear_solver(Kmat)
        sol = solve(rhs)
        for _ in range(2):  # iterative refinement: a residual at the rounding of each row's own terms
            sol = sol + solve(rhs - Kmat @ sol)
        if not np.all(np.isfinite(sol)):
            return None
        scale = np.abs(Kmat) @ np.abs(sol) + np.abs(rhs)  # rounding bound of each row
        if not np.all(np.abs(Kmat @ sol - rhs) <= 1e3 * _EPS64 * m * scale):
            return None  # the face's KKT system is inconsistent
    w = np.zeros(Q.shape[0])
    w[F] = sol[:n]
    mu = float(sol[n])
    xi = float(sol[n + 1]) if active else 0.0
    return w, mu, xi


def _linear_solver(Kmat: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """x ↦ Kmat⁻¹x on the Ruiz-equilibrated matrix D_r Kmat D_c (a large ‖∇q‖ puts entries of size
    ρ‖∇q‖ next to O(1) ones; scaling rows and columns by powers of two is exact), by LU when it is
    regular and by least squares for singular faces (collinear gradients), whose consistency the
    caller checks."""
    m = Kmat.shape[0]
    dr, dc = np.ones(m), np.ones(m)
    B = Kmat.copy()
    for _ in range(8):  # Ruiz: divide each row and column by the square root of its largest entry
        r = np.sqrt(np.abs(B).max(axis=1))
        c = np.sqrt(np.abs(B).max(axis=0))
        r = np.exp2(np.round(np.log2(np.where(r > 0, r, 1.0))))  # powers of two: no rounding
        c = np.exp2(np.round(np.log2(np.where(c > 0, c, 1.0))))
        B = B / r[:, None] / c[None, :]
        dr, dc = dr / r, dc / c
    try:
        np.linalg.solve(B, np.zeros(m))  # raises on an exactly singular matrix
        return lambda b: dc * np.linalg.solve(B, dr * b)
    except np.linalg.LinAlgError:
        return lambda b: dc * np.linalg.lstsq(B, dr * b, rcond=None)[0]


def _kkt_violation(Q, c, e, g, w, mu, xi, norms, eps) -> str | None:
    """None when (w, μ, ξ) satisfies the KKT conditions of the QP to per-row tolerances, else a message."""
    tol_scale = KAPPA * Q.shape[0] * eps
    S = float(np.abs(w) @ norms)  # rounding bound of Aᵀw (scaled)
    if w.min() < -tol_scale * (1.0 + np.abs(w).max()):
        return f"negative weight {w.min():.3e}"
    w = np.maximum(w, 0.0)
    if abs(float(e @ w) - 1.0) > tol_scale:
        return f"Σw_i = {float(e @ w)!r} ≠ 1"
    gw = float(g @ w)
    g_tol = tol_scale * (float(np.abs(g) @ w) + 1.0)
    if gw < -g_tol:
        return f"constraint w_K+1 ≥ Σw_iπ_i violated by {-gw:.3e}"
    if xi < -tol_scale * (1.0 + abs(xi)):
        return f"negative multiplier ξ = {xi:.3e}"
    if xi > 0 and xi * gw > g_tol * (abs(xi) + 1.0):
        return "complementarity of ξ violated"
    r = Q @ w + c - mu * e - xi * g  # = η ≥ 0, with η_j = 0 where w_j > 0
    # each row to the rounding of its own terms: Σ_l |Q_jl| w_l + |c_j| + |μ| e_j + |ξ| |g_j|
    tol = tol_scale * (np.abs(Q) @ w + norms * S + np.abs(c) + abs(mu) * np.abs(e) + abs(xi) * np.abs(g) + 1e-300)
    if np.any(r < -tol):
        j = int(np.argmin(r + tol))
        return f"dual infeasible at {j}: {r[j]:.3e}"
    pos = w > 0
    if np.any(np.abs(r[pos]) > tol[pos]):
        return "stationarity violated on the support"
    return None


def forum_direction(
    grad_q: Tensor, grads_F: Tensor, lam: Tensor, rho: float
) -> tuple[Tensor, float, Tensor]:
    """Problem (12): (d = Σ_i λ_i ∇F_i + ν∇q (p,), ν = max(Σ_i λ_i π_i, 0), π (K,)).

    ``grad_q`` (p,) and ``grads_F`` (K, p) live in the joint space z = (α, ω); λ (K,) on the simplex.
    """
    a = float(grad_q.double() @ grad_q.double())  # ‖∇q‖²
    if a > 0:
        pi = rho - (grads_F.double() @ grad_q.double()) / a  # (K,)
    else:
        pi = torch.full((grads_F.shape[0],), float(rho), dtype=torch.float64)  # ∇q = 0: the official code's π_i = ρ
    nu = max(float(lam.double() @ pi), 0.0)  # ν = max(Σλ_iπ_i, 0)
    d = lam.to(grads_F) @ grads_F + nu * grad_q  # (p,)
    return d, nu, pi


class FORUM(BilevelLossWeighting):
    """Joint (α, ω) step d = Σλ_i∇F_i + ν∇q that decreases the value-function constraint q at rate ρ‖∇q‖²."""

    name = "forum"
    moves_model = True

    def __init__(
        self,
        num_tasks: int | None = None,
        rho: float = 0.1,
        eta: float = 0.1,
        inner_steps: int = 5,
        outer_lr: float = 1e-3,
        outer_optimizer: str = "adam",
    ) -> None:
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"forum: num_tasks must be >= 1, got {num_tasks}")
        if not rho > 0:
            raise ValueError(f"forum: rho must be > 0, got {rho}")
        if not eta > 0:
            raise ValueError(f"forum: eta must be > 0, got {eta}")
        if int(inner_steps) < 1:
            raise ValueError(f"forum: inner_steps must be >= 1, got {inner_steps}")
        if not outer_lr > 0:
            raise ValueError(f"forum: outer_lr must be > 0, got {outer_lr}")
        if outer_optimizer not in ("adam", "sgd"):
            raise ValueError(f"forum: outer_optimizer must be 'adam' or 'sgd', got {outer_optimizer!r}")
        self.num_tasks = None if num_tasks is None else int(num_tasks)
        self.rho, self.eta, self.inner_steps = float(rho), float(eta), int(inner_steps)
        self.outer_lr, self.outer_optimizer = float(outer_lr), outer_optimizer
        self.alpha: Tensor | None = None
        self.lam: Tensor | None = None  # the averaged QP weights λ (K,), 0 at start (official lambda_buffer)
        self._optimizer: torch.optim.Optimizer | None = None
        self.epoch = 0
        self.last: dict[str, Any] = {}
        if self.num_tasks is not None:
            self._init(self.num_tasks)

    # -- state -------------------------------------------------------------------------------
    def _init(self, K: int) -> None:
        self.num_tasks = K
        self.alpha = torch.full((K,), 1.0 / K, dtype=torch.float64, requires_grad=True)  # UL_alpha: constant 1/K
        self.lam = torch.zeros(K, dtype=torch.float64)
        if self.outer_optimizer == "adam":
            self._optimizer = torch.optim.Adam([self.alpha], lr=self.outer_lr)
        else:
            self._optimizer = torch.optim.SGD([self.alpha], lr=self.outer_lr)

    def _ensure(self, K: int) -> Tensor:
        if self.alpha is None:
            self._init(K)
        if K != self.num_tasks:
            raise ValueError(f"forum was built for {self.num_tasks} tasks but got {K} losses")
        assert self.alpha is not None
        return self.alpha

    def reset(self) -> None:
        if self.num_tasks is not None:
            self._init(self.num_tasks)
        self.epoch = 0
        self.last = {}

    # -- LossWeighting -----------------------------------------------------------------------
    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        losses = check_losses(losses.reshape(-1), self.name, "training")
        alpha = self._ensure(losses.numel())
        return torch.softmax(alpha.detach(), dim=0).to(losses)  # λ_LL = softmax(α), (K,)

    def on_epoch_end(self, epoch: int) -> None:
        self.epoch = int(epoch) + 1  # β = (e + 1)^{−3/4} with e the current (0-based) epoch

    # -- the outer step ------------------------------------------------------------------------
    def _lower(self, alpha: Tensor, params: Sequence[Tensor], train_losses_at, weight_decay: float, split: str) -> Tensor:
        train = check_losses(train_losses_at(params).reshape(-1), self.name, split)  # (K,)
        value = (torch.softmax(alpha, dim=0).to(train) * train).sum()  # f(α, ω) = Σ softmax(α)_i f_i^tr(ω)
        if weight_decay:
            value = value + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params)  # + ½·wd·‖ω‖² (D5)
        return value

    def gradients(
        self,
        params: Sequence[Tensor],
        train_losses_at: Callable[[Sequence[Tensor]], Tensor],
        val_losses_at: Callable[[Sequence[Tensor]], Tensor],
        weight_decay: float = 0.0,
    ) -> tuple[Tensor, Tensor, float, Tensor]:
        """ω_T, ∇q and the normalised ∇F_i of the update rule, in z = (α, ω).

        Returns (∇q (K+p,), ∇F (K, K+p) normalised, q = f(α, ω) − f(α, ω_T), val losses (K,)).
        """
        params = list(params)
        with torch.no_grad():
            K = train_losses_at(params).reshape(-1).numel()
        alpha = self._ensure(K)
        a = alpha.detach().requires_grad_(True)
        f = self._lower(a, params, train_losses_at, weight_decay, "training")  # f(α, ω)
        g_f = torch.autograd.grad(f, [a, *params])  # ∇_z f(α, ω)
        # 1. ω_T: T SGD steps on f(α, ·), α fixed, no graph kept
        inner = [p.detach().clone().requires_grad_(True) for p in params]
        a_fixed = a.detach()
        for _ in range(self.inner_steps):
            value = self._lower(a_fixed, inner, train_losses_at, weight_decay, "training (inner step)")
            grads = torch.autograd.grad(value, inner)
            with torch.no_grad():
                inner = [(w - self.eta * gw).requires_grad_(True) for w, gw in zip(inner, grads, strict=True)]  # ω ← ω − η∇_ω f
        inner = [w.detach() for w in inner]
        f_T = self._lower(a, inner, train_losses_at, weight_decay, "training (inner solution)")  # f(α, ω_T)
        (g_fT_alpha,) = torch.autograd.grad(f_T, [a])  # ∇_α f(α, ω_T)
        q = float(f.detach() - f_T.detach())  # q(z) = f(α, ω) − f(α, ω_T)
        # 2. ∇q = ∇_z f(α, ω) − [∇_α f(α, ω_T); 0]
        flat = [gi.reshape(-1).to(torch.float64) for gi in g_f]
        grad_q = torch.cat([flat[0] - g_fT_alpha.to(torch.float64), *flat[1:]])  # (K + p,)
        # 3. ∇F_i = [0; ∇_ω F_i / ‖∇_ω F_i‖]
        val = check_losses(val_losses_at(params).reshape(-1), self.name, "validation")  # (K,)
        rows = []
        for k in range(K):
            gk = torch.autograd.grad(val[k], params, retain_graph=k + 1 < K, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if x is None else x).reshape(-1).to(torch.float64) for p, x in zip(params, gk, strict=True)]))
        G = torch.stack(rows)  # (K, p)
        norms = G.norm(dim=1, keepdim=True)  # (K, 1)
        G = torch.where(norms > 0, G / torch.where(norms > 0, norms, torch.ones_like(norms)), G)  # a zero row stays zero (D2)
        grads_F = torch.cat([torch.zeros(K, K, dtype=torch.float64), G], dim=1)  # (K, K + p)
        return grad_q, grads_F, q, val.detach()

    def direction(self, grad_q: Tensor, grads_F: Tensor) -> Tensor:
        """The rest of the update rule, after the gradients: QP (14), the λ average, ν, and d (K + p,)."""
        K = grads_F.shape[0]
        self._ensure(K)
        A = torch.cat([grads_F, grad_q[None]], dim=0).to(torch.float64)  # (K+1, K+p)
        if not bool(torch.isfinite(A).all()):
            raise NonFiniteError("forum: the gradients of q or of the upper objectives are not finite")
        w, _ = forum_qp_weights(A @ A.T, self.rho)  # (K+1,) certified
        beta = (self.epoch + 1) ** (-0.75)  # (e + 1)^{−3/4}
        assert self.lam is not None
        self.lam = self.lam + beta * (torch.from_numpy(w[:K]) - self.lam)  # λ ← λ + β(w − λ)
        d, nu, pi = forum_direction(grad_q, grads_F, self.lam, self.rho)
        self.last.update(w=w, lam=self.lam.clone(), nu=nu, pi=pi, direction=d, grad_q=grad_q, grads_F=grads_F)
        return d

    def outer_step(
        self,
        params: Sequence[Tensor],
        train_losses: Callable[[], Tensor],
        val_losses: Callable[[], Tensor],
        lr: float,
        *,
        train_losses_at: Callable[[Sequence[Tensor]], Tensor],
        val_losses_at: Callable[[Sequence[Tensor]], Tensor],
        weight_decay: float = 0.0,
        optimizer: Any = None,
        step: int = 0,
    ) -> None:
        params = list(params)
        grad_q, grads_F, q, val = self.gradients(params, train_losses_at, val_losses_at, weight_decay)
        d = self.direction(grad_q, grads_F)
        K = grads_F.shape[0]
        self.last.update(q=q, val_losses=val)
        assert self.alpha is not None and self._optimizer is not None
        self._optimizer.zero_grad(set_to_none=True)
        self.alpha.grad = d[:K].to(self.alpha).clone()  # α: gradient d_α
        self._optimizer.step()
        with torch.no_grad():
            offset = K
            for p in params:
                p.sub_(float(lr) * d[offset : offset + p.numel()].reshape(p.shape).to(p))  # ω ← ω − lr·d_ω
                offset += p.numel()


__all__ = ["FORUM", "MAX_TASKS_QP", "forum_direction", "forum_qp_weights"]
