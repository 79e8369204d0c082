"""Exact hypervolume, its gradient, non-dominated sorting and the uncrowded hypervolume (K = 1, 2, 3).

All objectives are minimised; ``ref`` (K,) is the reference point r. Functions take torch tensors,
compute in float64 on the CPU and return tensors in the input's dtype and device (scalars as floats).

Hypervolume HV(S; r) = λ(∪_{s ∈ S, s < r} [s, r]), exact for K ≤ 3 (``metrics.hypervolume``).

Non-dominated sorting (``nondominated_fronts``): t dominates s iff t ≤ s in every objective and
t < s in at least one. Front 0 = the points no other point dominates, front i = those of the rest
that no other remaining point dominates. Exact duplicates do not dominate each other, so they share
a front.

Exact gradient (``hypervolume_gradient``), G = ∂HV/∂F (P, K), G ≤ 0. Only the *contributing* points
get non-zero rows: inside the box (F_p < r in every objective), not dominated, and the first
(lowest index) of each group of exact duplicates. Every other row is 0.

* K = 1: HV = r − min f, so ∂HV/∂f_s = −1 for the contributing point.
* K = 2 (Emmerich & Deutz, "Time complexity and zeros of the hypervolume indicator gradient field",
  2014; the per-point weights of Deist et al. 2020 §3 / uhvgrad.cpp): with the contributing points
  sorted by f_1 (so f_2 descends),

      ∂HV/∂f_{s,1} = −(f_2(prev) − f_2(s)),  ∂HV/∂f_{s,2} = −(f_1(next) − f_1(s)),

  with f_2(prev) = r_2 for the first point and f_1(next) = r_1 for the last.
* K = 3: write HV = ∫ a(z) dz_k, a(z) the area of the section of the dominated region at height
  z_k = z. Only sections with z in [s_k, ...) see s, and there s covers its box B_{−k}(s) = [s_{−k}, r_{−k}]
  on top of what the points t with t_k ≤ z cover. Moving s up by h loses ∫_{s_k}^{s_k+h} of the part of
  B_{−k}(s) that those t leave uncovered, so

      −∂HV/∂f_{s,k} = λ₂(B_{−k}(s) \\ ∪_{t ∈ T_k(s)} [max(t_{−k}, s_{−k}), r_{−k}])
                    = Π_{j≠k}(r_j − s_j) − HV₂({max(t_{−k}, s_{−k}) : t ∈ T_k(s)}; r_{−k}),

  T_k(s) = the other contributing points with t_k ≤ s_k (clipping t's orthant to s's box is the
  coordinatewise max). Moving s down uses t_k < s_k instead; the two agree unless some t_k = s_k. This
  is the area of the face, orthogonal to axis k, of the region only s dominates. All P·K 2-D
  hypervolumes are computed in one batched sort, O(P² log P).

Ties (stated convention). In general position (no two contributing points share a coordinate) HV is
differentiable at F and G is its gradient. Otherwise:
  (a) exact duplicates: only the first of the group is kept (the rest get zero rows); the kept row is
      the gradient of HV of the de-duplicated set, so the rows of a group sum to the derivative of
      translating the whole group together;
  (b) contributing points sharing coordinate k (possible for K = 3): T_k(s) uses t_k ≤ s_k, i.e. G is
      the one-sided derivative for *increasing* f_{s,k} (the rate of HV lost as s worsens);
  (c) points on or outside the box boundary (some F_pk ≥ r_k) and (weakly) dominated points get zero
      rows even where a one-sided derivative for decreasing f would be positive.

Uncrowded hypervolume (Deist, Maree, Alderliesten & Bosman, "Multi-objective optimization by
uncrowded hypervolume gradient ascent", PPSN 2020, arXiv 2007.04846; the UHV of Maree et al.,
GECCO 2020, arXiv 2004.05068). Checked against the official code: scmaree/uncrowded-hypervolume
``hv_based_MO_optimization/HillVallEA/uhvgrad.cpp`` (uhv(), distance_to_front_without_corner_boxes)
and ``UHV.cpp``, and the first author's Python UHV-Adam timodeist/uncrowded_hypervolume_gradient_ascent
``class_optimizer.py`` (compute_ud_2d, compute_hv_gradient_2d):

    UHV(S) = HV(S; r) − (1/|S|) Σ_{s ∈ S} ud(s)^K,

the mean over *all* |S| = P points (non-contributing ones have ud = 0) of the K-th power (K = m, the
number of objectives: ``pow(dist, number_of_objectives)``). ud is 0 for the contributing points; for
every other point (dominated, a later duplicate, or not strictly inside the box) it is the distance to
the attainment boundary of the front N (the contributing points):

    ud(f) = min_{u ∈ T} ||max(f − u, 0)||   (the distance to ∪_{u ∈ T} {z ≤ u}),

* ``boundary="inner"`` (default; uhvgrad.cpp and class_optimizer.py): T = the local upper bounds of N
  all of whose coordinates come from front points, plus the points of N. For K = 2 with N sorted by
  f_1 these are the inner corners (x_k, y_{k−1}), k = 1..m−1: the distance to the staircase between
  the two extreme front points, without the two outer segments that run to the box edges; with one
  front point, the distance to its orthant. For K = 3 (no official code: reconstructed) the same rule:
  corners spanned by front points only, plus the front points.
* ``boundary="box"`` (UHV.cpp distance_to_front, the UHV-GOMEA value): T = all local upper bounds of N
  within r, so ud is the distance to the part of the box that N does not dominate; for a dominated f
  this is the distance to the boundary of the dominated region (Klamroth et al., EJOR 2015: the
  non-dominated part of the box is ∪_u {z < u}).
* no front point inside the box: T = {r}, ud = ||max(f − r, 0)|| (both codes).

Local upper bounds (``local_upper_bounds``): K = 2 from the sorted staircase; K = 3 by a sweep over f_3
(``_local_upper_bounds``), O(P² log P).

Gradient (``uncrowded_hypervolume_gradient``): front rows ∂HV/∂f; other rows −(1/P)∂(ud^K)/∂f =
−(K/P)·ud^{K−2}·max(f − u*, 0), u* the nearest corner (for K = 2: −(2/P)(f − q), q the nearest boundary
point, as both codes). The paper's gradient ignores that u* moves with the front points
(``include_ud_in_grad = false`` in uhvgrad.cpp: "it wasn't better"); ``exact=True`` adds those terms.

Deviations from the official code (both codes are bi-objective only):
    D1. Duplicates: the lowest index is the front point, the copies get ud = 0 and zero rows. uhvgrad.cpp
        keeps the last copy; class_optimizer.py keeps every copy on the front (their HV-gradient rows
        then each lose one component).
    D2. One front point: ud = ||max(f − s, 0)|| (class_optimizer.py). uhvgrad.cpp uses the Euclidean
        ||f − s||; the two differ only for non-dominated points outside the box.
    D3. No ``ud_eps``: class_optimizer.py shifts every corner by −1e-5 so points on the boundary keep a
        small positive distance; here ud is the exact distance (0 on the inner boundary).
    D4. K = 3 and K = 1: the corner rule above and the exact factor K·ud^{K−2} (uhvgrad.cpp hard-codes
        the factor 2 of K = 2 in the gradient).
    D5. The per-point normalisation of the gradient rows to unit length (both codes) belongs to the
        ascent method (``finite_set/uhv_gradient.py``), not to this gradient.
    D6. ``exact=True`` and ``boundary="box"`` are options; the defaults are the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls import metrics

__all__ = [
    "contributing_mask",
    "hypervolume",
    "hypervolume_gradient",
    "local_upper_bounds",
    "nondominated_fronts",
    "uncrowded_distance",
    "uncrowded_hypervolume",
    "uncrowded_hypervolume_gradient",
]


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _points(F: Any, *, max_k: int | None = 3) -> np.ndarray:
    """F (P, K) as a float64 numpy array; ValueError on a wrong shape, NaN/inf or K > max_k."""
    if isinstance(F, Tensor):
        F = F.detach().to("cpu", torch.float64).numpy()
    A = np.asarray(F, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] < 1:
        raise ValueError(f"F: expected a point set of shape (P, K) with K >= 1, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError("F: contains NaN or infinite values")
    if max_k is not None and A.shape[1] > max_k:
        raise ValueError(f"exact hypervolume terms are implemented for K <= {max_k} objectives, got K={A.shape[1]}")
    return A


def _reference(ref: Sequence[float] | Any, K: int) -> np.ndarray:
    if isinstance(ref, Tensor):
        ref = ref.detach().to("cpu", torch.float64).numpy()
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if r.shape[0] != K:
        raise ValueError(f"ref: the reference point has {r.shape[0]} entries but the points have K={K} objectives")
    if not np.isfinite(r).all():
        raise ValueError("ref: contains NaN or infinite values")
    return r


def _like(A: np.ndarray, F: Any) -> Tensor:
    """A numpy result back as a tensor in F's dtype and device (float64 for non-tensor input)."""
    out = torch.from_numpy(np.ascontiguousarray(A))
    if isinstance(F, Tensor):
        dtype = F.dtype if F.is_floating_point() else torch.float64
        return out.to(device=F.device, dtype=dtype)
    return out


