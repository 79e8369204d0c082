"""The runner's batched speed path (``StartBatch``, reference_impls/core/loss_weighting.py) against the per-start path.

A method class with ``start_batch`` (UW, IMTL-L, DWA, STCH, STCH-MTL, RLW, EW, FAMO, GradNorm) has its B
starts stepped by the runner as one (B, K) computation. The claim is that nothing changes but the
time: every iterate, every loss and the final state of every instance equal those of the per-start
path (``start_batch`` disabled), bit for bit. Why bit for bit can hold: each row of a batch performs
the same IEEE operations in the same order as the instance (closed-form gradients with autograd's
products; sums left to right), the transcendental functions are the same ones applied entry by entry
(torch's exp/log, math.exp, Python's ``**``), the runner's Adam is element-wise numpy arithmetic
(independent of the tensor's shape) and its SGD steps each row view as a per-start tensor, and d_b =
J_bᵀ w_b is the per-start product. Checked on 3 seeds x 2 problems (Adam and SGD) plus K = 3 with box
constraints, float32 and a stochastic oracle: 9 methods, 0 differences.
"""

from __future__ import annotations

import re

import pytest
import torch

import reference_impls.registry as registry
from reference_impls.core.loss_weighting import StartBatch
from reference_impls.problems import get_problem
from reference_impls.runner import SGD, Adam, _batch_optimizer, run

BATCHED = ["uw", "imtl-l", "dwa", "stch", "stch-mtl", "rlw", "ew", "famo", "gradnorm"]


def _outcome(name, problem, monkeypatch, batched, **kwargs):
    """The run's result, or the (type, message) of the error it raised."""
    cls = registry.load_class(name)
    with monkeypatch.context() as patch:
        if not batched:
            patch.setattr(cls, "start_batch", classmethod(lambda c, methods, optimizer=None: None))
        try:
            return run(name, problem, **kwargs)
        except (ValueError, ArithmeticError) as error:
            return type(error), str(error)


