r"""YOTO: loss-conditional training of one network through FiLM layers (id ``yoto``).

Dosovitskiy & Djolonga, "You Only Train Once: Loss-Conditional Training of Deep Networks", ICLR 2020
(OpenReview HyxY6JHKwr). No official code was found; the paper's text was not reachable from here, so
the method is implemented from its abstract and secondary summaries: the loss-conditional objective, a
log-uniform distribution of the loss weights and FiLM conditioning are the paper's; the network, the
sampling range and the encoding of λ for the FiLM MLP are reconstructed (D1–D4).

Instead of one model per weighted loss Σ λ·ℓ, one network conditioned on the loss weights λ is trained
on a distribution of losses (the paper's loss-conditional objective, Eq. 2). The distribution is
log-uniform (the paper's experiments; per coordinate is our reading). The conditioning enters every
hidden layer by feature-wise linear modulation (FiLM; Perez et al., 2018), with the scales and shifts
produced by an MLP of λ.

The weighted sum has the same minimiser for λ and cλ (c > 0), so the conditioned model targets the LS
map at r = λ/Σλ (``target = "ls"``; the oracles normalise the rows).

Defaults (reconstructed, D3): loss weights log-uniform on [1e-2, 1e1] (three decades: weight ratios up
to 1e3); L = 2 FiLM layers of h = 64, conditioning MLP width m = 64; B = 8 loss weights per step (the
paper samples λ per training example; the toys have one "example", so B draws per step); Adam lr 1e-3.

Update rule:
    The loss-conditional objective (paper Eq. 2), estimated with :math:`B = 8` draws per step, each
    coordinate log-uniform on :math:`[\lambda_{\mathrm{lo}}, \lambda_{\mathrm{hi}}] = [10^{-2}, 10^{1}]`
    independently (D3); one Adam step on all weights :math:`\theta` per step:

    .. math::

        \theta^\star = \operatorname{arg\,min}_\theta\ \mathbb{E}_{\lambda}\Big[\sum_{i=1}^{K} \lambda_i\,\ell_i\big(x(\lambda; \theta)\big)\Big], \qquad \log \lambda_i \sim U[\log \lambda_{\mathrm{lo}}, \log \lambda_{\mathrm{hi}}]

    .. math::

        \mathcal{L}(\theta) = \frac{1}{B}\sum_{b=1}^{B}\sum_{i=1}^{K} \lambda_{b,i}\,\ell_i\big(x(\lambda_b; \theta)\big)

    The conditioned network (D1, D4) starts from a learned constant input :math:`e`; the FiLM MLP
    :math:`M` (Linear(K, m), ReLU, Linear(m, m), ReLU, Linear(m, 2Lh)) reads the centred, clamped
    log-weights :math:`c` (D2) and modulates each of the :math:`L` hidden layers:

    .. math::

        \tilde\lambda_i = \max\Big(\frac{\lambda_i}{\max_j \lambda_j}, \frac{\lambda_{\mathrm{lo}}}{\lambda_{\mathrm{hi}}}\Big), \qquad c_i = \log \tilde\lambda_i - \frac{1}{K}\sum_{j=1}^{K} \log \tilde\lambda_j, \qquad (\gamma'_l, \beta_l)_{l=1}^{L} = M(c)

    .. math::

        a_0 = e, \qquad a_l = \operatorname{ReLU}\big((1 + \gamma'_l) \odot (W_l a_{l-1} + b_l) + \beta_l\big), \qquad x(\lambda; \theta) = W_{\mathrm{out}} a_L + b_{\mathrm{out}}

Deviations:
    D1 The conditioned network has no data input on the toys: its input is a learned constant vector e
       and its output is the decision vector x (or, on ``mtl-regression-set``, the flattened
       parameters of the regression network). The paper conditions convolutional image models
       (β-VAE, compression, style transfer); those experiments are out of CI's reach.
    D2 The FiLM MLP sees the centred log-weights log λ − mean(log λ) (reconstructed: how the paper
       encodes λ for the MLP was not recoverable here). Centring makes the conditioning
       invariant to the scale of λ, which does not change the minimiser of the weighted sum; simplex
       preferences r (the runner's held-out points) with ratios ≤ high/low then lie in the training
       distribution's range. Each weight divided by the largest is clamped at low/high before the
       log, the most extreme ratio of the training distribution: a zero weight (a simplex vertex) is
       answered with the model's solution at that extreme instead of an extrapolation (measured
       before the clamp: at the bi-quadratic's vertices f up to 2.7 after 300 steps where the front
       ends at 1.0).
    D3 The sampling range [1e-2, 1e1], the sizes and the step budget are ours (the toys' scale).
    D4 γ is parameterised as 1 + γ' (γ' from the MLP), so an untrained model starts near the
       unmodulated network; the paper does not state its FiLM initialisation.
    D5 float64 throughout, so the toy tests do not depend on the BLAS kernel.

Degenerate inputs: K = 1 (the conditioning input is 0: one model of the single loss), simplex vertices
(the most extreme trained ratio, D2), non-finite or negative weights, an invalid range → ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, check_preferences, loss_batch


def sample_log_uniform(num: int, K: int, low: float, high: float, *, generator: torch.Generator | None = None) -> Tensor:
    """``num`` loss-weight vectors (num, K), each λ_i = exp(U[log low, log high]) independently, float64."""
    u = torch.rand(num, K, generator=generator, dtype=torch.float64)  # U[0, 1), (num, K)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))  # log λ ~ U[log low, log high]


class YOTO(ParetoModel):
    """A FiLM-conditioned network λ ↦ x trained on Σ_i λ_i ℓ_i with λ log-uniform (layers built by ``begin``)."""

    name = "yoto"
    target: ClassVar[str | None] = "ls"  # argmin Σ λ_i ℓ_i, invariant to the scale of λ
    default_batch: ClassVar[int] = 8  # D1: B loss weights per step
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-3  # D3
    default_steps: ClassVar[int | None] = 2000  # D3

    def __init__(
        self,
        low: float = 1e-2,
        high: float = 1e1,
        hidden: int = 64,
        layers: int = 2,
        film_hidden: int = 64,
        K: int | None = None,
        n: int | None = None,
        batch: int = 8,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        low, high = float(low), float(high)
        if not (0 < low <= high < float("inf")):
            raise ValueError(f"yoto: the log-uniform range needs 0 < low <= high < inf, got [{low}, {high}]")
        if min(int(hidden), int(layers), int(film_hidden), int(batch)) < 1:
            raise ValueError(f"yoto: need hidden, layers, film_hidden, batch >= 1, got {hidden}, {layers}, {film_hidden}, {batch}")
        self.low, self.high = low, high
        self.hidden, self.layers, self.film_hidden, self.batch, self.dtype = int(hidden), int(layers), int(film_hidden), int(batch), dtype
        self.K: int | None = None
        self.n: int | None = None
        self.body: nn.ModuleList | None = None
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int) -> None:
        """Create the constant input e, the L FiLM-modulated layers, the output layer and the FiLM MLP."""
        if K < 1 or n < 1:
            raise ValueError(f"yoto: need K >= 1 and n >= 1, got K={K}, n={n}")
        h, m, L = self.hidden, self.film_hidden, self.layers
        self.K, self.n = K, n
        self.constant_input = nn.Parameter(torch.randn(h, dtype=self.dtype) / math.sqrt(h))  # e (h,)
        self.body = nn.ModuleList([nn.Linear(h, h) for _ in range(L)]).to(self.dtype)  # W_l, b_l
        self.out = nn.Linear(h, n).to(self.dtype)  # W_out, b_out
        self.film = nn.Sequential(nn.Linear(K, m), nn.ReLU(), nn.Linear(m, m), nn.ReLU(), nn.Linear(m, 2 * L * h)).to(self.dtype)  # M

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Training loss weights λ (num, K): log-uniform on [low, high] per coordinate (not on the simplex)."""
        return sample_log_uniform(num, K, self.low, self.high, generator=generator)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the layers for the problem (K, n), or check the ones built already."""
        if self.body is None:
            self.build(K, n)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"yoto was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def conditioning(self, weights: Tensor) -> Tensor:
        """c = log λ̃ − mean_i log λ̃_i (B, K), λ̃ = max(λ/max λ, low/high), for weights (B, K) >= 0 with a positive entry per row (D2)."""
        lam = weights / weights.amax(-1, keepdim=True)  # scale out (the minimiser ignores it), (B, K)
        log_lam = torch.log(lam.clamp_min(self.low / self.high))  # within the training ratios (D2), (B, K)
        return log_lam - log_lam.mean(-1, keepdim=True)  # (B, K)

    def forward(self, preference: Tensor) -> Tensor:
        if self.body is None:
            raise ValueError("yoto: the network is not built: call begin(K, n, ...) (or pass K and n)")
        lam = torch.as_tensor(preference, dtype=self.dtype)
        single = lam.ndim == 1
        lb = lam[None] if single else lam  # (B, K)
        check_preferences(lb, None, self.K, name="yoto loss weights")
        B, h = lb.shape[0], self.hidden
        film = self.film(self.conditioning(lb)).reshape(B, self.layers, 2, h)  # (γ'_l, β_l), (B, L, 2, h)
        a = self.constant_input.expand(B, h)  # a_0 = e, (B, h)
        for l, layer in enumerate(self.body):
            a = torch.relu((1 + film[:, l, 0]) * layer(a) + film[:, l, 1])  # a_l = ReLU((1 + γ'_l) ⊙ (W_l a + b_l) + β_l), (B, h)
        x = self.out(a)  # x = W_out a_L + b_out, (B, n)
        return x[0] if single else x

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, lam = loss_batch(losses, preferences, name="yoto", what="loss weights")  # (B, K), (B, K)
        return (lam * F).sum(1).mean()  # mean_b Σ_i λ_bi ℓ_bi (paper Eq. 2, a Monte-Carlo estimate)


__all__ = ["YOTO", "sample_log_uniform"]
