r"""GradVac — Gradient Vaccine.

Paper: Z. Wang, Y. Tsvetkov, O. Firat, Y. Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021, arXiv 2010.05874. No official
code was released; the reference re-implementation is LibMTL ``LibMTL/weighting/GradVac.py``.

Update rule:
    Algorithm 1 ("GradVac Update Rule") of the paper, at whole-model granularity (D1). Each task
    gradient :math:`g_i` (row :math:`i` of the Jacobian :math:`J`, :math:`K` tasks) starts as
    :math:`g_i' = g_i` and is visited against every other task gradient :math:`g_j`, in a random order
    per task (``random_order=True``; the fixed order 1..K otherwise). With the current cosine
    :math:`\varphi_{ij}` and the similarity goal :math:`\hat\varphi_{ij}` (an EMA of past cosines,
    0 at the first step, rate :math:`\beta` = ``beta``), :math:`g_i'` is moved along :math:`g_j` when
    the goal is not met, and the goal is updated with the cosine measured before the move:

    .. math::

        \varphi_{ij} = \frac{\langle g_i', g_j \rangle}{\lVert g_i' \rVert\, \lVert g_j \rVert}, \qquad
        g_i' \leftarrow g_i' + \frac{\lVert g_i' \rVert \left( \hat\varphi_{ij} \sqrt{1 - \varphi_{ij}^2} - \varphi_{ij} \sqrt{1 - \hat\varphi_{ij}^2} \right)}{\lVert g_j \rVert \sqrt{1 - \hat\varphi_{ij}^2}}\, g_j
        \quad \text{if } \varphi_{ij} < \hat\varphi_{ij}

    .. math::

        \hat\varphi_{ij} \leftarrow (1 - \beta)\, \hat\varphi_{ij} + \beta\, \varphi_{ij}, \qquad
        d = \sum_{i=1}^{K} g_i'

    After a move, :math:`\cos(g_i', g_j) = \hat\varphi_{ij}` exactly (the coefficient solves that
    equation); with :math:`\hat\varphi = 0` the move is PCGrad's projection, so the first step equals
    PCGrad with the same orders. A pair with :math:`g_i' = 0` or :math:`g_j = 0` (no cosine) is neither
    moved nor averaged, and a goal :math:`\lvert \hat\varphi_{ij} \rvert = 1` is never pursued (D3).

    As in PCGrad, :math:`g_i' = \sum_j C_{ij}\, g_j`, and every quantity needed
    (:math:`\langle g_i', g_j \rangle = (C M)_{ij}`, :math:`\lVert g_i' \rVert^2 = (C M C^\top)_{ii}`,
    :math:`\lVert g_j \rVert^2 = M_{jj}`) is read from the Gramian :math:`M = J J^\top`: the algorithm
    runs on K×K numbers, vectorised over :math:`i`, and :math:`d = J^\top w` with
    :math:`w_j = \sum_i C_{ij}` (D2).

Hyperparameters: ``beta`` = 0.01 (β = 1e-2, the EMA rate reported for the paper's experiments —
taken from the third-party reproduction chenllliang/Gradient-Vaccine, which labels "ema=0.01" as
the paper's setting; not re-read in the PDF here; LibMTL's default is 0.5),
``random_order`` = True, ``seed`` = 0 (the ``torch.Generator`` of the orders). State: the K×K
matrix φ̂ (``phi_hat``), created at the first call; :meth:`reset` forgets it and re-seeds.

Degenerate inputs: a pair involving a zero vector (:math:`g_i' = 0` or :math:`g_j = 0`) has no cosine: no
modification and no EMA update for that pair; all-zero J → d = 0; K = 1 → :math:`d = g_1`. A goal
:math:`\lvert \hat\varphi_{ij} \rvert = 1` would need an infinite coefficient: the pair is then left
unmodified. Any scale of
J that its dtype can hold gives the same direction (D5); NaN/inf in J or an overflowing d: NonFiniteError.

Deviations:
    D1. Whole-model granularity only: the paper's per-layer / per-matrix groups (LibMTL
        ``GradVac_group_type`` 1 and 2) are not implemented.
    D2. Computed through the Gramian instead of on n-dimensional vectors (same result up to
        rounding; tested against a direct implementation of the pseudo-code).
    D3. LibMTL adds 1e-8 to the denominators and so updates :math:`\hat\varphi` with a cosine of 0 for
        zero gradients; here such pairs are skipped exactly. The cosine is clamped to [−1, 1] against
        rounding.
    D4. Orders come from a seeded ``torch.Generator`` (the same draws as PCGrad's for equal seeds).
    D5. From a Jacobian, M = J Jᵀ is one product in J's dtype when certified, else formed from rows
        scaled by powers of two and restored in float64 up to a common factor
        (``pcgrad.gramian_up_to_scale``; cosines and C do not change under M → c²M), so float32
        gradients at scales 1e-23 or 1e+30 give the float64 direction to float32 precision; the
        plain J Jᵀ underflows there (every pair then looked degenerate and the plain sum came back)
        or overflows. A d that overflows the dtype raises NonFiniteError. J is read twice, J Jᵀ and wᵀJ.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_manipulation.gradvac import GradVac
    >>> method = GradVac(beta=0.01)
    >>> d = method(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # first step = PCGrad
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.solvers import gramian2_entries, small_tensor
from reference_impls.gradient_manipulation.pcgrad import ScaleFreeGramianWeighting, draw_orders


def gradvac_coefficients(M: Tensor, orders: Tensor, phi_hat: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """One GradVac step on the Gramian: (C, new φ̂) with g_i' = Σ_j C_ij g_j.

    M (K, K) Gramian, orders (K, K−1) targets per task, φ̂ (K, K) similarity goals (not modified).
    Runs in NumPy float64 (K×K numbers: per-call overhead, not arithmetic, is the cost here).
    """
    Mn = M.detach().to("cpu", torch.float64).numpy()  # (K, K)
    order = orders.numpy()
    K = Mn.shape[0]
    C = np.eye(K)  # (K, K): g_i' = g_i
    goals = phi_hat.detach().to("cpu", torch.float64).numpy().copy()  # (K, K)
    rows = np.arange(K)
    norm_j_all = np.sqrt(np.maximum(np.diag(Mn), 0.0))  # (K,): ||g_j||
    for t in range(K - 1):
        j = order[:, t]  # (K,)
        inner = np.einsum("ik,ik->i", C, Mn[j])  # (K,): ⟨g_i', g_j⟩
        norm_i = np.sqrt(np.maximum(np.einsum("ik,ik->i", C @ Mn, C), 0.0))  # (K,): ||g_i'|| = √(C_i M C_iᵀ)
        norm_j = norm_j_all[j]  # (K,)
        valid = (norm_i > 0) & (norm_j > 0)
        phi = np.clip(np.where(valid, inner / np.where(valid, norm_i * norm_j, 1.0), 0.0), -1.0, 1.0)  # φ_ij = cos(g_i', g_j)
        goal = goals[rows, j]  # (K,): φ̂_ij
        root_goal = np.sqrt(np.maximum(1.0 - goal * goal, 0.0))  # √(1 − φ̂²)
        modify = valid & (phi < goal) & (root_goal > 0)
        root_phi = np.sqrt(np.maximum(1.0 - phi * phi, 0.0))  # √(1 − φ²)
        denom = np.where(modify, norm_j * root_goal, 1.0)
        a = norm_i * (goal * root_phi - phi * root_goal) / denom  # coefficient of g_j (the paper's update rule)
        C[rows, j] += np.where(modify, a, 0.0)  # g_i' ← g_i' + a g_j
        goals[rows, j] = np.where(valid, (1.0 - beta) * goal + beta * phi, goal)  # EMA of φ_ij
    return torch.from_numpy(C).to(dtype=M.dtype, device=M.device), torch.from_numpy(goals)


class GradVac(ScaleFreeGramianWeighting):
    """d = Σ_i g_i', each g_i' pulled towards every g_j until cos(g_i', g_j) reaches the EMA goal φ̂_ij."""

    name = "gradvac"
    update_label = "the update d = Σ_i g_i'"  # cosines and C are invariant under M → c²M
    stateful = True

    def __init__(self, beta: float = 0.01, random_order: bool = True, seed: int = 0) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.beta = float(beta)
        self.random_order = bool(random_order)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        self.phi_hat: Tensor | None = None  # (K, K) similarity goals φ̂, float64 on the CPU

    def reset(self) -> None:
        self._generator.manual_seed(self.seed)
        self.phi_hat = None

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        if self.phi_hat is None:
            self.phi_hat = torch.zeros(K, K, dtype=torch.float64)  # φ̂ = 0 at start
        elif self.phi_hat.shape != (K, K):
            raise ValueError(f"GradVac was used with {self.phi_hat.shape[0]} tasks and now gets {K}: call reset()")
        if K == 2 and M.dtype == torch.float64:
            entries = gramian2_entries(M)
            if entries is not None:
                return small_tensor(self._weights2(*entries), torch.float64)
        orders = draw_orders(K, self._generator, self.random_order)  # (K, K−1)
        C, self.phi_hat = gradvac_coefficients(M, orders, self.phi_hat, self.beta)  # in float64
        return C.sum(dim=0)  # d = Σ_i g_i' = Σ_j (Σ_i C_ij) g_j

    def _state2(self) -> Tensor | None:
        return self.phi_hat  # replaced, never changed in place, by _weights2

    def _restore2(self, state: Tensor | None) -> None:
        self.phi_hat = state

    def _weights2(self, m11: float, m12: float, m21: float, m22: float) -> tuple[float, float]:
        """gradvac_coefficients for K = 2 on Python floats (one order, no draw; the same operations, same
        bits), updating φ̂ like the general path."""
        if self.phi_hat is None:
            self.phi_hat = torch.zeros(2, 2, dtype=torch.float64)  # φ̂ = 0 at start
        elif self.phi_hat.shape != (2, 2):
            raise ValueError(f"GradVac was used with {self.phi_hat.shape[0]} tasks and now gets 2: call reset()")
        (h11, h12), (h21, h22) = self.phi_hat.tolist()
        beta = self.beta
        n1, n2 = math.sqrt(max(m11, 0.0)), math.sqrt(max(m22, 0.0))  # ||g_j||

        def pull(inner: float, norm_i: float, norm_j: float, goal: float) -> tuple[float, float]:
            """(a, new goal): g_i' ← g_i' + a g_j when cos(g_i', g_j) = φ < φ̂ (the paper's update rule)."""
            valid = norm_i > 0.0 and norm_j > 0.0
            phi = min(1.0, max(-1.0, inner / (norm_i * norm_j))) if valid else 0.0  # φ_ij, clamped
            root_goal = math.sqrt(max(1.0 - goal * goal, 0.0))  # √(1 − φ̂²)
            a = 0.0
            if valid and phi < goal and root_goal > 0.0:
                root_phi = math.sqrt(max(1.0 - phi * phi, 0.0))  # √(1 − φ²)
                a = norm_i * (goal * root_phi - phi * root_goal) / (norm_j * root_goal)
            return a, ((1.0 - beta) * goal + beta * phi if valid else goal)  # EMA of φ_ij

        c12, h12 = pull(m21, n1, n2, h12)  # task 1 towards task 2: ⟨g_1, g_2⟩ = M_21 (the general path's row)
        c21, h21 = pull(m12, n2, n1, h21)  # task 2 towards task 1
        self.phi_hat = small_tensor(((h11, h12), (h21, h22)), torch.float64)
        return 1.0 + c21, c12 + 1.0  # w_j = Σ_i C_ij
