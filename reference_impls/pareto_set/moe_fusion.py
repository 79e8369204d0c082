r"""Mixture-of-experts model fusion for Pareto set approximation: PWE MoE-LS (id ``moe-fusion``) and PWE MoE-EPO (id ``moe-fusion-epo``).

Tang, Shen, Luo, Liu, Hu, Du, "Towards Efficient Pareto Set Approximation via Mixture of Experts
Based Model Fusion" (Pareto weight-ensembling MoE, "PWE MoE"), arXiv 2406.09770 (2024). Official
code: tanganke/pareto_set_learning (``src/module/dict_moe.py``: ParetoWeightEnsemblingModule;
``scripts/clip_pareto_moe.py``: the up-scaling and the training loop; ``scripts/clip_pareto_moe_{ls,epo}.py``:
the two criteria; ``config/clip_pareto_moe.yaml``, ``clip_pareto_moe.sh``: the defaults), re-published in
tanganke/fusion_bench (``fusion_bench/method/pwe_moe/{module,clip_pwe_moe,openclip_pwe_moe}.py``). The
paper's PDF was not re-read here; the method below is the official code's.

A pretrained model θ₀ and K models fine-tuned from it give the task vectors τ (each fine-tuned model
minus θ₀). The model is "up-scaled": the MLP modules become weight-ensembling MoE modules whose
router reads the preference r only and outputs K unconstrained weights of the task vectors;
everything else is merged once by task arithmetic (``partial: true``, the paper's main setting).
Only the routers are trained (θ₀ and τ frozen), with the preference-weighted sum of the losses
(PWE MoE-LS, ``clip_pareto_moe_ls.py``) or EPO's weights (PWE MoE-EPO, ``clip_pareto_moe_epo.py``,
which reuses ``phn.solvers.EPOSolver``); see the update rule.

Because the router reads only r (not the hidden states), each MoE module collapses, for a given r, to
one set of weights: the whole network at r is the single parameter vector θ(r) above, which is what
:meth:`MoEFusion.forward` returns (B, n) ("merge and unload" in the official code). The MoE forward on
inputs (each linear layer's output = base output + the weighted sum of the experts' task-vector outputs) equals the
collapsed network's forward exactly for linear layers; the tests check this on ``merging-mlp``.

Defaults (official code): init_lambda λ = 0.3 (``init_lambda``: the task-arithmetic scale of the
remaining layers AND the initial bias of the router's last layer, so at initialisation every router outputs ≈ λ𝟙 and
the whole model ≈ task arithmetic θ₀ + λ Σ τ); ``router_hidden_layers`` = 1 here (D8; the configs: 2); router weights
N(0, 0.01²), first bias 0 (``dict_moe.py``); Dirichlet α = 1; one preference per step; Adam, lr 1e-2
(``clip_pareto_moe.yaml``); 2000 steps (yaml) / 4000 (``clip_pareto_moe.sh``); EPO ε = 1e-4 (ExactParetoLP).

What is an "MLP module" on the problems here (``upscale``; D1): the problem's parameter layout
(``Problem.parameter_shapes()``) is cut into layers (a weight matrix and the 1-D tensors after it, its
bias); ``upscale="hidden"`` (default) makes every layer but the last (the output layer) an MoE module
with its own router and merges the last by task arithmetic; a one-layer layout (a point problem's x,
lowrank-regression's W) is one MoE module. On ``merging-mlp`` (tanh MLP 4 → 16 → 16 → 1): MoE modules
(W1, b1) and (W2, b2), task arithmetic on (W3, b3). ``upscale="all"`` or a list of tensor names choose otherwise.

Experts (``begin``): ``problem.base`` (n,) and ``problem.task_models`` (K, n) (merging-mlp), else
``problem.task_optima`` (K, n) (lowrank-regression: the task least-squares fits, the fine-tuned
models' limit); on a point problem without them (D5) θ₀ = the problem's seeded starting point
(``initial_points(1)``) and the task models = its single-objective minimisers (``objective_minimisers()``
or ``linear_scalarisation_solution`` at each vertex); else a ValueError. ``base=``/``task_models=`` override all.

Update rule:
    With :math:`\tau_k = \theta_k - \theta_0` the task vectors and :math:`\bar r = r / \sum_k r_k`
    (D2), every tensor :math:`j` outside the MoE modules is merged once by task arithmetic
    (:math:`\lambda` = ``init_lambda`` = 0.3), and every tensor :math:`j` of MoE module :math:`m`
    (D1) is weighted by that module's router :math:`w^m`, which reads the preference only:

    .. math::

        \theta_j(r) = \theta_{0,j} + \lambda \sum_{k=1}^{K} \tau_{k,j} \ \ (j \text{ merged}), \qquad \theta_j(r) = \theta_{0,j} + \sum_{k=1}^{K} w^m_k(r)\,\tau_{k,j} \ \ (j \in \text{module } m)

    .. math::

        w^m(r) = A^m \bar r + c^m \ \ \text{(default, D8)}, \qquad w^m(r) = A^m_2 \operatorname{ReLU}(A^m_1 \bar r + c^m_1) + c^m_2 \ \ \text{(two layers)}

    (:math:`A^m_1` of shape (2K, K) in the two-layer router), initialised with weights
    :math:`\mathcal{N}(0, 0.01^2)`, the last bias :math:`\lambda` (:math:`c^m`, or :math:`c^m_2`) and,
    in the two-layer router, the first bias :math:`c^m_1 = 0` (so :math:`w^m \approx \lambda\mathbb{1}`:
    task arithmetic). Each step draws
    :math:`B = 8` preferences from :math:`\operatorname{Dir}(\mathbb{1})` (D4) and takes one Adam
    step on the routers' parameters :math:`\varphi` for PWE MoE-LS or PWE MoE-EPO:

    .. math::

        \mathcal{L}_{\mathrm{LS}} = \frac{1}{B}\sum_{b=1}^{B}\sum_{k=1}^{K} r_{b,k}\,f_k(\theta(r_b)), \qquad \mathcal{L}_{\mathrm{EPO}} = \frac{1}{B}\sum_{b=1}^{B}\sum_{k=1}^{K} K\,\alpha_{b,k}\,f_k(\theta(r_b))

    where :math:`\alpha_b` is EPO's LP solution for the ray :math:`r_b` on the Gramian of the
    gradients :math:`\nabla_\varphi f_k`, held constant: the same LP and fallbacks as PHN-EPO
    (``phn.py``, D7).

Deviations:
    D1 The toy networks have no transformer blocks: "the MLP modules" are the hidden layers of the
       problem's network (``upscale="hidden"``), the output layer is merged by task arithmetic (the
       official ``partial: true`` merges attention, norms and embeddings that way). ``upscale="all"``
       is the official ``partial: false`` (every module up-scaled).
    D2 The router reads r/Σr (the official code feeds the sampled ray, already on the simplex); LS uses
       r as given, as PHN-LS (mean over the batch of the r-weighted sum of the losses).
    D3 No cosine learning-rate schedule (the official code anneals to 0.1·lr with CosineAnnealingLR):
       the runner's optimiser has none. Toy defaults 400 steps at lr 1e-2 (the paper's 2000–4000 steps
       are on CLIP/GPT-2 minibatches; full batch here).
    D4 B = 8 preferences per step by default (criterion: the mean over the B rows); the official loop
       draws one ray per step (``batch=1`` here), which on the toys trains less reliably in 400 steps
       (lowrank-regression, 2000 single-ray steps: seed 0 stuck at error 1.08, seeds 1, 2 at 1e-8).
       Preferences come from the runner's seeded generator (the official np.random.dirichlet is unseeded).
    D5 Point problems (biquad, ...) have no pretrained and fine-tuned models: the seeded starting point
       stands for θ₀ and the objective minimisers for the fine-tuned models (reconstructed, not in the paper).
    D6 float64 (the official code is float32 / mixed precision), so the tests do not depend on the BLAS kernel.
    D7 PWE MoE-EPO reuses PHN-EPO's EPO weights (``reference_impls.pareto_set.phn.PHNEPO.epo_weights``:
       the certified LP, its fallback α = r/Σr counted in ``lp_fallbacks``), as the official code reuses
       PHN's ``EPOSolver``; the gradients are w.r.t. the routers' parameters (the only trainable ones).

    D8 ``router_hidden_layers`` defaults to 1 (a linear router w = A r + c: ParetoWeightEnsemblingModule's own
       default) where the official configs set 2. From the N(0, 0.01²) init under Adam at lr 1e-2 the
       2-layer router's ReLU units die in some seeds and its output stops depending on r: merging-mlp
       seed 2 ends at grid HV 0.222 (task arithmetic: 0.221; the linear router: 0.269 for seeds 0, 1, 2),
       biquad seed 0 at w(r) constant. ``router_hidden_layers=2`` gives the configs' router.

Results on the toys (400 steps of 8 preferences, lr 1e-2; tests/reference_impls/test_moe_fusion.py):
lowrank-regression (the LS map is of the model's form): held-out max ‖θ(r) − W*(r)‖ 2.4e-9, HV ratio
0.996 (the grid's), seeds 0, 1, 2; merging-mlp: grid HV 0.272 (runner, seeds 0–2) and 0.269 / 0.296
(8-point test grid, "hidden" / "all") against task arithmetic's 0.221; held-out r·f 4.5–6× the reference
front's (full fine-tuning from θ₀). Not reproduced: the paper's CLIP-ViT / GPT-2 experiments and its
accuracy tables; the claim that the fused model approximates the whole front holds on the toys only
where the front is a combination of the task vectors (lowrank-regression), not on merging-mlp.

Degenerate inputs: K = 1 (one expert, r = (1)); simplex vertices (LS: the single task); identical
experts (zero task vectors: θ(r) = θ₀ on the MoE tensors for every r); non-finite or negative preferences and
non-finite losses → ValueError (the core's checks); a problem without experts, or experts of the wrong
shape or non-finite → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch
from reference_impls.pareto_set.combination import ParameterLayout
from reference_impls.pareto_set.phn import PHNEPO


def layers_of(layout: ParameterLayout) -> list[list[int]]:
    """The layout's tensors grouped into layers: each 2-D weight matrix with the 1-D tensors after it (its bias).

    Tensors before the first matrix (or a layout with no matrix) form one layer each."""
    groups: list[list[int]] = []
    for j, shape in enumerate(layout.shapes):
        if len(shape) == 2 or not groups or len(layout.shapes[groups[-1][0]]) != 2:
            groups.append([j])  # a matrix opens a layer; a vector with no matrix before it is its own layer
        else:
            groups[-1].append(j)  # a bias joins the matrix before it
    return groups


def make_router(K: int, hidden_layers: int, init_lambda: float, dtype: torch.dtype) -> nn.Sequential:
    """The preference router g(r) (official ParetoWeightEnsemblingModule): weights N(0, 0.01²), last bias λ."""
    if hidden_layers == 1:
        router = nn.Sequential(nn.Linear(K, K))  # w = A r + c
    elif hidden_layers == 2:
        router = nn.Sequential(nn.Linear(K, 2 * K), nn.ReLU(), nn.Linear(2 * K, K))  # w = A_2 ReLU(A_1 r + c_1) + c_2
        nn.init.zeros_(router[0].bias)
    else:
        raise ValueError(f"moe-fusion: router_hidden_layers must be 1 or 2 (the official choices), got {hidden_layers}")
    for layer in router:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.01)
    nn.init.constant_(router[-1].bias, float(init_lambda))  # w ≈ λ𝟙 at initialisation: task arithmetic
    return router.to(dtype)


class MoEFusion(ParetoModel):
    """PWE MoE-LS: task arithmetic outside the MoE modules, router-weighted task vectors inside (built by ``begin``)."""

    name = "moe-fusion"
    target = "ls"
    preference_alpha: ClassVar[float] = 1.0  # config alpha: 1 (uniform on the simplex)
    default_batch: ClassVar[int] = 8  # D4 (the official loop: one ray per step)
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-2  # config lr: 1e-2
    default_steps: ClassVar[int | None] = 400  # D3

    def __init__(
        self,
        init_lambda: float = 0.3,
        router_hidden_layers: int = 1,
        upscale: str | Sequence[str] = "hidden",
        batch: int = 8,
        base: Tensor | None = None,
        task_models: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if not (isinstance(init_lambda, (int, float)) and torch.isfinite(torch.tensor(float(init_lambda)))):
            raise ValueError(f"{self.name}: init_lambda must be a finite number, got {init_lambda!r}")
        if int(router_hidden_layers) not in (1, 2):
            raise ValueError(f"{self.name}: router_hidden_layers must be 1 or 2 (the official choices), got {router_hidden_layers}")
        if int(batch) < 1:
            raise ValueError(f"{self.name}: batch must be >= 1, got {batch}")
        if isinstance(upscale, str) and upscale not in ("hidden", "all"):
            raise ValueError(f"{self.name}: upscale must be 'hidden', 'all' or a list of tensor names, got {upscale!r}")
        if (base is None) != (task_models is None):
            raise ValueError(f"{self.name}: give both base and task_models, or neither")
        self.init_lambda, self.router_hidden_layers, self.batch, self.dtype = float(init_lambda), int(router_hidden_layers), int(batch), dtype
        self.upscale = upscale if isinstance(upscale, str) else tuple(str(u) for u in upscale)
        self._given = (base, task_models)
        self.K: int | None = None
        self.n: int | None = None
        self.layout: ParameterLayout | None = None
        self.modules_of: list[list[int]] = []  # the tensor indices of each MoE module
        self.routers = nn.ModuleList()

    # ---------------------------------------------------------------------------------------
    # Building the up-scaled model
    # ---------------------------------------------------------------------------------------
    def experts_of(self, problem: Any, K: int, n: int, initial_points: Callable[[int], Tensor] | None) -> tuple[Tensor, Tensor]:
        """(θ_0 (n,), θ_k (K, n)) for ``problem`` (module docstring: the sources in order; D5)."""
        base, models = self._given
        if base is None and problem is not None and getattr(problem, "base", None) is not None:
            base = problem.base
            models = getattr(problem, "task_models", None)
            if models is None:
                models = getattr(problem, "task_optima", None)
            if models is None and getattr(problem, "task_vectors", None) is not None:
                models = torch.as_tensor(problem.base) + torch.as_tensor(problem.task_vectors)
        if base is None and problem is not None:  # a point problem: minimisers as the fine-tuned models (D5)
            minimisers = problem.objective_minimisers() if hasattr(problem, "objective_minimisers") else None
            if minimisers is None and hasattr(problem, "linear_scalarisation_solution"):
                minimisers = torch.stack([problem.linear_scalarisation_solution(torch.eye(K, dtype=torch.float64)[k]).reshape(-1) for k in range(K)])
            if minimisers is not None and initial_points is not None:
                base, models = initial_points(1).reshape(-1), minimisers
        if base is None or models is None:
            what = getattr(problem, "id", type(problem).__name__) if problem is not None else "no problem"
            raise ValueError(
                f"{self.name}: needs a pretrained model and fine-tuned task models to merge: {what!r} has no base/task_models "
                "(nor task_optima, nor objective minimisers); pass base= and task_models=, or use merging-mlp / lowrank-regression"
            )
        base = torch.as_tensor(base).detach().to(self.dtype).reshape(-1)  # (n,)
        models = torch.as_tensor(models).detach().to(self.dtype)  # (K, n)
        if base.shape != (n,) or models.shape != (K, n):
            raise ValueError(f"{self.name}: base must be ({n},) and task_models ({K}, {n}), got {tuple(base.shape)} and {tuple(models.shape)}")
        if not (bool(torch.isfinite(base).all()) and bool(torch.isfinite(models).all())):
            raise ValueError(f"{self.name}: the base or task models contain NaN or infinite entries")
        return base, models

    def upscaled_modules(self, layout: ParameterLayout) -> list[list[int]]:
        """The tensor indices of each MoE module for ``self.upscale`` (D1)."""
        layers = layers_of(layout)
        if self.upscale == "all":
            return layers
        if self.upscale == "hidden":
            return layers[:-1] if len(layers) > 1 else layers  # the output layer by task arithmetic
        unknown = [u for u in self.upscale if u not in layout.names]
        if unknown or not self.upscale:
            raise ValueError(f"{self.name}: upscale names {list(self.upscale)} must be non-empty tensor names of {layout.names}")
        chosen = {layout.names.index(u) for u in self.upscale}
        return [[j for j in layer if j in chosen] for layer in layers if any(j in chosen for j in layer)]

    def build(self, base: Tensor, task_models: Tensor, layout: ParameterLayout) -> None:
        """Freeze θ_0 and τ_k = θ_k − θ_0, merge the remaining tensors by task arithmetic, create one router per MoE module."""
        K, n = task_models.shape
        self.K, self.n, self.layout = int(K), int(n), layout
        tau = task_models - base  # τ_k = θ_k − θ_0, (K, n)
        self.register_buffer("base", base.clone())  # θ_0, (n,)
        self.register_buffer("task_vectors", tau)  # (K, n)
        self.register_buffer("merged", base + self.init_lambda * tau.sum(0))  # task arithmetic θ_0 + λ Σ_k τ_k, (n,)
        self.modules_of = self.upscaled_modules(layout)
        self.routers = nn.ModuleList(make_router(self.K, self.router_hidden_layers, self.init_lambda, self.dtype) for _ in self.modules_of)
        self.module_index = [-1] * len(layout.shapes)  # MoE module of each tensor (−1: task arithmetic)
        for m, tensors in enumerate(self.modules_of):
            for j in tensors:
                self.module_index[j] = m

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Up-scale the problem's model: experts from ``problem`` (or the constructor), routers for its layout."""
        if self.layout is not None:
            if (self.K, self.n) != (K, n):
                raise ValueError(f"{self.name} was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")
            return
        layout = ParameterLayout.of(problem) if problem is not None else ParameterLayout([("x", (int(n),))])
        base, models = self.experts_of(problem, int(K), int(n), initial_points)
        self.build(base, models, layout)

    # ---------------------------------------------------------------------------------------
    # The model
    # ---------------------------------------------------------------------------------------
    def routing_weights(self, preference: Tensor) -> Tensor:
        """w^m(r) for every MoE module: (B, K) -> (B, M, K) (unconstrained, as the official router's output)."""
        if self.layout is None:
            raise ValueError(f"{self.name}: the MoE model is not built: call begin(K, n, problem=...) (start_pareto_model)")
        rb, _ = preference_batch(preference, self.K, self.dtype, name=f"{self.name} preference")  # (B, K)
        r = rb / rb.sum(1, keepdim=True)  # the router reads r on the simplex (D2), (B, K)
        return torch.stack([router(r) for router in self.routers], dim=1)  # (B, M, K)

    def forward(self, preference: Tensor) -> Tensor:
        if self.layout is None:
            raise ValueError(f"{self.name}: the MoE model is not built: call begin(K, n, problem=...) (start_pareto_model)")
        single = torch.as_tensor(preference).ndim == 1
        w = self.routing_weights(preference)  # (B, M, K)
        B = w.shape[0]
        pieces = []
        for j, sl in enumerate(self.layout.slices):
            m = self.module_index[j]
            if m < 0:
                pieces.append(self.merged[sl].expand(B, -1))  # task arithmetic, (B, n_j)
            else:
                pieces.append(self.base[sl] + w[:, m] @ self.task_vectors[:, sl])  # θ_0,j + Σ_k w^m_k τ_k,j, (B, n_j)
        theta = torch.cat(pieces, dim=1)  # (B, n)
        return theta[0] if single else theta

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        return (r * F).sum(1).mean()  # PWE MoE-LS: mean_b Σ_k r_bk f_bk


