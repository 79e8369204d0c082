"""The Pareto-set core: the true preference-to-solution maps (oracles), the held-out evaluation, the runner and its hooks.

Oracles are checked by their defining conditions on random preferences, not by their own formulas:
stationarity of Σ r_i f_i with a tolerance relative to each task's own gradient norm (LS maps),
equal weighted losses r_i f_i on the Pareto set (ray points), a second independent solver (the
K = 2 closed form against the certified Tchebycheff dual), and global optimality against random
points. The evaluation is checked on stand-in models whose map is known exactly (the oracle itself,
and the oracle shifted by a known vector). The runner and the documented loop ``train_pareto_model``
(``site/implementations/design.md``) are checked to drive every hook of a stand-in model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reference_impls.core.sets import ParetoModel
from reference_impls.core.solvers import SolverError
from reference_impls.pareto_runner import is_pareto_model, run_pareto
from reference_impls.pareto_set import oracles
from reference_impls.pareto_set.evaluation import (
    HELD_OUT_SEED,
    held_out_preferences,
    pareto_metrics,
    preference_grid,
    training_generator,
)
from reference_impls.pareto_set.training import pareto_step, start_pareto_model
from reference_impls.problems import get_problem
from reference_impls.runner import run

ROOT = Path(__file__).resolve().parents[2]
EPS = torch.finfo(torch.float64).eps


def _random_preferences(K: int, num: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch._standard_gamma(torch.full((num, K), 0.7, dtype=torch.float64), generator=g)
    return w / w.sum(1, keepdim=True)  # (num, K), interior with probability 1


# ----------------------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K,scales", [(2, None), (2, (1.0, 100.0)), (3, None), (4, (0.1, 1.0, 10.0, 1e3))])
def test_biquad_ls_oracle_is_a_stationary_point_of_the_weighted_sum(K, scales):
    problem = get_problem("biquad", K=K, n=5, scales=scales)
    r = _random_preferences(K, 30, seed=K)
    X, F = oracles.biquad_ls(problem, r)
    J = problem.jacobian(X)  # (B, K, n)
    residual = torch.einsum("bk,bkn->bn", r, J).norm(dim=1)  # ||Σ r_i ∇f_i||
    # each task's own scale: its gradient norm plus the rounding of x (∇f_i = 2 s_i (x − a_i) moves by 2 s_i·eps·(|x| + |a_i|))
    rounding = 2 * problem.scales * (X.norm(dim=1, keepdim=True) + problem.anchors.norm(dim=1))  # (B, K)
    per_task = torch.einsum("bk,bk->b", r, J.norm(dim=2) + rounding)
    assert bool((residual <= 100 * EPS * per_task).all()), (residual / per_task).max()
    assert torch.allclose(F, problem.losses(X))
    assert float(problem.distance_to_pareto_set(X).max()) <= 1e-12  # on conv{a_i}


@pytest.mark.parametrize("scales", [None, (1.0, 50.0), (1e-3, 1e3), (1e-6, 1e6)])
def test_biquad_ray_oracle_equalises_the_weighted_losses_and_agrees_with_the_tchebycheff_dual(scales):
    problem = get_problem("biquad", K=2, n=3, scales=scales)
    r = _random_preferences(2, 20, seed=1)
    X, F = oracles.biquad_ray(problem, r)
    rf = r * F  # r_i f_i, (B, 2)
    # each task's own rounding: x is stored to eps·(|x| + |a_i|), which moves r_i f_i by r_i ||∇f_i||·that
    J = problem.jacobian(X)  # (B, 2, n)
    slack = r * J.norm(dim=2) * (X.norm(dim=1, keepdim=True) + problem.anchors.norm(dim=1))  # (B, 2)
    assert bool(((rf[:, 0] - rf[:, 1]).abs() <= 100 * EPS * (slack.sum(1) + rf.abs().sum(1))).all()), rf
    assert float(problem.distance_to_pareto_set(X).max()) <= 1e-12
    # an independent solver: the certified dual of min max_i r_i f_i (used for K >= 3)
    # (scales 1e-6..1e6: SLSQP may miss the optimum; the certificate then raises, never a wrong point)
    for b, row in enumerate(r.numpy()):
        try:
            x_dual = torch.from_numpy(oracles._biquad_tchebycheff(problem, row))
        except SolverError:
            assert scales == (1e-6, 1e6)
            continue
        assert torch.allclose(X[b], x_dual, rtol=0, atol=1e-9), (X[b] - x_dual).abs().max()


def test_biquad_ray_oracle_for_three_objectives_is_the_certified_tchebycheff_optimum():
    problem = get_problem("biquad", K=3, n=4)
    r = _random_preferences(3, 10, seed=3)
    X, F = oracles.biquad_ray(problem, r)
    rf = (r * F).numpy()  # r_i f_i, (B, 3)
    # the Tchebycheff optimum (the ray point where all three terms are active; with four random
    # anchors in R^4 usually only two are, and the ray misses the front): at least two terms tie at the max
    top2 = np.sort(rf, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] <= 1e-9 * top2[:, 1]), rf
    assert float(problem.distance_to_pareto_set(X).max()) <= 1e-9
    # no other point of the hull has a smaller max_i r_i f_i (random convex combinations)
    g = torch.Generator().manual_seed(0)
    lam = torch._standard_gamma(torch.ones(4000, 3, dtype=torch.float64), generator=g)
    Y = (lam / lam.sum(1, keepdim=True)) @ problem.anchors  # (4000, n)
    FY = problem.losses(Y)  # (4000, 3)
    for b in range(r.shape[0]):
        assert float((r[b] * FY).max(1).values.min()) >= float(rf[b].max()) * (1 - 1e-9)


def test_vlmop2_ray_oracle_lies_on_the_front_and_on_the_ray():
    problem = get_problem("vlmop2")
    r = _random_preferences(2, 40, seed=2)
    X, F = oracles.vlmop2_ray(problem, r)
    rf = r * F
    assert torch.allclose(rf[:, 0], rf[:, 1], rtol=1e-11, atol=0)
    assert float(problem.distance_to_pareto_set(X).max()) <= 1e-14
    # vertices: the minimiser of the one objective that counts
    Xv, Fv = oracles.vlmop2_ray(problem, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert float(Fv[0, 0]) == 0.0 and float(Fv[1, 1]) == 0.0


def test_vlmop2_ls_oracle_is_the_global_minimum_and_lies_near_an_end_of_the_front():
    problem = get_problem("vlmop2")
    r = _random_preferences(2, 30, seed=5)
    X, F = oracles.vlmop2_ls(problem, r)
    s = X[:, 0] * math.sqrt(problem.n)  # x* = (s/√n)𝟙
    assert bool((s.abs() >= 0.95).all()), s  # LS only reaches the front near its two ends (|s*| > 0.957)
    value = (r * F).sum(1)  # (B,)
    g = torch.Generator().manual_seed(1)
    for b in range(r.shape[0]):  # random points near the Pareto set and anywhere on it
        t = torch.rand(2000, 1, dtype=torch.float64, generator=g) * 2 - 1
        Y = t * problem._c + 0.05 * torch.randn(2000, problem.n, dtype=torch.float64, generator=g)
        assert float((problem.losses(Y) @ r[b]).min()) >= float(value[b]) - 1e-14
    with pytest.raises(ValueError, match="two optima"):
        oracles.vlmop2_ls(problem, torch.tensor([[0.5, 0.5]], dtype=torch.float64))


@pytest.mark.parametrize("K,scales", [(2, None), (3, (1.0, 10.0, 100.0))])
def test_mtl_linear_ls_oracle_is_weighted_least_squares(K, scales):
    problem = get_problem("mtl-linear", K=K, scales=scales)
    r = _random_preferences(K, 12, seed=7)
    W, F = oracles.mtl_linear_ls(problem, r)
    mu = r / r.sum(1, keepdim=True)
    # independent: min_w ||X w − Σ μ_k y_k||² by numpy's least squares (Σ μ_k f_k = that + a constant)
    Xd, Y = problem.X.numpy(), problem.Y.numpy()
    for b in range(r.shape[0]):
        ref = np.linalg.lstsq(Xd, Y @ mu[b].numpy(), rcond=None)[0]
        assert np.allclose(W[b].numpy(), ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


def test_oracles_refuse_bad_preferences_and_cover_the_documented_pairs():
    problem = get_problem("biquad")
    for bad in ([[float("nan"), 1.0]], [[-0.1, 1.1]], [[0.0, 0.0]]):
        with pytest.raises(ValueError):
            oracles.biquad_ls(problem, torch.tensor(bad, dtype=torch.float64))
    assert oracles.oracle_for(problem, None) is None
    assert oracles.oracle_for(get_problem("zdt1"), "ls") is None
    for pid, target in (("biquad", "ls"), ("biquad", "ray"), ("vlmop2", "ray"), ("vlmop2", "ls"), ("mtl-linear", "ls")):
        assert oracles.oracle_for(get_problem(pid), target) is not None


def test_tchebycheff_dual_raises_a_solver_error_when_not_certified(monkeypatch):
    import scipy.optimize

    problem = get_problem("biquad", K=3, n=3)

    class Stuck:  # a "solver" that returns its start: the duality gap stays open
        def __init__(self, x):
            self.x = x

    monkeypatch.setattr(scipy.optimize, "minimize", lambda fun, x0, **kw: Stuck(np.array([1.0, 0.0, 0.0])))
    with pytest.raises(SolverError, match="duality gap"):
        oracles._biquad_tchebycheff(problem, np.array([0.2, 0.3, 0.5]))


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


class OracleModel(ParetoModel):
    """A stand-in whose map is the biquad LS oracle plus a learnable shift δ (δ = 0: exact)."""

    name = "oracle-model"
    target = "ls"

    def __init__(self, shift=(0.0, 0.0)):
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(shift, dtype=torch.float64))
        self.anchors = None
        self.calls: Counter = Counter()
        self.seen: list = []

    def begin(self, K, n, *, steps, ideal=None, initial_points=None, problem=None):
        self.calls["begin"] += 1
        self.seen.append(("begin", K, n, steps, ideal.clone(), initial_points(3).shape))
        self.anchors = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)

    def forward(self, preference):
        r = preference if preference.ndim == 2 else preference[None]
        x = r / r.sum(1, keepdim=True) @ self.anchors + self.shift  # x*(r) + δ, (B, 2)
        return x if preference.ndim == 2 else x[0]

    def loss(self, losses, preferences):
        return (losses * preferences).sum(1).mean()

    def update(self, new_losses, preferences):
        self.calls["update"] += 1
        self.seen.append(("update", new_losses.clone(), preferences.clone(), self.shift.detach().clone()))

    def on_epoch_end(self, epoch):
        self.calls["on_epoch_end"] += 1
        self.seen.append(("epoch", epoch))


def test_held_out_preferences_are_fixed_and_disjoint_from_every_training_stream():
    a, b = held_out_preferences(2), held_out_preferences(2)
    assert torch.equal(a, b) and a.shape == (25, 2)
    assert HELD_OUT_SEED % 2 == 0  # training streams are seeded 2·seed + 1
    for seed in range(4):
        train = ParetoModel.sample_preferences(OracleModel(), 2000, 2, generator=training_generator(seed))
        d = torch.cdist(a, train, compute_mode="donot_use_mm_for_euclid_dist")
        assert float(d.min()) > 0
    grid = preference_grid(2)
    assert grid.shape == (101, 2) and torch.equal(grid[0], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(preference_grid(1), torch.ones(1, 1, dtype=torch.float64))
    assert preference_grid(3).shape == (91, 3) and preference_grid(5) is None
    assert torch.equal(held_out_preferences(1, 3), torch.ones(3, 1, dtype=torch.float64))


def test_metrics_of_the_exact_map_and_of_a_shifted_map():
    problem = get_problem("biquad")
    model = OracleModel()
    start_pareto_model(model, problem, steps=0)
    held = held_out_preferences(2)
    exact = pareto_metrics(model, problem, held_out=held, grid=preference_grid(2, 2001))
    assert exact["solution_error_max"] <= 1e-15 and exact["objective_error_max"] <= 1e-15
    assert exact["preference_angle_max"] <= 1e-7  # on the LS optimum's own ray
    assert exact["igd"] <= 1e-3 and abs(exact["hypervolume_ratio"] - 1) <= 1e-4  # the exact front, finely traced
    delta = torch.tensor([0.03, -0.04], dtype=torch.float64)  # ||δ|| = 0.05
    with torch.no_grad():
        model.shift.copy_(delta)
    shifted = pareto_metrics(model, problem, held_out=held, grid=preference_grid(2))
    assert shifted["solution_error_max"] == pytest.approx(0.05, rel=1e-12)
    assert shifted["solution_error_mean"] == pytest.approx(0.05, rel=1e-12)
    assert shifted["hypervolume"] < exact["hypervolume"] and shifted["igd"] > exact["igd"]


# ----------------------------------------------------------------------------------------------
# Runner, hooks and the documented loop
# ----------------------------------------------------------------------------------------------


def test_run_pareto_drives_every_hook_with_post_step_losses():
    problem = get_problem("biquad")
    steps = 4
    result = run_pareto(OracleModel((0.2, 0.1)), problem, steps=steps, lr=0.1, optimizer="sgd", batch=3, seed=1)
    model = result.extra["methods"][0]
    assert model.calls == Counter(begin=1, update=steps, on_epoch_end=steps)
    kind, K, n, planned, ideal, init_shape = model.seen[0]
    assert (kind, K, n, planned, init_shape) == ("begin", 2, 2, steps, (3, 2)) and torch.equal(ideal, torch.zeros(2, dtype=torch.float64))
    updates = [s for s in model.seen if s[0] == "update"]
    for _, new_losses, prefs, shift in updates:  # the moved model's losses at the step's own preferences
        x = prefs / prefs.sum(1, keepdim=True) @ model.anchors + shift
        assert torch.allclose(new_losses, problem.losses(x), rtol=1e-14, atol=0)
    assert [s[1] for s in model.seen if s[0] == "epoch"] == list(range(steps))
    assert result.extra["training_preferences"].shape == (steps * 3, 2)
    assert result.extra["criterion"].shape == (steps,) and bool(torch.isfinite(result.extra["criterion"]).all())


def _doc_pareto_loop() -> str:
    text = (ROOT / "site" / "implementations" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Training a Pareto-set model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section must hold exactly one python block"
    return blocks[0]


def test_documented_loop_drives_every_hook_and_matches_the_runner():
    namespace: dict = {}
    exec(compile(_doc_pareto_loop(), "design.md", "exec"), namespace)
    problem = get_problem("biquad")
    steps = 5
    model = namespace["train_pareto_model"](OracleModel((0.2, 0.1)), problem, steps=steps, lr=0.1, batch=3, seed=1, optimizer="sgd")
    assert model.calls == Counter(begin=1, update=steps, on_epoch_end=steps)
    runner_model = run_pareto(OracleModel((0.2, 0.1)), problem, steps=steps, lr=0.1, optimizer="sgd", batch=3, seed=1).extra["methods"][0]
    assert torch.equal(model.shift, runner_model.shift)  # the same steps on the same preference stream
    assert torch.isfinite(namespace["final_front"]).all()  # the page's own example (PHN-LS on the bi-quadratic)


def test_runner_dispatch_and_clear_errors():
    assert is_pareto_model("phn-ls") and is_pareto_model(OracleModel) and not is_pareto_model("mgda")
    result = run(OracleModel(), "biquad", steps=2, lr=0.1, optimizer="sgd", solutions=7)
    assert result.f_final.shape == (7, 2) and result.extra["metrics"]["solution_error_max"] <= 1e-15
    with pytest.raises(ValueError, match="bilevel-ridge"):
        run_pareto(OracleModel(), "bilevel-ridge", steps=1)
    with pytest.raises(ValueError, match="exact problem"):
        run_pareto(OracleModel(), "noisy-biquad", steps=1)
    with pytest.raises(ValueError, match="lr must be positive"):
        run_pareto(OracleModel(), "biquad", steps=1, lr=0.0)
    with pytest.raises(ValueError, match="batch must be"):
        run_pareto(OracleModel(), "biquad", steps=1, batch=0)

    class Exploding(OracleModel):
        def loss(self, losses, preferences):
            return (losses * preferences).sum() * float("nan")

    with pytest.raises(ValueError, match="non-finite at step 0"):
        run_pareto(Exploding(), "biquad", steps=2, lr=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        pareto_step(OracleModel(), get_problem("biquad"), torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
                    batch=1, preferences=torch.tensor([[-1.0, 2.0]]))  # fmt: skip
