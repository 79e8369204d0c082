r"""DB-MTL: dual balancing of the loss scales (log losses) and the gradient magnitudes.

Paper: B. Lin, W. Jiang, F. Ye, Y. Zhang, P. Chen, Y.-C. Chen, S. Liu, J. T. Kwok, "Dual-Balancing
for Multi-Task Learning", arXiv 2308.12029, 2023. Official code: LibMTL
``LibMTL/weighting/DB_MTL.py`` (median-research-group/LibMTL, written by the authors).

Update rule:
    The whole method; both balancing steps act on the shared parameters. Loss-scale balancing
    replaces each task loss by its logarithm, whose gradient is the task gradient
    :math:`g_i = \nabla f_i` divided by the loss (multiplying a loss by a constant :math:`c_i > 0` does not change the gradient of its log,
    up to the :math:`\epsilon`):

    .. math::

        \tilde f_i = \log(f_i + \epsilon), \qquad \nabla \tilde f_i = \frac{g_i}{f_i + \epsilon}

    Gradient-magnitude balancing keeps an exponential moving average of the log-loss gradients
    (:math:`\hat g_i = 0` before the first step, :math:`t = 1, 2, \dots`), then rescales every task to
    the largest magnitude:

    .. math::

        \hat g_i \leftarrow \beta_t \hat g_i + (1 - \beta_t) \nabla \tilde f_i, \qquad \beta_t = \beta / t^{\sigma}

    .. math::

        \alpha_i = \frac{\max_j \lVert \hat g_j \rVert}{\lVert \hat g_i \rVert}, \qquad d = \sum_{i=1}^{K} \alpha_i \hat g_i = \Big( \max_j \lVert \hat g_j \rVert \Big) \sum_{i=1}^{K} \frac{\hat g_i}{\lVert \hat g_i \rVert}

Hyperparameters: ``beta`` β = 0.9 (``DB_beta``), ``beta_sigma`` σ = 0 (``DB_beta_sigma``), ``eps`` ε = 1e-8: the official
LibMTL defaults (``LibMTL/config.py``); the paper's per-dataset values were not re-read here.

Use: ``DBMTL()(J, losses)`` with J the Jacobian of the *raw* losses (rows: the task gradients) and
their values; the method is stateful (the EMA ĝ and the step counter t), :meth:`reset` forgets both.
In a training loop, :meth:`backward` differentiates the log losses log(f + ε) directly, so the
task-specific parameters (heads) receive the sum of the log-loss gradients, as in LibMTL.

    >>> method = DBMTL()
    >>> for batch in data:
    ...     optimizer.zero_grad()
    ...     method.backward(model.losses(batch), model.shared_parameters(), model.task_parameters())
    ...     optimizer.step()

Degenerate inputs: a task whose EMA gradient is exactly zero contributes nothing (its term αĝ is 0);
all-zero J gives d = 0; K = 1 gives d = ĝ. Losses with f + ε ≤ 0 have no logarithm: ValueError.
Any gradient scale the dtype can hold gives the same direction (D4); overflow raises NonFiniteError.

Deviations:
  D1. LibMTL computes :math:`\alpha_i = \max_j \lVert \hat g_j \rVert / (\lVert \hat g_i \rVert + 10^{-8})`;
      here the division is exact and zero EMA gradients get :math:`\alpha_i \hat g_i = 0`. The 1e-8
      breaks the normalisation at small gradient scales (e.g. :math:`\lVert \hat g_i \rVert \approx 10^{-9}`)
      and makes the result scale-dependent; without it d is exactly homogeneous in ĝ.
  D2. The Jacobian interface takes the gradients of the raw losses and divides row i by
      :math:`f_i + \epsilon` (the chain rule of log); LibMTL back-propagates :math:`\log(f_i + \epsilon)`
      task by task. Same numbers up to rounding; ``backward`` does what LibMTL does.
  D3. The "-UB" representation mode is refused, as in LibMTL (it raises for ``rep_grad=True``).
  D4. The plain norms :math:`\lVert \hat g_i \rVert` are kept when certified (each in
      [√(tiny/eps), max)); otherwise they
      are taken of rows scaled by powers of two (exact), so float32 gradients at scales 1e-23 or
      1e+30 give the float64 direction; LibMTL's plain norms underflow to 0 there (d = 0) or
      overflow (inf/inf = NaN). An EMA or a d that overflows the dtype raises NonFiniteError and
      leaves the state unchanged. The EMA is written into a second (K, n) buffer swapped with the
      state each step (no fresh K×n tensor per step; two are held).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import (
    _SMALL_K,
    Aggregator,
    NonFiniteError,
    _accumulate,
    _as_loss_list,
    check_jacobian,
    jacobian,
    write_flat_grad,
)
from reference_impls.core.solvers import _NUMPY_DTYPES, float_info, float_max, small_tensor

_TINY = 64  # K·n up to this: the EMA step of a float64 Jacobian runs in NumPy (the toy problems)
from reference_impls.gradient_manipulation.pcgrad import scale_rows_by_powers_of_two


def balanced_direction(G: Tensor) -> Tensor:
    """d = (max_j ||G_j||) Σ_i G_i / ||G_i|| (n,) for rows G (K, n); zero rows contribute nothing.

    Fast path: the norms from one ``vector_norm`` pass over G in its dtype, kept when each lies in
    [√(tiny/eps), max) (no square lost to underflow beyond eps²·||G_i||², none overflowed); then one
    (K,) @ (K, n) product. Otherwise (a zero, tiny or huge row, NaN/inf) each row is scaled by a power
    of two before its norm is taken, so the unit vectors G_i/||G_i|| are exact to the dtype's
    precision at any scale (the squares of 1e-23 underflow in float32, those of 1e+30 overflow). An
    exact power-of-two scaling moves only exponents, so both paths round the same numbers.
    Raises NonFiniteError if G is not finite or d overflows the dtype.
    """
    K = G.shape[0]
    if K <= _SMALL_K and G.device.type == "cpu" and G.dtype in _NUMPY_DTYPES:
        # the fast path below on K Python floats (per-call overhead, not arithmetic, at small K): the same
        # IEEE operations in G's dtype (NumPy's 1/x, as torch's), so the same d bit for bit (tested)
        eps, tiny = float_info(G.dtype)
        values = torch.linalg.vector_norm(G, dim=1).tolist()  # ||G_i|| in G's dtype, exact as floats
        if all(math.sqrt(tiny / eps) <= v < float_max(G.dtype) for v in values):
            inverse = 1.0 / np.array(values, dtype=_NUMPY_DTYPES[G.dtype])  # 1/||G_i|| rounded in G's dtype, (K,)
            top = max(values)  # max_j ||G_j||
            d = (torch.from_numpy(inverse) @ G) * top  # d = max_j ||G_j|| Σ_i G_i/||G_i||, (n,)
            if top * K * 2.0 * (1.0 + (K + 2) * eps) < float_max(G.dtype):  # the certificate below
                return d
            if not bool(torch.isfinite(d.sum())):
                raise NonFiniteError(f"the balanced direction overflows {G.dtype}: max_j ||G_j|| = {top:.3e}")
            return d
    finfo = torch.finfo(G.dtype)
    norms_plain = torch.linalg.vector_norm(G, dim=1)  # ||G_i|| in G's dtype, (K,)
    if bool(((norms_plain >= math.sqrt(finfo.tiny / finfo.eps)) & (norms_plain < finfo.max)).all()):  # NaN fails
        unit_sum = (1.0 / norms_plain) @ G  # Σ_i G_i/||G_i||, (n,)
        norms = norms_plain.to(torch.float64)  # (K,)
        # |d_k| ≤ max_j ||G_j|| Σ_i |G_ik|/||G_i|| ≤ K max_j ||G_j||: below the dtype's max (with room
        # for rounding), d cannot overflow and needs no pass over its n entries
        certified = float(norms.max()) * G.shape[0] * 2.0 * (1.0 + (G.shape[0] + 2) * finfo.eps) < finfo.max
    else:
        G_scaled, e = scale_rows_by_powers_of_two(G)  # G̃_i = 2^{−e_i} G_i, (K, n), (K,)
        norms_scaled = torch.linalg.vector_norm(G_scaled, dim=1)  # ||G̃_i|| ∈ [½, √n] or 0, (K,)
        positive = norms_scaled > 0
        inverse = torch.where(positive, 1.0 / torch.where(positive, norms_scaled, 1.0), 0.0)  # 1/||G̃_i||, 0 for a zero row
        unit_sum = inverse @ G_scaled  # Σ_i G_i/||G_i|| = Σ_i G̃_i/||G̃_i||, (n,)
        norms = norms_scaled.to(torch.float64) * torch.pow(2.0, e.to(torch.float64)).to(norms_scaled.device)  # ||G_i||, (K,)
        certified = False
    d = unit_sum * norms.max().to(G.dtype)  # d = max_j ||G_j|| Σ_i G_i/||G_i||, (n,)
    if not certified and not bool(torch.isfinite(d.sum())):
        raise NonFiniteError(f"the balanced direction overflows {G.dtype}: max_j ||G_j|| = {float(norms.max()):.3e}")
    return d


def _ema_step_floats(g_rows: list, J_rows: list, row_scale: list[float], beta_t: float) -> tuple[list, list[float]] | None:
    """The EMA step and d of :meth:`DBMTL._ema_step` on Python floats (float64 rows): (new ĝ, d), or None when a norm
    is outside the certified range or d is not finite (the tensor path decides)."""
    scales = [(1.0 - beta_t) * r for r in row_scale]  # (1 − β_t)·row_scale_i
    new = [[b * beta_t + x * c for b, x in zip(g_row, J_row)] for g_row, J_row, c in zip(g_rows, J_rows, scales)]  # ĝ_i ← β_t ĝ_i + (1 − β_t) ∇f̃_i, (K, n)
    norms = [math.sqrt(sum(v * v for v in row)) for row in new]  # ||ĝ_i||
    eps, tiny = float_info(torch.float64)
    if not all(math.sqrt(tiny / eps) <= v < float_max(torch.float64) for v in norms):  # NaN fails
        return None
    top = max(norms)
    inverse = [1.0 / v for v in norms]
    d = [top * sum(w * row[k] for w, row in zip(inverse, new)) for k in range(len(new[0]))]  # d = max_j ||ĝ_j|| Σ_i ĝ_i/||ĝ_i||
    if math.isfinite(sum(d)) or all(math.isfinite(v) for v in d):
        return new, d
    return None


class DBMTL(Aggregator):
    name = "db-mtl"
    needs_losses = True
    stateful = True
    # No scan of J in __call__: a NaN/inf in J reaches ĝ and fails its norms, and _ema_step then names J
    scans_jacobian = False

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, eps: float = 1e-8) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"db-mtl: beta must lie in [0, 1), got {beta}")
        if beta_sigma < 0.0:
            raise ValueError(f"db-mtl: beta_sigma must be >= 0, got {beta_sigma}")
        if eps < 0.0:
            raise ValueError(f"db-mtl: eps must be >= 0, got {eps}")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.eps = float(eps)
        self.reset()

    def reset(self) -> None:
        self._g_hat: Tensor | None = None  # ĝ, (K, n)
        self._spare: Tensor | None = None  # the previous ĝ's memory, where the next ĝ is written, (K, n)
        self._t = 0

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        assert losses is not None
        if J.dtype == torch.float64 and J.shape[0] <= _SMALL_K and J.device.type == "cpu":
            # K Python floats (float64: the same IEEE operations as the tensor ops below, same bits)
            shifted64 = [f + self.eps for f in losses.tolist()]  # f_i + ε
            if not all(f > 0 for f in shifted64):
                raise ValueError(f"db-mtl: log(f_i + eps) needs f_i + eps > 0, got losses {losses.tolist()}")
            return self._ema_step(J, [1.0 / f for f in shifted64])
        shifted = losses.to(J.dtype) + self.eps  # f_i + ε, (K,)
        if not bool((shifted > 0).all()):
            raise ValueError(f"db-mtl: log(f_i + eps) needs f_i + eps > 0, got losses {losses.tolist()}")
        # ∇ log(f_i + ε) = g_i / (f_i + ε): folded into the EMA update as a per-row factor, so the
        # (K, n) log-gradients are never materialised.
        return self._ema_step(J, 1.0 / shifted)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's protocol for small float64 Jacobians (solvers.py): :meth:`aggregate`'s Python-float path
        (:func:`_ema_step_floats`) on ``J.tolist()`` and the losses, without the tensor round trips; the same
        operations, the general path's bits; None (no state changed) where the general path must decide."""
        if losses is None or not rows or len(losses) != len(rows) or len(rows) > _SMALL_K or type(rows[0][0]) is not float:
            return None
        K, n = len(rows), len(rows[0])
        if K * n > _TINY or not math.isfinite(sum(losses)):
            return None  # larger Jacobians: the tensor path; NaN/inf losses: check_losses raises
        shifted64 = [f + self.eps for f in losses]  # f_i + ε
        if not all(f > 0 for f in shifted64):
            return None  # the general path raises
        g_hat = self._g_hat
        if g_hat is None:
            g_rows = [[0.0] * n for _ in range(K)]  # ĝ = 0 at start
        elif g_hat.shape == (K, n) and g_hat.dtype == torch.float64 and g_hat.device.type == "cpu":
            g_rows = g_hat.tolist()
        else:
            return None
        t = self._t + 1
        step = _ema_step_floats(g_rows, rows, [1.0 / f for f in shifted64], self.beta / t**self.beta_sigma)  # β_t = β / t^σ
        if step is None:
            return None
        new, d = step
        spare = self._spare
        if spare is None or spare.shape != (K, n) or spare.dtype != torch.float64 or spare.device.type != "cpu":
            spare = torch.empty(K, n, dtype=torch.float64)  # (K, n)
        spare.numpy()[...] = new  # the new state, in the spare buffer (as the general path)
        self._spare, self._g_hat, self._t = (torch.zeros(K, n, dtype=torch.float64) if g_hat is None else g_hat), spare, t
        return d

    def direction_from_log_gradients(self, grad_log: Tensor) -> Tensor:
        """One EMA step on the log-loss gradients (K, n) and the balanced direction d (n,)."""
        return self._ema_step(grad_log, torch.ones(grad_log.shape[0], dtype=grad_log.dtype, device=grad_log.device))

    def _ema_step(self, G: Tensor, row_scale: Tensor | list[float]) -> Tensor:
        """EMA step with ∇f̃_i = row_scale_i · G_i, then d; the state changes only if the step is finite.

        The new ĝ is written into a second (K, n) buffer, the previous state's, that the two swap each
        step: a fresh K×n tensor every step costs its page faults (at K = 32, n = 1e6 more than the
        arithmetic: 115 ms against 35 ms per step), at the price of holding two K×n tensors.
        """
        if self._g_hat is None or self._g_hat.shape != G.shape:
            if self._g_hat is not None:
                raise ValueError(
                    f"db-mtl: the Jacobian shape changed from {tuple(self._g_hat.shape)} to "
                    f"{tuple(G.shape)}; call reset() first"
                )
            self._g_hat = torch.zeros_like(G)
        t = self._t + 1
        beta_t = self.beta / t**self.beta_sigma  # β_t = β / t^σ
        g_hat = self._g_hat if self._g_hat.dtype == G.dtype else self._g_hat.to(G)
        spare = self._spare
        if spare is None or spare.shape != G.shape or spare.dtype != G.dtype or spare.device != G.device:
            spare = torch.empty_like(G)  # (K, n)
        if isinstance(row_scale, list) and G.numel() <= _TINY and not G.requires_grad:
            # A tiny float64 Jacobian (the toy problems): the step on Python floats, where torch's per-call
            # dispatch, not the arithmetic, is the cost. The same formulas, rounded in another order (agree with
            # the tensor path to a few ulps, tested); anything unusual (a norm outside the certified range, a
            # non-finite d) falls through to the tensor path, which decides.
            step = _ema_step_floats(g_hat.tolist(), G.tolist(), row_scale, beta_t)
            if step is not None:
                new, d = step
                spare.numpy()[...] = new  # the new state, in the spare buffer
                self._spare, self._g_hat, self._t = self._g_hat, spare, t
                return small_tensor(d, torch.float64)
        # ĝ_i ← β_t ĝ_i + (1 − β_t) ∇f̃_i, (K, n); into the spare buffer, so that an overflow leaves the state intact
        if isinstance(row_scale, list):  # float64 Python floats from aggregate: (1 − β_t)·row_scale_i, (K, 1)
            factor = torch.from_numpy(np.array([(1.0 - beta_t) * r for r in row_scale])[:, None])
        else:
            factor = ((1.0 - beta_t) * row_scale)[:, None]  # (K, 1)
        g_hat = torch.mul(g_hat, beta_t, out=spare).addcmul_(G, factor)
        try:
            d = balanced_direction(g_hat)  # (n,); its norms pass sees a non-finite ĝ (no separate scan)
        except NonFiniteError as error:
            if not bool(torch.isfinite(G).all()):
                raise NonFiniteError("the Jacobian contains NaN or infinite entries") from None
            if not bool(torch.isfinite(g_hat).all()):  # G is finite: the EMA step overflowed
                raise NonFiniteError(f"db-mtl: the EMA of the log-loss gradients ∇f_i / (f_i + eps) overflows {G.dtype}") from None
            raise NonFiniteError(f"db-mtl: {error}") from None
        self._spare, self._g_hat, self._t = self._g_hat, g_hat, t
        return d

    def backward(
        self,
        losses: Sequence[Tensor] | Tensor,
        shared_params: Iterable[Tensor],
        task_params: Iterable[Tensor] = (),
        representation: Tensor | None = None,
    ) -> Tensor:
        """Differentiate log(f_i + ε) per task, write d into the shared ``.grad`` and Σ_i ∇log(f_i + ε) into the heads."""
        if representation is not None:
            raise TypeError("db-mtl does not support the representation (-UB) mode (neither does LibMTL)")
        losses = _as_loss_list(losses)
        shared_params, task_params = list(shared_params), list(task_params)
        values = torch.stack([f.detach().reshape(()) for f in losses])  # (K,)
        if not bool(torch.isfinite(values).all()):
            raise NonFiniteError("the losses contain NaN or infinite values")
        if not bool((values + self.eps > 0).all()):
            raise ValueError(f"db-mtl: log(f_i + eps) needs f_i + eps > 0, got losses {values.tolist()}")
        log_losses = [torch.log(f.reshape(()) + self.eps) for f in losses]  # f̃_i = log(f_i + ε)
        J_log, head_grads = jacobian(log_losses, shared_params, task_params)  # (K, n)
        d = self.direction_from_log_gradients(check_jacobian(J_log))  # (n,)
        write_flat_grad(shared_params, d)
        for p, g in zip(task_params, head_grads):
            _accumulate(p, g)
        return d
