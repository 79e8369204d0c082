"""ZDT1 (convex front) and ZDT2 (concave front), box-constrained, n = 5 by default (30 in the original).

g(x) = 1 + 9/(n − 1)·Σ_{i≥2} x_i,  f_1 = x_1,  f_2 = g·(1 − √(f_1/g)) (ZDT1) or g·(1 − (f_1/g)²) (ZDT2).

* Box: x ∈ [0, 1]^n. Documented choice: :meth:`project` clamps to [1e-6, 1 − 1e-6] (as
  gnobitab/MultiObjectiveSampling does) because ∂f_2/∂x_1 = −½√(g/x_1) is singular at x_1 = 0
  (ZDT1); the losses themselves are the exact ZDT formulas (checked against pymoo).
* Pareto set: x_1 ∈ [0, 1], x_{2..n} = 0 (the clamped optimum x_{2..n} = 1e-6 is at distance
  1e-6·√(n − 1) from it). Pareto front: f_2 = 1 − √f_1 (ZDT1), 1 − f_1² (ZDT2), f_1 ∈ [0, 1].
* HV reference (1, 1): front HV 2/3 (ZDT1) and 1/3 (ZDT2).
* Starting points: 8 points ~ U(0, 1)^n, projected into the box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem, arc_length_parameters

EPS = 1e-6  # distance kept from the box faces


class _ZDT(Problem):
    default_optimizer = "adam"
    default_steps = 500
    default_lr = 0.01

    def __init__(self, n: int = 5, num_starts: int = 8, **kw: Any) -> None:
        if n < 2:
            raise ValueError(f"{self.id}: n must be at least 2, got {n}")
        super().__init__(2, n, **kw)
        self.num_starts = int(num_starts)
        self.bounds = (
            torch.full((n,), EPS, dtype=self.dtype, device=self.device),
            torch.full((n,), 1 - EPS, dtype=self.dtype, device=self.device),
        )
        self.hv_reference = (1.0, 1.0)

    def _h(self, f1: Tensor, g: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _front(self, f1: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _losses(self, x: Tensor) -> Tensor:
        f1 = x[:, 0]  # (B,)
        g = 1 + 9.0 / (self.n - 1) * x[:, 1:].sum(1)  # (B,)
        f2 = g * self._h(f1, g)  # (B,)
        return torch.stack([f1, f2], dim=1)  # (B, 2)

    def _np_h_and_derivatives(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - interface
        """(h(r), ∂f_2/∂x_1, (∂f_2/∂g)) for r = f_1/g, with f_2 = g·h(r)."""
        raise NotImplementedError

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = 9.0 / (self.n - 1)  # ∂g/∂x_i, i ≥ 2
        g = 1 + c * x[:, 1:].sum(1)  # (B,)
        r = x[:, 0] / g  # f_1 / g, (B,)
        h, d1, dg = self._np_h_and_derivatives(r)
        F = np.stack([x[:, 0], g * h], axis=1)  # (B, 2)
        J = np.zeros((x.shape[0], 2, self.n), dtype=x.dtype)  # (B, 2, n)
        J[:, 0, 0] = 1.0  # ∇f_1 = e_1
        J[:, 1, 0] = d1  # ∂f_2/∂x_1
        J[:, 1, 1:] = (c * dg)[:, None]  # ∂f_2/∂x_i = (∂f_2/∂g)·9/(n − 1)
        return F, J

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return self.project(torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype).to(self.device))

    def pareto_set(self, num: int = 1000) -> Tensor:
        x = torch.zeros(num, self.n, dtype=self.dtype, device=self.device)
        x[:, 0] = torch.linspace(0, 1, num, dtype=self.dtype, device=self.device)
        return x  # (num, n)

    def pareto_front(self, num: int = 1000) -> Tensor:
        u = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
        f1 = u**2 if self.id == "zdt1" else u  # denser near f_1 = 0, where ZDT1's front is steep
        f1 = arc_length_parameters(f1, torch.stack([f1, self._front(f1)], dim=1), num)  # uniform in arc length
        return torch.stack([f1, self._front(f1)], dim=1)  # (num, 2), exactly on the front

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        x1_gap = xb[:, 0] - xb[:, 0].clamp(0, 1)  # (B,)
        return torch.sqrt(x1_gap**2 + (xb[:, 1:] ** 2).sum(1))  # (B,)


class ZDT1(_ZDT):
    id = "zdt1"

    def _h(self, f1: Tensor, g: Tensor) -> Tensor:
        return 1 - torch.sqrt(f1 / g)

    def _front(self, f1: Tensor) -> Tensor:
        return 1 - torch.sqrt(f1)

    def _np_h_and_derivatives(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sr = np.sqrt(r)
        return 1 - sr, -0.5 / sr, 1 - 0.5 * sr  # f_2 = g − √(x_1 g): ∂/∂x_1 = −½/√r, ∂/∂g = 1 − ½√r


class ZDT2(_ZDT):
    id = "zdt2"

    def _h(self, f1: Tensor, g: Tensor) -> Tensor:
        return 1 - (f1 / g) ** 2

    def _front(self, f1: Tensor) -> Tensor:
        return 1 - f1**2

    def _np_h_and_derivatives(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return 1 - r**2, -2 * r, 1 + r**2  # f_2 = g − x_1²/g: ∂/∂x_1 = −2r, ∂/∂g = 1 + r²


__all__ = ["ZDT1", "ZDT2", "EPS"]
