"""Aggregator properties as reusable checks, with the matrix samplers they need.

The properties are those of the Jacobian-descent literature (Quinton & Rey, "Jacobian Descent for
Multi-Objective Optimization", arXiv 2406.16232, Sec. 2.2; TorchJD's test suite checks the same
ones), plus the scale behaviours the papers claim. Written for this project, no code copied.

Notation: J (K, n) with rows g_i, losses f (K,) > 0 for the methods that need them, d = A(J, f).
Every check takes a callable ``A(J, f) -> Output(d, w)`` (see :func:`evaluator`) and one input,
and returns the size of the violation divided by its tolerance (``<= 1``: the property holds on
that input), so that the same code proves a property holds (all samples ≤ 1) and proves it fails
(some sample ≫ 1).

Tolerances are per task and scale with the dtype's eps: a statement about ⟨g_i, d⟩ is checked to
    tol_i = ||g_i||·(rtol·||d|| + base·T),   base = default_rtol(dtype),   T = Σ_j |w_j|·||g_j||
(T = Σ_j ||g_j|| for an aggregator without weights; the second term is the rounding of d = Σ w_j g_j
when its terms cancel), never with a tolerance made of the largest row, which would let the small
task of a mixed-scale Jacobian through unchecked. Equalities between two outputs (permutation,
rescaling) allow rtol·spread_factor(J) for the conditioning of mixed-scale Gramians.

Samplers (seeded ``torch.Generator``, float64, then cast):

* :func:`sample_normal`  — rank-r matrix U diag(s) Vᵀ with Haar-random U, V and s_i = |N(0, 1)| + 0.1.
* :func:`sample_strong`  — strongly stationary: Jᵀw = 0 for some w > 0 (rows orthogonal to w in R^K).
* :func:`sample_strictly_weak` — weakly but not strongly stationary: Jᵀv = 0 for some v ≥ 0, v ≠ 0,
  while a non-negative left singular vector v' with disjoint support (v + v' > 0) has a positive
  singular value, so no w > 0 has Jᵀw = 0 (wᵀJJᵀv' = s²wᵀv' > 0).
* :func:`sample_non_weak` — not weakly stationary: a positive left singular vector u with s > 0, so
  vᵀJ ≠ 0 for every v ≥ 0, v ≠ 0 (vᵀJJᵀu = s²vᵀu > 0).
* :func:`scale_rows` — per-task scales spread log-uniformly over 10^±spread (mixed-scale tasks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

from reference_impls import registry
from reference_impls.core.aggregator import Weighting

# ------------------------------------------------------------------------------------------------
# Tolerances
# ------------------------------------------------------------------------------------------------


def default_rtol(dtype: torch.dtype) -> float:
    """Relative tolerance of a property check: 1e4·eps in float64 (2.2e-12), 1e3·eps in float32 (1.2e-4).

    The K×K problems are solved in float64 (certified to ~1e-12 relative); float32 adds the rounding
    of J, of M = JJᵀ and of d = Jᵀw, a few hundred eps for the sizes sampled here."""
    return (1e4 if dtype == torch.float64 else 1e3) * torch.finfo(dtype).eps


# ------------------------------------------------------------------------------------------------
# Samplers
# ------------------------------------------------------------------------------------------------


def _orthonormal(m: int, gen: torch.Generator, against: Tensor | None = None) -> Tensor:
    """A Haar-random orthonormal basis (m, m − k) of the complement of the columns of ``against`` (m, k)."""
    k = 0 if against is None else against.shape[1]
    A = torch.randn(m, m - k, generator=gen, dtype=torch.float64)  # (m, m−k)
    if against is not None:
        A = A - against @ (against.T @ A)  # project out span(against)
    Q, R = torch.linalg.qr(A)  # (m, m−k)
    signs = torch.where(torch.diagonal(R) < 0, -1.0, 1.0).to(torch.float64)  # sign fix: Haar, not QR-biased
    return Q * signs


def _assemble(U: Tensor, n: int, rank: int, gen: torch.Generator) -> Tensor:
    """J = U[:, :r] diag(s) Vᵀ[:r] with Haar V and s_i = |N(0, 1)| + 0.1 (bounded away from 0)."""
    V = _orthonormal(n, gen)  # (n, n)
    s = torch.randn(rank, generator=gen, dtype=torch.float64).abs() + 0.1  # (r,)
    return (U[:, :rank] * s) @ V[:, :rank].T  # (K, n)


def sample_normal(K: int, n: int, rank: int, gen: torch.Generator) -> Tensor:
    assert 0 < rank <= min(K, n)
    return _assemble(_orthonormal(K, gen), n, rank, gen)


def sample_strong(K: int, n: int, rank: int, gen: torch.Generator) -> Tensor:
    """Jᵀw = 0 with w > 0 (w = |N(0, 1)| + 0.1): the columns of U span w⊥."""
    assert K >= 2 and 0 < rank <= min(K - 1, n)
    w = torch.randn(K, generator=gen, dtype=torch.float64).abs() + 0.1  # (K,), w > 0
    U = _orthonormal(K, gen, against=(w / w.norm())[:, None])  # (K, K−1), ⊥ w
    return _assemble(U, n, rank, gen)


def sample_strictly_weak(K: int, n: int, rank: int, gen: torch.Generator) -> Tensor:
    """Jᵀv = 0 for a v ≥ 0 supported on a proper subset S; J has v' ≥ 0 (support S^c) as a left
    singular vector with s > 0, so J is weakly but not strongly stationary."""
    assert K >= 2 and 0 < rank <= min(K - 1, n)
    u = torch.randn(K, generator=gen, dtype=torch.float64).abs() + 0.1  # (K,) > 0
    in_S = torch.zeros(K, dtype=torch.bool)
    in_S[torch.randperm(K, generator=gen)[: int(torch.randint(1, K, (1,), generator=gen))]] = True
    v, v_prime = torch.where(in_S, u, 0.0), torch.where(in_S, 0.0, u)  # disjoint supports, v + v' = u
    v, v_prime = v / v.norm(), v_prime / v_prime.norm()  # orthonormal pair
    pair = torch.stack([v, v_prime], dim=1)  # (K, 2)
    U = torch.cat([v_prime[:, None], _orthonormal(K, gen, against=pair)], dim=1)  # (K, K−1), ⊥ v
    J = _assemble(U, n, rank, gen)
    if int(in_S.sum()) == 1:
        J[in_S] = 0.0  # Jᵀe_k = 0: row k is a zero gradient; make it exactly zero, not rounding noise
    return J


def sample_non_weak(K: int, n: int, rank: int, gen: torch.Generator) -> Tensor:
    """J has a positive left singular vector u with s > 0, so vᵀJ ≠ 0 for all v ≥ 0, v ≠ 0."""
    assert 0 < rank <= min(K, n)
    u = torch.randn(K, generator=gen, dtype=torch.float64).abs() + 0.1  # (K,) > 0
    u = u / u.norm()
    U = torch.cat([u[:, None], _orthonormal(K, gen, against=u[:, None])], dim=1)  # (K, K)
    return _assemble(U, n, rank, gen)


def scale_rows(J: Tensor, spread: float, gen: torch.Generator) -> Tensor:
    """diag(c) J with log10 c_i uniform in [−spread, spread]: tasks on very different scales."""
    c = 10.0 ** ((2 * torch.rand(J.shape[0], generator=gen, dtype=torch.float64) - 1) * spread)  # (K,)
    return c[:, None] * J


def is_strongly_stationary(J: Tensor) -> bool:
    """Whether some w > 0 has Jᵀw = 0 (an LP: max t s.t. Jᵀw = 0, w ≥ t, Σw = 1; strong iff t* > 0)."""
    K = J.shape[0]
    A = J.double().numpy()
    # variables (w_1..w_K, t); maximise t
    c = np.zeros(K + 1)
    c[-1] = -1.0
    A_eq = np.zeros((A.shape[1] + 1, K + 1))
    A_eq[:-1, :K] = A.T / max(np.abs(A).max(), 1e-300)
    A_eq[-1, :K] = 1.0
    b_eq = np.zeros(A.shape[1] + 1)
    b_eq[-1] = 1.0
    A_ub = np.hstack([-np.eye(K), np.ones((K, 1))])  # t − w_i ≤ 0
    res = scipy.optimize.linprog(c, A_ub=A_ub, b_ub=np.zeros(K), A_eq=A_eq, b_eq=b_eq, bounds=[(0, None)] * (K + 1))
    return bool(res.status == 0 and -res.fun > 1e-9)


@dataclass(frozen=True)
class Sample:
    name: str
    J: Tensor  # (K, n)
    losses: Tensor  # (K,) > 0


def losses_for(K: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Fixed positive, distinct losses f_i = 0.5 + i/K (methods that ignore them get them anyway)."""
    return (0.5 + torch.arange(K, dtype=torch.float64) / K).to(dtype)


