"""PSMGD (Xu et al., AAAI 2025): MGDA weights every R steps, reused in between; fewer Jacobians."""

from __future__ import annotations

import pytest
import torch

import reference_impls.core.aggregator as aggregator_module
from modl.cli import main
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import train_step
from reference_impls.gradient_weighting.mgda import MGDA
from reference_impls.gradient_weighting.psmgd import PSMGD
from reference_impls.runner import run
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

F64 = torch.float64


@pytest.mark.parametrize("period", [1, 3, 8])
def test_recompute_steps_are_mgda_and_reuse_steps_keep_the_weights(period):
    """On a sequence of random Jacobians: at t ≡ 0 (mod R) d equals MGDA's on that J bit for bit (and
    satisfies its KKT conditions); at the other steps d = J_tᵀλ with λ of the last recompute step."""
    gen = torch.Generator().manual_seed(period)
    method = PSMGD(period=period)
    lam = None
    for t in range(3 * period + 2):
        J = torch.randn(4, 6, generator=gen, dtype=F64)
        d = method(J)
        if t % period == 0:
            assert torch.equal(d, MGDA()(J)), t
            lam = MGDA().weights(J)
            asserts.assert_min_norm_kkt(J, method.lambd)
        else:
            assert torch.equal(d, lam @ J), t
        assert torch.equal(method.lambd, lam)


def test_jacobian_evaluations_are_counted_and_fewer():
    """T steps need ⌈T/R⌉ Jacobians (K backward passes each) and T − ⌈T/R⌉ single backward passes:
    backward passes (K + R − 1)/R per step instead of MGDA's K (the paper's backpropagation complexity)."""
    gen = torch.Generator().manual_seed(0)
    K, T, R = 5, 50, 8
    method = PSMGD(period=R)
    for _ in range(T):
        method(torch.randn(K, 3, generator=gen, dtype=F64))
    assert method.jacobian_evaluations == -(-T // R) == 7
    assert method.weighted_backward_passes == T - 7
    assert K * method.jacobian_evaluations + method.weighted_backward_passes == 78 < K * T  # 78 vs MGDA's 250
    method.reset()
    assert (method.jacobian_evaluations, method.weighted_backward_passes, method.lambd) == (0, 0, None)


def _net():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 3).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1).double() for _ in range(3)])
    X = torch.randn(16, 4, dtype=F64)
    Y = torch.randn(16, 3, dtype=F64)

    def closure():
        Z = torch.tanh(encoder(X))
        return torch.stack([((h(Z).squeeze(1) - Y[:, i]) ** 2).mean() for i, h in enumerate(heads)])

    return encoder, heads, closure


def test_training_loop_computes_the_jacobian_only_on_recompute_steps(monkeypatch):
    """Through hooks.train_step (the documented loop): 12 steps with R = 4 build the K-row Jacobian 3 times;
    the other 9 steps back-propagate Σ λ_i f_i once, and the encoder's gradient then equals Jᵀλ with the
    reused λ (the explicit Jacobian, computed separately, to 1e-12)."""
    calls = []
    real = aggregator_module.jacobian
    monkeypatch.setattr(aggregator_module, "jacobian", lambda *a, **k: calls.append(1) or real(*a, **k))
    encoder, heads, closure = _net()
    shared, task = list(encoder.parameters()), list(heads.parameters())
    opt = torch.optim.SGD(shared + task, lr=0.05)
    method = PSMGD(period=4)
    for step in range(12):
        reuse = step % 4 != 0
        lam_before = None if method.lambd is None else method.lambd.clone()
        if reuse:
            losses = closure()
            J, _ = real(list(losses.unbind()), shared, task)  # explicit reference, not counted
        n_calls = len(calls)
        train_step(method, closure, opt, shared, task, step=step)
        if reuse:
            assert len(calls) == n_calls  # no Jacobian on a reuse step
            got = torch.cat([p.grad.reshape(-1) for p in shared])
            torch.testing.assert_close(got, lam_before @ J, rtol=1e-12, atol=1e-12)
    assert len(calls) == 3 and method.jacobian_evaluations == 3 and method.weighted_backward_passes == 9


def test_on_the_biquad_it_converges_like_mgda():
    """300 SGD steps (lr 0.05) on biquad from the 8 standard starts, 3 seeds (all pass): every start ends
    within 1e-3 of conv{a_1, a_2}, as MGDA does, with 38 Jacobian evaluations per start instead of 300."""
    for seed in range(3):
        result = run("psmgd", "biquad", steps=300, lr=0.05, seed=seed)
        assert float(result.distance.max()) < 1e-3
        assert all(m.jacobian_evaluations == 38 and m.weighted_backward_passes == 262 for m in result.extra["methods"])


def test_golden_value():
    # J_base: MGDA's λ = (0.6, 0.4), d = [0, 1, 1] on the first step; a second step on J' reuses λ
    method = PSMGD()
    J = j_base()
    assert torch.allclose(method(J), torch.tensor([0.0, 1.0, 1.0], dtype=F64), atol=1e-12)
    J2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=F64)
    assert torch.allclose(method(J2), torch.tensor([0.6, 0.8, 0.0], dtype=F64), atol=1e-12)


def test_degenerate_inputs():
    for name, J in asserts.degenerate_jacobians().items():
        m = PSMGD(period=2)
        assert torch.equal(m(J), MGDA()(J)), name  # recompute step
        assert torch.equal(m(J), MGDA()(J)), name  # reuse step on the same J: the same λ
    assert torch.equal(PSMGD()(j_base()[:1]), j_base()[0])  # K = 1: d = g_1
    assert PSMGD()(j_base(torch.float32)).dtype == torch.float32
    m = PSMGD()
    m(j_base())
    with pytest.raises(NonFiniteError):
        m(torch.tensor([[float("nan"), 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64))  # on a reuse step too
    with pytest.raises(ValueError, match="number of tasks changed"):
        m(torch.ones(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="period must be >= 1"):
        PSMGD(period=0)


def test_cli_runs_psmgd_on_the_noisy_problem(capsys):
    assert main(["run", "psmgd", "--problem", "noisy-biquad", "-p", "period=4", "--steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "psmgd on noisy-biquad" in out and "nan" not in out.lower()
