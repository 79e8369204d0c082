"""FORUM (Ye et al., ECAI 2024): the claims checked exactly or on the bilevel-ridge toy.

* QP (14) is solved to optimality: on 150 random inputs (K = 1..6, ‖∇q‖ from 1e-4 to 1e4) the
  certified answer is no worse than SLSQP from 4 starts nor than 2000 random feasible points, and its
  last weight is max(0, Σ w_i π_i) (the elimination derived in the module docstring).
* ⟨d, ∇q⟩ ≥ ρ‖∇q‖² for every λ on the simplex (random inputs, vertices included), with equality when
  Σ λ_i π_i ≥ 0.
* ∇q and ∇F are the closed forms of the toy (∇q's α-part J_s(f^tr(ω) − f^tr(ω_T)), ω-part the lower
  gradient; ∇F the normalised validation gradients with a zero α-part).
* On bilevel-ridge (K = 3, lr 0.1, 300 steps, seeds 0..4: 5 of 5) the constraint value q falls below
  1e-3 of its initial value, the true lower-level gap f(α, ω) − f*(α) (closed form) below 1e-2, and
  every upper-level (validation) loss ends below its initial value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import bilevel_step, end_epoch
from reference_impls.core.solvers import SolverError
from reference_impls.loss_balancing import forum as forum_module
from reference_impls.loss_balancing.forum import FORUM, forum_direction, forum_qp_weights
from reference_impls.loss_balancing.moml import softmax_jacobian
from reference_impls.problems import get_problem

DT = torch.float64


def _random_rows(rng: np.random.Generator, K: int, p: int) -> np.ndarray:
    A = rng.standard_normal((K + 1, p))  # rows ∇F_1..∇F_K, ∇q
    A[:K] /= np.linalg.norm(A[:K], axis=1, keepdims=True)  # normalised upper gradients
    A[K] *= 10.0 ** rng.uniform(-4, 4)
    return A


def _objective(M: np.ndarray, rho: float):
    K = M.shape[0] - 1
    return lambda z: float(z @ M @ z - z[K] * rho * M[K, K])


@pytest.mark.parametrize("seed", range(3))
def test_qp_is_solved_to_optimality_and_eliminates_the_constraint_weight(seed):
    rng = np.random.default_rng(seed)
    rho = 0.1
    for _ in range(50):
        K, p = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        M = (lambda A: A @ A.T)(_random_rows(rng, K, p))
        w, pi = forum_qp_weights(M, rho)
        obj = _objective(M, rho)
        a = M[K, K]
        assert np.allclose(pi, rho - M[:K, K] / a)
        assert w.min() >= 0 and abs(w[:K].sum() - 1) <= 1e-12
        assert w[K] >= pi @ w[:K] - 1e-12 * (1 + abs(pi) @ w[:K])
        # the optimal w_{K+1} is max(0, Σ w_i π_i): the objective is convex in it with its free minimiser below the bound
        assert abs(w[K] - max(0.0, pi @ w[:K])) <= 1e-9 * (1 + abs(w[K]))
        scale = abs(obj(w)) + M.diagonal().max()
        cons = [{"type": "eq", "fun": lambda z: z[:K].sum() - 1}, {"type": "ineq", "fun": lambda z: z[K] - pi @ z[:K]}]
        for _start in range(4):
            z0 = np.append(rng.dirichlet(np.ones(K)), rng.uniform(0, 2) * max(1.0, abs(pi).max()))
            res = minimize(obj, z0, constraints=cons, bounds=[(0, None)] * (K + 1), method="SLSQP", options={"ftol": 1e-15, "maxiter": 500})
            if res.success and cons[1]["fun"](res.x) >= -1e-9 and abs(cons[0]["fun"](res.x)) <= 1e-9:
                assert obj(w) <= res.fun + 1e-8 * scale, f"K={K}: SLSQP found {res.fun} < {obj(w)}"
        W = rng.dirichlet(np.ones(K), size=2000)  # random feasible points
        nu = np.maximum(W @ pi, 0.0) + rng.exponential(0.1, size=2000) * (rng.random(2000) < 0.5)
        Z = np.concatenate([W, nu[:, None]], axis=1)
        values = np.einsum("bi,ij,bj->b", Z, M, Z) - Z[:, K] * rho * a
        assert obj(w) <= values.min() + 1e-10 * scale


@pytest.mark.parametrize("scale", [1e-150, 1e-30, 1e-12, 1e-6, 1e6, 1e12, 1e30])
def test_qp_at_extreme_constraint_gradient_scales_and_with_collinear_rows(scale):
    # Near convergence ∇q is tiny next to the unit ∇F_i and w_{K+1} ~ 1/‖∇q‖; far from it ρ‖∇q‖ dominates.
    # (Before the QP was solved in v = ‖∇q‖·w_{K+1}, every scale ≤ 1e-6 raised SolverError, and LU
    # replaced least squares for the faces whose rank cutoff dropped a genuine direction at ≥ 1e6.)
    rng = np.random.default_rng(7)
    rho = 0.1
    for trial in range(20):
        K, p = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        A = _random_rows(rng, K, p)
        A[K] = A[K] / np.linalg.norm(A[K]) * scale
        if trial % 3 == 0:
            A[min(1, K - 1)] = A[0]  # identical upper gradients
        if trial % 5 == 1:
            A[K] = A[0] * scale  # ∇q parallel to ∇F_1
        M = A @ A.T
        w, pi = forum_qp_weights(M, rho)
        assert w.min() >= 0 and abs(w[:K].sum() - 1) <= 1e-12
        assert abs(w[K] - max(0.0, pi @ w[:K])) <= 1e-9 * (abs(w[K]) + np.abs(pi) @ w[:K])
        # optimal against random feasible points, in the objective divided by its scale max(1, ρ‖∇q‖)²
        unit = max(1.0, rho * scale) ** 2
        W = rng.dirichlet(np.ones(K), size=500)
        Z = np.concatenate([W, np.maximum(W @ pi, 0.0)[:, None]], axis=1)
        values = (np.einsum("bi,ij,bj->b", Z, M, Z) - Z[:, K] * rho * M[K, K]) / unit
        assert _objective(M, rho)(w) / unit <= values.min() + 1e-9


def test_qp_degenerate_inputs():
    rho = 0.1
    # ∇q = 0: π = ρ and the task weights are the min-norm point of the ∇F_i
    F = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    A = np.concatenate([F, np.zeros((1, 3))])
    w, pi = forum_qp_weights(A @ A.T, rho)
    assert np.allclose(pi, rho) and np.allclose(w[:2], [0.5, 0.5]) and w[2] == rho
    # K = 1: w_1 = 1, w_2 = max(0, π_1)
    for q in ([1.0, 1.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 1e-6, 0.0]):
        A = np.array([[1.0, 0.0, 0.0], q])
        w, pi = forum_qp_weights(A @ A.T, rho)
        assert w[0] == pytest.approx(1.0) and w[1] == pytest.approx(max(0.0, pi[0]), rel=1e-9, abs=1e-12)
    # identical and opposite upper gradients, collinear ∇q
    for A in (np.array([[1.0, 0.0], [1.0, 0.0], [0.3, 0.2]]), np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]])):
        w, pi = forum_qp_weights(A @ A.T, rho)
        assert w.min() >= 0 and abs(w[:2].sum() - 1) <= 1e-12 and w[2] >= pi @ w[:2] - 1e-12
    with pytest.raises(NonFiniteError):
        forum_qp_weights(np.array([[1.0, np.nan], [np.nan, 1.0]]), rho)


def test_qp_raises_solver_error_when_no_face_certifies(monkeypatch):
    monkeypatch.setattr(forum_module, "_kkt_violation", lambda *args: "forced")
    A = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(SolverError, match="forum"):
        forum_qp_weights(A @ A.T, 0.1)


@pytest.mark.parametrize("seed", range(3))
def test_direction_decreases_the_constraint_at_rate_rho(seed):
    gen = torch.Generator().manual_seed(seed)
    rho = 0.1
    for trial in range(100):
        K, p = int(torch.randint(1, 6, (1,), generator=gen)), int(torch.randint(1, 12, (1,), generator=gen))
        grads_F = torch.randn(K, p, generator=gen, dtype=DT)
        grads_F = grads_F / grads_F.norm(dim=1, keepdim=True)
        grad_q = torch.randn(p, generator=gen, dtype=DT) * 10.0 ** float(torch.empty(1).uniform_(-6, 6, generator=gen))
        lam = torch.distributions.Dirichlet(torch.ones(K, dtype=DT)).sample() if trial % 4 else torch.eye(K, dtype=DT)[trial % K]
        d, nu, pi = forum_direction(grad_q, grads_F, lam, rho)
        a = float(grad_q @ grad_q)
        inner = float(d @ grad_q)
        tol = 1e-12 * (float(grad_q.norm()) * (1 + nu * float(grad_q.norm())))  # rounding of ⟨d, ∇q⟩ relative to its terms
        assert inner >= rho * a - tol, f"trial {trial}: ⟨d, ∇q⟩ = {inner:.3e} < ρ‖∇q‖² = {rho * a:.3e}"
        if float(lam @ pi) >= 0:
            assert inner == pytest.approx(rho * a, rel=1e-10, abs=tol)
        assert torch.allclose(d, lam @ grads_F + nu * grad_q)


def test_gradients_are_the_closed_forms_of_the_toy():
    problem = get_problem("bilevel-ridge", K=3, seed=3)
    omega = problem.reset(1)
    method = FORUM(3)
    with torch.no_grad():
        method.alpha.copy_(torch.tensor([0.3, -0.2, 0.5], dtype=DT))
    grad_q, grads_F, q, val = method.gradients([omega], problem.train_losses_at, problem.val_losses_at, problem.ridge)
    lam = torch.softmax(method.alpha.detach(), dim=0)
    w = omega.detach()
    w_T = w.clone()
    for _ in range(5):  # ω_T: 5 SGD steps of lr 0.1 on Σλ_i f_i^tr + ½·ridge·‖ω‖²
        w_T = w_T - 0.1 * (lam @ problem.train_gradients(w_T) + problem.ridge * w_T)
    f = lambda x: float(lam @ problem.train_losses(x) + 0.5 * problem.ridge * x @ x)  # noqa: E731
    assert q == pytest.approx(f(w) - f(w_T), rel=1e-12) and q > 0
    alpha_part = softmax_jacobian(lam) @ (problem.train_losses(w) - problem.train_losses(w_T))  # ∇_α[f(α,ω) − f(α,ω_T)]
    omega_part = lam @ problem.train_gradients(w) + problem.ridge * w
    assert torch.allclose(grad_q, torch.cat([alpha_part, omega_part]).detach(), rtol=1e-12, atol=1e-14)
    G = problem.val_gradients(w)
    expected_F = torch.cat([torch.zeros(3, 3, dtype=DT), G / G.norm(dim=1, keepdim=True)], dim=1)
    assert torch.allclose(grads_F, expected_F, rtol=1e-12, atol=1e-15)
    assert torch.allclose(val, problem.val_losses(w))


def test_outer_step_moves_the_model_by_the_direction_and_averages_lambda():
    problem = get_problem("bilevel-ridge", K=3, seed=0)
    omega = problem.reset(0)
    opt = torch.optim.SGD([omega], lr=0.1)
    method = FORUM()
    before = omega.detach().clone()
    bilevel_step(method, [omega], problem.train_losses_at, problem.val_losses_at, opt, lr=0.1, step=0, weight_decay=problem.ridge)
    d, w0 = method.last["direction"], method.last["w"]
    assert torch.allclose(omega.detach(), before - 0.1 * d[3:])  # no other step: moves_model
    assert torch.allclose(method.last["lam"], torch.from_numpy(w0[:3]))  # β = 1 at epoch 0, λ starts at 0
    end_epoch(method, 0)
    bilevel_step(method, [omega], problem.train_losses_at, problem.val_losses_at, opt, lr=0.1, step=1, weight_decay=problem.ridge)
    beta = 2.0 ** (-0.75)
    assert torch.allclose(method.last["lam"], torch.from_numpy(w0[:3] + beta * (method.last["w"][:3] - w0[:3])))


@pytest.mark.parametrize("seed", range(5))
def test_constraint_goes_to_zero_while_upper_losses_decrease(seed):
    problem = get_problem("bilevel-ridge", K=3, seed=seed)
    omega = problem.reset(seed)
    opt = torch.optim.SGD([omega], lr=0.1)
    method = FORUM()
    start = problem.val_losses(omega).detach()
    qs = []
    for t in range(300):
        bilevel_step(method, [omega], problem.train_losses_at, problem.val_losses_at, opt, lr=0.1, step=t, weight_decay=problem.ridge)
        end_epoch(method, t)
        qs.append(method.last["q"])
    assert qs[-1] <= 1e-3 * qs[0], f"q: {qs[0]:.3e} -> {qs[-1]:.3e}"
    lam = torch.softmax(method.alpha.detach(), dim=0)
    f = lambda x: lam @ problem.train_losses(x) + 0.5 * problem.ridge * x @ x  # noqa: E731
    gap = float(f(omega.detach()) - f(problem.lower_solution(lam)))  # the true value-function gap
    assert 0 <= gap <= 1e-2, f"lower-level gap {gap:.3e}"
    end = problem.val_losses(omega).detach()
    assert bool((end < start).all()), f"upper losses {start.tolist()} -> {end.tolist()}"


def test_non_finite_losses_name_the_method_and_the_task():
    problem = get_problem("bilevel-ridge", K=3, seed=0)
    omega = problem.reset(0)
    mask = torch.tensor([1.0, 1.0, float("nan")], dtype=DT)
    kwargs = dict(train_losses_at=lambda p: problem.train_losses_at(p) * mask, val_losses_at=problem.val_losses_at)
    with pytest.raises(NonFiniteError, match=r"forum.*training.*task 2"):
        FORUM(3).outer_step([omega], lambda: None, lambda: None, 0.1, **kwargs)
    kwargs = dict(train_losses_at=problem.train_losses_at, val_losses_at=lambda p: problem.val_losses_at(p) * mask)
    with pytest.raises(NonFiniteError, match=r"forum.*validation.*task 2"):
        FORUM(3).outer_step([omega], lambda: None, lambda: None, 0.1, **kwargs)


def test_single_task():
    problem = get_problem("bilevel-ridge", K=1, seed=0)
    omega = problem.reset(0)
    method = FORUM(1)
    alpha = method.alpha.detach().clone()
    start = problem.val_losses(omega).detach()
    opt = torch.optim.SGD([omega], lr=0.1)
    for t in range(50):
        bilevel_step(method, [omega], problem.train_losses_at, problem.val_losses_at, opt, lr=0.1, step=t, weight_decay=problem.ridge)
        end_epoch(method, t)
    assert torch.equal(method.alpha.detach(), alpha)  # softmax of one entry is constant: d_α = 0
    assert torch.equal(method.weights(problem.train_losses(omega).detach()), torch.ones(1, dtype=DT))
    assert bool((problem.val_losses(omega).detach() < start).all())


def test_bad_hyperparameters_are_rejected():
    for kwargs in ({"rho": 0.0}, {"eta": -0.1}, {"inner_steps": 0}, {"outer_lr": 0.0}, {"outer_optimizer": "lbfgs"}, {"num_tasks": 0}):
        with pytest.raises(ValueError, match="forum"):
            FORUM(**kwargs)


def test_float32_model_follows_the_float64_run():
    # The QP and λ are float64 whatever the model's dtype; a float32 model changes only rounding.
    problem = get_problem("bilevel-ridge", K=3, seed=0)
    runs = []
    for dtype in (torch.float32, DT):
        omega = problem.reset(0).detach().to(dtype).requires_grad_(True)
        train = lambda p: problem.train_losses(p[0].double()).to(p[0].dtype)  # noqa: E731
        val = lambda p: problem.val_losses(p[0].double()).to(p[0].dtype)  # noqa: E731
        method, opt = FORUM(), torch.optim.SGD([omega], lr=0.1)
        for t in range(30):
            bilevel_step(method, [omega], train, val, opt, lr=0.1, step=t, weight_decay=problem.ridge)
            end_epoch(method, t)
        assert omega.dtype == dtype
        runs.append((method.alpha.detach(), omega.detach().double()))
    assert torch.allclose(runs[0][0], runs[1][0], rtol=0, atol=1e-5)
    assert torch.allclose(runs[0][1], runs[1][1], rtol=1e-4, atol=1e-5)
