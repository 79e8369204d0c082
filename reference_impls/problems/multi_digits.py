"""``multi-digits``: two handwritten digits overlapped in one small image; the left and the right digit are two tasks.

The real-data benchmark of the suite, in the spirit of MultiMNIST (Sabour et al., 2017), which the
Pareto MTL, EPO, PHN and COSMOS papers use: one digit in the top-left corner, another in the
bottom-right, overlapping, and a network that must classify both. Built by a seeded script from the
1797 8×8 digits (16 grey levels) that scikit-learn ships inside its package (``load_digits``; the
UCI optical-recognition test set), so nothing is downloaded.

Construction (seeded by ``data_seed``):

1. The source images are split 80/20 into train and test sources (a seeded permutation), so no
   handwritten digit of the test set is seen in training.
2. Each example draws two source images (independently, uniformly) from its split and places the
   first at rows 0..7, columns 0..7 and the second at rows s..s+7, columns s..s+7 of a
   (8 + s) × (8 + s) canvas (s = ``shift`` = 4: the digits overlap on a 4 × 4 block), combined by the
   pixel-wise maximum and scaled to [0, 1] (MultiMNIST's construction, at 8 × 8).
3. ``N`` training and ``N_test`` test examples; the targets are (left label, right label).

Model: a shared trunk (flatten → Linear(144, hidden) → ReLU → Linear(hidden, hidden) → ReLU) and one
linear head per task (hidden → 10); f_k = the mean cross-entropy of head k. Methods train it through
``aggregator.backward`` like ``mtl-regression`` (:class:`~reference_impls.problems.network.NetworkProblem`);
minibatches of ``batch_size`` rows. :meth:`evaluation` gives the test losses and test accuracies.

``multi-digits-set`` (:class:`MultiDigitsSet`) is the same data and network as a point problem (P
networks at once, x = the flattened parameters, full batch) for set methods and Pareto-set models; the
runners convert ``multi-digits`` to it, and its ``extra_metrics`` add each solution's test accuracy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reference_impls.problems.base import Problem
from reference_impls.problems.network import NetworkProblem


@functools.lru_cache(maxsize=4)
def make_multi_digits(N: int = 3000, N_test: int = 1000, shift: int = 4, data_seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, S, S) float64 in [0, 1], labels (N, 2) int64, test images, test labels); S = 8 + shift. Cached."""
    from sklearn.datasets import load_digits

    if not 1 <= int(shift) <= 8:
        raise ValueError(f"multi-digits: shift must be in 1..8 (the digits overlap on (8 − shift)² pixels), got {shift}")
    if N < 1 or N_test < 1:
        raise ValueError(f"multi-digits: need N >= 1 and N_test >= 1, got {N}, {N_test}")
    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target.astype(np.int64)  # (1797, 8, 8) in [0, 1], (1797,)
    rng = np.random.default_rng(int(data_seed))
    order = rng.permutation(len(images))
    cut = int(round(0.8 * len(images)))
    S = 8 + int(shift)

    def compose(sources: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = rng.choice(sources, size=(num, 2), replace=True)  # (num, 2) source indices
        canvas = np.zeros((num, S, S))
        canvas[:, :8, :8] = images[pairs[:, 0]]  # left digit, top-left
        canvas[:, shift:, shift:] = np.maximum(canvas[:, shift:, shift:], images[pairs[:, 1]])  # right digit, bottom-right
        return canvas, labels[pairs]  # (num, S, S), (num, 2)

    X, Y = compose(order[:cut], int(N))
    X_test, Y_test = compose(order[cut:], int(N_test))
    return X, Y, X_test, Y_test


class _Net(nn.Module):
    def __init__(self, pixels: int, hidden: int, K: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(hidden, 10) for _ in range(K)])

    def forward(self, X: Tensor) -> tuple[Tensor, Tensor]:
        Z = self.trunk(X)  # shared representation, (b, hidden)
        return torch.stack([head(Z) for head in self.heads], dim=1), Z  # logits (b, K, 10), Z (b, hidden)


