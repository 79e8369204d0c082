"""EW (equal weighting, the baseline): the objective is the plain sum (or mean) and its gradient Σ∇f_i."""

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import defined_hooks
from reference_impls.core.loss_weighting import LossWeighting
from reference_impls.loss_balancing.ew import EW
from reference_impls.runner import run

SEEDS = range(5)


def _net_losses(seed: int, K: int):
    """A tiny shared network (tanh encoder, K linear heads) on random data: (params, losses (K,))."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    H = torch.randn(K, 4, generator=g, dtype=torch.float64, requires_grad=True)
    X = torch.randn(16, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(16, K, generator=g, dtype=torch.float64) * torch.logspace(-3, 3, K, dtype=torch.float64)  # mixed scales
    pred = torch.tanh(X @ W.T) @ H.T  # (16, K)
    return [W, H], ((pred - Y) ** 2).mean(0)  # (K,)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("K", [1, 2, 5])
def test_objective_is_the_plain_sum_or_mean_and_weights_are_ones(seed, K):
    f = torch.randn(K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10.0 ** seed  # any sign
    assert EW().objective(f, 0).item() == f.sum().item()  # bit for bit: the same reduction
    assert EW(reduction="mean").objective(f, 0).item() == f.mean().item()
    assert torch.equal(EW().weights(f, 0), torch.ones(K, dtype=torch.float64))
    assert torch.equal(EW(reduction="mean").weights(f, 0), torch.full((K,), 1.0 / K, dtype=torch.float64))


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_is_the_sum_of_the_task_gradients_on_a_network(seed):
    # ∇_θ EW = Σ_i ∇_θ f_i, compared per task scale: the tolerance is relative to each ||∇f_i||
    # (the losses span 1e-6..1e6 here, so a max-norm tolerance would hide the small tasks).
    K = 4
    params, f = _net_losses(seed, K)
    per_task = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(fi, params, retain_graph=True)]) for fi in f]  # K × (p,)
    got = torch.cat([g.reshape(-1) for g in torch.autograd.grad(EW().objective(f, 0), params, retain_graph=True)])  # (p,)
    expected = torch.stack(per_task).sum(0)  # Σ_i ∇f_i, (p,)
    eps = torch.finfo(torch.float64).eps
    assert float((got - expected).norm()) <= 16 * eps * sum(float(g.norm()) for g in per_task)
    got_mean = torch.cat([g.reshape(-1) for g in torch.autograd.grad(EW(reduction="mean").objective(f, 0), params)])
    assert float((got_mean - expected / K).norm()) <= 16 * eps * sum(float(g.norm()) for g in per_task) / K


def test_runner_on_the_biquadratic_reaches_the_equal_weight_point():
    # f_i = ||x − a_i||², a_1 = 0, a_2 = e_1: Σ f_i is minimised at the midpoint (½, 0), where
    # f = (¼, ¼). SGD lr 0.05 contracts x − (½, 0) by 1 − 4·0.05 = 0.8 per step: 300 steps → 0.8^300 ≈ 1e-29.
    result = run("ew", "biquad", steps=300, lr=0.05, optimizer="sgd")
    target = torch.tensor([0.5, 0.0], dtype=torch.float64)
    assert float((result.x_final - target).norm(dim=1).max()) < 1e-14
    torch.testing.assert_close(result.f_final, torch.full_like(result.f_final, 0.25), rtol=0, atol=1e-14)
    assert torch.isfinite(run("ew", "mtl-regression", steps=20).f_final).all()


def test_interface_and_registry():
    method = reference_impls.create("ew")
    assert isinstance(method, LossWeighting) and method.reduction == "sum"
    assert defined_hooks(method) == ()  # EW has no state and no hooks
    assert method.name == "ew" and not method.stateful


def test_bad_and_degenerate_input():
    with pytest.raises(ValueError, match="reduction"):
        EW(reduction="max")
    with pytest.raises(ValueError, match="num_tasks"):
        EW(num_tasks=0)
    method = EW()
    method.weights(torch.tensor([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="2 tasks"):
        method.weights(torch.tensor([1.0, 2.0, 3.0]), 1)  # K is fixed by the first call
    with pytest.raises(NonFiniteError, match="ew: the loss of task 1"):
        EW().objective(torch.tensor([1.0, float("nan")]), 0)
    with pytest.raises(NonFiniteError, match="task 0"):
        EW().weights(torch.tensor([float("inf"), 1.0]), 0)
    # zero, negative, tiny and huge losses: EW takes neither logs nor ratios
    f = torch.tensor([0.0, -3.0, 1e-300, 1e300], dtype=torch.float64)
    assert EW().objective(f, 0).item() == 1e300 - 3.0
    # K = 1 and float32
    assert EW().objective(torch.tensor([2.5], dtype=torch.float32), 0).dtype == torch.float32
    assert EW(reduction="mean").objective(torch.tensor([2.5]), 0).item() == 2.5
    # a list of scalar tensors
    assert EW().objective([torch.tensor(1.0), torch.tensor(3.0)], 0).item() == 4.0
