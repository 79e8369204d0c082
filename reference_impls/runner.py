"""Run a method on a toy problem from every standard starting point, and the ``modl run`` command.

    >>> from reference_impls.runner import run
    >>> result = run("mgda", "biquad", steps=200, lr=0.05, seed=0)
    >>> result.f_final          # (B, K) final losses, one row per starting point
    >>> result.ps_measure       # (B,) Pareto-stationarity measure at the final points
    >>> print(result.table())

How each kind of method is driven (decided from the object's class):

* single-solution aggregators (:class:`~reference_impls.core.aggregator.Aggregator` and any
  callable ``d = method(J)``): one independent method instance per starting point (a fresh
  ``reference_impls.create(name, **hp)`` or a deep copy of the given object), d_b = method_b(J_b, F_b).
* loss weightings (:class:`~reference_impls.core.loss_weighting.LossWeighting`): d_b = J_bᵀ w_b with
  w_b = method_b.weights(F_b, t); the method's own parameters (if any) get their own optimiser of the
  same kind; bi-level methods are not supported on point problems (no validation split).
* set methods (:class:`~reference_impls.core.sets.SetMethod`): handed to
  :func:`reference_impls.set_runner.run_set` (P = ``solutions`` points moved as one set).
* Pareto-set models (:class:`~reference_impls.core.sets.ParetoModel`): handed to
  :func:`reference_impls.pareto_runner.run_pareto` (trained once, evaluated on ``solutions``
  held-out preferences, default 25).
* ``bilevel-ridge`` (a model ω with training and validation losses): loss weightings only; every step
  is :func:`reference_impls.core.hooks.bilevel_step` (a bi-level method's ``outer_step`` every
  ``outer_every`` steps, then the inner step on Σ w_i f_i^tr + ½·ridge·‖ω‖² unless the method moves
  the model itself), the step the documented training loop uses; ``f`` holds the validation losses.
* ``mtl-regression`` (a network): one model initialised from ``seed``, trained step by step with
  :func:`reference_impls.core.hooks.train_step` (``method.backward(losses, shared, task)`` for
  aggregators, Σ w_i f_i for loss weightings), the same function the documented training loop uses.

Hooks (:mod:`reference_impls.core.hooks`): every hook a method defines is driven, on point problems
as on the network: ``parameters()`` join an optimiser of the run's kind; ``update(new_losses)`` gets
the losses at the new iterate after every step (FAMO's ξ step); ``observe`` gets each step's losses;
``on_epoch_end(epoch)`` follows every pass over the data (every step on the full-batch point
problems); ``attach`` (GradDrop's activation path) is used in representation mode.

Every step is x ← Π_box(x − η d) through a torch optimiser ("adam" or "sgd"; Adam is per-entry, so one
Adam over the (B, n) batch equals B independent ones). Runs are seeded: ``torch.manual_seed(seed)``
inside a forked RNG, so stochastic methods (RLW, GradDrop, ...) are reproducible.

Speed: Gramian weightings that use the interface's own ``__call__`` skip the per-start input checks
(the Gramians and losses of all starts are checked once per step) and the weights are computed by
each start's own instance with the same products, so the results equal the per-start loop bit for
bit (``tests/reference_impls/test_runner.py`` compares them with a plain reference loop). On CPU
point problems with a closed form (every one but ``mtl-linear``) the loop takes F and J from
``problem.value_and_jacobian`` in numpy/Python floats instead of torch autograd or torch formulas
(~30 µs instead of ~1 ms per step on cagrad-toy); ``run(..., fast=False)`` keeps the torch loop, and
``tests/reference_impls/test_runner_speed_paths.py`` compares the two with an autograd reference
loop for every method. Method classes that offer a
:class:`~reference_impls.core.loss_weighting.StartBatch` (``cls.start_batch``: UW, IMTL-L, DWA, STCH,
STCH-MTL, RLW, EW, FAMO, GradNorm) have their B starts stepped as one (B, K) computation: the per-start
arithmetic row by row (closed-form parameter gradients with autograd's products instead of B autograd
graphs, one optimiser over the (B, K) parameters, the input checks once per step), equal to the
per-start path bit for bit (``tests/reference_impls/test_start_batches.py``, which also checks the
final state of every instance). The runner's :class:`Adam` steps CPU tensors in numpy (element-wise,
so a batch row moves as a per-start tensor; ~20 µs instead of ~60 µs per step).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls import metrics
from reference_impls.core.aggregator import Aggregator, GramianWeighting, Weighting
from reference_impls.core.hooks import bilevel_step, defined_hooks, end_epoch, learnable_parameters, train_step
from reference_impls.core.loss_weighting import LossWeighting, StartBatch
from reference_impls.core.sets import SetMethod
from reference_impls.problems import Problem, get_problem
from reference_impls.problems.bilevel_ridge import BilevelRidge
from reference_impls.problems.network import NetworkProblem
from reference_impls.problems.noisy import NoisyProblem

OPTIMIZERS = ("adam", "sgd")


@dataclass
class RunResult:
    """Trajectories and final metrics of one run (B starting points, T steps)."""

    method: str
    problem: str
    optimizer: str
    steps: int
    lr: float
    seed: int
    x: Tensor | None  # (T'+1, B, n) iterates (every ``record_every`` steps and the last); None for networks
    f: Tensor  # (T'+1, B, K) losses at those iterates
    x_final: Tensor | None  # (B, n)
    f_final: Tensor  # (B, K)
    ps_measure: Tensor  # (B,) Pareto-stationarity measure at the final points (projected for box problems)
    distance: Tensor | None = None  # (B,) distance to the Pareto set where known
    hv: float | None = None  # hypervolume of the final points at problem.hv_reference (K ≤ 3)
    igd: float | None = None  # IGD of the final points to the analytic front (set methods)
    ps_measure_normalized: Tensor | None = None  # (B,) the scale-free PS-measure (gradients g_i/||g_i||), unbounded problems
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table of the final losses and metrics per starting point."""
        B, K = self.f_final.shape
        many = K > 8  # many objectives (the clusters problem: 128): their min, mean and max instead of K columns
        losses = ["min f_k", "mean f_k", "max f_k"] if many else [f"f_{k + 1}" for k in range(K)]
        head = ["start"] + losses + ["PS-measure"] + (["dist to PS"] if self.distance is not None else [])
        rows = []
        for b in range(B):
            f = self.f_final[b]
            values = [f.min(), f.mean(), f.max()] if many else f
            row = [str(b)] + [f"{float(v):.6g}" for v in values] + [f"{float(self.ps_measure[b]):.3e}"]
            if self.distance is not None:
                row.append(f"{float(self.distance[b]):.3e}")
            rows.append(row)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        lines = [
            f"{self.method} on {self.problem}: {self.steps} steps, {self.optimizer} lr={self.lr:g}, seed={self.seed}",
            "  ".join(h.rjust(w) for h, w in zip(head, widths)),
        ]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        if self.hv is not None:
            lines.append(f"hypervolume of the final points: {self.hv:.6g} (reference {self.extra.get('hv_reference')})")
        if self.igd is not None:
            lines.append(f"IGD of the final points: {self.igd:.6g}")
        if self.extra.get("losses") == "validation":  # bilevel-ridge: f are validation losses
            train = ", ".join(f"{float(v):.6g}" for v in self.extra["train_losses"][-1, 0])
            line = f"f_k are validation losses; final training losses: {train}"
            if self.extra.get("weights") is not None:
                line += "; final weights w: " + ", ".join(f"{float(v):.6g}" for v in self.extra["weights"][-1])
            lines.append(line)
        if self.extra.get("test_accuracy") is not None:  # network problems with a test split (multi-digits)
            acc = ", ".join(f"{float(v):.4f}" for v in self.extra["test_accuracy"])
            test = ", ".join(f"{float(v):.6g}" for v in self.extra["test_losses"])
            lines.append(f"test accuracy per task: {acc}; test losses: {test}")
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Resolving methods and problems
# ----------------------------------------------------------------------------------------------


