r"""Multi-sample hypernetworks: PHN-HVI (id ``phn-hvi``).

Hoang, Le, Tuan, Thang, "Improving Pareto Front Learning via Multi-Sample Hypernetworks", AAAI 2023
(arXiv 2212.01130); official code longhoangphi225/MultiSample-Hypernetworks (read as
longhp1618/MultiSample-Hypernetworks: ``Multi_MNIST/trainer.py`` the two training phases,
``Multi_MNIST/settings.py`` the defaults, ``Multi_MNIST/modules/hv_maximization.py`` the weights).

The hypernetwork h(r; φ) is PHN's (``reference_impls.pareto_set.phn.PHN``: ray-MLP and a
linear head to the target's n parameters). Each step draws p preference rays, generates the p
solutions h(r; φ), and maximises the hypervolume of their loss vectors while keeping each loss
vector on its ray (paper §4, Eq. 9–11; trainer.py phase 2), after a warm-up (trainer.py phase 1:
one epoch) on the cosine term alone. The weights are computed by the core's exact
``reference_impls.core.hypervolume.nondominated_fronts`` and ``hypervolume_gradient`` (K ≤ 3).

Targets: the criterion has no closed-form preference-to-solution map (``target = None``); the
penalty pulls each loss vector onto the ray along r (not 1/r as EPO), so ``target_rays(r)`` = r/‖r‖
(z = 0, as the paper's cosine uses the raw losses).

Defaults (settings.py, Multi-MNIST): p = 16 rays (``n_mo_sol``), λ = 5 (``lamda``; 4 on the Fashion
sets), reference point (2, 2) (``ref_point``), partitioned sampling on, one warm-up epoch; dynamic
factor 1.1 and per-solution normalisation (hv_maximization.py); ray_hidden = 100 (trainer
``--ray-hidden``). Adam (trainer); the toy lr and steps are ours (D5).

Update rule:
    Rays (K = 2; D3 for other K): one angle per cell of a partition of :math:`[a, b]`,
    :math:`a = 0.1`, :math:`b = \pi/2 - 0.1`, put on the simplex, then rescaled by a random factor
    (trainer.py's "trick"; the hypernetwork sees the rescaled ray, the cosine below is scale-free):

    .. math::

        \omega_j \sim U\Big(a + \tfrac{(j - 1)(b - a)}{p},\ a + \tfrac{j (b - a)}{p}\Big), \qquad r_j = c_j \frac{(\cos\omega_j, \sin\omega_j)}{\cos\omega_j + \sin\omega_j}, \qquad c_j = m_j \lvert \xi_j \rvert

    for :math:`j = 1, \ldots, p`, with :math:`m_j` uniform on :math:`\{1, 2, 3, 4\}` and
    :math:`\xi_j \sim \mathcal{N}(1, 0.2^2)`. The solutions are :math:`\theta_j = h(r_j; \varphi)`
    (PHN's hypernetwork) and their loss vectors :math:`\ell_j = \ell(\theta_j) \in \mathbb{R}^K`.
    The hypervolume weights are the negative hypervolume gradient of each non-dominated front
    :math:`S` of the :math:`\ell_j` (fronts peeled in turn), at a dynamic reference point, each row
    scaled to unit length (a zero row stays zero):

    .. math::

        z = \max\big(z_{\mathrm{ref}},\ 1.1 \max_j \ell_j\big), \qquad \tilde w_j = -\frac{\partial \operatorname{HV}(S; z)}{\partial \ell_j}\ \ (\ell_j \in S), \qquad w_j = \frac{\tilde w_j}{\lVert \tilde w_j \rVert}

    (maxima taken per coordinate). One Adam step on :math:`\varphi` then minimises, with the
    :math:`w_j` held constant (D1 for the official code's variant),

    .. math::

        \mathcal{L}(\varphi) = \sum_{j=1}^{p}\sum_{k=1}^{K} w_{jk}\,\ell_{jk} - \lambda \sum_{j=1}^{p} \cos(\ell_j, r_j), \qquad \cos(\ell_j, r_j) = \frac{\ell_j^\top r_j}{\lVert \ell_j \rVert\,\lVert r_j \rVert}

    During the warm-up (D2) the criterion is the cosine term alone,
    :math:`\mathcal{L}(\varphi) = -\sum_j \cos(\ell_j, r_j)`.

Deviations:
    D1 The weighted loss is the paper's sum over tasks of the HV weight times the loss. trainer.py
       multiplies the weights (K, 1) by the mean losses (K,), which broadcasts to (K, K), so the
       official criterion is, per solution, the sum of its HV weights times the mean of its losses:
       every solution descends the equal-weight sum, scaled by its HV weight.
    D2 Warm-up: trainer.py's phase 1 uses a second Adam (lr 1e-4) and the loss of the first ray's
       penalty minus the sum of all penalties (the first ray's term cancels). Here the warm-up is the
       negative sum of the cosines over all rays, with the run's optimiser, for ``warmup_epochs``
       epochs counted by ``on_epoch_end`` (one epoch; on the full-batch toys an epoch is one step).
    D3 K ≠ 2: the partitioned angle sampling is bi-objective only; K ≥ 3 draws Dirichlet(1) rays
       (then rescaled as above), K = 1 the ray (1) (the HV weight is then −1 normalised: plain descent).
       K ≥ 4: ValueError (the exact HV gradient is implemented for K ≤ 3).
    D4 The cosine of a zero loss vector is defined as 0 (no direction; the official code gives NaN).
    D5 Toy defaults are ours: Adam lr 1e-3, 300 steps of p = 16 rays. Multi-MNIST's lr 5e-4 with its
       schedule (×√0.5 every 10 epochs without improvement, early stop after 35) is not implemented.
    D6 float64 (the official code is float32). The evaluation rays of the official code are 25 angles
       on [a, b]; here the shared held-out Dirichlet(1) rays and dense grid (evaluation.py) are used.

Degenerate inputs: p = 1 (one ray; its HV weight is the normalised negative HV gradient of a single
point), simplex vertices (the cosine is then one loss over the norm of the loss vector), K = 1,
non-finite losses or preferences → ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from reference_impls.core.hypervolume import hypervolume_gradient, nondominated_fronts
from reference_impls.core.sets import loss_batch, sample_preferences
from reference_impls.pareto_set.phn import PHN

ANGLE_START = 0.1  # trainer.py: start = 0.1
ANGLE_END = math.pi / 2 - 0.1  # trainer.py: end = π/2 − 0.1
DYNAMIC_FACTOR = 1.1  # hv_maximization.py: dyn_ref_point = 1.1 · max loss


def hv_weights(F: Tensor, ref: Tensor | Sequence[float] | float = 2.0, *, dynamic_factor: float = DYNAMIC_FACTOR) -> Tensor:
    """HV-gradient weights W (p, K) ≥ 0 of the loss vectors F (p, K) (HvMaximization.compute_weights).

    z = max(ref, 1.1·max_j F_j) (K,); for each non-dominated front S of F, the rows of S are
    −∂HV(S; z)/∂F_S (the core's exact gradient), then every row is scaled to unit length (zero rows stay 0).
    """
    F = F.detach().to(torch.float64)
    if F.ndim != 2 or F.shape[0] < 1:
        raise ValueError(f"phn-hvi: expected losses of shape (p, K), got {tuple(F.shape)}")
    if not bool(torch.isfinite(F).all()):
        raise ValueError("phn-hvi: the losses contain NaN or infinite entries")
    K = F.shape[1]
    if K > 3:
        raise ValueError(f"phn-hvi: the exact hypervolume gradient is implemented for K <= 3 objectives, got K={K}")
    z = torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
    z = z.expand(K) if z.numel() == 1 else z
    if z.shape != (K,) or not bool(torch.isfinite(z).all()):
        raise ValueError(f"phn-hvi: ref_point must be finite with 1 or K={K} entries, got {tuple(z.shape)}")
    z = torch.maximum(z, dynamic_factor * F.max(0).values)  # z_dyn = max(z_ref, 1.1·max_j ℓ_j), (K,)
    G = torch.zeros_like(F)  # (p, K)
    for front in nondominated_fronts(F):
        G[front] = hypervolume_gradient(F[front], z)  # ∂HV(S; z)/∂F_S ≤ 0, (|S|, K)
    W = -G  # the HV-increasing weights, ≥ 0
    norm = torch.linalg.vector_norm(W, dim=1, keepdim=True)  # (p, 1)
    return torch.where(norm > 0, W / torch.where(norm > 0, norm, 1.0), 0.0)  # w_j / ||w_j||


def ray_cosines(F: Tensor, r: Tensor) -> Tensor:
    """cos(ℓ_j, r_j) (p,) with a graph through F; 0 where ℓ_j = 0 (D4)."""
    dot = (F * r).sum(1)  # ℓ_j·r_j, (p,)
    norms = torch.linalg.vector_norm(F, dim=1) * torch.linalg.vector_norm(r, dim=1)  # ||ℓ_j||·||r_j||, (p,)
    return torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), torch.zeros_like(dot))


class PHNHVI(PHN):
    """PHN-HVI: p rays per step, HV-gradient weights of their p loss vectors and a cosine penalty towards the rays."""

    name = "phn-hvi"
    target: ClassVar[str | None] = None  # no closed-form map: HV weights plus the cosine term
    default_batch: ClassVar[int] = 16  # settings.py: n_mo_sol = 16
    default_optimizer: ClassVar[str | None] = "adam"  # trainer.py
    default_lr: ClassVar[float | None] = 1e-3  # D5
    default_steps: ClassVar[int | None] = 300  # D5

    def __init__(
        self,
        ray_hidden: int = 100,
        K: int | None = None,
        n: int | None = None,
        batch: int = 16,
        lamda: float = 5.0,
        ref_point: float | Sequence[float] = 2.0,
        warmup_epochs: int = 1,
        partition: bool = True,
        ray_scaling: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(ray_hidden, K, n, batch, dtype)
        if not (math.isfinite(float(lamda)) and float(lamda) >= 0):
            raise ValueError(f"phn-hvi: lamda must be a finite number >= 0, got {lamda!r}")
        if int(warmup_epochs) < 0:
            raise ValueError(f"phn-hvi: warmup_epochs must be >= 0, got {warmup_epochs}")
        ref = torch.as_tensor(ref_point, dtype=torch.float64).reshape(-1)
        if ref.numel() < 1 or not bool(torch.isfinite(ref).all()):
            raise ValueError(f"phn-hvi: ref_point must be finite, got {ref_point!r}")
        self.lamda, self.ref_point, self.warmup_epochs = float(lamda), ref, int(warmup_epochs)
        self.partition, self.ray_scaling = bool(partition), bool(ray_scaling)
        self.epochs_done = 0  # counted by on_epoch_end: the warm-up lasts warmup_epochs epochs
        self.last_weights: Tensor | None = None  # (p, K) the HV weights of the last call (None in warm-up)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build (or check) the hypernetwork and restart the warm-up."""
        if K > 3:
            raise ValueError(f"phn-hvi: the exact hypervolume gradient is implemented for K <= 3 objectives, got K={K}")
        super().begin(K, n, steps=steps, ideal=ideal, initial_points=initial_points, problem=problem)
        self.epochs_done = 0

    def on_epoch_end(self, epoch: int) -> None:
        self.epochs_done += 1

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """p rays (p, K): K = 2 one angle per partition cell of [0.1, π/2 − 0.1], then rescaled (trainer.py; D3 otherwise)."""
        if num < 1 or K < 1:
            raise ValueError(f"phn-hvi: need num >= 1 and K >= 1, got {num}, {K}")
        if K == 1:
            r = torch.ones(num, 1, dtype=torch.float64)
        elif K == 2:
            u = torch.rand(num, generator=generator, dtype=torch.float64)  # (p,)
            if self.partition:
                width = (ANGLE_END - ANGLE_START) / num
                angle = ANGLE_START + (torch.arange(num, dtype=torch.float64) + u) * width  # φ_j in cell j
            else:
                angle = ANGLE_START + u * (ANGLE_END - ANGLE_START)  # φ_j ~ U(a, b) ("freely")
            r = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (p, 2)
            r = r / r.sum(1, keepdim=True)  # on the simplex
        else:
            r = sample_preferences(num, K, alpha=1.0, generator=generator)  # D3
        if self.ray_scaling:
            c = torch.randint(1, 5, (num, 1), generator=generator).to(torch.float64)  # U{1..4}
            c = c * (1.0 + 0.2 * torch.randn(num, 1, generator=generator, dtype=torch.float64)).abs()  # ·|N(1, 0.2)|
            r = r * c  # (p, K)
        return r

    def target_rays(self, preferences: Tensor) -> Tensor:
        """The rays r/||r|| (B, K) the cosine term pulls the losses onto (z = 0)."""
        r = torch.as_tensor(preferences, dtype=torch.float64)
        return r / torch.linalg.vector_norm(r, dim=-1, keepdim=True)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name=self.name)  # (p, K), (p, K)
        cos = ray_cosines(F, r.to(F))  # (p,)
        if self.epochs_done < self.warmup_epochs:
            self.last_weights = None
            return -cos.sum()  # warm-up: −Σ_j cos(ℓ_j, r_j) (D2)
        W = hv_weights(F, self.ref_point).to(F)  # (p, K), constants
        self.last_weights = W
        return (W * F).sum() - self.lamda * cos.sum()  # Σ_j Σ_k w_jk ℓ_jk − λ Σ_j cos(ℓ_j, r_j)


__all__ = ["PHNHVI", "hv_weights", "ray_cosines"]
