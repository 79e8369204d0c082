"""BiQuad / K-Quad: K isotropic quadratics f_i(x) = s_i·||x − a_i||², x ∈ R^n (convex, closed form).

K = 2 (default): a_1 = 0, a_2 = e_1 (the "bi-sphere" of the uncrowded-hypervolume benchmarks).
K ≥ 3: anchors a_i ~ N(0, I_n) drawn from ``anchor_seed``.

* Pareto set: conv{a_i}. The Hessians s_i·2I are all multiples of I, so Σ_i λ_i ∇f_i(x) = 0 has a
  solution λ ∈ Δ exactly when x ∈ conv{a_i}; for strictly convex objectives every Pareto-stationary
  point is Pareto optimal. Positive scales s_i change the weights, not the set.
* Pareto front (K = 2): x(t) = a_1 + t(a_2 − a_1) gives f = (s_1 t² D², s_2 (1 − t)² D²), D = ||a_1 − a_2||,
  i.e. √(f_1/s_1) + √(f_2/s_2) = D. For K ≥ 3 :meth:`pareto_front` samples the image of the hull
  (Dirichlet(1) weights), not uniformly on the front.
* Linear scalarisation with weights w ∈ Δ (s = 1) minimises at x* = Σ w_i a_i.
* HV reference: for K = 2, r = (s_1 D², s_2 D²), the front's extreme values; the front's HV there is
  s_1 s_2 D⁴ (1 − ∫_0^1 (1 − √u)² du) = (5/6)·s_1 s_2 D⁴ (0.83333 for D = 1, s = 1).
  For K ≥ 3, r_i = s_i·max_j ||a_j − a_i||², a bound of f_i on the hull.
* Starting points: 8 points ~ N(0, 2²·I) around the anchors' centroid (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem, arc_length_parameters, distance_to_hull


class BiQuad(Problem):
    id = "biquad"
    default_optimizer = "sgd"
    default_steps = 200
    default_lr = 0.05

    def __init__(
        self,
        K: int = 2,
        n: int = 2,
        scales: Sequence[float] | None = None,
        anchor_seed: int = 0,
        num_starts: int = 8,
        **kw: Any,
    ) -> None:
        super().__init__(K, n, **kw)
        if K == 2:
            anchors = torch.zeros(2, n, dtype=self.dtype)
            anchors[1, 0] = 1.0  # a_1 = 0, a_2 = e_1
        else:
            g = self._generator(anchor_seed)
            anchors = torch.randn(K, n, generator=g, dtype=self.dtype)  # (K, n)
        self.anchors = anchors.to(self.device)  # (K, n)
        s = torch.ones(K, dtype=self.dtype) if scales is None else torch.as_tensor(scales, dtype=self.dtype)
        if s.shape != (K,) or not bool((s > 0).all()):
            raise ValueError(f"biquad: scales must be {K} positive numbers, got {scales!r}")
        self.scales = s.to(self.device)  # (K,)
        self.num_starts = int(num_starts)
        if K == 2:
            D2 = float(((self.anchors[0] - self.anchors[1]) ** 2).sum())
            self.hv_reference = tuple(float(si) * D2 for si in self.scales)
        else:
            dist2 = torch.cdist(self.anchors, self.anchors) ** 2  # (K, K)
            self.hv_reference = tuple((self.scales * dist2.max(dim=0).values).tolist())

    def _losses(self, x: Tensor) -> Tensor:
        diff = x[:, None, :] - self.anchors[None]  # (B, K, n)
        return self.scales * (diff**2).sum(-1)  # f_i = s_i ||x − a_i||², (B, K)

    def _jacobian(self, x: Tensor) -> Tensor:
        return 2.0 * self.scales[None, :, None] * (x[:, None, :] - self.anchors[None])  # ∇f_i = 2 s_i (x − a_i), (B, K, n)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anchors, scales = self.anchors.numpy(), self.scales.numpy()  # (K, n), (K,)
        diff = x[:, None, :] - anchors[None]  # (B, K, n)
        F = scales * (diff**2).sum(-1)  # f_i = s_i ||x − a_i||², (B, K)
        return F, (2.0 * scales)[None, :, None] * diff  # ∇f_i = 2 s_i (x − a_i), (B, K, n)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        centre = self.anchors.mean(0)  # (n,)
        return centre + 2.0 * torch.randn(self._num_points(num), self.n, generator=g, dtype=self.dtype).to(self.device)

    def pareto_set(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            t = torch.linspace(0, 1, num, dtype=self.dtype, device=self.device)[:, None]  # (num, 1)
            return self.anchors[0] + t * (self.anchors[1] - self.anchors[0])  # (num, n)
        g = self._generator(12345)
        w = torch._standard_gamma(torch.ones(num, self.K, dtype=self.dtype), generator=g)
        w = (w / w.sum(1, keepdim=True)).to(self.device)  # Dirichlet(1), (num, K)
        return w @ self.anchors  # (num, n)

    def ideal_point(self) -> Tensor:
        """z* = 0 (K,) exactly: f_i = s_i||x − a_i||² reaches 0 at a_i, a point of the Pareto set."""
        return torch.zeros(self.K, dtype=self.dtype, device=self.device)

    def pareto_front(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            t = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
            D2 = ((self.anchors[0] - self.anchors[1]) ** 2).sum()

            def curve(t: Tensor) -> Tensor:
                return torch.stack([self.scales[0] * t**2 * D2, self.scales[1] * (1 - t) ** 2 * D2], dim=1)

            return curve(arc_length_parameters(t, curve(t), num))  # (num, 2), uniform in arc length
        return self._losses(self.pareto_set(num))

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_hull(xb, self.anchors)

    def linear_scalarisation_solution(self, w: Sequence[float] | Tensor) -> Tensor:
        """argmin_x Σ_i w_i f_i(x) = Σ_i w_i s_i a_i / Σ_i w_i s_i, (n,)."""
        w = torch.as_tensor(w, dtype=self.dtype, device=self.device) * self.scales
        return (w / w.sum()) @ self.anchors
