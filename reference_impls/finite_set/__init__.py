"""Finite-set methods: P solutions moved jointly, one preference vector per solution (``SetMethod``).

Run them with :func:`reference_impls.set_runner.run_set` (or ``modl run METHOD --problem P --solutions N``).
"""
