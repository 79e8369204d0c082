r"""DWA — Dynamic Weight Average: per-epoch loss weights from the rate at which each loss falls.

Paper: S. Liu, E. Johns, A. J. Davison, "End-To-End Multi-Task Learning With Attention", CVPR 2019
(arXiv 1803.10704), Sec. 3.3 (DWA is proposed there together with MTAN). Official code:
lorenmt/mtan ``im2im_pred/utils.py`` (``multi_task_trainer``, ``--weight dwa``, ``--temp 2.0``);
re-implementation: LibMTL ``weighting/DWA.py`` (``T = 2.0`` in ``config.py``, the epoch averages in
``trainer.py``'s ``train_loss_buffer``).

Update rule:
    Eq. 1 of the paper. At epoch :math:`e` (0-based) every step minimises the weighted sum of the
    K task losses :math:`f_k`, with weights fixed for the whole epoch (no gradient flows through
    them) from the rate :math:`r_k` at which each loss fell over the two previous epochs, a softmax
    at temperature :math:`T` scaled to sum to K:

    .. math::

        L = \sum_{k=1}^{K} w_k(e)\, f_k, \qquad
        w_k(e) = \frac{K \exp\big(r_k(e-1)/T\big)}{\sum_{i=1}^{K} \exp\big(r_i(e-1)/T\big)}, \qquad
        r_k(e-1) = \frac{\bar L_k(e-1)}{\bar L_k(e-2)} \quad (e \ge 2)

    and :math:`w_k(0) = w_k(1) = 1`. Here :math:`\bar L_k(e)` is the average of task k's training
    loss over the steps of epoch :math:`e` (official code: ``avg_cost[index, :] += cost / train_batch``).
    Hence the weights sum to K exactly, :math:`w_k` rises with :math:`r_k` (the task whose loss falls
    slowest gets the most weight), and :math:`T \to \infty` gives equal weights 1. An infinite ratio
    takes its limit: the tasks with :math:`r_k = \infty` share the weight K equally (D2).

How the hooks carry it: ``observe(losses, step)`` adds each step's losses to the running sum of the
current epoch; ``on_epoch_end(epoch)`` closes the epoch (L̄ = sum / number of steps), keeps the last two
averages and fixes the weights of the next epoch; ``weights`` returns them. The runner and
:func:`reference_impls.core.hooks.train_step`/``end_epoch`` drive these hooks; on the full-batch point
problems the runner calls ``on_epoch_end`` after every step, so there an epoch is a step and
:math:`r_k(t-1) = f_k(t-1) / f_k(t-2)`.

Hyperparameters (defaults and source):
    temperature: T = 2 (paper Sec. 3.3 "T = 2"; mtan ``--temp 2.0``; LibMTL ``--T 2.0``). Must be > 0.
    num_tasks: K, or None (default) to take K from the first losses seen.

Degenerate inputs: the ratios need positive epoch averages. ``observe`` raises a NonFiniteError for a
non-finite loss and a ValueError for a negative one; ``on_epoch_end`` raises a ValueError when a ratio
would divide by a zero epoch average (a task whose loss averaged exactly 0 over the epoch before, e.g.
DTLZ2's objectives on the box boundary) or when no step was observed in the epoch; each error names ``dwa``,
the task and the epoch. Zero batch losses, and a zero average in the last epoch, are fine. Ratios that overflow
(e.g. 1e300/1e-300 = inf) give those tasks the whole weight K, shared equally (the limit of the
softmax). K = 1 gives w = 1.

Deviations:
    D1. Errors instead of NaN/inf weights for non-positive or non-finite losses, or an epoch without steps.
    D2. Overflowing ratios are resolved by their limit (above); the official code would produce NaN.
    D3. The weights are a function of the hooks, so they depend on the caller driving ``observe`` and
        ``on_epoch_end``; the official code computes them inside its own training loop. nash-mtl's
        ``DynamicWeightAverage`` differs from the paper (a sliding window of 25 iterations instead of
        epochs, and the mean Σ w f / K instead of the sum); that variant is not offered here.

Usage (a loop over epochs and batches; ``f1``, ``f2`` are the batch losses)::

    method = DWA()                                # T = 2
    for epoch in range(epochs):
        for step, batch in ...:
            losses = torch.stack([f1, f2])
            method.objective(losses, step).backward(); optimiser.step()   # Σ_k w_k(epoch) f_k
            method.observe(losses.detach(), step)
        method.on_epoch_end(epoch)
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.loss_weighting import LossWeighting, StartBatch
from reference_impls.loss_balancing.ew import check_losses


class DWA(LossWeighting):
    """w(e) = K softmax(r(e−1)/T), r_k(e−1) = L̄_k(e−1)/L̄_k(e−2) on epoch-averaged losses; 𝟙 in epochs 0 and 1."""

    name: ClassVar[str] = "dwa"
    stateful: ClassVar[bool] = True

    def __init__(self, temperature: float = 2.0, num_tasks: int | None = None) -> None:
        if not (math.isfinite(float(temperature)) and float(temperature) > 0):
            raise ValueError(f"dwa: temperature must be a positive number, got {temperature}")
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"dwa: num_tasks must be >= 1, got {num_tasks}")
        self.temperature = float(temperature)
        self.num_tasks = None if num_tasks is None else int(num_tasks)
        self.reset()

    def reset(self) -> None:
        self._sum: Tensor | None = None  # (K,) float64: Σ of the losses observed in the current epoch
        self._count = 0  # steps observed in the current epoch
        self.epoch_averages: list[Tensor] = []  # L̄(e) (K,) float64 of the last two closed epochs, oldest first
        self.epochs_closed = 0
        self._weights: Tensor | None = None  # (K,) float64 weights of the current epoch; None = 𝟙

    def _check(self, losses: Tensor) -> Tensor:
        f = check_losses("dwa", losses, self.num_tasks)  # (K,)
        if self.num_tasks is None:
            self.num_tasks = f.numel()
        return f

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses)  # (K,)
        if self._weights is None:
            return torch.ones_like(f.detach())  # w = 𝟙 in the first two epochs
        return self._weights.to(f)

    def observe(self, losses: Tensor, step: int) -> None:
        f = self._check(losses).detach().to(dtype=torch.float64, device="cpu")  # (K,)
        negative = f < 0  # (K,)
        if bool(negative.any()):
            i = int(negative.nonzero()[0, 0])
            raise ValueError(
                f"dwa: the loss of task {i} is {float(f[i])} (epoch {self.epochs_closed}): DWA takes ratios of "
                "epoch-averaged losses and needs non-negative losses; shift the loss by a lower bound"
            )
        self._sum = f.clone() if self._sum is None else self._sum + f  # Σ_steps f
        self._count += 1

    def on_epoch_end(self, epoch: int) -> None:
        if self._count == 0 or self._sum is None:
            raise ValueError(f"dwa: on_epoch_end({epoch}) with no step observed in the epoch: call observe(losses, step) after every step")
        average = self._sum / self._count  # L̄(e) = (1/steps) Σ_steps f, (K,)
        self.epoch_averages = [*self.epoch_averages, average][-2:]  # keep L̄(e−1), L̄(e)
        self.epochs_closed += 1
        self._sum, self._count = None, 0
        if len(self.epoch_averages) == 2:
            previous, last = self.epoch_averages
            zero = previous == 0  # (K,)
            if bool(zero.any()):
                i = int(zero.nonzero()[0, 0])
                raise ValueError(
                    f"dwa: the epoch-averaged loss of task {i} was 0 in epoch {epoch - 1}: the ratio "
                    f"L̄(epoch {epoch})/L̄(epoch {epoch - 1}) of DWA divides by it; shift the loss by a lower bound"
                )
            self._weights = self.weights_from_ratios(last / previous)  # r = L̄(e)/L̄(e−1) for epoch e+1

    def weights_from_ratios(self, r: Tensor) -> Tensor:
        """K softmax(r/T) (K,), float64, for ratios r (K,) in [0, inf]; infinite ratios share the weight K."""
        r = r.to(torch.float64)  # (K,)
        K = r.numel()
        if bool(torch.isinf(r).any()):
            top = torch.isinf(r).to(torch.float64)  # (K,): the limit of the softmax as those r → ∞
            return K * top / top.sum()
        return K * torch.softmax(r / self.temperature, dim=0)  # w = K exp(r/T) / Σ exp(r/T)

    @classmethod
    def start_batch(cls, methods, optimizer=None) -> "DWABatch | None":
        """The runner's speed path (:class:`DWABatch`) for fresh instances with equal hyperparameters; None otherwise."""
        return DWABatch(methods) if DWABatch.applies(methods) else None


