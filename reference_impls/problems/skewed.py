"""``zdt-skewed``: a ZDT-type problem whose front is strongly skewed, for adaptive reference vectors.

Same construction as ZDT1 (``zdt.py``: f_1 = x_1, g(x) = 1 + 9/(n − 1)·Σ_{i≥2} x_i, f_2 = g·h) with

    h = 1 − (f_1/g)^q,  q = 0.25 by default (q = ½ is ZDT1),

so the Pareto set is x_1 ∈ [0, 1], x_{2..n} = 0 (g = 1) and the Pareto front is

    f_2 = 1 − f_1^q,  f_1 ∈ [0, 1]   (convex for q < 1; ideal point (0, 0); nadir (1, 1)).

For q = ¼ the front is very irregular with respect to rays from the ideal point: it drops from
f_2 = 1 to f_2 ≈ 0.44 over f_1 ∈ [0, 0.1] and then flattens, so preferences (or rays) spread evenly
over the simplex put most solutions on the flat tail and few on the steep head (the setting where
adaptive reference vectors, Chen & Kwok 2022, are meant to help). Chosen here because its front
and Pareto set are known exactly (this is a construction of this repository, not a paper's toy).

* Box: [1e-6, 1 − 1e-6]^n as for ZDT (∂f_2/∂x_1 = −q (x_1/g)^{q−1} is singular at x_1 = 0).
* HV reference (1, 1): front HV = ∫_0^1 f_1^q df_1 = 1/(1 + q) (0.8 for q = ¼).
* Starting points: U(0, 1)^n, projected into the box; defaults as ZDT (Adam, 500 steps, lr 0.01).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import arc_length_parameters
from reference_impls.problems.zdt import _ZDT


class ZDTSkewed(_ZDT):
    id = "zdt-skewed"

    def __init__(self, n: int = 5, num_starts: int = 8, q: float = 0.25, **kw: Any) -> None:
        if not (0 < q < 1):
            raise ValueError(f"zdt-skewed: q must be in (0, 1), got {q}")
        self.q = float(q)
        super().__init__(n=n, num_starts=num_starts, **kw)

    def _h(self, f1: Tensor, g: Tensor) -> Tensor:
        return 1 - (f1 / g) ** self.q

    def _front(self, f1: Tensor) -> Tensor:
        return 1 - f1**self.q

    def _np_h_and_derivatives(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rq = r**self.q
        # f_2 = g − g^{1−q} x_1^q: ∂/∂x_1 = −q r^{q−1}, ∂/∂g = 1 − (1 − q) r^q
        return 1 - rq, -self.q * rq / r, 1 - (1 - self.q) * rq

    def pareto_front(self, num: int = 1000) -> Tensor:
        u = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
        f1 = u ** (1 / self.q)  # dense near f_1 = 0, where the front is steep
        f1 = arc_length_parameters(f1, torch.stack([f1, self._front(f1)], dim=1), num)  # uniform in arc length
        return torch.stack([f1, self._front(f1)], dim=1)  # (num, 2), exactly on the front

    def ideal_point(self) -> Tensor:
        return torch.zeros(2, dtype=self.dtype, device=self.device)


__all__ = ["ZDTSkewed"]
