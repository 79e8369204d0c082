"""Small certified solvers shared by the methods: simplex projection, min-norm point, dual-cone projection.

All problems here live in K dimensions (K = number of tasks, at most a few dozen), so they are
solved in float64 on the CPU from the K×K Gramian, whatever the dtype and device of the caller;
results are returned in the caller's dtype and device. Moving a K×K matrix is negligible next to
forming it (K²n operations).

* :func:`project_simplex` — Euclidean projection onto Δ = {w ≥ 0, Σ w = 1} (sort-based, exact).
* :func:`min_norm_weights` — λ* = argmin_{λ∈Δ} λᵀMλ, the min-norm point of conv{g_i} given only
  M = G Gᵀ. Wolfe's algorithm (P. Wolfe, "Finding the nearest point in a polytope", Math.
  Programming 11, 1976), written on the Gramian: finite, exact up to rounding, and certified by the
  KKT conditions ⟨d, g_j⟩ ≥ ||d||² for every j, each with its own tolerance.
* :func:`dual_cone_weights` — v = argmin_{v ≥ u} vᵀMv, i.e. Gᵀv = the projection of Gᵀu onto the
  dual cone {x : G x ≥ 0} (UPGrad, CAGrad's degenerate case). Lawson–Hanson active set written on
  the Jacobi-scaled Gramian (no eigen-factor, no library status trusted), KKT-certified.
* :func:`shifted_gramian` — Gramian of the shifted points g_i + s·ḡ (ḡ = mean of the g_i); it
  turns SDMGrad's and CAGrad's inner problems into min-norm problems.
* :func:`rescaled_gramian` — M = J Jᵀ, with J first multiplied by a power of two when M would
  underflow (scale-invariant methods use it: their weights do not depend on a global factor).

Certification (the common rules of this layer):

* Zero rows (M_ii = 0: an exactly-zero g_i, or one below ~1e-154 whose square underflows) are
  removed before any solve and handled by a stated rule (min-norm: d = 0 with all weight on the
  first zero row; dual cone: they constrain nothing, v_i = u_i).
* Each task is judged on its own scale: the optimality conditions are checked with per-task
  tolerances proportional to ||g_j||·S, S = Σ_i |w_i| ||g_i|| the rounding bound of d = Σ_i w_i g_i
  (min-norm point: κ·S·(||g_j|| + S), the S² term being the rounding of ||d||²; dual cone:
  κ·||g_j||·S), with κ = 32·K·ε and ε the machine epsilon of the *input* dtype (float32 Gramians
  are PSD only to ~1e-7·||g||²). Tolerances are thus relative to ||g_j||, never to max_i ||g_i||,
  so a task 1e6 times smaller than the others still gets its guarantee. The solvers themselves
  iterate to float64 rounding; the input's ε only widens the certificate.
* Inherent limit of any Gramian-based method: when 0 ∈ conv{g_i} or the answer cancels, ||d|| is
  resolved only to ~√κ·S (the Gramian carries ||d||², not d).
* A Gramian whose largest diagonal entry is subnormal has lost its precision and raises
  :class:`SolverError` (call :func:`rescaled_gramian` on the Jacobian instead).
* A solver that cannot certify its answer raises :class:`SolverError`; it never returns silently.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError, gramian


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


_EPS64 = float(np.finfo(np.float64).eps)
KAPPA = 32.0  # safety factor of every certificate: tolerances are KAPPA·K·ε times the rounding bound


def dtype_eps(x) -> float:
    """Machine epsilon of the dtype of ``x`` (tensor or array), at least float64's."""
    dtype = x.dtype
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps) if dtype.is_floating_point else _EPS64
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else _EPS64


def _dtype_tiny(x) -> float:
    dtype = x.dtype
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).tiny) if dtype.is_floating_point else float(np.finfo(np.float64).tiny)
    return float(np.finfo(dtype).tiny) if np.issubdtype(dtype, np.floating) else float(np.finfo(np.float64).tiny)


def gramian64(M) -> tuple[np.ndarray, float]:
    """A symmetrised float64 numpy copy of a Gramian (tensor or array, any device) and its dtype's ε.

    Raises NonFiniteError for NaN/inf entries and SolverError when the largest diagonal entry is
    subnormal in the input dtype (the entries have lost their relative precision).
    """
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square Gramian, got shape {tuple(M.shape)}")
    eps, tiny = dtype_eps(M), _dtype_tiny(M)
    Q = M.detach().to("cpu", torch.float64).numpy() if isinstance(M, Tensor) else np.asarray(M, dtype=np.float64)
    if not np.isfinite(Q).all():
        raise NonFiniteError("the Gramian contains NaN or infinite entries")
    Q = 0.5 * (Q + Q.T)  # (K, K), rounding of J Jᵀ made symmetric
    top = float(np.max(np.diag(Q))) if Q.size else 0.0
    if 0.0 < top < tiny:
        raise SolverError(
            f"the Gramian is subnormal (max_i ||g_i||² = {top:.3g} < {tiny:.3g}): its entries have lost their "
            "precision; scale the losses up, or form it with solvers.rescaled_gramian(J)"
        )
    return Q, eps


_FLOAT_INFO: dict = {}  # torch dtype -> (eps, tiny)


def float_info(dtype: torch.dtype) -> tuple[float, float]:
    """(ε, tiny) of a floating torch dtype as Python floats (cached: torch.finfo costs ~1 µs a call)."""
    info = _FLOAT_INFO.get(dtype)
    if info is None:
        finfo = torch.finfo(dtype)
        info = _FLOAT_INFO[dtype] = (float(finfo.eps), float(finfo.tiny))
    return info


_FLOAT_MAX: dict = {}  # torch dtype -> largest finite number


def float_max(dtype: torch.dtype) -> float:
    """The largest finite number of a floating torch dtype (cached)."""
    big = _FLOAT_MAX.get(dtype)
    if big is None:
        big = _FLOAT_MAX[dtype] = float(torch.finfo(dtype).max)
    return big


_NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def small_tensor(values, dtype: torch.dtype) -> Tensor:
    """A CPU tensor of Python floats in ``dtype`` (rounded once, as ``torch.tensor`` does), at a third of its cost."""
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        return torch.tensor(values, dtype=dtype)
    return torch.from_numpy(np.array(values, dtype=np_dtype))


def rescaled_gramian(J: Tensor) -> Tensor:
    """M = J Jᵀ for scale-invariant methods: when M would underflow, J is first multiplied by a power of two.

    Methods whose weights do not change when all gradients are multiplied by the same positive factor
    (MGDA, SDMGrad, CAGrad) use it, so that J ≈ 1e-155 (M ≈ 1e-310, subnormal) still has a defined,
    accurate answer. The check reads the K diagonal entries; only in that rare case is J scanned.
    """
    M = gramian(J)  # (K, K); raises on NaN/inf or overflow
    eps, tiny = float_info(J.dtype)
    rows = M.tolist()  # K² Python floats: cheaper than a torch reduction at the usual K
    top = max(rows[i][i] for i in range(len(rows)))
    if top >= tiny / eps:
        return M
    peak = float(J.abs().max())  # O(Kn), only for vanishing Jacobians
    if peak == 0.0:
        return M  # all-zero J
    return gramian(J * 2.0 ** (-math.frexp(peak)[1]))  # exact power of two: max |J_ij| ∈ [0.5, 1)


def min_norm_weights(M, *, max_iter: int | None = None, eps: float | None = None) -> Tensor:
    """λ* = argmin_{λ∈Δ} λᵀ M λ for a PSD Gramian M (K, K); returns λ* (K,) in M's dtype/device.

    The min-norm point d = Σ λ*_i g_i is unique; λ* is unique when the g_i are affinely
    independent, otherwise one minimiser is returned (for identical gradients, all weight on the
    first of them). Rules for degenerate inputs: all gradients zero → uniform weights; some zero
    gradient (M_ii = 0) → d = 0 with all weight on the first zero row (0 ∈ conv{g_i}).

    Certificate (checked, per task): ⟨d, g_j⟩ ≥ ||d||² − κ·S·(||g_j|| + S) for every j, with
    S = Σ_i λ_i ||g_i|| (the rounding bound of d) and κ = 32·K·ε, ε the machine epsilon of M's dtype
    (or ``eps`` if larger). The tolerance scales with each task's own norm.

    Raises:
        NonFiniteError: M has NaN or infinite entries.
        SolverError: M is subnormal, or no certified optimum within ``max_iter`` corral changes
            (default 50·K + 100).
    """
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square Gramian, got shape {tuple(M.shape)}")
    Q, eps_in = gramian64(M)
    lam = min_norm_point(Q, max(eps_in, eps or 0.0), max_iter=max_iter)
    if isinstance(M, Tensor):
        return torch.from_numpy(lam).to(device=M.device, dtype=M.dtype)
    return lam


def min_norm_point(Q: np.ndarray, eps: float = _EPS64, *, max_iter: int | None = None) -> np.ndarray:
    """:func:`min_norm_weights` on a symmetric float64 numpy Gramian; ``eps``: precision of Q's entries."""
    K = Q.shape[0]
    diag = np.diag(Q)
    top = float(np.max(diag)) if K else 0.0
    if top <= 0.0:
        return np.full(K, 1.0 / K)  # every gradient is zero: d = 0
    zero = diag <= 0.0
    if zero.any():  # 0 ∈ conv{g_i}: d = 0, all weight on the first zero gradient
        lam = np.zeros(K)
        lam[int(np.argmax(zero))] = 1.0
        return lam
    Q = Q / top  # same minimiser; max_i ||g_i|| = 1 (division: no overflow for tiny scales)
    norms = np.sqrt(np.diag(Q))  # ||g_i|| / max_j ||g_j||, all > 0
    if K == 1:
        return np.ones(1)
    lam = _two_points(Q) if K == 2 else _wolfe(Q, norms, max_iter=max_iter)
    try:
        _certify_min_norm(Q, norms, lam, eps)
    except SolverError:
        # Wolfe's corral solves lose the last digits when d is many orders below the largest gradient (a
        # tiny task, or 0 ∈ conv{g_i} to rounding): other candidates, each certified like the first.
        lam = _min_norm_fallback(Q, norms, lam, eps)
    return lam


def _min_norm_fallback(Q: np.ndarray, norms: np.ndarray, lam: np.ndarray, eps: float) -> np.ndarray:
    """A certified min-norm point when Wolfe's answer ``lam`` is not: first ``lam`` polished by exact line
    searches (:func:`_polish_min_norm`), then (K ≤ 32) the closed-form optimum of every pair of gradients,
    the certified one of least ||d||² (a pair with 0 in its hull to rounding: a Pareto-stationary point
    whose rows are exactly dependent, e.g. ParetoMTL's constraint gradients on DTLZ2). SolverError (the
    first certificate's) when none certifies."""
    K = Q.shape[0]
    try:
        _certify_min_norm(Q, norms, lam, eps)
    except SolverError as error:
        first = error
    polished = _polish_min_norm(Q, norms, lam, eps, steps=10 * K)
    try:
        _certify_min_norm(Q, norms, polished, eps)
        return polished
    except SolverError:
        pass
    best, best_xx = None, np.inf
    for a in range(K if K <= 32 else 0):
        for b in range(a + 1, K):
            pair = np.zeros(K)
            pair[[a, b]] = _two_points(Q[np.ix_([a, b], [a, b])])
            try:
                _certify_min_norm(Q, norms, pair, eps)
            except SolverError:
                continue
            xx = float(pair @ Q @ pair)  # ||d||²
            if xx < best_xx:
                best, best_xx = pair, xx
    if best is None:
        raise first
    return best


