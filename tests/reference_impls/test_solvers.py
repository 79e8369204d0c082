"""The shared solvers return exact, certified answers (and say so when they cannot)."""


import numpy as np
import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import SolverError, dual_cone_weights, min_norm_weights, project_simplex, shifted_gramian
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


# ---------------------------------------------------------------------------------------------
# Certified layer: per-task KKT on hard inputs (regressions of issue 7, items 1-3)
# ---------------------------------------------------------------------------------------------


def stress_jacobians(seed: int, count: int):
    """Seeded hard Jacobians: K 2..40, n 1..500, float32/float64, zero / duplicated / collinear / opposite
    rows, global scales 1e-12..1e12 and row-norm spreads up to 1e6 (the inputs of the stress tests)."""
    gen = torch.Generator().manual_seed(seed)
    for case in range(count):
        K = int(torch.randint(2, 41, (1,), generator=gen))
        n = int(torch.randint(1, 501, (1,), generator=gen)) if case % 3 else int(torch.randint(1, 6, (1,), generator=gen))
        J = torch.randn(K, n, generator=gen, dtype=torch.float64)
        kind = case % 6
        if kind == 1:
            J[torch.rand(K, generator=gen) < 0.3] = 0.0  # zero rows
        elif kind == 2:
            J[K // 2 :] = J[: K - K // 2] * torch.rand(K - K // 2, 1, generator=gen, dtype=torch.float64)[: K - K // 2]  # collinear/duplicated
        elif kind == 3:
            J[1] = -J[0]  # opposite
        spread = 10.0 ** float(6 * torch.rand(1, generator=gen))
        J = J * torch.logspace(0, float(torch.log10(torch.tensor(spread))), K, dtype=torch.float64)[torch.randperm(K, generator=gen)][:, None]
        J = J * 10.0 ** float(torch.randint(-12, 13, (1,), generator=gen))
        dtype = torch.float32 if case % 4 == 3 else torch.float64
        yield f"case{case}-K{K}-n{n}-kind{kind}-{dtype}", J.to(dtype)


def per_task_slack(J: torch.Tensor, values: torch.Tensor, d: torch.Tensor) -> float:
    """min_i values_i / (||g_i|| ||d||) over the non-zero rows (float64): a per-task relative measure."""
    J = J.double()
    norms = J.norm(dim=1)
    nz = norms > 0
    scale = norms[nz] * max(float(d.double().norm()), 1e-300)
    return float((values[nz] / scale).min()) if nz.any() else 0.0


def test_min_norm_per_task_kkt_on_stress_inputs():
    """Every task, however small, gets ⟨g_i, d⟩ ≥ ||d||² up to 1e-9 (float64) / 1e-3 (float32) of ||g_i||·||d||
    (before the fix: min cos(g_i, d) = -0.15 at row-norm spread 1e6); 200 seeded cases, all must pass."""
    for name, J in stress_jacobians(0, 200):
        lam = min_norm_weights(J @ J.T)
        J64 = J.double()
        d = lam.double() @ J64
        if float(d.norm()) <= 1e-6 * float(J64.norm(dim=1).max()):
            continue  # 0 ∈ conv{g_i} (to the input precision): d = 0 is certified by the solver itself
        rtol = 1e-9 if J.dtype == torch.float64 else 1e-3
        assert per_task_slack(J, J64 @ d - d @ d, d) >= -rtol, name


def test_min_norm_spread_1e6_regression():
    # issue 7 item 3: K = 19, n = 50, rows randn · logspace(0, 6); seed 92 gave min cos(g_i, d) = −0.15
    torch.manual_seed(92)
    J = torch.randn(19, 50, dtype=torch.float64) * torch.logspace(0, 6, 19, dtype=torch.float64)[:, None]
    d = min_norm_weights(J @ J.T) @ J
    assert per_task_slack(J, J @ d - d @ d, d) >= -1e-9


def test_vanishing_jacobian_has_a_defined_answer_or_a_clear_error():
    # issue 7 item 3: J · 1e-155 made numpy raise "SVD did not converge" (0.5/scale overflowed)
    from reference_impls.gradient_weighting.mgda import MGDA
    from reference_impls.gradient_weighting.sdmgrad import SDMGrad

    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in (MGDA(), SDMGrad()):
        assert torch.allclose(method.weights(J * 1e-155), method.weights(J), rtol=1e-12, atol=1e-15)
    with pytest.raises(SolverError, match="subnormal"):
        min_norm_weights((J * 1e-155) @ (J * 1e-155).T)


def test_min_norm_zero_row_rule():
    J = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(min_norm_weights(J @ J.T), torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


def test_dual_cone_weights_certified_on_stress_inputs():
    """Projection of each g_i onto the dual cone: J d ≥ 0 per task (relative to ||g_i||·Σ|v_j|·||g_j||), v ≥ u,
    complementarity; 150 seeded cases, all must pass (under every OpenBLAS kernel)."""
    for name, J in stress_jacobians(1, 150):
        K = J.shape[0]
        V = dual_cone_weights(J @ J.T, np.eye(K))
        J64 = J.double().numpy()
        norms = np.linalg.norm(J64, axis=1)
        rtol = 1e-9 if J.dtype == torch.float64 else 1e-3
        for i in range(K):
            v = V[i]
            assert v.min() >= 0.0 and v[i] >= 1.0, name
            inner = J64 @ (v @ J64)  # ⟨g_j, π(g_i)⟩
            bound = rtol * norms * float(np.abs(v) @ norms)
            assert (inner >= -bound).all(), (name, i)
            active = (v - np.eye(K)[i]) > 0
            assert (np.abs(inner[active]) <= bound[active]).all(), (name, i)


def test_dual_cone_zero_rows_constrain_nothing():
    # issue 7 item 1: with zero rows the eigen-factor + nnls solve was off by up to 39x; now zero rows are dropped
    gen = torch.Generator().manual_seed(5)
    for _ in range(50):
        J = torch.randn(6, 4, generator=gen, dtype=torch.float64)
        zero = torch.tensor([False, True, False, False, True, False])
        J[zero] = 0.0
        V = dual_cone_weights(J @ J.T, np.eye(6))
        Vr = dual_cone_weights(J[~zero] @ J[~zero].T, np.eye(4))
        assert np.allclose(V[np.ix_(~zero.numpy(), ~zero.numpy())], Vr, rtol=1e-10, atol=1e-12)
        assert np.array_equal(V[zero.numpy()], np.eye(6)[zero.numpy()])


def _projection_reference(J64: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Gᵀv for v = argmin_{v ≥ u} ||Gᵀv||², by an independent method: scipy's NNLS on z = v − u ≥ 0 with the rows
    of G themselves (min_z ||Gᵀz + Gᵀu||), never the Gramian."""
    from scipy.optimize import nnls

    z, _ = nnls(J64.T, -(J64.T @ u), maxiter=50 * J64.shape[0] + 500)
    return J64.T @ (u + z)  # (n,)


@pytest.mark.parametrize("pivot_steps", [None, 0], ids=["batched", "per-row-fallback"])
def test_dual_cone_weights_match_an_independent_per_row_solve(pivot_steps, monkeypatch):
    """The batched solve (and, with no block-pivoting sweeps, the per-row Lawson–Hanson fallback) projects every
    row onto the dual cone to the Gramian's resolution, against scipy's NNLS on Gᵀ (an independent method):
    ||Gᵀv − d_ref|| ≤ √κ·S with S = Σ_j (|u_j| + v_j − u_j)·||g_j|| (the rounding scale of the certificate, of the
    input Gᵀu and of the answer) and κ = 32·K·ε₆₄; per task this bounds |⟨g_i, Gᵀv − d_ref⟩| ≤ √κ·||g_i||·S. The
    largest error seen is 0.05 of the bound. Inputs: the 150 stress Jacobians (zero, duplicated, collinear and
    opposite rows, K up to 40, row-norm spreads up to 1e6, scales 1e-12..1e12) with UPGrad's bounds U = I, plus
    150 with random-sign bounds U (3, K) as in CAGrad; 300 seeded cases, all must pass (every OpenBLAS kernel)."""
    import reference_impls.core.solvers as solvers

    if pivot_steps is not None:
        monkeypatch.setattr(solvers, "_BLOCK_PIVOT_STEPS", pivot_steps)
    gen = np.random.default_rng(11)
    cases = [(name, J, None) for name, J in stress_jacobians(1, 150)]
    cases += [(name, J, gen.standard_normal((3, J.shape[0]))) for name, J in stress_jacobians(2, 150)]
    worst = 0.0
    for name, J, U in cases:
        J64 = J.double().numpy()
        J64 = J64 / max(float(np.abs(J64).max()), 1e-300)  # d is positively homogeneous in G: compare at unit scale
        K = J64.shape[0]
        U = np.eye(K) if U is None else U
        V = dual_cone_weights(J64 @ J64.T, U)
        norms = np.linalg.norm(J64, axis=1)
        kappa = 32.0 * K * np.finfo(np.float64).eps
        for r in range(U.shape[0]):
            d, d_ref = V[r] @ J64, _projection_reference(J64, U[r])
            S = float((np.abs(U[r]) + V[r] - U[r]) @ norms)
            assert (V[r] >= U[r]).all(), (name, r)
            error = float(np.linalg.norm(d - d_ref)) / (np.sqrt(kappa) * max(S, 1e-300))
            worst = max(worst, error)
            assert error <= 1.0, (name, r, error)
    assert worst > 0.0  # the comparison ran on non-trivial projections


def test_dual_cone_weights_batched_path_solves_typical_inputs_without_the_fallback(monkeypatch):
    """On Gaussian Jacobians (K = 2..40, full row rank, 40 seeds, with UPGrad's U = I) every row is solved and
    certified by the batched block pivoting: the per-row Lawson–Hanson fallback is never entered (it exists for
    singular faces and rounding cycles, exercised by the test above with no sweeps)."""
    import reference_impls.core.solvers as solvers

    def forbidden(*args, **kwargs):
        raise AssertionError("fallback entered")

    monkeypatch.setattr(solvers, "_nonnegative_qp", forbidden)
    gen = torch.Generator().manual_seed(4)
    for seed in range(40):
        K = 2 + seed
        J = torch.randn(K, 3 * K + 20, generator=gen, dtype=torch.float64) * torch.logspace(-1, 1, K, dtype=torch.float64)[:, None]
        V = dual_cone_weights(J @ J.T + 1e-4 * torch.eye(K, dtype=torch.float64), np.eye(K))
        assert (V >= np.eye(K)).all()


# ---------------------------------------------------------------------------------------------
# K = 2 fast paths (Python floats) against the general solvers
# ---------------------------------------------------------------------------------------------


def test_min_norm_weights2_is_the_general_solver_bit_for_bit():
    """min_norm_weights2 (the K = 2 closed form on Python floats, certified) returns exactly min_norm_weights'
    λ on 200 Jacobians of each two-task family (generic, nearly opposite/collinear to 1e-9/1e-12, identical,
    opposite, orthogonal, a zero row, row scales 1e±8, global scales 1e±30, the CAGrad toy), float64 and
    float32; where it returns None the general solver raises (subnormal or uncertified Gramians), so the
    fast path never replaces an error by an answer. It declines only there: on every other input it answers."""
    from reference_impls.core.solvers import float_info, gramian2_entries, min_norm_weights2
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    answered = 0
    for dtype in (torch.float64, torch.float32):
        for family, J in all_two_task_jacobians(200, dtype):
            M = J @ J.T
            entries = gramian2_entries(M)
            if entries is None:  # not finite (float32 overflow of 1e30² scales): the general path raises
                with pytest.raises(NonFiniteError):
                    min_norm_weights(M)
                continue
            fast = min_norm_weights2(*entries, *float_info(M.dtype))
            if fast is None:
                with pytest.raises(SolverError):
                    min_norm_weights(M)
                continue
            answered += 1
            assert torch.equal(torch.tensor(fast, dtype=M.dtype), min_norm_weights(M)), (family, dtype)
    assert answered >= 0.95 * 2 * 10 * 200


def _dual_cone_case(J: torch.Tensor, reg: float = 1e-4):
    """UPGrad's scaled Gramian M/tr(M) + reg·I of J, as float64 entries and array."""
    M = (J @ J.T).double()
    M = M / float(M.trace()) + reg * torch.eye(2, dtype=torch.float64)
    (a, b), (c, d) = M.tolist()
    return (a, b, c, d), M.numpy()


def test_dual_cone_weights2_matches_the_general_solver_on_all_four_faces():
    """dual_cone_weights2 (each row's QP by enumerating its at most four faces, certified) against
    dual_cone_weights on 200 Jacobians of each two-task family, float64, with UPGrad's rows u = e_i/2 and
    with random-sign rows u (so every face {}, {1}, {2}, {1, 2} occurs, counted): per task
    |⟨g_i, Gᵀ(v_fast − v_general)⟩| ≤ 1e-12·||g_i||·S (S = Σ_j (|u_j| + |v_j|)·||g_j||), i.e. the same
    projection to rounding, and v ≥ u exactly. UPGrad's rows are answered on every input with a positive
    diagonal and C_12 more than 64 ulps from ±1 (reg = 1e-4 makes that every input)."""
    from reference_impls.core.solvers import dual_cone_weights2
    from tests.reference_impls.two_task_inputs import all_two_task_jacobians

    gen = np.random.default_rng(3)
    faces = set()
    for family, J in all_two_task_jacobians(200, torch.float64):
        if not float((J @ J.T).trace()) > 0.0:
            continue
        entries, M = _dual_cone_case(J)
        norms = np.sqrt(np.diag(M))
        for U in (np.diag([0.5, 0.5]), gen.standard_normal((2, 2))):
            fast = dual_cone_weights2(*entries, [tuple(u) for u in U], float(np.finfo(np.float64).eps))
            assert fast is not None, family
            general = dual_cone_weights(M, U)
            for r in range(2):
                v = np.array(fast[r])
                assert (v >= U[r]).all()
                faces.add(tuple(v > U[r]))
                S = float((np.abs(U[r]) + np.abs(general[r])) @ norms)
                gap = M @ (v - general[r])  # ⟨g_i, Gᵀ(v − v_ref)⟩ in the scaled Gramian
                assert (np.abs(gap) <= 1e-12 * norms * S).all(), (family, r, gap)
    assert faces == {(False, False), (True, False), (False, True), (True, True)}


def test_dual_cone_weights2_declines_where_the_general_solver_repairs_or_drops():
    """Zero rows (dropped by the general solver) and a singular C (|C_12| within 64 ulps of 1: the general solver's
    PSD repair) are left to the general solver: None."""
    from reference_impls.core.solvers import dual_cone_weights2

    eps = float(np.finfo(np.float64).eps)
    assert dual_cone_weights2(0.0, 0.0, 0.0, 1.0, [(0.5, 0.0)], eps) is None  # zero row
    assert dual_cone_weights2(1.0, -1.0, -1.0, 1.0, [(0.5, 0.0)], eps) is None  # opposite rows, no regularisation
    assert dual_cone_weights2(4.0, 2.0, 2.0, 1.0, [(0.5, 0.0)], eps) is None  # collinear rows (C_12 = 1)


# ParetoMTL on DTLZ2 (P = 5, seed 2, step 52 of 100): its six constraint and task gradients, normalised (max
# norm 1); one row has norm 8.4e-11 and 0 lies in the hull of rows 0 and 3 to rounding (the rows are exactly
# dependent). Wolfe's corral stalled on the tiny row with a per-task KKT violation of 2e-9 (relative) and the
# solver raised SolverError, so `modl bench` reported an error cell; exact values as float.hex.
_DEPENDENT_ROWS_GRAMIAN = [
    ["0x1.b7836ce35da11p-3", "0x1.da5fc96f26f51p-2", "-0x1.2057ce0724d9bp-55", "-0x1.b37d1fb9a6ecfp-3", "-0x1.002977c17b806p-2", "0x1.0bd98bd4ab679p-6"],
    ["0x1.da5fc96f26f51p-2", "0x1.0000000000000p+0", "-0x1.3736a30d5ee02p-54", "-0x1.d607c3e6d8d4dp-2", "-0x1.147adc8dd4b71p-1", "0x1.21184311c1ea7p-5"],
    ["-0x1.2057ce0724d9bp-55", "-0x1.3736a30d5ee02p-54", "0x1.bf304fd731743p-96", "0x1.1db3e00021d4fp-55", "0x1.501c43f37f1c6p-55", "-0x1.5f722cba42e59p-59"],
    ["-0x1.b37d1fb9a6ecfp-3", "-0x1.d607c3e6d8d4dp-2", "0x1.1db3e00021d4fp-55", "0x1.af8041c7f85b6p-3", "0x1.fba1f3db52f8bp-3", "-0x1.0965a8034da02p-6"],
    ["-0x1.002977c17b806p-2", "-0x1.147adc8dd4b71p-1", "0x1.501c43f37f1c6p-55", "0x1.fba1f3db52f8bp-3", "0x1.2a992688c7dd9p-2", "-0x1.3838e6f01fbe3p-6"],
    ["0x1.0bd98bd4ab679p-6", "0x1.21184311c1ea7p-5", "-0x1.5f722cba42e59p-59", "-0x1.0965a8034da02p-6", "-0x1.3838e6f01fbe3p-6", "0x1.4677c9babcb97p-10"]
]


def test_min_norm_certifies_zero_in_the_hull_of_exactly_dependent_rows_with_a_tiny_row():
    from reference_impls.core.solvers import min_norm_point, min_norm_tolerances

    Q = np.array([[float.fromhex(x) for x in row] for row in _DEPENDENT_ROWS_GRAMIAN])  # (6, 6)
    lam = min_norm_point(Q)  # was SolverError("min-norm point not certified (K = 6): task 4 ...")
    norms = np.sqrt(np.diag(Q))
    Qlam = Q @ lam
    assert lam.min() >= 0.0 and abs(lam.sum() - 1.0) <= 1e-12
    assert (Qlam - lam @ Qlam + min_norm_tolerances(Q, norms, lam, np.finfo(np.float64).eps)).min() >= 0.0  # per-task KKT
    assert abs(float(lam @ Qlam)) <= 64 * np.finfo(np.float64).eps  # ||d||² = 0 to rounding: Pareto-stationary


@pytest.mark.parametrize("solutions, seed, steps", [(5, 2, 100), (7, 0, 50)])
def test_pareto_mtl_runs_on_dtlz2_where_the_min_norm_solve_used_to_fail(solutions, seed, steps):
    """The two `modl bench` cells (full and quick mode) that raised SolverError now finish, with finite losses
    and a hypervolume above 0.3 (measured 0.346 and 0.451)."""
    from reference_impls.set_runner import run_set

    result = run_set("pareto-mtl", "dtlz2", solutions=solutions, seed=seed, steps=steps)
    assert torch.isfinite(result.f_final).all()
    assert result.extra["metrics"]["hypervolume"] > 0.3
