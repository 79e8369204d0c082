"""One cell of ``modl bench``: a registered method on one suite with one seed, and which cells apply.

Applicability (:func:`applicability`, the only reason a cell is "n/a"; anything that goes wrong inside
a run is an "error" cell):

* A suite compares one family (``suite.kind``): single-solution methods (registry interfaces
  aggregator, weighting, gramian-weighting, loss-weighting), set methods, or Pareto-set models. A
  method of another family is not part of the suite's plan at all.
* Bi-level loss weightings (``LossWeighting.bilevel``: Auto-Lambda, MOML, FORUM) need training and
  validation losses: n/a on every single-solution suite except ``bilevel-ridge``.
* ``bilevel-ridge`` trains one model on weighted training losses: loss weightings only (the gradient
  aggregators are n/a there).
* Pareto-set models on a box-constrained problem (``problem.bounds``: ZDT1, ZDT2, DTLZ2): only models
  whose output stays in the box apply (:data:`BOX_AWARE_MODELS`). The runner evaluates a model's raw
  output; outside the box the losses are undefined (ZDT: f2 takes the square root of f1/g, negative
  there) or not those of the problem (DTLZ2: negative, which EPO's log criterion rejects).
* Model merging (:data:`MERGING_MODELS`) needs task models to merge: n/a on a problem that has none
  (nor task optima, objective minimisers or a closed-form LS solution at the simplex's vertices).
* A Pareto-set model whose network is built for one data set (:data:`DATA_SPECIFIC_MODELS`) is n/a on
  the others.

Metrics: see the ``metrics`` columns of each suite (:mod:`reference_impls.bench.suites`); a metric
that does not apply to a cell is None. A non-finite metric makes the cell an error.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
import traceback
from collections.abc import Iterator
from typing import Any

from reference_impls.bench.suites import Suite, get_suite
from reference_impls.registry import REGISTRY, load_class

SINGLE_INTERFACES = ("aggregator", "weighting", "gramian-weighting", "loss-weighting")

# Pareto-set models whose output is kept inside the problem's box (hyper-transformer: D3, the output
# activation is chosen from problem.bounds). The others output unbounded vectors.
BOX_AWARE_MODELS = frozenset({"hyper-transformer"})
# Pareto-set models that merge task models: they need a problem with task models (or task optima /
# objective minimisers and a starting point) to merge.
MERGING_MODELS = frozenset({"moe-fusion", "moe-fusion-epo", "pareto-merging"})
# Pareto-set models whose own network is built for one data set only: model -> (problems they cannot
# take, why). controllable-dynamic-mtl builds its anchor net from the data of mtl-regression (regression
# targets, scalar heads): it has no classification version for Multi-Digits.
DATA_SPECIFIC_MODELS = {
    "controllable-dynamic-mtl": (frozenset({"multi-digits-set"}),
                                 "its anchor net is the regression tree network of mtl-regression (scalar heads on "
                                 "regression targets); it has no classification version for Multi-Digits"),
}  # fmt: skip

# Bump when the metrics computed from a run change: every cell's key changes, so every cell reruns.
CELL_FORMAT = 1


def family(method: str) -> str:
    """The suite kind a registered method belongs to: "single", "set" or "pareto-model"."""
    interface = REGISTRY[method].interface
    if interface in SINGLE_INTERFACES:
        return "single"
    if interface in ("set", "pareto-model"):
        return interface
    raise ValueError(f"{method}: unknown registry interface {interface!r}")


def suite_methods(suite: Suite) -> list[str]:
    """The registered methods of the suite's family, sorted (applicable or n/a)."""
    return [name for name in sorted(REGISTRY) if family(name) == suite.kind]


def applicability(suite: Suite, method: str) -> str | None:
    """None when ``method`` runs on ``suite``, else the reason it does not (an "n/a" cell)."""
    if family(method) != suite.kind:
        return f"a {family(method)} method: the suite compares {suite.kind} methods"
    if suite.kind == "single":
        from reference_impls.core.loss_weighting import LossWeighting

        cls = load_class(method)
        bilevel = bool(getattr(cls, "bilevel", False))
        if suite.problem == "bilevel-ridge":
            if not issubclass(cls, LossWeighting):
                return ("bilevel-ridge trains one model on weighted training losses: loss weightings only "
                        "(a gradient aggregator has no task-wise shared gradients to combine there)")  # fmt: skip
            return None
        if bilevel:
            return (f"bi-level method: needs training and validation losses, which {suite.problem} does not define "
                    "(it runs on the bilevel-ridge suite)")  # fmt: skip
        return None
    if suite.kind == "pareto-model":
        problem = _problem(suite)
        if problem.bounds is not None and method not in BOX_AWARE_MODELS:
            return (f"unbounded model output: {suite.problem} is defined on a box, and this model does not map "
                    "preferences into it (its losses outside the box are undefined or not the problem's)")  # fmt: skip
        if method in MERGING_MODELS and not _has_task_models(problem):
            return (f"merges task models: {suite.problem} has none to merge (nor task optima, objective minimisers or "
                    "a closed-form linear-scalarisation solution to stand in for them)")  # fmt: skip
    problems, why = DATA_SPECIFIC_MODELS.get(method, (frozenset(), ""))
    if suite.problem in problems:
        return why
    return None