class MoEFusionEPO(MoEFusion):
    """PWE MoE-EPO: Σ_k (K α_k) f_k with α from EPO's LP on the gradients w.r.t. the routers (D7)."""

    name = "moe-fusion-epo"
    target = "ray"

    def __init__(self, *args: Any, eps: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not eps > 0:
            raise ValueError(f"{self.name}: eps must be positive, got {eps}")
        self.eps = float(eps)
        self.lp_fallbacks = 0  # LP failures answered with α = r/Σr (D7)
        self.last_alpha: Tensor | None = None
        self.last_modes: list[str] = []

    epo_weights = PHNEPO.epo_weights  # the same LP on G Gᵀ, G_k = ∇_φ f_k over this model's (router) parameters
    target_rays = PHNEPO.target_rays  # 1/r normalised: r ⊙ f ∝ 𝟙 (z = 0)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)
        if bool((F.detach() < 0).any()):
            raise ValueError(f"{self.name}: losses must be non-negative (EPO uses log(r ⊙ f))")
        alpha = self.epo_weights(F, r).to(F)  # (B, K), constants
        return (F.shape[1] * alpha * F).sum(1).mean()  # mean_b Σ_k K α_bk f_bk


__all__ = ["MoEFusion", "MoEFusionEPO", "layers_of", "make_router"]
