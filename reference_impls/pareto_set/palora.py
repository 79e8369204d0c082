r"""PaLoRA: Pareto low-rank adapters with a deterministic preference schedule (id ``palora``).

Dimitriadis, Frossard, Fleuret, "Pareto Low-Rank Adapters: Efficient Multi-Task Learning with
Preferences", ICLR 2025 (arXiv 2407.08056; OpenReview icDoYdUhRa). Official code nik-dim/palora,
read for this module: ``src/callbacks/methods/ll/palora_modules.py`` (PaLinear / PaConvLoRA: the
adapted layer, its scaling and initialisation), ``src/callbacks/methods/palora.py`` (the criterion,
``reweight_lr``, the optional cosine regulariser), ``src/callbacks/methods/utils/samplers.py``
(AnnealingSampler: the deterministic schedule; DirichletSampler, AnnealingDirichletSampler,
FixedSampler), ``src/trainer/base_trainer.py`` (t = (step + 1)/total steps, clipped at 1),
``src/trainer/multi_forward_ensemble_trainer.py`` (the window of rays per step, summed), and the
configs ``configs/general/ray_sampler/*.yaml``, ``configs/experiment/*/method/palora.yaml``. The
paper's full text was not reachable here (its abstract was); every formula below is the official
code's, which the abstract's description ("task-specific low-rank adapters ... the PF in their convex
hull"; "a deterministic sampling schedule of preference vectors") matches.

Model. Every weight matrix of the problem's model gets K task adapters (rank-r factor pairs); a
preference α in the simplex selects the weight matrix plus the α-weighted sum of the adapters'
products, scaled by s = ``lora_alpha`` / r (PaLinear.forward); biases are not adapted. The base
network is trained too ("Compared to the original implementation, we DO NOT freeze the weight
matrix of the backbone"). Initialisation: A Kaiming-uniform(a = √5) (= U(±1/√in), nn.Linear's),
B = 0 (so the model is the base network for every α at the start), the base the problem's starting
point (D3). The criterion (PaLoRA.get_weighted_loss) is summed over the window of M preferences of a
step (MultiForwardEnsembleTrainer); its target is the LS map.

Preference schedule (AnnealingSampler, ``configs/general/ray_sampler/annealing.yaml``: mul = 5,
ε = 0.01), deterministic, driven by the fraction of training done (update rule). At the start every
ray is ≈ 𝟙/K (the base learns what the tasks share); at t = 1/mul the rays are evenly spaced; at t = 1
they are pushed towards the vertices (the fifth power), where each adapter is trained on its own
task. ``schedule`` also takes the official alternatives: "dirichlet" (α ~ Dirichlet(p𝟙), p = 1:
DirichletSampler, the random-sampling baseline the schedule is compared with),
"annealing-dirichlet" (Dirichlet(p(1 − t) + 0.001): AnnealingDirichletSampler, the configs' choice
for K ≥ 3 tasks) and "fixed" (the lattice rays without the power: FixedSampler).

Defaults: rank r = 4 (cityscapes / sarcos configs; multimnist uses 1), lora_alpha = 1, reweight_lr =
True (the adapters' learning rate × K: D2), schedule "annealing" with mul = 5, ε = 0.01, Adam; the
window M = 4, lr 1e-2 and 600 steps are ours for the toys (D4).

Update rule:
    Every weight matrix :math:`W_0` (out, in) of the model carries K adapters :math:`B_k` (out, ρ)
    and :math:`A_k` (ρ, in) of rank :math:`\rho` = ``rank`` (D1); with :math:`\alpha` the preference
    rescaled onto the simplex (D5) and :math:`s = \mathrm{lora\_alpha} / \rho`:

    .. math::

        W(\alpha) = W_0 + s \sum_{k=1}^{K} \alpha_k B_k A_k, \qquad b(\alpha) = b_0

    so :math:`\theta(\alpha) = \theta_0 + \sum_k \alpha_k \Delta_k` with each :math:`\Delta_k` of
    rank at most :math:`\rho` per matrix; :math:`\theta_0` and the adapters are trained together (the
    adapters at K times the learning rate, D2). Each step uses a window of :math:`M` preferences
    (:math:`M = 4`, D4) and takes one Adam step for their summed linear scalarisation:

    .. math::

        \mathcal{L} = \sum_{m=1}^{M}\sum_{k=1}^{K} \alpha_{m,k}\,f_k\big(\theta(\alpha_m)\big)

    The preferences follow the deterministic annealing schedule: with :math:`T` the step budget,
    :math:`\mathrm{step}` the 0-based step, :math:`\ell_m` the points of the simplex lattice of the
    window (:math:`K = 2`: :math:`\ell_m = (\tfrac{m}{M-1}, 1 - \tfrac{m}{M-1})`, :math:`m = 0, \ldots, M - 1`;
    D4 for :math:`K \ge 3`), :math:`\varepsilon = 0.01` and :math:`\mathrm{mul} = 5`,

    .. math::

        t = \min\Big(\frac{\mathrm{step} + 1}{T}, 1\Big), \qquad \lambda_m = \varepsilon + (1 - K\varepsilon)\,\ell_m, \qquad \alpha_{m,k}(t) = \frac{\lambda_{m,k}^{\,\mathrm{mul}\,t}}{\sum_{j=1}^{K} \lambda_{m,j}^{\,\mathrm{mul}\,t}}

Deviations:
    D1 The "network" is the problem's parameter vector θ ∈ Rⁿ read through its layout
       (``Problem.parameter_shapes()``, ``combination.ParameterLayout``):
       every 2-D entry (a weight matrix (out, in)) is adapted as PaLinear adapts nn.Linear.weight; 1-D
       entries (biases) are not (PaLinear leaves the bias alone). A problem with no matrix at all (the
       point problems: biquad's x) would have nothing to adapt, so there (``adapt_vectors=None``) each
       vector is adapted as a (d, 1) matrix, with the same rule as a weight matrix. Convolutions
       (PaConvLoRA) are not needed by the problems here.
    D2 ``reweight_lr``: the official optimiser gives the adapters the learning rate lr·K (a second
       parameter group). The runner builds one Adam over ``parameters()``, so the adapters are stored
       scaled, A = cÃ, B = cB̃ with c = K, and Ã, B̃ are the optimised tensors: Adam on Ã with lr is
       Adam on A with lr·c and ε/c (Adam is invariant to the scale of a parameter up to its ε), i.e.
       the official rule. Under SGD the scaling would act as c² and is not the official rule.
    D3 The base network starts at the problem's seeded starting point (``start="initial"``:
       ``initial_points(1)``; on merging-mlp a freshly initialised network, as the paper trains from
       scratch) or at the problem's pretrained ``base`` (``start="base"``; the official
       ``keep_original_weights``, the paper's expansion of a pretrained checkpoint). Without a problem
       or starting points: the base is 0.
    D4 The window M (``batch``, default 4) is ours: the official configs set ``num: 1`` while the
       AnnealingSampler asserts M > 1 (the deterministic schedule needs at least two rays for K = 2),
       so the paper's runs must have set it otherwise; the value used is not in the configs read.
       K ≥ 3: the official AnnealingSampler takes meshzoo's triangle lattice for K = 3 without ε (and
       raises for K ≥ 4); here every K ≥ 3 uses the simplex lattice of the largest resolution h with
       C(h + K − 1, K − 1) ≤ M points (so the step may use fewer than M rays; M ≥ K needed), shrunk by
       ε as for K = 2. K = 1: α = (1).
    D5 A preference (B, K) is divided by its row sum before use (the official code uses the sampler's
       rows, which are on the simplex), so forward and the criterion read α = r/Σr.
    D6 The optional cosine regulariser between the two tasks' adapters (``reg_coefficient``, 0 in every
       config) and the loss / gradient-balancing variants (``PaLoRA_LB``, ``PaLoRA_GB``, ``PaLoRAFull``; the
       cityscapes config uses gradient balancing) are not implemented: the plain criterion is the
       multimnist / sarcos configs' ``inner_method: ls``.
    D7 float64 by default (the official code is float32), so the tests do not depend on the BLAS kernel.

The schedule's state: :meth:`PaLoRA.sample_preferences` is called once per training step (by
:func:`~reference_impls.pareto_set.training.pareto_step`) and advances the step counter that t is
read from; :meth:`begin` resets it (its ``steps`` is the total T). A step whose preferences are given
(``pareto_step(..., preferences=...)``) does not advance it.

Degenerate inputs: K = 1 (one adapter; the criterion is the single loss), simplex vertices and zero entries (the
other adapters get weight 0), non-finite or negative preferences and losses → ValueError; a rank below
1, an unknown schedule, a window too small for the schedule, a problem without ``base`` for
``start="base"`` → ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch, sample_preferences
from reference_impls.pareto_set.combination import ParameterLayout

SCHEDULES = ("annealing", "dirichlet", "annealing-dirichlet", "fixed")
ANNEALING_DIRICHLET_FLOOR = 0.001  # AnnealingDirichletSampler: p(1 − t) + 0.001


def simplex_lattice(K: int, resolution: int) -> Tensor:
    """All points ℓ ∈ Δ with entries in {0, 1/h, ..., 1}, h = ``resolution`` (C(h + K − 1, K − 1), K) float64.

    K = 2 in the order (0, 1), (1/h, 1 − 1/h), ..., (1, 0) (the official linspace order of the first entry)."""
    if K < 1 or resolution < 1:
        raise ValueError(f"simplex_lattice: need K >= 1 and resolution >= 1, got K={K}, resolution={resolution}")
    rows = []
    for bars in combinations(range(resolution + K - 1), K - 1):  # stars and bars
        edges = (-1, *bars, resolution + K - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(K)])
    return torch.tensor(rows, dtype=torch.float64) / resolution  # (C, K)


def schedule_rays(K: int, window: int, *, epsilon: float = 0.01) -> Tensor:
    """The rays λ_m = ε + (1 − Kε) ℓ_m of the window (M', K) (K = 2: linspace(ε, 1 − ε, M) as AnnealingSampler).

    K ≥ 3: the lattice of the largest resolution with at most ``window`` points (D4). K = 1: (window, 1) ones."""
    if K == 1:
        return torch.ones(window, 1, dtype=torch.float64)
    if not 0 <= epsilon < 1.0 / K:
        raise ValueError(f"palora: epsilon must lie in [0, 1/K) = [0, {1.0 / K:.4g}), got {epsilon}")
    if window < K:
        raise ValueError(f"palora: the deterministic schedule needs a window of at least K = {K} preferences per step, got {window} (official AnnealingSampler: M > 1)")
    h = 1
    while math.comb(h + 1 + K - 1, K - 1) <= window:
        h += 1
    lattice = simplex_lattice(K, h)  # (C, K), C <= window
    return epsilon + (1.0 - K * epsilon) * lattice  # λ = ε + (1 − Kε) ℓ, rows still on the simplex


def annealed_rays(rays: Tensor, t: float, mul: float) -> Tensor:
    """α_m(t) = λ_m^(mul·t) / Σ_k λ_mk^(mul·t) (M, K): the AnnealingSampler's rays at training fraction t."""
    powered = rays ** (mul * t)  # element-wise λ^(mul t), (M, K)
    return powered / powered.sum(1, keepdim=True)


class PaLoRA(ParetoModel):
    """θ(α) = θ_0 + s Σ_k α_k B_k A_k per weight matrix, trained with Σ_m α_m·f(θ(α_m)) on the annealed rays."""

    name = "palora"
    target: ClassVar[str | None] = "ls"
    preference_alpha: ClassVar[float] = 1.0  # DirichletSampler p = 1 (schedule "dirichlet")
    default_batch: ClassVar[int] = 4  # the window M (D4)
    default_optimizer: ClassVar[str | None] = "adam"  # the official experiments' optimiser
    default_lr: ClassVar[float | None] = 1e-2  # D4 (multimnist: 1e-3)
    default_steps: ClassVar[int | None] = 600  # D4

    def __init__(
        self,
        rank: int = 4,
        lora_alpha: float = 1.0,
        schedule: str = "annealing",
        mul: float = 5.0,
        epsilon: float = 0.01,
        batch: int = 4,
        reweight_lr: bool = True,
        start: str = "initial",
        adapt_vectors: bool | None = None,
        dirichlet_p: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if int(rank) < 1:
            raise ValueError(f"palora: rank must be >= 1, got {rank}")
        if not lora_alpha > 0:
            raise ValueError(f"palora: lora_alpha must be positive, got {lora_alpha}")
        if schedule not in SCHEDULES:
            raise ValueError(f"palora: unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
        if not mul > 0 or not dirichlet_p > 0:
            raise ValueError(f"palora: mul and dirichlet_p must be positive, got {mul}, {dirichlet_p}")
        if int(batch) < 1:
            raise ValueError(f"palora: batch (the window) must be >= 1, got {batch}")
        if start not in ("initial", "base"):
            raise ValueError(f"palora: start must be 'initial' or 'base', got {start!r}")
        self.rank, self.lora_alpha, self.schedule = int(rank), float(lora_alpha), schedule
        self.mul, self.epsilon, self.batch, self.dirichlet_p = float(mul), float(epsilon), int(batch), float(dirichlet_p)
        self.reweight_lr, self.start, self.adapt_vectors, self.dtype = bool(reweight_lr), start, adapt_vectors, dtype
        self.scaling = self.lora_alpha / self.rank  # s = lora_alpha / r (PaLinear)
        self.K: int | None = None
        self.n: int | None = None
        self.layout: ParameterLayout | None = None
        self.adapted: list[int] = []  # indices of the layout entries that carry adapters
        self.base: nn.Parameter | None = None  # θ_0 (n,)
        self.adapter_A = nn.ParameterList()  # per adapted entry: Ã (K, r, in), A = c·Ã (D2)
        self.adapter_B = nn.ParameterList()  # per adapted entry: B̃ (K, out, r), B = c·B̃
        self.lr_scale = 1.0  # c
        self.steps: int | None = None  # T, from begin
        self.step = 0  # training steps whose preferences were drawn from the schedule
        self.last_t: float | None = None  # t of the last drawn window

    # ---------------------------------------------------------------------------------------------
    # Building
    # ---------------------------------------------------------------------------------------------
    def build(self, K: int, n: int, *, layout: ParameterLayout | None = None, theta0: Tensor | None = None) -> None:
        """Create θ_0 and the K adapters of every adapted entry of ``layout`` (default: one vector x ∈ R^n)."""
        if K < 1 or n < 1:
            raise ValueError(f"palora: need K >= 1 and n >= 1, got K={K}, n={n}")
        layout = layout if layout is not None else ParameterLayout([("x", (n,))])
        if layout.n != n:
            raise ValueError(f"palora: the layout holds {layout.n} numbers, the problem has n = {n}")
        self.K, self.n, self.layout = K, n, layout
        vectors = self.adapt_vectors if self.adapt_vectors is not None else not layout.matrices  # D1
        self.adapted = [i for i, s in enumerate(layout.shapes) if len(s) == 2 or (vectors and len(s) == 1)]
        if theta0 is None:
            theta0 = torch.zeros(n, dtype=self.dtype)
        theta0 = torch.as_tensor(theta0, dtype=self.dtype).reshape(-1)
        if theta0.shape != (n,) or not bool(torch.isfinite(theta0).all()):
            raise ValueError(f"palora: the starting point must be {n} finite numbers, got shape {tuple(theta0.shape)}")
        self.base = nn.Parameter(theta0.detach().clone())
        self.lr_scale = float(K) if self.reweight_lr else 1.0  # official: adapters' lr = lr·K (D2)
        self.adapter_A, self.adapter_B = nn.ParameterList(), nn.ParameterList()
        for i in self.adapted:
            shape = layout.shapes[i]
            out_dim, in_dim = shape if len(shape) == 2 else (shape[0], 1)  # a vector as a (d, 1) matrix (D1)
            A = torch.empty(K, self.rank, in_dim, dtype=self.dtype)  # (K, r, in)
            for k in range(K):
                nn.init.kaiming_uniform_(A[k], a=math.sqrt(5))  # nn.Linear's init: U(±1/√in)
            B = torch.zeros(K, out_dim, self.rank, dtype=self.dtype)  # (K, out, r): B = 0, θ(α) = θ_0 at the start
            self.adapter_A.append(nn.Parameter(A / self.lr_scale))  # Ã = A / c
            self.adapter_B.append(nn.Parameter(B / self.lr_scale))

    def begin(
        self,
        K: int,
        n: int,
        *,
        steps: int,
        ideal: Tensor | None = None,
        initial_points: Callable[[int], Tensor] | None = None,
        problem: Any = None,
    ) -> None:
        """Build θ_0 and the adapters for the problem's layout (or check them) and reset the schedule to step 0 of ``steps``."""
        if self.base is None:
            layout = ParameterLayout.of(problem) if problem is not None else None
            if self.start == "base":
                if problem is None or getattr(problem, "base", None) is None:
                    raise ValueError(f"palora: start='base' needs a problem with a pretrained `base` (n,), got {getattr(problem, 'id', problem)!r}")
                theta0 = torch.as_tensor(problem.base, dtype=self.dtype)
            else:
                theta0 = initial_points(1)[0] if initial_points is not None else None
            self.build(K, n, layout=layout, theta0=theta0)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"palora was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")
        self.steps, self.step, self.last_t = int(steps), 0, None

    # ---------------------------------------------------------------------------------------------
    # The model
    # ---------------------------------------------------------------------------------------------
    def adapters(self) -> list[tuple[Tensor, Tensor]]:
        """The adapters (B (K, out, r), A (K, r, in)) of each adapted entry, in ``self.adapted`` order."""
        c = self.lr_scale
        return [(c * Bt, c * At) for Bt, At in zip(self.adapter_B, self.adapter_A)]  # B = c·B̃, A = c·Ã

    def forward(self, preference: Tensor) -> Tensor:
        if self.base is None:
            raise ValueError("palora: the adapters are not built: call begin(K, n, ...) (start_pareto_model) first")
        rb, single = preference_batch(preference, self.K, self.dtype, name="palora preference")  # (B, K)
        alpha = rb / rb.sum(1, keepdim=True)  # α = r/Σr (D5), (B, K)
        parts = self.layout.split(self.base[None].expand(alpha.shape[0], self.n))  # θ_0 per tensor, [(B, *shape)]
        for i, (B, A) in zip(self.adapted, self.adapters()):
            update = torch.einsum("kor,kri->koi", B, A)  # B_k A_k, (K, out, in)
            delta = self.scaling * torch.einsum("bk,koi->boi", alpha, update)  # s Σ_k α_k B_k A_k, (B, out, in)
            parts[i] = parts[i] + delta.reshape(parts[i].shape)  # W(α) = W_0 + s Σ_k α_k B_k A_k
        theta = self.layout.join(parts)  # (B, n)
        return theta[0] if single else theta

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)  # (B, K), (B, K)
        alpha = r / r.sum(1, keepdim=True)  # D5
        return (alpha * F).sum()  # Σ_m Σ_k α_mk f_k(θ(α_m)): summed over the window (MultiForwardEnsembleTrainer)

    # ---------------------------------------------------------------------------------------------
    # The preference schedule
    # ---------------------------------------------------------------------------------------------
    def fraction(self, step: int) -> float:
        """t = min((step + 1)/T, 1) (BaseTrainer.t) for the 0-based training ``step``; T from begin."""
        if self.steps is None:
            raise ValueError(f"palora: the {self.schedule!r} schedule needs the step budget: call begin(K, n, steps=...) first")
        return min((int(step) + 1) / max(self.steps, 1), 1.0)

    def preferences_at(self, step: int, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The preferences (M', K) the schedule gives at 0-based training ``step`` for a window of ``num`` (stateless)."""
        if num < 1:
            raise ValueError(f"palora: need at least one preference per step, got {num}")
        if self.schedule == "dirichlet":
            return sample_preferences(num, K, alpha=self.dirichlet_p, generator=generator)  # α ~ Dir(p𝟙)
        t = self.fraction(step)
        if self.schedule == "annealing-dirichlet":
            return sample_preferences(num, K, alpha=self.dirichlet_p * (1.0 - t) + ANNEALING_DIRICHLET_FLOOR, generator=generator)  # Dir((p(1 − t) + 0.001)𝟙)
        rays = schedule_rays(K, num, epsilon=self.epsilon)  # λ_m, (M', K)
        if self.schedule == "fixed":
            return rays
        return annealed_rays(rays, t, self.mul)  # α_m(t) = λ_m^(mul t) / Σ λ^(mul t)

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The preferences of the next training step (one call per step): the schedule at the current step, then step += 1."""
        if self.K is not None and K != self.K:
            raise ValueError(f"palora was built for K={self.K}, asked for K={K} preferences")
        r = self.preferences_at(self.step, num, K, generator=generator)
        self.last_t = None if self.schedule == "dirichlet" else self.fraction(self.step)
        self.step += 1
        return r


__all__ = ["ANNEALING_DIRICHLET_FLOOR", "PaLoRA", "SCHEDULES", "annealed_rays", "schedule_rays", "simplex_lattice"]
