"""Every hook a method defines is called by the runner and by the documented training loop.

The hooks are discovered from the interfaces (``hook_names`` and :func:`defined_hooks`), not from
a hand-written list, so a new method or a new hook is covered without editing this file. For each
registered method each defined hook is wrapped by a counting spy, and the test checks how often
it is called:

* on a point problem (``biquad``, 8 starts, 3 steps): ``update`` and ``observe`` once per step and
  start, ``on_epoch_end`` once per step and start (full batch: every step is an epoch),
  ``parameters`` at least once per start;
* on the ``mtl-regression`` network through :func:`reference_impls.runner.run` (8 steps of batches of
  128 out of 512 rows, i.e. 2 epochs): ``update``, ``observe`` and ``attach`` once per step,
  ``on_epoch_end`` once per epoch; ``attach`` (the activation path) in representation mode;
* in the training loop of ``site/implementations/design.md``, executed from the page itself.

Set methods (registry interface "set") move P solutions at once: through
:func:`reference_impls.set_runner.run_set` and through the documented set loop (``train_set`` of
``site/implementations/design.md``, executed from the page) on ``vlmop2`` (P = 4, 3 steps):
``initial_set`` and ``begin`` once, ``update``, ``adapt_preferences`` and ``on_epoch_end`` once per
step, ``parameters`` at least once, all on the one instance. Per-sample methods (``per_sample``) on a
problem with ``per_sample_losses`` get ``sample_weights`` once per step from both loops.

Pareto-set models (registry interface "pareto-model": PHN-LS, PHN-EPO) are trained by
:func:`reference_impls.pareto_runner.run_pareto` and by the page's ``train_pareto_model`` on
``biquad`` (3 steps): ``begin`` once, ``update`` and ``on_epoch_end`` once per step.

Bi-level methods (``bilevel = True``: Auto-Lambda, MOML, FORUM) need validation losses, so they run on
``bilevel-ridge`` instead (the runner, then the page's ``train_bilevel`` loop, 6 steps each):
``outer_step`` once every ``outer_every`` steps, ``observe`` and ``on_epoch_end`` once per step (full
batch), ``parameters`` at least once.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import reference_impls
from reference_impls.core.aggregator import Aggregator
from reference_impls.core.hooks import check_optimised, defined_hooks, train_step
from reference_impls.core.loss_weighting import BilevelLossWeighting, LossWeighting
from reference_impls.loss_balancing.imtl_l import IMTLL, UnoptimisedParameterWarning
from reference_impls.problems import get_problem
from reference_impls.runner import Adam, run

ROOT = Path(__file__).resolve().parents[2]
NAMES = reference_impls.names()


def _bilevel(name: str) -> bool:
    """Whether ``name`` is a bi-level method (a module that fails to import fails in its own tests, not here)."""
    try:
        return bool(getattr(reference_impls.load_class(name), "bilevel", False))
    except Exception:  # noqa: BLE001
        return False


def _set_method(name: str) -> bool:
    """Whether ``name`` is a set method (registry interface "set")."""
    return reference_impls.info(name).interface == "set"


BILEVEL = [n for n in reference_impls.names() if _bilevel(n)]
SET_METHODS = [n for n in NAMES if _set_method(n)]
PARETO_MODELS = [n for n in NAMES if reference_impls.info(n).interface == "pareto-model"]  # trained by run_pareto
SINGLE_LEVEL = [n for n in NAMES if n not in BILEVEL and n not in SET_METHODS and n not in PARETO_MODELS]
STEPS, NET_STEPS, BATCHES_PER_EPOCH = 3, 8, 4  # mtl-regression: N = 512 rows, batch_size 128
BILEVEL_STEPS = 6


def _doc_training_loop() -> str:
    """The python code block of the "Hooks and the training loop" section of design.md."""
    text = (ROOT / "site" / "implementations" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Hooks and the training loop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section must hold exactly one python block"
    return blocks[0]


@pytest.fixture(scope="module")
def doc_namespace():
    namespace: dict = {}
    exec(compile(_doc_training_loop(), "design.md", "exec"), namespace)  # runs the page's own examples (FAMO, Auto-Lambda) too
    assert torch.isfinite(namespace["final_losses"]).all()
    assert torch.isfinite(namespace["final_val_losses"]).all()
    assert torch.isfinite(namespace["final_set_losses"]).all()  # EPO's set on vlmop2
    return namespace


@pytest.fixture(scope="module")
def doc_train(doc_namespace):
    return doc_namespace["train"]


@pytest.fixture(scope="module")
def doc_train_bilevel(doc_namespace):
    return doc_namespace["train_bilevel"]


def _spy(monkeypatch, cls: type, hooks: tuple[str, ...]) -> Counter:
    """Wrap each hook of ``cls`` with a counter keyed by (hook, id(instance))."""
    calls: Counter = Counter()
    alive: list = []  # keeps every spied instance alive, so no id is reused within a test

    for name in hooks:
        original = getattr(cls, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            alive.append(self)
            calls[(_name, id(self))] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    return calls


def _per_instance(calls: Counter, hook: str) -> list[int]:
    return [n for (h, _), n in calls.items() if h == hook]


def test_the_hooks_are_discovered_from_the_interfaces():
    # The discovery itself: the defaults are not hooks, overrides are (FAMO's update, IMTL-L's
    # parameters, GradDrop's attach), and a new subclass is picked up without any list to edit.
    class Plain(Aggregator):
        def aggregate(self, J, losses):
            return J.sum(0)

    class WithUpdate(Plain):
        def update(self, new_losses):
            return None

    assert defined_hooks(Plain()) == ()
    assert defined_hooks(WithUpdate()) == ("update",)
    assert "update" in defined_hooks(reference_impls.create("famo"))
    assert "parameters" in defined_hooks(reference_impls.create("imtl-l"))
    assert "attach" in defined_hooks(reference_impls.create("graddrop"))


@pytest.mark.parametrize("name", SINGLE_LEVEL)
def test_runner_calls_every_hook_on_point_problems(name, monkeypatch):
    cls = reference_impls.load_class(name)
    hooks = tuple(h for h in defined_hooks(reference_impls.create(name)) if h != "attach")  # attach: networks only
    calls = _spy(monkeypatch, cls, hooks)
    run(name, "biquad", steps=STEPS, lr=0.01)
    B = get_problem("biquad").initial_points(0).shape[0]
    for hook in hooks:
        counts = _per_instance(calls, hook)
        assert len(counts) == B, (hook, counts)  # every start's instance
        if hook == "parameters":
            assert min(counts) >= 1
        else:
            assert counts == [STEPS] * B, (hook, counts)


@pytest.mark.parametrize("name", SINGLE_LEVEL)
def test_runner_and_documented_loop_call_every_hook_on_the_network(name, monkeypatch, doc_train):
    cls = reference_impls.load_class(name)
    hooks = defined_hooks(reference_impls.create(name))
    calls = _spy(monkeypatch, cls, hooks)
    problem = get_problem("mtl-regression", batch_size=128)
    # the runner: plain mode, then representation mode for the activation hook
    run(name, problem, steps=NET_STEPS, lr=0.01)
    if "attach" in hooks:
        run(name, problem, steps=NET_STEPS, lr=0.01, representation=True)
    runner_calls = Counter(calls)
    calls.clear()
    # the documented loop (2 epochs of 4 batches), with the activation path where defined
    doc_train(reference_impls.create(name), epochs=2, representation=False)
    if "attach" in hooks:
        doc_train(reference_impls.create(name), epochs=2, representation=True)
    for where, seen in (("runner", runner_calls), ("design.md loop", calls)):
        for hook in hooks:
            counts = _per_instance(seen, hook)
            expected = {"parameters": None, "on_epoch_end": [NET_STEPS // BATCHES_PER_EPOCH]}.get(hook, [NET_STEPS])
            if expected is None:
                assert counts and min(counts) >= 1, (where, hook, counts)
            else:
                assert counts == expected, (where, hook, counts)


def test_every_registered_bilevel_method_is_covered():
    # the bi-level methods are found from their class, so MOML and FORUM join once registered
    assert "auto-lambda" in BILEVEL
    for name in BILEVEL:
        assert "outer_step" in defined_hooks(reference_impls.create(name))


@pytest.mark.parametrize("name", BILEVEL)
def test_runner_and_documented_loop_call_every_hook_of_bilevel_methods(name, monkeypatch, doc_train_bilevel):
    cls = reference_impls.load_class(name)
    hooks = defined_hooks(reference_impls.create(name))
    assert "outer_step" in hooks
    calls = _spy(monkeypatch, cls, hooks)
    run(name, "bilevel-ridge", steps=BILEVEL_STEPS)
    runner_calls = Counter(calls)
    calls.clear()
    doc_train_bilevel(reference_impls.create(name), steps=BILEVEL_STEPS)
    outer = len(range(0, BILEVEL_STEPS, cls.outer_every))  # steps 0, k, 2k, ...
    for where, seen in (("runner", runner_calls), ("design.md loop", calls)):
        for hook in hooks:
            counts = _per_instance(seen, hook)
            if hook == "parameters":
                assert counts and min(counts) >= 1, (where, hook, counts)
            else:
                assert counts == [outer if hook == "outer_step" else BILEVEL_STEPS], (where, hook, counts)


class _Recorder(BilevelLossWeighting):
    """A bi-level stand-in recording when each hook runs (outer every 2nd step; optionally moving ω)."""

    outer_every = 2

    def __init__(self, moves: bool = False):
        self.moves, self.outer_at, self.inner_at, self.observed, self.epochs = moves, [], [], [], []

    @property
    def moves_model(self):  # the runner reads it from the instance
        return self.moves

    def weights(self, losses, step):
        return torch.ones_like(losses)

    def objective(self, losses, step):
        self.inner_at.append(step)
        return super().objective(losses, step)

    def outer_step(self, params, train_losses, val_losses, lr, *, train_losses_at, val_losses_at, weight_decay=0.0, optimizer=None, step=0):
        assert torch.equal(train_losses(), train_losses_at(params)) and val_losses().shape == train_losses().shape
        self.outer_at.append((step, params[0].detach().clone(), weight_decay))
        if self.moves:
            with torch.no_grad():
                params[0].mul_(0.5)

    def observe(self, losses, step):
        self.observed.append((step, losses.clone()))

    def on_epoch_end(self, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize("moves", [False, True])
def test_bilevel_outer_step_comes_first_and_a_moving_outer_step_replaces_the_inner_step(moves, doc_train_bilevel):
    # outer_step at steps 0, 2, 4 sees the model at the step's start (before the inner step) and the
    # lower level's weight decay (the ridge); the inner step Σ w_i f_i^tr runs at every step, except on
    # the outer steps of a method that moves the model (FORUM): then the model after step 0 is exactly
    # the outer step's move (½ω), and observe still gets the losses at the step's start.
    problem = get_problem("bilevel-ridge")
    result = run(_Recorder(moves), problem, steps=5, lr=0.1)
    m = result.extra["methods"][0]
    assert [s for s, _, _ in m.outer_at] == [0, 2, 4]
    for s, omega, wd in m.outer_at:
        assert torch.equal(omega, result.x[s, 0]) and wd == problem.ridge
    assert m.inner_at == ([1, 3] if moves else [0, 1, 2, 3, 4])
    if moves:
        assert torch.equal(result.x[1, 0], 0.5 * result.x[0, 0])
    assert [s for s, _ in m.observed] == [0, 1, 2, 3, 4] and m.epochs == [0, 1, 2, 3, 4]
    for s, losses in m.observed:
        torch.testing.assert_close(losses, result.extra["train_losses"][s, 0], rtol=0, atol=0)
    # the documented loop does the same
    doc = _Recorder(moves)
    doc_train_bilevel(doc, steps=5)
    assert [s for s, _, _ in doc.outer_at] == [0, 2, 4] and doc.inner_at == m.inner_at and doc.epochs == [0, 1, 2, 3, 4]


def test_on_epoch_end_follows_each_pass_over_the_data(doc_train):
    # No registered method defines on_epoch_end yet: a counting stand-in shows where the runner and
    # the documented loop call it (after every 4th batch of 128 rows out of 512; every step on points).
    class PerEpoch(LossWeighting):
        def __init__(self):
            self.epochs, self.steps = [], 0

        def weights(self, losses, step):
            return torch.ones_like(losses)

        def observe(self, losses, step):
            self.steps += 1

        def on_epoch_end(self, epoch):
            self.epochs.append((epoch, self.steps))

    problem = get_problem("mtl-regression", batch_size=128)
    result = run(PerEpoch(), problem, steps=8, lr=0.01)
    assert result.extra["methods"][0].epochs == [(0, 4), (1, 8)]
    method = PerEpoch()
    doc_train(method, epochs=2)
    assert method.epochs == [(0, 4), (1, 8)]
    points = run(PerEpoch(), "biquad", steps=3, lr=0.01)
    assert [m.epochs for m in points.extra["methods"]] == [[(0, 1), (1, 2), (2, 3)]] * 8


def _inverse_loss_weights(F: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """FAMO's weights with z frozen at ½𝟙: c_i = (z_i/D_i)/Σ_j (z_j/D_j), D = f − ℓ* + 1e-8 (FAMO without update)."""
    D = (F - offset) - 0.0 + 1e-8  # (B, K), as the runner and FAMO form it
    inv = 0.5 * torch.exp(-torch.log(D))  # z_i / D_i
    return inv / inv.sum(1, keepdim=True)


