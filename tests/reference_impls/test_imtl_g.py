"""IMTL-G (Liu et al., ICLR 2021): the claims of the paper, checked exactly or on a toy."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.imtl_g import IMTLG
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base


def _full_rank(shapes=None, seed=0, dtype=torch.float64):
    for name, J in asserts.random_jacobians(seed=seed, dtype=dtype, **({"shapes": shapes} if shapes else {})):
        K, n = J.shape
        if K <= n and torch.linalg.matrix_rank(J.double()) == K:
            yield name, J


def paper_closed_form(J):
    """α_{2:K} = g_1 Uᵀ (D Uᵀ)^{-1}, U_i = u_1 − u_i, D_i = g_1 − g_i, α_1 = 1 − Σ α_{2:K} (the paper's closed form)."""
    u = J / J.norm(dim=1, keepdim=True)
    U = u[0:1] - u[1:]
    D = J[0:1] - J[1:]
    alpha = torch.linalg.solve((D @ U.T).T, (J[0] @ U.T)[:, None])[:, 0]  # row vector times inverse
    return torch.cat([1 - alpha.sum(0, keepdim=True), alpha])


def test_equal_projections_on_the_unit_gradients_and_weights_sum_to_one():
    method = IMTLG()
    for name, J in _full_rank():
        w = method.weights(J)
        d = method(J)
        asserts.assert_weighted(J, d, w)
        assert abs(float(w.sum()) - 1.0) < 1e-12, name
        proj = (J / J.norm(dim=1, keepdim=True)) @ d  # ⟨d, u_i⟩
        spread = float(proj.max() - proj.min())
        assert spread <= 1e-10 * max(float(proj.abs().max()), 1e-300), (name, spread)


def test_equals_the_paper_closed_form_and_the_inverse_gramian_form():
    method = IMTLG()
    for name, J in _full_rank():
        if J.shape[0] < 2:
            continue
        w = method.weights(J)
        M = J @ J.T
        v = torch.linalg.solve(M, M.diagonal().sqrt())  # α ∝ M^{-1} 𝔫
        assert torch.allclose(w, v / v.sum(), rtol=1e-8, atol=1e-10), name
        if torch.linalg.cond(M) < 1e8:
            assert torch.allclose(w, paper_closed_form(J), rtol=1e-7, atol=1e-9), name


def test_loss_scaling_changes_the_direction_only_by_the_predicted_factor():
    # g_i → c_i g_i leaves the cosine matrix unchanged, so α(CJ) = C⁻¹α/Σ(α_i/c_i) and
    # d(CJ) = d(J)/Σ_i(α_i/c_i); the factor is positive whenever α ≥ 0.
    gen = torch.Generator().manual_seed(1)
    method = IMTLG()
    positive = 0
    for name, J in _full_rank():
        c = torch.exp(3 * torch.randn(J.shape[0], generator=gen, dtype=torch.float64))  # c ∈ [e^-9, e^9]
        alpha = method.weights(J)
        factor = 1.0 / float((alpha / c).sum())
        d_scaled = method(c[:, None] * J)
        d = method(J)
        assert torch.allclose(d_scaled, factor * d, rtol=1e-7, atol=1e-9 * abs(factor) * float(d.norm())), name
        assert torch.allclose(method.weights(c[:, None] * J), factor * alpha / c, rtol=1e-7, atol=1e-12), name
        if bool((alpha >= 0).all()):
            assert factor > 0
            positive += 1
    assert positive > 3


def test_weights_can_be_negative_and_loss_scaling_can_reverse_the_direction():
    # IMTL-G is not a convex combination (K = 2 always gives α ≥ 0; K = 3 need not). With α_3 < 0,
    # scaling loss 3 by c_3 = 0.1 makes Σ α_i/c_i < 0: the update direction reverses.
    J = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.2]], dtype=torch.float64)
    w = IMTLG().weights(J)
    assert float(w.min()) < -0.8 and abs(float(w.sum()) - 1) < 1e-12
    c = torch.tensor([1.0, 1.0, 0.1], dtype=torch.float64)
    factor = 1.0 / float((w / c).sum())
    assert factor < 0
    assert torch.allclose(IMTLG()(c[:, None] * J), factor * IMTLG()(J), atol=1e-12)


def test_permutation_invariant():
    for _, J in _full_rank():
        asserts.assert_permutation_invariant(IMTLG(), J, rel=1e-9)


def test_float32():
    for name, J in _full_rank(shapes=[(2, 3), (3, 20), (5, 50)], dtype=torch.float32):
        if name.endswith("v2"):  # reduced rank in float64 is full rank after rounding to float32
            continue
        d = IMTLG()(J)
        assert d.dtype == torch.float32
        proj = (J / J.norm(dim=1, keepdim=True)).double() @ d.double()
        assert float(proj.max() - proj.min()) <= 1e-3 * float(proj.abs().max()), name