def _method_factory(method: Any, params: dict[str, Any]) -> tuple[str, Callable[[], Any]]:
    """(display name, zero-argument factory giving a fresh, independent method instance)."""
    if isinstance(method, str):
        from reference_impls.registry import REGISTRY, create, load_class, names

        if method not in REGISTRY:
            known = ", ".join(names()) or "none registered yet"
            raise ValueError(f"unknown method {method!r}; known: {known}")
        try:
            cls = load_class(method)
        except (ImportError, AttributeError):  # pragma: no cover - a broken registry entry fails in create() below
            cls = None
        if cls is not None:
            params = coerce_hyperparameters(cls, params, method)
        try:
            create(method, **params)  # fail early, once, on bad hyperparameters
        except TypeError as error:
            raise ValueError(f"method {method!r}: bad hyperparameter(s) {sorted(params)}: {error}") from None
        return method, lambda: create(method, **params)
    if isinstance(method, type):
        params = coerce_hyperparameters(method, params, method.__name__)
        return method.__name__, lambda: method(**params)
    if params:
        raise ValueError("hyperparameters can only be given with a method name or class, not an instance")
    name = getattr(method, "name", "") or type(method).__name__
    return name, lambda: copy.deepcopy(method)


_KINDS: dict[Any, str] = {float: "a number", int: "an integer", bool: "True or False", str: "a string"}