def test_famo_under_run_is_not_fixed_inverse_loss_weighting(monkeypatch):
    # Regression (issue 7): the runner never called FAMO.update, so ξ stayed 0 and FAMO was the
    # fixed weighting c_i ∝ 1/(f_i − ℓ*_i). Now ξ takes one Adam step per step: after 1000 steps on
    # the CAGrad toy (paper scale 0.1, lr 1e-3, Adam) z = softmax(ξ) has left ½𝟙 at every start
    # (measured |z_i − ½| ≥ 1.4e-3) and the iterates differ from the fixed weighting (measured ≥ 3e-4;
    # before the fix both were equal up to rounding, as the frozen run below still is).
    problem = get_problem("cagrad-toy", scale=0.1)
    steps = 1000
    result = run("famo", problem, steps=steps)
    z = torch.stack([m.z() for m in result.extra["methods"]])  # (B, K)
    assert float((z - 0.5).abs().min()) > 5e-4, z
    # the fixed-weight counterpart by hand, with the runner's Adam
    offset = torch.tensor(problem.loss_lower_bound, dtype=torch.float64)
    x = problem.initial_points(0).clone().requires_grad_(True)
    opt = Adam([x], lr=problem.default_lr)
    for _ in range(steps):
        F, J = problem.value_and_jacobian(x.detach())  # the runner's closed form (start (0, 0) amplifies rounding)
        x.grad = torch.einsum("bk,bkn->bn", _inverse_loss_weights(F, offset), J)  # d = Jᵀ c
        opt.step()
    fixed = x.detach()
    # FAMO with the hook disabled (the runner before the fix) is exactly that weighting ...
    monkeypatch.setattr(reference_impls.load_class("famo"), "update", lambda self, new_losses: None)
    frozen = run("famo", problem, steps=steps)
    torch.testing.assert_close(frozen.x_final, fixed, rtol=1e-10, atol=1e-12)
    # ... and FAMO with its update is not.
    gap = (result.x_final - fixed).norm(dim=1)  # (B,)
    assert float(gap.min()) > 1e-5, gap


