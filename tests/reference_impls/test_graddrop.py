"""GradDrop (Chen et al., NeurIPS 2020): sign purity, one-sign masks, Monte-Carlo keep rates, activation path."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError, jacobian
from reference_impls.gradient_manipulation.graddrop import GradDrop
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base



def _signs_agree(J):
    """Columns where every row is ≥ 0 or every row is ≤ 0."""
    return (J >= 0).all(0) | (J <= 0).all(0)


def test_golden_j_base():
    J = j_base()
    d = GradDrop(seed=0)(J)
    # column 0: Σ∇ = 2, Σ|∇| = 10, P = 0.6: keep +6 if P > U else −4; columns 1, 2 agree in sign: plain sum 2
    U = torch.rand(3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.tensor([6.0 if 0.6 > U[0] else -4.0, 2.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(d, expected, rtol=0, atol=0)
    torch.testing.assert_close(GradDrop().sign_purity(J), torch.tensor([0.6, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(d, torch.tensor([-4.0, 2.0, 2.0], dtype=torch.float64))  # pinned: seed 0 draws U_0 > 0.6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_same_sign_coordinates_are_summed_and_kept_contributions_share_one_sign(dtype):
    for name, J in random_jacobians(dtype=dtype):
        method = GradDrop(seed=7)
        P = method.sign_purity(J)
        d = method(J)
        agree = _signs_agree(J)
        # wherever all ∇_i share a sign: P ∈ {0, 1} (or ½ on all-zero columns) and the output is the plain sum
        assert bool(((P[agree] == 0) | (P[agree] == 1) | (J[:, agree] == 0).all(0)).all()), name
        torch.testing.assert_close(d[agree], J[:, agree].sum(0), msg=name)
        # ℓ = 0: at every coordinate the output is the sum of the positive parts or of the negative parts
        positive = J.clamp_min(0).sum(0)
        negative = J.clamp_max(0).sum(0)
        assert bool(((d == positive) | (d == negative)).all()), name
        # and the masks keep contributions of one sign only
        method.reset()
        M = method.masks(J)
        kept = M * J
        assert bool(((kept >= 0).all(0) | (kept <= 0).all(0)).all()), name
        method.reset()
        torch.testing.assert_close(method(J), d, rtol=0, atol=0)  # reset() re-seeds


def test_monte_carlo_keep_rate_equals_sign_purity():
    J = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0], [-1.0, 1.0, -1.5, -0.2, 4.0], [0.5, 0.5, 0.25, -1.0, -2.0]], dtype=torch.float64)
    method = GradDrop(seed=123)
    P = method.sign_purity(J)  # (5,)
    draws = 100_000
    signed = J[:, None, :].expand(3, draws, 5)  # the same gradients, 10^5 independent U per coordinate
    M = method.masks(signed)  # (3, draws, 5)
    positive_kept = (M * (signed > 0)).sum(0) > 0  # (draws, 5): the positive sign was picked
    rate = positive_kept.double().mean(0)
    assert float((rate - P).abs().max()) < 0.01, (rate, P)
    negative_kept = (M * (signed < 0)).sum(0) > 0
    assert not bool((positive_kept & negative_kept).any())  # never both signs
    assert bool((positive_kept | negative_kept).all())  # every column of J has both signs: one is always kept


def test_leak_one_gives_the_plain_sum_and_leak_interpolates():
    for name, J in random_jacobians(per_shape=2):
        torch.testing.assert_close(GradDrop(leak=1.0)(J), J.sum(0), msg=name)
        d0 = GradDrop(leak=0.0, seed=3)(J)
        d_half = GradDrop(leak=0.5, seed=3)(J)  # same U: ℓ·Σ∇_i + (1 − ℓ)·GradDrop_0
        torch.testing.assert_close(d_half, 0.5 * J.sum(0) + 0.5 * d0, msg=name)


def test_one_leak_per_loss_as_lingvo():
    """lingvo's SetLosses takes (loss, leak_ratio) pairs: out = Σ_i (ℓ_i + (1 − ℓ_i) M_i) ⊙ ∇_i, masks from all K."""
    gen = torch.Generator().manual_seed(4)
    for name, J in random_jacobians(per_shape=2, shapes=[(2, 10), (3, 20), (5, 50)]):
        K = J.shape[0]
        leak = torch.rand(K, generator=gen, dtype=torch.float64)
        leak[0] = 1.0  # a main task whose gradient passes unchanged
        d = GradDrop(leak=tuple(leak.tolist()), seed=3)(J)
        M = GradDrop(seed=3).masks(J)  # the same U stream: the same masks, (K, n)
        expected = ((leak[:, None] + (1 - leak[:, None]) * M) * J).sum(0)  # written from the formula
        torch.testing.assert_close(d, expected, rtol=1e-12, atol=1e-12 * float(J.abs().max()), msg=name)
        activation_path = GradDrop(leak=tuple(leak.tolist()), seed=3).transform(J)  # the activation-gradient path
        torch.testing.assert_close(activation_path, expected, rtol=1e-12, atol=1e-12 * float(J.abs().max()), msg=name)
        # equal leaks are the single leak
        torch.testing.assert_close(GradDrop(leak=(0.3,) * K, seed=3)(J), GradDrop(leak=0.3, seed=3)(J), msg=name)
    with pytest.raises(ValueError, match="2 leaks given for 3 losses"):
        GradDrop(leak=(0.0, 1.0))(torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=(0.0, 1.5))