# (K, n, rank) of the samples: K > n, K = 1, reduced rank and full rank.
NORMAL_DIMS = [(1, 4, 1), (2, 5, 2), (3, 8, 2), (5, 3, 3), (6, 12, 6)]
STATIONARY_DIMS = [(2, 4, 1), (3, 6, 2), (5, 3, 3), (6, 12, 4)]
SEEDS = range(5)
# Task scales of the mixed samples: row norms differ by up to 10^4, Gramian entries by 10^8, which
# keeps the K×K problems well inside float64 (the extreme scales 1e±12 are in the degenerate tests).
MIXED_SPREAD = 2.0


def normal_samples(seeds=SEEDS, dtype: torch.dtype = torch.float64, mixed_scale: bool = True) -> Iterator[Sample]:
    """Per seed: every NORMAL_DIMS shape, plus (K ≥ 2) the same matrix with tasks on scales 10^±MIXED_SPREAD."""
    for seed in seeds:
        gen = torch.Generator().manual_seed(1000 + seed)
        for K, n, r in NORMAL_DIMS:
            J = sample_normal(K, n, r, gen)
            yield Sample(f"normal-{K}x{n}r{r}-s{seed}", J.to(dtype), losses_for(K, dtype))
            if mixed_scale and K >= 2:
                yield Sample(f"mixed-{K}x{n}r{r}-s{seed}", scale_rows(J, MIXED_SPREAD, gen).to(dtype), losses_for(K, dtype))