def test_famo_update_in_the_runner_is_one_adam_step_on_the_log_loss_decrease():
    # One runner step, then the hook: δ = log D(f_0) − log D(f_1), ∇ξ = z ⊙ (δ − zᵀδ) with z = ½𝟙,
    # and the first Adam step from ξ = 0 (weight decay γξ = 0) is ξ_1 = −β ∇ξ/(|∇ξ| + 1e-8), exactly.
    problem = get_problem("cagrad-toy")
    result = run("famo", problem, steps=1)
    offset = torch.tensor(problem.loss_lower_bound, dtype=torch.float64)
    delta = torch.log(result.f[0] - offset + 1e-8) - torch.log(result.f[1] - offset + 1e-8)  # (B, K)
    z = torch.full_like(delta, 0.5)
    grad = z * (delta - (z * delta).sum(1, keepdim=True))  # (B, K)
    expected = -0.025 * grad / (grad.abs() + 1e-8)
    xi = torch.stack([m.xi.detach() for m in result.extra["methods"]])
    torch.testing.assert_close(xi, expected, rtol=1e-12, atol=1e-15)


def test_imtl_l_scales_change_under_run_on_points_and_on_the_network():
    # The runner optimises s with the iterate/model (same optimiser kind): s leaves 0. On biquad the
    # losses at the starts are not 1, so ∂/∂s = e^s f − 1 ≠ 0 and s moves in the first step already.
    points = run("imtl-l", "biquad", steps=20, lr=0.05)
    s = torch.stack([m.s.detach() for m in points.extra["methods"]])  # (B, K)
    assert bool((s != 0).all()), s
    net = run("imtl-l", "mtl-regression", steps=20, lr=0.01)
    assert bool((net.extra["methods"][0].s.detach() != 0).all())


