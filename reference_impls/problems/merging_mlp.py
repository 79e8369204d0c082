"""``merging-mlp``: a small pretrained MLP, K tasks and their separately fine-tuned models, for model merging.

The stand-in for the deep models that model-merging and model-combination papers (Pareto Merging,
the MoE fusion, PaMaL, PaLoRA, Panacea) start from: a pretrained base θ_0, K task models θ_k
fine-tuned from it, task vectors τ_k = θ_k − θ_0 that interfere nonlinearly (so task arithmetic
θ_0 + λ Σ_k τ_k is not on the front). Everything is built by a seeded script in the constructor
(about a second; cached per knob set): no downloaded weights.

The network: x ∈ R^p → tanh(W1 x + b1) → tanh(W2 h + b2) → W3 h + b3 ∈ R (p = 4, hidden = 16);
``parameter_shapes()`` = [("W1", (h, p)), ("b1", (h,)), ("W2", (h, h)), ("b2", (h,)), ("W3", (1, h)),
("b3", (1,))], x = their row-major concatenation (n = 369).

Data (seeded by ``data_seed``): teachers T_j(x) = v_jᵀ tanh(A_j x + a_j) (j = 0..K, 16 units). Task k:
inputs x ~ N(μ_k, I) with μ_k = ``shift``·e_1·(±1) for K = 2 (μ_k on a circle in the first two
coordinates for K ≥ 3), so the tasks' inputs overlap; targets y = T_0(x) + δ·T_k(x) (δ = ``delta``);
``N`` training and ``N_test`` test points per task. f_k(θ) = the mean squared error of the network on
task k's training set; ``test_losses`` on its test set.

* Pretrained base θ_0: Adam (``pretrain_steps``, lr ``lr``, full batch) from a default-initialised
  network on T_0's targets at 2N inputs x ~ N(0, 1.5² I) (a wider distribution: "pretraining data").
* Task models θ_k: Adam (``finetune_steps``, lr ``finetune_lr``, full batch) from θ_0 on f_k alone.

No closed-form front (the network is nonlinear in θ). :meth:`reference_front` estimates the
linear-scalarisation optimum per preference by full-batch Adam from θ_0 (deterministic; an estimate,
not certified: tests use it as a yardstick, with a tolerance). ``ideal_point`` is each task model's
own loss f_k(θ_k) (an estimate of min f_k); ``hv_reference`` 1.1 × the largest loss of the base and the
task models on each task. Starting points: freshly initialised networks (PyTorch's default Linear
initialisation, U(±1/√fan_in) for weights and biases, drawn from a generator seeded by seed + point).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor

from reference_impls.problems.base import Problem, adam_minimise


def _shapes(p: int, h: int) -> list[tuple[str, tuple[int, ...]]]:
    return [("W1", (h, p)), ("b1", (h,)), ("W2", (h, h)), ("b2", (h,)), ("W3", (1, h)), ("b3", (1,))]


def _split(x: Tensor, p: int, h: int) -> list[Tensor]:
    """(B, n) -> W1 (B, h, p), b1 (B, h), W2 (B, h, h), b2 (B, h), W3 (B, 1, h), b3 (B, 1)."""
    out, i = [], 0
    for _, shape in _shapes(p, h):
        m = math.prod(shape)
        out.append(x[:, i : i + m].reshape(x.shape[0], *shape))
        i += m
    return out


def _predict(x: Tensor, inputs: Tensor, p: int, h: int) -> Tensor:
    """Network outputs for B parameter vectors on task-stacked inputs: x (B, n), inputs (T, M, p) -> (B, T, M)."""
    W1, b1, W2, b2, W3, b3 = _split(x, p, h)
    B, (T, M, _) = x.shape[0], inputs.shape
    flat = inputs.reshape(1, T * M, p).expand(B, T * M, p)  # every network sees every input, (B, T·M, p)
    Z1 = torch.tanh(torch.baddbmm(b1[:, None, :], flat, W1.transpose(1, 2)))  # tanh(W1 x + b1), (B, T·M, h)
    Z2 = torch.tanh(torch.baddbmm(b2[:, None, :], Z1, W2.transpose(1, 2)))  # (B, T·M, h)
    return torch.baddbmm(b3[:, None, :], Z2, W3.transpose(1, 2)).reshape(B, T, M)  # W3 z + b3, (B, T, M)


def _default_init(num: int, p: int, h: int, g: torch.Generator) -> Tensor:
    """PyTorch's default Linear initialisation (weights and biases U(±1/√fan_in)), (num, n) float64."""
    parts = []
    for name, shape in _shapes(p, h):
        fan_in = p if name in ("W1", "b1") else h
        bound = 1.0 / math.sqrt(fan_in)
        parts.append((torch.rand(num, math.prod(shape), generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return torch.cat(parts, dim=1)


@functools.lru_cache(maxsize=8)
def _build(K: int, p: int, h: int, N: int, N_test: int, delta: float, shift: float, pretrain_steps: int, finetune_steps: int, lr: float, finetune_lr: float, data_seed: int) -> dict[str, Tensor]:
    """The data, the pretrained base and the fine-tuned task models (float64, CPU); cached, treat as read-only."""
    dt = torch.float64
    g = torch.Generator().manual_seed(int(data_seed))
    A = torch.randn(K + 1, 16, p, generator=g, dtype=dt) * (1.5 / math.sqrt(p))  # teachers' input weights
    a = 0.5 * torch.randn(K + 1, 16, generator=g, dtype=dt)
    v = torch.randn(K + 1, 16, generator=g, dtype=dt) / math.sqrt(16) * 2.0

    def teacher(j: int, Xin: Tensor) -> Tensor:
        return torch.tanh(Xin @ A[j].T + a[j]) @ v[j]  # T_j(x), (M,)

    if K == 2:
        centres = torch.zeros(K, p, dtype=dt)
        centres[0, 0], centres[1, 0] = shift, -shift
    else:
        ang = 2 * math.pi * torch.arange(K, dtype=dt) / K
        centres = torch.zeros(K, p, dtype=dt)
        centres[:, 0], centres[:, 1] = shift * torch.cos(ang), shift * torch.sin(ang)

    def task_data(M: int) -> tuple[Tensor, Tensor]:
        Xs = centres[:, None, :] + torch.randn(K, M, p, generator=g, dtype=dt)  # (K, M, p)
        Ys = torch.stack([teacher(0, Xs[k]) + delta * teacher(k + 1, Xs[k]) for k in range(K)])  # (K, M)
        return Xs, Ys

    X, Y = task_data(N)
    X_test, Y_test = task_data(N_test)
    X_pre = 1.5 * torch.randn(1, 2 * N, p, generator=g, dtype=dt)  # pretraining inputs, (1, 2N, p)
    Y_pre = teacher(0, X_pre[0])[None]  # (1, 2N)
    theta = _default_init(1, p, h, g)  # (1, n)
    base = adam_minimise(theta, lambda x: ((_predict(x, X_pre, p, h) - Y_pre) ** 2).mean(), steps=pretrain_steps, lr=lr, what="merging-mlp pretraining")  # θ_0, (1, n)

    def task_loss(k: int) -> Any:
        return lambda x: ((_predict(x, X[k : k + 1], p, h) - Y[k : k + 1]) ** 2).mean()

    task_models = torch.cat([adam_minimise(base, task_loss(k), steps=finetune_steps, lr=finetune_lr, what="merging-mlp fine-tuning") for k in range(K)])  # θ_k, (K, n)
    return {"X": X, "Y": Y, "X_test": X_test, "Y_test": Y_test, "centres": centres, "base": base[0], "task_models": task_models}


class MergingMLP(Problem):
    id = "merging-mlp"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-2

    def __init__(
        self,
        K: int = 2,
        p: int = 4,
        hidden: int = 16,
        N: int = 256,
        N_test: int = 256,
        delta: float = 0.5,
        shift: float = 0.5,
        pretrain_steps: int = 300,
        finetune_steps: int = 200,
        lr: float = 2e-2,
        finetune_lr: float = 1e-2,
        data_seed: int = 0,
        num_starts: int = 8,
        **kw: Any,
    ) -> None:
        if K < 1 or p < 2 or hidden < 1 or N < 1 or N_test < 1:
            raise ValueError(f"merging-mlp: need K >= 1, p >= 2, hidden, N, N_test >= 1; got K={K}, p={p}, hidden={hidden}, N={N}, N_test={N_test}")
        h = int(hidden)
        super().__init__(K, h * p + h + h * h + h + h + 1, **kw)
        self.p, self.hidden, self.num_starts = int(p), h, int(num_starts)
        built = _build(int(K), int(p), h, int(N), int(N_test), float(delta), float(shift), int(pretrain_steps), int(finetune_steps), float(lr), float(finetune_lr), int(data_seed))
        to = dict(dtype=self.dtype, device=self.device)
        self.X, self.Y = built["X"].to(**to), built["Y"].to(**to)  # (K, N, p), (K, N)
        self.X_test, self.Y_test = built["X_test"].to(**to), built["Y_test"].to(**to)
        self.base = built["base"].to(**to).clone()  # θ_0, (n,)
        self.task_models = built["task_models"].to(**to).clone()  # θ_k, (K, n)
        self.task_vectors = self.task_models - self.base  # τ_k = θ_k − θ_0, (K, n)
        F_anchor = self.losses(torch.cat([self.base[None], self.task_models]))  # (K + 1, K)
        self.hv_reference = tuple((1.1 * F_anchor.max(0).values).tolist())
        self._ideal = torch.diagonal(F_anchor[1:]).clone()  # f_k(θ_k), (K,)
        self._reference_cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return _shapes(self.p, self.hidden)

    def predict(self, x: Tensor, inputs: Tensor) -> Tensor:
        """Outputs of the B networks on M inputs: x (B, n), inputs (M, p) -> (B, M); x (n,) -> (M,)."""
        xb, single = self._batch(x)
        out = _predict(xb, inputs.to(xb)[None], self.p, self.hidden)[:, 0]  # (B, M)
        return out[0] if single else out

    def _losses(self, x: Tensor) -> Tensor:
        return ((_predict(x, self.X, self.p, self.hidden) - self.Y[None]) ** 2).mean(2)  # f_k = MSE on task k, (B, K)

    def test_losses(self, x: Tensor) -> Tensor:
        """Each task's mean squared error on its test split: (B, n) -> (B, K)."""
        xb, single = self._batch(x)
        F = ((_predict(xb, self.X_test, self.p, self.hidden) - self.Y_test[None]) ** 2).mean(2)
        return F[0] if single else F

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        rows = [_default_init(1, self.p, self.hidden, self._generator(int(seed) + i)) for i in range(self._num_points(num))]
        return torch.cat(rows).to(dtype=self.dtype, device=self.device)  # (num, n)

    def ideal_point(self) -> Tensor:
        return self._ideal.clone()

    def objective_minimisers(self) -> Tensor:
        return self.task_models.clone()

    def reference_front(self, preferences: Tensor, *, steps: int = 1500, lr: float = 5e-3) -> tuple[Tensor, Tensor]:
        """The linear-scalarisation optimum per preference, estimated: (X (B, n), F (B, K)) for r (B, K).

        Full-batch Adam on Σ_b Σ_k μ_bk f_k(x_b) (μ = r/Σr, the B runs independent) from θ_0, deterministic and
        cached. An estimate of argmin_x Σ μ_k f_k, not a certified optimum (the landscape is nonconvex)."""
        from reference_impls.core.sets import check_preferences

        r = check_preferences(torch.as_tensor(preferences, dtype=torch.float64), None, self.K, name="merging-mlp reference_front preferences")
        mu = (r / r.sum(1, keepdim=True)).to(dtype=self.dtype, device=self.device)  # (B, K)
        key = (tuple(mu.reshape(-1).tolist()), int(steps), float(lr))
        if key not in self._reference_cache:
            x0 = self.base[None].expand(mu.shape[0], -1)  # (B, n)
            X = adam_minimise(x0, lambda x: (self._losses(x) * mu).sum(), steps=steps, lr=lr, what="merging-mlp reference_front")  # Σ_b μ_b·f(x_b)
            self._reference_cache[key] = (X, self._losses(X).detach())
        X, F = self._reference_cache[key]
        return X.clone(), F.clone()


__all__ = ["MergingMLP"]