def stationary_samples(kind: str, seeds=SEEDS, dtype: torch.dtype = torch.float64) -> Iterator[Sample]:
    sampler = {"strong": sample_strong, "strictly-weak": sample_strictly_weak, "non-weak": sample_non_weak}[kind]
    for seed in seeds:
        gen = torch.Generator().manual_seed(2000 + seed)
        for K, n, r in STATIONARY_DIMS:
            J = sampler(K, n, r, gen)
            yield Sample(f"{kind}-{K}x{n}r{r}-s{seed}", J.to(dtype), losses_for(K, dtype))


# ------------------------------------------------------------------------------------------------
# Running a method
# ------------------------------------------------------------------------------------------------


STEPS = 2  # stateful methods are read at their second step on a repeated input (see evaluator)


@dataclass(frozen=True)
class Output:
    d: Tensor  # (n,) the direction
    w: Tensor | None  # (K,) the weights of a Weighting (from a twin instance), else None


Evaluator = Callable[[Tensor, Tensor], Output]


def evaluator(name: str, steps: int = STEPS, through_call: bool = False, **hyperparameters) -> Evaluator:
    """``A(J, f)``: a fresh instance of ``name`` applied to (J, f) — ``steps`` times for a stateful
    method, once otherwise — returning the last d and, for a :class:`Weighting`, its weights w.

    For a Weighting, d = Jᵀw from ``weights()`` (every Weighting here aggregates exactly so); with
    ``through_call`` d comes from ``__call__`` and w from a twin instance driven the same way, which
    the "expected structure" and "weighted" checks use to test that ``__call__`` agrees.
    For stateful methods (EMAs, learned weights, seeded random streams, warm starts) this is the map
    J ↦ d at step ``steps`` on a repeated input: a deterministic function of (J, f) that exercises
    the state update once."""
    cls = registry.load_class(name)
    calls = steps if cls.stateful else 1
    weighting = issubclass(cls, Weighting)

    def A(J: Tensor, losses: Tensor) -> Output:
        method = cls(**hyperparameters)
        f = losses if method.needs_losses else None
        if weighting and not through_call:
            for _ in range(calls):
                w = method.weights(J, f)  # (K,)
            return Output(w @ J, w)  # d = Jᵀw
        twin = cls(**hyperparameters) if weighting else None
        w = None
        for _ in range(calls):
            d = method(J, f)
            if twin is not None:
                w = twin.weights(J, f)
        return Output(d, w)

    return A


