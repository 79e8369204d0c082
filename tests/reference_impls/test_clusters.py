"""The ``clusters`` problem: its two optimality lemmas against brute force, the exact minimum enclosing balls, the instance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, nnls

from reference_impls.problems import get_problem
from reference_impls.core.solvers import SolverError
from reference_impls.problems.clusters import Clusters, certify_enclosing_ball, minimum_enclosing_ball


def _sum_of_min(p: Clusters, X: torch.Tensor) -> float:
    return float(p.losses(X).min(0).values.mean())  # (1/m) Σ_i min_j f_i(x_j)


def _tch_set(p: Clusters, X: torch.Tensor) -> float:
    return float(p.losses(X).min(0).values.max())  # max_i min_j f_i(x_j)


def _assignments(m: int, k: int) -> np.ndarray:
    return np.array(list(itertools.product(range(k), repeat=m)))  # every labelling (k^m, m)


# ---------------------------------------------------------------------------------------------
# Lemma 1 (sum-of-minimum) and Lemma 2 (minimax) against brute force on small instances
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m,k,n", [(9, 3, 2), (8, 2, 2), (8, 3, 1), (7, 2, 3)])
def test_planted_partition_is_the_brute_force_k_means_optimum(m, k, n):
    """Lemma 1 on 5 seeds each: the minimum over every labelling (k^m, empty groups allowed = fewer points
    used) of the within-group cost Σ||a − mean||² equals the planted W (relative 1e-12), is attained
    only by the planted partition (up to relabelling: the runner-up costs more), and the planted
    means give it."""
    for seed in range(5):
        p = get_problem("clusters", m=m, k=k, n=n, seed=seed)
        A, labels = p.anchors.numpy(), p.labels.numpy()
        lab = _assignments(m, k)  # (L, m)
        onehot = lab[:, :, None] == np.arange(k)  # (L, m, k)
        counts = onehot.sum(1)  # (L, k)
        sums = np.einsum("lmk,mn->lkn", onehot, A)  # (L, k, n)
        between = ((sums**2).sum(2) / np.maximum(counts, 1)).sum(1)  # Σ_c ||Σ a||²/n_c, (L,)
        cost = (A**2).sum() - between  # within-group cost of each labelling, (L,)
        best = int(np.argmin(cost))
        W = m * p.optimal_sum_of_min()
        assert math.isclose(float(cost[best]), W, rel_tol=1e-12, abs_tol=1e-15)
        same = np.array([len({(a, b) for a, b in zip(row, labels)}) == k and len(set(row)) == k for row in lab])  # planted up to relabelling
        assert same[best] and float(cost[~same].min()) > W * (1 + 1e-9)
        assert math.isclose(_sum_of_min(p, p.optimal_centres()), p.optimal_sum_of_min(), rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("m,k,n", [(8, 2, 2), (7, 3, 2), (7, 2, 1), (6, 2, 3)])
def test_minimax_value_is_the_brute_force_k_centre_optimum(m, k, n):
    """Lemma 2 on 3 seeds each: min over every labelling of max over groups of the squared radius of the
    group's minimum enclosing ball (= min over k-point sets of max_i min_j f_i) equals optimal_tch_set
    (relative 1e-12), and the MEB centres attain it."""
    for seed in range(3):
        p = get_problem("clusters", m=m, k=k, n=n, seed=seed)
        A = p.anchors.numpy()
        cache: dict[tuple[int, ...], float] = {}

        def r2(group: tuple[int, ...]) -> float:
            if group not in cache:
                cache[group] = minimum_enclosing_ball(A[list(group)])[1] if group else 0.0
            return cache[group]

        best = min(max(r2(tuple(np.flatnonzero(row == c))) for c in range(k)) for row in _assignments(m, k))
        assert math.isclose(best, p.optimal_tch_set(), rel_tol=1e-12)
        assert math.isclose(_tch_set(p, p.minimax_centres()), p.optimal_tch_set(), rel_tol=1e-12)


def test_no_random_or_perturbed_set_beats_the_proven_optima_on_the_default_instance():
    """m = 128, k = 5 (brute force is out of reach): 20 000 random 5-point sets in the anchors' box, 2 000
    perturbations of the optimal centres (scale 1e-3..1e-1) and the Lloyd fixed points reached from 200
    random starts never go below W/m or max_c R_c² (relative 1e-12); any perturbation of the planted
    means strictly raises the sum-of-minimum (uniqueness in Lemma 1)."""
    p = get_problem("clusters", m=128, k=5, seed=0)
    gen = torch.Generator().manual_seed(1)
    lo, hi = p.anchors.min(0).values, p.anchors.max(0).values
    X = lo + torch.rand(20000, 5, 2, generator=gen, dtype=torch.float64) * (hi - lo)  # (S, k, n)
    scale = 10 ** (-3 + 2 * torch.rand(2000, 1, 1, generator=gen, dtype=torch.float64))
    Xp = p.optimal_centres() + scale * torch.randn(2000, 5, 2, generator=gen, dtype=torch.float64)
    lloyd = lo + torch.rand(200, 5, 2, generator=gen, dtype=torch.float64) * (hi - lo)
    for _ in range(50):  # Lloyd: assign to the nearest point, move each point to its group's mean (unused points stay)
        near = torch.cdist(p.anchors.expand(200, -1, -1), lloyd).argmin(2)  # (S, m)
        onehot = torch.nn.functional.one_hot(near, 5).to(torch.float64)  # (S, m, k)
        counts = onehot.sum(1)  # (S, k)
        means = torch.einsum("smk,mn->skn", onehot, p.anchors) / counts.clamp_min(1)[..., None]
        lloyd = torch.where(counts[..., None] > 0, means, lloyd)
    S_opt, T_opt = p.optimal_sum_of_min(), p.optimal_tch_set()
    for sets in (X, Xp, lloyd):
        served = ((sets[:, None, :, :] - p.anchors[None, :, None, :]) ** 2).sum(3).min(2).values  # (S, m)
        assert float(served.mean(1).min()) >= S_opt * (1 - 1e-12)
        assert float(served.max(1).values.min()) >= T_opt * (1 - 1e-12)
    served = ((Xp[:, None, :, :] - p.anchors[None, :, None, :]) ** 2).sum(3).min(2).values
    assert bool((served.mean(1) > S_opt).all())


def test_the_separation_check_rejects_instances_it_cannot_certify():
    with pytest.raises(ValueError, match="Lemma 1 fails"):
        get_problem("clusters", separation=0.5)
    for bad in ({"k": 0}, {"k": 129}, {"m": 4, "k": 5}, {"n": 4}, {"separation": 0.0}, {"k": 2.5}):
        with pytest.raises(ValueError, match="clusters"):
            get_problem("clusters", **bad)


# ---------------------------------------------------------------------------------------------
# Exact minimum enclosing balls
# ---------------------------------------------------------------------------------------------


def _assert_meb_certificate(A: np.ndarray, centre: np.ndarray, r2: float) -> None:
    """Containment, and KKT: the centre is a convex combination of the points on the boundary."""
    d = np.sqrt(((A - centre) ** 2).sum(1))
    size = float(np.abs(A).max())  # coordinates' magnitude: the rounding scale of a distance
    assert float(d.max()) <= math.sqrt(r2) + 1e-13 * size
    if r2 == 0:
        assert np.allclose(A, centre, rtol=0, atol=1e-15)
        return
    on = A[d >= math.sqrt(r2) - 1e-9 * size]  # boundary points
    system = np.vstack([on.T, np.ones(len(on))])  # [a_i; 1] λ = [c; 1], λ ≥ 0
    _, residual = nnls(system, np.append(centre, 1.0))
    assert residual <= 1e-9 * max(size, 1.0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_minimum_enclosing_ball_is_certified_and_agrees_with_a_generic_solver(n):
    """20 random clouds per dimension (N = 1..30, scales 1e-6..1e6) plus degenerate ones (duplicates,
    collinear, coplanar, all equal): KKT certificate, and the squared radius agrees with SLSQP on the
    epigraph form min t s.t. ||c − a_i||² ≤ t within relative 1e-6 (the solver's accuracy)."""
    rng = np.random.default_rng(n)
    clouds = []
    for _ in range(20):
        N = int(rng.integers(1, 31))
        clouds.append(rng.standard_normal((N, n)) * 10.0 ** rng.uniform(-6, 6) + rng.standard_normal(n))
    line = rng.standard_normal((1, n)) * rng.uniform(-1, 1, (12, 1))  # collinear through 0
    clouds += [line, np.repeat(rng.standard_normal((1, n)), 5, 0), np.vstack([clouds[0], clouds[0]])]
    if n == 3:
        clouds.append(np.c_[rng.standard_normal((15, 2)), np.zeros(15)])  # coplanar
    for A in clouds:
        centre, r2 = minimum_enclosing_ball(A)
        _assert_meb_certificate(A, centre, r2)
        if len(A) > 1 and r2 > 0:
            s = math.sqrt(r2)
            x0 = np.append(A.mean(0) / s, ((A / s - A.mean(0) / s) ** 2).sum(1).max())
            cons = {"type": "ineq", "fun": lambda z, B=A / s: z[-1] - ((B - z[:-1]) ** 2).sum(1)}
            res = minimize(lambda z: z[-1], x0, constraints=[cons], method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
            assert math.isclose(res.fun * r2, r2, rel_tol=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        minimum_enclosing_ball(np.array([[0.0, np.nan]]))
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    certify_enclosing_ball(square, np.array([1.0, 1.0]), 2.0)
    with pytest.raises(SolverError, match="outside"):
        certify_enclosing_ball(square, np.array([1.0, 1.0]), 1.9)  # too small
    with pytest.raises(SolverError, match="hull"):
        certify_enclosing_ball(square, np.array([1.0, 1.1]), 2.0 + 0.2 + 0.01)  # encloses, but not minimal
    with pytest.raises(ValueError, match="n <= 3"):
        minimum_enclosing_ball(np.zeros((3, 4)))


# ---------------------------------------------------------------------------------------------
# The instance
# ---------------------------------------------------------------------------------------------


def test_default_instance_has_unequal_planted_clusters_and_is_seeded():
    p = get_problem("clusters")
    assert (p.m, p.k, p.n, p.K) == (128, 5, 2, 128)
    sizes = torch.bincount(p.labels, minlength=5)
    assert int(sizes.sum()) == 128 and len(set(sizes.tolist())) == 5  # unequal sizes
    assert len({round(float(r), 9) for r in p.cluster_radii}) == 5  # unequal spreads
    assert torch.equal(p.anchors, get_problem("clusters").anchors)
    assert not torch.allclose(p.anchors, get_problem("clusters", seed=1).anchors)
    F = p.losses(p.objective_minimisers())  # (m, m): f_i at a_j
    assert torch.equal(torch.diagonal(F), torch.zeros(128, dtype=torch.float64)) and bool((F.sum(0) > 0).all())
    assert p.hv_reference is None and not p.has_pareto_front and p.ideal_point() is None
    X = p.initial_points(3, num=7)
    assert X.shape == (7, 2) and torch.equal(X, p.initial_points(3, num=7))
    assert bool((X >= p.anchors.min(0).values).all() and (X <= p.anchors.max(0).values).all())
    assert p.initial_points(0).shape == (5, 2)  # num_starts = k


def test_extra_metrics_are_zero_at_the_optima_and_positive_elsewhere():
    p = get_problem("clusters", seed=2)
    at = p.extra_metrics(p.optimal_centres(), p.losses(p.optimal_centres()))
    assert at["centre_distance"] <= 1e-15 and at["clusters_found"] == 5 and abs(at["sum_of_min_gap"]) <= 1e-15
    assert at["tch_set_gap"] >= 0
    mm = p.extra_metrics(p.minimax_centres(), p.losses(p.minimax_centres()))
    assert mm["tch_set_gap"] == pytest.approx(0.0, abs=1e-15) and mm["sum_of_min_gap"] > 0
    two = p.optimal_centres()[[0, 0, 1, 2, 3]]  # cluster 4 missed
    miss = p.extra_metrics(two, p.losses(two))
    assert miss["clusters_found"] == 4 and miss["centre_distance"] > 0.5 and miss["sum_of_min_gap"] > 0 and miss["tch_set_gap"] > 0
    six = torch.cat([p.optimal_centres(), p.anchors[:1]])
    assert p.extra_metrics(six, p.losses(six))["sum_of_min_gap"] is None  # P ≠ k: the lemmas do not apply


def test_degenerate_instances_k_equals_m_one_cluster_and_float32():
    """k = m: every anchor its own cluster, both optima 0. k = 1: the optimum is the mean (variance) and the
    minimum enclosing ball, n = 1 the half range. float32 follows the dtype knob."""
    p = get_problem("clusters", m=6, k=6)
    assert p.optimal_sum_of_min() == 0.0 and p.optimal_tch_set() == 0.0
    torch.testing.assert_close(p.optimal_centres(), p.anchors[torch.argsort(p.labels)], rtol=0, atol=1e-15)
    q = get_problem("clusters", m=9, k=1, n=1)
    a = q.anchors[:, 0]
    assert math.isclose(q.optimal_sum_of_min(), float(((a - a.mean()) ** 2).mean()), rel_tol=1e-12)
    assert math.isclose(q.optimal_tch_set(), float((a.max() - a.min()) / 2) ** 2, rel_tol=1e-12)
    f = get_problem("clusters", dtype=torch.float32)
    X = f.initial_points(0)
    assert X.dtype == f.losses(X).dtype == f.jacobian(X).dtype == torch.float32


def test_modl_run_plots_the_clusters_problem(tmp_path, capsys):
    """``modl run --plot`` on clusters: a set method (anchors by cluster, optimal centres, found set, set values
    over time) and a point method (independent runs) both write a PNG."""
    from modl.cli import main

    for args in (["sum-of-minimum", "--solutions", "5"], ["ls"]):
        out = tmp_path / f"{args[0]}.png"
        code = main(["run", *args, "--problem", "clusters", "--steps", "5", "--plot", str(out)])
        assert code == 0, capsys.readouterr().out
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
