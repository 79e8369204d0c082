"""UPGrad (Quinton & Rey, arXiv 2406.16232): the claims of the paper, checked exactly or on a toy."""

import numpy as np
import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import min_norm_weights
from reference_impls.gradient_weighting.upgrad import UPGrad, dual_cone_weights
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

EXACT = dict(norm_eps=0.0, reg_eps=0.0)  # the paper's operator, without the official numerics


def _kkt_residuals(M, U, V):
    """Worst violation of the KKT conditions of min vᵀMv s.t. v ≥ u, per task: (Mv)_i = ⟨g_i, d⟩ is compared
    with ||g_i||·(||d|| + Σ_j |v_j| ||g_j||) (the second term: the rounding bound of d = Gᵀv)."""
    MV = V @ M  # row r: M v^(r) (M symmetric)
    norms = np.sqrt(np.clip(np.diag(M), 0.0, None))  # ||g_i||
    dnorm = np.sqrt(np.clip(np.einsum("rk,rk->r", MV, V), 0.0, None))  # ||d^(r)||
    scale = norms[None, :] * (dnorm + np.abs(V) @ norms)[:, None] + 1e-300  # (R, K)
    dual = max(0.0, float((-MV / scale).max()))  # dual feasibility: M v ≥ 0 (multipliers 2Mv)
    primal = max(0.0, float((U - V).max())) / max(np.abs(V).max(), 1e-300)  # v ≥ u
    slack = float(np.abs(np.where(V - U > 0, MV, 0.0) / scale).max())  # (M v)_i = 0 where v_i > u_i
    return dual, primal, slack


@pytest.mark.parametrize("reg", [0.0, 1e-4])
def test_each_qp_satisfies_its_kkt_conditions(reg):
    for _, J in asserts.random_jacobians(seed=1):
        M = (J @ J.T).numpy()
        M = M / np.trace(M) + reg * np.eye(M.shape[0])
        K = M.shape[0]
        U = np.eye(K) / K
        V = dual_cone_weights(M, U)
        dual, primal, slack = _kkt_residuals(M, U, V)
        assert dual <= 1e-9 and primal <= 1e-12 and slack <= 1e-9, (dual, primal, slack)


