"""Metrics for toy runs: hypervolume, IGD / IGD+, Pareto-stationarity, preference errors, uniformity.

All objective vectors are minimised. Point sets are (N, K) tensors or arrays; set metrics are
computed in float64 numpy and returned as Python floats, per-point metrics as (B,) tensors.

* :func:`hypervolume` — exact for K ≤ 3 (K = 2: a sweep over the points sorted by f_1; K = 3:
  slicing along f_3 with an incrementally updated 2-D staircase, O(N²) worst case); K > 3 raises
  unless ``monte_carlo=True`` (a seeded Monte-Carlo estimate).
* :func:`igd`, :func:`igd_plus` — against a sample of the analytic front (``problem.pareto_front``).
* :func:`pareto_stationarity` — PS(x) = min_{λ∈Δ} ||Σ_i λ_i g_i||, the norm of the min-norm point of
  conv{g_i} (``reference_impls.core.solvers.min_norm_weights``); ``normalize=True`` uses g_i/||g_i||.
* :func:`projected_pareto_stationarity` — for box problems, min_{λ∈Δ} ||x − Π_box(x − Σ_i λ_i g_i)||.
* :func:`preference_cosine_error`, :func:`epo_non_uniformity` — preference errors (1 − cos to a ray;
  EPO's KL non-uniformity of r ⊙ F).
* :func:`preference_distance`, :func:`preference_angle` — distance and angle of F − z from each
  solution's target ray (set methods' ``target_rays``).
* :func:`uniformity` — l_min, the smallest pairwise distance of a solution set (the "spread").
* :func:`coverage`, :func:`covering_radius` — how much of a front sample lies within δ of the set,
  and the largest distance of a front sample point to the set.
* :func:`worst_objective`, :func:`mean_objective` — the few-for-many values of a set F (P, K):
  max_i min_p F_pi (TCH-Set at z = 0) and (1/K) Σ_i min_p F_pi (sum-of-minimum / K).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _points(F: Any, name: str = "F") -> np.ndarray:
    if isinstance(F, Tensor):
        F = F.detach().cpu().numpy()
    F = np.asarray(F, dtype=np.float64)
    if F.ndim == 1:
        F = F[None, :]
    if F.ndim != 2:
        raise ValueError(f"{name}: expected a point set of shape (N, K), got shape {F.shape}")
    if not np.isfinite(F).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return F


# ----------------------------------------------------------------------------------------------
# Hypervolume
# ----------------------------------------------------------------------------------------------


def hypervolume(
    F: Any, ref: Sequence[float] | Any, *, monte_carlo: bool = False, samples: int = 1_000_000, seed: int = 0
) -> float:
    """Lebesgue measure of the region dominated by the points F (N, K) and bounded by ``ref`` (K,).

    Points that do not strictly dominate ``ref`` in every objective contribute nothing. Exact for
    K ≤ 3; for K > 3 pass ``monte_carlo=True`` for a seeded estimate from ``samples`` uniform draws.
    """
    F = _points(F)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if r.shape[0] != F.shape[1]:
        raise ValueError(f"reference point has {r.shape[0]} entries but the points have {F.shape[1]} objectives")
    F = F[(F < r).all(axis=1)]
    if F.shape[0] == 0:
        return 0.0
    K = F.shape[1]
    if K == 1:
        return float(r[0] - F[:, 0].min())
    if K == 2:
        return _hv2d(F, r)
    if K == 3:
        return _hv3d(F, r)
    if not monte_carlo:
        raise ValueError(f"exact hypervolume is implemented for K <= 3 objectives, got K={K}; pass monte_carlo=True")
    return _hv_monte_carlo(F, r, samples, seed)


def _hv2d(F: np.ndarray, r: np.ndarray) -> float:
    order = np.lexsort((F[:, 1], F[:, 0]))  # by f_1, ties by f_2
    x, y = F[order, 0], F[order, 1]
    height = r[1] - np.minimum.accumulate(y)  # covered height on [x_i, x_{i+1})
    width = np.diff(np.append(x, r[0]))
    return float((width * height).sum())


def _hv3d(F: np.ndarray, r: np.ndarray) -> float:
    """Slices along f_3: between consecutive f_3 values the covered area is that of a 2-D staircase."""
    order = np.argsort(F[:, 2], kind="stable")
    F = F[order]
    xs: list[float] = []  # staircase in (f_1, f_2): x ascending, y strictly descending
    ys: list[float] = []
    area = 0.0
    volume = 0.0
    for i in range(F.shape[0]):
        x, y, z = float(F[i, 0]), float(F[i, 1]), float(F[i, 2])
        j = bisect.bisect_left(xs, x)
        if not (j > 0 and ys[j - 1] <= y):  # not dominated by a staircase point with smaller f_1
            left_h = ys[j - 1] if j > 0 else r[1]  # old covered height just right of x
            k = j
            while k < len(xs) and ys[k] >= y:  # points dominated by (x, y)
                k += 1
            # area gained: on [x, next) the covered height drops to y
            edges = [x] + xs[j:k] + [xs[k] if k < len(xs) else r[0]]
            heights = [left_h] + ys[j:k]
            for a, b, h in zip(edges[:-1], edges[1:], heights):
                area += (b - a) * (h - y)
            del xs[j:k], ys[j:k]
            xs.insert(j, x)
            ys.insert(j, y)
        z_next = float(F[i + 1, 2]) if i + 1 < F.shape[0] else r[2]
        volume += area * (z_next - z)
    return float(volume)


def _hv_monte_carlo(F: np.ndarray, r: np.ndarray, samples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    low = F.min(axis=0)
    box = float(np.prod(r - low))
    hits = 0
    for start in range(0, samples, 20_000):
        u = low + (r - low) * rng.random((min(20_000, samples - start), F.shape[1]))
        hits += int((F[None, :, :] <= u[:, None, :]).all(axis=2).any(axis=1).sum())
    return box * hits / samples


def nondominated(F: Any) -> np.ndarray:
    """Boolean mask of the points of F (N, K) that no other point dominates (duplicates are all kept)."""
    F = _points(F)
    le = (F[:, None, :] <= F[None, :, :]).all(axis=2)  # le[j, i]: F_j ≤ F_i everywhere
    lt = (F[:, None, :] < F[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    return ~dominated


# ----------------------------------------------------------------------------------------------
# Distances to a front sample
# ----------------------------------------------------------------------------------------------


def igd(F: Any, front: Any) -> float:
    """IGD = (1/|P*|) Σ_{p ∈ P*} min_{a ∈ F} ||p − a|| with P* the front sample (M, K)."""
    A, P = _points(F), _points(front, "front")
    d = np.sqrt(((P[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))  # (M, N)
    return float(d.min(axis=1).mean())


def igd_plus(F: Any, front: Any) -> float:
    """IGD+ (Ishibuchi et al. 2015): only the part of p → a where a is worse counts: d⁺ = ||max(a − p, 0)||."""
    A, P = _points(F), _points(front, "front")
    d = np.sqrt((np.maximum(A[None, :, :] - P[:, None, :], 0.0) ** 2).sum(axis=2))  # (M, N)
    return float(d.min(axis=1).mean())


# ----------------------------------------------------------------------------------------------
# Pareto stationarity
# ----------------------------------------------------------------------------------------------


def _normalized_rows(J: Tensor) -> Tensor | None:
    norms = torch.linalg.vector_norm(J, dim=1, keepdim=True)  # (K, 1)
    if bool((norms == 0).any()):
        return None  # a task with a zero gradient is stationary: PS = 0
    return J / norms


def pareto_stationarity(J: Tensor, *, normalize: bool = False) -> Tensor:
    """min_{λ∈Δ} ||Jᵀλ|| for J (K, n) -> scalar, or (B, K, n) -> (B,). Zero exactly at Pareto-stationary points."""
    from reference_impls.core.solvers import min_norm_weights

    if J.ndim == 2:
        return pareto_stationarity(J[None], normalize=normalize)[0]
    if J.ndim != 3:
        raise ValueError(f"expected Jacobians of shape (K, n) or (B, K, n), got {tuple(J.shape)}")
    out = []
    for Jb in J:
        if normalize:
            Jb = _normalized_rows(Jb)
            if Jb is None:
                out.append(J.new_zeros(()))
                continue
        lam = min_norm_weights(Jb @ Jb.T)  # (K,)
        out.append(torch.linalg.vector_norm(lam.to(Jb) @ Jb))  # ||Σ λ_i g_i||
    return torch.stack(out)


def _simplex_lattice(K: int, resolution: int) -> np.ndarray:
    """All λ ∈ Δ with entries in {0, 1/res, ..., 1} (K = 2: res + 1 points; K = 3: (res+1)(res+2)/2)."""
    pts = [c for c in itertools.product(range(resolution + 1), repeat=K - 1) if sum(c) <= resolution]
    L = np.array([list(c) + [resolution - sum(c)] for c in pts], dtype=np.float64)
    return L / resolution


def projected_pareto_stationarity(
    J: Tensor, x: Tensor, lower: Tensor, upper: Tensor, *, resolution: int | None = None
) -> Tensor:
    """min_{λ∈Δ} ||x − Π_box(x − Jᵀλ)|| for J (B, K, n), x (B, n) and a box [lower, upper] (n,) -> (B,).

    Zero exactly when some convex combination of the gradients lies in the normal cone of the box
    at x. The map λ ↦ ||x − Π(x − Jᵀλ)|| is not convex, so the minimum is taken over candidates:
    the min-norm weights of the gradients restricted to the free coordinates (those strictly
    inside the box, exact at points where the active bounds block every descent), the unrestricted
    min-norm weights, and a lattice on the simplex (resolution 2000 for K = 2, 100 for K = 3,
    coarser above). The result is an upper bound of the exact minimum, equal to it up to the lattice
    spacing.
    """
    from reference_impls.core.solvers import min_norm_weights

    if J.ndim == 2:
        return projected_pareto_stationarity(J[None], x[None], lower, upper, resolution=resolution)[0]
    B, K, n = J.shape
    if resolution is None:
        resolution = 1 if K == 1 else 2000 if K == 2 else 100 if K == 3 else max(2, int(20000 ** (1 / (K - 1))))
    lattice = torch.as_tensor(_simplex_lattice(K, resolution) if K > 1 else np.ones((1, 1)), dtype=J.dtype, device=J.device)
    lo, hi = lower.to(x), upper.to(x)
    out = []
    for b in range(B):
        Jb, xb = J[b], x[b]
        cands = [lattice]
        free = (xb > lo) & (xb < hi)  # (n,)
        for cols in (free, torch.ones_like(free)):
            Jf = Jb[:, cols]
            if Jf.shape[1] > 0:
                cands.append(min_norm_weights(Jf @ Jf.T).to(Jb)[None])
        Lam = torch.cat(cands)  # (C, K)
        V = Lam @ Jb  # (C, n) combined gradients
        R = torch.minimum(torch.maximum(V, xb - hi), xb - lo)  # x − Π(x − v) = clip(v, x − u, x − l)
        out.append(torch.linalg.vector_norm(R, dim=1).min())
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------
# Preferences and uniformity
# ----------------------------------------------------------------------------------------------


def preference_cosine_error(F: Tensor, ray: Tensor | Sequence[float], z: Tensor | Sequence[float] | None = None) -> Tensor:
    """1 − cos(F − z, ray) for each row of F (B, K) -> (B,); 0 when F − z lies on the ray."""
    F = torch.as_tensor(F, dtype=torch.float64) if not isinstance(F, Tensor) else F
    F2 = F if F.ndim == 2 else F[None]
    v = torch.as_tensor(ray, dtype=F2.dtype, device=F2.device).reshape(-1)
    d = F2 - (0 if z is None else torch.as_tensor(z, dtype=F2.dtype, device=F2.device))
    cos = (d @ v) / (torch.linalg.vector_norm(d, dim=1) * torch.linalg.vector_norm(v)).clamp_min(1e-300)
    err = 1 - cos
    return err if F.ndim == 2 else err[0]


def epo_non_uniformity(F: Tensor, r: Tensor | Sequence[float], z: Tensor | Sequence[float] | None = None) -> Tensor:
    """EPO's μ_r(F) = KL(q ‖ 𝟙/K) with q = r ⊙ (F − z) / Σ_j r_j (F_j − z_j); 0 iff r ⊙ (F − z) ∝ 𝟙.

    Needs F − z > 0 and r > 0 (a clear error otherwise). F (B, K) -> (B,).
    """
    F = torch.as_tensor(F, dtype=torch.float64) if not isinstance(F, Tensor) else F
    F2 = F if F.ndim == 2 else F[None]
    r = torch.as_tensor(r, dtype=F2.dtype, device=F2.device).reshape(-1)
    d = F2 - (0 if z is None else torch.as_tensor(z, dtype=F2.dtype, device=F2.device))
    if not bool((d > 0).all()) or not bool((r > 0).all()):
        raise ValueError("epo_non_uniformity needs F − z > 0 and r > 0 (shift the losses by an ideal point z)")
    q = r * d / (r * d).sum(1, keepdim=True)  # (B, K)
    K = F2.shape[1]
    mu = (q * torch.log(q * K)).sum(1)  # KL(q ‖ 1/K)
    return mu if F.ndim == 2 else mu[0]


def _ray_offsets(F: Any, rays: Any, z: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """(F − z (N, K), unit rays (N, K)); one ray (K,) is shared by every point."""
    D = _points(F)
    V = _points(rays, "rays")
    if V.shape[0] == 1 and D.shape[0] > 1:
        V = np.repeat(V, D.shape[0], axis=0)
    if V.shape != D.shape:
        raise ValueError(f"rays: expected one ray per point, shape {D.shape}, got {V.shape}")
    if z is not None:
        D = D - _points(z, "z")[0]
    norms = np.linalg.norm(V, axis=1, keepdims=True)  # (N, 1)
    if not (norms > 0).all():
        raise ValueError("rays: a ray is the zero vector")
    return D, V / norms


def preference_distance(F: Any, rays: Any, z: Any | None = None) -> np.ndarray:
    """Distance of each F_p − z from the ray {t·v_p : t ≥ 0} (N,): ||d − max(d·v̂, 0)·v̂||.

    0 exactly when F_p lies on its target ray from the ideal point z (rays (N, K) or one ray (K,)).
    """
    D, V = _ray_offsets(F, rays, z)
    t = np.maximum((D * V).sum(1), 0.0)  # projection onto the half-line, (N,)
    return np.linalg.norm(D - t[:, None] * V, axis=1)


def preference_angle(F: Any, rays: Any, z: Any | None = None) -> np.ndarray:
    """Angle (radians, in [0, π]) between each F_p − z and its ray v_p (N,); 0 on the ray.

    A point at z itself (F_p − z = 0) has no direction: its angle is 0 (it lies on every ray).
    """
    D, V = _ray_offsets(F, rays, z)
    along = (D * V).sum(1)  # d·v̂, (N,)
    across = np.linalg.norm(D - along[:, None] * V, axis=1)  # ||d − (d·v̂)v̂||, (N,)
    return np.arctan2(across, along)  # atan2 is accurate near 0, where arccos(cos) loses half the digits


def covering_radius(F: Any, front: Any) -> float:
    """max_{p ∈ P*} min_{a ∈ F} ||p − a||: how far the worst-covered front sample point is from the set.

    The set covers the front sample within this radius (the directed Hausdorff distance from the
    front to the set); P points evenly spaced along a front curve of length L reach ≈ L/(2P).
    """
    A, P = _points(F), _points(front, "front")
    d = np.sqrt(((P[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))  # (M, N)
    return float(d.min(axis=1).max())


def coverage(F: Any, front: Any, delta: float | None = None) -> float:
    """The fraction of the front sample P* (M, K) within distance δ of some point of F (N, K), in [0, 1].

    ``delta`` defaults to 5 % of the front's extent, δ = 0.05·||max P* − min P*|| (the diagonal of
    its bounding box). For a front sample uniform in arc length (every 2-objective front here) this is
    the fraction of the front's length that the set covers within δ.
    """
    A, P = _points(F), _points(front, "front")
    if delta is None:
        delta = 0.05 * float(np.linalg.norm(P.max(0) - P.min(0)))
        if not delta > 0:
            raise ValueError("coverage: the front sample is a single point (no extent for the default δ); pass delta")
    if not delta > 0:
        raise ValueError(f"coverage needs delta > 0, got {delta}")
    d = np.sqrt(((P[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))  # (M, N)
    return float((d.min(axis=1) <= delta).mean())


def uniformity(F: Any) -> float:
    """l_min: the smallest pairwise Euclidean distance among the points F (N, K), N ≥ 2."""
    A = _points(F)
    if A.shape[0] < 2:
        raise ValueError("uniformity needs at least two points")
    d = np.sqrt(((A[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))
    d[np.diag_indices_from(d)] = np.inf
    return float(d.min())


# ----------------------------------------------------------------------------------------------
# Few-for-many values of a set (many objectives, few solutions)
# ----------------------------------------------------------------------------------------------


def worst_objective(F: Any) -> float:
    """max_i min_p F_pi for the losses F (P, K) of a set: the worst-served objective.

    The TCH-Set value at z = 0, λ = 𝟙 (Lin et al., "Few for Many", ICLR 2025). A 1-D F (K,) is one solution.
    """
    A = _points(F)
    return float(A.min(axis=0).max())


def mean_objective(F: Any) -> float:
    """(1/K) Σ_i min_p F_pi for the losses F (P, K) of a set: the mean over objectives of the best-served value.

    The sum-of-minimum value divided by K (Ding et al., ICML 2024). A 1-D F (K,) is one solution.
    """
    A = _points(F)
    return float(A.min(axis=0).mean())


__all__ = [
    "coverage",
    "covering_radius",
    "epo_non_uniformity",
    "hypervolume",
    "igd",
    "igd_plus",
    "mean_objective",
    "nondominated",
    "pareto_stationarity",
    "preference_angle",
    "preference_cosine_error",
    "preference_distance",
    "projected_pareto_stationarity",
    "uniformity",
    "worst_objective",
]
