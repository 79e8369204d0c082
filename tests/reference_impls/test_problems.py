"""Toy problems: formulas against pymoo and the official code, Jacobians, Pareto sets and fronts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.metrics import igd, pareto_stationarity, projected_pareto_stationarity
from reference_impls.problems import Problem, get_problem, problem_ids

POINT_PROBLEMS = ["biquad", "bi-sphere", "vlmop2", "zdt1", "zdt2", "zdt-skewed", "dtlz2", "cagrad-toy", "mtl-linear", "lowrank-regression"]



def _ps(problem: Problem, x: torch.Tensor) -> torch.Tensor:
    J = problem.jacobian(x)
    if problem.bounds is not None:
        return projected_pareto_stationarity(J, x, *problem.bounds)
    return pareto_stationarity(J)


def test_registry_lists_every_problem_and_rejects_unknown_ids_and_knobs():
    assert problem_ids() == sorted(POINT_PROBLEMS + ["mtl-regression", "mtl-regression-set", "bilevel-ridge", "noisy-biquad", "noisy-cagrad-toy", "clusters", "mo-regression", "cpfl-ex1", "cpfl-ex2", "merging-mlp", "multi-digits", "multi-digits-set"])  # cpfl: test_hyper_transformer.py; merging-mlp: test_combination_problems.py; multi-digits: test_multi_digits.py
    with pytest.raises(ValueError, match="unknown problem 'nope'; known: bi-sphere, bilevel-ridge, biquad"):
        get_problem("nope")
    with pytest.raises(ValueError, match="bad knob"):
        get_problem("zdt1", colour="red")
    with pytest.raises(ValueError, match="scale must be positive"):
        get_problem("cagrad-toy", scale=-1)
    with pytest.raises(ValueError, match="inits must be one of"):
        get_problem("cagrad-toy", inits="other")


@pytest.mark.parametrize("pid", POINT_PROBLEMS)
def test_batched_shapes_float64_and_single_point_input(pid):
    p = get_problem(pid)
    x = p.initial_points(0)
    B = x.shape[0]
    F, J = p.losses_and_jacobian(x)
    assert x.dtype == F.dtype == J.dtype == torch.float64
    assert F.shape == (B, p.K) and J.shape == (B, p.K, p.n)
    torch.testing.assert_close(p.losses(x), F)
    torch.testing.assert_close(p.jacobian(x), J)
    torch.testing.assert_close(p.losses(x[1]), F[1])  # (n,) -> (K,)
    torch.testing.assert_close(p.jacobian(x[1]), J[1])
    with pytest.raises(ValueError, match="expected x of shape"):
        p.losses(torch.zeros(B, p.n + 1, dtype=torch.float64))
    torch.testing.assert_close(p.initial_points(0), x)  # seeded
    if p.bounds is not None:
        lo, hi = p.bounds
        assert bool(((x >= lo) & (x <= hi)).all())
        far = torch.full((2, p.n), 5.0, dtype=torch.float64)
        torch.testing.assert_close(p.project(far), hi.expand(2, -1))


@pytest.mark.parametrize("pid", POINT_PROBLEMS)
def test_jacobian_matches_central_differences(pid):
    p = get_problem(pid)
    x = p.initial_points(1)
    x = x[x[:, -1].abs() > 0.1][:3]  # cagrad-toy: (0, 0) sits on the kink of c_1, c_2 at x_2 = 0
    J = p.jacobian(x)  # (3, K, n)
    h = 1e-6
    for j in range(p.n):
        e = torch.zeros(p.n, dtype=torch.float64)
        e[j] = h
        fd = (p.losses(x + e) - p.losses(x - e)) / (2 * h)  # (3, K)
        torch.testing.assert_close(J[:, :, j], fd, rtol=1e-5, atol=1e-6)


def test_float32_and_other_dtypes_follow_the_knob():
    p = get_problem("vlmop2", dtype=torch.float32)
    x = p.initial_points(0)
    assert x.dtype == p.losses(x).dtype == p.jacobian(x).dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# pymoo cross-checks (pymoo is a test-only dependency)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pid,n_obj,n_var", [("zdt1", 2, 5), ("zdt2", 2, 5), ("dtlz2", 3, 7), ("zdt1", 2, 30)])
def test_losses_match_pymoo_at_random_points(pid, n_obj, n_var):
    from pymoo.problems import get_problem as pymoo_problem

    kw = {"n_var": n_var} if pid.startswith("zdt") else {"n_var": n_var, "n_obj": n_obj}
    ref = pymoo_problem(pid, **kw)
    p = get_problem(pid, n=n_var) if pid.startswith("zdt") else get_problem(pid, K=n_obj, k=n_var - n_obj + 1)
    X = np.random.default_rng(0).uniform(1e-3, 1.0, size=(64, n_var))
    expected = ref.evaluate(X, return_values_of=["F"])
    np.testing.assert_allclose(p.losses(torch.as_tensor(X)).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pid", ["zdt1", "zdt2"])
def test_zdt_fronts_match_pymoo(pid):
    from pymoo.problems import get_problem as pymoo_problem

    theirs = pymoo_problem(pid, n_var=5).pareto_front()  # (100, 2)
    p = get_problem(pid)
    relation = (lambda f1: 1 - np.sqrt(f1)) if pid == "zdt1" else (lambda f1: 1 - f1**2)
    np.testing.assert_allclose(theirs[:, 1], relation(theirs[:, 0]), atol=1e-12)  # pymoo's points satisfy our formula
    ours = p.pareto_front(500).numpy()
    np.testing.assert_allclose(ours[:, 1], relation(ours[:, 0]), atol=1e-12)
    assert igd(ours, theirs) < 1e-2 and igd(theirs, ours) < 2e-2  # the same curve, sampled differently
    np.testing.assert_allclose(ours[[0, -1]], [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)


def test_dtlz2_front_matches_pymoo():
    from pymoo.problems import get_problem as pymoo_problem

    theirs = pymoo_problem("dtlz2", n_var=7, n_obj=3).pareto_front()
    ours = get_problem("dtlz2").pareto_front(2000).numpy()
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-12)
    assert (ours >= 0).all()
    assert igd(ours, theirs) < 0.05  # our sample covers pymoo's reference directions


# ---------------------------------------------------------------------------------------------
# Pareto sets: PS-measure and distance vanish on them and not off them
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", POINT_PROBLEMS)
def test_pareto_set_is_stationary_and_maps_onto_the_front(pid):
    p = get_problem(pid)
    S = p.project(p.pareto_set(41))  # box problems: the clamped optimum
    assert float(p.distance_to_pareto_set(p.pareto_set(41)).max()) < 1e-12
    tol = 1e-7 if pid != "cagrad-toy" else 1e-8
    assert float(_ps(p, S).max()) < tol
    if p.K == 2:  # the image of the set lies on the analytic front, and covers it
        image = p.losses(p.pareto_set(4001))
        front = p.pareto_front(200)
        assert igd(image, front) < 5e-3 * float((front.max(0).values - front.min(0).values).norm())


@pytest.mark.parametrize("pid", POINT_PROBLEMS)
def test_points_off_the_pareto_set_are_not_stationary(pid):
    p = get_problem(pid)
    S = p.pareto_set(9)[1:-1]  # interior points of the set
    gen = torch.Generator().manual_seed(0)
    off = p.project(S + 0.2 * torch.randn(S.shape, generator=gen, dtype=torch.float64))
    if p.bounds is not None:  # keep the position variables inside: x_1 = 0 (ZDT) is weakly Pareto optimal for any tail
        off[:, : p.K - 1] = S[:, : p.K - 1]
        off[:, p.K - 1 :] = p.project(S + 0.2 * torch.randn(S.shape, generator=gen, dtype=torch.float64).abs())[:, p.K - 1 :]
    assert float(p.distance_to_pareto_set(off).min()) > 1e-3
    assert float(_ps(p, off).min()) > 1e-4


# ---------------------------------------------------------------------------------------------
# Problem-specific facts
# ---------------------------------------------------------------------------------------------


def test_biquad_front_linear_scalarisation_and_scales():
    p = get_problem("biquad", n=4)
    F = p.pareto_front(300)
    torch.testing.assert_close(F.sqrt().sum(1), torch.ones(300, dtype=torch.float64))  # √f1 + √f2 = D = 1
    for w in ([0.5, 0.5], [0.2, 0.8]):
        x = p.linear_scalarisation_solution(w)
        torch.testing.assert_close(x, w[0] * p.anchors[0] + w[1] * p.anchors[1])
        torch.testing.assert_close(torch.tensor(w, dtype=torch.float64) @ p.jacobian(x), torch.zeros(4, dtype=torch.float64))
    s = get_problem("biquad", scales=(1.0, 100.0))
    x = s.initial_points(0)
    torch.testing.assert_close(s.losses(x), p.losses(torch.cat([x, torch.zeros(8, 2, dtype=torch.float64)], 1)) * torch.tensor([1.0, 100.0], dtype=torch.float64))
    Fs = s.pareto_front(100)
    torch.testing.assert_close((Fs[:, 0] / 1.0).sqrt() + (Fs[:, 1] / 100.0).sqrt(), torch.ones(100, dtype=torch.float64))
    assert s.hv_reference == (1.0, 100.0)
    with pytest.raises(ValueError, match="positive"):
        get_problem("biquad", scales=(1.0, -1.0))


def test_biquad_three_tasks_pareto_set_is_the_hull_of_the_anchors():
    p = get_problem("biquad", K=3, n=3, anchor_seed=1)
    inside = torch.tensor([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64) @ p.anchors
    assert float(p.distance_to_pareto_set(inside).max()) < 1e-10
    assert float(pareto_stationarity(p.jacobian(inside)).max()) < 1e-10
    centroid = p.anchors.mean(0)
    normal = torch.linalg.cross(p.anchors[1] - p.anchors[0], p.anchors[2] - p.anchors[0])
    normal = normal / normal.norm()
    lifted = centroid + 0.3 * normal  # straight above the triangle's centroid: distance 0.3
    torch.testing.assert_close(p.distance_to_pareto_set(lifted[None]), torch.tensor([0.3], dtype=torch.float64))


def test_vlmop2_front_formula_and_plateau_free_inits():
    p = get_problem("vlmop2")
    s = torch.linspace(-1, 1, 11, dtype=torch.float64)
    F = p.losses(s[:, None] * torch.full((20,), 1 / math.sqrt(20), dtype=torch.float64))
    torch.testing.assert_close(F, torch.stack([1 - torch.exp(-((s - 1) ** 2)), 1 - torch.exp(-((s + 1) ** 2))], 1))
    x = p.initial_points(3)
    assert x.shape == (8, 20) and float(x.abs().max()) <= 0.5
    assert float(p.jacobian(x).norm(dim=2).min()) > 1e-2  # not on the flat plateau
    front = p.pareto_front(1000)
    gaps = (front[1:] - front[:-1]).norm(dim=1)
    assert float(gaps.max() / gaps.min()) < 1.01  # uniform in arc length


def _official_cagrad_toy(x1: float, x2: float, scale: float) -> tuple[float, float]:
    """The toy as written in Cranial-XIX/CAGrad toy.py / nash-mtl problem.py, transcribed in math."""
    lower = 5e-6
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), lower)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), lower)) + 6
    c1 = max(math.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c2 = max(math.tanh(-x2 * 0.5), 0)
    return scale * (f1 * c1 + f1_sq * c2), f2 * c1 + f2_sq * c2


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_cagrad_toy_matches_the_official_formula(scale):
    p = get_problem("cagrad-toy", scale=scale)
    X = torch.as_tensor(np.random.default_rng(1).uniform(-10, 10, size=(50, 2)))
    expected = torch.tensor([_official_cagrad_toy(float(a), float(b), scale) for a, b in X], dtype=torch.float64)
    torch.testing.assert_close(p.losses(X), expected, rtol=1e-12, atol=1e-12)


def test_cagrad_toy_inits_pareto_set_and_scale_invariance():
    nash, cagrad = get_problem("cagrad-toy"), get_problem("cagrad-toy", inits="cagrad")
    assert nash.initial_points(0).tolist() == [[-8.5, 7.5], [0.0, 0.0], [9.0, 9.0], [-7.5, -0.5], [9.0, -1.0]]
    assert cagrad.initial_points(0).tolist() == [[-8.5, 7.5], [-8.5, -5.0], [9.0, 9.0]]
    S = nash.pareto_set(1001)
    assert float(S[:, 0].min()) == -7.0 and float(S[:, 0].max()) == 7.0
    mid = S[500]
    assert abs(float(mid[0])) < 1e-12 and abs(float(mid[1]) + 8.3552) < 2e-4  # CAGrad's plots draw y = −8.3552
    assert abs(float(S[0, 1]) + 8.4345) < 1e-3 and abs(float(S[-1, 1]) + 8.4345) < 1e-3
    # the Pareto set does not depend on the scale; PS-measure vanishes on it for any scale
    small = get_problem("cagrad-toy", scale=0.1)
    assert float(pareto_stationarity(small.jacobian(S[::50])).max()) < 1e-8
    torch.testing.assert_close(small.losses(S), nash.losses(S) * torch.tensor([0.1, 1.0], dtype=torch.float64))
    # moving off the curve along x_2 or beyond x_1 = ±7 breaks stationarity
    for dx in ([0.0, 0.05], [0.0, -0.05], [0.5, 0.0]):
        shifted = (S[[0, 500, 1000]] if dx[0] == 0 else S[[1000]]) + torch.tensor(dx, dtype=torch.float64)
        assert float(pareto_stationarity(nash.jacobian(shifted)).min()) > 1e-4


def test_mtl_linear_knobs_and_closed_form_pareto_set():
    p = get_problem("mtl-linear", conflict=-0.5, scales=(1.0, 10.0))
    torch.testing.assert_close(p.W_star.norm(dim=1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(p.W_star[0] @ p.W_star[1], torch.tensor(-0.5, dtype=torch.float64))
    # ŵ_k solves task k alone; every LS solution is a point of the hull
    J = p.jacobian(p.W_hat)  # (2, 2, p)
    assert float(J[0, 0].norm()) < 1e-10 and float(J[1, 1].norm()) < 1e-10
    Sigma = p.X.T @ p.X / p.X.shape[0]
    for w in (0.5, 0.3):
        x = torch.linalg.solve(Sigma, Sigma @ (w * p.W_hat[0] + (1 - w) * p.W_hat[1]))
        torch.testing.assert_close(torch.tensor([w, 1 - w], dtype=torch.float64) @ p.jacobian(x), torch.zeros(10, dtype=torch.float64), atol=1e-10, rtol=0)
    assert float(p.distance_to_pareto_set(p.W_hat.mean(0)[None])) < 1e-12
    K3 = get_problem("mtl-linear", K=3, conflict=-0.4)
    G = K3.W_star @ K3.W_star.T
    torch.testing.assert_close(G, 1.4 * torch.eye(3, dtype=torch.float64) - 0.4, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="conflict must lie in"):
        get_problem("mtl-linear", K=3, conflict=-0.9)


def test_mtl_regression_model_problem():
    from reference_impls.core.aggregator import Weighting

    class Mean(Weighting):
        def compute_weights(self, J, losses):
            return J.new_full((J.shape[0],), 1.0 / J.shape[0])

    p = get_problem("mtl-regression", scales=(1.0, 5.0), batch_size=32)
    model = p.reset(3)
    shared, heads = p.shared_parameters(), p.task_parameters()
    assert {id(t) for t in shared}.isdisjoint({id(t) for t in heads})
    assert sum(t.numel() for t in shared) + sum(t.numel() for t in heads) == sum(t.numel() for t in model.parameters())
    batch = next(p.batches(0))
    assert batch.shape == (32,)
    f, Z = p.losses(batch, return_representation=True)
    assert f.shape == (2,) and Z.shape == (32, 16)
    first = [t.detach().clone() for t in p.reset(3).parameters()]
    assert all(torch.equal(a, b) for a, b in zip(first, [t.detach() for t in p.model().parameters()]))  # seeded
    Mean().backward(p.losses(batch), p.shared_parameters(), p.task_parameters())
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(fk, p.shared_parameters(), retain_graph=True)]) for fk in p.losses(batch)])
    torch.testing.assert_close(torch.cat([t.grad.reshape(-1) for t in p.shared_parameters()]), J.mean(0))
    assert p.jacobian().shape == (2, 16 * 10 + 16)
    lin = p.linear()
    assert isinstance(lin, Problem) and lin.id == "mtl-linear"
    torch.testing.assert_close(lin.Y, p.Y)


@pytest.mark.parametrize("pid,knobs", [("biquad", {}), ("biquad", {"K": 3, "n": 4, "scales": (1.0, 2.0, 3.0)}), ("mtl-linear", {}), ("cagrad-toy", {}), ("cagrad-toy", {"scale": 0.1})])
def test_analytic_jacobians_equal_autograd_including_kinks(pid, knobs):
    p = get_problem(pid, **knobs)
    gen = torch.Generator().manual_seed(0)
    X = torch.cat([p.initial_points(0), 12 * (torch.rand(200, p.n, generator=gen, dtype=torch.float64) - 0.5)])
    if pid == "cagrad-toy":  # the kinks: x_2 = 0 (c_1, c_2) and |A_1| = 0 (the log's clamp)
        X = torch.cat([X, torch.tensor([[0.0, 0.0], [4.0, 0.0], [-7.0, 0.0]], dtype=torch.float64)])
    torch.testing.assert_close(p.jacobian(X), p._autograd(X)[1], rtol=1e-12, atol=1e-12)


CLOSED_FORMS = [
    ("biquad", {}),
    ("biquad", {"K": 3, "n": 4, "scales": (1.0, 2.0, 3.0)}),
    ("vlmop2", {}),
    ("zdt1", {}),
    ("zdt1", {"n": 30}),
    ("zdt2", {}),
    ("zdt-skewed", {}),
    ("zdt-skewed", {"q": 0.1, "n": 8}),
    ("dtlz2", {}),
    ("dtlz2", {"K": 4, "k": 3}),
    ("cagrad-toy", {}),
    ("cagrad-toy", {"scale": 0.1}),
    ("clusters", {}),
]


def _closed_form_points(p: Problem, seed: int, B: int, dtype: torch.dtype) -> torch.Tensor:
    """B random points of the problem's domain (its box, [−10, 10]² for cagrad-toy, [−2, 2]^n otherwise), plus the kinks of cagrad-toy."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(B, p.n, generator=gen, dtype=torch.float64)
    if p.bounds is not None:
        X = p.project(u)
    elif p.id == "cagrad-toy":
        X = 20 * u - 10
        # the kinks: x_2 = 0 (c_1, c_2), |A_1| = 0 (the log's clamp; A_1 = 0 at x_1 = −7 − 2 tanh(−x_2)), a start
        X = torch.cat([X, torch.tensor([[0.0, 0.0], [4.0, 0.0], [-7.0, 0.0], [-7.0 - 2 * math.tanh(-0.5), 0.5], [-8.5, 7.5]], dtype=torch.float64)])
    else:
        X = 4 * u - 2
    return X.to(dtype)


