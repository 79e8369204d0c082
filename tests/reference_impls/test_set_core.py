"""The set core: run_set (dispatch, defaults, P, preferences, the network path), set_step, set metrics, degenerate inputs."""

from __future__ import annotations

import pytest
import torch

from reference_impls.core.hooks import set_step
from reference_impls.core.sets import SetMethod, check_preferences, simplex_preferences
from reference_impls.problems import get_problem
from reference_impls.problems.base import Problem
from reference_impls.runner import SGD, run
from reference_impls.set_runner import run_set, set_metrics

F64 = torch.float64


class _Gradient(SetMethod):
    """D = Σ_i r_pi ∇f_i, with run defaults of its own (as a paper's toy settings would be)."""

    name = "stand-in"
    default_optimizer = "sgd"
    default_lr = 0.3
    default_steps = 7

    def step(self, X, F, J, preferences):
        return (preferences[:, :, None] * J).sum(1)


def test_runner_run_dispatches_set_methods_to_run_set():
    a = run("ls", "vlmop2", steps=20, solutions=3, seed=2)
    b = run_set("ls", "vlmop2", steps=20, solutions=3, seed=2)
    assert a.extra["solutions"] == 3 and torch.equal(a.x, b.x) and torch.equal(a.f_final, b.f_final)
    with pytest.raises(ValueError, match="set methods only"):
        run("mgda", "vlmop2", steps=1, solutions=3)


def test_run_defaults_come_from_the_caller_then_the_method_then_the_problem():
    problem = get_problem("zdt1")  # problem defaults: adam, 500 steps, lr 0.01
    r = run_set(_Gradient(), problem, solutions=2)
    assert (r.optimizer, r.lr, r.steps) == ("sgd", 0.3, 7)
    r = run_set(_Gradient(), problem, solutions=2, optimizer="adam", lr=0.02, steps=3)
    assert (r.optimizer, r.lr, r.steps) == ("adam", 0.02, 3)
    r = run_set("ls", problem, solutions=2, steps=2)  # ls has no defaults of its own
    assert (r.optimizer, r.lr) == (problem.default_optimizer, problem.default_lr)


def test_number_of_solutions_and_preferences():
    problem = get_problem("vlmop2")
    r = run_set("ls", problem, steps=1)
    assert r.x_final.shape == (problem.initial_points(0).shape[0], problem.n)  # default: the problem's starts
    r = run_set("ls", problem, steps=1, solutions=11)
    assert r.x_final.shape == (11, problem.n)
    torch.testing.assert_close(r.extra["preferences"], simplex_preferences(11, 2))
    torch.testing.assert_close(r.x[0], problem.initial_points(0, num=11))
    prefs = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5]], dtype=F64)
    r = run_set("ls", problem, steps=1, preferences=prefs)
    assert r.x_final.shape[0] == 3 and torch.equal(r.extra["preferences"], prefs)
    with pytest.raises(ValueError, match="solutions=4 but 3 preference rows"):
        run_set("ls", problem, steps=1, preferences=prefs, solutions=4)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="solutions must be a positive integer"):
            run_set("ls", problem, steps=1, solutions=bad)
    with pytest.raises(ValueError, match=r"expected shape \(P, 2\)"):
        run_set("ls", problem, steps=1, preferences=torch.ones(3, 3, dtype=F64))


def test_fast_closed_form_and_autograd_paths_agree():
    a = run_set("tch", "vlmop2", solutions=4, steps=60, fast=True)
    b = run_set("tch", "vlmop2", solutions=4, steps=60, fast=False)
    torch.testing.assert_close(a.x, b.x, rtol=1e-10, atol=1e-12)


def test_the_network_is_trained_as_p_models():
    # mtl-regression becomes P networks (MTLRegressionSet): network p starts as reset(seed + p); each
    # network's losses fall under LS with its own preference, and the preference steers the trade-off:
    # the network weighting task 1 most ends with the smallest f_1, the one weighting task 2 the smallest f_2.
    prefs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]], dtype=F64)
    r = run_set("ls", "mtl-regression", preferences=prefs, steps=150, seed=1)
    assert r.problem == "mtl-regression-set" and r.x_final.shape[0] == 3
    assert bool((r.f_final.sum(1) < 0.5 * r.f[0].sum(1)).all()), (r.f[0], r.f_final)
    assert int(r.f_final[:, 0].argmin()) == 0 and int(r.f_final[:, 1].argmin()) == 2
    assert r.extra["metrics"]["igd"] is None and r.extra["metrics"]["spread"] > 0  # no analytic front