def test_imtl_l_warns_when_its_scales_are_not_optimised_and_train_step_refuses():
    # A user loop that forgets method.parameters(): the scales collect gradients but never move.
    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64)

    def losses():
        return torch.stack([((x @ w - y[0]) ** 2).mean(), ((torch.tanh(x @ w) - y[1]) ** 2).mean()])

    method = IMTLL(2)
    forgot = torch.optim.SGD([w], lr=0.01)
    with pytest.warns(UnoptimisedParameterWarning, match="not being optimised"):
        for _ in range(3):
            forgot.zero_grad()
            method(losses()).backward()
            forgot.step()
    with pytest.raises(ValueError, match="learnable parameter"):
        check_optimised(method, forgot)
    with pytest.raises(ValueError, match="learnable parameter"):
        train_step(method, losses, forgot, [w])
    # the correct loop: no warning, and the scales move
    method = IMTLL(2)
    good = torch.optim.SGD([w, *method.parameters()], lr=0.01)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnoptimisedParameterWarning)
        for step in range(3):
            train_step(method, losses, good, [w], step=step)
    assert bool((method.s.detach() != 0).all())


def test_every_registered_set_method_is_covered():
    assert {"ls", "tch"} <= set(SET_METHODS)
    from reference_impls.core.sets import SetMethod

    for name in SET_METHODS:
        assert issubclass(reference_impls.load_class(name), SetMethod)