class MultiDigits(NetworkProblem):
    id = "multi-digits"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-3

    def __init__(
        self,
        N: int = 3000,
        N_test: int = 1000,
        shift: int = 4,
        hidden: int = 64,
        batch_size: int | None = 256,
        data_seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> None:
        if batch_size is not None and not 1 <= int(batch_size) <= N:
            raise ValueError(f"multi-digits: batch_size must be in 1..N = {N} (or None: full batch), got {batch_size}")
        self.K, self.N, self.N_test, self.hidden, self.shift = 2, int(N), int(N_test), int(hidden), int(shift)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        X, Y, X_test, Y_test = make_multi_digits(self.N, self.N_test, self.shift, int(data_seed))
        to = dict(dtype=dtype, device=self.device)
        self.X, self.X_test = torch.as_tensor(X, **to), torch.as_tensor(X_test, **to)  # (N, S, S), (N_test, S, S)
        self.Y = torch.as_tensor(Y, device=self.device)  # (N, 2) int64: (left, right)
        self.Y_test = torch.as_tensor(Y_test, device=self.device)
        self._model: _Net | None = None

    def _new_network(self) -> nn.Module:
        return _Net(self.X.shape[1] * self.X.shape[2], self.hidden, self.K)

    def shared_parameters(self) -> list[Tensor]:
        return list(self.model().trunk.parameters())

    def task_parameters(self) -> list[Tensor]:
        return list(self.model().heads.parameters())

    def _losses_on(self, X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, Z = self.model()(X)  # (b, K, 10), (b, hidden)
        f = torch.stack([nn.functional.cross_entropy(logits[:, k], Y[:, k]) for k in range(self.K)])  # f_k = mean CE, (K,)
        return f, Z, logits

    def losses(self, batch: Tensor | None = None, return_representation: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The K mean cross-entropies (K,) on rows ``batch`` (all training rows when None), and optionally Z."""
        X, Y = (self.X, self.Y) if batch is None else (self.X[batch], self.Y[batch])
        f, Z, _ = self._losses_on(X, Y)
        return (f, Z) if return_representation else f

    def test_accuracy(self) -> Tensor:
        """The fraction of test images whose left / right digit the current model classifies correctly, (K,)."""
        with torch.no_grad():
            _, _, logits = self._losses_on(self.X_test, self.Y_test)
        return (logits.argmax(2) == self.Y_test).to(torch.float64).mean(0)  # (K,)

    def evaluation(self) -> dict[str, Any]:
        with torch.no_grad():
            f_test, _, logits = self._losses_on(self.X_test, self.Y_test)
        accuracy = (logits.argmax(2) == self.Y_test).to(torch.float64).mean(0)
        return {"test_losses": f_test.detach().to(torch.float64), "test_accuracy": accuracy}

    def set_version(self, num_starts: int = 4) -> MultiDigitsSet:
        """The same data and network as a point problem (``multi-digits-set``): set methods and Pareto-set models."""
        return MultiDigitsSet.from_network(self, num_starts=num_starts)

    def __repr__(self) -> str:
        return f"MultiDigits(N={self.N}, N_test={self.N_test}, shift={self.shift}, hidden={self.hidden})"




class MultiDigitsSet(Problem):
    """``multi-digits-set``: P Multi-Digits networks as one point problem (set methods and Pareto-set models).

    A solution x ∈ R^n is one network's flattened parameters, in the order of :meth:`parameter_shapes`
    (trunk W1 (hidden, S²), b1, W2 (hidden, hidden), b2, then the heads' W (K, 10, hidden) and b (K, 10));
    f_k(x) = the network's mean cross-entropy of head k on all N training images (full batch). Starting
    point p is the network ``MultiDigits.reset(seed + p)``. ``extra_metrics`` adds the test accuracies.
    No analytic front.
    """

    id = "multi-digits-set"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-3

    def __init__(self, num_starts: int = 4, **network_knobs: Any) -> None:
        network_knobs.setdefault("dtype", torch.float32)
        net = MultiDigits(**network_knobs)
        self.network = net
        self.pixels, self.hidden = net.X.shape[1] * net.X.shape[2], net.hidden
        h, q = self.hidden, self.pixels
        super().__init__(net.K, h * q + h + h * h + h + net.K * (10 * h + 10), dtype=net.dtype, device=net.device)
        self.num_starts = int(num_starts)

    @classmethod
    def from_network(cls, network: MultiDigits, num_starts: int = 4) -> MultiDigitsSet:
        out = cls.__new__(cls)
        out.network = network
        out.pixels, out.hidden = network.X.shape[1] * network.X.shape[2], network.hidden
        h, q = out.hidden, out.pixels
        Problem.__init__(out, network.K, h * q + h + h * h + h + network.K * (10 * h + 10), dtype=network.dtype, device=network.device)
        out.num_starts = int(num_starts)
        return out

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        h, q, K = self.hidden, self.pixels, self.K
        return [("W1", (h, q)), ("b1", (h,)), ("W2", (h, h)), ("b2", (h,)), ("W_heads", (K * 10, h)), ("b_heads", (K * 10,))]

    def flatten(self, model: nn.Module) -> Tensor:
        """A network of ``MultiDigits`` (n,) in the order of :meth:`parameter_shapes`."""
        lin1, lin2 = model.trunk[1], model.trunk[3]
        W_heads = torch.cat([hd.weight for hd in model.heads])  # (K·10, h)
        b_heads = torch.cat([hd.bias for hd in model.heads])  # (K·10,)
        parts = [lin1.weight, lin1.bias, lin2.weight, lin2.bias, W_heads, b_heads]
        return torch.cat([t.detach().reshape(-1) for t in parts]).to(self.dtype)

    def _logits(self, x: Tensor, images: Tensor) -> Tensor:
        B, h, q, K = x.shape[0], self.hidden, self.pixels, self.K
        W1, b1, W2, b2, Wh, bh = torch.split(x, [h * q, h, h * h, h, K * 10 * h, K * 10], dim=1)
        inputs = images.reshape(1, -1, q).expand(B, -1, q)  # (B, M, S²)
        Z = torch.relu(torch.baddbmm(b1[:, None, :], inputs, W1.reshape(B, h, q).transpose(1, 2)))  # (B, M, h)
        Z = torch.relu(torch.baddbmm(b2[:, None, :], Z, W2.reshape(B, h, h).transpose(1, 2)))  # (B, M, h)
        logits = torch.baddbmm(bh[:, None, :], Z, Wh.reshape(B, K * 10, h).transpose(1, 2))  # (B, M, K·10)
        return logits.reshape(B, -1, K, 10)  # (B, M, K, 10)

    def _cross_entropy(self, x: Tensor, images: Tensor, labels: Tensor) -> Tensor:
        logp = torch.log_softmax(self._logits(x, images), dim=3)  # (B, M, K, 10)
        picked = logp.gather(3, labels[None, :, :, None].expand(x.shape[0], -1, -1, 1))[..., 0]  # (B, M, K)
        return -picked.mean(1)  # f_k = mean cross-entropy, (B, K)

    def _losses(self, x: Tensor) -> Tensor:
        return self._cross_entropy(x, self.network.X, self.network.Y)

    def test_losses(self, x: Tensor) -> Tensor:
        xb, single = self._batch(x)
        F = self._cross_entropy(xb, self.network.X_test, self.network.Y_test)
        return F[0] if single else F

    def test_accuracy(self, x: Tensor) -> Tensor:
        """Each network's test accuracy per task: (B, n) -> (B, K)."""
        xb, single = self._batch(x)
        with torch.no_grad():
            pred = self._logits(xb, self.network.X_test).argmax(3)  # (B, M, K)
        acc = (pred == self.network.Y_test[None]).to(torch.float64).mean(1)  # (B, K)
        return acc[0] if single else acc

    def extra_metrics(self, X: Tensor, F: Tensor) -> dict[str, Any]:
        """``test_accuracy`` (P, K) of every solution and ``test_accuracy_mean`` over solutions and tasks."""
        acc = self.test_accuracy(torch.as_tensor(X, dtype=self.dtype))
        return {"test_accuracy": acc, "test_accuracy_mean": float(acc.mean())}

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        nets = [self.flatten(self.network.reset(int(seed) + p)) for p in range(self._num_points(num))]
        return torch.stack(nets)  # (P, n)


__all__ = ["MultiDigits", "MultiDigitsSet", "make_multi_digits"]
