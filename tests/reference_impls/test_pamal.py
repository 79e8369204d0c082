"""Pareto Manifold Learning (PaMaL, id ``pamal``): the paper's claims on toys with a known or estimated front.

Behaviour (seeded; held-out preferences: 25 fixed Dirichlet(1) draws disjoint from training):

* Where the LS map is linear in α, the anchors reach the single-task optima and θ(α) is the LS
  optimum at every held-out α: the bi-quadratic (x*(α) = Σ α_k a_k; seeds 0, 1, 2, 300 steps) and
  ``lowrank-regression`` (W*(α) = Σ α_k Ŵ_k; seeds 0, 1, 2). Thresholds and measured figures in the tests.
* ``merging-mlp`` (a nonlinear MLP, anchors = independently initialised networks): after training,
  f_1(θ(α)) falls and f_2 rises monotonically along the 11-point grid α = (t, 1 − t), and the grid's
  front has a larger hypervolume than the linear interpolation (1 − t)θ_B + tθ_A of two separately
  trained single-task models from the same two independent initialisations (the interpolation
  barrier), whose midpoint PaMaL's midpoint dominates. Seeds 0, 1, 2 in the test; measured on seeds
  0-9 (figures in the test).

Exact properties: the single-task optima are a fixed point of PaMaL's criterion for every window
(zero gradient, per-task relative tolerance) and not elsewhere; θ(e_k) = θ_k and θ(c·r) = θ(r); the
multi-forward regulariser is zero exactly on monotone windows, invariant to the window's order, and
its gradient step lowers a violation; the official guard adds λR only where λR < L; inner
"gradnorm" is invariant to a task's loss scale up to ξ; inner "rwa" equalises w_t·c̄_t for K = 2.
Degenerate inputs: K = 1, vertices and zero entries, a window of one, float32, non-finite inputs,
unbuilt or mismatched models.
"""

from __future__ import annotations

import pytest
import torch

import reference_impls
from reference_impls import metrics
from reference_impls.pareto_runner import run_pareto
from reference_impls.pareto_set.combination import fine_tune
from reference_impls.pareto_set.evaluation import held_out_preferences, preference_grid, training_generator
from reference_impls.pareto_set.oracles import oracle_for
from reference_impls.pareto_set.pamal import GRADNORM_XI, RWA_WINDOW, PaMaL, monotonicity_penalty
from reference_impls.pareto_set.training import pareto_step
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)
EPS = torch.finfo(torch.float64).eps


def train(problem, seed: int, steps: int, lr: float, **params) -> PaMaL:
    """The documented loop (begin, Adam, pareto_step with the model's window) without the runner's metrics."""
    torch.manual_seed(seed)
    model = PaMaL(**params)
    model.begin(problem.K, problem.n, steps=steps, initial_points=lambda num: problem.initial_points(seed, num=num), problem=problem)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = training_generator(seed)
    for t in range(steps):
        pareto_step(model, problem, opt, batch=model.batch, generator=generator, step=t)
    return model


def criterion_gradient(model: PaMaL, problem, r: torch.Tensor) -> torch.Tensor:
    """∇_Θ of PaMaL's criterion for the window r (W, K): (K, n)."""
    (g,) = torch.autograd.grad(model.loss(problem.losses(model(r)), r), model.anchors)
    return g


# ------------------------------------------------------------------------------------------------
# Claim 1: where the LS map is linear in α, the anchors reach the task optima
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_anchors_reach_the_task_optima_and_the_ls_map_on_the_biquadratic(seed):
    # Measured (300 steps, Adam 5e-2, window 4), seeds 0-9, all pass: max held-out error 0.022 (seed 0, its
    # initial anchors are the farthest), else ≤ 4.1e-3; grid HV ratio 0.9962-0.9963 (the 101-point grid's own
    # discretisation: the exact map gives 0.9962), IGD 0.0041-0.0051.
    result = run_pareto("pamal", "biquad", steps=300, lr=5e-2, seed=seed)
    m = result.extra["metrics"]
    anchors = result.extra["methods"][0].anchors.detach()
    assert m["target"] == "ls" and m["held_out_min_distance"] > 0
    assert m["solution_error_max"] <= 0.05, m["solution_error_max"]
    assert float((anchors - get_problem("biquad").anchors).norm(dim=1).max()) <= 0.05, anchors
    assert m["hypervolume_ratio"] >= 0.99 and m["igd"] <= 0.01, (m["hypervolume_ratio"], m["igd"])


