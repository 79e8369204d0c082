"""Reusable inputs and property assertions for the gradient-balancing methods.

Inputs: ``random_jacobians`` (seeded, K from 1 to 32, full and reduced rank) and
``degenerate_jacobians`` (zero rows, identical, opposite and collinear rows, K = 1, huge and tiny
scales). Properties: each ``assert_*`` checks one claim of a paper on one Jacobian and fails with
a message that names the property and the size of the violation.
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


def _tol(J: Tensor, rel: float) -> float:
    return rel * float(J.norm(dim=1).max().clamp_min(1e-300)) ** 2


def assert_non_conflicting(J: Tensor, d: Tensor, rel: float = 1e-9) -> None:
    """J d ≥ 0: the update does not increase any task loss to first order."""
    worst = float((J @ d).min())
    assert worst >= -_tol(J, rel), f"non-conflicting violated: min_i <g_i, d> = {worst:.3e}"


def assert_weighted(J: Tensor, d: Tensor, w: Tensor, rel: float = 1e-10) -> None:
    """d = Jᵀ w."""
    err = float((w @ J - d).norm())
    scale = float(J.norm()) * float(w.abs().max().clamp_min(1e-300))
    assert err <= rel * max(scale, 1e-300) + 1e-300, f"d != J^T w (error {err:.3e})"


def assert_permutation_invariant(aggregate: Callable[[Tensor], Tensor], J: Tensor, seed: int = 0, rel: float = 1e-9) -> None:
    """A(PJ) = A(J) for random row permutations P."""
    gen = torch.Generator().manual_seed(seed)
    d = aggregate(J)
    for _ in range(3):
        perm = torch.randperm(J.shape[0], generator=gen)
        d_perm = aggregate(J[perm])
        err = float((d_perm - d).norm())
        assert err <= rel * max(float(d.norm()), float(J.norm())), f"not permutation invariant (error {err:.3e})"


def assert_linear_under_scaling(aggregate: Callable[[Tensor], Tensor], J: Tensor, seed: int = 0, rel: float = 1e-8) -> None:
    """A(diag(a c1 + b c2) J) = a A(diag(c1) J) + b A(diag(c2) J) for c1, c2 ≥ 0, a, b ≥ 0."""
    gen = torch.Generator().manual_seed(seed)
    K = J.shape[0]
    c1 = torch.rand(K, generator=gen, dtype=J.dtype) + 0.1
    c2 = torch.rand(K, generator=gen, dtype=J.dtype) + 0.1
    a, b = 0.7, 1.9
    lhs = aggregate((a * c1 + b * c2)[:, None] * J)
    rhs = a * aggregate(c1[:, None] * J) + b * aggregate(c2[:, None] * J)
    err = float((lhs - rhs).norm())
    assert err <= rel * max(float(lhs.norm()), 1.0), f"not linear under scaling (error {err:.3e})"


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
