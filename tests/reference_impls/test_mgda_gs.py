"""MGDA under generalized smoothness (Zhang et al., ICLR 2025): the single-loop weights, the warm start,
and the ℓ-smooth constant step that keeps MGDA stable where a locally tuned constant step diverges."""

from __future__ import annotations

import math

import pytest
import torch

from modl.cli import main
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import min_norm_weights
from reference_impls.gradient_weighting.mgda import MGDA
from reference_impls.gradient_weighting.mgda_gs import MGDAGS, projected_step, projected_step_2
from tests.reference_impls import asserts
from tests.reference_impls.golden import j_base

F64 = torch.float64


def _small(J: torch.Tensor) -> torch.Tensor:
    """J scaled so that ||M|| = 1: a step β = 1 on wᵀ(M + ρI)w is then a contraction (factor ≤ 1 − βρ)."""
    return J / max(float(torch.linalg.matrix_norm(J, ord=2)), 1e-300)


def test_warm_start_converges_to_the_certified_regularised_weights():
    """N projected-gradient steps at x_0 (β = 1, ρ = 0.1) converge to w*_ρ = argmin_{w∈Δ} wᵀ(M + ρI)w, the min-norm
    problem of the Gramian M + ρI (solved by the certified solver): to 1e-9 after N = 300 steps (contraction ≤ 0.9 a
    step), on random J with K from 1 to 32 (unequal row scales included; K = 2 takes the Python-float path), and the
    error never grows with N."""
    for name, J in asserts.random_jacobians(shapes=[(1, 5), (2, 3), (3, 20), (5, 50), (8, 16), (32, 20)], per_shape=2):
        J = _small(J)
        K = J.shape[0]
        target = min_norm_weights(J @ J.T + 0.1 * torch.eye(K, dtype=F64))  # w*_ρ, (K,)
        errors = []
        for N in (0, 1, 5, 50, 300):
            m = MGDAGS(beta=1.0, rho=0.1, warm_start_steps=N)
            m.weights(J)  # the first call: N warm-start steps, then one more
            errors.append(float((m.lambd - target).abs().max()))
        assert errors[-1] <= 1e-9, (name, errors)
        assert all(b <= a + 1e-15 for a, b in zip(errors, errors[1:])), (name, errors)


def test_without_regulariser_the_warm_start_reaches_mgda():
    """ρ = 0, β = 1, N = 2000 on well-conditioned random J (K ≤ n, affinely independent rows): the direction
    is MGDA's min-norm point d* to 1e-8·max_i ||g_i||."""
    for name, J in asserts.random_jacobians(shapes=[(3, 20), (5, 50)], per_shape=1):
        J = _small(J)
        d = MGDAGS(beta=1.0, rho=0.0, warm_start_steps=2000)(J)
        assert float((d - MGDA()(J)).norm()) <= 1e-8 * float(J.norm(dim=1).max()), name


