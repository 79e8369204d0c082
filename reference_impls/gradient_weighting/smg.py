r"""SMG: the stochastic multi-gradient — MGDA's min-norm weights computed on a STOCHASTIC Jacobian.

Paper: S. Liu and L. N. Vicente, "The stochastic multi-gradient algorithm for multi-objective
optimization and its application to supervised machine learning", Annals of Operations Research 339(3)
(2024; online 2021, doi 10.1007/s10479-021-04033-z), arXiv 1907.04472 (also Lehigh ISE report 19T-011,
Coimbra preprint 19-46). No official code is published with the paper.

Sources read: the abstract (arXiv/ar5iv, IDEAS, optimization-online) and the opening of the ar5iv
rendering; the body (algorithm and theorem numbers, step-size constants) could not be read from this
workplace. The abstract states: at each iteration a stochastic multi-gradient direction is computed
by solving a quadratic subproblem; this direction is BIASED even when every gradient estimator is
unbiased; rates to a Pareto-front point of the order known for stochastic gradient, in the convex and
strongly convex cases, handling that bias and the unknown weights of the limiting Pareto point; a
Pareto-front type algorithm built on SMG approximates the whole front.

Update rule:
    The SMG step as the abstract describes it (its algorithm and equation numbers are not verified
    here): at :math:`x_k` draw stochastic gradients :math:`g_i(x_k, w_k)`, :math:`i = 1, \dots, K`,
    from a mini-batch :math:`w_k` (here the mean of ``batch_size`` = B oracle samples
    :math:`w_{k,1}, \dots, w_{k,B}`), solve the quadratic subproblem on them over the probability
    simplex :math:`\Delta` and step with the learning rate :math:`\alpha_k`:

    .. math::

        g_i(x_k, w_k) = \frac{1}{B} \sum_{s=1}^{B} g_i(x_k, w_{k,s}), \qquad \lambda_k = \arg\min_{\lambda \in \Delta} \left\lVert \sum_{i=1}^{K} \lambda_i \, g_i(x_k, w_k) \right\rVert^2

    .. math::

        g(x_k, w_k) = \sum_{i=1}^{K} \lambda_{k,i} \, g_i(x_k, w_k), \qquad x_{k+1} = x_k - \alpha_k \, g(x_k, w_k)

    The direction is MGDA's (``reference_impls.gradient_weighting.mgda.MGDA``, normalisation
    "none") applied to the sampled Jacobian: this class is that rule plus the mini-batch of the
    stochastic oracle. On a deterministic Jacobian SMG and MGDA coincide bit for bit.

The bias (the paper's point about SMG): each :math:`g_i(x, w)` is unbiased, but :math:`\lambda_k` is a
non-linear function of the SAMPLED Gramian, so
:math:`\mathbb{E}[g(x, w)] \ne \sum_i \lambda^\star_i \nabla f_i(x)` (:math:`\lambda^\star` the weights of the
true Jacobian) in general (the abstract's statement). That the paper bounds this bias by an
assumption and shows it shrinking with the batch size is recalled from the body, not re-checked
here. On the noisy toy (:math:`J_s = J + \sigma \xi`, problems/noisy.py) the Gramian of one sample has
:math:`\mathbb{E}[J_s J_s^\top] = J J^\top + \sigma^2 n I`: the noise inflates the diagonal, pulling λ
towards uniform; averaging B samples divides σ² by B. ``tests/reference_impls/test_smg.py``
measures :math:`\lVert \mathbb{E}[d_{\mathrm{SMG}}] - d_{\mathrm{MGDA}} \rVert` by Monte Carlo: clearly
non-zero at B = 1, decreasing in B and vanishing as σ → 0.

Hyperparameters:
    batch_size: B ≥ 1, the number of i.i.d. oracle samples averaged per step (default 1, the
        plainest stochastic oracle). On a noisy point problem the runner draws B samples per step
        (``jacobian_samples = B``) and SMG averages them, i.e. a mini-batch of B; in a training loop
        the mini-batch comes from the data loader and the method sees one Jacobian.
    The step size :math:`\alpha_k` is the optimiser's learning rate (the paper's rates are stochastic-gradient
    rates, with diminishing steps; the runner keeps the learning rate of its optimiser constant, see D2).

Deviations:
    D1. Subproblem solver: exact and certified (Wolfe's algorithm, ``min_norm_weights``, via
        MGDA's code path; the K = 2 closed form for two tasks); the paper leaves the QP solver open.
    D2. Step size: the optimiser's (constant in ``modl run``); the paper's convergence rates use
        diminishing schedules as for stochastic gradient (constants not read) — pass a scheduler yourself.
    D3. Degenerate inputs, float32, NaN: as MGDA (mgda.py D3): all-zero J gives λ = 𝟙/K and d = 0,
        K = 1 gives :math:`d = g_1`, a NaN or infinite entry raises NonFiniteError. A stack of samples
        (S, K, n) is averaged first (in its own dtype), then treated as one Jacobian.
    D4. Only the SMG step is implemented: the Pareto-front SMG algorithm (the paper's procedure for the
        whole front, built on SMG) is not, and the
        iteration is unconstrained (:math:`x \in \mathbb{R}^n`; a projection onto a feasible set, if the paper's algorithm
        has one, is not checked or implemented).

Usage:
    >>> smg = SMG(batch_size=4)
    >>> d = smg(J)                    # J: (K, n) one stochastic Jacobian, or (S, K, n) S samples -> d: (n,)
    >>> lam = smg.weights(J_samples)  # λ on the averaged samples
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor

from reference_impls.gradient_weighting.mgda import MGDA


class SMG(MGDA):
    """Stochastic multi-gradient: λ = argmin_{λ∈Δ} ||Σ λ_i ĝ_i||² on a mini-batch Jacobian Ĵ, d = Ĵᵀλ."""

    name: ClassVar[str] = "smg"

    def __init__(self, batch_size: int = 1) -> None:
        super().__init__(normalization="none")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"smg: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.jacobian_samples = batch_size  # the runner draws this many oracle samples per step on a noisy problem

    @staticmethod
    def _mini_batch(J: Tensor) -> Tensor:
        """(S, K, n) i.i.d. samples -> their mean (K, n), the mini-batch Jacobian; (K, n) unchanged."""
        if isinstance(J, Tensor) and J.ndim == 3:
            if J.shape[0] < 1:
                raise ValueError("smg: got an empty stack of Jacobian samples")
            return J.mean(dim=0)  # Ĵ = (1/S) Σ_s J_s, (K, n)
        return J

    def __call__(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        return super().__call__(self._mini_batch(J), losses)

    def weights(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        return super().weights(self._mini_batch(J), losses)
