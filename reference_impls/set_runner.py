"""Run a set method (:class:`~reference_impls.core.sets.SetMethod`): P solutions moved as one batch.

    >>> from reference_impls.set_runner import run_set
    >>> result = run_set("tch", "vlmop2", solutions=5)
    >>> result.f_final                      # (P, K) the final set in objective space
    >>> result.extra["preferences"]         # (P, K) the preferences (after any adaptation)
    >>> result.extra["metrics"]             # hypervolume, IGD, IGD+, PS, preference error, spread, coverage

``reference_impls.runner.run(method, problem, solutions=N)`` (and ``modl run METHOD --problem P
--solutions N``) dispatch here for every set method.

The documented set loop (``train_set`` in ``site/implementations/design.md``, which
``tests/reference_impls/test_hooks.py`` runs for every registered set method) takes every step with
:func:`reference_impls.core.hooks.set_step`, the step :func:`run_set` takes too, so a user's loop calls
every hook the runner calls.

* P: ``solutions``, else the rows of ``preferences``, else the problem's number of starting points.
* Preferences: ``preferences`` (checked: (P, K), finite, non-negative, no zero row), else
  ``method.default_preferences(P, K)``; None for preference-free methods (``needs_preferences = False``).
* steps / lr / optimizer: the caller's, else the method's ``default_*`` (a paper's toy settings),
  else the problem's.
* The network (``mtl-regression``): P copies of the small regression network, each initialised like
  ``MTLRegression.reset(seed + p)``; X holds the P flattened parameter vectors and J (P, K, n) comes
  from one batched autograd pass (:class:`reference_impls.problems.mtl_set.MTLRegressionSet`).
* Evaluation: the problem's numpy closed form where it has one (``fast=True``, CPU), else autograd.
* Non-finite losses at the start or after a step, and non-finite directions, raise a ValueError that
  names the step.

Metrics (``result.extra["metrics"]``, :func:`set_metrics`): ``hypervolume`` (K ≤ 3, at the problem's
``hv_reference``), ``igd`` and ``igd_plus`` (against 1000 points of the analytic front),
``max_pareto_stationarity`` (the largest PS-measure in the set; projected for box problems),
``preference_error`` and ``preference_angle`` (the largest distance / angle of F_p − z* from the
method's target ray, when it has target rays and the problem an ideal point z*), ``spread`` (l_min,
the smallest pairwise distance in objective space, P ≥ 2), ``coverage`` (the fraction of the front
sample within 5 % of the front's extent of the set; None when the front is a single point, K = 1)
and ``covering_radius``. A metric that does not apply is None. A problem with ``extra_metrics(X, F)``
adds its own (``mo-regression``: ``sample_hypervolume``, the mean over training samples of the HV of
the P per-sample loss vectors, and ``predictions_in_range``).

Per-sample methods (``per_sample = True``) on a problem with ``per_sample_losses`` (``mo-regression``)
take the per-sample direction D = ∇_X Σ W·L / N (:func:`reference_impls.core.hooks.set_direction`);
``initial_set`` may replace the starting set (:func:`reference_impls.core.hooks.start_set`, given
``problem.objective_minimisers()``); a method's ``default_betas`` set Adam's β.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from reference_impls import metrics
from reference_impls.core.hooks import defined_hooks, learnable_parameters, set_step, start_set
from reference_impls.core.sets import ParetoModel, SetMethod, check_preferences
from reference_impls.problems import Problem, get_problem


def _runner():  # the point runner imports this module lazily; import it lazily back (no cycle at import)
    from reference_impls import runner

    return runner


def is_set_method(method: Any) -> bool:
    """Whether ``method`` (a registry id, a class or an instance) is a set method."""
    from reference_impls.registry import implements

    return implements(method, SetMethod, "set")


def set_problem(problem: Any, problem_params: dict[str, Any] | None = None, *, who: str = "set methods") -> Problem:
    """The point problem a set method (or a Pareto-set model: ``who``) optimises: a network problem becomes P networks
    (``mtl-regression`` -> ``mtl-regression-set``, ``multi-digits`` -> ``multi-digits-set``); bilevel and stochastic
    problems are refused with a ValueError naming ``who``."""
    from reference_impls.problems.bilevel_ridge import BilevelRidge
    from reference_impls.problems.noisy import NoisyProblem

    if isinstance(problem, str):
        problem = get_problem(problem, **(problem_params or {}))
    elif problem_params:
        raise ValueError("problem knobs can only be given with a problem id")
    from reference_impls.problems.network import NetworkProblem

    if isinstance(problem, NetworkProblem):
        point = problem.set_version()  # mtl-regression -> mtl-regression-set, multi-digits -> multi-digits-set
        if point is None:
            raise ValueError(f"{who} have no version of {problem.id!r} as a point problem (P networks at once)")
        return point
    if isinstance(problem, BilevelRidge):
        raise ValueError(f"{who} run on point problems and mtl-regression, not on bilevel-ridge (one model with train/validation losses)")
    if isinstance(problem, NoisyProblem):
        raise ValueError(f"{who} have no stochastic oracle in the runner: use the exact problem {problem.base.id!r}")
    if not isinstance(problem, Problem):
        raise ValueError(f"not a toy problem: {problem!r}")
    return problem


def run_set(
    method: Any,
    problem: Any,
    *,
    solutions: int | None = None,
    preferences: Tensor | None = None,
    steps: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    problem_params: dict[str, Any] | None = None,
    record_every: int = 1,
    report: Callable[[int], None] | None = None,
    threads: int | None = 1,
    progress: bool | None = False,
    fast: bool = True,
) -> Any:
    """Optimise P solutions of ``problem`` jointly with the set method ``method``; returns a RunResult.

    Args:
        method: a registry id or class (built with ``params``), or an instance (deep-copied).
        problem: a problem id (built with ``problem_params``) or a problem object.
        solutions: P, the size of the set (default: the rows of ``preferences``, else the problem's
            number of starting points).
        preferences: (P, K) one preference per solution (default: ``method.default_preferences``).
        steps, lr, optimizer: default to the method's ``default_*``, then the problem's.
        seed: seeds the initial set and the method's randomness.
        record_every: keep every ``record_every``-th iterate (and the last).
        report: called with the step index before each step (progress); ``progress`` builds one
            when ``report`` is None (as :func:`reference_impls.runner.run`).
        fast: use the problem's numpy closed form for F and J where it has one.

    The result has ``x`` (T'+1, P, n), ``f`` (T'+1, P, K), ``x_final``, ``f_final``, ``ps_measure``
    (P,), ``distance`` (P,) where the Pareto set is known, ``hv``, ``igd``, and in ``extra``:
    ``preferences`` (P, K) final (None for preference-free methods), ``preference_history``
    (T'+1, P, K) when ``adapt_preferences`` is defined, ``target_rays`` (P, K) or None, ``ideal``,
    ``metrics`` (:func:`set_metrics`) and ``methods`` ([the method instance]).
    """
    runner = _runner()
    params = dict(params or {})
    problem = set_problem(problem, problem_params)
    name, factory = runner._method_factory(method, params)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    with torch.random.fork_rng(devices=[]), runner._threads(threads):
        torch.manual_seed(int(seed))
        m = runner._create_method(factory, name, params)
        if isinstance(m, ParetoModel):
            raise ValueError(f"{name} is a Pareto-set model: it is trained with its own loop, not by the set runner")
        if not isinstance(m, SetMethod):
            raise ValueError(f"{name} is not a set method (--solutions applies to set methods only)")
        steps = int(_first(steps, m.default_steps, problem.default_steps))
        lr = float(_first(lr, m.default_lr, problem.default_lr))
        optimizer = _first(optimizer, m.default_optimizer, problem.default_optimizer)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if optimizer not in runner.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(runner.OPTIMIZERS)}")
        own_report = report is None
        if own_report:
            report = runner._Progress(f"{name} on {problem.id}", steps, progress)
        try:
            return _run(m, problem, name=name, solutions=solutions, preferences=preferences, steps=steps, lr=lr,
                        optimizer=optimizer, seed=int(seed), record_every=record_every, report=report, fast=fast)  # fmt: skip
        finally:
            if own_report:
                report.close()


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _run(
    m: SetMethod, problem: Problem, *, name: str, solutions: int | None, preferences: Tensor | None, steps: int, lr: float,
    optimizer: str, seed: int, record_every: int, report: Callable[[int], None] | None, fast: bool,
) -> Any:  # fmt: skip
    runner = _runner()
    K = problem.K
    if preferences is not None:
        preferences = check_preferences(torch.as_tensor(preferences), K=K)
        if solutions is not None and int(solutions) != preferences.shape[0]:
            raise ValueError(f"solutions={solutions} but {preferences.shape[0]} preference rows were given")
        P = preferences.shape[0]
    elif solutions is not None:
        if int(solutions) != solutions or int(solutions) < 1:
            raise ValueError(f"solutions must be a positive integer, got {solutions!r}")
        P = int(solutions)
    else:
        P = int(problem.initial_points(seed).shape[0])
    X0 = problem.initial_points(seed, num=P)  # (P, n)
    if m.needs_preferences:
        prefs = preferences if preferences is not None else m.default_preferences(P, K)
        prefs = check_preferences(prefs, P, K, name=f"{name} preferences").to(X0)  # (P, K)
    else:
        prefs = None
    evaluate = problem.value_and_jacobian if fast and problem.has_closed_form else problem.losses_and_jacobian
    ideal = problem.ideal_point()
    project = problem.project if problem.bounds is not None else None
    try:  # initial_set (the method's own seeding, or X0), then begin
        X, F, J = start_set(m, problem.project(X0.clone()), evaluate, prefs, steps=steps, ideal=ideal,
                            minimisers=problem.objective_minimisers(), project=project)  # (P, n), (P, K), (P, K, n)
    except ValueError as err:
        raise ValueError(f"{problem.id}: {err}") from None
    X.requires_grad_(True)  # the optimised leaf
    learned = learnable_parameters([m])
    if optimizer == "adam" and m.default_betas is not None:
        opt = runner.Adam([X, *learned], lr=lr, betas=tuple(m.default_betas))  # the paper's β (hv-maximization: (0.5, 0.999))
    else:
        opt = runner._optimizer(optimizer, [X, *learned], lr)
    per_sample_losses = getattr(problem, "per_sample_losses", None) if m.per_sample else None  # X -> L (P, N, K)
    hooks = defined_hooks(m)
    adaptive = "adapt_preferences" in hooks and prefs is not None
    xs, fs, ps_hist = [], [], []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            xs.append(X.detach().clone())
            fs.append(F)
            if adaptive:
                ps_hist.append(prefs.detach().clone())
        if t == steps:
            break
        if report is not None:
            report(t)
        F, J, prefs = set_step(m, X, F, J, prefs, evaluate, opt, step=t, project=project, per_sample_losses=per_sample_losses)
        if prefs is not None and adaptive:
            prefs = check_preferences(prefs, P, K, name=f"{name}.adapt_preferences at step {t}").to(X0)
    Xf = X.detach().clone()
    rays = m.target_rays(prefs) if prefs is not None else None
    if rays is not None:
        rays = torch.as_tensor(rays, dtype=F.dtype)
        if rays.shape != (P, K):
            raise ValueError(f"{name}.target_rays returned shape {tuple(rays.shape)}, expected ({P}, {K})")
    summary = set_metrics(problem, Xf, F, J, rays=rays, ideal=ideal)
    result = runner.RunResult(
        method=name, problem=problem.id, optimizer=optimizer, steps=steps, lr=lr, seed=seed,
        x=torch.stack(xs), f=torch.stack(fs), x_final=Xf, f_final=F, ps_measure=summary.pop("_ps"),
        distance=problem.distance_to_pareto_set(Xf) if problem.has_pareto_set else None,
        hv=summary["hypervolume"], igd=summary["igd"],
        extra={
            "hv_reference": problem.hv_reference, "methods": [m], "preferences": prefs, "target_rays": rays,
            "ideal": ideal, "metrics": summary, "solutions": P,
            "preference_history": torch.stack(ps_hist) if adaptive else None,
        },
    )  # fmt: skip
    return result


def set_metrics(problem: Problem, X: Tensor, F: Tensor, J: Tensor, *, rays: Tensor | None = None, ideal: Tensor | None = None) -> dict[str, Any]:
    """The metrics of a final set X (P, n), F (P, K), J (P, K, n) on ``problem`` (None where one does not apply).

    See the module docstring for the list. ``_ps`` holds the per-solution PS-measure (P,).
    """
    P, K = F.shape
    if problem.bounds is not None:
        ps = metrics.projected_pareto_stationarity(J, X, *problem.bounds)  # (P,)
    else:
        ps = metrics.pareto_stationarity(J)  # (P,)
    out: dict[str, Any] = {"_ps": ps, "max_pareto_stationarity": float(ps.max())}
    out["hypervolume"] = metrics.hypervolume(F, problem.hv_reference) if K <= 3 and problem.hv_reference is not None else None
    front = problem.pareto_front(1000) if problem.has_pareto_front else None
    out["igd"] = metrics.igd(F, front) if front is not None else None
    out["igd_plus"] = metrics.igd_plus(F, front) if front is not None else None
    extent = float((front.max(0).values - front.min(0).values).norm()) if front is not None else 0.0
    out["coverage"] = metrics.coverage(F, front) if extent > 0 else None  # K = 1: the front is one point
    out["covering_radius"] = metrics.covering_radius(F, front) if front is not None else None
    out["spread"] = metrics.uniformity(F) if P >= 2 else None
    out["worst_objective"] = metrics.worst_objective(F)  # max_i min_p F_pi (TCH-Set at z = 0)
    out["mean_objective"] = metrics.mean_objective(F)  # (1/K) Σ_i min_p F_pi (sum-of-minimum / K)
    if rays is not None and ideal is not None:
        dist = metrics.preference_distance(F, rays, ideal)  # (P,)
        angle = metrics.preference_angle(F, rays, ideal)  # (P,)
        out["preference_error"], out["preference_angle"] = float(dist.max()), float(angle.max())
        out["preference_errors"] = torch.as_tensor(dist)  # (P,)
    else:
        out["preference_error"] = out["preference_angle"] = out["preference_errors"] = None
    extra = getattr(problem, "extra_metrics", None)  # the problem's own metrics (mo-regression: per-sample HV; clusters: gaps)
    if extra is not None:
        out.update(extra(X, F))
    return out


def metrics_table(result: Any) -> str:
    """The set metrics of a run as plain-text lines (for ``modl run --solutions``)."""
    m = result.extra.get("metrics") or {}
    labels = [
        ("igd_plus", "IGD+"), ("max_pareto_stationarity", "max PS-measure"),
        ("preference_error", "max distance from the target ray"), ("preference_angle", "max angle from the target ray (rad)"),
        ("spread", "spread l_min (smallest pairwise distance)"), ("coverage", "coverage (front within 5% of its extent)"),
        ("covering_radius", "covering radius of the front"),
        ("sample_hypervolume", "mean per-sample hypervolume of the set"),
        ("predictions_in_range", "fraction of samples with every prediction in its per-sample Pareto set (± 0.05)"),
        ("worst_objective", "worst objective max_i min_p f_i (served by its best solution)"),
        ("mean_objective", "mean objective mean_i min_p f_i"),
        ("centre_distance", "largest distance of an optimal centre from the set"), ("clusters_found", "planted clusters found"),
        ("sum_of_min_gap", "gap to the proven sum-of-minimum optimum"), ("tch_set_gap", "gap to the proven TCH-Set optimum"),
    ]  # fmt: skip
    lines = [f"{label}: {m[key]:.6g}" for key, label in labels if m.get(key) is not None]
    return "\n".join(lines) + ("\n" if lines else "")


__all__ = ["is_set_method", "metrics_table", "run_set", "set_metrics", "set_problem"]
