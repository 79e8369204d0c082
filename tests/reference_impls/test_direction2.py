"""The runner's K = 2 protocol ``direction2(rows, losses)`` (reference_impls/core/solvers.py; the runner's
``_directions2``): every method that offers it returns, on Python floats, the direction of its general path bit for
bit with the same state change, or None with its state untouched, and the runner then runs the general path.

The general path is what the runner runs without the protocol: ``compute_weights_from_gramian(J Jᵀ)`` and Jᵀw for
the Gramian weightings it batches, ``method(J, losses)`` for the others. Equality is exact (``torch.equal``), which
holds because the protocol repeats the same IEEE operations in the same order, and torch's small CPU matmuls round
each product and each sum (no fused multiply-add): the tests would show it on a machine where that is not so.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import reference_impls.registry as registry
from reference_impls import runner
from reference_impls.core.solvers import combine2, gramian2_rows, project_simplex, project_simplex2

from .two_task_inputs import FAMILIES, two_task_jacobians

METHODS = [
    "mgda", "smg", "psmgd", "cr-mogm", "cagrad", "upgrad", "imtl-g", "nash-mtl", "fairgrad",
    "moco", "modo", "pcgrad", "gradvac", "db-mtl", "graddrop", "sdmgrad",
]  # fmt: skip
SEEDS = range(4)
BUFFERS = {"_buffers2"}  # MoCo's scratch memory of direction2 (h_t, the next Y): not state


def general_direction(m, J: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """The runner's path without the protocol: the batched Gramian path where it applies, else the interface."""
    needs = bool(getattr(m, "needs_losses", False))
    M = J @ J.T if J.ndim == 2 else None  # (K, K)
    if runner._batched_gramian_weighting(m) and M is not None and bool(torch.isfinite(M.sum() + F.sum())):
        w = m.compute_weights_from_gramian(M, F if needs else None)  # (K,)
        return w @ J  # d = Jᵀw, (n,)
    return m(J, F) if needs else m(J)


