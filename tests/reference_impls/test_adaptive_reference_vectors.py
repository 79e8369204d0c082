"""Adaptive reference vectors (GMOOAR, Chen & Kwok, NeurIPS 2022; reconstructed, see the module docstring).

Exact properties: the 2-D hypervolume gradient equals central differences of the exact hypervolume;
on a linear front (where the linearisation of R2 is exact) the reference-vector hypergradient equals
the finite-difference derivative of HV(F(U)) with the lower level solved in closed form; the front
normals of points on a line are the line's normal. Claim (paper: adaptive vectors fit irregular
fronts better than fixed ones): on ``zdt-skewed`` (5 seeds) and ZDT1 (3 seeds) the adaptive set's
smallest pairwise distance l_min and IGD beat the fixed-vector run from the same start (all seeds),
and its hypervolume at the upper level's reference point is at least the fixed run's (all seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_impls import metrics
from reference_impls.core.sets import simplex_preferences
from reference_impls.finite_set.adaptive_reference_vectors import (
    AdaptiveReferenceVectors,
    front_normals,
    hypervolume_gradient,
    hypervolume_gradient_2d,
    reference_vector_hypergradient,
)
from reference_impls.set_runner import run_set

F64 = torch.float64


def _front_set(rng: np.random.Generator, P: int) -> np.ndarray:
    """P mutually non-dominated points (P, 2) with distinct coordinates."""
    f1 = np.sort(rng.uniform(0, 1, P))
    f2 = np.sort(rng.uniform(0, 1, P))[::-1]
    return np.stack([f1, f2], 1)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_gradient_matches_central_differences(seed):
    rng = np.random.default_rng(seed)
    F = _front_set(rng, 6)
    F = np.concatenate([F, F[2:3] + 0.05])  # a dominated point: zero gradient
    ref = np.array([1.2, 1.3])
    grad = hypervolume_gradient_2d(F, ref)
    h = 1e-7
    for k in range(F.shape[0]):
        for i in range(2):
            Fp, Fm = F.copy(), F.copy()
            Fp[k, i] += h
            Fm[k, i] -= h
            fd = (metrics.hypervolume(Fp, ref) - metrics.hypervolume(Fm, ref)) / (2 * h)
            assert abs(grad[k, i] - fd) <= 1e-6 * (1 + abs(fd)), (k, i, grad[k, i], fd)
    assert np.all(grad[-1] == 0)
    # K = 3 central differences: the derivative of a single point's box volume is exact
    G3 = hypervolume_gradient(np.array([[0.2, 0.3, 0.4]]), np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(G3, [[-0.7 * 0.6, -0.8 * 0.6, -0.8 * 0.7]], rtol=1e-6)


def test_points_outside_the_reference_box_have_zero_gradient():
    F = np.array([[0.2, 0.8], [0.5, 0.5], [1.5, 0.1]])
    grad = hypervolume_gradient_2d(F, np.array([1.0, 1.0]))
    assert np.all(grad[2] == 0) and np.all(grad[:2] < 0)


def test_front_normals_of_points_on_a_line_are_the_line_normal():
    t = np.linspace(0.05, 0.95, 7)
    F = np.stack([t, 2 * (1 - t)], 1)  # 2 f_1 + f_2 = 2
    N = front_normals(F)
    np.testing.assert_allclose(N, np.tile(np.array([2.0, 1.0]) / np.sqrt(5), (7, 1)), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_hypergradient_is_exact_on_a_linear_front(seed):
    """Front a_1 f_1 + a_2 f_2 = 1, z = 0: the lower level's solution for u is F(u) = u/(aᵀu), so
    d HV(F(U))/du_k along the simplex tangent (1, −1) is known by finite differences."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, 2)
    U = torch.from_numpy(np.sort(rng.uniform(0.1, 0.9, 5))[:, None] * np.array([1.0, -1.0]) + np.array([0.0, 1.0]))
    ref = torch.tensor([1.5 / a[0], 1.5 / a[1]], dtype=F64)

    def front_point(u: np.ndarray) -> np.ndarray:
        return u / (u @ a)[..., None]  # (.., 2)

    F = torch.from_numpy(front_point(U.numpy()))
    g = reference_vector_hypergradient(F, U, torch.zeros(2, dtype=F64), ref).numpy()
    scale = float(np.prod(ref.numpy()))
    h = 1e-7
    for k in range(U.shape[0]):
        e = np.array([h, -h])
        Up, Um = U.numpy().copy(), U.numpy().copy()
        Up[k] += e
        Um[k] -= e
        fd = (metrics.hypervolume(front_point(Up), ref) - metrics.hypervolume(front_point(Um), ref)) / (2 * h * scale)
        model = float(g[k] @ np.array([1.0, -1.0]))
        assert abs(model - fd) <= 1e-5 * (1 + abs(fd)), (k, model, fd)


def _runs(problem: str, seed: int):
    adaptive = run_set(AdaptiveReferenceVectors(), problem, solutions=8, steps=600, seed=seed)
    fixed = run_set(AdaptiveReferenceVectors(window=(0.0, 0.0)), problem, solutions=8, steps=600, seed=seed)
    return adaptive, fixed


