"""HV maximisation for front prediction (hv-maximization, Deist et al. 2021) and its problem mo-regression.

Exact properties on random inputs: the batched 2-D per-sample weights equal the per-sample weights
built from ``core.hypervolume`` (non-dominated sorting + exact HV gradient of each front), ties and
duplicates included; on a point problem (N = 1) the step is H1's HV gradient mapped through J and
normalised per solution; dominated solutions get the gradient of their own front; invariances
(permutations of networks and samples, scale of the losses with the reference point). Behaviour on
mo-regression over seeds (HV of the P predictions rises per sample; the predictions spread inside
the per-sample Pareto set). Degenerate inputs: P = 1, K = 1, K = 4, identical networks, a zero-width
front, non-finite losses, float32, scales 1e-12..1e12.
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.core.hypervolume import hypervolume_gradient, nondominated_fronts
from reference_impls.finite_set.hv_maximization import HVMaximization
from reference_impls.problems.mo_regression import MORegression
from reference_impls.set_runner import run_set

F64 = torch.float64


def _per_sample_reference(L: torch.Tensor, ref: float = 20.0) -> torch.Tensor:
    """W (P, N, K) from the hypervolume core, one sample at a time (the official loop of compute_weights)."""
    P, N, K = L.shape
    W = torch.zeros_like(L)
    for s in range(N):
        Fs = L[:, s]  # (P, K)
        r = torch.maximum(torch.full((K,), ref, dtype=F64), 1.1 * Fs.max(0).values)  # dynamic reference
        for front in nondominated_fronts(Fs):
            for p in front.tolist():
                # the HV gradient of p's front at p, the front's duplicates of p removed (official rule)
                others = [q for q in front.tolist() if q != p and not torch.equal(Fs[q], Fs[p])]
                idx = [p, *others]
                g = -hypervolume_gradient(Fs[idx], r)[0]  # (K,)
                W[p, s] = g / g.norm() if g.norm() > 0 else g
    return W


def _random_losses(seed: int, P: int, N: int, K: int, *, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if ties:  # small integers: duplicates, shared coordinates, weak dominance
        return torch.randint(0, 4, (P, N, K), generator=g).to(F64)
    return torch.rand(P, N, K, generator=g, dtype=F64) * 3


@pytest.mark.parametrize("ties", [False, True])
def test_batched_2d_weights_equal_the_per_sample_weights_of_the_hypervolume_core(ties):
    # 3 random draws of (P = 6, N = 8, K = 2): every network in every sample, dominated ones included.
    m = HVMaximization()
    for seed in range(3):
        L = _random_losses(seed, 6, 8, 2, ties=ties)
        W = m.sample_weights(L)
        expected = _per_sample_reference(L)
        torch.testing.assert_close(W, expected, rtol=0, atol=1e-14)
        assert bool((W >= 0).all())
        norms = W.norm(dim=2)  # unit rows (every point is inside the dynamic box)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-14)


def test_k3_weights_come_from_the_hypervolume_core_with_the_duplicate_rule():
    # K = 3: the per-front core gradient, and a duplicated network gets its first copy's row (D1).
    m = HVMaximization()
    for seed in range(3):
        L = _random_losses(seed, 5, 6, 3)
        L[4] = L[1]  # network 4 duplicates network 1 in every sample
        W = m.sample_weights(L)
        torch.testing.assert_close(W, _per_sample_reference(L), rtol=0, atol=1e-13)
        torch.testing.assert_close(W[4], W[1], rtol=0, atol=0)
        assert bool((W[1].norm(dim=1) > 0.99).all())


@pytest.mark.parametrize("K", [2, 3])
def test_point_problem_step_is_hv_gradient_ascent_mapped_through_j(K):
    # N = 1, a mutually non-dominated set inside the box: D_p = Σ_k W_pk ∇f_pk with W_p = −G_p/‖G_p‖,
    # G = ∂HV/∂F of H1's core at the dynamic reference max(20, 1.1·max F); per solution relative to ‖D_p‖.
    m = HVMaximization()
    g = torch.Generator().manual_seed(K)
    for trial in range(4):
        t = torch.rand(6, K - 1, generator=g, dtype=F64)
        if K == 2:
            F = torch.cat([t, 1 - t.sqrt()], 1)  # on a convex curve: non-dominated
        else:
            F = torch.cat([t, (1 - t.pow(2).sum(1, keepdim=True)).clamp_min(0).sqrt() + 0.1], 1)
            F = F[nondominated_fronts(F)[0]]
        F = F * 30.0  # beyond the static reference 20: the dynamic one applies
        J = torch.randn(F.shape[0], K, 9, generator=g, dtype=F64)
        D = m.step(torch.zeros(F.shape[0], 9, dtype=F64), F, J, None)
        r = torch.maximum(torch.full((K,), 20.0, dtype=F64), 1.1 * F.max(0).values)
        G = hypervolume_gradient(F, r)  # (P, K)
        expected = torch.einsum("pk,pkn->pn", -G / G.norm(dim=1, keepdim=True), J)
        for p in range(F.shape[0]):
            torch.testing.assert_close(D[p], expected[p], rtol=0, atol=1e-13 * float(expected[p].norm()))


def test_dominated_networks_get_the_gradient_of_their_own_front():
    # Two fronts: the core's gradient of the whole set is zero for the dominated points, the method's
    # weights are the (non-zero) normalised HV gradient of the second front alone.
    F = torch.tensor([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [2.5, 4.5], [4.5, 2.5], [5.0, 5.0]], dtype=F64)
    r = torch.tensor([20.0, 20.0], dtype=F64)
    assert [f.tolist() for f in nondominated_fronts(F)] == [[0, 1, 2], [3, 4], [5]]
    assert bool((hypervolume_gradient(F, r)[3:] == 0).all())
    W = HVMaximization().sample_weights(F[:, None, :])[:, 0]  # (P, K)
    for front in ([0, 1, 2], [3, 4], [5]):
        G = -hypervolume_gradient(F[front], r)
        torch.testing.assert_close(W[front], G / G.norm(dim=1, keepdim=True), rtol=0, atol=1e-15)
    assert bool((W.norm(dim=1) > 0.999).all())


def test_weights_are_equivariant_and_invariant_to_the_scale_of_losses_and_reference():
    # Permuting networks or samples permutes W; scaling L and r by c > 0 (1e-12 .. 1e12) leaves W
    # unchanged (the HV gradient scales by c^{K−1}, the normalisation removes it).
    L = _random_losses(11, 5, 30, 2)
    W = HVMaximization().sample_weights(L)
    perm_p, perm_s = torch.randperm(5, generator=torch.Generator().manual_seed(0)), torch.randperm(30, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(HVMaximization().sample_weights(L[perm_p][:, perm_s]), W[perm_p][:, perm_s], rtol=0, atol=0)
    for c in (1e-12, 1e-6, 1e6, 1e12):
        Wc = HVMaximization(ref_point=20.0 * c).sample_weights(L * c)
        torch.testing.assert_close(Wc, W, rtol=0, atol=1e-12)


def test_the_dynamic_reference_point_keeps_every_network_inside_the_box():
    # A network far beyond the static reference (f = 100 > 20) still gets a unit weight (r = 1.1·max),
    # and a static reference above 1.1·max is used as given: raising it changes the weights.
    F = torch.tensor([[1.0, 100.0], [3.0, 2.0], [100.0, 1.0]], dtype=F64)[:, None, :]
    W = HVMaximization().sample_weights(F)[:, 0]
    assert bool((W.norm(dim=1) > 0.999).all())
    G = -hypervolume_gradient(F[:, 0], torch.tensor([110.0, 110.0], dtype=F64))
    torch.testing.assert_close(W, G / G.norm(dim=1, keepdim=True), rtol=0, atol=1e-15)
    torch.testing.assert_close(HVMaximization(ref_point=(50.0, 110.0)).sample_weights(F)[:, 0], W, rtol=0, atol=1e-15)  # r_1 = max(50, 110)
    assert not torch.allclose(HVMaximization(ref_point=1000.0).sample_weights(F)[:, 0], W)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


def test_one_network_and_one_objective():
    # P = 1: the single point's HV gradient at the dynamic reference, (r_2 − f_2, r_1 − f_1) normalised;
    # K = 1: every network descends its own loss (weight 1), so the step is J (plain gradient descent).
    F = torch.tensor([[2.0, 5.0]], dtype=F64)
    W = HVMaximization().sample_weights(F[:, None, :])[0, 0]
    torch.testing.assert_close(W, torch.tensor([15.0, 18.0], dtype=F64) / math.hypot(15.0, 18.0), rtol=0, atol=1e-15)
    F1 = torch.tensor([[3.0], [1.0], [1.0], [30.0]], dtype=F64)
    J1 = torch.randn(4, 1, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(HVMaximization().step(torch.zeros(4, 5, dtype=F64), F1, J1, None), J1[:, 0], rtol=0, atol=0)


def test_more_than_three_objectives_and_non_finite_losses_raise_clear_errors():
    m = HVMaximization()
    with pytest.raises(ValueError, match="K <= 3 objectives, got K=4"):
        m.sample_weights(torch.rand(3, 2, 4, dtype=F64))
    for bad in (float("nan"), float("inf")):
        L = torch.rand(3, 4, 2, dtype=F64)
        L[1, 2, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            m.sample_weights(L)
        with pytest.raises(ValueError, match="NaN or infinite"):
            m.step(torch.zeros(3, 2, dtype=F64), L[:, 2], torch.ones(3, 2, 2, dtype=F64), None)
    with pytest.raises(ValueError, match="ref_point has 3 entries but the problem has K=2"):
        HVMaximization(ref_point=(1.0, 2.0, 3.0)).sample_weights(torch.rand(3, 2, 2, dtype=F64))
    for bad_ref in (float("nan"), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="ref_point must be finite"):
            HVMaximization(ref_point=bad_ref)
    with pytest.raises(ValueError, match="dynamic_factor"):
        HVMaximization(dynamic_factor=0.5)


def test_float32_losses_give_the_float64_weights_to_float32_rounding():
    L = _random_losses(3, 4, 10, 2)
    W64 = HVMaximization().sample_weights(L)
    W32 = HVMaximization().sample_weights(L.float())
    torch.testing.assert_close(W32.to(F64), HVMaximization().sample_weights(L.float().to(F64)), rtol=0, atol=0)
    torch.testing.assert_close(W32.to(F64), W64, rtol=0, atol=1e-5)
    J = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    D32 = HVMaximization().step(torch.zeros(4, 3), L[:, 0].float(), J.float(), None)
    assert D32.dtype == torch.float32
    torch.testing.assert_close(D32.to(F64), HVMaximization().step(torch.zeros(4, 3, dtype=F64), L[:, 0], J, None), rtol=0, atol=1e-5)


def _identical_starts(problem_cls=MORegression, **knobs):
    class Identical(problem_cls):
        def initial_points(self, seed=0, num=None):
            one = super().initial_points(seed, num=1)  # (1, n)
            return one.expand(self._num_points(num), -1).clone()  # every network the same

    return Identical(**knobs)


def test_identical_networks_move_identically_and_the_hypervolume_still_rises():
    # Identical networks have identical loss vectors in every sample (duplicates share their front's
    # gradient, D1), so they receive identical updates and never separate: a defined result, the
    # official code's. They still descend together towards the front (the sample HV rises).
    problem = _identical_starts(hidden=6, n_samples=40)
    r = run_set("hv-maximization", problem, solutions=3, steps=30, lr=1e-2)
    for t in range(r.x.shape[0]):
        assert torch.equal(r.x[t, 0], r.x[t, 1]) and torch.equal(r.x[t, 0], r.x[t, 2])
    assert float(problem.sample_hypervolumes(r.x_final).mean()) > float(problem.sample_hypervolumes(r.x[0]).mean())


def test_zero_width_front_gives_equal_weights_and_plain_regression():
    # y_1 = y_2 for every sample: the per-sample front is one point, every network is alone in its
    # front with f_1 = f_2, so W = (1, 1)/√2 and the per-sample step is the gradient of (f_1 + f_2)/√2:
    # plain regression of y, whose mean loss falls.
    problem = MORegression(hidden=6, n_samples=40)
    problem.Y_train = problem.Y_train[:, :1].expand(-1, 2).clone()  # (N, 2), y_2 := y_1
    X = problem.initial_points(0, num=4)
    W = HVMaximization().sample_weights(problem.per_sample_losses(X).detach())
    torch.testing.assert_close(W, torch.full_like(W, 1 / math.sqrt(2)), rtol=0, atol=1e-15)
    from reference_impls.core.hooks import set_direction

    F, J = problem.value_and_jacobian(X)
    D = set_direction(HVMaximization(), X, F, J, None, problem.per_sample_losses)  # (P, n)
    expected = (J[:, 0] + J[:, 1]) / math.sqrt(2)  # ∇(f_1 + f_2)/√2
    for p in range(4):
        torch.testing.assert_close(D[p], expected[p], rtol=0, atol=1e-13 * float(expected[p].norm()))
    r = run_set("hv-maximization", problem, solutions=4, steps=40, lr=1e-2)
    assert bool((r.f_final.sum(1) < 0.8 * r.f[0].sum(1)).all()), (r.f[0], r.f_final)


# ------------------------------------------------------------------------------------------------
# The problem mo-regression
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K,hidden,layers", [(2, 7, 2), (3, 5, 3), (2, 4, 1)])
def test_mo_regression_closed_form_equals_autograd_and_f_is_the_mean_of_the_per_sample_losses(K, hidden, layers):
    problem = MORegression(K, hidden=hidden, layers=layers, n_samples=60)
    X = problem.initial_points(3, num=4)
    F, J = problem.value_and_jacobian(X)  # numpy back-propagation
    Fa, Ja = problem.losses_and_jacobian(X)  # autograd
    torch.testing.assert_close(F, problem.per_sample_losses(X).mean(1), rtol=1e-13, atol=0)
    torch.testing.assert_close(F, Fa, rtol=1e-12, atol=0)
    for p in range(4):
        for k in range(K):  # per row, relative to its own norm
            torch.testing.assert_close(J[p, k], Ja[p, k], rtol=0, atol=1e-12 * float(Ja[p, k].norm()))


@pytest.mark.parametrize("K", [2, 3])
def test_mo_regression_front_is_attained_by_predictors_and_never_dominated(K):
    # The mean-loss front over all predictors: its ends are the single-target fits (0, D) and (D, 0)
    # (K = 2), and no predictor, random vector or trained network, has mean losses that dominate a
    # front point (to 1e-12 relative). 500 random predictor vectors around the targets.
    problem = MORegression(K, hidden=8, n_samples=80)
    front = problem.pareto_front(300)  # (M, K)
    g = torch.Generator().manual_seed(K)
    Yt = problem.Y_train  # (N, K)
    w = torch._standard_gamma(torch.ones(500, K, dtype=F64), generator=g)
    pred = (w / w.sum(1, keepdim=True)) @ Yt.T + 0.3 * torch.randn(500, problem.N, generator=g, dtype=F64)  # (500, N)
    Fs = [((pred[:, :, None] - Yt[None]) ** 2).mean(1)]  # (500, K)
    Fs.append(run_set("ls", problem, solutions=3, steps=50, lr=1e-2).f_final)  # trained networks
    for Fr in Fs:
        tol = 1e-12 * float(front.abs().max())
        dominates = ((Fr[:, None, :] <= front[None] - tol).all(2) & (Fr[:, None, :] < front[None] - tol).any(2))  # (B, M)
        assert not bool(dominates.any())
    if K == 2:
        D = float(((Yt[:, 0] - Yt[:, 1]) ** 2).mean())
        torch.testing.assert_close(front[0], torch.tensor([0.0, D], dtype=F64), rtol=0, atol=1e-15)
        torch.testing.assert_close(front[-1], torch.tensor([D, 0.0], dtype=F64), rtol=0, atol=1e-15)
        steps = (front[1:] - front[:-1]).norm(dim=1)
        assert float(steps.max() / steps.min()) < 1.01  # uniform in arc length
    with pytest.raises(ValueError, match="K must be 2"):
        MORegression(4)


def test_mo_regression_starts_are_pytorch_linear_initialisations_seeded_per_network():
    problem = MORegression(hidden=30)
    X = problem.initial_points(5, num=3)
    torch.testing.assert_close(X[1], problem.initial_points(6, num=1)[0], rtol=0, atol=0)  # network p = seed + p
    for (W, b), (out, inp) in zip(problem.unflatten(X), problem.shapes):
        bound = 1 / math.sqrt(inp)
        for t in (W, b):
            assert float(t.abs().max()) <= bound and float(t.abs().max()) > 0.8 * bound
    assert problem.n == 30 * 1 + 30 + 30 * 30 + 30 + 30 + 1


# ------------------------------------------------------------------------------------------------
# The paper's claim on mo-regression, over seeds
# ------------------------------------------------------------------------------------------------


def _max_sample_hypervolume(problem: MORegression, P: int) -> torch.Tensor:
    """Per training sample, the largest HV of P loss vectors (N,), by L-BFGS-B over P predictions.

    Per sample the front is f(t) = ((t − a)², (t − b)²), t ∈ [a, b]: with t = a + u it depends on the
    width d = b − a only, so the maximum is computed on a grid of widths (interpolated linearly, error
    ≲ 1e-3 here) instead of once per sample.
    """
    np = pytest.importorskip("numpy")
    optimize = pytest.importorskip("scipy.optimize")
    r = problem.hv_reference[0]

    def best(d: float) -> float:
        def neg(t):
            t = np.sort(t)
            f1, f2 = t**2, (d - t) ** 2  # f_1 ascending, f_2 descending
            return -float(np.sum((r - f1) * (np.concatenate([[r], f2[:-1]]) - f2)))  # −HV of the staircase

        t0 = np.linspace(0.0, d, P)
        res = optimize.minimize(neg, t0, bounds=[(0.0, d)] * P, method="L-BFGS-B")
        return -min(float(res.fun), neg(t0))

    lo, hi = problem.sample_range()
    widths = (hi - lo).numpy()
    grid = np.linspace(0.0, widths.max(), 25)
    return torch.from_numpy(np.interp(widths, grid, [best(d) for d in grid]))


@pytest.mark.slow
def test_per_sample_hypervolume_rises_to_near_its_maximum_and_the_predictions_span_each_front():
    # The paper's claim (its MO regression figure; CI-scaled: 2 × 20 ReLU networks, 100 training samples, Adam lr 1e-2
    # with the paper's β = (0.5, 0.999), 400 steps), seeds 0, 1, 2, all must pass (seeds 0..4 checked:
    # 5/5 pass, worst figures in brackets):
    #  * the mean per-sample HV of the P = 5 predictions rises: the gap to the per-sample maximum closes
    #    by ≥ 90 % [94.9 %], and from step 120 on it stays below 25 % of the initial gap at every
    #    recorded step [17.8 %] (Adam noise, no monotone guarantee);
    #  * the predictions lie in the per-sample Pareto set [min(y_1, y_2), max(y_1, y_2)] ± 0.1 for
    #    ≥ 90 % of the training x [91 %; seeds 0-2: 96 %], and span it: median of (max_p ŷ − min_p ŷ)/(max y − min y)
    #    ≥ 0.8 [0.886].
    problem = MORegression(hidden=20, n_samples=200)
    best = _max_sample_hypervolume(problem, 5)  # (N,)
    lo, hi = problem.sample_range()
    for seed in range(3):
        r = run_set("hv-maximization", problem, solutions=5, steps=400, lr=1e-2, seed=seed, record_every=40)
        gaps = torch.stack([(best - problem.sample_hypervolumes(x)).mean() for x in r.x])  # (11,) steps 0, 40, ..., 400
        assert bool((gaps > -1e-9).all()), gaps  # never above the maximum
        assert float(gaps[-1]) <= 0.1 * float(gaps[0]), (seed, gaps)
        assert bool((gaps[3:] <= 0.25 * gaps[0]).all()), (seed, gaps)
        assert problem.predictions_in_range(r.x_final, tol=0.1) >= 0.9, seed
        pred = problem.predict(r.x_final).detach()  # (P, N)
        span = (pred.max(0).values - pred.min(0).values) / (hi - lo)
        assert float(span.median()) >= 0.8, (seed, span.median())
        assert r.extra["metrics"]["sample_hypervolume"] == pytest.approx(float(best.mean() - gaps[-1]), rel=1e-12)