def _cosh_toy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f_i(x) = Σ_j cosh(x_j − a_ij) − 2, a_1 = 0, a_2 = e_1 (n = 2): (L0, L1) = (1, 1)-smooth
    (||∇²f|| = max_j cosh(u_j) ≤ 1 + ||sinh(u)|| = ℓ(||∇f||)) with no Lipschitz gradient; f_i* = 0."""
    anchors = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)
    u = x[None, :] - anchors  # (K, n)
    return torch.cosh(u).sum(1) - 2.0, torch.sinh(u)  # F (K,), J (K, n)


def test_G_bounds_the_gradients_on_the_initial_sublevel_set():
    """Li et al.'s Lemma behind the step: on {f_i ≤ f_i(x_0)} every ||∇f_i|| ≤ G (G from Δ_i = f_i(x_0)), checked on
    20 000 random points of the box [−8, 9]² for 3 starts."""
    gen = torch.Generator().manual_seed(0)
    pts = -8.0 + 17.0 * torch.rand(20_000, 2, generator=gen, dtype=F64)
    u = pts[:, None, :] - torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)  # (P, K, n), the toy batched
    F_all, J_all = torch.cosh(u).sum(2) - 2.0, torch.sinh(u)  # (P, K), (P, K, n)
    torch.testing.assert_close(F_all[0], _cosh_toy(pts[0])[0], rtol=0, atol=0)
    for x0 in ([6.0, 0.0], [-3.0, 4.0], [2.0, -5.0]):
        F0, _ = _cosh_toy(torch.tensor(x0, dtype=F64))
        m = MGDAGS(l0=1.0, l1=1.0)
        m(torch.zeros(2, 2, dtype=F64), F0)  # fixes α from the gaps Δ = F0
        G = (1.0 / (2.0 * m.step_size) - 1.0) / 2.0  # α = 1/(2(L0 + 2L1G)) solved for G (L0 = L1 = 1)
        inside = F_all <= F0  # (P, K): points of each task's sublevel set
        norms = J_all.norm(dim=2)  # (P, K)
        assert bool(inside.any()) and float(norms[inside].max()) <= G


def test_the_l_smooth_step_stays_stable_where_the_locally_tuned_step_diverges():
    """The paper's setting: no global L. From 9 starts at distance 6 (3 seeds × 3 random angles, all pass):

    * MGDA-GS with α = 1/(2ℓ(2G)) (400 steps, SGD lr 1): every iterate finite, max_i f_i never above its
      start, and max_i f_i(x_400) ≤ 0.15·max_i f_i(x_0) (measured 0.04–0.11);
    * MGDA with the constant step 1/(2ℓ(0)) = 0.5, the L-smooth step for the curvature at the optimum
      (L = ℓ(0) = L0 = 1), overflows (max_i f_i > 1e100 or non-finite) within 20 steps from every start.
    """
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        for angle in (2 * math.pi * torch.rand(3, generator=gen, dtype=F64)).tolist():
            x0 = torch.tensor([0.5 + 6 * math.cos(angle), 6 * math.sin(angle)], dtype=F64)
            F0, _ = _cosh_toy(x0)
            method, x = MGDAGS(l0=1.0, l1=1.0), x0.clone()
            for _ in range(400):
                F, J = _cosh_toy(x)
                assert bool(torch.isfinite(F).all()) and float(F.max()) <= float(F0.max())
                x = x - method(J, F)  # α is inside the direction
            assert float(_cosh_toy(x)[0].max()) <= 0.15 * float(F0.max())
            y, diverged = x0.clone(), False
            for _ in range(20):
                F, J = _cosh_toy(y)
                if not bool(torch.isfinite(F).all()) or float(F.max()) > 1e100:
                    diverged = True
                    break
                y = y - 0.5 * MGDA()(J)
            assert diverged, (seed, angle)


def _starts(radius: float) -> list[torch.Tensor]:
    """9 starts at ``radius`` from the Pareto segment's midpoint (0.5, 0): 3 seeds × 3 random angles."""
    starts = []
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        for angle in (2 * math.pi * torch.rand(3, generator=gen, dtype=F64)).tolist():
            starts.append(torch.tensor([0.5 + radius * math.cos(angle), radius * math.sin(angle)], dtype=F64))
    return starts


def _ca_distances(x0: torch.Tensor, warm_start_steps: int, steps: int) -> list[float]:
    """CA distance of each iteration, ||J_tᵀw_{t+1} − J_tᵀw*_{t,ρ}|| / max_i ||g_i(x_t)||, on the cosh toy with
    the ℓ-step and β = ρ = 0.1 (a weight step small against the toy's ||M_t||, as the theory's β conditions ask);
    w*_{t,ρ} = argmin_{w∈Δ} wᵀ(M_t + ρI)w from the certified solver. Scaled by the largest gradient: the
    direction Jᵀw is a combination of all rows, so max_i ||g_i|| is its natural scale."""
    method = MGDAGS(beta=0.1, rho=0.1, l0=1.0, l1=1.0, warm_start_steps=warm_start_steps)
    x, out = x0.clone(), []
    for _ in range(steps):
        F, J = _cosh_toy(x)
        d = method(J, F)  # α J_tᵀ w_{t+1}, (n,)
        target = min_norm_weights(J @ J.T + method.rho * torch.eye(2, dtype=F64))  # w*_{t,ρ}, (K,)
        out.append(float((J.T @ (method.lambd - target)).norm()) / float(J.norm(dim=1).max()))
        x = x - d
    return out


def test_the_warm_start_keeps_the_ca_distance_small_at_every_iteration():
    """The paper's Section 5 claim (iteration-wise CA distance, made possible by the warm start): with N = 200
    warm-start steps at x_0 the CA distance is ≤ 0.02·max_i ||g_i|| at EVERY one of 120 iterations (measured
    ≤ 0.0112), from all 9 starts at distance 2 (3 seeds × 3 angles, all pass), and never above the cold start's
    worst; without the warm start (N = 0) the first iterations are far from the CA direction on some starts
    (measured: 5 of 9 above 0.04, worst 0.139)."""
    cold_worst = []
    for x0 in _starts(2.0):
        warm, cold = _ca_distances(x0, 200, 120), _ca_distances(x0, 0, 120)
        assert max(warm) <= 0.02, (x0.tolist(), max(warm))
        assert max(warm) <= max(cold) + 1e-3, (x0.tolist(), max(warm), max(cold))
        cold_worst.append(max(cold))
    assert max(cold_worst) >= 0.1, cold_worst