def _polish_min_norm(Q: np.ndarray, norms: np.ndarray, lam: np.ndarray, eps: float, *, steps: int) -> np.ndarray:
    """Frank-Wolfe steps with exact line search on min_{λ∈Δ} λᵀQλ, each towards the task whose per-task
    certificate is violated most (relative to its own norm): λ ← (1 − γ)λ + γ e_j, with
    γ = clip(⟨d − g_j, d⟩ / ||d − g_j||², 0, 1) the exact minimiser along the segment from d to g_j."""
    lam = lam.copy()
    for _ in range(steps):
        Qlam = Q @ lam  # ⟨d, g_i⟩ for every i
        xx = float(lam @ Qlam)  # ||d||²
        slack = Qlam - xx + min_norm_tolerances(Q, norms, lam, eps)
        j = int(np.argmin(slack / norms))
        if slack[j] >= 0.0:
            break
        numerator = xx - float(Qlam[j])  # ⟨d − g_j, d⟩ > 0: g_j is a descent vertex
        denominator = xx - 2.0 * float(Qlam[j]) + float(Q[j, j])  # ||d − g_j||²
        if not (numerator > 0.0 and denominator > 0.0):
            break
        gamma = min(1.0, numerator / denominator)
        lam *= 1.0 - gamma
        lam[j] += gamma
    return lam


def min_norm_tolerances(Q: np.ndarray, norms: np.ndarray, lam: np.ndarray, eps: float) -> np.ndarray:
    """Per-task KKT tolerances κ·S·(||g_j|| + S) of the min-norm certificate (see :func:`min_norm_weights`)."""
    S = float(lam @ norms)  # Σ λ_i ||g_i||: |error of (Qλ)_j| ≲ K ε ||g_j|| S, of λᵀQλ ≲ K ε S²
    return KAPPA * Q.shape[0] * eps * S * (norms + S)


def _certify_min_norm(Q: np.ndarray, norms: np.ndarray, lam: np.ndarray, eps: float) -> None:
    Qlam = Q @ lam  # ⟨d, g_j⟩ for every j
    xx = float(lam @ Qlam)  # ||d||²
    slack = Qlam - xx + min_norm_tolerances(Q, norms, lam, eps)  # ≥ 0 at a certified optimum
    if not (np.isfinite(lam).all() and lam.min() >= 0.0 and abs(lam.sum() - 1.0) <= 1e-12 and slack.min() >= 0.0):
        j = int(np.argmin(slack))
        raise SolverError(
            f"min-norm point not certified (K = {Q.shape[0]}): task {j} has ⟨d, g_j⟩ − ||d||² = {Qlam[j] - xx:.3e} "
            f"(relative to ||g_j||·||d||: {(Qlam[j] - xx) / (norms[j] * max(xx, 1e-300) ** 0.5):.3e})"
        )


def _two_points(M: np.ndarray) -> np.ndarray:
    """K = 2 in closed form (Sener & Koltun, Algorithm 1): γ = clip(⟨g_2 − g_1, g_2⟩/||g_1 − g_2||², 0, 1).

    1 − γ = ⟨g_1 − g_2, g_1⟩/||g_1 − g_2||² is computed by its own formula: when ||g_2|| ≫ ||g_1|| it is
    tiny, and 1 − γ would lose the digits the small task's KKT condition needs.
    """
    m11, m12, m22 = float(M[0, 0]), float(M[0, 1]), float(M[1, 1])
    denom = m11 + m22 - 2.0 * m12  # ||g_1 − g_2||²
    if not denom > 4.0 * _EPS64 * max(m11, m22):  # identical gradients (to rounding): d = g_1
        return np.array([1.0, 0.0])
    a, b = max(0.0, m22 - m12), max(0.0, m11 - m12)  # γ·denom, (1 − γ)·denom, clipped at 0
    return np.array([a, b]) / (a + b)


def _wolfe(Q: np.ndarray, norms: np.ndarray, *, max_iter: int | None) -> np.ndarray:
    """Wolfe's algorithm on Q (max diagonal 1, positive diagonal); stops on the per-task test at float64 rounding."""
    K = Q.shape[0]
    # Bordered matrix in the Jacobi-scaled weights λ̂_i = ||g_i|| λ_i: B = [[C, r], [rᵀ, 0]], C = D Q D
    # (unit diagonal), r = 1/||g_i||; the affine min-norm system of a corral S is B restricted to S ∪ {K}.
    # Scaling makes the error of each λ_i relative to 1/||g_i||, which the per-task certificate needs.
    B = np.zeros((K + 1, K + 1))
    B[:K, :K] = Q / np.outer(norms, norms)
    B[:K, K] = B[K, :K] = 1.0 / norms
    max_iter = max_iter if max_iter is not None else 50 * K + 100

    guess = _guess_support(B, Q, norms)
    if isinstance(guess, np.ndarray):
        return guess
    # Wolfe's loop starts from the guess's corral when there is one (its affine min-norm point has positive
    # weights: a valid start, a few corral changes from the optimum instead of about one per support point);
    # if that run stalls or runs out of iterations, it starts again from the shortest point alone.
    if guess is not None:
        lam = _wolfe_from(Q, B, norms, *guess, max_iter=max_iter, warm=True)
        if lam is not None:
            return lam
    S = [int(np.argmin(np.diag(Q)))]  # corral: indices of the current affinely independent points
    lam = _wolfe_from(Q, B, norms, S, np.array([1.0]), max_iter=max_iter, warm=False)
    if lam is None:
        raise SolverError(f"min-norm solver did not converge in {max_iter} corral changes (K = {K})")
    return lam


