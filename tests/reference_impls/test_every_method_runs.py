"""`modl run` works for every registered method on the bi-quadratic and the CAGrad toy.

Short runs (a few hundred steps): they check that each method drives the shared runner, returns
finite results, and on the bi-quadratic moves every starting point towards the Pareto set
conv{a_1, a_2}. Each method's own file tests where it converges and why.
"""

import pytest
import torch

import reference_impls
from modl.cli import main
from reference_impls.runner import run

NAMES = [n for n in reference_impls.names() if reference_impls.info(n).family in ("gradient-weighting", "gradient-manipulation")]


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
