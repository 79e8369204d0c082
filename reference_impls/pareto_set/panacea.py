r"""Panacea: the preference injected as singular values of an SVD low-rank adapter (id ``panacea``).

Zhong, Ma, Zhang, Yang, Chen, Zhang, Qi, Yang, "Panacea: Pareto Alignment via Preference Adaptation
for LLMs", NeurIPS 2024 (arXiv 2402.02030). Neither the paper's full text nor the official repository
could be reached from here: the equations follow the abstract, the Figure 2 caption (quoted in public
reviews) and two third-party re-implementations whose comments cite the paper's Eqs. 6 and 7, against
which the layer and its initialisation were checked: minsik-hong/Quantile-RLHF ``safe_rlhf/models/panacea.py`` (``PanaceaLayer``, stated
to match the original; its scripts: ``PANACEA_LORA_DIM=8``, ``PANACEA_SCALING=512``, aggregation
``linear_scalarization`` or ``tchebycheff``) and an independent ``Panacea_SVD_Linear`` (smliu); see
the Deviations and what was reconstructed (D2, D3).

Every adapted weight matrix of a frozen base model gets an SVD-LoRA adapter whose last m = K singular
values are the preference λ in the simplex times a learnable per-matrix scale s (Figure 2: "embeds the
preference vector into singular values of each SVD-LoRA layer and scales it with learnable
factors"); λ is not learnable (PanaceaLayer's ``pref_diagonal_weight`` has requires_grad False).
Training draws one preference per step and minimises an aggregation of the K per-objective losses
(Eqs. 6 and 7, there for rewards to maximise: the weighted sum and the weighted minimum above a
reference; written here for losses to minimise): the update rule below.

Consequences used by the tests (exact, for every value of the learnable tensors):

* :math:`W(\lambda)` is affine in λ: :math:`W(\sum_j a_j \lambda_j) = \sum_j a_j W(\lambda_j)` for weights
  :math:`a` and preferences :math:`\lambda_j` in the simplex; :math:`W_0` never changes.
* :math:`W(\lambda) - W(\lambda') = \tfrac{\alpha}{k} s \sum_i (\lambda_i - \lambda'_i)\, u_{k+i} v_{k+i}^\top`
  has rank ≤ K whatever the rank k (≤ 2 for K = 2).

Where the linear-scalarisation map is exactly representable on ``lowrank-regression`` (frozen base
:math:`W_0`, task optima :math:`\hat W_i = W_0 + D_i`, i = 1..K; k the adapter's rank): the LS map is
:math:`W^\star(\lambda) = \sum_i \lambda_i \hat W_i` on the simplex, affine, and Panacea's
:math:`W(\lambda) = W_0 + A + \sum_i \lambda_i B_i` with
:math:`A = \tfrac{\alpha}{k} \sum_{j \le k} \sigma_j u_j v_j^\top` (rank ≤ k) and
:math:`B_i = \tfrac{\alpha}{k} s\, u_{k+i} v_{k+i}^\top` (rank ≤ 1). Because the preference sums to one,
the two affine maps agree on the simplex iff :math:`A + B_i = D_i` for every task i:

* necessary: :math:`\operatorname{rank}(D_i - D_j) = \operatorname{rank}(B_i - B_j) \le 2` for all i, j,
  and :math:`\operatorname{rank}(D_i) \le k + 1`;
* sufficient, ``task_rank`` ρ = 1 (:math:`D_i = c_i u v^\top`), any K, any k ≥ 0: σ = 0,
  :math:`u_{k+i} = u`, :math:`\tfrac{\alpha}{k} s\, v_{k+i} = c_i v`;
* sufficient, K = 2, ρ = 2 (:math:`D_i = U \operatorname{diag}(c_i) V^\top`, U, V the problem's), k ≥ 2:
  :math:`A = U \operatorname{diag}(c_{21}, c_{12}) V^\top`, so
  :math:`D_1 - A = (c_{11} - c_{21}) U_1 V_1^\top` and :math:`D_2 - A = (c_{22} - c_{12}) U_2 V_2^\top`
  are rank one (they are :math:`B_1, B_2`).
* not representable, K = 2, ρ = 3 (the problem's :math:`D_1 - D_2 = U \operatorname{diag}(c_1 - c_2) V^\top`
  has rank 3 > 2): for λ = (t, 1 − t) the error
  :math:`E(t) = W(\lambda) - W^\star(\lambda) = E_0 + t G` with :math:`G = (B_1 - B_2) - (D_1 - D_2)`,
  and :math:`\operatorname{rank}(B_1 - B_2) \le 2`, so
  :math:`\lVert G \rVert_F \ge \tau := (\sum_{j \ge 3} \sigma_j(D_1 - D_2)^2)^{1/2}` (Eckart–Young).
  Projecting on :math:`G / \lVert G \rVert`: :math:`\lVert E(t) \rVert_F \ge \lVert G \rVert\, |t - c|` for
  some c, hence over any preferences :math:`t_1, \ldots, t_H`
  :math:`\operatorname{mean}_h \lVert E(t_h) \rVert \ge \tau \operatorname{mean}_h |t_h - \operatorname{median}(t)|`
  and :math:`\max_h \lVert E(t_h) \rVert \ge \tau (\max t - \min t)/2`, whatever the training (the
  tests check the trained model against this bound).

On the point problems (biquad, ...) whose solution is one vector x (no 2-D tensor) the vector is one
"layer" (n, 1): :math:`x(\lambda) = x_0 + \tfrac{\alpha}{k} U \operatorname{diag}(\sigma, s\lambda)\, v`
(:math:`v \in \mathbb{R}^{k+K}`; D1).

Defaults: rank k = 8 and α = 512 (the scripts' ``lora_dim`` / ``scaling``: α/k = 64, D3), σ = 0 and
s = 0 with U, V ~ N(0, 0.02²) (PanaceaLayer.init_parameters), LS aggregation (the Quantile-RLHF scripts' default),
one preference per step (paper: "for each data batch, we randomly sample a preference vector from
the preference simplex"), Adam.

Update rule:
    Every adapted weight matrix :math:`W_0` (out, in) of the frozen base (D1) gets learnable
    :math:`U \in \mathbb{R}^{\mathrm{out} \times (k+K)}`, :math:`V \in \mathbb{R}^{\mathrm{in} \times (k+K)}`,
    singular values :math:`\sigma \in \mathbb{R}^k` and a scale :math:`s \in \mathbb{R}`; the
    preference :math:`\lambda = r / \sum_i r_i` (D4) fills the last :math:`K` singular values
    (Figure 2), with :math:`\alpha/k` the LoRA scaling (:math:`\alpha = 512`, :math:`k = 8`, D3):

    .. math::

        W(\lambda) = W_0 + \frac{\alpha}{k}\, U \operatorname{diag}(\sigma_1, \ldots, \sigma_k, s\lambda_1, \ldots, s\lambda_K)\, V^\top

    Biases stay at the base. Each step draws :math:`B = 1` preference (Dirichlet(1), replaced by a
    uniformly chosen vertex with probability 0.2: D2) and takes one Adam step on
    :math:`(U, V, \sigma, s)` of every matrix for the linear scalarisation (default, Eq. 6) or the
    Tchebycheff aggregation (Eq. 7) of the losses, with :math:`z` the ideal point (D5):

    .. math::

        \mathcal{L}_{\mathrm{LS}} = \frac{1}{B}\sum_{b=1}^{B}\sum_{i=1}^{K} \lambda_{b,i}\,f_i\big(\theta(\lambda_b)\big), \qquad \mathcal{L}_{\mathrm{TCH}} = \frac{1}{B}\sum_{b=1}^{B} \max_{i}\ \lambda_{b,i}\,\big(f_i(\theta(\lambda_b)) - z_i\big)

    Initialisation: :math:`\sigma = 0`, :math:`s = 0` (the model starts at the base),
    :math:`U, V \sim \mathcal{N}(0, 0.02^2)` (D3).

Deviations:
    D1 Small models stand in for the LLM: the adapter is applied to every 2-D tensor of the problem's
       ``parameter_shapes()`` (the paper: every linear layer of the transformer); 1-D tensors (biases)
       stay at the base. A problem without 2-D tensors (the toys) adapts its vector as one (n, 1) layer.
       The frozen base is ``problem.base`` (lowrank-regression's base matrix, merging-mlp's pretrained
       network); a problem without one uses its first seeded starting point (``initial_points(1)``),
       else 0.
    D2 Preference sampling: Dirichlet(1) (uniform on Δ) with, at probability ``vertex_probability``
       (0.2, ours), a vertex of the simplex chosen uniformly: the paper samples the simplex and, as quoted in the
       Quantile-RLHF re-implementation, "the vertices ... with higher probability"; its probability
       was not found (reconstructed). A batch of B preferences per step is allowed (mean over rows).
    D3 Official code not reachable: the layer, its initialisation (σ = s = 0, U, V ~ N(0, 0.02²)) and α/k
       follow the third-party ``PanaceaLayer``; the other re-implementation initialises differently
       (Kaiming / zero factors, σ ~ N(0, 0.02²), s ~ N(0, 0.5²)). Step budgets and learning rates on
       the toys are ours. No orthogonality regulariser on U, V (neither re-implementation has one).
    D4 The preference is normalised, λ = r/Σr (rows need not sum to one; W depends on r only through
       λ); the official layer takes the vector as given (callers pass points of Δ).
    D5 Tchebycheff: z is the problem's ideal point passed to ``begin`` (or ``ideal=`` here), else 0
       (the losses here are non-negative); the RLHF setting of the paper uses reward references.
       The Tchebycheff optimum with every term active is the ray point λ ⊙ (f − z) ∝ 𝟙 (``target = "ray"``).
    D6 float64 throughout (the official code trains in bf16/fp32), so tests do not depend on the BLAS kernel.

Degenerate inputs: K = 1 (λ = (1): an ordinary SVD-LoRA), simplex vertices (one task; for the
Tchebycheff criterion the zero-weight terms are 0), non-finite or negative preferences or losses of the
wrong shape → ValueError (core checks), a problem whose layout does not match n → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch, sample_preferences
from reference_impls.pareto_set.combination import ParameterLayout

AGGREGATIONS = ("ls", "tchebycheff")


class Panacea(ParetoModel):
    """θ(λ) = θ_0 + per 2-D tensor (α/k)·U diag(σ, s·λ) Vᵀ, trained on sampled λ with LS or Tchebycheff aggregation."""

    name = "panacea"
    target: ClassVar[str | None] = "ls"  # an instance with aggregation="tchebycheff" targets "ray"
    preference_alpha: ClassVar[float] = 1.0  # uniform on the simplex (D2)
    default_batch: ClassVar[int] = 1  # one preference per data batch (paper §4)
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-2  # D3 (toys)
    default_steps: ClassVar[int | None] = 400  # D3 (toys)

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 512.0,
        aggregation: str = "ls",
        vertex_probability: float = 0.2,
        init_std: float = 0.02,
        batch: int = 1,
        ideal: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if int(rank) != rank or int(rank) < 0:
            raise ValueError(f"panacea: rank must be an integer >= 0, got {rank!r}")
        if not (float(alpha) > 0 and float(alpha) < float("inf")):
            raise ValueError(f"panacea: alpha must be positive and finite, got {alpha!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"panacea: aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if not 0.0 <= float(vertex_probability) <= 1.0:
            raise ValueError(f"panacea: vertex_probability must be in [0, 1], got {vertex_probability!r}")
        if not (float(init_std) > 0 and float(init_std) < float("inf")):
            raise ValueError(f"panacea: init_std must be positive and finite, got {init_std!r}")
        if int(batch) < 1:
            raise ValueError(f"panacea: batch must be >= 1, got {batch!r}")
        self.rank, self.alpha, self.aggregation = int(rank), float(alpha), aggregation
        self.scaling = self.alpha / max(self.rank, 1)  # α/k (PanaceaLayer: lora_scaling / lora_dim)
        self.vertex_probability, self.init_std, self.batch, self.dtype = float(vertex_probability), float(init_std), int(batch), dtype
        self.target = "ray" if aggregation == "tchebycheff" else "ls"
        self.ideal = None if ideal is None else torch.as_tensor(ideal, dtype=dtype)
        self.K: int | None = None
        self.n: int | None = None
        self.layout: ParameterLayout | None = None
        self.adapted: list[int] = []  # layout entries that carry an adapter
        self.shapes2d: list[tuple[int, int]] = []  # (out, in) of each adapter
        self.U = nn.ParameterList()  # (out, k + K) each
        self.V = nn.ParameterList()  # (in, k + K) each
        self.sigma = nn.ParameterList()  # (k,) each: the learned singular values
        self.scale = nn.ParameterList()  # (1,) each: the per-matrix preference scale s
        self.register_buffer("base", None)

    # ---------------------------------------------------------------------------------------------
    def build(self, K: int, layout: ParameterLayout, base: Tensor) -> None:
        """Create one adapter per 2-D tensor of ``layout`` (or per vector when there is none, D1) on the frozen ``base`` (n,)."""
        if K < 1:
            raise ValueError(f"panacea: need K >= 1, got {K}")
        base = torch.as_tensor(base, dtype=self.dtype).detach().reshape(-1).clone()
        if base.shape != (layout.n,) or not bool(torch.isfinite(base).all()):
            raise ValueError(f"panacea: the base must be a finite vector of the layout's {layout.n} numbers, got shape {tuple(base.shape)}")
        self.K, self.n, self.layout = int(K), layout.n, layout
        self.base = base  # θ_0, frozen (a buffer: never optimised)
        self.adapted = list(layout.matrices) or list(range(len(layout.shapes)))  # no matrix: vectors as (n, 1) layers
        self.shapes2d = [tuple(layout.shapes[i]) if len(layout.shapes[i]) == 2 else (int(layout.shapes[i][0]), 1) for i in self.adapted]  # type: ignore[misc]
        width = self.rank + self.K
        for out_dim, in_dim in self.shapes2d:
            self.U.append(nn.Parameter(torch.randn(out_dim, width, dtype=self.dtype) * self.init_std))  # U ~ N(0, 0.02²)
            self.V.append(nn.Parameter(torch.randn(in_dim, width, dtype=self.dtype) * self.init_std))  # V ~ N(0, 0.02²)
            self.sigma.append(nn.Parameter(torch.zeros(self.rank, dtype=self.dtype)))  # σ = 0: W(λ) = W_0 at the start
            self.scale.append(nn.Parameter(torch.zeros(1, dtype=self.dtype)))  # s = 0

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the adapters on the problem's frozen base (``problem.base``; D1), or check the ones built already."""
        if self.ideal is None and ideal is not None:
            self.ideal = torch.as_tensor(ideal, dtype=self.dtype).detach().clone()  # z for the Tchebycheff criterion (D5)
        if self.layout is not None:
            if (self.K, self.n) != (K, n):
                raise ValueError(f"panacea was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")
            return
        layout = ParameterLayout.of(problem) if problem is not None else ParameterLayout([("x", (int(n),))])
        if layout.n != n:
            raise ValueError(f"panacea: the problem's layout holds {layout.n} numbers, n = {n}")
        if problem is not None and getattr(problem, "base", None) is not None:
            base = torch.as_tensor(problem.base)
        elif initial_points is not None:
            base = initial_points(1)[0]  # no pretrained model: the first seeded starting point (D1)
        else:
            base = torch.zeros(n, dtype=self.dtype)
        self.build(K, layout, base)

    # ---------------------------------------------------------------------------------------------
    def preference_weights(self, preference: Tensor) -> tuple[Tensor, bool]:
        """λ = r/Σr (B, K) (D4) and whether the input was one row."""
        if self.layout is None:
            raise ValueError("panacea: the adapters are not built: call begin(K, n, problem=...) (or build(K, layout, base))")
        rb, single = preference_batch(preference, self.K, self.dtype, name="panacea preference")  # (B, K)
        return rb / rb.sum(1, keepdim=True), single

    def deltas(self, lam: Tensor) -> list[Tensor]:
        """The adapters' updates (α/k)·U diag(σ, s·λ) Vᵀ, one (B, out, in) per adapted tensor, for λ (B, K)."""
        B = lam.shape[0]
        out = []
        for U, V, sigma, s in zip(self.U, self.V, self.sigma, self.scale):
            singular = torch.cat([sigma.expand(B, -1), s * lam], dim=1)  # diag(σ_1..σ_k, s·λ_1..s·λ_K), (B, k + K)
            out.append(self.scaling * torch.einsum("or,br,ir->boi", U, singular, V))  # (α/k) U diag(·) Vᵀ, (B, out, in)
        return out

    def forward(self, preference: Tensor) -> Tensor:
        lam, single = self.preference_weights(preference)  # (B, K)
        B = lam.shape[0]
        parts = self.layout.split(self.base.expand(B, -1))  # θ_0 per tensor, (B, *shape) each
        for index, delta in zip(self.adapted, self.deltas(lam)):
            parts[index] = parts[index] + delta.reshape(parts[index].shape)  # W(λ) = W_0 + (α/k) U diag(σ, sλ) Vᵀ
        theta = self.layout.join(parts)  # (B, n)
        return theta[0] if single else theta

    # ---------------------------------------------------------------------------------------------
    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num`` preferences (num, K): Dirichlet(1) rows, each replaced by a uniformly chosen vertex with probability ``vertex_probability`` (D2)."""
        r = sample_preferences(num, K, alpha=self.preference_alpha, generator=generator)  # (num, K)
        if K == 1 or self.vertex_probability == 0.0:
            return r
        pick = torch.rand(num, generator=generator, dtype=torch.float64) < self.vertex_probability  # (num,)
        vertex = torch.randint(K, (num,), generator=generator)  # (num,)
        onehot = torch.nn.functional.one_hot(vertex, K).to(r.dtype)  # e_i, (num, K)
        return torch.where(pick[:, None], onehot, r)

    def target_rays(self, preferences: Tensor) -> Tensor | None:
        """Tchebycheff: the ray point's direction f − z ∝ 1/λ normalised (B, K) (a zero entry: that axis is free, 0); LS: None."""
        if self.aggregation != "tchebycheff":
            return None
        r = torch.as_tensor(preferences, dtype=torch.float64)
        r = r / r.sum(-1, keepdim=True)
        inv = torch.where(r > 0, 1.0 / torch.where(r > 0, r, 1.0), 0.0)  # 1/λ (0 where λ_i = 0)
        return inv / torch.linalg.vector_norm(inv, dim=-1, keepdim=True)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name="panacea")  # (B, K), (B, K)
        lam = r / r.sum(1, keepdim=True)  # λ on the simplex (D4)
        if self.aggregation == "ls":
            return (lam * F).sum(1).mean()  # mean_b Σ_i λ_i f_i (Eq. 6)
        z = torch.zeros(F.shape[1], dtype=F.dtype) if self.ideal is None else self.ideal.to(F)  # (K,) (D5)
        if z.shape != (F.shape[1],):
            raise ValueError(f"panacea: the ideal point has shape {tuple(z.shape)}, the losses have K = {F.shape[1]}")
        return (lam * (F - z)).max(1).values.mean()  # mean_b max_i λ_i (f_i − z_i) (Eq. 7)


__all__ = ["AGGREGATIONS", "Panacea"]