def _accepted_kinds(annotation: Any) -> set[Any] | None:
    """The plain types a hyperparameter annotation admits (float, int, bool, str, None, sequence, tensor), or None if unknown."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    kinds: set[Any] = set()
    for a in args:
        origin = typing.get_origin(a) or a
        if a is type(None) or a is None:
            kinds.add(type(None))
        elif origin in (float, int, bool, str):
            kinds.add(origin)
        elif origin is Tensor:
            kinds.add("tensor")
        elif isinstance(origin, type) and issubclass(origin, (tuple, list)) or origin in (Sequence, typing.Sequence):
            kinds.add("sequence")
        else:
            return None  # an annotation we do not interpret: let the method check the value
    return kinds


def _describe(kinds: set[Any]) -> str:
    names = [_KINDS[k] for k in (float, int, bool, str) if k in kinds]
    names += ["a sequence such as (1, 10)"] * bool(kinds & {"sequence", "tensor"}) + ["None"] * (type(None) in kinds)
    return " or ".join(names)


def coerce_hyperparameters(cls: type, params: dict[str, Any], name: str) -> dict[str, Any]:
    """Check ``params`` against the signature of ``cls``: known names, values of the annotated type.

    Integers are accepted (and converted) where a float is expected. Raises a ValueError that names
    the parameter and the expected type, e.g. ``-p c=notanumber`` for CAGrad's float ``c``.
    """
    if not params:
        return params
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return params
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the defaults' types
        hints = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    known = [k for k, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out = {}
    for key, value in params.items():
        if key not in known:
            if accepts_any:
                out[key] = value
                continue
            raise ValueError(f"method {name!r}: bad hyperparameter {key!r}: no such hyperparameter (known: {', '.join(known) or 'none'})")
        param = signature.parameters[key]
        kinds = _accepted_kinds(hints[key]) if key in hints else None
        if kinds is None and param.default is not inspect.Parameter.empty and param.default is not None:
            kinds = {type(param.default)} | ({float} if isinstance(param.default, float) else set())
        if kinds is None:
            out[key] = value
            continue
        if value is None and type(None) in kinds:
            ok = True
        elif isinstance(value, bool):
            ok = bool in kinds
        elif isinstance(value, int) and float in kinds and int not in kinds:
            value, ok = float(value), True
        elif isinstance(value, (int, float, str)):
            ok = type(value) in kinds
        elif isinstance(value, (tuple, list, Tensor)):
            ok = bool(kinds & {"sequence", "tensor"})
        else:
            ok = False
        if not ok:
            raise ValueError(f"method {name!r}: bad hyperparameter {key!r}: expected {_describe(kinds)}, got {value!r}")
        out[key] = value
    return out


def _create_method(factory: Callable[[], Any], name: str, params: dict[str, Any]) -> Any:
    try:
        return factory()
    except TypeError as error:
        raise ValueError(f"method {name!r}: bad hyperparameter(s) {sorted(params)}: {error}") from None


class SGD:
    """Plain gradient descent p ← p − η·grad (torch.optim.SGD with its defaults)."""

    def __init__(self, params: Sequence[Tensor], lr: float) -> None:
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


class Adam(SGD):
    """Adam with torch.optim.Adam's defaults (β = (0.9, 0.999), ε = 1e-8, bias correction, no weight decay).

    Written out here because constructing a torch.optim optimiser imports torch._dynamo (seconds of
    start-up); the tests check it matches torch.optim.Adam step for step (relative 1e-13).

    On CPU float32/float64 parameters the step runs in numpy on the tensors' own memory (a few µs
    instead of ~60 µs of torch calls per step): separately rounded IEEE operations, element by
    element, so a row of a (B, K) parameter provably moves exactly as a (K,) parameter with the same
    gradients would (torch's kernels run vectorised bodies and scalar tails, which may round a
    multiply-add differently depending on the tensor's size; no difference was seen on this machine).
    That is what lets the runner step the parameters of B starts as one tensor
    (:func:`_batch_optimizer`). Other parameters (GPU, half precision) take the same formulas in torch.
    """

    def __init__(self, params: Sequence[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self._np: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(self.params)

    def _numpy_state(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(p, m, v, scratch) as numpy views of parameter i's memory, or None where the numpy step does not apply."""
        p, cached = self.params[i], self._np[i]
        if cached is not None and cached[0] == p.data_ptr():  # the cached view still shows p's memory
            return cached[1:]
        if not _numpy_steppable(p):
            return None
        m, v = self.m[i], self.v[i]
        self._np[i] = (p.data_ptr(), p.detach().numpy(), m.numpy(), v.numpy(), np.empty(tuple(p.shape), dtype=m.numpy().dtype))
        return self._np[i][1:]

    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        for i, (p, m, v) in enumerate(zip(self.params, self.m, self.v)):
            g = p.grad
            if g is None:
                continue
            state = self._numpy_state(i) if g.dtype == p.dtype and g.device.type == "cpu" and g.layout == torch.strided else None
            if state is not None:
                pn, mn, vn, tmp = state
                gn = g.numpy() if not g.requires_grad else g.detach().numpy()  # (same shape as p)
                np.multiply(mn, b1, out=mn)
                np.multiply(gn, 1 - b1, out=tmp)
                np.add(mn, tmp, out=mn)  # m ← β1 m + (1 − β1) g
                np.multiply(vn, b2, out=vn)
                np.multiply(gn, 1 - b2, out=tmp)
                np.multiply(tmp, gn, out=tmp)
                np.add(vn, tmp, out=vn)  # v ← β2 v + (1 − β2) g²
                np.divide(vn, bias2, out=tmp)
                np.sqrt(tmp, out=tmp)
                np.add(tmp, self.eps, out=tmp)  # √v̂ + ε
                step = np.multiply(mn, -self.lr / bias1)
                np.divide(step, tmp, out=step)
                np.add(pn, step, out=pn)  # p ← p − η m̂ / (√v̂ + ε)
                torch.autograd.graph.increment_version(p)  # p changed in place: autograd's version check still sees it
                continue
            with torch.no_grad():
                m.mul_(b1).add_((1 - b1) * g)  # m ← β1 m + (1 − β1) g
                v.mul_(b2).add_((1 - b2) * g * g)  # v ← β2 v + (1 − β2) g²
                denom = (v / bias2).sqrt_().add_(self.eps)  # √v̂ + ε
                p.add_((-self.lr / bias1) * m / denom)  # p ← p − η m̂ / (√v̂ + ε)


def _numpy_steppable(p: Tensor) -> bool:
    """Whether :class:`Adam` steps ``p`` in numpy: a dense CPU float32/float64 tensor."""
    return p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.layout == torch.strided


def _optimizer(kind: str, params: Sequence[Tensor], lr: float) -> SGD:
    if kind == "adam":
        return Adam(params, lr=lr)
    if kind == "sgd":
        return SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(OPTIMIZERS)}")


# ----------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------


