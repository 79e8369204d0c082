r"""Pareto HyperNetworks: PHN-LS (id ``phn-ls``) and PHN-EPO (id ``phn-epo``).

Navon, Shamsian, Fetaya, Chechik, "Learning the Pareto Front with Hypernetworks", ICLR 2021
(arXiv 2010.04104); official code AvivNavon/pareto-hypernetworks (``phn/solvers.py``:
LinearScalarizationSolver, EPOSolver / EPO / ExactParetoLP; ``experiments/multimnist/models.py``:
LeNetHyper; ``experiments/multimnist/trainer.py``: the training loop and its defaults).

The hypernetwork h(r; φ) maps a preference ray r in the simplex (K,) to the parameters θ = h(r; φ) of a
target network (paper §4, Eq. 3); training minimises the expected loss over rays r ~ Dir(α) over φ,
one ray per step (the update rule below).

EPO's LP (Mahapatra & Rajan, ICML 2020) is solved on the Gramian of the per-task gradients with
respect to the hypernetwork parameters φ (not the target's), by the certified
``reference_impls.finite_set.epo_lp.epo_alpha`` (balance mode when μ(r ⊙ ℓ) > ε, else descent),
ε = 1e-4 (ExactParetoLP's default), restricted descent (relax = False). α is a constant: the
gradient flows through the losses only.

Targets (class attribute ``target``, used by the evaluation's oracles): PHN-LS learns the LS map
r ↦ argmin over x of Σ r·f(x) ("ls"); PHN-EPO the ray point r ⊙ f ∝ 𝟙 ("ray", ideal point z = 0: EPO
uses the raw losses). On the toy problems the target "network" is the decision vector itself: the
hypernetwork outputs x ∈ Rⁿ (the paper's toy section was not re-read here: D3); on ``mtl-regression`` it
outputs the flattened parameters of the small regression network (``mtl-regression-set``).

Defaults: ray_hidden = 100 (trainer ``--ray-hidden``), Dirichlet α = 0.2 (``--alpha``), one ray per
step (trainer), Adam (trainer; lr 1e-4 on Multi-MNIST, 1e-3 here for the toys: D3), EPO ε = 1e-4.

Update rule:
    The hypernetwork is a ray-MLP of width :math:`H = 100` followed by one linear head to the
    target's :math:`n` parameters (D1); :math:`\sigma` is the ReLU and :math:`\varphi` all weights:

    .. math::

        e(r) = W_3\,\sigma\big(W_2\,\sigma(W_1 r + b_1) + b_2\big) + b_3 \in \mathbb{R}^H, \qquad \theta(r) = h(r;\varphi) = W e(r) + b \in \mathbb{R}^n

    Each step draws :math:`B` rays (:math:`B = 1` by default, D2) from :math:`\operatorname{Dir}(0.2\cdot\mathbb{1})`
    and takes one Adam step on :math:`\varphi` for the criterion of the method, with
    :math:`\ell_i(r) = f_i(\theta(r))` the task losses of the generated solution.
    PHN-LS minimises the linear scalarisation (paper Eq. 4):

    .. math::

        \mathcal{L}_{\mathrm{LS}}(\varphi) = \frac{1}{B}\sum_{b=1}^{B}\sum_{i=1}^{K} r_{b,i}\,\ell_i(r_b)

    PHN-EPO weights the losses by EPO's LP solution :math:`\alpha_b`, computed per ray and held
    constant (no gradient flows through it):

    .. math::

        \mathcal{L}_{\mathrm{EPO}}(\varphi) = \frac{1}{B}\sum_{b=1}^{B}\sum_{i=1}^{K} K\,\alpha_{b,i}\,\ell_i(r_b)

    For one ray, with :math:`G` the (K, p) matrix of gradients :math:`\nabla_\varphi \ell_i`
    (rows) and :math:`\mathbb{1}` the all-ones vector, EPO's LP reads

    .. math::

        \hat\ell = \frac{r \odot \ell}{\sum_j r_j \ell_j}, \qquad \mu = \sum_{i} \hat\ell_i \log(K \hat\ell_i), \qquad a = r \odot \big(\log(K\hat\ell) - \mu\big), \qquad C = \frac{G G^\top}{\max_i \lVert \nabla_\varphi \ell_i \rVert^2}

    .. math::

        \mu > \varepsilon:\quad \alpha = \operatorname{arg\,max}_{\alpha \in \Delta_K} \alpha^\top C a \ \ \text{s.t.}\ (C\alpha)_j \ge (Ca)_j\ (j \notin J \cup J^\star),\ (C\alpha)_j \ge 0\ (j \in J^\star)

    .. math::

        \mu \le \varepsilon:\quad \alpha = \operatorname{arg\,max}_{\alpha \in \Delta_K} \mathbb{1}^\top C\alpha \ \ \text{s.t.}\ C\alpha \ge 0,\ \alpha^\top C a \ge \min\big(\max_j (Ca)_j, 0\big)

    with :math:`J = \{j : (Ca)_j > 0\}` and :math:`J^\star = \operatorname{arg\,max}_j r_j \ell_j` (when :math:`J`
    is empty the balance LP keeps only :math:`C\alpha \ge 0`), :math:`\varepsilon = 10^{-4}`. For
    :math:`K = 2` the LP is solved in closed form (D7); at a simplex vertex, on LP failure or for
    :math:`G = 0` the weights fall back as D4 says.

Deviations:
    D1 The heads are one Linear(h, n) to the flattened target vector. LeNetHyper has one linear head per
       target tensor; stacking those heads' rows is the same function class (a linear map of e), so
       only the initialisation scale differs (each of our rows is initialised like PyTorch's Linear).
       The ResNet hypernetwork's chunk embeddings are not implemented.
    D2 A batch of B rays per step is allowed (``batch``); the criterion is the mean over the B rays.
       The paper and the official trainer use B = 1 (the default here too).
    D3 Toy defaults (steps, lr) are ours, reconstructed: the official repository has no toy script
       (only its figure) and the paper's toy settings were not re-read; Adam 1e-3 for 2000 steps
       trains the toys in seconds. Multi-MNIST's 1e-4 × 150 epochs is out of CI's reach.
    D4 PHN-EPO: the official code falls back to α = r/Σr when cvxpy/GLPK fails and prints the error;
       here the LP is the certified HiGHS LP (SolverError on failure), and the same fallback is taken
       on a SolverError but counted in ``lp_fallbacks`` (never silent). Preferences with a zero entry
       (simplex vertices, where μ(r ⊙ ℓ) is undefined: the official code then gets NaN and falls back)
       use α = r/Σr directly. A zero gradient Gramian gives α = 𝟙/K (every α is optimal).
    D5 EPO needs ℓ ≥ 0 (log(r ⊙ ℓ)); negative losses raise a ValueError (the official code raises on a
       negative r ⊙ ℓ).
    D6 float64 throughout (the official code is float32), so the toy tests do not depend on the BLAS kernel.
    D7 K = 2: EPO's LP over α = (t, 1 − t) is one-dimensional and is solved exactly by
       ``epo_alpha_two_tasks`` (the feasible interval of t, then the end the objective prefers),
       ~100× faster than a HiGHS call per ray; it equals the certified LP of ``finite_set/epo_lp.py``
       (test on random inputs). K ≥ 3 uses ``epo_lp.epo_alpha`` (HiGHS, KKT-certified).

Degenerate inputs: K = 1 (r = (1): both criteria reduce to the single loss), vertices of the simplex (PHN-LS: the
single task; PHN-EPO: D4), non-finite losses or preferences → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch
from reference_impls.core.solvers import SolverError


def epo_alpha_two_tasks(C: np.ndarray, a: np.ndarray, rl: np.ndarray, mu: float, *, eps: float, relax: bool = False) -> tuple[np.ndarray, str]:
    """EPO's LP for K = 2 solved exactly: α = (t, 1 − t), so every constraint is an interval of t (D7).

    Same LPs as :func:`reference_impls.finite_set.epo_lp.epo_alpha` (balance when μ > ε, else
    restricted descent): each constraint c_0 + t·c_1 ≥ b bounds t from one side; the objective
    g_0 + t·g_1 is maximised at the end of the feasible interval that g_1 points to (a tie g_1 = 0
    takes the lower end; any t is then optimal). Infeasible (empty interval beyond the tolerance
    1e-12·(1 + |b|)): SolverError, as the LP solver would. C is the scaled Gramian (max diagonal 1).
    """
    if not np.any(np.diag(C) > 0):
        return np.full(2, 0.5), "descent" if mu <= eps else "balance"  # G = 0: d = 0 for every α
    Ca = C @ a  # (2,)
    rows, rhs = [C[0], C[1]], [0.0, 0.0]  # (Cα)_j ≥ rhs_j, each row as (coef of α_1, coef of α_2)
    if mu > eps:
        J = Ca > 0
        if J.any():
            J_star = rl == rl.max()
            keep = ~J | J_star
            rhs_all = np.where(J_star, 0.0, Ca)
            rows = [C[j] for j in range(2) if keep[j]]
            rhs = [float(rhs_all[j]) for j in range(2) if keep[j]]
        objective, mode = Ca, "balance"  # max αᵀCa
    else:
        if not relax:
            rows.append(Ca)
            rhs.append(min(float(Ca.max()), 0.0))  # αᵀCa ≥ min(max Ca, 0)
        objective, mode = C.sum(0), "descent"  # max 𝟙ᵀCα
    lo, hi = 0.0, 1.0
    for row, b in zip(rows, rhs):
        c0, c1 = float(row[1]), float(row[0] - row[1])  # row·(t, 1 − t) = c0 + t·c1
        tol = 1e-12 * (1.0 + abs(b))
        if abs(c1) <= 1e-15:
            if c0 < b - tol:
                raise SolverError(f"phn-epo LP (K = 2): infeasible constraint {c0:.3e} >= {b:.3e}")
            continue
        bound = (b - c0) / c1
        if c1 > 0:
            lo = max(lo, bound)
        else:
            hi = min(hi, bound)
    if lo > hi:
        if lo - hi > 1e-12:
            raise SolverError(f"phn-epo LP (K = 2): infeasible, t in [{lo:.6g}, {hi:.6g}]")
        lo = hi = 0.5 * (lo + hi)
    slope = float(objective[0] - objective[1])  # d/dt of the objective at α = (t, 1 − t)
    t = hi if slope > 0 else lo
    t = min(max(t, 0.0), 1.0)
    return np.array([t, 1.0 - t]), mode


class PHN(ParetoModel):
    """The Pareto hypernetwork h(r; φ): ray-MLP then a linear head to the target's n parameters (built by ``begin``)."""

    preference_alpha: ClassVar[float] = 0.2  # trainer --alpha
    default_batch: ClassVar[int] = 1  # one ray per step (trainer)
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-3  # D3
    default_steps: ClassVar[int | None] = 2000  # D3

    def __init__(self, ray_hidden: int = 100, K: int | None = None, n: int | None = None, batch: int = 1, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if int(ray_hidden) < 1 or int(batch) < 1:
            raise ValueError(f"{self.name}: need ray_hidden >= 1 and batch >= 1, got {ray_hidden}, {batch}")
        self.ray_hidden, self.batch, self.dtype = int(ray_hidden), int(batch), dtype
        self.K: int | None = None
        self.n: int | None = None
        self.ray_mlp: nn.Module | None = None
        self.head: nn.Module | None = None
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int) -> None:
        """Create the layers for K objectives and a target of n parameters (PyTorch's default initialisation)."""
        if K < 1 or n < 1:
            raise ValueError(f"{self.name}: need K >= 1 and n >= 1, got K={K}, n={n}")
        h = self.ray_hidden
        self.K, self.n = K, n
        self.ray_mlp = nn.Sequential(nn.Linear(K, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)).to(self.dtype)
        self.head = nn.Linear(h, n).to(self.dtype)  # θ = W e + b (D1)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the layers for the problem (K, n), or check the ones built already."""
        if self.ray_mlp is None:
            self.build(K, n)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"{self.name} was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def forward(self, preference: Tensor) -> Tensor:
        if self.ray_mlp is None:
            raise ValueError(f"{self.name}: the hypernetwork is not built: call begin(K, n, ...) (or pass K and n)")
        rb, single = preference_batch(preference, self.K, self.dtype, name=f"{self.name} preference")  # (B, K)
        theta = self.head(self.ray_mlp(rb))  # θ = W·MLP(r) + b, (B, n)
        return theta[0] if single else theta


