r"""HV maximisation for front prediction: P networks trained per sample on the hypervolume gradient (hv-maximization).

Paper: Deist, Grewal, Dankers, Alderliesten & Bosman, "Multi-objective learning using HV
maximization", EMO 2023 (LNCS 13970, pp. 103–117, doi 10.1007/978-3-031-27250-9_8); first version
"Multi-objective learning to predict Pareto fronts using hypervolume maximization", arXiv 2102.04523
(2021). The paper's full text was not reachable here: the rule follows its abstract (losses weighted by
their HV-maximising gradients, on the fronts of individual samples) and the official code:
timodeist/multi_objective_learning ``mo_optimizers/hv_maximization.py`` (``HvMaximization.compute_weights``),
``mo_optimizers/functions_hv_grad_3d.py`` (the HIGA-MO gradient of Wang et al., EMO 2017, by the
sweep of Emmerich & Deutz 2014) and ``run_mo_regression.py`` (``dynamic_weight_optimization_per_sample``).

Update rule:
    :math:`P` networks with parameters :math:`x_p` give, for every sample :math:`s` of
    :math:`N`, loss vectors :math:`L_{ps} \in \mathbb{R}^K`. Per sample, the networks are sorted
    into non-dominated fronts (every network is in one front, :math:`\mathcal{F}_s(p)` is the one
    holding :math:`p`), the reference point is the dynamic one of the official code
    (:math:`r` the fixed reference point, factor 1.1), and each network's weights are minus the
    hypervolume gradient of its own front, at unit length (``obj_space_normalize``; zero rows, for
    points on or outside the reference point, stay zero, D2):

    .. math::

        r_s = \max\Big(r,\ 1.1 \max_p L_{ps}\Big), \qquad G_{ps} = \frac{\partial\, \mathrm{HV}\big(\mathcal{F}_s(p);\ r_s\big)}{\partial L_{ps}} \le 0, \qquad W_{ps} = -\frac{G_{ps}}{\lVert G_{ps} \rVert}

    (maxima entrywise). Each network then descends its weighted loss averaged over the samples,
    with the weights held constant (``dynamic_loss`` of ``run_mo_regression.py``), and Adam steps
    every network:

    .. math::

        D_p = \nabla_{x_p} \frac{1}{N} \sum_{s=1}^N \sum_{k=1}^K W_{psk}\, L_{psk}(x_p)

    so a dominated network climbs the hypervolume of its own front instead of getting a zero
    gradient, and each network's direction has the same weight in every sample. For
    :math:`K = 2` the gradient of a point inside :math:`r_s` is the exact 2-D sweep, with
    :math:`L^{\text{prev}}` and :math:`L^{\text{next}}` its neighbours in its front sorted by the
    first loss (the reference point's coordinates at the ends):

    .. math::

        \frac{\partial \mathrm{HV}}{\partial L_{ps1}} = -\big(L^{\text{prev}}_{2} - L_{ps2}\big), \qquad \frac{\partial \mathrm{HV}}{\partial L_{ps2}} = -\big(L^{\text{next}}_{1} - L_{ps1}\big)

    On a point problem (:math:`N = 1`, no per-sample losses) :meth:`step` is the same rule with
    :math:`L = F`: :math:`D_p = \sum_k W_{pk} \nabla f_k(x_p)`.

This is :meth:`sample_weights` plus the set runner's per-sample branch (``per_sample = True``;
:func:`reference_impls.core.hooks.set_direction`).

HV gradients come from :mod:`reference_impls.core.hypervolume` (``nondominated_fronts``,
``hypervolume_gradient``) for K = 1, 3 (and in the tests); for K = 2 a batched form of the same exact
gradient runs over all N samples at once (:func:`_gradient_2d`, the 2-D sweep above, neighbours
within the same front), since a per-sample Python loop costs ~1 s per step at N = 200; the tests
check it against the per-sample functions on random, tied and duplicated inputs.

Defaults (``mo_regression_2obj.py``): reference point r = (20, 20) (here 20 in every objective),
dynamic factor 1.1, per-network normalisation on; Adam lr 1e-3, β = (0.5, 0.999) (``default_betas``);
P = 5 networks of 2 × 100 ReLU and 20000 iterations are the problem's (``mo-regression``, 2000 steps
for CI).

Deviations:
  D1. Exact duplicates (identical loss vectors within a front) all get the gradient of the
      de-duplicated front, as the official ``grad_multi_sweep_with_duplicate_handling`` gives them;
      ``core.hypervolume`` gives later duplicates zero rows, so the K ≠ 2 path maps each duplicate to
      its first copy's row. Identical networks therefore move identically and never separate
      (tested: a defined result, the official behaviour).
  D2. A row is normalised whenever its norm is > 0 (the official code skips normalisation when
      ``np.isclose(norm, 0)``, i.e. a norm ≤ 1e-8, a scale-dependent threshold); zero rows (points
      on or outside r) stay zero.
  D3. K = 3 with contributing points that share a coordinate: ``core.hypervolume``'s one-sided
      derivative (for increasing f) instead of the official code's zero rows for such points (set U,
      with a printed warning). K = 2 fronts cannot hold such points (one would dominate the other).
  D4. float64 (the official code computes weights in numpy float64 and trains in float32).
  D5. Full batch as the official code; the P networks are one batched tensor (P, n) stepped by one
      Adam, which is element-wise and so equals the official P separate Adams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod

REFERENCE = 20.0  # mo_regression_2obj.py: ref_point (20, 20)
DYNAMIC_FACTOR = 1.1  # hv_maximization.py: dyn_ref_point = 1.1 · max loss


class HVMaximization(SetMethod):
    """Per-sample HV-gradient weights of P solutions (Deist et al. 2021); see the module docstring.

    Args:
        ref_point: the reference point r (a float for every objective, or a K-sequence); the
            dynamic point max(r, 1.1·max_p L_p) is used per sample.
        dynamic_factor: the factor 1.1 of the dynamic reference point (≥ 1).
        normalize: scale each network's weight vector to unit length per sample (the official
            ``obj_space_normalize``, default True).
    """

    name = "hv-maximization"
    needs_preferences = False
    per_sample = True
    default_optimizer = "adam"  # run_mo_regression.py: torch.optim.Adam per network
    default_lr = 1e-3  # mo_regression_2obj.py
    default_betas: ClassVar[tuple[float, float] | None] = (0.5, 0.999)  # mo_regression_2obj.py

    def __init__(self, ref_point: float | Sequence[float] = REFERENCE, dynamic_factor: float = DYNAMIC_FACTOR, normalize: bool = True) -> None:
        ref = torch.as_tensor(ref_point, dtype=torch.float64).reshape(-1)
        if ref.numel() < 1 or not bool(torch.isfinite(ref).all()):
            raise ValueError(f"hv-maximization: ref_point must be finite, got {ref_point!r}")
        if not (float(dynamic_factor) >= 1.0 and float(dynamic_factor) < float("inf")):
            raise ValueError(f"hv-maximization: dynamic_factor must be a finite number >= 1, got {dynamic_factor!r}")
        self.ref_point = ref  # (1,) or (K,)
        self.dynamic_factor = float(dynamic_factor)
        self.normalize = bool(normalize)

    def reference(self, L: Tensor) -> Tensor:
        """The dynamic reference points r_s = max(r, 1.1·max_p L_ps·) (N, K) for L (P, N, K)."""
        K = L.shape[2]
        ref = self.ref_point.to(L)
        if ref.numel() == 1:
            ref = ref.expand(K)
        elif ref.numel() != K:
            raise ValueError(f"hv-maximization: ref_point has {ref.numel()} entries but the problem has K={K} objectives")
        return torch.maximum(ref[None, :], self.dynamic_factor * L.max(0).values)  # (N, K)

    def sample_weights(self, L: Tensor) -> Tensor:
        """W (P, N, K): per sample, minus the HV gradient of each network's own front at r_s, unit length per (p, s)."""
        if L.ndim != 3:
            raise ValueError(f"hv-maximization: expected per-sample losses of shape (P, N, K), got {tuple(L.shape)}")
        L = L.detach().to(torch.float64)
        if not bool(torch.isfinite(L).all()):
            raise ValueError("hv-maximization: the losses contain NaN or infinite values")
        ref = self.reference(L)  # (N, K)
        K = L.shape[2]
        if K == 2:
            G = _gradient_2d(L.transpose(0, 1), ref).transpose(0, 1)  # (P, N, 2), ≤ 0
        elif K <= 3:
            G = torch.stack([_front_gradient(L[:, s], ref[s]) for s in range(L.shape[1])], dim=1)  # (P, N, K)
        else:
            raise ValueError(f"hv-maximization: the exact hypervolume gradient is implemented for K <= 3 objectives, got K={K}")
        W = -G  # the HV-increasing weights, ≥ 0
        if self.normalize:
            norm = torch.linalg.vector_norm(W, dim=2, keepdim=True)  # (P, N, 1)
            W = torch.where(norm > 0, W / torch.where(norm > 0, norm, 1.0), 0.0)  # w / ‖w‖, zero rows stay 0
        return W

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        """N = 1: D_p = Σ_k W_pk ∇f_pk with W = sample_weights(F as one sample)."""
        if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
            raise ValueError("hv-maximization: the losses or their Jacobians contain NaN or infinite values")
        W = self.sample_weights(F[:, None, :])[:, 0].to(J)  # (P, K)
        return torch.einsum("pk,pkn->pn", W, J)  # (P, n)