def run(
    method: Any,
    problem: Any,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    optimizer: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    problem_params: dict[str, Any] | None = None,
    record_every: int = 1,
    threads: int | None = 1,
    representation: bool = False,
    progress: bool | None = False,
    fast: bool = True,
    solutions: int | None = None,
    preferences: Tensor | None = None,
) -> RunResult:
    """Optimise ``problem`` with ``method`` from the problem's standard starting points.

    Args:
        method: a registry id (built with ``params``), a method class (built with ``params``) or an
            instance (deep-copied per starting point, so the given object is never modified).
        problem: a problem id (built with ``problem_params``) or a problem object.
        steps, lr, optimizer: default to the problem's ``default_steps``, ``default_lr``,
            ``default_optimizer``.
        seed: seeds the starting points (where random) and the methods' randomness.
        params: hyperparameters, checked against the method's signature (name and type).
        record_every: keep every ``record_every``-th iterate in the trajectory (and the last).
        representation: ``mtl-regression`` only: weightings compute w from ∂f_i/∂Z, Z the shared
            representation (the "-UB" mode of ``Aggregator.backward``); methods with an activation
            hook (GradDrop) use it on Z.
        threads: torch intra-op threads during the run (restored afterwards); toy tensors are tiny,
            and several threads only contend (measured 25× slower on a busy 2-core machine). None
            keeps the current setting.
        fast: on CPU point problems with a closed-form Jacobian, run the loop in numpy
            (:func:`_loop_points_fast`, the default); False runs the torch loop (same results up to
            rounding, tested).
        progress: report progress on stderr: False (default) never, True always (after 1 s), None
            automatically (``modl run``): on a terminal once the run takes more than 1 s, otherwise a
            line every 10 s of a long run.

    The final method instances (one per start; one for set methods and networks) are in
    ``result.extra["methods"]``.

    Set methods (``solutions`` P, ``preferences`` (P, K)) are run by
    :func:`reference_impls.set_runner.run_set`, which also takes the method's own run defaults.
    """
    from reference_impls.pareto_runner import is_pareto_model, run_pareto
    from reference_impls.set_runner import is_set_method, run_set

    if is_pareto_model(method):  # trained once, evaluated on `solutions` held-out preferences (default 25)
        if representation:
            raise ValueError("representation (-UB) mode is for single-network methods, not Pareto-set models")
        return run_pareto(
            method, problem, steps=steps, lr=lr, optimizer=optimizer, seed=seed, params=params, problem_params=problem_params,
            held_out=solutions, preferences=preferences, record_every=None if record_every == 1 else record_every,
            threads=threads, progress=progress,
        )  # fmt: skip
    if is_set_method(method):
        if representation:
            raise ValueError("representation (-UB) mode is for single-network methods, not set methods")
        return run_set(
            method, problem, solutions=solutions, preferences=preferences, steps=steps, lr=lr, optimizer=optimizer, seed=seed,
            params=params, problem_params=problem_params, record_every=record_every, threads=threads, progress=progress, fast=fast,
        )  # fmt: skip
    if solutions is not None or preferences is not None:
        raise ValueError(f"{getattr(method, 'name', None) or method}: --solutions and preferences apply to set methods only")
    params = dict(params or {})
    if isinstance(problem, str):
        problem = get_problem(problem, **(problem_params or {}))
    elif problem_params:
        raise ValueError("problem knobs can only be given with a problem id")
    steps = int(problem.default_steps if steps is None else steps)
    lr = float(problem.default_lr if lr is None else lr)
    optimizer = problem.default_optimizer if optimizer is None else optimizer
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if representation and not isinstance(problem, NetworkProblem):
        raise ValueError("representation (-UB) mode needs a network problem (mtl-regression, multi-digits)")
    name, factory = _method_factory(method, params)
    with torch.random.fork_rng(devices=[]), _threads(threads):
        torch.manual_seed(int(seed))
        probe = _create_method(factory, name, params)
        report = _Progress(f"{name} on {getattr(problem, 'id', problem)}", steps, progress)
        settings = dict(method=name, steps=steps, lr=lr, seed=int(seed), optimizer=optimizer, record_every=record_every, report=report)
        try:
            if isinstance(problem, NetworkProblem):
                return _run_model(probe, problem, representation=representation, **settings)
            if isinstance(problem, BilevelRidge):
                return _run_bilevel(probe, problem, **settings)
            if not isinstance(problem, Problem):
                raise ValueError(f"not a toy problem: {problem!r}")
            if isinstance(probe, LossWeighting):
                if probe.bilevel:
                    raise ValueError(f"{name} is a bi-level method: it needs train/validation losses, not a point problem (use --problem bilevel-ridge)")
                methods = [probe] + [factory() for _ in range(problem.initial_points(seed).shape[0] - 1)]
                return _run_points(methods, problem, loss_weighting=True, fast=fast, **settings)
            if not callable(probe):
                raise ValueError(f"{name} is not a method: expected an aggregator, a loss weighting or a set method")
            methods = [probe] + [factory() for _ in range(problem.initial_points(seed).shape[0] - 1)]
            return _run_points(methods, problem, loss_weighting=False, fast=fast, **settings)
        finally:
            report.close()


