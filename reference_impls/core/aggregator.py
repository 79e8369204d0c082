"""Interfaces shared by every single-solution method.

Notation (used by every module): K tasks with losses f_1..f_K, shared parameters θ_sh with n
entries, the Jacobian J ∈ R^{K×n} whose row i is g_i = ∇_{θ_sh} f_i, the Gramian M = J Jᵀ ∈ R^{K×K},
and the update direction d ∈ R^n (the optimiser then steps θ_sh ← θ_sh − η d).

Three levels, from the most general to the most structured:

* :class:`Aggregator` — ``d = A(J)``: any map from the Jacobian to a direction (PCGrad, GradVac,
  GradDrop, DB-MTL's normalisation).
* :class:`Weighting` — ``d = Jᵀ w(J)``: the direction is a weighted sum of task gradients and
  ``weights(J)`` exposes w (GradNorm, FAMO, IMTL-G, ...).
* :class:`GramianWeighting` — ``w = w(M)``: the weights depend on J only through M = J Jᵀ (MGDA,
  CAGrad, Nash-MTL, FairGrad, UPGrad, Aligned-MTL, SDMGrad, ...). These are the cheapest: one K×n
  by n×K product, then a K×K problem.

Methods that also need the loss values (FAMO, DB-MTL, GradNorm) set ``needs_losses = True`` and
receive them as the second argument. Stateful methods (EMA of gradients, warm starts, learned
weights) set ``stateful = True`` and implement :meth:`Aggregator.reset`.

Every method is usable in a training loop through :meth:`Aggregator.backward`, which computes J
with autograd (K backward passes), aggregates it and writes ``.grad`` of the shared parameters;
task-specific parameters get the plain sum of their task gradients. With ``representation=Z`` a
:class:`Weighting` computes its weights from the Jacobian with respect to the shared representation
Z instead (the "-UB" variants of MGDA and Aligned-MTL) and back-propagates Σ w_i f_i once.

Loss-level methods (uncertainty weighting, DWA, STCH, ...) and set/Pareto-model methods have their
own interfaces in :mod:`reference_impls.core.loss_weighting` and :mod:`reference_impls.core.sets`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import Tensor


class NonFiniteError(ValueError):
    """Raised when a Jacobian, Gramian or loss vector contains NaN or infinity."""


def check_jacobian(J: Tensor, *, finite: bool = True) -> Tensor:
    """Validate a Jacobian: a 2-D floating tensor with at least one row, all entries finite.

    ``finite=False`` skips the finiteness pass over the K×n entries; Gramian-based methods use it
    and check the K×K Gramian instead, which is non-finite whenever J is (see :func:`gramian`).
    """
    if not isinstance(J, Tensor):
        raise TypeError(f"expected a torch.Tensor Jacobian, got {type(J).__name__}")
    if J.ndim != 2:
        raise ValueError(f"expected a Jacobian of shape (K, n), got shape {tuple(J.shape)}")
    if J.shape[0] < 1:
        raise ValueError("the Jacobian has no rows: at least one task is needed")
    if not J.is_floating_point():
        raise TypeError(f"expected a floating-point Jacobian, got dtype {J.dtype}")
    if finite and not _all_finite(J):
        raise NonFiniteError("the Jacobian contains NaN or infinite entries")
    return J


def _all_finite(x: Tensor) -> bool:
    # One reduction (no n-sized boolean temporary): a NaN or ±inf entry makes the sum non-finite.
    # A finite sum proves finiteness; a non-finite one may be overflow, so confirm entry-wise.
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_gramian(M: Tensor) -> Tensor:
    """Validate a Gramian: square (K, K), floating, finite."""
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 1:
        raise ValueError(f"expected a Gramian of shape (K, K), got shape {tuple(M.shape)}")
    if not M.is_floating_point():
        raise TypeError(f"expected a floating-point Gramian, got dtype {M.dtype}")
    if not torch.isfinite(M).all():
        raise NonFiniteError("the Gramian contains NaN or infinite entries")
    return M


def check_losses(losses: Tensor | Sequence[Tensor] | None, K: int, *, required: bool) -> Tensor | None:
    """Turn the losses into a detached (K,) tensor, or raise a clear error."""
    if losses is None:
        if required:
            raise ValueError("this method needs the task losses: call it as method(J, losses)")
        return None
    if not isinstance(losses, Tensor):
        losses = torch.stack([torch.as_tensor(f) for f in losses])
    losses = losses.detach().reshape(-1)
    if losses.numel() != K:
        raise ValueError(f"got {losses.numel()} losses for a Jacobian with {K} rows")
    if not torch.isfinite(losses).all():
        raise NonFiniteError("the losses contain NaN or infinite values")
    return losses


def gramian(J: Tensor) -> Tensor:
    """M = J Jᵀ, the (K, K) matrix of inner products ⟨g_i, g_j⟩; raises if J or M is not finite.

    Any NaN or infinite entry of J makes a diagonal entry M_ii non-finite, so checking M (K² numbers)
    replaces a pass over J (K·n numbers). A finite J whose Gramian overflows is reported as such.
    """
    M = J @ J.T  # (K, K)
    if not bool(torch.isfinite(M).all()):
        if not _all_finite(J):
            raise NonFiniteError("the Jacobian contains NaN or infinite entries")
        raise NonFiniteError(f"the Gramian J Jᵀ overflows {J.dtype}: rescale the losses or use float64")
    return M


class Aggregator:
    """A map from the Jacobian J (K, n) to an update direction d (n,)."""

    name: ClassVar[str] = ""  # registry id
    needs_losses: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    # Whether __call__ scans all K·n entries of J for NaN/inf. Gram-based methods check the K×K
    # Gramian instead; a method may also check its own reduced quantities (and must then say so).
    scans_jacobian: ClassVar[bool] = True

    def __call__(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        J = check_jacobian(J, finite=self.scans_jacobian)
        return self.aggregate(J, check_losses(losses, J.shape[0], required=self.needs_losses))

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state (EMAs, warm starts, learned weights). Stateless methods do nothing."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------------------------------
    # Drop-in use in a training loop
    # ------------------------------------------------------------------------------------------

    def backward(
        self,
        losses: Sequence[Tensor] | Tensor,
        shared_params: Iterable[Tensor],
        task_params: Iterable[Tensor] = (),
        representation: Tensor | None = None,
    ) -> Tensor:
        """Compute the task gradients with autograd, aggregate them, and accumulate into ``.grad``.

        Args:
            losses: K scalar losses (a sequence or a (K,) tensor) built from the same graph.
            shared_params: parameters every task depends on; their ``.grad`` receives d.
            task_params: task-specific parameters (heads); they receive Σ_i ∇f_i, i.e. each head
                its own task's gradient.
            representation: optional shared representation Z (output of the shared encoder).
                When given, the weights are computed from ∂f_i/∂Z (the "-UB" variants) and
                Σ_i w_i f_i is back-propagated once; only :class:`Weighting` methods support it.

        Returns:
            The direction d over the shared parameters (flattened), or, with ``representation``,
            the weights w.
        """
        losses = _as_loss_list(losses)
        shared_params = [p for p in shared_params]
        task_params = [p for p in task_params]
        if representation is not None:
            return _backward_through_representation(self, losses, shared_params, task_params, representation)
        J, task_grads = jacobian(losses, shared_params, task_params)  # (K, n)
        values = torch.stack([f.detach() for f in losses])  # (K,)
        d = self(J, values if self.needs_losses else None)  # (n,)
        write_flat_grad(shared_params, d)
        for p, g in zip(task_params, task_grads):
            _accumulate(p, g)
        return d


class Weighting(Aggregator):
    """An aggregator of the form d = Jᵀ w(J): ``weights(J)`` exposes the task weights w (K,)."""

    def weights(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        J = check_jacobian(J, finite=self.scans_jacobian)
        return self.compute_weights(J, check_losses(losses, J.shape[0], required=self.needs_losses))

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        w = self.compute_weights(J, losses)  # (K,)
        return w @ J  # d = Jᵀ w, (n,)


class GramianWeighting(Weighting):
    """A weighting whose weights depend on J only through the Gramian M = J Jᵀ."""

    scans_jacobian: ClassVar[bool] = False  # gramian() checks M, which is non-finite whenever J is

    def weights_from_gramian(self, M: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        M = check_gramian(M)
        return self.compute_weights_from_gramian(M, check_losses(losses, M.shape[0], required=self.needs_losses))

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        return self.compute_weights_from_gramian(gramian(J), losses)


# ----------------------------------------------------------------------------------------------
# Autograd helpers
# ----------------------------------------------------------------------------------------------


def _as_loss_list(losses: Sequence[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(losses, Tensor):
        losses = list(losses.reshape(-1).unbind())
    losses = list(losses)
    if not losses:
        raise ValueError("no losses given: at least one task is needed")
    for f in losses:
        if f.numel() != 1:
            raise ValueError(f"each loss must be a scalar, got shape {tuple(f.shape)}")
    return losses


def jacobian(
    losses: Sequence[Tensor],
    shared_params: Sequence[Tensor],
    task_params: Sequence[Tensor] = (),
    keep_graph: bool = False,
) -> tuple[Tensor, list[Tensor]]:
    """Rows g_i = ∇_{θ_sh} f_i (flattened, concatenated over ``shared_params``) and Σ_i ∇ f_i over ``task_params``.

    One backward pass per task; the graph is kept until the last one (or after it, with
    ``keep_graph``). Parameters a loss does not depend on get zero gradients.
    """
    if not shared_params:
        raise ValueError("no shared parameters given")
    params = list(shared_params) + list(task_params)
    rows: list[Tensor] = []
    task_grads: list[Tensor] = [torch.zeros_like(p) for p in task_params]
    for i, f in enumerate(losses):
        grads = torch.autograd.grad(f, params, retain_graph=keep_graph or i < len(losses) - 1, allow_unused=True)
        shared = [torch.zeros_like(p) if g is None else g for p, g in zip(shared_params, grads)]
        rows.append(torch.cat([g.reshape(-1) for g in shared]))
        for k, g in enumerate(grads[len(shared_params) :]):
            if g is not None:
                task_grads[k] += g
    return torch.stack(rows), task_grads  # (K, n)


def write_flat_grad(params: Sequence[Tensor], d: Tensor) -> None:
    """Split the flat direction d over ``params`` and accumulate it into their ``.grad``."""
    offset = 0
    for p in params:
        size = p.numel()
        _accumulate(p, d[offset : offset + size].view_as(p))
        offset += size
    if offset != d.numel():
        raise ValueError(f"direction has {d.numel()} entries but the parameters have {offset}")


def _accumulate(p: Tensor, g: Tensor) -> None:
    g = g.to(dtype=p.dtype)
    if p.grad is None:
        p.grad = g.detach().clone()
    else:
        p.grad.add_(g)


def _backward_through_representation(
    method: Aggregator,
    losses: list[Tensor],
    shared_params: list[Tensor],
    task_params: list[Tensor],
    Z: Tensor,
) -> Tensor:
    if not isinstance(method, Weighting):
        raise TypeError(f"{type(method).__name__} is not a weighting: it cannot use the representation (-UB) mode")
    J_Z, _ = jacobian(losses, [Z], keep_graph=True)  # (K, numel(Z)): ∂f_i/∂Z, the "upper bound" surrogate Jacobian
    values = torch.stack([f.detach() for f in losses])
    w = method.weights(J_Z, values if method.needs_losses else None).detach()  # (K,)
    shared_total = sum(wi * f for wi, f in zip(w, losses))  # Σ w_i f_i
    grads = torch.autograd.grad(shared_total, shared_params, retain_graph=bool(task_params), allow_unused=True)
    for p, g in zip(shared_params, grads):
        if g is not None:
            _accumulate(p, g)
    if task_params:
        head_grads = torch.autograd.grad(sum(losses), task_params, allow_unused=True)
        for p, g in zip(task_params, head_grads):
            if g is not None:
                _accumulate(p, g)
    return w
