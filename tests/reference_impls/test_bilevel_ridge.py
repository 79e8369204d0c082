"""The bi-level toy ``bilevel-ridge``: its closed-form lower level, its exact hypergradient, the auxiliary
variant built for Auto-Lambda's claim, and the runner's inner loop (whose fixed point is the lower level).

Every check runs over several data seeds (5 unless stated) and holds for all of them.
"""

from __future__ import annotations

import pytest
import torch

from reference_impls.core.loss_weighting import BilevelLossWeighting
from reference_impls.problems import get_problem, problem_ids
from reference_impls.problems.bilevel_ridge import BilevelRidge
from reference_impls.runner import run

SEEDS = range(5)
EPS = torch.finfo(torch.float64).eps


def _weights(K: int, seed: int) -> torch.Tensor:
    """Positive random task weights in [0.2, 2] (seeded)."""
    g = torch.Generator().manual_seed(1000 + seed)
    return 0.2 + 1.8 * torch.rand(K, generator=g, dtype=torch.float64)


def test_registered_and_not_a_point_problem():
    assert "bilevel-ridge" in problem_ids()
    problem = get_problem("bilevel-ridge", K=2, n=4)
    assert isinstance(problem, BilevelRidge) and (problem.K, problem.n) == (2, 4)
    omega = problem.reset(seed=3)
    assert omega.is_leaf and omega.requires_grad and omega.dtype == torch.float64
    assert torch.equal(omega, problem.reset(seed=3)) and not torch.equal(omega, problem.reset(seed=4))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("K", [1, 3, 5])
def test_lower_solution_is_stationary_for_the_lower_level(seed, K):
    # ∇_ω [Σ λ_i f_i^tr(ω) + ½·ridge·‖ω‖²] at ω*(λ), by autograd of the loss (not the closed form),
    # vanishes relative to its parts Σ|λ_i|‖∇f_i^tr‖ + ridge‖ω*‖: measured ≤ 2.1e-15 (bound 1e2·n·eps ≈ 1.8e-13).
    problem = get_problem("bilevel-ridge", K=K, seed=seed)
    lam = _weights(K, seed)
    omega = problem.lower_solution(lam).detach().requires_grad_(True)
    grads = torch.stack([torch.autograd.grad(f, omega, retain_graph=True)[0] for f in problem.train_losses(omega)])  # (K, n)
    stationarity = lam @ grads + problem.ridge * omega.detach()  # (n,)
    parts = float((lam.abs()[:, None] * grads).norm(dim=1).sum() + problem.ridge * omega.detach().norm())
    assert float(stationarity.norm()) <= 1e2 * problem.n * EPS * parts, (float(stationarity.norm()), parts)
    # and the closed-form gradients agree with autograd, per task relative to ‖∇f_i‖
    closed = problem.train_gradients(omega.detach())
    assert bool(((closed - grads).norm(dim=1) <= 1e2 * EPS * grads.norm(dim=1) + 1e-300).all())


