"""SDMGrad (Xiao, Ban & Ji, NeurIPS 2023): the claims of the paper, checked exactly or on a toy."""

import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.mgda import MGDA
from reference_impls.gradient_weighting.sdmgrad import SDMGrad
from reference_impls.metrics import pareto_stationarity
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

LAMDAS = [0.0, 0.01, 0.3, 0.6, 5.0]


def _w_star(J, lamda):
    """Recover w* from the returned weights u = (w* + λ/K)/(1 + λ)."""
    K = J.shape[0]
    return SDMGrad(lamda).weights(J) * (1 + lamda) - lamda / K


def _assert_kkt(J, lamda, rel):
    # w* = argmin_Δ ½||Gᵀw + λg_0||²; with v = Gᵀw* + λg_0 the gradient in w_i is ⟨g_i, v⟩, so the KKT conditions are
    # ⟨g_i, v⟩ ≥ Σ_j w*_j ⟨g_j, v⟩ = ⟨Gᵀw*, v⟩ for all i, with equality where w*_i > 0.
    w = _w_star(J, lamda)
    assert float(w.min()) >= -1e-12 and abs(float(w.sum()) - 1.0) <= max(rel, 1e-12)
    v = w @ J + lamda * J.mean(0)
    inner = J @ v
    level = float((w @ J) @ v)
    norms = (J + lamda * J.mean(0)).norm(dim=1)  # ||p_i||, p_i = g_i + λg_0: the points of the min-norm problem
    # per task: rel·||p_i||·(||v|| + Σ_j w_j||p_j||), the second term the rounding bound of v
    tol = rel * norms * (float(v.norm()) + float(w.clamp_min(0) @ norms))
    assert bool((inner >= level - tol).all())
    assert bool(((inner - level).abs() <= tol)[w > 1e-9].all())


def test_kkt_on_random_jacobians():
    for _, J in asserts.random_jacobians():
        for lamda in LAMDAS:
            _assert_kkt(J, lamda, rel=1e-10)


def test_kkt_float32():
    for _, J in asserts.random_jacobians(dtype=torch.float32, shapes=[(3, 20), (8, 16), (32, 100)]):
        assert SDMGrad().weights(J).dtype == torch.float32
        w = SDMGrad(0.3).weights(J).double()
        assert torch.allclose(w, SDMGrad(0.3).weights(J.double()), atol=1e-4)


def test_direction_formula_and_limits():
    for _, J in asserts.random_jacobians(seed=1):
        g0 = J.mean(0)
        # d = (Gᵀw* + λ g_0)/(1 + λ)
        w = _w_star(J, 0.3)
        assert torch.allclose(SDMGrad(0.3)(J), (w @ J + 0.3 * g0) / 1.3, atol=1e-12 * float(J.norm()))
        # λ = 0 is MGDA; λ → ∞ tends to the mean gradient g_0 (error O(1/λ))
        assert torch.allclose(SDMGrad(0.0)(J), MGDA()(J), atol=1e-12 * float(J.norm()))
        err = [float((SDMGrad(lam)(J) - g0).norm()) for lam in (1e2, 1e4)]
        assert err[1] <= 1e-3 * float(J.norm()) and err[1] <= 0.02 * err[0] + 1e-12


