"""Pareto-set learning: models that map a preference r ∈ Δ to a solution, and their shared evaluation.

* :mod:`reference_impls.pareto_set.phn` — Pareto HyperNetworks (PHN-LS, PHN-EPO).
* :mod:`reference_impls.pareto_set.phn_hvi` — multi-sample hypernetworks with hypervolume weights (PHN-HVI).
* :mod:`reference_impls.pareto_set.controllable_pareto_mtl` — Controllable Pareto MTL (chunked hypernetwork).
* :mod:`reference_impls.pareto_set.pareto_manifold_extractor` — the neural Pareto manifold extractor with constraints.
* :mod:`reference_impls.pareto_set.hyper_transformer` — the Hyper-Transformer (split feasibility constraints).
* :mod:`reference_impls.pareto_set.cosmos` — COSMOS (preference as input, cosine term).
* :mod:`reference_impls.pareto_set.yoto` — YOTO (loss-conditional FiLM network).
* :mod:`reference_impls.pareto_set.controllable_dynamic_mtl` — controllable dynamic multi-task architectures.
* :mod:`reference_impls.pareto_set.pamal` — Pareto Manifold Learning (a convex combination of per-task anchors).
* :mod:`reference_impls.pareto_set.lorpman` — LORPMAN (a shared base plus preference-weighted low-rank parts).
* :mod:`reference_impls.pareto_set.palora` — PaLoRA (task LoRA adapters, a deterministic preference schedule).
* :mod:`reference_impls.pareto_set.panacea` — Panacea (the preference as singular values of an SVD adapter on a frozen base).
* :mod:`reference_impls.pareto_set.pareto_merging` — Pareto Merging (preference-dependent merging coefficients of task vectors).
* :mod:`reference_impls.pareto_set.moe_fusion` — the MoE-based model fusion (a preference-conditioned router over task experts).
* :mod:`reference_impls.pareto_set.combination` — what the model combinations share: the parameter layout, seeded fine-tuning.
* :mod:`reference_impls.pareto_set.training` — :func:`~reference_impls.pareto_set.training.pareto_step`,
  the one training step the runner and the documented loop take.
* :mod:`reference_impls.pareto_set.oracles` — the true preference-to-solution maps of the toys.
* :mod:`reference_impls.pareto_set.evaluation` — held-out preferences, the dense grid and the metrics.

The interface is :class:`reference_impls.core.sets.ParetoModel`; the runner is
:func:`reference_impls.pareto_runner.run_pareto` (``modl run phn-ls --problem biquad``).
"""
