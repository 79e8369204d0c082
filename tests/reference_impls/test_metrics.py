"""Metrics: exact hypervolume (vs pymoo and analytic fronts), IGD / IGD+, PS-measure, preference errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.metrics import (
    epo_non_uniformity,
    hypervolume,
    igd,
    igd_plus,
    nondominated,
    pareto_stationarity,
    preference_cosine_error,
    projected_pareto_stationarity,
    uniformity,
)
from reference_impls.problems import get_problem
from tests.reference_impls.golden import j_base


# ---------------------------------------------------------------------------------------------
# Hypervolume
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("N", [1, 2, 7, 60, 250])
def test_hypervolume_matches_pymoo_exactly_on_random_sets(K, N):
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(100 * K + N)
    F = rng.random((N, K))
    F[: N // 3] = np.round(F[: N // 3], 1)  # ties and duplicates
    F = np.concatenate([F, F[:2], rng.random((3, K)) + 0.8])  # repeated points; some beyond the reference
    ref = np.full(K, 1.05)
    assert abs(hypervolume(F, ref) - HV(ref_point=ref)(F)) < 1e-9


def test_hypervolume_elementary_properties():
    assert hypervolume([[0.5, 0.25]], [1.0, 1.0]) == pytest.approx(0.375, abs=1e-15)
    assert hypervolume([[0.5, 0.25, 0.0]], [1.0, 1.0, 2.0]) == pytest.approx(0.75, abs=1e-15)
    assert hypervolume([[0.3]], [1.0]) == pytest.approx(0.7)
    assert hypervolume([[1.0, 0.5], [2.0, 0.0]], [1.0, 1.0]) == 0.0  # nothing strictly inside the box
    rng = np.random.default_rng(0)
    F = rng.random((40, 3))
    ref = [1.0, 1.0, 1.0]
    base = hypervolume(F, ref)
    assert hypervolume(F[rng.permutation(40)], ref) == pytest.approx(base, abs=1e-14)
    dominated = F[:5] + 0.01  # each dominated by a point of F: adds nothing
    assert not nondominated(np.vstack([F, dominated]))[-5:].any()
    assert hypervolume(np.vstack([F, dominated]), ref) == pytest.approx(base, abs=1e-14)
    assert hypervolume(np.vstack([F, [[0.0, 0.0, 0.0]]]), ref) == pytest.approx(1.0)  # the ideal point dominates everything


def test_hypervolume_needs_monte_carlo_above_three_objectives():
    F = np.array([[0.5, 0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="exact hypervolume is implemented for K <= 3"):
        hypervolume(F, [1, 1, 1, 1])
    assert hypervolume(F, [1, 1, 1, 1], monte_carlo=True, samples=200_000) == pytest.approx(0.0625, rel=1e-12)  # one box: all samples hit
    F = np.random.default_rng(1).random((10, 4))
    a = hypervolume(F, [1, 1, 1, 1], monte_carlo=True, samples=100_000, seed=3)
    assert a == hypervolume(F, [1, 1, 1, 1], monte_carlo=True, samples=100_000, seed=3)  # seeded
    exact3 = hypervolume(F[:, :3], [1, 1, 1])  # a 4-D set with f_4 = 0 has HV = HV of the first three
    G = F.copy()
    G[:, 3] = 0.0
    assert hypervolume(G, [1, 1, 1, 1], monte_carlo=True, samples=200_000) == pytest.approx(exact3, rel=0.01)
    with pytest.raises(ValueError, match="reference point has 2 entries"):
        hypervolume(F, [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        hypervolume([[np.nan, 0.0]], [1, 1])


@pytest.mark.parametrize(
    "pid,exact",
    [("biquad", 5 / 6), ("zdt1", 2 / 3), ("zdt2", 1 / 3), ("vlmop2", 0.34212)],
)
def test_hypervolume_of_the_analytic_fronts_converges(pid, exact):
    p = get_problem(pid)
    errors = [exact - hypervolume(p.pareto_front(num), p.hv_reference) for num in (100, 1000, 20000)]
    tol = 1e-5 if pid == "vlmop2" else 1e-9  # vlmop2's value is quoted to 5 digits
    assert errors[0] > errors[1] > errors[2] > -tol  # a finite sample under-covers the front, less and less
    assert errors[2] < 1e-4 and errors[1] < 2e-3


def test_hypervolume_of_the_dtlz2_front_is_within_sampling_error():
    exact = 1.1**3 - math.pi / 6  # 0.80740
    p = get_problem("dtlz2")
    gaps = [exact - hypervolume(p.pareto_front(num), p.hv_reference) for num in (500, 4000)]
    assert 0 < gaps[1] < gaps[0]
    assert gaps[1] < 0.02
    # sandwich: the same sample pulled inside the sphere (radius 0.92) dominates more than the exact front
    shrunk = p.pareto_front(4000) * (1 - 0.08)
    assert hypervolume(shrunk, p.hv_reference) > exact


def test_cagrad_toy_front_hypervolume_scales_with_the_loss_scale():
    big, small = get_problem("cagrad-toy"), get_problem("cagrad-toy", scale=0.1)
    S = big.pareto_set(3000)
    hv_big, hv_small = hypervolume(big.losses(S), big.hv_reference), hypervolume(small.losses(S), small.hv_reference)
    assert hv_small == pytest.approx(0.1 * hv_big, rel=1e-12)  # f_1 ← s f_1 scales every box by s
    assert hv_big == pytest.approx(335.6, abs=0.1)


# ---------------------------------------------------------------------------------------------
# IGD and IGD+
# ---------------------------------------------------------------------------------------------


def test_igd_is_zero_on_the_front_and_igd_plus_never_exceeds_igd():
    p = get_problem("zdt1")
    front = p.pareto_front(500)
    assert igd(front, front) == 0.0 and igd_plus(front, front) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(5):
        A = rng.random((20, 2)) * 1.5
        assert igd_plus(A, front) <= igd(A, front) + 1e-15
    better = front.numpy() - 0.1  # dominates every front point: nothing is worse, IGD+ = 0
    assert igd_plus(better, front) == 0.0 and igd(better, front) > 0.1
    assert igd([[0.0, 1.0]], [[3.0, 5.0]]) == pytest.approx(5.0)
    assert igd_plus([[0.0, 1.0]], [[3.0, 5.0]]) == 0.0
    assert igd_plus([[4.0, 1.0]], [[3.0, 5.0]]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Pareto stationarity
# ---------------------------------------------------------------------------------------------


def test_ps_measure_known_values_and_golden_input():
    J = j_base()  # [[-4, 1, 1], [6, 1, 1]]: λ = (0.6, 0.4) cancels the first coordinate, d = (0, 1, 1)
    assert float(pareto_stationarity(J)) == pytest.approx(math.sqrt(2), abs=1e-12)
    e = torch.eye(2, dtype=torch.float64)
    assert float(pareto_stationarity(e)) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    g = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    assert float(pareto_stationarity(torch.stack([g, -3 * g]))) < 1e-12  # opposite gradients: stationary
    assert float(pareto_stationarity(g[None])) == pytest.approx(float(g.norm()))  # K = 1: the gradient norm
    assert float(pareto_stationarity(torch.stack([g, torch.zeros(3, dtype=torch.float64)]))) == 0.0


def test_ps_measure_is_batched_and_the_normalised_version_is_scale_free():
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(6, 3, 5, generator=gen, dtype=torch.float64)
    batched = pareto_stationarity(J)
    assert batched.shape == (6,)
    torch.testing.assert_close(batched, torch.stack([pareto_stationarity(Jb) for Jb in J]))
    scales = torch.tensor([1e-3, 1.0, 1e3], dtype=torch.float64)[None, :, None]
    torch.testing.assert_close(pareto_stationarity(J * scales, normalize=True), pareto_stationarity(J, normalize=True))
    # the min-norm point is orthogonal-optimal: <d, g_i> >= ||d||² for every i (KKT)
    from reference_impls.core.solvers import min_norm_weights

    for Jb in J:
        d = min_norm_weights(Jb @ Jb.T) @ Jb
        assert float((Jb @ d).min()) >= float(d @ d) - 1e-10


def test_projected_ps_measure():
    gen = torch.Generator().manual_seed(1)
    J = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)
    x = torch.full((4, 3), 0.5, dtype=torch.float64)
    lo, hi = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    # far from the faces the projection is inactive for small gradients: equals the plain measure
    torch.testing.assert_close(projected_pareto_stationarity(0.01 * J, x, lo, hi), pareto_stationarity(0.01 * J))
    # both gradients push into an active lower bound: stationary
    at_face = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    Jf = torch.tensor([[1.0, 0.3, 0.0], [2.0, -0.6, 0.0]], dtype=torch.float64)  # λ = (2/3, 1/3) cancels x_2
    assert float(projected_pareto_stationarity(Jf, at_face, lo, hi)) < 1e-12
    assert float(pareto_stationarity(Jf)) > 0.5  # unconstrained, it is not stationary
    # pulling away from the face is not blocked
    assert float(projected_pareto_stationarity(-Jf, at_face, lo, hi)) > 0.5
    # the measure is never above the plain one at interior points' exact weights, and is batched
    out = projected_pareto_stationarity(J, x, lo, hi)
    assert out.shape == (4,) and bool((out <= pareto_stationarity(J) + 1e-12).all())


# ---------------------------------------------------------------------------------------------
# Preferences and uniformity
# ---------------------------------------------------------------------------------------------


def test_preference_errors():
    ray = torch.tensor([1.0, 2.0], dtype=torch.float64)
    F = torch.tensor([[0.5, 1.0], [1.0, 0.0], [3.0, 6.0]], dtype=torch.float64)
    err = preference_cosine_error(F, ray)
    torch.testing.assert_close(err, torch.tensor([0.0, 1 - 1 / math.sqrt(5), 0.0], dtype=torch.float64), atol=1e-15, rtol=0)
    z = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert float(preference_cosine_error(z + 0.1 * ray, ray, z)) < 1e-15
    # EPO: r ⊙ F ∝ 𝟙 gives μ = 0, anything else μ > 0
    r = torch.tensor([1.0, 3.0], dtype=torch.float64)
    on = torch.tensor([[3.0, 1.0], [0.6, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(epo_non_uniformity(on, r), torch.zeros(2, dtype=torch.float64), atol=1e-15, rtol=0)
    q = torch.tensor([0.25, 0.75], dtype=torch.float64)  # r ⊙ (1, 1) normalised
    expected = float((q * torch.log(2 * q)).sum())
    assert float(epo_non_uniformity(torch.tensor([1.0, 1.0], dtype=torch.float64), r)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="F − z > 0"):
        epo_non_uniformity(torch.tensor([[-1.0, 1.0]], dtype=torch.float64), r)


def test_uniformity_is_the_smallest_pairwise_distance():
    assert uniformity([[0, 0], [3, 4], [0, 1]]) == pytest.approx(1.0)
    assert uniformity(get_problem("zdt1").pareto_front(101)) > 0.0
    with pytest.raises(ValueError, match="at least two points"):
        uniformity([[0.0, 1.0]])


# ---------------------------------------------------------------------------------------------
# Set metrics (issue 11): hypervolume against pymoo at rtol 1e-12, ray errors, coverage
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("K", [2, 3])
def test_hypervolume_agrees_with_pymoo_to_1e12_relative_on_random_sets(K, seed):
    # 5 seeds × sizes 3..120, points on a concave/convex mix of scales (not just the unit cube), some
    # beyond the reference and some duplicated: relative agreement 1e-12 (both are exact algorithms).
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(1000 + 10 * K + seed)
    for N in (3, 17, 120):
        F = rng.random((N, K)) * rng.uniform(0.1, 10.0, size=K)  # per-objective scales
        F = np.concatenate([F, F[:2], F.max(0) * 1.2 + rng.random((2, K))])  # duplicates; points past the reference
        ref = F[:N].max(0) * 1.05
        ours, theirs = hypervolume(F, ref), HV(ref_point=ref)(F)
        assert theirs > 0 and abs(ours - theirs) <= 1e-12 * theirs, (N, ours, theirs)


def test_preference_distance_and_angle_on_known_points():
    from reference_impls.metrics import preference_angle, preference_distance

    rays = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    z = np.array([1.0, 1.0])
    F = np.array([[3.0, 3.0], [1.0, 4.0], [0.0, 1.0], [1.0, 1.0]])  # on its ray; 3 off the axis; behind z; at z
    dist = preference_distance(F, rays, z)
    angle = preference_angle(F, rays, z)
    np.testing.assert_allclose(dist, [0.0, 3.0, 1.0, 0.0], atol=1e-15)  # behind the origin: distance to z itself
    np.testing.assert_allclose(angle, [0.0, math.pi / 2, math.pi / 2, 0.0], atol=1e-15)
    # the distance is that of the orthogonal projection onto the half-line, and it is scale-free in the ray
    d = np.array([[2.0, 1.0]])
    v = np.array([[1.0, 1.0]])
    assert preference_distance(d, v)[0] == pytest.approx(math.sqrt(0.5), abs=1e-15)
    assert preference_distance(d, 7 * v)[0] == pytest.approx(math.sqrt(0.5), abs=1e-15)
    assert preference_distance(d, [1.0, 1.0])[0] == pytest.approx(math.sqrt(0.5), abs=1e-15)  # one ray for all
    with pytest.raises(ValueError, match="zero vector"):
        preference_distance(F, [[0.0, 0.0]] * 4)
    with pytest.raises(ValueError, match="one ray per point"):
        preference_distance(F, rays[:3])


def test_coverage_and_covering_radius_on_known_sets():
    from reference_impls.metrics import coverage, covering_radius

    t = np.linspace(0, 1, 1001)
    front = np.stack([t, 1 - t], 1)  # a straight front of length √2, uniform in arc length
    assert coverage(front, front) == 1.0 and covering_radius(front, front) == 0.0
    # default δ = 5 % of the bounding-box diagonal = 0.05·√2: the point at t = 0.0025 covers the front
    # points with |t − 0.0025| ≤ 0.05, i.e. t = 0.000 .. 0.052 (53 of 1001; no grid point on the boundary)
    assert coverage([[0.0025, 0.9975]], front) == pytest.approx(53 / 1001, abs=1e-15)
    assert covering_radius([[0.0, 1.0]], front) == pytest.approx(math.sqrt(2), abs=1e-12)
    # P evenly spaced points at the centres of P equal pieces: radius = half a piece, L/(2P)
    P = 5
    centres = (np.arange(P) + 0.5) / P
    S = np.stack([centres, 1 - centres], 1)
    assert covering_radius(S, front) == pytest.approx(math.sqrt(2) / (2 * P), abs=1e-12)
    # with δ = 0.0505·√2 each covers the 101 grid points with |t − c| ≤ 0.0505 (disjoint intervals)
    assert coverage(S, front, delta=0.0505 * math.sqrt(2)) == pytest.approx(P * 101 / 1001, abs=1e-15)
    assert coverage(S, front, delta=1.0) == 1.0
    with pytest.raises(ValueError, match="delta > 0"):
        coverage(S, front, delta=0.0)


# ---------------------------------------------------------------------------------------------
# Few-for-many values: worst_objective (TCH-Set at z = 0) and mean_objective (sum-of-minimum / K)
# ---------------------------------------------------------------------------------------------


def test_few_for_many_values_are_set_functions_monotone_in_the_set():
    """On 20 random sets (P = 1..6, K = 1..40, scales 1e-12..1e12): invariant under permuting the solutions,
    never larger when a solution is added (equal when the added one is dominated by a member),
    mean ≤ worst, equal for K = 1; a set containing the K single-objective minimisers reaches
    min_i of each objective; non-finite F raises."""
    from reference_impls.metrics import mean_objective, worst_objective

    rng = np.random.default_rng(7)
    for trial in range(20):
        P, K = int(rng.integers(1, 7)), int(rng.integers(1, 41))
        F = rng.random((P, K)) * 10.0 ** rng.uniform(-12, 12)
        w, m = worst_objective(F), mean_objective(F)
        assert m <= w * (1 + 1e-15)
        assert worst_objective(F[rng.permutation(P)]) == w and mean_objective(F[rng.permutation(P)]) == pytest.approx(m, rel=1e-15)
        extra = rng.random((1, K)) * F.max()
        assert worst_objective(np.vstack([F, extra])) <= w and mean_objective(np.vstack([F, extra])) <= m
        dominated = F[:1] * 1.5  # every entry worse than member 0's
        assert worst_objective(np.vstack([F, dominated])) == w and mean_objective(np.vstack([F, dominated])) == m
        if K == 1:
            assert w == m == F.min()
    G = np.full((4, 4), 9.0)
    np.fill_diagonal(G, np.arange(1.0, 5.0))  # solution p serves objective p with value p + 1
    assert worst_objective(G) == 4.0 and mean_objective(G) == 2.5
    assert worst_objective(G[:3]) == 9.0 and mean_objective(G[:3]) == 3.75  # objective 4 left to a bad solution
    with pytest.raises(ValueError, match="NaN"):
        worst_objective(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        mean_objective(np.array([[np.inf, 0.0]]))


def test_few_for_many_values_reach_the_proven_optima_of_the_clusters_problem():
    """At the planted means the mean objective is the proven sum-of-minimum optimum W/m; at the minimum
    enclosing ball centres the worst objective is the proven minimax optimum (relative 1e-12, 3 seeds);
    and set_metrics reports both for a run, consistent with the problem's optimality gaps."""
    from reference_impls.metrics import mean_objective, worst_objective
    from reference_impls.set_runner import run_set

    for seed in range(3):
        p = get_problem("clusters", seed=seed)
        assert mean_objective(p.losses(p.optimal_centres())) == pytest.approx(p.optimal_sum_of_min(), rel=1e-12)
        assert worst_objective(p.losses(p.minimax_centres())) == pytest.approx(p.optimal_tch_set(), rel=1e-12)
    r = run_set("sum-of-minimum", "clusters", solutions=5, steps=3, optimizer="sgd", lr=0.5)
    got = r.extra["metrics"]
    p = get_problem("clusters")
    assert got["mean_objective"] - p.optimal_sum_of_min() == pytest.approx(got["sum_of_min_gap"], abs=1e-15)
    assert got["worst_objective"] - p.optimal_tch_set() == pytest.approx(got["tch_set_gap"], abs=1e-15)
    assert got["hypervolume"] is None and got["igd"] is None