class _Progress:
    """Progress on stderr for long runs: a refreshed line on a terminal, a line every 10 s otherwise."""

    def __init__(self, label: str, total: int, mode: bool | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.enabled, self.clock = label, total, mode is not False, clock
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.first = 1.0 if (self.tty or mode) else 10.0  # seconds before the first report
        self.every = 0.5 if self.tty else (1.0 if mode else 10.0)
        self.start = clock()
        self.next = self.start + self.first
        self.shown = False

    def __call__(self, t: int) -> None:
        if not self.enabled or t & 63:  # look at the clock every 64 steps only
            return
        now = self.clock()
        if now < self.next:
            return
        self.next = now + self.every
        elapsed = now - self.start
        left = elapsed * (self.total - t) / max(t, 1)
        line = f"{self.label}: step {t}/{self.total} ({100 * t // max(self.total, 1)}%), {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else (line + "\n"))
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loop_points(
    problem: Problem,
    x0: Tensor,
    steps: int,
    lr: float,
    optimizer: str,
    record_every: int,
    direction: Callable[[int, Tensor, Tensor, Tensor], Tensor],
    after_step: Callable[[int, Tensor], None] | None = None,
    report: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The shared descent loop: x ← Π(x − η·direction(t, x, F, J)). Returns x and F trajectories and the final F, J.

    ``after_step(t, F_new)`` runs after step t with the losses at the new iterate (before the next direction).
    """
    x = problem.project(x0.clone()).requires_grad_(True)  # (B, n)
    opt = _optimizer(optimizer, [x], lr)
    bounded = problem.bounds is not None
    xs, fs = [], []
    for t in range(steps + 1):
        F, J = problem.losses_and_jacobian(x.detach())  # (B, K), (B, K, n)
        if t > 0 and after_step is not None:
            after_step(t - 1, F)
        if t % record_every == 0 or t == steps:
            xs.append(x.detach().clone())
            fs.append(F)
        if t == steps:
            return torch.stack(xs), torch.stack(fs), F, J
        if report is not None:
            report(t)
        D = direction(t, x.detach(), F, J)  # (B, n)
        if not bool(torch.isfinite(D.sum())) and not bool(torch.isfinite(D).all()):
            raise ValueError(f"the method returned a non-finite direction at step {t}")
        x.grad = D.to(x)
        opt.step()
        if bounded:
            with torch.no_grad():
                x.copy_(problem.project(x))
    raise AssertionError("unreachable")  # pragma: no cover


def _loop_points_fast(
    problem: Problem,
    x0: Tensor,
    steps: int,
    lr: float,
    optimizer: str,
    record_every: int,
    direction: Callable[[int, Tensor, Tensor, Tensor], Tensor],
    after_step: Callable[[int, Tensor], None] | None = None,
    report: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_loop_points` with F and J from the problem's numpy closed form (CPU problems that have one).

    Same steps, hooks and optimiser (the runner's torch :class:`Adam`/:class:`SGD`, stepping a tensor
    that shares x's memory, so the update rounds exactly as in the torch loop) in the same order; the
    methods get tensors that are views of fresh numpy arrays. Exact operations (projection, finiteness
    checks) run in numpy. The only difference from the torch loop is the rounding of F and J
    (numpy's tanh/log vs torch's): ``tests/reference_impls/test_runner_speed_paths.py`` checks that the
    loop is otherwise bit-identical and bounds the difference.
    """
    x = problem.project(x0.clone()).detach().numpy().copy()  # (B, n)
    x_shared = torch.from_numpy(x).requires_grad_(True)  # the optimiser's parameter: x's memory, (B, n)
    opt = _optimizer(optimizer, [x_shared], lr)
    lower, upper = (None, None) if problem.bounds is None else (b.numpy() for b in problem.bounds)
    evaluate = problem._np_value_and_jacobian
    xs, fs = [], []
    for t in range(steps + 1):
        Fn, Jn = evaluate(x)  # (B, K), (B, K, n)
        F, J = torch.from_numpy(Fn), torch.from_numpy(Jn)
        if t > 0 and after_step is not None:
            after_step(t - 1, F)
        if t % record_every == 0 or t == steps:
            xs.append(x.copy())
            fs.append(Fn)
        if t == steps:
            return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(fs)), F, J
        if report is not None:
            report(t)
        D = direction(t, torch.from_numpy(x.copy()), F, J).detach().to(x_shared)  # (B, n)
        if not np.isfinite(D.numpy()).all():
            raise ValueError(f"the method returned a non-finite direction at step {t}")
        x_shared.grad = D
        opt.step()  # writes x in place
        if lower is not None:
            np.maximum(np.minimum(x, upper, out=x), lower, out=x)  # Π_box
    raise AssertionError("unreachable")  # pragma: no cover


def _directions2(methods: list[Any], F: Tensor, J: Tensor, needs_losses: bool) -> Tensor:
    """d_b for every start of a K = 2, n = 2 float64 run from ``method.direction2(rows, losses)`` on Python floats.

    The protocol (reference_impls/core/solvers.py): direction2 returns the general path's direction bit for bit
    (tested per method), or None with no state changed, and then the start runs its general path
    (``method(J_b, F_b)``), which decides and raises the defined errors. One ``tolist`` per step instead of
    per-start tensor calls (each 1-5 µs, far above the arithmetic of a 2×2 problem).
    """
    rows, losses = J.tolist(), (F.tolist() if needs_losses else None)  # (B, K, n) or (B, S, K, n); (B, K)
    D = []
    for b, m in enumerate(methods):
        d = m.direction2(rows[b], losses[b] if needs_losses else None)
        if d is None:
            d = (m(J[b], F[b]) if needs_losses else m(J[b])).tolist()  # the general path (raises on bad input)
        D.append(d)
    return torch.from_numpy(np.array(D, dtype=np.float64))  # (B, n)


def _batched_gramian_weighting(m: Any) -> bool:
    """Whether ``m`` computes d = Jᵀ w(J Jᵀ) through the interface's own __call__ (so the runner may batch M)."""
    cls = type(m)
    return (
        isinstance(m, GramianWeighting)
        and cls.__call__ is Aggregator.__call__
        and cls.aggregate is Weighting.aggregate
        and cls.compute_weights is GramianWeighting.compute_weights
    )


def _start_batch(methods: list[Any], optimizer: str, lr: float) -> StartBatch | None:
    """The method class's :class:`~reference_impls.core.loss_weighting.StartBatch` for these instances, or None."""
    make = getattr(type(methods[0]), "start_batch", None)
    if make is None:
        return None
    return make(methods, lambda P: _batch_optimizer(optimizer, P, lr))


class _RowSGD:
    """:class:`SGD` on each row of a (B, ...) parameter separately: torch's p.add_(g, alpha=−η) may fuse the
    multiply-add on some entries depending on the tensor's size, so each row view steps as a per-start tensor would."""

    def __init__(self, P: Tensor, lr: float) -> None:
        self.P, self.lr = P, lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.P.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if self.P.grad is None:
            return
        for row, g in zip(self.P.unbind(0), self.P.grad.unbind(0)):
            row.add_(g, alpha=-self.lr)  # SGD.step of the row alone


def _batch_optimizer(kind: str, P: Tensor, lr: float) -> Any:
    """An optimiser over the (B, ...) parameter P that moves each row exactly as the per-start optimiser moves that row alone.

    Adam: one :class:`Adam` over P (its CPU step is element-wise numpy arithmetic, independent of the shape).
    SGD: one :class:`SGD` step per row view (torch's kernel rounding may depend on the tensor's size)."""
    if kind == "adam" and _numpy_steppable(P):
        return Adam([P], lr=lr)
    if kind == "sgd":
        return _RowSGD(P, lr)
    raise ValueError(f"no batched {kind!r} optimiser for a {P.dtype} parameter on {P.device}")


def _run_points(
    methods: list[Any], problem: Problem, *, loss_weighting: bool, method: str, steps: int, lr: float, seed: int, optimizer: str, record_every: int,
    report: Callable[[int], None] | None = None, fast: bool = True,
) -> RunResult:  # fmt: skip
    x0 = problem.initial_points(seed)  # (B, n)
    hooks = defined_hooks(methods[0])  # every start has an instance of the same class
    # Each start's learnable parameters get their own optimiser of the run's kind (Adam is per entry anyway).
    method_opts = [_optimizer(optimizer, learnable_parameters([m]), lr) if "parameters" in hooks else None for m in methods]
    method_opts = [o if o is not None and o.params else None for o in method_opts]
    needs_losses = bool(getattr(methods[0], "needs_losses", False))
    # Stochastic oracle (problems/noisy.py): S = the method's jacobian_samples independent samples per
    # step from a seeded stream; methods see J (K, n) when S = 1, else (S, K, n); metrics use exact F, J.
    samples = int(getattr(methods[0], "jacobian_samples", 1))
    if samples < 1 or (loss_weighting and samples != 1):
        raise ValueError(f"{method}: jacobian_samples must be 1 for a loss weighting and >= 1 otherwise, got {samples}")
    noise = problem.noise_generator(seed) if isinstance(problem, NoisyProblem) else None
    batched = not loss_weighting and samples == 1 and _batched_gramian_weighting(methods[0])
    # K = 2 on Python floats where the method class offers it (solvers.py, the direction2 protocol)
    floats2 = not loss_weighting and callable(getattr(methods[0], "direction2", None))
    # A method class may step all B starts as one (B, K) computation (core/loss_weighting.StartBatch):
    # the same arithmetic per start, without B autograd graphs, B optimisers and B input checks per step.
    start_batch = _start_batch(methods, optimizer, lr) if samples == 1 else None
    if start_batch is not None:
        method_opts = [None] * len(methods)  # the batch steps the methods' parameters itself

    # Methods that read loss values see f − ℓ* where the problem declares lower bounds ℓ*.
    offset = None if problem.loss_lower_bound is None else torch.tensor(problem.loss_lower_bound, dtype=x0.dtype)
    offset_np = None if offset is None else offset.numpy()  # (K,)

    def shifted(F: Tensor) -> Tensor:
        if offset is None:
            return F
        if F.device.type == "cpu" and F.dtype == offset.dtype and not F.requires_grad:
            return torch.from_numpy(F.numpy() - offset_np)  # the same IEEE subtraction, without a torch call
        return F - offset.to(F)

    def per_start(t: int, F: Tensor, J: Tensor) -> Tensor:
        D = []
        for b, m in enumerate(methods):
            if method_opts[b] is not None:
                method_opts[b].zero_grad(set_to_none=True)
            if loss_weighting:
                w = m.weights(F[b], t)  # (K,)
                D.append(w.detach().to(J) @ J[b])  # d = Jᵀ w, (n,)
                if method_opts[b] is not None:
                    m.objective(F[b], t).backward()  # gradient w.r.t. the method's own parameters
            elif needs_losses:
                D.append(m(J[b], F[b]))
            else:
                D.append(m(J[b]))
            if method_opts[b] is not None:
                method_opts[b].step()
            if loss_weighting:
                m.observe(F[b], t)
        return torch.stack(D)  # (B, n)

    def direction(t: int, x: Tensor, F: Tensor, J: Tensor) -> Tensor:
        if noise is not None:
            F_s, J_s = problem.perturb(F, J, noise, samples)  # F_s = F + σζ_s (S, B, K), J_s = J + σξ_s (S, B, K, n)
            F, J = F_s[0], (J_s[0] if samples == 1 else J_s.transpose(0, 1))  # (B, K), (B, K, n) or (B, S, K, n)
        elif samples > 1:
            J = J.unsqueeze(1).expand(-1, samples, -1, -1)  # an exact oracle's S samples are all J, (B, S, K, n)
        F = shifted(F)
        if start_batch is not None:
            W = start_batch.step(t, F, J)  # (B, K) w_b of every start, in J's dtype
            return torch.stack([w @ J_b for w, J_b in zip(W.unbind(0), J.unbind(0))])  # d_b = J_bᵀ w_b with the per-start product, (B, n)
        if floats2 and method_opts[0] is None and J.shape[-2:] == (2, 2) and J.dtype == torch.float64 and J.device.type == "cpu":
            return _directions2(methods, F, J, needs_losses)  # (B, n), each start's direction2 or its general path
        if batched and method_opts[0] is None:
            # M_b = J_b J_bᵀ with the same product as gramian(J_b) (a batched matmul rounds differently for
            # n ≥ 10), checked once for the whole batch instead of per start, (B, K, K)
            M = torch.stack([J[b] @ J[b].T for b in range(len(methods))])
            if bool(torch.isfinite(M.sum() + F.sum())):  # else the per-start path raises the interface's error
                W = [m.compute_weights_from_gramian(M[b], F[b] if needs_losses else None) for b, m in enumerate(methods)]  # w_b (K,)
                return torch.stack([w @ J[b] for b, w in enumerate(W)])  # d_b = J_bᵀ w_b, (B, n)
        return per_start(t, F, J)

    after_step = None
    if "update" in hooks or "on_epoch_end" in hooks:

        update, epoch_end = "update" in hooks, "on_epoch_end" in hooks

        def after_step(t: int, F_new: Tensor) -> None:
            if noise is not None:  # the stochastic oracle's losses at the new iterate: F + σζ
                F_new = F_new + problem.sigma * torch.randn(F_new.shape, generator=noise, dtype=F_new.dtype)
            F_new = shifted(F_new)
            if start_batch is not None:
                start_batch.after_step(t, F_new)  # update(F_new_b), on_epoch_end(t) of every start
                return
            for b, m in enumerate(methods):
                if update:
                    m.update(F_new[b])  # post-step losses (FAMO's ξ step)
                if epoch_end:
                    m.on_epoch_end(t)  # full batch: every step is an epoch

    loop = _loop_points_fast if fast and problem.has_closed_form else _loop_points
    xs, fs, F, J = loop(problem, x0, steps, lr, optimizer, record_every, direction, after_step, report)
    if start_batch is not None:
        start_batch.finish()  # the instances hold the final state, as after the per-start loop
    result = _finish(problem, method, optimizer, steps, lr, seed, xs, fs, F, J, set_method=False)
    result.extra["methods"] = methods
    return result


def _finish(problem: Problem, method: str, optimizer: str, steps: int, lr: float, seed: int, xs: Tensor, fs: Tensor, F: Tensor, J: Tensor, *, set_method: bool) -> RunResult:
    x = xs[-1]
    ps_normalized = None
    if problem.bounds is not None:
        ps = metrics.projected_pareto_stationarity(J, x, *problem.bounds)
    else:
        ps = metrics.pareto_stationarity(J)
        ps_normalized = metrics.pareto_stationarity(J, normalize=True)
    distance = problem.distance_to_pareto_set(x) if problem.has_pareto_set else None
    hv = None
    if problem.K <= 3 and problem.hv_reference is not None:
        hv = metrics.hypervolume(F, problem.hv_reference)
    igd = metrics.igd(F, problem.pareto_front(1000)) if set_method and problem.has_pareto_front else None
    return RunResult(
        method=method, problem=problem.id, optimizer=optimizer, steps=steps, lr=lr, seed=seed,
        x=xs, f=fs, x_final=x, f_final=F, ps_measure=ps, distance=distance, hv=hv, igd=igd,
        ps_measure_normalized=ps_normalized, extra={"hv_reference": problem.hv_reference},
    )  # fmt: skip


def _run_model(
    m: Any, problem: NetworkProblem, *, method: str, steps: int, lr: float, seed: int, optimizer: str, record_every: int, representation: bool,
    report: Callable[[int], None] | None = None,
) -> RunResult:  # fmt: skip
    if isinstance(m, SetMethod):
        raise ValueError(f"{method} is a set method: {problem.id} trains a single network")
    if isinstance(m, LossWeighting) and m.bilevel:
        raise ValueError(f"{method} is a bi-level method: it needs a validation split, which {problem.id} does not define (use --problem bilevel-ridge)")
    if representation and not (isinstance(m, Weighting) or "attach" in defined_hooks(m)):
        raise ValueError(f"{method}: the representation (-UB) mode needs a weighting or a method with an activation hook")
    if not isinstance(m, LossWeighting) and not callable(m):
        raise ValueError(f"{method} is not a method usable on {problem.id}")
    model = problem.reset(seed)
    shared, task = problem.shared_parameters(), problem.task_parameters()
    opt = _optimizer(optimizer, list(model.parameters()) + learnable_parameters([m]), lr)
    batches = problem.batches(seed)
    per_epoch = 1 if problem.batch_size is None else max(1, problem.N // problem.batch_size)  # batches per pass over the data
    fs = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            with torch.no_grad():
                fs.append(problem.losses().detach()[None])  # full-data losses, (1, K)
        if t == steps:
            break
        if report is not None:
            report(t)
        batch = next(batches)
        train_step(m, lambda: problem.losses(batch, return_representation=representation), opt, shared, task, step=t, representation=representation)
        if (t + 1) % per_epoch == 0:
            end_epoch(m, (t + 1) // per_epoch - 1)
    F = torch.stack(fs)  # (T'+1, 1, K)
    ps = metrics.pareto_stationarity(problem.jacobian())[None]  # (1,)
    return RunResult(
        method=method, problem=problem.id, optimizer=optimizer, steps=steps, lr=lr, seed=seed,
        x=None, f=F, x_final=None, f_final=F[-1], ps_measure=ps, extra={"hv_reference": None, "methods": [m], **problem.evaluation()},
    )  # fmt: skip


def _run_bilevel(
    m: Any, problem: BilevelRidge, *, method: str, steps: int, lr: float, seed: int, optimizer: str, record_every: int,
    report: Callable[[int], None] | None = None,
) -> RunResult:  # fmt: skip
    """Train the model ω of ``bilevel-ridge`` with a loss weighting, calling every hook.

    Each step is :func:`reference_impls.core.hooks.bilevel_step` (the documented loop's step): the
    outer step of a bi-level method every ``outer_every`` steps (with the validation losses), then the
    inner step on Σ w_i f_i^tr + ½·ridge·‖ω‖² with the run's optimiser (skipped on outer steps of a
    method that moves the model, FORUM); ``observe`` and ``on_epoch_end`` after every step (full batch).
    Plain loss weightings (no outer step) train the same lower level, as baselines.

    The recorded losses ``f`` are the VALIDATION losses (the upper-level objectives); the training
    losses, and for bi-level methods the weights w at each recorded step and ‖ω − ω*(w)‖ (the distance
    of the final model to the lower-level solution for the final weights; None where ω*(w) does not
    exist or for single-level weightings, whose weights() may draw or update state) are in ``extra``.
    """
    if not isinstance(m, LossWeighting):
        raise ValueError(f"{method} is not a loss weighting: bilevel-ridge trains one model ω on weighted training losses (loss weightings and bi-level methods only)")
    omega = problem.reset(seed)  # (n,)
    params = [omega]
    opt = _optimizer(optimizer, params + learnable_parameters([m]), lr)
    xs, fs, ftr, ws = [], [], [], []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            with torch.no_grad():
                losses_tr = problem.train_losses(omega)  # (K,)
                xs.append(omega.detach().clone()[None])  # (1, n)
                fs.append(problem.val_losses(omega)[None])  # (1, K)
                ftr.append(losses_tr[None])
                if m.bilevel:  # λ is the learned state (reading it has no side effect; RLW's weights() would draw)
                    ws.append(m.weights(losses_tr, t).detach().clone().to(losses_tr))  # (K,) the weights at step t
        if t == steps:
            break
        if report is not None:
            report(t)
        bilevel_step(m, params, problem.train_losses_at, problem.val_losses_at, opt, lr=lr, step=t, weight_decay=problem.ridge)
        if not bool(torch.isfinite(omega.detach()).all()):
            raise ValueError(f"{method}: the model became non-finite at step {t} (lower the learning rate)")
        end_epoch(m, t)  # full batch: every step is an epoch
    x_final = omega.detach().clone()
    with torch.no_grad():
        J_val = problem.val_gradients(x_final)[None]  # (1, K, n)
    gap = None
    if ws:
        try:
            gap = float((x_final - problem.lower_solution(ws[-1])).norm())
        except ValueError:  # ω*(w) does not exist (Σ w_i f_i^tr + ½·ridge·‖ω‖² not strongly convex)
            gap = None
    F = torch.stack(fs)  # (T'+1, 1, K)
    return RunResult(
        method=method, problem=problem.id, optimizer=optimizer, steps=steps, lr=lr, seed=seed,
        x=torch.stack(xs), f=F, x_final=x_final[None], f_final=F[-1], ps_measure=metrics.pareto_stationarity(J_val),
        extra={
            "hv_reference": None, "methods": [m], "losses": "validation",
            "train_losses": torch.stack(ftr), "weights": torch.stack(ws) if ws else None, "lower_level_gap": gap,
        },
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# `modl run`
# ----------------------------------------------------------------------------------------------


def parse_params(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` strings into (method hyperparameters, problem knobs, runner options).

    Values are Python literals when they parse (``0.5``, ``(1, 10)``, ``True``), strings otherwise;
    :func:`run` then checks each method hyperparameter against the method's signature (name and type).
    Keys ``problem.<knob>`` go to the problem (e.g. ``problem.scale=0.1``), ``run.<option>`` to the
    runner (``run.optimizer=sgd``, ``run.record_every=10``, ``run.representation=True``), all others
    to the method.
    """
    method, problem, runner = {}, {}, {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"bad parameter {item!r}: expected KEY=VALUE")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        if key.startswith("problem."):
            problem[key[len("problem.") :]] = value
        elif key.startswith("run."):
            option = key[len("run.") :]
            if option not in ("optimizer", "record_every", "representation"):
                raise ValueError(f"unknown runner option {option!r}; known: optimizer, record_every, representation")
            runner[option] = value
        else:
            method[key] = value
    return method, problem, runner


def run_from_cli(args: Any) -> int:
    """``modl run METHOD --problem P [--steps N --lr LR --seed S --plot FILE -p key=value ...]``."""
    method_params, problem_params, runner_options = parse_params(getattr(args, "param", []) or [])
    problem = get_problem(args.problem, **problem_params)
    result = run(
        args.method, problem, steps=args.steps, lr=args.lr, seed=args.seed,
        params=method_params, progress=None, solutions=getattr(args, "solutions", None), **runner_options,
    )  # fmt: skip
    print(result.table(), end="")
    pareto = bool(result.extra.get("pareto_model"))
    if pareto:  # a Pareto-set model: the held-out metrics
        from reference_impls.pareto_runner import metrics_table as pareto_table

        print(pareto_table(result.extra["metrics"]), end="")
    elif "metrics" in result.extra:  # a set method: the set's metrics
        from reference_impls.set_runner import metrics_table

        print(metrics_table(result), end="")
    if getattr(args, "plot", None):
        from reference_impls.plotting import plot_result

        if pareto:
            from reference_impls.pareto_runner import plot_pareto

            plot_pareto(result, problem, args.plot)
        else:
            plot_result(result, problem, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


__all__ = ["Adam", "RunResult", "SGD", "coerce_hyperparameters", "parse_params", "run", "run_from_cli", "train_step"]
