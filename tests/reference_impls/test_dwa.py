"""DWA (Liu et al., CVPR 2019, Sec. 3.3): the claims of the paper, checked exactly or on a toy.

w_k(e) = K exp(r_k/T) / Σ_i exp(r_i/T), r_k = L̄_k(e−1)/L̄_k(e−2) on epoch-averaged losses, w = 𝟙 in
epochs 0 and 1, T = 2.
"""

import math

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.hooks import defined_hooks
from reference_impls.loss_balancing.dwa import DWA
from reference_impls.problems import get_problem
from reference_impls.runner import run

SEEDS = range(5)
EPS = torch.finfo(torch.float64).eps


def _reference_weights(r: list[float], T: float = 2.0) -> torch.Tensor:
    """K exp(r_k/T)/Σ exp(r_i/T) in Python floats (the formula of the paper, computed independently)."""
    e = [math.exp(x / T) for x in r]
    return torch.tensor([len(r) * x / sum(e) for x in e], dtype=torch.float64)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("K", [1, 2, 3, 7])
def test_weights_sum_to_K_and_rise_with_the_loss_ratio(seed, K):
    g = torch.Generator().manual_seed(seed)
    r = torch.exp(torch.randn(K, generator=g, dtype=torch.float64))  # positive ratios
    method = DWA()
    w = method.weights_from_ratios(r)  # (K,)
    assert abs(float(w.sum()) - K) <= 4 * K * K * EPS  # Σw = K up to the rounding of K summed terms
    torch.testing.assert_close(w, _reference_weights(r.tolist()), rtol=16 * EPS, atol=0)
    # order: the task whose loss falls slowest (largest r) gets the largest weight, strictly
    order_r, order_w = torch.argsort(r), torch.argsort(w)
    assert torch.equal(order_r, order_w)
    if K > 1:
        i = int(torch.argmax(r))
        bumped = r.clone()
        bumped[i] += 0.1  # raising one ratio raises that task's weight and lowers every other one
        w2 = method.weights_from_ratios(bumped)
        assert float(w2[i]) > float(w[i]) and bool((torch.cat([w2[:i], w2[i + 1 :]]) < torch.cat([w[:i], w[i + 1 :]])).all())
    # T → ∞ gives 𝟙 (|w_k − 1| <= spread(r)/T for large T)
    hot = DWA(temperature=1e9).weights_from_ratios(r)
    assert float((hot - 1).abs().max()) <= float(r.max() - r.min()) / 1e9 + 4 * K * EPS


@pytest.mark.parametrize("seed", SEEDS)
def test_epoch_averaged_ratios_and_ones_in_the_first_two_epochs(seed):
    # A stream of per-step losses (4 epochs of 5 steps, K = 3, noisy within each epoch): the weights are
    # 𝟙 in epochs 0 and 1, and in epoch e >= 2 the formula on the epoch MEANS of epochs e−1 and e−2.
    g = torch.Generator().manual_seed(seed)
    K, steps_per_epoch, epochs = 3, 5, 4
    losses = torch.exp(torch.randn(epochs, steps_per_epoch, K, generator=g, dtype=torch.float64))  # (E, S, K)
    method = DWA()
    step = 0
    for e in range(epochs):
        for s in range(steps_per_epoch):
            w = method.weights(losses[e, s], step)
            if e < 2:
                assert torch.equal(w, torch.ones(K, dtype=torch.float64))
            else:
                means = losses[e - 1].mean(0), losses[e - 2].mean(0)  # L̄(e−1), L̄(e−2)
                expected = _reference_weights((means[0] / means[1]).tolist())
                torch.testing.assert_close(w, expected, rtol=64 * EPS, atol=0)
                # the per-batch ratio of the last steps gives other weights: averaging is what is tested
                last_batch = _reference_weights((losses[e - 1, -1] / losses[e - 2, -1]).tolist())
                assert float((last_batch - expected).abs().max()) > 1e-3
            method.observe(losses[e, s], step)
            step += 1
        method.on_epoch_end(e)
    assert method.epochs_closed == epochs


