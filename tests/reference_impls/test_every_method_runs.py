"""`modl run` works for every registered method on a suitable toy.

Short runs (a few hundred steps): they check that each method drives the shared runner, returns
finite results, and on the bi-quadratic moves every starting point towards the Pareto set
conv{a_1, a_2}. Each method's own file tests where it converges and why.

Gradient methods and single-level loss weightings run on the bi-quadratic and the CAGrad toy.
Bi-level methods (Auto-Lambda, MOML, FORUM: ``bilevel = True``) need validation losses: they run on
``bilevel-ridge`` and refuse point problems and the ``mtl-regression`` network with a one-line error
that names the bi-level toy.
"""

import pytest
import torch

import reference_impls
from modl.cli import main
from reference_impls.runner import run

FAMILIES = ("gradient-weighting", "gradient-manipulation", "loss-balancing")


def _bilevel(name: str) -> bool:
    """Whether ``name`` is a bi-level method (a module that fails to import fails in its own tests, not here)."""
    try:
        return bool(getattr(reference_impls.load_class(name), "bilevel", False))
    except Exception:  # noqa: BLE001
        return False


BILEVEL = [n for n in reference_impls.names() if _bilevel(n)]
NAMES = [n for n in reference_impls.names() if reference_impls.info(n).family in FAMILIES and n not in BILEVEL]


@pytest.mark.parametrize("name", NAMES)
def test_method_approaches_the_pareto_set_of_the_biquadratic(name):
    start = run(name, "biquad", steps=0, lr=0.05, seed=0)
    result = run(name, "biquad", steps=300, lr=0.05, seed=0, optimizer="sgd")
    assert torch.isfinite(result.f_final).all()
    assert result.distance is not None
    # Every starting point ends closer to conv{a_i} than it started (most reach it).
    assert bool((result.distance < start.distance).all()), (start.distance, result.distance)
    assert float(result.distance.median()) < 0.5 * float(start.distance.median())