def test_activation_sign_variant_is_the_sign_flipped_problem():
    gen = torch.Generator().manual_seed(2)
    for name, J in random_jacobians(per_shape=1):
        s = torch.where(torch.rand(J.shape[1], generator=gen) < 0.5, -1.0, 1.0).double()
        lhs = GradDrop(seed=5, activations_sign=s)(J)
        rhs = s * GradDrop(seed=5)(s * J)  # M(s⊙J) ⊙ J = s ⊙ (M(s⊙J) ⊙ (s⊙J)) since s² = 1
        torch.testing.assert_close(lhs, rhs, rtol=0, atol=0, msg=name)


def test_degenerate_inputs():
    for name, J in degenerate_jacobians().items():
        d = GradDrop(seed=1)(J)
        assert torch.isfinite(d).all(), name
        if name in ("all-zero", "identical", "single-task"):
            torch.testing.assert_close(d, J.sum(0), msg=name)
        if name == "opposite":  # each coordinate keeps exactly one of g_j, −g_j
            assert bool((d.abs() == J[0].abs()).all()), name
        if name == "one-zero-row":
            torch.testing.assert_close(d, GradDrop(seed=1)(J[[0, 2]]), msg=name)  # a zero row changes nothing
    base = degenerate_jacobians()["huge-scale"] / 1e15
    for c in (1e15, 1e-15):  # P is scale-free: the output is exactly homogeneous
        torch.testing.assert_close(GradDrop(seed=4)(c * base), c * GradDrop(seed=4)(base), rtol=1e-15, atol=0)
    assert float(GradDrop().sign_purity(torch.zeros(2, 3)).sub(0.5).abs().max()) == 0.0  # P = ½ where Σ|∇_i| = 0


def test_bad_inputs():
    with pytest.raises(NonFiniteError):
        GradDrop()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(NonFiniteError):
        GradDrop().transform(torch.tensor([[float("inf")]]))
    with pytest.raises(ValueError, match="leak"):
        GradDrop(leak=1.5)
    with pytest.raises(ValueError, match="columns"):
        GradDrop(activations_sign=torch.ones(2))(j_base())
    with pytest.raises(ValueError, match="do not match"):
        GradDrop().transform(torch.ones(2, 4, 3), torch.ones(4, 2))


def _net(seed=0):
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(4, 5).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(5, 1).double() for _ in range(3)])
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randn(8, 3, dtype=torch.float64)
    return encoder, heads, x, y


