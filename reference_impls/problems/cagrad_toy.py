"""The 2-D toy of CAGrad (NeurIPS 2021), Nash-MTL (ICML 2022) and FAMO (NeurIPS 2023): non-convex, with a scale knob.

Formulas (checked against Cranial-XIX/CAGrad ``toy.py`` and AvivNavon/nash-mtl
``experiments/toy/problem.py``), x = (x_1, x_2), LOWER = 5e-6:

    f_1^a = log(max(|0.5(−x_1 − 7) − tanh(−x_2)|, LOWER)) + 6
    f_2^a = log(max(|0.5(−x_1 + 3) + tanh(−x_2) + 2|, LOWER)) + 6
    f_1^b = ((x_1 − 7)² + 0.1(x_2 + 8)²)/10 − 20
    f_2^b = ((x_1 + 7)² + 0.1(x_2 + 8)²)/10 − 20
    c_1 = max(tanh(x_2/2), 0),  c_2 = max(tanh(−x_2/2), 0)
    f_i = c_1 f_i^a + c_2 f_i^b,  then f_1 ← s·f_1      (Nash-MTL's ``scale``)

* Scale: ``scale=1`` in CAGrad's toy, ``scale=0.1`` in the Nash-MTL and FAMO toys (pass
  ``problem.scale=0.1`` to ``modl run``). Positive scaling changes the front, not the Pareto set.
* Starting points: ``inits="nash"`` (default): the five of Nash-MTL/FAMO, (−8.5, 7.5), (0, 0), (9, 9),
  (−7.5, −0.5), (9, −1); ``inits="cagrad"``: CAGrad's three, (−8.5, 7.5), (−8.5, −5), (9, 9).
* Runner defaults: Adam, lr 1e-3, 35 000 steps (Nash-MTL; FAMO runs 50 000, CAGrad 100 000).
* Pareto set (computed here, cached): in the lower half plane c_1 = 0 and f_i = c_2(x_2) f_i^b.
  Σ λ_i ∇f_i = 0 in x_1 gives λ_1 = (x_1 + 7)/14 ∈ [0, 1], hence x_1 ∈ [−7, 7]; in x_2 it gives
  h(x_2) = c_2'(x_2)(λ_1 f_1^b + λ_2 f_2^b) + c_2(x_2)·0.02(x_2 + 8) = 0, solved on [−10, −8]
  (vectorised bisection) for 1401 values of x_1: the points where the Pareto-stationarity measure
  vanishes along x_2.
  The curve is symmetric, x_2 = −8.3551 at x_1 = 0 (the line y = −8.3552 of CAGrad's plots) and
  −8.4345 at x_1 = ±7. The tests check that the PS-measure is ≈ 0 on it and positive off it.
* Pareto front: the image of that curve; HV at the reference (0, 0) = 335.61 (s = 1) and exactly
  s times that for scale s (33.561 for s = 0.1), measured here with 10⁵ front points.
  (method-specs.md quotes 335.54 and an x_2 drift "from −8.01"; the values above are the converged ones.)
* Jacobian: analytic, equal to autograd's (including torch's one-sided choices at the kinks x_2 = 0
  and |A_1| = 0, e.g. at the start (0, 0)); the tests compare both.
* Losses are negative (≈ −20 at best): log-based methods need a shift (FAMO's toy uses ℓ* = (−21·s, −21)).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem, distance_to_polyline, resample_by_arc_length

LOWER = 5e-6
INITS = {
    "nash": [(-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)],
    "cagrad": [(-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0)],
}
PLOT_RANGE = (-10.0, 10.0)  # square window of the papers' contour plots


@lru_cache(maxsize=1)
def _pareto_curve(num: int = 1401) -> np.ndarray:
    """(num, 2) points (x_1, x_2) of the Pareto set, x_1 ∈ [−7, 7], computed once (vectorised bisection)."""
    x1 = np.linspace(-7.0, 7.0, num)
    lam1 = (x1 + 7) / 14  # λ_1 from the x_1 equation

    def h(x2: np.ndarray) -> np.ndarray:
        c2 = np.tanh(-x2 / 2)  # c_2
        dc2 = -0.5 * (1 - c2 * c2)  # c_2'
        f1b = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        f2b = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        return dc2 * (lam1 * f1b + (1 - lam1) * f2b) + c2 * 0.02 * (x2 + 8)  # ∂/∂x_2 of Σ λ_i f_i

    lo, hi = np.full(num, -10.0), np.full(num, -8.0)
    if not ((h(lo) < 0).all() and (h(hi) > 0).all()):  # pragma: no cover - a fact about the formulas
        raise RuntimeError("cagrad-toy: the stationarity equation has no sign change on [-10, -8]")
    for _ in range(80):  # bisection: the bracket shrinks to rounding level
        mid = 0.5 * (lo + hi)
        neg = h(mid) < 0
        lo, hi = np.where(neg, mid, lo), np.where(neg, hi, mid)
    return np.stack([x1, 0.5 * (lo + hi)], axis=1)


class CAGradToy(Problem):
    id = "cagrad-toy"
    default_optimizer = "adam"
    default_steps = 35_000
    default_lr = 1e-3

    def __init__(self, scale: float = 1.0, inits: str = "nash", **kw: Any) -> None:
        super().__init__(2, 2, **kw)
        if not scale > 0:
            raise ValueError(f"cagrad-toy: scale must be positive, got {scale!r}")
        if inits not in INITS:
            raise ValueError(f"cagrad-toy: inits must be one of {', '.join(INITS)}, got {inits!r}")
        self.scale = float(scale)
        self.inits = inits
        self.hv_reference = (0.0, 0.0)
        # FAMO's toy (experiments/toy) shifts the losses by ℓ* = (−21·s, −21): every f_i > ℓ*_i.
        self.loss_lower_bound = (-21.0 * self.scale, -21.0)

    def _losses(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        f1a = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
        f2a = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
        f1b = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        f2b = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        c1 = torch.clamp(torch.tanh(x2 / 2), min=0)
        c2 = torch.clamp(torch.tanh(-x2 / 2), min=0)
        f1 = self.scale * (c1 * f1a + c2 * f1b)  # f_1 ← s·f_1
        f2 = c1 * f2a + c2 * f2b
        return torch.stack([f1, f2], dim=1)  # (B, 2)

    def _jacobian(self, x: Tensor) -> Tensor:
        """Analytic (B, 2, 2), equal to autograd's everywhere, kinks included (the tests check (0, 0)).

        At a kink autograd takes the derivative of the active branch as torch defines it:
        clamp(u, min=a) passes the gradient where u ≥ a, and |u| has derivative sign(u) (0 at 0).
        """
        x1, x2 = x[:, 0], x[:, 1]
        t, th = torch.tanh(x2), torch.tanh(x2 / 2)
        A1 = 0.5 * (-x1 - 7) - torch.tanh(-x2)  # f_1^a = log(max(|A1|, LOWER)) + 6
        A2 = 0.5 * (-x1 + 3) + torch.tanh(-x2) + 2
        dlog1 = torch.where(A1.abs() >= LOWER, torch.sign(A1) / A1.abs().clamp_min(LOWER), torch.zeros_like(A1))
        dlog2 = torch.where(A2.abs() >= LOWER, torch.sign(A2) / A2.abs().clamp_min(LOWER), torch.zeros_like(A2))
        sech2 = 1 - t**2  # d tanh(x_2)/dx_2
        g1a = torch.stack([-0.5 * dlog1, sech2 * dlog1], dim=1)  # ∇f_1^a, (B, 2)
        g2a = torch.stack([-0.5 * dlog2, -sech2 * dlog2], dim=1)  # ∇f_2^a
        f1a = torch.clamp(A1.abs(), LOWER).log() + 6
        f2a = torch.clamp(A2.abs(), LOWER).log() + 6
        f1b = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        f2b = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
        g1b = torch.stack([(x1 - 7) / 5, 0.02 * (x2 + 8)], dim=1)  # ∇f_1^b
        g2b = torch.stack([(x1 + 7) / 5, 0.02 * (x2 + 8)], dim=1)  # ∇f_2^b
        c1, c2 = torch.clamp(th, min=0), torch.clamp(-th, min=0)
        dth = 0.5 * (1 - th**2)  # d tanh(x_2/2)/dx_2
        dc1 = torch.where(th >= 0, dth, torch.zeros_like(th))
        dc2 = torch.where(-th >= 0, -dth, torch.zeros_like(th))
        e2 = torch.zeros_like(g1a)
        e2[:, 1] = 1.0
        g1 = c1[:, None] * g1a + c2[:, None] * g1b + (dc1 * f1a + dc2 * f1b)[:, None] * e2  # product rule
        g2 = c1[:, None] * g2a + c2[:, None] * g2b + (dc1 * f2a + dc2 * f2b)[:, None] * e2
        return torch.stack([self.scale * g1, g2], dim=1)  # (B, K=2, n=2)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F (B, 2) and J (B, 2, 2) in numpy: the formulas of :meth:`_losses` and :meth:`_jacobian` (same kink conventions).

        Small float64 batches (the runner's five starts) go through Python floats, ~5x faster than
        numpy on five points; float32 and large batches through numpy arrays. Both are tested against autograd.
        """
        if x.dtype == np.float64 and x.shape[0] <= 64:
            return self._scalar_value_and_jacobian(x)
        x1, x2 = x[:, 0], x[:, 1]
        tm, th = np.tanh(-x2), np.tanh(x2 / 2)  # tanh(−x_2), tanh(x_2/2)
        A1 = 0.5 * (-x1 - 7) - tm  # f_1^a = log(max(|A1|, LOWER)) + 6
        A2 = 0.5 * (-x1 + 3) + tm + 2
        a1, a2 = np.abs(A1), np.abs(A2)
        dlog1 = np.where(a1 >= LOWER, np.sign(A1) / np.maximum(a1, LOWER), 0.0)  # d log(max(|A1|, LOWER)) / dA1
        dlog2 = np.where(a2 >= LOWER, np.sign(A2) / np.maximum(a2, LOWER), 0.0)
        sech2 = 1 - tm * tm  # d tanh(x_2)/dx_2
        f1a = np.log(np.maximum(a1, LOWER)) + 6
        f2a = np.log(np.maximum(a2, LOWER)) + 6
        q = 0.1 * (x2 + 8) ** 2
        f1b = ((x1 - 7) ** 2 + q) / 10 - 20
        f2b = ((x1 + 7) ** 2 + q) / 10 - 20
        c1, c2 = np.maximum(th, 0.0), np.maximum(-th, 0.0)  # c_1, c_2
        dth = 0.5 * (1 - th * th)  # d tanh(x_2/2)/dx_2
        dc1 = np.where(th >= 0, dth, 0.0)  # clamp(u, min=0) passes the gradient where u ≥ 0 (torch)
        dc2 = np.where(-th >= 0, -dth, 0.0)
        gb2 = 0.02 * (x2 + 8)  # ∂f_i^b/∂x_2
        F = np.empty((x.shape[0], 2), dtype=x.dtype)  # (B, 2)
        J = np.empty((x.shape[0], 2, 2), dtype=x.dtype)  # (B, K=2, n=2)
        F[:, 0] = self.scale * (c1 * f1a + c2 * f1b)  # f_1 ← s·f_1
        F[:, 1] = c1 * f2a + c2 * f2b
        J[:, 0, 0] = self.scale * (c1 * (-0.5 * dlog1) + c2 * ((x1 - 7) / 5))  # product rule, ∂/∂x_1
        J[:, 0, 1] = self.scale * (c1 * (sech2 * dlog1) + c2 * gb2 + (dc1 * f1a + dc2 * f1b))  # ∂/∂x_2
        J[:, 1, 0] = c1 * (-0.5 * dlog2) + c2 * ((x1 + 7) / 5)
        J[:, 1, 1] = c1 * (-sech2 * dlog2) + c2 * gb2 + (dc1 * f2a + dc2 * f2b)
        return F, J

    def _scalar_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The formulas of :meth:`_np_value_and_jacobian` point by point in Python floats (float64)."""
        s, tanh, log = self.scale, math.tanh, math.log
        rows_f, rows_j = [], []
        for x1, x2 in x.tolist():
            tm, th = tanh(-x2), tanh(x2 / 2)  # tanh(−x_2), tanh(x_2/2)
            A1 = 0.5 * (-x1 - 7) - tm  # f_1^a = log(max(|A1|, LOWER)) + 6
            A2 = 0.5 * (-x1 + 3) + tm + 2
            a1, a2 = abs(A1), abs(A2)
            dlog1 = ((A1 > 0) - (A1 < 0)) / a1 if a1 >= LOWER else 0.0  # sign(A1)/|A1| where the clamp passes the gradient
            dlog2 = ((A2 > 0) - (A2 < 0)) / a2 if a2 >= LOWER else 0.0
            sech2 = 1 - tm * tm  # d tanh(x_2)/dx_2
            f1a = log(a1 if a1 > LOWER else LOWER) + 6
            f2a = log(a2 if a2 > LOWER else LOWER) + 6
            u, v1, v2 = x2 + 8, x1 - 7, x1 + 7
            q = 0.1 * (u * u)  # products, not **: a float power raises OverflowError where numpy gives inf
            f1b = (v1 * v1 + q) / 10 - 20
            f2b = (v2 * v2 + q) / 10 - 20
            c1 = th if th > 0 else 0.0  # c_1 = max(tanh(x_2/2), 0)
            c2 = -th if -th > 0 else 0.0
            dth = 0.5 * (1 - th * th)  # d tanh(x_2/2)/dx_2
            dc1 = dth if th >= 0 else 0.0  # clamp(u, min=0) passes the gradient where u ≥ 0 (torch)
            dc2 = -dth if -th >= 0 else 0.0
            gb2 = 0.02 * u  # ∂f_i^b/∂x_2
            rows_f.append((s * (c1 * f1a + c2 * f1b), c1 * f2a + c2 * f2b))
            rows_j.append(
                (
                    (s * (c1 * (-0.5 * dlog1) + c2 * (v1 / 5)), s * (c1 * (sech2 * dlog1) + c2 * gb2 + (dc1 * f1a + dc2 * f1b))),
                    (c1 * (-0.5 * dlog2) + c2 * (v2 / 5), c1 * (-sech2 * dlog2) + c2 * gb2 + (dc1 * f2a + dc2 * f2b)),
                )
            )
        return np.array(rows_f, dtype=np.float64).reshape(-1, 2), np.array(rows_j, dtype=np.float64).reshape(-1, 2, 2)  # (B, 2), (B, 2, 2)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        """The fixed starting points of the chosen paper (the seed is not used); ``num`` must be None or their count."""
        points = self._tensor(INITS[self.inits])  # (B, 2)
        if num is not None and int(num) != points.shape[0]:
            raise ValueError(f"{self.id}: the starting points are the paper's fixed {points.shape[0]}; cannot draw num={num}")
        return points

    def pareto_set(self, num: int = 1000) -> Tensor:
        curve = self._tensor(_pareto_curve())  # (1401, 2)
        return resample_by_arc_length(curve, num)

    def pareto_front(self, num: int = 1000) -> Tensor:
        dense = self._losses(self._tensor(_pareto_curve()))  # (1401, 2)
        return resample_by_arc_length(dense, num)

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_polyline(xb, self._tensor(_pareto_curve()))