@pytest.mark.parametrize("seed", SEEDS)
def test_anchors_reach_the_least_squares_fits_on_lowrank_regression(seed):
    # Measured (150 steps, Adam 5e-2, window 4), seeds 0-9: held-out error / max ||ŵ_k|| 5e-4 to 1.4e-3,
    # largest loss error 3e-5 to 1.0e-3 of max f* (300 steps at 3e-2: 2.5e-4 and below 1e-5).
    problem = get_problem("lowrank-regression")
    model = train(problem, seed, steps=150, lr=5e-2)
    held = held_out_preferences(2)  # (25, 2)
    X_star, F_star = oracle_for(problem, "ls")(held)  # W*(α) = Σ α_k Ŵ_k, certified
    with torch.no_grad():
        X = model(held)  # (25, n)
    scale = float(problem.task_optima.norm(dim=1).max())
    err = float((X - X_star).norm(dim=1).max()) / scale
    anchor_err = float(((model.anchors.detach() - problem.task_optima).norm(dim=1) / problem.task_optima.norm(dim=1)).max())
    assert err <= 5e-3 and anchor_err <= 5e-3, (err, anchor_err)
    assert float((problem.losses(X) - F_star).abs().max()) <= 5e-3 * float(F_star.max()), "held-out losses off the front"


# ------------------------------------------------------------------------------------------------
# Claim 2: merging-mlp, monotone trade-off along α and no interpolation barrier
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_interpolated_models_trade_off_monotonically_and_beat_the_endpoints_interpolation(seed):
    # Measured (300 steps, Adam 1e-2, window 4, against two single-task models fine-tuned for 300 steps
    # from the same two initial networks), seeds 0-9, all pass: f_1 falls and f_2 rises along the 11-point
    # grid, strictly on 9 seeds, on seed 3 f_1 rises by 3e-4 (0.08 % of its range) between the last two
    # points, where f_1 is flat; grid HV 0.300-0.304 against 0.027-0.117 for the interpolation; PaMaL's
    # midpoint ≈ (0.09-0.10, 0.12-0.14) against the interpolation's (0.64-2.3, 0.5-2.8). With 150 steps
    # the end violations reach 1.6 % of the range (seed 3): the tolerance needs the 300 steps. With the toy
    # default (1000 steps at 3e-2) seed 0's f_2 rises by 1.7 % of its range next to α = e_2: the anchors are
    # the best linear-in-α fit over the whole simplex, not the single-task minimisers, so the ends can bend.
    problem = get_problem("merging-mlp")
    steps, lr = 300, 1e-2
    model = train(problem, seed, steps=steps, lr=lr)
    grid = preference_grid(2, 11)  # α = (t, 1 − t), t = 0, 0.1, ..., 1
    with torch.no_grad():
        F = problem.losses(model(grid))  # (11, 2)
    rise_1 = F[1:, 0] - F[:-1, 0]  # f_1 must fall as α_1 grows
    fall_2 = F[:-1, 1] - F[1:, 1]  # f_2 must rise as α_2 falls
    tol = 1e-2 * (F.max(0).values - F.min(0).values)  # 1 % of each task's own range along the grid (flat near the vertices)
    assert float(rise_1.max()) <= float(tol[0]) and float(fall_2.max()) <= float(tol[1]), F
    # two separately trained single-task endpoints from the same two independent initial networks
    starts = problem.initial_points(seed, num=2)  # (2, n), = PaMaL's initial anchors
    torch.testing.assert_close(starts, problem.initial_points(seed, num=2), rtol=0, atol=0)
    ends = torch.stack([fine_tune(problem, starts[k], torch.eye(2, dtype=torch.float64)[k], steps=steps, lr=lr, seed=seed) for k in range(2)])  # (2, n)
    dense = preference_grid(2)  # (101, 2)
    with torch.no_grad():
        F_pamal = problem.losses(model(dense))  # (101, 2)
        F_interp = problem.losses(dense @ ends)  # (1 − t)θ_B + tθ_A, (101, 2)
    hv_pamal, hv_interp = metrics.hypervolume(F_pamal, problem.hv_reference), metrics.hypervolume(F_interp, problem.hv_reference)
    assert hv_pamal >= 2 * hv_interp, (hv_pamal, hv_interp)
    mid_pamal, mid_interp = F_pamal[50], F_interp[50]  # α = (1/2, 1/2)
    assert bool((mid_pamal < mid_interp).all()), (mid_pamal, mid_interp)  # dominates (hence beats it in max loss)
    # the endpoints themselves are good single-task models: the barrier is in between, not at the ends
    assert float(problem.losses(ends)[0, 0]) <= 2 * float(F_pamal[-1, 0]) and float(problem.losses(ends)[1, 1]) <= 2 * float(F_pamal[0, 1])


