r"""MGDA under generalized smoothness: single-loop MGDA with a warm start and a step size from ℓ-smoothness.

Paper: Q. Zhang, P. Xiao, S. Zou and K. Ji, "MGDA Converges under Generalized Smoothness, Provably",
ICLR 2025 (OpenReview wgDB1QuxIA), arXiv 2405.19440 (v1-v3 titled "On the Convergence of Multi-objective
Optimization under Generalized Smoothness"). No official code is published (none linked from the abstract
pages; none in the code index: no repository of the authors or of Ji's group, OptMN-Lab, holds it).

SOURCES READ (what is and is not verified):
    * The paper's body could not be read. Its full text is stored (ml-papers-txt mirror, ICLR 2025,
      ``mgda_converges_under_generalized_smoothness_provably__8db833e6.txt``), but every search returns only
      its opening (title, abstract, start of Section 1); the abstract pages (proceedings.iclr.cc, OpenReview,
      arXiv listings, sciencestack, tomesphere, paperhub) give no algorithm, equation or constant.
    * A public review of the full text (found through the code index) gives the structure: Assumption 2
      (φ(a) = a²/(2ℓ(2a)) non-decreasing, from Li et al.); Section 4: the AVERAGE CA distance and ε-Pareto
      stationarity, O(ε⁻²) samples deterministic and O(ε⁻⁴) stochastic (double sampling); Section 5: the
      ITERATION-WISE CA distance with the warm start, whose Theorem 2 takes N = O(ε⁻²) warm-start steps so
      that :math:`\lVert w_0 - w^\star_{0,\rho} \rVert \le O(\varepsilon)` (:math:`w^\star_{0,\rho}` the
      minimiser of the ρ-strongly convex regularised subproblem at :math:`x_0`); Section 5.1: MGDA-FA
      (Theorems 4 and 5, deterministic only), one backward pass plus the forward passes for
      :math:`F(x_{t+1})` per step; experiments on Cityscapes and NYU-v2, where "MGDA with warm
      start" is the method run.
    * A third-party clean-room reimplementation that read the paper's PDF (alirezamirrokni/LMO-MOO: README
      "Training protocol", THIRD_PARTY_REFERENCES.md, main_experiments/configs/main_comparison_reproduce.yaml
      entry "MGDA-warm", src/reported.py with the paper's Tables 2-3) states the paper's experiment settings:
      β = 0.5, ρ = 0.5, N = 40 warm-start steps (with the same β), the model trained by SGD with learning
      rate 5e-4 (Cityscapes) and 1e-4 (NYU-v2); its trainer computes the warm start's Gramian from
      full-batch gradients at the start point. This is a secondary source: the defaults below follow it (D2).
    * NOT verified: the algorithm's line and equation numbers, the order of the w- and x-updates (D3), the
      constants of the step-size conditions of the theorems (D1), and MGDA-FA's update (D4).

Setting: each objective is ℓ-smooth, :math:`\lVert \nabla^2 f_i(x) \rVert \le \ell(\lVert \nabla f_i(x) \rVert)` with ℓ non-decreasing; the
(L0, L1)-smooth case is ℓ(a) = L0 + L1·a (Zhang et al., ICLR 2020). Such f need not have a
Lipschitz gradient (cosh, exp, x⁴): no global L exists, and a constant step tuned to the local
curvature at the optimum diverges from far away.

Update rule:
    Per step t, with the Jacobian :math:`J_t = \nabla F(x_t)^\top` (K × n) and its Gramian
    :math:`M_t = J_t J_t^\top`: the paper's MGDA with the ρ-regularised subproblem
    :math:`\min_{w \in \Delta} \tfrac12 \lVert J_t^\top w \rVert^2 + \tfrac12 \rho \lVert w \rVert^2`, solved by
    ONE projected-gradient step per iteration (:math:`\Pi_\Delta` the Euclidean projection onto the
    probability simplex), after a warm start of N such steps at :math:`x_0` from
    :math:`w = \mathbf{1}/K` (Section 5, Theorem 2); the direction is scaled by a constant step size
    α and the runner or optimiser then steps :math:`x \leftarrow x - \eta d_t` (update order: D3):

    .. math::

        w \leftarrow \Pi_\Delta\big(w - \beta (M_0 + \rho I) w\big) \ \ (N \text{ times, at } t = 0)

    .. math::

        w_{t+1} = \Pi_\Delta\big(w_t - \beta (M_t + \rho I) w_t\big), \qquad d_t = \alpha \, J_t^\top w_{t+1}

    The step size (a stand-in, D1) is :math:`\alpha = 1` when ``l0`` and ``l1`` are None (the default:
    the optimiser's learning rate is the step, as in the paper's experiments with SGD at 5e-4 or
    1e-4); when they are given, with :math:`\ell(a) = L_0 + L_1 a` and the initial gaps
    :math:`\Delta_i = f_i(x_0) - f_i^\star` (the losses of the FIRST call, minus their lower bounds):

    .. math::

        \alpha = \frac{1}{2 \ell(2G)}, \qquad G = \max_i \sup\{a \ge 0 : a^2 \le 2 \ell(2a) \Delta_i\} = \max_i \Big( 2 L_1 \Delta_i + \sqrt{4 L_1^2 \Delta_i^2 + 2 L_0 \Delta_i} \Big)

    G bounds :math:`\lVert \nabla f_i \rVert` on the initial sublevel set :math:`\{f_i \le f_i(x_0)\}`
    (Li et al., NeurIPS 2023, Lemma 3.5:
    :math:`\lVert \nabla f \rVert^2 \le 2 \ell(2 \lVert \nabla f \rVert)(f - f^\star)`), and
    :math:`L = \ell(2G)` bounds the curvature within one step of it, so :math:`\alpha = 1/(2L)` is the
    constant step of the ℓ-smooth analysis. To use the rule, run with SGD and lr = 1
    (``modl run mgda-gs -p l0=1 -p l1=1 -p run.optimizer=sgd --lr 1``) so that the step is α.

What the tests check (``tests/reference_impls/test_mgda_gs.py``): the warm start converges to
:math:`w^\star_{0,\rho}` (certified solver) and, with ρ = 0, to MGDA's weights; the warm start keeps the
CA distance :math:`\lVert J_t^\top w_{t+1} - J_t^\top w^\star_{t,\rho} \rVert` small at EVERY iteration
(Section 5's claim) where a cold start does not;
the ℓ-step keeps the iterates in the initial sublevel set and reaches a Pareto-stationary point of an
(L0, L1)-smooth toy without a Lipschitz gradient (Section 4's claim), where the step tuned to the curvature
at the optimum diverges; the K = 2 Python-float step equals the general step.

Hyperparameters (D2: from the secondary source above, not read in the paper):
    beta: β = 0.5, the weights' step (also the warm start's).
    rho: ρ = 0.5, the regulariser of the subproblem.
    warm_start_steps: N = 40 projected-gradient steps at the start point before the first direction.
    l0, l1: the (L0, L1) of ℓ(a) = L0 + L1·a; both None (α = 1) or both given (≥ 0, not both 0).
β is a step on wᵀ(M + ρI)w: it contracts only while β‖M + ρI‖ < 2, so on problems whose Gramians are
large (the toys' ‖M‖ at their starts reaches 15-240) the weights jump between the simplex's vertices;
choose β ≲ 1/‖M‖.

Deviations:
    D1. Step-size formula: Li et al.'s (NeurIPS 2023) constant step :math:`1/(2\ell(2G))` with G from the initial
        gaps (max over tasks), standing in for the step conditions of the paper's theorems, whose
        constants could not be read (the paper adopts Li et al.'s Assumption 2 and analysis style).
    D2. Defaults β = ρ = 0.5, N = 40 as the secondary source reports the paper's experiments; the paper
        itself could not be checked. (The previous stand-ins were MoDo's official γ = ρ = 0.1 and N = 20.)
        Theorem 2 asks N = O(ε⁻²); ρ > 0 biases the fixed point: on the Pareto set the iteration only rests
        where :math:`J_t^\top w^\star_{t,\rho} = 0` (e.g. the midpoint of the cosh toy). The warm start uses the first call's J
        (full-batch on the deterministic problems; one sample on the noisy ones, where the secondary source
        uses the full training set).
    D3. Update order: :math:`d_t` uses :math:`w_{t+1}` (MoDo's order, λ stepped before x). Unresolved: the
        secondary source steps x with :math:`w_t` in its trainer (``methods/advanced_methods.py``, MGDAWarm,
        with the weights' Gramian from two further mini-batches) but with :math:`w_{t+1}` in its baseline
        controller (``src/methods/baselines.py``).
    D4. The stochastic version (double sampling) is MoDo (``modo``,
        ``reference_impls/gradient_weighting/modo.py``); this class is the deterministic MGDA (one Jacobian
        per step). MGDA-FA is NOT implemented: its weight update (from :math:`F(x_{t+1})` of the parameter
        step taken, one backward pass per step) could
        not be read in any source, and no code of it exists in the index; a reconstruction (e.g. the finite
        difference :math:`(F(x_t) - F(x_{t+1}))/\alpha` for :math:`J_t J_t^\top w_t`) would not be the
        paper's method.
    D5. Degenerate inputs: all-zero J keeps w = 𝟙/K (the step (1 − βρ)w is uniform) and d = 0;
        K = 1 gives w = (1,), d = α times the single gradient; opposite rows keep w = (½, ½), d = 0.
        Huge gradients send w to a vertex of the simplex (finite). NaN/inf raises NonFiniteError.
        Losses (with ``l0``, ``l1``) must be ≥ 0
        (f − f* as the runner passes them where the problem declares lower bounds), else ValueError.
        Weights are kept in float64 (the simplex projection of a float32 step loses the simplex's mass).
    D6. Speed, not semantics: for K = 2 the step runs on Python floats (``projected_step_2``: the sort-based
        projection written out operation for operation), a few µs instead of a dozen torch calls; it agrees
        with the general torch step to 4 ulps (only the product (M + ρI)w may be fused differently by BLAS).

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

from reference_impls.core.aggregator import GramianWeighting, NonFiniteError
from reference_impls.core.solvers import SolverError, dtype_eps, project_simplex


def projected_step(w: list[float], Mr: Tensor, beta: float) -> list[float]:
    """One step w ← Π_Δ(w − β(M + ρI)w) on K weights (general K, torch float64); Mr = M + ρI (K, K)."""
    wt = torch.tensor(w, dtype=torch.float64)  # w_t, (K,)
    w_new = project_simplex(wt - beta * (Mr @ wt))  # Π_Δ(w − β(M + ρI)w), (K,)
    tol = 8 * len(w) * dtype_eps(w_new)
    if not (bool((w_new >= 0).all()) and abs(float(w_new.sum()) - 1.0) <= tol):
        raise SolverError(f"mgda-gs: the simplex projection left Δ (sum {float(w_new.sum())!r})")
    return w_new.tolist()


def projected_step_2(w: list[float], m: list[float], rho: float, beta: float) -> list[float]:
    """The same step for K = 2 on Python floats; m = [M11, M12, M21, M22] (M, not M + ρI).

    Π_Δ is project_simplex's sort-based rule written out for two entries, operation for operation:
    with u = v_min − v_max ≤ 0, τ = (u − 1)/2 if u − (u − 1)/2 > 0 (else τ = −1), the larger entry
    gets −τ and the smaller max(u − τ, 0). Only the product (M + ρI)w may round differently from the
    general path's matmul (a BLAS kernel may fuse its multiply-adds), so the two agree to a few ulps.
    """
    w1, w2 = w
    v1 = w1 - beta * ((m[0] + rho) * w1 + m[1] * w2)  # v = w − β(M + ρI)w, entry 1
    v2 = w2 - beta * (m[2] * w1 + (m[3] + rho) * w2)  # entry 2
    if not (math.isfinite(v1) and math.isfinite(v2)):
        raise NonFiniteError("cannot project a vector with NaN or infinite entries onto the simplex")
    u = (v2 - v1) if v1 >= v2 else (v1 - v2)  # v_min − v_max (the shifted, sorted second entry)
    half = (u - 1.0) / 2.0  # css_2 / 2 with css_2 = u − 1
    tau = half if u - half > 0 else -1.0  # τ = css_ρ / ρ
    big, small = -tau, max(u - tau, 0.0)  # max(0 − τ, 0) = −τ ≥ 1/2; max(u − τ, 0)
    if not abs(big + small - 1.0) <= 16 * 2.0**-52:
        raise SolverError(f"mgda-gs: the simplex projection left Δ (sum {big + small!r})")
    return [big, small] if v1 >= v2 else [small, big]


class MGDAGS(GramianWeighting):
    """Single-loop MGDA (projected-gradient weights, warm start) with the ℓ-smooth constant step α = 1/(2ℓ(2G))."""

    name: ClassVar[str] = "mgda-gs"
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        beta: float = 0.5,
        rho: float = 0.5,
        warm_start_steps: int = 40,
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
        self._w: list[float] | None = None  # w_t as K Python floats (float64)
        self._alpha: float | None = None  # α, fixed at the first call

    @property
    def lambd(self) -> Tensor | None:
        """The current weights w_t ∈ Δ (float64), None before the first call."""
        return None if self._w is None else torch.tensor(self._w, dtype=torch.float64)

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

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        if self._w is not None and len(self._w) != K:
            raise ValueError(f"mgda-gs: the number of tasks changed from {len(self._w)} to {K}; call reset() first")
        if K == 2:  # Python floats: a few µs a step instead of a dozen torch calls
            (m11, m12), (m21, m22) = M.tolist()  # M (2, 2) as Python floats (float64 values of M's entries)
            m = [m11, m12, m21, m22]
            step = lambda w: projected_step_2(w, m, self.rho, self.beta)  # noqa: E731
        else:
            Mr = M.detach().double().cpu() + self.rho * torch.eye(K, dtype=torch.float64)  # M + ρI, (K, K)
            step = lambda w: projected_step(w, Mr, self.beta)  # noqa: E731
        if self._w is None:
            self._alpha = 1.0 if self.l0 is None else self._ell_step(losses)
            w = [1.0 / K] * K  # w_0 = 𝟙/K
            for _ in range(self.warm_start_steps):  # warm start at x_0
                w = step(w)
            self._w = w
        self._w = step(self._w)  # w_{t+1}
        return torch.tensor([self._alpha * wi for wi in self._w], dtype=M.dtype, device=M.device)  # d = α J_tᵀ w_{t+1}
