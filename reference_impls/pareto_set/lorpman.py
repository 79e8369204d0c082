"""LORPMAN, low-rank Pareto manifold learning (id ``lorpman``): a shared main network plus one low-rank part per task.

Weiyu Chen, James T. Kwok, "Efficient Pareto Manifold Learning with Low-Rank Structure", ICML 2024,
PMLR 235:7015-7032 (arXiv 2407.20734). No official code was found (searched GitHub for the paper's
title and name; LibMOON's ``model/lora_model.py`` cites the paper but its ``SimplePSLLoRAModel`` is an
affine map x = θ_0 + Σ_k α_k θ_k of full vectors, neither low-rank nor regularised, so it was not used).

Model. For every weight matrix of the problem's model (the 2-D entries of ``problem.parameter_shapes()``,
(out, in)) a trainable main part W_0 and, per task k, a rank-r pair B_k (out, r), A_k (r, in); a
preference α ∈ Δ selects the network

    W(α) = W_0 + s Σ_k α_k B_k A_k                       (per layer; s the scaling factor)

trained like PaMaL on preferences α ~ Dir(p𝟙), with the orthogonality regulariser between the tasks'
low-rank matrices and, optionally, PaMaL's multi-forward regulariser (``pamal.monotonicity_penalty``):

    L = mean_b Σ_k α_bk ℓ_k(θ(α_b)) + λ_o R_o + λ_p R_p
    R_o = Σ_layers Σ_{i≠j} ⟨vec(B_i A_i), vec(B_j A_j)⟩²  = ||WᵀW − diag(WᵀW)||_F²,  W = [vec(B_1A_1), …, vec(B_KA_K)]
    K > 3: R_o over a random subset of 3 tasks per step (the paper's stochastic approximation, O(1) in K)

Training has two phases: the main network and the low-rank parts are trained together, then after a
freeze point (the paper's ablation: epoch 80 of 100 on UTKFace) the main network is frozen and only
the low-rank parts move. Exact properties: θ(e_k) = θ_0 + s B_k A_k at a vertex; with B = 0 (LoRA's zero
initialisation, used here) θ(α) = θ_0 for every α.

Rank threshold on ``lowrank-regression`` (Ŵ_k = W_b + U diag(c_k) Vᵀ, W_b the problem's base, ρ =
task_rank; the LS map W*(α) = Σ_k α_k Ŵ_k is affine on Δ, and so is W(α), so W(α) = W*(α) for all α
iff W_0 + s B_k A_k = Ŵ_k for every k):

* K = 2, trainable main network: needed and sufficient per-task rank r = ⌈ρ/2⌉. Necessary: s(B_1A_1 −
  B_2A_2) = Ŵ_1 − Ŵ_2 =: D has rank ρ ≤ rank(B_1A_1) + rank(B_2A_2) ≤ 2r. Sufficient: split D's SVD
  into D = D_a + D_b with ⌈ρ/2⌉ and ⌊ρ/2⌋ singular triplets and take W_0 = Ŵ_1 − D_a, sB_1A_1 = D_a,
  sB_2A_2 = −D_b (then ⟨D_a, D_b⟩ = 0: the exact fit also has R_o = 0). Below it, every parameter
  has W(α) − W*(α) = E_1 − α_2 G with G = s(B_1A_1 − B_2A_2) − D, and ||G||_F ≥ τ_r := (Σ_{j>2r} σ_j(D)²)^½
  (Eckart–Young: rank(sB_1A_1 − sB_2A_2) ≤ 2r), so over preferences whose α_2 spans [a, b]
      max_α ||W(α) − W*(α)||_F ≥ (b − a) τ_r / 2         (:func:`rank_deficit_bound`)
  for ANY trained parameters: the failure below the threshold is structural, not an optimiser's.
* Frozen main network (W_0 = W_b, the pretrained base): each sB_kA_k must equal Ŵ_k − W_b, rank ρ.
* K = 3: the pairwise argument still gives r ≥ ⌈ρ/2⌉; W_0 = W_b + U diag(t) Vᵀ with each coordinate
  t_j equal to one task's c_k[j] gives r = ⌈2ρ/3⌉ (each task zeroes ⌊ρ/3⌋ or ⌈ρ/3⌉ of its ρ entries);
  for ρ = 2 a non-diagonal W_0 reaches r = 1 = ⌈ρ/2⌉: W_0 = W_b + U T Vᵀ with det(diag(c_k) − T) = 0 for
  k = 1, 2, 3, i.e. (c_k1 − T_11)(c_k2 − T_22) = T_12 T_21 — linear in (T_11, T_22, T_11T_22 − T_12T_21),
  one generic 3×3 solve (the test builds it). For larger ρ the K = 3 threshold lies in [⌈ρ/2⌉, ⌈2ρ/3⌉].

Defaults (all reconstructed or ours, see D1): rank r = 4, s = 1 (inside the paper's stable range
[0.1, 1] of its scaling ablation), λ_o = 1, orthogonality over 3 sampled tasks when K > 3 (paper),
main network frozen after 80 % of the steps (paper's UTKFace ablation, epoch 80 of 100), Dirichlet
p = 1, 4 preferences per step, λ_p = 0 (the paper's MultiMNIST setting; 1 on UTKFace/CIFAR-100, 5
on Census), Adam lr 1e-2, 1000 steps (ours, for the toys).

Deviations:
    D1 Reconstructed from the paper's abstract, summaries of its method and ablations, and the
       PaMaL code it builds on; the paper's full text and code were not reachable. Reconstructed in
       particular: R_o's exact form (the literal "off-diagonal elements of WᵀW", unnormalised, over
       vec(B_kA_k) per layer, squared; a cosine-normalised form would be undefined at the zero
       initialisation B = 0), its weight λ_o, the rank and scaling defaults, the initialisation
       (LoRA's: A ~ U(−1/√in, 1/√in), B = 0) and the freeze point expressed as a fraction of steps.
       This R_o is of 4th order in the parts' scale, so λ_o is relative to the problem's scale: on
       biquad, whose random start lies ≈ 2.6 from the front, λ_o = 1 slows the fit (1000 steps: max
       error 0.17 vs 0.026 with λ_o = 0; 3000 steps: 0.0023), while on lowrank-regression it speeds
       it up (tests/reference_impls/test_lorpman.py).
    D2 Entries that are not matrices (biases, the decision vector of the point problems such as
       biquad) carry a full per-task delta v_k, θ(α) = θ_0 + s Σ_k α_k v_k: a vector is an (n, 1)
       matrix, of rank ≤ 1, so the rank-r form with r ≥ 1 is no restriction there. R_o includes them.
    D3 The main network starts from the problem's seeded ``initial_points`` (the paper trains its main
       network from a fresh initialisation); ``init="base"`` starts it from ``problem.base`` (a
       pretrained model, LoRA-style) and raises a ValueError on a problem without one.
    D4 The criterion is the mean over the B preferences of a step (the expectation over Dir(p)); PaMaL's
       code sums its window. λ_p R_p uses ``pamal.monotonicity_penalty`` with PaMaL's guard (added only
       where λ_p R_p < L) and needs B ≥ 2.
    D5 Preferences need not sum to one: α = r / Σr. The freeze detaches θ_0 in the forward pass (its
       gradient is None, so Adam leaves it), counting steps with ``on_epoch_end``.
    D6 float64 throughout, so the tests do not depend on the BLAS kernel. The paper's benchmarks
       (MultiMNIST, Census, UTKFace, CIFAR-100 with 20 tasks, CelebA with 40 tasks, ResNet-18) are not
       reproduced; small problems stand in (``lowrank-regression``, ``merging-mlp``, the toys).

Degenerate inputs: K = 1 (θ(α) = θ_0 + s B_1A_1, R_o = 0), simplex vertices, zero entries, B = 1 (no
R_p), rank < 1, s or λ's non-finite or out of range, non-finite or negative preferences, non-finite
losses → ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch, sample_preferences
from reference_impls.pareto_set.combination import ParameterLayout
from reference_impls.pareto_set.pamal import monotonicity_penalty

ORTHOGONAL_SUBSET = 3  # tasks per step in R_o when K > 3 (the paper's stochastic approximation)
INITS = ("initial", "base")


def rank_deficit_bound(D: Tensor, rank: int, spread: float) -> float:
    """The lower bound (spread/2)·(Σ_{j>2r} σ_j(D)²)^½ on max_α ||W(α) − W*(α)||_F for K = 2 (module docstring).

    ``D`` (out, in) = Ŵ_1 − Ŵ_2, ``rank`` = r per task, ``spread`` = max α_2 − min α_2 over the preferences."""
    sigma = torch.linalg.svdvals(D.to(torch.float64))  # σ_1 ≥ σ_2 ≥ …
    tail = sigma[2 * int(rank):]  # what a rank-2r difference cannot reach (Eckart–Young)
    return 0.5 * float(spread) * float(torch.linalg.vector_norm(tail))


class LORPMAN(ParetoModel):
    """θ(α) = θ_0 + s Σ_k α_k B_k A_k per weight matrix (full per-task deltas on vectors, D2), built by ``begin``."""

    name = "lorpman"
    target: ClassVar[str | None] = "ls"  # R_o vanishes at an orthogonal exact fit, so the LS map stays the target
    preference_alpha: ClassVar[float] = 1.0  # Dir(p), p = 1 (D1)
    default_batch: ClassVar[int] = 4
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-2
    default_steps: ClassVar[int | None] = 1000

    def __init__(
        self,
        rank: int = 4,
        scale: float = 1.0,
        orthogonality: float = 1.0,
        freeze_fraction: float = 0.8,
        init: str = "initial",
        p: float = 1.0,
        window: int = 4,
        reg_coefficient: float = 0.0,
        temperature: float = 1.0,
        K: int | None = None,
        shapes: list[tuple[str, tuple[int, ...]]] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        scale, orthogonality, freeze_fraction, p = float(scale), float(orthogonality), float(freeze_fraction), float(p)
        reg_coefficient, temperature = float(reg_coefficient), float(temperature)
        if int(rank) < 1:
            raise ValueError(f"lorpman: the rank must be >= 1, got {rank}")
        if not (0 < scale < math.inf):
            raise ValueError(f"lorpman: the scaling factor s must be positive and finite, got {scale}")
        if not (0 <= orthogonality < math.inf) or not (0 <= reg_coefficient < math.inf) or not (0 < temperature < math.inf):
            raise ValueError(f"lorpman: need finite orthogonality >= 0, reg_coefficient >= 0, temperature > 0, got {orthogonality}, {reg_coefficient}, {temperature}")
        if not (0 < freeze_fraction <= 1):
            raise ValueError(f"lorpman: freeze_fraction must lie in (0, 1] (1: never freeze), got {freeze_fraction}")
        if not (0 < p < math.inf) or int(window) < 1:
            raise ValueError(f"lorpman: need a positive finite Dirichlet p and window >= 1, got {p}, {window}")
        if init not in INITS:
            raise ValueError(f"lorpman: init must be one of {INITS}, got {init!r}")
        self.rank, self.scale, self.orthogonality, self.freeze_fraction, self.init = int(rank), scale, orthogonality, freeze_fraction, init
        self.preference_alpha, self.batch = p, int(window)  # instance values shadow the class defaults
        self.reg_coefficient, self.temperature, self.dtype = reg_coefficient, temperature, dtype
        self.K: int | None = None
        self.n: int | None = None
        self.layout: ParameterLayout | None = None
        self.base: nn.Parameter | None = None  # θ_0 (n,), the main network
        self.B = nn.ParameterList()  # per matrix entry: (K, out, r)
        self.A = nn.ParameterList()  # per matrix entry: (K, r, in)
        self.V = nn.ParameterList()  # per other entry: (K, size), full per-task deltas (D2)
        self.frozen = False
        self.freeze_step: int | None = None
        self.steps_done = 0
        self.last_orthogonality: float | None = None  # λ_o R_o of the last loss() call
        self.last_regulariser: float | None = None  # λ_p R_p of the last loss() call (0 when off)
        self._generator: torch.Generator | None = None  # the task subsets of R_o when K > 3
        if K is not None and shapes is not None:
            self.build(int(K), shapes)

    # construction -------------------------------------------------------------------------------
    def build(self, K: int, shapes: list[tuple[str, tuple[int, ...]]], base: Tensor | None = None) -> None:
        """Create θ_0 (the given one, else zeros), A_k ~ U(−1/√in, 1/√in), B_k = 0 and v_k = 0 (torch's global generator)."""
        if K < 1:
            raise ValueError(f"lorpman: need K >= 1, got {K}")
        layout = ParameterLayout(shapes)
        base = torch.zeros(layout.n, dtype=self.dtype) if base is None else torch.as_tensor(base).detach().to(self.dtype).reshape(-1)
        if base.shape != (layout.n,):
            raise ValueError(f"lorpman: the main network must have {layout.n} numbers, got {tuple(base.shape)}")
        if not bool(torch.isfinite(base).all()):
            raise ValueError("lorpman: the initial main network contains NaN or infinite entries")
        self.K, self.n, self.layout = K, layout.n, layout
        self.base = nn.Parameter(base.clone())
        self.B, self.A, self.V = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for shape in layout.shapes:
            if len(shape) == 2:
                out, inp = shape
                bound = 1.0 / math.sqrt(inp)  # LoRA's kaiming_uniform_(a=√5) bound on A (D1)
                self.A.append(nn.Parameter((torch.rand(K, self.rank, inp, dtype=self.dtype) * 2 - 1) * bound))  # (K, r, in)
                self.B.append(nn.Parameter(torch.zeros(K, out, self.rank, dtype=self.dtype)))  # (K, out, r): B = 0
            else:
                self.V.append(nn.Parameter(torch.zeros(K, math.prod(shape), dtype=self.dtype)))  # (K, size)
        self.frozen, self.steps_done = False, 0

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the model for the problem's layout (``problem.parameter_shapes()``; one vector without a problem), θ_0
        from ``initial_points(1)`` (or ``problem.base``, init="base"), and the freeze step ⌈freeze_fraction·steps⌉."""
        if self.base is None:
            shapes = ParameterLayout.of(problem) if problem is not None else ParameterLayout([("x", (int(n),))])
            if shapes.n != n:
                raise ValueError(f"lorpman: the problem's layout holds {shapes.n} numbers, n = {n}")
            if self.init == "base":
                if problem is None or getattr(problem, "base", None) is None:
                    raise ValueError(f"lorpman: init='base' needs a problem with a pretrained `base` (n,); {getattr(problem, 'id', problem)!r} has none")
                start = problem.base
            else:
                start = initial_points(1)[0] if initial_points is not None else None
            self.build(K, list(zip(shapes.names, shapes.shapes)), start)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"lorpman was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")
        self.freeze_step = math.ceil(self.freeze_fraction * int(steps)) if self.freeze_fraction < 1 else None
        self.frozen, self.steps_done = False, 0
        self._generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))  # from the run's seed

    def on_epoch_end(self, epoch: int) -> None:
        """Count the steps; freeze the main network once ``freeze_step`` steps are done (the second phase)."""
        self.steps_done += 1
        if self.freeze_step is not None and self.steps_done >= self.freeze_step:
            self.frozen = True

    # the model ----------------------------------------------------------------------------------
    def low_rank_parts(self) -> list[Tensor]:
        """Per entry of the layout, the task parts (K, *shape): B_k A_k for matrices, v_k for the rest (without s)."""
        self._check_built()
        parts, mi, vi = [], 0, 0
        for shape in self.layout.shapes:
            if len(shape) == 2:
                parts.append(self.B[mi] @ self.A[mi])  # B_k A_k, (K, out, in)
                mi += 1
            else:
                parts.append(self.V[vi].reshape(self.K, *shape))  # v_k, (K, *shape)
                vi += 1
        return parts

    def forward(self, preference: Tensor) -> Tensor:
        self._check_built()
        rb, single = preference_batch(preference, self.K, self.dtype, name="lorpman preference")  # (B, K)
        alpha = rb / rb.sum(1, keepdim=True)  # α on the simplex (D5), (B, K)
        base = self.base.detach() if self.frozen else self.base  # θ_0 frozen in the second phase (D5)
        tensors = []
        for theta0, part in zip(self.layout.split(base), self.low_rank_parts()):
            combo = torch.tensordot(alpha, part, dims=([1], [0]))  # Σ_k α_k B_k A_k, (B, *shape)
            tensors.append(theta0 + self.scale * combo)  # W(α) = W_0 + s Σ_k α_k B_k A_k, (B, *shape)
        x = self.layout.join(tensors)  # (B, n)
        return x[0] if single else x

    def orthogonality_penalty(self, tasks: Tensor | None = None) -> Tensor:
        """R_o = Σ_layers Σ_{i≠j} ⟨vec(B_iA_i), vec(B_jA_j)⟩² over ``tasks`` (indices; default all), a scalar."""
        self._check_built()
        total = self.base.new_zeros(())
        for part in self.low_rank_parts():
            Wm = part.reshape(self.K, -1)  # rows vec(B_k A_k), (K, size)
            if tasks is not None:
                Wm = Wm[tasks]
            gram = Wm @ Wm.T  # WᵀW in the paper's column convention, (K', K')
            off = gram - torch.diag(torch.diagonal(gram))  # its off-diagonal entries
            total = total + (off**2).sum()  # ||WᵀW − diag(WᵀW)||_F²
        return total

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """α_1..α_B ~ Dir(p𝟙) (num, K)."""
        return sample_preferences(num, K, alpha=self.preference_alpha, generator=generator)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name="lorpman")  # (B, K), (B, K)
        alpha = r / r.sum(1, keepdim=True)  # (B, K)
        total = (alpha * F).sum(1).mean()  # mean_b Σ_k α_bk ℓ_k(θ(α_b)) (D4)
        self.last_orthogonality = 0.0
        if self.orthogonality > 0 and self.K > 1:
            tasks = None
            if self.K > ORTHOGONAL_SUBSET:  # the paper's O(1) stochastic approximation
                tasks = torch.randperm(self.K, generator=self._generator)[:ORTHOGONAL_SUBSET]
            ortho = self.orthogonality * self.orthogonality_penalty(tasks)  # λ_o R_o
            total = total + ortho
            self.last_orthogonality = float(ortho.detach())
        self.last_regulariser = 0.0
        if self.reg_coefficient > 0 and F.shape[0] >= 2:
            penalty = self.reg_coefficient * monotonicity_penalty(F, alpha, self.temperature)  # λ_p R_p (PaMaL)
            if bool(penalty < total):  # PaMaL's guard (D4)
                total = total + penalty
                self.last_regulariser = float(penalty.detach())
        return total

    def _check_built(self) -> None:
        if self.base is None:
            raise ValueError("lorpman: the model is not built: call begin(K, n, ...) (or pass K and shapes)")


__all__ = ["LORPMAN", "rank_deficit_bound"]