def _wolfe_from(
    Q: np.ndarray, B: np.ndarray, norms: np.ndarray, S: list[int], lam: np.ndarray, *, max_iter: int, warm: bool
) -> np.ndarray | None:
    """Wolfe's major and minor cycles from the corral S with weights lam (positive, Σ = 1, the corral's
    affine min-norm point); the optimum, or None when out of iterations (or, for a warm start, stalled)."""
    K = Q.shape[0]
    previous_xx = np.inf
    for _ in range(max_iter):
        full = np.zeros(K)
        full[S] = lam
        Qlam = Q @ full  # (K,): ⟨x, p_j⟩ for every j, x = Σ_S λ_i p_i
        xx = float(full @ Qlam)  # ||x||²
        # Wolfe's test per task: ⟨x, p_j⟩ ≥ ||x||² − tol_j (KKT of min_{λ∈Δ} λᵀQλ); the entering point is
        # the most violated one relative to its own norm.
        violation = (Qlam - xx + min_norm_tolerances(Q, norms, full, _EPS64)) / norms
        j = int(np.argmin(violation))
        # A major cycle that no longer lowers ||x||² means rounding has the last word: stop (the caller certifies).
        if violation[j] >= 0.0:
            return full
        if j in S or xx >= previous_xx:
            return None if warm else full  # a warm start that stalls hands over to the cold one
        previous_xx = xx
        S.append(j)
        lam = np.append(lam, 0.0)
        # Minor cycle: move to the affine min-norm point of the corral, dropping points whose
        # weight would turn negative, until that point lies in the corral's relative interior.
        while True:
            alpha = _affine_min_norm(B, S, norms)
            scaled = alpha * norms[S] / float(np.abs(alpha) @ norms[S])  # λ̂ = ||g_i|| λ_i, normalised
            if scaled.min() > 1e-15:
                lam = alpha
                break
            shrink = scaled <= 1e-15
            denom = lam[shrink] - alpha[shrink]
            ratios = np.where(denom > 0, lam[shrink] / np.where(denom > 0, denom, 1.0), np.inf)
            theta = min(1.0, float(ratios.min()))
            lam = lam + theta * (alpha - lam)
            keep = lam * norms[S] > 1e-15 * float(lam @ norms[S])
            if keep.all():  # rounding: drop the most negative direction explicitly
                keep[int(np.argmin(alpha))] = False
            S = [s for s, k in zip(S, keep) if k]
            lam = lam[keep]
            lam = lam / lam.sum()
            if len(S) == 1:
                lam = np.array([1.0])
                break
    return None


def _guess_support(B: np.ndarray, Q: np.ndarray, norms: np.ndarray, attempts: int = 3):
    """Guess the optimal support and certify it: λ (K,) if certified, else a corral (S, α) to start
    Wolfe's loop from, or None (Wolfe's loop then starts from one point).

    Start from all K points and drop those whose affine weight is not positive, a few times. If the
    affine min-norm point of the remaining set has positive weights, it lies in the convex hull;
    it is the answer exactly when Wolfe's per-task optimality test holds for every j, which is
    checked. On typical Jacobians (support of nearly all tasks) this costs two or three linear
    solves instead of one Wolfe iteration per support point; when the test fails (points dropped that
    belong to the support), that set is a corral close to the optimal one.
    """
    K = Q.shape[0]
    S = list(range(K))
    for _ in range(attempts):
        alpha = _affine_min_norm(B, S, norms)
        positive = alpha * norms[S] > 1e-15 * float(np.abs(alpha) @ norms[S])
        if positive.all():
            lam = np.zeros(K)
            lam[S] = alpha
            Qlam = Q @ lam  # ⟨x, p_j⟩ for every j
            if (Qlam - float(lam @ Qlam) + min_norm_tolerances(Q, norms, lam, _EPS64)).min() >= 0.0:
                return lam
            return S, alpha  # not optimal: a corral to start Wolfe's loop from
        S = [s for s, keep in zip(S, positive) if keep]
        if not S:
            return None
    return None


def _affine_min_norm(B: np.ndarray, S: list[int], norms: np.ndarray) -> np.ndarray:
    """Weights α (Σα = 1) of the min-norm point of the affine hull of the corral S.

    KKT: [Q_SS 𝟙; 𝟙ᵀ 0] [α; ν] = [0; 1], solved in the scaled form [C_SS r_S; r_Sᵀ 0] [α̂; ν] = [0; 1]
    (α = α̂/||g||, the bordered matrix B restricted to S ∪ {K}, its border divided by max r_S). The
    corral is affinely independent in exact arithmetic, so the system is nonsingular; least squares
    guards against rounding when it is nearly not.
    """
    k = len(S)
    idx = S + [B.shape[0] - 1]
    A = B[np.ix_(idx, idx)].copy()  # (k+1, k+1)
    m = float(A[:k, k].max())
    A[:k, k] /= m
    A[k, :k] /= m
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0 / m
    try:
        sol = np.linalg.solve(A, rhs)
        if not np.isfinite(sol).all() or np.abs(A @ sol - rhs).max() > 1e-9 * max(1.0, float(np.abs(sol).max())):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
    alpha = sol[:k] / norms[S]  # α = α̂/||g_i||
    return alpha / alpha.sum()


# ----------------------------------------------------------------------------------------------
# K = 2 fast paths: Python floats instead of numpy/torch calls on 2×2 arrays (each costs 1-5 µs, the
# arithmetic nanoseconds). They compute the general solvers' formulas in the same order of IEEE
# operations, so a result they return is the general path's, bit for bit where stated; they check the
# same per-task certificates, and return None (the caller then runs the general solver, which decides
# and raises the defined errors) for every input they do not cover.
# ----------------------------------------------------------------------------------------------

def gramian2_entries(M) -> tuple[float, float, float, float] | None:
    """(M_11, M_12, M_21, M_22) of a finite 2×2 floating CPU tensor as Python floats (exact), else None.

    None for anything else (another shape, device or type, a NaN/inf entry): the caller's general path
    handles those. One ``tolist`` (~0.5 µs) replaces the float64 copy and the checks of :func:`gramian64`.
    """
    if not isinstance(M, Tensor) or M.shape != (2, 2) or M.device.type != "cpu" or not M.is_floating_point():
        return None
    (a, b), (c, d) = M.tolist()
    if not math.isfinite(a + b + c + d):  # NaN/inf, or a sum that overflows: the general path decides
        return None
    return a, b, c, d


