"""The runner and `modl run`, driven by small methods defined here (the real ones live in their own modules)."""

from __future__ import annotations

import math

import pytest
import torch

import reference_impls.registry as registry
from modl.cli import main
from reference_impls.core.aggregator import Aggregator, Weighting
from reference_impls.core.loss_weighting import BilevelLossWeighting, LossWeighting
from reference_impls.core.sets import ParetoModel, SetMethod
from reference_impls.problems import get_problem
from reference_impls.runner import Adam, parse_params, run


class Mean(Weighting):
    """w = 𝟙/K: linear scalarisation with equal weights (its limit on biquad is the midpoint)."""

    name = "test-mean"

    def compute_weights(self, J, losses):
        return J.new_full((J.shape[0],), 1.0 / J.shape[0])


class CountingAggregator(Aggregator):
    """A stateful aggregator that counts its calls and needs the losses."""

    stateful = True
    needs_losses = True

    def __init__(self):
        self.calls = 0
        self.seen_losses = []

    def aggregate(self, J, losses):
        self.calls += 1
        self.seen_losses.append(losses.clone())
        return J.sum(0)


class LearnedLog(LossWeighting):
    """UW-like: weights exp(−s_i), objective Σ exp(−s_i) f_i + s_i with learnable s."""

    stateful = True

    def __init__(self):
        self.s = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        self.observed = 0

    def weights(self, losses, step):
        return torch.exp(-self.s).detach()

    def objective(self, losses, step):
        return (torch.exp(-self.s) * losses + self.s).sum()

    def parameters(self):
        return [self.s]

    def observe(self, losses, step):
        self.observed += 1


class FixedWeights(LossWeighting):
    def weights(self, losses, step):
        return torch.tensor([0.25, 0.75], dtype=losses.dtype)


class LinearScalarisationSet(SetMethod):
    """Each solution p follows its own preference: D_p = J_pᵀ r_p."""

    def step(self, X, F, J, preferences):
        return torch.einsum("pk,pkn->pn", preferences, J)


def test_mean_on_biquad_converges_to_the_ls_solution_from_every_start():
    result = run(Mean(), "biquad", steps=200, lr=0.05, seed=0, optimizer="sgd")
    midpoint = torch.tensor([0.5, 0.0], dtype=torch.float64)  # LS(½, ½) solution (a_1 + a_2)/2
    assert result.x.shape == (201, 8, 2) and result.f.shape == (201, 8, 2)
    assert float((result.x_final - midpoint).norm(dim=1).max()) < 1e-8
    torch.testing.assert_close(result.f_final, torch.full((8, 2), 0.25, dtype=torch.float64))
    assert float(result.ps_measure.max()) < 1e-8 and float(result.distance.max()) < 1e-8
    assert float(result.ps_measure_normalized.max()) < 1e-8  # g_1/||g_1|| = −g_2/||g_2|| at the midpoint
    assert result.hv == pytest.approx(0.75**2)  # one point (¼, ¼) at reference (1, 1)
    torch.testing.assert_close(result.x[0], get_problem("biquad").initial_points(0))
    assert "PS-measure" in result.table() and "hypervolume of the final points: 0.5625" in result.table()


def test_sgd_step_is_x_minus_lr_d_and_adam_matches_torch():
    problem = get_problem("biquad")
    x0 = problem.initial_points(0)
    r = run(Mean(), problem, steps=1, lr=0.1, optimizer="sgd")
    torch.testing.assert_close(r.x_final, x0 - 0.1 * problem.jacobian(x0).mean(1))
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ours, theirs = Adam([b], lr=0.05), torch.optim.Adam([a], lr=0.05)
    for step in range(30):
        g = torch.randn(4, 3, generator=gen, dtype=torch.float64) * (step + 1)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_each_start_point_gets_its_own_method_instance_and_the_given_one_is_untouched():
    method = CountingAggregator()
    result = run(method, "biquad", steps=5, lr=0.01, optimizer="sgd")
    assert method.calls == 0  # deep-copied, never called
    # the run equals 8 separate single-point runs of plain gradient descent on f_1 + f_2
    x0 = get_problem("biquad").initial_points(0)
    expected = x0.clone()
    for _ in range(5):
        expected = expected - 0.01 * get_problem("biquad").jacobian(expected).sum(1)
    torch.testing.assert_close(result.x_final, expected)


