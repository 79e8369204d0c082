"""Bi-sphere: the convex bi-objective benchmark of uncrowded hypervolume gradient ascent (id ``bi-sphere``).

Source: Deist, Maree, Alderliesten, Bosman, "Multi-objective Optimization by Uncrowded Hypervolume
Gradient Ascent", PPSN 2020 (arXiv 2007.04846), benchmark "bi-sphere"; official code
scmaree/uncrowded-hypervolume ``benchmark_functions/sphere-sep-1.h`` (problem 26) and the authors'
Python version timodeist/uncrowded_hypervolume_gradient_ascent
``functions_optimization_benchmarks.py`` ("bi-sphere-convex", problemNumber 26)::

    f_1(x) = ||x||²,   f_2(x) = ||x − e_1||²,   x ∈ R^n,

which is :class:`~reference_impls.problems.biquad.BiQuad` with K = 2 (anchors a_1 = 0, a_2 = e_1,
unit scales); this class keeps that closed form and changes only the defaults:

* n = 10 (both official codes: ``n_parameters = 10``; the README runs ``26 10 ...``);
* starting points x ~ U(−2, 2)^n (the Python version's ``init_lb = −2, init_ub = 2``; the C++
  README example draws from [−10, 10]: knob ``init_range=(-10, 10)``);
* HV reference point r = (11, 11) (``hypervolume_max_f0 = hypervolume_max_f1 = 11`` in
  sphere-sep-1.h; ``ref = [11, 11]`` in the Python version);
* 9 starting points (the paper's set size p = 9); runner defaults Adam, lr 0.04, 1000 steps (the
  Python version: step size 0.01 × the mean width of the initial range = 0.04, 10³ iterations).

Pareto set: the segment x(t) = t·e_1, t ∈ [0, 1]; front f = (t², (1 − t)²), i.e. √f_1 + √f_2 = 1.

Optimal µ-distribution (:meth:`BiSphere.optimal_hv_parameters`): the µ front points with the largest
hypervolume at r. With the points ordered by t, HV is a smooth function of t ∈ (0, 1)^µ and its
maximiser solves ∂HV/∂t_i = Σ_k ∂HV/∂f_k · df_k/dt_i = 0 (the µ-distribution condition of Auger,
Bader, Brockhoff, Zitzler, FOGA 2009), found here by Newton's method on the exact gradient
(``core.hypervolume.hypervolume_gradient``) and certified (gradient at rounding level, negative
definite Hessian: a strict local maximum; SolverError otherwise). For µ = 9 and r = (11, 11) its
hypervolume is 120.78767307497081, the "maximally achievable HV 120.78767307497085" for 9 solutions
that the official README quotes (value-to-reach 120.7876730749): the README figure is this optimal
9-point µ-distribution (agreement 4e-14; the tests reproduce it and check that random restarts find
no better stationary set).

Deviations from the official benchmark:
    D1. No parameter box: sphere-sep-1.h declares [−1000, 1000]^n (the C++ optimiser clamps to it;
        the Python version declares it and never uses it). From starts in [−2, 2]^n no run reaches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.biquad import BiQuad

#: the best hypervolume of 9 bi-sphere solutions at r = (11, 11), as printed in the official README
README_BEST_HV_9 = 120.78767307497085


class BiSphere(BiQuad):
    """f_1 = ||x||², f_2 = ||x − e_1||² on R^n (n = 10), HV reference (11, 11), starts ~ U(−2, 2)^n."""

    id = "bi-sphere"
    default_optimizer = "adam"  # the paper's UHV-Adam optimiser
    default_steps = 1000  # Python version: n_iterations = 10**3
    default_lr = 0.04  # 0.01 × mean(init_ub − init_lb) = 0.01 × 4

    def __init__(
        self,
        n: int = 10,
        init_range: Sequence[float] = (-2.0, 2.0),
        reference: Sequence[float] = (11.0, 11.0),
        num_starts: int = 9,
        **kw: Any,
    ) -> None:
        for knob in ("K", "scales", "anchor_seed"):
            if knob in kw:
                raise ValueError(f"bi-sphere: {knob} is fixed (two unit spheres centred at 0 and e_1); use biquad to change it")
        super().__init__(K=2, n=n, num_starts=num_starts, **kw)
        lo, hi = (float(v) for v in init_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bi-sphere: init_range must be (low, high) with low < high, got {tuple(init_range)!r}")
        self.init_range = (lo, hi)
        r = tuple(float(v) for v in reference)
        if len(r) != 2 or not all(np.isfinite(v) and v > 0 for v in r):
            raise ValueError(f"bi-sphere: reference must be two positive numbers, got {tuple(reference)!r}")
        self.hv_reference = r

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        """``num`` (default 9) points ~ U(low, high)^n (the official codes' uniform initialisation), seeded."""
        g = self._generator(seed)
        lo, hi = self.init_range
        u = torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype)  # (P, n)
        return (lo + (hi - lo) * u).to(self.device)

    # ------------------------------------------------------------------------------------------
    # The optimal µ-distribution on the front
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _front(t: np.ndarray) -> np.ndarray:
        return np.stack([t**2, (1.0 - t) ** 2], axis=1)  # f(t) = (t², (1 − t)²), (µ, 2)

    def _hv_and_t_gradient(self, t: np.ndarray) -> tuple[float, np.ndarray]:
        """HV of the front points f(t) at r and ∂HV/∂t (µ,) (exact: chain rule through the HV gradient)."""
        from reference_impls.core.hypervolume import hypervolume, hypervolume_gradient

        F = torch.from_numpy(self._front(t))  # (µ, 2)
        G = hypervolume_gradient(F, self.hv_reference).numpy()  # ∂HV/∂f, (µ, 2)
        dfdt = np.stack([2.0 * t, -2.0 * (1.0 - t)], axis=1)  # df/dt, (µ, 2)
        return hypervolume(F, self.hv_reference), (G * dfdt).sum(1)  # ∂HV/∂t_i = Σ_k ∂HV/∂f_ik · df_ik/dt_i

    def optimal_hv_parameters(self, num: int = 9, *, max_iter: int = 100) -> Tensor:
        """Front parameters t (num,) ascending of the num-point set with the largest HV at the reference.

        Newton's method on ∂HV/∂t = 0 from the evenly spread start t_i = (i − ½)/num, Hessian by
        central differences of the exact gradient, backtracking so that HV increases and the order
        of t is kept. Certified: max_i |∂HV/∂t_i| ≤ 1e3·ε·r_1·r_2 and a negative definite Hessian,
        else SolverError. Needs r ≥ (1, 1) (the front inside the box), else ValueError.
        """
        from reference_impls.core.solvers import SolverError

        if int(num) != num or num < 1:
            raise ValueError(f"bi-sphere: need num >= 1 points, got {num!r}")
        r1, r2 = self.hv_reference
        if r1 < 1.0 or r2 < 1.0:
            raise ValueError(f"bi-sphere: the optimal µ-distribution is computed for references r >= (1, 1), got {self.hv_reference}")
        num = int(num)
        t = (np.arange(num) + 0.5) / num  # (µ,)
        tol = 1e3 * np.finfo(np.float64).eps * r1 * r2  # the gradient's rounding level (HV ~ r_1 r_2)
        h = 1e-6

        def hessian(t: np.ndarray) -> np.ndarray:
            H = np.empty((num, num))
            for i in range(num):
                e = np.zeros(num)
                e[i] = h
                H[:, i] = (self._hv_and_t_gradient(t + e)[1] - self._hv_and_t_gradient(t - e)[1]) / (2 * h)
            return 0.5 * (H + H.T)

        hv, g = self._hv_and_t_gradient(t)
        for _ in range(max_iter):
            if np.abs(g).max() <= tol:
                break
            H = hessian(t)
            try:
                np.linalg.cholesky(-H)  # negative definite: Newton ascent direction
                d = np.linalg.solve(H, -g)
            except np.linalg.LinAlgError:
                d = g / np.abs(g).max() * 0.1 / num  # far from the optimum: a short gradient step
            step = 1.0
            while step > 1e-12:
                cand = t + step * d
                if (cand > 0).all() and (cand < 1).all() and (np.diff(cand) > 0).all():
                    hv_c, g_c = self._hv_and_t_gradient(cand)
                    if hv_c >= hv - 64 * np.finfo(np.float64).eps * r1 * r2:
                        break
                step *= 0.5
            else:
                raise SolverError("bi-sphere µ-distribution: line search failed")
            t, hv, g = cand, hv_c, g_c
        ok = np.abs(g).max() <= tol
        eig = np.linalg.eigvalsh(hessian(t)) if ok else np.array([0.0])
        if not ok or eig.max() >= 0:
            raise SolverError(f"bi-sphere µ-distribution not certified: max|∂HV/∂t| = {np.abs(g).max():.3g}, largest Hessian eigenvalue {eig.max():.3g}")
        return torch.as_tensor(t, dtype=self.dtype, device=self.device)

    def optimal_hv_front(self, num: int = 9) -> Tensor:
        """The HV-optimal num-point set in objective space (num, 2), ordered by f_1."""
        t = self.optimal_hv_parameters(num)
        return torch.stack([t**2, (1 - t) ** 2], dim=1)

    def optimal_hv_set(self, num: int = 9) -> Tensor:
        """The HV-optimal num-point set in decision space (num, n): x = t·e_1."""
        t = self.optimal_hv_parameters(num)
        X = torch.zeros(num, self.n, dtype=self.dtype, device=self.device)
        X[:, 0] = t
        return X

    def optimal_hypervolume(self, num: int = 9) -> float:
        """The largest HV of num solutions at the reference (120.78767307497 for num = 9, r = (11, 11))."""
        from reference_impls.core.hypervolume import hypervolume

        return hypervolume(self.optimal_hv_front(num), self.hv_reference)
