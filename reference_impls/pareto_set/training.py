"""One training step of a Pareto-set model, calling every hook it defines.

:func:`reference_impls.pareto_runner.run_pareto` and the documented loop ``train_pareto_model``
(``site/implementations/design.md``) train with :func:`start_pareto_model` once and then
:func:`pareto_step` at every step, so a user's loop drives the same hooks as the runner:

* ``begin(K, n, steps=, ideal=, initial_points=, problem=)`` once, before the optimiser is built (the model
  sizes its layers for the problem);
* per step: r = ``model.sample_preferences(B, K, generator)`` (B, K); F = ``model.task_losses(problem,
  r)`` (B, K) with a graph; ``model.loss(F, r).backward()``; ``optimizer.step()``; then ``update(F_new,
  r)`` with the losses of the moved model at the same r, and ``on_epoch_end(step)`` (full batch: every
  step is an epoch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reference_impls.core.hooks import defined_hooks, end_epoch, optimised_tensors
from reference_impls.core.sets import ParetoModel, check_preferences


def start_pareto_model(model: ParetoModel, problem: Any, *, steps: int, seed: int = 0) -> None:
    """Call ``model.begin`` (if defined) with the problem's K, n, the step budget, ideal point, seeded starting points and the problem."""
    if not isinstance(model, ParetoModel):
        raise ValueError(f"{model!r} is not a Pareto-set model (reference_impls.core.sets.ParetoModel)")
    if "begin" in defined_hooks(model):
        ideal = problem.ideal_point() if hasattr(problem, "ideal_point") else None
        model.begin(problem.K, problem.n, steps=steps, ideal=ideal, initial_points=lambda num: problem.initial_points(seed, num=num), problem=problem)


def check_model_optimised(model: ParetoModel, optimizer: Any) -> None:
    """ValueError unless every learnable tensor of ``model`` is stepped by ``optimizer`` (and it has one)."""
    name = getattr(model, "name", "") or type(model).__name__
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{name} has no learnable parameters (call begin(K, n, ...) first: start_pareto_model)")
    stepped = {id(p) for p in optimised_tensors(optimizer)}
    missing = [p for p in params if id(p) not in stepped]
    if missing:
        raise ValueError(f"{name}: {len(missing)} parameter tensor(s) are not in the optimiser: build it with model.parameters()")


def pareto_step(
    model: ParetoModel,
    problem: Any,
    optimizer: Any,
    *,
    batch: int,
    generator: torch.Generator | None = None,
    step: int = 0,
    preferences: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One training step on ``batch`` preferences; returns (r (B, K), F (B, K) before the step, the criterion value).

    ``preferences`` (B, K) replaces the model's sampling (tests, fixed schedules). Non-finite losses or
    a non-finite criterion raise a ValueError that names the step.
    """
    hooks = defined_hooks(model)
    K = problem.K
    if preferences is None:
        r = model.sample_preferences(batch, K, generator=generator)  # (B, K)
    else:
        r = torch.as_tensor(preferences, dtype=torch.float64)
    r = check_preferences(r, None, K, name=f"{model.name or type(model).__name__} preferences at step {step}").to(problem.dtype)
    optimizer.zero_grad(set_to_none=True)
    F = model.task_losses(problem, r)  # (B, K), graph to the model's parameters
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"the task losses are non-finite at step {step} (lower the learning rate)")
    objective = model.loss(F, r)  # scalar criterion
    if not bool(torch.isfinite(objective)):
        raise ValueError(f"the training criterion is non-finite at step {step}")
    objective.backward()
    optimizer.step()
    if "update" in hooks:
        with torch.no_grad():
            model.update(model.task_losses(problem, r).detach(), r)  # the moved model at the same preferences
    end_epoch(model, step)
    return r, F.detach(), objective.detach()


__all__ = ["check_model_optimised", "pareto_step", "start_pareto_model"]