def terms_scale(J: Tensor, out: Output) -> float:
    """T, the size of the terms of d: Σ_j |w_j|·||g_j|| for a weighting (d = Σ_j w_j g_j may cancel to
    ~0 while its terms are large), Σ_j ||g_j|| for another aggregator (its terms are the task
    gradients, masked or rescaled)."""
    norms = J.double().norm(dim=1)  # (K,)
    return float(norms.sum() if out.w is None else (out.w.double().abs() * norms).sum())


def rounding_scale(J: Tensor, out: Output, rtol: float) -> float:
    """s with rtol·s = rtol·||d|| + base·T (base = :func:`default_rtol` of J's dtype): tolerances are
    tol_i = rtol·||g_i||·s = ||g_i||·(rtol·||d|| + base·T), relative to each task's own norm; the
    cancellation term base·T never takes a looser method-specific rtol."""
    return float(out.d.double().norm()) + default_rtol(J.dtype) / rtol * terms_scale(J, out)


# ------------------------------------------------------------------------------------------------
# Properties: each returns violation / tolerance (≤ 1: holds on this input)
# ------------------------------------------------------------------------------------------------


def _ratio(err: Tensor | float, tol: Tensor | float) -> float:
    """max_i err_i / tol_i with 0/0 = 0 (exact agreement at zero scale) and x/0 = inf."""
    err = torch.as_tensor(err, dtype=torch.float64).reshape(-1)
    tol = torch.as_tensor(tol, dtype=torch.float64).reshape(-1)
    r = torch.where(err == 0, torch.zeros_like(err), err / tol)
    return float(r.max())


def spread_factor(J: Tensor) -> float:
    """√(max_i ||g_i|| / min_i ||g_i||) over the nonzero rows (≥ 1): two outputs computed from
    differently ordered or scaled copies of J differ by the conditioning of the K×K problem, whose
    Gramian entries span (max/min)²; equalities between outputs are checked to rtol·spread_factor."""
    norms = J.double().norm(dim=1)
    norms = norms[norms > 0]
    return 1.0 if norms.numel() == 0 else float((norms.max() / norms.min()).sqrt())


def same_direction_violation(d: Tensor, d_ref: Tensor, J: Tensor, rtol: float, scale: float | None = None) -> float:
    """d = d_ref up to rtol, per task and as vectors:
        |⟨g_i, d − d_ref⟩| ≤ rtol·||g_i||·s   for every task i,   and   ||d − d_ref|| ≤ rtol·s,
    with s = ``scale`` (the rounding scale of d_ref, default ||d_ref||). Callers comparing two outputs
    pass rtol·spread_factor(J)."""
    d, d_ref, J = d.double(), d_ref.double(), J.double()
    s = float(d_ref.norm()) if scale is None else scale
    diff = d - d_ref  # (n,)
    per_task = _ratio((J @ diff).abs(), rtol * J.norm(dim=1) * s)  # (K,)
    return max(per_task, _ratio(diff.norm(), rtol * s))


