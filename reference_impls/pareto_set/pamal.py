r"""Pareto Manifold Learning, PaMaL (id ``pamal``): a weight-space ensemble of K anchors mixed by the preference.

Dimitriadis, Frossard, Fleuret, "Pareto Manifold Learning: Tackling multiple tasks via ensembles of
single-task models", ICML 2023 (arXiv 2210.09759); official code nik-dim/pamal
(``src/ll/weight_ensemble.py``: SimplexWeightEnsemble; ``src/ll/subspace_modules.py``: SubspaceLinear /
SubspaceConv, the per-layer weighted sum of the members; ``src/trainer/multi_forward_ensemble_trainer.py``:
the window and the multi-forward regulariser; ``src/methods/pamal_weight_methods.py``: the inner
balancing; ``configs/experiment/*/method/pamal.yaml``: the defaults).

The model keeps K anchors, one per task, each a full parameter vector of the problem's model,
initialised independently (``reinit_flag: true``: every member is re-initialised; here the problem's
seeded ``initial_points(K)``: fresh networks on ``merging-mlp``, random points on the toys). A
preference α in the simplex selects the model θ(α), the α-weighted sum of the anchors (every tensor of
the model, same α; SubspaceLinear). Training (MultiForwardEnsembleTrainer.training_step) evaluates a
window of W draws of α per step, with an optional multi-forward regulariser that penalises a task's
loss rising as its weight rises (a violation of the monotone trade-off). Inner balancing
(``inner``): "ls" (default), "gradnorm" (PamalGradientNormalization) or "rwa" (running weight average,
PaMaLRunningWeightAverage).

On a point problem the solution is θ(α) itself; on ``merging-mlp`` it is the MLP's flattened
parameters, and since the same α weighs every tensor, combining per tensor (as SubspaceLinear does)
equals combining the flat vectors: θ(α) = αᵀΘ with Θ (K, n) the anchors.

Target (``target = "ls"``): the minimiser of the expected LS criterion is the LS map wherever that map
is linear in α (biquad with equal scales, where the LS optimum is the α-weighted sum of the centres;
``lowrank-regression``, the α-weighted sum of the single-task solutions), so there the anchors
converge to the single-task optima and θ(α) is the LS optimum for every α.

Defaults (``configs/experiment/multimnist/method/pamal.yaml``, the two-task benchmark closest to the
toys): window W = 4 (``num``), Dirichlet p = 1, inner "ls", regulariser coefficient λ = 0 with
temperature T = 1 (``temperature: 1 # ... Set to 1 for all experiments``), Adam
(``configs/general/optimizer/adam_defaults.yaml``); lr 3e-2 and 1000 steps for the toys are ours (D5).

Update rule:
    The model is the α-weighted sum of the anchors :math:`\Theta = (\theta_1, \ldots, \theta_K)`
    (rows), with the preference rescaled onto the simplex (D3):

    .. math::

        \theta(\alpha) = \sum_{k=1}^{K} \alpha_k \theta_k = \alpha^\top \Theta, \qquad \alpha = r / \textstyle\sum_k r_k

    Each step draws a window :math:`\alpha_1, \ldots, \alpha_W \sim \operatorname{Dir}(p\mathbb{1})`
    (D1) and takes one Adam step on :math:`\Theta` for the window's summed, weighted losses
    :math:`\ell_{w,t} = \ell_t(\theta(\alpha_w))`, with the inner balancing factor :math:`c_{w,t}`
    held constant:

    .. math::

        \mathcal{L} = \sum_{w=1}^{W}\sum_{t=1}^{K} c_{w,t}\,\alpha_{w,t}\,\ell_{w,t}, \qquad c_{w,t} = \begin{cases} 1 & \text{ls} \\ 1 / \big(\lVert \nabla_\Theta \ell_{w,t} \rVert + \xi\big) & \text{gradnorm},\ \xi = 10^{-3}\ \text{(D4)} \\ 1 - \bar c_t / \sum_s \bar c_s & \text{rwa} \end{cases}

    where for "rwa" :math:`\bar c_t` is the mean absolute loss of task :math:`t` over the last 25
    window draws (weights 1 for the first 26 draws, then updated draw by draw). With
    :math:`\lambda > 0` and :math:`W \ge 2` the multi-forward regulariser is added where it is smaller
    than :math:`\mathcal{L}` (the official trainer's guard); for each task :math:`t` the window is
    sorted by increasing :math:`\alpha_t`, giving the draws :math:`(1), \ldots, (W)` (D2):

    .. math::

        R = \sum_{t=1}^{K} \log\Big(\frac{1}{W - 1}\sum_{j=1}^{W-1} \exp\big(T \operatorname{relu}(\Delta_{t,j})\big)\Big), \qquad \Delta_{t,j} = \ell_t\big(\theta(\alpha_{(j+1)})\big) - \ell_t\big(\theta(\alpha_{(j)})\big)

    .. math::

        \mathcal{L} \leftarrow \mathcal{L} + \lambda R \quad \text{if } \lambda R < \mathcal{L}

    (:math:`\Delta_{t,j} = 0` between draws with equal :math:`\alpha_t`). Defaults: :math:`W = 4`,
    :math:`p = 1`, inner "ls", :math:`\lambda = 0`, :math:`T = 1`.

Deviations:
    D1 The window is the batch of preferences of one step (``batch`` = W; ``pareto_step`` draws the W
       preferences at once and evaluates the W models in one batched call); the official trainer runs
       W sequential forward passes on the same data batch and backpropagates their sum once: the same
       criterion and gradient.
    D2 The regulariser's ordering. The official trainer sorts the window by the task's weight
       *descending* and penalises relu of the forward difference, which (as written) penalises the
       task's loss rising as its weight falls, i.e. the monotone order the regulariser is meant to
       promote. We penalise the violations (the loss rising as the weight rises), the purpose the
       method states (a monotone trade-off along α); reconstructed, since the paper's text of the
       equation was not reachable here. Draws with equal weight (vertices, K = 1) carry no order and
       add relu(·) = 0 (the official dict keyed by the weight keeps only the last of equal keys).
    D3 Preferences need not sum to one: α = r / Σr (the official α is a Dirichlet draw, on Δ already).
    D4 Inner "gradnorm" normalises by the gradient with respect to all anchors (every parameter is
       shared: there are no task heads here); the official code uses the model's ``shared_parameters``
       (the encoder of its encoder-decoder models). ξ = 1e-3 is absolute, as in the official code, so
       losses whose gradients are far below 1e-3 are scaled by ≈ 1/ξ rather than normalised.
       Inner "rwa": a zero running loss for every task (0/0 in the official code) keeps the weights
       at 1; K = 1 keeps the weight 1 (the official 1 − 1 = 0 would zero the loss); the running
       loss is the mean of the absolute losses (the official code takes the absolute value of the
       mean: the same for non-negative losses, as on every problem here). The official
       "full" (loss and gradient balancing, "not discussed in the paper") is not implemented.
    D5 Toy settings: lr 3e-2 (the official 1e-3 is for LeNet/ResNet on image benchmarks) and 1000
       steps are ours. The paper's benchmarks (MultiMNIST, Census, UTKFace, Cityscapes), BatchNorm
       members and the validation grid of 11 points are not reproduced.
    D6 float64 throughout (the official code is float32), so the tests do not depend on the BLAS kernel.

Degenerate inputs: K = 1 (the single anchor, the single-task model; R = 0), simplex vertices (the
vertex's anchor), preferences with zero entries, W = 1 (no regulariser, as the official ``num == 1``
path), non-finite or negative preferences and non-finite losses → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch, sample_preferences

GRADNORM_XI = 1e-3  # PamalGradientNormalization: ℓ_t / (||∇ℓ_t|| + ξ)
RWA_WINDOW = 25  # PaMaLRunningWeightAverage(iteration_window=25)
INNER_METHODS = ("ls", "gradnorm", "rwa")


def monotonicity_penalty(losses: Tensor, alphas: Tensor, temperature: float = 1.0) -> Tensor:
    """The multi-forward regulariser R = Σ_t log((1/(W−1)) Σ_j exp(T·relu(ℓ_t(α_(j+1)) − ℓ_t(α_(j))))).

    ``losses`` (W, K) of the window's W ≥ 2 models at ``alphas`` (W, K); per task t the draws are ordered
    by increasing α_t, so a positive difference is a violation (ℓ_t rose although α_t did). Pairs with
    equal α_t carry no order and contribute relu = 0 (D2). R = 0 exactly when no task is violated.
    """
    W, K = losses.shape
    if W < 2:
        raise ValueError(f"pamal: the regulariser needs a window of at least 2 draws, got {W}")
    order = torch.argsort(alphas.detach(), dim=0, stable=True)  # (W, K) indices by increasing α_t
    a_sorted = torch.gather(alphas.detach(), 0, order)  # (W, K)
    l_sorted = torch.gather(losses, 0, order)  # (W, K)
    rise = torch.relu(l_sorted[1:] - l_sorted[:-1])  # relu(Δ_tj), (W − 1, K)
    rise = torch.where(a_sorted[1:] > a_sorted[:-1], rise, torch.zeros_like(rise))  # ties: no order (D2)
    return torch.log(torch.exp(temperature * rise).mean(0)).sum()  # Σ_t log mean_j exp(T·relu(Δ_tj))


class PaMaL(ParetoModel):
    """θ(α) = Σ_k α_k θ_k over K anchors (K, n) built by ``begin`` from the problem's seeded initial points."""

    name = "pamal"
    target: ClassVar[str | None] = "ls"
    preference_alpha: ClassVar[float] = 1.0  # pamal.yaml: p = 1
    default_batch: ClassVar[int] = 4  # the window: multimnist pamal.yaml num = 4 (D1)
    default_optimizer: ClassVar[str | None] = "adam"  # adam_defaults.yaml
    default_lr: ClassVar[float | None] = 3e-2  # D5
    default_steps: ClassVar[int | None] = 1000  # D5

    def __init__(
        self,
        window: int = 4,
        p: float = 1.0,
        reg_coefficient: float = 0.0,
        temperature: float = 1.0,
        inner: str = "ls",
        K: int | None = None,
        n: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        p, reg_coefficient, temperature = float(p), float(reg_coefficient), float(temperature)
        if int(window) < 1:
            raise ValueError(f"pamal: the window needs at least 1 draw, got {window}")
        if not (0 < p < float("inf")):
            raise ValueError(f"pamal: the Dirichlet concentration p must be positive and finite, got {p}")
        if not (0 <= reg_coefficient < float("inf")) or not (0 < temperature < float("inf")):
            raise ValueError(f"pamal: need a finite reg_coefficient >= 0 and temperature > 0, got {reg_coefficient}, {temperature}")
        if inner not in INNER_METHODS:
            raise ValueError(f"pamal: inner must be one of {INNER_METHODS}, got {inner!r}")
        self.batch, self.preference_alpha = int(window), p  # the runner's preferences per step = the window
        self.reg_coefficient, self.temperature, self.inner, self.dtype = reg_coefficient, temperature, inner, dtype
        self.K: int | None = None
        self.n: int | None = None
        self.anchors: nn.Parameter | None = None  # Θ (K, n): row k is θ_k
        self.last_regulariser: float | None = None  # λR of the last loss() call (0 when off), for inspection
        self._rwa_costs: Tensor | None = None  # (2·25, K) FIFO of loss vectors (inner "rwa")
        self._rwa_weights: Tensor | None = None  # (K,)
        self._rwa_calls = 0
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int, anchors: Tensor | None = None) -> None:
        """Create the K anchors (K, n): the given ones, else independent N(0, I) draws (torch's global generator)."""
        if K < 1 or n < 1:
            raise ValueError(f"pamal: need K >= 1 and n >= 1, got K={K}, n={n}")
        if anchors is None:
            anchors = torch.randn(K, n, dtype=self.dtype)
        anchors = torch.as_tensor(anchors).detach().to(self.dtype)
        if anchors.shape != (K, n):
            raise ValueError(f"pamal: the initial anchors must be (K, n) = ({K}, {n}), got {tuple(anchors.shape)}")
        if not bool(torch.isfinite(anchors).all()):
            raise ValueError("pamal: the initial anchors contain NaN or infinite entries")
        self.K, self.n = K, n
        self.anchors = nn.Parameter(anchors.clone())  # Θ (K, n), independently initialised members
        self._rwa_costs = torch.ones(2 * RWA_WINDOW, K, dtype=self.dtype)  # the official FIFO starts at ones
        self._rwa_weights = torch.ones(K, dtype=self.dtype)
        self._rwa_calls = 0

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the anchors from ``initial_points(K)`` (the problem's seeded, independent starts), or check the built ones."""
        if self.anchors is None:
            self.build(K, n, initial_points(K) if initial_points is not None else None)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"pamal was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The window's α_1..α_W ~ Dir(p𝟙) (num, K) (SimplexWeightEnsemble.sample_alpha)."""
        return sample_preferences(num, K, alpha=self.preference_alpha, generator=generator)

    def forward(self, preference: Tensor) -> Tensor:
        if self.anchors is None:
            raise ValueError("pamal: the anchors are not built: call begin(K, n, ...) (or pass K and n)")
        rb, single = preference_batch(preference, self.K, self.dtype, name="pamal preference")  # (B, K)
        alpha = rb / rb.sum(1, keepdim=True)  # α = r / Σr on the simplex (D3), (B, K)
        theta = alpha @ self.anchors  # θ(α) = Σ_k α_k θ_k, (B, n)
        return theta[0] if single else theta

    def inner_weights(self, losses: Tensor) -> Tensor:
        """The inner balancing's factor per window draw and task (W, K), a constant: 1 ("ls"),
        1/(||∇_Θ ℓ_t|| + ξ) ("gradnorm"), or the running weights w_t ("rwa", updated per draw)."""
        W, K = losses.shape
        if self.inner == "ls":
            return torch.ones_like(losses.detach())
        if self.inner == "gradnorm":
            norms = torch.empty(W, K, dtype=losses.dtype)
            for w in range(W):
                for t in range(K):
                    (g,) = torch.autograd.grad(losses[w, t], self.anchors, retain_graph=True, allow_unused=True)
                    norms[w, t] = 0.0 if g is None else torch.linalg.vector_norm(g)  # ||∇_Θ ℓ_t(θ(α_w))||
            return 1.0 / (norms + GRADNORM_XI)  # ℓ_t / (||∇ℓ_t|| + ξ)
        rows = []
        for w in range(W):  # one official get_weighted_loss call per forward pass of the window
            self._rwa_costs = torch.cat([self._rwa_costs[1:], losses[w].detach()[None].to(self.dtype)])  # FIFO (50, K)
            if self._rwa_calls > RWA_WINDOW and K > 1:
                recent = self._rwa_costs[RWA_WINDOW:].abs().mean(0)  # |c̄_t| over the last 25 calls, (K,)
                if float(recent.sum()) > 0:  # 0/0 otherwise: keep the weights (D4)
                    self._rwa_weights = 1.0 - recent / recent.sum()  # w_t = 1 − |c̄_t| / Σ_s |c̄_s|
            self._rwa_calls += 1
            rows.append(self._rwa_weights.clone())
        return torch.stack(rows).to(losses.dtype)  # (W, K)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name="pamal")  # (W, K), (W, K)
        alpha = r / r.sum(1, keepdim=True)  # (W, K) (D3)
        total = (self.inner_weights(F) * alpha * F).sum()  # L = Σ_w Σ_t c_wt α_wt ℓ_t(θ(α_w))
        self.last_regulariser = 0.0
        if self.reg_coefficient > 0 and F.shape[0] >= 2:
            penalty = self.reg_coefficient * monotonicity_penalty(F, alpha, self.temperature)  # λR
            if bool(penalty < total):  # the official guard: add λR only where λR < L
                total = total + penalty
                self.last_regulariser = float(penalty.detach())
        return total


__all__ = ["PaMaL", "monotonicity_penalty"]
