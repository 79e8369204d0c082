"""FAMO (Liu et al., NeurIPS 2023): one backward pass, softmax-logit updates from log-loss decreases."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError, jacobian
from reference_impls.gradient_weighting.famo import FAMO
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base



def test_golden_j_base():
    # first step: z = (½, ½), c ∝ z_i/f_i = (½, ¼) → c = (2/3, 1/3), d = (2/3) g_1 + (1/3) g_2 = (−2/3, 1, 1)
    J, losses = j_base(), torch.tensor([1.0, 2.0], dtype=torch.float64)
    method = FAMO()
    torch.testing.assert_close(method.weights(J, losses), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(FAMO()(J, losses), torch.tensor([-2 / 3, 1.0, 1.0], dtype=torch.float64))
    # then δ = log(f) − log(f') for f' = (0.5, 1.9): task 1 decreased more, so it loses weight
    delta = method.update(torch.tensor([0.5, 1.9], dtype=torch.float64))
    torch.testing.assert_close(delta, torch.log(torch.tensor([1.0, 2.0], dtype=torch.float64) / torch.tensor([0.5, 1.9], dtype=torch.float64)), atol=1e-8, rtol=0)
    z = method.z()
    assert float(z[0]) < 0.5 < float(z[1])
    torch.testing.assert_close(z, torch.softmax(torch.tensor([-0.025, 0.025], dtype=torch.float64), 0), atol=1e-9, rtol=0)


def _model(seed=0):
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(4, 3).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1).double() for _ in range(3)])
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randn(16, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64)

    def losses():
        z = torch.tanh(encoder(x))
        return [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]

    return list(encoder.parameters()), list(heads.parameters()), losses


def test_backward_is_one_pass_and_equals_the_weighted_jacobian(monkeypatch):
    shared, task, losses = _model()
    method, reference = FAMO(gamma=1e-3), FAMO(gamma=1e-3)
    opt = torch.optim.SGD(shared + task, lr=0.02)
    for _ in range(4):
        f = losses()
        J, _ = jacobian(f, shared + task)  # (K, n_shared + n_task), explicit per-task gradients
        values = torch.stack([v.detach() for v in f])
        c = reference.weights(J, values)
        expected = c @ J  # Σ_i c_i ∇f_i over every parameter

        calls = {"n": 0}
        real_grad, real_backward = torch.autograd.grad, torch.autograd.backward

        def counting_grad(*args, **kwargs):
            calls["n"] += 1
            return real_grad(*args, **kwargs)

        def counting_backward(*args, **kwargs):
            calls["n"] += 1
            return real_backward(*args, **kwargs)

        monkeypatch.setattr(torch.autograd, "grad", counting_grad)
        monkeypatch.setattr(torch.autograd, "backward", counting_backward)
        opt.zero_grad(set_to_none=True)
        f = losses()
        d = method.backward(f, shared, task)
        monkeypatch.undo()
        assert calls["n"] == 1, f"{calls['n']} autograd calls in one FAMO step"

        flat = torch.cat([p.grad.reshape(-1) for p in shared + task])
        torch.testing.assert_close(flat, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(d, expected[: d.numel()], rtol=1e-10, atol=1e-12)
        opt.step()
        with torch.no_grad():
            new = torch.stack(losses())
        torch.testing.assert_close(method.update(new), reference.update(new), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(method.z(), reference.z())
    assert float(method.z().max() - method.z().min()) > 1e-3  # the weights did move


def test_logit_gradient_is_the_softmax_jacobian_and_vanishes_iff_decreases_are_equal():
    gen = torch.Generator().manual_seed(0)
    for K in (1, 2, 3, 7):
        method = FAMO(gamma=0.0, eps=0.0)  # ε = 0: f → 0.9 f gives exactly equal δ_i
        losses = torch.rand(K, generator=gen, dtype=torch.float64) + 0.5
        J = torch.randn(K, 4, generator=gen, dtype=torch.float64)
        for step in range(3):
            xi_before = method.xi.detach().clone() if method.xi is not None else torch.zeros(K, dtype=torch.float64)
            method.weights(J, losses)
            equal = step in (0, 2)
            if equal:  # equal decreases: ∇_ξ = 0
                new = losses * 0.9
            else:
                new = losses * torch.exp(-0.2 * torch.rand(K, generator=gen, dtype=torch.float64))
            delta = method.update(new)
            xi = xi_before.clone().requires_grad_(True)
            (expected,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)  # J_zᵀ δ
            torch.testing.assert_close(method.xi.grad, expected, rtol=1e-12, atol=1e-15)
            if equal or K == 1:
                assert float(expected.abs().max()) < 1e-12
                if step == 0:  # fresh Adam moments and γ = 0: ξ does not move at all
                    torch.testing.assert_close(method.xi.detach(), xi_before, rtol=0, atol=1e-9)  # Adam: lr·g/(|g| + 1e-8)
            else:
                assert float(expected.abs().max()) > 1e-6
                torch.testing.assert_close(expected.sum(), torch.tensor(0.0, dtype=torch.float64), atol=1e-15, rtol=0)
            losses = new


def test_loss_scaling_leaves_delta_and_the_direction_unchanged():
    gen = torch.Generator().manual_seed(1)
    for name, J in random_jacobians(per_shape=1):
        K = J.shape[0]
        c = torch.exp(3 * torch.randn(K, generator=gen, dtype=torch.float64))
        f_star = -torch.rand(K, generator=gen, dtype=torch.float64)
        plain = FAMO(gamma=1e-3, min_losses=f_star, eps=0.0)
        scaled = FAMO(gamma=1e-3, min_losses=c * f_star, eps=0.0)  # f → c f and f* → c f*
        losses = torch.rand(K, generator=gen, dtype=torch.float64) + 0.1
        for _ in range(4):
            d = plain(J, losses)
            d_scaled = scaled(c[:, None] * J, c * losses)
            if float(d.norm()) > 1e-12 * float(J.norm()):
                err = float((d / d.norm() - d_scaled / d_scaled.norm()).norm())
                assert err < 1e-10, f"{name}: direction changed by {err:.2e}"
            new = f_star + (losses - f_star) * torch.exp(-0.3 * torch.rand(K, generator=gen, dtype=torch.float64))
            torch.testing.assert_close(plain.update(new), scaled.update(c * new), rtol=1e-10, atol=1e-12, msg=name)
            torch.testing.assert_close(plain.z(), scaled.z(), rtol=1e-10, atol=1e-12, msg=name)
            losses = new


def test_toy_famo_balances_the_log_loss_decrease_rates():
    """Two tasks on disjoint coordinates, f_1 = ||u − 𝟙||², f_2 = 10·||v − 𝟙||² (ten times the curvature), plain GD.

    8 seeds x 6 starts, 600 steps, lr 5e-4; the ratio of the larger to the smaller mean log-loss decrease over
    the last quarter. GD on the sum: ≈ 10.05 on all 48 starts. FAMO: < 1.2 on 44 of 48 starts (the rest:
    1.74, 2.97, 3.94 and 7234 at seeds 6, 3, 7, 5). On those starts f_2 is already small and shrinks
    exponentially; FAMO's weights c_i ∝ z_i/f_i favour the small loss until z, which moves ≈ w_lr per step
    in the logits, catches up — still under way after 600 (and, for three of them, 2400) steps. The claim
    tested is therefore: on every seed at least 5 of 6 starts balance (ratio < 1.2), and the median < 1.01.
    (The former single-seed test asserted < 1.2 on every start; it fails at seed 3.)
    """
    h = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 10.0, 10.0]], dtype=torch.float64)

    def losses(X):
        return ((X - 1) ** 2) @ h.T  # (B, K)

    def run(kind, seed, B=6, steps=600, lr=5e-4):
        gen = torch.Generator().manual_seed(seed)
        X = 2 * torch.randn(B, 4, generator=gen, dtype=torch.float64)
        methods = [FAMO(gamma=0.0) for _ in range(B)]  # γ = 0 as in the official toy
        deltas = []
        for _ in range(steps):
            F, J = losses(X), 2 * h[None] * (X - 1)[:, None, :]  # (B, K), (B, K, n)
            D = torch.stack([m(J[b], F[b]) for b, m in enumerate(methods)]) if kind == "famo" else J.sum(1)
            X_new = X - lr * D
            F_new = losses(X_new)
            if kind == "famo":
                for b, m in enumerate(methods):
                    m.update(F_new[b])
            deltas.append(torch.log(F) - torch.log(F_new))
            X = X_new
        late = torch.stack(deltas[-steps // 4 :]).mean(0)  # (B, K): mean log-loss decrease per step
        return late.max(1).values / late.min(1).values  # (B,)

    balanced = 0
    for seed in range(8):
        ratio_famo, ratio_sum = run("famo", seed), run("sum", seed)
        assert float(ratio_sum.min()) > 9.0, (seed, ratio_sum)  # GD on the sum: task 2 decreases ~10x faster
        assert int((ratio_famo < 1.2).sum()) >= 5, (seed, ratio_famo)
        assert float(ratio_famo.median()) < 1.01, (seed, ratio_famo)
        balanced += int((ratio_famo < 1.2).sum())
    assert balanced >= 44, balanced


def test_degenerate_inputs_and_errors():
    losses3, losses2 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([1.0, 4.0], dtype=torch.float64)
    for name, J in degenerate_jacobians().items():
        losses = (losses3 if J.shape[0] == 3 else losses2)[: J.shape[0]]
        w = FAMO().weights(J, losses)
        d = FAMO()(J, losses)
        assert torch.isfinite(d).all(), name
        torch.testing.assert_close(w, (1 / losses) / (1 / losses).sum(), msg=name)  # c does not depend on J
        torch.testing.assert_close(d, w @ J, msg=name)
    with pytest.raises(NonFiniteError):
        FAMO()(j_base(), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="f_i - f_i\\* \\+ eps > 0"):
        FAMO()(j_base(), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="preceding"):
        FAMO().update(torch.ones(2))
    method = FAMO()
    method(j_base(), torch.ones(2))
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(3, 3, dtype=torch.float64), torch.ones(3))
    with pytest.raises(ValueError, match="min_losses"):
        FAMO(min_losses=[0.0, 0.0, 0.0])(j_base(), torch.ones(2))
    with pytest.raises(ValueError, match="w_lr"):
        FAMO(w_lr=0.0)


def test_backward_clipping_and_representation_mode():
    shared, task, losses = _model(1)
    FAMO(max_norm=1e-3).backward(losses(), shared, task)
    norm = torch.cat([p.grad.reshape(-1) for p in shared]).norm()
    assert float(norm) <= 1e-3 * (1 + 1e-9)
    with pytest.raises(TypeError, match="representation"):
        FAMO().backward(losses(), shared, task, representation=torch.zeros(1))


@pytest.mark.parametrize("n, lr, weight_decay", [(2, 0.025, 1e-3), (5, 1e-4, 0.0), (3, 0.1, 1e-2)])
def test_list_adam_is_torch_optim_adam(n, lr, weight_decay):
    """famo.ListAdam (FAMO's ξ and GradNorm's w step, written out on Python floats) against torch.optim.Adam over 500
    steps of seeded gradients spanning 1e-6..1e3: the same iterates to rtol 1e-12 (torch fuses lerp_ and addcmul_ into
    one rounding where the CPU has FMA; measured max relative difference 1.4e-13, the rounding differences compounding
    over the steps; bit for bit without weight decay here)."""
    from reference_impls.gradient_weighting.famo import ListAdam

    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([x], lr=lr, weight_decay=weight_decay)
    ours, y = ListAdam(n, lr=lr, weight_decay=weight_decay), x.detach().tolist()
    for _ in range(500):
        g = torch.randn(n, generator=gen, dtype=torch.float64) * 10 ** float(torch.randint(-6, 4, (1,), generator=gen))
        x.grad = g.clone()
        reference.step()
        y = ours.step(y, g.tolist())
        torch.testing.assert_close(torch.tensor(y, dtype=torch.float64), x.detach(), rtol=1e-12, atol=0)