# ------------------------------------------------------------------------------------------------
# Exact properties
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem_id, params", [("biquad", {"K": 3, "n": 4}), ("lowrank-regression", {})])
def test_the_task_optima_are_a_fixed_point_of_the_criterion_for_every_window(problem_id, params):
    # With θ_k = the k-th task's optimum, θ(α) is the LS optimum for every α (the map is linear in α),
    # so ∇_Θ Σ_w Σ_t α_wt f_t(θ(α_w)) = Σ_w α_w ⊗ Σ_t α_wt ∇f_t(θ(α_w)) = 0 for every window.
    problem = get_problem(problem_id, **params)
    optima = problem.anchors if problem_id == "biquad" else problem.task_optima  # (K, n)
    model = PaMaL(K=problem.K, n=problem.n)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.anchors.copy_(optima)
    for _ in range(5):
        r = model.sample_preferences(4, problem.K, generator=g)  # (4, K)
        J = problem.jacobian(model(r).detach())  # (4, K, n): each task's own gradient scale
        scale = float(torch.linalg.vector_norm(J, dim=-1).max()) + float(optima.norm())
        grad = criterion_gradient(model, problem, r)
        assert float(grad.norm()) <= 1e3 * EPS * max(scale, 1.0), grad.norm()
    with torch.no_grad():
        model.anchors.add_(0.1 * torch.randn(problem.K, problem.n, generator=g, dtype=torch.float64))
    assert float(criterion_gradient(model, problem, r).norm()) > 1e-3  # elsewhere it is not stationary


def test_vertices_return_the_anchors_and_preferences_are_scale_free():
    g = torch.Generator().manual_seed(1)
    model = PaMaL(K=3, n=5)
    r = torch.rand(6, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(torch.eye(3, dtype=torch.float64)), model.anchors)  # θ(e_k) = θ_k exactly
        tol = 8 * EPS * float(model.anchors.abs().max())  # θ is a sum of K terms: rounding relative to the anchors' scale
        torch.testing.assert_close(model(1e6 * r), model(r), rtol=0, atol=tol)  # α = r/Σr (D3)
        torch.testing.assert_close(model(1e-9 * r), model(r), rtol=0, atol=tol)
        torch.testing.assert_close(model(r[2]), model(r)[2], rtol=0, atol=0)  # (K,) -> (n,) is the batch's row


