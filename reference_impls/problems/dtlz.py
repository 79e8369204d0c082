"""DTLZ2 (spherical front), box-constrained, K = 3 objectives and n = K − 1 + k variables (k = 5).

g(x) = Σ_{i≥K} (x_i − 0.5)²,  f_1 = (1 + g) Π_{j<K} cos(π x_j / 2),
f_m = (1 + g) (Π_{j≤K−m} cos(π x_j / 2)) sin(π x_{K−m+1} / 2) for m = 2..K
(K = 3: f_1 = (1+g) cos cos, f_2 = (1+g) cos(πx_1/2) sin(πx_2/2), f_3 = (1+g) sin(πx_1/2)).

* Box [0, 1]^n (no singularity, so no inner margin). Pareto set: x_{K..n} = 0.5, x_{1..K−1} ∈ [0, 1].
* Pareto front: the positive orthant of the unit sphere, Σ f_i² = 1, f ≥ 0.
* HV reference (1.1, ..., 1.1): for K = 3 the front's HV is 1.1³ − π/6 = 0.80740 (every y ≥ 0 with
  ||y|| ≥ 1 is dominated by y/||y||).
* Starting points: 8 points ~ U(0, 1)^n.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from reference_impls.problems.base import Problem


class DTLZ2(Problem):
    id = "dtlz2"
    default_optimizer = "adam"
    default_steps = 500
    default_lr = 0.01

    def __init__(self, K: int = 3, k: int = 5, num_starts: int = 8, **kw: Any) -> None:
        if K < 2 or k < 1:
            raise ValueError(f"dtlz2: need K >= 2 and k >= 1, got K={K}, k={k}")
        super().__init__(K, K - 1 + k, **kw)
        self.num_starts = int(num_starts)
        self.bounds = (
            torch.zeros(self.n, dtype=self.dtype, device=self.device),
            torch.ones(self.n, dtype=self.dtype, device=self.device),
        )
        self.hv_reference = (1.1,) * K

    def _losses(self, x: Tensor) -> Tensor:
        K = self.K
        g = ((x[:, K - 1 :] - 0.5) ** 2).sum(1)  # (B,)
        theta = x[:, : K - 1] * (math.pi / 2)  # (B, K-1)
        cos, sin = torch.cos(theta), torch.sin(theta)
        out = []
        for m in range(1, K + 1):
            f = 1 + g
            for j in range(K - m):
                f = f * cos[:, j]
            if m > 1:
                f = f * sin[:, K - m]
            out.append(f)
        return torch.stack(out, dim=1)  # (B, K)

    def initial_points(self, seed: int = 0) -> Tensor:
        g = self._generator(seed)
        return torch.rand(self.num_starts, self.n, generator=g, dtype=self.dtype).to(self.device)

    def pareto_set(self, num: int = 1000) -> Tensor:
        g = self._generator(54321)
        x = torch.full((num, self.n), 0.5, dtype=self.dtype)
        x[:, : self.K - 1] = torch.rand(num, self.K - 1, generator=g, dtype=self.dtype)
        return x.to(self.device)

    def pareto_front(self, num: int = 1000) -> Tensor:
        """``num`` points uniform (in area) on the positive unit-sphere orthant: |z|/||z||, z ~ N(0, I), seeded."""
        g = self._generator(54321)
        z = torch.randn(num, self.K, generator=g, dtype=self.dtype).abs()
        return (z / torch.linalg.vector_norm(z, dim=1, keepdim=True)).to(self.device)  # (num, K)

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        head = xb[:, : self.K - 1]
        head_gap = head - head.clamp(0, 1)
        return torch.sqrt((head_gap**2).sum(1) + ((xb[:, self.K - 1 :] - 0.5) ** 2).sum(1))  # (B,)