def expected_structure(A: Evaluator, s: Sample, rtol: float) -> float:
    """d has shape (n,), J's dtype and device, and finite entries (and no exception is raised);
    the weights of a weighting have shape (K,) and are finite."""
    out = A(s.J, s.losses)
    d = out.d
    ok = d.shape == (s.J.shape[1],) and d.dtype == s.J.dtype and d.device == s.J.device and bool(torch.isfinite(d).all())
    if out.w is not None:
        ok = ok and out.w.shape == (s.J.shape[0],) and bool(torch.isfinite(out.w).all())
    return 0.0 if ok else math.inf


def weighted(A: Evaluator, s: Sample, rtol: float) -> float:
    """d ∈ span{g_i} (d = Jᵀw for some w): the part of d orthogonal to the row span is ≤ rtol·s, s
    the rounding scale; for a :class:`Weighting` also d = Jᵀw with its own w, per task:
    |⟨g_i, d − Jᵀw⟩| ≤ rtol·||g_i||·s."""
    out = A(s.J, s.losses)
    d, J = out.d.double(), s.J.double()
    scale = rounding_scale(s.J, out, rtol)
    _, S, Vh = torch.linalg.svd(J, full_matrices=False)  # S (min(K, n),), Vh (min(K, n), n)
    V = Vh[S > 1e-10 * S.max()].T  # (n, rank): orthonormal basis of the row span
    residual = d - V @ (V.T @ d)  # (n,)
    worst = _ratio(residual.norm(), rtol * scale)
    if out.w is not None:
        worst = max(worst, same_direction_violation(d, out.w.double() @ J, J, rtol, scale))
    return worst


def non_conflicting(A: Evaluator, s: Sample, rtol: float) -> float:
    """⟨g_i, d⟩ ≥ −rtol·||g_i||·s for every task i (J d ≥ 0, each task on its own scale; s the
    rounding scale of d)."""
    out = A(s.J, s.losses)
    ip = s.J.double() @ out.d.double()  # (K,)
    return _ratio((-ip).clamp_min(0.0), rtol * s.J.double().norm(dim=1) * rounding_scale(s.J, out, rtol))


def permutation_invariant(A: Evaluator, s: Sample, rtol: float, n_perms: int = 2) -> float:
    """A(PJ, Pf) = A(J, f) for row permutations P (tasks relabelled, losses with them): the reversal
    and ``n_perms − 1`` seeded random permutations."""
    K = s.J.shape[0]
    if K == 1:
        return 0.0
    gen = torch.Generator().manual_seed(K)
    out = A(s.J, s.losses)
    perms = [torch.arange(K).flip(0)] + [torch.randperm(K, generator=gen) for _ in range(n_perms - 1)]
    rtol = rtol * spread_factor(s.J)
    scale = rounding_scale(s.J, out, rtol)
    return max(same_direction_violation(A(s.J[p], s.losses[p]).d, out.d, s.J, rtol, scale) for p in perms)


def _positive_scales(K: int, gen: torch.Generator) -> Tensor:
    return 10.0 ** (2 * torch.rand(K, generator=gen, dtype=torch.float64) - 1)  # (K,) in [0.1, 10]


def _rescaled(A: Evaluator, s: Sample, c: Tensor) -> Output:
    """A(diag(c) J, c ⊙ f): task i's loss, hence its gradient, multiplied by c_i."""
    dt = s.J.dtype
    return A((c[:, None] * s.J.double()).to(dt), (c * s.losses.double()).to(dt))


