r"""Many-objective multi-solution transport (id ``most``): P solutions share K objectives through an optimal transport.

Paper: Z. Li, T. Li, V. Smith, J. Bilmes, T. Zhou, "Many-Objective Multi-Solution Transport",
ICLR 2025, arXiv 2403.04099. Official code: github.com/tianyi-lab/MosT (``update.py``
``GlobalUpdate.update_weights``, ``zdt_moo.py``, ``zdt.sh``, ``synthetic.sh``, ``options.py``, ``ipot.py``).
The paper's method section was not reachable here (only its abstract, introduction and the OpenReview
reviews); the algorithm below follows the abstract, the reviews' description of the bi-level problem
(Eqs. 1-3: an OT lower level, a Γ-weighted MOO solved by MGDA per solution) and the official code,
read in full (see the deviations). Reconstructed: the exact form of the weighted MGDA step (D3).

Notation: the paper's n objectives and m solutions are K and P here; L is the K × P matrix of the
losses of every objective at every solution.

Update rule:
    One round of the bi-level problem (paper Eqs. 1-3) per ``step``, with
    :math:`L_{ip} = f_i(x_p)`. The transport gives every objective its mass :math:`a_i` (rows: no
    objective is ignored) and every solution its capacity :math:`b_p` (columns: no solution takes
    all objectives); by default :math:`a = \mathbb{1}_K`, :math:`b = \tfrac{K}{P}\mathbb{1}_P` (so
    :math:`P = 1` is exactly MGDA, D2). The cost is :math:`L` shifted per row by its minimum and
    divided by its total (same optimal plans, D5), and :math:`\lambda_{\mathrm{div}}` is
    ``diversity`` (official ``D_reg``, default 0):

    .. math::

        C_{ip} = \frac{L_{ip} - \min_q L_{iq}}{\sum_{j,q} (L_{jq} - \min_{q'} L_{jq'})}, \qquad \Gamma \in \arg\min_{\Gamma \in \Omega(a, b)} \langle \Gamma, C \rangle - \lambda_{\mathrm{div}} \sum_{i=1}^K \max_p \Gamma_{ip}, \qquad \Omega(a, b) = \{ \Gamma \in \mathbb{R}_{\ge 0}^{K \times P} : \Gamma \mathbb{1}_P = a,\ \Gamma^\top \mathbb{1}_K = b \}

    :math:`\lambda_{\mathrm{div}} = 0` is one exact certified LP (D1);
    :math:`\lambda_{\mathrm{div}} > 0` is conditional gradient over vertices from that plan (D6).
    Each solution then takes the min-norm (MGDA) step of the objectives it was sent, weighted by
    how much of each it carries (D3; :math:`S_p` is its support):

    .. math::

        S_p = \{ i : \Gamma_{ip} > 10^{-9} \}, \qquad \lambda_p = \arg\min_{\lambda \in \Delta^{|S_p|}} \left\lVert \sum_{i \in S_p} \lambda_i\, \Gamma_{ip} \nabla f_i(x_p) \right\rVert^2, \qquad D_p = \sum_{i \in S_p} \lambda_{p,i}\, \Gamma_{ip} \nabla f_i(x_p)

    (``direction="unweighted"``: :math:`D_p = \sum_{i \in S_p} \lambda_{p,i} \nabla f_i(x_p)`,
    the official variant; :math:`D_p = 0` when :math:`S_p = \emptyset`). :math:`D_p = 0` exactly
    when :math:`x_p` is Pareto-stationary for its transported objectives. The runner hands
    :math:`D_p` to the problem's optimiser (no run defaults are set here; with plain SGD,
    :math:`x_p \leftarrow x_p - \eta D_p`).

    Options. Few objectives (:math:`1 < K < P`, official ``zdt_moo.py``): the objectives are
    replaced once per run by :math:`K'` = ``augmented`` (25) random convex combinations
    :math:`f'_k = \sum_i W_{ki} f_i`, :math:`W_k \sim \operatorname{Dir}(\alpha \mathbb{1}_K)`
    (``dirichlet_alpha``, seeded), with gradients :math:`W J`. Curriculum (``curriculum=True``,
    official ``adjust_ab``), at solve :math:`t` with :math:`s_t = \mathrm{decay}^t`, from the
    clamped, normalised losses :math:`C^+ = \max(L, 0) / \sum \max(L, 0)`:

    .. math::

        a = (1 - s_t)\, a^{\mathrm{loss}} + s_t \mathbb{1}_K, \quad b = s_t\, b^{\mathrm{loss}} + (1 - s_t) \tfrac{K}{P} \mathbb{1}_P, \quad a^{\mathrm{loss}}_i \propto \min_p C^+_{ip}, \quad b^{\mathrm{loss}}_p \propto \sum_{k\text{ smallest}} C^+_{ip}

    (:math:`k = \lceil 0.1 K \rceil` smallest entries of column :math:`p`; both scaled to total mass
    :math:`K`, uniform where the sums vanish). Plan averaging (official ``Moving_Average``): after
    ``average_from`` solves, the MGDA step uses the running mean of the plans solved since then.
    ``alternate=True`` (D4) adds the official switch: the step is
    :math:`\tfrac{P}{K} \sum_i \Gamma_{ip} \nabla f_i(x_p)`, with the plan just solved (not the
    average), unless :math:`\langle \Gamma, L \rangle`
    is below its moving average (0.95/0.05), then the weighted MGDA step above (after augmentation
    :math:`K` counts the augmented objectives). :math:`K = 1`:
    :math:`D_p = \nabla f_1(x_p)`.

The transport solver is the exact LP (``reference_impls.core.lp.solve_lp``: HiGHS, its primal-dual
optimality certificate checked, SolverError otherwise); the marginals of the returned plan are
checked again here. When the marginals are unchanged, the previous step's plan is kept without an
LP if it is still certified optimal for the new cost (:func:`plan_is_optimal`: dual potentials on
its support with non-negative reduced costs, i.e. the LP optimality conditions); ``lp_solves`` /
``reused`` count both. The diversity regulariser rewards giving each objective to a single solution
(specialised, complementary solutions); the objective is concave, so conditional gradient with
exact line search moves from vertex to vertex of the transport polytope (each an exact, certified
LP with the linearised cost), never increases it, and stops at the first vertex it cannot improve.
Under the curriculum, solutions start with capacities set by their current fit and end balanced,
while the objectives' masses move towards the hard ones. ``last_plan`` is the plan solved at the
last step, ``plan`` the one used.

Defaults and their source: diversity = 0 (``options.py`` default, also what ``synthetic.sh`` runs),
curriculum off (``zdt.sh``: ``adjust_ab=0``, the toy setting; ``synthetic.sh`` leaves it on, decay
0.995 per round, top-k ratio 0.1), augmented = 25 and dirichlet_alpha = 1.0 (``zdt.sh``),
average_from = 100 (``options.py`` ``sma_start_iter``). The run's optimiser, step size and number of
steps are the problem's: the official ZDT loop takes one step of a freshly created Adam per round
(≈ lr·sign(g)), which the runner's persistent optimiser does not reproduce.

Behaviour on the clustered toy (``clusters``, m = 128, k = 5, unequal sizes): every objective is
served (its whole mass, every step) and the worst-served objective is far below equal-weight linear
scalarisation's, but the balanced capacities K/P and the stopping of MGDA once a solution lies in the
hull of its transported anchors leave solutions between clusters: 2, 2, 4 of 5 planted clusters
found on seeds 0-2 (tests/reference_impls/test_most.py).

Degenerate inputs: K = 1 → every solution descends the one loss (the plan is trivial); P = 1 → MGDA;
identical solutions → the transport still splits the objectives between them (any optimal vertex;
their directions then differ unless the gradients coincide); a solution with no transported
objective (capacity 0 under the curriculum) → zero direction; NaN/inf in F or J → ValueError.

Deviations:
    D1. Exact transport (certified LP) instead of the official IPOT (proximal point, β = 0.01,
        200 iterations, ``ipot.py``), which converges to the same exact plan but stops early and
        has dense, approximate marginals; the official plan is then renormalised to total mass P.
    D2. Scale of Γ: rows sum to 1 here (total mass K); the official code uses masses P/K per
        objective and 1 per solution (total mass P). A global factor, so only the step length
        changes; chosen so that P = 1 is exactly MGDA.
    D3. Direction: the min-norm element :math:`\sum_i \lambda_{p,i} \Gamma_{ip} \nabla f_i` of the
        weighted gradients (MGDA on the weighted objectives :math:`\Gamma_{ip} f_i`, as the abstract
        and reviews describe the upper level). The official code computes λ on the weighted local
        updates but moves along :math:`\sum_i \lambda_{p,i} \nabla f_i` (the unweighted ones);
        ``direction="unweighted"`` gives that variant. Both are 0 at the same (Pareto-stationary)
        points. The official code also drops objectives whose transported mass is ≤ 1e-8; here the
        support is a mass > 1e-9 (exact LP vertices have exact zeros).
    D4. The official round alternates by a test on the set objective ⟨Γ, L⟩ against its moving
        average (MGDA when it decreased, else the Γ-weighted sum of the local updates, i.e. linear
        scalarisation) and re-solves the transport ``ot_iter`` times on a first-order prediction of
        the losses; here every step is one transport solve and one weighted-MGDA step (the paper's
        alternation). ``alternate=True`` adds the official switch: the step is the Γ-weighted sum
        :math:`\tfrac{P}{K} \sum_i \Gamma_{ip} \nabla f_i` (the official scale, columns summing to 1)
        unless ⟨Γ, L⟩ is below its moving average (0.95/0.05, started at the first value, as
        ``zdt_moo.py``), then weighted MGDA. Near a fixed point this makes the round a balanced
        k-means (Lloyd) step. Measured (SGD 0.05): on an equal-size 5×25 clustered instance one
        solution per cluster on 4/6 seeds with it, 1/6 without; on the planted ``clusters``
        (unequal sizes) 2, 2, 4 of 5 clusters either way.
    D5. Cost normalisation: the official code clamps L at 0 and divides by the total; here each
        row is shifted by its minimum (the optimal plans do not change; negative losses are
        allowed) and divided by the total. The curriculum's loss-based marginals use max(L, 0),
        as the official code.
    D6. Diversity regulariser: conditional gradient from the unregularised optimal plan with exact
        (endpoint) line search and exact LPs, instead of POT's ``ot.optim.cg`` from the previous
        round's plan; same objective.
    D7. The official few-objective run computes each objective's gradient through a one-step local
        Adam update; here the gradients of the augmented objectives are W J exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.lp import solve_lp
from reference_impls.core.sets import SetMethod
from reference_impls.core.solvers import SolverError, min_norm_weights, rescaled_gramian

SUPPORT_TOL = 1e-9  # Γ_ip above this (relative to the row mass 1) counts as transported (D3)


def _check_marginals(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"most transport: marginals must be non-empty vectors, got shapes {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or (a < 0).any() or (b < 0).any():
        raise ValueError("most transport: marginals must be finite and non-negative")
    total_a, total_b = float(a.sum()), float(b.sum())
    if total_a <= 0 or abs(total_a - total_b) > 1e-12 * max(total_a, total_b) * (a.size + b.size):
        raise ValueError(f"most transport: the marginals must have the same positive total, got {total_a!r} and {total_b!r}")


def _plan_lp(cost: np.ndarray, a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    """min ⟨Γ, cost⟩ over Ω(a, b), exact and certified (solve_lp); returns Γ (K, P) with checked marginals."""
    K, P = cost.shape
    rows = np.kron(np.eye(K), np.ones((1, P)))  # Σ_p Γ_ip = a_i, (K, K·P)
    cols = np.kron(np.ones((1, K)), np.eye(P))[: P - 1]  # Σ_i Γ_ip = b_p, the last one implied, (P−1, K·P)
    A_eq = np.vstack([rows, cols])
    b_eq = np.concatenate([a, b[: P - 1]])
    x = solve_lp(cost.reshape(-1), A_eq=A_eq, b_eq=b_eq, bounds=(0.0, None), what=what)
    plan = np.clip(x, 0.0, None).reshape(K, P)  # (K, P); HiGHS may return −1e-17 for a zero
    # The marginals again, on the returned plan (the LP certificate checks the equilibrated rows).
    tol = 1e-7 * (float(a.max()) + float(b.max()))
    if np.abs(plan.sum(1) - a).max() > tol or np.abs(plan.sum(0) - b).max() > tol:
        raise SolverError(f"{what}: the plan misses its marginals by {max(np.abs(plan.sum(1) - a).max(), np.abs(plan.sum(0) - b).max()):.3e}")
    return plan


def normalised_cost(L: np.ndarray) -> np.ndarray:
    """C = (L − min_p L_ip) / Σ (L − min_p L_ip) (K, P): the same optimal plans as L (D5); 0 when all rows are flat."""
    C = L - L.min(1, keepdims=True)  # row shift: ⟨Γ, C⟩ = ⟨Γ, L⟩ − Σ_i a_i min_p L_ip on Ω(a, b), (K, P)
    total = float(C.sum())
    return C / total if total > 0 else C


def plan_is_optimal(plan: np.ndarray, C: np.ndarray) -> bool:
    """True when the feasible plan Γ (K, P) is certified optimal for the cost C by dual potentials.

    u_i + v_p = C_ip on the support of Γ (solved along the support, which must connect all K + P
    nodes: a spanning tree or more) and reduced costs C_ip − u_i − v_p ≥ −τ everywhere, with
    τ = 64·(K + P)·ε·max|C| (the rounding of the potentials along a path). Weak duality then gives
    ⟨Γ, C⟩ ≤ ⟨Γ', C⟩ + τ·Σ_i a_i for every Γ' ∈ Ω(a, b). False (not a proof of non-optimality) when the
    support is disconnected (a degenerate vertex) or a check fails.
    """
    K, P = plan.shape
    rows, cols = np.nonzero(plan > SUPPORT_TOL)
    by_col: list[list[int]] = [[] for _ in range(P)]
    by_row: list[list[int]] = [[] for _ in range(K)]
    for i, p in zip(rows.tolist(), cols.tolist()):
        by_row[i].append(p)
        by_col[p].append(i)
    u, v = np.full(K, np.nan), np.full(P, np.nan)
    v[0] = 0.0
    stack = [(False, 0)]  # (is a row, index), depth-first along the support
    while stack:
        is_row, node = stack.pop()
        if is_row:
            for p in by_row[node]:
                if np.isnan(v[p]):
                    v[p] = C[node, p] - u[node]  # v_p = C_ip − u_i
                    stack.append((False, p))
        else:
            for i in by_col[node]:
                if np.isnan(u[i]):
                    u[i] = C[i, node] - v[node]  # u_i = C_ip − v_p
                    stack.append((True, i))
    if np.isnan(u).any() or np.isnan(v).any():
        return False
    tau = 64 * (K + P) * float(np.finfo(np.float64).eps) * max(float(np.abs(C).max()), float(np.finfo(np.float64).tiny))
    reduced = C - u[:, None] - v[None, :]  # C_ip − u_i − v_p, (K, P)
    return bool(np.abs(reduced[rows, cols]).max(initial=0.0) <= tau and reduced.min() >= -tau)


def diversity_value(plan: np.ndarray) -> float:
    """R(Γ) = Σ_i max_p Γ_ip: the mass of each objective on its main solution, summed (larger: more specialised)."""
    return float(plan.max(1).sum())


def transport_plan(L, a=None, b=None, *, diversity: float = 0.0, max_iter: int = 100) -> np.ndarray:
    """The transport Γ (K, P) float64 between K objectives and P solutions for the losses L_ip = f_i(x_p) (K, P).

    Solves min_{Γ∈Ω(a,b)} ⟨Γ, C⟩ − λ Σ_i max_p Γ_ip, with C the row-shifted, normalised cost (module
    docstring) and λ = ``diversity``; a = 𝟙_K and b = (K/P)𝟙_P by default. λ = 0: one exact LP,
    certified. λ > 0: conditional gradient over vertices (exact LPs) from the λ = 0 optimum; the
    objective never increases.

    Raises ValueError for non-finite or negative inputs and marginals with different totals,
    SolverError when an LP or the marginal check fails.
    """
    L = L.detach().to("cpu", torch.float64).numpy() if isinstance(L, Tensor) else np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.size == 0:
        raise ValueError(f"most transport: the losses must be a non-empty (K, P) matrix, got shape {L.shape}")
    if not np.isfinite(L).all():
        raise ValueError("most transport: the losses contain NaN or infinite entries")
    if not (diversity >= 0 and math.isfinite(diversity)):
        raise ValueError(f"most transport: diversity must be finite and >= 0, got {diversity}")
    K, P = L.shape
    a = np.ones(K) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(P, K / P) if b is None else np.asarray(b, dtype=np.float64)
    if a.shape != (K,) or b.shape != (P,):
        raise ValueError(f"most transport: marginals of shapes {a.shape}, {b.shape} do not fit losses of shape {(K, P)}")
    _check_marginals(a, b)
    C = normalised_cost(L)  # (K, P)
    plan = _plan_lp(C, a, b, "most transport")
    if diversity == 0:
        return plan
    lam = float(diversity)

    def value(G: np.ndarray) -> float:
        return float((G * C).sum()) - lam * diversity_value(G)

    current = value(plan)
    for _ in range(max_iter):
        E = np.zeros_like(plan)
        E[np.arange(K), plan.argmax(1)] = 1.0  # a supergradient of Σ_i max_p Γ_ip
        vertex = _plan_lp(C - lam * E, a, b, "most transport (diversity step)")
        new = value(vertex)
        # Concave objective: on the segment to the vertex its minimum is at an end (exact line search).
        if not new < current - 1e-12 * (abs(current) + lam * float(a.sum())):
            break
        plan, current = vertex, new
    return plan


class MosT(SetMethod):
    """Optimal transport of the objectives to the solutions, then a weighted MGDA step per solution."""

    name = "most"
    needs_preferences = False
    stateful = True  # augmentation weights, plan average, curriculum clock

    def __init__(
        self,
        diversity: float = 0.0,
        curriculum: bool = False,
        curriculum_decay: float = 0.995,
        topk_ratio: float = 0.1,
        augmented: int = 25,
        dirichlet_alpha: float = 1.0,
        average_from: int | None = 100,
        direction: str = "weighted",
        alternate: bool = False,
        seed: int = 0,
    ) -> None:
        if not (diversity >= 0 and math.isfinite(diversity)):
            raise ValueError(f"most: diversity must be finite and >= 0, got {diversity}")
        if not (0 < curriculum_decay <= 1):
            raise ValueError(f"most: curriculum_decay must be in (0, 1], got {curriculum_decay}")
        if not (0 < topk_ratio <= 1):
            raise ValueError(f"most: topk_ratio must be in (0, 1], got {topk_ratio}")
        if int(augmented) < 1:
            raise ValueError(f"most: augmented must be a positive number of objectives, got {augmented}")
        if not (dirichlet_alpha > 0 and math.isfinite(dirichlet_alpha)):
            raise ValueError(f"most: dirichlet_alpha must be finite and > 0, got {dirichlet_alpha}")
        if average_from is not None and int(average_from) < 0:
            raise ValueError(f"most: average_from must be None or >= 0, got {average_from}")
        if direction not in ("weighted", "unweighted"):
            raise ValueError(f"most: direction must be 'weighted' or 'unweighted', got {direction!r}")
        self.diversity = float(diversity)
        self.curriculum = bool(curriculum)
        self.curriculum_decay = float(curriculum_decay)
        self.topk_ratio = float(topk_ratio)
        self.augmented = int(augmented)
        self.dirichlet_alpha = float(dirichlet_alpha)
        self.average_from = None if average_from is None else int(average_from)
        self.direction = direction
        self.alternate = bool(alternate)
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        self.mixing: Tensor | None = None  # W (K', K) float64, the augmentation (K < P), else None
        self._shape: tuple[int, int] | None = None  # (K, P) the state belongs to
        self._t = 0  # transport solves so far (curriculum clock, averaging)
        self._plan_sum: np.ndarray | None = None
        self._plan_count = 0
        self.last_plan: Tensor | None = None  # (K', P) the plan solved at the last step
        self.plan: Tensor | None = None  # (K', P) the plan the last step used (averaged from average_from on)
        self.marginals: tuple[Tensor, Tensor] | None = None  # (a, b) of the last solve
        self._average_value: float | None = None  # moving average of ⟨Γ, L⟩ (``alternate``)
        self.weighted_sum_steps = 0  # steps that took the Γ-weighted sum (``alternate``)
        self.lp_solves = 0  # transports solved by the LP
        self.reused = 0  # steps whose previous plan was certified still optimal (no LP)

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self.reset()
        self._prepare(F0.shape[1], F0.shape[0])

    def _prepare(self, K: int, P: int) -> None:
        if self._shape == (K, P):
            return
        self.reset()
        self._shape = (K, P)
        if 1 < K < P:  # few objectives: random convex combinations (the paper's n < m case)
            g = torch.Generator().manual_seed(self.seed)
            conc = torch.full((self.augmented, K), self.dirichlet_alpha, dtype=torch.float64)
            W = torch._standard_gamma(conc, generator=g)  # Dirichlet draws via normalised gammas, (K', K)
            sums = W.sum(1, keepdim=True)
            W = torch.where(sums > 0, W / sums.clamp_min(torch.finfo(torch.float64).tiny), torch.full_like(W, 1.0 / K))
            self.mixing = W

    def objectives(self, F: Tensor, J: Tensor) -> tuple[Tensor, Tensor]:
        """The objectives the transport sees: (F, J) itself, or the augmented F' = F Wᵀ (P, K'), J' = W J (P, K', n)."""
        if self.mixing is None:
            return F, J
        W = self.mixing.to(J)  # (K', K)
        return F @ W.T, torch.einsum("ak,pkn->pan", W, J)  # f'_a = Σ_k W_ak f_k, ∇f'_a = Σ_k W_ak ∇f_k

    def _marginals(self, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K, P = L.shape
        a_un, b_un = np.ones(K), np.full(P, K / P)
        if not self.curriculum:
            return a_un, b_un
        s = self.curriculum_decay**self._t  # s_t
        Cp = np.clip(L, 0.0, None)
        if Cp.sum() > 0:
            Cp = Cp / Cp.sum()  # C⁺ (official local_cost)
        best = Cp.min(1)  # min_p C⁺_ip, (K,)
        a_loss = K * best / best.sum() if best.sum() > 0 else a_un
        k = max(math.ceil(self.topk_ratio * K), 1)
        fit = np.sort(Cp, axis=0)[:k].sum(0)  # Σ of the k smallest C⁺_ip of each solution, (P,)
        b_loss = K * fit / fit.sum() if fit.sum() > 0 else b_un
        a = (1 - s) * a_loss + s * a_un
        b = s * b_loss + (1 - s) * b_un
        return a, b * (a.sum() / b.sum())  # equal totals up to rounding

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if F.shape != (P, K):
            raise ValueError(f"most: F must have shape {(P, K)}, got {tuple(F.shape)}")
        if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
            raise ValueError("most: the losses or their gradients contain NaN or infinite entries")
        if K == 1:
            return J[:, 0].clone()  # one objective: every solution descends it (the plan is trivial)
        self._prepare(K, P)
        Fa, Ja = self.objectives(F, J)  # (P, K'), (P, K', n)
        L = Fa.detach().to("cpu", torch.float64).numpy().T  # L_ip = f_i(x_p), (K', P)
        a, b = self._marginals(L)
        previous = self.last_plan.numpy() if self.last_plan is not None else None
        same = previous is not None and self.marginals is not None and previous.shape == L.shape
        same = same and np.array_equal(a, self.marginals[0].numpy()) and np.array_equal(b, self.marginals[1].numpy())
        if same and self.diversity == 0 and plan_is_optimal(previous, normalised_cost(L)):
            solved = previous  # the last plan is still optimal: certified by its dual potentials (no LP)
            self.reused += 1
        else:
            solved = transport_plan(L, a, b, diversity=self.diversity)  # (K', P), exact LP, certified
            self.lp_solves += 1
        self._t += 1
        used = solved
        if self.average_from is not None and self._t > self.average_from:
            self._plan_sum = solved.copy() if self._plan_sum is None else self._plan_sum + solved
            self._plan_count += 1
            used = self._plan_sum / self._plan_count  # running mean of the plans since average_from
        self.last_plan = torch.from_numpy(solved)
        self.plan = torch.from_numpy(used)
        self.marginals = (torch.from_numpy(a), torch.from_numpy(b))
        if self.alternate:  # the official round's switch (D4): MGDA only while ⟨Γ, L⟩ is below its moving average
            value = float((solved * L).sum())  # ⟨Γ, L⟩ with the plan just solved
            descending = self._average_value is not None and value < self._average_value
            self._average_value = value if self._average_value is None else 0.95 * self._average_value + 0.05 * value
            if not descending:
                self.weighted_sum_steps += 1
                G_fresh = torch.from_numpy(solved).to(Ja).T * (P / L.shape[0])  # the official scale: columns sum to 1, (P, K')
                return torch.einsum("pi,pin->pn", G_fresh, Ja)  # Σ_i Γ_ip ∇f_i(x_p): linear scalarisation, (P, n)
        G_all = torch.from_numpy(used).to(Ja).T  # Γ_pi, (P, K')
        D = torch.zeros(P, n, dtype=J.dtype, device=J.device)
        for p in range(P):
            support = torch.nonzero(G_all[p] > SUPPORT_TOL).flatten()  # the objectives sent to solution p
            if support.numel() == 0:
                continue  # no transported objective: D_p = 0
            G = G_all[p, support, None] * Ja[p, support]  # Γ_ip ∇f_i(x_p), (|S_p|, n)
            lam = min_norm_weights(rescaled_gramian(G)).to(G)  # λ ∈ Δ, certified (KKT per objective)
            D[p] = lam @ (G if self.direction == "weighted" else Ja[p, support])  # Σ λ_i Γ_ip ∇f_i (D3)
        return D  # (P, n)


__all__ = ["MosT", "diversity_value", "normalised_cost", "plan_is_optimal", "transport_plan"]