def test_regulariser_is_zero_exactly_on_monotone_windows_and_ignores_the_window_order():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        W, K = 5, 3
        alpha = torch._standard_gamma(torch.ones(W, K, dtype=torch.float64), generator=g)
        alpha = alpha / alpha.sum(1, keepdim=True)  # (W, K)
        # monotone: each task's loss a decreasing function of its own weight
        F = torch.exp(-3 * alpha) * torch.rand(1, K, generator=g, dtype=torch.float64).add(0.5)  # (W, K)
        assert float(monotonicity_penalty(F, alpha)) == 0.0
        # one violation: task 0's loss rises between its two largest weights
        top = torch.argsort(alpha[:, 0])[-2:]  # (second largest, largest)
        Fv = F.clone()
        Fv[top[1], 0] = F[top[0], 0] + 0.25
        R = monotonicity_penalty(Fv, alpha, temperature=2.0)
        assert float(R) > 0
        perm = torch.randperm(W, generator=g)
        torch.testing.assert_close(monotonicity_penalty(Fv[perm], alpha[perm], temperature=2.0), R, rtol=4 * EPS, atol=0)
    # W = 2 with one violation v: R = log(exp(T·v)) = T·v (the closed form of the log-mean-exp)
    alpha = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    F = torch.tensor([[1.0, 1.0], [1.5, 2.0]], dtype=torch.float64)  # task 0 rises 0.5 with α_0; task 1 falls 1.0 with α_1
    assert float(monotonicity_penalty(F, alpha, temperature=3.0)) == pytest.approx(3.0 * 0.5, rel=1e-15)
    # ties carry no order (vertices; D2)
    tied = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert float(monotonicity_penalty(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64), tied)) == 0.0


def test_a_gradient_step_on_the_regulariser_lowers_the_violation():
    problem = get_problem("biquad")
    model = PaMaL(K=2, n=2)
    with torch.no_grad():
        model.anchors.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))  # the tasks' optima swapped
    r = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2]], dtype=torch.float64)
    F = problem.losses(model(r))
    R = monotonicity_penalty(F, r)
    assert float(R.detach()) > 0  # swapped anchors: f_1 rises with α_1
    (g,) = torch.autograd.grad(R, model.anchors)
    with torch.no_grad():
        after = monotonicity_penalty(problem.losses(model(r) - 1e-3 * (r @ g)), r)
    assert float(after) < float(R.detach())


def test_the_official_guard_adds_the_regulariser_only_below_the_loss():
    model = PaMaL(K=2, n=2, reg_coefficient=1.0)
    r = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    F = torch.tensor([[1.0, 1.0], [1.5, 2.0]], dtype=torch.float64)  # R = 0.5 (T = 1)
    plain = float((r * F).sum())  # L = Σ_w Σ_t α_wt ℓ_wt = 2.5
    assert float(model.loss(F, r)) == pytest.approx(plain + 0.5, rel=1e-15) and model.last_regulariser == pytest.approx(0.5)
    big = PaMaL(K=2, n=2, reg_coefficient=10.0)  # λR = 5 > L: left out
    assert float(big.loss(F, r)) == pytest.approx(plain, rel=1e-15) and big.last_regulariser == 0.0
    single = PaMaL(K=2, n=2, reg_coefficient=1.0)  # a window of one: no regulariser (official num == 1)
    assert float(single.loss(F[:1], r[:1])) == pytest.approx(float((r[0] * F[0]).sum()), rel=1e-15)


def test_gradnorm_balancing_is_invariant_to_a_tasks_loss_scale_up_to_xi():
    g = torch.Generator().manual_seed(3)
    r = torch.tensor([[0.3, 0.7], [0.6, 0.4], [0.5, 0.5]], dtype=torch.float64)
    start = torch.randn(2, 2, generator=g, dtype=torch.float64) + 2.0
    grads = {}
    for s in (1.0, 1e3, 1e6):
        problem = get_problem("biquad", scales=(1.0, s))
        model = PaMaL(K=2, n=2, inner="gradnorm")
        with torch.no_grad():
            model.anchors.copy_(start)
        grads[s] = criterion_gradient(model, problem, r)
    # Σ_t α_t ℓ_t/(||∇ℓ_t|| + ξ): scaling ℓ_2 by s changes its term by a factor (1 + ξ/||∇ℓ_2||)/(1 + ξ/(s||∇ℓ_2||)),
    # ||∇ℓ_2|| ≥ 1 here, so the gradients agree to ~ξ relative
    for s in (1e3, 1e6):
        torch.testing.assert_close(grads[s], grads[1.0], rtol=3 * GRADNORM_XI, atol=3 * GRADNORM_XI * float(grads[1.0].norm()))
    ls = PaMaL(K=2, n=2)
    with torch.no_grad():
        ls.anchors.copy_(start)
    assert float((criterion_gradient(ls, get_problem("biquad", scales=(1.0, 1e3)), r)).norm()) > 100 * float(grads[1.0].norm())  # LS is not


