"""FairGrad (Ban & Ji, ICML 2024): the claims of the paper, checked exactly or on a toy."""

import numpy as np
import pytest
import scipy.optimize
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.fairgrad import FairGrad, clip_weights, solve_fair_weights
from reference_impls.gradient_weighting.nash_mtl import NashMTL
from reference_impls.metrics import pareto_stationarity
from reference_impls.problems import get_problem
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

ALPHAS = [0.5, 1.0, 2.0, 5.0]


def _nondegenerate(dtype=torch.float64, **kw):
    """Jacobians with 0 ∉ conv{g_i}, where a positive solution exists."""
    out = []
    for name, J in asserts.random_jacobians(dtype=dtype, **kw):
        Jd = J.double()
        if float(pareto_stationarity(Jd)) > 1e-6 * float(Jd.norm(dim=1).max()):
            out.append((name, J))
    return out


def _assert_fair(J, w, alpha, rel=1e-8):
    """⟨g_i, d⟩ = (Mw)_i = w_i^{−1/α} > 0 for all i (the α-fair optimality condition)."""
    d = w @ J
    assert float(w.min()) > 0
    assert float(((J @ d) * w ** (1 / alpha) - 1.0).abs().max()) <= rel


def test_fairness_equations_on_random_jacobians():
    cases = _nondegenerate()
    assert len(cases) >= 20
    for name, J in cases:
        for alpha in ALPHAS:
            _assert_fair(J, FairGrad(alpha, max_norm=None).weights(J), alpha)


def test_float32():
    for name, J in _nondegenerate(dtype=torch.float32, shapes=[(2, 10), (3, 20), (8, 16)]):
        w = FairGrad(max_norm=None).weights(J)
        assert w.dtype == torch.float32
        assert torch.allclose(w.double(), FairGrad(max_norm=None).weights(J.double()), rtol=1e-3), name


def test_alpha_one_is_nash_mtl():
    for name, J in _nondegenerate(seed=1):
        assert torch.allclose(FairGrad(alpha=1.0, max_norm=None).weights(J), NashMTL(max_norm=None).weights(J), rtol=1e-12), name


def test_larger_alpha_tends_to_max_min_fairness():
    # α → ∞ tends to max-min fairness: the worst normalised first-order decrease min_i ⟨g_i, d/||d||⟩ grows with α
    # towards its maximum over the unit ball, max_{||d||≤1} min_i ⟨g_i, d⟩ = ||d_MGDA|| (min-norm duality).
    # Monotonicity is not a theorem for every M: checked on these fixed seeds (measured ≥ 0.977 of the optimum at α = 20).
    # Note: the ratio max_i/min_i ⟨g_i, d⟩ does NOT tend to 1 in general (max-min fairness leaves non-binding tasks
    # above the minimum): on K5-n50-v1 it goes 5669, 228, 25, 41, 50 for α = 1, 2, 5, 10, 20.
    from reference_impls.gradient_weighting.mgda import MGDA

    for name, J in _nondegenerate(seed=3, shapes=[(2, 10), (3, 20), (5, 50), (8, 16), (12, 64)]):
        best = float(MGDA()(J).norm())
        worst = []
        for alpha in (1.0, 2.0, 5.0, 10.0, 20.0):
            d = FairGrad(alpha, max_norm=None)(J)
            worst.append(float((J @ d).min() / d.norm()) / best)
        assert all(a <= b + 1e-12 for a, b in zip(worst, worst[1:])), (name, worst)
        assert 0.97 <= worst[-1] <= 1.0 + 1e-12, (name, worst)


