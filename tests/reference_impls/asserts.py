"""Reusable inputs and property assertions for the gradient-balancing methods.

Inputs: ``random_jacobians`` (seeded, K from 1 to 32, full and reduced rank) and
``degenerate_jacobians`` (zero rows, identical, opposite and collinear rows, K = 1, huge and tiny
scales). Properties: each ``assert_*`` checks one claim of a paper on one Jacobian and fails with
a message that names the property, the task and the size of the violation. Every tolerance is per
task (relative to that task's own ||g_i||, never to the largest row) and scales with the dtype's eps
or an explicit ``rel``. The aggregator properties of the Jacobian-descent literature, with their
matrix samplers, are in ``properties.py``; their per-method table in ``reference_impls/properties.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

SHAPES = [(1, 5), (2, 3), (2, 10), (3, 20), (5, 50), (8, 16), (12, 64), (32, 100), (32, 20)]


def random_jacobians(
    seed: int = 0, dtype: torch.dtype = torch.float64, shapes=SHAPES, per_shape: int = 3
) -> Iterator[tuple[str, Tensor]]:
    """Seeded Jacobians of several shapes; every third one has reduced rank; scales vary per row."""
    gen = torch.Generator().manual_seed(seed)
    for (K, n), r in itertools.product(shapes, range(per_shape)):
        J = torch.randn(K, n, generator=gen, dtype=torch.float64)
        if r == 1:  # unequal row scales (task imbalance)
            J = J * torch.logspace(-2, 2, K, dtype=torch.float64)[:, None]
        if r == 2 and min(K, n) > 1:  # reduced rank
            rank = max(1, min(K, n) // 2)
            J = torch.randn(K, rank, generator=gen, dtype=torch.float64) @ torch.randn(
                rank, n, generator=gen, dtype=torch.float64
            )
        yield f"K{K}-n{n}-v{r}", J.to(dtype)


def degenerate_jacobians(n: int = 4, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    g = torch.tensor([1.0, -2.0, 0.5, 3.0][:n] + [0.0] * max(0, n - 4), dtype=dtype)
    h = torch.tensor([0.5, 1.0, -1.0, 2.0][:n] + [1.0] * max(0, n - 4), dtype=dtype)
    return {
        "all-zero": torch.zeros(3, n, dtype=dtype),
        "one-zero-row": torch.stack([g, torch.zeros(n, dtype=dtype), h]),
        "identical": torch.stack([g, g, g]),
        "opposite": torch.stack([g, -g]),
        "collinear": torch.stack([g, 3.0 * g, -0.5 * g]),
        "single-task": g[None, :],
        "huge-scale": torch.stack([g, h]) * 1e15,
        "tiny-scale": torch.stack([g, h]) * 1e-15,
        "mixed-scale": torch.stack([g * 1e8, h * 1e-8]),
    }


# ------------------------------------------------------------------------------------------------
# Tolerances: per task and dtype-scaled
# ------------------------------------------------------------------------------------------------
#
# A statement about task i (⟨g_i, d⟩ ≥ 0, ⟨g_i, d⟩ = ⟨g_i, d'⟩) is checked to
#     tol_i = ||g_i||·(rel·||d|| + 8(K + n)·eps·T),   T = Σ_j |w_j|·||g_j||  (Σ_j ||g_j|| when w is unknown):
# relative to the task's own norm (it checks the cosine of g_i with d to rel), plus the rounding of
# d = Σ_j w_j g_j, whose terms may cancel, and of the length-n inner product (γ_m = m·eps, 8× margin). A tolerance made of the largest row (rel·max_j ||g_j||²)
# would accept any answer for the small task of a mixed-scale Jacobian.


def default_rel(dtype: torch.dtype) -> float:
    """1e4·eps of ``dtype``: 2.2e-12 in float64, 1.2e-3 in float32."""
    return 1e4 * torch.finfo(dtype).eps


def task_tolerances(J: Tensor, d: Tensor, rel: float, w: Tensor | None = None, eps: float | None = None) -> Tensor:
    """tol_i = ||g_i||·(rel·||d|| + 8(K + n)·eps·T) (K,) float64, with T = Σ_j |w_j|·||g_j|| (or
    Σ_j ||g_j|| when w is not given: pass w when the weights can be large) and eps that of d's dtype
    unless given (a float32 answer is checked at float32 rounding even if passed as float64)."""
    J64 = J.double()
    norms = J64.norm(dim=1)  # (K,)
    terms = float(norms.sum()) if w is None else float((w.double().abs() * norms).sum())  # T
    eps = torch.finfo(d.dtype).eps if eps is None else eps
    return norms * (rel * float(d.double().norm()) + 8 * (J.shape[0] + J.shape[1]) * eps * terms)


def assert_non_conflicting(J: Tensor, d: Tensor, rel: float | None = None, w: Tensor | None = None) -> None:
    """J d ≥ 0 per task: ⟨g_i, d⟩ ≥ −tol_i for every i (:func:`task_tolerances`), so the update does
    not increase any task loss to first order, whatever the task's scale. ``rel`` defaults to
    :func:`default_rel` of J's dtype; pass the weights w of d = Jᵀw when d may cancel to ~0."""
    rel = default_rel(J.dtype) if rel is None else rel
    ip = J.double() @ d.double()  # (K,): ⟨g_i, d⟩
    tol = task_tolerances(J, d, rel, w)  # (K,)
    slack = ip + tol
    i = int(torch.argmin(slack))
    assert float(slack[i]) >= 0, (
        f"non-conflicting violated for task {i}: <g_i, d> = {float(ip[i]):.3e} < -tol_i = {-float(tol[i]):.3e} "
        f"(cosine {float(ip[i]) / max(float(J[i].double().norm() * d.double().norm()), 1e-300):.3e})"
    )


