"""Minimal, faithful PyTorch reference implementations of gradient-based multi-objective methods.

    >>> import reference_impls
    >>> aggregator = reference_impls.create("pcgrad")
    >>> d = aggregator(J)            # J: (K, n) task gradients as rows -> (n,) update direction

Importing this package does not import torch; :func:`create` does, for the method it builds.
"""

from reference_impls.registry import REGISTRY, MethodInfo, create, info, load_class, names

__all__ = ["REGISTRY", "MethodInfo", "create", "info", "load_class", "names"]
