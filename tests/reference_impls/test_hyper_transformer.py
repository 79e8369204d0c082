"""Hyper-Transformer (id hyper-transformer): the paper's claims on its own examples (cpfl-ex1, cpfl-ex2).

Claims tested (reference_impls/pareto_set/hyper_transformer.py):
* the learned map lands on the closed-form Chebyshev map of ex1 (r_1 f_1 = r_2 f_2) on held-out
  preferences, seeds 0, 1, 2 (3/3 pass; 5/5 for seeds 0-4), and traces the front (HV ratio);
* the split feasibility constraints hold on held-out preferences of the constraint region: x ∈ C exactly
  and f(x̂(r)) ≥ c (Q) within 1e-2, where the unconstrained Chebyshev map (c = 0) violates Q;
* degenerate inputs: vertices of the simplex, K = 1, bad preferences / losses / lower bounds.
Training budget (D4): 200 steps of 16 rays, Adam 3e-3 (the official 10000 steps of one ray at 1e-3 is
out of a unit test's reach); float64, so no BLAS-kernel dependence.
"""

from __future__ import annotations

import functools

import pytest
import torch

from reference_impls.pareto_set.evaluation import held_out_preferences, pareto_metrics, preference_grid, training_generator
from reference_impls.pareto_set.hyper_transformer import HyperTransformer
from reference_impls.pareto_set.oracles import oracle_for
from reference_impls.pareto_set.training import pareto_step, start_pareto_model
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)
STEPS, BATCH, LR = 200, 16, 3e-3