def _ranks(L: Tensor) -> Tensor:
    """Non-dominated sorting per sample: L (N, P, K) -> the front index (N, P), 0 first.

    t dominates s iff L_t ≤ L_s everywhere and < somewhere (``core.hypervolume``'s relation, so exact
    duplicates share a front).
    """
    dom = (L[:, :, None, :] <= L[:, None, :, :]).all(3) & (L[:, :, None, :] < L[:, None, :, :]).any(3)  # (N, t, s)
    N, P = L.shape[:2]
    rank = torch.full((N, P), -1, dtype=torch.long, device=L.device)
    remaining = torch.ones(N, P, dtype=torch.bool, device=L.device)
    for r in range(P):
        if not bool(remaining.any()):
            break
        front = remaining & ~(dom & remaining[:, :, None]).any(1)  # no remaining point dominates it
        rank[front] = r
        remaining &= ~front
    return rank


def _gradient_2d(L: Tensor, ref: Tensor) -> Tensor:
    """∂HV(own front; r_s)/∂L (N, P, 2) for L (N, P, 2) and references (N, 2), all samples at once.

    Within p's front, the inside points (L < r_s strictly) sorted by f_1 have f_2 descending; p's left
    neighbour is the one with the largest f_1 below p's, i.e. the smallest f_2 among those (r_2 if
    none), its right neighbour the smallest f_1 above p's (r_1 if none). Duplicates have neither and
    get the same row (D1). Points not strictly inside get zero rows.
    """
    rank = _ranks(L)  # (N, P)
    inside = (L < ref[:, None, :]).all(2)  # (N, P)
    f1, f2 = L[..., 0], L[..., 1]  # (N, P)
    peer = (rank[:, :, None] == rank[:, None, :]) & inside[:, None, :]  # [n, p, q]: q in p's front, inside
    inf = torch.tensor(float("inf"), dtype=L.dtype, device=L.device)
    left = peer & (f1[:, None, :] < f1[:, :, None])  # q left of p
    right = peer & (f1[:, None, :] > f1[:, :, None])  # q right of p
    f2_prev = torch.where(left, f2[:, None, :], inf).min(2).values  # (N, P)
    f2_prev = torch.where(torch.isinf(f2_prev), ref[:, 1:2].expand_as(f2_prev), f2_prev)  # r_2 for the first point
    f1_next = torch.where(right, f1[:, None, :], inf).min(2).values
    f1_next = torch.where(torch.isinf(f1_next), ref[:, 0:1].expand_as(f1_next), f1_next)  # r_1 for the last point
    G = -torch.stack([f2_prev - f2, f1_next - f1], dim=2)  # ∂HV/∂f_1 = −(f_2(prev) − f_2), ∂HV/∂f_2 = −(f_1(next) − f_1)
    return torch.where(inside[:, :, None], G, 0.0)  # (N, P, 2)


def _front_gradient(F: Tensor, ref: Tensor) -> Tensor:
    """One sample, any K ≤ 3: ∂HV(own front; ref)/∂F (P, K) with ``core.hypervolume``; duplicates share their first copy's row (D1)."""
    from reference_impls.core.hypervolume import hypervolume_gradient, nondominated_fronts

    G = torch.zeros_like(F)
    for front in nondominated_fronts(F):
        Ff = F[front]  # (M, K)
        unique, inverse = torch.unique(Ff, dim=0, return_inverse=True)  # (U, K), (M,)
        G[front] = hypervolume_gradient(unique, ref)[inverse].to(F)  # the de-duplicated front's gradient, per copy
    return G


__all__ = ["HVMaximization"]
