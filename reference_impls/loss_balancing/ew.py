r"""EW — equal weighting: the plain sum (or mean) of the task losses, the baseline of every comparison.

Paper: there is no paper of its own; the multi-task literature reports it as "EW", "Equal Weighting" or
"linear scalarisation with equal weights". It is registered with the RLW paper, B. Lin, F. Ye, Y. Zhang,
I. W. Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning",
TMLR 2022 (arXiv 2111.10603), which is built around the comparison of random weights with EW and
reports EW as the reference row of every table. Reference code: LibMTL ``weighting/EW.py``.

Update rule:
    The objective is the plain sum of the K task losses :math:`f_i` (``reduction="sum"``, the default:
    LibMTL ``EW``, nash-mtl's ``LinearScalarization``; weights all 1) or their mean
    (``reduction="mean"``: weights 1/K on the simplex, D2):

    .. math::

        L = \sum_{i=1}^{K} f_i \qquad \text{or} \qquad L = \frac{1}{K} \sum_{i=1}^{K} f_i

    so the gradient with respect to the model is :math:`\sum_i \nabla f_i` (or its K-th part): one
    backward pass, no state.

Interface: a :class:`~reference_impls.core.loss_weighting.LossWeighting`: ``weights(losses, step)``
returns 𝟙 or 𝟙/K, ``objective(losses, step)`` the sum or the mean. No hooks.

Hyperparameters (defaults and source):
    reduction: "sum" (LibMTL ``EW.backward`` multiplies by ``ones`` and sums; its docstring's "1/T"
        does not match its code) or "mean".
    num_tasks: K, or None (default) to take K from the first losses seen; a later call with another K
        raises.

Degenerate inputs: EW takes neither logs nor ratios, so any finite losses work, negative and zero
included, and K = 1 gives :math:`L = f_1`. Non-finite losses raise a
:class:`~reference_impls.core.aggregator.NonFiniteError` (a ValueError) naming the task, instead of
returning a NaN objective.

Deviations:
    D1. Non-finite losses raise (LibMTL and nash-mtl back-propagate the NaN).
    D2. ``reduction="mean"`` is an option; LibMTL's EW is the sum. The two differ by the constant
        factor 1/K, i.e. a learning-rate change for SGD and nothing at all for Adam (up to its ε).

Usage::

    method = EW()                              # or EW(reduction="mean")
    loss = method.objective(torch.stack([f1, f2]), step)  # f1 + f2
    loss.backward(); optimiser.step()
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import LossWeighting, StartBatch

_REDUCTIONS = ("sum", "mean")


def check_losses(name: str, losses: Tensor, num_tasks: int | None) -> Tensor:
    """The losses as a flat (K,) tensor; ValueError naming ``name`` on a wrong K or a non-finite loss.

    Shared by the loss weightings of this package (EW, UW, DWA, RLW): every error names the method
    and the task index.
    """
    if not isinstance(losses, Tensor):
        losses = torch.stack([torch.as_tensor(f) for f in losses])
    losses = losses.reshape(-1)  # (K,)
    if losses.numel() == 0:
        raise ValueError(f"{name}: got no losses (K = 0)")
    if num_tasks is not None and losses.numel() != num_tasks:
        raise ValueError(f"{name} was built for {num_tasks} tasks but got {losses.numel()} losses (build it with num_tasks={losses.numel()})")
    if not math.isfinite(float(losses.detach().sum())):  # one reduction on the happy path (a nan or inf makes the sum non-finite)
        bad = ~torch.isfinite(losses.detach())  # (K,)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise NonFiniteError(f"{name}: the loss of task {i} is {float(losses.detach()[i])} (not finite)")
    return losses


class EW(LossWeighting):
    """Equal weighting: L = Σ_i f_i (or the mean)."""

    name: ClassVar[str] = "ew"

    def __init__(self, reduction: str = "sum", num_tasks: int | None = None) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"ew: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"ew: num_tasks must be >= 1, got {num_tasks}")
        self.reduction = reduction
        self.num_tasks = None if num_tasks is None else int(num_tasks)

    def _check(self, losses: Tensor) -> Tensor:
        f = check_losses("ew", losses, self.num_tasks)  # (K,)
        if self.num_tasks is None:
            self.num_tasks = f.numel()  # fixed from the first call on
        return f

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses)  # (K,)
        w = torch.ones_like(f.detach())  # w = 𝟙 (sum)
        return w / f.numel() if self.reduction == "mean" else w  # w = 𝟙/K (mean)

    def objective(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses)  # (K,)
        return f.sum() if self.reduction == "sum" else f.mean()  # Σ_i f_i or (1/K) Σ_i f_i

    def reset(self) -> None:
        """EW has no state (K, once fixed, stays)."""

    @classmethod
    def start_batch(cls, methods, optimizer=None) -> "EWBatch | None":
        """The runner's speed path (:class:`EWBatch`) when every start has the same reduction; None otherwise."""
        return EWBatch(methods) if EWBatch.applies(methods) else None


class EWBatch(StartBatch):
    """B instances of :class:`EW` for the runner (see ``StartBatch``): W = 𝟙 (or 𝟙/K), the losses checked once per step."""

    method_class = EW
    replicates = ("weights", "objective", "_check", "observe", "on_epoch_end")

    @classmethod
    def applies(cls, methods) -> bool:
        return super().applies(methods) and all((m.reduction, m.num_tasks) == (methods[0].reduction, methods[0].num_tasks) for m in methods)

    def __init__(self, methods) -> None:
        self.methods = list(methods)

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        f = F.detach()  # (B, K)
        K = self.methods[0].num_tasks
        if K is None or F.shape[1] != K or not math.isfinite(sum(f.reshape(-1).tolist())):
            for m, f_b in zip(self.methods, F):
                m._check(f_b)  # the per-start error; fixes K at the first call
        W = torch.ones_like(f)  # w = 𝟙 (sum)
        return (W / F.shape[1] if self.methods[0].reduction == "mean" else W).to(J)  # w = 𝟙/K (mean)


__all__ = ["EW", "EWBatch", "check_losses"]
