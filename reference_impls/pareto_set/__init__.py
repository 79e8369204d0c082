"""Pareto-set learning: models that map a preference r ∈ Δ to a solution, and their shared evaluation.

* :mod:`reference_impls.pareto_set.phn` — Pareto HyperNetworks (PHN-LS, PHN-EPO).
* :mod:`reference_impls.pareto_set.training` — :func:`~reference_impls.pareto_set.training.pareto_step`,
  the one training step the runner and the documented loop take.
* :mod:`reference_impls.pareto_set.oracles` — the true preference-to-solution maps of the toys.
* :mod:`reference_impls.pareto_set.evaluation` — held-out preferences, the dense grid and the metrics.

The interface is :class:`reference_impls.core.sets.ParetoModel`; the runner is
:func:`reference_impls.pareto_runner.run_pareto` (``modl run phn-ls --problem biquad``).
"""
