"""``modl bench``: every registered method on the suites it applies to, over seeds, as resumable cells.

* :mod:`reference_impls.bench.suites`: the suites as data (problem, settings per mode, metric columns).
* :mod:`reference_impls.bench.cells`: which methods a suite applies to (and why not), and one cell run:
  a method on a suite with one seed, through the existing runners (:func:`reference_impls.runner.run`,
  :func:`reference_impls.set_runner.run_set`, :func:`reference_impls.pareto_runner.run_pareto`).
* :mod:`reference_impls.bench.engine`: the plan (suites × methods × seeds), shards, the cell store
  (one JSON file per cell, keyed by a hash of everything that defines it), the process pool, the
  results files (``benchmarks/results/suites/<suite>.json`` and ``.csv``) and the command line.

Importing this package does not import torch; the cells and the engine do.
"""