def assert_same_direction(J: Tensor, d: Tensor, d_ref: Tensor, rel: float | None = None, w: Tensor | None = None) -> None:
    """d = d_ref, per task and as vectors: |⟨g_i, d − d_ref⟩| ≤ tol_i (:func:`task_tolerances` of
    d_ref, with d_ref's weights w if known) and ||d − d_ref|| ≤ max_i tol_i/||g_i||."""
    rel = default_rel(J.dtype) if rel is None else rel
    diff = d.double() - d_ref.double()  # (n,)
    err = (J.double() @ diff).abs()  # (K,)
    eps = max(torch.finfo(d.dtype).eps, torch.finfo(d_ref.dtype).eps)  # the coarser of the two
    tol = task_tolerances(J, d_ref, rel, w, eps)
    bad = err > tol
    assert not bool(bad.any()), (
        f"outputs differ for task {int(torch.nonzero(bad)[0])}: "
        f"|<g_i, d - d_ref>| = {float(err[bad][0]):.3e} > tol_i = {float(tol[bad][0]):.3e}"
    )
    norms = J.double().norm(dim=1)
    whole = float((tol / norms.clamp_min(1e-300))[norms > 0].max()) if bool((norms > 0).any()) else 0.0
    assert float(diff.norm()) <= whole, f"outputs differ: ||d - d_ref|| = {float(diff.norm()):.3e} > {whole:.3e}"


def assert_weighted(J: Tensor, d: Tensor, w: Tensor, rel: float | None = None) -> None:
    """d = Jᵀw, per task: |⟨g_i, d − Jᵀw⟩| ≤ rel·||g_i||·Σ_j |w_j|·||g_j|| (the rounding bound of Jᵀw)."""
    rel = 1e-10 if rel is None else rel
    assert_same_direction(J, d, w.to(J.dtype) @ J, rel, w=w)


