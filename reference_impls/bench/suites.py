"""The suites of ``modl bench`` as data: problem, settings per mode (full / quick) and metric columns.

A suite compares one family of methods (``kind``): ``"single"`` (gradient and loss weightings, one
solution per start), ``"set"`` (set methods: P solutions moved together) or ``"pareto-model"``
(Pareto-set models, evaluated on held-out preferences). Which methods of the family apply is decided
by :func:`reference_impls.bench.cells.applicability` (n/a cells carry the reason).

Settings per mode: ``steps``, ``lr``, ``optimizer`` and ``seeds`` for every cell of single-solution
suites (uniform, so the methods compare at equal budgets). Set methods and Pareto-set models run
with their own run defaults (their papers' toy settings: ``default_steps``/``default_lr``/
``default_optimizer``, and ``default_batch``), else the problem's, with the steps capped at
``max_steps`` (the budget of the whole sweep); each cell records what it ran with.

Budgets (issue 15): the full sweep (``modl bench``) under 15 min on 2 cores, i.e. the sum of the
cells' CPU time at most ~1500 s; ``--quick`` under 2 min (~90 s of CPU), every registered method in
it at least once. The full settings below were sized with ``time.process_time`` per cell.

Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("full", "quick")


@dataclass(frozen=True)
class Metric:
    id: str
    label: str
    better: str  # "lower" | "higher"
    format: str  # a Python format spec for the table, e.g. ".3g"
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "label": self.label, "better": self.better, "format": self.format, "description": self.description}


@dataclass(frozen=True)
class Suite:
    id: str
    title: str
    description: str
    kind: str  # "single" | "set" | "pareto-model"
    problem: str  # problem id (reference_impls.problems)
    problem_params: dict[str, Any]
    settings: dict[str, dict[str, Any] | None]  # mode -> settings (seeds included); None: not in that mode
    metrics: tuple[Metric, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def in_mode(self, mode: str) -> bool:
        return self.settings.get(mode) is not None

    def seeds(self, mode: str) -> list[int]:
        """The seeds of ``mode`` (empty when the suite is not part of that mode)."""
        return list(self.settings[mode]["seeds"]) if self.in_mode(mode) else []

    def run_settings(self, mode: str) -> dict[str, Any]:
        """The settings of ``mode`` without the seeds (what every cell of the suite runs with)."""
        return {k: v for k, v in (self.settings.get(mode) or {}).items() if k != "seeds"}


# ------------------------------------------------------------------------------------------------
# Metric columns
# ------------------------------------------------------------------------------------------------

TIME = Metric(
    "time_per_step_ms", "CPU ms / step", "lower", ".3g",
    "CPU time (time.process_time, one torch thread) of the whole runner call (training loop and the final "
    "evaluation) divided by the number of steps, in milliseconds; all starts or solutions together.",
)  # fmt: skip
BACKWARD = Metric(
    "backward_per_step", "backward / step", "lower", ".3g",
    "Calls of torch.autograd.backward and torch.autograd.grad (Tensor.backward goes through the former; a "
    "vectorised pass counts once) during the whole runner call, divided by the steps: the final evaluation's "
    "passes (the PS measure's Jacobian, held-out preferences) are included, so one pass per step shows as "
    "1 + a few / steps. Null on point problems whose Jacobian is closed form (the runner evaluates it in numpy: "
    "no backward pass at all).",
)  # fmt: skip


def _loss_metrics(K: int, what: str) -> list[Metric]:
    out = [Metric(f"loss_{k + 1}", f"f{k + 1}", "lower", ".4g", f"final loss of task {k + 1} ({what})") for k in range(K)]
    out.append(Metric("loss_mean", "mean loss", "lower", ".4g", f"mean of the final losses over the tasks ({what})"))
    return out


PS_SINGLE = Metric(
    "ps_max", "PS (worst start)", "lower", ".2e",
    "Pareto-stationarity measure min over the simplex of ‖Jᵀλ‖ at the final point (projected onto the "
    "box's feasible directions on box problems), the largest over the starts.",
)  # fmt: skip
DIST_SINGLE = Metric("dist_max", "dist. to PS (worst start)", "lower", ".2e",
                     "Distance of the final point to the analytic Pareto set, the largest over the starts.")
HV_STARTS = Metric("hv", "HV of the starts", "higher", ".4g",
                   "Hypervolume of the final points of all starts together at the problem's reference point.")
ACC = [
    Metric("acc_1", "test acc. left", "higher", ".4f", "test accuracy of task 1 (left digit) on the held-out test images"),
    Metric("acc_2", "test acc. right", "higher", ".4f", "test accuracy of task 2 (right digit) on the held-out test images"),
    Metric("acc_mean", "test acc. mean", "higher", ".4f", "mean test accuracy over the two tasks"),
]

SET_METRICS = [
    Metric("loss_mean", "mean loss", "lower", ".4g", "mean of the final losses over the solutions and the tasks"),
    Metric("hv", "HV", "higher", ".4g", "hypervolume of the final set at the problem's reference point"),
    Metric("igd", "IGD", "lower", ".3e", "inverted generational distance of the final set to 1000 points of the analytic front"),
    Metric("spread", "spread (min gap)", "higher", ".3e", "smallest pairwise distance of the final set in objective space (uniformity)"),
    Metric("preference_error", "pref. error", "lower", ".3e",
           "largest distance of a solution's losses minus z* from its target ray (methods with target rays; null otherwise)"),
    Metric("ps_max", "PS (worst solution)", "lower", ".2e",
           "the largest Pareto-stationarity measure in the final set (projected on box problems)"),
    Metric("dist_max", "dist. to PS (worst)", "lower", ".2e",
           "the largest distance of a final solution to the analytic Pareto set"),
]
SET_ACC = Metric("acc_mean", "test acc. mean", "higher", ".4f",
                 "mean test accuracy over the solutions and the two tasks (held-out test images)")

MODEL_METRICS = [
    Metric("heldout_error_max", "held-out error (max)", "lower", ".3e",
           "largest ||x(r) - x*(r)|| over 25 held-out preferences r (x* the model's target map: the LS optimum or the ray point)"),
    Metric("heldout_error_mean", "held-out error (mean)", "lower", ".3e", "mean ||x(r) - x*(r)|| over the held-out preferences"),
    Metric("objective_error_max", "objective error (max)", "lower", ".3e",
           "largest ||f(x(r)) - f(x*(r))|| over the held-out preferences"),
    Metric("loss_mean", "mean loss", "lower", ".4g", "mean of the losses at the held-out preferences over preferences and tasks"),
    Metric("hv", "HV (grid front)", "higher", ".4g", "hypervolume of the front traced by a dense preference grid"),
    Metric("hv_ratio", "HV ratio", "higher", ".4f", "HV of the grid front divided by the HV of the true front"),
    Metric("igd", "IGD (grid front)", "lower", ".3e", "IGD of the grid front to 1000 points of the analytic front"),
    Metric("spread", "spread (min gap)", "higher", ".3e", "smallest pairwise distance of the held-out solutions in objective space"),
    Metric("preference_error", "pref. error (max)", "lower", ".3e",
           "largest distance of f - z* from the target ray over the held-out preferences"),
    Metric("ps_max", "PS (worst held-out)", "lower", ".2e", "largest Pareto-stationarity measure over the held-out solutions"),
]

BILEVEL_METRICS = [
    Metric("loss_1", "val. f1", "lower", ".4g", "final validation loss of task 1"),
    Metric("loss_2", "val. f2", "lower", ".4g", "final validation loss of task 2"),
    Metric("loss_3", "val. f3", "lower", ".4g", "final validation loss of task 3"),
    Metric("loss_mean", "mean val. loss", "lower", ".4g", "mean of the final validation losses (the upper-level objectives)"),
    Metric("train_loss_mean", "mean train loss", "lower", ".4g", "mean of the final training losses"),
    Metric("ps_max", "PS (validation)", "lower", ".2e", "Pareto-stationarity measure of the validation gradients at the final model"),
]


def _single_metrics(K: int, *, what: str, dist: bool, hv: bool, accuracy: bool = False) -> tuple[Metric, ...]:
    out = _loss_metrics(K, what)
    if accuracy:
        out += ACC
    out.append(PS_SINGLE)
    if dist:
        out.append(DIST_SINGLE)
    if hv:
        out.append(HV_STARTS)
    return tuple(out + [TIME, BACKWARD])


# ------------------------------------------------------------------------------------------------
# The suites
# ------------------------------------------------------------------------------------------------

_CAGRAD_FULL_STEPS = 35_000
_CAGRAD_QUICK_STEPS = 1_000


def _cagrad(scale: float) -> Suite:
    label = "1" if scale == 1.0 else "0.1"
    return Suite(
        id=f"cagrad-toy-scale-{label}",
        title=f"CAGrad toy, loss scale {label} (five standard starts)",
        description=(
            f"The 2-D non-convex toy of CAGrad, Nash-MTL and FAMO with f1 scaled by {label}, from the five starts of "
            f"Nash-MTL and FAMO, with the papers' settings: {_CAGRAD_FULL_STEPS:,} Adam steps at lr 1e-3 ({_CAGRAD_QUICK_STEPS:,} "
            "in --quick). One seed: the starts are fixed, so a seed changes only the draws of stochastic methods. "
            "Losses are means over the starts; PS measure and distance to the Pareto set are the worst start's."
        ),
        kind="single", problem="cagrad-toy", problem_params={"scale": float(scale)},
        settings={
            "full": {"steps": _CAGRAD_FULL_STEPS, "lr": 0.001, "optimizer": "adam", "seeds": [0]},
            "quick": {"steps": _CAGRAD_QUICK_STEPS, "lr": 0.001, "optimizer": "adam", "seeds": [0]} if scale == 1.0 else None,
        },
        metrics=_single_metrics(2, what="mean over the five starts", dist=True, hv=False),
    )  # fmt: skip


SUITES: tuple[Suite, ...] = (
    _cagrad(1.0),
    _cagrad(0.1),
    Suite(
        id="mtl-regression",
        title="Synthetic multi-task regression (tanh encoder, two linear heads)",
        description=(
            "The synthetic multi-task regression network (mtl-regression: a shared tanh encoder and K = 2 linear "
            "heads, minibatches of 128), trained with Adam at lr 0.01 (the problem's default) for 150 steps (the "
            "problem's default is 300; the sweep's budget). "
            "Final losses are on the full data; PS measure of the shared parameters' per-task gradients."
        ),
        kind="single", problem="mtl-regression", problem_params={},
        settings={
            "full": {"steps": 150, "lr": 0.01, "optimizer": "adam", "seeds": [0, 1, 2]},
            "quick": None,
        },
        metrics=_single_metrics(2, what="full data", dist=False, hv=False),
    ),  # fmt: skip
    Suite(
        id="biquad-k3",
        title="Bi-quadratic with 3 tasks (K-Quad, n = 2)",
        description=(
            "Three isotropic quadratics fᵢ(x) = ‖x − aᵢ‖² in R² (biquad with K = 3), whose Pareto set is the "
            "triangle conv{aᵢ}; SGD at lr 0.05 for 200 steps (the problem's defaults) from eight random starts per "
            "seed. Losses and PS measure are per start (mean, worst)."
        ),
        kind="single", problem="biquad", problem_params={"K": 3},
        settings={
            "full": {"steps": 200, "lr": 0.05, "optimizer": "sgd", "seeds": [0, 1, 2]},
            "quick": {"steps": 50, "lr": 0.05, "optimizer": "sgd", "seeds": [0]},
        },
        metrics=_single_metrics(3, what="mean over the starts", dist=True, hv=True),
    ),  # fmt: skip
    Suite(
        id="bilevel-ridge",
        title="Bi-level ridge regression (loss weightings and bi-level methods, 3 tasks)",
        description=(
            "Task-weighted ridge regression with a train/validation split (bilevel-ridge, K = 3): the suite of the "
            "bi-level loss weightings (Auto-Lambda, MOML, FORUM), with the single-level loss weightings as "
            "baselines on the same lower level. SGD at lr 0.1 for 500 steps (the problem's defaults). The losses "
            "reported are the validation losses (the upper-level objectives)."
        ),
        kind="single", problem="bilevel-ridge", problem_params={},
        settings={
            "full": {"steps": 500, "lr": 0.1, "optimizer": "sgd", "seeds": [0, 1, 2]},
            "quick": {"steps": 100, "lr": 0.1, "optimizer": "sgd", "seeds": [0]},
        },
        metrics=tuple(BILEVEL_METRICS + [TIME, BACKWARD]),
    ),  # fmt: skip
    Suite(
        id="multi-digits",
        title="Multi-Digits (two overlapped handwritten digits, real data)",
        description=(
            "Two of scikit-learn's 8x8 digits overlapped on a 12x12 canvas (MultiMNIST's construction at small "
            "scale), a ReLU trunk and two 10-way heads, minibatches of 256, Adam at lr 1e-3. The problem's default "
            "is 300 steps; the full sweep runs 100 (its budget). Losses are full training-set cross-entropies; "
            "test accuracy on 1000 held-out images (chance: 0.1)."
        ),
        kind="single", problem="multi-digits", problem_params={},
        settings={
            "full": {"steps": 100, "lr": 0.001, "optimizer": "adam", "seeds": [0, 1, 2]},
            "quick": {"steps": 40, "lr": 0.001, "optimizer": "adam", "seeds": [0]},
        },
        metrics=_single_metrics(2, what="full training set", dist=False, hv=False, accuracy=True),
    ),  # fmt: skip
)


def _set_suite(problem: str, title: str, what: str, params: dict[str, Any], full_steps: int, quick_steps: int | None, *,
               solutions: int, seeds: list[int], accuracy: bool = False, igd: bool = True) -> Suite:  # fmt: skip
    metrics = [m for m in SET_METRICS if igd or m.id not in ("igd", "dist_max", "hv")]
    if accuracy:
        metrics.append(SET_ACC)
    return Suite(
        id=f"set-{problem.replace('-set', '')}",
        title=f"Set methods on {title}",
        description=(
            f"{what} {solutions} solutions moved together by each set method, with the method's own run defaults (its "
            f"paper's toy setting: optimiser, lr, steps), else the problem's, at most {full_steps} steps in the full "
            f"sweep{'' if quick_steps is None else f' ({quick_steps} in --quick)'}; preferences: the method's defaults."
        ),
        kind="set", problem=problem, problem_params=dict(params),
        settings={
            "full": {"solutions": solutions, "max_steps": full_steps, "method_defaults": True, "seeds": seeds},
            "quick": None if quick_steps is None else
            {"solutions": solutions, "max_steps": quick_steps, "method_defaults": True, "seeds": [0]},
        },
        metrics=tuple(metrics + [TIME, BACKWARD]),
    )  # fmt: skip


def _model_suite(problem: str, title: str, what: str, params: dict[str, Any], full_steps: int, quick_steps: int | None, *,
                 seeds: list[int], known: bool = True) -> Suite:  # fmt: skip
    keep = {"loss_mean", "hv", "spread", "ps_max"} if not known else None
    metrics = [m for m in MODEL_METRICS if keep is None or m.id in keep]
    if problem == "multi-digits-set":
        metrics.append(Metric("acc_mean", "test acc. mean", "higher", ".4f",
                              "mean test accuracy over the held-out preferences and the two tasks"))
    return Suite(
        id=f"psl-{problem.replace('-set', '')}",
        title=f"Pareto-set models on {title}",
        description=(
            f"{what} Each model is trained with its own run defaults (its paper's toy setting: optimiser, lr, steps, "
            f"preferences per step), else the problem's, at most {full_steps} steps in the full sweep"
            f"{'' if quick_steps is None else f' ({quick_steps} in --quick)'}, the budget of the sweep (the "
            "hypernetworks' papers train for longer), then evaluated on 25 held-out preferences (disjoint from the "
            "training draws) and a dense grid."
        ),
        kind="pareto-model", problem=problem, problem_params=dict(params),
        settings={
            "full": {"max_steps": full_steps, "method_defaults": True, "held_out": 25, "seeds": seeds},
            "quick": None if quick_steps is None else
            {"max_steps": quick_steps, "method_defaults": True, "held_out": 25, "seeds": [0]},
        },
        metrics=tuple(metrics + [TIME, BACKWARD]),
    )  # fmt: skip


_SET_PROBLEMS = [
    # problem, title, what, params, steps cap (full) for sets, for models, quick cap for sets, for models (None: not in --quick)
    ("biquad", "the bi-quadratic (K = 2, n = 2)", "Two quadratics in R² (Pareto set: the segment between the minimisers).", {},
     100, 100, 50, 50),
    ("vlmop2", "VLMOP2 (concave front, n = 20)", "VLMOP2 (Fonseca-Fleming), the concave-front toy of Pareto MTL, EPO and PHN.", {},
     100, 100, None, None),
    ("zdt1", "ZDT1 (convex front, n = 5)", "ZDT1 in the box [0, 1]⁵ (convex front).", {}, 100, 300, None, None),
    ("zdt2", "ZDT2 (concave front, n = 5)", "ZDT2 in the box [0, 1]⁵ (concave front).", {}, 100, 300, None, None),
    ("dtlz2", "DTLZ2 (K = 3, spherical front)", "DTLZ2 with 3 objectives and n = 7 (the unit-sphere octant).", {},
     100, 300, None, None),
]

SUITES = SUITES + tuple(
    _set_suite(p, t, w, params, full, quick, solutions=5, seeds=[0, 1, 2]) for p, t, w, params, full, _, quick, _ in _SET_PROBLEMS
) + (
    _set_suite("multi-digits-set", "Multi-Digits (P networks)", "Multi-Digits networks as one point problem (full batch):", {},
               20, None, solutions=3, seeds=[0], accuracy=True, igd=False),
) + tuple(
    _model_suite(p, t, w, params, full, quick, seeds=[0, 1, 2]) for p, t, w, params, _, full, _, quick in _SET_PROBLEMS
) + (
    _model_suite("multi-digits-set", "Multi-Digits (a network per preference)",
                 "Multi-Digits: the model outputs the small network's parameters for each preference.", {}, 40, None,
                 seeds=[0], known=False),
)  # fmt: skip

BY_ID: dict[str, Suite] = {s.id: s for s in SUITES}


def suite_ids() -> list[str]:
    """Suite ids in table order."""
    return [s.id for s in SUITES]


def get_suite(suite_id: str) -> Suite:
    try:
        return BY_ID[suite_id]
    except KeyError:
        raise KeyError(f"unknown suite {suite_id!r}; known: {', '.join(suite_ids())}") from None


__all__ = ["MODES", "Metric", "SUITES", "Suite", "get_suite", "suite_ids"]
