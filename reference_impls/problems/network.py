"""The base of the problems whose variable is a torch network (``mtl-regression``, ``multi-digits``).

Single-solution methods train the network through ``aggregator.backward(losses,
shared_parameters, task_parameters)`` (the runner's ``_run_model`` and the documented training loop):

* ``reset(seed)`` builds a freshly initialised network (PyTorch's default initialisation under
  ``seed``, without touching the global random state) and ``model()`` returns the current one;
* ``shared_parameters()`` / ``task_parameters()`` split its parameters (trunk / task heads);
* ``losses(batch=None, return_representation=False)`` gives the K training losses (K,) on a batch of
  row indices (all rows when None), and optionally the shared representation Z (the "-UB" mode);
* ``batches(seed)`` an endless stream of row-index batches (``batch_size`` rows, a fresh seeded
  permutation per epoch; None = full batch when ``batch_size`` is None);
* ``jacobian()`` the full-data Jacobian (K, n_shared) with respect to the shared parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn


class NetworkProblem(ABC):
    """A multi-task problem over the parameters of a torch network (see the module docstring)."""

    id = ""
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-2
    hv_reference = None
    bounds = None
    has_pareto_front = False
    has_pareto_set = False

    K: int
    N: int  # training rows
    batch_size: int | None
    dtype: torch.dtype
    device: torch.device

    @abstractmethod
    def _new_network(self) -> nn.Module:
        """A freshly initialised network (called under a seeded, forked random state)."""

    @abstractmethod
    def shared_parameters(self) -> list[Tensor]:
        """The trunk's parameters (the ones every task's loss depends on)."""

    @abstractmethod
    def task_parameters(self) -> list[Tensor]:
        """The task heads' parameters."""

    @abstractmethod
    def losses(self, batch: Tensor | None = None, return_representation: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The K training losses (K,) on rows ``batch`` (all rows when None), and optionally the representation Z."""

    def reset(self, seed: int = 0) -> nn.Module:
        """A freshly initialised model (PyTorch's default initialisation under ``seed``)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self._model = self._new_network().to(dtype=self.dtype, device=self.device)
        return self._model

    def model(self) -> nn.Module:
        return self._model if getattr(self, "_model", None) is not None else self.reset(0)

    def batches(self, seed: int = 0) -> Iterator[Tensor | None]:
        """An endless stream of row-index batches (None = full batch when ``batch_size`` is None)."""
        g = torch.Generator().manual_seed(int(seed))
        while True:
            if self.batch_size is None:
                yield None
                continue
            perm = torch.randperm(self.N, generator=g)
            for start in range(0, self.N - self.batch_size + 1, self.batch_size):
                yield perm[start : start + self.batch_size].to(self.device)

    def jacobian(self) -> Tensor:
        """(K, n_shared) full-data Jacobian with respect to the shared parameters, detached."""
        from reference_impls.core.aggregator import jacobian

        J, _ = jacobian(list(self.losses().unbind()), self.shared_parameters())  # type: ignore[union-attr]
        return J.detach()

    def set_version(self) -> Any:
        """The same data and network as a point problem (P networks at once, x = flattened parameters) for set
        methods and Pareto-set models, or None when the problem has none."""
        return None

    def evaluation(self) -> dict[str, Any]:
        """Held-out figures of the current model for the runner's result (none by default)."""
        return {}


__all__ = ["NetworkProblem"]
