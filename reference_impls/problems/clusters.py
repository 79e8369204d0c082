"""``clusters``: m convex objectives whose minimisers fall into k planted clusters (the few-for-many toy).

    f_i(x) = ||x − a_i||²,  i = 1..m,  x ∈ R^n,

with anchors a_i (m, n) drawn in k planted clusters C_1..C_k of unequal sizes and spreads
(seeded). Set methods fit k solutions X = {x_1..x_k}; the two few-for-many values are

    sum-of-minimum   S(X) = (1/m) Σ_i min_j f_i(x_j)      (Ding et al., ICML 2024: k-means)
    TCH-Set (z = 0)  T(X) = max_i min_j f_i(x_j)          (Lin et al., ICLR 2025: minimax k-centre)

Both optima are proven for the planted instance (not assumed) by the two lemmas below, whose
separation conditions :class:`Clusters` checks in ``__init__`` (ValueError when one fails).

Notation: n_c = |C_c|, μ_c = (1/n_c) Σ_{i∈C_c} a_i, r_c = max_{i∈C_c} ||a_i − μ_c||,
W = Σ_c Σ_{i∈C_c} ||a_i − μ_c||² (the planted within-cluster cost), ρ_c = r_c + √(W/n_c),
R_c = the radius of the minimum enclosing ball (MEB) of C_c, R* = max_c R_c.

**Lemma 1 (sum-of-minimum).** If ||μ_c − μ_d|| > 2·max(r_c, r_d) + ρ_c + ρ_d for every c ≠ d, then
{μ_1..μ_k} is the unique (up to order) global minimiser of S over sets of k points, and
min S = W/m.
*Proof.* Let X (k points) have m·S(X) ≤ W. (i) Every closed ball B̄(μ_c, ρ_c) holds a point of X:
otherwise each a_i ∈ C_c is farther than ρ_c − r_c = √(W/n_c) from X, so m·S(X) > n_c·W/n_c = W.
(ii) The balls are pairwise disjoint (||μ_c − μ_d|| > ρ_c + ρ_d), so each holds exactly one point
x_c (k balls, k points). (iii) For a_i ∈ C_c: ||a_i − x_c|| ≤ r_c + ρ_c < ||μ_c − μ_d|| − r_c − ρ_d
≤ ||a_i − x_d||, so every a_i is served by x_c alone (no ties). Hence
m·S(X) = Σ_c Σ_{i∈C_c} ||a_i − x_c||² = W + Σ_c n_c||x_c − μ_c||² ≥ W, with equality iff x_c = μ_c. ∎

**Lemma 2 (TCH-Set / minimax).** If ||a_i − a_j|| > 2R* for all a_i ∈ C_c, a_j ∈ C_d, c ≠ d, then
min T over sets of k points = R*², attained by the MEB centres (the minimiser is not unique: a
cluster with R_c < R* leaves slack).
*Proof.* Let T(X) ≤ R*². Each anchor lies within R* of some x ∈ X; no x is within R* of anchors of two
clusters (they would be within 2R* of each other), so the k points serve disjoint, non-empty
cluster sets: one point x_c per cluster, serving all of C_c. Then max_{i∈C_c} ||a_i − x_c|| ≥ R_c
(minimality of the MEB), so T(X) ≥ max_c R_c² = R*²; the MEB centres attain it. ∎

The MEB of each cluster is exact: its boundary points are extreme points of the cluster, and the
ball is the circumball (within their affine hull) of at most n + 1 of them, so the smallest
candidate circumball of ≤ n + 1 convex-hull vertices that contains the cluster is the MEB
(enumeration; n ≤ 3). Its optimality certificate, the centre in the convex hull of the boundary
points (the KKT condition of min_c max_i ||c − a_i||²), is checked on every ball
(:func:`certify_enclosing_ball`, SolverError when it fails).

Generation (seeded, float64): sizes ∝ linspace(1, 3, k) (largest remainder, each ≥ 1, shuffled),
spreads σ_c ∈ linspace(0.5, 1.5, k) (shuffled), offsets ~ N(0, σ_c² I) re-centred to mean 0; the
centres on a regular k-gon (random rotation; a line for n = 1) whose side is ``separation`` × the
largest pairwise distance the two lemmas need; then everything is scaled so the centres lie on the
unit circle (k = 1: so the cluster's radius r_1 is 1). ``separation`` < 1 may fail the check.

Starting points (``initial_points``): uniform in the bounding box of the anchors; ``num_starts`` = k.
Runner defaults: Adam, lr 1e-2, 1000 steps (the anchors span about [−1.3, 1.3]²: Adam moves ~lr
per step). No analytic Pareto front (K = m objectives): hypervolume and IGD are None; the set
metrics come from :meth:`extra_metrics`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem


def minimum_enclosing_ball(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The exact minimum enclosing ball of ``points`` (N, n), n ≤ 3: (centre (n,), squared radius).

    Candidates: the circumballs, within their affine hull, of every affinely independent subset of
    ≤ n + 1 extreme points (convex-hull vertices); the MEB is the smallest candidate that contains
    every point (containment of the distances up to 64 eps of the radius plus 64 eps of max |a|).
    """
    A = np.asarray(points, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] < 1:
        raise ValueError(f"minimum_enclosing_ball: need points of shape (N, n), N >= 1, got {A.shape}")
    N, n = A.shape
    if n > 3:
        raise ValueError(f"minimum_enclosing_ball: exact enumeration is implemented for n <= 3, got n={n}")
    if not np.isfinite(A).all():
        raise ValueError("minimum_enclosing_ball: non-finite points")
    if N == 1:
        return A[0].copy(), 0.0
    candidates = _extreme_points(A)  # indices of the convex-hull vertices
    slack = 64 * np.finfo(np.float64).eps * float(np.abs(A).max())  # rounding of a distance at this coordinate size
    best_c, best_r2 = None, math.inf
    for size in range(2, min(n + 1, len(candidates)) + 1):
        subsets = np.array(list(itertools.combinations(candidates, size)))  # (S, size)
        base = A[subsets[:, 0]]  # (S, n)
        V = A[subsets[:, 1:]] - base[:, None, :]  # p_j − p_0, (S, size−1, n)
        G = V @ V.transpose(0, 2, 1)  # Gram matrix VVᵀ, (S, size−1, size−1)
        rhs = 0.5 * np.einsum("sjj->sj", G)  # ||p_j − p_0||² / 2, (S, size−1)
        det = np.linalg.det(G)  # (S,)
        gscale = np.einsum("sjj->s", G) ** (size - 1)
        ok = np.abs(det) > 1e-10 * gscale  # affinely independent subsets only
        if not ok.any():
            continue
        t = np.linalg.solve(G[ok], rhs[ok][..., None])[..., 0]  # VVᵀ t = diag(VVᵀ)/2, (S', size−1)
        centres = base[ok] + np.einsum("sj,sjn->sn", t, V[ok])  # circumcentre in the affine hull, (S', n)
        r2 = ((centres - base[ok]) ** 2).sum(1)  # (S',)
        d2 = ((A[None, :, :] - centres[:, None, :]) ** 2).sum(2).max(1)  # farthest point², (S',)
        contains = np.sqrt(d2) <= np.sqrt(r2) * (1 + 64 * np.finfo(np.float64).eps) + slack
        if contains.any():
            j = np.flatnonzero(contains)[np.argmin(r2[contains])]
            if r2[j] < best_r2:
                best_c, best_r2 = centres[j], float(max(r2[j], d2[j]))
    if best_c is None:  # all points equal
        return A[0].copy(), 0.0
    certify_enclosing_ball(A, best_c, best_r2)
    return best_c, best_r2