def _assert_rows_close(got: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """|got − expected| ≤ rtol·||expected row||_∞ entry by entry, per row (per task for J): each row at its own scale."""
    gap = (got - expected).abs().amax(-1)  # (B,) for F, (B, K) for J
    scale = expected.abs().amax(-1)
    bad = gap > rtol * scale
    assert not bool(bad.any()), f"{int(bad.sum())} rows off, worst relative gap {float((gap / scale.clamp_min(1e-300)).max()):.3g}"


@pytest.mark.parametrize("pid,knobs", CLOSED_FORMS)
def test_closed_form_value_and_jacobian_equals_autograd(pid, knobs):
    """value_and_jacobian (numpy, no autograd) against autograd on the differentiable losses: 5 seeds,
    a runner-sized batch (cagrad-toy's Python-float path) and a large one (numpy arrays); per-row relative 1e-12."""
    p = get_problem(pid, **knobs)
    assert p.has_closed_form
    for seed in range(5):
        for B in (5, 200):
            X = _closed_form_points(p, seed, B, torch.float64)
            F0, J0 = p._autograd(X)
            F, J = p.value_and_jacobian(X.numpy())  # numpy in, numpy out
            assert isinstance(F, np.ndarray) and F.dtype == np.float64 and F.shape == (X.shape[0], p.K) and J.shape == (X.shape[0], p.K, p.n)
            _assert_rows_close(torch.from_numpy(F), F0, 1e-12)
            _assert_rows_close(torch.from_numpy(J), J0, 1e-12)
    F1, J1 = p.value_and_jacobian(X[3])  # a tensor point in, tensors out, no batch dimension
    assert isinstance(F1, torch.Tensor) and F1.shape == (p.K,) and J1.shape == (p.K, p.n)
    assert torch.equal(F1, torch.from_numpy(F[3])) and torch.equal(J1, torch.from_numpy(J[3]))


@pytest.mark.parametrize("pid,knobs", CLOSED_FORMS)
def test_closed_form_follows_float32(pid, knobs):
    """In float32 the closed form computes in float32 and agrees with float32 autograd to 1e-4 per row (3 seeds)."""
    p = get_problem(pid, dtype=torch.float32, **knobs)
    for seed in range(3):
        X = _closed_form_points(p, seed, 50, torch.float32)
        F, J = p.value_and_jacobian(X)
        assert F.dtype == J.dtype == torch.float32
        F0, J0 = p._autograd(X)
        _assert_rows_close(F, F0, 1e-4)
        _assert_rows_close(J, J0, 1e-4)


def test_problems_without_a_closed_form_fall_back_to_losses_and_jacobian():
    p = get_problem("mtl-linear")
    assert not p.has_closed_form
    X = p.initial_points(0)
    F, J = p.value_and_jacobian(X)
    F0, J0 = p.losses_and_jacobian(X)
    assert torch.equal(F, F0) and torch.equal(J, J0)
    Fn, Jn = p.value_and_jacobian(X.numpy())
    assert isinstance(Fn, np.ndarray) and np.array_equal(Fn, F0.numpy()) and np.array_equal(Jn, J0.numpy())


# ---------------------------------------------------------------------------------------------
# Set-method support: num starting points, ideal points, the skewed front, P networks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", ["biquad", "vlmop2", "zdt1", "zdt2", "zdt-skewed", "dtlz2", "mtl-linear", "noisy-biquad"])
def test_initial_points_num_draws_from_the_same_seeded_distribution(pid):
    # num=None keeps the standard starts (so point-method runs are unchanged); num = P gives P points
    # from the same seeded distribution, reproducibly, and different seeds give different sets.
    p = get_problem(pid)
    standard = p.initial_points(3)
    torch.testing.assert_close(p.initial_points(3, num=None), standard, rtol=0, atol=0)
    more = p.initial_points(3, num=2 * standard.shape[0] + 1)
    assert more.shape == (2 * standard.shape[0] + 1, p.n)
    torch.testing.assert_close(p.initial_points(3, num=5), p.initial_points(3, num=5), rtol=0, atol=0)  # seeded
    assert not torch.equal(p.initial_points(3, num=5), p.initial_points(4, num=5))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="num >= 1"):
            p.initial_points(0, num=bad)


