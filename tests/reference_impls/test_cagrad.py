"""CAGrad (Liu et al., NeurIPS 2021): the claims of the paper, checked exactly or on a toy."""

import numpy as np
import pytest
import scipy.optimize
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.cagrad import CAGrad
from reference_impls.metrics import pareto_stationarity
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

CS = [0.1, 0.5, 1.0, 2.0]


def _primal_slsqp(G, c):
    """max_{d, v} v s.t. G d ≥ v, ||d − g_0|| ≤ c||g_0|| (SLSQP, tight tolerance): the optimal value."""
    g0 = G.mean(0)
    rho = c * np.linalg.norm(g0)
    res = scipy.optimize.minimize(
        lambda z: -z[-1],
        np.r_[g0, (G @ g0).min()],
        jac=lambda z: np.r_[np.zeros(G.shape[1]), -1.0],
        constraints=[
            {
                "type": "ineq",
                "fun": lambda z: rho**2 - np.sum((z[:-1] - g0) ** 2),
                "jac": lambda z: np.r_[-2.0 * (z[:-1] - g0), 0.0],
            },
            {"type": "ineq", "fun": lambda z: G @ z[:-1] - z[-1], "jac": lambda z: np.c_[G, -np.ones(len(G))]},
        ],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    return -res.fun


def test_ball_constraint_and_exact_optimum_against_slsqp():
    # d is feasible (||d − g_0|| ≤ c||g_0||) and its worst improvement min_i ⟨g_i, d⟩ reaches the primal optimum
    # (SLSQP on the primal, tight tolerance), and the duality gap at our own w is zero.
    for name, J in asserts.random_jacobians(shapes=[(2, 3), (3, 20), (5, 50), (8, 16), (12, 64)]):
        G = J.numpy()
        g0 = G.mean(0)
        for c in CS:
            d = CAGrad(c)(J).numpy()
            rho = c * np.linalg.norm(g0)
            assert np.linalg.norm(d - g0) <= rho * (1 + 1e-9), (name, c)
            value = (G @ d).min()
            scale = np.abs(G @ g0).max() + rho * np.linalg.norm(G, axis=1).max()
            assert value >= _primal_slsqp(G, c) - 1e-7 * scale, (name, c)
            # strong duality (a check that can fail, unlike weak duality): the dual objective at our own w,
            # g_wᵀg_0 + √φ||g_w||, equals the primal value min_i <g_i, d>, per task relative to ||g_i||·||d||
            u = CAGrad(c).weights(J).numpy()
            w = u - 1.0 / len(G)
            tol = 1e-9 * np.linalg.norm(G, axis=1).max() * (np.linalg.norm(d) + rho)
            if np.linalg.norm(d - g0) < rho * (1 - 1e-9):  # interior d (D3: 0 ∈ conv{g_i}, dual optimum g_w = 0, value 0)
                assert abs(value) <= tol, (name, c)
            else:
                w = w / w.sum()
                gw = w @ G
                dual = gw @ g0 + rho * np.linalg.norm(gw)
                assert abs(dual - value) <= tol, (name, c)


def test_dual_optimality_conditions():
    # KKT of the dual: with d = g_0 + √φ g_w/||g_w||, ⟨g_i, d⟩ ≥ ν for all i, with equality where w_i > 0
    # (ν = min_i ⟨g_i, d⟩), and w ∈ Δ. Weights: u = 𝟙/K + (√φ/||g_w||) w.
    for name, J in asserts.random_jacobians():
        K = J.shape[0]
        if float(pareto_stationarity(J)) <= 1e-6 * float(J.norm(dim=1).max()):
            continue  # 0 ∈ conv{g_i}: g_w* may be 0 (dual-cone projection, D3; tested in test_degenerate_inputs)
        for c in CS:
            u = CAGrad(c).weights(J)
            mult = float(u.sum()) - 1.0  # √φ/||g_w||
            d = u @ J
            w = (u - 1.0 / K) / mult
            assert float(w.min()) >= -1e-12 and abs(float(w.sum()) - 1.0) <= 1e-9
            g0 = J.mean(0)
            assert abs(mult - c * float(g0.norm()) / float((w @ J).norm())) <= 1e-8 * mult  # t* = ||g_w||
            inner = J @ d
            norms = J.norm(dim=1)
            worst = int(inner.argmin())
            nu = float(inner[worst])
            # per task: |<g_i, d> − ν| ≤ 1e-9·(||g_i|| + ||g_worst||)·||d|| on the support of w
            tol = 1e-9 * (norms + norms[worst]) * float(d.norm())
            assert bool(((inner - nu).abs() <= tol)[w > 1e-9].all()), (name, c)


def test_random_directions_in_the_ball_are_never_better():
    gen = torch.Generator().manual_seed(4)
    for _, J in asserts.random_jacobians(seed=2, shapes=[(2, 3), (3, 5), (5, 8)]):
        g0 = J.mean(0)
        for c in (0.5, 1.5):
            d = CAGrad(c)(J)
            rho = c * float(g0.norm())
            u = torch.randn(1000, J.shape[1], generator=gen, dtype=torch.float64)
            r = torch.rand(1000, 1, generator=gen, dtype=torch.float64) ** (1.0 / J.shape[1])
            d_rand = g0 + rho * r * u / u.norm(dim=1, keepdim=True)  # uniform in the ball
            best_random = float((d_rand @ J.T).min(dim=1).values.max())
            assert float((J @ d).min()) >= best_random - 1e-12 * float(J.norm()) ** 2


def test_c_zero_gives_the_mean_gradient():
    for _, J in asserts.random_jacobians():
        assert torch.allclose(CAGrad(0.0)(J), J.mean(0), atol=1e-14)


def test_c_at_least_one_is_non_conflicting():
    # c ≥ 1: d = 0 is in the ball, so the max-min value is ≥ 0 (paper: CAGrad then behaves like MGDA).
    for _, J in asserts.random_jacobians(seed=3):
        for c in (1.0, 1.5, 3.0):
            asserts.assert_non_conflicting(J, CAGrad(c)(J), rel=1e-9)


def test_rescale_options_and_golden_value():
    J = j_base()
    d = CAGrad(0.5)(J)
    # TorchJD's documented CAGrad(c=0.5) output on J_base (Algorithm 1, no rescaling)
    assert torch.allclose(d, torch.tensor([0.1835, 1.2041, 1.2041], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(CAGrad(0.5, rescale=1)(J), d / 1.25, atol=1e-14)  # official NYUv2 / LibMTL
    assert torch.allclose(CAGrad(0.5, rescale=2)(J), d / 1.5, atol=1e-14)  # official toy
    # independent check (K = 2): w = (γ, 1 − γ) minimises the 1-D dual, d = g_0 + √φ g_w/||g_w||
    g1, g2 = J
    g0 = (g1 + g2) / 2
    rho = 0.5 * float(g0.norm())
    res = scipy.optimize.minimize_scalar(
        lambda a: float((a * g1 + (1 - a) * g2) @ g0) + rho * float((a * g1 + (1 - a) * g2).norm()),
        bounds=(0, 1),
        method="bounded",
        options={"xatol": 1e-12},
    )
    gw = res.x * g1 + (1 - res.x) * g2
    assert torch.allclose(d, g0 + rho * gw / gw.norm(), atol=1e-8)


def test_float32():
    for _, J in asserts.random_jacobians(dtype=torch.float32, shapes=[(3, 20), (8, 16)]):
        d = CAGrad(0.5)(J)
        assert d.dtype == torch.float32
        assert torch.allclose(d.double(), CAGrad(0.5)(J.double()), rtol=1e-4, atol=1e-4 * float(J.norm()))


def test_degenerate_inputs():
    cases = asserts.degenerate_jacobians()
    g = cases["identical"][0]
    for c in (0.5, 1.0):
        out = {k: CAGrad(c)(J) for k, J in cases.items()}
        for k, d in out.items():
            assert torch.isfinite(d).all(), k
        assert torch.equal(out["all-zero"], torch.zeros(4, dtype=torch.float64))
        assert float(out["opposite"].abs().max()) <= 1e-14  # g_0 = 0: d = g_0
        assert torch.allclose(out["identical"], (1 + c) * g, atol=1e-12)  # g_0 + c||g_0|| g/||g||
        assert torch.allclose(out["single-task"], (1 + c) * g, atol=1e-12)
        assert torch.allclose(out["huge-scale"], 1e15 * CAGrad(c)(cases["huge-scale"] / 1e15), rtol=1e-10)
        assert torch.allclose(out["tiny-scale"], 1e-15 * CAGrad(c)(cases["tiny-scale"] * 1e15), rtol=1e-10)
    # collinear g, 3g, −g/2: g_0 = 7g/6; the best worst-case improvement moves d towards −g: d = g_0 − c||g_0|| ĝ
    coll = cases["collinear"]
    assert torch.allclose(CAGrad(0.5)(coll), (7 / 12) * g, atol=1e-12)
    assert float(CAGrad(1.0)(coll).abs().max()) <= 1e-12  # the ball contains 0, the only non-conflicting d
    # zero row: 0 ∈ conv{g_i} and g_w* = 0; d = the projection of g_0 onto {d : J d ≥ 0} (D3), inside the ball
    J = cases["one-zero-row"]
    g0 = J.mean(0)
    d = CAGrad(1.0)(J)
    asserts.assert_non_conflicting(J, d, rel=1e-12)
    assert float((d - g0).norm()) <= float(g0.norm()) * (1 + 1e-12)
    proj = scipy.optimize.minimize(
        lambda y: 0.5 * np.sum((y - g0.numpy()) ** 2),
        g0.numpy(),
        jac=lambda y: y - g0.numpy(),
        constraints=[{"type": "ineq", "fun": lambda y: J.numpy() @ y, "jac": lambda y: J.numpy()}],
        method="SLSQP",
        options={"ftol": 1e-15},
    ).x
    assert np.abs(d.numpy() - proj).max() < 1e-6
    with pytest.raises(NonFiniteError):
        CAGrad()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="rescale"):
        CAGrad(rescale=3)
    with pytest.raises(ValueError, match="c must be"):
        CAGrad(c=-1.0)


def test_zero_rows_and_float32_gramians():
    # Zero task gradients put 0 in conv{g_i}: with c = 1 the ball contains 0, the max-min value is 0 and d must be
    # non-conflicting (the dual-cone projection path, D3). Gramians of float32 Jacobians are PSD only to rounding.
    gen = torch.Generator().manual_seed(11)
    for trial in range(60):
        K, n = int(torch.randint(2, 12, (1,), generator=gen)), int(torch.randint(1, 20, (1,), generator=gen))
        J = torch.randn(K, n, generator=gen, dtype=torch.float64)
        J[torch.rand(K, generator=gen) < 0.3] = 0.0
        d = CAGrad(1.0)(J)
        g0 = J.mean(0)
        asserts.assert_non_conflicting(J, d, rel=1e-9)
        assert float((d - g0).norm()) <= float(g0.norm()) * (1 + 1e-9) + 1e-12
        assert torch.isfinite(CAGrad(0.5)(J.float())).all()



def test_toy_converges_to_the_average_loss_optimum():
    # CAGrad toy (s = 1), c = 0.5, CAGrad's three inits, float64, Adam with β = (0.9, 0.9) (short second-moment memory:
    # the default β_2 = 0.999 stalls in the log-valleys of the upper half plane), lr 0.1, cosine decay, 500 steps
    # (the paper: Adam lr 1e-3, 100k steps). Measured: all three end at (0.000, −8.3551), PS-measure ≤ 2e-6;
    # MGDA from the same inits stops at x_1 = −2.02, −6.28, 1.61 (test_mgda).
    problem, x = asserts.run_cagrad_toy(CAGrad(0.5), steps=500, lr=0.1)
    assert float(x[:, 0].abs().max()) < 0.02, x
    assert float((x[:, 1] + 8.355).abs().max()) < 0.02, x
    assert float(pareto_stationarity(problem.jacobian(x)).max()) < 1e-3


def test_backward_in_a_training_loop_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(CAGrad(0.4, rescale=1))


def test_audit_float32_near_collinear_stays_in_the_ball():
    # issue 7 item 2: CAGrad(0.5)([[2.0409191], [-2.5556650]]) in float32 gave ||d − g_0|| = 2ρ (now ρ, to float32 rounding)
    J = torch.tensor([[2.0409191], [-2.5556650]])
    g0 = J.double().mean(0)
    d = CAGrad(0.5)(J).double()
    assert float((d - g0).norm()) <= 0.5 * float(g0.norm()) * (1 + 1e-5)
    # 400 seeded near-collinear float32 Jacobians (K 2..5, n 1..3; the first 400 of the 1,500 of the report): before
    # the fix 347/1,500 left the ball by up to 4.4ρ; now every d is within ρ up to the float32 rounding of M
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        K, n = int(torch.randint(2, 6, (1,), generator=gen)), int(torch.randint(1, 4, (1,), generator=gen))
        base = torch.randn(1, n, generator=gen)
        J = (base * torch.randn(K, 1, generator=gen) + 1e-3 * torch.randn(K, n, generator=gen)).float()
        g0 = J.double().mean(0)
        d = CAGrad(0.5)(J).double()
        assert float((d - g0).norm()) <= 0.5 * float(g0.norm()) * (1 + 1e-3) + 1e-6 * float(d.norm())


def test_c_one_non_conflicting_per_task_at_row_norm_spread():
    # issue 7 item 3: c = 1, K = 19, n = 50, rows randn · logspace(0, log10 spread); seeds 157 (spread 3e5) and 183 (1e6)
    # gave min cos(g_i, d) = −0.069 and −0.18. Per-task check: <g_i, d> ≥ −1e-9 ||g_i|| ||d||.
    for seed, spread in ((157, 3e5), (183, 1e6), (92, 1e6)):
        torch.manual_seed(seed)
        J = torch.randn(19, 50, dtype=torch.float64) * torch.logspace(0, np.log10(spread), 19, dtype=torch.float64)[:, None]
        d = CAGrad(1.0)(J)
        assert float(((J @ d) / (J.norm(dim=1) * d.norm())).min()) >= -1e-9


def test_zero_rows_are_removed_before_the_solve():
    # issue 7 item 1: zero rows made the eigen-factor BVLS stop early (weight ~1e15, min <g_i, d> = −0.535 on
    # the seeded cases of test_zero_rows_and_float32_gramians with the native OpenBLAS kernels); d must not depend
    # on the kernel: compare with the same problem without the zero rows (g_0 keeps the 1/K factor)
    gen = torch.Generator().manual_seed(3)
    for _ in range(40):
        J = torch.randn(7, 5, generator=gen, dtype=torch.float64)
        J[[1, 4]] = 0.0
        for c in (0.5, 1.0, 2.0):
            d = CAGrad(c)(J)
            g0 = J.mean(0)
            assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)
            if c >= 1.0:  # 0 in the ball: value 0, d non-conflicting per task
                assert float(((J @ d)[J.norm(dim=1) > 0] / J[J.norm(dim=1) > 0].norm(dim=1)).min()) >= -1e-12 * float(d.norm() + g0.norm())


def test_stress_inputs_are_certified_or_raise_nothing_silent():
    """200 seeded hard Jacobians (tests.reference_impls.test_solvers.stress_jacobians): every call returns d in the
    ball (to the input precision) or raises SolverError; all 200 currently return."""
    from tests.reference_impls.test_solvers import stress_jacobians

    for name, J in stress_jacobians(2, 200):
        d = CAGrad(0.5)(J).double()
        g0 = J.double().mean(0)
        rtol = 1e-7 if J.dtype == torch.float64 else 1e-3
        assert float((d - g0).norm()) <= 0.5 * float(g0.norm()) * (1 + rtol) + rtol * float(J.double().norm(dim=1).max()), name


@pytest.mark.parametrize("c", [0.5, 0.1, 2.0])
def test_two_task_fast_path_equals_the_general_solver(c, monkeypatch):
    """K = 2 solves the one-variable dual in closed form (cagrad_weights2, certified by the same KKT test). On 100
    Jacobians of each two-task family (tests/reference_impls/two_task_inputs.py), float64 and float32, the
    weights equal those of the general solver (forced by disabling the fast path) to 100·ε·max(1, κ) relative to
    max |u|, κ = (Σ_i w_i ||g_i||/||g_w||)² the conditioning of ||g_w|| from the Gramian (w = u − 𝟙/2 normalised; both
    solvers round wᵀMw; measured ≤ 4.3·ε₆₄·κ, nearly opposite toy gradients), and both raise the same error
    where one does. The fast path answers every float64
    generic, row-scaled, globally scaled, orthogonal, opposite (g_0 = 0) and toy input; it may decline only
    where the general solver has its own rules (an interior minimiser with 0 ∈ conv{g_i} to the rounding level
    of the Gramian or collinear rows, identical or zero rows; in float32 that level is reached near the toy's
    Pareto set)."""
    import reference_impls.gradient_weighting.cagrad as module
    from reference_impls.core.solvers import float_info, gramian2_entries
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    for dtype in (torch.float64, torch.float32):
        for family, J in all_two_task_jacobians(100, dtype):
            out = []
            for fast in (True, False):
                with monkeypatch.context() as m:
                    if not fast:
                        m.setattr(module, "gramian2_entries", lambda M: None)
                    try:
                        out.append(CAGrad(c=c).weights(J))
                    except Exception as error:  # noqa: BLE001 - compared below
                        out.append(type(error))
            fast, general = out
            if isinstance(fast, type) or isinstance(general, type):
                assert fast == general, (family, dtype)
                continue
            # the answer's conditioning: ||g_w|| is resolved to ε·(Σ_i w_i ||g_i||)² by the Gramian (w = u − 𝟙/2, normalised)
            w = general.double() - 0.5
            w = w / w.sum()
            cond = float(w @ J.double().norm(dim=1) / (w @ J.double()).norm()) ** 2
            scale = float(general.abs().max())
            tol = 100 * float(torch.finfo(dtype).eps) * max(1.0, cond) * scale
            assert float((fast - general).abs().max()) <= tol, (family, dtype, fast, general)
            if family in ("generic", "unequal-scales", "orthogonal", "toy", "global-scale", "opposite") and dtype == torch.float64:
                entries = gramian2_entries(module.rescaled_gramian(J))
                assert module.cagrad_weights2(*entries, c, *float_info(J.dtype)) is not None, family
