"""Synthetic multi-task regression: a small shared network (``mtl-regression``) and its closed-form linear variant (``mtl-linear``).

Data (seeded by ``data_seed``): X ∈ R^{N×p}, X ~ N(0, I), N = 512, p = 10; targets
y_k = s_k·(X w_k* + σ ε_k), ε_k ~ N(0, I), with unit vectors w_k* whose pairwise cosine is the
``conflict`` knob (default −0.5: strong conflict; needs conflict ≥ −1/(K − 1)) and scales s_k, the
``scales`` knob (imbalance, e.g. (1, 100)). The w_k* are the rows of a Cholesky factor of the Gram
matrix (1 − c)I + c𝟙𝟙ᵀ, rotated into R^p by a random orthonormal map.

``mtl-regression``: encoder h = tanh(W_1 x + b_1) (16 units, the shared parameters) and one linear
head per task (task parameters); f_k = mean squared error of head k. Methods are used through
``aggregator.backward(losses, shared_parameters, task_parameters)``; ``losses(batch,
return_representation=True)`` also gives the representation h for the "-UB" mode.

``mtl-linear``: one shared linear map, f_k(w) = (1/N)||X w − y_k||², w ∈ R^p, a point problem.
Since f_k(w) = (w − ŵ_k)ᵀ Σ̂ (w − ŵ_k) + const with the same Σ̂ = XᵀX/N for every task
(ŵ_k the least-squares solution of task k), Σ_k λ_k ∇f_k = 2Σ̂(w − Σ_k λ_k ŵ_k) vanishes exactly on
conv{ŵ_k}: the Pareto set is conv{ŵ_k}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from reference_impls.problems.base import Problem, arc_length_parameters, distance_to_hull
from reference_impls.problems.network import NetworkProblem


def make_data(
    K: int = 2,
    N: int = 512,
    p: int = 10,
    conflict: float = -0.5,
    scales: Sequence[float] | None = None,
    noise: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor]:
    """(X (N, p), Y (N, K), W* (K, p)) of the synthetic regression; see the module docstring."""
    if K < 1 or p < K:
        raise ValueError(f"mtl-regression: need 1 <= K <= p, got K={K}, p={p}")
    if K > 1 and not (-1.0 / (K - 1) <= conflict < 1.0):
        raise ValueError(f"mtl-regression: conflict must lie in [{-1.0 / (K - 1):.3g}, 1) for K={K}, got {conflict}")
    s = torch.ones(K, dtype=dtype) if scales is None else torch.as_tensor(scales, dtype=dtype)
    if s.shape != (K,) or not bool((s > 0).all()):
        raise ValueError(f"mtl-regression: scales must be {K} positive numbers, got {scales!r}")
    g = torch.Generator().manual_seed(int(seed))
    G = (1 - conflict) * torch.eye(K, dtype=dtype) + conflict * torch.ones(K, K, dtype=dtype)  # cos(w_i*, w_j*) = c
    V = torch.linalg.cholesky(G + 1e-12 * torch.eye(K, dtype=dtype))  # (K, K), rows are unit vectors
    Q, _ = torch.linalg.qr(torch.randn(p, K, generator=g, dtype=dtype))  # (p, K) orthonormal columns
    W = V @ Q.T  # (K, p)
    X = torch.randn(N, p, generator=g, dtype=dtype)  # (N, p)
    eps = torch.randn(N, K, generator=g, dtype=dtype)  # (N, K)
    Y = s * (X @ W.T + noise * eps)  # y_k = s_k (X w_k* + σ ε_k), (N, K)
    return X, Y, W


class MTLLinear(Problem):
    """``mtl-linear``: f_k(w) = (1/N)||X w − y_k||² with a single shared w ∈ R^p; Pareto set conv{ŵ_k}."""

    id = "mtl-linear"
    default_optimizer = "sgd"
    default_steps = 300
    default_lr = 0.1

    def __init__(
        self,
        K: int = 2,
        N: int = 512,
        p: int = 10,
        conflict: float = -0.5,
        scales: Sequence[float] | None = None,
        noise: float = 0.1,
        data_seed: int = 0,
        num_starts: int = 8,
        **kw: Any,
    ) -> None:
        super().__init__(K, p, **kw)
        X, Y, W = make_data(K, N, p, conflict, scales, noise, data_seed, self.dtype)
        self.X, self.Y, self.W_star = X.to(self.device), Y.to(self.device), W.to(self.device)
        self.num_starts = int(num_starts)
        self.W_hat = torch.linalg.lstsq(self.X, self.Y).solution.T  # ŵ_k, (K, p)
        F_vertices = self._losses(self.W_hat)  # (K, K): f_i(ŵ_j) in row j
        self.hv_reference = tuple(F_vertices.max(dim=0).values.tolist())  # f_i ≤ max_j f_i(ŵ_j) on the hull

    def _losses(self, x: Tensor) -> Tensor:
        R = x @ self.X.T  # (B, N) predictions
        return ((R[:, :, None] - self.Y[None]) ** 2).mean(1)  # (B, K)

    def _jacobian(self, x: Tensor) -> Tensor:
        R = (x @ self.X.T)[:, :, None] - self.Y[None]  # (B, N, K) residuals
        return 2.0 / self.X.shape[0] * torch.einsum("bnk,np->bkp", R, self.X)  # ∇f_k = (2/N) Xᵀ(Xw − y_k), (B, K, p)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return torch.randn(self._num_points(num), self.n, generator=g, dtype=self.dtype).to(self.device)

    def pareto_set(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            t = torch.linspace(0, 1, num, dtype=self.dtype, device=self.device)[:, None]
            return self.W_hat[0] + t * (self.W_hat[1] - self.W_hat[0])
        g = self._generator(12345)
        w = torch._standard_gamma(torch.ones(num, self.K, dtype=self.dtype), generator=g)
        return (w / w.sum(1, keepdim=True)).to(self.device) @ self.W_hat

    def pareto_front(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            t = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)

            def curve(t: Tensor) -> Tensor:
                return self._losses(self.W_hat[0] + t[:, None] * (self.W_hat[1] - self.W_hat[0]))

            return curve(arc_length_parameters(t, curve(t), num))  # (num, 2), uniform in arc length
        return self._losses(self.pareto_set(num))

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_hull(xb, self.W_hat)


class _Net(nn.Module):
    def __init__(self, p: int, hidden: int, K: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(p, hidden)
        self.heads = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(K)])

    def forward(self, X: Tensor) -> tuple[Tensor, Tensor]:
        Z = torch.tanh(self.encoder(X))  # shared representation, (N, hidden)
        return torch.cat([head(Z) for head in self.heads], dim=1), Z  # (N, K), (N, hidden)


class MTLRegression(NetworkProblem):
    """``mtl-regression``: a shared tanh encoder and K linear heads trained on the synthetic data.

    Unlike the point problems, the optimisation variable is the parameter vector of a torch module:
    ``model()`` builds it (seeded by :meth:`reset`), ``shared_parameters()`` / ``task_parameters()``
    split it, ``losses(batch)`` gives the K mean squared errors on a batch of row indices (all rows
    when ``batch`` is None).
    """

    id = "mtl-regression"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-2

    def __init__(
        self,
        K: int = 2,
        N: int = 512,
        p: int = 10,
        hidden: int = 16,
        conflict: float = -0.5,
        scales: Sequence[float] | None = None,
        noise: float = 0.1,
        data_seed: int = 0,
        batch_size: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: Any = None,
    ) -> None:
        self.K, self.N, self.p, self.hidden = int(K), int(N), int(p), int(hidden)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.batch_size = batch_size
        self._data_args = dict(K=K, N=N, p=p, conflict=conflict, scales=scales, noise=noise, data_seed=data_seed)
        X, Y, W = make_data(K, N, p, conflict, scales, noise, data_seed, dtype)
        self.X, self.Y, self.W_star = X.to(self.device), Y.to(self.device), W.to(self.device)
        self._model: _Net | None = None

    def _new_network(self) -> nn.Module:
        return _Net(self.p, self.hidden, self.K)

    def shared_parameters(self) -> list[Tensor]:
        return list(self.model().encoder.parameters())

    def task_parameters(self) -> list[Tensor]:
        return list(self.model().heads.parameters())

    def losses(self, batch: Tensor | None = None, return_representation: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The K mean squared errors (K,) on rows ``batch`` (all rows when None), and optionally Z."""
        X, Y = (self.X, self.Y) if batch is None else (self.X[batch], self.Y[batch])
        pred, Z = self.model()(X)  # (b, K), (b, hidden)
        f = ((pred - Y) ** 2).mean(0)  # f_k = mean (ŷ_k − y_k)², (K,)
        return (f, Z) if return_representation else f

    def set_version(self, num_starts: int = 8) -> Any:
        """P such networks as one point problem (``mtl-regression-set``)."""
        from reference_impls.problems.mtl_set import MTLRegressionSet

        return MTLRegressionSet.from_network(self, num_starts=num_starts)

    def linear(self) -> MTLLinear:
        """The closed-form linear variant on the same data."""
        return MTLLinear(dtype=self.dtype, device=self.device, **self._data_args)

    def __repr__(self) -> str:
        return f"MTLRegression(K={self.K}, N={self.N}, p={self.p}, hidden={self.hidden})"
