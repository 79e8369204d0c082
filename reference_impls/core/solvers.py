"""Small exact solvers shared by the methods: simplex projection and the min-norm point.

All problems here live in K dimensions (K = number of tasks, at most a few dozen), so they are
solved in float64 on the CPU from the K×K Gramian, whatever the dtype and device of the caller;
results are returned in the caller's dtype and device. Moving a K×K matrix is negligible next to
forming it (K²n operations).

* :func:`project_simplex` — Euclidean projection onto Δ = {w ≥ 0, Σ w = 1} (sort-based, exact).
* :func:`min_norm_weights` — λ* = argmin_{λ∈Δ} λᵀMλ, the min-norm point of conv{g_i} given only
  M = G Gᵀ. Wolfe's algorithm (P. Wolfe, "Finding the nearest point in a polytope", Math.
  Programming 11, 1976), written on the Gramian: finite, exact up to rounding, and it certifies
  optimality by the KKT conditions ⟨d, g_j⟩ ≥ ||d||² for every j.
* :func:`shifted_gramian` — Gramian of the shifted points g_i + s·ḡ (ḡ = mean of the g_i); it
  turns SDMGrad's and CAGrad's inner problems into min-norm problems.

A solver that cannot certify its answer raises :class:`SolverError`; it never returns silently.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError


class SolverError(RuntimeError):
    """A solver did not reach a certified solution."""


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (..., K) onto the probability simplex.

    Sort-based algorithm (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with u sorted in
    decreasing order, ρ = max{j : u_j − (Σ_{r≤j} u_r − 1)/j > 0}, τ = (Σ_{r≤ρ} u_r − 1)/ρ and
    w = max(v − τ, 0).
    """
    if not torch.isfinite(v).all():
        raise NonFiniteError("cannot project a vector with NaN or infinite entries onto the simplex")
    K = v.shape[-1]
    # Π_Δ(v + c𝟙) = Π_Δ(v): shifting by the row maximum keeps τ near the data, so huge entries
    # (|v| ~ 1e17) do not cancel to an all-zero result.
    v = v - v.max(dim=-1, keepdim=True).values
    u, _ = torch.sort(v, dim=-1, descending=True)  # (..., K)
    css = torch.cumsum(u, dim=-1) - 1.0  # (..., K)
    j = torch.arange(1, K + 1, device=v.device, dtype=v.dtype)  # (K,)
    positive = (u - css / j) > 0  # (..., K)
    rho = positive.to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)  # index of the last True
    tau = css.gather(-1, rho) / (rho + 1).to(v.dtype)  # (..., 1)
    return torch.clamp(v - tau, min=0.0)


def shifted_gramian(M: Tensor, s: float) -> Tensor:
    """Gramian of the points p_i = g_i + s·ḡ with ḡ = (1/K) Σ_j g_j, from M = G Gᵀ alone.

    ⟨p_i, p_j⟩ = M_ij + s(m_i + m_j) + s²μ with m = M𝟙/K and μ = 𝟙ᵀM𝟙/K². Because Σ_i λ_i = 1 on
    the simplex, Σ_i λ_i p_i = Gᵀλ + s·ḡ, so min_{λ∈Δ} ||Gᵀλ + s ḡ|| is the min-norm problem of M'.
    """
    K = M.shape[0]
    m = M.sum(dim=1) / K  # (K,)
    mu = M.sum() / K**2
    return M + s * (m[:, None] + m[None, :]) + (s * s) * mu


def min_norm_weights(M: Tensor, *, max_iter: int | None = None, rel_tol: float = 1e-12) -> Tensor:
    """λ* = argmin_{λ∈Δ} λᵀ M λ for a PSD Gramian M (K, K); returns λ* (K,) in M's dtype/device.

    The min-norm point d = Σ λ*_i g_i is unique; λ* is unique when the g_i are affinely
    independent, otherwise one minimiser is returned (for identical gradients, all weight on the
    first of them). If every gradient is zero, the uniform weights are returned.

    Raises:
        NonFiniteError: M has NaN or infinite entries.
        SolverError: no certified optimum within ``max_iter`` corral changes (default 50·K + 100).
    """
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square Gramian, got shape {tuple(M.shape)}")
    if not torch.isfinite(M).all():
        raise NonFiniteError("the Gramian contains NaN or infinite entries")
    Q = M.detach().to("cpu", torch.float64).numpy()
    lam = _two_points(Q) if Q.shape[0] == 2 else _wolfe(Q, max_iter=max_iter, rel_tol=rel_tol)
    return torch.from_numpy(lam).to(device=M.device, dtype=M.dtype)


def _two_points(M: np.ndarray) -> np.ndarray:
    """K = 2 in closed form (Sener & Koltun, Algorithm 1): γ = clip(⟨g_2 − g_1, g_2⟩/||g_1 − g_2||², 0, 1)."""
    m11, m12, m22 = float(M[0, 0]), 0.5 * float(M[0, 1] + M[1, 0]), float(M[1, 1])
    denom = m11 + m22 - 2.0 * m12  # ||g_1 − g_2||²
    if not denom > 1e-15 * max(m11, m22, 1e-300):  # identical (or both zero) gradients: d = g_1
        return np.array([1.0, 0.0]) if max(m11, m22) > 0 else np.array([0.5, 0.5])
    gamma = min(1.0, max(0.0, (m22 - m12) / denom))
    return np.array([gamma, 1.0 - gamma])