def assert_permutation_invariant(aggregate: Callable[[Tensor], Tensor], J: Tensor, seed: int = 0, rel: float = 1e-9) -> None:
    """A(PJ) = A(J) for random row permutations P, per task (:func:`assert_same_direction`)."""
    gen = torch.Generator().manual_seed(seed)
    d = aggregate(J)
    for _ in range(3):
        perm = torch.randperm(J.shape[0], generator=gen)
        assert_same_direction(J, aggregate(J[perm]), d, rel)


def assert_linear_under_scaling(aggregate: Callable[[Tensor], Tensor], J: Tensor, seed: int = 0, rel: float = 1e-8) -> None:
    """A(diag(a c1 + b c2) J) = a A(diag(c1) J) + b A(diag(c2) J) for c1, c2 > 0, a, b > 0, per task
    of the rescaled Jacobian."""
    gen = torch.Generator().manual_seed(seed)
    K = J.shape[0]
    c1 = torch.rand(K, generator=gen, dtype=J.dtype) + 0.1
    c2 = torch.rand(K, generator=gen, dtype=J.dtype) + 0.1
    a, b = 0.7, 1.9
    c = a * c1 + b * c2
    lhs = aggregate(c[:, None] * J)
    rhs = a * aggregate(c1[:, None] * J) + b * aggregate(c2[:, None] * J)
    assert_same_direction(c[:, None] * J, lhs, rhs, rel)


def assert_min_norm_kkt(J: Tensor, lam: Tensor, rel: float | None = None) -> None:
    """KKT of λ = argmin_{λ∈Δ} ||Jᵀλ||² (MGDA), per task: λ ∈ Δ, ⟨g_i, d⟩ ≥ ||d||² − tol_i for every
    i and |⟨g_i, d⟩ − ||d||²| ≤ tol_i where λ_i > 0, with d = Jᵀλ and
    tol_i = rel·||g_i||·(||d|| + Σ_j λ_j ||g_j||) (the second term bounds the rounding of d)."""
    rel = default_rel(J.dtype) if rel is None else rel
    J64, lam64 = J.double(), lam.double()
    assert float(lam64.min()) >= 0.0 and abs(float(lam64.sum()) - 1.0) <= max(rel, 1e-12), f"λ not in the simplex: {lam64.tolist()}"
    d = lam64 @ J64  # (n,)
    dd = float(d @ d)
    inner = J64 @ d  # (K,)
    tol = task_tolerances(J64, d, rel, lam64) + rel * J64.norm(dim=1) * float(lam64 @ J64.norm(dim=1))
    i = int(torch.argmin(inner - dd + tol))
    assert float(inner[i] - dd + tol[i]) >= 0, f"KKT: task {i}: <g_i, d> = {float(inner[i]):.3e} < ||d||² = {dd:.3e}"
    active = lam64 > 1e-9
    assert bool(((inner - dd).abs() <= tol)[active].all()), "KKT: <g_i, d> != ||d||² on the support of λ"


def assert_matches_float64(
    method_factory: Callable[[], Callable[[Tensor], Tensor]], J: Tensor, rel: float | None = None
) -> None:
    """A float32 (or other low-precision) answer agrees with the float64 answer on the same, already
    rounded, input, per task (:func:`assert_same_direction`, rounding at d's precision); rel defaults
    to :func:`default_rel` of J's dtype. If the float64 call raises, the low-precision call must raise
    the same exception type."""
    J64 = J.double()
    try:
        d64 = method_factory()(J64)
    except Exception as exc:  # noqa: BLE001 - the same error is required below
        try:
            method_factory()(J)
        except type(exc):
            return
        raise AssertionError(f"float64 raised {type(exc).__name__} but {J.dtype} did not") from None
    d = method_factory()(J)
    assert d.dtype == J.dtype, f"dtype {d.dtype} != {J.dtype}"
    assert bool(torch.isfinite(d).all()), "non-finite output"
    rel = default_rel(J.dtype) if rel is None else rel
    assert_same_direction(J64, d, d64, rel)  # tolerances at d's (low) precision