@pytest.mark.parametrize("seed", SEEDS)
def test_the_plateaued_task_gets_the_larger_weight(seed):
    # Task 0 at a plateau (epoch means constant, r_0 = 1), task 1 improving (means halve, r_1 = ½), with
    # zero-mean noise inside each epoch: from epoch 2 on w_0 = 2e^{1/2}/(e^{1/2} + e^{1/4}) > 1 > w_1.
    g = torch.Generator().manual_seed(seed)
    method = DWA()
    step = 0
    for e in range(5):
        noise = torch.rand(6, 2, generator=g, dtype=torch.float64) - 0.5  # (S, 2) in [−½, ½)
        noise = noise - noise.mean(0)  # zero mean, so the epoch means are exactly (1, 0.5^e)·scale
        batch_losses = torch.tensor([3.0, 3.0 * 0.5**e], dtype=torch.float64) * (1 + 0.5 * noise)  # (S, 2)
        for s in range(6):
            w = method.weights(batch_losses[s], step)
            if e >= 2:
                expected = _reference_weights([1.0, 0.5])
                torch.testing.assert_close(w, expected, rtol=1e-12, atol=0)
                assert float(w[0]) > 1 > float(w[1])
            method.observe(batch_losses[s], step)
            step += 1
        method.on_epoch_end(e)


def _spy(monkeypatch):
    """Record the losses passed to DWA.observe and the weights DWA.weights returns, in call order."""
    seen = {"observed": [], "weights": []}
    observe, weights = DWA.observe, DWA.weights

    def spy_observe(self, losses, step):
        seen["observed"].append(losses.detach().clone())
        return observe(self, losses, step)

    def spy_weights(self, losses, step=0):
        w = weights(self, losses, step)
        seen["weights"].append(w.clone())
        return w

    monkeypatch.setattr(DWA, "observe", spy_observe)
    monkeypatch.setattr(DWA, "weights", spy_weights)
    return seen


def test_runner_on_mtl_regression_uses_epoch_averages_of_the_batch_losses(monkeypatch):
    # batch_size 128 of N = 512 rows: an epoch is 4 steps; 16 steps = 4 epochs. The weights used at
    # every step of epoch e >= 2 are the formula on the means of the 4 batch losses of epochs e−1, e−2.
    seen = _spy(monkeypatch)
    problem = get_problem("mtl-regression", batch_size=128)
    result = run("dwa", problem, steps=16, lr=0.01)
    observed = torch.stack(seen["observed"]).reshape(4, 4, 2)  # (epoch, step, K)
    used = torch.stack(seen["weights"]).reshape(4, 4, 2)  # one weights() call per train_step
    assert torch.equal(used[:2], torch.ones(2, 4, 2, dtype=used.dtype))
    for e in (2, 3):
        means = observed[e - 1].mean(0), observed[e - 2].mean(0)  # L̄(e−1), L̄(e−2)
        expected = _reference_weights((means[0] / means[1]).tolist())
        for s in range(4):
            torch.testing.assert_close(used[e, s], expected, rtol=64 * EPS, atol=0)
        assert abs(float(used[e, 0].sum()) - 2) <= 16 * EPS
    method = result.extra["methods"][0]
    assert method.epochs_closed == 4 and len(method.epoch_averages) == 2
    torch.testing.assert_close(method.epoch_averages[-1], observed[3].mean(0), rtol=1e-15, atol=0)


def test_runner_on_points_treats_every_step_as_an_epoch():
    # Full-batch biquad (f_i = ||x − a_i||², a_1 = 0, a_2 = e_1), SGD: x_{t+1} = x_t − lr Σ_i w_i(t) 2(x_t − a_i)
    # with w(0) = w(1) = 𝟙 and w(t) = K softmax((f(t−1)/f(t−2))/T): the recorded trajectory follows this
    # recursion exactly (up to rounding), and the fixed point is the equal-weight point (½, 0) (r → 𝟙).
    lr = 0.05
    result = run("dwa", "biquad", steps=300, lr=lr, optimizer="sgd")
    xs, fs = result.x, result.f  # (T+1, B, n), (T+1, B, K)
    anchors = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    for t in range(6):
        for b in range(xs.shape[1]):
            w = torch.ones(2, dtype=torch.float64) if t < 2 else _reference_weights((fs[t - 1, b] / fs[t - 2, b]).tolist())
            d = (w[:, None] * 2 * (xs[t, b][None] - anchors)).sum(0)  # Σ w_i ∇f_i, (n,)
            torch.testing.assert_close(xs[t + 1, b], xs[t, b] - lr * d, rtol=0, atol=1e-13 * (1 + float(xs[t, b].norm())))
    assert float((result.x_final - torch.tensor([0.5, 0.0], dtype=torch.float64)).norm(dim=1).max()) < 1e-10


