"""The shared solvers return exact, certified answers (and say so when they cannot)."""


import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import SolverError, min_norm_weights, project_simplex, shifted_gramian
from tests.reference_impls.asserts import degenerate_jacobians, min_norm_reference, random_jacobians


def _kkt_gap(J: torch.Tensor, lam: torch.Tensor) -> float:
    """min_j <d, g_j> - ||d||^2 (>= 0 at the optimum), relative to max ||g||^2."""
    d = lam @ J
    return float(((J @ d).min() - d @ d) / (J.norm(dim=1).max() ** 2).clamp_min(1e-300))


@pytest.mark.parametrize("name,J", list(random_jacobians(seed=1)))
def test_min_norm_satisfies_kkt_on_random_jacobians(name, J):
    lam = min_norm_weights(J @ J.T)
    assert float(lam.min()) >= 0.0 and abs(float(lam.sum()) - 1.0) < 1e-12
    # KKT of min_{λ∈Δ} λᵀMλ: <d, g_j> >= ||d||^2 for all j, with equality on the support.
    assert _kkt_gap(J, lam) >= -1e-10
    d = lam @ J
    support = lam > 1e-12
    slack = (J @ d - d @ d)[support].abs().max() / (J.norm(dim=1).max() ** 2)
    assert float(slack) < 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_min_norm_matches_exhaustive_exact_solve_12x64(seed):
    """TorchJD's iterative MGDA is off by up to 0.2% here; ours matches the exact answer to 1e-6."""
    gen = torch.Generator().manual_seed(seed)
    J = torch.randn(12, 64, generator=gen, dtype=torch.float64)
    d = min_norm_weights(J @ J.T) @ J
    exact = min_norm_reference(J)
    assert abs(float(d.norm()) - exact) <= 1e-6 * exact


def test_min_norm_is_zero_when_zero_is_in_the_hull():
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    J = torch.cat([J, -(J.sum(0, keepdim=True))])  # the rows sum to zero: 0 ∈ conv{g_i}
    lam = min_norm_weights(J @ J.T)
    assert float((lam @ J).norm()) < 1e-12 * float(J.norm())


def test_min_norm_two_tasks_closed_form():
    # K = 2: γ = clip(<g2 - g1, g2> / ||g1 - g2||², 0, 1), d = γ g1 + (1 - γ) g2 (Sener & Koltun, Alg. 1).
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        g1, g2 = torch.randn(2, 7, generator=gen, dtype=torch.float64)
        gamma = ((g2 - g1) @ g2 / (g1 - g2).pow(2).sum()).clamp(0, 1)
        lam = min_norm_weights(torch.stack([g1, g2]) @ torch.stack([g1, g2]).T)
        assert torch.allclose(lam, torch.stack([gamma, 1 - gamma]), atol=1e-12)


@pytest.mark.parametrize("name,J", list(degenerate_jacobians().items()))
def test_min_norm_degenerate_inputs_give_a_certified_point(name, J):
    lam = min_norm_weights(J @ J.T)
    assert torch.isfinite(lam).all() and abs(float(lam.sum()) - 1.0) < 1e-12 and float(lam.min()) >= 0
    if float(J.abs().max()) > 0:
        assert _kkt_gap(J, lam) >= -1e-10


def test_min_norm_all_zero_gives_uniform_weights():
    lam = min_norm_weights(torch.zeros(4, 4))
    assert torch.equal(lam, torch.full((4,), 0.25))


def test_min_norm_keeps_dtype_and_rejects_nan():
    J = torch.randn(3, 5, dtype=torch.float32)
    assert min_norm_weights(J @ J.T).dtype == torch.float32
    with pytest.raises(NonFiniteError):
        min_norm_weights(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))
    with pytest.raises(ValueError):
        min_norm_weights(torch.ones(2, 3))


def test_min_norm_reports_non_convergence(monkeypatch):
    import reference_impls.core.solvers as solvers

    monkeypatch.setattr(solvers, "_guess_support", lambda *args: None)  # force Wolfe's loop
    J = torch.randn(8, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(SolverError):
        min_norm_weights(J @ J.T, max_iter=1)


@pytest.mark.parametrize("seed", range(30))
def test_wolfe_loop_alone_matches_the_certified_guess(seed, monkeypatch):
    """The support guess is only a shortcut: Wolfe's loop reaches the same point without it."""
    import reference_impls.core.solvers as solvers

    gen = torch.Generator().manual_seed(seed)
    K, n = [(3, 5), (8, 20), (12, 64), (16, 4), (32, 100)][seed % 5]
    J = torch.randn(K, n, generator=gen, dtype=torch.float64) * torch.logspace(-1, 1, K, dtype=torch.float64)[:, None]
    d_fast = min_norm_weights(J @ J.T) @ J
    monkeypatch.setattr(solvers, "_guess_support", lambda *args: None)
    d_wolfe = min_norm_weights(J @ J.T) @ J
    assert float((d_fast - d_wolfe).norm()) <= 1e-9 * float(J.norm(dim=1).max())


def test_project_simplex_is_the_euclidean_projection():
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(200, 6, generator=gen, dtype=torch.float64) * 3
    W = project_simplex(V)
    assert torch.allclose(W.sum(-1), torch.ones(200, dtype=torch.float64)) and (W >= 0).all()
    # Optimality of the projection: <v - w, u - w> <= 0 for every u in Δ (check all vertices).
    for v, w in zip(V, W):
        for k in range(6):
            e = torch.zeros(6, dtype=torch.float64)
            e[k] = 1
            assert float((v - w) @ (e - w)) <= 1e-12
    inside = torch.softmax(V, -1)
    assert torch.allclose(project_simplex(inside), inside, atol=1e-12)


def test_shifted_gramian_matches_explicit_points():
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(5, 9, generator=gen, dtype=torch.float64)
    for s in (0.0, 0.3, 4.0):
        P = J + s * J.mean(0)
        assert torch.allclose(shifted_gramian(J @ J.T, s), P @ P.T, atol=1e-12)


def test_project_simplex_survives_huge_entries():
    v = torch.tensor([[1e17, 1e17 + 64.0, -1e17]], dtype=torch.float64)
    w = project_simplex(v)
    assert torch.allclose(w, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