@pytest.mark.parametrize("seed", SEEDS)
def test_lower_solution_is_the_minimum(seed):
    # Strong convexity: every random perturbation increases the lower objective by ½ δᵀMδ exactly (quadratic).
    problem = get_problem("bilevel-ridge", seed=seed)
    lam = _weights(problem.K, seed)
    omega = problem.lower_solution(lam).detach()

    def lower(w):
        return lam @ problem.train_losses(w) + 0.5 * problem.ridge * w.pow(2).sum()

    g = torch.Generator().manual_seed(seed)
    M = problem.lower_matrix(lam)
    for _ in range(5):
        delta = torch.randn(problem.n, generator=g, dtype=torch.float64)
        increase = float(lower(omega + delta) - lower(omega))
        assert increase > 0
        assert increase == pytest.approx(0.5 * float(delta @ M @ delta), rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("variant", ["default", "auxiliary"])
def test_hypergradient_equals_implicit_differentiation_and_finite_differences(seed, variant):
    # ∂f_k^val(ω*(λ))/∂λ_j three ways: autograd through the closed form (the method under test),
    # the implicit-function theorem −∇f_k^valᵀ M⁻¹ ∇f_j^tr at ω*, and central differences of
    # λ ↦ f^val(ω*(λ)) with step h = 1e-5 (error O(h²) ≈ 1e-10 plus rounding ≈ eps/h ≈ 2e-11 relative).
    # Measured worst relative errors over the 10 cases: implicit 1.3e-15, finite differences 2.9e-10.
    # Tolerances per row k, relative to that row's own norm.
    problem = get_problem("bilevel-ridge", variant=variant, seed=seed)
    lam = _weights(problem.K, seed)
    hyper = problem.hypergradient(lam)  # (K, K)
    omega = problem.lower_solution(lam).detach()
    M = problem.lower_matrix(lam)
    implicit = -problem.val_gradients(omega) @ torch.linalg.solve(M, problem.train_gradients(omega).T)  # (K, K)
    h = 1e-5
    fd = torch.stack(
        [(problem.val_losses(problem.lower_solution(lam + h * e)) - problem.val_losses(problem.lower_solution(lam - h * e))) / (2 * h) for e in torch.eye(problem.K, dtype=torch.float64)],
        dim=1,
    )  # (K, K): column j = ∂f^val/∂λ_j
    row = hyper.norm(dim=1)  # (K,)
    assert bool(((hyper - implicit).norm(dim=1) <= 1e-10 * row).all()), (hyper, implicit)
    assert bool(((hyper - fd).norm(dim=1) <= 1e-7 * row).all()), (hyper, fd)


@pytest.mark.parametrize("seed", SEEDS)
def test_auxiliary_variant_has_a_helpful_and_a_harmful_task(seed):
    # The toy behind Auto-Lambda's claim: at λ = 0.1·𝟙 (Auto-Lambda's init), raising the helpful
    # task's weight lowers the primary validation loss and raising the harmful one's raises it
    # (∂f_0^val/∂λ_1 < 0 < ∂f_0^val/∂λ_2), and training the primary with the helpful task beats the
    # primary alone, which beats the primary with the harmful task. Holds for all 5 seeds.
    problem = get_problem("bilevel-ridge", variant="auxiliary", seed=seed)
    assert problem.primary_tasks == (0,)
    hyper = problem.hypergradient(torch.full((3,), 0.1, dtype=torch.float64))
    assert float(hyper[0, 1]) < 0 < float(hyper[0, 2]), hyper[0]

    def primary_val(lam):
        return float(problem.val_losses(problem.lower_solution(torch.tensor(lam, dtype=torch.float64)))[0])

    assert primary_val([1.0, 1.0, 0.0]) < primary_val([1.0, 0.0, 0.0]) < primary_val([1.0, 0.0, 1.0])


def test_bad_weights_and_knobs_raise_clear_errors():
    problem = get_problem("bilevel-ridge")
    with pytest.raises(ValueError, match="not strongly convex"):
        problem.lower_solution(torch.tensor([1.0, -5.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        problem.lower_solution(torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        problem.lower_solution(torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        problem.train_losses(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="K = 3"):
        get_problem("bilevel-ridge", variant="auxiliary", K=4)
    with pytest.raises(ValueError, match="unknown variant"):
        get_problem("bilevel-ridge", variant="nope")
    with pytest.raises(ValueError, match="ridge"):
        get_problem("bilevel-ridge", ridge=-1.0)
    # λ = 0 with ridge > 0 is fine (ω* = 0); a negative weight is fine while M stays positive definite
    assert float(problem.lower_solution(torch.zeros(3, dtype=torch.float64)).abs().max()) == 0.0
    problem.lower_solution(torch.tensor([1.0, -0.05, 1.0], dtype=torch.float64))


class _Fixed(BilevelLossWeighting):
    """Constant weights and a no-op outer step: the runner's inner loop alone."""

    def __init__(self, w=(0.5, 1.0, 2.0)):
        self.w = torch.tensor(w, dtype=torch.float64)

    def weights(self, losses, step):
        return self.w.to(losses)

    def outer_step(self, params, train_losses, val_losses, lr, **kw):
        pass


@pytest.mark.parametrize("seed", range(3))
def test_runner_inner_loop_converges_to_the_lower_solution(seed):
    # The runner trains ω on Σ w_i f_i^tr + ½·ridge·‖ω‖² (weight decay = ridge), so with fixed weights its
    # fixed point is ω*(w): after 300 SGD steps (lr 0.1; contraction ≤ 1 − 0.1·λ_min(M) per step)
    # ‖ω − ω*(w)‖ is below 1e-8 (measured ≤ 1.2e-15). A loop without the ridge term would converge to
    # the ridge-free solution instead, 0.08-0.16 away from ω*(w) on these seeds.
    problem = get_problem("bilevel-ridge", seed=seed)
    result = run(_Fixed(), problem, steps=300, lr=0.1, optimizer="sgd", seed=seed)
    assert result.problem == "bilevel-ridge" and result.extra["losses"] == "validation"
    omega_star = problem.lower_solution(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    assert result.extra["lower_level_gap"] < 1e-8
    torch.testing.assert_close(result.x_final[0], omega_star, rtol=0, atol=1e-8)
    # the recorded f are the validation losses of the recorded iterates, the training losses are in extra
    torch.testing.assert_close(result.f[-1, 0], problem.val_losses(result.x[-1, 0]))
    torch.testing.assert_close(result.extra["train_losses"][-1, 0], problem.train_losses(result.x[-1, 0]))
    assert "validation losses" in result.table()


def test_runner_refuses_methods_that_are_not_loss_weightings():
    with pytest.raises(ValueError, match="not a loss weighting"):
        run("mgda", "bilevel-ridge", steps=2)


def test_batched_losses_are_the_validation_losses_and_the_cli_plots_them(tmp_path):
    # `modl run --plot` draws contours of Σ_k f_k over a grid of models when n = 2: losses(x) is the
    # batched validation loss (B, n) -> (B, K), row by row equal to val_losses.
    pytest.importorskip("matplotlib")
    from modl.cli import main

    problem = get_problem("bilevel-ridge", n=2)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(problem.losses(x), torch.stack([problem.val_losses(row) for row in x]), rtol=1e-14, atol=0)
    out = tmp_path / "run.png"
    assert main(["run", "auto-lambda", "--problem", "bilevel-ridge", "-p", "problem.n=2", "--steps", "5", "--plot", str(out)]) == 0
    assert out.stat().st_size > 0


def test_single_level_loss_weightings_train_the_same_lower_level():
    # Baselines on the bi-level toy: a plain loss weighting takes the inner step only (no weights recorded,
    # its weights() may draw: RLW), and EW's model converges to ω*(𝟙).
    problem = get_problem("bilevel-ridge")
    result = run("ew", problem, steps=300, lr=0.1)
    assert result.extra["weights"] is None and result.extra["lower_level_gap"] is None
    omega_star = problem.lower_solution(torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(result.x_final[0], omega_star, rtol=0, atol=1e-8)
    assert "validation losses" in run("rlw", problem, steps=3).table()