def test_the_l_smooth_step_reaches_a_pareto_stationary_point():
    """The paper's Section 4 claim, deterministic MGDA: ε-accurate Pareto stationarity without a Lipschitz gradient.
    On the cosh toy (Pareto set: the segment x_2 = 0, 0 ≤ x_1 ≤ 1) with the ℓ-step, from all 9 starts at distance
    2 (3 seeds × 3 angles, all pass), 1000 steps: every iterate stays in the initial sublevel set
    (max_i f_i(x_t) ≤ max_i f_i(x_0)); the Pareto-stationarity measure, MGDA's min-norm ||Σ w*_i ∇f_i(x_t)||,
    falls at least 100-fold from step 500 to step 1000 (measured: ≤ 1.1e-3, then ≤ 2.4e-6; a floor of 1e-12 for
    rounding), and the end point is within 1e-5 of stationarity and of the Pareto segment."""
    def stationarity(x: torch.Tensor) -> float:
        return float(MGDA()(_cosh_toy(x)[1]).norm())  # min_{w∈Δ} ||Jᵀw||

    for x0 in _starts(2.0):
        F0, _ = _cosh_toy(x0)
        method, x = MGDAGS(l0=1.0, l1=1.0), x0.clone()
        for step in range(1, 1001):
            F, J = _cosh_toy(x)
            assert float(F.max()) <= float(F0.max()), x0.tolist()
            x = x - method(J, F)
            if step == 500:
                halfway = stationarity(x)
        end = stationarity(x)
        to_segment = math.hypot(min(max(float(x[0]), 0.0), 1.0) - float(x[0]), float(x[1]))
        progress = end <= max(halfway / 100, 1e-12)  # 100-fold, unless already at rounding level
        assert progress and end <= 1e-5 and to_segment <= 1e-5, (x0.tolist(), halfway, end, to_segment)


def test_golden_value():
    # Defaults β = ρ = 0.5, N = 40. J_base (||M|| ≈ 52, β||M + ρI|| ≈ 26): the steps overshoot and the weights sit
    # on the vertex (1, 0): d = g_1. J_base/10 (||M|| ≈ 0.52, contraction ≤ 0.5 a step): after 41 steps the weights
    # are w*_ρ = argmin wᵀ(M + 0.5 I)w = (0.55, 0.45) to 1e-13.
    assert torch.equal(MGDAGS()(j_base()), j_base()[0])
    w = MGDAGS().weights(j_base() / 10)
    assert torch.allclose(w, torch.tensor([0.5499999999999773, 0.4500000000000227], dtype=F64), rtol=0, atol=1e-14)
    target = min_norm_weights(j_base() @ j_base().T / 100 + 0.5 * torch.eye(2, dtype=F64))
    assert float((w - target).abs().max()) < 1e-13



def _random_gramian_2(gen: torch.Generator, scale: float) -> torch.Tensor:
    """M = J Jᵀ of a random (2, 3) J whose rows have norms scale·10^U(−1, 1) (unequal task scales)."""
    J = torch.randn(2, 3, generator=gen, dtype=F64) * (scale * 10 ** (2 * torch.rand(2, 1, generator=gen, dtype=F64) - 1))
    return J @ J.T


def test_the_two_task_float_path_equals_the_general_path():
    """The K = 2 step on Python floats is the general path's step w ← Π_Δ(w − β(M + ρI)w) (torch, sort-based
    projection): on 2400 random (M, w, β, ρ) — M = J Jᵀ from 20 seeds × 5 scales 1e-12…1e12 (1e−24…1e24 in M),
    w ∈ Δ including the vertices, β ∈ {1e-3, 0.1, 0.5, 2}, ρ ∈ {0, 0.5} — both stay on Δ and agree to 4 ulps of 1
    (the only difference allowed: the multiply-adds of (M + ρI)w, which a BLAS kernel may fuse), both clip
    (a vertex) on the same samples; on a zero Gramian the step pulls w towards 𝟙/K:
    Π_Δ((1 − βρ)w) = (1 − βρ)w + βρ𝟙/K."""
    clipped = 0
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        for scale in (1e-12, 1e-6, 1.0, 1e3, 1e12):
            M = _random_gramian_2(gen, scale)
            for a in (0.0, 1.0, float(torch.rand(1, generator=gen, dtype=F64))):
                for beta in (1e-3, 0.1, 0.5, 2.0):
                    for rho in (0.0, 0.5):
                        w = [a, 1.0 - a]
                        fast = projected_step_2(w, M.reshape(-1).tolist(), rho, beta)
                        general = projected_step(w, M + rho * torch.eye(2, dtype=F64), beta)
                        assert min(fast) >= 0 and abs(sum(fast) - 1) <= 4 * 2.0**-52, (fast, general)
                        gap = max(abs(f - g) for f, g in zip(fast, general))
                        assert gap <= 4 * 2.0**-52, (seed, scale, a, beta, rho, fast, general)
                        assert (0.0 in fast) == (0.0 in general)
                        clipped += 0.0 in fast
    assert 200 <= clipped <= 1800, clipped  # both regimes (interior and vertex) were exercised
    assert projected_step_2([0.3, 0.7], [0.0] * 4, 0.5, 0.5) == pytest.approx([0.75 * 0.3 + 0.125, 0.75 * 0.7 + 0.125], abs=1e-15)
    with pytest.raises(NonFiniteError):
        projected_step_2([0.5, 0.5], [float("inf"), 0.0, 0.0, 1.0], 0.5, 0.5)


