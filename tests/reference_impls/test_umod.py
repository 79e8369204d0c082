"""UMOD (Zhang, Li, Lin, Zhang, Chen, Zhang, NeurIPS 2024; libmoon's UMODSolver).

Exact properties: the angle maps are inverse to each other and equal libmoon's pref2angle for K = 2;
the mTche active objective is invariant to positive rescaling of a preference and equivariant to a
per-objective rescaling of (F − z) and λ together; zero preference entries follow mTche's limit.
Claim (paper: the max-min design spreads the solutions uniformly; "UMOD's smallest pairwise distance
beats that of fixed uniform preferences"): the final l_min beats the fixed-preference run from the
same start and reaches a stated fraction of the l_min of P = 8 points at equal arc length on the
analytic front: ZDT1 3/3 seeds (1.4×, 0.8), ``zdt-skewed`` 3/5 seeds (1.2×, 0.45; the failures are
explained in the test).

Schedule scaled for seconds-long tests (stated vs the paper/libmoon): 800 solution steps, Adam lr
0.01 (libmoon 10 000 at lr 1e-3), adjustments at 20/40/60/80 % of them (libmoon every 2000 epochs:
the same fractions); front model 300 Adam epochs at lr 5e-3 per fit and preference adjustment 200
Adam steps at lr 1e-2 (libmoon 2000 and 2000 at lr 1e-3), hidden width 64 (libmoon 128).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.core.sets import simplex_preferences
from reference_impls.finite_set.umod import (
    UMOD,
    angles_to_unit,
    min_pairwise_distance,
    mtche_active,
    mtche_directions,
    preferences_to_angles,
)
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

F64 = torch.float64
FAST = dict(model_epochs=300, model_lr=5e-3, adjust_epochs=200, adjust_lr=1e-2, hidden=64)
STEPS = 800


@pytest.mark.parametrize("K", [2, 3, 5])
def test_angle_maps_are_inverse(K):
    g = torch.Generator().manual_seed(K)
    prefs = torch.rand(50, K, dtype=F64, generator=g) + 1e-3
    prefs = prefs / prefs.sum(1, keepdim=True)
    theta = preferences_to_angles(prefs)
    assert theta.shape == (50, K - 1) and bool(((theta >= 0) & (theta <= math.pi / 2)).all())
    u = angles_to_unit(theta)
    torch.testing.assert_close(u, prefs / prefs.norm(dim=1, keepdim=True), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(preferences_to_angles(u), theta, rtol=1e-12, atol=1e-14)
    if K == 2:  # libmoon pref2angle: atan2(λ_2, λ_1); angle2pref: (cos θ, sin θ)
        torch.testing.assert_close(theta[:, 0], torch.atan2(prefs[:, 1], prefs[:, 0]), rtol=1e-13, atol=0)
        torch.testing.assert_close(u, torch.stack([torch.cos(theta[:, 0]), torch.sin(theta[:, 0])], 1), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_mtche_active_objective_invariances(seed):
    g = torch.Generator().manual_seed(seed)
    P, K = 40, 4
    F = torch.rand(P, K, dtype=F64, generator=g) * 3
    z = -torch.rand(K, dtype=F64, generator=g)
    lam = torch.rand(P, K, dtype=F64, generator=g) + 0.05
    active = mtche_active(F, lam, z)
    ratio = (F - z) / (lam / lam.sum(1, keepdim=True))
    assert torch.equal(active, ratio.argmax(1))
    c = torch.rand(P, 1, dtype=F64, generator=g) * 100 + 1e-3
    assert torch.equal(mtche_active(F, c * lam, z), active)  # λ's scale does not matter
    s = torch.rand(K, dtype=F64, generator=g) * 10 + 0.1  # rescale objective i by s_i: F − z and λ together
    assert torch.equal(mtche_active(z * s + (F - z) * s, lam * s, z * s), active)
    J = torch.randn(P, K, 3, dtype=F64, generator=g)
    assert torch.equal(mtche_directions(F, J, lam, z), J[torch.arange(P), active])


def test_zero_preference_entries_follow_the_mtche_limit():
    z = torch.zeros(2, dtype=F64)
    F = torch.tensor([[0.3, 0.5], [0.0, 0.5], [0.4, 0.0]], dtype=F64)
    lam = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=F64)
    # row 0: λ_1 = 0 and f_1 > z_1: objective 1 is active (infinite ratio); row 1: f_1 = z_1, so the
    # positive entry decides; row 2: λ_2 = 0 but f_2 = z_2: objective 1
    assert mtche_active(F, lam, z).tolist() == [0, 1, 0]


def _equal_arc_lmin(problem, P: int) -> float:
    """l_min of P points at equal arc length on the analytic front, end points included."""
    return float(min_pairwise_distance(problem.pareto_front(P)))


def _lmin_umod_and_fixed(problem, steps: int, params: dict, seed: int):
    umod = run_set(UMOD(**params), problem, solutions=8, steps=steps, seed=seed)
    fixed = run_set(UMOD(adjust_at=()), problem, solutions=8, steps=steps, seed=seed)
    return umod, umod.extra["metrics"]["spread"], fixed.extra["metrics"]["spread"]


def test_umod_spreads_the_set_more_than_fixed_preferences_on_zdt1():
    """3/3 seeds (5/5 measured): l_min(UMOD) > 1.4 · l_min(fixed uniform preferences, same start and
    lower level) and ≥ 0.8 × the equal-arc-length l_min (0.2099 for P = 8). Measured here, seeds 0–4:
    l_min 0.179–0.186 (0.85–0.89 of the equal-arc spacing, 1.56–1.64× fixed 0.111–0.119), HV 0.598–0.601
    (fixed 0.608: the max-min design gives up a little hypervolume for spacing), IGD 0.050–0.052 (fixed
    0.070–0.072). Schedule: 1000 steps, fits of 500 epochs, adjustments of 300 steps (module docstring)."""
    problem = get_problem("zdt1")
    target = _equal_arc_lmin(problem, 8)
    params = dict(FAST, model_epochs=500, adjust_epochs=300)
    for seed in range(3):
        umod, lu, lf = _lmin_umod_and_fixed(problem, 1000, params, seed)
        assert lu > 1.4 * lf, (seed, lu, lf)
        assert lu >= 0.8 * target, (seed, lu, target)
        method = umod.extra["methods"][0]
        assert len(method.fit_mse) == 4  # adjusted at 20/40/60/80 % of the steps
        assert all(after > before for before, after in method.lmin_predicted)  # each adjustment raised the model's l_min
        assert umod.extra["metrics"]["preference_error"] < 0.02  # the solutions follow the adjusted rays


def test_umod_spreads_the_set_more_than_fixed_preferences_on_the_skewed_front():
    """Pass rate 3/5 seeds, asserted as such: in at least 3 of seeds 0–4, l_min(UMOD) > 1.2 · l_min(fixed)
    and ≥ 0.45 × the equal-arc-length l_min (0.2266). Measured (800 steps, fits of 300 epochs,
    adjustments of 200 steps): ratios to fixed 1.87, 1.30, 1.41, 0.31, 0.23; fractions of the
    equal-arc spacing 0.64, 0.47, 0.53, 0.11, 0.08. Seeds 3 and 4 fail because the lower level does not
    follow the last adjustment (preference error 0.12–0.15): Adam's second-moment estimate keeps the
    large gradients of the front's singular head (∂f_2/∂x_1 = −¼ x_1^{−3/4}) for ~1/(1 − β_2) = 1000
    steps, so a solution asked to move back up the head crawls. A limitation of the mTche + Adam lower
    level (libmoon's too) on this front, not of the max-min design: the model's predicted l_min rose at
    every adjustment in every seed."""
    problem = get_problem("zdt-skewed")
    target = _equal_arc_lmin(problem, 8)
    wins = 0
    for seed in range(5):
        umod, lu, lf = _lmin_umod_and_fixed(problem, STEPS, FAST, seed)
        wins += lu > 1.2 * lf and lu >= 0.45 * target
        assert all(after > before for before, after in umod.extra["methods"][0].lmin_predicted)
    assert wins >= 3, wins


def test_fixed_preferences_do_not_change_and_the_schedule_follows_the_budget():
    method = UMOD(adjust_at=(0.5,), model_epochs=5, adjust_epochs=5)
    F0 = torch.tensor([[0.2, 0.9], [0.5, 0.5], [0.9, 0.1]], dtype=F64)
    prefs = simplex_preferences(3, 2)
    method.begin(None, F0, prefs, steps=10)
    assert [t for t in range(10) if method.adapt_preferences(None, F0, prefs, t) is not None] == [4]
    fixed = run_set(UMOD(adjust_at=()), "zdt1", solutions=3, steps=5, seed=0)
    assert torch.equal(fixed.extra["preferences"], simplex_preferences(3, 2))


def test_degenerate_inputs():
    F = torch.tensor([[0.2, 0.9], [0.5, 0.5], [0.9, 0.1]], dtype=F64)
    J = torch.ones(3, 2, 4, dtype=F64)
    prefs = simplex_preferences(3, 2)
    method = UMOD(adjust_at=(0.5,), model_epochs=20, adjust_epochs=20, adjust_lr=1e-2)
    method.begin(None, F, prefs, steps=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        method.step(None, F * float("nan"), J, prefs)
    with pytest.raises(ValueError, match="NaN or infinite"):
        method.step(None, F, J * float("inf"), prefs)
    with pytest.raises(ValueError, match="negative"):
        method.step(None, F, J, -prefs)
    with pytest.raises(ValueError, match="expected shape"):
        method.step(None, F, J, prefs[:2])
    with pytest.raises(ValueError, match="None"):
        method.step(None, F, J, None)
    # duplicate preferences: separated, finite, on the simplex
    dup = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], dtype=F64)
    new = method.adapt_preferences(None, F, dup, 0)
    assert new is not None and torch.isfinite(new).all()
    assert torch.allclose(new.sum(1), torch.ones(3, dtype=F64)) and bool((new >= 0).all())
    assert min_pairwise_distance(new) > 0
    # K = 1: gradient descent, nothing adjusted; P = 1: nothing adjusted
    one = UMOD(adjust_at=(0.5,))
    one.begin(None, F[:, :1], torch.ones(3, 1, dtype=F64), steps=2)
    assert one.adapt_preferences(None, F[:, :1], torch.ones(3, 1, dtype=F64), 0) is None
    torch.testing.assert_close(one.step(None, F[:, :1], J[:, :1], torch.ones(3, 1, dtype=F64)), J[:, 0])
    single = UMOD(adjust_at=(0.5,))
    single.begin(None, F[:1], prefs[:1], steps=2)
    assert single.adapt_preferences(None, F[:1], prefs[:1], 0) is None
    # float32: directions and adjusted preferences keep the dtype
    m32 = UMOD(adjust_at=(0.5,), model_epochs=5, adjust_epochs=5)
    m32.begin(None, F.float(), prefs.float(), steps=2)
    assert m32.step(None, F.float(), J.float(), prefs.float()).dtype == torch.float32
    assert m32.adapt_preferences(None, F.float(), prefs.float(), 0).dtype == torch.float32
    with pytest.raises(ValueError, match="adjust_at"):
        UMOD(adjust_at=(1.5,))


def test_three_objectives_use_hyperspherical_angles():
    r = run_set(UMOD(model_epochs=100, adjust_epochs=50, adjust_lr=1e-2, hidden=32), "dtlz2", solutions=6, steps=100, seed=0)
    method = r.extra["methods"][0]
    assert len(method.fit_mse) == 4 and torch.isfinite(r.f_final).all()
    prefs = r.extra["preferences"]
    assert prefs.shape == (6, 3) and torch.allclose(prefs.sum(1), torch.ones(6, dtype=F64))
    assert not torch.allclose(prefs, simplex_preferences(6, 3))  # the angles were adjusted


def test_min_pairwise_distance_of_known_sets():
    Y = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], dtype=F64)
    assert float(min_pairwise_distance(Y)) == 1.0
    assert math.isinf(float(min_pairwise_distance(Y[:1])))
    np.testing.assert_allclose(float(min_pairwise_distance(torch.cat([Y, Y[1:2]]))), 0.0)