class _NaNAt(Problem):
    """f = (x², (x − 1)²) in 1-D, NaN once x > 5 (or everywhere with ``always``)."""

    id = "nan-toy"

    def __init__(self, always: bool = False):
        super().__init__(2, 1)
        self.always, self.num_starts = always, 2

    def _losses(self, x):
        F = torch.cat([x**2, (x - 1) ** 2], dim=1)
        bad = torch.full_like(F, float("nan"))
        return torch.where((x > 5) | torch.tensor(self.always), bad, F)

    def initial_points(self, seed=0, num=None):
        return torch.linspace(0.0, 1.0, self._num_points(num), dtype=F64)[:, None]


class _Away(SetMethod):
    name = "away"

    def step(self, X, F, J, preferences):
        return -torch.ones_like(X)  # x ← x + lr


def test_non_finite_losses_and_directions_raise_clear_errors():
    with pytest.raises(ValueError, match="non-finite at the initial set"):
        run_set("ls", _NaNAt(always=True), steps=3)
    with pytest.raises(ValueError, match="non-finite after step 2"):
        run_set(_Away(), _NaNAt(), steps=10, lr=2.0, optimizer="sgd")  # x = 0, 1 → 2, 3 → 4, 5 → 6, 7 (NaN)

    class _NaNDirection(SetMethod):
        def step(self, X, F, J, preferences):
            return torch.full_like(X, float("nan"))

    with pytest.raises(ValueError, match="non-finite direction at step 0"):
        run_set(_NaNDirection(), "biquad", steps=3)


def test_invalid_adapted_preferences_and_target_rays_are_refused():
    class BadAdapt(_Gradient):
        def adapt_preferences(self, X, F, preferences, t):
            return -preferences

    with pytest.raises(ValueError, match="adapt_preferences at step 0.*non-negative"):
        run_set(BadAdapt(), "biquad", steps=2, solutions=2)

    class BadRays(_Gradient):
        def target_rays(self, preferences):
            return torch.ones(1, 2, dtype=F64)

    with pytest.raises(ValueError, match="target_rays returned shape"):
        run_set(BadRays(), "biquad", steps=2, solutions=3)


def test_check_preferences_degenerate_rows():
    ok = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.5, 0.5]], dtype=F64)  # zero entries and duplicates are valid
    assert check_preferences(ok, 3, 2) is ok
    for bad, match in [([[0.0, 0.0]], "all zero"), ([[-0.5, 1.5]], "non-negative"), ([[float("inf"), 1.0]], "NaN or infinite"), ([0.5, 0.5], "shape")]:
        with pytest.raises(ValueError, match=match):
            check_preferences(torch.tensor(bad, dtype=F64))


def test_duplicate_preferences_give_a_defined_zero_spread():
    # LS on biquad: equal preferences send different starts to the same minimiser Σ w_i a_i, so the
    # spread l_min is 0 (defined, not an error) and coverage/IGD are computed as usual.
    prefs = torch.tensor([[0.3, 0.7], [0.3, 0.7], [0.8, 0.2]], dtype=F64)
    r = run_set("ls", "biquad", preferences=prefs, steps=400)
    torch.testing.assert_close(r.f_final[0], r.f_final[1], rtol=0, atol=1e-12)
    assert r.extra["metrics"]["spread"] < 1e-12 and 0 < r.extra["metrics"]["coverage"] < 1


