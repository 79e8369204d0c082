"""PCGrad (Yu et al., NeurIPS 2020, Algorithm 1): the claims of the paper, checked exactly or on a toy."""

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import min_norm_weights
from reference_impls.gradient_manipulation.pcgrad import PCGrad, draw_orders, pcgrad_coefficients
from reference_impls.gradient_weighting.upgrad import UPGrad
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base


class JacobianPasses(TorchDispatchMode):
    """Records the ATen operations that read a tensor of at least ``size`` entries (views excluded:
    they move no data) and those that allocate one (an output sharing no storage with the inputs)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.reads, self.allocations = size, [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr() for t in inputs}
        name = func.overloadpacket.__name__
        if not func.is_view and any(t.numel() >= self.size for t in inputs):
            self.reads.append(name)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() >= self.size and t.untyped_storage().data_ptr() not in storages:
                self.allocations.append(name)
        return out


def direct_pcgrad(J, orders):
    """Algorithm 1 on n-dimensional vectors, written independently of the Gramian version."""
    out = []
    for i in range(J.shape[0]):
        g = J[i].clone()
        for j in orders[i].tolist():
            ip = float(g @ J[j])
            if ip < 0:
                g = g - ip / float(J[j] @ J[j]) * J[j]  # projection on the original g_j
        out.append(g)
    return torch.stack(out).sum(0)


def _all_orders(K):
    """Every (K, K−1) combination of per-task orders (small K only)."""
    per_task = [list(itertools.permutations([j for j in range(K) if j != i])) for i in range(K)]
    for choice in itertools.product(*per_task):
        yield torch.tensor(choice, dtype=torch.int64).reshape(K, K - 1)


def test_gramian_implementation_equals_direct_algorithm():
    gen = torch.Generator().manual_seed(0)
    for K in range(1, 9):
        for trial in range(5):
            n = [3, 10, 40][trial % 3]
            J = torch.randn(K, n, generator=gen, dtype=torch.float64)
            if trial == 4:
                J = J * torch.logspace(-2, 2, K, dtype=torch.float64)[:, None]
            orders = draw_orders(K, gen)
            C = pcgrad_coefficients(J @ J.T, orders)
            expected = direct_pcgrad(J, orders)
            assert torch.allclose(C.sum(0) @ J, expected, rtol=1e-10, atol=1e-10 * float(J.norm())), (K, trial)


def test_method_uses_its_seeded_orders():
    J = torch.randn(6, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    method = PCGrad(seed=3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        assert torch.allclose(method(J), direct_pcgrad(J, draw_orders(6, gen)), atol=1e-12)
    method.reset()
    assert torch.allclose(method(J), direct_pcgrad(J, draw_orders(6, torch.Generator().manual_seed(3))), atol=1e-12)
    fixed = PCGrad(random_order=False)
    assert torch.allclose(fixed(J), direct_pcgrad(J, draw_orders(6, None, random_order=False)), atol=1e-12)


def test_two_tasks_with_conflict_project_on_each_others_normal_plane():
    gen = torch.Generator().manual_seed(2)
    checked = 0
    for _ in range(100):
        J = torch.randn(2, 5, generator=gen, dtype=torch.float64)
        g1, g2 = J
        if float(g1 @ g2) >= 0:
            continue
        C = pcgrad_coefficients(J @ J.T, draw_orders(2, gen))
        pc1, pc2 = C @ J
        tol = 1e-12 * float(J.norm()) ** 2
        assert abs(float(pc1 @ g2)) < tol and abs(float(pc2 @ g1)) < tol
        d = PCGrad()(J)
        # ⟨d, g_1⟩ = ||g_1||² − ⟨g_1,g_2⟩²/||g_2||² ≥ 0 (Cauchy–Schwarz), and the same for g_2
        ip = float(g1 @ g2)
        assert abs(float(d @ g1) - (float(g1 @ g1) - ip**2 / float(g2 @ g2))) < tol
        assert abs(float(d @ g2) - (float(g2 @ g2) - ip**2 / float(g1 @ g1))) < tol
        asserts.assert_non_conflicting(J, d, rel=1e-12)
        checked += 1
    assert checked > 30


def test_without_conflict_the_update_is_the_sum():
    gen = torch.Generator().manual_seed(3)
    for K in (1, 2, 3, 5, 8):
        J = torch.rand(K, 6, generator=gen, dtype=torch.float64)  # positive entries: all ⟨g_i, g_j⟩ > 0
        assert torch.allclose(PCGrad()(J), J.sum(0), rtol=1e-14, atol=0)


def test_equals_upgrad_with_sum_preference_for_two_tasks():
    upgrad = UPGrad(pref_vector=[1.0, 1.0], norm_eps=0.0, reg_eps=0.0)
    for _, J in asserts.random_jacobians(seed=4, shapes=[(2, 1), (2, 3), (2, 10), (2, 50)], per_shape=10):
        assert torch.allclose(PCGrad()(J), upgrad(J), rtol=1e-10, atol=1e-10 * float(J.norm()))


def test_three_task_counterexample_conflicts_under_every_order():
    # A common descent direction exists (MGDA's min-norm point is nonzero, ||d_MGDA|| ≈ 0.50), yet for
    # each of the 8 possible order combinations PCGrad's d increases some loss: the no-conflict
    # guarantee of the paper's analysis is for K = 2 only.
    J = torch.tensor([[3.0, -1.0, -3.0], [-3.0, -3.0, -1.0], [3.0, 3.0, 3.0]], dtype=torch.float64)
    lam = min_norm_weights(J @ J.T)
    assert float((lam @ J).norm()) > 0.5
    for orders in _all_orders(3):
        d = pcgrad_coefficients(J @ J.T, orders).sum(0) @ J
        assert float((J @ d).min()) < -3.0


def test_golden_value():
    # TorchJD's documented value; by hand: ⟨g_1,g_2⟩ = −22, ||g_1||² = 18, ||g_2||² = 38,
    # d = g_1 + 22/38 g_2 + g_2 + 22/18 g_1.
    d = PCGrad()(j_base())
    g1, g2 = j_base()
    assert torch.allclose(d, g1 + 22 / 38 * g2 + g2 + 22 / 18 * g1, atol=1e-12)
    assert torch.allclose(d, torch.tensor([0.5848, 3.8012, 3.8012], dtype=torch.float64), atol=1e-4)


def test_float32_matches_float64():
    for _, J in asserts.random_jacobians(seed=5, shapes=[(2, 3), (3, 20), (8, 16)]):
        d64 = PCGrad(seed=1)(J)
        d32 = PCGrad(seed=1)(J.float())
        assert d32.dtype == torch.float32
        assert torch.allclose(d32.double(), d64, rtol=1e-4, atol=1e-4 * float(J.norm()))


@pytest.mark.parametrize("k", [-76, 100])  # 2^-76 ≈ 1.3e-23, 2^100 ≈ 1.3e+30
def test_float32_direction_is_exactly_homogeneous_at_extreme_scales(k):
    """Regression (issue 7 item 5): in float32 at 1e-23 the Gramian underflowed, every row looked like a
    zero row and the plain sum came back; at 1e+30 it overflowed. A power-of-two scale is exact, so
    d(2^k J) = 2^k d(J) must hold bit for bit (the normalised Gramian is the same for both)."""
    for name, J in asserts.random_jacobians(seed=7, dtype=torch.float32, shapes=[(2, 5), (3, 20), (5, 50)]):
        d = PCGrad(seed=1)(J)
        d_scaled = PCGrad(seed=1)(torch.ldexp(J, torch.tensor(k)))
        assert torch.equal(d_scaled, torch.ldexp(d, torch.tensor(k))), name


@pytest.mark.parametrize("scale", [1e-23, 1e30])
def test_float32_at_extreme_scales_matches_float64(scale):
    """Per task: the float32 component of d along each g_i matches float64 to 1e-4 of Σ_j |w_j| ||g_j||
    (the size of a float32 rounding of the weighted sum). Before the fix at 1e-23: cosine ≈ 0.92."""
    for name, J in asserts.random_jacobians(seed=7, shapes=[(2, 5), (3, 20), (5, 50)]):
        w64 = PCGrad(seed=1).weights(J)
        d64 = w64 @ J
        d32 = PCGrad(seed=1)((J * scale).float()).double() / scale
        bound = float(w64.abs() @ J.norm(dim=1))
        units = J / J.norm(dim=1, keepdim=True)  # (K, n)
        err = ((d32 - d64) @ units.T).abs().max()  # worst task
        assert float(err) <= 1e-4 * bound, (name, float(err) / bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_certified_gramian_reads_the_jacobian_twice_and_allocates_nothing_of_its_size(dtype):
    """Speed regression (brief H10): when the plain J Jᵀ is certified (finite, every M_ii ≥ tiny/eps), PCGrad
    reads J exactly twice, J Jᵀ and wᵀJ (what TorchJD's PCGrad does), and creates no K×n temporary, on
    every random J of the sampler. Before: |J|, its row maxima, two row scalings (three K×n temporaries),
    the scaled product and wᵀJ: six passes, 3-8x a plain J Jᵀ (390 ms against 47 ms at K = 32, n = 1e6)."""
    for name, J in asserts.random_jacobians(seed=11, dtype=dtype, shapes=[(2, 50), (5, 200)]):
        with JacobianPasses(J.numel()) as passes:
            d = PCGrad(seed=1)(J)
        assert len(passes.reads) == 2 and passes.allocations == [], (name, passes.reads, passes.allocations)
        assert torch.equal(d, PCGrad(seed=1).weights(J) @ J), name


@pytest.mark.parametrize("k", [-76, -74, -70, -64, 60])  # rows at ~1e-23 .. ~1e+18 beside rows of norm ~1
def test_float32_rows_outside_the_certified_range_take_the_scaled_gramian(k):
    """A float32 row at 2^-76..2^-64 has subnormal squares (few or no significant digits) and one at 2^60
    has M_ii ~1e37 near overflow: J Jᵀ is then not certified (M_ii < tiny/eps or not finite) and the
    power-of-two scaled Gramian is used. Per task, d matches float64 to 1e-4 of Σ_j |w_j| ||g_j||, on
    all 9 sampled J. A fast path that only rejected M_ii = 0 or inf misses at 2^-76 and 2^-74 (errors
    0.59 and 0.028 of the bound's scale, checked)."""
    for name, J in asserts.random_jacobians(seed=12, shapes=[(2, 50), (4, 50), (6, 40)]):
        J = J.clone()
        J[0] = torch.ldexp(J[0], torch.tensor(k))  # one row far from the others' scale
        w64 = PCGrad(seed=1).weights(J)
        d32 = PCGrad(seed=1)(J.float()).double()
        units = J / J.norm(dim=1, keepdim=True)  # (K, n)
        err = ((d32 - w64 @ J) @ units.T).abs().max()  # worst task
        assert float(err) <= 1e-4 * float(w64.abs() @ J.norm(dim=1)), (name, float(err))


def test_overflowing_update_raises():
    J = torch.full((2, 4), 3e38, dtype=torch.float32)  # finite rows whose sum overflows float32
    with pytest.raises(NonFiniteError, match="overflows"):
        PCGrad()(J)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    out = {k: PCGrad()(J) for k, J in cases.items()}
    for k, d in out.items():
        assert torch.isfinite(d).all(), k
    g = cases["identical"][0]
    assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(out["identical"], 3 * g)
    assert torch.allclose(out["single-task"], g)
    assert out["opposite"].abs().max() == 0
    assert out["collinear"].abs().max() < 1e-12  # every row is projected onto g⊥
    # a zero row is never a projection target and contributes nothing
    J = cases["one-zero-row"]
    assert torch.allclose(out["one-zero-row"], PCGrad()(J[[0, 2]]))
    for k in ("huge-scale", "tiny-scale"):
        base = cases[k] / cases[k].norm()
        assert torch.allclose(out[k] / cases[k].norm(), PCGrad()(base), rtol=1e-12)


def test_bad_input():
    with pytest.raises(NonFiniteError):
        PCGrad()(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))


def test_toy_two_quadratics_no_loss_increases_and_reaches_the_pareto_set():
    # f_i(x) = ||x − a_i||², a_1 = 0, a_2 = e_1 in R³; PS = segment [a_1, a_2]. 12 starts, GD η = 0.1, 200 steps.
    A = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    X = 4.0 * torch.rand(12, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64) - 2.0
    method = PCGrad()
    for _ in range(200):
        for b in range(X.shape[0]):
            J = 2.0 * (X[b] - A)  # (2, 3)
            d = method(J)
            asserts.assert_non_conflicting(J, d, rel=1e-12)  # K = 2: never increases a loss to first order
            X[b] = X[b] - 0.1 * d
    # distance to the segment: the off-axis part and the overshoot beyond the ends
    dist = (X[:, 1:].norm(dim=1) ** 2 + (X[:, 0] - X[:, 0].clamp(0, 1)) ** 2).sqrt()
    assert float(dist.max()) < 1e-8, dist


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(PCGrad(seed=5), reference=PCGrad(seed=5))


@pytest.mark.parametrize("random_order", [True, False])
def test_two_task_fast_path_is_the_general_path_bit_for_bit(random_order, monkeypatch):
    """K = 2 runs the coefficients on Python floats when J Jᵀ is the certified plain product (exact_gramian2): on
    100 Jacobians of each two-task family (tests/reference_impls/two_task_inputs.py), float64 and float32, d,
    the weights from J and from the Gramian equal the NumPy path's (forced by disabling the fast path) bit for
    bit, and both raise the same error where one does (NaN/overflow)."""
    import reference_impls.gradient_manipulation.pcgrad as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    def outputs(J, fast):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(module, "exact_gramian2", lambda J: None)
                m.setattr(module, "gramian2_entries", lambda M: None)
            method = PCGrad(random_order=random_order)
            try:
                return method(J), method.weights(J), method.weights_from_gramian((J @ J.T).double())
            except Exception as error:  # noqa: BLE001 - compared below
                return type(error)

    for dtype in (torch.float64, torch.float32):
        for family, J in all_two_task_jacobians(100, dtype):
            fast, general = outputs(J, True), outputs(J, False)
            if isinstance(fast, type) or isinstance(general, type):
                assert fast == general, (family, dtype)
            else:
                assert all(torch.equal(a, b) for a, b in zip(fast, general)), (family, dtype)
