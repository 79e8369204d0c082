"""IMTL-L (Liu et al., ICLR 2021, loss part): the claims of the paper, checked exactly or on a toy."""

import math

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import LossWeighting
from reference_impls.loss_balancing.imtl_l import IMTLL


def test_gradient_in_s_and_exact_stationarity():
    # ∂/∂s_i (e^{s_i} f_i − s_i) = e^{s_i} f_i − 1: zero exactly at s_i = −log f_i.
    f = torch.tensor([0.01, 0.5, 3.0, 250.0], dtype=torch.float64)
    method = IMTLL(4)
    with torch.no_grad():
        method.s.copy_(torch.tensor([0.3, -1.0, 2.0, -4.0]))
    method(f).backward()
    expected = method.s.detach().double().exp() * f - 1
    assert torch.allclose(method.s.grad.double(), expected, rtol=1e-6)
    with torch.no_grad():
        method.s.copy_(-torch.log(f))
    method.s.grad = None
    method(f).backward()
    assert float(method.s.grad.abs().max()) < 1e-6  # float32 parameter: e^{−log f} f − 1 = O(1e-7)
    assert torch.allclose(method.scales.double() * f, torch.ones(4, dtype=torch.float64), atol=1e-6)


def test_gradient_descent_on_s_with_frozen_losses_makes_scaled_losses_equal_to_one():
    # θ frozen: f fixed. SGD on s from 0 (lr 0.5, 300 steps; near the optimum the curvature
    # e^{s}f → 1, so the error contracts by 0.5 per step) reaches s = −log f and e^{s}f = 1.
    f = torch.tensor([1e-2, 0.3, 1.0, 7.0, 50.0], dtype=torch.float64)
    method = IMTLL(5)
    method.s.data = method.s.data.double()
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        method(f).backward()
        opt.step()
    assert torch.allclose(method.s.detach(), -torch.log(f), atol=1e-10)
    assert float((method.scales * f - 1).abs().max()) < 1e-10  # impartial: all scaled losses equal 1
    # the Hessian e^{s}f > 0 at the stationary point: a minimum
    assert bool((method.scales * f > 0).all())


def test_model_gradient_at_the_stationary_scales_is_scale_invariant():
    # At s = −log f the θ-gradient of Σ e^{s_i} f_i − s_i is Σ ∇f_i / f_i, the same for c_i·f_i.
    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(20, 3, dtype=torch.float64)
    y1, y2 = torch.randn(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64)

    def losses(c):
        return torch.stack([((x @ w - y1) ** 2).mean(), c * ((torch.tanh(x @ w) - y2) ** 2).mean()])

    grads = []
    for c in (1.0, 1e3):
        f = losses(c)
        method = IMTLL(2)
        method.s.data = -torch.log(f.detach())  # the stationary scales (float64)
        (g,) = torch.autograd.grad(method(f), w, retain_graph=True)
        manual = sum(torch.autograd.grad(fi / fi.detach(), w, retain_graph=True)[0] for fi in f)
        assert torch.allclose(g, manual, atol=1e-12)
        grads.append(g)
    assert torch.allclose(grads[0], grads[1], rtol=1e-10)


@pytest.mark.parametrize("c", [1.0, 1e-3])
def test_joint_training_with_the_model_is_invariant_to_the_loss_scale(c):
    # Eliminating s (min_s e^s f − s = 1 + log f), joint training minimises Σ_i log f_i(θ), which
    # does not depend on constant loss scales c_i. Toy: shared scalar θ, f_1 = (θ − 1)² + 4,
    # f_2 = c·((θ + 1)² + 4); Σ log f_i is minimised at θ = 0 for every c. Adam (lr 0.05, 1500
    # steps) on (θ, s) jointly from θ = 2, s = 0 reaches θ = 0 and e^{s_i} f_i = 1 (measured
    # |θ| < 1e-15 for both c). A scale c = 100 converges too, but more slowly (s_2 must travel
    # from 0 to −log 800 ≈ −6.7), so it is not run here.
    theta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    method = IMTLL(2)
    method.s.data = method.s.data.double()
    opt = torch.optim.Adam([theta, *method.parameters()], lr=0.05)

    def losses():
        return torch.cat([(theta - 1) ** 2 + 4, c * ((theta + 1) ** 2 + 4)])

    for _ in range(1500):
        opt.zero_grad()
        method(losses()).backward()
        opt.step()
    assert abs(float(theta.detach())) < 1e-9
    assert float((method.scales * losses().detach() - 1).abs().max()) < 1e-9


def test_interface_weights_objective_reset():
    method = IMTLL(3)
    assert isinstance(method, LossWeighting) and isinstance(method, torch.nn.Module)
    f = torch.tensor([1.0, 2.0, 4.0])
    with torch.no_grad():
        method.s.copy_(torch.tensor([0.0, math.log(2.0), -1.0]))
    assert torch.allclose(method.weights(f, 0), torch.tensor([1.0, 2.0, math.exp(-1.0)]))
    assert torch.allclose(method.objective(f, 0), method(f))
    assert torch.allclose(method(f), torch.tensor(1.0 + 4.0 + 4 * math.exp(-1.0) - math.log(2.0) + 1.0))
    assert len(method.parameters()) == 1
    method.reset()
    assert torch.equal(method.scales, torch.ones(3))
    assert IMTLL().num_tasks == 2  # default, so the registry can build it without arguments


def test_golden_values():
    # s = 0: the objective is Σ f_i and the weights are 𝟙; s = −log f: every scaled loss is 1.
    f = torch.tensor([0.5, 2.0], dtype=torch.float64)
    method = IMTLL(2)
    assert method(f).item() == pytest.approx(2.5, abs=1e-12)
    method.s.data = -torch.log(f)
    assert method(f).item() == pytest.approx(2.0 + math.log(0.5) + math.log(2.0), abs=1e-12)


def test_bad_and_degenerate_input():
    method = IMTLL(2)
    with pytest.raises(ValueError, match="2 tasks"):
        method(torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(NonFiniteError):
        method(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="positive"):
        method(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive"):
        method(torch.tensor([-1.0, 2.0]))
    with pytest.raises(ValueError):
        IMTLL(0)
    # huge and tiny positive losses: finite objective and gradient
    f = torch.tensor([1e-30, 1e30], dtype=torch.float64)
    method = IMTLL(2)
    method.s.data = method.s.data.double()
    loss = method(f)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(method.s.grad).all()
    # list input
    assert IMTLL(2)([torch.tensor(1.0), torch.tensor(3.0)]).item() == pytest.approx(4.0)
