"""Tests of the certified LP helper reference_impls.core.lp.solve_lp.

LPs with a known unique optimum are built from their KKT conditions: pick x*, n linearly
independent active rows with strictly positive multipliers λ, set c = −A_actᵀλ; then x* is the
unique minimiser. The checks are run on 20 seeds each (pass rate 20/20 required), with scales of
c, A and b spread over 1e-6..1e6 so that the tolerances are seen to be relative.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.optimize
import torch

from reference_impls.core.lp import solve_lp
from reference_impls.core.solvers import SolverError

SEEDS = range(20)


def known_lp(seed: int, *, with_eq: bool = False, scale: float = 1.0):
    """A random LP (c, A_ub, b_ub, A_eq, b_eq) whose unique optimum x* is known."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    m_eq = int(rng.integers(1, n)) if with_eq else 0
    n_act = n - m_eq  # active inequalities; with the equalities they pin x* down
    m_inactive = int(rng.integers(1, 6))
    x_star = rng.standard_normal(n) * scale
    A_act = rng.standard_normal((n_act, n)) * np.exp(rng.uniform(-2, 2, (n_act, 1)))  # rows on different scales
    A_in = rng.standard_normal((m_inactive, n))
    A_ub = np.vstack([A_act, A_in])
    b_ub = A_ub @ x_star + np.concatenate([np.zeros(n_act), rng.uniform(0.5, 2.0, m_inactive) * scale])
    lam = rng.uniform(0.5, 2.0, n_act)  # strictly positive multipliers of the active rows
    A_eq = rng.standard_normal((m_eq, n))
    b_eq = A_eq @ x_star
    mu = rng.standard_normal(m_eq)
    c = -(A_act.T @ lam) - A_eq.T @ mu  # KKT: c + A_actᵀλ + A_eqᵀμ = 0
    return c, A_ub, b_ub, (A_eq if with_eq else None), (b_eq if with_eq else None), x_star


@pytest.mark.parametrize("with_eq", [False, True])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_known_optimum_is_found_for_every_seed(with_eq, scale):
    """The certified solution equals the constructed unique optimum x*, relative to its size, 20/20 seeds."""
    for seed in SEEDS:
        c, A_ub, b_ub, A_eq, b_eq, x_star = known_lp(seed, with_eq=with_eq, scale=scale)
        x = solve_lp(c, A_ub, b_ub, A_eq, b_eq, bounds=(None, None), what="known LP")
        assert np.abs(x - x_star).max() <= 1e-6 * np.abs(x_star).max(), seed
        assert abs(c @ x - c @ x_star) <= 1e-8 * (np.abs(c) @ np.abs(x_star)), seed


def test_objective_scaling_does_not_change_the_answer():
    """Multiplying c by 1e-8 or 1e8 (a positive factor) leaves the argmin unchanged."""
    for seed in SEEDS:
        c, A_ub, b_ub, _, _, x_star = known_lp(seed)
        for s in (1e-8, 1e8):
            x = solve_lp(s * c, A_ub, b_ub, bounds=(None, None), what="scaled c")
            assert np.abs(x - x_star).max() <= 1e-6 * np.abs(x_star).max(), (seed, s)


def test_badly_scaled_rows_do_not_change_the_answer():
    """Each constraint row (with its b_i) multiplied by 10^U(-8, 8): same feasible set, same x*, 20/20 seeds."""
    for seed in SEEDS:
        c, A_ub, b_ub, A_eq, b_eq, x_star = known_lp(seed, with_eq=True)
        r = 10.0 ** np.random.default_rng(100 + seed).uniform(-8, 8, A_ub.shape[0])
        x = solve_lp(c, A_ub * r[:, None], b_ub * r, A_eq, b_eq, bounds=(None, None), what="row scaled")
        assert np.abs(x - x_star).max() <= 1e-6 * np.abs(x_star).max(), seed


def test_default_bounds_are_nonnegative_like_linprog():
    """bounds=None means x ≥ 0 (linprog's convention): min x1 + x2 s.t. x1 + x2 ≥ 1 lies on the segment."""
    x = solve_lp(np.array([1.0, 2.0]), -np.ones((1, 2)), -np.ones(1), what="default bounds")
    np.testing.assert_allclose(x, [1.0, 0.0], atol=1e-12)


def test_float32_and_torch_inputs():
    """Torch float32 data are accepted; the answer is the float64 LP's answer for the same (rounded) data."""
    for seed in range(5):
        c, A_ub, b_ub, _, _, _ = known_lp(seed)
        c32, A32, b32 = (torch.tensor(v, dtype=torch.float32) for v in (c, A_ub, b_ub))
        x = solve_lp(c32, A32, b32, bounds=(None, None), what="float32")
        x64 = solve_lp(c32.double().numpy(), A32.double().numpy(), b32.double().numpy(), bounds=(None, None), what="float64")
        np.testing.assert_allclose(x, x64, rtol=1e-7, atol=1e-9 * np.abs(x64).max())


