"""MoDo (Chen et al., NeurIPS 2023 / JMLR 2024): a projected-gradient λ step on the two-batch Gramian J_ξ1 J_ξ2ᵀ."""

import copy
import math

import pytest
import torch

from modl.cli import main
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.solvers import min_norm_weights
from reference_impls.gradient_weighting.modo import MoDo
from reference_impls.problems.noisy import NoisyProblem
from reference_impls.runner import run
from tests.reference_impls import asserts
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_golden_j_base_two_steps(dtype, atol):
    # by hand, γ = 0.1, ρ = 0.1: M = [[18, −22], [−22, 38]]; λ_0 = (½, ½): (M + ρI)λ_0 = (−1.95, 8.05),
    # v = (0.695, −0.305) → Π_Δ = (1, 0), d = g_1; then (M + ρI)(1, 0) = (18.1, −22), v = (−0.81, 2.2) → (0, 1),
    # d = g_2: the official γ = 0.1 overshoots on gradients of norm ~5 (2/λ_max(M) ≈ 0.037)
    method = MoDo()
    J = j_base(dtype)
    torch.testing.assert_close(method(J), J[0], rtol=0, atol=atol)
    torch.testing.assert_close(method.lambd, torch.tensor([1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(method(J), J[1], rtol=0, atol=atol)
    # γ = 0.01: v = (0.5195, 0.4195), Σv = 0.939 → +0.0305 each: λ = (0.55, 0.45), d = (0.5, 1, 1)
    small = MoDo(gamma=0.01)
    torch.testing.assert_close(small(J), torch.tensor([0.5, 1.0, 1.0], dtype=dtype), rtol=0, atol=atol)
    torch.testing.assert_close(small.lambd, torch.tensor([0.55, 0.45], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lambda_step_uses_the_two_batch_gramian_and_d_the_third_sample():
    """The update on three different Jacobians, recomputed from the paper's formula for 4 steps:
    λ ← Π_Δ(λ − γ(J1 J2ᵀ + ρI)λ) with a sort-free check (λ is the projection iff λ = max(v − τ, 0) with Σλ = 1),
    d = J3ᵀλ; two samples give d = ½(J1 + J2)ᵀλ (the official toy)."""
    gen = torch.Generator().manual_seed(0)
    for S in (3, 2):
        method = MoDo(gamma=0.05, rho=0.2, samples=S)
        assert method.jacobian_samples == S
        lam = torch.full((4,), 0.25, dtype=torch.float64)
        for _ in range(4):
            Js = torch.randn(S, 4, 7, generator=gen, dtype=torch.float64)
            d = method(Js)
            v = lam - 0.05 * (Js[0] @ (Js[1].T @ lam) + 0.2 * lam)
            new = method.lambd
            tau = float(v[new > 0].sum() - 1) / int((new > 0).sum())  # the threshold on the support
            torch.testing.assert_close(new, (v - tau).clamp_min(0), rtol=0, atol=1e-14)
            assert bool((v[new == 0] <= tau + 1e-14).all())  # off-support entries lie below the threshold
            direction = Js[2] if S == 3 else 0.5 * (Js[0] + Js[1])
            torch.testing.assert_close(d, new @ direction, rtol=0, atol=1e-13)
            lam = new
        assert method.t == 4


def test_exact_gradients_converge_to_the_regularised_mgda_weights():
    """On a fixed exact J (one Jacobian for every draw), λ converges to argmin_{λ∈Δ} λᵀ(JJᵀ + ρI)λ, the fixed
    point of the projected step (step 1/L); ρ = 0 gives MGDA's min-norm weights. Full-rank random Jacobians, where
    the fixed point is unique and the step contracts fast (condition number of M + ρI below ~20 here: 800 steps)."""
    for rho in (0.0, 1.0):
        for name, J in random_jacobians(seed=1, shapes=[(2, 10), (3, 20), (5, 50)], per_shape=1):
            M = J @ J.T
            L = float(torch.linalg.eigvalsh(M).max()) + rho
            method = MoDo(gamma=1.0 / L, rho=rho)
            for _ in range(800):
                d = method(J)
            target = min_norm_weights(M + rho * torch.eye(J.shape[0], dtype=J.dtype))
            torch.testing.assert_close(method.lambd, target, rtol=0, atol=1e-6, msg=name)
            torch.testing.assert_close(d, method.lambd @ J, msg=name)


def _unbiasedness_draws(seed: int, draws: int):
    """λ_1 at a fixed x of noisy-biquad (n = 50, σ = 0.2) from a non-uniform λ_0 (30 exact steps), for `draws`
    independent oracle draws: with J1 J2ᵀ (two samples) and with J1 J1ᵀ (one sample used twice)."""
    sigma, n, gamma = 0.2, 50, 0.05
    problem = NoisyProblem("biquad", sigma=sigma, n=n)
    x = torch.zeros(n, dtype=torch.float64)
    x[0], x[1] = 0.1, 0.05
    F, J = problem.losses_and_jacobian(x)  # exact, (K,), (K, n)
    method = MoDo(gamma=gamma)
    for _ in range(30):
        method.weights(J)  # λ_0 ≈ the regularised MGDA weights (0.87, 0.13) here
    lam0 = method.lambd.clone()
    exact = copy.deepcopy(method).weights(J)  # the true-gradient step
    _, Js = problem.perturb(F, J, problem.noise_generator(seed), samples=3 * draws)  # (3·draws, K, n)
    double, single = [], []
    for k in range(draws):
        J1, J2, J3 = Js[3 * k], Js[3 * k + 1], Js[3 * k + 2]
        double.append(copy.deepcopy(method).weights(torch.stack([J1, J2, J3])))
        single.append(copy.deepcopy(method).weights(torch.stack([J1, J1, J3])))
    bias = -gamma * sigma**2 * n * (lam0 - lam0.mean())  # E[J1J1ᵀ] = JJᵀ + σ²nI, then the projection's centring
    return exact, torch.stack(double), torch.stack(single), bias


def test_double_sampling_is_unbiased_where_a_single_sample_is_not():
    """The paper's point, measured: E[λ_1] equals the true-gradient step with J_ξ1 J_ξ2ᵀ, and is off by
    −γσ²n(λ − λ̄𝟙) with J_ξ1 J_ξ1ᵀ (E[J_ξ J_ξᵀ] = JJᵀ + σ²nI). Every draw keeps λ_1 interior (asserted), where
    the projection is the affine map v ↦ v − (Σv − 1)/K·𝟙, so E[λ_1] is the projected expected step exactly.

    Bound: the mean of N = 250 draws has standard error SE = sd/√N (sd measured); unbiased means
    |mean − exact| ≤ 4 SE (a false failure has probability ~6e-5 per seed), the single sample's mean is > 10 SE
    away and within 4 SE of exact + predicted bias. 3 seeds; 3/3 pass. Measured (N = 1000, 5 seeds): the
    double-sampled means lie within 2.8 SE of the exact step, the single-sample means 85-91 SE away and
    within 1.2 SE of exact + predicted bias (bias 0.037 per coordinate, SE 4e-4)."""
    for seed in range(3):
        exact, double, single, bias = _unbiasedness_draws(seed, draws=250)
        N = double.shape[0]
        assert float(double.min()) > 0 and float(single.min()) > 0, "a draw hit the boundary: the affine argument fails"
        se_double = double.std(0) / math.sqrt(N)  # (K,)
        se_single = single.std(0) / math.sqrt(N)
        assert bool(((double.mean(0) - exact).abs() <= 4 * se_double).all()), (seed, (double.mean(0) - exact) / se_double)
        assert bool(((single.mean(0) - exact).abs() > 10 * se_single).all()), (seed, (single.mean(0) - exact) / se_single)
        assert bool(((single.mean(0) - exact - bias).abs() <= 4 * se_single).all()), (seed, (single.mean(0) - exact - bias) / se_single)


def test_converges_to_the_pareto_set_of_the_noisy_biquadratic():
    """noisy-biquad (σ = 0.1, f_i = ||x − a_i||², K = n = 2, SGD lr η = 0.05, T = 200 steps, 8 starts × 2 seeds):
    every start ends within a derived high-probability bound of the Pareto set P = conv{a_i}, and the mean
    distance within the bound on its expectation. All 16 starts pass.

    Derivation: d = J_ξ3ᵀλ = 2(x − p) + σξ3ᵀλ with p = Σλ_i a_i ∈ P, so by convexity of dist(·, P):
    D_{t+1} ≤ (1 − 2η) D_t + ησ||ξ3ᵀλ||, hence D_T ≤ (1 − 2η)^T D_0 + S with S = Σ_k w_k ||ξ3_kᵀλ_k||,
    w_k = ησ(1 − 2η)^k (Σw = σ/2, Σw² = ησ²/(4(1 − η))).
    * Expectation: ξ3 is independent of λ (the third sample), ξ3ᵀλ ~ N(0, ||λ||²I), ||λ|| ≤ 1, so
      E[S] ≤ σ E[χ_2]/2 = 0.063; the 16 starts are independent: mean ≤ 0.063 + 4·√(Σw²/16).
    * Per start: ||ξ3ᵀλ|| ≤ ||ξ3||_F, and Σ w_k ||ξ3_k||_F is √(Σw²)-Lipschitz in Gaussian noise with mean
      σ E[χ_4]/2 = 0.094, so P(S > 0.094 + r) ≤ exp(−r²/(2Σw²)) = 1e-6 at r = 0.06.
    Measured: mean final distance 0.006, max 0.017 (from D_0 = 0.03-4.2); bounds 0.074 (mean) and 0.154 (per start)."""
    sigma, eta, T = 0.1, 0.05, 200
    sum_w2 = eta * sigma**2 / (4 * (1 - eta))
    mean_chi2, mean_chi4 = math.sqrt(math.pi / 2), 3 * math.sqrt(math.pi / 2) / 2  # E[χ_2], E[χ_4]
    distances = []
    for seed in range(2):
        start = run("modo", "noisy-biquad", steps=0, lr=eta, seed=seed, optimizer="sgd")
        result = run("modo", "noisy-biquad", steps=T, lr=eta, seed=seed, optimizer="sgd")
        assert torch.isfinite(result.f_final).all()
        bound = (1 - 2 * eta) ** T * start.distance + sigma * mean_chi4 / 2 + 0.06  # per start, (B,)
        assert bool((result.distance <= bound).all()), (seed, start.distance, result.distance)
        distances.append(result.distance)
    distances = torch.cat(distances)
    assert float(distances.mean()) <= sigma * mean_chi2 / 2 + 4 * math.sqrt(sum_w2 / distances.numel())
    exact = run("modo", "biquad", steps=T, lr=eta, seed=0, optimizer="sgd")  # σ = 0: converges exactly
    assert float(exact.distance.max()) < 1e-6


def test_second_step_keeps_weight_off_a_zero_row_at_every_scale():
    """The "strongly stationary" entry of properties.py: J = [g; 0] is weakly (not strongly) stationary; with ρ > 0
    the second λ keeps weight on g (d ≠ 0) at every scale of g (1e-6..1e12), even when the first step lands on (0, 1)."""
    for scale in (1e-6, 1e-2, 1.0, 10.0, 1e3, 1e6, 1e12):
        J = torch.tensor([[scale, 0.0], [0.0, 0.0]], dtype=torch.float64)
        method = MoDo()
        method(J)
        d = method(J)
        assert float(method.lambd[0]) > 0 and float(d.norm()) > 0, scale


def test_degenerate_inputs():
    for name, J in degenerate_jacobians().items():
        method = MoDo()
        for _ in range(3):
            d = method(J)
        lam = method.lambd
        assert torch.isfinite(d).all() and float(lam.min()) >= 0 and abs(float(lam.sum()) - 1) < 1e-12, name
        torch.testing.assert_close(d, lam.to(J) @ J, msg=name)
        if name in ("all-zero", "identical"):  # (JJᵀ + ρI)λ has equal entries: λ stays uniform
            torch.testing.assert_close(lam, torch.full_like(lam, 1 / 3))
        if name == "opposite":  # symmetric: λ = (½, ½), d = 0
            torch.testing.assert_close(d, torch.zeros_like(d), atol=1e-12, rtol=0)
        if name == "single-task":
            torch.testing.assert_close(lam, torch.ones(1, dtype=torch.float64))
        if name == "huge-scale":  # the λ step lands on a vertex
            assert float(lam.max()) == 1.0
    # float32: the same λ as float64 (the K×K product is formed in float64), d to float32 rounding
    for name, J in random_jacobians(seed=4, shapes=[(3, 20), (5, 50)], per_shape=3):
        m64, m32 = MoDo(), MoDo()
        for _ in range(3):
            d64, d32 = m64(J), m32(J.float())
        assert d32.dtype == torch.float32
        torch.testing.assert_close(m32.lambd, m64.lambd, rtol=0, atol=1e-5, msg=name)
        torch.testing.assert_close(d32.double(), d64, rtol=1e-5, atol=1e-5 * float(J.norm(dim=1).sum()), msg=name)


def test_bad_inputs():
    with pytest.raises(NonFiniteError):
        MoDo()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    Js = torch.ones(3, 2, 4, dtype=torch.float64)
    Js[2, 0, 0] = float("inf")  # a non-finite third sample (only d uses it) is caught too
    with pytest.raises(NonFiniteError):
        MoDo()(Js)
    with pytest.raises(NonFiniteError, match="overflows"):
        MoDo()(torch.full((2, 4), 1e160, dtype=torch.float64))
    with pytest.raises(ValueError, match="samples"):
        MoDo()(torch.ones(4, 2, 3, dtype=torch.float64))
    method = MoDo()
    method(j_base())
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(3, 3, dtype=torch.float64))
    method.reset()
    method(torch.ones(3, 3, dtype=torch.float64))
    assert method.t == 1
    for kwargs in ({"gamma": 0.0}, {"rho": -1.0}, {"samples": 1}, {"gamma": float("nan")}):
        with pytest.raises(ValueError):
            MoDo(**kwargs)


def test_backward_matches_the_explicit_jacobian():
    # a second, identical instance gives the expected directions without advancing the state under test
    asserts.assert_backward_matches_explicit_jacobian(MoDo(), reference=MoDo(), atol=1e-10)


def test_runs_on_the_noisy_biquadratic_from_the_cli(capsys):
    assert main(["run", "modo", "--problem", "noisy-biquad", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "PS-measure" in out and "nan" not in out.lower()
    assert main(["run", "modo", "--problem", "noisy-biquad", "--steps", "20", "-p", "samples=2"]) == 0