@functools.lru_cache(maxsize=None)
def trained(problem_id: str, seed: int, lower_bound: tuple[float, ...] | None = None) -> HyperTransformer:
    problem = get_problem(problem_id)
    torch.manual_seed(seed)
    model = HyperTransformer(lower_bound=lower_bound)
    start_pareto_model(model, problem, steps=STEPS, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = training_generator(seed)
    for t in range(STEPS):
        pareto_step(model, problem, opt, batch=BATCH, generator=gen, step=t)
    return model


@pytest.mark.parametrize("seed", SEEDS)
def test_learned_map_matches_the_closed_form_chebyshev_map_on_held_out_preferences_ex1(seed):
    # Claim: x̂(r) ≈ x*(r), r_1 x* = r_2 (x* − 1)², on 25 held-out Dirichlet(1) rays: mean error < 0.04 and
    # max < 0.12 (C = [0, 1]), HV ratio > 0.97. Run for seeds 0-2 (3/3 pass); checked for seeds 0-4 (5/5:
    # mean 0.006-0.028, max 0.030-0.088, HV ratio 0.986-0.991); the untrained model's mean error is 0.17-0.25.
    problem = get_problem("cpfl-ex1")
    model = trained("cpfl-ex1", seed)
    m = pareto_metrics(model, problem, held_out=held_out_preferences(2), grid=preference_grid(2))
    assert m["solution_error_mean"] < 0.04 and m["solution_error_max"] < 0.12, (m["solution_error_mean"], m["solution_error_max"])
    assert m["hypervolume_ratio"] > 0.97, m["hypervolume_ratio"]
    # an untrained model is far from the map (the test cannot pass by the initialisation)
    torch.manual_seed(seed)
    fresh = HyperTransformer(K=2, n=1, box=(0.0, 1.0))
    m0 = pareto_metrics(fresh, problem, held_out=held_out_preferences(2), grid=None)
    assert m0["solution_error_mean"] > 3 * m["solution_error_mean"]


def test_ex2_learned_map_lands_near_the_chebyshev_map():
    # ex2 (n = 2, C = [0, 5]²): mean error < 0.15 (3% of the box side) and HV ratio > 0.95 on held-out rays,
    # seed 0; checked for seeds 0-4 (5/5: mean 0.073-0.109, HV ratio 0.982-0.989; untrained: 0.96-1.55).
    problem = get_problem("cpfl-ex2")
    model = trained("cpfl-ex2", 0)
    m = pareto_metrics(model, problem, held_out=held_out_preferences(2), grid=preference_grid(2))
    assert m["solution_error_mean"] < 0.15, m["solution_error_mean"]
    assert m["hypervolume_ratio"] > 0.95, m["hypervolume_ratio"]


def region_rays(c: torch.Tensor, num: int = 25) -> torch.Tensor:
    """Held-out rays of the constraint region (official predict.py): u_i ~ U(c_i, 1), r = u/||u||_1, own seed."""
    g = torch.Generator().manual_seed(2_010_104)  # even: disjoint from the odd training seeds
    u = c + (1 - c) * torch.rand(num, c.numel(), generator=g, dtype=torch.float64)
    return u / u.sum(1, keepdim=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_split_feasibility_constraints_hold_on_held_out_preferences(seed):
    # ex1 with the official lower bound c = (0.1, 0.6): x̂ ∈ C = [0, 1] exactly, f(x̂(r)) ≥ c − 1e-2 (Q) and
    # x̂ within 0.02 of the constrained Chebyshev map. Run for seeds 0-2 (3/3 pass); checked for seeds 0-4
    # (5/5: min_i f_i − c_i ≥ 0.0011, max error ≤ 0.0081). Without the constraint (c = 0) the exact map
    # leaves Q on the same rays (min_i f_i − c_i = −0.52), so Q does not hold by itself.
    c = torch.tensor([0.1, 0.6], dtype=torch.float64)
    problem = get_problem("cpfl-ex1")
    model = trained("cpfl-ex1", seed, (0.1, 0.6))
    r = region_rays(c)
    with torch.no_grad():
        X = model(r)  # (25, 1)
    F = problem.losses(X)
    assert bool(((X >= 0) & (X <= 1)).all())
    assert float((F - c).min()) > -1e-2, float((F - c).min())
    X_star, F_star = problem.chebyshev_solution(r, c)
    assert bool(((F_star - c) > 0).all())  # the constrained map itself lies in Q
    assert float((X - X_star).abs().max()) < 0.02, float((X - X_star).abs().max())
    _, F_free = problem.chebyshev_solution(r)  # c = 0: no split constraint
    assert float((F_free - c).min()) < -0.05


def test_closed_form_maps_are_the_chebyshev_optima():
    # The oracle against a dense grid search of max_i r_i (f_i − c_i) over C, for c = 0 and c = (0.1, 0.6) (ex1)
    # and c = (0.02, 0.4) (ex2, on its Pareto segment); r = (1, 1)/2 gives x = (3 − √5)/2 on ex1.
    g = torch.Generator().manual_seed(3)
    r = torch.rand(40, 2, generator=g, dtype=torch.float64) + 0.05
    r = r / r.sum(1, keepdim=True)
    p1 = get_problem("cpfl-ex1")
    xs = torch.linspace(0, 1, 200001, dtype=torch.float64)[:, None]
    F1 = p1.losses(xs)  # (G, 2)
    for c in (torch.zeros(2, dtype=torch.float64), torch.tensor([0.1, 0.6], dtype=torch.float64)):
        X, _ = p1.chebyshev_solution(r, c)
        best = xs[((F1[None] - c) * r[:, None]).max(2).values.argmin(1)]  # (40, 1)
        assert float((X - best).abs().max()) < 2e-5
    X, _ = p1.chebyshev_solution(torch.tensor([[0.5, 0.5]]))
    assert abs(float(X) - (3 - 5**0.5) / 2) < 1e-15
    p2 = get_problem("cpfl-ex2")
    ts = torch.linspace(0, 1, 200001, dtype=torch.float64)
    seg = 5 * ts[:, None] * torch.ones(1, 2, dtype=torch.float64)
    F2 = p2.losses(seg)
    c = torch.tensor([0.02, 0.4], dtype=torch.float64)
    X, _ = p2.chebyshev_solution(r, c)
    best = seg[((F2[None] - c) * r[:, None]).max(2).values.argmin(1)]
    assert float((X - best).abs().max()) < 1e-4
    # the oracle registered for the evaluation is the c = 0 map
    torch.testing.assert_close(oracle_for(p1, "ray")(r)[0], p1.chebyshev_solution(r)[0], rtol=0, atol=0)


def test_vertices_k1_and_bad_inputs():
    problem = get_problem("cpfl-ex1")
    # vertices: the oracle gives each objective's minimiser; the model's output stays in C and the
    # criterion at e_j is r_j (f_j − c_j) alone
    X, _ = problem.chebyshev_solution(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert X.squeeze(1).tolist() == [0.0, 1.0]
    X2, _ = get_problem("cpfl-ex2").chebyshev_solution(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert X2.tolist() == [[0.0, 0.0], [5.0, 5.0]]
    with pytest.raises(ValueError, match="not unique"):
        problem.chebyshev_solution(torch.tensor([[1.0, 0.0]]), (0.1, 0.6))
    with pytest.raises(ValueError, match="below the Pareto front"):
        problem.chebyshev_solution(torch.tensor([[0.5, 0.5]]), (0.5, 0.5))
    model = HyperTransformer(K=2, n=1, box=(0.0, 1.0))
    V = model(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert bool(torch.isfinite(V).all()) and bool(((V > 0) & (V < 1)).all())
    losses = torch.tensor([[0.3, 0.7], [0.3, 0.7]], dtype=torch.float64)
    assert float(model.loss(losses, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))) == pytest.approx((0.3 + 0.7) / 2)
    # K = 1: one token; the criterion is f_1 and training drives x to the single objective's minimiser
    bq = get_problem("biquad", K=1, n=2)
    torch.manual_seed(0)
    one = HyperTransformer()
    start_pareto_model(one, bq, steps=150, seed=0)
    opt = torch.optim.Adam(one.parameters(), lr=1e-2)
    with torch.no_grad():
        d0 = float(torch.linalg.vector_norm(one(torch.ones(1, dtype=torch.float64)) - bq.anchors[0]))
    for t in range(150):
        pareto_step(one, bq, opt, batch=1, step=t)
    with torch.no_grad():
        d1 = float(torch.linalg.vector_norm(one(torch.ones(1, dtype=torch.float64)) - bq.anchors[0]))
    assert d1 < 0.05 * d0, (d0, d1)
    # bad inputs: clear errors
    with pytest.raises(ValueError, match="NaN"):
        model.loss(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="lower bound"):
        HyperTransformer(lower_bound=(0.1, 1.2))
    with pytest.raises(ValueError, match="lower bound"):
        HyperTransformer(lower_bound=(-0.1, 0.2))
    with pytest.raises(ValueError, match="lower bound has 3 entries"):
        HyperTransformer(lower_bound=(0.1, 0.2, 0.3), K=2, n=1)
    with pytest.raises(ValueError, match="not built"):
        HyperTransformer()(torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("pid", ["cpfl-ex1", "cpfl-ex2"])
def test_cpfl_problems_formulas_jacobian_front_and_box(pid):
    # the official formulas (get_problem.py ex1, ex2), the closed-form Jacobian against central differences,
    # the Pareto set's image on the analytic front, the ideal point (0, 0), starts inside C
    p = get_problem(pid)
    x = p.initial_points(0)  # (8, n)
    lo, hi = p.bounds
    assert bool(((x >= lo) & (x <= hi)).all())
    F = p.losses(x)
    if pid == "cpfl-ex1":
        torch.testing.assert_close(F, torch.stack([x[:, 0], (x[:, 0] - 1) ** 2], 1), rtol=0, atol=0)
    else:
        torch.testing.assert_close(F, torch.stack([(x**2).sum(1) / 50, ((x - 5) ** 2).sum(1) / 50], 1), rtol=1e-15, atol=0)
    Fc, J = p.value_and_jacobian(x)
    torch.testing.assert_close(Fc, F, rtol=1e-14, atol=0)
    h = 1e-6
    for j in range(p.n):
        e = torch.zeros(p.n, dtype=torch.float64)
        e[j] = h
        torch.testing.assert_close(J[:, :, j], (p.losses(x + e) - p.losses(x - e)) / (2 * h), rtol=1e-7, atol=1e-9)
    S = p.pareto_set(2001)
    assert float(p.distance_to_pareto_set(S).max()) < 1e-12
    image = p.losses(S)  # (2001, 2) on the front (t, (1 − t)²) / (t², (1 − t)²)
    t = image[:, 0] if pid == "cpfl-ex1" else image[:, 0].sqrt()
    torch.testing.assert_close(image[:, 1], (1 - t) ** 2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p.ideal_point(), torch.zeros(2, dtype=torch.float64))