# ----------------------------------------------------------------------------------------------
# The runner's K = 2 protocol ``direction2(rows, losses)`` (reference_impls/runner.py, _directions2): a
# method may compute its direction from the float64 Jacobian as Python lists (``J.tolist()``), without a
# torch call. It returns the direction (a list of n floats) equal bit for bit to what its general path
# (``method(J, losses)``, or the runner's batched Gramian path) returns, having made the same state
# change; or None, with no state changed, and the runner then calls the general path, which decides
# (and raises the defined errors). The helpers below are the two products every such method shares, in
# the order of IEEE operations torch uses on these shapes (two-term sums: one order; torch's small CPU
# matmuls round each product and each sum, no fused multiply-add, checked bit for bit by the tests).
# ----------------------------------------------------------------------------------------------

_INFO64 = (_EPS64, float(np.finfo(np.float64).tiny))  # (ε, tiny) of float64


def gramian2_rows(rows) -> tuple[float, float, float, float] | None:
    """(M_11, M_12, M_21, M_22) of M = J Jᵀ for J = ``rows`` (two rows of two Python floats), as torch's
    ``J @ J.T`` rounds them (M_ij = J_i1 J_j1 + J_i2 J_j2), or None: another shape, or a non-finite M (a NaN/inf
    in J, or an overflow: the general path raises). n = 2 only: a longer sum has no single summation order."""
    if len(rows) != 2:
        return None
    g1, g2 = rows
    if len(g1) != 2 or len(g2) != 2:
        return None
    a, b = g1
    c, d = g2
    if type(a) is not float or type(c) is not float:  # (S, K, n) samples, or not floats
        return None
    m11, m12, m21, m22 = a * a + b * b, a * c + b * d, c * a + d * b, c * c + d * d  # M_ij = ⟨g_i, g_j⟩
    if not math.isfinite(m11 + m12 + m21 + m22):  # a finite sum proves every entry finite
        return None
    return m11, m12, m21, m22


def combine2(w1: float, w2: float, g1, g2) -> list[float]:
    """d = Jᵀw = w_1 g_1 + w_2 g_2 for two rows of Python floats (torch's ``w @ J``: each product rounded, then the sum)."""
    return [w1 * x + w2 * y for x, y in zip(g1, g2)]


def project_simplex2(v1: float, v2: float) -> tuple[float, float] | None:
    """:func:`project_simplex` of (v_1, v_2) on Python floats, bit for bit, or None if v is not finite (it raises).

    The sort-based formula for two entries after the shift by the maximum: sorted u = (0, a), a = v_min − v_max ≤ 0;
    cumsum − 1 = (−1, a − 1); the second entry is in the support iff a − (a − 1)/2 > 0, and then τ = (a − 1)/2, else
    τ = −1/1; λ = max(v − max − τ, 0).
    """
    if not math.isfinite(v1 + v2):
        return None
    a = v2 - v1 if v1 >= v2 else v1 - v2  # v_min − v_max
    tau = (a - 1.0) / 2.0 if a - (a - 1.0) / 2.0 > 0.0 else -1.0
    top, low = max(0.0 - tau, 0.0), max(a - tau, 0.0)
    return (top, low) if v1 >= v2 else (low, top)


def min_norm_weights2(m11: float, m12: float, m21: float, m22: float, eps: float, tiny: float) -> tuple[float, float] | None:
    """:func:`min_norm_weights` of a finite 2×2 Gramian given by its entries, bit for bit, or None.

    The steps of :func:`gramian64` (symmetrisation, subnormal test: None, the general path raises),
    :func:`min_norm_point` (zero-row rules, division by the top diagonal entry), :func:`_two_points`
    and :func:`_certify_min_norm` (None if it fails: the general path raises SolverError), on Python
    floats. ``eps``, ``tiny``: the input dtype's.
    """
    q11, q12, q22 = 0.5 * (m11 + m11), 0.5 * (m12 + m21), 0.5 * (m22 + m22)  # Q = ½(Q + Qᵀ)
    top = max(q11, q22)
    if not math.isfinite(q11 + q12 + q22) or 0.0 < top < tiny:
        return None
    if top <= 0.0:
        return 0.5, 0.5  # every gradient is zero: d = 0, uniform weights
    if q11 <= 0.0:
        return 1.0, 0.0  # 0 ∈ conv{g_i}: all weight on the first zero gradient
    if q22 <= 0.0:
        return 0.0, 1.0
    q11, q12, q22 = q11 / top, q12 / top, q22 / top  # max_i ||g_i|| = 1
    n1, n2 = math.sqrt(q11), math.sqrt(q22)  # ||g_i||
    denom = q11 + q22 - 2.0 * q12  # ||g_1 − g_2||²
    if not denom > 4.0 * _EPS64 * max(q11, q22):
        l1, l2 = 1.0, 0.0  # identical gradients (to rounding): d = g_1
    else:
        a, b = max(0.0, q22 - q12), max(0.0, q11 - q12)  # γ·denom, (1 − γ)·denom, clipped at 0
        l1, l2 = a / (a + b), b / (a + b)  # γ = clip(⟨g_2 − g_1, g_2⟩/||g_1 − g_2||², 0, 1)
    # Certificate of _certify_min_norm: ⟨d, g_j⟩ ≥ ||d||² − κ·S·(||g_j|| + S) for j = 1, 2
    S = l1 * n1 + l2 * n2  # Σ λ_i ||g_i||
    kappa = KAPPA * 2 * eps * S
    d1, d2 = q11 * l1 + q12 * l2, q12 * l1 + q22 * l2  # ⟨d, g_j⟩
    xx = l1 * d1 + l2 * d2  # ||d||²
    if l1 >= 0.0 and l2 >= 0.0 and abs(l1 + l2 - 1.0) <= 1e-12 and d1 - xx + kappa * (n1 + S) >= 0.0 and d2 - xx + kappa * (n2 + S) >= 0.0:
        return l1, l2
    return None


