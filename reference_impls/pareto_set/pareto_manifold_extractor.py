r"""The neural Pareto manifold extractor with constraints (id ``pareto-manifold-extractor``).

Gupta, Singh, Bollapragada, Lease, "Learning a Neural Pareto Manifold Extractor with Constraints",
UAI 2022 (OpenReview BcIfJuIscx5; arXiv 2110.15442, "Scalable Unidirectional Pareto Optimality for
Multi-Task Learning with Constraints"). No official code was found (searched GitHub for the title,
the authors and "Fritz-John" hypernetworks).

RECONSTRUCTED. Only the abstract and the introduction of the paper were reachable here; the
method's equations and its algorithm box were not. What the abstract states: a network induces the
whole Pareto manifold of a constrained problem at train time (a user picks any trade-off at run
time), trained by a "guided double gradient descent" built on the Fritz-John conditions (FJC). This
module implements that statement as the update rule below (every equation there is ours, written
from the FJC).

The "double" gradient descent: the objectives' gradients enter the criterion, so the descent on
φ differentiates through gradients (second order, autograd with ``create_graph``). Every term has a
zero gradient at a KKT pair (x*(r), μ*(r)), so the pair is a fixed point of the descent; for convex f
(the toys) the residual terms vanish only there, so the map learned is r ↦ the constrained LS
optimum, and with no constraint (m = 0) the criterion is the scalarisation plus the squared norm of
its gradient, whose minimiser is the LS map (``target = "ls"``, PHN-LS's map).

Defaults (ours; the paper's were not reachable): ray_hidden = 100 (PHN's), α = 1 (uniform on Δ),
batch 8, Adam lr 1e-3, 2000 steps, stationarity weight 1, constraint weight 10 (1 left the held-out
violation and error ~10× larger at the tests' budget).

Update rule:
    Problem: minimise :math:`(f_1(x), \ldots, f_K(x))` subject to the linear constraints
    :math:`g(x) = A x - b \le 0` (:math:`A` of shape (m, n), D2). For a preference :math:`r` in the
    simplex, the Fritz-John system with the objective multipliers fixed to :math:`r` (the KKT form of
    the preference's linear scalarisation under the constraints, D1) is

    .. math::

        \sum_{i=1}^{K} r_i \nabla f_i(x) + A^\top \mu = 0, \qquad \mu \ge 0, \qquad g(x) \le 0, \qquad \mu_j\, g_j(x) = 0 \ \ \forall j \qquad \text{(FJC)}

    The network outputs the solution and its constraint multipliers from PHN's ray-MLP
    :math:`e(r)` (Linear(K, h), ReLU, Linear(h, h), ReLU, Linear(h, h); :math:`h = 100`) through
    one linear head; the sign of :math:`\mu` is not enforced by the head (D4):

    .. math::

        \big(x(r), \mu(r)\big) = W e(r) + c \in \mathbb{R}^{n} \times \mathbb{R}^{m}

    Each step draws :math:`B = 8` preferences from :math:`\operatorname{Dir}(\mathbb{1})` and takes one
    Adam step on the network's weights :math:`\varphi` for the mean over them of

    .. math::

        C(\varphi; r) = \underbrace{r^\top f(x) + \operatorname{sg}(\mu)^\top g(x)}_{\text{guide: the Lagrangian in } x} + w_s \left\lVert \sum_{i=1}^{K} r_i \nabla_x f_i(x) + A^\top \mu \right\rVert^2 + w_c \left\lVert \psi\big(\mu, -g(x)\big) \right\rVert^2

    with :math:`x = x(r)`, :math:`\mu = \mu(r)`, :math:`r` rescaled onto the simplex,
    :math:`\operatorname{sg}` the stop-gradient, :math:`w_s = 1`, :math:`w_c = 10`, and the
    Fischer–Burmeister function applied per constraint,

    .. math::

        \psi(a, c) = a + c - \sqrt{a^2 + c^2}, \qquad \psi(a, c) = 0 \iff a \ge 0,\ c \ge 0,\ a c = 0

    (its square root has gradient 0 at :math:`a = c = 0`). Without constraints (:math:`m = 0`)
    :math:`C = r^\top f(x) + w_s \lVert \sum_i r_i \nabla f_i(x) \rVert^2`.

Deviations: (from the method as the abstract states it; there is no official code to compare)
    D1 Reconstructed criterion (above): the paper's exact loss, its multiplier handling (whether the
       network predicts μ, or the objective multipliers as well) and its "guide" are not known here.
       The objective multipliers of the FJC are fixed to the preference r (KKT of the
       scalarisation), so the FJC's branch with a zero objective multiplier (weak / degenerate points)
       is not used.
    D2 Constraints: linear ones A x ≤ b given at construction (``A`` (m, n), ``b`` (m,)). The paper
       allows non-linear constraints; a general g(x) would enter the same criterion through its gradient.
    D3 With constraints the evaluation's oracle (the unconstrained LS map) does not apply: ``target``
       is None, and ``biquad_constrained_ls`` (closed form, one halfspace) and ``kkt_report``
       (relative FJC residuals) give the held-out error and the KKT certificate.
    D4 Complementarity through the Fischer–Burmeister residual and a linear (unsigned) μ head: a first
       version with μ = softplus(·) and the penalty (μg)² + max(g, 0)² learned stationary pairs with
       μ > 0 at inactive preferences (μg ≈ 0.01 is nearly unpenalised; held-out error 0.1 against the
       constrained optimum); FB penalises μ > 0 there linearly (error 0.007, same budget).
    D5 float64 throughout (so the toy tests do not depend on the BLAS kernel).

Degenerate inputs: K = 1 (r = (1): the single objective under the constraints) and the vertices of the
simplex are trained like any preference; non-finite or negative preferences or losses, non-finite or
zero constraint rows, a constraint of the wrong width, loss() without task_losses() → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, check_preferences, loss_batch, preference_batch
from reference_impls.core.solvers import SolverError


def _constraints(A: Any, b: Any, dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
    """Validated (A (m, n), b (m,)) or (None, None) when there is no constraint."""
    if A is None and b is None:
        return None, None
    if A is None or b is None:
        raise ValueError("pareto-manifold-extractor: give both A and b (constraints A x <= b) or neither")
    A = torch.as_tensor(A, dtype=dtype)
    b = torch.as_tensor(b, dtype=dtype)
    A = A[None] if A.ndim == 1 else A  # (m, n)
    b = b.reshape(-1)  # (m,)
    if A.ndim != 2 or b.shape != (A.shape[0],) or A.shape[0] < 1:
        raise ValueError(f"pareto-manifold-extractor: A must be (m, n) and b (m,), got {tuple(A.shape)} and {tuple(b.shape)}")
    if not bool(torch.isfinite(A).all() and torch.isfinite(b).all()):
        raise ValueError("pareto-manifold-extractor: the constraints A, b contain NaN or infinite entries")
    if bool((torch.linalg.vector_norm(A, dim=1) == 0).any()):
        raise ValueError("pareto-manifold-extractor: a constraint row of A is zero (0 <= b is not a constraint on x)")
    return A, b


class ParetoManifoldExtractor(ParetoModel):
    """h_φ(r) = (x(r), μ(r)) trained to satisfy the FJC of r's scalarisation under A x ≤ b (module docstring)."""

    name = "pareto-manifold-extractor"
    target: ClassVar[str | None] = "ls"  # without constraints; an instance with constraints sets None (D3)
    preference_alpha: ClassVar[float] = 1.0
    default_batch: ClassVar[int] = 8
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-3
    default_steps: ClassVar[int | None] = 2000

    def __init__(
        self,
        ray_hidden: int = 100,
        K: int | None = None,
        n: int | None = None,
        A: Any = None,
        b: Any = None,
        stationarity_weight: float = 1.0,
        constraint_weight: float = 10.0,
        batch: int = 8,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if int(ray_hidden) < 1 or int(batch) < 1:
            raise ValueError(f"{self.name}: need ray_hidden >= 1 and batch >= 1, got {ray_hidden}, {batch}")
        if not (stationarity_weight >= 0 and constraint_weight >= 0) or not (stationarity_weight < float("inf") and constraint_weight < float("inf")):
            raise ValueError(f"{self.name}: the weights must be finite and non-negative, got {stationarity_weight}, {constraint_weight}")
        self.ray_hidden, self.batch, self.dtype = int(ray_hidden), int(batch), dtype
        self.stationarity_weight, self.constraint_weight = float(stationarity_weight), float(constraint_weight)
        self.A, self.b = _constraints(A, b, dtype)
        self.m = 0 if self.A is None else int(self.A.shape[0])
        if self.A is not None:
            self.target = None  # the unconstrained LS oracle does not apply (D3)
        self.K: int | None = None
        self.n: int | None = None
        self.ray_mlp: nn.Module | None = None
        self.head: nn.Module | None = None
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # (x, μ, f) of the last task_losses call
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int) -> None:
        """Create the layers for K objectives and solutions x ∈ R^n (plus m multipliers)."""
        if K < 1 or n < 1:
            raise ValueError(f"{self.name}: need K >= 1 and n >= 1, got K={K}, n={n}")
        if self.A is not None and self.A.shape[1] != n:
            raise ValueError(f"{self.name}: the constraints have {self.A.shape[1]} columns; the problem has n={n}")
        h = self.ray_hidden
        self.K, self.n = K, n
        self.ray_mlp = nn.Sequential(nn.Linear(K, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)).to(self.dtype)
        self.head = nn.Linear(h, n + self.m).to(self.dtype)  # (x, μ)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the layers for the problem (K, n), or check the ones built already."""
        if self.ray_mlp is None:
            self.build(K, n)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"{self.name} was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def outputs(self, preference: Tensor) -> tuple[Tensor, Tensor]:
        """(x (B, n), μ (B, m)) for preferences (B, K); m = 0 without constraints (μ ≥ 0 at a KKT pair, not by construction)."""
        if self.ray_mlp is None:
            raise ValueError(f"{self.name}: the network is not built: call begin(K, n, ...) (or pass K and n)")
        r, _ = preference_batch(preference, self.K, self.dtype, name=f"{self.name} preference")  # (B, K)
        out = self.head(self.ray_mlp(r))  # (B, n + m)
        x = out[:, : self.n]  # x = W_x e + c_x, (B, n)
        mu = out[:, self.n :]  # μ = W_μ e + c_μ (its sign is the FB term's job), (B, m)
        return x, mu

    def forward(self, preference: Tensor) -> Tensor:
        x, _ = self.outputs(preference)
        return x[0] if torch.as_tensor(preference).ndim == 1 else x

    def multipliers(self, preference: Tensor) -> Tensor:
        """The constraint multipliers μ(r) (B, m) the network predicts."""
        return self.outputs(preference)[1]

    def constraint_values(self, X: Tensor) -> Tensor:
        """g(x) = A x − b (B, m); (B, 0) without constraints."""
        if self.A is None:
            return X.new_zeros(X.shape[0], 0)
        return X @ self.A.to(X).T - self.b.to(X)  # g_j = A_j x − b_j, (B, m)

    def task_losses(self, problem: Any, preferences: Tensor) -> Tensor:
        """f(x(r)) (B, K); keeps x and μ so that :meth:`loss` can form the FJC residual from the same graph."""
        x, mu = self.outputs(preferences)  # (B, n), (B, m)
        F = problem.losses(x)  # (B, K)
        self._last = (x, mu, F)
        return F

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """The criterion C (module docstring), mean over the B preferences; ``losses`` from :meth:`task_losses`."""
        F, r = loss_batch(losses, preferences, name=self.name)  # (B, K), (B, K)
        if self._last is None or self._last[2] is not losses:
            raise ValueError(f"{self.name}: loss() needs the losses returned by task_losses(problem, preferences) (the FJC residual differentiates them in x)")
        x, mu, _ = self._last
        r = r / r.sum(1, keepdim=True)  # rows on the simplex
        # ∇_x (r·f) = Σ_i r_i ∇f_i(x) per row (rows of x are independent), kept in the graph (double gradient)
        grad_ls = torch.autograd.grad((r * F).sum(), x, create_graph=True)[0]  # (B, n)
        g = self.constraint_values(x)  # (B, m)
        stationarity = grad_ls + (mu @ self.A.to(x) if self.A is not None else 0.0)  # Σ r_i ∇f_i + Aᵀμ, (B, n)
        guide = (r * F).sum(1) + (mu.detach() * g).sum(1)  # the Lagrangian r·f + sg(μ)·g, (B,)
        residual = self.stationarity_weight * (stationarity**2).sum(1)  # ||Σ r_i ∇f_i + Aᵀμ||², (B,)
        sq = mu**2 + g**2  # (B, m)
        root = torch.where(sq > 0, torch.sqrt(torch.where(sq > 0, sq, 1.0)), 0.0)  # √(μ² + g²), gradient 0 (not NaN) at μ = g = 0
        fb = mu - g - root  # Fischer–Burmeister ψ(μ, −g) = 0 ⇔ μ ≥ 0, g ≤ 0, μ g = 0, (B, m)
        penalty = self.constraint_weight * (fb**2).sum(1)  # ||ψ(μ, −g)||², (B,)
        self._last = None
        return (guide + residual + penalty).mean()