def same_state(a, b, depth: int = 0) -> bool:
    """Whether two method instances (or state values) are equal: tensors bit for bit, nested objects by their fields."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, torch.Generator):
        return torch.equal(a.get_state(), b.get_state())
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k], depth + 1) for k in a)
    if hasattr(a, "__dict__") and depth < 4 and not isinstance(a, type):
        fields = lambda m: {k: v for k, v in vars(m).items() if k not in BUFFERS}  # noqa: E731
        return type(a) is type(b) and same_state(fields(a), fields(b), depth + 1)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def input_sequence(seed: int) -> list[torch.Tensor]:
    """Two-task Jacobians (2, 2) of every family of two_task_inputs (12 each), shuffled, then NaN, inf and overflowing ones."""
    Js = [J for family in FAMILIES for J in two_task_jacobians(family, 12, seed=seed, n=2)]
    order = torch.randperm(len(Js), generator=torch.Generator().manual_seed(seed))
    Js = [Js[i] for i in order.tolist()]
    bad = [Js[0].clone(), Js[1].clone(), Js[2] * 1e160]
    bad[0][1, 0] = float("nan")
    bad[1][0, 1] = float("inf")
    return Js[:60] + bad + Js[60:]


def losses_for(gen: torch.Generator) -> torch.Tensor:
    """Positive losses on log-uniform scales 1e-3..1e3 (DB-MTL reads them), (2,)."""
    return 10.0 ** (6.0 * torch.rand(2, generator=gen, dtype=torch.float64) - 3.0)


def drive(name: str, seed: int, make_inputs=None) -> tuple[int, int]:
    """Feed one sequence to two instances, protocol against general path; returns (steps the protocol took, steps)."""
    fast, general = registry.create(name), registry.create(name)
    gen = torch.Generator().manual_seed(100 + seed)
    inputs = make_inputs(seed) if make_inputs is not None else input_sequence(seed)
    taken = 0  # answers among the first 60 inputs (before the NaN, inf and overflowing ones)
    for step, J in enumerate(inputs):
        F = losses_for(gen)
        before = copy.deepcopy(fast)
        d = fast.direction2(J.tolist(), F.tolist() if fast.needs_losses else None)
        try:
            expected = general_direction(general, J, F)
        except (ValueError, RuntimeError) as error:  # NonFiniteError, SolverError: the general path rejects the input
            assert d is None, f"{name}, step {step}: the protocol returned a direction where the general path raises {error!r}"
            assert same_state(fast, before), f"{name}, step {step}: the protocol declined but changed the state"
            general = copy.deepcopy(fast)  # resynchronise (the general path may have changed its state before raising)
            continue
        if d is None:
            assert same_state(fast, before), f"{name}, step {step}: the protocol declined but changed the state"
            d = general_direction(fast, J, F).tolist()  # what the runner does then
        elif step < 60:
            taken += 1
        assert torch.equal(torch.tensor(d, dtype=torch.float64), expected), f"{name}, step {step}: {d} != {expected.tolist()}"
    assert same_state(fast, general), f"{name}: the final states differ"
    return taken, min(60, len(inputs))


@pytest.mark.parametrize("name", METHODS)
def test_direction2_equals_the_general_path_bit_for_bit(name):
    """Sequences of 123 Jacobians (every family of two_task_inputs, n = 2, generic and degenerate: opposite,
    identical, collinear, zero rows, scales 1e-30..1e30, the toy's; then NaN, inf and an overflowing J), 4 seeds:
    each protocol answer equals the general path's direction bit for bit, each decline leaves the state untouched,
    the final states agree, and the protocol answers at least half of the 60 inputs before the NaN, inf and
    overflowing ones (it is not vacuous; after an overflowing J, DB-MTL's EMA state is too large to square on floats
    for thousands of steps and the tensor path answers)."""
    for seed in SEEDS:
        taken, total = drive(name, seed)
        assert taken >= total // 2, f"{name}, seed {seed}: the protocol answered {taken} of {total} inputs"


def modo_samples(seed: int) -> list[torch.Tensor]:
    """MoDo's stochastic input: stacks (S, 2, 2) of S = 3 or 2 different Jacobians, and single (2, 2) ones."""
    Js = input_sequence(seed)
    out = []
    for i in range(0, len(Js) - 3, 3):
        out.append(torch.stack(Js[i : i + 3]) if i % 2 == 0 else torch.stack(Js[i : i + 2]))
        out.append(Js[i])
    return out


def test_modo_direction2_with_independent_samples():
    """MoDo with S = 3 and S = 2 independent samples (the noisy oracle's input) and single Jacobians, 4 seeds: the
    protocol equals the general path bit for bit (as above) and answers at least half of the first 60 inputs."""
    for seed in SEEDS:
        taken, total = drive("modo", seed, modo_samples)
        assert taken >= total // 2


@pytest.mark.parametrize("name", METHODS)
def test_runner_with_direction2_equals_the_runner_without(name, monkeypatch):
    """The runner's cagrad-toy run (5 starts, 300 steps, paper defaults) gives the same iterates and losses, bit for
    bit, with the protocol and with the general path (the protocol switched off)."""
    fast = runner.run(name, "cagrad-toy", steps=300)
    monkeypatch.setattr(type(registry.create(name)), "direction2", None)
    general = runner.run(name, "cagrad-toy", steps=300)
    assert torch.equal(fast.x, general.x) and torch.equal(fast.f, general.f)


@pytest.mark.parametrize("name", ["modo", "moco", "mgda"])
def test_runner_with_direction2_on_the_noisy_toy(name, monkeypatch):
    """On the stochastic toy (independent samples each step; MoDo's three per step), 200 steps: the same bit for bit."""
    fast = runner.run(name, "noisy-cagrad-toy", steps=200, seed=3)
    monkeypatch.setattr(type(registry.create(name)), "direction2", None)
    general = runner.run(name, "noisy-cagrad-toy", steps=200, seed=3)
    assert torch.equal(fast.x, general.x) and torch.equal(fast.f, general.f)


@pytest.mark.parametrize("name", METHODS)
def test_paper_default_toy_run_takes_the_float_path(name, monkeypatch):
    """Regression (issue 8, toy runs too slow): on the paper-default cagrad-toy run (5 starts, here 400 steps) every
    start-step is answered by direction2 on Python floats, none by the per-start tensor path (10-100 µs of torch
    dispatch per call), except at most 1% (CAGrad: 1 of 2000 here, an input its closed form hands to the general
    solver). Before the protocol there was no direction2 and every start-step took the tensor path."""
    cls = type(registry.create(name))
    protocol = cls.direction2
    answers = []

    def counted(self, rows, losses):
        d = protocol(self, rows, losses)
        answers.append(d is not None)
        return d

    monkeypatch.setattr(cls, "direction2", counted)
    runner.run(name, "cagrad-toy", steps=400)
    assert len(answers) == 5 * 400 and answers.count(False) <= 20, f"{name}: {answers.count(False)} of {len(answers)} start-steps declined"


def test_helpers_equal_torch():
    """gramian2_rows, combine2 and project_simplex2 against torch's J @ J.T, w @ J and project_simplex on 2000
    random float64 inputs (scales 1e-3..1e3, and ties): bit for bit."""
    gen = torch.Generator().manual_seed(7)
    for i in range(2000):
        J = torch.randn(2, 2, generator=gen, dtype=torch.float64) * 10.0 ** (6 * torch.rand(1, generator=gen, dtype=torch.float64) - 3)
        w = torch.rand(2, generator=gen, dtype=torch.float64)
        v = torch.randn(2, generator=gen, dtype=torch.float64) * 10.0 ** float(torch.randint(-3, 4, (1,), generator=gen))
        if i % 10 == 0:
            v[1] = v[0]
        assert list(gramian2_rows(J.tolist())) == (J @ J.T).reshape(-1).tolist()
        assert combine2(*w.tolist(), *J.tolist()) == (w @ J).tolist()
        assert list(project_simplex2(*v.tolist())) == project_simplex(v).tolist()
    assert gramian2_rows([[1.0, float("nan")], [0.0, 1.0]]) is None and project_simplex2(float("inf"), 0.0) is None
    assert gramian2_rows([[[1.0, 0.0], [0.0, 1.0]]] * 3) is None  # (S, K, n) samples are not a Jacobian