@pytest.mark.parametrize(("problem", "seeds"), [("zdt-skewed", 5), ("zdt1", 3)])
def test_adaptive_vectors_spread_the_set_more_evenly_than_fixed_ones(problem, seeds):
    """All seeds (5/5 zdt-skewed, 3/3 ZDT1): l_min (by 10 %), IGD and the hypervolume at the upper
    level's reference point beat the fixed-vector run (same start, same lower level; measured here:
    zdt-skewed l_min 0.106–0.131 vs 0.078–0.084, IGD 0.057–0.073 vs 0.126–0.129; ZDT1 l_min
    0.131–0.150 vs 0.113–0.120)."""
    for seed in range(seeds):
        adaptive, fixed = _runs(problem, seed)
        ma, mf = adaptive.extra["metrics"], fixed.extra["metrics"]
        method = adaptive.extra["methods"][0]
        assert method.upper_steps > 0
        assert ma["spread"] > 1.1 * mf["spread"], (seed, ma["spread"], mf["spread"])
        assert ma["igd"] < mf["igd"], (seed, ma["igd"], mf["igd"])
        ref = method.reference.numpy()
        hv_a = metrics.hypervolume(adaptive.f_final, ref)
        hv_f = metrics.hypervolume(fixed.f_final, ref)
        assert hv_a >= hv_f, (seed, hv_a, hv_f)
        # the lower level follows the moved vectors: every solution ends near its own ray
        assert ma["preference_error"] < 0.02, (seed, ma["preference_error"])
        assert not torch.equal(adaptive.extra["preferences"], simplex_preferences(8, 2))


def test_without_a_window_the_vectors_stay_fixed_and_the_lower_level_is_mtche():
    fixed = run_set(AdaptiveReferenceVectors(window=(0.0, 0.0)), "zdt1", solutions=4, steps=5, seed=0)
    assert torch.equal(fixed.extra["preferences"], simplex_preferences(4, 2))
    F = torch.tensor([[0.3, 0.5], [0.6, 0.1]], dtype=F64)
    J = torch.randn(2, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    prefs = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=F64)
    D = AdaptiveReferenceVectors().step(None, F, J, prefs)
    # (f − 0)/u: rows (0.6, 1.0) → objective 2; (3.0, 0.125) → objective 1
    assert torch.equal(D, torch.stack([J[0, 1], J[1, 0]]))


def test_degenerate_inputs():
    method = AdaptiveReferenceVectors(adapt_every=1, window=(0.0, 1.0))
    F0 = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=F64)
    prefs = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=F64)
    method.begin(None, F0, prefs, steps=10)
    J = torch.ones(2, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        method.step(None, F0, J * float("nan"), prefs)
    with pytest.raises(ValueError, match="NaN or infinite"):
        method.adapt_preferences(None, F0 * float("inf"), prefs, 0)
    with pytest.raises(ValueError, match="negative"):
        method.step(None, F0, J, -prefs)
    with pytest.raises(ValueError, match="all zero"):
        method.step(None, F0, J, prefs * 0)
    # zero entries: objective 1 has u_1 = 0 and f_1 > z_1, so it is active (mTche's limit)
    D = method.step(None, F0, torch.arange(12, dtype=F64).reshape(2, 2, 3), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64))
    assert torch.equal(D, torch.tensor([[0.0, 1.0, 2.0], [9.0, 10.0, 11.0]], dtype=F64))
    # duplicate vectors and points: finite, rows stay on the simplex
    new = method.adapt_preferences(None, torch.cat([F0, F0]), torch.cat([prefs, prefs]), 0)
    assert torch.isfinite(new).all() and torch.allclose(new.sum(1), torch.ones(4, dtype=F64))
    # K = 1: gradient descent, nothing adapted
    one = AdaptiveReferenceVectors(adapt_every=1, window=(0.0, 1.0))
    one.begin(None, F0[:, :1], torch.ones(2, 1, dtype=F64), steps=10)
    assert one.adapt_preferences(None, F0[:, :1], torch.ones(2, 1, dtype=F64), 0) is None
    torch.testing.assert_close(one.step(None, F0[:, :1], J[:, :1], torch.ones(2, 1, dtype=F64)), J[:, 0])
    # K = 4: no exact hypervolume gradient: a clear error
    four = AdaptiveReferenceVectors(adapt_every=1, window=(0.0, 1.0))
    F4 = torch.rand(5, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    four.begin(None, F4, torch.full((5, 4), 0.25, dtype=F64), steps=10)
    with pytest.raises(ValueError, match="K in"):
        four.adapt_preferences(None, F4, torch.full((5, 4), 0.25, dtype=F64), 0)
    # float32 losses: directions keep the dtype
    D32 = method.step(None, F0.float(), J.float(), prefs.float())
    assert D32.dtype == torch.float32


def test_three_objectives_run_and_keep_the_set_on_the_front():
    r = run_set(AdaptiveReferenceVectors(), "dtlz2", solutions=6, steps=200, seed=0)
    assert r.extra["methods"][0].upper_steps > 0
    assert torch.isfinite(r.f_final).all()
    assert r.extra["metrics"]["igd"] is not None