@pytest.mark.parametrize("name", SET_METHODS)
def test_set_runner_and_documented_set_loop_call_every_hook(name, monkeypatch, doc_namespace):
    from reference_impls.set_runner import run_set

    cls = reference_impls.load_class(name)
    hooks = defined_hooks(reference_impls.create(name))
    calls = _spy(monkeypatch, cls, hooks)
    problem = get_problem("vlmop2")
    run_set(name, problem, solutions=4, steps=STEPS, lr=0.1, optimizer="sgd")
    runner_calls = Counter(calls)
    calls.clear()
    X, F, prefs = doc_namespace["train_set"](reference_impls.create(name), problem, 4, STEPS, 0.1)
    assert X.shape == (4, problem.n) and bool(torch.isfinite(F).all())
    for where, seen in (("run_set", runner_calls), ("documented set loop", calls)):
        for hook in hooks:
            counts = _per_instance(seen, hook)
            if hook == "parameters":
                assert counts and min(counts) >= 1, (where, hook, counts)
            else:
                assert counts == [1 if hook in ("initial_set", "begin") else STEPS], (where, hook, counts)


def _hooked_set_class():
    from reference_impls.core.sets import SetMethod

    class Hooked(SetMethod):
        # The learnable scalar a gets the gradient 1 at each step (written by step()), so SGD moves it
        # by −lr per step; adapt_preferences swaps the two columns after every step.
        def __init__(self):
            self.a = torch.zeros((), dtype=torch.float64, requires_grad=True)
            self.begun, self.updates, self.epochs, self.seen_prefs, self.adapted, self.seeded = [], [], [], [], [], []

        def initial_set(self, X0, evaluate, *, minimisers=None):
            # The method's own seeding: every solution moved by +1 in each coordinate.
            F0, J0 = evaluate(X0)
            self.seeded.append((X0.clone(), F0.clone(), minimisers))
            return X0 + 1.0

        def step(self, X, F, J, preferences):
            self.a.grad = torch.ones((), dtype=torch.float64)
            self.seen_prefs.append(preferences.clone())
            return (preferences[:, :, None] * J).sum(1)  # (P, n)

        def parameters(self):
            return [self.a]

        def begin(self, X0, F0, preferences, *, steps, ideal=None):
            self.begun.append((X0.clone(), F0.clone(), preferences.clone(), steps, ideal))

        def update(self, new_F):
            self.updates.append(new_F.clone())

        def adapt_preferences(self, X, F, preferences, t):
            self.adapted.append((t, X.clone()))
            return preferences.flip(1)

        def on_epoch_end(self, epoch):
            self.epochs.append(epoch)

    return Hooked


