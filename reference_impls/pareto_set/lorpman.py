r"""LORPMAN, low-rank Pareto manifold learning (id ``lorpman``): a shared main network plus one low-rank part per task.

Weiyu Chen, James T. Kwok, "Efficient Pareto Manifold Learning with Low-Rank Structure", ICML 2024,
PMLR 235:7015-7032 (arXiv 2407.20734). No official code was found (searched GitHub for the paper's
title and name; LibMOON's ``model/lora_model.py`` cites the paper but its ``SimplePSLLoRAModel`` is an
affine map :math:`x = \theta_0 + \sum_k \alpha_k \theta_k` of full vectors, neither low-rank nor regularised, so it was not used).

Model. For every weight matrix of the problem's model (the 2-D entries of ``problem.parameter_shapes()``,
(out, in)) a trainable main part and, per task, a rank-r pair of factors; a preference α in the simplex
selects the network whose every weight matrix is the main part plus the α-weighted sum of the tasks'
low-rank products, trained like PaMaL on preferences α ~ Dir(p𝟙), with an orthogonality regulariser
between the tasks' low-rank matrices and, optionally, PaMaL's multi-forward regulariser
(``pamal.monotonicity_penalty``); see the update rule.

Training has two phases: the main network and the low-rank parts are trained together, then after a
freeze point (the paper's ablation: epoch 80 of 100 on UTKFace) the main network is frozen and only
the low-rank parts move. Exact properties: at a vertex the model is the main network plus that task's
scaled low-rank part; with all B factors zero (LoRA's zero initialisation, used here) it is the main
network for every α.

Rank threshold on ``lowrank-regression`` (:math:`\hat W_k = W_b + U \operatorname{diag}(c_k) V^\top`,
:math:`W_b` the problem's base, ρ = ``task_rank``; the LS map :math:`W^\star(\alpha) = \sum_k \alpha_k \hat W_k`
is affine on the simplex, and so is :math:`W(\alpha)`, so :math:`W(\alpha) = W^\star(\alpha)` for all α
iff :math:`W_0 + s B_k A_k = \hat W_k` for every k):

* K = 2, trainable main network: needed and sufficient per-task rank r = ⌈ρ/2⌉. Necessary:
  :math:`s(B_1 A_1 - B_2 A_2) = \hat W_1 - \hat W_2 =: D` has rank
  :math:`\rho \le \operatorname{rank}(B_1 A_1) + \operatorname{rank}(B_2 A_2) \le 2r`. Sufficient: split
  D's SVD into :math:`D = D_a + D_b` with ⌈ρ/2⌉ and ⌊ρ/2⌋ singular triplets and take
  :math:`W_0 = \hat W_1 - D_a`, :math:`s B_1 A_1 = D_a`, :math:`s B_2 A_2 = -D_b` (then
  :math:`\langle D_a, D_b \rangle = 0`: the exact fit also has :math:`R_o = 0`). Below it, every
  parameter has :math:`W(\alpha) - W^\star(\alpha) = E_1 - \alpha_2 G` with
  :math:`E_1 = W_0 + s B_1 A_1 - \hat W_1`, :math:`G = s(B_1 A_1 - B_2 A_2) - D`, and
  :math:`\lVert G \rVert_F \ge \tau_r := (\sum_{j > 2r} \sigma_j(D)^2)^{1/2}` (Eckart–Young:
  :math:`\operatorname{rank}(s B_1 A_1 - s B_2 A_2) \le 2r`), so over preferences whose
  :math:`\alpha_2` spans [a, b]
  :math:`\max_\alpha \lVert W(\alpha) - W^\star(\alpha) \rVert_F \ge (b - a)\,\tau_r / 2`
  (``rank_deficit_bound``) for ANY trained parameters: the failure below the threshold is
  structural, not an optimiser's.
* Frozen main network (:math:`W_0 = W_b`, the pretrained base): each :math:`s B_k A_k` must equal
  :math:`\hat W_k - W_b`, of rank ρ.
* K = 3: the pairwise argument still gives r ≥ ⌈ρ/2⌉; :math:`W_0 = W_b + U \operatorname{diag}(t) V^\top`
  with each coordinate :math:`t_j` equal to one task's :math:`c_{k,j}` gives r = ⌈2ρ/3⌉ (each task
  zeroes ⌊ρ/3⌋ or ⌈ρ/3⌉ of its ρ entries); for ρ = 2 a non-diagonal :math:`W_0` reaches
  r = 1 = ⌈ρ/2⌉: :math:`W_0 = W_b + U T V^\top` with :math:`\det(\operatorname{diag}(c_k) - T) = 0` for
  k = 1, 2, 3, i.e. :math:`(c_{k,1} - T_{11})(c_{k,2} - T_{22}) = T_{12} T_{21}`, linear in
  :math:`(T_{11}, T_{22}, T_{11} T_{22} - T_{12} T_{21})`, one generic 3×3 solve (the test builds it).
  For larger ρ the K = 3 threshold lies in [⌈ρ/2⌉, ⌈2ρ/3⌉].

Defaults (all reconstructed or ours, see D1): rank r = 4, s = 1 (inside the paper's stable range
[0.1, 1] of its scaling ablation), :math:`\lambda_o = 1`, orthogonality over 3 sampled tasks when K > 3 (paper),
main network frozen after 80 % of the steps (paper's UTKFace ablation, epoch 80 of 100), Dirichlet
p = 1, 4 preferences per step, :math:`\lambda_p = 0` (the paper's MultiMNIST setting; 1 on UTKFace/CIFAR-100, 5
on Census), Adam lr 1e-2, 1000 steps (ours, for the toys).

Update rule:
    For each weight matrix :math:`W` of the model (shape (out, in)) a main part :math:`W_0` and, per
    task :math:`k`, factors :math:`B_k` (out, r) and :math:`A_k` (r, in); entries that are not
    matrices (biases, a point problem's decision vector) carry a full per-task delta :math:`v_k`
    instead (D2). With :math:`\alpha` the preference rescaled onto the simplex (D5) and the scaling
    factor :math:`s`:

    .. math::

        W(\alpha) = W_0 + s \sum_{k=1}^{K} \alpha_k B_k A_k, \qquad b(\alpha) = b_0 + s \sum_{k=1}^{K} \alpha_k v_k

    Each step draws :math:`N = 4` preferences :math:`\alpha_b \sim \operatorname{Dir}(p\mathbb{1})`
    and takes one Adam step for the mean scalarised loss plus the orthogonality regulariser (D1, D4):

    .. math::

        \mathcal{L} = \frac{1}{N}\sum_{b=1}^{N}\sum_{k=1}^{K} \alpha_{b,k}\,\ell_k\big(\theta(\alpha_b)\big) + \lambda_o R_o, \qquad R_o = \sum_{\text{layers}} \sum_{i \ne j \in S} \langle \operatorname{vec}(B_i A_i), \operatorname{vec}(B_j A_j) \rangle^2

    i.e. :math:`R_o = \lVert M^\top M - \operatorname{diag}(M^\top M) \rVert_F^2` per layer with
    :math:`M = [\operatorname{vec}(B_1 A_1), \ldots, \operatorname{vec}(B_K A_K)]` (the vectors
    :math:`v_k` included), over all tasks :math:`S` when :math:`K \le 3` and over 3 tasks drawn
    at random each step otherwise (the paper's stochastic approximation). With
    :math:`\lambda_p > 0` PaMaL's multi-forward regulariser :math:`R_p` (``pamal.py``) is added
    where :math:`\lambda_p R_p < \mathcal{L}`. After :math:`\lceil 0.8\,T \rceil` of the
    :math:`T` steps the main parts are frozen and only the task parts move. Initialisation:
    :math:`A_k \sim U(-1/\sqrt{\mathrm{in}}, 1/\sqrt{\mathrm{in}})`, :math:`B_k = 0`,
    :math:`v_k = 0`, the main network from the problem's seeded start (D3). Defaults:
    :math:`r = 4`, :math:`s = 1`, :math:`\lambda_o = 1`, :math:`\lambda_p = 0`, :math:`p = 1`.

Deviations:
    D1 Reconstructed from the paper's abstract, summaries of its method and ablations, and the
       PaMaL code it builds on; the paper's full text and code were not reachable. Reconstructed in
       particular: the orthogonality regulariser's exact form (the literal "off-diagonal elements of
       MᵀM", unnormalised, over the vectorised low-rank products per layer, squared; a
       cosine-normalised form would be undefined at the zero initialisation B = 0), its weight, the
       rank and scaling defaults, the initialisation (LoRA's: A ~ U(−1/√in, 1/√in), B = 0) and the
       freeze point expressed as a fraction of steps. This regulariser is of 4th order in the parts'
       scale, so its weight is relative to the problem's scale: on biquad, whose random start lies
       ≈ 2.6 from the front, weight 1 slows the fit (1000 steps: max error 0.17 vs 0.026 with weight
       0; 3000 steps: 0.0023), while on lowrank-regression it speeds it up
       (``tests/reference_impls/test_lorpman.py``).
    D2 Entries that are not matrices (biases, the decision vector of the point problems such as
       biquad) carry a full per-task delta (the vectors v of the update rule): a vector is an (n, 1)
       matrix, of rank ≤ 1, so the rank-r form with r ≥ 1 is no restriction there. The orthogonality
       regulariser includes them.
    D3 The main network starts from the problem's seeded ``initial_points`` (the paper trains its main
       network from a fresh initialisation); ``init="base"`` starts it from ``problem.base`` (a
       pretrained model, LoRA-style) and raises a ValueError on a problem without one.
    D4 The criterion is the mean over the B preferences of a step (the expectation over Dir(p)); PaMaL's
       code sums its window. The multi-forward regulariser uses ``pamal.monotonicity_penalty`` with
       PaMaL's guard (added only where it is smaller than the criterion) and needs B ≥ 2.
    D5 Preferences need not sum to one: α = r / Σr. The freeze detaches the main network in the
       forward pass (its gradient is None, so Adam leaves it), counting steps with ``on_epoch_end``.
    D6 float64 throughout, so the tests do not depend on the BLAS kernel. The paper's benchmarks
       (MultiMNIST, Census, UTKFace, CIFAR-100 with 20 tasks, CelebA with 40 tasks, ResNet-18) are not
       reproduced; small problems stand in (``lowrank-regression``, ``merging-mlp``, the toys).

Degenerate inputs: K = 1 (the main network plus the single task's scaled low-rank part, no
orthogonality term), simplex vertices, zero entries, B = 1 (no multi-forward regulariser), rank < 1,
s or the weights non-finite or out of range, non-finite or negative preferences, non-finite
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
