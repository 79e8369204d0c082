r"""UW — uncertainty weighting: task losses weighed by learned homoscedastic uncertainties.

Paper: A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018 (arXiv 1705.07115). No official code from the paper; reference
re-implementations read: LibMTL ``weighting/UW.py``, AvivNavon/nash-mtl ``methods/weight_methods.py``
(class ``Uncertainty``, "Source: yaringal/multi-task-learning-example", the notebook of the paper's
second author) and lorenmt/mtan ``im2im_pred/utils.py`` + ``model_segnet_mtan.py`` (``logsigma``).

Update rule:
    The paper's objective (Sec. 3.2, Eq. 7 and the "in practice" paragraph): with a Gaussian
    likelihood a regression loss is divided by :math:`2\sigma^2`, with a softmax likelihood scaled by
    :math:`1/\sigma^2` a classification loss is divided by :math:`\sigma^2`, and each task adds
    :math:`\log \sigma`. The network learns one :math:`s_i = \log \sigma_i^2` per task (numerically
    stable, unconstrained; ``init`` = 0 at start, D2), so :math:`\log \sigma_i = s_i / 2`, and the model
    :math:`\theta` and :math:`s` are trained jointly, by the same optimiser, on

    .. math::

        L(\theta, s) = \sum_{i=1}^{K} \Big( c_i\, e^{-s_i} f_i(\theta) + \frac{s_i}{2} \Big), \qquad
        c_i = \tfrac{1}{2} \ \text{(regression)}, \quad c_i = 1 \ \text{(classification)}

    with :math:`c_i` per task from ``task_types`` (all regression by default, D1). The model's
    gradient is the weighted sum of the task gradients, and for :math:`\theta` frozen and
    :math:`f_i > 0` each :math:`s_i` has a unique minimiser (the second derivative
    :math:`c_i e^{-s_i} f_i` is positive):

    .. math::

        \nabla_\theta L = \sum_{i=1}^{K} c_i\, e^{-s_i}\, \nabla f_i(\theta), \qquad
        \frac{\partial L}{\partial s_i} = -c_i\, e^{-s_i} f_i + \frac{1}{2} = 0
        \iff s_i^\star = \log(2 c_i f_i)

    At :math:`s^\star` the weight :math:`c_i e^{-s_i^\star} = 1/(2 f_i)` for BOTH forms,
    :math:`L = \sum_i \big( 1/2 + \log(2 c_i f_i)/2 \big)`, and the model gradient
    :math:`\sum_i \nabla f_i / (2 f_i) = \tfrac{1}{2} \nabla \sum_i \log f_i` is unchanged when a loss is
    multiplied by a positive constant (facts used by the tests).

The single form of the code: LibMTL and nash-mtl use :math:`\tfrac{1}{2}(e^{-s} f + s)` for every
task, which is the regression form. The classification form is the regression form in a shifted
variable: with :math:`s' = s - \log 2`, :math:`e^{-s} f + s/2 = \tfrac{1}{2} e^{-s'} f + s'/2 + (\log 2)/2`.
The shift is constant, so gradient descent (and Adam, which is translation-invariant) on s from a start
:math:`s_0` follows exactly the regression form's path from :math:`s_0 - \log 2`, and the model sees the
same weights: the two forms differ only in the start of s, and their objectives by the constant
(log 2)/2 per classification task. ``task_types`` therefore matters for the initial weights and for
reading s as log σ², not for where s converges in weight terms.

Interface: a ``torch.nn.Module`` and a :class:`~reference_impls.core.loss_weighting.LossWeighting`:
``objective(losses, step)`` / ``forward(losses)`` return L above (differentiable in the losses and s);
``weights(losses, step)`` returns :math:`\partial L / \partial f = c \odot e^{-s}` (detached); ``sigma2`` is :math:`e^{s}`;
``stationary_log_variances(losses)`` is the closed form s* = log(2 c f); ``parameters()`` is [s];
``reset()`` puts s back to its initial value.

Hyperparameters (defaults and source):
    num_tasks: K (default 2, or len(task_types) when that is given).
    task_types: a sequence of "regression" / "classification" per task; default all "regression", the
        single form of LibMTL and nash-mtl (the paper's Eq. 7 mixes both).
    init: the initial s (default 0, i.e. σ² = 1). The paper gives no value. 0 is the choice of the
        second author's reference notebook (as ported by nash-mtl): it is the neutral σ = 1, under which
        the first step weighs the losses by the paper's bare factors (½ or 1). LibMTL and MTAN's
        ``logsigma`` use −0.5 (weights :math:`e^{0.5}/2 \approx 0.82`); pass ``init=-0.5`` to reproduce them. At a
        stationary point the init is forgotten (s* does not depend on it).

Learnable parameters: s must be optimised with the model (``parameters()``; the runner and
:func:`reference_impls.core.hooks.train_step` do it, and ``train_step`` raises when the optimiser lacks
them). If s got a non-zero gradient but did not change by the next call, ``forward`` warns once
(``UnoptimisedParameterWarning``, as IMTL-L does).

Degenerate inputs: the losses must be finite and positive. For :math:`f_i \le 0`,
:math:`c_i e^{-s_i} f_i + s_i/2` is unbounded below as :math:`s_i \to -\infty` (for :math:`f_i = 0` the weight
:math:`1/(2 f_i)` is infinite), so a non-positive loss raises
a ValueError and a non-finite one a NonFiniteError, each naming ``uw`` and the task index. Shift losses
that can be ≤ 0 (the runner does it with a problem's ``loss_lower_bound``). Huge and tiny positive losses
(1e-30 .. 1e30 in float64) give a finite objective and gradient. K = 1 works.

Deviations:
    D1. Both of the paper's forms, chosen per task (``task_types``); LibMTL, nash-mtl and MTAN implement
        only :math:`\tfrac{1}{2}(e^{-s} f + s)` (the regression form) for every task.
    D2. Default init s = 0 (nash-mtl / the notebook); LibMTL and MTAN use −0.5 (option ``init``).
    D3. Non-positive and non-finite losses raise instead of diverging or propagating NaN.
    D4. The warning about s left out of the optimiser is ours (LibMTL registers ``loss_scale`` with the
        model's optimiser itself).
    D5. ``weights`` returns the true gradient weights :math:`\partial L / \partial f_i = c_i e^{-s_i}`:
        LibMTL reports :math:`1/(2 e^{s_i})` (the same for regression tasks) and nash-mtl reports
        :math:`e^{-s_i}` ("NOTE: not exactly task weights").

Usage (``model`` and the task losses ``f1`` (a regression) and ``f2`` (a cross-entropy) are yours)::

    method = UW(task_types=("regression", "classification"))
    optimiser = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=1e-3)
    loss = method(torch.stack([f1, f2]))  # ½e^{−s_1} f1 + e^{−s_2} f2 + (s_1 + s_2)/2
    loss.backward()
    optimiser.step()
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.loss_weighting import LossWeighting, StartBatch
from reference_impls.loss_balancing.ew import check_losses
from reference_impls.loss_balancing.imtl_l import UnoptimisedParameterWarning

# c_i of the paper's per-task terms c_i e^{−s_i} f_i + s_i/2
TASK_FACTORS: dict[str, float] = {"regression": 0.5, "classification": 1.0}


class UW(torch.nn.Module, LossWeighting):
    """Σ_i c_i e^{−s_i} f_i + s_i/2 with learnable log-variances s = log σ² (c_i = ½ regression, 1 classification)."""

    name: ClassVar[str] = "uw"
    stateful: ClassVar[bool] = True

    def __init__(self, num_tasks: int | None = None, task_types: Sequence[str] | None = None, init: float = 0.0) -> None:
        torch.nn.Module.__init__(self)
        if task_types is not None:
            task_types = tuple(task_types)
            unknown = [t for t in task_types if t not in TASK_FACTORS]
            if unknown:
                raise ValueError(f"uw: task_types must be among {tuple(TASK_FACTORS)}, got {unknown}")
            if num_tasks is not None and int(num_tasks) != len(task_types):
                raise ValueError(f"uw: num_tasks={num_tasks} but {len(task_types)} task_types were given")
            num_tasks = len(task_types)
        K = 2 if num_tasks is None else int(num_tasks)
        if K < 1:
            raise ValueError(f"uw: num_tasks must be >= 1, got {num_tasks}")
        if not math.isfinite(float(init)):
            raise ValueError(f"uw: init must be finite, got {init}")
        self.num_tasks = K
        self.task_types = task_types if task_types is not None else ("regression",) * K
        self.init = float(init)
        self.s = torch.nn.Parameter(torch.full((K,), self.init))  # (K,): s_i = log σ_i²
        self.register_buffer("c", torch.tensor([TASK_FACTORS[t] for t in self.task_types]))  # (K,): ½ or 1
        self._s_at_last_call: Tensor | None = None  # s when forward last ran (to detect an unoptimised s)
        self._warned = False

    @property
    def sigma2(self) -> Tensor:
        """σ² = e^{s} (K,), detached."""
        return self.s.detach().exp()

    def _check(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        f = check_losses("uw", losses, self.num_tasks)  # (K,)
        bad = f.detach() <= 0  # (K,)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"uw: the loss of task {i} is {float(f.detach()[i])}: uncertainty weighting needs positive losses "
                "(for f_i <= 0, c e^{-s_i} f_i + s_i/2 is unbounded below as s_i -> -inf); shift the loss by a lower bound"
            )
        return f

    def _warn_if_not_optimised(self) -> None:
        g, last = self.s.grad, self._s_at_last_call
        if not self._warned and last is not None and g is not None and bool((g != 0).any()) and torch.equal(self.s.detach(), last):
            self._warned = True
            warnings.warn(
                "uw: the log-variances s got a gradient but did not change since the last call, so they are not being "
                "optimised and UW reduces to fixed weights c e^{-s}; build the optimiser with "
                "[*model.parameters(), *method.parameters()] (ignore this when accumulating gradients over several calls)",
                UnoptimisedParameterWarning,
                stacklevel=3,
            )
        self._s_at_last_call = self.s.detach().clone()

    def forward(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        f = self._check(losses)  # (K,)
        self._warn_if_not_optimised()
        s, c = self.s.to(f), self.c.to(f)  # (K,), (K,)
        return (c * torch.exp(-s) * f + s / 2).sum()  # Σ_i c_i e^{−s_i} f_i + s_i/2

    def objective(self, losses: Tensor, step: int = 0) -> Tensor:
        return self.forward(losses)

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses)  # (K,)
        return (self.c.to(f) * torch.exp(-self.s.detach().to(f))).detach()  # ∂L/∂f_i = c_i e^{−s_i}

    def stationary_log_variances(self, losses: Tensor) -> Tensor:
        """s* = log(2 c ⊙ f) (K,): the minimiser of L in s for the given (frozen) losses."""
        f = self._check(losses).detach()  # (K,)
        return torch.log(2 * self.c.to(f) * f)  # ∂L/∂s_i = −c_i e^{−s_i} f_i + ½ = 0

    def parameters(self, recurse: bool = True) -> list[Tensor]:  # type: ignore[override]
        return [self.s]

    def reset(self) -> None:
        with torch.no_grad():
            self.s.fill_(self.init)
        self._s_at_last_call = None
        self._warned = False

    @classmethod
    def start_batch(cls, methods: Sequence["UW"], optimizer) -> "UWBatch | None":
        """The runner's speed path: the B starts' s as one (B, K) tensor (:class:`UWBatch`); None if it does not apply."""
        return UWBatch(methods, optimizer) if UWBatch.applies(methods) else None


class UWBatch(StartBatch):
    """B instances of :class:`UW` stepped as one (B, K) computation by the runner (see ``StartBatch``).

    Per start, the arithmetic of ``weights`` and of autograd through ``forward``, in the same order:
    e = exp(−s) (float64 when the losses are), w = c ⊙ e, ∂L/∂s = ½ − (f ⊙ c) ⊙ e (autograd's
    products: ∂/∂e of (c e) f is f c, times e for the exp, negated, plus ½ from s/2), rounded to s's dtype.
    """

    method_class = UW
    replicates = ("weights", "objective", "forward", "_check", "_warn_if_not_optimised", "observe", "on_epoch_end", "parameters")

    def __init__(self, methods: Sequence[UW], optimizer) -> None:
        self.methods = list(methods)
        self.S = torch.stack([m.s.detach() for m in self.methods]).clone()  # (B, K) s of every start, s's dtype
        self.c = torch.stack([m.c for m in self.methods])  # (B, K) c_i
        self.optimizer = optimizer(self.S)
        self.S_before: Tensor | None = None  # s before the last step (the instances' _s_at_last_call)
        self._c_as: dict[torch.dtype, Tensor] = {}  # c in the losses' dtype

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        K = self.S.shape[1]
        f = F.detach()  # (B, K)
        values = f.reshape(-1).tolist()  # B·K Python floats: min and sum on them beat two torch reductions
        if F.shape[1] != K or not (min(values) > 0 and math.isfinite(sum(values))):
            for m, f_b in zip(self.methods, F):
                m._check(f_b)  # the per-start error (non-positive, non-finite, wrong K)
        c = self._c_as.get(f.dtype)
        if c is None:
            c = self._c_as[f.dtype] = self.c.to(f)  # (B, K)
        e = torch.exp(-self.S.to(f))  # e^{−s}, (B, K)
        W = c * e  # w = ∂L/∂f = c ⊙ e^{−s}, (B, K)
        if self.S_before is None:
            self.S_before = self.S.clone()
        else:
            self.S_before.copy_(self.S)
        self.S.grad = (0.5 - (f * c) * e).to(self.S.dtype)  # ∂L/∂s = ½ − c ⊙ f ⊙ e^{−s}, (B, K)
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


__all__ = ["TASK_FACTORS", "UW", "UWBatch"]