def test_set_step_refuses_an_optimiser_without_the_method_parameters():
    class WithParam(_Gradient):
        def __init__(self):
            self.a = torch.zeros((), dtype=F64, requires_grad=True)

        def parameters(self):
            return [self.a]

    problem = get_problem("biquad")
    X = problem.initial_points(0, num=2).requires_grad_(True)
    F, J = problem.losses_and_jacobian(X.detach())
    prefs = simplex_preferences(2, 2)
    with pytest.raises(ValueError, match="learnable parameter"):
        set_step(WithParam(), X, F, J, prefs, problem.losses_and_jacobian, SGD([X], lr=0.1))
    m = WithParam()
    F1, J1, p1 = set_step(m, X, F, J, prefs, problem.losses_and_jacobian, SGD([X, m.a], lr=0.1))
    torch.testing.assert_close(F1, problem.losses(X.detach()))
    assert p1 is prefs


def test_set_metrics_of_the_front_itself_and_of_one_end():
    # 1000 points of the Pareto set as the "set" (uniform in s, the metric's front sample is uniform in
    # arc length): IGD, IGD+ and the covering radius are within the samples' spacing (front length ≈ 1.9,
    # spacing ≤ 4e-3), coverage 1, PS-measure 0; one end point: coverage only near that end, IGD large.
    # Ray errors: 0 for points on their rays.
    problem = get_problem("vlmop2")
    S = problem.pareto_set(1000)
    F, J = problem.losses_and_jacobian(S)
    rays = F / F.norm(dim=1, keepdim=True)
    m = set_metrics(problem, S, F, J, rays=rays, ideal=problem.ideal_point())
    assert m["igd"] < 4e-3 and m["igd_plus"] <= m["igd"] and m["coverage"] == 1.0 and m["covering_radius"] < 4e-3
    assert m["max_pareto_stationarity"] < 1e-12 and m["preference_error"] < 1e-12 and m["preference_angle"] < 1e-7
    assert 0.34212 - 1e-3 < m["hypervolume"] < 0.34213  # the staircase of 1000 front points: below the front's HV by O(1/1000)
    end = set_metrics(problem, S[:1], F[:1], J[:1])
    assert end["coverage"] < 0.1 and end["igd"] > 0.3 and end["spread"] is None and end["preference_error"] is None


def test_noisy_and_bilevel_problems_are_refused_with_one_line():
    for pid, match in (("noisy-biquad", "stochastic oracle"), ("bilevel-ridge", "bilevel-ridge")):
        with pytest.raises(ValueError, match=match) as info:
            run_set("ls", pid, steps=1)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("pid,knobs", [("biquad", {"n": 2}), ("dtlz2", {}), ("vlmop2", {})])