def test_rwa_weights_equalise_the_weighted_running_losses():
    model = PaMaL(K=2, n=2, inner="rwa", window=1)
    c = torch.tensor([[0.2, 3.0]], dtype=torch.float64)
    r = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    for call in range(2 * RWA_WINDOW + 2):
        w = model.inner_weights(c)[0]
        if call <= RWA_WINDOW:
            assert torch.equal(w, torch.ones(2, dtype=torch.float64))  # the official warm-up (25 calls)
    # K = 2: w_t = 1 − c_t/(c_1 + c_2), so w_1 c_1 = w_2 c_2 = c_1 c_2/(c_1 + c_2)
    assert float(w[0] * c[0, 0]) == pytest.approx(float(w[1] * c[0, 1]), rel=1e-14)
    assert float(model.loss(c, r)) == pytest.approx(float((w * r[0] * c[0]).sum()), rel=1e-14)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------


def test_a_single_objective_trains_the_single_anchor_to_its_minimiser():
    m = run_pareto("pamal", "biquad", problem_params={"K": 1, "n": 2}, steps=200, lr=5e-2, seed=0).extra["metrics"]
    assert m["solution_error_max"] <= 1e-3, m["solution_error_max"]
    model = PaMaL(K=1, n=2, reg_coefficient=1.0)
    r = torch.ones(3, 1, dtype=torch.float64)
    F = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    assert float(model.loss(F, r)) == pytest.approx(6.0, rel=1e-15) and model.last_regulariser == 0.0  # ties: R = 0
    rwa = PaMaL(K=1, n=2, inner="rwa", window=1)
    for _ in range(2 * RWA_WINDOW):
        w = rwa.inner_weights(F[:1])
    assert float(w) == 1.0  # D4: the official 1 − 1 = 0 would zero the loss


def test_zero_entries_window_of_one_and_float32():
    problem = get_problem("biquad")
    model = PaMaL(K=2, n=2, window=1)
    r = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    F = problem.losses(model(r)).detach()
    assert float(model.loss(F, r)) == pytest.approx(float(F[0, 1]), rel=1e-15)  # a zero weight drops its task
    result = run_pareto("pamal", "biquad", steps=5, lr=1e-2, seed=0, params={"window": 1})
    assert result.extra["batch"] == 1 and torch.isfinite(result.f_final).all()
    m32 = PaMaL(K=2, n=3, dtype=torch.float32)
    out = m32(torch.tensor([0.25, 0.75]))
    assert out.dtype == torch.float32 and out.shape == (3,)


def test_invalid_inputs_raise_clear_errors():
    model = PaMaL(K=2, n=3)
    with pytest.raises(ValueError, match="not built"):
        PaMaL()(torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="was built for"):
        model.begin(2, 4, steps=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        PaMaL().begin(2, 2, steps=1, initial_points=lambda num: torch.full((num, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(K, n\)"):
        PaMaL().begin(2, 3, steps=1, initial_points=lambda num: torch.zeros(num, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        monotonicity_penalty(torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64) / 2)
    for bad in ({"window": 0}, {"p": 0.0}, {"p": float("inf")}, {"reg_coefficient": -1.0}, {"temperature": 0.0}, {"inner": "full"}):
        with pytest.raises(ValueError):
            reference_impls.create("pamal", **bad)
