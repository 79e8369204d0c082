"""Aligned-MTL (Senushkin et al., CVPR 2023): the claims of the paper, checked exactly or on a toy."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.aligned_mtl import FLOAT32_EPS, AlignedMTL, balance_transformation
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base


def _well_conditioned_full_rank(seed=0, dtype=torch.float64):
    for name, J in asserts.random_jacobians(seed=seed, dtype=dtype):
        K, n = J.shape
        if K > n or name.endswith("v2"):
            continue
        s = torch.linalg.svdvals(J.double())
        if float(s[-1] ** 2) > float(s[0] ** 2) * K * FLOAT32_EPS * 10:  # no eigenvalue dropped
            yield name, J


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
def test_aligned_gradients_have_condition_number_one(mode):
    # Ĝ = B J: Ĝ Ĝᵀ = σ² I (orthogonal rows of equal norm σ) for full-rank J.
    checked = 0
    for name, J in _well_conditioned_full_rank():
        B, sigma2 = balance_transformation(J @ J.T, mode)
        G_hat = B @ J
        K = J.shape[0]
        err = float((G_hat @ G_hat.T - sigma2 * torch.eye(K, dtype=J.dtype)).abs().max())
        assert err <= 1e-8 * float(sigma2), (name, err)
        assert float(torch.linalg.cond(G_hat)) == pytest.approx(1.0, abs=1e-6)
        d = AlignedMTL(scale_mode=mode)(J)
        assert torch.allclose(d, G_hat.sum(0), rtol=1e-9, atol=1e-9 * float(G_hat.norm()))  # d = Ĝᵀ𝟙
        checked += 1
    assert checked >= 8


def test_scale_modes_pick_the_documented_eigenvalue():
    gen = torch.Generator().manual_seed(1)
    J = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    lam = torch.linalg.eigvalsh(J @ J.T)  # ascending
    for mode, expected in (("min", lam[0]), ("median", lam[1]), ("rmse", lam.mean())):  # lower median of 4
        _, sigma2 = balance_transformation(J @ J.T, mode)
        assert abs(float(sigma2 - expected)) <= 1e-12 * float(lam[-1])
    # the directions differ only by the scalar σ: d_mode / σ_mode is the same for all modes
    ds = [AlignedMTL(scale_mode=m)(J) / balance_transformation(J @ J.T, m)[1].sqrt() for m in ("min", "median", "rmse")]
    assert torch.allclose(ds[0], ds[1], rtol=1e-10) and torch.allclose(ds[0], ds[2], rtol=1e-10)
    with pytest.raises(ValueError, match="scale_mode"):
        AlignedMTL(scale_mode="max")


def test_d_is_the_scaled_polar_factor():
    # J = U S Wᵀ  ⇒  B J = σ U Wᵀ and d = σ W Uᵀ p: the singular values of J play no role except σ.
    for name, J in _well_conditioned_full_rank(seed=2):
        U, S, Wh = torch.linalg.svd(J, full_matrices=False)
        sigma = S[-1]  # "min": σ² = λ_min = s_min²
        expected = sigma * Wh.T @ (U.T @ torch.ones(J.shape[0], dtype=J.dtype))
        assert torch.allclose(AlignedMTL()(J), expected, rtol=1e-8, atol=1e-9 * float(J.norm())), name


def test_permutation_invariant_and_positively_homogeneous():
    for _, J in asserts.random_jacobians(seed=3):
        asserts.assert_permutation_invariant(AlignedMTL(), J, rel=1e-8)
        d = AlignedMTL()(J)
        for c in (1e-3, 5.0):
            assert torch.allclose(AlignedMTL()(c * J), c * d, rtol=1e-8, atol=1e-10 * c * float(J.norm()))


def test_rank_deficient_input_is_aligned_on_the_retained_subspace():
    # Rank r < K: eigenvalues below λ_max·K·ε₃₂ are dropped and Ĝ Ĝᵀ = σ² V_r V_rᵀ (a scaled projector).
    checked = 0
    for name, J in asserts.random_jacobians(seed=4):
        K = J.shape[0]
        B, sigma2 = balance_transformation(J @ J.T)
        lam, V = torch.linalg.eigh(J @ J.T)
        keep = lam > lam.max() * K * FLOAT32_EPS
        if bool(keep.all()):
            continue
        P = V[:, keep] @ V[:, keep].T
        G_hat = B @ J
        assert float((G_hat @ G_hat.T - sigma2 * P).abs().max()) <= 1e-8 * float(sigma2), name
        checked += 1
    assert checked >= 5


def test_float32():
    for name, J in _well_conditioned_full_rank(seed=5, dtype=torch.float32):
        d = AlignedMTL()(J)
        assert d.dtype == torch.float32
        assert torch.allclose(d.double(), AlignedMTL()(J.double()), rtol=1e-3, atol=1e-4 * float(J.norm())), name


def test_golden_value():
    # By hand: M = [[18, −22], [−22, 38]], λ = 28 ∓ √584; σ = √λ_min; α = σ M^{-1/2} 𝟙.
    J = j_base()
    M = J @ J.T
    lam, V = torch.linalg.eigh(M)
    alpha = lam[0].sqrt() * (V / lam.sqrt()) @ V.T @ torch.ones(2, dtype=torch.float64)
    assert abs(float(lam[0]) - (28 - 584**0.5)) < 1e-12
    d = AlignedMTL()(J)
    assert torch.allclose(d, alpha @ J, atol=1e-12)
    assert torch.allclose(d, torch.tensor([0.42656, 1.93467, 1.93467], dtype=torch.float64), atol=1e-5)
    # TorchJD's documented [0.2133, 0.9673, 0.9673] uses the mean preference 𝟙/K
    d_mean = AlignedMTL(pref_vector=[0.5, 0.5])(J)
    assert torch.allclose(d_mean, torch.tensor([0.2133, 0.9673, 0.9673], dtype=torch.float64), atol=1e-4)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    method = AlignedMTL()
    for k, J in cases.items():
        for dtype in (torch.float64, torch.float32):
            assert torch.isfinite(method(J.to(dtype))).all(), k
    g = cases["identical"][0]
    assert torch.equal(method(cases["all-zero"]), torch.zeros(4, dtype=torch.float64))
    # collinear rows c_i g (rank 1): B = v vᵀ with v = c/||c||, so d = (𝟙ᵀc)·g
    assert torch.allclose(method(cases["identical"]), 3 * g)
    assert method(cases["opposite"]).abs().max() < 1e-12
    assert torch.allclose(method(cases["collinear"]), 3.5 * g)
    assert torch.allclose(method(cases["single-task"]), g)
    # a zero row spans a dropped direction: weight 0, the rest as if it were absent
    w = method.weights(cases["one-zero-row"])
    assert abs(float(w[1])) < 1e-12
    assert torch.allclose(w[[0, 2]], method.weights(cases["one-zero-row"][[0, 2]]), atol=1e-12)
    for k in ("huge-scale", "tiny-scale"):
        assert torch.allclose(method.weights(cases[k]), method.weights(cases[k] / cases[k].norm()), rtol=1e-10)
    # mixed scales 1e8 / 1e-8: λ_min/λ_max = 1e-32 is below the tolerance, the small task is dropped
    w = method.weights(cases["mixed-scale"])
    assert abs(float(w[0]) - 1.0) < 1e-12 and abs(float(w[1])) < 1e-12


def test_bad_input():
    with pytest.raises(NonFiniteError):
        AlignedMTL()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="pref_vector"):
        AlignedMTL(pref_vector=[1.0, 2.0, 3.0])(j_base())


@pytest.mark.parametrize("p", [(1.0, 1.0), (1.0, 3.0)])
def test_toy_converges_to_the_preference_weighted_optimum(p):
    # f_i = ||x − a_i||², a_1 = 0, a_2 = 2e_1: off the segment J has full rank and d ≠ 0; on it the
    # rows are collinear, c_i g, and d = (Σ p_i c_i)·g vanishes where p_1||g_1|| = p_2||g_2||, i.e. at
    # the minimiser (p_1 a_1 + p_2 a_2)/(p_1 + p_2) of Σ p_i f_i — the paper's "pre-defined
    # trade-off". 8 starts in [−2, 4]², GD η = 0.1, 300 steps. Measured max error 4.7e-4: the
    # distance to the segment stalls where λ_min/λ_max falls below K·ε₃₂ (rank tolerance, D2).
    A = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    X = 6.0 * torch.rand(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 2.0
    method = AlignedMTL(pref_vector=p)
    for _ in range(300):
        for b in range(X.shape[0]):
            X[b] = X[b] - 0.1 * method(2.0 * (X[b] - A))
    target = (p[0] * A[0] + p[1] * A[1]) / sum(p)
    assert float((X - target).norm(dim=1).max()) < 2e-3


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(AlignedMTL())


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_two_task_closed_form_equals_the_eigendecomposition(scale_mode, monkeypatch):
    """K = 2 uses the 2×2 eigen-decomposition in closed form (balance_weights2). On 100 Jacobians of each two-task
    family (tests/reference_impls/two_task_inputs.py), float64 and float32, and preferences 𝟙 and (0.3, 2),
    the weights α = B p equal the general path's (torch.linalg.eigh, forced by disabling the fast path) to
    1e3·ε₆₄·cond(M_r)·||B||·||p|| (cond and ||B|| = σ/√λ_min of the retained eigenvalues; measured ≤ 7e-16·||B||·||p||):
    α is a matrix of norm ||B|| applied to p, and the eigen-solver itself is accurate to ε·cond."""
    import reference_impls.gradient_weighting.aligned_mtl as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    eps64 = float(torch.finfo(torch.float64).eps)
    for pref in (None, (0.3, 2.0)):
        p_norm = float(torch.tensor(pref or (1.0, 1.0)).norm())
        for dtype in (torch.float64, torch.float32):
            for family, J in all_two_task_jacobians(100, dtype):
                M = J @ J.T
                if not bool(torch.isfinite(M).all()):
                    continue
                method = AlignedMTL(scale_mode=scale_mode, pref_vector=pref)
                fast = method.weights(J)
                with monkeypatch.context() as m:
                    m.setattr(module, "gramian2_entries", lambda M: None)
                    general = method.weights(J)
                lam = torch.linalg.eigvalsh(M.double())
                kept = lam[lam > lam.max() * 2 * FLOAT32_EPS]
                if kept.numel() == 0:
                    assert torch.equal(fast, general)  # rank 0: α = 0
                    continue
                sigma2 = kept.mean() if scale_mode == "rmse" else kept.min()
                norm_B = float((sigma2 / kept.min()).sqrt())
                cond = float(kept.max() / kept.min())
                tol = 1e3 * eps64 * cond * norm_B * p_norm
                if dtype == torch.float32:
                    tol = max(tol, 2.0 * float(torch.finfo(torch.float32).eps) * float(general.abs().max()))  # rounding to float32
                assert float((fast.double() - general.double()).norm()) <= tol, (family, dtype, fast, general)
