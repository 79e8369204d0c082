r"""COSMOS: a preference-conditioned network trained with a cosine-penalised linear scalarisation (id ``cosmos``).

Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep Multi-Objective Learning", ICDM 2021
(arXiv 2103.13392); official code ruchtem/cosmos (``multi_objective/methods/cosmos/cosmos.py``:
Upsampler, COSMOSMethod.step; ``multi_objective/settings.py``: the defaults).

The preference r in the simplex (K,) is an *input* of the network, concatenated to the data (tabular
data: the features; images: K extra channels from a transposed-convolution upsampler). Each training
step draws one r ~ Dirichlet(α) for the whole batch and minimises the paper's objective (checked
against COSMOSMethod.step; the paper's text was not re-read here, the equation is the official
code's): the linear scalarisation minus λ times the cosine between the loss vector and r.

The linear term alone gives the LS map (λ = 0: ``target = "ls"``); the cosine term pulls the loss
vector towards the *ray r itself* (not 1/r as EPO does), so with λ > 0 the solutions move along the
front towards F ∝ r and the map has no closed form (``target = None``).

On the toy problems the "network" is an MLP from r to the decision vector, x = MLP(r) (there is no
data input: the preference is the only input; D1). On ``mtl-regression`` (the runner trains on
``mtl-regression-set``) it outputs the flattened parameters of the small regression network (D1).

Defaults (``settings.py``): α = 1.2 and λ = 2 (the ``cosmos`` method entry, "default for multi-mnist";
the tabular data sets use α = 0.5, λ = 0.01), one preference per step (COSMOSMethod.step), Adam
lr 1e-3 (``generic``). hidden = 100 and the step budget are ours for the toys (D3).

Update rule:
    The network maps the preference alone to the solution (D1): an MLP of width :math:`h = 100`
    with ReLU :math:`\sigma`, weights :math:`\theta`,

    .. math::

        x(r) = W_3\,\sigma\big(W_2\,\sigma(W_1 r + b_1) + b_2\big) + b_3 \in \mathbb{R}^n

    Each step draws :math:`B` preferences (:math:`B = 1` by default, D2) from
    :math:`\operatorname{Dir}(1.2\cdot\mathbb{1})` and takes one Adam step on :math:`\theta` for the
    cosine-penalised linear scalarisation (:math:`\lambda = 2`), with :math:`\ell_b = \ell(x(r_b))`
    the loss vector of the generated solution:

    .. math::

        \mathcal{L}(\theta) = \frac{1}{B}\sum_{b=1}^{B} \Big( \sum_{i=1}^{K} r_{b,i}\,\ell_{b,i} - \lambda \cos(\ell_b, r_b) \Big), \qquad \cos(\ell, r) = \frac{\ell^\top r}{\max(\lVert \ell \rVert, 10^{-8})\,\max(\lVert r \rVert, 10^{-8})}

    For :math:`K = 1` the cosine term is dropped (D4).

Deviations:
    D1 The network maps r alone to x (toys, mtl-linear) or to the regression network's flattened
       parameters (mtl-regression-set): Linear(K, h) → ReLU → Linear(h, h) → ReLU → Linear(h, n). The
       paper conditions a *data* network by concatenating r to its input; the toys have no data, and
       the point-problem interface evaluates parameter vectors, so the preference is not an extra input
       feature of the mtl-linear / mtl-regression predictor here (on mtl-linear r could only act as a
       per-task-constant bias, which the linear model cannot use).
    D2 A batch of B preferences per step is allowed (``batch``; the criterion is the mean over the B
       rows). The official step shares one r over the data batch (B = 1, the default here).
    D3 Toy settings (hidden 100, Adam 1e-3, 2000 steps) are ours; the paper's experiments are image
       and tabular benchmarks out of CI's reach.
    D4 The cosine divides by max(‖ℓ‖, 1e-8)·max(‖r‖, 1e-8) (``torch.nn.functional.cosine_similarity``'s
       clamp, as the official code), so ℓ = 0 gives cos = 0 rather than NaN. K = 1: the cosine term is
       dropped (the criterion is r·ℓ with one task). Its gradient is zero analytically (the cosine is
       the sign of the loss), but inside the clamp (a loss between 0 and 1e-8, which a loss that
       reaches 0 enters) it is λ/1e-8 and its Adam moments stall training (measured on the
       1-objective bi-quadratic: the loss stuck at 9.45 instead of going to 0).
    D5 float64 throughout (the official code is float32), so the toy tests do not depend on the BLAS kernel.

Degenerate inputs: vertices of the simplex (the linear term keeps one task, the cosine term still
pulls ℓ towards the axis), K = 1 (D4), ℓ = 0 (D4), non-finite losses or preferences, negative λ → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch

COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity's default clamp of each norm (D4)


def cosine_to_preference(losses: Tensor, preferences: Tensor) -> Tensor:
    """cos(ℓ_b, r_b) (B,) for losses (B, K) and preferences (B, K), each norm clamped at 1e-8 (D4)."""
    num = (losses * preferences).sum(-1)  # ℓ·r, (B,)
    den = torch.linalg.vector_norm(losses, dim=-1).clamp_min(COSINE_EPS) * torch.linalg.vector_norm(preferences, dim=-1).clamp_min(COSINE_EPS)
    return num / den  # (B,)


class COSMOS(ParetoModel):
    """x = MLP(r) trained with Σ_i r_i ℓ_i − λ cos(ℓ, r) on r ~ Dirichlet(α) (layers built by ``begin``)."""

    name = "cosmos"
    target: ClassVar[str | None] = None  # λ > 0: no closed-form map; an instance with λ = 0 targets "ls"
    preference_alpha: ClassVar[float] = 1.2  # settings.py: cosmos alpha
    default_batch: ClassVar[int] = 1  # one r per step (COSMOSMethod.step)
    default_optimizer: ClassVar[str | None] = "adam"  # settings.py generic
    default_lr: ClassVar[float | None] = 1e-3  # settings.py generic lr
    default_steps: ClassVar[int | None] = 2000  # D3

    def __init__(
        self,
        lamda: float = 2.0,
        alpha: float = 1.2,
        hidden: int = 100,
        K: int | None = None,
        n: int | None = None,
        batch: int = 1,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        lamda, alpha = float(lamda), float(alpha)
        if not (lamda >= 0 and lamda < float("inf")):
            raise ValueError(f"cosmos: the cosine weight lamda must be finite and >= 0, got {lamda}")
        if not (alpha > 0 and alpha < float("inf")):
            raise ValueError(f"cosmos: the Dirichlet alpha must be positive and finite, got {alpha}")
        if int(hidden) < 1 or int(batch) < 1:
            raise ValueError(f"cosmos: need hidden >= 1 and batch >= 1, got {hidden}, {batch}")
        self.lamda, self.preference_alpha = lamda, alpha  # instance value shadows the class default
        self.target = "ls" if lamda == 0 else None  # λ = 0 is PHN-LS's criterion with r as the input
        self.hidden, self.batch, self.dtype = int(hidden), int(batch), dtype
        self.K: int | None = None
        self.n: int | None = None
        self.net: nn.Module | None = None
        if K is not None and n is not None:
            self.build(int(K), int(n))

    def build(self, K: int, n: int) -> None:
        """Create the network r (K) → x (n) (PyTorch's default initialisation; D1)."""
        if K < 1 or n < 1:
            raise ValueError(f"cosmos: need K >= 1 and n >= 1, got K={K}, n={n}")
        h = self.hidden
        self.K, self.n = K, n
        self.net = nn.Sequential(nn.Linear(K, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n)).to(self.dtype)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the network for the problem (K, n), or check the one built already."""
        if self.net is None:
            self.build(K, n)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"cosmos was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def forward(self, preference: Tensor) -> Tensor:
        if self.net is None:
            raise ValueError("cosmos: the network is not built: call begin(K, n, ...) (or pass K and n)")
        rb, single = preference_batch(preference, self.K, self.dtype, name="cosmos preference")  # (B, K)
        x = self.net(rb)  # x = MLP(r), the preference as the network's input, (B, n)
        return x[0] if single else x

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name="cosmos")  # (B, K), (B, K)
        linear = (r * F).sum(1)  # Σ_i r_i ℓ_i, (B,)
        if F.shape[1] == 1:
            return linear.mean()  # K = 1: the cosine term is constant where defined (D4)
        return (linear - self.lamda * cosine_to_preference(F, r)).mean()  # mean_b [r·ℓ − λ cos(ℓ, r)]


__all__ = ["COSMOS", "cosine_to_preference"]
