"""Nash-MTL (Navon et al., ICML 2022): the claims of the paper, checked exactly or on a toy."""

import numpy as np
import pytest
import scipy.optimize
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.fairgrad import solve_fair_weights
from reference_impls.gradient_weighting.nash_mtl import NashMTL
from reference_impls.metrics import pareto_stationarity
from reference_impls.problems import get_problem
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base


def _solvable(J):
    """A positive solution exists iff 0 ∉ conv{g_i} (MGDA's min-norm point is not 0)."""
    return float(pareto_stationarity(J)) > 1e-6 * float(J.norm(dim=1).max())


def _nondegenerate(dtype=torch.float64, **kw):
    return [(name, J) for name, J in asserts.random_jacobians(dtype=dtype, **kw) if _solvable(J.double())]


def test_bargaining_equations_and_norm():
    # (Mα)_i = 1/α_i ⇔ α_i ⟨g_i, d⟩ = 1, so ⟨g_i, d⟩ = 1/α_i > 0 and ||d||² = αᵀMα = K.
    cases = _nondegenerate()
    assert len(cases) >= 20
    for name, J in cases:
        alpha = NashMTL(max_norm=None).weights(J)
        d = alpha @ J
        assert float(alpha.min()) > 0, name
        assert float((alpha * (J @ d) - 1.0).abs().max()) <= 1e-8, name
        assert abs(float(d @ d) - J.shape[0]) <= 1e-8 * J.shape[0], name


def test_float32():
    for name, J in _nondegenerate(dtype=torch.float32, shapes=[(2, 10), (3, 20), (8, 16)]):
        alpha = NashMTL(max_norm=None).weights(J)
        assert alpha.dtype == torch.float32
        assert torch.allclose(alpha.double(), NashMTL(max_norm=None).weights(J.double()), rtol=1e-3), name


def test_loss_scale_invariance():
    # g_i → c_i g_i gives α_i → α_i/c_i and exactly the same d (the paper's scale-invariance axiom).
    gen = torch.Generator().manual_seed(6)
    for name, J in _nondegenerate(seed=1):
        c = torch.exp(4 * torch.randn(J.shape[0], generator=gen, dtype=torch.float64))  # scales over ~e^±10
        alpha, alpha_c = NashMTL(None).weights(J), NashMTL(None).weights(c[:, None] * J)
        assert torch.allclose(alpha_c * c, alpha, rtol=1e-8), name
        assert torch.allclose(NashMTL(None)(c[:, None] * J), NashMTL(None)(J), atol=1e-8 * J.shape[0] ** 0.5), name