def _forward(encoder, heads, x, y):
    Z = torch.tanh(encoder(x))  # (B, 5); tanh makes sign(Z) vary
    return Z, [((h(Z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]


def test_activation_hook_sends_graddrop_of_the_activation_gradients_into_the_encoder():
    encoder, heads, x, y = _net()
    Z, losses = _forward(encoder, heads, x, y)
    # independent computation of the expected gradient at Z
    G = torch.stack([torch.autograd.grad(f, Z, retain_graph=True)[0] for f in losses])  # (K, B, h)
    signed = (torch.sign(Z.detach()) * G).sum(1)  # ∇_i = Σ_batch sign(Z) ⊙ ∂f_i/∂Z, (K, h)
    P = 0.5 * (1 + signed.sum(0) / signed.abs().sum(0))
    U = torch.rand(P.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    M = ((P > U) & (signed > 0)) | ((P < U) & (signed < 0))  # (K, h)
    expected_Z_grad = (M[:, None, :] * G).sum(0)  # (B, h)
    expected_encoder = torch.autograd.grad(Z, list(encoder.parameters()), grad_outputs=expected_Z_grad, retain_graph=True)
    expected_heads = torch.autograd.grad(sum(losses), list(heads.parameters()), retain_graph=True)
    assert not torch.allclose(expected_Z_grad, G.sum(0))  # the test would notice a plain sum

    method = GradDrop(seed=11)
    seen = {}
    handle = method.attach(losses, Z)
    Z.register_hook(lambda g: seen.setdefault("Z", g))  # runs after GradDrop's hook: what the encoder receives
    sum(losses).backward()
    handle.remove()
    torch.testing.assert_close(seen["Z"], expected_Z_grad)
    for p, g in zip(encoder.parameters(), expected_encoder):
        torch.testing.assert_close(p.grad, g)
    for p, g in zip(heads.parameters(), expected_heads):
        torch.testing.assert_close(p.grad, g)
    # transform() on the activation gradients gives the same tensor with the same seed
    method.reset()
    torch.testing.assert_close(method.transform(G, Z.detach()), expected_Z_grad)


def test_backward_on_parameters_matches_the_aggregator_and_refuses_the_representation_mode():
    encoder, heads, x, y = _net(1)
    shared, task = list(encoder.parameters()), list(heads.parameters())
    Z, losses = _forward(encoder, heads, x, y)
    J, head_grads = jacobian(losses, shared, task)
    expected = GradDrop(seed=9)(J)
    Z, losses = _forward(encoder, heads, x, y)
    d = GradDrop(seed=9).backward(losses, shared, task)
    torch.testing.assert_close(d, expected)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected)
    for p, g in zip(task, head_grads):
        torch.testing.assert_close(p.grad, g)
    Z, losses = _forward(encoder, heads, x, y)
    with pytest.raises(TypeError, match="not a weighting"):
        GradDrop().backward(losses, shared, task, representation=Z)


def test_two_row_numpy_path_is_the_tensor_path_bit_for_bit(monkeypatch):
    """Two rows of at most 64 entries run the masked sum in NumPy, float64 rows of at most 16 on Python floats
    (GradDrop._kept_sum2): over 100 Jacobians of each
    two-task family (tests/reference_impls/two_task_inputs.py), float64 and float32, with the same seed (the same
    random stream U), d equals that of the tensor path (forced by setting the size threshold to 0) bit for bit,
    and both raise the same error where one does (NaN/inf)."""
    import reference_impls.gradient_manipulation.graddrop as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    for dtype in (torch.float64, torch.float32):
        fast, general = GradDrop(seed=3), GradDrop(seed=3)
        for family, J in all_two_task_jacobians(100, dtype) + [("nan", torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=dtype))]:
            out = []
            for method, small in ((fast, module._SMALL_N), (general, 0)):
                with monkeypatch.context() as m:
                    m.setattr(module, "_SMALL_N", small)
                    try:
                        out.append(method(J))
                    except Exception as error:  # noqa: BLE001 - compared below
                        out.append(type(error))
            if isinstance(out[0], type) or isinstance(out[1], type):
                assert out[0] == out[1] == NonFiniteError, family
            else:
                assert torch.equal(out[0], out[1]), (family, dtype)
