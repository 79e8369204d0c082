r"""FERERO (id ``ferero``): preference-guided multi-objective learning as constrained vector optimisation.

Paper: Lisha Chen, A F M Saif, Yanning Shen, Tianyi Chen, "FERERO: A Flexible Framework for
Preference-Guided Multi-Objective Learning", NeurIPS 2024 (OpenReview BmG3NgH5xu; no arXiv version).
Official code: lisha-chen/FERERO, ``toy_experiments/solvers/ferero.py`` (``ferero_search``,
``get_d_ferero``) and ``toy_experiments/solvers/min_norm_solvers_numpy.py``
(``MinNormSolver.find_min_norm_element_PGD_H``).

Problem. Minimise the loss vector F(x) with respect to the polyhedral cone of a matrix A (q × K;
A = I is the Pareto order) subject to preference equality constraints h(x) = 0 (the ray: F parallel
to v) and, optionally, inequality constraints g(x) ≤ 0 (a region of interest). Each step solves a
small quadratic program for the direction, through its dual.

Update rule:
    At a solution :math:`x` with losses :math:`F(x) \in \mathbb{R}^K` and Jacobian
    :math:`\nabla F = J` (:math:`K \times n`), the constraints are
    :math:`h(x) = B_h F(x) = 0` and :math:`g(x) = B_g F(x) \le 0`. The paper's direction
    subproblem for a step :math:`x \leftarrow x + \eta d`:

    .. math::

        \min_{d,\, c}\ c + \tfrac{1}{2}\lVert d \rVert^2 \quad \text{s.t.} \quad A \nabla F\, d \le c\,\mathbb{1}, \quad B_h \nabla F\, d = -c_h\, h(x), \quad B_g \nabla F\, d \le -c_g\, g(x)

    is solved through its dual, a QP over the multipliers
    :math:`y = (\lambda_f, \lambda_g, \lambda_h)` with
    :math:`\lambda = A^\top \lambda_f + B_g^\top \lambda_g + B_h^\top \lambda_h \in \mathbb{R}^K`,
    solved exactly and KKT-certified (:func:`simplex_qp`, D1; rows with a vanishing gradient are
    dropped, D3):

    .. math::

        \min_{\lambda_f \in \Delta^q,\ \lambda_g \ge 0,\ \lambda_h \in \mathbb{R}^m}\ \tfrac{1}{2} \lambda^\top (J J^\top) \lambda - c_h\, \lambda_h^\top h(x) - c_g\, \lambda_g^\top g(x)

    The direction returned to the runner is :math:`D = -d`, handed to the problem's optimiser (no
    run defaults are set here; with plain SGD, as the official toy, the step below):

    .. math::

        D = J^\top \lambda = \sum_{k=1}^K \lambda_k \nabla f_k, \qquad x \leftarrow x - \eta D

    The preference row :math:`v \ge 0` is the ray itself (unit-normalised): :math:`B_h` has the
    :math:`K - 1` orthonormal rows orthogonal to :math:`v`; for :math:`K = 2` the official
    :math:`B_h = (v_2, -v_1)`, for :math:`K \ge 3` the last :math:`K - 1` rows of the Householder
    reflection that maps :math:`v` to a multiple of the first axis (D2):

    .. math::

        B_h = \begin{pmatrix} v_2 & -v_1 \end{pmatrix} \ (K = 2), \qquad B_h = \big[\, I - 2\, w w^\top / \lVert w \rVert^2 \,\big]_{2..K}, \quad w = v + \operatorname{sign}(v_1)\, e_1 \ (K \ge 3)

Preferences: each row (non-negative, not all zero) is the ray itself: the solution should end with
F parallel to it (from the origin). The official toy passes the reciprocal of EPO's preference r to
compare with EPO; ``target_rays`` returns the unit row. A zero entry asks for that loss to be 0.
K = 1: no constraint, plain gradient descent.

Defaults (source): A = I (paper's Pareto order; ``ferero_search(A=np.eye(2))``); c_h = 1 (the
``- 1*H`` term of ``find_min_norm_element_PGD_H``); c_g = 1 (no inequality in the official toy;
same rule); toy step 0.5 with plain SGD (``compare_solvers.py``: ``ferero_search(..., step_size=0.5)``,
from starts (±0.3, ...) plus 0.1 times standard normal noise). From VLMOP2's uniform (−0.5, 0.5)
starts (this project's problem), step 0.5 sends the outermost solution of 2 of 6 seeds onto the
plateau f = (1, 1), where the gradient is ≈ 0, in its first step (a large equality multiplier where
the constraint's gradient is small) and it never leaves; with lr 0.1, 300 steps all reach their rays
(tests/reference_impls/test_ferero.py). No run defaults are set: the problem's apply.

Deviations:
    D1. The dual QP is solved exactly (support enumeration of the simplex / non-negative blocks,
        each face by a KKT linear system, the answer certified by the full KKT conditions with
        per-coordinate tolerances; :func:`simplex_qp`), not by the official projected gradient
        (γ = 0.1 from the cone multipliers 𝟙/K and the equality multiplier 1, stopped after 200
        iterations or a change < 1e-3), which stops early on ill-conditioned Gramians.
    D2. K ≥ 3: the equality rows are the K − 1 orthonormal rows of a Householder reflection that
        are orthogonal to v (the official code defines them only for K = 2 and fails with a
        NameError otherwise; for K = 1 its ``get_d_ferero`` returns one array where
        ``ferero_search`` unpacks two).
    D3. A constraint row whose gradient vanishes (its norm at most 64·K·ε times the sum over k of
        the row's entry magnitude times that loss's gradient norm, ε the dtype's epsilon) cannot be corrected to
        first order and makes the dual unbounded; it is dropped for that step (multiplier 0). Zero
        Jacobians thus give D = 0. The official PGD diverges instead. Cone rows are never dropped.
    D4. Inequality constraints are linearised like the equality ones (non-negative multipliers,
        linear term :math:`c_g\, g(x)`); the official toy code has none, so this follows the paper's
        subproblem only ⚠.
    D5. Losses or Jacobians with NaN/inf raise NonFiniteError (a ValueError).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.sets import SetMethod, check_preferences
from reference_impls.core.solvers import SolverError

_EPS64 = float(np.finfo(np.float64).eps)


# ------------------------------------------------------------------------------------------------
# A small certified QP: simplex block, non-negative block, free block (shared by ferero, pmgda, xwc-mgda)
# ------------------------------------------------------------------------------------------------


def simplex_qp(Q, b, n_simplex: int, *, n_nonneg: int = 0, lower=None, eps: float = _EPS64, what: str = "QP") -> np.ndarray:
    """y* = argmin ½ yᵀQy − bᵀy over y = (s, u, w): s ∈ {s ≥ l, Σ s = 1}, u ≥ 0, w free. Batched.

    Q (P, N, N) symmetric PSD and b (P, N), float64 arrays; s has ``n_simplex`` ≥ 1 entries with
    lower bounds ``lower`` (P, n_simplex) (default 0, Σ l < 1), u has ``n_nonneg`` entries, w the rest.

    Exact: every support pattern of the bounded blocks is tried (2^(n_simplex + n_nonneg) faces;
    these QPs have a few variables); on a face, the KKT system [[Q_FF, e_F], [e_Fᵀ, 0]] is solved by
    pseudo-inverse with three steps of iterative refinement. A face's point is accepted only if it satisfies the QP's KKT conditions
    (stationarity on the free coordinates, Qy − b + νe ≥ 0 on the bound ones, feasibility), each
    within κ·(|Q||y| + |b| + |ν|)_j, κ = 256·N·``eps`` (after scaling the
    objective to max_i Q_ii = 1); among accepted points the lowest objective
    wins (any KKT point of a convex QP is optimal: the minimiser in d = Jᵀλ space is unique).

    Raises SolverError (message starting with ``what``) when no face passes for some row.
    """
    Q = np.asarray(Q, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    P, N = b.shape
    ns, ng = int(n_simplex), int(n_nonneg)
    nb = ns + ng  # bounded coordinates
    if ns < 1 or nb > N or Q.shape != (P, N, N):
        raise ValueError(f"{what}: bad shapes Q {Q.shape}, b {b.shape}, n_simplex {ns}, n_nonneg {ng}")
    lo = np.zeros((P, nb))  # (P, nb) lower bounds of the bounded block
    if lower is not None:
        lo[:, :ns] = np.asarray(lower, dtype=np.float64)
    is_simplex = np.zeros(N, dtype=bool)
    is_simplex[:ns] = True
    # Same minimiser for the objective divided by s > 0: scale each row's QP to max_i Q_ii = 1 so that
    # the KKT matrix (whose constraint row holds ones) is balanced.
    s = np.abs(np.diagonal(Q, axis1=1, axis2=2)).max(1)  # (P,)
    s = np.where(s > 0, s, np.abs(b).max(1))
    s = np.where(s > 0, s, 1.0)
    Q, b = Q / s[:, None, None], b / s[:, None]
    kappa = 256.0 * N * max(eps, _EPS64)
    tiny = np.finfo(np.float64).tiny
    absQ = np.abs(Q)
    best_y = np.full((P, N), np.nan)
    best_obj = np.full(P, np.inf)
    for mask in range(1, 2**nb):
        support = np.array([(mask >> j) & 1 for j in range(nb)], dtype=bool)
        if not support[:ns].any():
            continue  # the simplex block needs a free coordinate
        free = np.concatenate([support, np.ones(N - nb, dtype=bool)])  # (N,)
        Fi, Bi = np.flatnonzero(free), np.flatnonzero(~free)
        m = Fi.size
        yB = lo[:, Bi]  # (P, |B|) bound coordinates sit at their bounds
        e = is_simplex[Fi].astype(np.float64)  # (m,) the sum constraint's row on the face
        KKT = np.zeros((P, m + 1, m + 1))
        KKT[:, :m, :m] = Q[:, Fi][:, :, Fi]
        KKT[:, :m, m] = e
        KKT[:, m, :m] = e
        rhs = np.zeros((P, m + 1))
        rhs[:, :m] = b[:, Fi] - np.einsum("pij,pj->pi", Q[:, Fi][:, :, Bi], yB)  # b_F − Q_FB y_B
        rhs[:, m] = 1.0 - yB[:, is_simplex[Bi]].sum(1)  # Σ s = 1
        pinv = np.linalg.pinv(KKT, rcond=1e-14)
        sol = np.einsum("pij,pj->pi", pinv, rhs)  # (P, m + 1)
        for _ in range(3):  # iterative refinement: componentwise backward error on ill-conditioned faces
            sol = sol + np.einsum("pij,pj->pi", pinv, rhs - np.einsum("pij,pj->pi", KKT, sol))
        y = np.empty((P, N))
        y[:, Fi] = sol[:, :m]
        y[:, Bi] = yB
        nu = sol[:, m]  # multiplier of Σ s = 1
        grad = np.einsum("pij,pj->pi", Q, y) - b + nu[:, None] * is_simplex  # ∇ of the Lagrangian, (P, N)
        scale = np.einsum("pij,pj->pi", absQ, np.abs(y)) + np.abs(b) + np.abs(nu)[:, None] * is_simplex
        tol = kappa * scale + tiny  # (P, N)
        ok = (np.abs(grad[:, Fi]) <= tol[:, Fi]).all(1)  # stationarity on the face
        ok &= (grad[:, Bi] >= -tol[:, Bi]).all(1)  # multipliers of the active bounds ≥ 0
        yb = y[:, :nb]  # bounded coordinates
        ok &= (yb >= lo - kappa * (np.abs(lo) + np.abs(yb)) - tiny).all(1)  # primal feasibility
        ok &= np.abs(y[:, :ns].sum(1) - 1.0) <= kappa * (1.0 + np.abs(y[:, :ns]).sum(1))
        ok &= np.isfinite(y).all(1)
        obj = 0.5 * np.einsum("pi,pij,pj->p", y, Q, y) - (b * y).sum(1)  # (P,)
        better = ok & (obj < best_obj)
        best_obj = np.where(better, obj, best_obj)
        best_y[better] = y[better]
    failed = ~np.isfinite(best_obj)
    if failed.any():
        p = int(np.flatnonzero(failed)[0])
        raise SolverError(f"{what}: no face of the QP passed its KKT check (row {p} of {P})")
    best_y[:, :nb] = np.maximum(best_y[:, :nb], lo)  # clip rounding-level infeasibility
    return best_y


def householder_complement(v: Tensor) -> Tensor:
    """Rows (P, K − 1, K): an orthonormal basis of v_p^⊥ for unit rows v (P, K) (K = 2: [v_2, −v_1])."""
    P, K = v.shape
    if K == 2:
        return torch.stack([v[:, 1], -v[:, 0]], dim=1)[:, None, :]  # B_h = [v_2, −v_1] (official), (P, 1, 2)
    s = torch.where(v[:, :1] >= 0, 1.0, -1.0).to(v)  # (P, 1) sign avoiding cancellation
    w = v.clone()
    w[:, :1] = w[:, :1] + s  # w = v + sign(v_1) e_1, (P, K)
    H = torch.eye(K, dtype=v.dtype, device=v.device) - 2.0 * w[:, :, None] * w[:, None, :] / (w * w).sum(1)[:, None, None]  # (P, K, K)
    return H[:, 1:, :]  # rows 2..K of the reflection: orthonormal and ⊥ v (row 1 is −sign(v_1) v)


def check_finite(F: Tensor, J: Tensor, name: str) -> None:
    if not bool(torch.isfinite(F).all()) or not bool(torch.isfinite(J).all()):
        raise NonFiniteError(f"{name}: losses or Jacobians contain NaN or infinite entries")


def unit_rays(preferences: Tensor) -> Tensor:
    """Rows scaled to unit Euclidean norm (P, K)."""
    return preferences / preferences.norm(dim=1, keepdim=True)


class FERERO(SetMethod):
    """D = Jᵀ(Aᵀλ_f + B_gᵀλ_g + B_hᵀλ_h) from FERERO's exact dual QP (preference ray F ∥ v)."""

    name = "ferero"
    needs_preferences = True

    def __init__(self, A: Tensor | None = None, B_g: Tensor | None = None, c_h: float = 1.0, c_g: float = 1.0) -> None:
        if not (c_h > 0 and c_g > 0):
            raise ValueError(f"ferero: c_h and c_g must be positive, got {c_h}, {c_g}")
        self.A = None if A is None else torch.as_tensor(A, dtype=torch.float64)  # (q, K) cone; None = I
        self.B_g = None if B_g is None else torch.as_tensor(B_g, dtype=torch.float64)  # (p, K) or (P, p, K)
        self.c_h = float(c_h)
        self.c_g = float(c_g)

    def target_rays(self, preferences: Tensor) -> Tensor:
        return unit_rays(check_preferences(preferences, name="ferero preferences").to(torch.float64))

    def constraint_matrix(self, preferences: Tensor, K: int) -> tuple[Tensor, int, int]:
        """C (P, q + p + m, K) stacking A, B_g, B_h for each solution, and the sizes q, p."""
        P = preferences.shape[0]
        v = unit_rays(preferences.to(torch.float64))  # (P, K)
        A = torch.eye(K, dtype=torch.float64) if self.A is None else self.A
        if A.ndim != 2 or A.shape[1] != K:
            raise ValueError(f"ferero: A must be (q, {K}), got {tuple(A.shape)}")
        blocks = [A.expand(P, -1, -1)]
        p = 0
        if self.B_g is not None:
            Bg = self.B_g if self.B_g.ndim == 3 else self.B_g.expand(P, -1, -1)
            if Bg.shape[0] != P or Bg.shape[2] != K:
                raise ValueError(f"ferero: B_g must be (p, {K}) or ({P}, p, {K}), got {tuple(self.B_g.shape)}")
            blocks.append(Bg)
            p = Bg.shape[1]
        if K >= 2:
            blocks.append(householder_complement(v))  # B_h (P, K − 1, K)
        return torch.cat(blocks, dim=1), A.shape[0], p

    def weights(self, F: Tensor, J: Tensor, preferences: Tensor) -> Tensor:
        """λ (P, K) with D = Σ_k λ_k ∇f_k."""
        P, K, n = J.shape
        check_finite(F, J, "ferero")
        r = check_preferences(preferences, P, K, name="ferero preferences")
        C, q, p = self.constraint_matrix(r, K)  # (P, R, K)
        F64, J64 = F.detach().to(torch.float64).cpu(), J.detach().to(torch.float64).cpu()
        Jn = J64.norm(dim=2)  # (P, K) ||∇f_k||
        M = torch.einsum("pkn,pln->pkl", J64, J64)  # J Jᵀ, (P, K, K)
        Q = torch.einsum("prk,pkl,psl->prs", C, M, C)  # C J Jᵀ Cᵀ, (P, R, R)
        CF = torch.einsum("prk,pk->pr", C, F64)  # constraint values B F, (P, R)
        b = torch.zeros_like(CF)  # linear term of the dual, (P, R)
        b[:, q : q + p] = self.c_g * CF[:, q : q + p]  # c_g g(x)
        b[:, q + p :] = self.c_h * CF[:, q + p :]  # c_h h(x)
        # D3: constraint rows whose gradient B∇F vanishes are dropped (the dual would be unbounded).
        eps = float(torch.finfo(J.dtype).eps)
        row_norm = Q.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # ||(C∇F)_r||, (P, R)
        row_scale = torch.einsum("prk,pk->pr", C.abs(), Jn)  # Σ_k |C_rk| ||∇f_k||
        dead = row_norm <= 64.0 * K * eps * row_scale
        dead[:, :q] = False  # the cone rows are never dropped
        Q = Q.masked_fill(dead[:, :, None] | dead[:, None, :], 0.0)
        b = b.masked_fill(dead, 0.0)
        y = simplex_qp(Q.numpy(), b.numpy(), q, n_nonneg=p, eps=eps, what="ferero dual QP")  # (P, R)
        y = torch.from_numpy(y).masked_fill(dead, 0.0)
        lam = torch.einsum("pr,prk->pk", y, C)  # λ = Aᵀλ_f + B_gᵀλ_g + B_hᵀλ_h, (P, K)
        return lam.to(dtype=J.dtype, device=J.device)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        if preferences is None:
            raise ValueError("ferero needs one preference vector (ray) per solution, got None")
        lam = self.weights(F, J, preferences)  # (P, K)
        return torch.einsum("pk,pkn->pn", lam, J)  # D = Σ_k λ_k ∇f_k = ∇Fᵀλ, (P, n)
