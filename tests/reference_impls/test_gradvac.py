"""GradVac (Wang et al., ICLR 2021): the claims of the paper, checked exactly or on a toy."""

import math

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_manipulation.gradvac import GradVac, gradvac_coefficients
from reference_impls.gradient_manipulation.pcgrad import PCGrad, draw_orders
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base
from tests.reference_impls.test_pcgrad import JacobianPasses


def direct_gradvac(J, orders, phi_hat, beta):
    """The paper's pseudo-code on n-dimensional vectors (independent of the Gramian version)."""
    phi_hat = phi_hat.clone()
    out = []
    for i in range(J.shape[0]):
        g = J[i].clone()
        for j in orders[i].tolist():
            gj = J[j]
            if float(g.norm()) == 0 or float(gj.norm()) == 0:
                continue
            rho = max(-1.0, min(1.0, float(g @ gj) / (float(g.norm()) * float(gj.norm()))))
            goal = float(phi_hat[i, j])
            if rho < goal:
                a = float(g.norm()) * (goal * math.sqrt(1 - rho**2) - rho * math.sqrt(1 - goal**2))
                a /= float(gj.norm()) * math.sqrt(1 - goal**2)
                g = g + a * gj
            phi_hat[i, j] = (1 - beta) * goal + beta * rho
        out.append(g)
    return torch.stack(out).sum(0), phi_hat


def test_one_modification_reaches_the_similarity_goal_exactly():
    gen = torch.Generator().manual_seed(0)
    for goal in (-0.5, 0.0, 0.3, 0.9):
        for _ in range(10):
            J = torch.randn(2, 7, generator=gen, dtype=torch.float64)
            rho = float(torch.nn.functional.cosine_similarity(J[0], J[1], dim=0))
            if rho >= goal:
                J[1] = -J[1]
                rho = -rho
            if rho >= goal:
                continue
            phi_hat = torch.full((2, 2), goal, dtype=torch.float64)
            C, _ = gradvac_coefficients(J @ J.T, draw_orders(2, gen), phi_hat, beta=0.01)
            g1 = C[0] @ J
            cos = float(g1 @ J[1]) / (float(g1.norm()) * float(J[1].norm()))
            assert abs(cos - goal) < 1e-12, (cos, goal)


def test_first_step_equals_pcgrad_with_the_same_orders():
    # φ̂ = 0 at the start: the modification is −⟨g_i', g_j⟩/||g_j||² g_j, PCGrad's projection.
    for _, J in asserts.random_jacobians(seed=1, shapes=[(2, 3), (3, 20), (5, 50), (8, 16)]):
        d_vac = GradVac(seed=4)(J)
        d_pc = PCGrad(seed=4)(J)
        assert torch.allclose(d_vac, d_pc, rtol=1e-10, atol=1e-10 * float(J.norm()))


def test_no_change_when_every_similarity_meets_its_goal():
    gen = torch.Generator().manual_seed(2)
    J = torch.rand(5, 8, generator=gen, dtype=torch.float64)  # all cosines > 0 = φ̂
    method = GradVac(beta=0.5)
    for _ in range(3):  # φ̂ stays below the (positive) cosines: (1 − β)φ̂ + βρ < ρ
        assert torch.allclose(method(J), J.sum(0), rtol=1e-14, atol=0)
    assert torch.allclose(GradVac()(J), J.sum(0), rtol=1e-14, atol=0)


def test_gramian_implementation_equals_direct_pseudo_code_over_several_steps():
    gen = torch.Generator().manual_seed(3)
    for K in (2, 3, 5, 8):
        J0 = torch.randn(K, 12, generator=gen, dtype=torch.float64)
        phi_direct = torch.zeros(K, K, dtype=torch.float64)
        method = GradVac(beta=0.3, seed=K)
        orders_gen = torch.Generator().manual_seed(K)
        for step in range(6):
            J = J0 + 0.5 * torch.randn(K, 12, generator=gen, dtype=torch.float64)
            d = method(J)
            expected, phi_direct = direct_gradvac(J, draw_orders(K, orders_gen), phi_direct, 0.3)
            assert torch.allclose(d, expected, rtol=1e-10, atol=1e-10 * float(J.norm())), (K, step)
            assert torch.allclose(method.phi_hat, phi_direct, atol=1e-12)
        assert (method.phi_hat.abs() > 0).sum() == K * (K - 1)  # the goals moved away from 0