def test_golden_value():
    # J_base: the shifted points g_i + 0.3 g_0 = (−3.7, 1.3, 1.3), (6.3, 1.3, 1.3) have their min-norm point at
    # (0, 1.3, 1.3) (w* = (0.63, 0.37)), so d = (0, 1.3, 1.3)/1.3 = (0, 1, 1), MGDA's direction here.
    J = j_base()
    assert torch.allclose(SDMGrad(0.3).weights(J), torch.tensor([0.63 + 0.15, 0.37 + 0.15], dtype=torch.float64) / 1.3)
    assert torch.allclose(SDMGrad(0.3)(J), torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64), atol=1e-12)
    # λ = 5: the shifted points (1, 6, 6), (11, 6, 6) have min-norm point (1, 6, 6) (w* = (1, 0)) ⇒ d = (1/6, 1, 1)
    assert torch.allclose(SDMGrad(5.0)(J), torch.tensor([1 / 6, 1.0, 1.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(SDMGrad(5.0).weights(J), torch.tensor([3.5, 2.5], dtype=torch.float64) / 6, atol=1e-12)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    out = {k: SDMGrad()(J) for k, J in cases.items()}
    for k, d in out.items():
        assert torch.isfinite(d).all(), k
    g = cases["identical"][0]
    assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(out["identical"], g, atol=1e-12)
    assert torch.allclose(out["single-task"], g, atol=1e-12)
    assert float(out["opposite"].abs().max()) <= 1e-12  # g_0 = 0 and 0 ∈ conv: d = 0
    for k in ("one-zero-row", "collinear", "huge-scale", "tiny-scale", "mixed-scale"):
        _assert_kkt(cases[k], 0.3, rel=1e-10)
    assert torch.allclose(out["huge-scale"], 1e15 * SDMGrad()(cases["huge-scale"] / 1e15), rtol=1e-12)
    with pytest.raises(NonFiniteError):
        SDMGrad()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="lamda"):
        SDMGrad(lamda=-0.1)



def test_toy_small_lambda_ends_on_the_pareto_set_large_lambda_near_the_average_optimum():
    # Measured (500 steps): λ = 0.3 ends at x_1 = −1.91, −4.05, 1.83 (x_2 ≈ −8.36/−8.38), PS ≤ 5e-8, like MGDA;
    # λ = 10 ends at x_1 = 0.06, 0.51, −0.07, x_2 = −8.355: near the average-loss optimum (0, −8.355).
    problem, x = asserts.run_cagrad_toy(SDMGrad(0.3), steps=500, lr=0.1)
    assert float(pareto_stationarity(problem.jacobian(x)).max()) < 1e-3
    assert float(problem.distance_to_pareto_set(x).max()) < 1e-2
    assert float(x[:, 0].abs().max()) > 1.0  # λ small: balancing is weak, end points depend on the init
    problem, x = asserts.run_cagrad_toy(SDMGrad(10.0), steps=500, lr=0.1)
    assert float(pareto_stationarity(problem.jacobian(x)).max()) < 1e-3
    assert float(x[:, 0].abs().max()) < 1.0
    assert float((x[:, 1] + 8.355).abs().max()) < 0.02


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(SDMGrad())


def test_stress_inputs_per_task_kkt():
    """200 seeded hard Jacobians (test_solvers.stress_jacobians), λ = 0.3: per-task KKT at 1e-9 (float64) /
    1e-3 (float32); all must pass."""
    from tests.reference_impls.test_solvers import stress_jacobians

    for name, J in stress_jacobians(4, 200):
        _assert_kkt(J.double(), 0.3, rel=1e-9) if J.dtype == torch.float64 else None
        if J.dtype == torch.float32:
            w = SDMGrad(0.3).weights(J)
            assert w.dtype == torch.float32 and torch.isfinite(w).all() and float(w.min()) >= 0, name


def test_vanishing_jacobian():
    # issue 7 item 3: J · 1e-155 raised numpy's "SVD did not converge"; now the same weights as J
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(SDMGrad(0.3).weights(J * 1e-155), SDMGrad(0.3).weights(J), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("lamda", [0.0, 0.3, 0.6])
def test_k2_float_path_equals_the_general_path(lamda, monkeypatch):
    """K = 2 runs on Python floats (SDMGrad._weights2: shifted_gramian's formula, then solvers.min_norm_weights2 with its
    per-task certificate). Against the general path (the float path switched off) on 300 seeded 2×2 Jacobians:
    generic, scales 1e-12..1e12 apart, identical, opposite, collinear, one zero row, float64 and float32. Weights equal
    to 1e-13 relative (the two paths add the four Gramian entries in possibly different orders; measured: bit for bit)."""
    from reference_impls.gradient_weighting import sdmgrad

    gen = torch.Generator().manual_seed(11)
    cases = []
    for trial in range(300):
        J = torch.randn(2, 4, generator=gen, dtype=torch.float64) * 10 ** (24 * torch.rand(2, 1, generator=gen) - 12)
        kind = trial % 6
        if kind == 1:
            J[1] = J[0]
        elif kind == 2:
            J[1] = -J[0]
        elif kind == 3:
            J[1] = -3.0 * J[0]
        elif kind == 4:
            J[1] = 0.0
        cases.append(J.to(torch.float32) if trial % 5 == 0 else J)
    fast = [SDMGrad(lamda).weights_from_gramian(J @ J.T) for J in cases]
    monkeypatch.setattr(sdmgrad, "gramian2_entries", lambda M: None)
    for J, w in zip(cases, fast):
        w_general = SDMGrad(lamda).weights_from_gramian(J @ J.T)
        assert w.dtype == w_general.dtype
        torch.testing.assert_close(w, w_general, rtol=1e-13, atol=0)


# Correlated Jacobians (K = 32, n = 100, shared component 0.3·(seed mod 5), task scales 10^±0.5) whose shifted
# Gramian (λ = 0.3) defeats the support guess: it drops tasks of the optimal support, its certificate fails,
# and before the warm start Wolfe's loop restarted from one point (16 to 22 affine solves instead of 4 to 7).
_WARM_START_SEEDS = [50, 95, 230, 320]


@pytest.mark.parametrize("seed", _WARM_START_SEEDS)
def test_wolfe_loop_starts_from_the_guessed_corral(seed, monkeypatch):
    """Regression (issue 8, SDMGrad at K = 32 was 1.12x TorchJD): when the support guess fails its certificate,
    Wolfe's loop starts from the guessed corral, not from one point. On these 4 inputs (4/4 seeds) it needs at most
    half the affine solves of the cold start, and reaches the same direction (to 1e-12 of the largest ||p_i||)."""
    import reference_impls.core.solvers as solvers

    gen = torch.Generator().manual_seed(seed)
    K, n = 32, 100
    J = torch.randn(K, n, generator=gen, dtype=torch.float64)
    J = J + (seed % 5) * 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)  # tasks share a component
    J = J * torch.logspace(-0.5, 0.5, K, dtype=torch.float64)[:, None]  # (K, n)
    Q = solvers.shifted_gramian(J @ J.T, 0.3)  # Gramian of p_i = g_i + λ g_0, (K, K)
    P = J + 0.3 * J.mean(0)  # (K, n): the points p_i
    solves = [0]
    affine = solvers._affine_min_norm

    def counted(*args):
        solves[0] += 1
        return affine(*args)

    monkeypatch.setattr(solvers, "_affine_min_norm", counted)
    d_warm = solvers.min_norm_weights(Q) @ P  # (n,)
    warm = solves[0]
    guess = solvers._guess_support
    monkeypatch.setattr(solvers, "_guess_support", lambda *args: None)  # Wolfe's loop from one point
    solves[0] = 0
    d_cold = solvers.min_norm_weights(Q) @ P  # (n,)
    cold = solves[0]
    monkeypatch.setattr(solvers, "_guess_support", guess)
    assert 2 * warm <= cold, (warm, cold)
    assert float((d_warm - d_cold).norm()) <= 1e-12 * float(P.norm(dim=1).max())
