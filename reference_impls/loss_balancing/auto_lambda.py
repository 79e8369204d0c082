r"""Auto-Lambda — task weights learned by a one-step look-ahead meta-gradient on a validation loss.

Paper: S. Liu, S. James, A. J. Davison, E. Johns, "Auto-Lambda: Disentangling Dynamic Task
Relationships", TMLR 2022 (arXiv 2202.03091). Official code: github.com/lorenmt/auto-lambda
(``auto_lambda.py``: class ``AutoLambda``; ``trainer_dense.py``, ``trainer_cifar.py``: the training
loops and defaults), read for every line below. The paper's text was not re-read here: the
equations are stated as the official code computes them.

Update rule:
    A bi-level problem: the model :math:`\theta` minimises :math:`\sum_i \lambda_i f_i^{\mathrm{tr}}(\theta)`
    over all K training tasks, and the weights :math:`\lambda` minimise the meta-loss, the validation
    loss of the primary tasks :math:`P` (all tasks in multi-task learning, one task in auxiliary
    learning) after the model has trained with them. The trained model is approximated by ONE virtual
    step of the model's optimiser (``virtual_step``): :math:`\alpha` is the model's learning rate,
    :math:`m` its momentum buffer times the momentum :math:`\mu` when it has them (SGD with
    momentum; 0 otherwise, e.g. for Adam), and :math:`w_{\mathrm{d}}` its weight decay plus the loop's
    ``weight_decay`` (D1):

    .. math::

        \theta'(\lambda) = \theta - \alpha \Big( m + \nabla_\theta \sum_{i=1}^{K} \lambda_i f_i^{\mathrm{tr}}(\theta) + w_{\mathrm{d}}\, \theta \Big), \qquad
        L_{\mathrm{meta}}(\lambda) = \sum_{i \in P} f_i^{\mathrm{val}}\big(\theta'(\lambda)\big)

    As :math:`m` and :math:`w_{\mathrm{d}}\theta` do not depend on :math:`\lambda`, the meta-gradient is
    exactly

    .. math::

        \frac{\partial L_{\mathrm{meta}}}{\partial \lambda_i} = -\alpha\, \langle \nabla_\theta f_i^{\mathrm{tr}}(\theta),\, d \rangle, \qquad
        d = \nabla_{\theta'} L_{\mathrm{meta}}(\theta')

    The official code evaluates the inner products by central finite differences of the training
    losses (its ``compute_hessian``, the DARTS trick), and so does the default
    ``meta_gradient="finite-difference"`` (``fd_radius`` = 0.01); ``meta_gradient="exact"`` computes
    them by autograd (K backward passes, D4):

    .. math::

        \langle \nabla_\theta f_i^{\mathrm{tr}}(\theta),\, d \rangle \approx
        \frac{f_i^{\mathrm{tr}}(\theta + \varepsilon d) - f_i^{\mathrm{tr}}(\theta - \varepsilon d)}{2 \varepsilon}, \qquad
        \varepsilon = \frac{0.01}{\lVert d \rVert}

    The weights then take one Adam step (learning rate ``meta_lr``) on this gradient, and the model one
    step of its own optimiser on the weighted training loss with the NEW weights:

    .. math::

        \lambda \leftarrow \operatorname{Adam}\big(\lambda;\ \nabla_\lambda L_{\mathrm{meta}}\big), \qquad
        \theta \leftarrow \text{one optimiser step on } \sum_{i=1}^{K} \lambda_i f_i^{\mathrm{tr}}(\theta), \qquad
        \lambda^{(0)} = 0.1 \cdot \mathbf{1}

    The weights are unconstrained (no projection, no normalisation: a weight may become negative).
    For a loss with bounded third derivative the central difference errs by at most
    :math:`(h^2/6)\, \lVert d \rVert \sup \lvert \partial^3 f_i[u, u, u] \rvert` with
    :math:`h = \varepsilon \lVert d \rVert = 0.01` and :math:`u = d / \lVert d \rVert` (plus rounding
    of about :math:`\mathrm{eps}\, \lvert f_i \rvert\, \lVert d \rVert / h`); on quadratic losses
    (the ``bilevel-ridge`` toy) it is exact up to rounding (tested).

Defaults, with their source:
    weight_init = 0.1    ``--autol_init`` (trainer_dense.py, trainer_cifar.py; README)
    meta_lr = 1e-4       ``--autol_lr`` of trainer_dense.py and the README for NYUv2 (the README gives 3e-5
                         for CityScapes; trainer_cifar.py defaults to 3e-4 for CIFAR-100)
    fd_radius = 0.01     ε = 0.01/‖d‖ in ``compute_hessian``
    primary = None       all tasks (``--task all``: "use all for MTL setting")
    outer_every = 1      the meta step precedes every model step in both trainers
The model optimiser of the official dense trainer is SGD (lr 0.1, momentum 0.9, weight decay 1e-4,
cosine schedule; the meta step reads the scheduled lr): α is whatever lr the loop passes.

Interface: a :class:`~reference_impls.core.loss_weighting.BilevelLossWeighting`. ``weights`` returns λ
(detached); ``outer_step(params, train_losses, val_losses, lr, train_losses_at=..., val_losses_at=...,
weight_decay=..., optimizer=..., step=...)`` does the virtual step, the meta-gradient and the Adam step
on λ; the loop (:func:`reference_impls.core.hooks.bilevel_step`, the runner on ``bilevel-ridge``) then
steps the model on :math:`\sum_i \lambda_i f_i^{\mathrm{tr}}`. ``last_meta_gradient`` holds the last
:math:`\partial L_{\mathrm{meta}} / \partial \lambda` (K,).

Bad input: non-finite training or validation losses raise :class:`~reference_impls.core.aggregator.NonFiniteError`
naming the method and the task; a loss vector of another length than the first one raises a ValueError.
K = 1 works (λ is then a learned scale of the single loss, i.e. a learned learning rate).

Deviations: (each checked against the official code)
    D1. The virtual step folds in the momentum buffer and the weight decay of the model optimiser only
        when it is a ``torch.optim`` optimiser with a ``momentum`` / ``weight_decay`` entry, as the
        official code does; the loop's own ``weight_decay`` (the ridge term of ``bilevel-ridge``, which
        the runner adds to the objective instead of the optimiser) is folded in the same way. For other
        optimisers (Adam, the runner's SGD/Adam) the virtual step is the plain gradient step
        θ − α(∇ + wd·θ), as the official code does for an optimiser without momentum (it ignores Adam's
        moments too).
    D2. θ± and θ' are new tensors: the official code perturbs the model in place (θ += εd, θ −= 2εd,
        θ += εd), which can leave θ changed by rounding; here the model is never written.
    D3. When :math:`\nabla_{\theta'} L_{\mathrm{meta}}(\theta') = 0` the meta-gradient is 0 exactly; the
        official ε = 0.01/‖d‖ is then infinite and the meta-gradient NaN.
    D4. ``meta_gradient="exact"`` (autograd inner products) is an option of ours, for testing and for
        losses where the central difference is inaccurate.
    D5. The number of tasks is taken from the first losses seen when ``num_tasks`` is None (the
        official class is built with the task list).
    D6. The validation losses are whatever ``val_losses_at`` returns: the official dense and CIFAR
        trainers draw the "validation" batch from the TRAINING set with another shuffle (a second
        loader over ``train_set``); ``bilevel-ridge`` has a separate validation split.

Usage (a network ``model``, its losses on the current batches as functions of a parameter list)::

    method = AutoLambda()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step in range(steps):
        bilevel_step(method, list(model.parameters()), train_losses_at, val_losses_at, optimiser, lr=0.1, step=step)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import BilevelLossWeighting

META_GRADIENTS = ("finite-difference", "exact")


class AutoLambda(BilevelLossWeighting):
    """Unconstrained task weights λ (init 0.1) updated by Adam on the one-step look-ahead meta-gradient."""

    name: ClassVar[str] = "auto-lambda"

    def __init__(
        self,
        num_tasks: int | None = None,
        weight_init: float = 0.1,
        meta_lr: float = 1e-4,
        primary: Sequence[int] | None = None,
        meta_gradient: str = "finite-difference",
        fd_radius: float = 0.01,
    ) -> None:
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"auto-lambda: num_tasks must be >= 1, got {num_tasks}")
        if meta_gradient not in META_GRADIENTS:
            raise ValueError(f"auto-lambda: meta_gradient must be one of {', '.join(META_GRADIENTS)}, got {meta_gradient!r}")
        for label, value in (("weight_init", weight_init), ("meta_lr", meta_lr), ("fd_radius", fd_radius)):
            if not torch.isfinite(torch.tensor(float(value))):
                raise ValueError(f"auto-lambda: {label} must be finite, got {value}")
        if not meta_lr > 0 or not fd_radius > 0:
            raise ValueError(f"auto-lambda: meta_lr and fd_radius must be positive, got {meta_lr}, {fd_radius}")
        self.num_tasks = None if num_tasks is None else int(num_tasks)
        self.weight_init, self.meta_lr, self.fd_radius = float(weight_init), float(meta_lr), float(fd_radius)
        self.meta_gradient = meta_gradient
        self.primary = None if primary is None else tuple(int(i) for i in primary)
        if self.primary is not None and len(self.primary) == 0:
            raise ValueError("auto-lambda: primary must name at least one task (None: all tasks)")
        self.reset()

    # ------------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """λ back to ``weight_init`` (built at the first call when ``num_tasks`` is None), a fresh Adam."""
        self.lam: Tensor | None = None  # (K,) float64 leaf: the task weights λ
        self._adam: Any = None
        self.last_meta_gradient: Tensor | None = None  # (K,) ∂L_meta/∂λ of the last outer step
        if self.num_tasks is not None:
            self._build(self.num_tasks)

    def _build(self, K: int) -> None:
        if self.primary is not None and not all(0 <= i < K for i in self.primary):
            raise ValueError(f"auto-lambda: primary tasks {list(self.primary)} out of range for K={K}")
        self.num_tasks = K
        self.lam = torch.full((K,), self.weight_init, dtype=torch.float64, requires_grad=True)  # λ_i = 0.1
        self._adam = torch.optim.Adam([self.lam], lr=self.meta_lr)  # the official meta_optimizer

    def _check(self, losses: Tensor, kind: str) -> Tensor:
        losses = losses.reshape(-1)
        if self.lam is None:
            self._build(losses.numel())
        if losses.numel() != self.num_tasks:
            raise ValueError(f"auto-lambda was built for {self.num_tasks} tasks but got {losses.numel()} {kind} losses")
        finite = torch.isfinite(losses.detach())
        if not bool(finite.all()):
            bad = [i for i in range(losses.numel()) if not bool(finite[i])]
            raise NonFiniteError(f"auto-lambda: the {kind} loss of task {bad[0]} is {float(losses.detach()[bad[0]])} (non-finite tasks: {bad})")
        return losses

    @property
    def primary_mask(self) -> Tensor:
        """(K,) 1 for the primary tasks (the meta-loss), 0 for the others."""
        assert self.num_tasks is not None
        mask = torch.zeros(self.num_tasks, dtype=torch.float64)
        mask[list(range(self.num_tasks)) if self.primary is None else list(self.primary)] = 1.0
        return mask

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        """λ (K,), detached: Σ λ_i f_i^tr is the model's objective."""
        self._check(losses, "training")
        assert self.lam is not None
        return self.lam.detach().clone().to(losses)

    # ------------------------------------------------------------------------------------------
    # The outer (meta) step
    # ------------------------------------------------------------------------------------------

    def virtual_step(
        self, params: Sequence[Tensor], train_losses: Tensor, lr: float, weight_decay: float = 0.0, optimizer: Any = None
    ) -> list[Tensor]:
        """θ' = θ − α (m + ∇_θ Σ λ_i f_i^tr(θ) + wd·θ), new detached tensors (``virtual_step`` of the official code)."""
        assert self.lam is not None
        weighted = (self.lam.detach().to(train_losses) * train_losses).sum()  # Σ λ_i f_i^tr(θ); λ is a constant here
        grads = torch.autograd.grad(weighted, list(params), allow_unused=True, retain_graph=self.meta_gradient == "exact")  # exact: reused
        group = optimizer.param_groups[0] if hasattr(optimizer, "param_groups") else {}
        wd = float(weight_decay) + float(group.get("weight_decay", 0.0) or 0.0)  # D1: the optimiser's and the loop's
        out = []
        for p, g in zip(params, grads):
            g = torch.zeros_like(p) if g is None else g
            m = 0.0
            if "momentum" in group and hasattr(optimizer, "state"):
                buf = optimizer.state.get(p, {}).get("momentum_buffer")  # None before the first SGD step (official: 0)
                m = 0.0 if buf is None else group["momentum"] * buf  # μ·buffer
            out.append((p.detach() - lr * (m + g.detach() + wd * p.detach())).requires_grad_(True))  # θ' = θ − α(m + g + wd θ)
        return out

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
        """One meta step: virtual step, meta-gradient ∂L_meta/∂λ (finite difference or exact), Adam on λ."""
        params = list(params)
        with torch.enable_grad():
            f_tr = self._check(train_losses(), "training")  # (K,) at θ, with a graph
            theta_virtual = self.virtual_step(params, f_tr, lr, weight_decay, optimizer)  # θ'
            f_val = self._check(val_losses_at(theta_virtual), "validation")  # (K,) at θ'
            meta_loss = (self.primary_mask.to(f_val) * f_val).sum()  # L_meta = Σ_{i∈P} f_i^val(θ')
            d = torch.autograd.grad(meta_loss, theta_virtual, allow_unused=True)  # ∇_θ' L_meta
            d = [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(theta_virtual, d)]
            inner = self._inner_products(params, f_tr, d, train_losses_at)  # (K,) ⟨∇f_i^tr(θ), d⟩
        grad = -float(lr) * inner  # ∂L_meta/∂λ_i = −α ⟨∇f_i^tr(θ), d⟩
        assert self.lam is not None
        self.last_meta_gradient = grad.detach().clone()
        self._adam.zero_grad(set_to_none=True)
        self.lam.grad = grad.to(self.lam)
        self._adam.step()

    def _inner_products(
        self, params: list[Tensor], f_tr: Tensor, d: list[Tensor], train_losses_at: Callable[[Sequence[Tensor]], Tensor]
    ) -> Tensor:
        """(K,) ⟨∇_θ f_i^tr(θ), d⟩, by central differences (official) or exactly by autograd."""
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in d))  # ‖d‖
        if float(norm) == 0.0:
            return torch.zeros_like(f_tr.detach(), dtype=torch.float64)  # D3: ⟨∇f_i, 0⟩ = 0
        if self.meta_gradient == "exact":
            rows = []
            for i in range(f_tr.numel()):
                g_i = torch.autograd.grad(f_tr[i], params, retain_graph=True, allow_unused=True)  # ∇f_i^tr(θ)
                rows.append(sum((gi.double() * di.double()).sum() for gi, di in zip(g_i, d) if gi is not None))
            return torch.stack([torch.as_tensor(r, dtype=torch.float64) for r in rows])  # (K,)
        eps = self.fd_radius / norm  # ε = 0.01/‖d‖
        with torch.no_grad():
            plus = [p.detach() + eps.to(p) * di for p, di in zip(params, d)]  # θ+ = θ + ε d
            minus = [p.detach() - eps.to(p) * di for p, di in zip(params, d)]  # θ− = θ − ε d
            f_plus = self._check(train_losses_at(plus), "training").double()  # ∇_λ Σ λ_i f_i^tr(θ+) = f^tr(θ+)
            f_minus = self._check(train_losses_at(minus), "training").double()
        return (f_plus - f_minus) / (2 * eps)  # (K,) ≈ ⟨∇f_i^tr(θ), d⟩


__all__ = ["AutoLambda", "META_GRADIENTS"]
