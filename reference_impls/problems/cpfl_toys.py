"""The convex examples of the controllable Pareto front learning papers (ids ``cpfl-ex1``, ``cpfl-ex2``).

Tuan, Dung, Thang, "A Hyper-Transformer model for Controllable Pareto Front Learning with Split
Feasibility Constraints" (arXiv 2402.05955, 2024), and the earlier CPFL framework paper (arXiv
2302.12487); official code tuantran23012000/CPFL_Hyper_Transformer,
``CPFL_MOP/Connected_PF/problems/get_problem.py`` (classes ``ex1``, ``ex2``) and ``train.py`` (the output
activations that keep x in its box: sigmoid for ex1, 5·sigmoid for ex2).

* ``cpfl-ex1``: f_1(x) = x, f_2(x) = (x − 1)², x ∈ C = [0, 1] (n = 1). Every x ∈ [0, 1] is Pareto
  optimal; front f_2 = (1 − f_1)², f_1 ∈ [0, 1] (convex).
* ``cpfl-ex2``: f_1(x) = (x_1² + x_2²)/50, f_2(x) = ((x_1 − 5)² + (x_2 − 5)²)/50, x ∈ C = [0, 5]² (n = 2).
  Pareto set: the segment x = 5t·(1, 1), t ∈ [0, 1]; front (t², (1 − t)²) (convex).

Ideal point z* = (0, 0) for both; HV reference (1, 1) (the front lies in [0, 1]²).

Chebyshev map (the criterion of the Hyper-Transformer paper, ``tools/scalarization_function.py``
``chebyshev_function``): for a preference r > 0 and a lower bound c (the reference point of the split
feasibility constraint, ``c_s`` in the official ``train.py``; c = 0 is the ideal point) that lies
below the front, x*(r) = argmin_{x ∈ C} max_i r_i (f_i(x) − c_i) lies on the Pareto set where the two
terms are equal (f_1 increases and f_2 decreases along it):

    ex1:  r_1 (x − c_1) = r_2 ((x − 1)² − c_2)  ⇒  r_2 x² − (2r_2 + r_1) x + r_2(1 − c_2) + r_1 c_1 = 0,
          x* = 2C / (B + √(B² − 4 r_2 C)),  B = 2r_2 + r_1,  C = r_2(1 − c_2) + r_1 c_1   (smaller root)
    ex2:  r_1 (t² − c_1) = r_2 ((1 − t)² − c_2)  ⇒  (r_1 − r_2) t² + 2r_2 t − C = 0,  C = r_2(1 − c_2) + r_1 c_1,
          t* = 2C / (2r_2 + √(4r_2² + 4(r_1 − r_2) C)),  x* = 5t*(1, 1)

(the root written without cancellation). With c = 0 and r = (1, 1): ex1 x* = (3 − √5)/2 = 0.382.
A vertex (r_j = 0) gives the minimiser of the other objective (x = 0 or 1; t = 0 or 1), which is the
unique Chebyshev optimum for c = 0; for c_i > 0 the optimum at a vertex is a whole interval and the
map raises a ValueError. Each solution is certified (the two terms equal to 1e-12 relative, x in C).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.sets import check_preferences
from reference_impls.core.solvers import SolverError
from reference_impls.problems.base import Problem, arc_length_parameters, distance_to_segment


class _CPFLToy(Problem):
    """Shared parts of the two bi-objective examples (K = 2, box C, front in [0, 1]²)."""

    default_optimizer = "adam"
    default_steps = 500
    default_lr = 1e-2
    side = 1.0  # C = [0, side]^n

    def __init__(self, n: int, num_starts: int = 8, **kw: Any) -> None:
        super().__init__(2, n, **kw)
        self.num_starts = int(num_starts)
        self.bounds = (torch.zeros(n, dtype=self.dtype, device=self.device), torch.full((n,), self.side, dtype=self.dtype, device=self.device))
        self.hv_reference = (1.0, 1.0)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return (self.side * torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype)).to(self.device)  # U(C)

    def ideal_point(self) -> Tensor:
        return torch.zeros(2, dtype=self.dtype, device=self.device)  # z* = (0, 0), attained at the ends of the Pareto set

    def _front_of(self, t: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def pareto_front(self, num: int = 1000) -> Tensor:
        t = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
        t = arc_length_parameters(t, self._front_of(t), num)  # uniform in arc length
        return self._front_of(t)  # (num, 2)

    def _root(self, r: Tensor, c: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _point(self, s: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def chebyshev_solution(self, preferences: Tensor, lower_bound: Any = None) -> tuple[Tensor, Tensor]:
        """x*(r) = argmin_{x ∈ C} max_i r_i (f_i(x) − c_i) in closed form (module docstring): (X* (B, n), F* (B, 2)).

        ``lower_bound`` c (2,) defaults to the ideal point 0; it must lie strictly below the front
        (c_1 < 1, c_2 < 1 and f_2 > c_2 where f_1 = c_1), else ValueError. Certified: the two weighted
        terms agree to 1e-12 relative (SolverError otherwise).
        """
        r = check_preferences(torch.as_tensor(preferences, dtype=torch.float64), None, 2, name=f"{self.id} preferences")
        r = r / r.sum(1, keepdim=True)  # (B, 2)
        c = torch.zeros(2, dtype=torch.float64) if lower_bound is None else torch.as_tensor(lower_bound, dtype=torch.float64).reshape(-1)
        if c.shape != (2,) or not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
            raise ValueError(f"{self.id}: the lower bound c must be 2 finite non-negative numbers, got {c.tolist()}")
        below = float(self._front_of(torch.sqrt(c[:1]).clamp(max=1.0) if self.id == "cpfl-ex2" else c[:1].clamp(max=1.0))[0, 1])
        if not (float(c[0]) < 1.0 and float(c[1]) < below):
            raise ValueError(f"{self.id}: the lower bound c = {c.tolist()} must lie strictly below the Pareto front")
        vertex = (r == 0).any(1)  # (B,)
        if bool(vertex.any()) and bool((c > 0).any()):
            raise ValueError(f"{self.id}: at a vertex of the simplex the Chebyshev optimum with c ≠ 0 is not unique (an interval)")
        s = self._root(r, c)  # (B,) the position on the Pareto set, in [0, 1]
        X = self._point(s).to(self.dtype)  # (B, n)
        F = self.losses(X)  # (B, 2)
        terms = r * (F.to(torch.float64) - c)  # r_i (f_i − c_i), (B, 2)
        scale = terms.abs().max(1).values + torch.finfo(torch.float64).eps
        bad = ~vertex & ((terms[:, 0] - terms[:, 1]).abs() > 1e-12 * scale)
        if bool(bad.any()) or not bool(((s >= 0) & (s <= 1)).all()):
            raise SolverError(f"{self.id} Chebyshev map: the weighted terms differ by {float(((terms[:, 0] - terms[:, 1]).abs() / scale).max()):.3e} (relative)")
        return X, F

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_segment(xb, torch.zeros(self.n, dtype=self.dtype, device=self.device), torch.full((self.n,), self.side, dtype=self.dtype, device=self.device))

    def pareto_set(self, num: int = 1000) -> Tensor:
        return self._point(torch.linspace(0, 1, num, dtype=torch.float64)).to(self.dtype)


class CPFLEx1(_CPFLToy):
    """ex1 of the official code: f_1 = x, f_2 = (x − 1)², x ∈ [0, 1]."""

    id = "cpfl-ex1"

    def __init__(self, **kw: Any) -> None:
        super().__init__(1, **kw)

    def _losses(self, x: Tensor) -> Tensor:
        return torch.stack([x[:, 0], (x[:, 0] - 1) ** 2], dim=1)  # (f_1, f_2) = (x, (x − 1)²), (B, 2)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        F = np.stack([x[:, 0], (x[:, 0] - 1) ** 2], axis=1)  # (B, 2)
        J = np.stack([np.ones_like(x), 2 * (x - 1)], axis=1)  # ∇f_1 = 1, ∇f_2 = 2(x − 1), (B, 2, 1)
        return F, J

    def _front_of(self, t: Tensor) -> Tensor:
        return torch.stack([t, (1 - t) ** 2], dim=1)  # (t, (1 − t)²)

    def _root(self, r: Tensor, c: Tensor) -> Tensor:
        B = 2 * r[:, 1] + r[:, 0]  # 2r_2 + r_1
        C = r[:, 1] * (1 - c[1]) + r[:, 0] * c[0]  # r_2(1 − c_2) + r_1 c_1
        disc = (B**2 - 4 * r[:, 1] * C).clamp(min=0)  # = r_1² + 4r_1r_2(1 − c_1) + 4r_2²c_2 ≥ 0
        return 2 * C / (B + torch.sqrt(disc))  # the smaller root, (B,)

    def _point(self, s: Tensor) -> Tensor:
        return s[:, None]  # x = s, (B, 1)


class CPFLEx2(_CPFLToy):
    """ex2 of the official code: f_1 = ||x||²/50, f_2 = ||x − 5·𝟙||²/50, x ∈ [0, 5]²."""

    id = "cpfl-ex2"
    side = 5.0

    def __init__(self, **kw: Any) -> None:
        super().__init__(2, **kw)
        self._five = torch.full((2,), 5.0, dtype=self.dtype, device=self.device)

    def _losses(self, x: Tensor) -> Tensor:
        f1 = (x**2).sum(1) / 50  # (B,)
        f2 = ((x - self._five.to(x)) ** 2).sum(1) / 50  # (B,)
        return torch.stack([f1, f2], dim=1)  # (B, 2)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        F = np.stack([(x**2).sum(1) / 50, ((x - 5) ** 2).sum(1) / 50], axis=1)  # (B, 2)
        J = np.stack([x / 25, (x - 5) / 25], axis=1)  # ∇f_1 = x/25, ∇f_2 = (x − 5)/25, (B, 2, 2)
        return F, J

    def _front_of(self, t: Tensor) -> Tensor:
        return torch.stack([t**2, (1 - t) ** 2], dim=1)  # x = 5t(1, 1): (t², (1 − t)²)

    def _root(self, r: Tensor, c: Tensor) -> Tensor:
        C = r[:, 1] * (1 - c[1]) + r[:, 0] * c[0]  # r_2(1 − c_2) + r_1 c_1
        disc = (4 * r[:, 1] ** 2 + 4 * (r[:, 0] - r[:, 1]) * C).clamp(min=0)
        den = 2 * r[:, 1] + torch.sqrt(disc)  # 0 only at r = e_1 with c = 0, where t* = 0
        return torch.where(den > 0, 2 * C / torch.where(den > 0, den, 1.0), 0.0)  # t* ∈ [0, 1], (B,)

    def _point(self, s: Tensor) -> Tensor:
        return 5 * s[:, None] * torch.ones(1, 2, dtype=s.dtype)  # x = 5t(1, 1), (B, 2)


__all__ = ["CPFLEx1", "CPFLEx2"]