def dual_cone_weights2(q11: float, q12: float, q21: float, q22: float, rows, eps: float) -> list[tuple[float, float]] | None:
    """:func:`dual_cone_weights` of a finite 2×2 float64 Gramian (entries) for rows u = (u_1, u_2), or None.

    The same steps as the general solver on Python floats: symmetrisation, division by the top diagonal
    entry, Jacobi scaling C = D Q D; each row's non-negative QP min_{z≥0} ½(û + z)ᵀC(û + z) then has at
    most four candidate faces F ⊆ {1, 2}, tried in turn (first the face of the conflicting tasks, as the
    general solver does, then the others): on F, C_FF z_F = −b_F in closed form (b = Cû; z_i = −b_i/C_ii on
    one coordinate, z = −û on both), and F is accepted when its float64 KKT test holds. The answer is checked with the general solver's per-task
    certificate (ε = max(``eps``, float64's)). For rows with one non-zero entry (UPGrad's) the face found
    first is the general solver's, so the two agree to the rounding of one 2×2 solve (tested).

    None (run the general solver) when a diagonal entry is not positive (zero rows), when C is within
    64 ulps of singular (|C_12| ≥ 1 − 64ε: the general solver repairs a non-PSD C), or when no face or
    the certificate fails.
    """
    eps = max(eps, _EPS64)
    s11, s12, s22 = 0.5 * (q11 + q11), 0.5 * (q12 + q21), 0.5 * (q22 + q22)  # ½(Q + Qᵀ)
    if not (s11 > 0.0 and s22 > 0.0) or not math.isfinite(s11 + s12 + s22):
        return None
    top = max(s11, s22)
    s11, s12, s22 = s11 / top, s12 / top, s22 / top
    n1, n2 = math.sqrt(s11), math.sqrt(s22)  # D⁻¹ = diag(||g_i||)
    c11, c12, c22 = s11 / (n1 * n1), s12 / (n1 * n2), s22 / (n2 * n2)  # C = D Q D (unit diagonal to rounding)
    if not abs(c12) < 1.0 - 64.0 * _EPS64:
        return None
    out = []
    for u1, u2 in rows:
        h1, h2 = u1 * n1, u2 * n2  # û = u/D
        b1, b2 = h1 * c11 + h2 * c12, h1 * c12 + h2 * c22  # b = C û: the gradient at z = 0
        scale = abs(h1) + abs(h2)
        tol64 = KAPPA * 2 * _EPS64 * scale
        z1 = z2 = 0.0
        if min(b1, b2) < -tol64:  # a conflict: find the face
            first = (b1 < 0.0, b2 < 0.0)
            faces = [first] + [f for f in ((True, False), (False, True), (True, True)) if f != first]
            for f1, f2 in faces:
                if f1 and f2:  # C z = −b = −C û on both coordinates: z = −û (C is non-singular here), v = 0
                    y1, y2 = -h1, -h2
                elif f1:
                    y1, y2 = -b1 / c11, 0.0
                else:
                    y1, y2 = 0.0, -b2 / c22
                g1, g2 = b1 + (y1 * c11 + y2 * c12), b2 + (y1 * c12 + y2 * c22)  # C z + b
                tol = KAPPA * 2 * _EPS64 * (scale + abs(y1) + abs(y2))
                if (
                    y1 >= 0.0 and y2 >= 0.0
                    and (g1 >= -tol if not f1 else abs(g1) <= tol)
                    and (g2 >= -tol if not f2 else abs(g2) <= tol)
                ):  # fmt: skip
                    z1, z2 = y1, y2
                    break
            else:
                return None
        # the general solver's certificate (_certify_nonnegative_qp_rows) at the input's ε
        g1, g2 = b1 + (z1 * c11 + z2 * c12), b2 + (z1 * c12 + z2 * c22)
        tol = KAPPA * 2 * eps * (scale + (z1 + z2))
        if not (z1 >= 0.0 and z2 >= 0.0 and g1 >= -tol and g2 >= -tol and (z1 == 0.0 or abs(g1) <= tol) and (z2 == 0.0 or abs(g2) <= tol)):
            return None
        out.append((u1 + z1 / n1, u2 + z2 / n2))  # v = u + D z
    return out


def dual_cone_weights(M, U, *, eps: float | None = None, max_iter: int | None = None) -> np.ndarray:
    """Rows v^(r) = argmin_{v ≥ U_r} vᵀ M v for a PSD Gramian M (K, K) and lower bounds U (R, K); float64.

    Gᵀ v^(r) is the Euclidean projection of Gᵀ U_r onto the dual cone {x : G x ≥ 0} (Quinton & Rey,
    Proposition 1). Solved per row as the non-negative QP min_{z ≥ 0} ½(û + z)ᵀ C (û + z) in the
    Jacobi-scaled variables (C = D M D unit-diagonal, D = diag(1/||g_i||), v = u + D z, û = u/D). The R rows
    share C and are solved together (:func:`_nonnegative_qp_rows`): rows without a conflict get z = 0, the
    others run batched block principal pivoting on the face systems C_FF y = −(C û)_F, and a row that does
    not reach a float64-certified face within a few sweeps is solved on its own by the Lawson–Hanson
    active-set method written on C (finite). Zero rows (M_ii = 0) constrain nothing and are dropped: v_i = U_ri. A C that is PSD only
    to rounding (negative eigenvalue, float32 Gramians) is replaced by its nearest PSD matrix, rescaled to
    unit diagonal (a change of the size of that eigenvalue, which the certificate's ε then covers).

    Certificate (checked, per task, on the scaled problem where (C v̂)_i = ⟨g_i, d⟩/||g_i||, d = Gᵀv):
    z ≥ 0; ⟨g_i, d⟩ ≥ −κ·||g_i||·S for every i; |⟨g_i, d⟩| ≤ κ·||g_i||·S where z_i > 0; with
    S = Σ_j |v_j| ||g_j|| and κ = 32·K·ε (ε of M's dtype, or ``eps`` if larger).

    Raises:
        NonFiniteError / SolverError: as :func:`gramian64`; SolverError also when a row is not certified.
    """
    Q, eps_in = gramian64(M)
    eps = max(eps_in, eps or 0.0)
    U = np.atleast_2d(np.asarray(U, dtype=np.float64))
    out = U.copy()
    keep = np.flatnonzero(np.diag(Q) > 0.0)  # zero rows are dropped
    if keep.size == 0:
        return out
    Q = Q[np.ix_(keep, keep)]
    Q = Q / float(np.max(np.diag(Q)))  # global scale (division: no overflow); v is invariant
    norms = np.sqrt(np.diag(Q))  # (k,)
    C = Q / np.outer(norms, norms)  # (k, k), unit diagonal
    k = keep.size
    low = float(np.linalg.eigvalsh(C)[0])
    if low < 0.0:  # PSD only to rounding (float32 Gramians): nearest PSD matrix, a change of |low| ≲ Kε
        lam_C, V = np.linalg.eigh(C)
        C = (V * np.clip(lam_C, 0.0, None)) @ V.T
        C = C / np.sqrt(np.outer(np.diag(C), np.diag(C)))  # unit diagonal again (changes ≲ Kε)
        eps = max(eps, -low / (KAPPA * k))  # the certificate's tolerance covers the size of that change
    max_iter = max_iter if max_iter is not None else 10 * k + 100
    U_hat = U[:, keep] * norms  # (R, k): û = u/D, one row per problem
    Z = _nonnegative_qp_rows(C, U_hat, eps, max_iter)  # (R, k)
    out[:, keep] = U[:, keep] + Z / norms  # v = u + D z
    return out