def _assert_same_state(a, b, where="instance"):
    """Recursive equality of instance states: tensors (and their .grad) bit for bit, generators by state."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), (where, a, b)
        if a.grad is not None or b.grad is not None:
            _assert_same_state(a.grad, b.grad, where + ".grad")
    elif isinstance(a, torch.Generator):
        assert torch.equal(a.get_state(), b.get_state()), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (where, a.keys(), b.keys())
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert type(a) is type(b), where
        _assert_same_state(vars(a), vars(b), where)
    else:
        assert a == b or (a != a and b != b), (where, a, b)  # NaN == NaN here


CASES = [
    *[("cagrad-toy", dict(steps=120, lr=1e-2, seed=s)) for s in range(3)],  # Adam, the paper's toy (B = 5)
    *[("biquad", dict(steps=120, lr=0.05, optimizer="sgd", seed=s)) for s in range(3)],  # SGD (B = 8)
    ("dtlz2", dict(steps=60, seed=0)),  # K = 3, box constraints
    ("noisy-cagrad-toy", dict(steps=60, seed=1)),  # stochastic oracle
]


@pytest.mark.parametrize("problem,kwargs", CASES, ids=[f"{p}-{k.get('seed')}" for p, k in CASES])
@pytest.mark.parametrize("name", BATCHED)
def test_batched_runs_equal_per_start_runs_bit_for_bit(name, problem, kwargs, monkeypatch):
    per_start = _outcome(name, problem, monkeypatch, batched=False, **kwargs)
    batched = _outcome(name, problem, monkeypatch, batched=True, **kwargs)
    if isinstance(per_start, tuple):  # the same error, from the instance of the same start
        assert batched == per_start
        return
    assert not isinstance(batched, tuple), batched
    assert torch.equal(batched.x, per_start.x), float((batched.x - per_start.x).abs().max())
    assert torch.equal(batched.f, per_start.f)
    for ours, theirs in zip(batched.extra["methods"], per_start.extra["methods"]):
        _assert_same_state(ours, theirs, name)


def test_batched_runs_equal_per_start_runs_in_float32(monkeypatch):
    problem = get_problem("cagrad-toy", dtype=torch.float32)
    for name in BATCHED:
        per_start = _outcome(name, problem, monkeypatch, batched=False, steps=80, lr=1e-2)
        batched = _outcome(name, problem, monkeypatch, batched=True, steps=80, lr=1e-2)
        assert batched.x.dtype == torch.float32 and torch.equal(batched.x, per_start.x), name
        for ours, theirs in zip(batched.extra["methods"], per_start.extra["methods"]):
            _assert_same_state(ours, theirs, name)


def test_the_runner_steps_each_batched_method_once_per_step_without_autograd(monkeypatch):
    # Regression (issue 8): the runner built B autograd graphs and B optimisers per step for UW and IMTL-L
    # (113 s and 102 s for the paper-default toy run) and called every method B times per step.
    backward_calls = []
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *a, **k: backward_calls.append(1))
    for name in BATCHED:
        instance = registry.create(name)
        batch_cls = type(instance).start_batch(
            [instance], lambda P: _batch_optimizer("adam", P, 1e-3)
        ).__class__  # the batch class the runner will use
        steps = []
        original = batch_cls.step
        monkeypatch.setattr(batch_cls, "step", lambda self, t, F, J, _o=original: steps.append(t) or _o(self, t, F, J))
        run(name, "cagrad-toy", steps=7)
        assert steps == list(range(7)), name
    assert backward_calls == []


def _per_start_error(name, F, J):
    """The (type, message) the per-start path raises at the first offending start."""
    methods = [registry.create(name) for _ in range(F.shape[0])]
    try:
        for b, m in enumerate(methods):
            if hasattr(m, "objective"):
                m.weights(F[b], 0)
                m.observe(F[b], 0)
            else:
                m(J[b], F[b])
    except (ValueError, ArithmeticError) as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_bad_loss_raises_the_per_start_error(name, bad):
    """A NaN, infinite, negative or zero loss at start 2 of 4: the batch raises exactly what the instance
    of start 2 raises (type and message), or nothing where the method accepts the value."""
    gen = torch.Generator().manual_seed(0)
    F = torch.rand(4, 2, generator=gen, dtype=torch.float64) + 0.5  # (B, K)
    J = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)  # (B, K, n)
    F[2, 1] = bad
    expected = _per_start_error(name, F, J)
    methods = [registry.create(name) for _ in range(4)]
    batch = type(methods[0]).start_batch(methods, lambda P: _batch_optimizer("adam", P, 1e-3))
    if expected is None:
        W = batch.step(0, F, J)
        assert W.shape == (4, 2)
        return
    with pytest.raises(expected[0], match=re.escape(expected[1])):
        batch.step(0, F, J)


def test_a_subclass_or_a_patched_hook_takes_the_per_start_path(monkeypatch):
    from reference_impls.loss_balancing.uw import UW

    class Doubled(UW):
        def weights(self, losses, step=0):
            return 2 * super().weights(losses, step)

    make_opt = lambda P: _batch_optimizer("adam", P, 1e-3)  # noqa: E731
    assert UW.start_batch([UW(), UW()], make_opt) is not None
    assert Doubled.start_batch([Doubled(), Doubled()], make_opt) is None  # its own weights: not UW's code
    instance = UW()
    instance.observe = lambda losses, step: None  # set on an instance
    assert UW.start_batch([instance, UW()], make_opt) is None
    monkeypatch.setattr(UW, "observe", lambda self, losses, step: None)  # patched on the class
    assert UW.start_batch([UW(), UW()], make_opt) is None
    # and the runner then follows the subclass's own weights: d = 2·Jᵀ(c ⊙ e^{−s}) on the first step
    problem = get_problem("biquad")
    result = run(Doubled(), problem, steps=1, lr=0.1, optimizer="sgd")
    x0 = problem.initial_points(0)
    torch.testing.assert_close(result.x_final, x0 - 0.1 * 2 * 0.5 * problem.jacobian(x0).sum(1), rtol=1e-12, atol=1e-12)  # UW's own weights would give half the step


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_optimisers_move_each_row_as_a_per_start_optimiser(dtype):
    """Adam over a (5, 3) tensor against 5 Adams over its rows, and the row-wise SGD against 5 SGDs:
    400 steps of random gradients of scales 1e-6..1e6, 3 seeds, bit for bit."""
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        P = torch.randn(5, 3, generator=gen, dtype=torch.float64).to(dtype)
        for kind, single in (("adam", Adam), ("sgd", SGD)):
            batch = P.clone()
            rows = [row.clone() for row in P]
            batch_opt = _batch_optimizer(kind, batch, 1e-2)
            row_opts = [single([row], lr=1e-2) for row in rows]
            for _ in range(400):
                G = (torch.randn(5, 3, generator=gen, dtype=torch.float64) * 10.0 ** float(torch.randint(-6, 7, (1,), generator=gen))).to(dtype)
                batch.grad = G
                batch_opt.step()
                for row, g, opt in zip(rows, G, row_opts):
                    row.grad = g.clone()
                    opt.step()
            assert torch.equal(batch, torch.stack(rows)), (kind, seed)


def test_start_batch_contract_is_declared_by_each_batched_class():
    for name in BATCHED:
        cls = registry.load_class(name)
        batch = cls.start_batch([registry.create(name)], lambda P: _batch_optimizer("adam", P, 1e-3))
        assert isinstance(batch, StartBatch) and batch.method_class is cls, name
        assert "weights" in batch.replicates or "compute_weights" in batch.replicates, name
