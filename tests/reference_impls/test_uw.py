"""UW (Kendall et al., CVPR 2018): the claims of the paper, checked exactly or on a toy.

L(θ, s) = Σ_i c_i e^{−s_i} f_i + s_i/2, s = log σ², c_i = ½ (regression) or 1 (classification).
"""

import math
import warnings

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import check_optimised, defined_hooks, train_step
from reference_impls.core.loss_weighting import LossWeighting
from reference_impls.loss_balancing.imtl_l import UnoptimisedParameterWarning
from reference_impls.loss_balancing.uw import UW
from reference_impls.runner import run

SEEDS = range(5)
EPS = torch.finfo(torch.float64).eps
MIXED = ("regression", "classification", "regression", "classification")


def _double(method: UW) -> UW:
    method.s.data = method.s.data.double()
    return method


def _random_losses(seed: int, K: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.empty(K, dtype=torch.float64).uniform_(-12, 12, generator=g))  # f_i in e^{±12} ≈ 6e-6..2e5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task_types", [("regression",) * 4, ("classification",) * 4, MIXED])
def test_exact_stationary_point_s_equals_log_of_2cf(seed, task_types):
    # ∂L/∂s_i = −c_i e^{−s_i} f_i + ½ vanishes at s_i* = log(2 c_i f_i) (= log f_i for regression), and
    # ∂²L/∂s_i² = c_i e^{−s_i} f_i = ½ > 0 there: a minimum. Every c_i e^{−s_i*} = 1/(2 f_i) for both forms.
    f = _random_losses(seed)
    method = _double(UW(task_types=task_types))
    c = torch.tensor([0.5 if t == "regression" else 1.0 for t in task_types], dtype=torch.float64)
    s_star = method.stationary_log_variances(f)
    torch.testing.assert_close(s_star, torch.log(2 * c * f), rtol=0, atol=4 * EPS * 30)  # |s*| <= 30
    for i, t in enumerate(task_types):
        if t == "regression":
            assert abs(float(s_star[i] - torch.log(f[i]))) <= 4 * EPS * 30
    method.s.data = s_star.clone()
    method(f).backward()
    # each gradient entry is ½ − ½(1 + O(eps·|s*|)): zero up to the rounding of e^{−s*} at |s*| <= 30
    assert float(method.s.grad.abs().max()) <= 64 * EPS * 30
    torch.testing.assert_close(method.weights(f, 0), 1 / (2 * f), rtol=64 * EPS * 30, atol=0)
    # a minimum: moving s_i either way raises L (strict convexity in each s_i)
    method.s.grad = None
    base = method(f).item()
    for delta in (-1e-3, 1e-3):
        moved = _double(UW(task_types=task_types))
        moved.s.data = s_star + delta
        assert moved(f).item() > base


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task_types", [("regression",) * 5, ("classification",) * 5])
def test_gradient_descent_on_s_with_frozen_losses_reaches_the_stationary_point(seed, task_types):
    # θ frozen: SGD on s alone from s = 0 (lr 0.5, 600 steps) converges to s* = log(2 c f). Near s* the
    # curvature is ½, so the error contracts by 1 − 0.5·½ = 0.75 per step; far above s* the gradient
    # is ≈ ½ (|s| falls by 0.25 per step), far below it the step is capped by the losses chosen here
    # (f in [1e-2, 50], |s*| <= 4.6). Checked for 5 seeds × both forms: all converge to 1e-12.
    g = torch.Generator().manual_seed(seed)
    f = torch.exp(torch.empty(5, dtype=torch.float64).uniform_(math.log(1e-2), math.log(50), generator=g))
    method = _double(UW(task_types=task_types))
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    for _ in range(600):
        opt.zero_grad()
        method(f).backward()
        opt.step()
    c = 0.5 if task_types[0] == "regression" else 1.0
    torch.testing.assert_close(method.s.detach(), torch.log(2 * c * f), rtol=0, atol=1e-12)
    torch.testing.assert_close(method.weights(f, 0), 1 / (2 * f), rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_form_is_the_regression_form_shifted_by_log_2(seed):
    # e^{−s} f + s/2 = ½ e^{−(s − log 2)} f + (s − log 2)/2 + (log 2)/2 per task, exactly: so Adam on s from s_0
    # (classification) follows Adam on s' from s_0 − log 2 (regression) step for step, with the same
    # weights ∂L/∂f, and both end at weights 1/(2f).
    f = _random_losses(seed, K=3)
    s = torch.randn(3, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    cls, reg = _double(UW(task_types=("classification",) * 3)), _double(UW(num_tasks=3))
    cls.s.data, reg.s.data = s.clone(), s - math.log(2)
    assert cls(f).item() == pytest.approx(reg(f).item() + 3 * math.log(2) / 2, rel=8 * EPS, abs=8 * EPS * float(f.sum()))
    torch.testing.assert_close(cls.weights(f, 0), reg.weights(f, 0), rtol=8 * EPS, atol=0)
    f = torch.exp(torch.randn(3, generator=torch.Generator().manual_seed(200 + seed), dtype=torch.float64))  # moderate
    opts = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (cls, reg)]
    for _ in range(200):
        for m, opt in zip((cls, reg), opts):
            opt.zero_grad()
            m(f).backward()
            opt.step()
    torch.testing.assert_close(cls.s.detach() - math.log(2), reg.s.detach(), rtol=0, atol=1e-12)


def _tiny_network(seed: int):
    """A shared tanh layer with 3 linear heads on random data: (params, losses(a) with loss scales a)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    H = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    X, Y = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randn(32, 3, generator=g, dtype=torch.float64)

    def losses(a: torch.Tensor) -> torch.Tensor:
        return a * ((torch.tanh(X @ W.T) @ H.T - Y) ** 2).mean(0)  # (3,) a_i f_i

    return [W, H], losses


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("task_types", [("regression",) * 3, ("regression", "classification", "classification")])
def test_model_gradient_at_the_stationary_point_is_invariant_to_loss_scales(seed, task_types):
    # At s* the θ-gradient is Σ_i ∇f_i/(2 f_i) = ½∇Σ log f_i: the same for a_i f_i with any a_i > 0.
    # Tolerance: 64 eps relative to Σ_i ||∇f_i||/(2 f_i), the size of the terms being summed (measured
    # gap <= 1.5 eps of it over 5 seeds × 2 forms, with loss scales a_i in e^{±9}).
    params, losses = _tiny_network(seed)
    a = torch.exp(torch.empty(3, dtype=torch.float64).uniform_(-9, 9, generator=torch.Generator().manual_seed(50 + seed)))
    grads = []
    for scale in (torch.ones(3, dtype=torch.float64), a):
        f = losses(scale)
        method = _double(UW(task_types=task_types))
        method.s.data = method.stationary_log_variances(f)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(method(f), params)]))
    f = losses(torch.ones(3, dtype=torch.float64))
    terms = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(fi / (2 * fi.detach()), params, retain_graph=True)]) for fi in f]
    scale_of_terms = sum(float(t.norm()) for t in terms)
    assert float((grads[0] - torch.stack(terms).sum(0)).norm()) <= 64 * EPS * scale_of_terms
    assert float((grads[1] - grads[0]).norm()) <= 64 * EPS * scale_of_terms
    # without UW (plain sum) the gradient does depend on the scales: the invariance is not vacuous
    plain = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses(sc).sum(), params)]) for sc in (torch.ones(3, dtype=torch.float64), a)]
    assert float((plain[1] - plain[0]).norm()) > 1e-3 * float(plain[0].norm())


@pytest.mark.parametrize("a", [1.0, 1e-3])
def test_joint_training_with_train_step_is_invariant_to_the_loss_scale(a):
    # Eliminating s (min_s L = Σ ½ + ½ log(2 c_i f_i)), joint training minimises Σ_i log f_i(θ), which does
    # not depend on constant loss scales. Toy: f_1 = (θ − 1)² + 4, f_2 = a·((θ + 1)² + 4): Σ log f_i is
    # minimised at θ = 0 for every a. Adam (lr 0.1, 600 steps) on (θ, s) through hooks.train_step, from
    # θ = 2, s = 0, reaches θ = 0 and s = log f (measured |θ| <= 2e-13, |s − log f| <= 1.4e-13 for both a).
    theta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    method = _double(UW(num_tasks=2))
    opt = torch.optim.Adam([theta, *method.parameters()], lr=0.1)

    def losses():
        return torch.cat([(theta - 1) ** 2 + 4, a * ((theta + 1) ** 2 + 4)])

    for step in range(600):
        train_step(method, losses, opt, [theta], step=step)
    assert abs(float(theta.detach())) < 1e-11
    torch.testing.assert_close(method.s.detach(), torch.log(losses().detach()), rtol=0, atol=1e-11)


def test_runner_optimises_s_on_points_and_on_the_network():
    # Point problem: the first runner step is one SGD step on s from 0 with ∂L/∂s = ½ − ½ f(x_0), so
    # s_1 = lr·(f(x_0) − 1)/2 exactly (s is float32: compared to float32 rounding).
    lr = 0.05
    points = run("uw", "biquad", steps=1, lr=lr, optimizer="sgd")
    s = torch.stack([m.s.detach() for m in points.extra["methods"]]).double()  # (B, K)
    expected = lr * (points.f[0] - 1) / 2  # (B, K)
    torch.testing.assert_close(s, expected, rtol=4 * torch.finfo(torch.float32).eps, atol=1e-9)
    # Longer runs: s moves towards log f on both kinds of problem (losses below 1: s < 0).
    long = run("uw", "cagrad-toy", steps=300)  # losses shifted by the problem's lower bound, all positive
    assert all(bool((m.s.detach() != 0).all()) for m in long.extra["methods"])
    net = run("uw", "mtl-regression", steps=100, lr=0.01)
    s_net = net.extra["methods"][0].s.detach()
    assert bool((s_net < -0.5).all()), s_net  # f ≈ 1e-2 at the end: s* = log f ≈ −4.6; Adam lr 0.01 moved s by ~1


def test_warns_when_s_is_not_optimised_and_train_step_refuses():
    theta = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)

    def losses():
        return torch.cat([(theta - 1) ** 2 + 1, (theta + 1) ** 2 + 1])

    method = UW(num_tasks=2)
    forgot = torch.optim.SGD([theta], lr=0.01)
    with pytest.warns(UnoptimisedParameterWarning, match="uw: the log-variances"):
        for _ in range(3):
            forgot.zero_grad()
            method(losses()).backward()
            forgot.step()
    with pytest.raises(ValueError, match="learnable parameter"):
        check_optimised(method, forgot)
    method = UW(num_tasks=2)
    good = torch.optim.SGD([theta, *method.parameters()], lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnoptimisedParameterWarning)
        for step in range(3):
            train_step(method, losses, good, [theta], step=step)
    assert bool((method.s.detach() != 0).all())


def test_interface_golden_values_init_and_reset():
    method = reference_impls.create("uw")
    assert isinstance(method, LossWeighting) and isinstance(method, torch.nn.Module)
    assert method.num_tasks == 2 and method.task_types == ("regression", "regression")
    assert set(defined_hooks(method)) == {"parameters"}
    f = torch.tensor([0.5, 2.0], dtype=torch.float64)
    # s = 0: regression L = ½Σf = 1.25 (weights ½); classification L = Σf (weights 1)
    assert method.objective(f, 0).item() == pytest.approx(1.25, abs=1e-15)
    assert torch.equal(method.weights(f, 0), torch.full((2,), 0.5, dtype=torch.float64))
    mixed = UW(task_types=("regression", "classification"))
    assert mixed(f).item() == pytest.approx(0.25 + 2.0, abs=1e-15)
    # LibMTL / MTAN init −0.5: weight e^{0.5}/2 and L = Σ ½e^{0.5} f − 0.5
    libmtl = UW(init=-0.5)
    assert libmtl(f).item() == pytest.approx(0.5 * math.exp(0.5) * 2.5 - 0.5, rel=1e-6)
    with torch.no_grad():
        libmtl.s.add_(3.0)
    libmtl.reset()
    assert torch.equal(libmtl.s.detach(), torch.full((2,), -0.5))
    assert torch.allclose(libmtl.sigma2, torch.full((2,), math.exp(-0.5)))


def test_bad_and_degenerate_input():
    with pytest.raises(ValueError, match="task_types"):
        UW(task_types=("regression", "segmentation"))
    with pytest.raises(ValueError, match="num_tasks=3 but 2 task_types"):
        UW(num_tasks=3, task_types=("regression", "classification"))
    with pytest.raises(ValueError, match="num_tasks"):
        UW(num_tasks=0)
    with pytest.raises(ValueError, match="init"):
        UW(init=float("nan"))
    method = UW(num_tasks=2)
    with pytest.raises(ValueError, match="2 tasks"):
        method(torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(NonFiniteError, match="uw: the loss of task 1"):
        method(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="uw: the loss of task 1 is 0.0: uncertainty weighting needs positive"):
        method(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="uw: the loss of task 0 is -1.0"):
        method.weights(torch.tensor([-1.0, 2.0]), 0)
    # huge and tiny positive losses: finite objective and gradient, exact stationary point
    f = torch.tensor([1e-30, 1e30], dtype=torch.float64)
    method = _double(UW(num_tasks=2))
    loss = method(f)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(method.s.grad).all()
    torch.testing.assert_close(method.stationary_log_variances(f), torch.log(f))
    # K = 1 and float32 losses
    one = UW(num_tasks=1)
    assert one(torch.tensor([3.0])).item() == pytest.approx(1.5)
    assert one.weights(torch.tensor([3.0]), 0).dtype == torch.float32