def test_set_method_hooks_are_driven_on_point_problems():
    # A stand-in with every SetMethod hook, run by run_set: begin once with the initial set, its
    # losses, the preferences, the step budget and the problem's ideal point; then per step update
    # (losses at the moved set), adapt_preferences (whose result the next step sees) and on_epoch_end.
    # initial_set comes first, with the problem's starting set, and its replacement (X0 + 1) is the set
    # begin sees and the run starts from.
    Hooked = _hooked_set_class()
    assert set(defined_hooks(Hooked())) == {"parameters", "initial_set", "begin", "update", "adapt_preferences", "on_epoch_end"}
    problem = get_problem("biquad")
    result = run(Hooked(), problem, steps=3, lr=0.1, optimizer="sgd", solutions=5)
    m = result.extra["methods"][0]
    assert m.epochs == [0, 1, 2] and float(m.a.detach()) == pytest.approx(-0.3, abs=1e-15)
    torch.testing.assert_close(torch.stack(m.updates), result.f[1:])  # the losses after each step
    (seed_X, seed_F, minimisers), = m.seeded
    torch.testing.assert_close(seed_X, problem.initial_points(0, num=5), rtol=0, atol=0)
    torch.testing.assert_close(seed_F, problem.losses(seed_X))
    assert minimisers is None  # biquad does not give its objectives' minimisers
    torch.testing.assert_close(result.x[0], seed_X + 1.0, rtol=0, atol=0)
    (X0, F0, prefs0, steps, ideal), = m.begun
    torch.testing.assert_close(X0, result.x[0])
    torch.testing.assert_close(F0, result.f[0])
    assert steps == 3 and torch.equal(ideal, problem.ideal_point())
    assert [t for t, _ in m.adapted] == [0, 1, 2]
    for t, X in m.adapted:
        torch.testing.assert_close(X, result.x[t + 1])
    for t in range(3):  # step t sees the preferences flipped t times
        expected = prefs0.flip(1) if t % 2 else prefs0
        torch.testing.assert_close(m.seen_prefs[t], expected, rtol=0, atol=0)
    torch.testing.assert_close(result.extra["preferences"], prefs0.flip(1), rtol=0, atol=0)  # after 3 flips
    torch.testing.assert_close(result.extra["preference_history"][-1], prefs0.flip(1), rtol=0, atol=0)


