r"""CR-MOGM: correlation-reduced stochastic multi-objective gradient manipulation (a moving average of the weights).

Paper: S. Zhou, W. Zhang, J. Jiang, W. Zhong, J. Gu and W. Zhu, "On the Convergence of Stochastic
Multi-Objective Gradient Manipulation and Beyond", NeurIPS 2022, OpenReview ScwfQ7hdwyP. No official
code is public (none is linked from the paper or OpenReview). Cross-checked against TorchJD's
``CRMOGMWeighting`` (``src/torchjd/aggregation/_cr_mogm.py``, PR #669); the paper's PDF was not
reachable from this workplace, so the equation below is stated as the paper's abstract and TorchJD
describe it (see D1).

Update rule:
    The paper's unified framework: MGDA, PCGrad, CAGrad and similar methods all step along a
    composite :math:`d_t = \sum_i \lambda_t^i \, g_i(x_t; \xi_t)` whose weights
    :math:`\hat\lambda_t = W(J_{\xi_t})` are computed from the same stochastic gradients; the
    correlation between :math:`\hat\lambda_t` and the noise of :math:`J_{\xi_t}` biases :math:`d_t`, and
    the paper builds a convex two-objective instance on which these stochastic methods do not
    converge to a Pareto optimum. CR-MOGM ("exponentially averages the past calculated weights",
    abstract) keeps a moving average of the base method's weights :math:`W(J_t)` (``base``, MGDA by
    default) and steps along the base direction with the averaged weights:

    .. math::

        \hat\lambda_t = W(J_t), \qquad \lambda_t = (1 - \alpha_t) \, \lambda_{t-1} + \alpha_t \hat\lambda_t, \qquad \lambda_1 = \hat\lambda_1, \qquad d = J_t^\top \lambda_t

    with :math:`\alpha_t = \alpha \, t^{-p}` (``alpha`` = 0.1, ``alpha_power`` p = 0 by default), so
    :math:`\lambda_t` depends on the current sample only through :math:`\alpha_t \hat\lambda_t`. With
    constant α and i.i.d. :math:`\hat\lambda_t` the stationary variance of :math:`\lambda_t` is
    :math:`\alpha / (2 - \alpha)` times that of :math:`\hat\lambda_t` (measured in the tests). With
    ``initial="uniform"`` the average starts from :math:`\lambda_0 = \mathbf{1}/K` instead (D1).

Hyperparameters:
    base: registry id of the wrapped weighting (default "mgda", the brief's and the paper's main
        instance; any registered :class:`~reference_impls.core.aggregator.Weighting` works, e.g.
        "pcgrad", "cagrad", "upgrad"); ``base_options``: its hyperparameters as a dict.
    alpha: α, the weight of the new estimate (default 0.1, i.e. TorchJD's default 0.9 on the previous
        weights; TorchJD writes :math:`\lambda_k = \alpha' \lambda_{k-1} + (1 - \alpha') \hat\lambda_k` with
        α' = 1 − α).
    alpha_power: p in :math:`\alpha_t = \alpha t^{-p}` (default 0: constant). TorchJD reports that the
        paper's Corollary 1 lets the averaging weight follow the learning-rate decay
        (:math:`\alpha_t \propto \eta_t`, vanishing);
        with the runner's constant learning rate a constant α is used unless p > 0.

Deviations:
  D1. Notation: the paper's symbol for the averaging weight (and whether it multiplies
      :math:`\lambda_{t-1}` or :math:`\hat\lambda_t`) could not be checked against the PDF here; α is
      the weight of the NEW weights :math:`\hat\lambda_t`. The first step returns :math:`\hat\lambda_1`
      (TorchJD's default initialisation); ``initial`` = "uniform" starts from
      :math:`\lambda_0 = \mathbf{1}/K` instead (:math:`\lambda_1 = (1 - \alpha) \mathbf{1}/K + \alpha \hat\lambda_1`).
  D2. The averaged weights :math:`\lambda_t` are kept in float64 on the CPU and returned in J's dtype.
  D3. Degenerate inputs follow the base method (MGDA: all-zero J gives λ̂ = 𝟙/K and d = 0; K = 1
      gives λ = (1,), d = the single gradient); the average of points of the simplex stays in the
      simplex. NaN or infinite input raises
      NonFiniteError (the base's input check); a change of K raises until ``reset``.
  D4. Task-specific parameters receive their raw gradients (the base-class ``backward``).

Usage:
    >>> cr = CRMOGM()                    # MGDA weights, averaged with α = 0.1
    >>> d = cr(J)                        # J: (K, n) stochastic Jacobian -> d = Jᵀλ_t (n,)
    >>> cr.lambd, cr.base_weights        # λ_t and this step's λ̂_t (float64)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import Weighting
from reference_impls.core.hooks import defined_hooks
from reference_impls.core.solvers import combine2, small_tensor

INITIALS = ("base", "uniform")


class CRMOGM(Weighting):
    """d = Jᵀλ_t with λ_t = (1 − α_t)λ_{t−1} + α_t W(J): the base weighting's weights, averaged over steps."""

    name: ClassVar[str] = "cr-mogm"
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        base: str = "mgda",
        alpha: float = 0.1,
        alpha_power: float = 0.0,
        initial: str = "base",
        base_options: Mapping[str, Any] | None = None,
    ) -> None:
        from reference_impls.registry import create, load_class

        if not (0.0 < alpha <= 1.0):
            raise ValueError(f"cr-mogm: alpha must lie in (0, 1], got {alpha!r}")
        if not (alpha_power >= 0.0 and alpha_power < float("inf")):
            raise ValueError(f"cr-mogm: alpha_power must be a finite number >= 0, got {alpha_power!r}")
        if initial not in INITIALS:
            raise ValueError(f"cr-mogm: initial must be one of {INITIALS}, got {initial!r}")
        if base == self.name:
            raise ValueError("cr-mogm: the base weighting cannot be cr-mogm itself")
        cls = load_class(base)  # KeyError names the known ids
        if not issubclass(cls, Weighting):
            raise ValueError(f"cr-mogm: the base must be a weighting (d = Jᵀw), got {base!r} ({cls.__name__})")
        self.base = base
        self.alpha = float(alpha)
        self.alpha_power = float(alpha_power)
        self.initial = initial
        self.base_options = dict(base_options or {})
        self._base = create(base, **self.base_options)
        hooks = defined_hooks(self._base)
        if hooks:  # FAMO's update, GradNorm's parameters: the wrapper would have to forward them
            raise ValueError(f"cr-mogm: the base {base!r} uses training-loop hooks ({', '.join(sorted(hooks))}), which the average does not forward")
        # the input contract is the base's: its loss needs and where it checks finiteness
        self.needs_losses = bool(self._base.needs_losses)
        self.scans_jacobian = bool(self._base.scans_jacobian)
        self.reset()

    def reset(self) -> None:
        self._base.reset()
        self._lambd: Tensor | None = None  # λ_t, (K,), float64 CPU
        self._base_weights: Tensor | None = None  # λ̂_t, (K,), float64 CPU
        self._t = 0

    @property
    def lambd(self) -> Tensor | None:
        """The averaged weights λ_t (K,), float64, None before the first step."""
        return self._lambd

    @property
    def base_weights(self) -> Tensor | None:
        """The base method's weights λ̂_t of the last step (K,), float64, None before the first step."""
        return self._base_weights

    @property
    def t(self) -> int:
        return self._t

    def alpha_at(self, t: int) -> float:
        """α_t = α·t^{−p} (t = 1, 2, ...)."""
        return self.alpha / t**self.alpha_power

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): when the base is MGDA's weighting (mgda, smg: the same
        ``compute_weights``), λ̂_t from :meth:`MGDA.weights2_rows` and the average below on Python floats, the general
        path's bits; None (no step taken) otherwise."""
        from reference_impls.gradient_weighting.mgda import MGDA

        if type(self._base).compute_weights is not MGDA.compute_weights or (self._lambd is not None and self._lambd.shape[0] != 2):
            return None
        lam_hat = MGDA.weights2_rows(self._base, rows)  # λ̂_t = W(J_t), stateless; None: the general path
        if lam_hat is None:
            return None
        self._t += 1
        self._base_weights = small_tensor(lam_hat, torch.float64)  # (K,)
        if self._lambd is None and self.initial == "base":
            lam = lam_hat  # λ_1 = λ̂_1 (D1)
        else:
            l1, l2 = (0.5, 0.5) if self._lambd is None else self._lambd.tolist()  # λ_{t−1} (λ_0 = 𝟙/K)
            alpha_t = self.alpha_at(self._t)
            lam = ((1.0 - alpha_t) * l1 + alpha_t * lam_hat[0], (1.0 - alpha_t) * l2 + alpha_t * lam_hat[1])  # λ_t
        self._lambd = small_tensor(lam, torch.float64)
        return combine2(lam[0], lam[1], rows[0], rows[1])  # d = Jᵀλ_t

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        K = J.shape[0]
        if self._lambd is not None and self._lambd.shape[0] != K:
            raise ValueError(f"cr-mogm: the number of tasks changed from {self._lambd.shape[0]} to {K}; call reset() first")
        lam_hat = self._base.compute_weights(J, losses).detach().to("cpu", torch.float64).clone()  # λ̂_t = W(J_t), (K,)
        self._t += 1
        if self._lambd is None:
            if self.initial == "base":
                self._lambd = lam_hat.clone()  # λ_1 = λ̂_1 (D1)
                self._base_weights = lam_hat
                return self._lambd.to(J)
            self._lambd = torch.full((K,), 1.0 / K, dtype=torch.float64)  # λ_0 = 𝟙/K
        alpha_t = self.alpha_at(self._t)
        self._lambd = (1.0 - alpha_t) * self._lambd + alpha_t * lam_hat  # λ_t = (1 − α_t)λ_{t−1} + α_t λ̂_t
        self._base_weights = lam_hat
        return self._lambd.to(J)
