"""The shared interfaces: input checks, Jacobian computation and the training-loop backward()."""

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import (
    GramianWeighting,
    NonFiniteError,
    Weighting,
    check_jacobian,
    jacobian,
)


class Mean(GramianWeighting):
    name = "mean-test"

    def compute_weights_from_gramian(self, M, losses):
        return torch.full((M.shape[0],), 1.0 / M.shape[0], dtype=M.dtype, device=M.device)


class FirstTask(Weighting):
    name = "first-test"

    def compute_weights(self, J, losses):
        w = torch.zeros(J.shape[0], dtype=J.dtype)
        w[0] = 1.0
        return w


def test_check_jacobian_errors_are_clear():
    with pytest.raises(ValueError, match="shape"):
        check_jacobian(torch.ones(3))
    with pytest.raises(ValueError, match="at least one task"):
        check_jacobian(torch.ones(0, 3))
    with pytest.raises(TypeError, match="floating"):
        check_jacobian(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(NonFiniteError):
        check_jacobian(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="2 rows"):
        Mean()(torch.ones(2, 3), losses=torch.ones(3))


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(4, 3)
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1) for _ in range(2)])
    x = torch.randn(16, 4)
    y = torch.randn(16, 2)
    return encoder, heads, x, y


def _losses(encoder, heads, x, y):
    z = torch.tanh(encoder(x))
    return z, [((head(z)[:, 0] - y[:, i]) ** 2).mean() for i, head in enumerate(heads)]


def test_backward_writes_the_aggregated_direction_and_head_gradients():
    encoder, heads, x, y = _tiny_model()
    _, losses = _losses(encoder, heads, x, y)
    shared = list(encoder.parameters())
    J, _ = jacobian(losses, shared)
    expected = J.mean(0)
    _, losses = _losses(encoder, heads, x, y)
    d = Mean().backward(losses, shared, task_params=list(heads.parameters()))
    assert torch.allclose(d, expected, atol=1e-6)
    flat = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.allclose(flat, expected, atol=1e-6)
    # Each head gets its own task gradient (the plain sum: the other task does not touch it).
    encoder2, heads2, x, y = _tiny_model()
    _, losses2 = _losses(encoder2, heads2, x, y)
    losses2[0].backward()
    for p, q in zip(heads[0].parameters(), heads2[0].parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_backward_representation_mode_uses_weights_from_the_representation():
    encoder, heads, x, y = _tiny_model()
    z, losses = _losses(encoder, heads, x, y)
    w = FirstTask().backward(losses, list(encoder.parameters()), representation=z)
    assert torch.equal(w, torch.tensor([1.0, 0.0]))
    encoder2, heads2, x, y = _tiny_model()
    _, losses2 = _losses(encoder2, heads2, x, y)
    losses2[0].backward()
    for p, q in zip(encoder.parameters(), encoder2.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_registry_is_importable_without_torch_and_lists_methods():
    import subprocess
    import sys

    code = "import sys, reference_impls; n = reference_impls.names(); assert 'torch' not in sys.modules; print(len(n))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(reference_impls.names()) > 0


def test_create_rejects_unknown_names():
    with pytest.raises(KeyError, match="unknown method"):
        reference_impls.create("no-such-method")


@pytest.mark.parametrize("K", [1, 2, 8, 9])
def test_gramian_and_loss_checks_at_small_and_large_k(K):
    """gramian() and check_losses() check K ≤ 8 on Python floats (a finite sum proves finiteness) and larger K with a
    torch reduction: both ways, NaN and inf in J or the losses raise NonFiniteError, a finite J whose Gramian
    overflows says so, and entries whose sum overflows although each is finite are accepted."""
    from reference_impls.core.aggregator import check_losses, gramian

    J = torch.randn(K, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    assert torch.equal(gramian(J), J @ J.T)
    for bad in (float("nan"), float("inf"), -float("inf")):
        J_bad = J.clone()
        J_bad[K - 1, 1] = bad
        with pytest.raises(NonFiniteError, match="Jacobian contains NaN"):
            gramian(J_bad)
        losses = torch.ones(K, dtype=torch.float64)
        losses[K - 1] = bad
        with pytest.raises(NonFiniteError, match="losses contain NaN"):
            check_losses(losses, K, required=True)
    with pytest.raises(NonFiniteError, match="overflows"):
        gramian(J * 1e160)  # entries ~1e320: inf in float64
    big = torch.zeros(K, 1, dtype=torch.float64)
    big[:, 0] = 1.3e154  # every M_ij = 1.69e308 is finite; their sum is not
    assert torch.equal(gramian(big), big @ big.T)
    assert torch.equal(check_losses(torch.full((K,), 1e308, dtype=torch.float64), K, required=True), torch.full((K,), 1e308, dtype=torch.float64))