def test_cagrad_toy_refuses_a_different_number_of_fixed_starts():
    p = get_problem("cagrad-toy")
    B = p.initial_points(0).shape[0]
    torch.testing.assert_close(p.initial_points(0, num=B), p.initial_points(0))
    with pytest.raises(ValueError, match="fixed"):
        p.initial_points(0, num=B + 1)


@pytest.mark.parametrize("pid,ideal", [("vlmop2", (0.0, 0.0)), ("zdt1", (0.0, 0.0)), ("zdt2", (0.0, 0.0)), ("zdt-skewed", (0.0, 0.0)), ("biquad", (0.0, 0.0))])
def test_ideal_point_is_the_componentwise_minimum_of_the_front(pid, ideal):
    # the fronts here all reach each objective's minimum 0 at an end point, which the sample includes
    p = get_problem(pid)
    torch.testing.assert_close(p.ideal_point(), torch.tensor(ideal, dtype=torch.float64), rtol=0, atol=1e-15)
    assert get_problem("mtl-regression-set").ideal_point() is None  # no analytic front


@pytest.mark.parametrize("pid,knobs", [("dtlz2", {}), ("dtlz2", {"K": 4, "k": 3}), ("biquad", {"K": 3, "n": 4, "scales": (1.0, 2.0, 3.0)})])
def test_ideal_point_is_exact_where_the_front_sample_is_random(pid, knobs):
    # sampled fronts (DTLZ2's sphere, the image of biquad's hull) miss the minima; the exact z* = 0 is
    # reached on the Pareto set (DTLZ2: x_i ∈ {0, 1} corners; biquad: at each anchor a_i)
    p = get_problem(pid, **knobs)
    torch.testing.assert_close(p.ideal_point(), torch.zeros(p.K, dtype=torch.float64), rtol=0, atol=0)
    assert bool((p.pareto_front(500).min(0).values > 0).all())  # the sample's minima are not the ideal point
    if pid == "biquad":
        torch.testing.assert_close(p.losses(p.anchors).diagonal(), torch.zeros(p.K, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("q", [0.25, 0.1, 0.5])
def test_skewed_front_formula_hypervolume_and_zdt1_limit(q):
    from reference_impls.metrics import hypervolume

    p = get_problem("zdt-skewed", q=q)
    F = p.pareto_front(2000)
    torch.testing.assert_close(F[:, 1], 1 - F[:, 0] ** q, rtol=0, atol=1e-12)  # exactly on f_2 = 1 − f_1^q
    np.testing.assert_allclose(F[[0, -1]].numpy(), [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)
    gaps = (F[1:] - F[:-1]).norm(dim=1)
    assert float(gaps.max() / gaps.min()) < 1.01  # uniform in arc length
    # HV of the front at (1, 1) is ∫ f_1^q = 1/(1 + q); a dense sample's staircase is below it by O(1/num)
    assert 1 / (1 + q) - 2e-3 < hypervolume(F, (1.0, 1.0)) < 1 / (1 + q)
    # the Pareto set maps onto the front, and q = ½ is ZDT1
    S = p.pareto_set(11)
    torch.testing.assert_close(p.losses(S)[:, 1], 1 - S[:, 0] ** q, rtol=0, atol=1e-15)
    if q == 0.5:
        X = get_problem("zdt1").initial_points(0)
        torch.testing.assert_close(p.losses(X), get_problem("zdt1").losses(X), rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match="q must be in"):
        get_problem("zdt-skewed", q=1.0)


def test_mtl_regression_set_is_p_networks_with_their_own_losses_and_jacobians():
    # Network p of the set problem is MTLRegression.reset(seed + p): its losses are the network's
    # own losses, and row k of J_p is ∇_θ f_k of that network (autograd through the nn.Module), in
    # the documented flattening order; the P networks are evaluated in one batch.
    from reference_impls.core.aggregator import jacobian
    from reference_impls.problems.mtl_set import MTLRegressionSet

    net = get_problem("mtl-regression", hidden=5, N=64)
    p = MTLRegressionSet.from_network(net)
    assert p.n == 5 * net.p + 5 + net.K * 5 + net.K and p.K == net.K and p.has_pareto_front is False
    X = p.initial_points(7, num=3)  # (3, n)
    F, J = p.losses_and_jacobian(X)  # (3, K), (3, K, n)
    for q in range(3):
        model = net.reset(7 + q)
        torch.testing.assert_close(X[q], p.flatten(model), rtol=0, atol=0)
        f = net.losses()  # (K,)
        torch.testing.assert_close(F[q], f.detach(), rtol=1e-13, atol=0)
        enc, heads = model.encoder, model.heads
        params = [enc.weight, enc.bias] + [hd.weight for hd in heads] + [hd.bias for hd in heads]
        Jq, _ = jacobian(list(f.unbind()), params)  # (K, n) in the order W_enc, b_enc, heads' weights, heads' biases
        torch.testing.assert_close(J[q], Jq, rtol=1e-12, atol=1e-14)
