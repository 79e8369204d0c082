"""``mo-regression``: the per-sample trigonometric regression of HV front prediction, P networks as a point problem.

Deist, Grewal, Dankers, Alderliesten & Bosman, "Multi-objective learning using HV maximization",
EMO 2023 (arXiv 2102.04523, "... to predict Pareto fronts using hypervolume maximization": the MO
regression experiment; the setup below is the official code's, the paper text was not read here)
timodeist/multi_objective_learning ``problems/mo_regression.py`` and ``mo_regression_2obj.py``:

* data: x ~ U(0, 2π), y_1 = cos x, y_2 = sin x (K = 3 adds y_3 = sin(x + π)); 400 samples, a random
  half for training (``train_ratio`` 0.5), the other half for validation;
* each of the P solutions is one scalar regression network ŷ = net(x) (two hidden layers of 100 ReLU
  units, one output; PyTorch's default initialisation); every sample s has its own loss vector

      L_psk = (ŷ_p(x_s) − y_sk)²        (P, N, K), the per-sample MSE (``MSELoss(reduction='none')``)

  and the networks' mean losses are F_pk = mean_s L_psk (P, K).

Each solution x ∈ R^n is one network's flattened parameter vector, layer by layer
(W_1 (h, 1), b_1 (h), W_2 (h, h), b_2 (h), ..., W_out (1, h), b_out (1), row-major); the P networks are
evaluated in one batched pass (einsum over the batch), as ``mtl-regression-set`` does, and
:meth:`per_sample_losses` is differentiable in X (the per-sample protocol of the set runner:
``SetMethod.per_sample``).

Per sample the Pareto set of (ŷ − y_1)², (ŷ − y_2)² is ŷ ∈ [min(y_1, y_2), max(y_1, y_2)], a
different front for every x: what the P networks learn to cover (the paper's MO regression figure).

Mean-loss front (``pareto_front``, exact over all predictors on the training inputs, which the
networks approach as universal approximators; a network's F lies on or above it): with t_k (N,) the
targets, f_k(ŷ) = ‖ŷ − t_k‖²/N are quadratics with the same Hessian, so the Pareto set is
conv{t_k} and, for K = 2, ŷ = (1 − λ) t_1 + λ t_2 gives F = ((λ)²·D, (1 − λ)²·D) with
D = mean_s (cos x_s − sin x_s)², i.e. √F_1 + √F_2 = √D. For K = 3 the front is the image of the
simplex, F_k(w) = mean_s (Σ_j w_j t_js − t_ks)². No Pareto set in parameter space is known.

Metrics (:meth:`extra_metrics`, merged into the set runner's metrics): ``sample_hypervolume``, the
mean over training samples of the hypervolume of the P per-sample loss vectors at ``hv_reference``
(the official code's ``training_hv``); ``predictions_in_range``, the fraction of training samples whose
P predictions all lie in [min_k y_k − 0.05, max_k y_k + 0.05].

Defaults: P = 5 (``num_starts``), 2 × 100 ReLU, Adam lr 1e-3 (mo_regression_2obj.py; β = (0.5, 0.999) is the
method's, see ``finite_set/hv_maximization.py``), reference point (20, 20) (``mo_regression_2obj.py``).
The paper trains 20000 iterations; ``default_steps`` = 2000 for CI (stated).

Deviations:
  D1. float64 (the official code trains in float32).
  D2. The data are drawn from a torch generator seeded by ``data_seed`` (the official code uses
      numpy's global state, unseeded): a reproducible draw of the same distribution.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem, arc_length_parameters


class MORegression(Problem):
    id = "mo-regression"
    default_optimizer = "adam"
    default_steps = 2000  # the paper: 20000 iterations (scaled for CI)
    default_lr = 1e-3  # the paper (mo_regression_2obj.py)

    def __init__(
        self,
        K: int = 2,
        *,
        n_samples: int = 400,
        train_ratio: float = 0.5,
        hidden: int = 100,
        layers: int = 2,
        data_seed: int = 0,
        num_starts: int = 5,
        dtype: torch.dtype = torch.float64,
        device: Any = None,
    ) -> None:
        if K not in (2, 3):
            raise ValueError(f"mo-regression: K must be 2 (cos, sin) or 3 (cos, sin, sin(x + π)), got K={K}")
        if int(hidden) < 1 or int(layers) < 1:
            raise ValueError(f"mo-regression: need hidden >= 1 and layers >= 1, got hidden={hidden}, layers={layers}")
        n_train = int(round(int(n_samples) * float(train_ratio)))
        if not 1 <= n_train < int(n_samples):
            raise ValueError(f"mo-regression: need at least one training and one validation sample, got n_samples={n_samples}, train_ratio={train_ratio}")
        h, depth = int(hidden), int(layers)
        self.shapes = [(h, 1)] + [(h, h)] * (depth - 1) + [(1, h)]  # (out, in) per layer
        super().__init__(K, sum(o * i + o for o, i in self.shapes), dtype=dtype, device=device)
        self.hidden, self.layers, self.num_starts = h, depth, int(num_starts)
        g = self._generator(data_seed)
        x = torch.rand(int(n_samples), generator=g, dtype=torch.float64) * (2 * math.pi)  # x ~ U(0, 2π)
        order = torch.randperm(int(n_samples), generator=g)
        targets = [torch.cos(x), torch.sin(x), torch.sin(x + math.pi)][:K]
        Y = torch.stack(targets, dim=1)  # (n_samples, K)
        train, val = order[:n_train], order[n_train:]
        self.X_train, self.Y_train = self._tensor(x[train]), self._tensor(Y[train])  # (N,), (N, K)
        self.X_val, self.Y_val = self._tensor(x[val]), self._tensor(Y[val])
        self.N = n_train
        self.hv_reference = (20.0,) * K  # mo_regression_2obj.py / _3obj.py

    # ------------------------------------------------------------------------------------------
    # The P networks
    # ------------------------------------------------------------------------------------------

    def unflatten(self, X: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(P, n) -> [(W (P, out, in), b (P, out)) per layer]."""
        P, out, start = X.shape[0], [], 0
        for o, i in self.shapes:
            W = X[:, start : start + o * i].reshape(P, o, i)
            b = X[:, start + o * i : start + o * i + o]
            out.append((W, b))
            start += o * i + o
        return out

    def predict(self, X: Tensor, inputs: Tensor | None = None) -> Tensor:
        """Predictions ŷ (P, M) of the P networks X (P, n) at ``inputs`` (M,) (default: the training x)."""
        inputs = self.X_train if inputs is None else torch.as_tensor(inputs, dtype=self.dtype, device=self.device)
        X = torch.as_tensor(X, dtype=self.dtype, device=self.device)
        params = self.unflatten(X)
        Z = inputs[None, :, None].expand(X.shape[0], -1, 1)  # (P, M, 1)
        for W, b in params[:-1]:
            Z = torch.relu(torch.einsum("pmi,poi->pmo", Z, W) + b[:, None, :])  # hidden layer, (P, M, h)
        W, b = params[-1]
        return (torch.einsum("pmi,poi->pmo", Z, W) + b[:, None, :])[:, :, 0]  # ŷ, (P, M)

    def per_sample_losses(self, X: Tensor, *, validation: bool = False) -> Tensor:
        """L_psk = (ŷ_p(x_s) − y_sk)² (P, N, K) on the training samples (or the validation ones); differentiable in X."""
        inputs, Y = (self.X_val, self.Y_val) if validation else (self.X_train, self.Y_train)
        pred = self.predict(X, inputs)  # (P, N)
        return (pred[:, :, None] - Y[None]) ** 2  # (P, N, K)

    def _losses(self, x: Tensor) -> Tensor:
        return self.per_sample_losses(x).mean(1)  # F_pk = mean_s L_psk, (B, K)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F (B, K) and J (B, K, n) in closed form: the forward pass, then back-propagation of
        ∂F_k/∂ŷ_s = 2(ŷ_s − y_sk)/N for the K objectives at once (batch dimensions (B, K))."""
        B, K, N = x.shape[0], self.K, self.N
        u = self.X_train.numpy()  # (N,)
        Y = self.Y_train.numpy()  # (N, K)
        params, start = [], 0
        for o, i in self.shapes:
            params.append((x[:, start : start + o * i].reshape(B, o, i), x[:, start + o * i : start + o * i + o]))
            start += o * i + o
        acts, pre = [np.broadcast_to(u[None, :, None], (B, N, 1))], []  # layer inputs (B, N, in), pre-activations
        for W, b in params[:-1]:
            z = np.matmul(acts[-1], W.transpose(0, 2, 1)) + b[:, None, :]  # (B, N, h)
            pre.append(z)
            acts.append(np.maximum(z, 0.0))  # ReLU
        W, b = params[-1]
        pred = (np.matmul(acts[-1], W.transpose(0, 2, 1)) + b[:, None, :])[:, :, 0]  # ŷ, (B, N)
        resid = pred[:, None, :] - Y.T[None]  # ŷ_s − y_sk, (B, K, N)
        F = (resid**2).mean(2)  # (B, K)
        delta = (2.0 / N) * resid[..., None]  # ∂F_k/∂(output pre-activation), (B, K, N, 1)
        grads = []
        for layer in range(len(params) - 1, -1, -1):
            W, _ = params[layer]
            a = acts[layer]  # (B, N, in)
            gW = np.matmul(delta.transpose(0, 1, 3, 2), a[:, None])  # Σ_s δ_s a_sᵀ, (B, K, out, in)
            gb = delta.sum(2)  # (B, K, out)
            grads.append(np.concatenate([gW.reshape(B, K, -1), gb], axis=2))
            if layer > 0:
                delta = np.matmul(delta, W[:, None]) * (pre[layer - 1][:, None] > 0)  # back through W and ReLU, (B, K, N, in)
        J = np.concatenate(grads[::-1], axis=2)  # (B, K, n)
        return F, J

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        """Network p is PyTorch's default initialisation of ``nn.Linear`` (W, b ~ U(±1/√fan_in)) drawn from seed + p."""
        nets = []
        for p in range(self._num_points(num)):
            g = self._generator(int(seed) + p)
            parts = []
            for o, i in self.shapes:
                bound = 1.0 / math.sqrt(i)  # kaiming_uniform(a=√5) and the bias rule of nn.Linear: U(−1/√in, 1/√in)
                parts.append((torch.rand(o * i + o, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            nets.append(torch.cat(parts))
        return self._tensor(torch.stack(nets))  # (P, n)

    # ------------------------------------------------------------------------------------------
    # Fronts and metrics
    # ------------------------------------------------------------------------------------------

    def sample_range(self) -> tuple[Tensor, Tensor]:
        """Per training sample, the per-sample Pareto set [min_k y_sk, max_k y_sk]: (N,), (N,)."""
        return self.Y_train.min(1).values, self.Y_train.max(1).values

    def _front_of_weights(self, w: Tensor) -> Tensor:
        """F (M, K) of the predictors ŷ = Σ_j w_j t_j for weights w (M, K) on the simplex."""
        pred = w @ self.Y_train.T  # (M, N)
        return ((pred[:, :, None] - self.Y_train[None]) ** 2).mean(1)  # (M, K)

    def pareto_front(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            D = ((self.Y_train[:, 0] - self.Y_train[:, 1]) ** 2).mean()  # D = mean_s (y_s1 − y_s2)²
            curve = lambda lam: torch.stack([lam**2 * D, (1 - lam) ** 2 * D], 1)  # noqa: E731  ŷ = (1 − λ)t_1 + λt_2: (λ²D, (1 − λ)²D)
            lam = torch.linspace(0, 1, max(20 * num, 2001), dtype=self.dtype, device=self.device)  # (M,)
            return curve(arc_length_parameters(lam, curve(lam), num))  # (num, 2), uniform in arc length
        m = max(2, int(math.ceil((math.sqrt(8 * num + 1) - 1) / 2)))  # m(m+1)/2 ≥ num grid points
        idx = torch.tensor([(i, j) for i in range(m) for j in range(m - i)], dtype=self.dtype, device=self.device)
        w = torch.stack([idx[:, 0], idx[:, 1], (m - 1) - idx[:, 0] - idx[:, 1]], 1) / (m - 1)  # (M, 3), simplex grid
        return self._front_of_weights(w)

    def sample_hypervolumes(self, X: Tensor, *, validation: bool = False) -> Tensor:
        """Per sample, the hypervolume of the P loss vectors L_ps· at ``hv_reference``: (N,)."""
        from reference_impls.core.hypervolume import hypervolume

        with torch.no_grad():
            L = self.per_sample_losses(torch.as_tensor(X, dtype=self.dtype, device=self.device), validation=validation)  # (P, N, K)
        return torch.tensor([hypervolume(L[:, s], self.hv_reference) for s in range(L.shape[1])], dtype=torch.float64)

    def predictions_in_range(self, X: Tensor, tol: float = 0.05) -> float:
        """The fraction of training samples whose P predictions all lie in [min_k y_k − tol, max_k y_k + tol]."""
        with torch.no_grad():
            pred = self.predict(torch.as_tensor(X, dtype=self.dtype, device=self.device))  # (P, N)
        lo, hi = self.sample_range()
        inside = ((pred >= lo - tol) & (pred <= hi + tol)).all(0)  # (N,)
        return float(inside.double().mean())

    def extra_metrics(self, X: Tensor, F: Tensor) -> dict[str, float]:
        """``sample_hypervolume`` (mean per-sample HV, the official ``training_hv``) and ``predictions_in_range``."""
        return {"sample_hypervolume": float(self.sample_hypervolumes(X).mean()), "predictions_in_range": self.predictions_in_range(X)}


__all__ = ["MORegression"]