def test_infeasible_raises():
    with pytest.raises(SolverError, match="^box LP: infeasible"):
        solve_lp(np.array([1.0]), np.array([[1.0]]), np.array([-1.0]), bounds=(0, None), what="box LP")
    with pytest.raises(SolverError, match="infeasible"):
        solve_lp(np.array([1.0]), bounds=[(2.0, 1.0)], what="crossed bounds")


def test_unbounded_raises():
    with pytest.raises(SolverError, match="^ray LP: unbounded"):
        solve_lp(np.array([-1.0, 0.0]), np.array([[0.0, 1.0]]), np.array([1.0]), what="ray LP")


def test_invalid_inputs_raise_value_error():
    with pytest.raises(ValueError, match="NaN"):
        solve_lp(np.array([np.nan]), what="nan")
    with pytest.raises(ValueError, match="together"):
        solve_lp(np.array([1.0]), A_ub=np.ones((1, 1)), what="half")
    with pytest.raises(ValueError, match="shapes"):
        solve_lp(np.array([1.0, 1.0]), np.ones((1, 3)), np.ones(1), what="shapes")


def _corrupting_linprog(corrupt):
    """A linprog that solves correctly, then applies ``corrupt`` to the result and reports success."""
    real = scipy.optimize.linprog

    def fake(*args, **kwargs):
        res = real(*args, **kwargs)
        fields = {k: res[k] for k in res.keys()}
        for k in ("ineqlin", "eqlin", "lower", "upper"):
            if k in fields:
                fields[k] = types.SimpleNamespace(marginals=np.array(res[k].marginals, dtype=float), residual=res[k].residual)
        out = types.SimpleNamespace(**fields)
        corrupt(out)
        out.status, out.success = 0, True
        return out

    return fake


@pytest.mark.parametrize(
    "name, corrupt",
    [
        ("x shifted off the optimum", lambda r: setattr(r, "x", r.x + 1e-3 * (1 + np.abs(r.x)))),
        ("x moved to an interior point", lambda r: setattr(r, "x", 0.9 * r.x)),
        ("x replaced by zeros", lambda r: setattr(r, "x", np.zeros_like(r.x))),
        ("dual sign flipped", lambda r: setattr(r.ineqlin, "marginals", -r.ineqlin.marginals)),
        ("dual scaled", lambda r: setattr(r.ineqlin, "marginals", 1.5 * r.ineqlin.marginals)),
        ("x with NaN", lambda r: setattr(r, "x", np.full_like(r.x, np.nan))),
    ],
)
def test_corrupted_optimal_status_is_caught(monkeypatch, name, corrupt):
    """A linprog reporting 'optimal' with a wrong answer is rejected by the checks (20/20 seeds)."""
    monkeypatch.setattr(scipy.optimize, "linprog", _corrupting_linprog(corrupt))
    for seed in SEEDS:
        c, A_ub, b_ub, _, _, x_star = known_lp(seed)
        x_star += 0.0
        with pytest.raises(SolverError, match="^corrupted"):
            solve_lp(c, A_ub, b_ub, bounds=(None, None), what="corrupted")


def test_uncorrupted_passthrough_is_accepted(monkeypatch):
    """Control for the test above: the same wrapper with no corruption passes the checks."""
    monkeypatch.setattr(scipy.optimize, "linprog", _corrupting_linprog(lambda r: None))
    for seed in SEEDS:
        c, A_ub, b_ub, _, _, x_star = known_lp(seed)
        x = solve_lp(c, A_ub, b_ub, bounds=(None, None), what="clean")
        assert np.abs(x - x_star).max() <= 1e-6 * np.abs(x_star).max()


def test_tiny_cost_entry_next_to_a_unit_one_is_accepted():
    """Regression (EPO on DTLZ2 raised "stationarity fails ... by -8.1e-15 (scale 8.1e-15)"): HiGHS zeroes a
    reduced cost below its dual tolerance, so with c = (1, −1e-14) it may return x = 0, optimal to within
    1e-14 of the true −1e-14 — accepted, and the objective is within κ·||c||·||x||."""
    c = np.array([1.0, -1e-14])
    x = solve_lp(c, np.ones((1, 2)), np.ones(1), what="tiny cost")
    assert c @ x <= -1e-14 + 1e-7 and (x >= 0).all() and x.sum() <= 1 + 1e-12


def test_degenerate_lp_with_redundant_constraints():
    """Duplicate and redundant rows (a degenerate vertex) are still certified: min −x1 − x2 on the unit
    square written with each side twice and the diagonal x1 + x2 ≤ 2 through the optimal corner."""
    A = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    x = solve_lp(np.array([-1.0, -1.0]), A, b, what="degenerate")
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-12)
