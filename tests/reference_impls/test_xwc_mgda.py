"""Tests of XWC-MGDA (reference_impls/finite_set/xwc_mgda.py; reconstructed from MO-LightGBM's WCMGDA).

Claim of the paper (Momma, Dong, Liu, ICML 2022): the method reaches the point its preference
specifies, the weighted-Chebyshev optimum r_i(f_i − z_i) equal for all i (F − z ∝ 1/r) at a
Pareto-stationary point. Checked on the concave VLMOP2 front (problem defaults: SGD lr 0.5, 500
steps) and the convex biquad front (SGD lr 0.05, 300 steps), seeds 0..2 × 5 preferences (15/15 each).

Exact properties: the weighted-Chebyshev point is a fixed point (D = 0) and off it, on the Pareto set,
D points towards it; the dual weights are optimal for their QP against random feasible points;
D does not depend on the scale of r; degenerate preferences (zero entries, K = 1) and invalid inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.finite_set.xwc_mgda import XWCMGDA
from reference_impls.problems import get_problem
from reference_impls.set_runner import run_set

EPS = torch.finfo(torch.float64).eps


def biquad_point(t: float, n: int = 2):
    """x = t·e_1 on biquad's Pareto set (a_1 = 0, a_2 = e_1): F = (t², (1 − t)²), ∇f_1 = 2x, ∇f_2 = 2(x − e_1)."""
    x = torch.zeros(1, n, dtype=torch.float64)
    x[0, 0] = t
    e1 = torch.zeros(n, dtype=torch.float64)
    e1[0] = 1.0
    F = torch.tensor([[t**2, (1 - t) ** 2]], dtype=torch.float64)
    J = torch.stack([2 * x[0], 2 * (x[0] - e1)])[None]  # (1, 2, n)
    return x, F, J


@pytest.mark.parametrize("r1", [0.1, 0.3, 0.5, 0.8, 0.95])
def test_weighted_chebyshev_point_is_a_fixed_point_and_attracts(r1):
    """Biquad, z = 0: at t* = √r_2/(√r_1 + √r_2) (r_1 t² = r_2 (1 − t)²) D = 0 to 1e-10·||∇f||; at t* ± 0.05 on the
    Pareto set D moves x towards t* (x ← x − ηD: sign(D_1) = sign(t − t*))."""
    r = torch.tensor([[r1, 1 - r1]], dtype=torch.float64)
    t_star = math.sqrt(1 - r1) / (math.sqrt(r1) + math.sqrt(1 - r1))
    _, F, J = biquad_point(t_star)
    m = XWCMGDA(reference_point=torch.zeros(2))
    D = m.step(None, F, J, r)
    assert float(D.norm()) <= 1e-10 * float(J.norm(dim=2).max())
    for dt in (-0.05, 0.05):
        m.reset()
        _, F, J = biquad_point(t_star + dt)
        D = m.step(None, F, J, r)
        assert float(D[0, 0]) * dt > 0, (dt, D)


@pytest.mark.parametrize("seed", range(6))
def test_dual_weights_are_optimal_for_their_qp(seed):
    """α (recovered from w = r ⊙ α / Σ) maximises αᵀc − (u/2)αᵀM̃α over {α ≥ l, Σα = 1}: no better value among
    20 000 random feasible points (relative 1e-12 of the objective's scale)."""
    g = torch.Generator().manual_seed(seed)
    P, K, n = 3, 3, 6
    r = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.05
    F = torch.rand(P, K, generator=g, dtype=torch.float64) + 0.1
    J = torch.randn(P, K, n, generator=g, dtype=torch.float64) * 10.0 ** (2 * torch.rand(P, K, 1, generator=g, dtype=torch.float64) - 1)
    m = XWCMGDA(u=1.0, reference_point=torch.zeros(K))
    w = m.weights(F, J, r)  # first call: the scales come from this F, J
    alpha = w / r
    alpha = alpha / alpha.sum(1, keepdim=True)
    rt = r / m._r_scale[:, None]
    c = (rt * F).numpy()
    M = torch.einsum("pkn,pln->pkl", J, J)
    Mt = (rt[:, :, None] * M * rt[:, None, :] / m._k0_sq[:, None, None]).numpy()
    rng = np.random.default_rng(seed)
    for p in range(P):
        val = lambda A: A @ c[p] - 0.5 * m.u * np.einsum("si,ij,sj->s", A, Mt[p], A)  # noqa: E731
        A = rng.dirichlet(np.ones(K), size=20000) * (1 - K * m.lower) + m.lower
        ours = val(alpha[p].numpy()[None])[0]
        scale = np.abs(c[p]).sum() + 0.5 * m.u * np.abs(Mt[p]).sum()
        assert ours >= val(A).max() - 1e-12 * scale


