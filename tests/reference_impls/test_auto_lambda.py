"""Auto-Lambda (Liu et al., TMLR 2022): the meta-gradient, checked exactly, and the paper's claim on a toy.

* the finite-difference meta-gradient of the official code against the exact one (autograd), with
  bounds derived from the difference radius h = ε‖d‖ = 0.01: truncation O(h²) on a network,
  rounding only on the quadratic toy;
* the exact meta-gradient against autograd through the closed form of the virtual step on
  ``bilevel-ridge`` (all primary-task options, K = 1 included);
* the virtual step is the step the model's torch SGD (momentum, weight decay) would take;
* the claim: on the toy built for it, λ of a helpful auxiliary task rises above its init 0.1 and λ of
  a harmful one falls below it (5 seeds, all pass);
* bad input and the Adam update.
"""

from __future__ import annotations

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import bilevel_step
from reference_impls.core.loss_weighting import BilevelLossWeighting
from reference_impls.loss_balancing.auto_lambda import AutoLambda
from reference_impls.problems import get_problem
from reference_impls.runner import run

EPS = torch.finfo(torch.float64).eps
SEEDS = range(5)


def _outer(method, params, train_at, val_at, lr=0.1, **kw):
    method.outer_step(params, lambda: train_at(params), lambda: val_at(params), lr, train_losses_at=train_at, val_losses_at=val_at, **kw)
    return method.last_meta_gradient


def _mlp(seed: int, dtype: torch.dtype = torch.float64):
    """A tanh network with 2 regression heads (params [W1 (5, 3), W2 (2, 5)]) and train/val data."""
    g = torch.Generator().manual_seed(seed)
    X, Y, Xv, Yv = (torch.randn(32, c, generator=g, dtype=torch.float64).to(dtype) for c in (3, 2, 3, 2))
    params = [torch.randn(5, 3, generator=g, dtype=torch.float64).to(dtype).requires_grad_(), torch.randn(2, 5, generator=g, dtype=torch.float64).to(dtype).requires_grad_()]

    def losses(ps, X, Y):
        return ((torch.tanh(X @ ps[0].T) @ ps[1].T - Y) ** 2).mean(0)  # (2,)

    return params, (lambda ps: losses(ps, X, Y)), (lambda ps: losses(ps, Xv, Yv))


def _scales(params, train_at, val_at, lr=0.1):
    """Per task, the natural scale of the meta-gradient −α⟨∇f_i^tr(θ), d⟩: α‖∇f_i^tr(θ)‖‖d‖, d = ∇L_meta(θ')."""
    method = AutoLambda()
    f = train_at(params)  # (K,)
    method._build(f.numel())
    theta_virtual = method.virtual_step(params, train_at(params), lr)
    d = torch.autograd.grad(val_at(theta_virtual).sum(), theta_virtual)
    d_norm = torch.sqrt(sum((x**2).sum() for x in d))
    g_norms = torch.stack([torch.sqrt(sum((x**2).sum() for x in torch.autograd.grad(f[i], params, retain_graph=True))) for i in range(f.numel())])
    return lr * g_norms * d_norm  # (K,)


@pytest.mark.parametrize("seed", SEEDS)
def test_finite_difference_meta_gradient_converges_as_h_squared_on_a_network(seed):
    # Central differences err by (h²/6)·‖d‖·∂³f_i[u,u,u] + O(h⁴): halving h divides the error by 4
    # (measured ratios 3.90-4.00 from h = 0.1 to 0.05), and at the official h = 0.01 the error is
    # below (0.01/0.05)²·1.1 of the error at h = 0.05 and below 1e-3 of each task's own scale
    # α‖∇f_i‖‖d‖ (measured ≤ 1.8e-5 of it; ≤ 1.4e-4 relative to the exact value).
    params, train_at, val_at = _mlp(seed)
    exact = _outer(AutoLambda(meta_gradient="exact"), params, train_at, val_at)  # (2,)
    err = {h: (_outer(AutoLambda(fd_radius=h), params, train_at, val_at) - exact).abs() for h in (0.1, 0.05, 0.01)}
    ratio = err[0.1] / err[0.05]
    assert bool(((ratio > 3.5) & (ratio < 4.5)).all()), ratio
    assert bool((err[0.01] <= 1.1 * (0.01 / 0.05) ** 2 * err[0.05]).all()), (err[0.01], err[0.05])
    assert bool((err[0.01] <= 1e-3 * _scales(params, train_at, val_at)).all())