def linear_under_scaling(A: Evaluator, s: Sample, rtol: float, runs: int = 1) -> float:
    """c ↦ A(diag(c) J, c ⊙ f) is linear on c > 0: A(a c1 + b c2) = a A(c1) + b A(c2), a, b > 0.
    (Rescaling a task rescales its gradient and its loss together; for the methods blind to the
    losses this is TorchJD's definition on J alone.)"""
    K = s.J.shape[0]
    gen = torch.Generator().manual_seed(7 + K)
    rtol = rtol * spread_factor(s.J) * 10  # c spans [0.1, 10]: the rescaled Jacobians add up to 10² of spread
    worst = 0.0
    for _ in range(runs):
        c1, c2 = _positive_scales(K, gen), _positive_scales(K, gen)
        a, b = 0.3 + float(torch.rand(1, generator=gen)), 0.3 + float(torch.rand(1, generator=gen))
        c = a * c1 + b * c2
        out = _rescaled(A, s, c)
        rhs = a * _rescaled(A, s, c1).d.double() + b * _rescaled(A, s, c2).d.double()
        J_c = c[:, None] * s.J.double()
        worst = max(worst, same_direction_violation(out.d, rhs, J_c, rtol, rounding_scale(J_c, out, rtol)))
    return worst


# Global scales σ of the scale-equivariance check: A(σJ, σf) = σ^k A(J, f), k the method's degree.
GLOBAL_SCALES = (1e-12, 1e-4, 1e4, 1e12)


def scale_equivariant(A: Evaluator, s: Sample, rtol: float, degree: int = 1) -> float:
    """A(σJ, σf) = σ^k A(J, f) for σ in GLOBAL_SCALES (k = ``degree``: 1 for most methods, 0 for the
    methods whose output ignores a common scale of all tasks)."""
    out = A(s.J, s.losses)
    rtol = rtol * spread_factor(s.J)
    scale = rounding_scale(s.J, out, rtol)
    worst = 0.0
    for sigma in GLOBAL_SCALES:
        d_s = _rescaled(A, s, torch.full((s.J.shape[0],), sigma, dtype=torch.float64)).d.double()
        worst = max(worst, same_direction_violation(d_s / sigma**degree, out.d, s.J, rtol, scale))
    return worst


def task_scale_invariant(A: Evaluator, s: Sample, rtol: float, runs: int = 1) -> float:
    """The direction ignores task scales: A(diag(c) J, c ⊙ f) = λ A(J, f) with λ > 0 for c in
    [0.1, 10]^K, compared as unit vectors, per task and as vectors."""
    K = s.J.shape[0]
    gen = torch.Generator().manual_seed(11 + K)
    d = A(s.J, s.losses).d.double()
    if float(d.norm()) == 0.0:
        return 0.0
    rtol = rtol * spread_factor(s.J) * 10  # c spans [0.1, 10]
    worst = 0.0
    for _ in range(runs):
        d_c = _rescaled(A, s, _positive_scales(K, gen)).d.double()
        if float(d_c.norm()) == 0.0:
            return math.inf
        worst = max(worst, same_direction_violation(d_c / d_c.norm(), d / d.norm(), s.J, rtol))
    return worst


def zero_at_stationarity(A: Evaluator, s: Sample, rtol: float) -> float:
    """d = 0 to rounding on a stationary J (strongly or weakly, by the sampler):
    ||d|| ≤ rtol·min_i ||g_i|| + base·T (T the size of the terms of d, see :func:`rounding_scale`)."""
    out = A(s.J, s.losses)
    tol = rtol * float(s.J.double().norm(dim=1).min()) + default_rtol(s.J.dtype) * terms_scale(s.J, out)
    return _ratio(out.d.double().norm(), tol)


def nonzero_off_strong_stationarity(A: Evaluator, s: Sample, rtol: float) -> float:
    """TorchJD's "strongly stationary" property, by contraposition: on a J that is not strongly
    stationary, d ≠ 0. A violation is ||d|| ≤ 1e-3·min_i ||g_i|| (a clear zero: far above rounding,
    far below the samplers' singular values ≥ 0.1)."""
    d = A(s.J, s.losses).d.double()
    return 0.0 if float(d.norm()) > 1e-3 * float(s.J.double().norm(dim=1).min()) else math.inf
