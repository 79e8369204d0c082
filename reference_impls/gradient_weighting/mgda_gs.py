"""MGDA under generalized smoothness: single-loop MGDA with a warm start and a step size from ℓ-smoothness.

Paper: Q. Zhang, P. Xiao, S. Zou and K. Ji, "MGDA Converges under Generalized Smoothness, Provably",
ICLR 2025 (OpenReview wgDB1QuxIA), arXiv 2405.19440. No official code is published (none linked from the
abstract pages; none found in the code index).

SOURCES READ (what is and is not verified):
    * The paper's full text is stored (ml-papers-txt mirror, ICLR 2025, ``mgda_converges_under_generalized_
      smoothness_provably__8db833e6.txt``), but this session's search tool returns only its opening (title,
      abstract, start of Section 1); its body could not be read.
    * A public review of the full text (found through the code index) gives the structure checked here:
      Assumption 2 (φ(a) = a²/(2ℓ(2a)) non-decreasing, from Li et al.); Section 4: the AVERAGE CA distance
      (‖d_t − d*_t‖ averaged over the iterations) and ε-Pareto stationarity, O(ε⁻²) samples deterministic and
      O(ε⁻⁴) stochastic (double sampling); Section 5: the ITERATION-WISE CA distance with the warm start,
      whose Theorem 2 takes N = O(ε⁻²) warm-start steps so that ‖w_0 − w*_{0,ρ}‖ ≤ O(ε) (w*_{0,ρ} the
      minimiser of the ρ-strongly convex regularised subproblem at x_0); Section 5.1: MGDA-FA (Theorems 4
      and 5, deterministic only), which needs one backward pass and K forward passes for F(x_{t+1}) per step;
      experiments on Cityscapes and NYU-v2 (Tables 1-2), where "MGDA with warm start" is the method run.
    * NOT verified: the algorithm's line numbers and equation numbers, the order of the w- and x-updates,
      the constants of the step-size conditions of its theorems, and the experiments' β, ρ, N, α (D1-D3).

Setting: each f_i is ℓ-smooth, ||∇²f_i(x)|| ≤ ℓ(||∇f_i(x)||) with ℓ non-decreasing; the
(L0, L1)-smooth case is ℓ(a) = L0 + L1·a (Zhang et al., ICLR 2020). Such f need not have a
Lipschitz gradient (cosh, exp, x⁴): no global L exists, and a constant step tuned to the local
curvature at the optimum diverges from far away.

Implemented (per step t, with the Jacobian J_t = ∇F(x_t)ᵀ (K, n), M_t = J_t J_tᵀ; the paper's MGDA with
the ρ-regularised subproblem min_{w∈Δ} ½||J_tᵀw||² + ½ρ||w||², solved by ONE projected-gradient step per
iteration, and its warm start at x_0):

    warm start (t = 0 only): w ← Π_Δ(w − β (M_0 + ρI) w), N times from w = 𝟙/K     (Section 5, Theorem 2)
    weights:   w_{t+1} = Π_Δ(w_t − β (M_t + ρI) w_t)
    direction: d_t = α·J_tᵀ w_{t+1}                         (the runner / optimiser then steps x ← x − η d_t)

    step size (when l0, l1 are given; a stand-in, D1): α = 1/(2ℓ(2G)),  ℓ(a) = L0 + L1·a,
        G = max_i sup{a ≥ 0 : a² ≤ 2ℓ(2a)·Δ_i} = max_i (2L1Δ_i + √(4L1²Δ_i² + 2L0Δ_i)),
        Δ_i = f_i(x_0) − f_i*  (the losses of the FIRST call, minus their lower bounds)

G bounds ||∇f_i|| on the initial sublevel set {f_i ≤ f_i(x_0)} (Li et al., NeurIPS 2023, Lemma 3.5:
||∇f||² ≤ 2ℓ(2||∇f||)(f − f*)), and L = ℓ(2G) bounds the curvature within one step of it, so
α = 1/(2L) is the constant step of the ℓ-smooth analysis (α ≤ 1/(2L)). With l0 = l1 = None (default)
α = 1 and the optimiser's learning rate is the step (the paper's experiments). To use the rule, run
with SGD and lr = 1 (``modl run mgda-gs -p l0=1 -p l1=1 -p run.optimizer=sgd --lr 1``) so that the step is α.

What the tests check (tests/reference_impls/test_mgda_gs.py): the warm start converges to w*_{0,ρ}
(certified solver) and, with ρ = 0, to MGDA's weights; the warm start keeps the CA distance
||J_tᵀw_{t+1} − J_tᵀw*_{t,ρ}|| small at EVERY iteration (Section 5's claim) where a cold start does not;
the ℓ-step keeps the iterates in the initial sublevel set and reaches a Pareto-stationary point of an
(L0, L1)-smooth toy without a Lipschitz gradient (Section 4's claim), where the step tuned to the curvature
at the optimum diverges.

Hyperparameters (β, ρ, N are NOT the paper's published defaults, which could not be read; see D2):
    beta: β = 0.1, the weights' step (MoDo's official γ = 0.1; MoDo is the double-sampling version analysed).
    rho: ρ = 0.1, the regulariser of the subproblem (MoDo's official ρ = 0.1).
    warm_start_steps: N = 20 projected-gradient steps at x_0 before the first direction.
    l0, l1: the (L0, L1) of ℓ(a) = L0 + L1·a; both None (α = 1) or both given (≥ 0, not both 0).

Deviations:
    D1. Step-size formula: Li et al.'s (NeurIPS 2023) constant step 1/(2ℓ(2G)) with G from the initial
        gaps (max over tasks), standing in for the step conditions of the paper's theorems, whose
        constants could not be read (the paper adopts Li et al.'s Assumption 2 and analysis style).
    D2. Defaults β, ρ from MoDo's official code, N = 20 this module's choice: the paper's experiment
        values could not be read. Theorem 2 asks N = O(ε⁻²); ρ > 0 biases the fixed point: on the
        Pareto set the iteration only rests where J_tᵀw*_{t,ρ} = 0 (e.g. the midpoint of the cosh toy).
    D3. Update order: d_t uses w_{t+1} (MoDo's order, λ stepped before x); whether the paper's
        MGDA steps x with w_t or w_{t+1} could not be checked (a one-step lag of the weights).
    D4. The stochastic version (double sampling) is MoDo (``modo``, reference_impls/gradient_weighting/
        modo.py); this class is the deterministic MGDA (one Jacobian per step). MGDA-FA is not
        implemented: its weight step uses F(x_{t+1}) from the parameter step actually taken, which the
        optimiser (learning rate, momentum) owns here, and its exact update could not be read.
    D5. Degenerate inputs: all-zero J keeps w = 𝟙/K (the step (1 − βρ)w is uniform) and d = 0;
        K = 1 gives w = (1,), d = α·g_1; opposite rows keep w = (½, ½), d = 0. Huge gradients send
        w to a vertex of Δ (finite). NaN/inf raises NonFiniteError. Losses (with l0, l1) must be ≥ 0
        (f − f* as the runner passes them where the problem declares lower bounds), else ValueError.
        Weights are kept in float64 (the simplex projection of a float32 step loses Δ's mass).

Usage:
    >>> m = MGDAGS(l0=1.0, l1=1.0)
    >>> d = m(J, losses)       # J (K, n), losses f − f* (K,) -> d = α Jᵀw (n,)
    >>> m.step_size, m.lambd   # α (after the first call), w (K,)
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import SolverError, dtype_eps, project_simplex


class MGDAGS(GramianWeighting):
    """Single-loop MGDA (projected-gradient weights, warm start) with the ℓ-smooth constant step α = 1/(2ℓ(2G))."""

    name: ClassVar[str] = "mgda-gs"
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        beta: float = 0.1,
        rho: float = 0.1,
        warm_start_steps: int = 20,
        l0: float | None = None,
        l1: float | None = None,
    ) -> None:
        self.beta, self.rho, self.warm_start_steps = float(beta), float(rho), int(warm_start_steps)
        if not (self.beta > 0 and math.isfinite(self.beta)) or not (self.rho >= 0 and math.isfinite(self.rho)):
            raise ValueError(f"mgda-gs: need beta > 0 and rho >= 0, got beta={beta}, rho={rho}")
        if self.warm_start_steps < 0:
            raise ValueError(f"mgda-gs: warm_start_steps must be >= 0, got {warm_start_steps}")
        if (l0 is None) != (l1 is None):
            raise ValueError("mgda-gs: give both l0 and l1 (the (L0, L1) of ℓ(a) = L0 + L1·a) or neither")
        if l0 is not None:
            l0, l1 = float(l0), float(l1)
            if not (l0 >= 0 and l1 >= 0 and l0 + l1 > 0 and math.isfinite(l0 + l1)):
                raise ValueError(f"mgda-gs: need l0, l1 >= 0, not both 0, got l0={l0}, l1={l1}")
        self.l0, self.l1 = l0, l1
        self.needs_losses = l0 is not None  # the step size reads the initial gaps f_i(x_0) − f_i*
        self.reset()

    def reset(self) -> None:
        self._w: Tensor | None = None  # w_t, float64 (K,)
        self._alpha: float | None = None  # α, fixed at the first call

    @property
    def lambd(self) -> Tensor | None:
        """The current weights w_t ∈ Δ (float64), None before the first call."""
        return self._w

    @property
    def step_size(self) -> float | None:
        """α (1 without l0, l1), None before the first call."""
        return self._alpha

    def _ell_step(self, losses: Tensor) -> float:
        """α = 1/(2ℓ(2G)), G = max_i (2L1Δ_i + √(4L1²Δ_i² + 2L0Δ_i)), Δ_i the initial gaps."""
        gaps = losses.detach().double().cpu()  # Δ_i = f_i(x_0) − f_i*, (K,)
        if not bool((gaps >= 0).all()):
            raise ValueError(f"mgda-gs: the step size needs f_i − f_i* >= 0, got losses {gaps.tolist()}")
        l0, l1 = self.l0, self.l1
        G = float((2 * l1 * gaps + torch.sqrt(4 * l1 * l1 * gaps * gaps + 2 * l0 * gaps)).max())  # sup{a : a² ≤ 2ℓ(2a)Δ}
        return 1.0 / (2.0 * (l0 + l1 * 2.0 * G))  # α = 1/(2ℓ(2G))

    def _step(self, w: Tensor, Mr: Tensor) -> Tensor:
        w_new = project_simplex(w - self.beta * (Mr @ w))  # w ← Π_Δ(w − β(M + ρI)w), (K,)
        tol = 8 * w.shape[0] * dtype_eps(w_new)
        if not (bool((w_new >= 0).all()) and abs(float(w_new.sum()) - 1.0) <= tol):
            raise SolverError(f"mgda-gs: the simplex projection left Δ (sum {float(w_new.sum())!r})")
        return w_new

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        Mr = M.detach().double().cpu() + self.rho * torch.eye(K, dtype=torch.float64)  # M + ρI, (K, K)
        if self._w is not None and self._w.shape[0] != K:
            raise ValueError(f"mgda-gs: the number of tasks changed from {self._w.shape[0]} to {K}; call reset() first")
        if self._w is None:
            self._alpha = 1.0 if self.l0 is None else self._ell_step(losses)
            w = torch.full((K,), 1.0 / K, dtype=torch.float64)  # w_0 = 𝟙/K
            for _ in range(self.warm_start_steps):  # warm start at x_0
                w = self._step(w, Mr)
            self._w = w
        self._w = self._step(self._w, Mr)  # w_{t+1}
        return (self._alpha * self._w).to(dtype=M.dtype, device=M.device)  # d = α J_tᵀ w_{t+1}