@pytest.mark.parametrize("seed", SEEDS)
def test_finite_difference_meta_gradient_is_exact_up_to_rounding_on_quadratic_losses(seed):
    # On bilevel-ridge every f_i^tr is quadratic: the central difference has no truncation error, and
    # what remains is the rounding of f_i(θ±) and of θ ± εd, divided by 2ε = 2h/‖d‖:
    # |FD_i − exact_i| ≤ α·(‖d‖/h)·64·eps·(|f_i(θ)| + ‖∇f_i(θ)‖‖θ‖ + h‖∇f_i‖) (measured ≤ 5.5e-14 relative to the exact value, ≤ 0.5% of the bound).
    problem = get_problem("bilevel-ridge", seed=seed)
    omega = problem.reset(seed)
    lr, h = 0.1, 0.01
    exact = _outer(AutoLambda(meta_gradient="exact"), [omega], problem.train_losses_at, problem.val_losses_at, lr)
    fd = _outer(AutoLambda(), [omega], problem.train_losses_at, problem.val_losses_at, lr)
    theta_virtual = AutoLambda(num_tasks=problem.K).virtual_step([omega], problem.train_losses(omega), lr)
    d_norm = float(torch.autograd.grad(problem.val_losses(theta_virtual[0]).sum(), theta_virtual[0])[0].norm())
    grads = problem.train_gradients(omega.detach())  # (K, n)
    bound = lr * (d_norm / h) * 64 * EPS * (problem.train_losses(omega.detach()) + grads.norm(dim=1) * (omega.detach().norm() + h))
    assert bool(((fd - exact).abs() <= bound).all()), ((fd - exact).abs(), bound)