@pytest.mark.parametrize("name", NAMES)
def test_method_runs_on_the_cagrad_toy_from_the_cli(name, capsys):
    code = main(["run", name, "--problem", "cagrad-toy", "--steps", "200", "--lr", "0.01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "PS-measure" in out and "nan" not in out.lower()


def test_cli_reports_unknown_method_and_problem_in_one_line(capsys):
    assert main(["run", "no-such-method", "--problem", "biquad"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method" in err[0]
    assert main(["run", "mgda", "--problem", "no-such-problem"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "problem" in err[0]


@pytest.mark.parametrize("name", BILEVEL)
def test_bilevel_method_runs_on_the_bilevel_toy_from_the_cli(name, capsys):
    code = main(["run", name, "--problem", "bilevel-ridge", "--steps", "40"])
    out = capsys.readouterr().out
    assert code == 0
    assert "validation losses" in out and "final weights" in out and "nan" not in out.lower()


@pytest.mark.parametrize("problem", ["biquad", "cagrad-toy", "mtl-regression"])
@pytest.mark.parametrize("name", BILEVEL)
def test_bilevel_method_refuses_problems_without_a_validation_split(name, problem, capsys):
    assert main(["run", name, "--problem", problem, "--steps", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bi-level" in err[0] and "bilevel-ridge" in err[0], err


def test_gradient_methods_refuse_the_bilevel_toy(capsys):
    assert main(["run", "mgda", "--problem", "bilevel-ridge", "--steps", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a loss weighting" in err[0], err


# ---------------------------------------------------------------------------------------------
# Set methods (registry interface "set"): the set runner on vlmop2, zdt1 (a box) and dtlz2 (K = 3)
# ---------------------------------------------------------------------------------------------

SET_METHODS = [n for n in reference_impls.names() if reference_impls.info(n).interface == "set"]
SET_METRICS = {"hypervolume", "igd", "igd_plus", "max_pareto_stationarity", "preference_error", "preference_angle", "spread", "coverage", "covering_radius"}


@pytest.mark.parametrize("problem", ["vlmop2", "zdt1", "dtlz2"])
@pytest.mark.parametrize("name", SET_METHODS)
def test_set_method_runs_on_the_toys_with_known_fronts(name, problem):
    # A method restricted to two objectives must say so in a one-line ValueError naming K; otherwise
    # the run is finite, carries every set metric, and on vlmop2 moves the set towards the front
    # (IGD drops; the starts lie around the Pareto set's midpoint, far from most of the front).
    from reference_impls.set_runner import run_set

    steps = 150
    try:
        result = run_set(name, problem, solutions=5, steps=steps)
    except ValueError as error:
        assert problem == "dtlz2" and "K" in str(error) and "\n" not in str(error), error
        return
    assert result.f_final.shape == (5, 3 if problem == "dtlz2" else 2)
    assert bool(torch.isfinite(result.f_final).all()) and bool(torch.isfinite(result.x_final).all())
    assert SET_METRICS <= set(result.extra["metrics"])
    for key in ("hypervolume", "igd", "igd_plus", "max_pareto_stationarity", "spread", "coverage", "covering_radius"):
        assert result.extra["metrics"][key] is not None and result.extra["metrics"][key] >= 0, key
    if problem == "vlmop2":
        start = run_set(name, problem, solutions=5, steps=0)
        assert result.igd < start.igd, (start.igd, result.igd)


@pytest.mark.parametrize("name", SET_METHODS)
def test_set_method_runs_from_the_cli_with_solutions(name, capsys, tmp_path):
    plot = tmp_path / "set.png"
    code = main(["run", name, "--problem", "vlmop2", "--solutions", "4", "--steps", "50", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("\n") >= 6 and "IGD+" in out and "spread" in out and "nan" not in out.lower()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_solutions_is_refused_for_point_methods_and_checked_for_set_methods(capsys):
    assert main(["run", "mgda", "--problem", "vlmop2", "--solutions", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set methods only" in err[0], err
    assert main(["run", "ls", "--problem", "vlmop2", "--solutions", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "solutions" in err[0], err


PARETO_MODELS = [n for n in reference_impls.names() if reference_impls.info(n).interface == "pareto-model"]


@pytest.mark.parametrize("name", PARETO_MODELS)
def test_pareto_model_trains_and_plots_its_front_from_the_cli(name, capsys, tmp_path):
    # `modl run MODEL --problem biquad`: trains, prints the held-out metrics, --plot draws the learned front
    plot = tmp_path / "front.png"
    code = main(["run", name, "--problem", "biquad", "--steps", "30", "--solutions", "5", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "5 held-out preferences" in out and "hypervolume of the grid's front" in out and "nan" not in out.lower()
    if reference_impls.create(name).target is not None:  # a criterion without a closed-form map (target None) has no x*
        assert "max ||x̂(r) − x*(r)||" in out  # the biquad has the true map for both criteria (LS and ray)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", PARETO_MODELS)
def test_pareto_model_rejects_invalid_preferences_and_losses_with_a_clear_error(name):
    from reference_impls.pareto_set.training import start_pareto_model
    from reference_impls.problems import get_problem

    model = reference_impls.create(name)
    start_pareto_model(model, get_problem("biquad"), steps=1)  # built for K = 2, n = 2
    for bad, message in (([float("nan"), 1.0], "NaN or infinite"), ([-0.5, 1.5], "non-negative"), ([0.0, 0.0], "all zero")):
        with pytest.raises(ValueError, match=message):
            model(torch.tensor(bad, dtype=torch.float64))
        with pytest.raises(ValueError, match=message):
            model(torch.tensor([[0.5, 0.5], bad], dtype=torch.float64))  # one bad row in a batch
    r = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.loss(torch.tensor([[1.0, float("inf")]], dtype=torch.float64), r)
    with pytest.raises(ValueError, match="same shape"):
        model.loss(torch.ones(2, 2, dtype=torch.float64), r)


@pytest.mark.parametrize("name", PARETO_MODELS)
def test_pareto_model_moves_towards_the_pareto_set_of_the_biquadratic(name):
    start = run(name, "biquad", steps=0, seed=0, solutions=10)
    # A model combination's learnable tensors are (parts of) the solutions themselves, which Adam moves by about lr
    # per coordinate per step: from the problem's own starting points (N(0, 2²I), seed 0: 6.7 apart) 3e-3 cannot
    # reach the set in 200 steps (≤ 0.6 per coordinate); their own toy defaults (1e-2 to 3e-2) can
    combination = reference_impls.registry.REGISTRY[name].family == "model-combination"
    lr = (reference_impls.create(name).default_lr if combination else None) or 3e-3
    result = run(name, "biquad", steps=200, lr=lr, seed=0, solutions=10)
    assert torch.isfinite(result.f_final).all()
    assert float(result.distance.median()) < 0.5 * float(start.distance.median()), (start.distance, result.distance)
