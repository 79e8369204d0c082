"""``mtl-regression-set``: the small multi-task regression network as a point problem, P networks at once.

Set methods train P copies of the ``mtl-regression`` network (a shared tanh encoder and K linear
heads, :class:`~reference_impls.problems.mtl_regression.MTLRegression`): each solution x ∈ R^n is
one network's flattened parameter vector

    x = (W_enc (hidden·p, row-major), b_enc (hidden), W_heads (K·hidden, head k's row k), b_heads (K)),

and f_k(x) = mean over the N rows of (ŷ_k − y_k)² with ŷ = heads(tanh(W_enc X + b_enc)), the network's
own losses. The B networks are evaluated in one batched pass (einsum over the batch), and the
Jacobians J (B, K, n) come from autograd of Σ_b f_k(x_b) (the networks are independent).

Starting point p of ``initial_points(seed, num=P)`` is the network ``MTLRegression.reset(seed + p)``
(PyTorch's default initialisation), flattened. Full batch. No analytic front (the network is not
linear in its parameters); ``mtl-linear`` is the closed-form relative.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reference_impls.problems.base import Problem
from reference_impls.problems.mtl_regression import MTLRegression


class MTLRegressionSet(Problem):
    id = "mtl-regression-set"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-2

    def __init__(self, num_starts: int = 8, **network_knobs: Any) -> None:
        net = MTLRegression(**network_knobs)
        self.network = net
        K, p, h = net.K, net.p, net.hidden
        super().__init__(K, h * p + h + K * h + K, dtype=net.dtype, device=net.device)
        self.num_starts = int(num_starts)
        self.p, self.hidden = p, h

    @classmethod
    def from_network(cls, network: MTLRegression, num_starts: int = 8) -> MTLRegressionSet:
        """The set problem on the same data (knobs) as ``network``."""
        knobs = dict(network._data_args)
        knobs.update(hidden=network.hidden, dtype=network.dtype, device=network.device)
        return cls(num_starts=num_starts, **knobs)

    def unflatten(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, n) -> W_enc (B, hidden, p), b_enc (B, hidden), W_heads (B, K, hidden), b_heads (B, K)."""
        B, p, h, K = x.shape[0], self.p, self.hidden, self.K
        sizes = [h * p, h, K * h, K]
        W1, b1, W2, b2 = torch.split(x, sizes, dim=1)
        return W1.reshape(B, h, p), b1, W2.reshape(B, K, h), b2

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The network's tensors in the order of :meth:`unflatten`."""
        h, p, K = self.hidden, self.p, self.K
        return [("W_enc", (h, p)), ("b_enc", (h,)), ("W_heads", (K, h)), ("b_heads", (K,))]

    def flatten(self, model: torch.nn.Module) -> Tensor:
        """A network of ``MTLRegression`` (n,) in the order of :meth:`unflatten`."""
        enc, heads = model.encoder, model.heads
        parts = [enc.weight.reshape(-1), enc.bias, torch.cat([hd.weight for hd in heads]).reshape(-1), torch.cat([hd.bias for hd in heads])]
        return torch.cat([t.detach() for t in parts]).to(self.dtype)

    def _losses(self, x: Tensor) -> Tensor:
        W1, b1, W2, b2 = self.unflatten(x)
        Xd, Y = self.network.X, self.network.Y  # (N, p), (N, K)
        Z = torch.tanh(torch.einsum("np,bhp->bnh", Xd, W1) + b1[:, None, :])  # shared representation, (B, N, hidden)
        pred = torch.einsum("bnh,bkh->bnk", Z, W2) + b2[:, None, :]  # ŷ, (B, N, K)
        return ((pred - Y) ** 2).mean(1)  # f_k = mean_n (ŷ_k − y_k)², (B, K)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        nets = [self.flatten(self.network.reset(int(seed) + p)) for p in range(self._num_points(num))]
        return torch.stack(nets)  # (P, n)


__all__ = ["MTLRegressionSet"]
