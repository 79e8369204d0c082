"""Evaluation of a learned Pareto set on held-out preferences (shared by every Pareto-set model).

* Held-out preferences: :func:`held_out_preferences`, ``num`` draws of Dirichlet(𝟙) from a fixed
  generator (seed ``HELD_OUT_SEED``, even); training streams come from :func:`training_generator`
  (seed 2·seed + 1, odd), so the two streams never share a seed, and the draws are continuous, so they
  are disjoint with probability 1 (the runner also reports the smallest distance between a held-out
  and a training preference). The same held-out set for every seed, so runs compare.
* Dense grid: :func:`preference_grid`, K = 2: r = (t, 1 − t) for ``num`` values t ∈ [0, 1] (the
  vertices included); K = 3: the simplex lattice of resolution 12 (91 points); K = 1: r = (1).
  The front traced by the grid gives the hypervolume and IGD.

Metrics (:func:`pareto_metrics`; None where one does not apply):

=============================  ==================================================================
``solution_error_max/mean``     ||x̂(r) − x*(r)|| over the held-out r, x* the oracle of the model's
                                ``target`` (:mod:`reference_impls.pareto_set.oracles`)
``objective_error_max/mean``    ||f(x̂(r)) − f(x*(r))||
``hypervolume``                 of the grid's front at the problem's ``hv_reference`` (K ≤ 3)
``true_hypervolume``            of 2000 points of the analytic front at the same reference, and
``hypervolume_ratio``           their ratio
``igd`` / ``igd_plus``          of the grid's front against 1000 points of the analytic front
``preference_error_max/mean``   distance of f(x̂(r)) − z from the target ray (the model's
``preference_angle_max/mean``   ``target_rays(r)``, e.g. 1/r for EPO; else the oracle's f(x*(r)) − z),
                                and its angle (radians); rows whose ray is zero are left out
``held_out_min_distance``       min over held-out r and training r' of ||r − r'|| (disjointness)
=============================  ==================================================================
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reference_impls import metrics
from reference_impls.core.sets import ParetoModel, sample_preferences
from reference_impls.pareto_set.oracles import oracle_for

HELD_OUT_SEED = 2_010_104  # even: training generators use odd seeds (training_generator)
HELD_OUT_COUNT = 25  # as the PHN paper's evaluation (25 rays)
GRID_COUNT = 101


def training_generator(seed: int) -> torch.Generator:
    """The generator of the training preferences of run ``seed``: seed 2·seed + 1 (odd; the held-out seed is even)."""
    return torch.Generator().manual_seed(2 * int(seed) + 1)


def held_out_preferences(K: int, num: int = HELD_OUT_COUNT) -> Tensor:
    """``num`` held-out preferences (num, K) ~ Dirichlet(𝟙), the same for every run (K = 1: ones)."""
    if K < 1 or num < 1:
        raise ValueError(f"need K >= 1 and num >= 1, got K={K}, num={num}")
    if K == 1:
        return torch.ones(num, 1, dtype=torch.float64)
    return sample_preferences(num, K, alpha=1.0, generator=torch.Generator().manual_seed(HELD_OUT_SEED))


def preference_grid(K: int, num: int = GRID_COUNT) -> Tensor | None:
    """The dense preference grid (G, K): K = 2 (t, 1 − t) for t ∈ linspace(0, 1, num); K = 3 lattice of
    resolution 12; K = 1 the single preference (1); None for K ≥ 4."""
    if K == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if K == 2:
        t = torch.linspace(0, 1, max(int(num), 2), dtype=torch.float64)
        return torch.stack([t, 1 - t], dim=1)  # (G, 2)
    if K == 3:
        return torch.as_tensor(metrics._simplex_lattice(3, 12))  # (91, 3)
    return None


@torch.no_grad()
def solutions_and_losses(model: ParetoModel, problem: Any, preferences: Tensor) -> tuple[Tensor | None, Tensor]:
    """(x̂ (B, n) or None when the model's output is not a solution of the problem, f (B, K)) at ``preferences``."""
    r = preferences.to(problem.dtype)
    F = model.task_losses(problem, r).detach()  # (B, K)
    X = model(r).detach()
    if X.ndim != 2 or X.shape != (r.shape[0], getattr(problem, "n", -1)):
        X = None
    return X, F


def pareto_metrics(
    model: ParetoModel,
    problem: Any,
    *,
    held_out: Tensor,
    grid: Tensor | None,
    training_preferences: Tensor | None = None,
) -> dict[str, Any]:
    """The metrics of the module docstring for ``model`` on ``problem``; also the evaluated points."""
    X, F = solutions_and_losses(model, problem, held_out)  # (H, n), (H, K)
    out: dict[str, Any] = {"target": model.target, "held_out": held_out, "held_out_x": X, "held_out_f": F}
    if not bool(torch.isfinite(F).all()):
        raise ValueError("the learned model gives non-finite losses at a held-out preference")
    oracle = oracle_for(problem, model.target)
    X_star = F_star = None
    if oracle is not None:
        X_star, F_star = oracle(held_out)  # (H, n), (H, K)
    out["oracle_x"], out["oracle_f"] = X_star, F_star
    if X_star is not None and X is not None:
        err = torch.linalg.vector_norm(X - X_star.to(X), dim=1)  # (H,)
        out["solution_errors"] = err
        out["solution_error_max"], out["solution_error_mean"] = float(err.max()), float(err.mean())
    else:
        out["solution_errors"] = out["solution_error_max"] = out["solution_error_mean"] = None
    if F_star is not None:
        ferr = torch.linalg.vector_norm(F - F_star.to(F), dim=1)  # (H,)
        out["objective_error_max"], out["objective_error_mean"] = float(ferr.max()), float(ferr.mean())
    else:
        out["objective_error_max"] = out["objective_error_mean"] = None
    # preference error: distance / angle of f − z from the criterion's target ray
    ideal = problem.ideal_point() if getattr(problem, "has_pareto_front", False) or hasattr(problem, "ideal_point") else None
    rays = model.target_rays(held_out)
    if rays is None and F_star is not None and ideal is not None:
        rays = F_star - ideal.to(F_star)  # the LS optimum's direction from z
    out["preference_error_max"] = out["preference_error_mean"] = out["preference_angle_max"] = out["preference_angle_mean"] = None
    if rays is not None and ideal is not None:
        rays = torch.as_tensor(rays, dtype=torch.float64)
        keep = torch.linalg.vector_norm(rays, dim=1) > 0  # a zero ray has no direction
        if bool(keep.any()):
            Fk, Rk = F[keep].to(torch.float64).numpy(), rays[keep].numpy()
            z = ideal.to(torch.float64).numpy()
            dist = metrics.preference_distance(Fk, Rk, z)  # (H',)
            ang = metrics.preference_angle(Fk, Rk, z)  # (H',)
            out["preference_error_max"], out["preference_error_mean"] = float(dist.max()), float(dist.mean())
            out["preference_angle_max"], out["preference_angle_mean"] = float(ang.max()), float(ang.mean())
    # the front traced by the grid
    out["grid"], out["grid_x"], out["grid_f"] = grid, None, None
    out["hypervolume"] = out["true_hypervolume"] = out["hypervolume_ratio"] = out["igd"] = out["igd_plus"] = None
    if grid is not None:
        Xg, Fg = solutions_and_losses(model, problem, grid)  # (G, n), (G, K)
        out["grid_x"], out["grid_f"] = Xg, Fg
        K = Fg.shape[1]
        ref = getattr(problem, "hv_reference", None)
        has_front = bool(getattr(problem, "has_pareto_front", False))
        if ref is not None and K <= 3:
            out["hypervolume"] = metrics.hypervolume(Fg, ref)
            if has_front and K >= 2:
                out["true_hypervolume"] = metrics.hypervolume(problem.pareto_front(2000), ref)
                out["hypervolume_ratio"] = out["hypervolume"] / out["true_hypervolume"] if out["true_hypervolume"] > 0 else None
        if has_front and K >= 2:
            front = problem.pareto_front(1000)
            out["igd"], out["igd_plus"] = metrics.igd(Fg, front), metrics.igd_plus(Fg, front)
    if training_preferences is not None and training_preferences.numel() > 0:
        out["held_out_min_distance"] = float(torch.cdist(held_out.to(torch.float64), training_preferences.to(torch.float64), compute_mode="donot_use_mm_for_euclid_dist").min())
    else:
        out["held_out_min_distance"] = None
    return out


def metrics_table(summary: dict[str, Any]) -> str:
    """The held-out metrics as plain-text lines (``modl run`` on a Pareto-set model)."""
    labels = [
        ("solution_error_max", "max ||x̂(r) − x*(r)|| over held-out r"), ("solution_error_mean", "mean ||x̂(r) − x*(r)||"),
        ("objective_error_max", "max ||f(x̂) − f(x*)||"), ("hypervolume", "hypervolume of the grid's front"),
        ("true_hypervolume", "hypervolume of the true front"), ("hypervolume_ratio", "hypervolume ratio"),
        ("igd", "IGD of the grid's front"), ("igd_plus", "IGD+"),
        ("preference_error_max", "max distance from the target ray"), ("preference_angle_max", "max angle from the target ray (rad)"),
        ("held_out_min_distance", "min distance held-out to training preferences"),
    ]  # fmt: skip
    target = {"ls": "the LS optimum argmin r·f", "ray": "the ray point r ⊙ (f − z) ∝ 1"}.get(summary.get("target"), "no closed-form map")
    lines = [f"target map: {target}; {len(summary['held_out'])} held-out preferences"]
    lines += [f"{label}: {summary[key]:.6g}" for key, label in labels if summary.get(key) is not None]
    return "\n".join(lines) + "\n"


__all__ = ["GRID_COUNT", "HELD_OUT_COUNT", "HELD_OUT_SEED", "held_out_preferences", "metrics_table", "pareto_metrics", "preference_grid", "solutions_and_losses", "training_generator"]
