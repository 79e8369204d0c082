r"""MOML — Multi-Objective Meta Learning: task weights learned by a multi-objective (MGDA) outer step.

Papers: F. Ye, B. Lin, Z. Yue, P. Guo, Q. Xiao, Y. Zhang, "Multi-Objective Meta Learning", NeurIPS
2021 (arXiv 2102.07121); journal version F. Ye, B. Lin, Z. Yue, Y. Zhang, I. Tsang,
"Multi-Objective Meta-Learning", Artificial Intelligence 335, 2024. Official code:
github.com/Baijiong-Lin/MOML, ``MTL/moml_office.py`` (training loop), ``MTL/backbone.py``
(``Model_h``: the weights), ``MTL/min_norm_solvers.py`` (normalisers); a faster T = 1 variant is
``train_MOML`` in github.com/Baijiong-Lin/FORUM ``LibMTL/trainer.py``.

Update rule:
    The multi-task instance of the paper's multi-objective bi-level problem: the lower level trains
    the model :math:`\omega` on the training losses weighted by :math:`\lambda = \mathrm{softmax}(\alpha)`
    (``Model_h``), and the upper level minimises the K validation losses over :math:`\alpha`, as K
    objectives solved with MGDA:

    .. math::

        \min_{\alpha}\ \Big( f_1^{\mathrm{val}}\big(\omega^\star(\alpha)\big), \dots, f_K^{\mathrm{val}}\big(\omega^\star(\alpha)\big) \Big), \qquad
        \omega^\star(\alpha) = \arg\min_{\omega} \sum_{i=1}^{K} \lambda_i(\alpha)\, f_i^{\mathrm{tr}}(\omega)

    One outer step (``moml_office.py``, the loop body before "update inner loop"). The lower level is
    unrolled by one gradient step (learning rate :math:`\eta`, the loop's by default; :math:`w_{\mathrm{d}}`
    the loop's weight decay, D3), kept differentiable in :math:`\alpha`, and each validation loss at
    the unrolled model gives a hypergradient :math:`h_k \in \mathbb{R}^K`. As :math:`\omega'` is affine in
    :math:`\lambda`, :math:`h_k` has the closed form of FORUM's ``train_MOML`` (checked in the tests),
    with :math:`G^{\mathrm{tr}}` the K×n matrix of training gradients:

    .. math::

        \omega'(\alpha) = \omega - \eta\, \nabla_\omega \Big( \sum_{i=1}^{K} \lambda_i(\alpha) f_i^{\mathrm{tr}}(\omega) + \tfrac{1}{2} w_{\mathrm{d}} \lVert \omega \rVert^2 \Big), \qquad
        h_k = \nabla_\alpha f_k^{\mathrm{val}}\big(\omega'(\alpha)\big) = -\eta \big( \operatorname{diag}(\lambda) - \lambda \lambda^\top \big) G^{\mathrm{tr}}(\omega)\, \nabla f_k^{\mathrm{val}}(\omega')

    The hypergradients are normalised (``gradient_normalizers``: :math:`n_k = \lVert h_k \rVert` for
    ``normalization="l2"``, the Office script's default, 1 for a zero :math:`h_k` (D2);
    :math:`n_k = f_k^{\mathrm{val}}(\omega')` for "loss", the NYUv2 script; :math:`n_k = 1` for "none",
    LibMTL's ``mgda_gn`` default), MGDA weights them (the certified Wolfe min-norm solver, D1), and
    :math:`\alpha` takes one Adam step (learning rate 1e-3) along the min-norm point
    (``combine="normalized"``, the default, D7):

    .. math::

        \hat h_k = h_k / n_k, \qquad
        \gamma = \arg\min_{\gamma \in \Delta_K} \left\lVert \sum_{k=1}^{K} \gamma_k \hat h_k \right\rVert^2, \qquad
        d = \sum_{k=1}^{K} \gamma_k \hat h_k, \qquad
        \alpha \leftarrow \operatorname{Adam}(\alpha;\ d)

    With ``combine="raw"`` the step is along :math:`\sum_k \gamma_k h_k` instead, as
    ``moml_office.py`` and ``moml_nyu.py`` do by back-propagating the γ-weighted raw validation losses.
    Only the min-norm point is a common descent direction:
    :math:`\langle d, h_k \rangle \ge n_k \lVert d \rVert^2 > 0` for every k unless :math:`d = 0`, while the
    raw combination is in general non-zero even at a Pareto-stationary point of the normalised set, so
    :math:`\alpha` keeps drifting there. The loop then steps the model on
    :math:`\sum_i \lambda_i f_i^{\mathrm{tr}}` with the new :math:`\lambda` (D4).

Defaults (and their source): α initialised to the constant 1/K (``Model_h``: uniform λ); outer
optimiser Adam with lr ``outer_lr`` = 1e-3 (``moml_office.py``; 1e-4 in ``moml_nyu.py``); ``eta`` the
virtual-step lr: None = the runner's model lr ``lr`` (the official code hard-codes 1e-4, which is also
its model Adam lr; FORUM's README runs MOML with eta 0.1); ``normalization`` "l2" (``moml_office.py``);
``combine`` "normalized" (see the update rule and D7).

Interface: a :class:`~reference_impls.core.loss_weighting.BilevelLossWeighting`. ``weights`` returns
softmax(α) (detached); ``outer_step`` is one outer step (the update rule above, up to the Adam step on
α); :meth:`MOML.step_on_hypergradients` does its second half (normalisation, MGDA, the step on α) from
given hypergradients (used with the exact lower-level hypergradients of
``bilevel-ridge`` in the tests). ``last`` holds the quantities of the last outer step (h, γ, direction).

Degenerate inputs: non-finite training or validation losses raise
:class:`~reference_impls.core.aggregator.NonFiniteError` naming the method, the split and the task;
a zero hypergradient is left unnormalised (so it gets γ = 1 and the step is zero: no task can be
helped without hurting that one); K = 1 works (softmax is constant, h = 0, α never moves, λ = 1);
"loss" normalisation needs positive validation losses (ValueError otherwise).

Deviations:
    D1. MGDA by the certified Wolfe min-norm solver instead of the official Frank–Wolfe
        ``MinNormSolver`` (same minimiser up to that solver's stopping tolerance).
    D2. A zero hypergradient is not divided by its zero norm (the official code would produce NaN).
    D3. The virtual step includes the lower level's L2 term ½·wd·‖ω‖² when the loop has one (on
        ``bilevel-ridge`` the ridge is part of the lower level); the official virtual step has none.
    D4. The model step is the runner's (:math:`\sum_i \lambda_i f_i^{\mathrm{tr}}` on the training split);
        the official code steps the model with Adam on the train+val ("trval") batches.
    D5. α is stored in float64 (official: float32 parameter).
    D6. ``outer_optimizer="sgd"`` (α ← α − outer_lr·direction) is an option of ours, used to check the
        descent property of the MGDA direction without Adam's per-coordinate rescaling (with Adam an
        upper loss can rise: on bilevel-ridge, 4 of 9 non-stationary starts within 300 steps at lr 1e-3).
    D7. Default ``combine="normalized"`` (the min-norm point itself, as LibMTL's MGDA) rather than the
        MOML repository's raw combination :math:`\sum_k \gamma_k h_k` (``combine="raw"`` reproduces it); the defaults of
        ``normalization`` and of the optimiser are the MOML repository's Office script.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import BilevelLossWeighting
from reference_impls.core.solvers import min_norm_weights, rescaled_gramian

NORMALIZATIONS = ("l2", "loss", "none")
OUTER_OPTIMIZERS = ("adam", "sgd")
COMBINES = ("normalized", "raw")


def check_losses(losses: Tensor, method: str, split: str) -> Tensor:
    """Raise NonFiniteError naming the method, the split and the first bad task when a loss is NaN/inf."""
    bad = ~torch.isfinite(losses.detach())  # (K,)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise NonFiniteError(f"{method}: the {split} loss of task {k} is {float(losses.detach()[k])} (non-finite)")
    return losses


def softmax_jacobian(lam: Tensor) -> Tensor:
    """∂softmax(α)/∂α = diag(λ) − λλᵀ at λ = softmax(α), (K, K), symmetric."""
    return torch.diag(lam) - torch.outer(lam, lam)  # (K, K)


def mgda_direction(
    hypergradients: Tensor, val_losses: Tensor, normalization: str = "l2", combine: str = "normalized"
) -> tuple[Tensor, Tensor]:
    """Normalisation and MGDA of MOML: (γ (K,), the direction (K_α,)) from the hypergradients H (K, K_α).

    γ is the min-norm point of the normalised ĥ_k = h_k / n_k (certified KKT: ⟨d̂, ĥ_j⟩ ≥ ‖d̂‖² for
    every j, d̂ = Σ γ_k ĥ_k). The direction is d̂ itself (``combine="normalized"``, LibMTL's MGDA) or
    Σ_k γ_k h_k on the raw hypergradients (``combine="raw"``, the MOML repository's Office/NYUv2 scripts).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"moml: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if combine not in COMBINES:
        raise ValueError(f"moml: combine must be one of {COMBINES}, got {combine!r}")
    H = hypergradients.detach().to(torch.float64)  # (K, K_α)
    if not bool(torch.isfinite(H).all()):
        k = int((~torch.isfinite(H)).any(dim=1).nonzero()[0, 0])
        raise NonFiniteError(f"moml: the hypergradient of task {k} is not finite")
    if normalization == "l2":
        scale = H.norm(dim=1)  # ‖h_k‖, (K,)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # D2: a zero h_k stays zero
    elif normalization == "loss":
        f = val_losses.detach().to(torch.float64)  # (K,)
        if bool((f <= 0).any()):
            k = int((f <= 0).nonzero()[0, 0])
            raise ValueError(f"moml: normalization='loss' divides by the validation loss, but task {k} has loss {float(f[k])} <= 0")
        scale = f
    else:
        scale = torch.ones(H.shape[0], dtype=torch.float64)
    H_hat = H / scale[:, None]  # ĥ_k, (K, K_α)
    gamma = min_norm_weights(rescaled_gramian(H_hat))  # (K,) certified min-norm weights on the simplex
    direction = gamma @ (H_hat if combine == "normalized" else H)  # Σ_k γ_k ĥ_k (or Σ_k γ_k h_k), (K_α,)
    return gamma, direction


class MOML(BilevelLossWeighting):
    """λ = softmax(α); α moves along the MGDA combination of the unrolled hypergradients ∇_α f_k^val(ω'(α))."""

    name = "moml"

    def __init__(
        self,
        num_tasks: int | None = None,
        outer_lr: float = 1e-3,
        eta: float | None = None,
        normalization: str = "l2",
        outer_optimizer: str = "adam",
        combine: str = "normalized",
    ) -> None:
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"moml: num_tasks must be >= 1, got {num_tasks}")
        if not outer_lr > 0:
            raise ValueError(f"moml: outer_lr must be > 0, got {outer_lr}")
        if eta is not None and not eta > 0:
            raise ValueError(f"moml: eta must be > 0 (or None: the model's lr), got {eta}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"moml: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if combine not in COMBINES:
            raise ValueError(f"moml: combine must be one of {COMBINES}, got {combine!r}")
        if outer_optimizer not in OUTER_OPTIMIZERS:
            raise ValueError(f"moml: outer_optimizer must be one of {OUTER_OPTIMIZERS}, got {outer_optimizer!r}")
        self.num_tasks = None if num_tasks is None else int(num_tasks)
        self.outer_lr, self.eta = float(outer_lr), None if eta is None else float(eta)
        self.normalization, self.outer_optimizer, self.combine = normalization, outer_optimizer, combine
        self.alpha: Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.last: dict[str, Tensor] = {}
        if self.num_tasks is not None:
            self._init(self.num_tasks)

    # -- state -------------------------------------------------------------------------------
    def _init(self, K: int) -> None:
        self.num_tasks = K
        self.alpha = torch.full((K,), 1.0 / K, dtype=torch.float64, requires_grad=True)  # Model_h: constant 1/K
        if self.outer_optimizer == "adam":
            self._optimizer = torch.optim.Adam([self.alpha], lr=self.outer_lr)  # official: Adam(lr=1e-3)
        else:
            self._optimizer = torch.optim.SGD([self.alpha], lr=self.outer_lr)

    def _ensure(self, K: int) -> Tensor:
        if self.alpha is None:
            self._init(K)
        if K != self.num_tasks:
            raise ValueError(f"moml was built for {self.num_tasks} tasks but got {K} losses")
        assert self.alpha is not None
        return self.alpha

    def reset(self) -> None:
        if self.num_tasks is not None:
            self._init(self.num_tasks)
        self.last = {}

    # -- LossWeighting -----------------------------------------------------------------------
    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        losses = check_losses(losses.reshape(-1), self.name, "training")
        alpha = self._ensure(losses.numel())
        return torch.softmax(alpha.detach(), dim=0).to(losses)  # λ = softmax(α), (K,)

    # -- the outer step ------------------------------------------------------------------------
    def hypergradients(
        self,
        params: Sequence[Tensor],
        train_losses_at: Callable[[Sequence[Tensor]], Tensor],
        val_losses_at: Callable[[Sequence[Tensor]], Tensor],
        eta: float,
        weight_decay: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """(H (K, K) with rows h_k = ∇_α f_k^val(ω'(α)), the validation losses at ω' (K,)): the unrolled step and the hypergradients."""
        params = list(params)
        train = check_losses(train_losses_at(params).reshape(-1), self.name, "training")  # (K,)
        alpha = self._ensure(train.numel())
        a = alpha.detach().requires_grad_(True)  # (K,) a fresh leaf: the graph of this step only
        lam = torch.softmax(a, dim=0).to(train)  # λ(α), (K,)
        lower = (lam * train).sum()  # Σ_i λ_i f_i^tr(ω)
        if weight_decay:
            lower = lower + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params)  # + ½·wd·‖ω‖² (D3)
        grads = torch.autograd.grad(lower, params, create_graph=True)  # ∇_ω lower, differentiable in α
        virtual = [p - eta * g for p, g in zip(params, grads, strict=True)]  # ω'(α) = ω − η∇_ω lower
        val = check_losses(val_losses_at(virtual).reshape(-1), self.name, "validation")  # f^val(ω'(α)), (K,)
        rows = [torch.autograd.grad(val[k], a, retain_graph=k + 1 < val.numel())[0] for k in range(val.numel())]
        return torch.stack(rows).to(torch.float64), val.detach()  # (K, K), (K,)

    def step_on_hypergradients(self, hypergradients: Tensor, val_losses: Tensor) -> Tensor:
        """MGDA weights on the (normalised) hypergradients, then one optimiser step on α.

        Returns the direction given to the optimiser as α's gradient (K,): Σ_k γ_k ĥ_k on the normalised
        hypergradients (``combine="normalized"``, the default) or Σ_k γ_k h_k (``combine="raw"``).
        """
        alpha = self._ensure(hypergradients.shape[0])
        gamma, direction = mgda_direction(hypergradients, val_losses, self.normalization, self.combine)
        assert self._optimizer is not None
        self._optimizer.zero_grad(set_to_none=True)
        alpha.grad = direction.to(alpha).clone()  # Σ_k γ_k ĥ_k (normalised) or Σ_k γ_k h_k = ∇_α Σ_k γ_k f_k^val(ω'(α)) (raw)
        self._optimizer.step()
        self.last = {"hypergradients": hypergradients.detach().clone(), "gamma": gamma, "direction": direction, "val_losses": val_losses.detach().clone()}
        return direction

    def outer_step(
        self,
        params: Sequence[Tensor],
        train_losses: Callable[[], Tensor],
        val_losses: Callable[[], Tensor],
        lr: float,
        *,
        train_losses_at: Callable[[Sequence[Tensor]], Tensor],
        val_losses_at: Callable[[Sequence[Tensor]], Tensor],
        weight_decay: float = 0.0,
        optimizer: Any = None,
        step: int = 0,
    ) -> None:
        eta = float(lr) if self.eta is None else self.eta
        H, val = self.hypergradients(params, train_losses_at, val_losses_at, eta, weight_decay)
        self.step_on_hypergradients(H, val)


__all__ = ["COMBINES", "MOML", "NORMALIZATIONS", "check_losses", "mgda_direction", "softmax_jacobian"]