class PHNLS(PHN):
    """PHN-LS: the hypernetwork trained with the linear scalarisation Σ_i r_i ℓ_i (paper Eq. 4)."""

    name = "phn-ls"
    target = "ls"

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        return (r * F).sum(1).mean()  # mean_b Σ_i r_bi ℓ_bi, (scalar)


class PHNEPO(PHN):
    """PHN-EPO: Σ_i (K α_i) ℓ_i with α from EPO's LP on the gradients ∇_φ ℓ_i of the hypernetwork parameters."""

    name = "phn-epo"
    target = "ray"

    def __init__(self, ray_hidden: int = 100, K: int | None = None, n: int | None = None, batch: int = 1, eps: float = 1e-4, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(ray_hidden, K, n, batch, dtype)
        if not eps > 0:
            raise ValueError(f"phn-epo: eps must be positive, got {eps}")
        self.eps = float(eps)
        self.lp_fallbacks = 0  # LP failures answered with α = r/Σr (D4)
        self.last_alpha: Tensor | None = None  # (B, K) the weights α of the last call
        self.last_modes: list[str] = []

    def target_rays(self, preferences: Tensor) -> Tensor:
        """EPO's target rays 1/r normalised (B, K); a zero entry r_i gives the axis direction of the others' zero."""
        r = torch.as_tensor(preferences, dtype=torch.float64)
        r = r / r.sum(-1, keepdim=True)
        inv = torch.where(r > 0, 1.0 / torch.where(r > 0, r, 1.0), 0.0)  # 1/r (0 where r_i = 0: f_i unconstrained)
        return inv / torch.linalg.vector_norm(inv, dim=-1, keepdim=True)

    def epo_weights(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """α (B, K) on the simplex for each row: EPO's LP on C = G Gᵀ, G_i = ∇_φ ℓ_i (D4 for vertices and failures)."""
        from reference_impls.finite_set.epo_lp import adjustments, epo_alpha, scaled_gramians

        F, r = loss_batch(losses, preferences, name=self.name)
        if bool((F.detach() < 0).any()):
            raise ValueError("phn-epo: losses must be non-negative (EPO uses log(r ⊙ ℓ)); shift them by a lower bound (D5)")
        params = [p for p in self.parameters() if p.requires_grad]
        B, K = F.shape
        alpha = np.empty((B, K))
        self.last_modes = []
        for b in range(B):
            rb = r[b].detach().to(torch.float64)
            if K == 1 or bool((rb == 0).any()):
                alpha[b] = (rb / rb.sum()).numpy()  # a vertex: μ undefined, LS weights (D4)
                self.last_modes.append("vertex")
                continue
            rows = []
            for k in range(K):  # G_k = ∇_φ ℓ_bk (official EPO.get_weighted_loss)
                g = torch.autograd.grad(F[b, k], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for gi, p in zip(g, params)]))
            G = torch.stack(rows).detach()  # (K, p)
            rl, mu, a = adjustments(F[b : b + 1].detach(), rb[None])  # r ⊙ ℓ (1, K), μ (1,), a (1, K)
            C = scaled_gramians(G[None]).numpy()[0]  # G Gᵀ / max_k ||g_k||², (K, K)
            solve = epo_alpha_two_tasks if K == 2 else epo_alpha  # D7
            try:
                alpha[b], mode = solve(C, a[0].numpy(), rl[0].numpy(), float(mu[0]), eps=self.eps, relax=False, **({} if K == 2 else {"what": f"{self.name} ray {b}"}))
            except SolverError:
                alpha[b], mode = (rb / rb.sum()).numpy(), "fallback"  # the official fallback, counted (D4)
                self.lp_fallbacks += 1
            self.last_modes.append(mode)
        self.last_alpha = torch.from_numpy(alpha)
        return self.last_alpha

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        alpha = self.epo_weights(F, r).to(F)  # (B, K), constants
        return (F.shape[1] * alpha * F).sum(1).mean()  # mean_b Σ_i K α_bi ℓ_bi


__all__ = ["PHN", "PHNEPO", "PHNLS", "epo_alpha_two_tasks"]
