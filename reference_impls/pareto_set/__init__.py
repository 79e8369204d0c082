"""Pareto-set learning: models that map a preference r ∈ Δ to a solution, and their shared evaluation.

* :mod:`reference_impls.pareto_set.phn` — Pareto HyperNetworks (PHN-LS, PHN-EPO).
* :mod:`reference_impls.pareto_set.phn_hvi` — multi-sample hypernetworks with hypervolume weights (PHN-HVI).
* :mod:`reference_impls.pareto_set.controllable_pareto_mtl` — Controllable Pareto MTL (chunked hypernetwork).
* :mod:`reference_impls.pareto_set.pareto_manifold_extractor` — the neural Pareto manifold extractor with constraints.
* :mod:`reference_impls.pareto_set.hyper_transformer` — the Hyper-Transformer (split feasibility constraints).
* :mod:`reference_impls.pareto_set.cosmos` — COSMOS (preference as input, cosine term).
* :mod:`reference_impls.pareto_set.yoto` — YOTO (loss-conditional FiLM network).
* :mod:`reference_impls.pareto_set.controllable_dynamic_mtl` — controllable dynamic multi-task architectures.
* :mod:`reference_impls.pareto_set.training` — :func:`~reference_impls.pareto_set.training.pareto_step`,
  the one training step the runner and the documented loop take.
* :mod:`reference_impls.pareto_set.oracles` — the true preference-to-solution maps of the toys.
* :mod:`reference_impls.pareto_set.evaluation` — held-out preferences, the dense grid and the metrics.

The interface is :class:`reference_impls.core.sets.ParetoModel`; the runner is
:func:`reference_impls.pareto_runner.run_pareto` (``modl run phn-ls --problem biquad``).
"""
