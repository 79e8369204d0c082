"""Panacea: the preference injected as singular values of an SVD low-rank adapter (id ``panacea``).

Zhong, Ma, Zhang, Yang, Chen, Zhang, Qi, Yang, "Panacea: Pareto Alignment via Preference Adaptation
for LLMs", NeurIPS 2024 (arXiv 2402.02030). Neither the paper's full text nor the official repository
could be reached from here: the equations follow the abstract, the Figure 2 caption (quoted in public
reviews) and two third-party re-implementations whose comments cite the paper's Eqs. 6 and 7, against
which the layer and its initialisation were checked: minsik-hong/Quantile-RLHF ``safe_rlhf/models/panacea.py`` (``PanaceaLayer``, stated
to match the original; its scripts: ``PANACEA_LORA_DIM=8``, ``PANACEA_SCALING=512``, aggregation
``linear_scalarization`` or ``tchebycheff``) and an independent ``Panacea_SVD_Linear`` (smliu); see
the Deviations and what was reconstructed (D2, D3).

Every adapted weight matrix W ∈ R^{out×in} of a frozen base model gets an SVD-LoRA adapter whose last
m = K singular values are the preference λ ∈ Δ_K times a learnable per-matrix scale s (Figure 2:
"embeds the preference vector into singular values of each SVD-LoRA layer and scales it with
learnable factors")::

    W(λ) = W_0 + (α/k)·U diag(σ_1, …, σ_k, s·λ_1, …, s·λ_K) Vᵀ,   U ∈ R^{out×(k+K)}, V ∈ R^{in×(k+K)}

W_0 frozen; U, V, σ ∈ R^k and s ∈ R learnable; λ is not learnable (PanaceaLayer's
``pref_diagonal_weight`` has requires_grad False). Training draws one preference per step and
minimises an aggregation of the K per-objective losses f_i(θ(λ)) (Eqs. 6 and 7, there for rewards J_i
to maximise, max Σ λ_i J_i and max min_i λ_i (J_i − z_i); written here for losses to minimise)::

    LS (default):  g(θ; λ) = Σ_i λ_i f_i(θ(λ))
    Tchebycheff:   g(θ; λ) = max_i λ_i (f_i(θ(λ)) − z_i),   z the ideal point

Consequences used by the tests (exact, for every value of the learnable tensors):

* W(λ) is affine in λ: W(Σ_j a_j λ_j) = Σ_j a_j W(λ_j) for a ∈ Δ (λ_j ∈ Δ); W_0 never changes.
* W(λ) − W(λ') = (α/k)·s·Σ_i (λ_i − λ'_i) u_{k+i} v_{k+i}ᵀ has rank ≤ K whatever the rank k (≤ 2 for K = 2).

Where the linear-scalarisation map is exactly representable on ``lowrank-regression`` (frozen base
W_0, task optima Ŵ_i = W_0 + D_i, i = 1..K; k the adapter's rank): the LS map is W*(λ) = Σ_i λ_i Ŵ_i
(λ ∈ Δ), affine, and Panacea's W(λ) = W_0 + A + Σ_i λ_i B_i with A = (α/k)·Σ_{j≤k} σ_j u_j v_jᵀ
(rank ≤ k) and B_i = (α/k)·s·u_{k+i} v_{k+i}ᵀ (rank ≤ 1). Because Σ_i λ_i = 1 on Δ, the two affine maps
agree on Δ iff A + B_i = D_i for every task i:

* necessary: rank(D_i − D_j) = rank(B_i − B_j) ≤ 2 for all i, j, and rank(D_i) ≤ k + 1;
* sufficient, task_rank ρ = 1 (D_i = c_i u vᵀ), any K, any k ≥ 0: σ = 0, u_{k+i} = u, (α/k)s·v_{k+i} = c_i v;
* sufficient, K = 2, ρ = 2 (D_i = U diag(c_i) Vᵀ, U, V the problem's), k ≥ 2: A = U diag(c_21, c_12) Vᵀ,
  so D_1 − A = (c_11 − c_21) U_1 V_1ᵀ and D_2 − A = (c_22 − c_12) U_2 V_2ᵀ are rank one (= B_1, B_2).
* not representable, K = 2, ρ = 3 (the problem's D_1 − D_2 = U diag(c_1 − c_2) Vᵀ has rank 3 > 2): for
  λ = (t, 1 − t) the error E(t) = W(λ) − W*(λ) = E_0 + t·G with G = (B_1 − B_2) − (D_1 − D_2), and
  rank(B_1 − B_2) ≤ 2, so ||G||_F ≥ τ := (Σ_{j≥3} σ_j(D_1 − D_2)²)^{1/2} (Eckart–Young). Projecting on
  G/||G||: ||E(t)||_F ≥ ||G||·|t − c| for some c, hence over any preferences t_1..t_H
  mean_h ||E(t_h)|| ≥ τ · mean_h |t_h − median(t)| and max_h ||E(t_h)|| ≥ τ · (max t − min t)/2,
  whatever the training (the tests check the trained model against this bound).

On the point problems (biquad, ...) whose solution is one vector x (no 2-D tensor) the vector is one
"layer" (n, 1): x(λ) = x_0 + (α/k)·U diag(σ, s·λ) v (v ∈ R^{k+K}; D1).

Defaults: rank k = 8 and α = 512 (the scripts' ``lora_dim`` / ``scaling``: α/k = 64, D3), σ = 0 and
s = 0 with U, V ~ N(0, 0.02²) (PanaceaLayer.init_parameters), LS aggregation (the Quantile-RLHF scripts' default),
one preference per step (paper: "for each data batch, we randomly sample a preference vector from
the preference simplex"), Adam.

Deviations:
    D1 Small models stand in for the LLM: the adapter is applied to every 2-D tensor of the problem's
       ``parameter_shapes()`` (the paper: every linear layer of the transformer); 1-D tensors (biases)
       stay at the base. A problem without 2-D tensors (the toys) adapts its vector as one (n, 1) layer.
       The frozen base is ``problem.base`` (lowrank-regression's W_0, merging-mlp's pretrained θ_0);
       a problem without one uses its first seeded starting point (``initial_points(1)``), else 0.
    D2 Preference sampling: Dirichlet(1) (uniform on Δ) with, at probability ``vertex_probability``
       (0.2, ours), a vertex e_i chosen uniformly: the paper samples the simplex and, as quoted in the
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