def test_dual_cone_projection_is_the_projection():
    # π_J(g_i) = Jᵀv^(i) is the closest point of {x : Jx ≥ 0} to g_i: compare with a direct solver.
    from scipy.optimize import minimize

    gen = torch.Generator().manual_seed(3)
    J = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    J[1] = -J[0] + 0.3 * J[1]  # make a conflict
    Jn = J.numpy()
    V = dual_cone_weights(Jn @ Jn.T, np.eye(3))
    for i in range(3):
        proj = Jn.T @ V[i]
        res = minimize(
            lambda y: 0.5 * np.sum((y - Jn[i]) ** 2),
            Jn[i],
            jac=lambda y: y - Jn[i],
            constraints=[{"type": "ineq", "fun": lambda y: Jn @ y, "jac": lambda y: Jn}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert np.abs(res.x - proj).max() < 1e-6
        assert (Jn @ proj).min() > -1e-12


def _assert_regularised_non_conflict(J, method, rel):
    # KKT of each QP: (M/tr M + reg I) v^(i) ≥ 0; summed: J d = M w ≥ −reg·tr(M)·w.
    M = J @ J.T
    w = method.weights(J)
    bound = M @ w + method.reg_eps * torch.trace(M) * w
    assert float(bound.min()) >= -rel * float(torch.trace(M)) * float(w.abs().max()), float(bound.min())


def test_non_conflicting_on_random_jacobians():
    exact, default = UPGrad(**EXACT), UPGrad()
    for _, J in asserts.random_jacobians(seed=2):
        asserts.assert_non_conflicting(J, exact(J), rel=1e-10, w=exact.weights(J))
        _assert_regularised_non_conflict(J, default, rel=1e-10)


def test_non_conflicting_float32():
    exact, default = UPGrad(**EXACT), UPGrad()
    for _, J in asserts.random_jacobians(seed=2, dtype=torch.float32):
        d = exact(J)
        assert d.dtype == torch.float32
        asserts.assert_non_conflicting(J.double(), d, rel=1e-5, w=exact.weights(J))
        _assert_regularised_non_conflict(J, default, rel=1e-5)


def test_regularisation_breaks_exact_non_conflict():
    # Three gradients positively spanning R²: the dual cone is {0}; with reg_eps > 0, d is small but
    # may conflict (D3) — the bound above is then attained with equality on the active rows.
    J = torch.tensor([[3.5314, 0.1370], [-0.4686, 0.1370], [2.5314, -2.8630]], dtype=torch.float64)
    assert float((J @ UPGrad()(J)).min()) < -1e-3
    assert UPGrad(**EXACT)(J).abs().max() < 1e-12

def test_positively_homogeneous_with_the_official_normalisation():
    # With M̃ = M/tr(M) + reg·I the weights depend on M only up to a positive factor: d(cJ) = c d(J).
    method = UPGrad()
    for _, J in asserts.random_jacobians(seed=4, per_shape=2):
        if float((J * J).sum()) < 1e-4 / 0.3**2:  # stay above the norm_eps threshold (D2)
            continue
        d = method(J)
        for c in (0.3, 1e6):
            err = float((method(c * J) - c * d).norm())
            assert err <= 1e-10 * c * max(float(d.norm()), float(J.norm()))


def test_linear_under_scaling_without_regularisation():
    # The dual cone of diag(c)J is that of J, so π(c_i g_i) = c_i π(g_i): d is linear in c ≥ 0.
    method = UPGrad(**EXACT)
    for _, J in asserts.random_jacobians(seed=5):
        asserts.assert_linear_under_scaling(method, J, rel=1e-10)


@pytest.mark.parametrize("hp", [{}, EXACT])
def test_permutation_invariant(hp):
    method = UPGrad(**hp)
    for _, J in asserts.random_jacobians(seed=6, per_shape=2):
        asserts.assert_permutation_invariant(method, J, rel=1e-9)


def test_equals_pcgrad_for_two_tasks_with_sum_preference():
    # K = 2, p = (1, 1), no normalisation: π(g_1) = g_1 − min(⟨g_1,g_2⟩,0)/||g_2||² g_2 (PCGrad, closed form).
    method = UPGrad(pref_vector=[1.0, 1.0], **EXACT)
    gen = torch.Generator().manual_seed(7)
    for trial in range(50):
        J = torch.randn(2, 1 + trial % 7, generator=gen, dtype=torch.float64)
        g1, g2 = J
        ip = float(g1 @ g2)
        pc = g1 - min(ip, 0.0) / float(g2 @ g2) * g2 + g2 - min(ip, 0.0) / float(g1 @ g1) * g1
        assert torch.allclose(method(J), pc, rtol=1e-11, atol=1e-12 * float(J.norm()))


def test_golden_value():
    # TorchJD's documented output on J_base; by hand: without regularisation the mean of the two
    # projections is PCGrad/2 = [0.2924, 1.9006, 1.9006]; reg_eps shifts it to TorchJD's value.
    d = UPGrad()(j_base())
    assert torch.allclose(d, torch.tensor([0.2929, 1.9004, 1.9004], dtype=torch.float64), atol=1e-4)
    g1, g2 = j_base()
    ip = float(g1 @ g2)
    by_hand = 0.5 * (g1 - ip / float(g2 @ g2) * g2 + g2 - ip / float(g1 @ g1) * g1)
    assert torch.allclose(UPGrad(**EXACT)(j_base()), by_hand, atol=1e-12)
    assert torch.allclose(by_hand, torch.tensor([0.2924, 1.9006, 1.9006], dtype=torch.float64), atol=1e-4)


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    for hp in ({}, EXACT):
        method = UPGrad(**hp)
        out = {k: method(J) for k, J in cases.items()}
        for k, d in out.items():
            assert torch.isfinite(d).all(), k
        g = cases["identical"][0]
        assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
        assert torch.allclose(out["identical"], g, atol=1e-12)
        assert torch.allclose(out["single-task"], g, atol=1e-12)
        assert out["opposite"].abs().max() < 1e-12  # the dual cone of {g, −g} is g⊥
        asserts.assert_non_conflicting(cases["one-zero-row"], out["one-zero-row"])
        asserts.assert_non_conflicting(cases["mixed-scale"], out["mixed-scale"])
        assert torch.allclose(out["huge-scale"], 1e15 * method(cases["huge-scale"] / 1e15), rtol=1e-12)
    # collinear g, 3g, −g/2: the dual cone is g⊥, so d = 0 exactly without regularisation
    assert UPGrad(**EXACT)(cases["collinear"]).abs().max() < 1e-12
    assert UPGrad()(cases["collinear"]).norm() < 1e-2 * cases["collinear"][0].norm()  # O(reg_eps)
    # tiny scale: tr(M) < norm_eps, so M̃ = reg·I and d = mean of the rows (D2)
    tiny = cases["tiny-scale"]
    assert torch.allclose(UPGrad()(tiny), tiny.mean(0), rtol=1e-12)
    asserts.assert_non_conflicting(tiny, UPGrad(**EXACT)(tiny))


def test_bad_input():
    with pytest.raises(NonFiniteError):
        UPGrad()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="pref_vector"):
        UPGrad(pref_vector=[1.0, 1.0, 1.0])(j_base())
    with pytest.raises(ValueError):
        UPGrad(reg_eps=-1.0)


def _hull_distance(x, A):
    """Distance from x (n,) to conv{a_i}: the min-norm point of conv{a_i − x}."""
    P = A - x
    lam = min_norm_weights(P @ P.T)
    return float((lam @ P).norm())


def test_toy_quadratics_no_loss_increases_and_iterates_reach_the_pareto_set():
    # f_i(x) = ||x − a_i||², K = 3, Pareto set conv{a_1, a_2, a_3}; 8 starting points in [−2, 4]², GD η = 0.2,
    # 150 steps. Measured: every final iterate lies in the triangle (distance ~1e-16).
    A = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.5, 1.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(8)
    X = 6.0 * torch.rand(8, 2, generator=gen, dtype=torch.float64) - 2.0
    exact, default = UPGrad(**EXACT), UPGrad()
    X_default = X.clone()
    for _ in range(150):
        for b in range(X.shape[0]):
            J = 2.0 * (X[b] - A)  # (3, 2): rows ∇f_i
            w = exact.weights(J)
            d = w @ J
            asserts.assert_non_conflicting(J, d, rel=1e-10, w=w)  # no loss increases to first order
            X[b] = X[b] - 0.2 * d
            J = 2.0 * (X_default[b] - A)
            _assert_regularised_non_conflict(J, default, rel=1e-10)
            X_default[b] = X_default[b] - 0.2 * default(J)
    dist = [_hull_distance(x, A) for x in X]
    assert max(dist) < 1e-9, max(dist)
    dist = [_hull_distance(x, A) for x in X_default]
    assert max(dist) < 1e-9, max(dist)


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(UPGrad())


def test_zero_rows_exact_operator_regression():
    """Issue 7 item 1: with reg_eps = 0 and zero rows, the eigen-factor + nnls solve differed from the zero-rows-removed
    answer by up to 39x and violated J d ≥ 0. Zero rows are now dropped before the solve: d equals UPGrad of the
    remaining rows (same preference weights, same trace), and J d ≥ 0 per task. 100 seeded cases, all must pass."""
    gen = torch.Generator().manual_seed(5)
    for _ in range(100):
        K, n = int(torch.randint(3, 12, (1,), generator=gen)), int(torch.randint(1, 20, (1,), generator=gen))
        J = torch.randn(K, n, generator=gen, dtype=torch.float64)
        zero = torch.rand(K, generator=gen) < 0.3
        zero[0] = True
        zero[1] = False
        J[zero] = 0.0
        d = UPGrad(**EXACT)(J)
        kept = int((~zero).sum())
        d_removed = UPGrad(pref_vector=torch.full((kept,), 1.0 / K, dtype=torch.float64), **EXACT)(J[~zero])
        big = float(J.norm(dim=1).max())
        assert float((d - d_removed).norm()) <= 1e-10 * big
        norms = J.norm(dim=1)
        assert bool((J @ d >= -1e-12 * norms * big).all())


def test_stress_inputs_are_certified():
    """100 seeded hard Jacobians (test_solvers.stress_jacobians): J d ≥ 0 per task for the exact operator
    (tolerance 1e-9·||g_i||·Σ_j |w_j| ||g_j|| in float64, 1e-3 in float32); all must pass."""
    from tests.reference_impls.test_solvers import stress_jacobians

    for name, J in stress_jacobians(5, 100):
        w = UPGrad(**EXACT).weights(J).double()
        J64 = J.double()
        norms = J64.norm(dim=1)
        rtol = 1e-9 if J.dtype == torch.float64 else 1e-3
        assert bool((J64 @ (w @ J64) >= -rtol * norms * float(w.abs() @ norms)).all()), name


def test_two_task_fast_path_equals_the_general_solver(monkeypatch):
    """K = 2 runs on Python floats (UPGrad._weights2: the dual-cone projections of the two rows by enumerating
    faces, solvers.dual_cone_weights2, certified). On 100 Jacobians of each two-task family
    (tests/reference_impls/two_task_inputs.py), float64 and float32, with the defaults and with
    norm_eps = reg_eps = 0 (the exact operator), the weights equal the general path's (forced by disabling the
    fast path) to 1e-12 relative to max |w| (measured: bit for bit on all of them), and both paths raise the
    same error where one does."""
    import reference_impls.gradient_weighting.upgrad as module
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    for kwargs in ({}, {"norm_eps": 0.0, "reg_eps": 0.0}):
        for dtype in (torch.float64, torch.float32):
            for family, J in all_two_task_jacobians(100, dtype):
                out = []
                for fast in (True, False):
                    with monkeypatch.context() as m:
                        if not fast:
                            m.setattr(module, "gramian2_entries", lambda M: None)
                        try:
                            out.append(UPGrad(**kwargs).weights(J))
                        except Exception as error:  # noqa: BLE001 - compared below
                            out.append(type(error))
                fast, general = out
                if isinstance(fast, type) or isinstance(general, type):
                    assert fast == general, (family, kwargs)
                    continue
                scale = float(general.abs().max().clamp_min(1e-300))
                assert float((fast - general).abs().max()) <= 1e-12 * scale, (family, kwargs, dtype, fast, general)