def certify_enclosing_ball(points: np.ndarray, centre: np.ndarray, r2: float) -> None:
    """Raise SolverError unless (centre, r²) is the minimum enclosing ball of ``points`` (N, n).

    Optimality (KKT of min_c max_i ||c − a_i||²): every point within the radius, and the centre a convex
    combination of the points on the boundary (non-negative least squares on [a_i; 1] λ = [c; 1]).
    Tolerances: 1e-12 of max |a| on the distances, 1e-9 of max |a| to call a point a boundary point
    and on the residual.
    """
    from scipy.optimize import nnls

    from reference_impls.core.solvers import SolverError

    A = np.asarray(points, dtype=np.float64)
    size = max(float(np.abs(A).max()), np.finfo(np.float64).tiny)
    d = np.sqrt(((A - centre) ** 2).sum(1))  # (N,)
    radius = math.sqrt(r2)
    if float(d.max()) > radius + 1e-12 * size:
        raise SolverError(f"minimum_enclosing_ball: a point lies {float(d.max()) - radius:.3g} outside the ball")
    on = A[d >= radius - 1e-9 * size]  # boundary points, (B, n)
    _, residual = nnls(np.vstack([on.T, np.ones(len(on))]), np.append(centre, 1.0))
    if residual > 1e-9 * max(size, 1.0):
        raise SolverError(f"minimum_enclosing_ball: the centre is not in the hull of the boundary points (residual {residual:.3g})")