_BLOCK_PIVOT_STEPS = 20  # batched block-pivoting sweeps before a row falls back to Lawson–Hanson
_STALLS = 3  # sweeps without fewer infeasible indices before a row switches to single exchanges (Kim & Park)


def _nonnegative_qp_rows(C: np.ndarray, U_hat: np.ndarray, eps: float, max_iter: int) -> np.ndarray:
    """Z[r] = argmin_{z≥0} ½(û_r + z)ᵀC(û_r + z) for every row û_r of U_hat (R, k), all rows at once; certified.

    The R problems share C, so they are solved together: rows whose û already satisfies the KKT conditions
    get z = 0; the others run block principal pivoting (Júdice & Pires 1994, as in Kim & Park's NNLS 2011:
    every infeasible variable changes side at once, and after 3 sweeps without fewer infeasibilities a row
    switches to Murty's single-index rule, which terminates for positive definite C) with the face systems
    C_FF y = −b_F of all rows in one batched solve (C masked to each row's face, identity elsewhere). A row
    is accepted only when its float64 KKT test holds; a row that has not passed it after
    ``_BLOCK_PIVOT_STEPS`` sweeps (singular faces, rounding cycles) is solved by the per-row Lawson–Hanson
    method (:func:`_nonnegative_qp`, finite). The final per-task certificate is checked for all rows at once.
    """
    R, k = U_hat.shape
    B = U_hat @ C  # (R, k): b = C û, the gradient at z = 0 (C symmetric)
    scale = np.abs(U_hat).sum(axis=1)  # (R,): Σ_j |û_j|
    Z = np.zeros((R, k))
    tol64 = KAPPA * k * _EPS64 * scale  # (R,): stop at float64 rounding; certified below at ε
    todo = np.flatnonzero(B.min(axis=1) < -tol64)  # rows with a conflict (z = 0 certifies the others)
    if todo.size:
        free = B[todo] < 0  # (m, k): first face, the tasks that conflict with û
        ninf_best = np.full(todo.size, k + 1)
        stalls = np.zeros(todo.size, dtype=int)
        eye = np.eye(k, dtype=bool)
        for _ in range(_BLOCK_PIVOT_STEPS):
            b = B[todo]  # (m, k)
            A = np.where(free[:, :, None] & free[:, None, :], C, eye)  # (m, k, k): C_FF on the face, I elsewhere
            y = _batched_face_solve(C, A, np.where(free, -b, 0.0), free)  # (m, k), 0 off the face
            grad = b + y @ C  # (m, k): C z + b, i.e. (C v̂)_i = ⟨g_i, d⟩/||g_i||
            tol = KAPPA * k * _EPS64 * (scale[todo] + np.abs(y).sum(axis=1))  # (m,)
            # infeasible: a face variable below 0, or a bound variable whose task still conflicts
            infeasible = np.where(free, y < 0, grad < -tol[:, None])  # (m, k)
            ninf = infeasible.sum(axis=1)
            # NaN/inf (a near-singular face) fail this test and go to the fallback
            solved = (ninf == 0) & (np.abs(np.where(free, grad, 0.0)).max(axis=1) <= tol)
            Z[todo[solved]] = y[solved]
            # Exchange rule (Kim & Park, Algorithm 2): all infeasible indices while their number falls, else the last one.
            improving = ninf < ninf_best
            stalls = np.where(improving, 0, stalls + 1)
            ninf_best = np.minimum(ninf, ninf_best)
            single = ~improving & (stalls >= _STALLS)
            if single.any():
                last = k - 1 - np.argmax(infeasible[:, ::-1], axis=1)  # (m,): largest infeasible index
                infeasible = np.where(single[:, None], np.arange(k)[None, :] == last[:, None], infeasible) & infeasible
            free = free ^ infeasible
            rest = ~solved & (ninf > 0)  # rows with a face still to change (others: NaN or rounding, fall back)
            unfinished = todo[~solved & ~rest]
            for r in unfinished:  # not finite, or a consistent face whose KKT residual is above rounding
                Z[r] = _nonnegative_qp(C, U_hat[r], np.zeros(k, dtype=bool), eps, max_iter)[0]
            todo, free, ninf_best, stalls = todo[rest], free[rest], ninf_best[rest], stalls[rest]
            if not todo.size:
                break
        for r in todo:  # no certified face within the sweep budget: the finite per-row method decides
            Z[r] = _nonnegative_qp(C, U_hat[r], np.zeros(k, dtype=bool), eps, max_iter)[0]
    _certify_nonnegative_qp_rows(C, B, Z, KAPPA * k * eps * (scale + Z.sum(axis=1)))
    return Z


