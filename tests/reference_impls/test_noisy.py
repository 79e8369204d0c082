"""The noisy point problems (problems/noisy.py) and the runner's stochastic oracle.

Claims: the deterministic parts are the base problem's exactly; the oracle's samples have the
moments the API states (E[J_s] = J, E[J_s J_tᵀ] = J Jᵀ for s ≠ t, E[J_s J_sᵀ] = J Jᵀ + σ² n I), checked
by Monte Carlo on 3 seeds with 5-standard-error bounds (all seeds pass); draws are reproducible from
a seed; the runner feeds each method ``jacobian_samples`` fresh samples per step and measures with
the exact F and J; σ = 0 reproduces the base problem's run bit for bit.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from modl.cli import main
from reference_impls.core.aggregator import Aggregator
from reference_impls.gradient_weighting.mgda import MGDA
from reference_impls.problems import get_problem, problem_ids
from reference_impls.problems.noisy import NoisyBiQuad, NoisyCAGradToy, NoisyProblem
from reference_impls.runner import run

F64 = torch.float64


def test_registered_ids_knobs_and_exact_parts_are_the_base_problems():
    assert {"noisy-biquad", "noisy-cagrad-toy"} <= set(problem_ids())
    for pid, base_id, cls in [("noisy-biquad", "biquad", NoisyBiQuad), ("noisy-cagrad-toy", "cagrad-toy", NoisyCAGradToy)]:
        p, base = get_problem(pid, sigma=0.3), get_problem(base_id)
        assert isinstance(p, cls) and p.id == pid and p.sigma == 0.3 and (p.K, p.n) == (base.K, base.n)
        assert (cls.default_optimizer, cls.default_steps, cls.default_lr) == (type(base).default_optimizer, type(base).default_steps, type(base).default_lr)
        assert (p.hv_reference, p.loss_lower_bound, p.has_pareto_set, p.has_closed_form) == (
            base.hv_reference, base.loss_lower_bound, base.has_pareto_set, base.has_closed_form)
        x = p.initial_points(3)
        assert torch.equal(x, base.initial_points(3))
        F, J = p.losses_and_jacobian(x)
        Fb, Jb = base.losses_and_jacobian(x)
        assert torch.equal(F, Fb) and torch.equal(J, Jb)
        assert torch.equal(p.distance_to_pareto_set(x), base.distance_to_pareto_set(x))
    # base knobs are forwarded; a Problem instance is accepted; the id follows the base
    p = get_problem("noisy-biquad", K=3, n=4, sigma=0.0)
    assert (p.K, p.n) == (3, 4) and torch.equal(p.anchors, get_problem("biquad", K=3, n=4).anchors)
    assert NoisyProblem(get_problem("vlmop2"), sigma=0.1).id == "noisy-vlmop2"


def test_bad_knobs_raise():
    for sigma in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
            get_problem("noisy-biquad", sigma=sigma)
    with pytest.raises(ValueError, match="already noisy"):
        NoisyProblem(get_problem("noisy-biquad"))
    with pytest.raises(ValueError, match="knobs can only be given with a base problem id"):
        NoisyProblem(get_problem("biquad"), K=3)
    p = get_problem("noisy-biquad")
    with pytest.raises(ValueError, match="samples must be >= 1"):
        p.sample_value_and_jacobian(p.initial_points(0), p.noise_generator(0), samples=0)
    with pytest.raises(ValueError, match="do not match"):
        p.perturb(torch.zeros(3, dtype=F64), torch.zeros(2, 2, dtype=F64), p.noise_generator(0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sample_moments_match_the_stated_law(seed):
    """E[J_s] = J, E[F_s] = F, E[J_s J_tᵀ] = JJᵀ (s ≠ t), E[J_s J_sᵀ] = JJᵀ + σ² n I, Cov(ξ) = I.

    S = 20 000 pairs at one point of biquad (K = 3, n = 4, σ = 0.5); every entry within 5 standard
    errors of its expectation (the standard error computed from the law itself)."""
    sigma, S = 0.5, 20_000
    p = get_problem("noisy-biquad", K=3, n=4, sigma=sigma)
    x = p.initial_points(seed)[0]  # (n,)
    F, J = p.losses_and_jacobian(x)  # (K,), (K, n)
    Fs, Js = p.sample_value_and_jacobian(x, p.noise_generator(seed), samples=2 * S)  # (2S, K), (2S, K, n)
    assert Fs.shape == (2 * S, 3) and Js.shape == (2 * S, 3, 4)
    se = sigma / S**0.5
    assert float((Js[:S].mean(0) - J).abs().max()) <= 5 * se
    assert float((Fs[:S].mean(0) - F).abs().max()) <= 5 * se
    M = J @ J.T  # (K, K)
    same = torch.einsum("skn,sln->kl", Js[:S], Js[:S]) / S  # E[J_s J_sᵀ]
    cross = torch.einsum("skn,sln->kl", Js[:S], Js[S:]) / S  # E[J_s J_tᵀ], s ≠ t
    # sd of one product entry ≤ σ·||g_k|| + σ·||g_l|| + σ²·√n; the bound below uses that
    norms = J.norm(dim=1)
    sd = sigma * (norms[:, None] + norms[None, :]) + sigma**2 * 4**0.5 * 2  # (K, K), generous factor 2 on σ²√n
    assert bool(((cross - M).abs() <= 5 * sd / S**0.5).all())
    assert bool(((same - M - sigma**2 * 4 * torch.eye(3, dtype=F64)).abs() <= 5 * sd / S**0.5).all())
    # the bias MoDo's double sampling removes is visible: the diagonal is inflated by σ²n = 1.0
    assert float((same - M).diagonal().min()) > 0.5


def test_draws_are_reproducible_and_on_their_own_stream():
    p = get_problem("noisy-biquad", sigma=0.2)
    x = p.initial_points(0)
    a = p.sample_value_and_jacobian(x, p.noise_generator(7), samples=3)
    b = p.sample_value_and_jacobian(x, p.noise_generator(7), samples=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = p.perturb(*p.losses_and_jacobian(x), p.noise_generator(7), samples=3)  # the same draw from F, J at hand
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    d = p.sample_value_and_jacobian(x, p.noise_generator(8), samples=3)
    assert not torch.equal(a[1], d[1])
    # the noise is not the starting points' stream: ξ from noise_generator(0) ≠ randn from manual_seed(0)
    xi = (p.sample_value_and_jacobian(x, p.noise_generator(0))[1][0] - p.jacobian(x)) / 0.2
    plain = torch.randn(xi.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert not torch.allclose(xi, plain)
    # σ = 0: exact values, no perturbation at all
    p0 = get_problem("noisy-biquad", sigma=0.0)
    F0, J0 = p0.sample_value_and_jacobian(x, p0.noise_generator(0), samples=2)
    assert torch.equal(F0, p0.losses(x).expand(2, -1, -1)) and torch.equal(J0, p0.jacobian(x).expand(2, -1, -1, -1))
    # a 1-D x gives (S, K), (S, K, n); float32 problems sample in float32
    F1, J1 = p.sample_value_and_jacobian(x[0], p.noise_generator(0), samples=4)
    assert F1.shape == (4, 2) and J1.shape == (4, 2, 2)
    p32 = get_problem("noisy-biquad", dtype=torch.float32)
    assert p32.sample_value_and_jacobian(p32.initial_points(0), p32.noise_generator(0))[1].dtype == torch.float32


@pytest.mark.parametrize("fast", [True, False])
def test_sigma_zero_run_equals_the_base_problems_bit_for_bit(fast):
    for pid, steps in [("biquad", 60), ("cagrad-toy", 60)]:
        base = run("mgda", pid, steps=steps, lr=0.05, seed=1, fast=fast)
        noisy = run("mgda", get_problem(f"noisy-{pid}", sigma=0.0), steps=steps, lr=0.05, seed=1, fast=fast)
        assert torch.equal(base.x, noisy.x) and torch.equal(base.f, noisy.f)


def test_noisy_run_is_seeded_and_measured_with_the_exact_oracle():
    a = run("mgda", "noisy-biquad", steps=100, seed=3)
    b = run("mgda", "noisy-biquad", steps=100, seed=3)
    c = run("mgda", "noisy-biquad", steps=100, seed=4)
    exact = run("mgda", "biquad", steps=100, seed=3)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x[:, 0], c.x[:, 0]) or not torch.equal(a.x[-1], c.x[-1])
    assert not torch.equal(a.x[-1], exact.x[-1])  # the noise moved the iterates
    base = get_problem("biquad")
    torch.testing.assert_close(a.f_final, base.losses(a.x_final), rtol=0, atol=0)  # exact F at the final iterate
    torch.testing.assert_close(a.distance, base.distance_to_pareto_set(a.x_final), rtol=0, atol=0)
    # fast (numpy) and torch loops draw the same noise: the same run up to the closed form's rounding
    slow = run("mgda", "noisy-biquad", steps=100, seed=3, fast=False)
    torch.testing.assert_close(a.x, slow.x, rtol=1e-12, atol=1e-12)


class _Recorder(Aggregator):
    """Records the Jacobians it is given; d = mean of the rows of the first sample."""

    name: ClassVar[str] = "recorder"

    def __init__(self, samples: int) -> None:
        self.jacobian_samples = samples
        self.seen: list[torch.Tensor] = []

    def __call__(self, J, losses=None):
        self.seen.append(J.clone())
        return (J[0] if J.ndim == 3 else J).mean(0)


def test_runner_gives_each_method_its_jacobian_samples():
    p = get_problem("noisy-biquad", sigma=0.3)
    result = run(_Recorder(3), p, steps=4, lr=0.01, seed=0)
    methods = result.extra["methods"]
    J0 = p.jacobian(p.initial_points(0))  # (B, K, n) at the starts
    for b, m in enumerate(methods):
        assert len(m.seen) == 4 and all(J.shape == (3, 2, 2) for J in m.seen)
        first = m.seen[0]
        assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])  # independent samples
        # each sample is J + σξ with |ξ| < 6 (a 6-sigma event has probability ~1e-9 per entry)
        assert float((first - J0[b]).abs().max()) < 6 * 0.3
    # one sample: (K, n); on an exact problem S > 1 gives S identical copies of J
    single = run(_Recorder(1), p, steps=2, lr=0.01, seed=0).extra["methods"][0]
    assert all(J.shape == (2, 2) for J in single.seen)
    exact = run(_Recorder(2), "biquad", steps=2, lr=0.01, seed=0).extra["methods"][0]
    assert exact.seen[0].shape == (2, 2, 2) and torch.equal(exact.seen[0][0], exact.seen[0][1])


def test_runner_refuses_what_it_cannot_sample():
    with pytest.raises(ValueError, match="jacobian_samples must be"):
        run(_Recorder(0), "noisy-biquad", steps=2)
    from reference_impls.loss_balancing.imtl_l import IMTLL

    lw = IMTLL()
    lw.jacobian_samples = 2
    with pytest.raises(ValueError, match="jacobian_samples must be 1 for a loss weighting"):
        run(lw, "noisy-biquad", steps=2)
    from reference_impls.core.sets import SetMethod

    class _Set(SetMethod):
        needs_preferences = False

        def step(self, X, F, J, preferences):
            return J.sum(1)  # (P, n)

    with pytest.raises(ValueError, match="set method"):
        run(_Set(), "noisy-biquad", steps=2)
    run(_Set(), "biquad", steps=2)  # the same method runs on the exact problem


def test_mgda_approaches_the_pareto_set_under_noise():
    """MGDA with noise σ = 0.1 on biquad (SGD, lr 0.05, 200 steps, the problem's defaults): every start
    ends within 0.1 of conv{a_1, a_2} (the noise floor), on 3 seeds (all pass)."""
    for seed in range(3):
        start = run(MGDA(), "noisy-biquad", steps=0, seed=seed)
        result = run(MGDA(), "noisy-biquad", seed=seed)
        assert bool((result.distance < start.distance).all())
        assert float(result.distance.max()) < 0.1, result.distance


def test_cli_runs_on_the_noisy_problems(capsys):
    assert main(["run", "mgda", "--problem", "noisy-biquad", "--steps", "50", "-p", "problem.sigma=0.2"]) == 0
    out = capsys.readouterr().out
    assert "noisy-biquad" in out and "PS-measure" in out and "nan" not in out.lower()
    assert main(["run", "mgda", "--problem", "noisy-cagrad-toy", "--steps", "50", "--lr", "0.01"]) == 0
