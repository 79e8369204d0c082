"""CR-MOGM (Zhou et al., NeurIPS 2022): the base method's weights averaged over steps, d = Jᵀλ_t."""

import math

import pytest
import torch

from modl.cli import main
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.gradient_weighting.cr_mogm import CRMOGM
from reference_impls.gradient_weighting.mgda import MGDA
from reference_impls.gradient_weighting.upgrad import UPGrad
from reference_impls.problems.noisy import NoisyProblem
from reference_impls.runner import run
from tests.reference_impls import asserts
from tests.reference_impls.asserts import degenerate_jacobians, random_jacobians
from tests.reference_impls.golden import j_base


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_golden_j_base(dtype, atol):
    # MGDA on J_base: λ̂ = (0.6, 0.4), d = (0, 1, 1) (TorchJD's value). λ_1 = λ̂_1, and a repeated input keeps it.
    method = CRMOGM()
    J = j_base(dtype)
    for _ in range(3):
        torch.testing.assert_close(method(J), torch.tensor([0.0, 1.0, 1.0], dtype=dtype), rtol=0, atol=atol)
    torch.testing.assert_close(method.lambd, torch.tensor([0.6, 0.4], dtype=torch.float64), rtol=0, atol=1e-7)
    # from λ_0 = 𝟙/K: λ_1 = 0.9·(½, ½) + 0.1·(0.6, 0.4) = (0.51, 0.49), d = 0.51 g_1 + 0.49 g_2 = (0.9, 1, 1)
    uniform = CRMOGM(initial="uniform")
    torch.testing.assert_close(uniform(J), torch.tensor([0.9, 1.0, 1.0], dtype=dtype), rtol=0, atol=atol)


def test_weights_are_the_moving_average_of_the_base_weights_and_d_uses_them():
    """The recursion λ_t = (1 − α_t)λ_{t−1} + α_t W(J_t), recomputed from a separate MGDA instance on 30 changing
    random Jacobians (K = 2..5), with α_t = α t^{−p} for p = 0 and ½; d = J_tᵀλ_t (the base's direction with the
    averaged weights)."""
    gen = torch.Generator().manual_seed(0)
    for K, power in [(2, 0.0), (3, 0.5), (5, 0.0)]:
        method, mgda = CRMOGM(alpha=0.2, alpha_power=power), MGDA()
        lam = None
        for t in range(1, 31):
            J = torch.randn(K, 6, generator=gen, dtype=torch.float64)
            d = method(J)
            lam_hat = mgda.weights(J)
            a = 0.2 / t**power
            lam = lam_hat if lam is None else (1 - a) * lam + a * lam_hat
            torch.testing.assert_close(method.base_weights, lam_hat, rtol=0, atol=1e-14)
            torch.testing.assert_close(method.lambd, lam, rtol=0, atol=1e-14)
            torch.testing.assert_close(d, lam @ J, rtol=0, atol=1e-13)
            assert abs(float(method.lambd.sum()) - 1) < 1e-14 and float(method.lambd.min()) >= 0


def test_averaged_weights_have_the_predicted_lower_variance_on_the_noisy_toy():
    """The paper's mechanism, measured: at a fixed x of noisy-biquad (σ = 0.3, x = (0.4, 0.1), where MGDA's
    exact weights are (0.6, 0.4)), the base MGDA weights λ̂_t of i.i.d. oracle draws have variance V, and the
    averaged λ_t (α = 0.1) has stationary variance α/(2 − α)·V = 0.0526 V (EMA of i.i.d. inputs), while both
    have the same mean.

    Bound: 3000 steps (the first 200 dropped), 3 seeds. var̂(λ_t) of an AR(1) with φ = 1 − α has relative standard
    error ≈ √(2(1 + φ²)/(N(1 − φ²))) = 0.08, var̂(λ̂) ≈ √(2/N) = 0.03: the ratio is asserted within ±35 %
    (> 4 SE) of α/(2 − α), and the two means within 4 standard errors of their difference. 3/3 seeds pass;
    measured (4000 steps, 8 seeds): ratio/(α/(2 − α)) in 0.95-1.09."""
    alpha = 0.1
    problem = NoisyProblem("biquad", sigma=0.3)
    x = torch.tensor([0.4, 0.1], dtype=torch.float64)
    F, J = problem.losses_and_jacobian(x)
    predicted = alpha / (2 - alpha)
    for seed in range(3):
        _, Js = problem.perturb(F, J, problem.noise_generator(seed), samples=3000)  # (N, K, n)
        method = CRMOGM(alpha=alpha)
        lam, lam_hat = [], []
        for t in range(Js.shape[0]):
            method(Js[t])
            lam.append(float(method.lambd[0]))
            lam_hat.append(float(method.base_weights[0]))
        lam, lam_hat = torch.tensor(lam[200:]), torch.tensor(lam_hat[200:])
        ratio = float(lam.var() / lam_hat.var())
        assert 0.65 * predicted <= ratio <= 1.35 * predicted, (seed, ratio / predicted)
        # means: the EMA is unbiased at stationarity; SE of the difference, dominated by the AR(1) mean's
        se = math.sqrt(float(lam_hat.var()) / len(lam_hat) * (2 - alpha) / alpha)
        assert abs(float(lam.mean() - lam_hat.mean())) <= 4 * se, seed