def test_plot_of_a_set_run_writes_a_png(pid, knobs, tmp_path):
    # decision space for n = 2 (biquad), 3-D objective space (dtlz2), rays from the ideal point (tch)
    pytest.importorskip("matplotlib")
    from reference_impls.plotting import plot_result

    problem = get_problem(pid, **knobs)
    result = run_set("tch", problem, solutions=4, steps=20)
    assert result.extra["target_rays"] is not None
    path = plot_result(result, problem, tmp_path / f"{pid}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------
# The per-sample protocol and the initial_set hook
# ------------------------------------------------------------------------------------------------


class PerSampleLinear(Problem):
    """Per-sample losses L_psk = (a_s·x_p − y_sk)² (P, N, K) of a linear model, F = L.mean(1); N = 6, K = 2, n = 3."""

    id = "per-sample-linear"
    default_optimizer = "sgd"

    def __init__(self):
        super().__init__(2, 3)
        g = torch.Generator().manual_seed(7)
        self.A = torch.randn(6, 3, generator=g, dtype=F64)  # (N, n) the inputs a_s
        self.Y = torch.randn(6, 2, generator=g, dtype=F64)  # (N, K) the targets y_sk
        self.num_starts = 4

    def per_sample_losses(self, X):
        return ((X @ self.A.T)[:, :, None] - self.Y[None]) ** 2  # (P, N, K)

    def _losses(self, x):
        return self.per_sample_losses(x).mean(1)  # (B, K)

    def initial_points(self, seed=0, num=None):
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(self._num_points(num), 3, generator=g, dtype=F64)


class PerSampleShare(SetMethod):
    """A per-sample stand-in: W_psk = L_psk / Σ_k L_psk (weights that differ per sample); step(): Σ_k ∇f_k."""

    name = "per-sample-share"
    needs_preferences = False
    per_sample = True

    def __init__(self):
        self.weighed, self.stepped = [], 0

    def sample_weights(self, L):
        self.weighed.append(L.clone())
        return L / L.sum(2, keepdim=True)  # (P, N, K)

    def step(self, X, F, J, preferences):
        self.stepped += 1
        return J.sum(1)  # (P, n)


def test_per_sample_direction_is_the_gradient_of_the_weighted_per_sample_losses():
    # D = ∇_X Σ_{s,k} W_psk L_psk / N: against the closed form Σ_{s,k} W_psk·2(a_s·x_p − y_sk)·a_s / N;
    # and with weights constant over the samples (W_psk = c_pk) it equals Σ_k c_pk ∇f_pk = step's rule
    # on the mean losses (what a per-sample method computes at N = 1). Three random sets.
    from reference_impls.core.hooks import set_direction

    problem = PerSampleLinear()
    for seed in range(3):
        X = problem.initial_points(seed, num=5)  # (P, n)
        F, J = problem.losses_and_jacobian(X)
        m = PerSampleShare()
        D = set_direction(m, X, F, J, None, problem.per_sample_losses)  # (P, n)
        L = problem.per_sample_losses(X)  # (P, N, K)
        W = L / L.sum(2, keepdim=True)
        residual = X @ problem.A.T  # (P, N)
        closed = torch.einsum("psk,sn->pn", W * 2 * (residual[:, :, None] - problem.Y[None]), problem.A) / 6  # (P, n)
        torch.testing.assert_close(D, closed, rtol=1e-12, atol=1e-12 * float(closed.abs().max()))
        assert m.stepped == 0 and len(m.weighed) == 1
        c = torch.rand(5, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))  # (P, K)

        class Constant(PerSampleShare):
            def sample_weights(self, L):
                return c[:, None, :].expand_as(L)

        D = set_direction(Constant(), X, F, J, None, problem.per_sample_losses)
        expected = torch.einsum("pk,pkn->pn", c, J)
        for p in range(5):  # per solution, relative to its own direction
            torch.testing.assert_close(D[p], expected[p], rtol=0, atol=1e-12 * float(expected[p].norm()))


def test_run_set_and_set_step_take_the_per_sample_branch_only_for_per_sample_methods_and_problems():
    # per-sample method on a per-sample problem: sample_weights once per step, step() never, and the
    # first SGD move is X1 = X0 − lr·D; on a point problem (vlmop2) step() is used; a point method on the
    # per-sample problem sees F = mean_s L and its Jacobian.
    problem = PerSampleLinear()
    r = run_set(PerSampleShare(), problem, solutions=3, steps=4, lr=0.05)
    m = r.extra["methods"][0]
    assert m.stepped == 0 and len(m.weighed) == 4
    torch.testing.assert_close(m.weighed[0], problem.per_sample_losses(r.x[0]), rtol=0, atol=0)
    from reference_impls.core.hooks import set_direction

    F0, J0 = problem.losses_and_jacobian(r.x[0])
    D0 = set_direction(PerSampleShare(), r.x[0], F0, J0, None, problem.per_sample_losses)
    torch.testing.assert_close(r.x[1], r.x[0] - 0.05 * D0, rtol=1e-13, atol=1e-13)
    r = run_set(PerSampleShare(), "vlmop2", solutions=3, steps=4)
    assert r.extra["methods"][0].stepped == 4 and not r.extra["methods"][0].weighed
    torch.testing.assert_close(r.f[0], get_problem("vlmop2").losses(r.x[0]))
    r = run_set(_Gradient(), problem, solutions=2, steps=1, lr=0.1)
    prefs = r.extra["preferences"]
    torch.testing.assert_close(r.x[1], r.x[0] - 0.1 * torch.einsum("pk,pkn->pn", prefs, J0[:2]), rtol=1e-13, atol=1e-13)