def test_losses_are_passed_to_methods_that_need_them():
    seen = []

    class Spy(CountingAggregator):
        def aggregate(self, J, losses):
            seen.append(losses.clone())
            return super().aggregate(J, losses)

    problem = get_problem("zdt1")
    run(Spy(), problem, steps=1, lr=0.01)
    x0 = problem.initial_points(0)
    torch.testing.assert_close(torch.stack(seen), problem.losses(x0))


def test_box_problems_stay_in_the_box_and_reach_stationarity():
    result = run(Mean(), "zdt1", steps=300, lr=0.01, optimizer="adam")
    lo, hi = get_problem("zdt1").bounds
    assert bool(((result.x >= lo) & (result.x <= hi)).all())
    assert float(result.ps_measure.max()) < 1e-6
    assert float(result.distance.max()) < 1e-5  # x_{2..n} at the clamp 1e-6
    torch.testing.assert_close(result.f_final[:, 0], torch.full((8,), 0.25, dtype=torch.float64), atol=1e-4, rtol=0)  # LS(½) of ZDT1: f_1 = ¼


def test_loss_weightings_fixed_and_learned():
    result = run(FixedWeights(), "biquad", steps=300, lr=0.1, optimizer="sgd")
    torch.testing.assert_close(result.x_final, torch.tensor([0.75, 0.0], dtype=torch.float64).expand(8, 2), atol=1e-9, rtol=0)
    # learned weights: the runner trains s with the same optimiser, step for step
    problem = get_problem("biquad")
    lr, steps = 0.05, 4
    method = LearnedLog()
    result = run(method, problem, steps=steps, lr=lr, optimizer="sgd")
    assert method.observed == 0 and float(method.s.detach().abs().max()) == 0.0  # the given instance is untouched
    x = problem.initial_points(0)
    s = torch.zeros(8, 2, dtype=torch.float64)
    for _ in range(steps):
        F, J = problem.losses_and_jacobian(x)
        w = torch.exp(-s)
        x = x - lr * torch.einsum("bk,bkn->bn", w, J)
        s = s - lr * (1 - torch.exp(-s) * F)  # ∂/∂s (e^{−s} f + s)
    torch.testing.assert_close(result.x_final, x)


def test_set_methods_move_the_starting_points_as_one_set():
    result = run(LinearScalarisationSet(), "biquad", steps=200, lr=0.05, optimizer="sgd")
    prefs = result.extra["preferences"]  # (8, 2) interior points of the simplex
    expected = prefs[:, 1:2] * torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # Σ r_i a_i with a_1 = 0, a_2 = e_1
    torch.testing.assert_close(result.x_final, expected, atol=1e-8, rtol=0)
    assert result.igd is not None and 0 < result.igd < 0.1
    assert result.hv > 0.75


def test_model_problem_is_trained_through_backward():
    result = run(Mean(), "mtl-regression", steps=60, lr=0.01, seed=1)
    assert result.x is None and result.f.shape == (61, 1, 2)
    assert float(result.f_final.sum()) < 0.5 * float(result.f[0].sum())
    assert result.ps_measure.shape == (1,) and float(result.ps_measure[0]) >= 0
    again = run(Mean(), "mtl-regression", steps=60, lr=0.01, seed=1)
    torch.testing.assert_close(again.f, result.f)  # seeded
    # -UB mode: with constant weights, w from ∂f/∂Z changes nothing: the same run
    ub = run(Mean(), "mtl-regression", steps=60, lr=0.01, seed=1, representation=True)
    torch.testing.assert_close(ub.f, result.f)
    with pytest.raises(ValueError, match="needs a network problem"):
        run(Mean(), "biquad", representation=True)
    fixed = run(FixedWeights(), "mtl-regression", steps=20, lr=0.01, seed=1)
    assert float(fixed.f_final.sum()) < float(fixed.f[0].sum())


