"""MOML — Multi-Objective Meta Learning: task weights learned by a multi-objective (MGDA) outer step.

Papers: F. Ye, B. Lin, Z. Yue, P. Guo, Q. Xiao, Y. Zhang, "Multi-Objective Meta Learning", NeurIPS
2021 (arXiv 2102.07121); journal version F. Ye, B. Lin, Z. Yue, Y. Zhang, I. Tsang,
"Multi-Objective Meta-Learning", Artificial Intelligence 335, 2024. Official code:
github.com/Baijiong-Lin/MOML, ``MTL/moml_office.py`` (training loop), ``MTL/backbone.py``
(``Model_h``: the weights), ``MTL/min_norm_solvers.py`` (normalisers); a faster T = 1 variant is
``train_MOML`` in github.com/Baijiong-Lin/FORUM ``LibMTL/trainer.py``.

Problem (multi-task learning instance of the paper's multi-objective bi-level problem):

    lower level   ω*(α) = argmin_ω Σ_i λ_i(α) f_i^tr(ω),        λ(α) = softmax(α)     (Model_h)
    upper level   min_α  (f_1^val(ω*(α)), …, f_K^val(ω*(α)))    (K objectives, solved with MGDA)

Algorithm, one outer step (``moml_office.py``, the loop body before "update inner loop"):

1. Unroll one gradient step of the lower level, kept differentiable in α (create_graph):
   ω'(α) = ω − η ∇_ω [Σ_i λ_i(α) f_i^tr(ω) + ½·wd·‖ω‖²].
2. Hypergradients h_k = ∇_α f_k^val(ω'(α)) (K of them, each in R^K). Because ω' is affine in λ,
   h_k = −η J_sᵀ G^tr(ω) ∇f_k^val(ω') exactly, with J_s = diag(λ) − λλᵀ and G^tr the (K, n) matrix of
   training gradients (the closed form of FORUM's ``train_MOML``; checked in the tests).
3. Normalise ĥ_k = h_k / n_k (``gradient_normalizers``: n_k = ‖h_k‖ for "l2", the default of the
   Office script; f_k^val for "loss", the NYUv2 script; 1 for "none", LibMTL's ``mgda_gn`` default).
4. MGDA weights γ = argmin_{γ∈Δ} ‖Σ_k γ_k ĥ_k‖² (``MinNormSolver.find_min_norm_element``; here the
   certified Wolfe solver :func:`reference_impls.core.solvers.min_norm_weights`).
5. α ← Adam(lr 1e-3) step along the MGDA direction: d = Σ_k γ_k ĥ_k, the min-norm point of the
   normalised hypergradients (``combine="normalized"``: LibMTL's ``MGDA.aggregated_grad``, which the
   authors' later MOML implementation, FORUM's ``train_MOML``, uses), or d = Σ_k γ_k h_k
   (``combine="raw"``: ``moml_office.py``/``moml_nyu.py`` back-propagate Σ_k γ_k f_k^val, the γ-weighted
   *raw* validation losses). Only the first is a common descent direction: ⟨d, h_k⟩ ≥ n_k·‖d‖² > 0
   for every k unless d = 0, while the raw combination is non-zero even at a Pareto-stationary point
   of the normalised set, so α keeps drifting there.
6. (Runner.) The model then takes its own step on Σ_i λ_i f_i^tr with the new λ.

Defaults (and their source): α initialised to the constant 1/K (``Model_h``: uniform λ); outer
optimiser Adam with lr ``outer_lr`` = 1e-3 (``moml_office.py``; 1e-4 in ``moml_nyu.py``); ``eta`` the
virtual-step lr: None = the runner's model lr ``lr`` (the official code hard-codes 1e-4, which is also
its model Adam lr; FORUM's README runs MOML with eta 0.1); ``normalization`` "l2" (``moml_office.py``);
``combine`` "normalized" (see step 5 and D7).

Interface: a :class:`~reference_impls.core.loss_weighting.BilevelLossWeighting`. ``weights`` returns
softmax(α) (detached); ``outer_step`` is one outer step (steps 1–5); :meth:`MOML.step_on_hypergradients`
does steps 3–5 from given hypergradients (used with the exact lower-level hypergradients of
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
    D4. The model step is the runner's (Σ λ_i f_i^tr on the training split); the official code steps the
        model with Adam on the train+val ("trval") batches.
    D5. α is stored in float64 (official: float32 parameter).
    D6. ``outer_optimizer="sgd"`` (α ← α − outer_lr·direction) is an option of ours, used to check the
        descent property of the MGDA direction without Adam's per-coordinate rescaling (with Adam an
        upper loss can rise: on bilevel-ridge, 4 of 9 non-stationary starts within 300 steps at lr 1e-3).
    D7. Default ``combine="normalized"`` (the min-norm point itself, as LibMTL's MGDA) rather than the
        MOML repository's raw combination Σ_k γ_k h_k (``combine="raw"`` reproduces it); the defaults of
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
    """Steps 3–5 of MOML: (γ (K,), the direction (K_α,)) from the hypergradients H (K, K_α).

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
        """(H (K, K) with rows h_k = ∇_α f_k^val(ω'(α)), the validation losses at ω' (K,)), steps 1–2."""
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
        """Steps 3–5: MGDA weights on the (normalised) hypergradients, then one optimiser step on α.

        Returns the direction Σ_k γ_k h_k given to the optimiser as α's gradient (K,).
        """
        alpha = self._ensure(hypergradients.shape[0])
        gamma, direction = mgda_direction(hypergradients, val_losses, self.normalization, self.combine)
        assert self._optimizer is not None
        self._optimizer.zero_grad(set_to_none=True)
        alpha.grad = direction.to(alpha).clone()  # ∇_α Σ_k γ_k f_k^val(ω'(α))
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