def test_matches_the_official_equivalent_least_squares_solver():
    # scipy least_squares on Mα − 1/α, bounds (0, ∞) (the official-equivalent solver of method-specs; FairGrad's official
    # solver with α = 1), tight tolerances: same α to 1e-6.
    for name, J in _nondegenerate(shapes=[(2, 10), (3, 20), (5, 50), (8, 16)]):
        M = (J @ J.T).numpy()
        alpha = NashMTL(None).weights(J).numpy()
        start = 1.0 / np.sqrt(np.diag(M))
        res = scipy.optimize.least_squares(
            lambda a: M @ a - 1.0 / a, start, bounds=(0, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15
        )
        assert np.abs(res.x - alpha).max() <= 1e-6 * alpha.max(), name


def test_clipping_as_in_the_official_code():
    # max_norm = 1.0 (official default): ||d|| = √K > 1 at the exact solution, so the official update is d/√K.
    for name, J in _nondegenerate(shapes=[(1, 5), (3, 20), (8, 16)]):
        d = NashMTL(max_norm=None)(J)
        clipped = NashMTL()(J)
        assert torch.allclose(clipped, d / max(1.0, float(d.norm())), atol=1e-12), name
        assert float(clipped.norm()) <= 1.0 + 1e-12
    J = j_base()
    scaled = torch.tensor([[10.0], [1.0]], dtype=torch.float64) * J
    assert torch.allclose(NashMTL()(scaled), NashMTL()(J), atol=1e-12)  # d is clipped after the invariant solve


def test_warm_start_does_not_change_the_solution():
    method = NashMTL(None)
    for name, J in _nondegenerate(seed=2, shapes=[(3, 20), (8, 16)]):
        assert torch.allclose(method.weights(J), NashMTL(None).weights(J), rtol=1e-10), name
    method.reset()
    assert method._beta is None


def test_golden_value():
    # J_base: α solves α_1(Mα)_1 = α_2(Mα)_2 = 1 with M = [[18, −22], [−22, 38]]; d = α_1 g_1 + α_2 g_2.
    J = j_base()
    alpha = NashMTL(None).weights(J)
    M = J @ J.T
    assert torch.allclose(alpha * (M @ alpha), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(alpha, torch.tensor([0.5915, 0.4071], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(NashMTL(None)(J), torch.tensor([0.0766, 0.9985, 0.9985], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(NashMTL()(J), torch.tensor([0.0542, 0.7061, 0.7061], dtype=torch.float64), atol=1e-4)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    nash = NashMTL(None)
    out = {k: nash(J) for k, J in cases.items()}
    for k, d in out.items():
        assert torch.isfinite(d).all(), k
    g = cases["identical"][0]
    assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(out["single-task"], g / g.norm(), atol=1e-12)  # α = 1/||g||
    assert torch.allclose(out["identical"], 3**0.5 * g / g.norm(), atol=1e-12)  # α_i = 1/(√3||g||), ||d||² = 3
    # scale invariance: huge, tiny and mixed (1e8 vs 1e-8) scales give the d of the unscaled pair
    pair = NashMTL(None)(cases["huge-scale"] / 1e15)
    for k in ("huge-scale", "tiny-scale", "mixed-scale"):
        assert torch.allclose(out[k], pair, atol=1e-8), k
    # 0 ∈ conv{g_i}: no positive solution (D3): opposite and collinear rows are strongly stationary, d = 0 exactly; a zero
    # row is deadlocked alone and leaves the other tasks' d unchanged
    assert torch.equal(out["opposite"], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(out["collinear"], torch.zeros(4, dtype=torch.float64))
    rest = cases["one-zero-row"][[0, 2]]
    assert torch.allclose(out["one-zero-row"], NashMTL(None)(rest), rtol=1e-12, atol=0)
    with pytest.raises(NonFiniteError):
        NashMTL()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="max_norm"):
        NashMTL(max_norm=0.0)


def test_float32_degenerate_inputs():
    # float32 Gramians are PSD only to ~1e-7; the stationarity tolerances scale with float32's ε (D3)
    for k, J in asserts.degenerate_jacobians(dtype=torch.float32).items():
        d = NashMTL(None)(J)
        assert d.dtype == torch.float32 and torch.isfinite(d).all(), k
        if k in ("opposite", "collinear"):
            assert torch.equal(d, torch.zeros_like(d)), k
    for name, J in asserts.random_jacobians(dtype=torch.float32, seed=5):
        assert torch.isfinite(NashMTL(None)(J)).all(), name


def _gd_run(scale, steps=400, eta=0.1):
    # plain GD with a linearly decaying step (Adam's per-coordinate normalisation would amplify rounding-level
    # differences of near-zero coordinates into full steps)
    problem = get_problem("cagrad-toy", scale=scale, inits="nash")
    x = problem.initial_points().clone()  # (5, 2)
    method = NashMTL(max_norm=None)
    path = []
    for t in range(steps):
        x = x - eta * (1 - t / steps) * torch.stack([method(J) for J in problem.jacobian(x)])
        path.append(x)
    return problem, torch.stack(path)


def test_toy_trajectories_are_invariant_to_the_loss_scale():
    # CAGrad/Nash-MTL toy with s = 1 and s = 0.1 (f_1 ← s f_1), Nash-MTL's five inits, float64, max_norm=None.
    # Measured: the trajectories agree to 7e-9 for the first 150 steps; near the Pareto set the gradients become
    # opposite, the Gramian ill-conditioned and d (norm √2, tangent to the set) slides along it, so rounding differences
    # grow to ~1e-2 before the step decays; final gap 7e-4, every end point Pareto-stationary (PS ≤ 3e-6).
    problem, path_1 = _gd_run(1.0)
    _, path_01 = _gd_run(0.1)
    assert float((path_1[:150] - path_01[:150]).abs().max()) <= 1e-6
    for x in (path_1[-1], path_01[-1]):
        assert float(pareto_stationarity(problem.jacobian(x)).max()) < 1e-3
        assert float(problem.distance_to_pareto_set(x).max()) < 1e-2
    assert float((path_1[-1] - path_01[-1]).abs().max()) < 0.05


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(NashMTL())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pareto_stationary_bargaining_regression(dtype):
    """Regression (H9): at Pareto-stationary J the regularised solve returned a d conflicting with a task (cosine −1 on
    [g; −2g; h] in float32; −1e-3 on strongly stationary sampler matrices). Now, over 8 seeds (all pass): strongly
    stationary J gives d = 0 exactly; on [g; −2g; h] the deadlocked pair gets ⟨g_i, d⟩ = 0 to rounding and h gets
    the bargaining value ⟨h', d⟩ = 1/α_3 of its component h' orthogonal to g (d = h'/||h'||: α_3 = 1/||h'||)."""
    from tests.reference_impls import properties as P

    eps = torch.finfo(dtype).eps
    for seed in range(8):
        gen = torch.Generator().manual_seed(100 + seed)
        J = P.sample_strong(5, 8, 4, gen).to(dtype)
        assert torch.equal(NashMTL()(J), torch.zeros(8, dtype=dtype)), seed
        g, h = torch.randn(2, 6, generator=gen, dtype=torch.float64)
        J = torch.stack([g, -2.0 * g, h]).to(dtype)
        d = NashMTL(None)(J).double()
        J64 = J.double()
        g64, h64 = J64[0], J64[2]
        h_perp = h64 - (h64 @ g64) / (g64 @ g64) * g64  # component of h orthogonal to g
        assert float((J64[:2] @ d).abs().max()) <= 1e3 * eps * float(J64[:2].norm(dim=1).max()) * float(h64.norm() / h_perp.norm()), seed
        assert torch.allclose(d, h_perp / h_perp.norm(), rtol=0, atol=1e3 * eps * float(h64.norm() / h_perp.norm())), seed


def test_first_newton_solve_certifies_near_opposite_gradients_regression(monkeypatch):
    """Regression (issue 8): on cagrad-toy near the Pareto set (cos(g_1, g_2) = −1 + 2.7e-12, this Gramian of unit
    gradients and warm start were captured from `modl run nash-mtl --problem cagrad-toy` at step 9000) the residual of
    (Cβ)_i = 1/β_i is limited to ~1e-5 by the rounding of the cancelling sum (Cβ)_i, but Newton's stopping rule capped
    that rounding floor at 1e-6: it never stopped, returned None after 100 iterations, and the caller re-ran 100 more
    (keep_best) to find an iterate the certificate accepts (3.4e-3 of tolerance to spare): 260 → 60 steps/s. Now the
    stop is per task at the float64 rounding level of (Cβ)_i (below the certificate's), so the first solve returns a
    certified β (measured: 300 of 300 captured inputs, median 8 and at most 27 iterations; before: 0 of 300)."""
    from reference_impls.gradient_weighting import fairgrad

    C = np.array([[1.0000000000000002, -0.9999999999973046], [-0.9999999999973046, 1.0]])
    b0 = np.array([681744.8830866751, 681744.883086675])
    kappa = np.ones(2)
    beta = fairgrad._newton(C, kappa, 1.0, b0, 100)
    assert beta is not None
    assert fairgrad._uncertified(C, kappa, 1.0, beta, float(np.finfo(np.float64).eps)) is None
    # through the general path of the public solver: one Newton solve, no keep_best re-run
    calls = []
    newton = fairgrad._newton
    monkeypatch.setattr(fairgrad, "_newton", lambda *a, **k: calls.append(k.get("keep_best", False)) or newton(*a, **k))
    w, _ = solve_fair_weights(C, 1.0, b0, fast=False)
    assert calls == [False]
    delta = 1.0 + C[0, 1]  # 1 + cos: the exact solution of the unit-diagonal system is w_i = 1/√δ
    assert np.allclose(w, 1.0 / np.sqrt(delta), rtol=1e-3)


def test_k2_closed_form_equals_the_general_newton_solve():
    """K = 2: α_i = 1/(||g_i||·√(1 + cos(g_1, g_2))) in closed form (fairgrad._solve2 with p = 1; exact for the unit-diagonal
    system, certified on the computed one) against the general damped Newton solve (fast=False), on 400 seeded Gramians:
    generic, scales 1e-8..1e8 apart, nearly identical and nearly opposite directions (1 + cos down to ~1e-9), float64
    and (generic ones) float32. Both certified; relative difference ≤ 1e-9 where 1 + cos ≥ 1e-3 and ≤ 1e3·ε/(1 + cos) below (the
    conditioning of the Gramian; measured max 4e-13 and 2.5e-4 resp.); the fast path declined none of them."""
    from reference_impls.gradient_weighting import fairgrad

    gen = torch.Generator().manual_seed(8)
    for trial in range(400):
        J = torch.randn(2, 3, generator=gen, dtype=torch.float64) * torch.exp(8 * torch.rand(2, 1, generator=gen) - 4) ** 2
        kind = trial % 4
        if kind in (1, 2):  # nearly opposite / nearly identical direction
            sign = -1.0 if kind == 1 else 1.0
            u = torch.randn(3, generator=gen, dtype=torch.float64)
            J[1] = (sign * J[0] * float(torch.rand(1, generator=gen) + 0.5) + u * J[0].norm() * 10 ** float(-4 * torch.rand(1, generator=gen) - 1))
        dtype = torch.float32 if kind in (0, 3) and trial % 5 == 4 else torch.float64  # float32 only where 0 ∉ conv to its ε
        M = (J @ J.T).to(dtype)
        eps = torch.finfo(dtype).eps
        M64 = M.double().numpy()
        m11, m12, m22 = float(M64[0, 0]), float(M64[0, 1]), float(M64[1, 1])
        assert fairgrad._solve2(m11, m12, m22, 1.0, eps, None) is not None, trial
        w_fast, _ = solve_fair_weights(M, 1.0)
        w_gen, _ = solve_fair_weights(M, 1.0, fast=False)
        delta = 1.0 + m12 / np.sqrt(m11 * m22)
        rel = float(np.max(np.abs(w_fast - w_gen) / w_gen))
        assert rel <= (1e-9 if delta >= 1e-3 and dtype == torch.float64 else 1e3 * eps / delta), (trial, delta, rel)
        # the bargaining equations (Mα)_i = 1/α_i per task, to the certificate's tolerance
        Mw = M64 @ w_fast
        allowed = np.maximum(1e-6, 64 * eps * (np.abs(M64) @ w_fast) * w_fast)
        assert bool((np.abs(Mw * w_fast - 1.0) <= allowed).all()), trial


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_k2_pareto_stationary_pairs_take_the_defined_answer_on_the_fast_path(dtype):
    """K = 2 at 0 ∈ conv{ĝ_1, ĝ_2} (g_2 = −s·g_1 plus a perturbation of 0..1e3 ulps, s over e^±6; 200 seeded pairs):
    fairgrad._stationary2 gives the D3 answer w = 0 (both tasks deadlocked) equal to the general path's, or declines
    (None) and the general path runs; the class gives d = 0 exactly. Measured: the fast path declines none; float64: 200
    stationary, all w = 0 on both paths; float32: 184 stationary (w = 0 on both) and 16 just outside the tolerance, with a
    certified positive solution on both (also: all 2884 stationary Gramians of the cagrad-toy run, w = 0 on both)."""
    from reference_impls.gradient_weighting import fairgrad

    gen = torch.Generator().manual_seed(13)
    eps = torch.finfo(dtype).eps
    decided = 0
    for trial in range(200):
        g = torch.randn(3, generator=gen, dtype=torch.float64)
        noise = torch.randn(3, generator=gen, dtype=torch.float64) * eps * float(1e3 * torch.rand(1, generator=gen)) * g.norm()
        J = torch.stack([g, -float(torch.exp(12 * torch.rand(1, generator=gen) - 6)) * g + noise]).to(dtype)
        M = J @ J.T
        M64 = M.double().numpy()
        general, beta = solve_fair_weights(M, 1.0, fast=False)
        fast = fairgrad._solve2(float(M64[0, 0]), 0.5 * float(M64[0, 1] + M64[1, 0]), float(M64[1, 1]), 1.0, eps, None)
        if fast is not None and fast[2] is None:
            decided += 1
            assert beta is None and np.array_equal(general, np.zeros(2)), trial
        elif fast is not None:  # 0 ∉ conv to the tolerance: a certified positive solution, as the general path's
            assert beta is not None and np.allclose(fast[:2], general, rtol=1e3 * eps / (1.0 + M64[0, 1] / np.sqrt(M64[0, 0] * M64[1, 1]))), trial
        if beta is None:
            assert torch.equal(NashMTL()(J), torch.zeros(3, dtype=dtype)), trial
    assert decided >= 150