def test_documented_set_loop_seeds_and_takes_the_per_sample_branch_like_run_set(doc_namespace):
    # The page's train_set calls initial_set (with the problem's minimisers) before begin, and on a
    # problem with per-sample losses a per-sample method gets sample_weights once per step and step()
    # never; both loops (SGD, same lr) give the same trajectory as run_set, to rounding.
    from reference_impls.set_runner import run_set
    from tests.reference_impls.test_set_core import PerSampleLinear, PerSampleShare

    class Seeded(PerSampleShare):
        def initial_set(self, X0, evaluate, *, minimisers=None):
            self.minimisers = minimisers
            return X0 + minimisers[0]  # a seeding that uses the minimisers

    class WithMinimisers(PerSampleLinear):
        def objective_minimisers(self):
            return torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64)  # (K, n), stand-in minimisers

    problem = WithMinimisers()
    doc = Seeded()
    X, F, _ = doc_namespace["train_set"](doc, problem, 3, STEPS, 0.05)
    assert doc.stepped == 0 and len(doc.weighed) == STEPS
    torch.testing.assert_close(doc.minimisers, problem.objective_minimisers(), rtol=0, atol=0)
    torch.testing.assert_close(doc.weighed[0], problem.per_sample_losses(problem.initial_points(0, num=3) + doc.minimisers[0]), rtol=1e-13, atol=0)
    r = run_set(Seeded(), problem, solutions=3, steps=STEPS, lr=0.05, optimizer="sgd")
    torch.testing.assert_close(X, r.x_final, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(F, r.f_final, rtol=1e-12, atol=1e-12)


def test_every_registered_pareto_model_is_covered():
    assert {"phn-ls", "phn-epo"} <= set(PARETO_MODELS)
    from reference_impls.core.sets import ParetoModel

    for name in PARETO_MODELS:
        assert issubclass(reference_impls.load_class(name), ParetoModel)


@pytest.mark.parametrize("name", PARETO_MODELS)
def test_pareto_runner_and_documented_pareto_loop_call_every_hook(name, monkeypatch):
    # Pareto-set models (registry interface "pareto-model"): run_pareto and the page's
    # train_pareto_model (section "Training a Pareto-set model") call begin once and update and
    # on_epoch_end once per step, on the one model (biquad, 3 steps of 2 preferences).
    from reference_impls.pareto_runner import run_pareto

    text = (ROOT / "site" / "implementations" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Training a Pareto-set model", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "design.md", "exec"), namespace)
    cls = reference_impls.load_class(name)
    hooks = defined_hooks(reference_impls.create(name))
    assert "begin" in hooks  # every Pareto-set model here sizes itself for the problem
    calls = _spy(monkeypatch, cls, hooks)
    problem = get_problem("biquad")
    run_pareto(name, problem, steps=STEPS, lr=1e-3, batch=2, held_out=3)
    runner_calls = Counter(calls)
    calls.clear()
    namespace["train_pareto_model"](reference_impls.create(name), problem, steps=STEPS, lr=1e-3, batch=2)
    for where, seen in (("run_pareto", runner_calls), ("documented Pareto loop", calls)):
        for hook in hooks:
            assert _per_instance(seen, hook) == [1 if hook == "begin" else STEPS], (where, hook, seen)