def test_record_every_thins_the_trajectory_but_keeps_the_last_point():
    result = run(Mean(), "biquad", steps=25, lr=0.05, optimizer="sgd", record_every=10)
    full = run(Mean(), "biquad", steps=25, lr=0.05, optimizer="sgd")
    assert result.x.shape[0] == 4  # steps 0, 10, 20, 25
    torch.testing.assert_close(result.x, full.x[[0, 10, 20, 25]])


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="unknown method 'no-such-method'"):
        run("no-such-method", "biquad")
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        run(Mean(), "nope")
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        run(Mean(), "biquad", optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr must be positive"):
        run(Mean(), "biquad", lr=0.0)

    class Bilevel(BilevelLossWeighting):
        def weights(self, losses, step):
            return torch.ones_like(losses)

        def outer_step(self, params, train_losses, val_losses, lr):
            pass

    with pytest.raises(ValueError, match="bi-level"):
        run(Bilevel(), "biquad")

    class Model(ParetoModel):
        def forward(self, preference):
            return preference

        def loss(self, losses, preference):
            return losses @ preference

    # a Pareto-set model goes to reference_impls.pareto_runner.run_pareto, which refuses one with nothing to train
    with pytest.raises(ValueError, match="no learnable parameters"):
        run(Model(), "biquad")

    class Exploding(Aggregator):
        def aggregate(self, J, losses):
            return J.sum(0) * float("nan")

    with pytest.raises(ValueError, match="non-finite direction at step 0"):
        run(Exploding(), "biquad", steps=3)
    with pytest.raises(ValueError, match="expected a Jacobian of shape"):  # the interface's own checks apply
        run(Mean(), "biquad", steps=1).table() and Mean()(torch.zeros(3, dtype=torch.float64))


def test_parse_params():
    method, problem, runner = parse_params(["c=0.5", "name=abc", "scales=(1, 10)", "problem.scale=0.1", "run.optimizer=sgd", "flag=True"])
    assert method == {"c": 0.5, "name": "abc", "scales": (1, 10), "flag": True}
    assert problem == {"scale": 0.1} and runner == {"optimizer": "sgd"}
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_params(["novalue"])
    with pytest.raises(ValueError, match="unknown runner option"):
        parse_params(["run.steps=3"])


# ---------------------------------------------------------------------------------------------
# `modl run`
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registered_mean(monkeypatch):
    """Register the test's Mean as 'test-mean' for the duration of a test."""
    info = registry.MethodInfo("test-mean", "none", "gradient-weighting", "none", "Mean", "weighting")
    monkeypatch.setitem(registry.REGISTRY, "test-mean", info)
    real_create = registry.create

    def create(name, **hp):
        return Mean(**hp) if name == "test-mean" else real_create(name, **hp)

    monkeypatch.setattr(registry, "create", create)


def _assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_cli_prints_the_table_and_writes_plots(registered_mean, tmp_path, capsys):
    out = tmp_path / "plots" / "biquad.png"
    assert main(["run", "test-mean", "--problem", "biquad", "--steps", "200", "--lr", "0.05", "--plot", str(out), "-p", "run.optimizer=sgd"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert captured.err == f"wrote {out}\n"
    assert "test-mean on biquad: 200 steps, sgd lr=0.05, seed=0" in printed
    assert printed.count("0.25") >= 16  # f = (¼, ¼) from all eight starts
    _assert_png(out)
    toy = tmp_path / "toy.png"
    assert main(["run", "test-mean", "--problem", "cagrad-toy", "--steps", "100", "--lr", "0.05", "--plot", str(toy), "-p", "problem.scale=0.1"]) == 0
    _assert_png(toy)
    zdt = tmp_path / "zdt.png"
    assert main(["run", "test-mean", "--problem", "dtlz2", "--steps", "20", "--plot", str(zdt)]) == 0
    _assert_png(zdt)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    capsys.readouterr()
    assert main(["run", "test-mean", "--problem", "biquad", "--steps", "1", "--plot", str(blocked / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("modl run: error: cannot write") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "no-such-method", "--problem", "biquad"], "modl run: error: unknown method 'no-such-method'"),
        (["run", "test-mean", "--problem", "nope"], "modl run: error: unknown problem 'nope'"),
        (["run", "test-mean", "--problem", "biquad", "-p", "oops"], "modl run: error: bad parameter 'oops'"),
        (["run", "test-mean", "--problem", "biquad", "-p", "problem.colour=1"], "modl run: error: problem 'biquad': bad knob"),
        (["run", "test-mean", "--problem", "biquad", "-p", "c=1"], "modl run: error: method 'test-mean': bad hyperparameter"),
        (["run", "test-mean", "--problem", "biquad", "--lr", "-1"], "modl run: error: lr must be positive"),
    ],
)
def test_cli_errors_are_one_line_with_exit_status_1(registered_mean, capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_cagrad_toy_default_settings_are_the_papers():
    p = get_problem("cagrad-toy")
    assert (p.default_optimizer, p.default_lr, p.default_steps) == ("adam", 1e-3, 35_000)
    assert math.isclose(p.initial_points(0)[0, 0].item(), -8.5)


# ---------------------------------------------------------------------------------------------
# The runner's loop against a plain per-start reference loop; hyperparameters; progress
# ---------------------------------------------------------------------------------------------


# Methods with one instance per start: bi-level methods run on bilevel-ridge only, set methods move one
# set through reference_impls.set_runner (tested in test_set_core.py), Pareto-set models are trained by
# reference_impls.pareto_runner (tested in test_pareto_core.py).
POINT_METHODS = [
    name for name in registry.names()
    if not getattr(registry.load_class(name), "bilevel", False) and not issubclass(registry.load_class(name), (SetMethod, ParetoModel))
]


def _reference_run(name, problem, steps, lr, optimizer="adam", seed=0):
    """The straightforward loop: one instance per start, the interface's own checks at every call,
    hooks called per start (update with the new losses, observe, on_epoch_end), x ← Π(x − η d).

    F and J come from ``problem.value_and_jacobian`` (the closed form the runner's fast loop uses), so
    the runner must match bit for bit; tests/reference_impls/test_runner_speed_paths.py compares the
    runs with autograd Jacobians."""
    problem = get_problem(problem) if isinstance(problem, str) else problem
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x0 = problem.initial_points(seed)
        methods = [registry.create(name) for _ in range(x0.shape[0])]
        loss_weighting = isinstance(methods[0], LossWeighting)
        offset = torch.tensor(problem.loss_lower_bound, dtype=x0.dtype) if problem.loss_lower_bound is not None else torch.zeros(problem.K, dtype=x0.dtype)
        x = problem.project(x0.clone()).requires_grad_(True)
        make = Adam if optimizer == "adam" else (lambda params, lr: torch.optim.SGD(params, lr=lr))
        opt = make([x], lr=lr)
        method_opts = [make(list(m.parameters()), lr=lr) if list(m.parameters()) else None for m in methods]
        xs = [x.detach().clone()]
        for t in range(steps):
            F, J = problem.value_and_jacobian(x.detach())
            F = F - offset
            D = []
            for b, m in enumerate(methods):
                if loss_weighting:
                    D.append(m.weights(F[b], t).detach().to(J) @ J[b])
                    if method_opts[b] is not None:
                        method_opts[b].zero_grad()
                        m.objective(F[b], t).backward()
                        method_opts[b].step()
                    m.observe(F[b], t)
                else:
                    D.append(m(J[b], F[b]) if m.needs_losses else m(J[b]))
            x.grad = torch.stack(D)
            opt.step()
            with torch.no_grad():
                x.copy_(problem.project(x))
            xs.append(x.detach().clone())
            F_new = problem.value_and_jacobian(x.detach())[0] - offset  # (B, K) after the step
            for b, m in enumerate(methods):
                if hasattr(m, "update"):
                    m.update(F_new[b])
                m.on_epoch_end(t)
    return torch.stack(xs), methods


@pytest.mark.parametrize(
    "name,problem,optimizer",
    [
        ("imtl-g", "cagrad-toy", "adam"),  # the batched Gramian path
        ("nash-mtl", "cagrad-toy", "adam"),  # batched, stateful (warm starts)
        ("upgrad", "vlmop2", "sgd"),  # batched, n = 20
        ("cagrad", "zdt1", "adam"),  # batched, box problem
        ("famo", "cagrad-toy", "adam"),  # the update hook
        ("imtl-l", "biquad", "sgd"),  # learnable parameters
        ("mgda", "biquad", "adam"),  # the per-start path
        ("graddrop", "vlmop2", "adam"),  # randomness
        ("sdmgrad", "dtlz2", "adam"),  # K = 3, box problem
    ]
    + [(name, "cagrad-toy", "adam") for name in POINT_METHODS]  # every method: the fast (numpy) loop
    + [(name, "biquad", "sgd") for name in POINT_METHODS],
)
def test_runner_loop_equals_the_plain_reference_loop_bit_for_bit(name, problem, optimizer):
    steps = 60
    expected, ref_methods = _reference_run(name, problem, steps, lr=1e-2, optimizer=optimizer)
    result = run(name, problem, steps=steps, lr=1e-2, optimizer=optimizer)
    assert torch.equal(result.x, expected), float((result.x - expected).abs().max())
    if name == "famo":  # the method states agree too
        for ours, theirs in zip(result.extra["methods"], ref_methods):
            assert torch.equal(ours.xi, theirs.xi)


def test_hyperparameters_are_checked_against_the_method_signature(capsys):
    # Regression (issue 8): `-p c=notanumber` surfaced "'<' not supported between 'str' and 'float'".
    with pytest.raises(ValueError, match=r"method 'cagrad': bad hyperparameter 'c': expected a number, got 'notanumber'"):
        run("cagrad", "biquad", steps=1, params={"c": "notanumber"})
    with pytest.raises(ValueError, match=r"bad hyperparameter 'colour': no such hyperparameter \(known: c, rescale\)"):
        run("cagrad", "biquad", steps=1, params={"colour": 1})
    with pytest.raises(ValueError, match=r"'max_norm': expected a number or None, got 'big'"):
        run("nash-mtl", "biquad", steps=1, params={"max_norm": "big"})
    with pytest.raises(ValueError, match=r"'random_order': expected True or False, got 1"):
        run("pcgrad", "biquad", steps=1, params={"random_order": 1})
    # an integer where a float is expected is converted; sequences are accepted where annotated
    result = run("cagrad", "biquad", steps=1, params={"c": 1})
    assert type(result.extra["methods"][0].c) is float and result.extra["methods"][0].c == 1.0
    run("famo", "cagrad-toy", steps=1, params={"min_losses": (-21, -21)})
    # the CLI: one line naming the parameter and the expected type
    assert main(["run", "cagrad", "--problem", "biquad", "--steps", "1", "-p", "c=notanumber"]) == 1
    err = capsys.readouterr().err
    assert err == "modl run: error: method 'cagrad': bad hyperparameter 'c': expected a number, got 'notanumber'\n"


class _FakeStderr:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_reports_long_runs_only(monkeypatch, tty):
    from reference_impls.runner import _Progress

    now = [0.0]
    fake = _FakeStderr(tty)
    monkeypatch.setattr("sys.stderr", fake)
    auto = _Progress("m on p", 35_000, None, clock=lambda: now[0])
    for t in range(0, 35_000, 64):  # a run of 35 000 steps, 1 ms per step on the fake clock
        now[0] = t * 1e-3
        auto(t)
    auto.close()
    lines = [line for line in fake.text.replace("\r", "\n").split("\n") if "step" in line]
    if tty:  # refreshed in place from 1 s on, every 0.5 s, and cleared at the end
        assert len(lines) == pytest.approx(69, abs=2) and fake.text.endswith("\r\x1b[K")
    else:  # one line every 10 s of a long run
        assert len(lines) == 3 and fake.text.endswith("\n")
    assert ("m on p: step 1024/35000 (2%), 1 s elapsed, ~34 s left" if tty else "m on p: step 10048/35000 (28%), 10 s elapsed, ~25 s left") in lines[0]
    fake.text = ""
    short = _Progress("m on p", 500, None, clock=lambda: now[0])  # a run shorter than a second: silent
    for t in range(0, 500, 64):
        now[0] = t * 1e-3
        short(t)
    short.close()
    off = _Progress("m on p", 35_000, False, clock=lambda: now[0])
    now[0] = 0.0
    for t in range(0, 35_000, 64):
        now[0] = t * 1e-3
        off(t)
    assert fake.text == ""
