"""GradNorm (Chen et al., ICML 2018): the L_grad subgradient, renormalisation, and equal weighted gradient norms."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError, jacobian
from reference_impls.gradient_weighting.gradnorm import GradNorm
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base



@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_golden_j_base_two_steps(dtype, tol):
    J, losses = j_base(dtype), torch.tensor([1.0, 2.0], dtype=dtype)
    method = GradNorm(alpha=1.5, lr=0.025)
    d0 = method(J, losses)
    torch.testing.assert_close(d0, torch.tensor([2.0, 2.0, 2.0], dtype=dtype))  # w(0) = (1, 1): the plain sum
    # by hand: a = (√18, √38), G = a, Ḡ = (√18 + √38)/2, r = (1, 1) (f = f(0)), target = Ḡ;
    # G_1 < Ḡ < G_2, so ∇_w L_grad = (−√18, √38); w = (1 + 0.025√18, 1 − 0.025√38), then Σw = 2
    w = torch.tensor([1 + 0.025 * 18**0.5, 1 - 0.025 * 38**0.5], dtype=torch.float64)
    w = 2 * w / w.sum()
    torch.testing.assert_close(method.w.detach(), w, rtol=0, atol=tol)
    torch.testing.assert_close(w, torch.tensor([1.133290, 0.866710], dtype=torch.float64), rtol=0, atol=1e-6)
    d1 = method(J, losses)
    torch.testing.assert_close(d1, (w @ j_base()).to(dtype), rtol=0, atol=tol * 10)
    torch.testing.assert_close(d1, torch.tensor([0.667099, 2.0, 2.0], dtype=dtype), rtol=0, atol=1e-5)


def test_loss_grad_gradient_matches_autograd_and_a_small_step_reduces_every_gap():
    gen = torch.Generator().manual_seed(0)
    method = GradNorm(alpha=1.5)
    for name, J in random_jacobians(per_shape=2):
        K = J.shape[0]
        a = J.norm(dim=1)
        w = torch.rand(K, generator=gen, dtype=torch.float64) * 2 + 0.1
        r = torch.rand(K, generator=gen, dtype=torch.float64) + 0.5
        grad, G = method.loss_grad_gradient(a, w, r)
        # autograd on L_grad = Σ_i |G_i − [Ḡ r_i^α]_const| with G_i = ||∇_W (w_i f_i)|| = ||w_i g_i||
        w_var = w.clone().requires_grad_(True)
        G_var = (w_var[:, None] * J).norm(dim=1)
        target = (G_var.mean() * r**1.5).detach()
        (expected,) = torch.autograd.grad((G_var - target).abs().sum(), w_var)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(G, G_var.detach(), msg=name)
        # a small step on w (target held fixed, before renormalisation) shrinks every |G_i − target_i|
        gap = (G - target).abs()
        eta = 0.5 * float((gap / a.clamp_min(1e-300) ** 2).min())
        G_new = (w - eta * grad) * a
        assert bool(((G_new - target).abs() < gap).all() | (K == 1)), name


def test_weights_stay_positive_and_sum_to_K():
    gen = torch.Generator().manual_seed(1)
    for name, J in random_jacobians(per_shape=2):
        K = J.shape[0]
        method = GradNorm(alpha=1.5, lr=0.05)
        losses = torch.rand(K, generator=gen, dtype=torch.float64) + 0.5
        for _ in range(5):
            w = method.weights(J * (1 + torch.rand(K, 1, generator=gen, dtype=torch.float64)), losses)
            assert float(w.min()) >= 0 and abs(float(w.sum()) - K) < 1e-9, name
            losses = losses * torch.exp(-0.1 * torch.rand(K, generator=gen, dtype=torch.float64))
        assert abs(float(method.w.sum()) - K) < 1e-9


def test_the_restoring_force_raises_the_weight_of_the_slower_task():
    J = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # equal gradient norms
    method = GradNorm(alpha=1.5, lr=0.01)
    method(J, torch.tensor([1.0, 1.0], dtype=torch.float64))  # records f(0)
    w = method.weights(J, torch.tensor([1.0, 0.5], dtype=torch.float64))  # task 1 trains slower: r = (4/3, 2/3)
    assert torch.equal(w, torch.ones(2, dtype=torch.float64))  # returns w(t) (still equal: G_i = Ḡ at step 0)
    assert float(method.w[0]) > 1 > float(method.w[1])
    # with α = 0 the same losses change nothing: the targets are Ḡ for both
    method0 = GradNorm(alpha=0.0, lr=0.01)
    method0(J, torch.tensor([1.0, 1.0], dtype=torch.float64))
    method0(J, torch.tensor([1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(method0.w.detach(), torch.ones(2, dtype=torch.float64))


def test_last_layer_size_uses_only_the_last_columns():
    gen = torch.Generator().manual_seed(2)
    J = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    J2 = J.clone()
    J2[:, :6] = 100 * torch.randn(3, 6, generator=gen, dtype=torch.float64)  # other shared layers differ
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    m1, m2, m_all = GradNorm(last_layer_size=4), GradNorm(last_layer_size=4), GradNorm()
    for _ in range(3):
        m1.weights(J, losses), m2.weights(J2, losses), m_all.weights(J2, losses)
    torch.testing.assert_close(m1.w.detach(), m2.w.detach())
    assert not torch.allclose(m1.w.detach(), m_all.w.detach())
    with pytest.raises(ValueError, match="exceeds"):
        GradNorm(last_layer_size=11)(J, losses)


def test_toy_regression_equalises_the_weighted_gradient_norms():
    """The shared-encoder regression with target scales σ = (1, 100), α = 0 (pure gradient-norm equalisation).

    The network trains slowly (Adam, lr 1e-4) and w takes diminishing steps lr_t = 4e-3/(t + 1) so that the
    subgradient iteration settles (set between steps through ``method.lr``); 500 steps.
    """
    from reference_impls.problems import get_problem

    problem = get_problem("mtl-regression", scales=(1.0, 100.0))
    problem.reset(0)
    shared, task = problem.shared_parameters(), problem.task_parameters()
    optimizer = torch.optim.Adam(shared + task, lr=1e-4)
    method = GradNorm(alpha=0.0)
    norms = []
    for t in range(500):
        method.lr = 4e-3 / (t + 1)
        optimizer.zero_grad()
        method.backward(problem.losses(), shared, task)
        optimizer.step()
        norms.append(method.last_gradient_norms.clone())
    G = torch.stack(norms)  # (steps, K)
    assert float(G[0, 0] / G[0, 1]) < 0.05  # at the start the σ = 100 task's gradient is ~90x larger
    late = G[-50:, 0] / G[-50:, 1]
    assert float((late - 1).abs().max()) < 0.05, late
    w = method.w.detach()
    assert float(w[1]) < 0.02 * float(w[0]), w


def test_degenerate_inputs():
    for name, J in degenerate_jacobians().items():
        K = J.shape[0]
        method = GradNorm()
        losses = torch.ones(K, dtype=J.dtype)
        for _ in range(3):
            w = method.weights(J, losses)
            d = method(J, losses)
            assert torch.isfinite(d).all() and torch.isfinite(w).all(), name
            assert float(w.min()) >= 0 and abs(float(w.sum()) - K) < 1e-9, name
        if name == "all-zero":
            torch.testing.assert_close(method.w.detach(), torch.ones(K, dtype=torch.float64))
            assert torch.equal(d, torch.zeros_like(d))
        if name in ("single-task", "identical"):  # equal norms (or K = 1): nothing to balance
            torch.testing.assert_close(method.w.detach(), torch.ones(K, dtype=torch.float64))
    with pytest.raises(NonFiniteError):
        GradNorm()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), torch.ones(2))
    with pytest.raises(ValueError, match="initial losses"):
        GradNorm()(j_base(), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="needs the task losses"):
        GradNorm()(j_base())
    method = GradNorm()
    method(j_base(), torch.ones(2))
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(3, 3, dtype=torch.float64), torch.ones(3))
    method.reset()
    method(torch.ones(3, 3, dtype=torch.float64), torch.ones(3))
    w = GradNorm()
    w(j_base(), torch.ones(2))
    torch.testing.assert_close(w.weights(j_base(), torch.zeros(2)).sum(), torch.tensor(2.0, dtype=torch.float64))  # all losses 0: r = 1


def test_backward_matches_the_explicit_jacobian():
    torch.manual_seed(0)
    encoder, last = torch.nn.Linear(4, 5).double(), torch.nn.Linear(5, 3).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1).double() for _ in range(2)])
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64) * torch.tensor([1.0, 10.0])
    shared = list(encoder.parameters()) + list(last.parameters())  # the last shared layer listed last
    task = list(heads.parameters())
    m = sum(p.numel() for p in last.parameters())

    def losses():
        z = torch.tanh(last(torch.tanh(encoder(x))))
        return [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]

    reference, method = GradNorm(last_layer_size=m, optimizer="adam", lr=0.05), GradNorm(last_layer_size=m, optimizer="adam", lr=0.05)
    for _ in range(3):
        f = losses()
        J, _ = jacobian(f, shared)
        w = reference.weights(J, torch.stack([v.detach() for v in f]))
        expected = w @ J
        f = losses()  # heads: ∇_head(Σ_i w_i f_i), the paper's total loss
        head_grads = torch.autograd.grad(sum(wi * fi for wi, fi in zip(w, f)), task)
        for p in shared + task:
            p.grad = None
        d = method.backward(losses(), shared, task)
        torch.testing.assert_close(d, expected)
        torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected)
        for p, g in zip(task, head_grads):
            torch.testing.assert_close(p.grad, g)
        with torch.no_grad():
            for p in shared + task:
                p -= 0.01 * p.grad
    torch.testing.assert_close(method.w, reference.w)
    # the representation (-UB) mode: weights from ∂f_i/∂Z, as for every weighting
    z = torch.tanh(last(torch.tanh(encoder(x))))
    f = [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]
    w_ub = GradNorm().backward(f, shared, task, representation=z)
    torch.testing.assert_close(w_ub, torch.ones(2, dtype=torch.float64))  # w(0) = 1
    assert not torch.allclose(method.w.detach(), torch.ones(2, dtype=torch.float64))
