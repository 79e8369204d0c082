"""DB-MTL (Lin et al., arXiv 2308.12029): log-loss gradients, EMA, and equal-magnitude rescaling."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError, jacobian
from reference_impls.gradient_weighting.db_mtl import DBMTL
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base
from tests.reference_impls.test_pcgrad import JacobianPasses


def _losses_for(J, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(J.shape[0], generator=g, dtype=torch.float64).to(J.dtype) * 5 + 0.1


def _balanced(G):
    """(max_j ||G_j||) Σ_i G_i / ||G_i||, written independently of the module."""
    norms = G.norm(dim=1)
    return sum(norms.max() * G[i] / norms[i] for i in range(G.shape[0]) if norms[i] > 0)


def test_golden_j_base():
    J = j_base()
    losses = torch.tensor([1.0, 2.0], dtype=torch.float64)
    d = DBMTL()(J, losses)
    # by hand: ĝ_1 = 0.1·g_1/1 = (−0.4, 0.1, 0.1), ĝ_2 = 0.1·g_2/2 = (0.3, 0.05, 0.05),
    # ||ĝ_1|| = √0.18, ||ĝ_2|| = √0.095, d = ĝ_1 + √(0.18/0.095)·ĝ_2
    by_hand = torch.tensor([-0.4, 0.1, 0.1]) + (0.18 / 0.095) ** 0.5 * torch.tensor([0.3, 0.05, 0.05])
    torch.testing.assert_close(d, by_hand.double(), rtol=0, atol=1e-7)
    torch.testing.assert_close(d, torch.tensor([0.0129483, 0.1688247, 0.1688247], dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_equal_magnitudes_and_ema_closed_form_on_random_jacobians(dtype, rtol):
    for name, J in random_jacobians(dtype=dtype):
        losses = _losses_for(J)
        method = DBMTL(beta=0.9, beta_sigma=0.5)
        G_ref = torch.zeros_like(J, dtype=torch.float64)
        gen = torch.Generator().manual_seed(1)
        for t in range(1, 5):
            Jt = J * (1 + 0.3 * torch.randn(J.shape[0], 1, generator=gen, dtype=torch.float64)).to(dtype)
            d = method(Jt, losses)
            beta_t = 0.9 / t**0.5
            G_ref = beta_t * G_ref + (1 - beta_t) * Jt.double() / (losses.double() + 1e-8)[:, None]
            norms = G_ref.norm(dim=1)
            expected = _balanced(G_ref)
            err = float((d.double() - expected).norm() / (norms.max() * J.shape[0]))  # d may vanish (collinear rows)
            assert err <= rtol, f"{name} step {t}: relative error {err:.2e}"


def test_beta_zero_is_the_closed_form_without_ema():
    for name, J in random_jacobians(per_shape=2):
        losses = _losses_for(J, seed=3)
        method = DBMTL(beta=0.0)
        for _ in range(3):  # no memory: the same answer every step
            d = method(J, losses)
            expected = _balanced(J / (losses + 1e-8)[:, None])
            torch.testing.assert_close(d, expected, rtol=1e-10, atol=1e-12, msg=name)


def test_constant_inputs_give_a_geometric_warm_up_of_the_ema():
    J = j_base()
    losses = torch.tensor([0.5, 3.0], dtype=torch.float64)
    d_inf = DBMTL(beta=0.0)(J, losses)
    method = DBMTL()
    for t in range(1, 8):  # ĝ_t = (1 − 0.9^t) ∇f̃ and d is homogeneous of degree 1 in ĝ
        torch.testing.assert_close(method(J, losses), (1 - 0.9**t) * d_inf, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("eps,rtol", [(0.0, 1e-12), (1e-8, 1e-6)])
def test_loss_scale_invariance_over_several_steps(eps, rtol):
    gen = torch.Generator().manual_seed(5)
    for name, J in random_jacobians(per_shape=2):
        K = J.shape[0]
        c = torch.exp(4 * torch.randn(K, generator=gen, dtype=torch.float64))  # scales from ~1e-5 to ~1e5
        if eps > 0:  # ε/(c_i f_i) is the only scale-dependent term: keep c_i f_i ≫ ε
            c = c.clamp_min(1.0)
        plain, scaled = DBMTL(eps=eps), DBMTL(eps=eps)
        for t in range(4):
            Jt = J + 0.1 * t * torch.randn(J.shape, generator=gen, dtype=torch.float64)
            losses = _losses_for(J, seed=t)
            d = plain(Jt, losses)
            d_scaled = scaled(c[:, None] * Jt, c * losses)  # f_i → c_i f_i scales g_i by c_i too
            err = float((d - d_scaled).norm() / d.norm().clamp_min(1e-300))
            assert err <= rtol, f"{name} step {t}: not scale invariant (relative error {err:.2e})"


def _biquad_run(method_factory, scales, steps=150, lr=0.05):
    """Plain GD on f_i = s_i ||x − a_i||² (a_1 = 0, a_2 = e_1), 6 starts, one method instance per start."""
    gen = torch.Generator().manual_seed(0)
    X = 2 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    A = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    s = torch.tensor(scales, dtype=torch.float64)
    methods = [method_factory() for _ in range(X.shape[0])]
    traj = [X.clone()]
    for _ in range(steps):
        F = s * ((X[:, None, :] - A) ** 2).sum(-1)  # (B, K)
        J = 2 * s[None, :, None] * (X[:, None, :] - A)  # (B, K, n)
        X = X - lr * torch.stack([m(J[b], F[b]) for b, m in enumerate(methods)])
        traj.append(X.clone())
    return torch.stack(traj)  # (steps + 1, B, n)


class _Sum:
    def __call__(self, J, losses):
        return J.sum(0)


def test_toy_trajectories_do_not_depend_on_the_loss_scales():
    for eps, tol in ((0.0, 1e-9), (1e-8, 1e-5)):  # with ε > 0 the only difference is ε/(s_i f_i)
        balanced = _biquad_run(lambda: DBMTL(eps=eps), (1.0, 1.0))
        imbalanced = _biquad_run(lambda: DBMTL(eps=eps), (1.0, 100.0))
        gap = float((balanced - imbalanced).abs().max())
        assert gap < tol, f"DB-MTL (eps={eps}) trajectories differ by {gap:.2e} between loss scales (1, 1) and (1, 100)"
    # the plain sum, for contrast, is pulled to the heavy task's minimum a_2 = e_1
    sum_gap = float((_biquad_run(_Sum, (1.0, 1.0), lr=0.004) - _biquad_run(_Sum, (1.0, 100.0), lr=0.004))[-1].abs().max())
    assert sum_gap > 0.3
    # and DB-MTL makes progress: every start ends within 0.15 of the Pareto set [0, 1] × {0}
    end = balanced[-1]
    dist = torch.sqrt((end[:, 0] - end[:, 0].clamp(0, 1)) ** 2 + end[:, 1] ** 2)
    assert float(dist.max()) < 0.15, dist


def test_degenerate_inputs():
    for name, J in degenerate_jacobians().items():
        losses = torch.ones(J.shape[0], dtype=J.dtype)
        d = DBMTL(beta=0.0)(J, losses)
        assert torch.isfinite(d).all(), name
        if name == "all-zero":
            assert torch.equal(d, torch.zeros_like(d))
        if name == "one-zero-row":  # the zero row contributes nothing
            torch.testing.assert_close(d, _balanced(J[[0, 2]] / (1 + 1e-8)))
        if name == "opposite":  # equal magnitudes, opposite directions
            torch.testing.assert_close(d, torch.zeros_like(d), atol=1e-12, rtol=0)
        if name in ("identical", "collinear"):  # every row rescaled to the largest norm along ±g
            g = J[0] / J[0].norm()
            norms = J.norm(dim=1) / (1 + 1e-8)
            signs = torch.sign(J @ g)
            torch.testing.assert_close(d, norms.max() * signs.sum() * g)
        if name == "single-task":
            torch.testing.assert_close(d, J[0] / (1 + 1e-8))
    # d is homogeneous of degree 1 in J: tiny and huge gradient scales are handled exactly (D1)
    base = degenerate_jacobians()["huge-scale"] / 1e15
    ones = torch.ones(2, dtype=torch.float64)
    d0 = DBMTL(beta=0.0)(base, ones)
    for c in (1e15, 1e-15):
        torch.testing.assert_close(DBMTL(beta=0.0)(c * base, ones), c * d0, rtol=1e-12, atol=0)
    dm = DBMTL(beta=0.0)(degenerate_jacobians()["mixed-scale"], ones)
    mixed = degenerate_jacobians()["mixed-scale"]
    torch.testing.assert_close(dm, _balanced(mixed / (1 + 1e-8)), rtol=1e-10, atol=0)


@pytest.mark.parametrize("k", [-76, 100])  # 2^-76 ≈ 1.3e-23, 2^100 ≈ 1.3e+30
def test_float32_direction_is_exactly_homogeneous_at_extreme_scales(k):
    """Regression (issue 7 item 5): in float32 ||ĝ_i||² underflowed to 0 at 1e-23 (d = 0) and
    overflowed at 1e+30 (inf/inf = NaN, silently). A power-of-two scale is exact, so over three EMA
    steps d(2^k J) = 2^k d(J) bit for bit."""
    for name, J in random_jacobians(seed=9, dtype=torch.float32, shapes=[(2, 5), (3, 20), (5, 50)]):
        losses = _losses_for(J)
        method, method_scaled = DBMTL(beta_sigma=0.5), DBMTL(beta_sigma=0.5)
        for t in range(3):
            Jt = J * (1 + t) if t else J  # changing rows: the EMA matters
            d, d_scaled = method(Jt, losses), method_scaled(torch.ldexp(Jt, torch.tensor(k)), losses)
            assert torch.equal(d_scaled, torch.ldexp(d, torch.tensor(k))), (name, t)
            assert bool(d.abs().max() > 0), name


@pytest.mark.parametrize("scale", [1e-23, 1e30])
def test_float32_at_extreme_scales_matches_float64(scale):
    """Per task: the component of d along each unit ĝ_i matches float64 to 1e-5 of K·max_j ||ĝ_j||
    (d = max_j ||ĝ_j|| Σ_i ĝ_i/||ĝ_i|| is a sum of K unit vectors times the largest norm)."""
    for name, J in random_jacobians(seed=9, shapes=[(2, 5), (3, 20), (5, 50)]):
        losses = _losses_for(J)
        d64 = DBMTL(beta=0.0)(J, losses)
        d32 = DBMTL(beta=0.0)((J * scale).float(), losses.float()).double() / scale
        G = J / (losses + 1e-8)[:, None]  # the log-loss gradients, (K, n)
        units = G / G.norm(dim=1, keepdim=True)
        err = ((d32 - d64) @ units.T).abs().max()  # worst task
        assert float(err) <= 1e-5 * J.shape[0] * float(G.norm(dim=1).max()), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_certified_norms_allocate_no_ema_sized_tensor(dtype):
    """Speed regression (brief H10): when the plain norms ||ĝ_i|| are certified (each in [√(tiny/eps), max)),
    a DB-MTL step from the third on creates no K×n tensor (the new ĝ goes into the previous state's
    buffer) and reads K×n tensors four times (β ĝ, the addition of the scaled J, the norms and
    Σ_i ĝ_i/||ĝ_i||), on every random J of the sampler; over 5 steps d matches the EMA
    and balanced direction recomputed in float64 (so the swapped buffers hold the right state).
    Before: five K×n tensors a step (β ĝ, the EMA, |ĝ| and two row scalings) and ten passes (with
    the finiteness scans of J and ĝ)."""
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name, J in random_jacobians(seed=14, dtype=dtype, shapes=[(2, 50), (5, 200)]):
        losses = _losses_for(J).to(dtype)
        method, g_hat = DBMTL(beta_sigma=0.5), torch.zeros(J.shape, dtype=torch.float64)
        steps = [J * (1 + t) for t in range(5)]  # changing Jacobians, made outside the recording
        for t, Jt in enumerate(steps, start=1):
            with JacobianPasses(J.numel()) as passes:
                d = method(Jt, losses)
            if t >= 3:  # steps 1 and 2 allocate the state and its second buffer
                assert passes.allocations == [] and len(passes.reads) == 4, (name, t, passes.reads, passes.allocations)
            beta_t = 0.9 / t**0.5
            g_hat = beta_t * g_hat + (1 - beta_t) * Jt.double() / (losses.double() + 1e-8)[:, None]  # ĝ_t
            scale = J.shape[0] * float(g_hat.norm(dim=1).max())
            torch.testing.assert_close(d.double(), _balanced(g_hat), rtol=0, atol=tol * scale, msg=f"{name} step {t}")


def test_overflow_raises_and_leaves_the_state_unchanged():
    J = torch.tensor([[3e38, 3e38], [1.0, -1.0]], dtype=torch.float32)  # ||g_1|| = 4.2e38 overflows float32
    method = DBMTL(beta=0.0)
    with pytest.raises(NonFiniteError, match="overflows"):
        method(J, torch.ones(2))
    small = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    method, reference = DBMTL(), DBMTL()
    method(small, torch.ones(2)), reference(small, torch.ones(2))
    with pytest.raises(NonFiniteError, match="overflows"):
        method(small * 3e38, torch.full((2,), 1e-9))  # ∇f/(f + ε) = 3e38/1.1e-8 overflows in the EMA
    assert method._t == 1
    torch.testing.assert_close(method(small, torch.ones(2)), reference(small, torch.ones(2)), rtol=0, atol=0)


def test_bad_inputs():
    J = j_base()
    for bad in (float("nan"), float("inf"), -float("inf")):  # found through ĝ's norms (no scan of J), state kept
        method = DBMTL()
        method(torch.eye(2), torch.ones(2))
        with pytest.raises(NonFiniteError, match="Jacobian contains NaN or infinite"):
            method(torch.tensor([[1.0, bad], [0.0, 1.0]]), torch.ones(2))
        assert method._t == 1 and torch.equal(method._g_hat, 0.1 * torch.eye(2)), bad
    with pytest.raises(NonFiniteError):
        DBMTL()(J, torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="needs the task losses"):
        DBMTL()(J)
    with pytest.raises(ValueError, match="f_i \\+ eps > 0"):
        DBMTL()(J, torch.tensor([1.0, -1.0]))
    method = DBMTL()
    method(J, torch.ones(2))
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(3, 3, dtype=torch.float64), torch.ones(3))
    method.reset()
    method(torch.ones(3, 3, dtype=torch.float64), torch.ones(3))
    with pytest.raises(ValueError, match="beta"):
        DBMTL(beta=1.0)


def test_backward_matches_the_explicit_jacobian_and_heads_get_log_gradients():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 3).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1).double() for _ in range(2)])
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64) * torch.tensor([1.0, 30.0])
    shared, task = list(encoder.parameters()), list(heads.parameters())

    def losses():
        z = torch.tanh(encoder(x))
        return [((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)]

    reference, method = DBMTL(), DBMTL()
    for _ in range(3):
        f = losses()
        J, _ = jacobian(f, shared)
        expected = reference(J, torch.stack([v.detach() for v in f]))
        log_f = [torch.log(v + 1e-8) for v in losses()]
        _, head_expected = jacobian(log_f, shared, task)
        for p in shared + task:
            p.grad = None
        d = method.backward(losses(), shared, task)
        torch.testing.assert_close(d, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected, rtol=1e-10, atol=1e-12)
        for p, g in zip(task, head_expected):
            torch.testing.assert_close(p.grad, g)
        with torch.no_grad():
            for p in shared + task:
                p -= 0.01 * p.grad
    with pytest.raises(TypeError, match="representation"):
        method.backward(losses(), shared, task, representation=torch.zeros(1))


def test_small_k_fast_path_is_the_tensor_path(monkeypatch):
    """At small K on the CPU, the per-row scalars (losses, norms) are Python floats / NumPy in the Jacobian's
    dtype, and a tiny float64 Jacobian (K·n ≤ 64) takes the whole EMA step in NumPy: over a sequence of 100
    Jacobians of each two-task family (tests/reference_impls/two_task_inputs.py; the EMA carries over), with
    random positive losses, d equals that of the tensor path (forced by setting the small-K threshold to 0) bit
    for bit in float32 and to 8·K·ε·max_j ||ĝ_j|| per entry in float64 (NumPy's norms and sums round differently
    from torch's; |d_k| ≤ K·max_j ||ĝ_j||), and both raise the same error where one does."""
    import reference_impls.gradient_weighting.db_mtl as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        fast, general = DBMTL(), DBMTL()
        for family, J in all_two_task_jacobians(100, dtype):
            losses = torch.rand(2, generator=gen, dtype=dtype) * 10.0 ** float(torch.randint(-3, 4, (1,), generator=gen))
            out = []
            for method, small in ((fast, module._SMALL_K), (general, 0)):
                with monkeypatch.context() as m:
                    m.setattr(module, "_SMALL_K", small)
                    try:
                        out.append(method(J, losses))
                    except Exception as error:  # noqa: BLE001 - compared below
                        out.append(type(error))
            if isinstance(out[0], type) or isinstance(out[1], type):
                assert out[0] == out[1], family
                fast.reset(), general.reset()
            elif dtype == torch.float32:
                assert torch.equal(out[0], out[1]), (family, dtype)
            else:
                top = float(general._g_hat.norm(dim=1).max())  # max_j ||ĝ_j||
                assert float((out[0] - out[1]).abs().max()) <= 8 * 2 * float(torch.finfo(dtype).eps) * top, family