def _batched_face_solve(C: np.ndarray, A: np.ndarray, rhs: np.ndarray, free: np.ndarray) -> np.ndarray:
    """y with C_FF y_F = rhs_F and y = 0 off the face F, for every row's face at once; per row when one is singular."""
    try:
        y = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]  # (m, k)
    except np.linalg.LinAlgError:  # an exactly singular face: each row on its own, least squares where needed
        y = np.zeros_like(rhs)
        for i in range(rhs.shape[0]):
            F = np.flatnonzero(free[i])
            if F.size:
                y[i, F] = _face_solve(C, -rhs[i], F)
    return np.where(free, y, 0.0)


def _certify_nonnegative_qp_rows(C: np.ndarray, B: np.ndarray, Z: np.ndarray, tol: np.ndarray) -> None:
    """The certificate of :func:`_nonnegative_qp_violation` for every row (b = B[r], z = Z[r], tolerance tol[r])."""
    grad = B + Z @ C  # (R, k): C z + b
    ok = (
        np.isfinite(Z).all(axis=1)
        & (Z.min(axis=1, initial=0.0) >= 0.0)
        & (grad.min(axis=1, initial=0.0) >= -tol)
        & (np.abs(np.where(Z > 0, grad, 0.0)).max(axis=1, initial=0.0) <= tol)
    )
    if not ok.all():
        r = int(np.argmin(ok))
        failure = _nonnegative_qp_violation(C, B[r], Z[r], float(tol[r]))
        raise SolverError(f"dual-cone projection not certified (K = {C.shape[0]}, row {r}): {failure}")


def _nonnegative_qp(C: np.ndarray, u_hat: np.ndarray, free0: np.ndarray, eps: float, max_iter: int):
    """z = argmin_{z≥0} ½(û + z)ᵀC(û + z) (C PSD, unit diagonal) by Lawson–Hanson on C; certified."""
    k = C.shape[0]
    b = C @ u_hat  # (k,): gradient at z = 0
    z = np.zeros(k)
    free = np.zeros(k, dtype=bool)
    scale = float(np.abs(u_hat).sum())
    if b.min() >= -KAPPA * k * _EPS64 * scale:  # û already satisfies the KKT conditions (no conflict): z = 0
        return z, free
    # Guesses of the optimal face, each accepted only if it passes the final certificate: the tasks that conflict
    # with û, then the previous row's face. On typical inputs one linear solve replaces the active-set loop.
    for guess in (b < 0, free0):
        guess = guess.copy()
        for _ in range(4):  # drop the face's non-positive variables, add the violated tasks, re-solve
            if not guess.any():
                break
            F = np.flatnonzero(guess)
            y = _face_solve(C, b, F)
            if not np.isfinite(y).all():
                break
            if (y <= 0).any():
                guess[F[y <= 0]] = False
                continue
            z_try = np.zeros(k)
            z_try[F] = y
            grad = b + C @ z_try
            tol = KAPPA * k * _EPS64 * (scale + z_try.sum())
            if _nonnegative_qp_violation(C, b, z_try, tol) is None:
                return z_try, guess
            guess |= grad < -tol
    blocked = np.zeros(k, dtype=bool)  # entered and immediately left at step 0 (rounding): not retried
    for _ in range(max_iter):
        grad = b + C @ z  # (C v̂)_i = ⟨g_i, d⟩/||g_i||
        tol = KAPPA * k * _EPS64 * (scale + z.sum())  # stop at float64 rounding; certified below at ε
        candidates = ~free & ~blocked & (grad < -tol)
        if not candidates.any():
            break
        j = int(np.argmin(np.where(candidates, grad, np.inf)))
        free[j] = True
        first = True
        while True:  # move to the face's unconstrained minimiser, or stop at the first bound on the way
            F = np.flatnonzero(free)
            y = _face_solve(C, b, F)
            if (y > 0).all():
                z[:] = 0.0
                z[F] = y
                break
            zF = z[F]
            neg = y <= 0
            denom = zF[neg] - y[neg]
            ratios = np.where(denom > 0, zF[neg] / np.where(denom > 0, denom, 1.0), 0.0)
            step = min(1.0, float(ratios.min()))
            zF = zF + step * (y - zF)
            drop = zF <= 0
            drop[np.flatnonzero(neg)[int(np.argmin(ratios))]] = True
            if first and step == 0.0 and drop[F == j].all():
                blocked[j] = True
            z[F] = np.where(drop, 0.0, zF)
            free[F[drop]] = False
            first = False
            if not free.any():
                break
    else:
        raise SolverError(f"dual-cone projection: no convergence in {max_iter} active-set steps (K = {k})")
    failure = _nonnegative_qp_violation(C, b, z, KAPPA * k * eps * (scale + z.sum()))
    if failure is not None:
        raise SolverError(f"dual-cone projection not certified (K = {k}): {failure}")
    return z, z > 0


def _nonnegative_qp_violation(C: np.ndarray, b: np.ndarray, z: np.ndarray, tol: float) -> str | None:
    """KKT of min_{z≥0} ½zᵀCz + bᵀz: z ≥ 0, ∇ = Cz + b ≥ −tol, |∇_i| ≤ tol where z_i > 0; None if they hold."""
    grad = b + C @ z  # (C v̂)_i = ⟨g_i, d⟩/||g_i||
    if z.min() >= 0.0 and grad.min() >= -tol and (np.abs(grad[z > 0]) <= tol).all():
        return None
    i = int(np.argmin(grad))
    return (
        f"⟨g_i, d⟩/||g_i|| = {grad[i]:.3e} for task {i}, complementarity "
        f"{np.abs(grad[z > 0]).max(initial=0.0):.3e}, tolerance {tol:.3e}"
    )


def _face_solve(C: np.ndarray, b: np.ndarray, F: np.ndarray) -> np.ndarray:
    """y with C_FF y = −b_F (the minimiser on the face {z_i = 0, i ∉ F}); least squares when singular."""
    A = C[F[:, None], F]
    try:
        y = np.linalg.solve(A, -b[F])
        if np.isfinite(y).all():
            return y
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(A, -b[F], rcond=None)[0]
