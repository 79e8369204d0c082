"""A certified linear-programming helper: HiGHS through SciPy, with its answer checked, not trusted.

    minimise  cᵀx   s.t.  A_ub x ≤ b_ub,  A_eq x = b_eq,  l ≤ x ≤ u

:func:`solve_lp` calls ``scipy.optimize.linprog(method="highs")`` and then verifies the returned
primal point and the dual (``res.ineqlin / eqlin / lower / upper`` marginals) by the LP optimality
conditions, whatever ``res.status`` says:

* primal feasibility   (A_ub x − b_ub)_i ≤ τ_i,  |(A_eq x − b_eq)_i| ≤ τ_i,  l − x ≤ τ,  x − u ≤ τ,
  with τ_i = κ·((|A||x| + |b|)_i + max_j |A_ij|·||x||_∞)  (the row's rounding bound plus a norm-wise
  floor, as HiGHS' primal tolerance is absolute in its own scaling);
* dual feasibility     y_ub ≤ 0, y_l ≥ 0, y_u ≤ 0 (SciPy's sign convention: marginal = ∂(cᵀx*)/∂rhs),
  each within κ·s_d, s_d = ||c||_∞ + Σ|y| (the dual's own scale);
* stationarity         c = A_ubᵀ y_ub + A_eqᵀ y_eq + y_l + y_u  (per coordinate, relative to
  |c_j| + (|A_ub|ᵀ|y_ub| + |A_eq|ᵀ|y_eq| + |y_l| + |y_u|)_j + s_d: HiGHS zeroes reduced costs below
  its absolute dual tolerance, so a cost entry 1e-14 next to 1 is resolved only to κ·s_d);
* complementary slackness y_i·(A x − b)_i ≈ 0 per row and bound, and the duality gap
  |cᵀx − (b_ubᵀy_ub + b_eqᵀy_eq + lᵀy_l + uᵀy_u)| ≤ κ·(|c|ᵀ|x| + |b|ᵀ|y| + |l|ᵀ|y_l| + |u|ᵀ|y_u| + the
  floors above times |x|, |y|).

Before solving, c and each constraint row (with its b_i) are scaled by a power of two to a largest
entry in [0.5, 1): exact, the same LP, and HiGHS' absolute tolerances then mean relative ones. The
checks are made on this equilibrated LP.

κ = max(ε_data, HiGHS' own tolerance 1e-9 after tightening)·C: HiGHS accepts primal/dual
infeasibilities up to its (scaled) feasibility tolerances, here tightened from the default 1e-7 to
1e-9, so the certificate cannot be narrower than that; ε_data is the machine epsilon of the least
precise input (float32 inputs get float32's ε). The LP itself is always solved in float64.

Infeasible, unbounded, iteration-limit and numerical-difficulty outcomes, a non-finite answer, and
any failed check raise :class:`~reference_impls.core.solvers.SolverError` whose message starts with
``what`` (the caller's name for the LP). Bounds follow ``linprog``'s convention: ``None`` means
x ≥ 0 for every variable; a single (l, u) pair applies to all variables; ``None`` inside a pair is
an infinite bound.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from reference_impls.core.solvers import SolverError

# HiGHS' feasibility tolerances, tightened from the 1e-7 default (its minimum is 1e-10; 1e-9 keeps it
# robust on the small, sometimes degenerate LPs of EPO/PMGDA).
_HIGHS_TOL = 1e-9
# Safety factor of the certificate over the tolerance HiGHS works to (absolute in its scaled space).
_KAPPA_FACTOR = 100.0


def _as_float64(a, name: str, ndim: int) -> tuple[np.ndarray | None, float]:
    """``a`` as a float64 array (None stays None) and the machine epsilon of its original dtype."""
    if a is None:
        return None, float(np.finfo(np.float64).eps)
    if isinstance(a, torch.Tensor):
        eps = float(torch.finfo(a.dtype).eps) if a.dtype.is_floating_point else float(np.finfo(np.float64).eps)
        arr = a.detach().cpu().to(torch.float64).numpy()
    else:
        arr0 = np.asarray(a)
        eps = float(np.finfo(arr0.dtype).eps) if np.issubdtype(arr0.dtype, np.floating) else float(np.finfo(np.float64).eps)
        arr = arr0.astype(np.float64)
    if ndim == 2 and arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return arr, eps


def _bounds_arrays(bounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bound vectors (n,), ±inf for absent bounds, from linprog's bounds argument."""
    if bounds is None:
        return np.zeros(n), np.full(n, np.inf)

    def one(pair) -> tuple[float, float]:
        lo, hi = pair
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
        return lo, hi

    if isinstance(bounds, tuple) and len(bounds) == 2 and not isinstance(bounds[0], (tuple, list)):
        lo, hi = one(bounds)
        lower, upper = np.full(n, lo), np.full(n, hi)
    else:
        pairs = list(bounds)
        if len(pairs) == 1:
            pairs = pairs * n
        if len(pairs) != n:
            raise ValueError(f"bounds must give one (l, u) pair or {n}, got {len(pairs)}")
        lower = np.array([one(p)[0] for p in pairs])
        upper = np.array([one(p)[1] for p in pairs])
    if np.isnan(lower).any() or np.isnan(upper).any() or (lower == np.inf).any() or (upper == -np.inf).any():
        raise ValueError("bounds must be finite numbers or None (lower < +inf, upper > -inf)")
    return lower, upper