def test_per_sample_protocol_refuses_bad_weights_non_finite_losses_and_a_missing_sample_weights():
    problem = PerSampleLinear()

    class WrongShape(PerSampleShare):
        def sample_weights(self, L):
            return L.mean(1)

    class NaNWeights(PerSampleShare):
        def sample_weights(self, L):
            return torch.full_like(L, float("nan"))

    class NoWeights(SetMethod):
        per_sample = True
        needs_preferences = False

        def step(self, X, F, J, preferences):
            return J.sum(1)

    for method, match in ((WrongShape(), "sample_weights returned shape"), (NaNWeights(), "non-finite weights"), (NoWeights(), "defines no sample_weights")):
        with pytest.raises((ValueError, NotImplementedError), match=match):
            run_set(method, problem, solutions=2, steps=2)

    class NaNSamples(PerSampleLinear):
        def per_sample_losses(self, X):
            L = super().per_sample_losses(X)
            return torch.where(torch.arange(6)[None, :, None] == 3, float("nan"), L)  # one sample is NaN

    bad = NaNSamples()
    X = bad.initial_points(0, num=2)
    F, J = problem.losses_and_jacobian(X)
    from reference_impls.core.hooks import set_direction

    with pytest.raises(ValueError, match="per-sample losses are non-finite"):
        set_direction(PerSampleShare(), X, F, J, None, bad.per_sample_losses)


class _Seeding(_Gradient):
    """initial_set returns ``self.out`` (a callable of X0), recording the minimisers it was given."""

    def __init__(self, out):
        self.out, self.given = out, []

    def initial_set(self, X0, evaluate, *, minimisers=None):
        self.given.append(minimisers)
        return self.out(X0)


def test_initial_set_replacement_is_projected_checked_and_none_keeps_the_start():
    problem = get_problem("zdt1")  # box [1e-6, 1 − 1e-6]^n: a seeding outside it is clamped
    r = run_set(_Seeding(lambda X0: X0 + 10.0), problem, solutions=3, steps=1)
    torch.testing.assert_close(r.x[0], problem.project(problem.initial_points(0, num=3) + 10.0), rtol=0, atol=0)
    r0 = run_set(_Gradient(), problem, solutions=3, steps=2)
    r1 = run_set(_Seeding(lambda X0: None), problem, solutions=3, steps=2)
    assert torch.equal(r0.x, r1.x)  # None: the run is the one without the hook
    for out, match in ((lambda X0: X0[:2], r"initial_set returned shape \(2, 5\)"), (lambda X0: X0 * float("nan"), "non-finite")):
        with pytest.raises(ValueError, match=match) as info:
            run_set(_Seeding(out), problem, solutions=3, steps=1)
        assert str(info.value).startswith("zdt1:")

    class WithMinimisers(PerSampleLinear):
        def objective_minimisers(self):
            return torch.zeros(2, 3, dtype=F64)

    m = run_set(_Seeding(lambda X0: None), WithMinimisers(), solutions=2, steps=1).extra["methods"][0]
    assert len(m.given) == 1 and torch.equal(m.given[0], torch.zeros(2, 3, dtype=F64))
    assert get_problem("vlmop2").objective_minimisers() is None  # the default


def test_a_methods_default_betas_set_adams_betas():
    # default_betas = (0.5, 0.999) (hv-maximization's paper setting): the run equals Adam with those β
    # step for step, and differs from Adam's default β = (0.9, 0.999) after the first step.
    from reference_impls.runner import Adam

    class Betas(_Gradient):
        default_optimizer = "adam"
        default_betas = (0.5, 0.999)

    problem = get_problem("biquad")
    r = run_set(Betas(), problem, solutions=2, steps=4, lr=0.05)
    prefs = r.extra["preferences"]
    for betas, same in (((0.5, 0.999), True), ((0.9, 0.999), False)):
        X = problem.initial_points(0, num=2).clone().requires_grad_(True)
        opt = Adam([X], lr=0.05, betas=betas)
        for _ in range(4):
            X.grad = (prefs[:, :, None] * problem.jacobian(X.detach())).sum(1)
            opt.step()
        assert torch.allclose(X.detach(), r.x_final, rtol=0, atol=1e-14) is same
