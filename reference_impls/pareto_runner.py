"""Train a Pareto-set model (:class:`~reference_impls.core.sets.ParetoModel`) on a toy and evaluate it on held-out preferences.

    >>> from reference_impls.pareto_runner import run_pareto
    >>> result = run_pareto("phn-ls", "biquad", seed=0)
    >>> result.extra["metrics"]["solution_error_max"]   # max ||x̂(r) − x*(r)|| over 25 held-out r
    >>> result.f_final                                  # (H, K) losses at the held-out preferences

``reference_impls.runner.run(model_id, problem)`` and ``modl run MODEL --problem P`` dispatch here for
every Pareto-set model (registry interface "pareto-model"); ``--solutions H`` sets the number of
held-out preferences and ``--plot F`` draws the learned front (:func:`plot_pareto`).

* Problem: a point problem id or object (``biquad``, ``vlmop2``, ``mtl-linear``, ...); ``mtl-regression``
  becomes ``mtl-regression-set`` (the model outputs the small network's flattened parameters).
* Training: :func:`reference_impls.pareto_set.training.start_pareto_model` (``begin``), then the
  optimiser (the runner's ``adam``/``sgd`` over ``model.parameters()``), then ``steps`` times
  :func:`~reference_impls.pareto_set.training.pareto_step` with ``batch`` preferences drawn by the
  model from :func:`~reference_impls.pareto_set.evaluation.training_generator` (seed) — the step the
  documented loop ``train_pareto_model`` (site/implementations/design.md) takes.
* steps / lr / optimizer / batch: the caller's, else the model's ``default_*`` (and its ``batch``
  attribute), else the problem's.
* Evaluation (:func:`~reference_impls.pareto_set.evaluation.pareto_metrics`): on the held-out
  preferences (``held_out`` draws, or the given ``preferences``) and the dense grid.

The result is a :class:`~reference_impls.runner.RunResult` over the H held-out preferences: ``x``
(T'+1, H, n) the held-out solutions every ``record_every`` steps (and the last), ``f`` their losses,
``x_final`` (H, n), ``f_final`` (H, K), ``ps_measure`` (H,), ``distance`` (H,) to the Pareto set
where known (``hv`` and ``igd`` are None: the grid front's are in the metrics); ``extra`` holds ``metrics``, ``methods``
([the trained model]), ``preferences`` (H, K), ``training_preferences`` (steps·B, K),
``criterion`` (steps,) and ``hv_reference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reference_impls import metrics
from reference_impls.core.sets import ParetoModel, check_preferences
from reference_impls.pareto_set.evaluation import (
    HELD_OUT_COUNT,
    GRID_COUNT,
    held_out_preferences,
    metrics_table,
    pareto_metrics,
    preference_grid,
    solutions_and_losses,
    training_generator,
)
from reference_impls.pareto_set.training import check_model_optimised, pareto_step, start_pareto_model
from reference_impls.problems import Problem
from reference_impls.set_runner import set_problem


def is_pareto_model(method: Any) -> bool:
    """Whether ``method`` (a registry id, a class or an instance) is a Pareto-set model."""
    from reference_impls.registry import implements

    return implements(method, ParetoModel, "pareto-model")


def pareto_problem(problem: Any, problem_params: dict[str, Any] | None = None) -> Problem:
    """The point problem a Pareto-set model is trained on (``mtl-regression`` → ``mtl-regression-set``)."""
    return set_problem(problem, problem_params, who="Pareto-set models")


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def run_pareto(
    model: Any,
    problem: Any,
    *,
    steps: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    seed: int = 0,
    batch: int | None = None,
    params: dict[str, Any] | None = None,
    problem_params: dict[str, Any] | None = None,
    held_out: int | None = None,
    preferences: Tensor | None = None,
    grid: int = GRID_COUNT,
    record_every: int | None = None,
    threads: int | None = 1,
    progress: bool | None = False,
) -> Any:
    """Train ``model`` on ``problem`` and evaluate it on held-out preferences; returns a RunResult.

    Args:
        model: a registry id or class (built with ``params``) or an instance (deep-copied).
        problem: a problem id (built with ``problem_params``) or a problem object.
        steps, lr, optimizer: default to the model's ``default_*``, then the problem's.
        seed: seeds the model's initialisation (torch.manual_seed) and the training preferences.
        batch: preferences per step (default: the model's ``batch`` attribute, else ``default_batch``).
        held_out: the number H of held-out preferences (default 25); ``preferences`` (H, K) replaces them.
        grid: points of the dense preference grid for K = 2.
        record_every: keep the held-out solutions every this many steps (default: steps // 50, at least 1).
    """
    from reference_impls import runner

    params = dict(params or {})
    problem = pareto_problem(problem, problem_params)
    name, factory = runner._method_factory(model, params)
    with torch.random.fork_rng(devices=[]), runner._threads(threads):
        torch.manual_seed(int(seed))
        m = runner._create_method(factory, name, params)
        if not isinstance(m, ParetoModel):
            raise ValueError(f"{name} is not a Pareto-set model")
        steps = int(_first(steps, m.default_steps, problem.default_steps))
        lr = float(_first(lr, m.default_lr, problem.default_lr))
        optimizer = _first(optimizer, m.default_optimizer, problem.default_optimizer)
        batch = int(_first(batch, getattr(m, "batch", None), m.default_batch))
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if optimizer not in runner.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(runner.OPTIMIZERS)}")
        K = problem.K
        if preferences is not None:
            held = check_preferences(torch.as_tensor(preferences, dtype=torch.float64), None, K, name="held-out preferences")
        else:
            held = held_out_preferences(K, HELD_OUT_COUNT if held_out is None else int(held_out))
        record_every = max(1, steps // 50) if record_every is None else int(record_every)
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        start_pareto_model(m, problem, steps=steps, seed=seed)
        learned = [p for p in m.parameters() if p.requires_grad]
        if not learned:
            raise ValueError(f"{name} has no learnable parameters: nothing to train")
        opt = torch.optim.Adam(learned, lr=lr) if optimizer == "adam" else torch.optim.SGD(learned, lr=lr)  # as the official trainer
        check_model_optimised(m, opt)  # ValueError for a model without learnable parameters
        generator = training_generator(seed)
        report = runner._Progress(f"{name} on {problem.id}", steps, progress)
        xs, fs, train_prefs, criterion = [], [], [], []
        try:
            for t in range(steps + 1):
                if t % record_every == 0 or t == steps:
                    X, F = solutions_and_losses(m, problem, held)
                    xs.append(X if X is not None else torch.empty(0))
                    fs.append(F)
                if t == steps:
                    break
                report(t)
                r, _, value = pareto_step(m, problem, opt, batch=batch, generator=generator, step=t)
                train_prefs.append(r)
                criterion.append(float(value))
        finally:
            report.close()
        summary = pareto_metrics(
            m, problem, held_out=held, grid=preference_grid(K, grid),
            training_preferences=torch.cat(train_prefs) if train_prefs else None,
        )  # fmt: skip
        Xf, Ff = summary["held_out_x"], summary["held_out_f"]
        if Xf is not None:
            J = problem.jacobian(Xf)  # (H, K, n)
            ps = metrics.projected_pareto_stationarity(J, Xf, *problem.bounds) if problem.bounds is not None else metrics.pareto_stationarity(J)
            distance = problem.distance_to_pareto_set(Xf) if problem.has_pareto_set else None
        else:
            ps, distance = torch.full((held.shape[0],), float("nan"), dtype=torch.float64), None
    return runner.RunResult(
        method=name, problem=problem.id, optimizer=optimizer, steps=steps, lr=lr, seed=seed,
        x=torch.stack(xs) if Xf is not None else None, f=torch.stack(fs), x_final=Xf, f_final=Ff, ps_measure=ps,
        distance=distance, hv=None, igd=None,  # the grid front's HV and IGD are in extra["metrics"]
        extra={
            "metrics": summary, "methods": [m], "preferences": held, "hv_reference": problem.hv_reference,
            "training_preferences": torch.cat(train_prefs) if train_prefs else torch.empty(0, K, dtype=torch.float64),
            "criterion": torch.tensor(criterion, dtype=torch.float64), "batch": batch, "pareto_model": True,
        },
    )  # fmt: skip


def reference_curves(problem: Any, num: int = 11) -> dict[str, Tensor]:
    """What a plot shows in place of a true front on a problem without one but with merging data (``merging-mlp``).

    ``"reference front (estimate)"``: ``problem.reference_front`` at ``num`` evenly spaced preferences (K = 2);
    ``"task arithmetic θ_0 + λΣτ_k"``: λ = 0, 0.1, ..., 1; ``"task models"``: the fine-tuned models. Each (m, K).
    Empty for problems with an analytic front or without ``task_vectors``."""
    if getattr(problem, "has_pareto_front", False) or not hasattr(problem, "task_vectors") or problem.K != 2:
        return {}
    t = torch.linspace(0, 1, num, dtype=torch.float64)
    prefs = torch.stack([t, 1 - t], dim=1).clamp_min(1e-3)  # (num, 2), positive entries
    out: dict[str, Tensor] = {}
    if hasattr(problem, "reference_front"):
        out["reference front (estimate)"] = problem.reference_front(prefs)[1]
    lam = torch.linspace(0, 1, 11, dtype=problem.dtype)[:, None]  # (11, 1)
    with torch.no_grad():
        out["task arithmetic θ_0 + λΣτ_k"] = problem.losses(problem.base + lam * problem.task_vectors.sum(0))
        out["task models"] = problem.losses(problem.task_models)
    return out


def plot_pareto(result: Any, problem: Any, path: str | Path) -> Path:
    """Draw the learned front (the dense grid's losses, a line) against the true front, with the held-out points marked.

    K = 2: objective space, true front (grey), learned front (blue line), held-out points (red ×) and,
    where an oracle exists, their true positions (black ○) joined to them; on a merging problem without a
    true front, :func:`reference_curves` instead (the reference front's estimate, task arithmetic, the
    task models). K = 3: a 3-D scatter. Written atomically.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reference_impls.plotting import _write_atomically

    problem = pareto_problem(problem) if not isinstance(problem, Problem) else problem
    m = result.extra["metrics"]
    K = result.f_final.shape[1]
    fig = plt.figure(figsize=(6, 5))
    three = K == 3
    ax = fig.add_subplot(111, projection="3d") if three else fig.add_subplot(111)
    if problem.has_pareto_front and K >= 2:
        front = problem.pareto_front(500).cpu().numpy()
        if three:
            ax.scatter(*front.T, s=2, color="0.7", label="true front")
        else:
            ax.plot(front[:, 0], front[:, 1], color="0.6", lw=3, label="true front")
    styles = {"reference front (estimate)": dict(color="0.5", ls="--", lw=2), "task arithmetic θ_0 + λΣτ_k": dict(color="tab:green", marker="+", ls=":"),
              "task models": dict(color="k", marker="*", ls="", ms=10)}  # fmt: skip
    for label, curve in reference_curves(problem).items():
        C = curve.detach().cpu().numpy()
        ax.plot(C[:, 0], C[:, 1], label=label, **styles[label])
    if m.get("grid_f") is not None and K >= 2:
        G = m["grid_f"].cpu().numpy()
        if three:
            ax.scatter(*G.T, s=8, color="tab:blue", label="learned front (grid)")
        else:
            ax.plot(G[:, 0], G[:, 1], color="tab:blue", lw=1.5, label="learned front (dense grid)")
    F = result.f_final.cpu().numpy()
    if K >= 2:
        if m.get("oracle_f") is not None:
            Fs = m["oracle_f"].cpu().numpy()
            if not three:
                for a, b in zip(F, Fs):
                    ax.plot([a[0], b[0]], [a[1], b[1]], color="k", lw=0.5)
            ax.scatter(*Fs.T[:K], marker="o", facecolors="none", edgecolors="k", label="true map at held-out r")
        ax.scatter(*F.T[:K], marker="x", color="crimson", label="learned at held-out r", zorder=5)
        ax.set_xlabel("f_1")
        ax.set_ylabel("f_2")
    ax.set_title(f"{result.method} on {result.problem}: {result.steps} steps, seed {result.seed}")
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    out = Path(path)
    _write_atomically(out, buffer.getvalue())
    return out


__all__ = ["is_pareto_model", "metrics_table", "pareto_problem", "plot_pareto", "reference_curves", "run_pareto"]