# ----------------------------------------------------------------------------------------------
# Dominance
# ----------------------------------------------------------------------------------------------


def _dominance(A: np.ndarray) -> np.ndarray:
    """dom[t, s] = True iff point t dominates point s (t ≤ s everywhere, t < s somewhere)."""
    le = (A[:, None, :] <= A[None, :, :]).all(axis=2)  # (P, P)
    lt = (A[:, None, :] < A[None, :, :]).any(axis=2)  # (P, P)
    return le & lt


def _first_of_duplicates(A: np.ndarray) -> np.ndarray:
    """(P,) mask: True for the lowest index of each group of identical rows."""
    _, first = np.unique(A, axis=0, return_index=True)
    keep = np.zeros(A.shape[0], dtype=bool)
    keep[first] = True
    return keep


def _contributing(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(P,) mask of the points that carry the hypervolume: strictly inside the box, not dominated, first duplicate."""
    inside = (A < r).all(axis=1)  # F_p < r componentwise
    keep = inside & _first_of_duplicates(A)
    idx = np.flatnonzero(keep)
    if idx.size:
        sub = A[idx]
        keep[idx] = ~_dominance(sub).any(axis=0)  # no other inside point dominates it
    return keep


def nondominated_fronts(F: Tensor) -> list[Tensor]:
    """Non-dominated sorting of F (P, K) -> list of LongTensors of indices (ascending), front 0 first.

    Dominance is the Pareto relation of the module docstring; exact duplicates share a front. Works
    for any K ≥ 1 (O(P²K) memory). NaN/inf -> ValueError.
    """
    A = _points(F, max_k=None)
    dom = _dominance(A)  # (P, P)
    remaining = np.ones(A.shape[0], dtype=bool)
    fronts: list[Tensor] = []
    device = F.device if isinstance(F, Tensor) else None
    while remaining.any():
        # front = remaining points that no remaining point dominates
        front = remaining & ~(dom & remaining[:, None]).any(axis=0)
        fronts.append(torch.as_tensor(np.flatnonzero(front), dtype=torch.long, device=device))
        remaining &= ~front
    return fronts


def contributing_mask(F: Tensor, ref: Tensor | Sequence[float]) -> Tensor:
    """(P,) bool: the points with non-zero hypervolume-gradient rows (inside the box, non-dominated, first duplicate)."""
    A = _points(F, max_k=None)
    r = _reference(ref, A.shape[1])
    device = F.device if isinstance(F, Tensor) else None
    return torch.as_tensor(_contributing(A, r), device=device)


# ----------------------------------------------------------------------------------------------
# Hypervolume and its gradient
# ----------------------------------------------------------------------------------------------


def hypervolume(F: Tensor, ref: Tensor | Sequence[float]) -> float:
    """Exact HV of F (P, K) w.r.t. ref (K,) for K ≤ 3; points not strictly below ref add nothing."""
    A = _points(F)
    r = _reference(ref, A.shape[1])
    return metrics.hypervolume(A, r)


def _hv2d_batched(X: np.ndarray, Y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """2-D hypervolumes of B point sets given as rows of X, Y (B, M), all points ≤ (rx, ry) -> (B,).

    Padding points at (rx, ry) add nothing (zero width, height never below the others').
    """
    order = np.argsort(X, axis=1, kind="stable")  # by f_1 (ties in any order: their widths are 0)
    xs = np.take_along_axis(X, order, axis=1)  # (B, M)
    ys = np.take_along_axis(Y, order, axis=1)  # (B, M)
    height = ry - np.minimum.accumulate(ys, axis=1)  # covered height on [x_i, x_{i+1})
    width = np.diff(np.concatenate([xs, np.full((xs.shape[0], 1), rx)], axis=1), axis=1)  # x_{i+1} − x_i
    return (width * height).sum(axis=1)


def _gradient_2d(C: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Exact ∂HV/∂C for contributing 2-D points C (M, 2) (mutually non-dominated, distinct, inside)."""
    order = np.argsort(C[:, 0], kind="stable")  # f_1 ascending, so f_2 descending
    x, y = C[order, 0], C[order, 1]
    y_prev = np.concatenate([[r[1]], y[:-1]])  # f_2 of the left neighbour, r_2 for the first
    x_next = np.concatenate([x[1:], [r[0]]])  # f_1 of the right neighbour, r_1 for the last
    G = np.empty_like(C)
    G[order, 0] = -(y_prev - y)  # ∂HV/∂f_{s,1} = −(f_2(prev) − f_2(s))
    G[order, 1] = -(x_next - x)  # ∂HV/∂f_{s,2} = −(f_1(next) − f_1(s))
    return G


def _gradient_3d(C: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Exact ∂HV/∂C for contributing 3-D points C (M, 3): minus the face areas of the exclusive regions."""
    M = C.shape[0]
    G = np.empty_like(C)
    for k in range(3):
        a, b = [j for j in range(3) if j != k]
        # T_k(s): other points with t_k ≤ s_k (ties count: derivative for increasing f_{s,k})
        in_slab = (C[None, :, k] <= C[:, None, k]) & ~np.eye(M, dtype=bool)  # [s, t]
        Xa = np.where(in_slab, np.maximum(C[None, :, a], C[:, None, a]), r[a])  # max(t_a, s_a), padded to r_a
        Xb = np.where(in_slab, np.maximum(C[None, :, b], C[:, None, b]), r[b])  # (M, M)
        box = (r[a] - C[:, a]) * (r[b] - C[:, b])  # Π_{j≠k}(r_j − s_j)
        covered = _hv2d_batched(Xa, Xb, r[a], r[b])  # HV₂ of T_k(s) clipped to s's box
        G[:, k] = -np.maximum(box - covered, 0.0)  # −λ₂(face) (clamp rounding below 0)
    return G


def hypervolume_gradient(F: Tensor, ref: Tensor | Sequence[float]) -> Tensor:
    """G = ∂HV(F; ref)/∂F (P, K) for K ≤ 3 (exact; ties and zero rows as in the module docstring).

    K > 3 or NaN/inf -> ValueError. Returned in F's dtype and device.
    """
    A = _points(F)
    r = _reference(ref, A.shape[1])
    K = A.shape[1]
    G = np.zeros_like(A)
    keep = _contributing(A, r)
    if keep.any():
        C = A[keep]  # (M, K) contributing points
        if K == 1:
            G[keep] = -1.0  # HV = r − min f
        elif K == 2:
            G[keep] = _gradient_2d(C, r)
        else:
            G[keep] = _gradient_3d(C, r)
    return _like(G, F)


# ----------------------------------------------------------------------------------------------
# Local upper bounds (the corners of the non-dominated part of the box)
# ----------------------------------------------------------------------------------------------


def _lub_2d(C: np.ndarray, r: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D local upper bounds of the points C (M, 2) within r (2,) -> (U (L, 2), owner (L, 2)).

    With the non-dominated points sorted by f_1 (f_2 strictly descending): (x_0, r_2), (x_1, y_0), ...,
    (x_{m-1}, y_{m-2}), (r_1, y_{m-1}); no points: (r_1, r_2). owner[l, j] = idx of the point whose j-th
    coordinate is U[l, j], −1 where it is r_j.
    """
    order = np.lexsort((C[:, 1], C[:, 0]))  # by f_1, ties by f_2
    x, y, own = C[order, 0], C[order, 1], idx[order]
    keep = y < np.concatenate([[np.inf], np.minimum.accumulate(y)[:-1]])  # strictly below every point to its left
    x, y, own = x[keep], y[keep], own[keep]
    U = np.empty((x.size + 1, 2))  # (m+1, 2): (x_k, y_{k−1}) with x_m = r_1, y_{−1} = r_2
    U[:-1, 0], U[-1, 0], U[1:, 1], U[0, 1] = x, r[0], y, r[1]
    owner = np.full((x.size + 1, 2), -1)
    owner[:-1, 0], owner[1:, 1] = own, own
    return U, owner


def _local_upper_bounds(C: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local upper bounds U(N) of the mutually non-dominated points C (M, K) ⊂ {f < r}, K ≤ 3.

    U(N) (Klamroth, Lacour & Vanderpooten, EJOR 2015) are the maximal u ≤ r that no point of N strictly
    dominates; the part of the box that N does not dominate is ∪_u {z < u}. Each coordinate u_j is
    the j-th coordinate of a defining point n ∈ N (with n_i < u_i for i ≠ j) or r_j; ``owner`` holds
    its index in C, or −1 for r_j. K = 3 sweeps f_3: u = (v, c_3) for each c ∈ N and each 2-D local upper
    bound v of {n : n_3 < c_3} with v > c_{12}, plus u = (v, r_3) for the 2-D bounds of all of N.
    """
    M, K = C.shape
    idx = np.arange(M)
    if K == 1:
        if M == 0:
            return r[None, :].copy(), np.full((1, 1), -1)
        best = int(np.argmin(C[:, 0]))
        return C[best][None, :].copy(), np.full((1, 1), best)  # {z < min f}
    if K == 2:
        return _lub_2d(C, r, idx)
    Us, owners = [], []
    V, own = _lub_2d(C[:, :2], r[:2], idx)  # top level, u_3 = r_3
    Us.append(np.column_stack([V, np.full(len(V), r[2])]))
    owners.append(np.column_stack([own, np.full(len(V), -1)]))
    for i in range(M):
        below = C[:, 2] < C[i, 2]  # points that can strictly dominate u at height c_3
        V, own = _lub_2d(C[below, :2], r[:2], idx[below])
        ok = (V[:, 0] > C[i, 0]) & (V[:, 1] > C[i, 1])  # c is the defining point in f_3: c_{12} < v
        Us.append(np.column_stack([V[ok], np.full(int(ok.sum()), C[i, 2])]))
        owners.append(np.column_stack([own[ok], np.full(int(ok.sum()), i)]))
    U, owner = np.concatenate(Us), np.concatenate(owners)
    _, first = np.unique(U, axis=0, return_index=True)  # ties in f_3 can produce a bound twice
    first = np.sort(first)
    return U[first], owner[first]


def _reindex(owner: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Owners given as positions in ``rows`` -> the rows themselves (−1, the reference point, stays −1)."""
    out = np.full_like(owner, -1)
    out[owner >= 0] = rows[owner[owner >= 0]]
    return out


def local_upper_bounds(F: Tensor, ref: Tensor | Sequence[float]) -> tuple[Tensor, Tensor]:
    """Local upper bounds of the contributing points of F (P, K) within ref, K ≤ 3 -> (U (L, K), owner (L, K)).

    owner[l, j] is the row of F whose j-th objective is U[l, j], or −1 where U[l, j] = ref_j.
    """
    A = _points(F)
    r = _reference(ref, A.shape[1])
    keep = np.flatnonzero(_contributing(A, r))
    U, owner = _local_upper_bounds(A[keep], r)
    owner = _reindex(owner, keep)
    device = F.device if isinstance(F, Tensor) else None
    return _like(U, F), torch.as_tensor(owner, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------------------------
# Uncrowded distance and the uncrowded hypervolume (Deist et al., PPSN 2020)
# ----------------------------------------------------------------------------------------------

_BOUNDARIES = ("inner", "box")


def _targets(A: np.ndarray, r: np.ndarray, keep: np.ndarray, boundary: str) -> tuple[np.ndarray, np.ndarray]:
    """The corners u whose lower orthants {z ≤ u} make up the target of the uncrowded distance, with owners
    (rows of A, −1 for the reference point)."""
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
    front = np.flatnonzero(keep)
    if front.size == 0:
        return r[None, :].copy(), np.full((1, A.shape[1]), -1)  # no front: distance to the box {z ≤ r}
    U, owner = _local_upper_bounds(A[front], r)
    owner = _reindex(owner, front)
    if boundary == "inner":
        inner = (owner >= 0).all(axis=1)  # corners spanned by front points only (no coordinate of r)
        U = np.concatenate([U[inner], A[front]])  # plus the front points themselves
        owner = np.concatenate([owner[inner], np.repeat(front[:, None], A.shape[1], axis=1)])
    return U, owner


def _uncrowded(A: np.ndarray, r: np.ndarray, boundary: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (keep (P,), ud (P,), residual (P, K) = max(f − u*, 0), owner of u* (P, K)) for the nearest corner u*."""
    keep = _contributing(A, r)
    U, owner = _targets(A, r, keep, boundary)
    residual = np.maximum(A[:, None, :] - U[None, :, :], 0.0)  # (P, L, K): f − (nearest point of {z ≤ u})
    dist = np.sqrt((residual**2).sum(axis=2))  # (P, L)
    nearest = dist.argmin(axis=1)  # first nearest corner on ties
    rows = np.arange(A.shape[0])
    ud = np.where(keep, 0.0, dist[rows, nearest])  # ud = 0 for the contributing points
    res = np.where(keep[:, None], 0.0, residual[rows, nearest])  # (P, K)
    return keep, ud, res, owner[nearest]


def uncrowded_distance(F: Tensor, ref: Tensor | Sequence[float], *, boundary: str = "inner") -> Tensor:
    """ud (P,): distance of each point of F (P, K) to the attainment boundary of the contributing points, K ≤ 3.

    ud(f) = min_{u ∈ T} ||max(f − u, 0)||, the distance to ∪_{u ∈ T} {z ≤ u}, and 0 for the contributing
    points. T (see the module docstring): ``boundary="inner"`` (default, Deist et al. 2020's code) the
    local upper bounds spanned by front points only, plus the front points; ``"box"`` (UHV-GOMEA's value)
    all local upper bounds within ref. With no point inside the box, T = {ref}.
    """
    A = _points(F)
    r = _reference(ref, A.shape[1])
    return _like(_uncrowded(A, r, boundary)[1], F)


def uncrowded_hypervolume(F: Tensor, ref: Tensor | Sequence[float], *, boundary: str = "inner") -> float:
    """UHV(S) = HV(S; r) − (1/|S|) Σ_{s ∈ S} ud(s)^K (Deist et al. 2020 §2, uhvgrad.cpp uhv()), K ≤ 3."""
    A = _points(F)
    r = _reference(ref, A.shape[1])
    _, ud, _, _ = _uncrowded(A, r, boundary)
    if A.shape[0] == 0:
        return 0.0  # the empty set: no volume, no penalty
    return metrics.hypervolume(A, r) - float((ud ** A.shape[1]).mean())  # HV − (1/P) Σ ud^K


def uncrowded_hypervolume_gradient(
    F: Tensor, ref: Tensor | Sequence[float], *, boundary: str = "inner", exact: bool = False
) -> Tensor:
    """∂UHV/∂F (P, K) for K ≤ 3.

    Contributing rows: ∂HV/∂f (``hypervolume_gradient``). Other rows p, with u* the nearest corner:
    ∂UHV/∂f_p = −(K/P)·ud_p^{K−2}·max(f_p − u*, 0) (for K = 2: −(2/P)(f_p − q_p), q_p the nearest boundary
    point, as uhvgrad.cpp). ``exact=False`` (the paper) leaves out how the corners u* move with the front
    points; ``exact=True`` adds it, +(K/P)·ud_p^{K−2}·(f_pj − u*_j) to ∂UHV/∂f_{o,j} of the front point o
    that owns u*_j, so the result is the gradient of ``uncrowded_hypervolume`` wherever it is differentiable.
    """
    A = _points(F)
    r = _reference(ref, A.shape[1])
    P, K = A.shape
    keep, ud, res, owner = _uncrowded(A, r, boundary)
    if P == 0:
        return _like(np.zeros((0, K)), F)
    G = hypervolume_gradient(A, r).numpy()  # (P, K) ∂HV/∂F, zero off the front
    safe = np.where(ud > 0, ud, 1.0)
    scale = np.where(ud > 0, (K / P) * safe ** (K - 2), 0.0)  # ∂(ud^K)/∂f = K·ud^{K−2}·(f − q)
    G -= scale[:, None] * res  # −(1/P)·∂(ud^K)/∂f_p
    if exact:
        for p in np.flatnonzero(scale > 0):
            for j in range(K):
                if owner[p, j] >= 0 and res[p, j] > 0:
                    G[owner[p, j], j] += scale[p] * res[p, j]  # the corner coordinate u*_j = f_{o,j} moves with o
    return _like(G, F)
