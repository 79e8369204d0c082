"""STCH (Lin et al., ICML 2024): the paper's claims, checked exactly on random inputs or on VLMOP2.

``stch`` is g_μ(f | λ) = μ log Σ_i exp(λ_i (f_i − z_i)/μ) with gradient weights λ ⊙ softmax(u/μ),
u = λ ⊙ (f − z); ``stch-mtl`` is the official multi-task recipe (Σ log f during the warm-up, nadir
from the last warm-up epoch, then K μ log Σ exp(log(f_i/n_i)/μ)).
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import end_epoch, train_step
from reference_impls.core.loss_weighting import LossWeighting
from reference_impls.loss_balancing.stch import STCH, STCHMTL, smooth_tchebycheff, smooth_tchebycheff_weights, tchebycheff
from reference_impls.problems import get_problem
from reference_impls.runner import Adam, run

SEEDS = range(5)
EPS64 = torch.finfo(torch.float64).eps


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> None:
    """|actual − expected| ≤ atol + rtol·|expected| entrywise (plain torch: torch.testing's first call is slow)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual, expected)
    bad = (actual - expected).abs() > atol + rtol * expected.abs()
    assert not bool(bad.any()), (actual, expected)


def _random_case(seed: int, K: int, scale: float = 1.0, dtype=torch.float64):
    """Random losses f, preference λ > 0 (some tiny), ideal z, all (K,)."""
    g = torch.Generator().manual_seed(seed)
    f = scale * torch.randn(K, generator=g, dtype=torch.float64).exp()  # (K,) positive, spread over decades
    lam = torch.rand(K, generator=g, dtype=torch.float64) + 1e-3  # (K,)
    z = scale * torch.randn(K, generator=g, dtype=torch.float64)  # (K,) anywhere, also above f
    return f.to(dtype), lam.to(dtype), z.to(dtype)


# ---------------------------------------------------------------------------------------------
# stch: exact properties on random inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bounded_approximation_tch_le_stch_le_tch_plus_mu_log_k(seed, dtype):
    # Paper: max_i u_i ≤ g_μ ≤ max_i u_i + μ log K for every f, λ, z, μ. TCH is computed here
    # independently in float64 from the same (rounded) inputs. The lower bound holds exactly in
    # floating point (g = m + μ·log(s) with s ≥ 1); the upper one up to the rounding of the result
    # (a few eps of |TCH| + μ log K). Tightness: g − TCH reaches μ log K when all u_i are equal and
    # goes to 0 as μ → 0.
    eps = torch.finfo(dtype).eps
    for K in (1, 2, 3, 7, 50):
        for mu in (1e-8, 1e-3, 0.1, 1.0, 1e3, 1e8):
            f, lam, z = _random_case(1000 * seed + K, K, scale=10.0, dtype=dtype)
            g = float(STCH(mu=mu, preference=lam, ideal=z).objective(f))
            tch = float((lam.double() * (f.double() - z.double())).max())  # max_i λ_i (f_i − z_i)
            slack = 4 * eps * (abs(tch) + mu * math.log(K))
            assert g >= tch - 4 * eps * abs(tch), (K, mu, g, tch)  # the rounding of u itself in float32
            assert g <= tch + mu * math.log(K) + slack, (K, mu, g - tch, mu * math.log(K))
            if dtype == torch.float64:
                assert g >= float(tchebycheff(f, lam, z))  # exact: the same u, no slack
    # tightness of the upper bound: equal u_i
    for K in (2, 5):
        lam = torch.full((K,), 0.5, dtype=torch.float64)
        f = torch.full((K,), 3.0, dtype=torch.float64)
        for mu in (1e-3, 1.0, 1e3):
            g = float(STCH(mu=mu, preference=lam).objective(f))
            assert g == pytest.approx(1.5 + mu * math.log(K), rel=4 * EPS64)
    # tightness of the lower bound: g − TCH ≤ μ log K → 0 with μ
    f, lam, z = _random_case(seed, 4)
    gaps = [float(STCH(mu=mu, preference=lam, ideal=z).objective(f) - tchebycheff(f, lam, z)) for mu in (1.0, 1e-2, 1e-4)]
    assert gaps[0] > 0 and gaps[0] >= gaps[1] >= gaps[2] >= 0 and gaps[2] <= 1e-4 * math.log(4), gaps


@pytest.mark.parametrize("seed", SEEDS)
def test_value_matches_a_50_digit_reference(seed):
    # g_μ against μ log Σ exp(u_i/μ) evaluated with mpmath at 50 digits from the same float64 inputs:
    # error ≤ 8 eps (max|u| + μ log K), for μ from 1e-8 to 1e8 and losses up to 1e12.
    mpmath.mp.dps = 50
    for K in (1, 2, 6):
        for scale in (1e-12, 1.0, 1e12):
            for mu in (1e-8, 1e-2, 1.0, 1e8):
                f, lam, z = _random_case(100 * seed + K, K, scale=scale)
                u = [mpmath.mpf(float(lam[i])) * (mpmath.mpf(float(f[i])) - mpmath.mpf(float(z[i]))) for i in range(K)]
                ref = mpmath.mpf(mu) * mpmath.log(mpmath.fsum(mpmath.exp(ui / mpmath.mpf(mu)) for ui in u))
                g = float(STCH(mu=mu, preference=lam, ideal=z).objective(f))
                tol = 8 * EPS64 * (max(abs(float(ui)) for ui in u) + mu * math.log(K)) + 1e-300
                assert abs(g - float(ref)) <= tol, (K, scale, mu, g, float(ref))


@pytest.mark.parametrize("seed", SEEDS)
def test_weights_are_the_exact_gradient_and_sum_to_one_over_the_preference(seed):
    # weights() = ∂g_μ/∂f: compared with autograd through an independent formula (μ·torch.logsumexp(u/μ)),
    # and with autograd of the method's own objective. The exact identity: w = λ ⊙ p with p = softmax(u/μ)
    # on the simplex, so Σ_i w_i/λ_i = 1 (λ_i > 0); with uniform λ = 𝟙/K this is Σ_i w_i = 1/K. And
    # w_i/w_j = (λ_i/λ_j)·exp((u_i − u_j)/μ) (checked in logs where the exponent is moderate).
    for K in (1, 2, 3, 8):
        for mu in (1e-8, 1e-3, 0.3, 10.0, 1e8):
            f, lam, z = _random_case(10 * seed + K, K)
            method = STCH(mu=mu, preference=lam, ideal=z)
            w = method.weights(f, 0)  # (K,)
            x = f.clone().requires_grad_(True)
            (ref,) = torch.autograd.grad(mu * torch.logsumexp(lam * (x - z) / mu, 0), x)
            (own,) = torch.autograd.grad(method.objective(x, 0), x)
            u = lam * (f - z)  # (K,)
            # per entry: w_i ∝ e^{(u_i − m)/μ}, whose rounding grows with the exponent's size
            tol = 16 * EPS64 * (1 + (u.max() - u) / mu) * ref.abs() + 16 * torch.finfo(torch.float64).tiny  # (K,); subnormals
            assert bool(((w - ref).abs() <= tol).all()), (K, mu, w, ref)
            assert bool(((w - own).abs() <= tol).all()), (K, mu, w, own)
            assert float((w / lam).sum()) == pytest.approx(1.0, abs=4 * K * EPS64)
            i, j = int(u.argmax()), int(u.argmin())
            if K > 1 and abs(float(u[i] - u[j])) / mu < 600:  # both weights representable
                lhs = math.log(float(w[i])) - math.log(float(w[j]))
                rhs = math.log(float(lam[i] / lam[j])) + float(u[i] - u[j]) / mu
                assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
        # uniform preference: the weights sum to 1/K exactly up to rounding
        f, _, _ = _random_case(seed, K)
        assert float(STCH(mu=0.05).weights(f, 0).sum()) == pytest.approx(1.0 / K, rel=4 * K * EPS64)


@pytest.mark.parametrize("seed", SEEDS)
def test_limits_tch_subgradient_for_small_mu_and_linear_for_large_mu(seed):
    # μ → 0: w = λ_{i*} e_{i*} at the unique maximiser i* of u (the other weights underflow to 0 once
    # (u_{i*} − u_j)/μ > 745). μ → ∞ (Hoeffding's lemma for the mean of exp(u_i/μ)):
    #     0 ≤ g_μ − μ log K − mean(u) ≤ (max u − min u)²/(8μ),   and   w → λ/K.
    K = 5
    f, lam, z = _random_case(seed, K)
    u = lam * (f - z)  # (K,)
    gap = float(u.sort().values[-1] - u.sort().values[-2])
    mu = gap / 800
    w = STCH(mu=mu, preference=lam, ideal=z).weights(f, 0)
    expected = torch.zeros(K, dtype=torch.float64)
    expected[int(u.argmax())] = lam[int(u.argmax())]
    assert torch.equal(w, expected)
    span = float(u.max() - u.min())
    for mu in (10.0, 1e3, 1e6):
        method = STCH(mu=mu, preference=lam, ideal=z)
        excess = float(method.objective(f, 0)) - mu * math.log(K) - float(u.mean())
        rounding = 8 * EPS64 * (mu * math.log(K) + float(u.abs().max()))
        assert -rounding <= excess <= span**2 / (8 * mu) + rounding, (mu, excess)
        w = method.weights(f, 0)
        # e^{−span/μ}/K ≤ p_i ≤ e^{span/μ}/K, so |w_i − λ_i/K| ≤ λ_i (e^{span/μ} − 1)/K (+ rounding)
        assert bool(((w - lam / K).abs() <= lam * math.expm1(span / mu) / K + 8 * EPS64 * lam).all()), (mu, w)
    # the weights are invariant to a common shift of u (z → z + c/λ) and unchanged by huge scales
    w0 = STCH(mu=0.5, preference=lam, ideal=z).weights(f, 0)
    w1 = STCH(mu=0.5, preference=lam, ideal=z - 1e6 / lam).weights(f, 0)
    _assert_close(w0, w1, rtol=1e-9, atol=0.0)  # u shifted by 1e6: rounding of u at 1e6·eps


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_huge_and_tiny_mu_and_loss_scales_never_overflow(dtype):
    # μ from 1e-8 to 1e8 and losses from 1e-12 to 1e12 (z = 0, uniform λ): finite value within the
    # bounds, finite weights with Σ_i w_i = 1/K.
    eps = torch.finfo(dtype).eps
    for mu in (1e-8, 1e-4, 1.0, 1e4, 1e8):
        for f in ([1e12, 1.0], [1e-12, 1e12], [1e12, 1e12], [1e-12, 2e-12, 3e-12], [5e11, 1e12, 1e-3]):
            f = torch.tensor(f, dtype=dtype)
            K = f.numel()
            method = STCH(mu=mu)
            g, w = method.objective(f, 0), method.weights(f, 0)
            assert g.dtype == dtype and w.dtype == dtype
            assert bool(torch.isfinite(g)) and bool(torch.isfinite(w).all()), (mu, f)
            tch = float(f.double().max()) / K
            assert tch * (1 - 4 * eps) <= float(g) <= tch + mu * math.log(K) + 4 * eps * (tch + mu * math.log(K))
            assert float(w.double().sum()) == pytest.approx(1.0 / K, rel=8 * eps)


def test_golden_values():
    # f = (0.5, 2), λ = (0.3, 0.7), z = (0, 1), μ = 0.1: u = (0.15, 0.7), Δ = 5.5,
    # g = 0.7 + 0.1·log(1 + e^{−5.5}), w = (0.3σ, 0.7(1 − σ)) with σ = e^{−5.5}/(1 + e^{−5.5}).
    f = torch.tensor([0.5, 2.0], dtype=torch.float64)
    method = STCH(mu=0.1, preference=[0.3, 0.7], ideal=[0.0, 1.0])
    sigma = math.exp(-5.5) / (1 + math.exp(-5.5))
    assert float(method.objective(f, 0)) == pytest.approx(0.7 + 0.1 * math.log1p(math.exp(-5.5)), rel=1e-15)
    assert float(method.objective(f, 0)) == pytest.approx(0.70040784432705696, rel=1e-15)  # mpmath, 40 digits
    _assert_close(method.weights(f, 0), torch.tensor([0.3 * sigma, 0.7 * (1 - sigma)], dtype=torch.float64), rtol=1e-14, atol=0)
    # the registry defaults: μ = 0.01, λ = 𝟙/K, z = 0
    default = STCH()
    assert default.mu == 0.01 and default.preference is None and default.ideal is None
    assert float(default.objective(f, 0)) == pytest.approx(1.0 + 0.01 * math.log1p(math.exp(-75.0)), rel=1e-15)


def test_one_task_and_bad_input():
    # K = 1: g = λ(f − z) exactly, weight λ.
    method = STCH(mu=0.01, preference=[0.4], ideal=[1.0])
    f = torch.tensor([3.0], dtype=torch.float64)
    assert float(method.objective(f, 0)) == 0.8 and method.weights(f, 0).tolist() == [0.4]
    assert STCH().weights(torch.tensor([2.5]), 0).tolist() == [1.0]
    with pytest.raises(NonFiniteError, match=r"stch: the loss of task 1 is nan"):
        STCH().weights(torch.tensor([1.0, float("nan")]), 0)
    with pytest.raises(NonFiniteError, match=r"stch: the loss of task 0 is inf"):
        STCH(preference=[0.0, 1.0]).objective(torch.tensor([float("inf"), 1.0]), 0)  # λ_0 = 0 does not hide it
    with pytest.raises(ValueError, match=r"stch: .* overflows for task 0"):
        STCH(ideal=[-1e308, 0.0]).weights(torch.tensor([1e308, 1.0], dtype=torch.float64), 0)
    with pytest.raises(ValueError, match="preference has 3 entries but got 2 losses"):
        STCH(preference=[0.2, 0.3, 0.5]).weights(torch.tensor([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="mu must be a positive"):
        STCH(mu=0.0)
    with pytest.raises(ValueError, match="mu must be a positive"):
        STCH(mu=float("inf"))
    with pytest.raises(ValueError, match=">= 0 with a positive entry"):
        STCH(preference=[0.5, -0.1])
    with pytest.raises(ValueError, match=">= 0 with a positive entry"):
        STCH(preference=[0.0, 0.0])
    with pytest.raises(ValueError, match="preference must be finite"):
        STCH(preference=[0.5, float("nan")])
    with pytest.raises(ValueError, match="preference has 2 entries but ideal has 3"):
        STCH(preference=[0.5, 0.5], ideal=[0.0, 0.0, 0.0])
    # zero and negative losses are fine for the general form (u may be negative)
    assert bool(torch.isfinite(STCH().weights(torch.tensor([0.0, -3.0]), 0)).all())


# ---------------------------------------------------------------------------------------------
# stch on VLMOP2 (concave front): interior points that linear scalarisation cannot reach
# ---------------------------------------------------------------------------------------------

PREFERENCES = torch.tensor([[0.15, 0.85], [0.3, 0.7], [0.5, 0.5], [0.7, 0.3], [0.85, 0.15]], dtype=torch.float64)
MU, LR, STEPS = 0.02, 0.3, 600  # SGD: the smooth max has curvature ~ (λ|∇f|)²/μ ≈ 5 across λ_1f_1 = λ_2f_2


def _front(s: torch.Tensor) -> torch.Tensor:
    """VLMOP2's Pareto front at x = (s/√n)𝟙: (1 − e^{−(s−1)²}, 1 − e^{−(s+1)²}), (..., 2)."""
    return torch.stack([1 - torch.exp(-((s - 1) ** 2)), 1 - torch.exp(-((s + 1) ** 2))], -1)


def _tch_optimum(lam: torch.Tensor) -> tuple[float, float]:
    """(s*, TCH*) of min_x max_i λ_i f_i(x) on VLMOP2, by bisection along the analytic Pareto set.

    Every x is dominated by its projection onto the segment x = (s/√n)𝟙, s ∈ [−1, 1] (both
    ||x ∓ 𝟙/√n||² decrease), so the minimum is on it; there λ_1 f_1 decreases and λ_2 f_2 increases
    in s, so the minimum is at their crossing.
    """
    lo, hi = -1.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        F = _front(torch.tensor(mid, dtype=torch.float64))
        lo, hi = (mid, hi) if float(lam[0] * F[0] - lam[1] * F[1]) > 0 else (lo, mid)
    s = 0.5 * (lo + hi)
    return s, float(lam[0] * _front(torch.tensor(s, dtype=torch.float64))[0])


def _stch_optimum(lam: torch.Tensor) -> float:
    """min over the Pareto set of g_μ(F(s) | λ) (its minimisers are Pareto optimal): grid, then golden section."""
    s = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    values = smooth_tchebycheff(_front(s), lam, 0.0, MU)
    k = int(values.argmin())
    a, b = float(s[max(k - 1, 0)]), float(s[min(k + 1, 20000)])
    r = (math.sqrt(5) - 1) / 2
    for _ in range(100):
        c, d = b - r * (b - a), a + r * (b - a)
        gc, gd = (float(smooth_tchebycheff(_front(torch.tensor(v, dtype=torch.float64)), lam, 0.0, MU)) for v in (c, d))
        a, b = (a, d) if gc < gd else (c, b)
    return float(smooth_tchebycheff(_front(torch.tensor(0.5 * (a + b), dtype=torch.float64)), lam, 0.0, MU))


def _descend(weights, seed: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD x ← x − η Jᵀw from VLMOP2's 8 starts of ``seed``, for every preference at once.

    Returns the final x (P, B, n) and F (P, B, 2); ``weights(F, Λ)`` gives w (P·B, 2).
    """
    problem = get_problem("vlmop2")
    x0 = problem.initial_points(seed)  # (B, n)
    B = x0.shape[0]
    X = x0.repeat(len(PREFERENCES), 1)  # (P·B, n)
    L = PREFERENCES.repeat_interleave(B, 0)  # (P·B, 2)
    for _ in range(steps):
        F, J = problem.value_and_jacobian(X)  # (P·B, 2), (P·B, 2, n)
        X = X - LR * torch.einsum("bk,bkn->bn", weights(F, L), J)  # d = Jᵀ w
    F, _ = problem.value_and_jacobian(X)
    return X.reshape(len(PREFERENCES), B, -1), F.reshape(len(PREFERENCES), B, 2)


class LinearScalarisation(LossWeighting):
    """The fixed-weight objective Σ_i λ_i f_i (weights λ), the baseline of the comparison."""

    def __init__(self, preference):
        self.preference = torch.as_tensor(preference, dtype=torch.float64)

    def weights(self, losses, step):
        return self.preference.to(losses)


@pytest.mark.parametrize("seed", range(3))
def test_vlmop2_stch_reaches_spread_interior_points_where_linear_scalarisation_reaches_only_the_ends(seed):
    # 5 preferences, μ = 0.02, 8 random starts per seed, 3 seeds (120 runs; all pass). STCH: every
    # run ends on the Pareto set at the STCH minimiser (g_μ within 1e-9 of its minimum along the set),
    # the 8 starts of a preference agree, and its max_i λ_i f_i is within μ log 2 of the exact TCH
    # optimum (paper: TCH ≤ STCH ≤ TCH + μ log 2). The points are interior and spread along the front
    # (s strictly increasing in λ_1, gaps > 0.15, |s| ≤ 0.7), and none of them is a linear-scalarisation
    # optimum for any preference (the concave front has no supporting line there). Linear
    # scalarisation with the same λ (fixed weights) ends near an end of the front (|s| > 0.85, one
    # f_i < 0.02), at one of the two local minima of Σ λ_i f_i along the set, from every start.
    # Measured: STCH s = −0.675, −0.379, 0, 0.379, 0.675; LS |s| ≥ 0.8616 (the λ = (0.3, 0.7) minimum by
    # the end of the less weighted task).
    problem = get_problem("vlmop2")
    X, F = _descend(lambda F, L: smooth_tchebycheff_weights(F, L, 0.0, MU), seed, STEPS)
    P, B, n = X.shape
    s = X.sum(-1) / math.sqrt(n)  # (P, B) coordinate along the Pareto set
    assert float(problem.distance_to_pareto_set(X.reshape(P * B, n)).max()) < 1e-6
    for p, lam in enumerate(PREFERENCES):
        s_tch, tch_opt = _tch_optimum(lam)
        stch_opt = _stch_optimum(lam)
        stch_final = smooth_tchebycheff(F[p], lam, 0.0, MU)  # (B,)
        assert float((stch_final - stch_opt).abs().max()) < 1e-9, (lam, stch_final, stch_opt)
        tch_final = tchebycheff(F[p], lam)  # (B,)
        assert bool((tch_final <= tch_opt + MU * math.log(2)).all()), (lam, tch_final, tch_opt)
        assert float(s[p].max() - s[p].min()) < 1e-6  # one point per preference, whatever the start
        assert abs(float(s[p, 0]) - s_tch) < 0.15  # near the TCH solution λ_1 f_1 = λ_2 f_2 (measured ≤ 0.096)
    centres = s[:, 0]  # (P,) λ_1 increasing: the solution moves towards task 1's minimiser s = 1
    assert bool((centres.diff() > 0.15).all()) and float(centres.abs().max()) <= 0.7, centres
    # unsupported: at s the only preference making the point LS-stationary along the front is
    # λ ∝ (f_2'(s), −f_1'(s)), and for that λ some other front point has a lower Σ λ_i f_i
    grid = _front(torch.linspace(-1, 1, 4001, dtype=torch.float64))  # (4001, 2)
    for s0 in centres.tolist():
        d1, d2 = 2 * (s0 - 1) * math.exp(-((s0 - 1) ** 2)), 2 * (s0 + 1) * math.exp(-((s0 + 1) ** 2))  # f_1'(s), f_2'(s)
        lam_ls = torch.tensor([d2, -d1], dtype=torch.float64) / (d2 - d1)
        own = float(lam_ls @ _front(torch.tensor(s0, dtype=torch.float64)))
        assert float((grid @ lam_ls).min()) < own - 0.01, s0
    # linear scalarisation with the same preferences: the fixed weights λ (the class LinearScalarisation
    # below, batched here; the runner test drives the class itself)
    X_ls, F_ls = _descend(lambda F, L: L, seed, STEPS)
    s_ls = X_ls.sum(-1) / math.sqrt(n)  # (P, B)
    assert float(problem.distance_to_pareto_set(X_ls.reshape(P * B, n)).max()) < 1e-6
    s_grid = torch.linspace(-1, 1, 40001, dtype=torch.float64)
    for p, lam in enumerate(PREFERENCES):
        # the local minima of Σ λ_i f_i along the Pareto set: near the ends only (near the favoured
        # end, and for λ = (0.3, 0.7), (0.5, 0.5), (0.7, 0.3) near the other one too), at |s| ≥ 0.86;
        # every LS run ends at one of them
        ls = _front(s_grid) @ lam  # (40001,)
        minima = s_grid[1:-1][(ls[1:-1] < ls[:-2]) & (ls[1:-1] < ls[2:])]
        assert 1 <= len(minima) <= 2 and float(minima.abs().min()) > 0.85, (lam, minima)
        assert float((s_ls[p][:, None] - minima).abs().min(1).values.max()) < 1e-4, (lam, s_ls[p], minima)
    assert float(F_ls.min(-1).values.max()) < 0.02, F_ls  # one f_i < 0.02 (measured ≤ 0.019)


def test_vlmop2_through_the_runner_matches_the_batched_loop():
    # The registered class driven by `run` (one instance per start, d = Jᵀ w) follows the same
    # trajectory as the batched loop above (compared after 200 steps), for λ = (0.3, 0.7) from seed
    # 0's 8 starts; the fixed-weight class LinearScalarisation through `run` follows its batched loop.
    lam = PREFERENCES[1]
    X, _ = _descend(lambda F, L: smooth_tchebycheff_weights(F, L, 0.0, MU), 0, 200)
    result = run(STCH(mu=MU, preference=lam.tolist()), "vlmop2", steps=200, lr=LR, optimizer="sgd", seed=0)
    _assert_close(result.x_final, X[1], rtol=0, atol=1e-9)
    X_ls, _ = _descend(lambda F, L: L, 0, 200)
    ls = run(LinearScalarisation(lam), "vlmop2", steps=200, lr=LR, optimizer="sgd", seed=0)
    _assert_close(ls.x_final, X_ls[1], rtol=0, atol=1e-9)


def test_modl_run_stch_on_vlmop2(capsys):
    from modl.cli import main

    assert main(["run", "stch", "--problem", "vlmop2", "--steps", "300", "--lr", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "PS-measure" in out and "nan" not in out.lower()
    # default λ = (½, ½): the symmetric point s = 0, f = (1 − e^{−1}, 1 − e^{−1})
    assert out.count("0.632121") == 16, out


# ---------------------------------------------------------------------------------------------
# stch-mtl: the official multi-task recipe
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_mtl_weights_are_the_exact_gradient_in_both_phases(seed):
    # Warm-up: ∂/∂f Σ log f = 1/f. After: L = K μ log Σ exp(log(f_i/n_i)/μ) and ∂L/∂f_i = K p_i/f_i,
    # p = softmax(log(f/n)/μ); compared with autograd through an independent formula. For μ = 1:
    # L = K log Σ f_i/n_i exactly.
    g = torch.Generator().manual_seed(seed)
    for K in (1, 2, 5):
        f = torch.exp(8 * torch.randn(K, generator=g, dtype=torch.float64))  # (K,) from ~1e-10 to ~1e10
        nadir = torch.exp(8 * torch.randn(K, generator=g, dtype=torch.float64))  # (K,)
        warm = STCHMTL(warmup_epochs=1, nadir=nadir.tolist())
        _assert_close(warm.weights(f, 0), 1 / f, rtol=EPS64, atol=0)
        assert float(warm.objective(f, 0)) == pytest.approx(float(torch.log(f).sum()), rel=4 * EPS64, abs=4 * EPS64)
        for mu in (1e-3, 1.0, 1e3):
            method = STCHMTL(mu=mu, warmup_epochs=0, nadir=nadir.tolist())
            x = f.clone().requires_grad_(True)
            (ref,) = torch.autograd.grad(K * mu * torch.logsumexp(torch.log(x / nadir) / mu, 0), x)
            _assert_close(method.weights(f, 0), ref, rtol=1e-12, atol=0)
            (own,) = torch.autograd.grad(method.objective(x, 0), x)
            _assert_close(method.weights(f, 0), own, rtol=1e-12, atol=0)
        one = STCHMTL(mu=1.0, warmup_epochs=0, nadir=nadir.tolist())
        assert float(one.objective(f, 0)) == pytest.approx(K * math.log(float((f / nadir).sum())), rel=1e-12, abs=1e-12)


def _hand_loop(losses_fn, steps_per_epoch: int, epochs: int, warmup: int, mu: float, seed: int = 0):
    """The official schedule written out directly (no method object): returns the model parameters and the nadir."""
    problem = get_problem("mtl-regression", batch_size=512 // steps_per_epoch)
    model = problem.reset(seed)
    opt = Adam(list(model.parameters()), lr=0.01)
    batches = problem.batches(seed)
    observed, nadir = [], None
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            batch = next(batches)
            opt.zero_grad(set_to_none=True)
            f = losses_fn(problem, batch)  # (K,)
            if epoch < warmup:
                loss = torch.log(f).sum()  # Σ log f_i
                if epoch == warmup - 1:
                    observed.append(f.detach())
            else:
                if nadir is None:
                    nadir = torch.stack(observed).mean(0)  # the mean loss of the last warm-up epoch
                loss = f.numel() * mu * torch.logsumexp(torch.log(f / nadir) / mu, 0)  # K μ log Σ e^{log(f_i/n_i)/μ}
            loss.backward()
            opt.step()
    return [p.detach().clone() for p in model.parameters()], nadir


def test_mtl_warmup_then_nadir_normalisation_driven_by_the_runner_hooks():
    # mtl-regression with batch_size 128 (4 steps per epoch), warm-up 2 epochs, 5 epochs in all:
    # `run` drives observe/on_epoch_end; the nadir is the mean of the 4 step losses of epoch 1, and
    # the trained network equals the schedule written out by hand (to rounding). Moving the nadir
    # to another epoch (warm-up 1 or 3) gives a different network, so the comparison sees the timing.
    problem = get_problem("mtl-regression", batch_size=128)
    result = run(STCHMTL(mu=1.0, warmup_epochs=2), problem, steps=20, lr=0.01, optimizer="adam")
    method = result.extra["methods"][0]
    assert method.epoch == 5 and not method.in_warmup
    params, nadir = _hand_loop(lambda pr, b: pr.losses(b), steps_per_epoch=4, epochs=5, warmup=2, mu=1.0)
    _assert_close(method.nadir, nadir, rtol=1e-13, atol=0)
    final_losses = result.f_final[0]  # (K,) full-data losses of the runner's network
    with torch.no_grad():
        model = problem.reset(0)
        for p, q in zip(model.parameters(), params):
            p.copy_(q)
        hand_losses = problem.losses()
    _assert_close(final_losses, hand_losses, rtol=1e-10, atol=0)
    for other in (1, 3):
        other_params, _ = _hand_loop(lambda pr, b: pr.losses(b), steps_per_epoch=4, epochs=5, warmup=other, mu=1.0)
        assert max(float((a - b).abs().max()) for a, b in zip(params, other_params)) > 1e-4


def test_mtl_training_is_invariant_to_per_task_loss_scales():
    # log(c f) = log c + log f and log(c f/(c n)) = log(f/n): with the nadir measured on the scaled
    # losses, the whole trajectory (warm-up and STCH phase) is unchanged by c = (1, 1e6) (to
    # rounding), in the documented train_step/end_epoch loop.
    def train(c):
        problem = get_problem("mtl-regression", batch_size=128)
        model = problem.reset(0)
        method = STCHMTL(warmup_epochs=1)
        opt = Adam(list(model.parameters()), lr=0.01)  # the runner's Adam (torch.optim's first step imports dynamo: slow)
        batches = problem.batches(0)
        step = 0
        for epoch in range(3):
            for _ in range(4):
                batch = next(batches)
                train_step(method, lambda: c * problem.losses(batch), opt, problem.shared_parameters(), problem.task_parameters(), step=step)
                step += 1
            end_epoch(method, epoch)
        return [p.detach().clone() for p in model.parameters()], method

    # measured: max parameter difference 1.7e-16 after 12 steps (5 of them after the warm-up)
    a, ma = train(torch.tensor([1.0, 1.0], dtype=torch.float64))
    b, mb = train(torch.tensor([1.0, 1e6], dtype=torch.float64))
    _assert_close(mb.nadir, ma.nadir * torch.tensor([1.0, 1e6], dtype=torch.float64), rtol=1e-12, atol=0)
    for p, q in zip(a, b):
        _assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_mtl_defaults_one_task_and_bad_input():
    method = STCHMTL()
    assert method.mu == 1.0 and method.warmup_epochs == 5 and method.nadir is None and method.in_warmup
    # K = 1: warm-up weight 1/f, then log(f/n) with weight 1/f as well
    one = STCHMTL(warmup_epochs=1)
    f = torch.tensor([0.5], dtype=torch.float64)
    one.observe(f, 0)
    one.on_epoch_end(0)
    assert one.nadir.tolist() == [0.5] and float(one.objective(torch.tensor([0.25], dtype=torch.float64), 1)) == pytest.approx(math.log(0.5))
    assert one.weights(torch.tensor([0.25], dtype=torch.float64), 1).tolist() == [4.0]
    # non-positive and non-finite losses name the method and the task
    for bad, kind, match in ((0.0, ValueError, "task 1 is 0.0: the log form needs positive losses"),
                             (-2.0, ValueError, "task 1 is -2.0"),
                             (float("nan"), NonFiniteError, "task 1 is nan"),
                             (float("inf"), NonFiniteError, "task 1 is inf")):  # fmt: skip
        for call in (STCHMTL().weights, STCHMTL().objective, STCHMTL(warmup_epochs=1).observe):
            with pytest.raises(kind, match="stch-mtl: the loss of " + match):
                call(torch.tensor([1.0, bad]), 0)
    with pytest.raises(ValueError, match="stch-mtl: the nadir of task 0 is 0.0"):
        STCHMTL(warmup_epochs=0, nadir=[0.0, 1.0])
    with pytest.raises(ValueError, match="give the nadir"):
        STCHMTL(warmup_epochs=0)
    with pytest.raises(ValueError, match="warmup_epochs must be an integer"):
        STCHMTL(warmup_epochs=-1)
    with pytest.raises(ValueError, match="mu must be a positive"):
        STCHMTL(mu=-1.0)
    with pytest.raises(ValueError, match="the nadir has 2 entries but got 3 losses"):
        STCHMTL(warmup_epochs=0, nadir=[1.0, 1.0]).weights(torch.tensor([1.0, 2.0, 3.0]), 0)
    # a loop that never calls observe: a clear error at the end of the last warm-up epoch
    forgot = STCHMTL(warmup_epochs=2)
    forgot.on_epoch_end(0)
    with pytest.raises(ValueError, match="no losses were observed during the last warm-up epoch"):
        forgot.on_epoch_end(1)
    # reset forgets the measured nadir and the epoch
    one.reset()
    assert one.nadir is None and one.epoch == 0 and one.in_warmup
