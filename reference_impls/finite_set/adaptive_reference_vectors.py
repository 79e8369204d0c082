r"""Adaptive reference vectors (GMOOAR): a bilevel scheme that moves the reference vectors to raise the hypervolume.

Paper: Weiyu Chen and James T. Kwok, "Multi-Objective Deep Learning with Adaptive Reference Vectors",
NeurIPS 2022 (OpenReview 9-8YT5G36g-; Algorithm 1, "GMOOAR"). No official code was found (searched
GitHub and the proceedings page; the reproducibility record of the paper lists none), and the paper's
full text was not available to this implementation: **the algorithm below is reconstructed** from the
paper's stated formulation (abstract and Algorithm 1's outline: reference-vector adaptation posed as a
bilevel problem; the lower level solves one reference-vector-based subproblem per vector, the upper level
moves the vectors to improve the quality of the solution set, measured by the hypervolume) and the
reconstructed steps are listed as R1–R4 (deviations D1–D4). The catalog record should be marked
"reconstructed".

Update rule:
    The bilevel problem (the paper's formulation): the upper level maximises the hypervolume of the
    set at the reference point :math:`r`; the lower level solves one subproblem :math:`S` per
    reference vector :math:`u_k`:

    .. math::

        \max_{U = (u_1, \dots, u_P)}\ \operatorname{HV}\big( \{ F(x^\ast_k(u_k)) \}_k;\ r \big) \quad \text{s.t.} \quad x^\ast_k(u_k) \in \arg\min_x S(F(x); u_k), \quad k = 1, \dots, P

    Solver (single loop, alternating; R4). Lower level, every step, per solution :math:`k`: the
    modified Tchebycheff direction (R1; as ``umod``: the active objective's gradient, not divided
    by its entry of :math:`u_k`, umod's D1; the function's optimum lies on the ray
    :math:`z + t u_k`), with :math:`z` the ideal point (ties go to the first index; a zero entry
    of :math:`u_k` is the limit :math:`u_{k,i} \to 0`):

    .. math::

        i^\ast_k = \arg\max_{1 \le i \le K} \frac{f_i(x_k) - z_i}{u_{k,i}}, \qquad D_k = \nabla f_{i^\ast_k}(x_k)

    and the runner hands :math:`D_k` to the problem's optimiser (with plain SGD,
    :math:`x_k \leftarrow x_k - \eta D_k`).

    Upper level, every ``adapt_every`` steps inside the adaptation window: the reference point only
    grows (R3; :math:`F^{\text{worst}}` is each objective's worst value seen so far, the margin 0.1),
    and the hypervolume is normalised (exact 2-D gradient; :math:`K = 3`: central differences, D5):

    .. math::

        r = z + (1 + \mathrm{margin})\big(F^{\text{worst}} - z\big), \qquad g_k = \frac{\partial \operatorname{HV}_{\text{norm}}}{\partial F_k}, \qquad \operatorname{HV}_{\text{norm}} = \frac{\operatorname{HV}}{\prod_i (r_i - z_i)}

    With :math:`n_k` the unit normal of the least-squares plane through :math:`F_k` and its
    :math:`K` nearest neighbours in objective space (R2'), the implicit hypergradient on the front
    linearised at :math:`F_k` (R2) and the ascent step projected on the simplex (:math:`\beta` =
    ``upper_lr``; :math:`u_k` is first scaled onto the simplex):

    .. math::

        t_k = \frac{n_k^\top (F_k - z)}{n_k^\top u_k}, \qquad \frac{\partial F_k}{\partial u_k} = t_k \Big( I - \frac{u_k n_k^\top}{n_k^\top u_k} \Big), \qquad u_k \leftarrow \Pi_\Delta\Big( u_k + \beta \Big(\frac{\partial F_k}{\partial u_k}\Big)^{\top} g_k \Big)

    (:math:`u_k` is unchanged where :math:`n_k^\top u_k \le 0` or :math:`g_k = 0`.)

R2 follows from the lower level: the subproblem's solution is where the ray from z along u meets the
front; with the front replaced by its tangent plane at the current solution, F(u) = z + t(u)·u with t
as above, whose Jacobian is the oblique projection above. The update is therefore the exact gradient
of the hypervolume when the front is locally flat, computed without second derivatives of the
network (test: equal to finite differences on a linear front). R2': the normal is estimated from the
set in objective space rather than from the Jacobians (Pareto-stationarity weights of the Jacobian):
on box-constrained problems (ZDT) the Jacobian's min-norm weights are not the front's normal (the
bound-pushing coordinates dominate), and the upper level then drives every vector to one end of the
front (observed: all 8 solutions at (1, 0) on ZDT1).

Defaults (no official code; chosen here and stated): β = 0.5 (``upper_lr``) on the normalised
hypervolume (scale-free); adaptation window 20 %–80 % of the step budget (``begin(steps=...)``), one
upper-level step every 10 lower-level steps; margin 0.1 for the reference point; z = the problem's ideal
point when the runner passes it, else 0 (as libmoon's scalarisations). Optimiser of the solutions: the
runner's (the problem's default).

Deviations:
    D1. R1, reconstructed: the lower-level subproblem is the modified Tchebycheff function, the max
        over objectives of the gap to z divided by the vector's entry, whose minimiser lies on the
        ray from z along u (as the rays of reference-vector methods; the direction is libmoon's
        mTche subgradient, see :mod:`reference_impls.finite_set.umod`, D1). The paper's own
        lower-level solver may differ (it cites PMTL/EPO-style reference-vector methods).
    D2. R2, reconstructed: hypergradient by the implicit function theorem on the linearised front
        (the update rule's oblique projection), not by unrolling lower-level steps; the front normal is estimated from the set in
        objective space (R2').
    D3. R3, reconstructed: reference point of the hypervolume 10 % beyond the worst value of each
        objective seen so far (initial set included), or ``reference`` when given. A reference that
        follows the set's current extent (tried first) shrinks with the set and collapses it; one at
        the front's nadir gives the end points zero contribution, so they stop moving and can
        coincide.
    D4. R4, reconstructed: single loop (lower-level steps interleaved with upper-level steps in a
        window of the budget) rather than a solve-to-convergence inner loop; the last 20 % only
        refine the solutions.
    D5. The upper level needs K ≤ 3 (an exact hypervolume); K = 3 differentiates it by central
        differences, K = 2 in closed form.
    D6. Preferences are rows on the simplex (the reference vectors' directions; scale is irrelevant to
        mTche); the paper's reference vectors are directions in objective space, the same rays.

Degenerate inputs: K = 1 or a set of dominated points gives no upper-level move (zero hypervolume
gradient); zero reference-vector entries follow mTche's limit (see :func:`~reference_impls.finite_set.umod.mtche_active`);
a normal orthogonal to the ray leaves the vector unchanged; non-finite losses or Jacobians and
invalid preferences raise ValueError; K > 3 raises ValueError in the upper level (no exact hypervolume).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls import metrics
from reference_impls.core.sets import SetMethod, check_preferences
from reference_impls.core.solvers import project_simplex
from reference_impls.finite_set.umod import _check_inputs, mtche_directions


def hypervolume_gradient_2d(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact ∂HV/∂F (P, 2) for points F (P, 2) and reference ``ref`` (2,); zero for dominated or outside points.

    With the non-dominated points sorted by f_1 (f_2 decreasing): HV = Σ_k (r_1 − f_{k,1})(f_{k−1,2} − f_{k,2}),
    f_{0,2} = r_2, so ∂HV/∂f_{k,1} = −(f_{k−1,2} − f_{k,2}) and ∂HV/∂f_{k,2} = −(f_{k+1,1} − f_{k,1}), f_{P+1,1} = r_1.
    Duplicated points share the gradient of the first (the others contribute nothing).
    """
    P = F.shape[0]
    grad = np.zeros((P, 2))
    inside = np.flatnonzero((F < ref).all(1))
    if inside.size == 0:
        return grad
    front = inside[metrics.nondominated(F[inside])] if inside.size > 1 else inside
    front = front[np.lexsort((F[front, 1], F[front, 0]))]  # by f_1, then f_2
    keep = [front[0]]
    for k in front[1:]:  # drop exact duplicates and weakly dominated points (equal f_1)
        if F[k, 0] > F[keep[-1], 0] and F[k, 1] < F[keep[-1], 1]:
            keep.append(k)
    S = F[keep]  # (m, 2), f_1 increasing, f_2 decreasing
    prev_f2 = np.concatenate([[ref[1]], S[:-1, 1]])  # (m,)
    next_f1 = np.concatenate([S[1:, 0], [ref[0]]])  # (m,)
    grad[keep, 0] = -(prev_f2 - S[:, 1])  # ∂HV/∂f_1
    grad[keep, 1] = -(next_f1 - S[:, 0])  # ∂HV/∂f_2
    return grad