def test_ema_update():
    # K = 2: each task has one target, so φ̂_12 and φ̂_21 follow the EMA of cos(g_1, g_2) exactly.
    gen = torch.Generator().manual_seed(5)
    beta = 0.2
    method = GradVac(beta=beta)
    expected = 0.0
    for _ in range(4):
        J = torch.randn(2, 6, generator=gen, dtype=torch.float64)
        rho = float(torch.nn.functional.cosine_similarity(J[0], J[1], dim=0))
        method(J)
        expected = (1 - beta) * expected + beta * rho
        assert abs(float(method.phi_hat[0, 1]) - expected) < 1e-14
        assert abs(float(method.phi_hat[1, 0]) - expected) < 1e-14
        assert float(method.phi_hat[0, 0]) == 0.0
    method.reset()
    assert method.phi_hat is None
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(2, 3, dtype=torch.float64))
        method(torch.ones(3, 3, dtype=torch.float64))


def test_golden_value():
    # First step: φ̂ = 0, so GradVac = PCGrad on J_base (TorchJD's PCGrad value); second step with
    # β = 0.01: goal φ̂ = 0.01·cos(g_1, g_2) = −0.01·22/√(18·38), computed by the direct pseudo-code.
    method = GradVac()
    d1 = method(j_base())
    assert torch.allclose(d1, torch.tensor([0.5848, 3.8012, 3.8012], dtype=torch.float64), atol=1e-4)
    assert abs(float(method.phi_hat[0, 1]) + 0.01 * 22 / math.sqrt(18 * 38)) < 1e-15
    d2 = method(j_base())
    g1, g2 = j_base()
    rho = -22 / math.sqrt(18 * 38)  # cos(g_1, g_2)
    goal = 0.01 * rho

    def a(norm_i, norm_j):  # the paper's coefficient with the goal φ̂
        return norm_i * (goal * math.sqrt(1 - rho**2) - rho * math.sqrt(1 - goal**2)) / (norm_j * math.sqrt(1 - goal**2))

    by_hand = g1 + a(18**0.5, 38**0.5) * g2 + g2 + a(38**0.5, 18**0.5) * g1
    assert torch.allclose(d2, by_hand, atol=1e-12)
    assert torch.allclose(d2, torch.tensor([0.5924, 3.7914, 3.7914], dtype=torch.float64), atol=1e-4)


def test_float32_matches_float64():
    for _, J in asserts.random_jacobians(seed=6, shapes=[(2, 3), (3, 20), (8, 16)]):
        m64, m32 = GradVac(beta=0.5, seed=1), GradVac(beta=0.5, seed=1)
        for _ in range(2):
            d64, d32 = m64(J), m32(J.float())
            assert d32.dtype == torch.float32
            assert torch.allclose(d32.double(), d64, rtol=1e-4, atol=1e-4 * float(J.norm()))


@pytest.mark.parametrize("k", [-76, 100])  # 2^-76 ≈ 1.3e-23, 2^100 ≈ 1.3e+30
def test_float32_direction_is_exactly_homogeneous_at_extreme_scales(k):
    """Regression (issue 7 item 5): in float32 at 1e-23 the Gramian underflowed and every pair was
    skipped (the plain sum came back); at 1e+30 it overflowed. Power-of-two scales are exact, so over
    three steps d(2^k J) = 2^k d(J) bit for bit and φ̂ is the same."""
    for name, J in asserts.random_jacobians(seed=8, dtype=torch.float32, shapes=[(2, 5), (3, 20), (5, 50)]):
        m, m_scaled = GradVac(beta=0.5, seed=1), GradVac(beta=0.5, seed=1)
        for _ in range(3):
            d, d_scaled = m(J), m_scaled(torch.ldexp(J, torch.tensor(k)))
            assert torch.equal(d_scaled, torch.ldexp(d, torch.tensor(k))), name
        assert torch.equal(m.phi_hat, m_scaled.phi_hat), name


