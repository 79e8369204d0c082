"""VLMOP2 (Fonseca–Fleming), the bi-objective toy of ParetoMTL, EPO and PHN (concave front).

f_1(x) = 1 − exp(−||x − 𝟙/√n||²),  f_2(x) = 1 − exp(−||x + 𝟙/√n||²),  x ∈ R^n (n = 20 as in
Xi-L/ParetoMTL ``run_synthetic_example.py`` and dbmptr/EPOSearch ``toy_biobjective.py``).

* Pareto set: x = (s/√n)·𝟙, s ∈ [−1, 1] (the segment between the two minimisers).
* Pareto front: (1 − e^{−(s−1)²}, 1 − e^{−(s+1)²}), each objective in [0, 1 − e^{−4}] = [0, 0.98168];
  concave, so linear scalarisation only reaches its two end points.
* HV reference (1, 1) (front HV 0.34212 there).
* Starting points: 8 points ~ U(−0.5, 0.5)^n (ParetoMTL's; x ~ N(0, I) starts on a plateau where
  f ≈ 1 and ∇f ≈ 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem, arc_length_parameters, distance_to_segment


class VLMOP2(Problem):
    id = "vlmop2"
    default_optimizer = "sgd"
    default_steps = 500
    default_lr = 0.5

    def __init__(self, n: int = 20, num_starts: int = 8, **kw: Any) -> None:
        super().__init__(2, n, **kw)
        self.num_starts = int(num_starts)
        self.hv_reference = (1.0, 1.0)
        self._c = torch.full((n,), 1.0 / math.sqrt(n), dtype=self.dtype, device=self.device)  # 𝟙/√n

    def _losses(self, x: Tensor) -> Tensor:
        f1 = 1 - torch.exp(-((x - self._c) ** 2).sum(1))  # (B,)
        f2 = 1 - torch.exp(-((x + self._c) ** 2).sum(1))  # (B,)
        return torch.stack([f1, f2], dim=1)  # (B, 2)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self._c.numpy()  # 𝟙/√n, (n,)
        u, v = x - c, x + c  # (B, n)
        e1, e2 = np.exp(-(u**2).sum(1)), np.exp(-(v**2).sum(1))  # (B,)
        F = np.stack([1 - e1, 1 - e2], axis=1)  # (B, 2)
        J = np.stack([2 * e1[:, None] * u, 2 * e2[:, None] * v], axis=1)  # ∇f_i = 2 e^{−||x ∓ c||²} (x ∓ c), (B, 2, n)
        return F, J

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return (torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype) - 0.5).to(self.device)

    def pareto_set(self, num: int = 1000) -> Tensor:
        s = torch.linspace(-1, 1, num, dtype=self.dtype, device=self.device)[:, None]
        return s * self._c  # (num, n)

    def pareto_front(self, num: int = 1000) -> Tensor:
        s = torch.linspace(-1, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
        s = arc_length_parameters(s, self._front(s), num)  # uniform in arc length
        return self._front(s)  # (num, 2)

    @staticmethod
    def _front(s: Tensor) -> Tensor:
        return torch.stack([1 - torch.exp(-((s - 1) ** 2)), 1 - torch.exp(-((s + 1) ** 2))], dim=1)

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_segment(xb, -self._c, self._c)