def test_two_task_runs_follow_the_general_path():
    """A whole K = 2 run of the class (defaults: warm start N = 40, then 200 steps on a moving J, float32 and float64)
    follows a reference loop that calls the general torch step ``projected_step`` on the same Gramians: weights
    within 1e-12 at every step on all 5 seeds, in the contraction regime β||M + ρI|| ≤ 0.75 where rounding
    differences decay instead of growing."""
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        J0 = torch.randn(2, 4, generator=gen, dtype=F64)
        J0 = J0 / float(torch.linalg.matrix_norm(J0, ord=2))  # ||M|| = 1, β = ρ = 0.5: β||M + ρI|| ≤ 0.75
        for dtype in (F64, torch.float32):
            m, w_ref = MGDAGS(), [0.5, 0.5]
            for t in range(200):
                J = (J0 + 0.3 * math.sin(0.1 * t) * torch.eye(2, 4, dtype=F64)).to(dtype)  # (K, n), moving
                d = m(J)
                Mr = (J @ J.T).double() + 0.5 * torch.eye(2, dtype=F64)  # M + ρI as the general path forms it
                for _ in range(41 if t == 0 else 1):
                    w_ref = projected_step(w_ref, Mr, 0.5)
                assert float((m.lambd - torch.tensor(w_ref, dtype=F64)).abs().max()) <= 1e-12, (seed, dtype, t)
                assert d.dtype == dtype

def test_degenerate_inputs():
    zero = MGDAGS()
    assert torch.equal(zero(torch.zeros(3, 4, dtype=F64)), torch.zeros(4, dtype=F64))
    assert torch.allclose(zero.lambd, torch.full((3,), 1 / 3, dtype=F64), atol=1e-15)
    g = j_base()[0]
    assert torch.equal(MGDAGS()(g[None]), g)  # K = 1
    opposite = MGDAGS()
    assert float(opposite(torch.stack([g, -g]) / 10).norm()) <= 1e-15
    assert torch.allclose(opposite.lambd, torch.tensor([0.5, 0.5], dtype=F64), atol=1e-15)
    for name, J in asserts.degenerate_jacobians().items():
        d = MGDAGS()(J)
        assert bool(torch.isfinite(d).all()), name
    assert MGDAGS()(j_base(torch.float32)).dtype == torch.float32
    with pytest.raises(NonFiniteError):
        MGDAGS()(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]], dtype=F64))
    # The transient vertex the properties table mentions: the FIRST call on J = [100, 0; 0, 0] gives w = (0, 1),
    # d = 0 at a weakly but not strongly stationary J; the second call re-spreads βρ/K: d ≠ 0.
    m = MGDAGS()
    J = torch.tensor([[100.0, 0.0], [0.0, 0.0]], dtype=F64)
    assert torch.equal(m(J), torch.zeros(2, dtype=F64)) and float(m(J).norm()) > 0
    m = MGDAGS()
    m(j_base())
    with pytest.raises(ValueError, match="number of tasks changed"):
        m(torch.ones(3, 3, dtype=F64))


def test_bad_hyperparameters_and_losses_raise():
    with pytest.raises(ValueError, match="both l0 and l1"):
        MGDAGS(l0=1.0)
    with pytest.raises(ValueError, match="not both 0"):
        MGDAGS(l0=0.0, l1=0.0)
    with pytest.raises(ValueError, match="beta > 0"):
        MGDAGS(beta=0.0)
    with pytest.raises(ValueError, match="warm_start_steps"):
        MGDAGS(warm_start_steps=-1)
    with pytest.raises(ValueError, match="needs the task losses"):
        MGDAGS(l0=1.0, l1=1.0)(j_base())
    with pytest.raises(ValueError, match="f_i − f_i\\* >= 0"):
        MGDAGS(l0=1.0, l1=1.0)(j_base(), torch.tensor([1.0, -1.0], dtype=F64))


def test_cli_runs_mgda_gs_on_the_noisy_problem(capsys):
    assert main(["run", "mgda-gs", "--problem", "noisy-biquad", "--steps", "100"]) == 0
    assert main(["run", "mgda-gs", "--problem", "biquad", "-p", "l0=2", "-p", "l1=1", "-p", "run.optimizer=sgd", "--lr", "1", "--steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "mgda-gs on noisy-biquad" in out and "nan" not in out.lower()