@pytest.mark.parametrize("scale", [1e-23, 1e30])
def test_float32_at_extreme_scales_matches_float64(scale):
    """Per task, over two steps: the float32 component of d along each g_i matches float64 to 1e-4 of
    Σ_j |w_j| ||g_j||."""
    for name, J in asserts.random_jacobians(seed=8, shapes=[(2, 5), (3, 20), (5, 50)]):
        m64, m32 = GradVac(beta=0.5, seed=1), GradVac(beta=0.5, seed=1)
        units = J / J.norm(dim=1, keepdim=True)  # (K, n)
        for _ in range(2):
            w64 = m64.weights(J)
            d32 = m32((J * scale).float()).double() / scale
            err = ((d32 - w64 @ J) @ units.T).abs().max()  # worst task
            bound = float(w64.abs() @ J.norm(dim=1))
            assert float(err) <= 1e-4 * bound, (name, float(err) / bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_certified_gramian_reads_the_jacobian_twice_and_allocates_nothing_of_its_size(dtype):
    """Speed regression (brief H10): when the plain J Jᵀ is certified (finite, every M_ii ≥ tiny/eps),
    each GradVac step reads J exactly twice (J Jᵀ and wᵀJ, as TorchJD's GradVac) and creates no K×n
    temporary, over three steps on every random J of the sampler. Before: six passes and three K×n
    temporaries (the power-of-two row scaling done on every call)."""
    for name, J in asserts.random_jacobians(seed=13, dtype=dtype, shapes=[(2, 50), (5, 200)]):
        method, reference = GradVac(beta=0.5, seed=1), GradVac(beta=0.5, seed=1)
        for step in range(3):
            with JacobianPasses(J.numel()) as passes:
                d = method(J)
            assert len(passes.reads) == 2 and passes.allocations == [], (name, step, passes.reads, passes.allocations)
            assert torch.equal(d, reference.weights(J) @ J), (name, step)


def test_overflowing_update_raises():
    with pytest.raises(NonFiniteError, match="overflows"):
        GradVac()(torch.full((2, 4), 3e38, dtype=torch.float32))


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    for k, J in cases.items():
        method = GradVac(beta=0.5)
        for _ in range(3):
            d = method(J)
            assert torch.isfinite(d).all() and torch.isfinite(method.phi_hat).all(), k
    g = cases["identical"][0]
    assert torch.equal(GradVac()(cases["all-zero"]), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(GradVac()(cases["identical"]), 3 * g)
    assert torch.allclose(GradVac()(cases["single-task"]), g)
    assert GradVac()(cases["opposite"]).abs().max() < 1e-12
    # zero row: no cosine, no EMA update for its pairs
    method = GradVac(beta=0.5)
    method(cases["one-zero-row"])
    assert float(method.phi_hat[1].abs().max()) == 0.0 and float(method.phi_hat[:, 1].abs().max()) == 0.0
    # a goal of exactly 1 cannot be met by a finite coefficient: the pair is left unmodified
    method = GradVac()
    method.phi_hat = torch.ones(2, 2, dtype=torch.float64)
    assert torch.allclose(method(j_base()), j_base().sum(0))
    for k in ("huge-scale", "tiny-scale"):
        base = cases[k] / cases[k].norm()
        assert torch.allclose(GradVac()(cases[k]) / cases[k].norm(), GradVac()(base), rtol=1e-12)


def test_bad_input():
    with pytest.raises(NonFiniteError):
        GradVac()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="beta"):
        GradVac(beta=1.5)


def test_toy_two_quadratics_reach_the_pareto_set():
    # f_i(x) = ||x − a_i||², a_1 = 0, a_2 = e_1 in R³; PS = segment [a_1, a_2]. 12 starts, GD η = 0.05,
    # 400 steps, β = 0.01. At Pareto-optimal points the gradients are opposite (cos = −1 < φ̂), and
    # the update Σ g_i' vanishes there, so the iterates stop on the segment.
    A = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    X = 4.0 * torch.rand(12, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64) - 2.0
    methods = [GradVac(seed=b) for b in range(X.shape[0])]  # one state per run
    for _ in range(400):
        for b in range(X.shape[0]):
            X[b] = X[b] - 0.05 * methods[b](2.0 * (X[b] - A))
    dist = (X[:, 1:].norm(dim=1) ** 2 + (X[:, 0] - X[:, 0].clamp(0, 1)) ** 2).sqrt()
    assert float(dist.max()) < 1e-6, dist


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(GradVac(beta=0.5, seed=5), reference=GradVac(beta=0.5, seed=5))


def test_two_task_fast_path_is_the_general_path_bit_for_bit(monkeypatch):
    """K = 2 runs one GradVac step on Python floats (GradVac._weights2): over a sequence of 100 Jacobians of each
    two-task family (tests/reference_impls/two_task_inputs.py; the similarity goals φ̂ carry over from step to
    step), float64 and float32, d and φ̂ after every step equal those of the NumPy path (forced by disabling the
    fast path) bit for bit."""
    import reference_impls.gradient_manipulation.gradvac as gradvac_module
    import reference_impls.gradient_manipulation.pcgrad as pcgrad_module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    for dtype in (torch.float64, torch.float32):
        fast, general = GradVac(beta=0.3), GradVac(beta=0.3)
        for family, J in all_two_task_jacobians(100, dtype):
            if not bool(torch.isfinite(J @ J.T).all()):
                continue
            d_fast = fast(J)
            with monkeypatch.context() as m:
                m.setattr(pcgrad_module, "exact_gramian2", lambda J: None)
                m.setattr(gradvac_module, "gramian2_entries", lambda M: None)
                d_general = general(J)
            assert torch.equal(d_fast, d_general), (family, dtype)
            assert torch.equal(fast.phi_hat, general.phi_hat), (family, dtype)