def _pow2_factors(M: np.ndarray) -> np.ndarray:
    """Per row, the power of two 2^-e with max_j |M_ij|·2^-e ∈ [0.5, 1) (1 for an all-zero row)."""
    if M.shape[0] == 0:
        return np.ones(0)
    peak = np.abs(M).max(axis=1, initial=0.0)  # (m,)
    _, e = np.frexp(np.where(peak > 0, peak, 1.0))
    return np.ldexp(1.0, -e)  # (m,)


def _pow2_normalise(M: np.ndarray) -> np.ndarray:
    return M * _pow2_factors(M)[:, None]


def _pow2_rows(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = _pow2_factors(A)  # (m,)
    return A * s[:, None], b * s


def solve_lp(c, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=None, *, what: str) -> np.ndarray:
    """argmin cᵀx over {A_ub x ≤ b_ub, A_eq x = b_eq, bounds} (n,) float64, certified by its KKT conditions.

    Raises :class:`SolverError` (message starting with ``what``) when the LP is infeasible or
    unbounded, when HiGHS fails, or when the returned point and duals do not pass the checks in the
    module docstring; ValueError for malformed or non-finite inputs.
    """
    c, eps_c = _as_float64(c, "c", 1)
    n = c.shape[0]
    A_ub, eps_a = _as_float64(A_ub, "A_ub", 2)
    b_ub, eps_b = _as_float64(b_ub, "b_ub", 1)
    A_eq, eps_ae = _as_float64(A_eq, "A_eq", 2)
    b_eq, eps_be = _as_float64(b_eq, "b_eq", 1)
    if (A_ub is None) != (b_ub is None) or (A_eq is None) != (b_eq is None):
        raise ValueError(f"{what}: A_ub/b_ub and A_eq/b_eq must be given together")
    if A_ub is None:
        A_ub, b_ub = np.zeros((0, n)), np.zeros(0)
    if A_eq is None:
        A_eq, b_eq = np.zeros((0, n)), np.zeros(0)
    if A_ub.shape != (b_ub.shape[0], n) or A_eq.shape != (b_eq.shape[0], n):
        raise ValueError(f"{what}: inconsistent shapes c {c.shape}, A_ub {A_ub.shape}, b_ub {b_ub.shape}, A_eq {A_eq.shape}, b_eq {b_eq.shape}")
    lower, upper = _bounds_arrays(bounds, n)
    if (lower > upper).any():
        raise SolverError(f"{what}: infeasible (a lower bound exceeds its upper bound)")

    # Exact power-of-two equilibration (the LP's solution set is unchanged and no bit is lost): c to
    # ||c||_∞ ∈ [0.5, 1), each constraint row to max_j |A_ij| ∈ [0.5, 1). HiGHS' tolerances are
    # absolute, so an objective of 1e-8 or a row of 1e6 would otherwise defeat them.
    c = _pow2_normalise(c[None, :])[0]
    A_ub, b_ub = _pow2_rows(A_ub, b_ub)
    A_eq, b_eq = _pow2_rows(A_eq, b_eq)

    eps = max(eps_c, eps_a, eps_b, eps_ae, eps_be)
    kappa = _KAPPA_FACTOR * max(eps, _HIGHS_TOL)

    res = scipy.optimize.linprog(
        c,
        A_ub=A_ub if A_ub.shape[0] else None,
        b_ub=b_ub if A_ub.shape[0] else None,
        A_eq=A_eq if A_eq.shape[0] else None,
        b_eq=b_eq if A_eq.shape[0] else None,
        bounds=list(zip(np.where(np.isfinite(lower), lower, None), np.where(np.isfinite(upper), upper, None), strict=True)),
        method="highs",
        options={"primal_feasibility_tolerance": _HIGHS_TOL, "dual_feasibility_tolerance": _HIGHS_TOL},
    )
    if res.status == 2:
        raise SolverError(f"{what}: infeasible ({res.message})")
    if res.status == 3:
        raise SolverError(f"{what}: unbounded ({res.message})")
    if res.status != 0 or res.x is None:
        raise SolverError(f"{what}: HiGHS failed with status {res.status} ({res.message})")
    x = np.asarray(res.x, dtype=np.float64)
    if x.shape != (n,) or not np.isfinite(x).all():
        raise SolverError(f"{what}: HiGHS returned a non-finite or misshapen x")

    def marginals(field, m: int) -> np.ndarray:
        y = getattr(res, field, None)
        y = np.zeros(m) if y is None or m == 0 else np.asarray(y.marginals, dtype=np.float64)
        if y.shape != (m,) or not np.isfinite(y).all():
            raise SolverError(f"{what}: HiGHS returned no usable {field} marginals")
        return y

    y_ub = marginals("ineqlin", A_ub.shape[0])  # ≤ 0 (∂ obj / ∂ b_ub)
    y_eq = marginals("eqlin", A_eq.shape[0])  # free
    y_lo = marginals("lower", n)  # ≥ 0
    y_up = marginals("upper", n)  # ≤ 0
    check_lp_certificate(c, A_ub, b_ub, A_eq, b_eq, lower, upper, x, y_ub, y_eq, y_lo, y_up, kappa=kappa, what=what)
    return x


def check_lp_certificate(c, A_ub, b_ub, A_eq, b_eq, lower, upper, x, y_ub, y_eq, y_lo, y_up, *, kappa: float, what: str) -> None:
    """Raise SolverError unless (x; y) satisfies the LP's KKT conditions within κ-relative tolerances."""
    ax, tiny = np.abs(x), np.finfo(np.float64).tiny
    # Primal feasibility: per row, relative to the rounding scale |A||x| + |b|.
    # Plus the norm-wise floor max_j|A_ij|·||x||_∞: HiGHS' feasibility tolerance is absolute (in its
    # own scaling), so a row whose |A||x| + |b| is tiny can be off by more than κ times it.
    x_inf = ax.max(initial=0.0)
    r_ub = A_ub @ x - b_ub  # (m_ub,)
    s_ub = np.abs(A_ub) @ ax + np.abs(b_ub) + np.abs(A_ub).max(axis=1, initial=0.0) * x_inf  # (m_ub,)
    r_eq = A_eq @ x - b_eq  # (m_eq,)
    s_eq = np.abs(A_eq) @ ax + np.abs(b_eq) + np.abs(A_eq).max(axis=1, initial=0.0) * x_inf  # (m_eq,)
    fin_lo, fin_up = np.isfinite(lower), np.isfinite(upper)
    r_lo = np.where(fin_lo, lower - x, 0.0)  # (n,) ≤ 0 when feasible
    r_up = np.where(fin_up, x - upper, 0.0)  # (n,) ≤ 0 when feasible
    s_lo = np.where(fin_lo, np.abs(lower), 0.0) + ax
    s_up = np.where(fin_up, np.abs(upper), 0.0) + ax
    if (r_ub > kappa * s_ub + tiny).any():
        i = int(np.argmax(r_ub - kappa * s_ub))
        raise SolverError(f"{what}: inequality row {i} violated by {r_ub[i]:.3e} (scale {s_ub[i]:.3e})")
    if (np.abs(r_eq) > kappa * s_eq + tiny).any():
        i = int(np.argmax(np.abs(r_eq) - kappa * s_eq))
        raise SolverError(f"{what}: equality row {i} violated by {r_eq[i]:.3e} (scale {s_eq[i]:.3e})")
    if (r_lo > kappa * s_lo + tiny).any() or (r_up > kappa * s_up + tiny).any():
        raise SolverError(f"{what}: a variable bound is violated (by {max(r_lo.max(initial=0), r_up.max(initial=0)):.3e})")

    # Dual feasibility: signs, relative to the dual's own scale.
    s_dual = np.abs(c).max(initial=0.0) + np.abs(y_ub).sum() + np.abs(y_eq).sum() + np.abs(y_lo).sum() + np.abs(y_up).sum()
    tol_sign = kappa * s_dual + tiny
    if (y_ub > tol_sign).any() or (y_lo < -tol_sign).any() or (y_up > tol_sign).any():
        raise SolverError(f"{what}: dual infeasible (a multiplier has the wrong sign)")
    if (~fin_lo & (np.abs(y_lo) > tol_sign)).any() or (~fin_up & (np.abs(y_up) > tol_sign)).any():
        raise SolverError(f"{what}: dual infeasible (a multiplier on an absent bound)")
    # Stationarity c = A_ubᵀ y_ub + A_eqᵀ y_eq + y_l + y_u, per coordinate, relative to that coordinate's
    # terms plus the dual scale: HiGHS reports reduced costs below its (absolute) dual tolerance as 0,
    # so a coordinate with c_j = 1e-14 next to c_i = 1 is only resolved to ~κ·s_dual.
    r_st = c - A_ub.T @ y_ub - A_eq.T @ y_eq - y_lo - y_up  # (n,)
    s_st = np.abs(c) + np.abs(A_ub).T @ np.abs(y_ub) + np.abs(A_eq).T @ np.abs(y_eq) + np.abs(y_lo) + np.abs(y_up) + s_dual
    if (np.abs(r_st) > kappa * s_st + tiny).any():
        j = int(np.argmax(np.abs(r_st) - kappa * s_st))
        raise SolverError(f"{what}: stationarity fails at coordinate {j} by {r_st[j]:.3e} (scale {s_st[j]:.3e})")

    # Complementary slackness, per row and bound: each constraint is active (slack within κ·its scale)
    # or its multiplier is zero (within the dual sign tolerance): |y_i|·slack_i ≤ κ|y_i|·scale_i + tol·slack_i.
    slack_checks = (
        (y_ub, -r_ub, s_ub),
        (y_lo, -r_lo, s_lo),
        (y_up, -r_up, s_up),
    )
    for y, slack, scale in slack_checks:
        slack = np.abs(slack)
        if (np.abs(y) * slack > kappa * np.abs(y) * scale + tol_sign * slack + tiny).any():
            raise SolverError(f"{what}: complementary slackness fails (a multiplier on an inactive constraint)")
    # Duality gap |cᵀx − dual objective|.
    lo_t = np.where(fin_lo, lower, 0.0) * y_lo
    up_t = np.where(fin_up, upper, 0.0) * y_up
    dual_obj = b_ub @ y_ub + b_eq @ y_eq + lo_t.sum() + up_t.sum()
    gap_scale = np.abs(c) @ ax + np.abs(b_ub) @ np.abs(y_ub) + np.abs(b_eq) @ np.abs(y_eq) + np.abs(lo_t).sum() + np.abs(up_t).sum()
    # the floors of the stationarity and feasibility checks, summed over what they multiply
    gap_scale += s_dual * ax.sum() + np.abs(y_ub) @ (s_ub - np.abs(A_ub) @ ax - np.abs(b_ub)) + np.abs(y_eq) @ (s_eq - np.abs(A_eq) @ ax - np.abs(b_eq))
    gap = float(c @ x - dual_obj)
    if abs(gap) > kappa * gap_scale + tiny:
        raise SolverError(f"{what}: duality gap {gap:.3e} (scale {gap_scale:.3e})")
