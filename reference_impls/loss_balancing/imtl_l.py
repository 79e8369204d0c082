r"""IMTL-L — the loss part of Impartial Multi-Task Learning (learned loss scales).

Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021 (openreview.net/forum?id=IMPnRXEWpvr). No official code; reference
re-implementation: LibMTL ``weighting/IMTL.py`` (``loss_scale`` initialised to 0).

Update rule:
    The paper's loss balance (IMTL-L). Each task loss :math:`f_i` is replaced by a scaled loss with
    one learnable log-scale :math:`s_i` per task (:math:`s = 0` at start), and the model
    :math:`\theta` and :math:`s` are trained jointly, by the same optimiser, on the sum:

    .. math::

        L(\theta, s) = \sum_{i=1}^{K} \left( e^{s_i} f_i(\theta) - s_i \right), \qquad
        \nabla_\theta L = \sum_{i=1}^{K} e^{s_i}\, \nabla f_i(\theta), \qquad
        \frac{\partial L}{\partial s_i} = e^{s_i} f_i - 1

    For fixed :math:`\theta` the last derivative vanishes exactly at :math:`s_i = -\log f_i`, where
    every scaled loss :math:`e^{s_i} f_i` equals 1 ("impartial": equal scaled losses), and the second
    derivative :math:`e^{s_i} f_i > 0` makes it the unique minimum. There the model's gradient is
    :math:`\sum_i \nabla f_i / f_i`, unchanged when a loss is rescaled by a constant.

Interface: a ``torch.nn.Module`` and a :class:`~reference_impls.core.loss_weighting.LossWeighting`:
``forward(losses)`` / ``objective(losses, step)`` return the scalar L above; ``weights(losses, step)``
returns :math:`e^{s}` (the gradient weights); ``scales`` is :math:`e^{s}`; the parameter s is optimised
with the model (``parameters()``); ``reset()`` sets s back to 0.

Hyperparameters: ``num_tasks`` (K, default 2). None else (the paper and LibMTL initialise s = 0).

Learnable parameters: s must be optimised with the model (``parameters()``; the runner and
:func:`reference_impls.core.hooks.train_step` do it, and ``train_step`` raises when the optimiser
lacks them). If s received a non-zero gradient but is unchanged at the next call — s was left out of
the optimiser, so IMTL-L silently reduces to the plain sum of the losses — ``forward`` warns once (``UnoptimisedParameterWarning``;
ignore it when accumulating gradients over several calls before a step).

Degenerate inputs: the losses must be positive — for :math:`f_i \le 0` the objective is unbounded
below in :math:`s_i` (:math:`e^{s_i} f_i - s_i \to -\infty`), so a non-positive or non-finite loss raises a clear error.

Deviations:
    D1. Only the loss part: the paper's "hybrid" IMTL (IMTL-L scales on the losses plus IMTL-G
        weights on the shared gradients, as LibMTL ``IMTL`` does in one step) is the combination of
        this module with ``reference_impls.gradient_weighting.imtl_g.IMTLG``.
    D2. Non-positive losses raise a ValueError instead of silently diverging.
    D3. The warning about scales left out of the optimiser is ours (LibMTL registers ``loss_scale``
        with the model's optimiser and has no such check).

Usage (``model`` and the task losses ``f1``, ``f2`` are yours)::

    method = IMTLL(num_tasks=2)
    optimiser = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.1)
    loss = method(torch.stack([f1, f2]))  # Σ e^{s_i} f_i − s_i
    loss.backward()
    optimiser.step()
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import LossWeighting, StartBatch


class UnoptimisedParameterWarning(UserWarning):
    """A learnable parameter of a method received gradients but is never stepped by an optimiser."""


class IMTLL(torch.nn.Module, LossWeighting):
    """Σ_i e^{s_i} f_i − s_i with learnable log-scales s (one per task, initialised to 0)."""

    name = "imtl-l"
    stateful = True

    def __init__(self, num_tasks: int = 2) -> None:
        torch.nn.Module.__init__(self)
        if int(num_tasks) < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = int(num_tasks)
        self.s = torch.nn.Parameter(torch.zeros(self.num_tasks))  # (K,): log-scales, s = 0 at start
        self._s_at_last_call: Tensor | None = None  # s when forward last ran (to detect an unoptimised s)
        self._warned = False

    @property
    def scales(self) -> Tensor:
        """e^{s} (K,), detached: the current loss scales."""
        return self.s.detach().exp()

    def _check(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        if not isinstance(losses, Tensor):
            losses = torch.stack([torch.as_tensor(f) for f in losses])
        losses = losses.reshape(-1)
        if losses.numel() != self.num_tasks:
            raise ValueError(f"IMTL-L was built for {self.num_tasks} tasks but got {losses.numel()} losses")
        if not torch.isfinite(losses.detach()).all():
            raise NonFiniteError("the losses contain NaN or infinite values")
        if bool((losses.detach() <= 0).any()):
            raise ValueError("IMTL-L needs positive losses: for f_i <= 0, e^{s_i} f_i - s_i is unbounded below in s_i")
        return losses

    def _warn_if_not_optimised(self) -> None:
        g, last = self.s.grad, self._s_at_last_call
        if not self._warned and last is not None and g is not None and bool((g != 0).any()) and torch.equal(self.s.detach(), last):
            self._warned = True
            warnings.warn(
                "imtl-l: the scales s got a gradient but did not change since the last call, so they are not being "
                "optimised and IMTL-L reduces to the plain sum of the losses; build the optimiser with "
                "[*model.parameters(), *method.parameters()] (ignore this when accumulating gradients over several calls)",
                UnoptimisedParameterWarning,
                stacklevel=3,
            )
        self._s_at_last_call = self.s.detach().clone()

    def forward(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        f = self._check(losses)  # (K,)
        self._warn_if_not_optimised()
        s = self.s.to(f)  # (K,)
        return (torch.exp(s) * f - s).sum()  # Σ_i e^{s_i} f_i − s_i

    def objective(self, losses: Tensor, step: int = 0) -> Tensor:
        return self.forward(losses)

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        self._check(losses)
        return self.scales.to(losses)  # ∂/∂f_i of the objective: e^{s_i}

    def parameters(self, recurse: bool = True) -> list[Tensor]:  # type: ignore[override]
        return [self.s]

    def reset(self) -> None:
        with torch.no_grad():
            self.s.zero_()
        self._s_at_last_call = None
        self._warned = False

    @classmethod
    def start_batch(cls, methods: Sequence["IMTLL"], optimizer) -> "IMTLLBatch | None":
        """The runner's speed path: the B starts' s as one (B, K) tensor (:class:`IMTLLBatch`); None if it does not apply."""
        return IMTLLBatch(methods, optimizer) if IMTLLBatch.applies(methods) else None


class IMTLLBatch(StartBatch):
    """B instances of :class:`IMTLL` stepped as one (B, K) computation by the runner (see ``StartBatch``).

    Per start, the arithmetic of ``weights`` and of autograd through ``forward``, in the same order:
    w = e^{s} computed in s's dtype (``scales``), then cast to the losses' dtype; ∂L/∂s = f ⊙ e^{s} − 1
    with e^{s} in the losses' dtype (autograd: f times the exp's result, plus −1 from −s), rounded to s's dtype.
    """

    method_class = IMTLL
    replicates = ("weights", "objective", "forward", "_check", "_warn_if_not_optimised", "observe", "on_epoch_end", "parameters", "scales")

    def __init__(self, methods: Sequence[IMTLL], optimizer) -> None:
        self.methods = list(methods)
        self.S = torch.stack([m.s.detach() for m in self.methods]).clone()  # (B, K) s of every start, s's dtype
        self.optimizer = optimizer(self.S)
        self.S_before: Tensor | None = None  # s before the last step (the instances' _s_at_last_call)

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        f = F.detach()  # (B, K)
        values = f.reshape(-1).tolist()  # B·K Python floats: min and sum on them beat two torch reductions
        if F.shape[1] != self.S.shape[1] or not (min(values) > 0 and math.isfinite(sum(values))):
            for m, f_b in zip(self.methods, F):
                m._check(f_b)  # the per-start error (non-positive, non-finite, wrong K)
        W = self.S.exp().to(f)  # w = e^{s} (``scales``, in s's dtype), (B, K)
        if self.S_before is None:
            self.S_before = self.S.clone()
        else:
            self.S_before.copy_(self.S)
        self.S.grad = (f * torch.exp(self.S.to(f)) - 1).to(self.S.dtype)  # ∂L/∂s = f ⊙ e^{s} − 1, (B, K)
        self.optimizer.step()
        return W.to(J)

    def finish(self) -> None:
        for b, m in enumerate(self.methods):
            with torch.no_grad():
                m.s.copy_(self.S[b])
            if self.S.grad is not None:
                m.s.grad = self.S.grad[b].clone()
            if self.S_before is not None:
                m._s_at_last_call = self.S_before[b].clone()
