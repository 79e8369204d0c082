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

import numpy as np
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

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K = self.K
        tail = x[:, K - 1 :] - 0.5  # (B, k)
        g1 = 1 + (tail**2).sum(1)  # 1 + g, (B,)
        theta = x[:, : K - 1] * (math.pi / 2)  # (B, K-1)
        cos, sin = np.cos(theta), np.sin(theta)
        B = x.shape[0]
        F = np.empty((B, K), dtype=x.dtype)
        J = np.zeros((B, K, self.n), dtype=x.dtype)  # (B, K, n)
        for m in range(1, K + 1):
            # P_m = Π_{j<K−m} cos θ_j · (sin θ_{K−m} if m > 1), f_m = (1 + g) P_m; factor j of P_m and its derivative:
            factors = [(cos[:, j], -sin[:, j]) for j in range(K - m)] + ([(sin[:, K - m], cos[:, K - m])] if m > 1 else [])
            P = np.ones(B, dtype=x.dtype)
            for value, _ in factors:
                P = P * value
            F[:, m - 1] = g1 * P
            J[:, m - 1, K - 1 :] = (2 * P)[:, None] * tail  # ∂f_m/∂x_i = 2(x_i − ½) P_m, i ≥ K
            for i, (_, derivative) in enumerate(factors):
                dP = derivative
                for j, (value, _) in enumerate(factors):
                    if j != i:
                        dP = dP * value
                J[:, m - 1, i if i < K - m else K - m] = g1 * dP * (math.pi / 2)  # ∂f_m/∂x_j = (1 + g) ∂P_m/∂θ_j · π/2
        return F, J

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype).to(self.device)

    def pareto_set(self, num: int = 1000) -> Tensor:
        g = self._generator(54321)
        x = torch.full((num, self.n), 0.5, dtype=self.dtype)
        x[:, : self.K - 1] = torch.rand(num, self.K - 1, generator=g, dtype=self.dtype)
        return x.to(self.device)

    def ideal_point(self) -> Tensor:
        """z* = 0 (K,) exactly: the front is the positive orthant of the unit sphere: each f_i reaches 0."""
        return torch.zeros(self.K, dtype=self.dtype, device=self.device)

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