class DWABatch(StartBatch):
    """B fresh :class:`DWA` instances stepped as one (B, K) computation by the runner (see ``StartBatch``).

    Per start, the arithmetic of ``weights``, ``observe`` and ``on_epoch_end`` in the same order (float64
    sums and averages, L̄(e)/L̄(e−1), K·softmax(r/T) row by row: torch's softmax over the last dimension
    treats each row on its own); a row with an infinite ratio goes through ``weights_from_ratios`` itself.
    """

    method_class = DWA
    replicates = ("weights", "objective", "observe", "on_epoch_end", "weights_from_ratios", "_check")

    @classmethod
    def applies(cls, methods) -> bool:
        if not super().applies(methods):
            return False
        fresh = all(m._sum is None and m._count == 0 and not m.epoch_averages and m._weights is None for m in methods)
        return fresh and all((m.temperature, m.num_tasks) == (methods[0].temperature, methods[0].num_tasks) for m in methods)

    def __init__(self, methods) -> None:
        self.methods = list(methods)
        self.temperature = self.methods[0].temperature
        self.sum: Tensor | None = None  # (B, K) float64 Σ of this epoch's losses
        self.count = 0
        self.averages: list[Tensor] = []  # L̄ of the last two closed epochs, (B, K) each, oldest first
        self.epochs_closed = 0
        self.W: Tensor | None = None  # (B, K) float64 weights of the current epoch; None = 𝟙
        self.K: int | None = None  # the number of tasks, once seen

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        f = F.detach()  # (B, K)
        K = self.methods[0].num_tasks
        values = f.reshape(-1).tolist()  # B·K Python floats: min and sum on them beat two torch reductions
        if (K is not None and F.shape[1] != K) or not (min(values) >= 0 and math.isfinite(sum(values))):
            for m, f_b in zip(self.methods, F):
                m._check(f_b)  # weights(): wrong K or non-finite
                m.observe(f_b, t)  # the negative-loss error
        W = torch.ones_like(f) if self.W is None else self.W.to(f)  # (B, K) weights of this epoch
        f64 = f if f.dtype == torch.float64 and f.device.type == "cpu" else f.to(dtype=torch.float64, device="cpu")  # observe: Σ_steps f
        self.sum = f64.clone() if self.sum is None else self.sum + f64
        self.count += 1
        self.K = F.shape[1]
        return W.to(J)

    def after_step(self, t: int, F_new: Tensor) -> None:  # on_epoch_end(t): full batch, an epoch is a step
        epoch = t
        average = self.sum / self.count  # L̄(e), (B, K)
        self.averages = [*self.averages, average][-2:]
        self.epochs_closed += 1
        self.sum, self.count = None, 0
        if len(self.averages) == 2:
            previous, last = self.averages
            if not previous.numpy().all():  # a zero average (the instance's division-by-zero error)
                b = int((previous == 0).any(1).nonzero()[0, 0])
                self._sync(b)
                self.methods[b].epochs_closed -= 1  # replay the instance's own closing of this epoch
                self.methods[b].epoch_averages = [previous[b], last[b]][:1]
                self.methods[b]._sum, self.methods[b]._count = last[b].clone(), 1
                self.methods[b].on_epoch_end(epoch)  # raises its division-by-zero error
            r = last / previous  # r = L̄(e)/L̄(e−1), float64, (B, K)
            if not math.isfinite(sum(r.reshape(-1).tolist())):  # an infinite ratio (the averages are finite and >= 0)
                self.W = torch.stack([self.methods[0].weights_from_ratios(r_b) for r_b in r])
            else:
                self.W = r.shape[1] * torch.softmax(r / self.temperature, dim=-1)  # w = K exp(r/T) / Σ exp(r/T), (B, K)

    def _sync(self, b: int) -> None:
        m = self.methods[b]
        m._sum = None if self.sum is None else self.sum[b].clone()
        m._count = self.count
        m.epoch_averages = [a[b].clone() for a in self.averages]
        m.epochs_closed = self.epochs_closed
        m._weights = None if self.W is None else self.W[b].clone()

    def finish(self) -> None:
        for b, m in enumerate(self.methods):
            self._sync(b)
            if m.num_tasks is None and self.K is not None:
                m.num_tasks = self.K  # fixed by the first call, as weights() does


__all__ = ["DWA", "DWABatch"]