def test_interface_hooks_reset_and_registry():
    method = reference_impls.create("dwa")
    assert method.temperature == 2.0  # the paper's T = 2
    assert set(defined_hooks(method)) == {"observe", "on_epoch_end"}
    f = torch.tensor([2.0, 1.0], dtype=torch.float64)
    for e in range(3):
        method.observe(f * torch.tensor([1.0, e + 1.0], dtype=torch.float64), e)  # task 1 rises
        method.on_epoch_end(e)
    assert not torch.equal(method.weights(f, 3), torch.ones(2, dtype=torch.float64))
    method.reset()
    assert torch.equal(method.weights(f, 0), torch.ones(2, dtype=torch.float64)) and method.epochs_closed == 0
    # objective = Σ w f, no gradient through w
    x = torch.tensor([1.0, 3.0], dtype=torch.float64, requires_grad=True)
    method.objective(x, 0).backward()
    assert torch.equal(x.grad, torch.ones(2, dtype=torch.float64))


def test_bad_and_degenerate_input():
    for T in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            DWA(temperature=T)
    with pytest.raises(ValueError, match="num_tasks"):
        DWA(num_tasks=0)
    method = DWA()
    with pytest.raises(ValueError, match="dwa: the loss of task 1 is -0.5"):
        method.observe(torch.tensor([1.0, -0.5]), 0)
    with pytest.raises(NonFiniteError, match="dwa: the loss of task 0"):
        method.observe(torch.tensor([float("nan"), 1.0]), 0)
    with pytest.raises(ValueError, match="no step observed"):
        DWA().on_epoch_end(0)
    zero = DWA()
    zero.observe(torch.tensor([1.0, 0.0]), 0)
    zero.on_epoch_end(0)  # a zero average is only an error once a ratio divides by it
    zero.observe(torch.tensor([1.0, 1.0]), 1)
    with pytest.raises(ValueError, match="epoch-averaged loss of task 1 was 0 in epoch 0"):
        zero.on_epoch_end(1)
    # a single zero batch loss is fine: only the epoch average divides
    ok = DWA()
    ok.observe(torch.tensor([1.0, 0.0]), 0)
    ok.observe(torch.tensor([1.0, 2.0]), 1)
    ok.on_epoch_end(0)
    with pytest.raises(ValueError, match="2 tasks"):
        ok.observe(torch.tensor([1.0, 2.0, 3.0]), 2)
    # overflowing ratio (1e300 / 1e-300): the limit of the softmax, not NaN
    big = DWA()
    for e, f in enumerate(([1e-300, 1.0], [1e300, 1.0])):
        big.observe(torch.tensor(f, dtype=torch.float64), e)
        big.on_epoch_end(e)
    assert torch.equal(big.weights(torch.ones(2, dtype=torch.float64), 2), torch.tensor([2.0, 0.0], dtype=torch.float64))
    # huge and tiny but finite ratios: still Σw = K
    w = DWA().weights_from_ratios(torch.tensor([1e-12, 1e12], dtype=torch.float64))
    assert float(w.sum()) == 2.0 and bool(torch.isfinite(w).all())
    # K = 1: always w = 1; float32 losses give float32 weights
    one = DWA()
    for e in range(4):
        assert one.weights(torch.tensor([0.5 ** e]), e).tolist() == [1.0]
        one.observe(torch.tensor([0.5 ** e]), e)
        one.on_epoch_end(e)
    assert one.weights(torch.tensor([1.0], dtype=torch.float32), 4).dtype == torch.float32
