"""PCGrad — Projecting Conflicting Gradients ("gradient surgery").

Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020, arXiv 2001.06782. Official code: github.com/tianheyu927/PCGrad
(``PCGrad_tf.py``, TensorFlow).

What is implemented (Algorithm 1 of the paper):

    for each task i:  g_i^PC ← g_i
        for each j ≠ i in a random order:
            if ⟨g_i^PC, g_j⟩ < 0:  g_i^PC ← g_i^PC − ⟨g_i^PC, g_j⟩ / ||g_j||² · g_j     (projection on the
                                                                                    ORIGINAL g_j)
    d = Σ_i g_i^PC                                                                 (a sum, not a mean)

Every g_i^PC is a combination Σ_j C_ij g_j of the original gradients, and every inner product the
algorithm needs is ⟨g_i^PC, g_j⟩ = (C M)_ij with M = J Jᵀ. So the whole algorithm runs on K×K
numbers (O(K³), vectorised over i), and d = Jᵀ w with w = Σ_i C_i (one weighted sum of rows at the
end). The result equals the n-dimensional algorithm up to rounding.

Hyperparameters: ``random_order`` = True (the paper's Algorithm 1); ``seed`` = 0 seeds the
``torch.Generator`` that draws the orders (``reset()`` re-seeds it).

Properties: for K = 2 with ⟨g_1, g_2⟩ < 0, ⟨g_1^PC, g_2⟩ = ⟨g_2^PC, g_1⟩ = 0 and ⟨d, g_i⟩ ≥ 0
(the two-task setting of the paper's analysis); without conflict d = Σ g_i; for K = 2 PCGrad
equals UPGrad with preference (1, 1) and no normalisation. For K ≥ 3, d can conflict with a task
even when a common descent direction exists (tested counterexample).

Degenerate inputs: a zero g_j is skipped as a projection target (⟨·, 0⟩ = 0 is never < 0); all-zero
J → d = 0; identical rows → d = K·g; opposite rows g, −g → d = 0; K = 1 → d = g_1.

Deviations:
    D1. Computed through the Gramian (coefficients C, M) instead of on n-dimensional vectors: same
        result up to rounding (tested against a direct implementation), O(K²n + K³) work.
    D2. The official TF code calls ``tf.random.shuffle(loss)`` and discards the result, so it
        projects in the fixed order 1..K; its loop also visits k = i (a projection on g_i itself,
        which acts only if ⟨g_i^PC, g_i⟩ < 0, possible for K ≥ 3). ``random_order=False`` gives
        the fixed order 1..K without j = i; the default (random orders) follows the paper.
    D3. The orders come from a seeded ``torch.Generator`` (reproducible), not from the global RNG.
    D4. LibMTL adds 1e-8 to ||g_j||²; here zero-norm targets are skipped exactly instead.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_manipulation.pcgrad import PCGrad
    >>> d = PCGrad()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.5848, 3.8012, 3.8012]
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting


@functools.lru_cache(maxsize=64)
def _other_tasks(K: int) -> Tensor:
    """(K, K−1) int64: row i lists the tasks j ≠ i in increasing order (cached per K)."""
    return torch.arange(K - 1).expand(K, K - 1) + (torch.arange(K - 1)[None, :] >= torch.arange(K)[:, None])


def draw_orders(K: int, generator: torch.Generator | None, random_order: bool = True) -> Tensor:
    """(K, K−1) int64: row i lists the tasks j ≠ i in the order task i is projected on them."""
    others = _other_tasks(K)
    if not random_order or K <= 2:
        return others
    perms = torch.rand(K, K - 1, generator=generator).argsort(dim=1)  # an independent random order per task
    return torch.gather(others, 1, perms)


def pcgrad_coefficients(M: Tensor, orders: Tensor) -> Tensor:
    """C (K, K) with g_i^PC = Σ_j C_ij g_j, from the Gramian M (K, K) and the orders (K, K−1).

    Runs in NumPy float64 (K×K numbers: per-call overhead, not arithmetic, is the cost here).
    """
    Mn = M.detach().to("cpu", torch.float64).numpy()  # (K, K)
    order = orders.numpy()
    K = Mn.shape[0]
    C = np.eye(K)  # (K, K): g_i^PC = g_i
    rows = np.arange(K)
    diag = np.diag(Mn)  # (K,): ||g_j||²
    for t in range(K - 1):
        j = order[:, t]  # (K,): the target of each i at step t
        inner = np.einsum("ik,ik->i", C, Mn[j])  # (K,): ⟨g_i^PC, g_j⟩ = Σ_k C_ik M_kj
        norm2 = diag[j]  # (K,): ||g_j||²
        conflict = (inner < 0) & (norm2 > 0)
        C[rows, j] -= np.where(conflict, inner / np.where(norm2 > 0, norm2, 1.0), 0.0)  # g_i^PC ← g_i^PC − ⟨g_i^PC, g_j⟩/||g_j||² g_j
    return torch.from_numpy(C).to(dtype=M.dtype, device=M.device)


class PCGrad(GramianWeighting):
    """d = Σ_i g_i^PC, each g_i projected on the normal plane of every g_j it conflicts with."""

    name = "pcgrad"

    def __init__(self, random_order: bool = True, seed: int = 0) -> None:
        self.random_order = bool(random_order)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        self._generator.manual_seed(self.seed)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        orders = draw_orders(K, self._generator, self.random_order)  # (K, K−1)
        C = pcgrad_coefficients(M, orders)  # (K, K), computed in float64
        return C.sum(dim=0)  # d = Σ_i g_i^PC = Σ_j (Σ_i C_ij) g_j