def min_norm_reference(J: Tensor) -> float:
    """||min-norm point of conv{g_i}|| by exhaustive search over supports (exact; K ≤ 12)."""
    M = (J @ J.T).to(torch.float64)
    K = M.shape[0]
    best = float("inf")
    for r in range(1, K + 1):
        for S in itertools.combinations(range(K), r):
            S = list(S)
            A = torch.zeros(r + 1, r + 1, dtype=torch.float64)
            A[:r, :r] = M[S][:, S]
            A[:r, r] = 1.0
            A[r, :r] = 1.0
            rhs = torch.zeros(r + 1, dtype=torch.float64)
            rhs[r] = 1.0
            sol = torch.linalg.lstsq(A, rhs[:, None]).solution[:, 0]
            alpha = sol[:r]
            if (alpha < -1e-12).any() or abs(float(alpha.sum()) - 1.0) > 1e-9:
                continue
            lam = torch.zeros(K, dtype=torch.float64)
            lam[S] = alpha.clamp_min(0.0)
            best = min(best, float(lam @ M @ lam))
    return max(best, 0.0) ** 0.5


def assert_backward_matches_explicit_jacobian(method, reference=None, steps: int = 3, atol: float = 1e-12) -> None:
    """``method.backward`` in a small training loop (shared encoder, two heads) writes exactly
    d = reference(J) into the encoder's ``.grad``, with J computed explicitly, and each head's own task
    gradient into the head; checked over several steps, so state (EMAs, warm starts) is exercised.

    ``reference`` defaults to ``method`` itself; stateful or random methods pass an identical second
    instance, so that computing the expected direction does not advance the state under test."""
    reference = method if reference is None else reference
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 3).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1).double() for _ in range(2)])
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    params = list(encoder.parameters()) + list(heads.parameters())
    for _ in range(steps):
        for p in params:
            p.grad = None
        z = torch.tanh(encoder(x))
        losses = [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]
        rows, head_grads = [], []
        for i, f in enumerate(losses):
            g = torch.autograd.grad(f, list(encoder.parameters()) + list(heads[i].parameters()), retain_graph=True)
            rows.append(torch.cat([t.reshape(-1) for t in g[:2]]))
            head_grads.append(g[2:])
        expected = reference(torch.stack(rows))
        method.backward(losses, encoder.parameters(), heads.parameters())
        got = torch.cat([p.grad.reshape(-1) for p in encoder.parameters()])
        assert torch.allclose(got, expected, atol=atol), "backward() wrote a different shared gradient"
        for head, grads in zip(heads, head_grads):
            for p, g in zip(head.parameters(), grads):
                assert torch.allclose(p.grad, g, atol=atol), "a head did not get its own task gradient"
        with torch.no_grad():
            for p in params:
                p -= 0.1 * p.grad


def run_cagrad_toy(method, steps: int, lr: float, scale: float = 1.0, inits: str = "cagrad"):
    """Optimise the CAGrad toy from its standard starts with ``method`` (one shared instance).

    Float64, Adam with β = (0.9, 0.9) and cosine decay of the step: the short second-moment memory
    avoids the stalls of the default β₂ = 0.999 in the toy's log valleys, so a few hundred steps
    replace the papers' 10⁴–10⁵ (a documented deviation from their toy settings).
    Returns (problem, final points (B, 2)).
    """
    from reference_impls.problems import get_problem

    problem = get_problem("cagrad-toy", scale=scale, inits=inits)
    x = problem.initial_points().clone().requires_grad_(True)  # (B, 2)
    opt = torch.optim.Adam([x], lr=lr, betas=(0.9, 0.9))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        J = problem.jacobian(x.detach())  # (B, 2, 2)
        x.grad = torch.stack([method(Jb) for Jb in J])
        opt.step()
        sched.step()
    return problem, x.detach()