def biquad_constrained_ls(problem: Any, preferences: Tensor, A: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """argmin_x Σ r_i s_i ||x − a_i||² s.t. aᵀx ≤ β (one halfspace) on the bi-quadratic, and μ*: (X* (B, n), μ* (B, 1)).

    The objective is (Σ r_i s_i)||x − x_LS||² + const, x_LS = Σ r_i s_i a_i / Σ r_i s_i, so the optimum is
    the Euclidean projection x* = x_LS − max(0, aᵀx_LS − β)/||a||² · a and, from stationarity
    2(Σ r_i s_i)(x* − x_LS) + μ a = 0, μ* = 2(Σ r_i s_i)·max(0, aᵀx_LS − β)/||a||². Certified: the KKT
    residuals are checked relative to each term's own size (SolverError otherwise).
    """
    from reference_impls.pareto_set.oracles import biquad_ls

    A, b = _constraints(A, b, torch.float64)
    if A.shape[0] != 1:
        raise ValueError(f"biquad_constrained_ls: one halfspace only, got {A.shape[0]} constraints")
    a, beta = A[0].to(problem.dtype), b[0].to(problem.dtype)  # (n,), ()
    X_ls, _ = biquad_ls(problem, preferences)  # (B, n)
    r = preferences.to(problem.dtype)
    r = r / r.sum(1, keepdim=True)
    w = (r * problem.scales).sum(1)  # Σ r_i s_i, (B,)
    excess = torch.clamp(X_ls @ a - beta, min=0.0)  # max(0, aᵀx_LS − β), (B,)
    X = X_ls - (excess / (a @ a))[:, None] * a  # projection onto the halfspace, (B, n)
    mu = (2.0 * w * excess / (a @ a))[:, None]  # (B, 1)
    J = problem.jacobian(X)  # (B, K, n)
    station = torch.einsum("bk,bkn->bn", r, J) + mu * a  # (B, n)
    scale = torch.einsum("bk,bk->b", r, torch.linalg.vector_norm(J, dim=2)) + mu[:, 0] * torch.linalg.vector_norm(a) + torch.linalg.vector_norm(X, dim=1) + 1.0
    eps = torch.finfo(problem.dtype).eps
    if bool((torch.linalg.vector_norm(station, dim=1) > 1e3 * eps * scale).any()) or bool((X @ a - beta > 1e3 * eps * (abs(float(beta)) + torch.linalg.vector_norm(X, dim=1) * torch.linalg.vector_norm(a))).any()):
        raise SolverError("biquad_constrained_ls: the projection fails its KKT check")
    return X, mu


@torch.no_grad()
def kkt_report(model: ParetoManifoldExtractor, problem: Any, preferences: Tensor) -> dict[str, Tensor]:
    """The FJC residuals of the model's solutions at ``preferences`` (B, K), each relative to its own terms.

    * ``stationarity`` (B,): ||Σ r_i ∇f_i + Aᵀμ|| / (Σ r_i ||∇f_i|| + Σ |μ_j| ||A_j||) (0 when both are 0);
    * ``violation`` (B,): max_j max(g_j(x), 0) / ||A_j|| (the distance outside the feasible set);
    * ``complementarity`` (B,): max_j |μ_j g_j(x)|; ``dual_violation`` (B,): max_j max(−μ_j, 0);
    all 0 without constraints. Gradients from the problem's analytic Jacobian (not autograd).
    """
    r = torch.as_tensor(preferences, dtype=torch.float64)
    r = check_preferences(r, None, model.K, name="kkt_report preferences")
    r = r / r.sum(1, keepdim=True)
    x, mu = model.outputs(r)  # (B, n), (B, m)
    J = problem.jacobian(x)  # (B, K, n)
    grad_norms = torch.linalg.vector_norm(J, dim=2)  # ||∇f_i||, (B, K)
    station = torch.einsum("bk,bkn->bn", r, J)  # Σ r_i ∇f_i, (B, n)
    scale = (r * grad_norms).sum(1)  # (B,)
    B = x.shape[0]
    violation = torch.zeros(B, dtype=x.dtype)
    complementarity = torch.zeros(B, dtype=x.dtype)
    dual_violation = torch.zeros(B, dtype=x.dtype)
    if model.A is not None:
        A = model.A.to(x)
        row_norms = torch.linalg.vector_norm(A, dim=1)  # ||A_j||, (m,)
        station = station + mu @ A  # + Aᵀμ
        scale = scale + (mu.abs() * row_norms).sum(1)
        g = model.constraint_values(x)  # (B, m)
        violation = (torch.relu(g) / row_norms).max(1).values  # (B,)
        complementarity = (mu * g).abs().max(1).values  # |μ_j g_j|, (B,)
        dual_violation = torch.relu(-mu).max(1).values  # max(−μ_j, 0), (B,)
    num = torch.linalg.vector_norm(station, dim=1)  # (B,)
    tiny = torch.finfo(x.dtype).tiny
    rel = torch.where(scale > 0, num / torch.clamp(scale, min=tiny), torch.where(num > 0, torch.full_like(num, float("inf")), 0.0))
    return {"stationarity": rel, "violation": violation, "complementarity": complementarity, "dual_violation": dual_violation, "x": x, "mu": mu}


__all__ = ["ParetoManifoldExtractor", "biquad_constrained_ls", "kkt_report"]
