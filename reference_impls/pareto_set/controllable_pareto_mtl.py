r"""Controllable Pareto multi-task learning (id ``controllable-pareto-mtl``).

Lin, Yang, Zhang, Kwong, "Controllable Pareto Multi-Task Learning", arXiv 2010.06313 (2020; v2 2021;
ICLR 2021 submission). No official code was found (searched: Xi-L's repositories hold ParetoMTL, PSL,
PMOCO, STCH, not this paper), and only the abstract and introduction of the paper were reachable here:
the method below is RECONSTRUCTED from the paper's description (a preference-conditioned chunked
hypernetwork trained on sampled preferences with a preference-conditioned scalarisation) and from
the authors' ParetoMTL (NeurIPS 2019), whose sector-constrained subproblem the constrained variant uses.

The hypernetwork g(p; φ) maps a preference p in the simplex (K,) to the parameters θ(p) ∈ Rⁿ of the
target network (on the toy problems θ(p) is the decision vector itself), generated chunk by chunk (Ha
et al.'s chunking, as the paper's hypernetwork does to keep the output layer small), and is trained on
preferences p ~ Dir(𝟙) with one of two preference-conditioned scalarisations (``criterion``):

* ``"ls"`` (default, D7): the linear scalarisation (its map is the LS map; it cannot reach the
  concave part of a front);
* ``"constrained"`` (the paper's answer to LS's failure on concave fronts): ParetoMTL's sector
  subproblem for the preference p (ParetoMTL Eq. 6 with its reference vector replaced by p/‖p‖):
  L(θ(p)) stays in the sector of directions closer in angle to p than to any reference vector
  (the preference is a direction in loss space, ParetoMTL's convention: a larger share of p on a task
  allows a larger share of that task's loss, the opposite of LS's weight).

Targets (``target``, used by the evaluation): ``"ls"`` for the LS variant (the LS oracles of biquad,
vlmop2, mtl-linear); None for the constrained one (its solution is the Pareto point inside the sector,
no closed form), whose ``target_rays`` are p/‖p‖: L(θ(p)) should point along p from the ideal point 0.

Defaults: ray_hidden = 100 (PHN's ray-MLP, reused), chunk_size = 100, chunk_embedding = 10, preferences
~ Dir(𝟙) (uniform on the simplex), one preference per step, Adam 1e-3, 2000 steps (toys; ours),
m = 5 reference vectors (ParetoMTL's toy: 5 unit circle points at angles 0, π/8, ..., π/2; K ≥ 3:
the simplex lattice of resolution m − 1, normalised).

Update rule:
    The hypernetwork is PHN's ray-MLP :math:`e(p) \in \mathbb{R}^h` (Linear(K, h), ReLU, Linear(h, h),
    ReLU, Linear(h, h); :math:`h = 100`) and one shared chunk generator applied to :math:`e(p)` and
    the learnable embedding :math:`z_c \in \mathbb{R}^d` of each chunk (D8); :math:`\sigma` is the
    ReLU, :math:`s` the chunk size and :math:`\varphi` all weights:

    .. math::

        \theta_c(p) = W_5\,\sigma\big(W_4 [e(p); z_c] + b_4\big) + b_5 \in \mathbb{R}^s, \qquad \theta(p) = \big(\theta_1(p), \ldots, \theta_C(p)\big)_{1:n}, \qquad C = \lceil n / s \rceil

    Each step draws :math:`B` preferences (:math:`B = 1` by default, D5) from
    :math:`\operatorname{Dir}(\mathbb{1})` and takes one Adam step on :math:`\varphi` for a weighted sum
    of the task losses :math:`L_i(\theta(p_b))`:

    .. math::

        \mathcal{L}(\varphi) = \frac{1}{B}\sum_{b=1}^{B}\sum_{i=1}^{K} \alpha_{b,i}\,L_i\big(\theta(p_b)\big), \qquad \alpha_b = p_b \ \text{(criterion ls)}

    With the constrained criterion, :math:`\alpha_b` is ParetoMTL's adaptive weight vector for the
    preference :math:`p_b`, computed and held constant (no gradient flows through it). With
    :math:`\hat u = p/\lVert p \rVert`, the reference unit vectors :math:`u_1, \ldots, u_m`, the
    gradients :math:`g_i = \nabla_\theta L_i(\theta(p))` with respect to the generated parameters (D2)
    and the active set :math:`I` of violated sector constraints (D4):

    .. math::

        \mathcal{G}_j = (u_j - \hat u)^\top L(\theta(p)), \qquad I = \{j : \mathcal{G}_j > 0\}

    outside the sector (:math:`I` not empty) the weights descend the violated constraints, ParetoMTL's
    initial phase (Eq. 12–13); inside it (:math:`I` empty) they are MGDA's on the objectives, its main
    phase without active constraints (Eq. 10, 14); the phase is chosen per preference (D3):

    .. math::

        I \neq \emptyset:\quad \beta = \operatorname{arg\,min}_{\beta \in \Delta_{|I|}} \left\lVert \sum_{j \in I} \beta_j \sum_{i=1}^{K} (u_j - \hat u)_i\, g_i \right\rVert^2, \qquad \alpha = \sum_{j \in I} \beta_j (u_j - \hat u)

    .. math::

        I = \emptyset:\quad \alpha = \operatorname{arg\,min}_{\lambda \in \Delta_K} \left\lVert \sum_{i=1}^{K} \lambda_i\, g_i \right\rVert^2

    The min-norm problems are solved on the Gramian of the :math:`g_i` divided by the largest
    squared gradient norm, by the certified Wolfe solver. For one preference the step on
    :math:`\varphi` is then along :math:`(\partial\theta/\partial\varphi)^\top \sum_i \alpha_i g_i`
    (chain rule through the generated parameters; :math:`\alpha` may have negative entries in the
    first case).

Deviations: (from the paper as far as it could be read, and from ParetoMTL)
    D1 Reconstructed (see above): the paper's method section and code were not available, so the
       constrained criterion is ParetoMTL's main-phase rule applied to a continuous preference p (its
       sector against m fixed reference vectors); the paper's exact constraint set, sampling
       distribution, chunk sizes and whether it uses gradients w.r.t. θ or φ were not checked.
    D2 The min-norm problem uses the gradients of the losses with respect to the generated parameters
       θ(p) (one backward pass per task through the problem only, not through the hypernetwork), like
       ParetoMTL on the target network; PHN-EPO uses gradients w.r.t. φ instead.
    D3 ParetoMTL runs an initial phase (the first 20 % of the steps: only the violated constraints)
       then the main phase (objectives and active constraints together). Here the preference changes
       at every step, so the phase is chosen per preference: the initial-phase direction while L(θ(p))
       is outside its sector, MGDA on the objectives inside it. The main-phase rule alone (objectives
       + active constraints) was tried and fails: a Pareto-optimal θ(p) outside its sector has
       0 in the convex hull of the task gradients, so the min-norm direction vanishes and the
       hypernetwork collapsed to one point of the front for every p (measured on VLMOP2).
    D4 Active set: the constraints with a positive value; the Gramian is scaled by the largest
       gradient norm (ParetoMTL D1, D4 here) and solved by the certified Wolfe solver
       (``core.solvers.min_norm_weights``; SolverError on failure).
    D5 A batch of B preferences per step is allowed (``batch``, mean over the rows; default 1).
    D6 float64 throughout; losses must be non-negative for the constrained criterion (sectors live in
       the positive orthant; ParetoMTL assumes it): negative losses raise a ValueError.
    D7 The paper presents both criteria and no default could be checked; ``criterion="ls"`` is the
       default here because its map has a closed form (the evaluation's oracle); pass
       ``criterion="constrained"`` (``--param criterion=constrained``) for the sector criterion.
    D8 The chunk generator is an MLP (one hidden layer of width h) on the concatenation of e and the
       chunk embedding; the paper's exact chunking layers were not checked (D1). With C = 1
       (n ≤ ``chunk_size``, the toys' default) it is an MLP from p to θ.

Degenerate inputs: K = 1 (every reference vector is (1): no constraint, both criteria are the single loss);
simplex vertices (LS: the single task; constrained: the narrow sector along that loss's axis, i.e. the
other losses near their minimum); a preference equal to a reference vector
(that constraint is 0 and never active); all gradients zero (α from the uniform min-norm weights, the
step is zero); non-finite losses or preferences → ValueError.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import loss_batch, preference_batch
from reference_impls.core.solvers import min_norm_weights
from reference_impls.finite_set.pareto_mtl import circle_preferences
from reference_impls.pareto_set.phn import PHN

CRITERIA = ("constrained", "ls")


def reference_vectors(K: int, m: int) -> Tensor:
    """The m reference unit vectors (m', K) of the sector constraints: K = 2 ParetoMTL's circle points
    (angles linspace(0, π/2, m)); K ≥ 3 the simplex lattice of resolution m − 1 normalised; K = 1: (1)."""
    if K < 1 or m < 1:
        raise ValueError(f"need K >= 1 and m >= 1, got K={K}, m={m}")
    if K == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if K == 2:
        u = circle_preferences(m)  # (m, 2) on the simplex
    else:
        from reference_impls.metrics import _simplex_lattice

        u = torch.as_tensor(_simplex_lattice(K, max(m - 1, 1)))  # (m', K)
    return u / u.norm(dim=1, keepdim=True)  # unit rows


def in_sector(F: Tensor, preferences: Tensor, references: Tensor, *, tol: float = 0.0) -> Tensor:
    """Mask (B,): ∠(f_b, p_b) ≤ min_j ∠(f_b, u_j) + ``tol`` (radians): f_b lies in the sector of p_b."""
    Fh = F.to(torch.float64) / F.to(torch.float64).norm(dim=1, keepdim=True)  # (B, K)
    p = preferences.to(torch.float64)
    ph = p / p.norm(dim=1, keepdim=True)  # (B, K)
    own = torch.arccos((Fh * ph).sum(1).clamp(-1.0, 1.0))  # ∠(f, p), (B,)
    nearest = torch.arccos((Fh @ references.to(torch.float64).T).amax(1).clamp(-1.0, 1.0))  # min_j ∠(f, u_j), (B,)
    return own <= nearest + tol


class ControllablePMTL(PHN):
    """The chunked preference-conditioned hypernetwork, trained with LS or the ParetoMTL sector criterion."""

    name = "controllable-pareto-mtl"
    target: ClassVar[str | None] = "ls"  # per instance: "ls" for criterion "ls", None for "constrained"
    preference_alpha: ClassVar[float] = 1.0  # p ~ Dir(𝟙), uniform on the simplex (D1)
    default_batch: ClassVar[int] = 1
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-3
    default_steps: ClassVar[int | None] = 2000

    def __init__(
        self,
        criterion: str = "ls",
        ray_hidden: int = 100,
        chunk_size: int = 100,
        chunk_embedding: int = 10,
        references: int = 5,
        K: int | None = None,
        n: int | None = None,
        batch: int = 1,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"controllable-pareto-mtl: criterion must be one of {CRITERIA}, got {criterion!r}")
        if int(chunk_size) < 1 or int(chunk_embedding) < 1 or int(references) < 1:
            raise ValueError(f"controllable-pareto-mtl: need chunk_size, chunk_embedding, references >= 1, got {chunk_size}, {chunk_embedding}, {references}")
        super().__init__(ray_hidden, None, None, batch, dtype)
        self.criterion = criterion
        self.target = "ls" if criterion == "ls" else None
        self.chunk_size, self.chunk_embedding, self.num_references = int(chunk_size), int(chunk_embedding), int(references)
        self.chunks: nn.Parameter | None = None
        self.references: Tensor | None = None  # (m, K) unit rows
        self.last_alpha: Tensor | None = None  # (B, K) the adaptive weights of the last constrained call
        self.last_active: Tensor | None = None  # (B,) number of active constraints per row
        self._last_output: Tensor | None = None  # θ of the last forward, with its graph (for ∇_θ L_i, D2)
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int) -> None:
        """Ray-MLP (PHN's), C = ⌈n / chunk_size⌉ chunk embeddings z_c ~ N(0, 1), one shared chunk generator
        Linear(h + d, h) → ReLU → Linear(h, chunk_size) (a linear head would give every chunk the same
        p-dependent part: θ_c − θ_c' = W(z_c − z_c') constant in p, D8)."""
        super().build(K, n)  # ray_mlp, and PHN's head (replaced below)
        h, d = self.ray_hidden, self.chunk_embedding
        C = math.ceil(n / self.chunk_size)
        self.chunks = nn.Parameter(torch.randn(C, d, dtype=self.dtype))  # z_c, (C, d)
        self.head = nn.Sequential(nn.Linear(h + d, h), nn.ReLU(), nn.Linear(h, self.chunk_size)).to(self.dtype)  # θ_c = W₂ ReLU(W₁ [e; z_c] + b₁) + b₂
        self.references = reference_vectors(K, self.num_references)  # (m, K)

    def forward(self, preference: Tensor) -> Tensor:
        if self.ray_mlp is None:
            raise ValueError(f"{self.name}: the hypernetwork is not built: call begin(K, n, ...) (or pass K and n)")
        rb, single = preference_batch(preference, self.K, self.dtype, name=f"{self.name} preference")  # (B, K)
        e = self.ray_mlp(rb)  # (B, h)
        B, C = rb.shape[0], self.chunks.shape[0]
        inputs = torch.cat([e[:, None, :].expand(B, C, -1), self.chunks[None].expand(B, -1, -1)], dim=2)  # [e; z_c], (B, C, h + d)
        theta = self.head(inputs).reshape(B, C * self.chunk_size)[:, : self.n]  # concat_c θ_c, truncated, (B, n)
        if torch.is_grad_enabled():
            self._last_output = theta
        return theta[0] if single else theta

    def adaptive_weights(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """α (B, K) per row: Σ_{j∈I} β_j (u_j − û) when some sector constraint is violated (I ≠ ∅), else MGDA's λ,
        from ParetoMTL's min-norm problems on g_i = ∇_θ L_i (D2–D4)."""
        F, r = loss_batch(losses, preferences, name=self.name)
        if bool((F.detach() < 0).any()):
            raise ValueError(f"{self.name}: the constrained criterion needs non-negative losses (sectors in the positive orthant, D6)")
        theta = self._last_output
        if theta is None or not F.requires_grad:
            raise ValueError(f"{self.name}: the losses must come from this model's last forward pass (model(r) then problem.losses)")
        B, K = F.shape
        rows = []
        for k in range(K):  # g_k = ∇_θ L_k, row b of F depends on row b of θ only
            (g,) = torch.autograd.grad(F[:, k].sum(), theta, retain_graph=True, allow_unused=True)
            if g is None:
                raise ValueError(f"{self.name}: the losses do not depend on the model's last output θ")
            rows.append(g.detach().to(torch.float64))
        J = torch.stack(rows, dim=1)  # (B, K, n)
        if J.shape[0] != B:
            raise ValueError(f"{self.name}: {B} loss rows but the last forward gave {J.shape[0]} solutions")
        u_hat = r.detach().to(torch.float64)
        u_hat = u_hat / u_hat.norm(dim=1, keepdim=True)  # û = p/||p||, (B, K)
        W = self.references[None, :, :] - u_hat[:, None, :]  # u_j − û, (B, m, K)
        same = W.norm(dim=2) <= 16 * torch.finfo(torch.float64).eps  # û = u_j up to rounding: the same sector, never active
        W = torch.where(same[:, :, None], torch.zeros_like(W), W)
        G = torch.einsum("bjk,bk->bj", W, F.detach().to(torch.float64))  # 𝒢_j(θ_p), (B, m)
        active = G > 0  # D4
        scale = J.norm(dim=2).amax(dim=1)  # (B,) largest gradient norm per row (D4)
        Js = J / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None, None]  # (B, K, n)
        gram = Js @ Js.transpose(1, 2)  # (B, K, K)
        eye = torch.eye(K, dtype=torch.float64)
        alpha = torch.empty(B, K, dtype=torch.float64)
        for b in range(B):
            if bool(active[b].any()):
                A = W[b, active[b]]  # (a, K): ∇𝒢_j = (u_j − û)ᵀJ, the initial phase (Eq. 12–13, D3)
            else:
                A = eye  # (K, K): g_i, the main phase with no active constraint (Eq. 10)
            lam = min_norm_weights(A @ gram[b] @ A.T)  # (β) or (λ) on the simplex, certified
            alpha[b] = A.T @ lam  # α = Σ_j β_j (u_j − û) or λ, ParetoMTL Eq. 14
        self.last_alpha, self.last_active = alpha, active.sum(1)
        return alpha

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        if self.criterion == "ls":
            return (r * F).sum(1).mean()  # mean_b Σ_i p_bi L_bi
        alpha = self.adaptive_weights(F, r).to(F)  # (B, K), constants
        return (alpha * F).sum(1).mean()  # mean_b Σ_i α_bi L_bi

    def target_rays(self, preferences: Tensor) -> Tensor | None:
        """Constrained: p/||p|| (B, K), the direction L(θ_p) should take from 0; LS: None (the LS oracle gives F*)."""
        if self.criterion == "ls":
            return None
        r = torch.as_tensor(preferences, dtype=torch.float64)
        return r / r.norm(dim=-1, keepdim=True)


__all__ = ["CRITERIA", "ControllablePMTL", "in_sector", "reference_vectors"]
