r"""MoCo: stochastic multi-objective gradient correction (tracking the gradients, then MGDA-like weights).

Paper: H. D. Fernando, H. Shen, M. Liu, S. Chaudhury, K. Murugesan, T. Chen, "Mitigating Gradient
Bias in Multi-objective Learning: A Provably Convergent Approach", ICLR 2023, arXiv 2210.12624.
Official code: heshandevaka/MoCo (``LibMTL/LibMTL/weighting/Tracking.py`` and the Cityscapes trainer
``CAGrad/utils.py``, whose ``tracking`` is called for ``--method tracking``; ``CAGrad/nyuv2/utils.py``
also defines a ``tracking`` but its trainer never calls it); LibMTL ``weighting/MoCo.py`` (from the
authors' code).

Update rule:
    Algorithm 1 (the equations below were checked against both official codes, the PDF itself was
    not re-read here), at step :math:`t = 1, 2, \dots` with the stochastic task gradients
    :math:`h_{t,i}` (the rows of the Jacobian passed in): gradient tracking (:math:`Y_1 = 0`), a
    projected gradient step on the weights (:math:`\lambda_1 = \mathbf{1}/K`, :math:`\Pi_\Delta` the
    Euclidean projection onto the probability simplex; no factor 2, D1) and the update direction:

    .. math::

        Y_{t+1,i} = Y_{t,i} - \beta_t (Y_{t,i} - h_{t,i})

    .. math::

        \lambda_{t+1} = \Pi_\Delta\big(\lambda_t - \gamma_t (Y_{t+1} Y_{t+1}^\top + \rho I) \lambda_t\big), \qquad d = Y_{t+1}^\top \lambda_{t+1}

    with step sizes decaying per call (D3):

    .. math::

        \beta_t = \beta / t^{\sigma_\beta}, \qquad \gamma_t = \gamma / t^{\sigma_\gamma}

    (:math:`\sigma_\beta` = ``beta_sigma``, :math:`\sigma_\gamma` = ``gamma_sigma``). :math:`Y Y^\top` is
    the Gramian of the tracked gradients, so the λ step is a projected gradient step on
    :math:`\tfrac12 \lambda^\top (Y Y^\top + \rho I) \lambda`, the (regularised) MGDA dual. With
    :math:`\beta_t = 1` (β = 1 and :math:`\sigma_\beta = 0`: no tracking, Y is the current Jacobian),
    ρ = 0, exact gradients held fixed and a constant γ small enough, λ converges to the min-norm
    (MGDA) weights.

Hyperparameters: LibMTL defaults ``beta`` = 0.5, ``beta_sigma`` = 0.5, ``gamma`` = 0.1,
``gamma_sigma`` = 0.5, ``rho`` = 0 (used here). The authors' own defaults are β = 0.1, γ = 0.1
(their δ), both σ = 0.5 (``Tracking.py``'s config
``--beta_track 0.1 --delta 0.1 --sigma2 0.5 --sigma3 0.5``; the same argparse defaults in
``CAGrad/model_segnet_mt.py``); pass ``beta=0.1`` to use them. Their Cityscapes run script uses
β = 0.05, γ = 0.1; the NYUv2 script (β = 0.99, σ's 0) runs a trainer that never calls ``tracking``. Stateful (Y, λ, t): :meth:`reset` forgets them. The projection is
:func:`reference_impls.core.solvers.project_simplex`; λ is kept in float64 on the CPU (K = 2: the λ step on
Python floats, the same operations and projection formula, bit for bit, tested). The runner's K = 2 float path
(``direction2``) runs the tracking step with the same torch call (``add_(alpha=)`` fuses the multiply-add on some
CPUs only: Python floats could not repeat it everywhere) and the rest on Python floats, bit for bit.

Degenerate inputs: all-zero gradients keep λ and give d = 0; K = 1 gives λ = (1) and d = Y (the tracked gradient).
Huge scales make the λ step land on a vertex of Δ (finite); tiny ones leave λ ≈ 𝟙/K.

    >>> moco = MoCo()
    >>> for batch in data:
    ...     optimizer.zero_grad()
    ...     moco.backward(model.losses(batch), model.shared_parameters(), model.task_parameters())
    ...     optimizer.step()

Deviations:
  D1. No factor 2 in the λ step, as in the live official Cityscapes code (``CAGrad/utils.py``
      ``tracking``) and the project's notes on the paper; the official LibMTL-based ``Tracking.py``
      uses :math:`2 \gamma_t Y Y^\top \lambda` (the exact gradient of :math:`\lambda^\top Y Y^\top \lambda`): pass γ twice as
      large to reproduce it.
  D2. The projection onto the simplex of Algorithm 1 is used (as ``Tracking.py``). The live official
      ``CAGrad/utils.py`` instead sets :math:`\lambda \leftarrow \operatorname{softmax}(\lambda - \gamma_t Y Y^\top \lambda)` and
      multiplies d by K before the optimiser step (``overwrite_grad``: "to match the sum loss"); with
      ``--smgdc_method raw_loss`` (off by default) it also pre-normalises
      :math:`h_i \leftarrow f_i h_i / (\lVert h_i \rVert + 10^{-8})`. LibMTL's ``MoCo.py`` likewise uses the softmax
      and that pre-normalisation (always). None of these is done here.
  D3. Steps are counted per call, t = 1, 2, ... (as ``Tracking.py`` and LibMTL). In the live official
      ``CAGrad/utils.py`` the counter is the epoch index: :math:`\beta_t = \beta / (1 + \text{epoch})^{\sigma_\beta}`
      and :math:`\gamma_t` decay per epoch, not per step, and Y = 0, λ = 𝟙/K are re-initialised on every batch of epoch 0
      (the initialisation sits inside the batch loop under ``if index == 0``), so tracking starts
      only in epoch 1.
  D4. ρ (the paper's regulariser, 0 in every official default) is exposed; the official ``Tracking.py``
      has no ρ.
  D5. The projected vector v is shifted by its maximum before the projection (projecting v − c𝟙 gives
      the same point as projecting v): without the shift,
      a huge step (gradient scale ~1e15) cancels catastrophically and the projection returns 0.
  D6. Task-specific parameters receive their raw gradients (``backward`` of the base class), as
      in LibMTL's backward mode.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reference_impls.core.aggregator import Aggregator
from reference_impls.core.solvers import combine2, project_simplex, project_simplex2, small_tensor


class MoCo(Aggregator):
    name = "moco"
    stateful = True

    def __init__(
        self,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
    ) -> None:
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"moco: beta must lie in (0, 1], got {beta}")
        if gamma <= 0.0:
            raise ValueError(f"moco: gamma must be > 0, got {gamma}")
        if beta_sigma < 0.0 or gamma_sigma < 0.0 or rho < 0.0:
            raise ValueError("moco: beta_sigma, gamma_sigma and rho must be >= 0")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.gamma = float(gamma)
        self.gamma_sigma = float(gamma_sigma)
        self.rho = float(rho)
        self.reset()

    def reset(self) -> None:
        self._Y: Tensor | None = None  # tracked gradients, (K, n)
        self._buffers2: tuple[Tensor, Tensor] | None = None  # direction2's memory for h_t and the next Y (2, 2) each
        self._lambd: Tensor | None = None  # λ ∈ Δ, (K,), float64 CPU
        self._t = 0

    @property
    def Y(self) -> Tensor | None:
        """The tracked gradients Y (K, n), None before the first step."""
        return self._Y

    @property
    def lambd(self) -> Tensor | None:
        """The current weights λ ∈ Δ (K,), float64, None before the first step."""
        return self._lambd

    @property
    def t(self) -> int:
        """The number of steps taken."""
        return self._t

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        K = J.shape[0]
        if self._Y is None:
            self._Y = torch.zeros_like(J)  # Y_1 = 0 (official code)
            self._lambd = torch.full((K,), 1.0 / K, dtype=torch.float64)  # λ_1 = 𝟙/K
        elif self._Y.shape != J.shape:
            raise ValueError(f"moco: the Jacobian shape changed from {tuple(self._Y.shape)} to {tuple(J.shape)}; call reset() first")
        self._t += 1
        beta_t = self.beta / self._t**self.beta_sigma  # β_t = β / t^{β_σ}
        gamma_t = self.gamma / self._t**self.gamma_sigma  # γ_t = γ / t^{γ_σ}
        Y = self._Y if self._Y.dtype == J.dtype else self._Y.to(J)
        Y.mul_(1.0 - beta_t).add_(J, alpha=beta_t)  # Y_{t+1,i} = Y_{t,i} − β_t (Y_{t,i} − h_{t,i}), in place, (K, n)
        self._Y = Y
        if K == 2 and Y.device.type == "cpu":
            lam = self._step2(Y, gamma_t)
            if lam is not None:
                return small_tensor(lam, Y.dtype) @ Y  # d = Yᵀ λ_{t+1}, (n,)
        M = (Y @ Y.T).to("cpu", torch.float64)  # Y Yᵀ, (K, K)
        M = M + self.rho * torch.eye(K, dtype=torch.float64)  # Y Yᵀ + ρ I
        v = self._lambd - gamma_t * (M @ self._lambd)  # λ_t − γ_t(YYᵀ + ρI)λ_t, (K,)
        self._lambd = project_simplex(v - v.max())  # λ_{t+1} = Π_Δ(v); Π_Δ(v − c𝟙) = Π_Δ(v) (exact for huge v)
        return self._lambd.to(J) @ Y  # d = Yᵀ λ_{t+1}, (n,)

    def _step2(self, Y: Tensor, gamma_t: float) -> tuple[float, float] | None:
        """K = 2: the λ step on Python floats (the general path's operations in the same order; the projection is
        project_simplex's sort-based formula for two entries), or None for a non-finite v (the general path raises)."""
        (m11, m12), (m21, m22) = (Y @ Y.T).tolist()  # Y Yᵀ in Y's dtype, exactly as float64
        m11, m22 = m11 + self.rho, m22 + self.rho  # Y Yᵀ + ρ I
        l1, l2 = self._lambd.tolist()
        v1, v2 = l1 - gamma_t * (m11 * l1 + m12 * l2), l2 - gamma_t * (m21 * l1 + m22 * l2)  # λ_t − γ_t(YYᵀ + ρI)λ_t
        lam = project_simplex2(v1, v2)  # λ_{t+1} = Π_Δ(v), project_simplex's formula for two entries; None: v not finite
        if lam is not None:
            self._lambd = small_tensor(lam, torch.float64)
        return lam

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): the tracking step, :meth:`_step2` and d = Yᵀλ on Python floats (the
        same operations in the same order), the general path's bits; None (no state changed) where it must decide."""
        if len(rows) != 2 or len(rows[0]) != 2 or len(rows[1]) != 2 or type(rows[0][0]) is not float:
            return None  # n = 2 only: Y Yᵀ is a two-term sum
        if self._Y is None:
            Y, (l1, l2) = torch.zeros(2, 2, dtype=torch.float64), (0.5, 0.5)  # Y_1 = 0, λ_1 = 𝟙/K
        elif self._Y.shape == (2, 2) and self._Y.dtype == torch.float64 and self._Y.device.type == "cpu":
            Y, (l1, l2) = self._Y, self._lambd.tolist()
        else:
            return None
        if not math.isfinite(sum(rows[0]) + sum(rows[1])):
            return None  # NaN/inf: check_jacobian raises
        if self._buffers2 is None:
            self._buffers2 = (torch.empty(2, 2, dtype=torch.float64), torch.empty(2, 2, dtype=torch.float64))  # h_t, Y_{t+1}
        h, Y_new = self._buffers2  # Y_new: the memory of the state before last (the two swap below), never Y's
        t = self._t + 1
        beta_t = self.beta / t**self.beta_sigma  # β_t = β / t^{β_σ}
        gamma_t = self.gamma / t**self.gamma_sigma  # γ_t = γ / t^{γ_σ}
        # Y_{t+1,i} = Y_{t,i} − β_t (Y_{t,i} − h_{t,i}), (K, n): the general path's torch calls, into a buffer (the state
        # changes only once the step has succeeded)
        h.numpy()[...] = rows
        torch.mul(Y, 1.0 - beta_t, out=Y_new).add_(h, alpha=beta_t)
        Y = Y_new.tolist()
        (a, b), (c, d) = Y
        m11, m12, m21, m22 = a * a + b * b, a * c + b * d, c * a + d * b, c * c + d * d  # Y Yᵀ as torch rounds it
        m11, m22 = m11 + self.rho, m22 + self.rho  # Y Yᵀ + ρ I
        lam = project_simplex2(l1 - gamma_t * (m11 * l1 + m12 * l2), l2 - gamma_t * (m21 * l1 + m22 * l2))  # Π_Δ(λ_t − γ_t(YYᵀ + ρI)λ_t)
        if lam is None:
            return None  # NaN/inf: the general path raises
        self._buffers2 = (h, self._Y if self._Y is not None else torch.empty(2, 2, dtype=torch.float64))
        self._Y = Y_new
        self._lambd = small_tensor(lam, torch.float64)
        self._t = t
        return combine2(lam[0], lam[1], Y[0], Y[1])  # d = Yᵀλ_{t+1}