_PROBLEMS: dict[str, Any] = {}  # applicability builds each suite's problem once per process


def _problem(suite: Suite) -> Any:
    from reference_impls.problems import get_problem

    key = f"{suite.problem}:{sorted(suite.problem_params.items())}"
    if key not in _PROBLEMS:
        _PROBLEMS[key] = get_problem(suite.problem, **suite.problem_params)
    return _PROBLEMS[key]


def _has_task_models(problem: Any) -> bool:
    if any(getattr(problem, name, None) is not None for name in ("task_models", "task_optima", "task_vectors")):
        return True
    return problem.objective_minimisers() is not None or hasattr(problem, "linear_scalarisation_solution")


@contextlib.contextmanager
def count_backward() -> Iterator[list[int]]:
    """Count the calls of torch.autograd.backward and torch.autograd.grad inside the block (Tensor.backward
    calls the former). Yields a one-element list holding the count."""
    import torch

    counter = [0]
    original_backward, original_grad = torch.autograd.backward, torch.autograd.grad

    def backward(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original_backward(*args, **kwargs)

    def grad(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original_grad(*args, **kwargs)

    torch.autograd.backward, torch.autograd.grad = backward, grad
    try:
        yield counter
    finally:
        torch.autograd.backward, torch.autograd.grad = original_backward, original_grad


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _cap(default: Any, cap: int) -> int | None:
    return None if default is None else min(int(default), int(cap))


def _run(suite: Suite, method: str, seed: int, mode: str, problem: Any) -> tuple[Any, dict[str, Any]]:
    """Run the cell through the existing runners; returns (RunResult, what it ran with)."""
    from reference_impls.pareto_runner import run_pareto
    from reference_impls.runner import run
    from reference_impls.set_runner import run_set

    settings = suite.run_settings(mode)
    if suite.kind == "single":
        # Loss weightings sized by a task count (UW, IMTL-L, DWA, RLW, EW: num_tasks, default 2) get the problem's K.
        params = {"num_tasks": problem.K} if "num_tasks" in inspect.signature(load_class(method)).parameters else {}
        result = run(method, problem, steps=settings["steps"], lr=settings["lr"], optimizer=settings["optimizer"], seed=seed,
                     params=params, record_every=max(1, settings["steps"] // 100), threads=1)  # fmt: skip
        return result, {"steps": result.steps, "lr": result.lr, "optimizer": result.optimizer, **({"params": params} if params else {})}
    cls = load_class(method)
    steps = min(int(cls.default_steps if cls.default_steps is not None else problem.default_steps), int(settings["max_steps"]))
    if suite.kind == "set":
        result = run_set(method, problem, solutions=settings["solutions"], steps=steps, seed=seed, threads=1,
                         record_every=max(1, steps // 100))  # fmt: skip
        return result, {"steps": result.steps, "lr": result.lr, "optimizer": result.optimizer, "solutions": settings["solutions"]}
    result = run_pareto(method, problem, steps=steps, seed=seed, held_out=settings["held_out"], threads=1)
    return result, {"steps": result.steps, "lr": result.lr, "optimizer": result.optimizer, "batch": result.extra["batch"]}


def _metrics(suite: Suite, result: Any, problem: Any) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(the suite's metric values, the initial values used by the sanity checks) of one run."""
    import torch

    out: dict[str, float | None] = {}
    F = result.f_final.to(torch.float64)  # (B, K) final losses, one row per start / solution / held-out preference
    F0 = result.f[0].to(torch.float64)  # (B, K) at step 0
    K = F.shape[1]
    initial = {"loss_mean": float(F0.mean())}
    out["loss_mean"] = float(F.mean())
    if suite.kind == "single":
        for k in range(K):
            out[f"loss_{k + 1}"] = float(F[:, k].mean())  # mean over the starts
        out["ps_max"] = float(result.ps_measure.max())
        out["dist_max"] = float(result.distance.max()) if result.distance is not None else None
        out["hv"] = _float(result.hv)
        accuracy = result.extra.get("test_accuracy")
        if accuracy is not None:
            accuracy = torch.as_tensor(accuracy, dtype=torch.float64)  # (K,)
            for k in range(K):
                out[f"acc_{k + 1}"] = float(accuracy[k])
            out["acc_mean"] = float(accuracy.mean())
        train = result.extra.get("train_losses")
        if train is not None:  # bilevel-ridge: f are the validation losses
            out["train_loss_mean"] = float(train[-1].mean())
            initial["train_loss_mean"] = float(train[0].mean())
        return out, initial
    m = result.extra["metrics"]
    if suite.kind == "set":
        out["hv"] = _float(m.get("hypervolume"))
        out["igd"] = _float(m.get("igd"))
        out["spread"] = _float(m.get("spread"))
        out["preference_error"] = _float(m.get("preference_error"))
        out["ps_max"] = _float(m.get("max_pareto_stationarity"))
        out["dist_max"] = float(result.distance.max()) if result.distance is not None else None
        out["acc_mean"] = _float(m.get("test_accuracy_mean"))
        if suite.problem_params.get("K", problem.K) <= 3 and problem.hv_reference is not None:
            from reference_impls import metrics

            initial["hv"] = float(metrics.hypervolume(F0, problem.hv_reference))
        return out, initial
    # Pareto-set models: held-out preferences and the grid front
    from reference_impls import metrics

    out["heldout_error_max"] = _float(m.get("solution_error_max"))
    out["heldout_error_mean"] = _float(m.get("solution_error_mean"))
    out["objective_error_max"] = _float(m.get("objective_error_max"))
    out["hv"] = _float(m.get("hypervolume"))
    out["hv_ratio"] = _float(m.get("hypervolume_ratio"))
    out["igd"] = _float(m.get("igd"))
    out["spread"] = float(metrics.uniformity(F)) if F.shape[0] >= 2 else None
    out["preference_error"] = _float(m.get("preference_error_max"))
    out["ps_max"] = float(result.ps_measure.max()) if bool(torch.isfinite(result.ps_measure).all()) else None
    extra = getattr(problem, "extra_metrics", None)
    if extra is not None and result.x_final is not None:
        out["acc_mean"] = _float(extra(result.x_final, F).get("test_accuracy_mean"))
    return out, initial


def run_cell(suite_id: str, method: str, seed: int, mode: str) -> dict[str, Any]:
    """Run one cell and return its record (status "ok", "n/a" or "error"); never raises for a run's failure."""
    suite = get_suite(suite_id)
    cell: dict[str, Any] = {"suite": suite.id, "method": method, "seed": int(seed), "mode": mode}
    reason = applicability(suite, method)
    if reason is not None:
        return {**cell, "status": "n/a", "reason": reason}
    import torch

    from reference_impls.problems import get_problem

    torch.set_num_threads(1)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        problem = get_problem(suite.problem, **suite.problem_params)
        cpu_start = time.process_time()
        with count_backward() as backward:
            result, ran = _run(suite, method, seed, mode, problem)
        cpu_run = time.process_time() - cpu_start
        values, initial = _metrics(suite, result, problem)
        steps = max(int(ran["steps"]), 1)
        values["time_per_step_ms"] = 1000.0 * cpu_run / steps
        closed_form = bool(getattr(problem, "has_closed_form", False))
        values["backward_per_step"] = None if (closed_form and backward[0] == 0) else backward[0] / steps
        wanted = {m.id for m in suite.metrics}
        values = {k: v for k, v in values.items() if k in wanted}
        bad = [k for k, v in {**values, **initial}.items() if v is not None and not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite metric(s): {', '.join(sorted(bad))}")
    except Exception as error:  # a failed run is an "error" cell: recorded, and the command exits 1
        return {
            **cell, "status": "error", "reason": f"{type(error).__name__}: {error}"[:500],
            "traceback": traceback.format_exc()[-3000:],
            "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
        }  # fmt: skip
    return {
        **cell, "status": "ok", "reason": None, "metrics": values, "initial": initial, "run": ran,
        "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
    }  # fmt: skip


__all__ = ["BOX_AWARE_MODELS", "applicability", "count_backward", "family", "run_cell", "suite_methods"]
