"""Toy problems with known Pareto sets or fronts, batched over starting points.

    >>> from reference_impls.problems import get_problem, problem_ids
    >>> problem = get_problem("biquad", K=2, n=2)
    >>> x = problem.initial_points(seed=0)          # (B, n)
    >>> F, J = problem.losses(x), problem.jacobian(x)  # (B, K), (B, K, n)

Point problems (subclasses of :class:`Problem`): ``biquad``, ``vlmop2``, ``zdt1``, ``zdt2``, ``zdt-skewed``, ``dtlz2``,
``cagrad-toy``, ``mtl-linear``, ``cpfl-ex1``, ``cpfl-ex2`` (the Hyper-Transformer paper's examples); with a stochastic oracle (``noisy.py``): ``noisy-biquad``,
``noisy-cagrad-toy``. Model problems (a network, used through ``aggregator.backward``; base class
:class:`~reference_impls.problems.network.NetworkProblem`): ``mtl-regression``, ``multi-digits`` (two overlapped
handwritten digits from scikit-learn's bundled digits, left and right digit as two tasks); ``mtl-regression-set`` (P such networks as a point problem, for set methods). Bi-level problem: ``bilevel-ridge`` (train/validation losses of a model ω
with a closed-form lower level; for Auto-Lambda, MOML, FORUM). Many-objective problem: ``clusters`` (m objectives
||x − a_i||² with anchors in k planted clusters and proven sum-of-minimum / minimax optima; few-for-many methods).
Model-combination problems (Pareto-set models that combine, adapt or merge parameter tensors): ``lowrank-regression``
(multi-output linear regression whose tasks differ from a base by an exact rank ρ; closed-form Pareto set) and
``merging-mlp`` (a pretrained small MLP with K separately fine-tuned task models, built by a seeded script).
"""

from __future__ import annotations

import importlib
from typing import Any

from reference_impls.problems.base import Problem

# id -> (module, class); modules are imported on first use
_PROBLEMS: dict[str, tuple[str, str]] = {
    "biquad": ("biquad", "BiQuad"),
    "bi-sphere": ("bisphere", "BiSphere"),
    "clusters": ("clusters", "Clusters"),
    "vlmop2": ("vlmop2", "VLMOP2"),
    "zdt1": ("zdt", "ZDT1"),
    "zdt2": ("zdt", "ZDT2"),
    "zdt-skewed": ("skewed", "ZDTSkewed"),
    "dtlz2": ("dtlz", "DTLZ2"),
    "cagrad-toy": ("cagrad_toy", "CAGradToy"),
    "mtl-linear": ("mtl_regression", "MTLLinear"),
    "mtl-regression": ("mtl_regression", "MTLRegression"),
    "mtl-regression-set": ("mtl_set", "MTLRegressionSet"),
    "lowrank-regression": ("lowrank_regression", "LowRankRegression"),
    "merging-mlp": ("merging_mlp", "MergingMLP"),
    "multi-digits": ("multi_digits", "MultiDigits"),
    "multi-digits-set": ("multi_digits", "MultiDigitsSet"),
    "mo-regression": ("mo_regression", "MORegression"),
    "bilevel-ridge": ("bilevel_ridge", "BilevelRidge"),
    "noisy-biquad": ("noisy", "NoisyBiQuad"),
    "noisy-cagrad-toy": ("noisy", "NoisyCAGradToy"),
    "cpfl-ex1": ("cpfl_toys", "CPFLEx1"),
    "cpfl-ex2": ("cpfl_toys", "CPFLEx2"),
}


def problem_ids() -> list[str]:
    """The ids of every toy problem, sorted."""
    return sorted(_PROBLEMS)


def problem_class(problem_id: str) -> type:
    try:
        module, cls = _PROBLEMS[problem_id]
    except KeyError:
        raise ValueError(f"unknown problem {problem_id!r}; known: {', '.join(problem_ids())}") from None
    return getattr(importlib.import_module(f"reference_impls.problems.{module}"), cls)


def get_problem(problem_id: str, **knobs: Any) -> Any:
    """Build the problem ``problem_id`` with the given knobs (e.g. ``K=3``, ``scale=0.1``)."""
    cls = problem_class(problem_id)
    try:
        return cls(**knobs)
    except TypeError as error:
        raise ValueError(f"problem {problem_id!r}: bad knob(s) {sorted(knobs)}: {error}") from None


__all__ = ["Problem", "get_problem", "problem_class", "problem_ids"]