def test_golden_value():
    # By hand: M = [[18, −22], [−22, 38]], 𝔫 = (√18, √38); α ∝ M⁻¹𝔫 normalised to Σα = 1.
    J = j_base()
    M = J @ J.T
    v = torch.linalg.solve(M, torch.tensor([18**0.5, 38**0.5], dtype=torch.float64))
    alpha = v / v.sum()
    d = IMTLG()(J)
    assert torch.allclose(d, alpha @ J, atol=1e-12)
    assert torch.allclose(d, torch.tensor([0.0767, 1.0000, 1.0000], dtype=torch.float64), atol=1e-4)  # TorchJD's value
    assert torch.allclose(IMTLG().weights(J), torch.tensor([0.5923, 0.4077], dtype=torch.float64), atol=1e-4)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    method = IMTLG()
    for k, J in cases.items():
        for dtype in (torch.float64, torch.float32):
            assert torch.isfinite(method(J.to(dtype))).all(), k
    g = cases["identical"][0]
    assert torch.equal(method(cases["all-zero"]), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(method.weights(cases["identical"]), torch.full((3,), 1 / 3, dtype=torch.float64))
    assert torch.allclose(method(cases["identical"]), g)
    assert torch.allclose(method(cases["single-task"]), g)
    assert torch.allclose(method.weights(cases["opposite"]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert method(cases["opposite"]).abs().max() < 1e-12  # as the paper's closed form
    assert method(cases["collinear"]).abs().max() < 1e-12  # all projections equal 0
    assert method(cases["collinear"].float()).abs().max() < 1e-5
    # a zero row gets weight 0; the others are solved as if it were absent
    w = method.weights(cases["one-zero-row"])
    assert float(w[1]) == 0.0
    assert torch.allclose(w[[0, 2]], method.weights(cases["one-zero-row"][[0, 2]]))
    for k in ("huge-scale", "tiny-scale"):
        assert torch.allclose(method.weights(cases[k]), method.weights(cases[k] / cases[k].norm()), rtol=1e-12)
    # mixed scales: equal projections still hold
    J = cases["mixed-scale"]
    proj = (J / J.norm(dim=1, keepdim=True)) @ method(J)
    assert float(proj.max() - proj.min()) <= 1e-10 * float(proj.abs().max())
    # no α with Σα = 1 has equal projections (g_3 = (g_1 + g_2)/2 forces d = 0, then Σα = 0): w = 0
    J = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    assert torch.equal(method.weights(J), torch.zeros(3, dtype=torch.float64))
    # but [[1, 0], [0, 1], [−1, 0]] has one: α = (½, 0, ½), d = 0
    J = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(method.weights(J), torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64), atol=1e-12)


def test_bad_input():
    with pytest.raises(NonFiniteError):
        IMTLG()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_toy_equal_projections_along_the_trajectory_and_loss_scale():
    # f_1 = ||x − a_1||², f_2 = 100·||x − a_2||² (scale imbalance), a_1 = 0, a_2 = e_1 in R².
    # IMTL-G's d has equal projections on both unit gradients, so the first-order decrease rate of
    # each loss relative to its gradient norm is the same: neither task dominates. GD η = 0.02,
    # 300 steps from 6 starting points: the iterates reach the Pareto set (segment [a_1, a_2]);
    # measured max distance 1.5e-6 (the slowest runs end near a_1, where ||g_1|| → 0).
    A = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    scale = torch.tensor([[1.0], [100.0]], dtype=torch.float64)
    X = 4.0 * torch.rand(6, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 2.0
    method = IMTLG()
    for _ in range(300):
        for b in range(X.shape[0]):
            J = 2.0 * scale * (X[b] - A)  # (2, 2)
            d = method(J)
            proj = (J / J.norm(dim=1, keepdim=True)) @ d
            assert float(proj.max() - proj.min()) <= 1e-9 * float(proj.abs().max()) + 1e-14 * float(J.norm())
            assert float(proj.min()) >= -1e-14 * float(J.norm())  # K = 2: α ≥ 0, no loss increases (1st order)
            X[b] = X[b] - 0.02 * d
    dist = (X[:, 1].abs() ** 2 + (X[:, 0] - X[:, 0].clamp(0, 1)) ** 2).sqrt()
    assert float(dist.max()) < 1e-5, dist


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(IMTLG())


def test_rank_deficient_and_wide_jacobians_still_have_equal_projections():
    # K > n or reduced rank: the conditions ⟨d, u_i⟩ = c are still solvable (often with c = 0, d = 0,
    # α on the null space of J's rows); the solver returns an α with Σα = 1 that meets them.
    method = IMTLG()
    for name, J in asserts.random_jacobians(seed=7):
        w = method.weights(J)
        d = w @ J
        assert abs(float(w.sum()) - 1.0) < 1e-10, name
        proj = (J / J.norm(dim=1, keepdim=True)) @ d
        assert float(proj.max() - proj.min()) <= 1e-12 * float(J.norm()) * float(w.abs().sum()), name


def test_two_task_fast_path_is_the_general_closed_form_bit_for_bit(monkeypatch):
    """K = 2 runs the closed form α = (𝔫_2, 𝔫_1)/(𝔫_1 + 𝔫_2) on Python floats: on 100 Jacobians of each two-task
    family (tests/reference_impls/two_task_inputs.py), float64 and float32, the weights are those of the NumPy
    path (forced by disabling the fast path) bit for bit."""
    import reference_impls.gradient_weighting.imtl_g as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    for dtype in (torch.float64, torch.float32):
        for family, J in all_two_task_jacobians(100, dtype):
            if not bool(torch.isfinite(J @ J.T).all()):
                continue
            fast = IMTLG().weights(J)
            with monkeypatch.context() as m:
                m.setattr(module, "gramian2_entries", lambda M: None)
                general = IMTLG().weights(J)
            assert torch.equal(fast, general), (family, dtype)
