"""``multi-digits``: two overlapped 8×8 digits from scikit-learn's bundled set; the left and right digit are two tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_impls.problems import get_problem
from reference_impls.problems.multi_digits import make_multi_digits
from reference_impls.runner import run


def _sources():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images / 16.0, d.target


def _match(regions: np.ndarray, candidates: np.ndarray) -> list[np.ndarray]:
    """For each region (M, ...), the indices of the source images whose same region is identical."""
    flat = candidates.reshape(len(candidates), -1)
    return [np.flatnonzero((flat == r.reshape(1, -1)).all(1)) for r in regions]


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_each_image_is_its_two_labelled_digits_overlapped_and_test_digits_are_unseen(data_seed):
    """Recover each example's left digit from the pixels only it covers (rows 0–7 × columns 0–3 and rows
    0–3 × columns 0–7) and the right digit likewise: every match carries the example's label, the
    overlap is the pixel-wise maximum, and no source image is used by both splits."""
    images, labels = _sources()
    X, Y, X_test, Y_test = make_multi_digits(N=300, N_test=100, data_seed=data_seed)
    used = []
    for Xs, Ys in ((X, Y), (X_test, Y_test)):
        left = _match(np.concatenate([Xs[:, :8, :4].reshape(len(Xs), -1), Xs[:, :4, 4:8].reshape(len(Xs), -1)], 1),
                      np.concatenate([images[:, :, :4].reshape(len(images), -1), images[:, :4, 4:].reshape(len(images), -1)], 1))
        right = _match(np.concatenate([Xs[:, 4:, 8:].reshape(len(Xs), -1), Xs[:, 8:, 4:8].reshape(len(Xs), -1)], 1),
                       np.concatenate([images[:, :, 4:].reshape(len(images), -1), images[:, 4:, :4].reshape(len(images), -1)], 1))
        indices = set()
        for i in range(len(Xs)):
            assert len(left[i]) >= 1 and len(right[i]) >= 1
            assert set(labels[left[i]]) == {Ys[i, 0]} and set(labels[right[i]]) == {Ys[i, 1]}
            a, b = images[left[i][0]], images[right[i][0]]
            np.testing.assert_array_equal(Xs[i, 4:8, 4:8], np.maximum(a[4:, 4:], b[:4, :4]))  # the overlap
            indices |= set(left[i].tolist()) | set(right[i].tolist())
        used.append(indices)
    assert not used[0] & used[1]


def test_construction_is_seeded_and_knobs_are_checked():
    a, b, c = make_multi_digits(200, 50, 4, 0), make_multi_digits(200, 50, 4, 0), make_multi_digits(200, 50, 4, 1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (200, 12, 12) and 0.0 <= a[0].min() and a[0].max() <= 1.0
    with pytest.raises(ValueError, match="shift must be in 1..8"):
        get_problem("multi-digits", shift=0)
    with pytest.raises(ValueError, match="batch_size must be in 1..N"):
        get_problem("multi-digits", N=100, batch_size=200)


def test_jacobian_and_the_parameter_split_are_the_networks():
    p = get_problem("multi-digits", N=256, N_test=64)
    model = p.reset(3)
    shared, task = p.shared_parameters(), p.task_parameters()
    assert {id(t) for t in shared}.isdisjoint(id(t) for t in task)
    assert {id(t) for t in shared} | {id(t) for t in task} == {id(t) for t in model.parameters()}
    J = p.jacobian()  # (K, n_shared)
    for k in range(p.K):
        logits, _ = model(p.X)
        loss = torch.nn.functional.cross_entropy(logits[:, k], p.Y[:, k])
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, shared)])
        torch.testing.assert_close(J[k], g)
    acc = p.evaluation()["test_accuracy"]
    with torch.no_grad():
        logits, _ = model(p.X_test)
    torch.testing.assert_close(acc, (logits.argmax(2) == p.Y_test).double().mean(0))
    torch.testing.assert_close(acc, p.test_accuracy())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_through_the_runner_learns_both_digits(seed):
    """EW, 150 Adam steps (about 13 epochs): both test accuracies above 0.8 (chance 0.1; 0.856–0.909 measured on
    seeds 0–4), from 2.3 (= log 10) training loss to below 0.7 (0.45–0.54 measured), for seeds 0–2 (3/3)."""
    result = run("ew", "multi-digits", steps=150, seed=seed)
    assert float(result.f[0].min()) > 2.0 and float(result.f_final.max()) < 0.7
    assert float(result.extra["test_accuracy"].min()) > 0.8
    acc = ", ".join(f"{float(v):.4f}" for v in result.extra["test_accuracy"])
    assert f"test accuracy per task: {acc}; test losses: " in result.table()  # what `modl run` prints


@pytest.mark.parametrize("seed", [0, 7])
def test_the_point_problem_is_the_same_networks_on_the_same_data(seed):
    """``multi-digits-set``: solution p is network reset(seed + p) flattened; its losses, test accuracy and
    Jacobian are the network's own (computed by the nn.Module); the layout names the module's tensors."""
    from reference_impls.pareto_set.combination import ParameterLayout
    from reference_impls.set_runner import set_problem

    net = get_problem("multi-digits", N=512, N_test=128)
    point = set_problem(net)
    assert point.id == "multi-digits-set" and point.network is net
    x = point.initial_points(seed, num=2)  # (2, n)
    F, J, acc = point.losses(x), point.jacobian(x), point.test_accuracy(x)
    for p in range(2):
        model = net.reset(seed + p)
        torch.testing.assert_close(F[p], net.losses().detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(acc[p], net.test_accuracy())
        grads = torch.autograd.grad(net.losses()[1], list(model.parameters()))
        by_name = dict(zip([n for n, _ in model.named_parameters()], grads))
        W1, b1, W2, b2, Wh, bh = ParameterLayout.of(point).split(J[p, 1])
        torch.testing.assert_close(W1, by_name["trunk.1.weight"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(W2, by_name["trunk.3.weight"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(Wh[10:], by_name["heads.1.weight"], rtol=1e-4, atol=1e-6)
        assert float(Wh[:10].abs().max()) == 0.0 and float(bh[:10].abs().max()) == 0.0  # head 0 does not touch f_2


def test_set_runs_on_multi_digits_report_the_test_accuracy_of_their_final_networks():
    result = run("epo", "multi-digits", steps=2, seed=0, solutions=2, problem_params={"N": 256, "N_test": 64})
    point = get_problem("multi-digits-set", N=256, N_test=64)
    expected = point.test_accuracy(result.x_final)  # (P, K), recomputed on a fresh copy of the data
    torch.testing.assert_close(result.extra["metrics"]["test_accuracy"], expected)
    assert result.extra["metrics"]["test_accuracy_mean"] == pytest.approx(float(expected.mean()))