@pytest.mark.parametrize(("K", "primary"), [(1, None), (1, (0,)), (3, None), (3, (0,)), (3, (1, 2))])
@pytest.mark.parametrize("seed", range(3))
def test_exact_meta_gradient_equals_autograd_through_the_closed_form_virtual_step(seed, K, primary):
    # On the toy ∇f_i^tr(θ) = H_i θ − r_i, so θ'(λ) = θ − α(Σ λ_i (H_i θ − r_i) + wd·θ) in closed form and
    # L_meta(λ) = Σ_{k∈P} f_k^val(θ'(λ)); its gradient by autograd must equal the method's exact
    # meta-gradient (and the finite-difference one up to rounding), per task relative to α‖∇f_i‖‖d‖.
    problem = get_problem("bilevel-ridge", K=K, seed=seed)
    omega = problem.reset(seed)
    lr, wd = 0.05, problem.ridge
    lam0 = 0.1 + 0.3 * torch.rand(K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tasks = list(range(K)) if primary is None else list(primary)

    def meta_loss(lam):
        theta = omega.detach()
        theta_virtual = theta - lr * (lam @ (problem.H @ theta - problem.r) + wd * theta)  # closed-form virtual step
        return problem.val_losses(theta_virtual)[tasks].sum()

    expected = torch.autograd.functional.jacobian(meta_loss, lam0)  # (K,)
    for kind in ("exact", "finite-difference"):
        method = AutoLambda(weight_init=0.0, primary=primary, meta_gradient=kind)
        method._build(K)
        with torch.no_grad():
            method.lam.copy_(lam0)
        got = _outer(method, [omega], problem.train_losses_at, problem.val_losses_at, lr, weight_decay=wd)
        scale = lr * problem.train_gradients(omega.detach()).norm(dim=1) * (1 + float(expected.abs().max()))
        tol = 1e-12 if kind == "exact" else 1e-9
        assert bool(((got - expected).abs() <= tol * scale + 1e-300).all()), (kind, got, expected)


def test_virtual_step_is_the_next_step_of_the_models_sgd_with_momentum_and_weight_decay():
    # The official virtual step θ − α(μ·buf + g + wd·θ) is the step torch.optim.SGD(momentum=μ,
    # weight_decay=wd) takes next with the same λ: two identical trajectories of 3 steps, then the
    # virtual step on one and the real step on the other agree to rounding (D1).
    problem = get_problem("bilevel-ridge", seed=1)
    lr = 0.05
    method = AutoLambda(num_tasks=problem.K)
    lam = method.lam.detach()
    copies = []
    for _ in range(2):
        omega = problem.reset(1)
        opt = torch.optim.SGD([omega], lr=lr, momentum=0.9, weight_decay=1e-2)
        for _ in range(3):
            opt.zero_grad()
            (lam * problem.train_losses(omega)).sum().backward()
            opt.step()
        copies.append((omega, opt))
    (omega_a, opt_a), (omega_b, opt_b) = copies
    theta_virtual = method.virtual_step([omega_a], problem.train_losses(omega_a), lr, weight_decay=0.0, optimizer=opt_a)[0]
    opt_b.zero_grad()
    (lam * problem.train_losses(omega_b)).sum().backward()
    opt_b.step()
    torch.testing.assert_close(theta_virtual.detach(), omega_b.detach(), rtol=1e-14, atol=1e-14)
    # without folding the momentum the virtual step would be off by α·μ·buf (≥ 1e-3 here)
    plain = method.virtual_step([omega_a], problem.train_losses(omega_a), lr, weight_decay=1e-2)[0]
    assert float((plain.detach() - omega_b.detach()).norm()) > 1e-3


def test_first_outer_step_is_one_adam_step_and_leaves_the_model_untouched():
    # Adam's first step from λ = 0.1 moves each λ_i by −lr·g_i/(|g_i| + 1e-8) (bias-corrected), exactly;
    # the model is read, never written (D2: the official code perturbs it in place and back).
    problem = get_problem("bilevel-ridge", seed=2)
    omega = problem.reset(2)
    before = omega.detach().clone()
    method = AutoLambda()
    g = _outer(method, [omega], problem.train_losses_at, problem.val_losses_at)
    torch.testing.assert_close(method.lam.detach(), 0.1 - 1e-4 * g / (g.abs() + 1e-8), rtol=1e-15, atol=1e-17)
    assert torch.equal(omega.detach(), before) and omega.grad is None


@pytest.mark.parametrize("seed", SEEDS)
def test_helpful_auxiliary_weight_rises_and_harmful_weight_falls(seed):
    # The paper's claim that the meta-gradient learns task relationships, on bilevel-ridge's auxiliary
    # variant (task 0 primary, task 1 the same target map on other inputs, task 2 the target −y) with
    # the official defaults (init 0.1, Adam lr 1e-4, primary = task 0) and SGD lr 0.1: after 100 steps
    # λ_helpful > 0.1 + 2e-3 and λ_harmful < 0.1 − 5e-3 on all 5 seeds (measured 0.1053-0.1099 and
    # 0.0890-0.0931 on 10 seeds), and the primary validation loss has dropped.
    problem = get_problem("bilevel-ridge", variant="auxiliary", seed=seed)
    result = run("auto-lambda", problem, steps=100, params={"primary": (0,)}, seed=seed)
    lam = result.extra["weights"][-1]
    assert float(lam[1]) > 0.1 + 2e-3 and float(lam[2]) < 0.1 - 5e-3, lam
    assert float(result.f[-1, 0, 0]) < float(result.f[0, 0, 0])


def test_non_finite_losses_raise_errors_naming_the_method_and_the_task():
    problem = get_problem("bilevel-ridge")
    omega = problem.reset(0)

    def nan_train(ps):
        return problem.train_losses_at(ps) * torch.tensor([1.0, float("nan"), 1.0], dtype=torch.float64)

    def inf_val(ps):
        return problem.val_losses_at(ps) * torch.tensor([1.0, 1.0, float("inf")], dtype=torch.float64)

    with pytest.raises(NonFiniteError, match=r"auto-lambda: the training loss of task 1"):
        _outer(AutoLambda(), [omega], nan_train, problem.val_losses_at)
    with pytest.raises(NonFiniteError, match=r"auto-lambda: the validation loss of task 2"):
        _outer(AutoLambda(), [omega], problem.train_losses_at, inf_val)
    with pytest.raises(NonFiniteError, match="task 0"):
        AutoLambda().weights(torch.tensor([float("nan"), 1.0]), 0)
    method = AutoLambda()
    method.weights(torch.ones(3), 0)
    with pytest.raises(ValueError, match="built for 3 tasks"):
        method.weights(torch.ones(2), 0)
    with pytest.raises(ValueError, match="out of range"):
        AutoLambda(num_tasks=2, primary=(2,))
    with pytest.raises(ValueError, match="meta_gradient"):
        AutoLambda(meta_gradient="second-order")


def test_zero_meta_direction_gives_a_zero_meta_gradient():
    # D3: validation losses that do not depend on θ give d = 0; the official ε = 0.01/‖d‖ would be
    # infinite (NaN meta-gradient); here the gradient is 0 and Adam leaves λ at 0.1.
    problem = get_problem("bilevel-ridge")
    omega = problem.reset(0)
    constant = torch.ones(3, dtype=torch.float64)
    method = AutoLambda()
    g = _outer(method, [omega], problem.train_losses_at, lambda ps: constant + 0 * ps[0].sum())
    assert torch.equal(g, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(method.lam.detach(), torch.full((3,), 0.1, dtype=torch.float64))


def test_one_task_works_and_the_documented_loop_matches_the_runner():
    # K = 1: λ is a learned scale of the single loss. The runner and bilevel_step with the runner's
    # SGD give the same trajectory (the runner IS that loop), bit for bit.
    problem = get_problem("bilevel-ridge", K=1)
    result = run("auto-lambda", problem, steps=30, seed=0)
    assert torch.isfinite(result.f_final).all() and result.extra["weights"].shape == (31, 1)
    from reference_impls.runner import SGD

    method = reference_impls.create("auto-lambda")
    assert isinstance(method, BilevelLossWeighting) and not method.moves_model
    omega = problem.reset(0)
    opt = SGD([omega], lr=problem.default_lr)
    for step in range(30):
        bilevel_step(method, [omega], problem.train_losses_at, problem.val_losses_at, opt, lr=problem.default_lr, step=step, weight_decay=problem.ridge)
    assert torch.equal(omega.detach(), result.x_final[0])
    assert torch.equal(method.lam.detach(), result.extra["methods"][0].lam.detach())


@pytest.mark.parametrize("c", [1e-12, 1e12])
@pytest.mark.parametrize("kind", ["exact", "finite-difference"])
def test_meta_gradient_scales_with_the_validation_losses_at_huge_and_tiny_scales(kind, c):
    # f^val → c·f^val leaves θ' unchanged and scales d = ∇L_meta(θ') by c, so the meta-gradient scales by
    # c; the finite difference too, because ε = 0.01/‖d‖ keeps the evaluation points θ ± εd fixed.
    problem = get_problem("bilevel-ridge", seed=3)
    omega = problem.reset(3)
    base = _outer(AutoLambda(meta_gradient=kind), [omega], problem.train_losses_at, problem.val_losses_at)
    scaled = _outer(AutoLambda(meta_gradient=kind), [omega], problem.train_losses_at, lambda ps: c * problem.val_losses_at(ps))
    torch.testing.assert_close(scaled / c, base, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("kind", "tol"), [("exact", 1e-5), ("finite-difference", 1e-4)])
def test_float32_network_gives_the_float64_meta_gradient_to_float32_accuracy(kind, tol):
    # λ stays float64; a float32 network (same data and weights, rounded) gives the float64 meta-gradient
    # to float32 accuracy relative to each task's scale α‖∇f_i‖‖d‖: exact ≤ 1e-5 (measured 6.3e-8, a few
    # eps32 ≈ 1.2e-7), finite differences ≤ 1e-4 (measured 1.4e-6: rounding eps32·|f_i|/h, h = 0.01).
    params, train_at, val_at = _mlp(0)
    expected = _outer(AutoLambda(meta_gradient=kind), params, train_at, val_at)
    params32, train32, val32 = _mlp(0, dtype=torch.float32)
    method = AutoLambda(meta_gradient=kind)
    got = _outer(method, params32, train32, val32)
    assert method.lam.dtype == torch.float64 and torch.isfinite(got).all()
    assert bool(((got - expected).abs() <= tol * _scales(params, train_at, val_at)).all()), (got, expected)
