r"""Pareto Merging (id ``pareto-merging``; paper record ``yomo``): preference-aware model merging.

Weiyu Chen, James T. Kwok, "Pareto Merging: Multi-Objective Optimization for Preference-Aware Model
Merging", ICML 2025 (PMLR 267:8345-8363); first released as "You Only Merge Once: Learning the Pareto
Set of Preference-Aware Model Merging", arXiv 2408.12105 (v1 2024, v2 2025). No official code was
released (the paper states none; none was found by search), so everything below is checked against
the paper's abstract and secondary descriptions only, and the tensor structure, the defaults and the
scalarisation are RECONSTRUCTED (what exactly: "Reconstructed" below).

Setting: a pretrained model θ₀ and K models fine-tuned from it, with task vectors τ (each fine-tuned
model minus θ₀). Merging is a K-objective problem (objective k = the merged model's loss on task k:
prediction entropy on unlabeled task data in the paper, AdaMerging-style, or the squared distance to
the k-th fine-tuned model, data-free); one training run learns a map from a preference r in the
simplex to a merged model: for every tensor (layer) of the network, the merging coefficients are a
preference-independent base (AdaMerging's layer-wise coefficients) plus a preference-dependent
low-rank Tucker tensor (update rule below). So the merged model is the base merge plus a preference-dependent
low-rank modification, the base being the single merged model of AdaMerging (base coefficients
learned) or of task arithmetic (frozen at 0.3). Training (the paper's Algorithm 1, as reconstructed)
samples r ~ Dir(𝟙) per step, evaluates the merged model and descends the preference-scalarised
objective (smooth Tchebycheff, or LS with ``scalarisation="ls"``) over the coefficients and factors;
θ₀ and τ are frozen. Because r enters the Tucker tensor linearly (mode 4), each merged tensor is
affine in r: on the simplex, θ(r) = Σ r·θ(e) over the vertices exactly (tested): the learned set is
the simplex spanned by the K merged "vertex" models, which are trained jointly through the shared
factors.

Parameter count (the formula the structure gives; tested): Σ over matrices (m, n) of
K + ρ³K + (m + n + K)ρ, plus Σ over vectors (m,) of K + ρ²K + (m + K)ρ; against K·n for element-wise
preference-free coefficients. merging-mlp (n = 369, ρ = 2, K = 2): 312 learned numbers (K·n = 738).

Defaults (ours, reconstructed: the paper's were not reachable): rank ρ = 2; λ initialised to 0.3
(AdaMerging's initial layer-wise coefficient and task arithmetic's usual λ); G = 0 at the start (so the
first model is exactly the preference-free AdaMerging merge), A, B, C ~ N(0, 1/ρ); STCH μ = 0.02 (the
merging-mlp losses are O(0.01–0.1)); Dirichlet(1) preferences, 8 per step (the paper: one per batch);
Adam, lr 1e-2, 400 steps on merging-mlp.

Reconstructed (the paper text beyond its abstract was not reachable here, and there is no code):
    R1 The four-mode Tucker form of Λ (a core multiplied along rows, columns, tasks and the preference)
       comes from a tutorial slide by the authors' group ("θ(α) = θ_base + G ×1 A1 ×2 A2 ×3 A3 ×4 α":
       preference-independent base plus a low-rank tensor modification); that the third mode indexes
       the tasks and the result multiplies each task vector element-wise is our reading. The vector
       (bias) form is ours.
    R2 The smooth Tchebycheff scalarisation is from a secondary reading of the paper ("preference-
       conditioned smooth Tchebycheff; the data-free variant is a weight-space quadratic"); μ is ours.
    R3 Every default above (ρ, init, μ, lr, steps, batch).

Update rule:
    Every tensor :math:`l` of the network (a weight matrix of shape (m, n), or a vector of length m)
    is merged with coefficients that add a preference-independent base :math:`\lambda^l \in \mathbb{R}^K`
    and a low-rank Tucker tensor :math:`\Lambda^l(r)` linear in the preference (R1); with
    :math:`\tau_k = \theta_k - \theta_0` the task vectors and :math:`r` rescaled onto the simplex (D5):

    .. math::

        \theta^l(r) = \theta_0^l + \sum_{k=1}^{K} \big(\lambda_k^l + \Lambda^l(r)_{\cdot,k}\big) \odot \tau_k^l

    .. math::

        \Lambda^l(r) = G^l \times_1 A^l \times_2 B^l \times_3 C^l \times_4 r, \qquad \Lambda^l(r)_{ijk} = \sum_{a,b,c=1}^{\rho}\sum_{p=1}^{K} G^l_{abcp}\,A^l_{ia}\,B^l_{jb}\,C^l_{kc}\,r_p

    with :math:`G^l \in \mathbb{R}^{\rho \times \rho \times \rho \times K}`,
    :math:`A^l \in \mathbb{R}^{m \times \rho}`, :math:`B^l \in \mathbb{R}^{n \times \rho}`,
    :math:`C^l \in \mathbb{R}^{K \times \rho}`; for a vector, :math:`\Lambda^l(r)_{ik} = \sum_{a,c,p} G^l_{acp} A^l_{ia} C^l_{kc} r_p`
    with :math:`G^l \in \mathbb{R}^{\rho \times \rho \times K}` (D4). Each step draws :math:`N = 8`
    preferences from :math:`\operatorname{Dir}(\mathbb{1})` (D3) and takes one Adam step on
    :math:`(\lambda, G, A, B, C)` (:math:`\theta_0` and :math:`\tau` frozen) for the mean of the
    smooth Tchebycheff scalarisation (R2) of the merged models' losses :math:`f_k` (D1), with
    :math:`z` the ideal point (0 when the problem gives none) and :math:`\mu = 0.02`:

    .. math::

        \mathcal{L} = \frac{1}{N}\sum_{b=1}^{N} \mu \log \sum_{k=1}^{K} \exp\Big(\frac{r_{b,k}\,\big(f_k(\theta(r_b)) - z_k\big)}{\mu}\Big) \qquad \Big(\text{or } \frac{1}{N}\sum_{b=1}^{N}\sum_{k=1}^{K} r_{b,k} f_k(\theta(r_b)) \text{ with the LS option}\Big)

    Initialisation (R3): :math:`\lambda = 0.3`, :math:`G = 0` (the first model is the
    preference-free merge), :math:`A, B, C \sim \mathcal{N}(0, 1/\rho)`, :math:`\rho = 2`.

Deviations:
    D1 The objectives are the problem's own losses (merging-mlp: each task's training MSE, a labelled
       regression loss). The paper's unlabeled-data objective is AdaMerging's prediction entropy on the
       task's test inputs, which has no analogue for a scalar regression output; the data-free variant
       is ``objective="data-free"``: objective k is :math:`\lVert \theta(r) - \theta_k \rVert^2 / n`,
       the mean squared distance to the k-th fine-tuned model, used for training only (the evaluation
       reports the problem's losses).
    D2 The paper's regulariser and its preference-sampling details are not reproduced (not reachable).
    D3 A batch of preferences per step (mean of the scalarised losses); the paper samples one per batch.
    D4 Vectors (biases) get a low-rank coefficient tensor too (R1); on ViTs the paper's structure is
       described for weight matrices.
    D5 Preferences are normalised to the simplex (r / Σ r) before use: a scaled preference is the same.
    D6 float64 throughout (tests do not depend on the BLAS kernel).
    D7 Besides ``base``/``task_models`` (``task_vectors``), a problem may give ``task_optima`` (the
       per-task fits of ``lowrank-regression``), and a point problem (biquad) merges its single-objective
       minimisers from its seeded starting point (the MoE fusion's convention). Then the LS
       variant can be checked against the exact LS map :math:`x^\star(r) = \sum_k \mu_k \hat w_k`
       (:math:`\mu = r / \sum_k r_k`), which the structure represents exactly for ρ ≥ K − 1 (the
       needed :math:`\Lambda(r)_{\cdot,k} = \mu_k - \lambda_k` is constant over elements: rank one in
       modes 1-2; in modes 3-4 the K×K matrix :math:`\delta_{kp} - \lambda_k`, of rank K − 1 when
       :math:`\sum_k \lambda_k = 1`).

Degenerate inputs: K = 1 (r = (1): θ is the single-task merge θ₀ + (λ + Λ) ⊙ τ), simplex vertices,
zero entries (allowed), non-finite, negative or all-zero preferences → ValueError (core checks); a
problem with neither a base model and task models nor minimisers → ValueError; non-finite task vectors → ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, check_preferences, loss_batch, preference_batch
from reference_impls.pareto_set.combination import ParameterLayout


def merge_inputs(problem: Any, initial_points: Callable[[int], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """(θ_0 (n,), the task models θ_k (K, n)) of a merging problem (D7); ValueError when it has none.

    Sources in order: ``problem.base`` with ``task_models`` (merging-mlp), ``task_optima``
    (lowrank-regression) or ``task_vectors``; a point problem (biquad): θ_0 = its seeded starting
    point ``initial_points(1)`` and θ_k = its single-objective minimisers (``objective_minimisers()``,
    else ``linear_scalarisation_solution(e_k)``)."""
    who = getattr(problem, "id", type(problem).__name__)
    n, K = int(problem.n), int(problem.K)
    base = getattr(problem, "base", None)
    tasks = None
    if base is not None:
        tasks = getattr(problem, "task_models", None)
        if tasks is None:
            tasks = getattr(problem, "task_optima", None)  # lowrank-regression: the task fits
        if tasks is None and getattr(problem, "task_vectors", None) is not None:
            tasks = torch.as_tensor(base) + torch.as_tensor(problem.task_vectors)
    elif initial_points is not None:  # a point problem: the single-objective minimisers as fine-tuned models
        minimisers = problem.objective_minimisers() if hasattr(problem, "objective_minimisers") else None
        if minimisers is None and hasattr(problem, "linear_scalarisation_solution"):
            minimisers = torch.stack([torch.as_tensor(problem.linear_scalarisation_solution(torch.eye(K, dtype=torch.float64)[k])).reshape(-1) for k in range(K)])
        if minimisers is not None:
            base, tasks = torch.as_tensor(initial_points(1)).reshape(-1), minimisers
    if base is None or tasks is None:
        raise ValueError(f"pareto-merging merges task vectors: problem {who!r} has no base model and task models (base with task_models, task_optima or task_vectors; or a starting point and objective minimisers)")
    base, tasks = torch.as_tensor(base), torch.as_tensor(tasks)
    if base.shape != (n,) or tasks.shape != (K, n):
        raise ValueError(f"pareto-merging: problem {who!r} has base {tuple(base.shape)} and task models {tuple(tasks.shape)}, expected ({n},) and ({K}, {n})")
    if not bool(torch.isfinite(base).all()) or not bool(torch.isfinite(tasks).all()):
        raise ValueError(f"pareto-merging: problem {who!r} has non-finite base or task-model parameters")
    return base, tasks


def task_arithmetic(problem: Any, lambdas: Tensor) -> Tensor:
    """Task arithmetic θ_0 + λ Σ_k τ_k for each λ (L,) -> (L, n) (Ilharco et al., ICLR 2023): the fixed baseline."""
    base, tasks = merge_inputs(problem)
    lam = torch.as_tensor(lambdas, dtype=base.dtype).reshape(-1, 1)  # (L, 1)
    return base + lam * (tasks - base).sum(0)  # θ_0 + λ Σ τ_k, (L, n)


def preference_task_arithmetic(problem: Any, preferences: Tensor, scale: float = 1.0) -> Tensor:
    """Preference-weighted task arithmetic θ_0 + c Σ_k μ_k τ_k, μ = r/Σr, for r (B, K) -> (B, n)."""
    base, tasks = merge_inputs(problem)
    r = check_preferences(torch.as_tensor(preferences, dtype=base.dtype), None, tasks.shape[0], name="preference_task_arithmetic preferences")
    mu = r / r.sum(1, keepdim=True)  # (B, K)
    return base + float(scale) * mu @ (tasks - base)  # (B, n)


class ParetoMerging(ParetoModel):
    """θ(r) = θ_0 + Σ_k (λ_k + Λ(r)_k) ⊙ τ_k per tensor, Λ(r) a four-mode low-rank Tucker tensor (built by ``begin``)."""

    name = "pareto-merging"
    target = "ray"  # STCH's minimiser approaches the Tchebycheff ray point r ⊙ (f − z) ∝ 𝟙; "ls" for scalarisation="ls"
    preference_alpha: ClassVar[float] = 1.0
    default_batch: ClassVar[int] = 8  # D3
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-2  # R3
    default_steps: ClassVar[int | None] = 400  # R3

    def __init__(
        self,
        rank: int = 2,
        scalarisation: str = "stch",
        mu: float = 0.02,
        init_coefficient: float = 0.3,
        train_base: bool = True,
        objective: str = "task-loss",
        batch: int = 8,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if int(rank) < 1 or int(batch) < 1:
            raise ValueError(f"pareto-merging: need rank >= 1 and batch >= 1, got rank={rank}, batch={batch}")
        if scalarisation not in ("stch", "ls"):
            raise ValueError(f"pareto-merging: scalarisation must be 'stch' or 'ls', got {scalarisation!r}")
        if objective not in ("task-loss", "data-free"):
            raise ValueError(f"pareto-merging: objective must be 'task-loss' or 'data-free', got {objective!r}")
        if not (math.isfinite(float(mu)) and float(mu) > 0) or not math.isfinite(float(init_coefficient)):
            raise ValueError(f"pareto-merging: need a finite mu > 0 and a finite init_coefficient, got {mu}, {init_coefficient}")
        self.rank, self.scalarisation, self.mu = int(rank), scalarisation, float(mu)
        self.init_coefficient, self.train_base, self.objective = float(init_coefficient), bool(train_base), objective
        self.batch, self.dtype = int(batch), dtype
        if scalarisation == "ls":
            self.target = "ls"  # the LS map argmin Σ r_k f_k (the evaluation's oracle)
        self.K: int | None = None
        self.n: int | None = None
        self.layout: ParameterLayout | None = None
        self.factors = nn.ParameterList()  # per tensor l: G, A, (B,) C
        self.base_coefficients: nn.Parameter | None = None  # λ (L, K)

    # ----------------------------------------------------------------------------------------------
    def build(self, problem: Any, initial_points: Callable[[int], Tensor] | None = None) -> None:
        """Read θ_0, the task vectors and the tensor layout from ``problem`` and create λ, G, A, B, C."""
        base, tasks = merge_inputs(problem, initial_points)
        layout = ParameterLayout.of(problem)
        K, rho = int(problem.K), self.rank
        self.K, self.n, self.layout = K, layout.n, layout
        self.register_buffer("theta0", base.detach().to(self.dtype).clone())  # θ_0, (n,)
        self.register_buffer("task_models", tasks.detach().to(self.dtype).clone())  # θ_k, (K, n)
        self.register_buffer("task_vectors", self.task_models - self.theta0)  # τ_k, (K, n)
        L = len(layout.shapes)
        lam = torch.full((L, K), self.init_coefficient, dtype=self.dtype)  # λ^l_k (AdaMerging init 0.3)
        self.base_coefficients = nn.Parameter(lam, requires_grad=self.train_base)
        self.factors = nn.ParameterList()
        s = 1.0 / math.sqrt(rho)
        for shape in layout.shapes:
            if len(shape) == 2:
                m, n = shape
                self.factors.append(nn.Parameter(torch.zeros(rho, rho, rho, K, dtype=self.dtype)))  # G (ρ, ρ, ρ, K)
                self.factors.append(nn.Parameter(s * torch.randn(m, rho, dtype=self.dtype)))  # A (m, ρ)
                self.factors.append(nn.Parameter(s * torch.randn(n, rho, dtype=self.dtype)))  # B (n, ρ)
            else:
                m = math.prod(shape)
                self.factors.append(nn.Parameter(torch.zeros(rho, rho, K, dtype=self.dtype)))  # G (ρ, ρ, K)
                self.factors.append(nn.Parameter(s * torch.randn(m, rho, dtype=self.dtype)))  # A (m, ρ)
            self.factors.append(nn.Parameter(s * torch.randn(K, rho, dtype=self.dtype)))  # C (K, ρ)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the merge for ``problem`` (its base, task models and layout), or check the one built already."""
        if problem is None:
            raise ValueError("pareto-merging: begin needs the problem (its base model, task models and parameter layout)")
        if self.layout is None:
            self.build(problem, initial_points)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"pareto-merging was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")
        z = torch.zeros(K, dtype=self.dtype) if ideal is None else torch.as_tensor(ideal, dtype=self.dtype).reshape(K)
        if not bool(torch.isfinite(z).all()):
            raise ValueError("pareto-merging: the ideal point is non-finite")
        self.register_buffer("ideal", z.clone())  # z (K,) of the smooth Tchebycheff scalarisation

    def parameter_count(self) -> int:
        """The structure's learned numbers: Σ_matrices K + ρ³K + (m + n + K)ρ + Σ_vectors K + ρ²K + (m + K)ρ."""
        if self.layout is None:
            raise ValueError("pareto-merging: not built: call begin(...)")
        K, rho, total = self.K, self.rank, 0
        for shape in self.layout.shapes:
            if len(shape) == 2:
                total += K + rho**3 * K + (shape[0] + shape[1] + K) * rho
            else:
                total += K + rho**2 * K + (math.prod(shape) + K) * rho
        return total

    # ----------------------------------------------------------------------------------------------
    def coefficients(self, preference: Tensor) -> list[Tensor]:
        """The merging coefficients λ^l + Λ^l(r) per tensor l: [(B, *shape_l, K)] for r (B, K) on the simplex."""
        if self.layout is None:
            raise ValueError("pareto-merging: the merge is not built: call begin(K, n, ..., problem=problem)")
        out, i = [], 0
        for l, shape in enumerate(self.layout.shapes):
            lam = self.base_coefficients[l]  # λ^l (K,)
            if len(shape) == 2:
                G, A, Bf, C = self.factors[i], self.factors[i + 1], self.factors[i + 2], self.factors[i + 3]
                i += 4
                core = torch.einsum("abcp,zp->zabc", G, preference)  # G ×_4 r, (B, ρ, ρ, ρ)
                core = torch.einsum("zabc,kc->zabk", core, C)  # ×_3 C, (B, ρ, ρ, K)
                Lam = torch.einsum("zabk,ia,jb->zijk", core, A, Bf)  # ×_1 A ×_2 B, (B, m, n, K)
            else:
                G, A, C = self.factors[i], self.factors[i + 1], self.factors[i + 2]
                i += 3
                core = torch.einsum("acp,zp->zac", G, preference)  # G ×_3 r, (B, ρ, ρ)
                Lam = torch.einsum("zac,ia,kc->zik", core, A, C).reshape(preference.shape[0], *shape, -1)  # ×_1 A ×_2 C, (B, m, K)
            out.append(lam + Lam)  # λ^l_k + Λ^l(r)[..., k]
        return out

    def forward(self, preference: Tensor) -> Tensor:
        if self.layout is None:
            raise ValueError("pareto-merging: the merge is not built: call begin(K, n, ..., problem=problem)")
        rb, single = preference_batch(preference, self.K, self.dtype, name=f"{self.name} preference")  # (B, K)
        r = rb / rb.sum(1, keepdim=True)  # on the simplex (D5)
        theta0 = self.layout.split(self.theta0)  # [(*shape)]
        taus = self.layout.split(self.task_vectors)  # [(K, *shape)]
        parts = []
        for coef, t0, tau in zip(self.coefficients(r), theta0, taus):
            tau_last = tau.movedim(0, -1)  # (*shape, K)
            parts.append(t0 + (coef * tau_last).sum(-1))  # θ_0^l + Σ_k (λ_k + Λ_k(r)) ⊙ τ_k^l, (B, *shape)
        theta = self.layout.join(parts)  # (B, n)
        return theta[0] if single else theta

    # ----------------------------------------------------------------------------------------------
    def task_losses(self, problem: Any, preferences: Tensor) -> Tensor:
        """The problem's losses of the merged models (B, K); ``objective="data-free"``: ||θ(r) − θ_k||² / n (D1)."""
        theta = self(preferences)  # (B, n)
        if self.objective == "data-free" and torch.is_grad_enabled():  # training only: evaluation runs under no_grad
            return ((theta[:, None, :] - self.task_models[None]) ** 2).mean(-1)  # ||θ − θ_k||² / n, (B, K)
        return problem.losses(theta)

    def target_rays(self, preferences: Tensor) -> Tensor | None:
        """STCH: the Tchebycheff ray 1/r normalised (B, K) (zero entries: 0, that task unconstrained); LS: None."""
        if self.scalarisation == "ls":
            return None
        r = torch.as_tensor(preferences, dtype=torch.float64)
        inv = torch.where(r > 0, 1.0 / torch.where(r > 0, r, 1.0), 0.0)  # 1/r
        return inv / torch.linalg.vector_norm(inv, dim=-1, keepdim=True)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        r = r / r.sum(1, keepdim=True)  # (B, K) on the simplex (D5)
        if self.scalarisation == "ls":
            return (r * F).sum(1).mean()  # mean_b Σ_k r_bk f_bk
        z = self.ideal.to(F) if hasattr(self, "ideal") else torch.zeros(F.shape[1], dtype=F.dtype)
        return (self.mu * torch.logsumexp(r * (F - z) / self.mu, dim=1)).mean()  # mean_b μ log Σ_k exp(r_k (f_k − z_k)/μ)


__all__ = ["ParetoMerging", "merge_inputs", "preference_task_arithmetic", "task_arithmetic"]