def test_converges_to_the_pareto_set_of_the_noisy_biquadratic():
    """noisy-biquad (σ = 0.1, SGD lr η = 0.05, T = 200 steps, 8 starts × 2 seeds): every start ends within the
    derived bound of P = conv{a_i}. d = J_tᵀλ_t = 2(x − p) + σξ_tᵀλ_t with p = Σλ_i a_i ∈ P and λ_t ∈ Δ, so
    D_{t+1} ≤ (1 − 2η)D_t + ησ||ξ_t||_F; Σ_k ησ(1 − 2η)^k ||ξ_k||_F has mean σE[χ_4]/2 = 0.094 and is
    √(ησ²/(4(1 − η)))-Lipschitz in the Gaussian noise: it exceeds 0.094 + 0.06 with probability ≤ 1e-6.
    Measured: final distances 0.0003-0.019 (mean 0.009, from D_0 = 0.03-4.2); bound 0.154."""
    sigma, eta, T = 0.1, 0.05, 200
    mean_chi4 = 3 * math.sqrt(math.pi / 2) / 2
    for seed in range(2):
        start = run("cr-mogm", "noisy-biquad", steps=0, lr=eta, seed=seed, optimizer="sgd")
        result = run("cr-mogm", "noisy-biquad", steps=T, lr=eta, seed=seed, optimizer="sgd")
        bound = (1 - 2 * eta) ** T * start.distance + sigma * mean_chi4 / 2 + 0.06
        assert bool((result.distance <= bound).all()), (seed, start.distance, result.distance)


def test_other_base_weightings_and_repeated_inputs():
    """On a repeated input the average of identical weights is those weights: CR-MOGM(base) = base, here UPGrad
    and IMTL-G on random Jacobians; a base with training-loop hooks (FAMO's update) or a non-weighting is refused."""
    for name, J in random_jacobians(seed=5, shapes=[(2, 5), (3, 8), (5, 20)], per_shape=2):
        method = CRMOGM(base="upgrad")
        for _ in range(3):
            d = method(J)
        torch.testing.assert_close(d, UPGrad()(J), rtol=1e-10, atol=1e-12 * float(J.norm()), msg=name)
    for bad in ("famo", "graddrop", "ew"):
        with pytest.raises(ValueError, match="cr-mogm"):
            CRMOGM(base=bad)
    with pytest.raises(KeyError):
        CRMOGM(base="no-such-method")


def test_degenerate_inputs():
    for name, J in degenerate_jacobians().items():
        method = CRMOGM()
        for _ in range(3):
            d = method(J)
        lam = method.lambd
        assert torch.isfinite(d).all() and float(lam.min()) >= 0 and abs(float(lam.sum()) - 1) < 1e-12, name
        torch.testing.assert_close(d, lam.to(J) @ J, msg=name)
        torch.testing.assert_close(d, MGDA()(J), rtol=1e-9, atol=1e-9 * float(J.norm(dim=1).sum()), msg=name)
        if name == "single-task":
            torch.testing.assert_close(lam, torch.ones(1, dtype=torch.float64))
    gen = torch.Generator().manual_seed(7)
    for name, J in random_jacobians(seed=6, shapes=[(3, 20)], per_shape=2):  # full rank: λ̂ unique; float32 follows float64
        m64, m32 = CRMOGM(), CRMOGM()
        for k in range(3):
            Jk = J + 0.3 * torch.randn(J.shape, generator=gen, dtype=J.dtype)  # changing inputs: the average is exercised
            d64, d32 = m64(Jk), m32(Jk.float())
        assert d32.dtype == torch.float32
        torch.testing.assert_close(m32.lambd, m64.lambd, rtol=0, atol=1e-4, msg=name)


def test_bad_inputs():
    with pytest.raises(NonFiniteError):
        CRMOGM()(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    method = CRMOGM()
    method(j_base())
    with pytest.raises(ValueError, match="reset"):
        method(torch.ones(3, 3, dtype=torch.float64))
    method.reset()
    method(torch.ones(3, 3, dtype=torch.float64))
    assert method.t == 1
    for kwargs in ({"alpha": 0.0}, {"alpha": 1.5}, {"alpha_power": -1.0}, {"initial": "zeros"}, {"base": "cr-mogm"}):
        with pytest.raises(ValueError):
            CRMOGM(**kwargs)


def test_backward_matches_the_explicit_jacobian():
    asserts.assert_backward_matches_explicit_jacobian(CRMOGM(), reference=CRMOGM(), atol=1e-10)


def test_runs_on_the_noisy_biquadratic_from_the_cli(capsys):
    assert main(["run", "cr-mogm", "--problem", "noisy-biquad", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "PS-measure" in out and "nan" not in out.lower()
    assert main(["run", "cr-mogm", "--problem", "noisy-biquad", "--steps", "20", "-p", "base=upgrad", "-p", "alpha=0.5"]) == 0
