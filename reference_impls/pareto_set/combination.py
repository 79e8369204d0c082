"""What the model-combination Pareto-set models share: a solution's parameter layout and seeded fine-tuning.

A model combination (PaMaL, LORPMAN, PaLoRA, Panacea, Pareto Merging, the MoE fusion) maps a
preference r to a parameter vector θ(r) ∈ R^n of the problem's model, built tensor by tensor (an
anchor per task, a low-rank adapter per weight matrix, a merging coefficient per layer).
:class:`ParameterLayout` splits a batch of flat vectors (B, n) into the problem's named tensors
(``Problem.parameter_shapes()``) and joins them back, so each model writes its rule per tensor.

:func:`fine_tune` trains one parameter vector on a weighted sum of the problem's losses with
full-batch Adam from a given start (deterministic): the separately trained single-task models that
tests compare a combination with (PaMaL's "independently trained endpoints").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from reference_impls.problems.base import adam_minimise


class ParameterLayout:
    """Named tensors of a flat parameter vector: ``split`` (B, n) -> [(B, *shape)], ``join`` back."""

    def __init__(self, shapes: list[tuple[str, tuple[int, ...]]]) -> None:
        if not shapes:
            raise ValueError("ParameterLayout: no tensors")
        self.names = [str(name) for name, _ in shapes]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"ParameterLayout: repeated tensor names {self.names}")
        self.shapes = [tuple(int(d) for d in shape) for _, shape in shapes]
        if any(len(s) == 0 or min(s) < 1 for s in self.shapes):
            raise ValueError(f"ParameterLayout: every tensor needs a positive shape, got {self.shapes}")
        sizes = [math.prod(s) for s in self.shapes]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.slices = [slice(a, a + m) for a, m in zip(starts, sizes)]
        self.n = sum(sizes)
        #: indices of the 2-D entries (weight matrices (out, in)): where low-rank adapters go
        self.matrices = [i for i, s in enumerate(self.shapes) if len(s) == 2]

    @classmethod
    def of(cls, problem: Any) -> ParameterLayout:
        """The layout of ``problem``'s decision vector (``problem.parameter_shapes()``), checked against its n."""
        shapes = problem.parameter_shapes() if hasattr(problem, "parameter_shapes") else [("x", (int(problem.n),))]
        layout = cls(shapes)
        if layout.n != int(problem.n):
            raise ValueError(f"{getattr(problem, 'id', problem)!r}: parameter_shapes() hold {layout.n} numbers, the problem has n = {problem.n}")
        return layout

    def split(self, x: Tensor) -> list[Tensor]:
        """(B, n) -> one view (B, *shape) per tensor; (n,) -> views (*shape)."""
        if x.shape[-1] != self.n:
            raise ValueError(f"ParameterLayout.split: expected last dimension {self.n}, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        return [x[..., sl].reshape(*lead, *shape) for sl, shape in zip(self.slices, self.shapes)]

    def join(self, tensors: list[Tensor]) -> Tensor:
        """The inverse of :meth:`split`: [(B, *shape)] -> (B, n) (or [(*shape)] -> (n,))."""
        if len(tensors) != len(self.shapes):
            raise ValueError(f"ParameterLayout.join: expected {len(self.shapes)} tensors, got {len(tensors)}")
        lead = tensors[0].shape[: tensors[0].ndim - len(self.shapes[0])]
        parts = []
        for t, shape, name in zip(tensors, self.shapes, self.names):
            if tuple(t.shape[len(lead):]) != shape or t.shape[: len(lead)] != lead:
                raise ValueError(f"ParameterLayout.join: {name} has shape {tuple(t.shape)}, expected {(*lead, *shape)}")
            parts.append(t.reshape(*lead, -1))
        return torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        return f"ParameterLayout({list(zip(self.names, self.shapes))})"


def fine_tune(problem: Any, start: Tensor, weights: Tensor, *, steps: int, lr: float, seed: int = 0) -> Tensor:
    """argmin_x Σ_k w_k f_k(x) approached by ``steps`` full-batch Adam steps from ``start`` (n,); returns x (n,).

    Deterministic (no sampling; ``seed`` only fixes torch's global state for problems that draw). Raises
    a ValueError on non-finite losses (lower the learning rate)."""
    w = torch.as_tensor(weights, dtype=problem.dtype, device=problem.device)
    if w.shape != (problem.K,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"fine_tune: weights must be {problem.K} non-negative finite numbers with a positive sum, got {weights!r}")
    torch.manual_seed(int(seed))
    x0 = start.detach().to(problem.dtype).reshape(1, -1)  # (1, n)
    return adam_minimise(x0, lambda x: problem.losses(x)[0] @ w, steps=steps, lr=lr, what="fine_tune")[0]  # Σ_k w_k f_k(x)


__all__ = ["ParameterLayout", "fine_tune"]