def _wolfe(M: np.ndarray, *, max_iter: int | None, rel_tol: float) -> np.ndarray:
    K = M.shape[0]
    scale = float(np.max(np.abs(np.diag(M)))) if K else 0.0
    if scale == 0.0:
        return np.full(K, 1.0 / K)
    # Bordered matrix B = [[Q, 𝟙], [𝟙ᵀ, 0]] with Q = sym(M)/scale (scale-free tolerances, same
    # minimiser); the affine min-norm system of a corral S is B restricted to S ∪ {K}.
    B = np.ones((K + 1, K + 1))
    B[:K, :K] = (M + M.T) * (0.5 / scale)
    B[K, K] = 0.0
    Q = B[:K, :K]
    tol = rel_tol * max(1.0, float(np.max(np.diag(Q))))
    max_iter = max_iter if max_iter is not None else 50 * K + 100

    guess = _guess_support(B, Q, tol)
    if guess is not None:
        return guess

    S = [int(np.argmin(np.diag(Q)))]  # corral: indices of the current affinely independent points
    lam = np.array([1.0])
    previous_xx = np.inf
    for _ in range(max_iter):
        Qlam = Q[:, S] @ lam  # (K,): ⟨x, p_j⟩ for every j, x = Σ_S λ_i p_i
        xx = float(lam @ Qlam[S])  # ||x||²
        j = int(np.argmin(Qlam))
        # Optimality (Wolfe's test): ⟨x, p_j⟩ ≥ ||x||² for all j  ⇔  KKT of min_{λ∈Δ} λᵀQλ.
        # A major cycle that no longer lowers ||x||² means rounding has the last word: stop there.
        if Qlam[j] >= xx - tol or j in S or xx >= previous_xx:
            out = np.zeros(K)
            out[S] = lam
            return out
        previous_xx = xx
        S.append(j)
        lam = np.append(lam, 0.0)
        # Minor cycle: move to the affine min-norm point of the corral, dropping points whose
        # weight would turn negative, until that point lies in the corral's relative interior.
        while True:
            alpha = _affine_min_norm(B, S)
            if alpha.min() > 1e-15:
                lam = alpha
                break
            shrink = alpha <= 1e-15
            denom = lam[shrink] - alpha[shrink]
            ratios = np.where(denom > 0, lam[shrink] / np.where(denom > 0, denom, 1.0), np.inf)
            theta = min(1.0, float(ratios.min()))
            lam = lam + theta * (alpha - lam)
            keep = lam > 1e-15
            if keep.all():  # rounding: drop the most negative direction explicitly
                keep[int(np.argmin(alpha))] = False
            S = [s for s, k in zip(S, keep) if k]
            lam = lam[keep]
            lam = lam / lam.sum()
            if len(S) == 1:
                lam = np.array([1.0])
                break
    raise SolverError(f"min-norm solver did not converge in {max_iter} corral changes (K = {K})")


def _guess_support(B: np.ndarray, Q: np.ndarray, tol: float, attempts: int = 3) -> np.ndarray | None:
    """Guess the optimal support and certify it, or return None (Wolfe's loop then decides).

    Start from all K points and drop those whose affine weight is not positive, a few times. If the
    affine min-norm point of the remaining set has positive weights, it lies in the convex hull;
    it is the answer exactly when Wolfe's optimality test ⟨x, p_j⟩ ≥ ||x||² holds for every j,
    which is checked. On typical Jacobians (support of nearly all tasks) this costs two or three
    linear solves instead of one Wolfe iteration per support point.
    """
    K = Q.shape[0]
    S = list(range(K))
    for _ in range(attempts):
        alpha = _affine_min_norm(B, S)
        positive = alpha > 1e-15
        if positive.all():
            lam = np.zeros(K)
            lam[S] = alpha
            Qlam = Q @ lam  # ⟨x, p_j⟩ for every j
            if Qlam.min() >= float(lam @ Qlam) - tol:
                return lam
            return None
        S = [s for s, keep in zip(S, positive) if keep]
        if not S:
            return None
    return None


def _affine_min_norm(B: np.ndarray, S: list[int]) -> np.ndarray:
    """Weights α (Σα = 1) of the min-norm point of the affine hull of the corral S.

    KKT: [Q_SS 𝟙; 𝟙ᵀ 0] [α; ν] = [0; 1], the bordered matrix B restricted to S ∪ {K}. The corral
    is affinely independent in exact arithmetic, so the system is nonsingular; least squares
    guards against rounding when it is nearly not.
    """
    k = len(S)
    idx = S + [B.shape[0] - 1]
    A = B[np.ix_(idx, idx)]  # (k+1, k+1)
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        sol = np.linalg.solve(A, rhs)
        if not np.isfinite(sol).all() or np.abs(A @ sol - rhs).max() > 1e-9:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
    alpha = sol[:k]
    return alpha / alpha.sum()