def test_matches_the_official_least_squares_solver():
    # official: scipy least_squares(Mx − x^{−1/α}, x0 = 𝟙/K, bounds (0, ∞)); here with tight tolerances.
    for name, J in _nondegenerate(shapes=[(2, 10), (3, 20), (5, 50), (8, 16)]):
        M = (J @ J.T).numpy()
        K = M.shape[0]
        w = FairGrad(2.0, max_norm=None).weights(J).numpy()
        res = scipy.optimize.least_squares(
            lambda x: M @ x - (1 / x) ** 0.5, np.ones(K) / K, bounds=(0, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15
        )
        assert np.abs(res.x - w).max() <= 1e-6 * w.max(), name


def test_global_scale():
    # M → c²M gives w → c^{−2α/(1+α)} w (the equations are homogeneous); for α = 1 d is unchanged.
    for name, J in _nondegenerate(seed=4, shapes=[(3, 20), (8, 16)]):
        for alpha in ALPHAS:
            w, w_c = FairGrad(alpha, max_norm=None).weights(J), FairGrad(alpha, max_norm=None).weights(7.0 * J)
            assert torch.allclose(w_c, 7.0 ** (-2 * alpha / (1 + alpha)) * w, rtol=1e-8), name


def test_golden_value():
    J = j_base()
    w = FairGrad(2.0, max_norm=None).weights(J)
    _assert_fair(J, w, 2.0, rel=1e-12)
    assert torch.allclose(w, torch.tensor([0.4714, 0.3195], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(FairGrad(2.0, max_norm=None)(J), torch.tensor([0.0313, 0.7908, 0.7908], dtype=torch.float64), atol=1e-4)
    d = torch.tensor([0.0313, 0.7908, 0.7908], dtype=torch.float64)
    assert torch.allclose(FairGrad(2.0)(J), d / d.norm(), atol=1e-4)  # default max_norm = 1.0: ||d|| = 1.12 is clipped
    clipped = FairGrad(2.0, max_norm=0.5)(J)  # clipping of the shared gradient (official: max_norm 1.0, the default)
    assert torch.allclose(clipped, 0.5 * FairGrad(2.0, max_norm=None)(J) / FairGrad(2.0, max_norm=None)(J).norm(), atol=1e-12)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    g = cases["identical"][0]
    for alpha in (1.0, 2.0):
        method = FairGrad(alpha, max_norm=None)
        out = {k: method(J) for k, J in cases.items()}
        for k, d in out.items():
            assert torch.isfinite(d).all(), k
        assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
        n2 = float(g @ g)
        assert torch.allclose(out["single-task"], n2 ** (-alpha / (1 + alpha)) * g, atol=1e-12)  # w = ||g||^{−2α/(1+α)}
        for k in ("identical", "huge-scale", "tiny-scale", "mixed-scale"):
            _assert_fair(cases[k], method.weights(cases[k]), alpha), k
        # 0 ∈ conv{g_i} (D3): every task deadlocked gives d = 0 exactly; a zero row leaves the other tasks' d unchanged
        assert torch.equal(out["opposite"], torch.zeros(4, dtype=torch.float64))
        assert torch.equal(out["collinear"], torch.zeros(4, dtype=torch.float64))
        rest = cases["one-zero-row"][[0, 2]]
        assert torch.allclose(out["one-zero-row"], FairGrad(alpha, max_norm=None)(rest), rtol=1e-12, atol=0)
    with pytest.raises(NonFiniteError):
        FairGrad()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="alpha"):
        FairGrad(alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        solve_fair_weights(np.eye(2), -1.0)


def test_extreme_row_scales_and_float32():
    # rows scaled over 1e-6..1e6 (κ spans 1e6 for α = 2): the equations hold (to rounding) where a solution exists; else (0 in
    # the hull) the D3 answer is finite. float32 Gramians (PSD only to rounding) give finite results.
    gen = torch.Generator().manual_seed(9)
    solved = 0
    for trial in range(40):
        K, n = int(torch.randint(2, 17, (1,), generator=gen)), int(torch.randint(2, 30, (1,), generator=gen))
        J = torch.randn(K, n, generator=gen, dtype=torch.float64) * torch.logspace(-6, 6, K, dtype=torch.float64)[:, None]
        for alpha in (0.5, 2.0):
            w = FairGrad(alpha, max_norm=None).weights(J)
            assert torch.isfinite(w).all()
            if float(pareto_stationarity(J / J.norm(dim=1, keepdim=True))) > 1e-3:
                # measured worst 6e-4 for α = 0.5: the tiny tasks' ⟨g_i, d⟩ is a sum cancelling to ~1e-12 of its terms
                _assert_fair(J, w, alpha, rel=2e-3)
                solved += 1
        assert torch.isfinite(FairGrad(2.0, max_norm=None)(J.float())).all()
    assert solved >= 20


def test_toy_ends_at_pareto_stationary_points():
    # CAGrad/Nash-MTL toy (s = 1), Nash-MTL's five inits, α = 2, float64, GD with step 0.3·(1 − t/T), T = 400, and the
    # official (default) clipping max_norm = 1.0: for α > 1, ||d||² = Σ w_i^{1−1/α} → ∞ near the Pareto set (w_i → ∞), so
    # unclipped steps overshoot. Measured: PS-measure ≤ 2e-5, distance to the Pareto set ≤ 6e-4.
    problem = get_problem("cagrad-toy", scale=1.0, inits="nash")
    x = problem.initial_points().clone()  # (5, 2)
    method = FairGrad(2.0)  # max_norm = 1.0 (official default)
    steps = 400
    for t in range(steps):
        x = x - 0.3 * (1 - t / steps) * torch.stack([method(Jb) for Jb in problem.jacobian(x)])
    assert float(pareto_stationarity(problem.jacobian(x)).max()) < 1e-3
    assert float(problem.distance_to_pareto_set(x).max()) < 1e-2


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(FairGrad())


def test_audit_fallback_non_solution_regression():
    # issue 7 item 4: α = 0.5 on this J (row norms 0.58 and 1.1e12, cos −0.976) made Newton stall on rounding and the
    # regularised fallback returned a non-solution, <g_1, d> = −1.6e-4 < 0, silently. A positive solution exists
    # (0 ∉ conv{g_i}); the certified answer has <g_i, d> = w_i^{−1/α} > 0 for both tasks.
    J = torch.tensor([[-0.5119170007913422, -0.2739055692120024], [1075079552928.8019, 297991240690.79254]], dtype=torch.float64)
    w = FairGrad(alpha=0.5, max_norm=None).weights(J)
    d = w @ J
    assert float((J @ d).min()) > 0
    # (Mw)_i = w_i^{−1/α} to the rounding level of (Mw)_i: relative 1e-6 for the big task, ~1e-2 for the small one,
    # whose ⟨g_1, d⟩ ≈ 4e-10 is a sum of terms ~1e4 (measured 3e-3)
    assert float(((J @ d) * w ** (1 / 0.5) - 1.0).abs().max()) <= 1e-2


def test_stress_inputs_are_certified_or_raise():
    """200 seeded hard Jacobians (test_solvers.stress_jacobians), α = 2: every call returns finite positive weights
    with <g_i, d> ≥ −rtol·||g_i||·Σ_j |w_j|·||g_j||, rtol = 1e-6 (float64) or 1e-3 (float32), or raises SolverError (measured:
    all 200 return). Weights are negative only on deadlocked tasks (D3: w_S = −P w_R), where ⟨g_i, d⟩ = 0."""
    from tests.reference_impls.test_solvers import stress_jacobians

    for name, J in stress_jacobians(6, 200):
        w = FairGrad(2.0, max_norm=None).weights(J).double()
        J64 = J.double()
        norms = J64.norm(dim=1)
        assert torch.isfinite(w).all(), name
        rtol = 1e-6 if J.dtype == torch.float64 else 1e-3
        assert bool((J64 @ (w @ J64) >= -rtol * norms * float(w.abs() @ norms)).all()), name


def _pareto_stationary_cases(dtype, seed):
    """Jacobians with 0 ∈ conv{g_i}: strongly stationary sampler matrices (Jᵀv = 0, v > 0), [g; −g], [g; −2g; h]
    (deadlocked {1, 2}, h free), and the weakly stationary sampler (a proper deadlocked subset)."""
    from tests.reference_impls import properties as P

    gen = torch.Generator().manual_seed(seed)
    g, h = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    out = {
        "strong-K4": P.sample_strong(4, 7, 3, gen),
        "g,-g": torch.stack([g, -g]),
        "g,-2g,h": torch.stack([g, -2.0 * g, h]),
    }
    return {k: J.to(dtype) for k, J in out.items()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["fairgrad-0.5", "fairgrad-2", "nash-mtl"])
def test_pareto_stationary_inputs_give_the_defined_answer(method, dtype):
    """Regression (H9): at Pareto-stationary J the regularised solve returned d ≈ 1e-4–1e-3·||g|| conflicting with a task
    (min cosine −1 on [g; −2g; h] in float32, −1e-3 on strongly stationary matrices). Now (D3), on 5 seeds × 3 cases, all
    pass: strongly stationary J (and [g; −g]) gives d = 0 exactly; otherwise the deadlocked tasks get ⟨g_i, d⟩ = 0 (to
    rounding, per task) and the free tasks ⟨g_j, d⟩ > 0; d ≠ 0 ([g; −2g; h]: h is free)."""
    from tests.reference_impls import properties as P

    make = {"fairgrad-0.5": lambda: FairGrad(0.5), "fairgrad-2": lambda: FairGrad(2.0), "nash-mtl": lambda: NashMTL()}[method]
    eps = torch.finfo(dtype).eps
    for seed in range(5):
        for name, J in _pareto_stationary_cases(dtype, seed).items():
            A = make()
            d = A(J)
            d = A(J)  # second call: warm state exercised
            J64, d64 = J.double(), d.double()
            norms = J64.norm(dim=1)
            ip = J64 @ d64  # ⟨g_i, d⟩
            if name.startswith("strong") or name == "g,-g":
                assert P.is_strongly_stationary(J64) or name == "g,-g"
                assert torch.equal(d, torch.zeros_like(d)), (name, seed)
                continue
            w = A.weights(J).double()
            tol = 1e3 * eps * norms * float(w.abs() @ norms)  # per task: rounding of d = Σ w_i g_i in J's dtype
            assert bool((ip >= -tol).all()), (name, seed, (ip / norms / d64.norm()).min())
            assert float(d64.norm()) > 0.1 * float(norms.min()) * min(1.0, 1 / float(norms.max())), (name, seed)
            free = ip > 1e3 * tol
            assert int(free.sum()) >= 1, (name, seed)
            if name == "g,-2g,h":
                assert bool(free[2]) and float(ip[:2].abs().max()) <= float(tol.max()), (name, seed)


def _k2_gramians(seed, count=400):
    """Seeded 2×2 Gramians with 0 ∉ conv{g_1, g_2}: generic, task scales up to e^±8 apart, nearly identical and nearly
    opposite directions (1 + cos down to ~1e-9), float64 and (generic ones) float32."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for trial in range(count):
        J = torch.randn(2, 3, generator=gen, dtype=torch.float64) * torch.exp(8 * torch.rand(2, 1, generator=gen) - 4) ** 2
        kind = trial % 4
        if kind in (1, 2):  # nearly opposite / nearly identical direction
            sign = -1.0 if kind == 1 else 1.0
            u = torch.randn(3, generator=gen, dtype=torch.float64)
            J[1] = sign * J[0] * float(torch.rand(1, generator=gen) + 0.5) + u * J[0].norm() * 10 ** float(-4 * torch.rand(1, generator=gen) - 1)
        dtype = torch.float32 if kind in (0, 3) and trial % 5 == 4 else torch.float64  # float32 only where 0 ∉ conv to its ε
        out.append((trial, (J @ J.T).to(dtype)))
    return out


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_k2_fast_path_equals_the_general_newton_solve(alpha):
    """K = 2 (fairgrad._solve2: the scalar equation for ρ = β_2/β_1 by bracketed Newton, certified as the general path)
    against the general damped Newton solve (fast=False) on 400 seeded Gramians (_k2_gramians), α = 0.5, 2, 5. Relative
    difference ≤ 1e-9 where 1 + cos ≥ 1e-3 (float64) and ≤ 1e3·ε/(1 + cos) otherwise (the Gramian's conditioning;
    measured over α = 0.5, 1, 2, 5: max 4e-11 and 1.1·ε/(1 + cos)); the fast path declined none and certifies every one.
    The general solve used to raise SolverError on one of them (α = 5, 1 + cos = 3e-10: Armijo on Φ below Φ's
    rounding, now a backtracking on the residual there); now none. The class takes the fast path and clips as
    clip_weights does."""
    from reference_impls.core.solvers import SolverError
    from reference_impls.gradient_weighting import fairgrad

    general_failures = 0
    for trial, M in _k2_gramians(9):
        eps = torch.finfo(M.dtype).eps
        M64 = M.double().numpy()
        m11, m12, m22 = float(M64[0, 0]), float(M64[0, 1]), float(M64[1, 1])
        assert fairgrad._solve2(m11, m12, m22, 1.0 / alpha, eps, None) is not None, trial
        w_fast, beta = solve_fair_weights(M, alpha)
        delta = 1.0 + m12 / np.sqrt(m11 * m22)
        try:
            w_gen, _ = solve_fair_weights(M, alpha, fast=False)
        except SolverError:
            general_failures += 1
            assert delta < 1e-6, trial
        else:
            rel = float(np.max(np.abs(w_fast - w_gen) / w_gen))
            assert rel <= (1e-9 if delta >= 1e-3 and M.dtype == torch.float64 else 1e3 * eps / delta), (trial, delta, rel)
        # the α-fair equations (Mw)_i = w_i^{−1/α} per task, to the certificate's tolerance
        Mw = M64 @ w_fast
        allowed = np.maximum(1e-6, 64 * eps * (np.abs(M64) @ w_fast) * w_fast ** (1 / alpha))
        assert bool((np.abs(Mw * w_fast ** (1 / alpha) - 1.0) <= allowed).all()), trial
        # the class takes the fast path and clips as clip_weights does
        w_cls = FairGrad(alpha).weights_from_gramian(M).double().numpy()
        w_ref = clip_weights(torch.from_numpy(w_fast).to(M), M, 1.0).double().numpy()
        assert np.allclose(w_cls, w_ref, rtol=64 * eps, atol=0), trial  # w_ref clipped in M's dtype, w_cls in float64
        # warm start from the previous solution: the same answer
        w_warm, _ = solve_fair_weights(M, alpha, beta)
        assert np.allclose(w_warm, w_fast, rtol=1e-12 if M.dtype == torch.float64 else 1e-6, atol=0), trial
    assert general_failures == 0


def test_paper_default_toy_run_crash_regression():
    """Regression (issue 8): `modl run fairgrad --problem cagrad-toy` (α = 2, paper defaults) raised SolverError at step
    7462 on this Gramian (captured with its warm start; 1 + cos(g_1, g_2) = 1.6e-13, 0 ∉ conv to the tolerance): the
    damped Newton's Armijo test on Φ cannot see a decrease under Φ's rounding (terms βᵀCβ ~ 1e17, Φ ~ 6e4) near the
    solution, the step shrank to 1e-14 and no iterate was certified. Now the K = 2 path solves the scalar equation
    (certified weights, ⟨ĝ_i, d⟩ = κ_i β_i^{−1/α} per task; the same answer from a cold start) and the general solve
    backtracks on the residual where Φ cannot resolve the decrease: it certifies the same weights (to the Gramian's
    conditioning, 1e3·ε/(1 + cos))."""
    M = np.array([[4.823955223536693, -1.3230209931212258], [-1.3230209931212258, 0.3628525695470165]])
    beta0 = np.array([14956883.430728102, 14956883.430813193])
    w, beta = solve_fair_weights(M, 2.0, beta0)
    assert beta is not None and bool((w > 0).all())
    eps = float(np.finfo(np.float64).eps)
    Mw = M @ w
    allowed = np.maximum(1e-6, 64 * eps * (np.abs(M) @ w) * np.sqrt(w))  # the certificate's per-task tolerance
    assert bool((np.abs(Mw * np.sqrt(w) - 1.0) <= allowed).all())
    w_cold, _ = solve_fair_weights(M, 2.0)
    assert np.allclose(w_cold, w, rtol=1e-9, atol=0)
    A = FairGrad(2.0)
    A._beta = beta0
    assert torch.isfinite(A.weights_from_gramian(torch.from_numpy(M))).all()
    w_general, beta_general = solve_fair_weights(M, 2.0, beta0, fast=False)
    assert beta_general is not None
    assert np.allclose(w_general, w, rtol=1e3 * eps / (1.0 + M[0, 1] / np.sqrt(M[0, 0] * M[1, 1])), atol=0)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_k2_nearly_orthogonal_with_a_tiny_negative_cosine_regression(alpha):
    """Regression: K = 2 gradients with cos(g_1, g_2) ∈ (−ε/2, 0) (δ = 1 + cos rounds to 1) made the K = 2 path's
    bracket log1p(−δ) = log1p(−1) raise ValueError("math domain error") for every α ≠ 1 (found by the two-task
    "orthogonal" family of test_direction2.py). The bracket's lower end is now log(−cos). Over 12 cosines −10^(−k),
    k = 16.5..300: the path answers (certified), and the weights equal the general Newton solve's to 1e-12."""
    for k in np.linspace(16.5, 300, 12):
        J = torch.tensor([[1.0, 0.0], [-(10.0 ** -k), 3.0]], dtype=torch.float64)  # ||g_2|| = 3: κ ≠ 𝟙 for α ≠ 1
        M = J @ J.T
        assert -np.finfo(np.float64).eps / 2 < float(M[0, 1]) / 3.0 < 0.0
        w_fast, _ = solve_fair_weights(M, alpha)
        w_general, _ = solve_fair_weights(M, alpha, fast=False)
        assert np.allclose(w_fast, w_general, rtol=1e-12, atol=0), (k, w_fast, w_general)
        assert torch.isfinite(FairGrad(alpha)(J)).all()