def _extreme_points(A: np.ndarray) -> list[int]:
    """Indices of the extreme points of A (N, n) (every point when the hull is degenerate or N ≤ n + 1)."""
    N, n = A.shape
    unique = np.unique(A, axis=0, return_index=True)[1]  # duplicates cannot change the ball
    if n == 1:
        return sorted({int(np.argmin(A[:, 0])), int(np.argmax(A[:, 0]))})
    if len(unique) <= n + 1:
        return sorted(int(i) for i in unique)
    from scipy.spatial import ConvexHull, QhullError

    try:
        return sorted(int(i) for i in unique[ConvexHull(A[unique]).vertices])
    except QhullError:  # a flat cluster (collinear in 2-D, coplanar in 3-D): enumerate every distinct point
        return sorted(int(i) for i in unique)


class Clusters(Problem):
    id = "clusters"
    default_optimizer = "adam"
    default_steps = 1000
    default_lr = 1e-2

    def __init__(self, m: int = 128, k: int = 5, n: int = 2, seed: int = 0, separation: float = 1.25,
                 num_starts: int | None = None, **kw: Any) -> None:  # fmt: skip
        if int(k) != k or int(m) != m or not 1 <= int(k) <= int(m):
            raise ValueError(f"clusters: need integers 1 <= k <= m, got m={m}, k={k}")
        if int(n) != n or not 1 <= int(n) <= 3:
            raise ValueError(f"clusters: n must be 1, 2 or 3 (the exact minimum enclosing balls), got n={n}")
        if not separation > 0:
            raise ValueError(f"clusters: separation must be positive, got {separation}")
        m, k, n = int(m), int(k), int(n)
        super().__init__(m, n, **kw)
        self.m, self.k, self.seed, self.separation = m, k, int(seed), float(separation)
        self.num_starts = k if num_starts is None else int(num_starts)
        anchors, labels = self._generate(np.random.default_rng(int(seed)))
        self._anchors_np, self._labels_np = anchors, labels
        self.anchors = self._tensor(anchors)  # a_i, (m, n)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)  # planted cluster of a_i, (m,)
        self._certify()

    # ------------------------------------------------------------------------------------------
    # Instance
    # ------------------------------------------------------------------------------------------

    def _generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        m, k, n = self.m, self.k, self.n
        share = np.linspace(1.0, 3.0, k) / np.linspace(1.0, 3.0, k).sum() * (m - k)  # unequal sizes beyond 1 each
        sizes = 1 + np.floor(share).astype(int)
        sizes[np.argsort(-(share - np.floor(share)))[: m - sizes.sum()]] += 1  # largest remainder: Σ sizes = m
        sizes = rng.permutation(sizes)
        spreads = rng.permutation(np.linspace(0.5, 1.5, k))
        offsets = []
        for size, sigma in zip(sizes, spreads):
            z = rng.standard_normal((size, n)) * sigma  # (n_c, n)
            offsets.append(z - z.mean(0))  # the planted centre is the cluster mean exactly
        need = self._required_separation(offsets)  # (k, k) centre distance each pair needs
        side = self.separation * float(need.max()) if k > 1 else 0.0
        side = side if side > 0 or k == 1 else 1.0  # singleton clusters need nothing: any distinct centres
        if n == 1:
            centres = (np.arange(k) - (k - 1) / 2)[:, None] * side  # (k, 1)
        else:
            angle = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(k) / k
            radius = side / (2 * np.sin(np.pi / k)) if k > 1 else 0.0  # regular k-gon with this side
            centres = np.zeros((k, n))
            centres[:, 0], centres[:, 1] = radius * np.cos(angle), radius * np.sin(angle)
        anchors = np.concatenate([c + z for c, z in zip(centres, offsets)])  # (m, n)
        labels = np.repeat(np.arange(k), sizes)  # (m,)
        extent = float(np.linalg.norm(centres, axis=1).max()) if k > 1 else float(np.linalg.norm(offsets[0], axis=1).max())
        return anchors / (extent if extent > 0 else 1.0), labels

    @staticmethod
    def _required_separation(offsets: list[np.ndarray]) -> np.ndarray:
        """(k, k): the centre distance each pair needs for Lemmas 1 and 2 (offsets are centred clusters)."""
        r = np.array([np.linalg.norm(z, axis=1).max() for z in offsets])  # r_c
        sizes = np.array([len(z) for z in offsets])
        W = sum(float((z**2).sum()) for z in offsets)  # planted within-cluster cost
        rho = r + np.sqrt(W / sizes)  # ρ_c
        R = max(math.sqrt(minimum_enclosing_ball(z)[1]) for z in offsets)  # R* ≤ max r_c
        lemma1 = 2 * np.maximum(r[:, None], r[None, :]) + rho[:, None] + rho[None, :]
        lemma2 = 2 * R + r[:, None] + r[None, :]  # ||a_i − a_j|| ≥ ||μ_c − μ_d|| − r_c − r_d > 2R*
        return np.maximum(lemma1, lemma2)

    def _certify(self) -> None:
        """Check the separation conditions of Lemmas 1 and 2 on the actual anchors; ValueError if one fails."""
        A, lab, k = self._anchors_np, self._labels_np, self.k
        groups = [A[lab == c] for c in range(k)]
        mu = np.stack([g.mean(0) for g in groups])  # μ_c, (k, n)
        r = np.array([np.linalg.norm(g - mu_c, axis=1).max() for g, mu_c in zip(groups, mu)])  # r_c
        sizes = np.array([len(g) for g in groups])
        W = float(sum(((g - mu_c) ** 2).sum() for g, mu_c in zip(groups, mu)))
        rho = r + np.sqrt(W / sizes)  # ρ_c
        balls = [minimum_enclosing_ball(g) for g in groups]
        R2 = np.array([b[1] for b in balls])  # R_c²
        R = math.sqrt(float(R2.max()))
        for c, d in itertools.combinations(range(k), 2):
            gap = float(np.linalg.norm(mu[c] - mu[d]))
            need = 2 * max(r[c], r[d]) + rho[c] + rho[d]
            if not gap > need:
                raise ValueError(
                    f"clusters: Lemma 1 fails for clusters {c}, {d}: ||mu_c - mu_d|| = {gap:.6g} <= "
                    f"2 max(r_c, r_d) + rho_c + rho_d = {need:.6g} (raise separation, now {self.separation})"
                )
            closest = float(np.sqrt(((groups[c][:, None, :] - groups[d][None, :, :]) ** 2).sum(2).min()))
            if not closest > 2 * R:
                raise ValueError(
                    f"clusters: Lemma 2 fails for clusters {c}, {d}: closest anchors {closest:.6g} apart <= 2R* = {2 * R:.6g}"
                    f" (raise separation, now {self.separation})"
                )
        self._means, self._W = mu, W
        self._meb_centres, self._meb_r2 = np.stack([b[0] for b in balls]), R2
        self.cluster_radii, self.cluster_rho = r, rho  # r_c, ρ_c (k,) for tests and plots

    # ------------------------------------------------------------------------------------------
    # Objectives
    # ------------------------------------------------------------------------------------------

    def _losses(self, x: Tensor) -> Tensor:
        diff = x[:, None, :] - self.anchors[None].to(x)  # x − a_i, (B, m, n)
        return (diff**2).sum(2)  # f_i(x) = ||x − a_i||², (B, m)

    def _jacobian(self, x: Tensor) -> Tensor:
        return 2 * (x[:, None, :] - self.anchors[None].to(x))  # ∇f_i = 2(x − a_i), (B, m, n)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = x[:, None, :] - self._anchors_np[None].astype(x.dtype)  # (B, m, n)
        return (diff**2).sum(2), 2 * diff  # (B, m), (B, m, n)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        lo, hi = self.anchors.min(0).values.cpu(), self.anchors.max(0).values.cpu()  # bounding box (n,)
        u = torch.rand(self._num_points(num), self.n, generator=g, dtype=self.dtype)  # (P, n)
        return (lo + u * (hi - lo)).to(self.device)

    # ------------------------------------------------------------------------------------------
    # Known optima (Lemmas 1 and 2)
    # ------------------------------------------------------------------------------------------

    def objective_minimisers(self) -> Tensor:
        """The minimiser of each objective: the anchors (m, n)."""
        return self.anchors.clone()

    def optimal_centres(self) -> Tensor:
        """The unique optimal sum-of-minimum set for k solutions (Lemma 1): the planted cluster means (k, n)."""
        return self._tensor(self._means)

    def optimal_sum_of_min(self) -> float:
        """min over k-point sets of (1/m) Σ_i min_j f_i(x_j) = W/m (Lemma 1)."""
        return self._W / self.m

    def minimax_centres(self) -> Tensor:
        """A minimiser of max_i min_j f_i(x_j) over k-point sets: the clusters' MEB centres (k, n) (Lemma 2)."""
        return self._tensor(self._meb_centres)

    def optimal_tch_set(self) -> float:
        """min over k-point sets of max_i min_j f_i(x_j) = max_c R_c² (Lemma 2)."""
        return float(self._meb_r2.max())

    def extra_metrics(self, X: Tensor, F: Tensor) -> dict[str, Any]:
        """Set metrics of X (P, n), F (P, m) against the proven optima.

        ``centre_distance`` max_c min_p ||x_p − μ_c|| (0 iff every planted centre is found);
        ``clusters_found`` the number of planted centres with a solution within ρ_c (Lemma 1's balls);
        ``sum_of_min_gap`` (1/m) Σ_i min_p F_pi − W/m and ``tch_set_gap`` max_i min_p F_pi − max_c R_c²
        (both ≥ 0 by the lemmas when P = k; None for P ≠ k, where the optima differ).
        """
        X = torch.as_tensor(X, dtype=torch.float64).detach().cpu()
        F = torch.as_tensor(F, dtype=torch.float64).detach().cpu()
        mu = torch.as_tensor(self._means)  # (k, n)
        dist = torch.cdist(mu, X).min(1).values  # distance of each planted centre to the set, (k,)
        served = F.min(0).values  # min_p f_i(x_p), (m,)
        exact = X.shape[0] == self.k
        return {
            "centre_distance": float(dist.max()),
            "clusters_found": int((dist <= torch.as_tensor(self.cluster_rho)).sum()),
            "sum_of_min_gap": float(served.mean()) - self.optimal_sum_of_min() if exact else None,
            "tch_set_gap": float(served.max()) - self.optimal_tch_set() if exact else None,
        }


__all__ = ["Clusters", "certify_enclosing_ball", "minimum_enclosing_ball"]