def test_direction_does_not_depend_on_the_scale_of_the_preferences():
    g = torch.Generator().manual_seed(3)
    F = torch.rand(4, 2, generator=g, dtype=torch.float64) + 0.1
    J = torch.randn(4, 2, 5, generator=g, dtype=torch.float64)
    r = torch.rand(4, 2, generator=g, dtype=torch.float64) + 0.1
    D1 = XWCMGDA().step(None, F, J, r)
    D2 = XWCMGDA().step(None, F, J, 13.0 * r)
    assert torch.allclose(D1, D2, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# The paper's claim on the toys
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("problem, kw", [("vlmop2", {}), ("biquad", {"lr": 0.05, "steps": 300})])
def test_xwc_mgda_reaches_the_weighted_chebyshev_point(problem, kw):
    """Seeds 0..2, 5 preferences (15/15): F − z* ∝ 1/r to 1e-4 (distance from the target ray) and PS-measure < 1e-6.
    On VLMOP2 the target points are interior points of the concave front, which linear scalarisation cannot reach."""
    for seed in range(3):
        r = run_set("xwc-mgda", problem, solutions=5, seed=seed, **kw)
        m = r.extra["metrics"]
        assert m["preference_error"] < 1e-4, (seed, m)
        assert m["max_pareto_stationarity"] < 1e-6, (seed, m)


# ------------------------------------------------------------------------------------------------
# Degenerate inputs and state
# ------------------------------------------------------------------------------------------------


def test_degenerate_inputs_have_defined_results():
    g = torch.Generator().manual_seed(7)
    F = torch.rand(3, 2, generator=g, dtype=torch.float64) + 0.1
    J = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    # a zero entry drops that objective: D = ∇f_1 for r = (1, 0); the target ray is then e_2 (f_1 = z_1)
    e1 = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    assert torch.allclose(XWCMGDA().step(None, F, J, e1), J[:, 0], rtol=1e-14, atol=0)
    assert torch.equal(XWCMGDA().target_rays(e1), torch.tensor([[0.0, 1.0]] * 3, dtype=torch.float64))
    # K = 1: gradient descent
    assert torch.allclose(XWCMGDA().step(None, F[:, :1], J[:, :1], torch.ones(3, 1, dtype=torch.float64)), J[:, 0], rtol=1e-14, atol=0)
    # zero Jacobian and zero losses at the first step (scales replaced by 1): D = 0
    assert torch.equal(XWCMGDA().step(None, torch.zeros_like(F), torch.zeros_like(J), e1 + 1), torch.zeros(3, 4, dtype=torch.float64))
    # duplicate rows: identical directions
    D = XWCMGDA().step(None, F[:1].expand(2, -1), J[:1].expand(2, -1, -1), torch.tensor([[0.3, 0.7]] * 2, dtype=torch.float64))
    assert torch.equal(D[0], D[1])
    # huge and tiny gradient scales: the weights are scale-free (M̃ is divided by its first-step norm), D scales with J
    r = torch.tensor([[0.3, 0.7]] * 3, dtype=torch.float64)
    for c in (1e-12, 1e12):
        assert torch.allclose(XWCMGDA().step(None, F, c * J, r), c * XWCMGDA().step(None, F, J, r), rtol=1e-9, atol=0)
    # float32
    D32 = XWCMGDA().step(None, F.float(), J.float(), r.float())
    assert D32.dtype == torch.float32 and float((D32.double() - XWCMGDA().step(None, F, J, r)).norm()) < 1e-5


def test_begin_resets_the_first_step_scales_and_takes_the_ideal_point():
    m = XWCMGDA()
    g = torch.Generator().manual_seed(8)
    F = torch.rand(2, 2, generator=g, dtype=torch.float64) + 0.1
    J = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    r = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    m.step(None, F, J, r)
    first = m._r_scale.clone()
    m.step(None, 2 * F, J, r)
    assert torch.equal(m._r_scale, first)  # kept from the first step
    m.begin(None, 2 * F, r, steps=1, ideal=torch.tensor([0.05, 0.05], dtype=torch.float64))
    m.step(None, 2 * F, J, r)
    assert torch.allclose(m._r_scale, (r * 2 * F).norm(dim=1))
    assert torch.equal(m._z, torch.tensor([0.05, 0.05], dtype=torch.float64))


def test_invalid_inputs_raise_clear_errors():
    g = torch.Generator().manual_seed(9)
    F = torch.rand(2, 2, generator=g, dtype=torch.float64)
    J = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)
    r = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    with pytest.raises(ValueError, match="non-negative"):
        XWCMGDA().step(None, F, J, -r)
    with pytest.raises(ValueError, match="None"):
        XWCMGDA().step(None, F, J, None)
    Jn = J.clone()
    Jn[1, 1, 1] = float("nan")
    with pytest.raises(NonFiniteError):
        XWCMGDA().step(None, F, Jn, r)
    with pytest.raises(ValueError):
        XWCMGDA(u=0.0)
    with pytest.raises(ValueError):
        XWCMGDA(reference_point=torch.zeros(3)).step(None, F, J, r)