def hypervolume_gradient(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """∂HV/∂F (P, K): exact for K = 2; central differences of the exact hypervolume for K = 3."""
    K = F.shape[1]
    if K == 2:
        return hypervolume_gradient_2d(F, ref)
    if K != 3:
        raise ValueError(f"adaptive-reference-vectors: the hypervolume gradient needs K in (2, 3), got K={K}")
    h = 1e-6 * float(np.max(ref - F.min(0)))
    grad = np.zeros_like(F)
    for k in range(F.shape[0]):
        for i in range(K):
            Fp, Fm = F.copy(), F.copy()
            Fp[k, i] += h
            Fm[k, i] -= h
            grad[k, i] = (metrics.hypervolume(Fp, ref) - metrics.hypervolume(Fm, ref)) / (2 * h)
    return grad


def front_normals(F: np.ndarray) -> np.ndarray:
    """Unit front normals (P, K) estimated from the set itself: the normal of the least-squares plane through
    each point and its K nearest neighbours in objective space, oriented into the positive orthant (R2').

    Rows are zero where the neighbourhood is degenerate (fewer than K + 1 distinct points, or a normal
    with no positive orientation).
    """
    P, K = F.shape
    normals = np.zeros((P, K))
    if P < K:
        return normals
    D = np.linalg.norm(F[:, None, :] - F[None, :, :], axis=2)  # (P, P)
    for k in range(P):
        order = np.argsort(D[k], kind="stable")
        hood = F[order[: K + 1]] if P > K else F  # the point and its K nearest neighbours
        centred = hood - hood.mean(0)
        _, s, Vt = np.linalg.svd(centred)
        if s.shape[0] < K - 1 or s[K - 2] <= 1e-12 * max(1.0, float(np.abs(hood).max())):
            continue  # the neighbours do not span a (K − 1)-plane
        n = Vt[K - 1] if Vt.shape[0] >= K else Vt[-1]
        n = n if n.sum() >= 0 else -n  # orient: the front's normal points into the positive orthant
        if n.sum() > 0:
            normals[k] = n
    return normals


def reference_vector_hypergradient(F: Tensor, U: Tensor, ideal: Tensor, ref: Tensor) -> Tensor:
    """(∂F_k/∂u_k)ᵀ ∂HV_norm/∂F_k (P, K), HV_norm = HV/Π(r − z), with the front linearised at each F_k (R2)."""
    P, K = F.shape
    F64 = F.detach().double().cpu().numpy()
    z = ideal.detach().double().cpu().numpy()
    ref = ref.detach().double().cpu().numpy()
    scale = np.prod(ref - z)
    if not scale > 0:
        return torch.zeros_like(U)  # a set collapsed onto the ideal in some objective: no volume to grow
    gF = hypervolume_gradient(F64, ref) / scale  # (P, K), ∂HV_norm/∂F
    normals = front_normals(F64)  # (P, K)
    U64 = U.detach().double().cpu().numpy()
    nu = (normals * U64).sum(1)  # (P,), nᵀu
    ok = (nu > 0) & gF.any(1)
    safe = np.where(ok, nu, 1.0)
    t = (normals * (F64 - z)).sum(1) / safe  # (P,), F = z + t·u on the tangent plane
    ug = (U64 * gF).sum(1)  # (P,), uᵀg
    out = t[:, None] * (gF - normals * (ug / safe)[:, None])  # t (I − n uᵀ/(nᵀu)) g = (∂F/∂u)ᵀ g
    out[~ok] = 0.0
    return torch.from_numpy(out).to(U)


class AdaptiveReferenceVectors(SetMethod):
    """GMOOAR (reconstructed): mTche lower level per reference vector, hypervolume-ascent upper level."""

    name: ClassVar[str] = "adaptive-reference-vectors"
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        *,
        upper_lr: float = 0.5,
        adapt_every: int = 10,
        window: tuple[float, float] = (0.2, 0.8),
        margin: float = 0.1,
        reference: Tensor | None = None,
    ) -> None:
        if upper_lr <= 0 or adapt_every < 1 or not 0 <= window[0] <= window[1] <= 1 or margin <= 0:
            raise ValueError("adaptive-reference-vectors: need upper_lr > 0, adapt_every >= 1, 0 <= window <= 1, margin > 0")
        self.upper_lr = float(upper_lr)
        self.adapt_every = int(adapt_every)
        self.window = (float(window[0]), float(window[1]))
        self.margin = float(margin)
        self.fixed_reference = None if reference is None else torch.as_tensor(reference, dtype=torch.float64)
        self.reset()

    def reset(self) -> None:
        self.ideal: Tensor | None = None
        self._start = 0
        self._stop = -1
        self.upper_steps = 0  # upper-level updates applied
        self.reference: Tensor | None = None  # r of the last upper-level hypervolume (R3)
        self._worst: Tensor | None = None

    def target_rays(self, preferences: Tensor) -> Tensor:
        """The lower level's optimum lies on the ray z + t·u: the direction u/||u|| (P, K)."""
        return preferences / preferences.norm(dim=1, keepdim=True)

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self.reset()
        self.ideal = torch.zeros(F0.shape[1], dtype=F0.dtype, device=F0.device) if ideal is None else ideal.to(F0)
        self._worst = F0.max(0).values  # (K,) running worst value of each objective
        self._start = round(self.window[0] * steps)
        self._stop = round(self.window[1] * steps)

    def _z(self, F: Tensor) -> Tensor:
        return self.ideal.to(F) if self.ideal is not None and self.ideal.shape[0] == F.shape[1] else torch.zeros_like(F[0])

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        prefs = _check_inputs(F, J, preferences, "adaptive-reference-vectors")
        return mtche_directions(F, J, prefs, self._z(F))  # (P, n), lower level (R1)

    def adapt_preferences(self, X: Tensor, F: Tensor, preferences: Tensor | None, t: int) -> Tensor | None:
        if preferences is None or not self._start <= t < self._stop:
            return None
        if (t + 1 - self._start) % self.adapt_every:
            return None
        P, K = F.shape
        if K < 2:
            return None
        U = check_preferences(preferences, P, K).to(F)
        U = U / U.sum(1, keepdim=True)  # (P, K) on the simplex
        if not bool(torch.isfinite(F).all()):
            raise ValueError("adaptive-reference-vectors: the losses contain NaN or infinite values")
        z = self._z(F)
        if self.fixed_reference is not None:
            ref = self.fixed_reference.to(F)
        else:  # R3: 10 % beyond the worst value of each objective seen so far (initial set included)
            self._worst = torch.maximum(self._worst.to(F), F.max(0).values)  # (K,)
            ref = z + (1 + self.margin) * (self._worst - z)
        self.reference = ref
        g = reference_vector_hypergradient(F, U, z, ref)  # (P, K)
        self.upper_steps += 1
        return project_simplex(U + self.upper_lr * g)  # u ← Π_Δ(u + β ∂HV/∂u)


__all__ = ["AdaptiveReferenceVectors", "hypervolume_gradient", "hypervolume_gradient_2d", "reference_vector_hypergradient"]
