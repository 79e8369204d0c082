r"""MOO-SVGD: multi-objective Stein variational gradient descent (MGDA directions + kernel repulsion).

Paper: Xingchao Liu, Xin Tong, Qiang Liu, "Profiling Pareto Front With Multi-Objective Stein
Variational Gradient Descent", NeurIPS 2021 (OpenReview S2-j0ZegyrE). Official code:
gnobitab/MultiObjectiveSampling, ``zdt/moosvgd.py`` (solve_min_norm_2_loss, median,
kernel_functional_rbf, get_gradient) and ``zdt/run_zdt_moosvgd.py`` (the ZDT loop). Peer:
xzhang2523/libmoon ``libmoon/solver/gradient/methods/moosvgd_solver.py`` (copies the kernel).
The paper's text was not reachable from this workplace: the update below is the official code's,
which is the SVGD form the paper builds on (Liu & Wang, NeurIPS 2016) with the score ∇log p replaced
by the MGDA direction (the lead records it as reconstructed from the official code).

Update rule:
    The :math:`P` particles :math:`x_1, \dots, x_P` move jointly. Each particle's task gradients
    are first pre-normalised (``normalization``, below) to :math:`\hat g_i(x_j)`, and its MGDA
    (min-norm) direction is taken on them (``solve_min_norm_2_loss``; exact and KKT-certified, D1):

    .. math::

        \lambda_j = \arg\min_{\lambda \in \Delta^K} \left\lVert \sum_{i=1}^K \lambda_i\, \hat g_i(x_j) \right\rVert^2, \qquad g_w(x_j) = \sum_{i=1}^K \lambda_{j,i}\, \hat g_i(x_j)

    An RBF kernel on the objective values (``kernel_functional_rbf``), with the official
    bandwidth (default, ``bandwidth="official"``: :math:`c = h / (5 \cdot 10^{-6})`, the official
    operator precedence of ``exp(-D / 5e-6 * h)``) or the standard SVGD median rule
    (``bandwidth="median"``: :math:`c = 1/h`, Liu & Wang 2016); :math:`h` is numpy's median of all
    :math:`P^2` entries, the diagonal included, and a constant for the kernel gradient:

    .. math::

        D_{jl} = \lVert F(x_j) - F(x_l) \rVert^2, \qquad h = \frac{\operatorname{median}(D)}{\log P}, \qquad k_{jl} = \exp(-c\, D_{jl})

    The direction of particle :math:`i` (``get_gradient``) is the kernel-averaged MGDA direction
    minus the official kernel gradient :math:`-\tfrac{1}{2}\nabla_{x_i} \sum_{j,l} k_{jl}`, in
    closed form by the chain rule (D3), with :math:`J_i` particle :math:`i`'s raw Jacobian;
    Adam steps it and the problem's box :math:`\mathcal{X}` clamps it:

    .. math::

        d_i = \frac{1}{P} \Big[ \sum_{j=1}^P k_{ij}\, g_w(x_j) - 2c\, J_i^\top \sum_{j=1}^P k_{ij} \big(F(x_i) - F(x_j)\big) \Big], \qquad x_i \leftarrow \Pi_{\mathcal{X}}\big(x_i - \operatorname{Adam}(d_i)\big)

    so the step descends along the neighbours' MGDA directions (driving term) and pushes
    :math:`F(x_i)` away from the objective values of close particles (repulsion: to first order the
    step increases every :math:`\lVert F(x_i) - F(x_j) \rVert^2` with :math:`k_{ij} > 0`).
    ``kernel=False`` sets :math:`k_{ij} = \delta_{ij}` (no repulsion): :math:`d_i = g_w(x_i)/P`,
    per-particle MGDA times the constant :math:`1/P`, which Adam ignores up to its ε.

    Pre-normalisation (``normalization``), for task :math:`i`'s gradient matrix :math:`g_i`
    (:math:`P \times n`, one row per particle): ``"coordinate"`` (default, ``run_zdt_moosvgd.py``'s
    ``F.normalize(grad_i, dim=0)``) divides each column by its norm over the particles, which
    couples the particles (:math:`P = 1` turns :math:`\hat g` into the sign pattern of :math:`g`);
    ``"l2"`` divides each particle's task gradient by its own norm; ``"none"`` keeps the raw
    gradients (zero norms leave zeros, D2):

    .. math::

        \text{coordinate:}\ \hat g_i[p, t] = \frac{g_i[p, t]}{\lVert g_i[:, t] \rVert}, \qquad \text{l2:}\ \hat g_i(x_p) = \frac{g_i(x_p)}{\lVert g_i(x_p) \rVert}

The −½ factor is the official code's (activatedgeek/svgd issue 1): for a kernel of the parameter
difference, SVGD's sum of the kernel's gradients over the other particle equals −½ times the gradient
of the kernel matrix's sum with respect to the particle; the official code keeps that form for the
objective-space kernel, where the identity is an analogy. The official bandwidth gives a kernel that
*narrows* as the particles spread (c grows with h) and is not scale-invariant (c·D scales with the
fourth power of F); the median rule is invariant to the scale of F.

Defaults and their source:
    * kernel on, official bandwidth c = median(D)/log P / 5e-6 (``moosvgd.py``: "5e-6 for zdt1,2,3").
    * normalization "coordinate" (``run_zdt_moosvgd.py``, "gradient normalization trick").
    * Adam, 50 particles, 10 000 iterations at lr 5e-4, starts uniform in the 30-dimensional unit
      cube, clamped to [1e-6, 1 − 1e-6] after every step (``run_zdt_moosvgd.py``); here
      ``default_optimizer = "adam"``, ``default_lr = 1e-2``, ``default_steps = 500`` (D5); the
      clamp is the problem's box (zdt1/zdt2 clamp to [1e-6, 1 − 1e-6]).

Deviations: (from the official code, and from libmoon where it differs)
    D1. MGDA: the exact min-norm point for every K (K = 2: the solver layer's closed form batched over
        the particles, each certified by its KKT test; otherwise, or when that test fails,
        :func:`solvers.min_norm_weights` on the particle's Gramian: KKT-certified, SolverError otherwise;
        Jacobians rescaled by a power of two where the Gramian would under- or overflow). The
        official K = 2 closed form clips γ to [0.001, 0.999] (γ = 0.999 when
        :math:`\langle g_1, g_2 \rangle \ge \lVert g_1 \rVert^2`, 0.001 when
        :math:`\langle g_1, g_2 \rangle \ge \lVert g_2 \rVert^2`, the latter winning for identical
        gradients) and handles K = 2 only; libmoon calls its iterative ``solve_mgda``.
    D2. "coordinate" normalisation divides a column by its norm only when that norm is positive (zero
        columns stay zero; ``F.normalize`` divides by max(norm, 1e-12), which leaves columns with
        norm < 1e-12 unnormalised, so tiny gradients would not be normalised); the norm is computed
        with a max-scaling that cannot overflow.
    D3. The kernel gradient is the closed form of the update rule (the chain rule through J, h fixed), equal to the
        official autograd of the kernel matrix's sum through the losses (tested against autograd).
    D4. P = 1: log P = 0 makes the official h = 0/0 (NaN); here the kernel of a single particle is
        1 and the update is MGDA's (divided by P = 1). h = 0 with the official rule gives c = 0,
        k ≡ 1 and no repulsion (as the official code: e.g. all F equal, or more than half of the P²
        pairs coincident); with the median rule it is the limit h → 0: the kernel is 1 for a zero
        distance, else 0, and there is no repulsion.
    D5. Defaults scaled for CI: 500 Adam steps at lr 1e-2 instead of 10 000 at 5e-4 (the same total
        lr·steps = 5); 5-dimensional zdt1 instead of 30 (the problem's default).
    D6. Squared objective distances that overflow (|F| ≳ 1e154; float32 ≳ 1e19), or an official
        c = h/5e-6 that does, raise ValueError instead of producing NaN.
    D7. libmoon's set solver (``get_svgd_alpha_array``) forms per-particle weights
        :math:`\sum_j k_{ij} \lambda_j` and the kernel gradient with respect to F, and applies both
        to particle i's own Jacobian (:math:`J_i^\top \sum_j k_{ij} \lambda_j`), not the
        neighbours' directions :math:`\sum_j k_{ij} J_j^\top \lambda_j`; the official code
        (followed here) averages the directions.
    D8. The update is computed in the input dtype (float32 stays float32); MGDA weights in float64
        (the solver layer).

Observed (noted for users; tested where stated in tests/reference_impls/test_moo_svgd.py):
    * The published code, run as published (float32 or float64, 30-dimensional uniform starts, 50
      particles, Adam lr 5e-4, clamp), moves most particles to a first loss near 0 first (after 1000
      steps its largest value is 0.49); this implementation follows it step for step (300 steps from
      one start: max |Δx| 7e-9), and after 10 000 steps its set has HV 0.19 at r = (1, 1) (front
      0.667), bunched near a first loss of 0. The ZDT1 figures committed with the code (first commit,
      deleted in the next) show particles at a first loss of 1 after 1000 steps and a well-spread
      front after 9000: they were made with another version of the code or settings.
    * The "coordinate" normalisation rescales each task's gradient by its own per-coordinate factors
      (a diagonal matrix per task, different between tasks in general), so MGDA on the normalised
      gradients vanishes where a convex combination of the rescaled gradients is 0, which is not
      Pareto stationarity: on vlmop2 (n = 20) every particle stalls at a PS-measure ≈ 0.31 (kernel
      on or off, 400-1500 Adam steps, seeds 0-2), where "l2" and "none" reach ≈ 0. On ZDT1 (the
      first loss's gradient is the first axis: one non-zero column) and on the biquad's Pareto set
      it does not matter. Use ``normalization="l2"`` for Pareto-stationary end points on other
      problems.
    * Coincident objective vectors repel each other with zero force (their difference is 0), and the
      official median counts the P zero diagonal entries: particles that meet (e.g. at a box corner
      of ZDT1) stay together, and when more than half of the P² distances are zero the kernel
      becomes k ≡ 1 with no repulsion at all.

Degenerate inputs: P = 1 → MGDA; identical particles → their pairwise repulsion is exactly zero and
they share one direction (the kernel-weighted mean of identical MGDA directions); K = 1 → the MGDA
direction is the normalised gradient, the kernel still acts in the one-dimensional objective space;
zero gradients → zero MGDA direction (min-norm rule of the solver layer); non-finite F or J →
ValueError; the preferences are ignored (``needs_preferences = False``; a given matrix is not used).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod
from reference_impls.core.solvers import KAPPA, min_norm_weights, rescaled_gramian

NORMALIZATIONS = ("coordinate", "l2", "none")
BANDWIDTHS = ("official", "median")
EPS64 = float(torch.finfo(torch.float64).eps)


def _check_inputs(F: Tensor, J: Tensor) -> None:
    if F.ndim != 2 or J.ndim != 3 or J.shape[:2] != F.shape:
        raise ValueError(f"moo-svgd: expected F (P, K) and J (P, K, n), got {tuple(F.shape)} and {tuple(J.shape)}")
    if F.shape[0] < 1 or F.shape[1] < 1:
        raise ValueError(f"moo-svgd: need P >= 1 particles and K >= 1 objectives, got F of shape {tuple(F.shape)}")
    if not bool(torch.isfinite(F).all()):
        raise ValueError("moo-svgd: the losses contain NaN or infinite values")
    if not bool(torch.isfinite(J).all()):
        raise ValueError("moo-svgd: the Jacobians contain NaN or infinite values")


def _safe_norm(A: Tensor, dim: int) -> Tensor:
    """Euclidean norm along ``dim`` (keepdim) computed as m·||A/m||, m = max |A|: no overflow or underflow."""
    m = A.abs().amax(dim=dim, keepdim=True)  # max |entry|
    scaled = A / torch.where(m > 0, m, torch.ones_like(m))
    return m * torch.linalg.vector_norm(scaled, dim=dim, keepdim=True)


def normalize_gradients(J: Tensor, normalization: str = "coordinate") -> Tensor:
    """The pre-normalised Jacobians Ĵ (P, K, n) (see the module docstring; zero norms leave zeros, D2)."""
    if normalization == "none":
        return J
    if normalization == "coordinate":
        norms = _safe_norm(J, 0)  # (1, K, n): ||g_i[:, d]|| over the particles
    elif normalization == "l2":
        norms = _safe_norm(J, 2)  # (P, K, 1): ||g_i(x_p)||
    else:
        raise ValueError(f"moo-svgd: unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
    return J / torch.where(norms > 0, norms, torch.ones_like(norms))  # ĝ = g/||g|| (0 stays 0)


def mgda_directions(J: Tensor) -> tuple[Tensor, Tensor]:
    """Per-particle MGDA: weights λ (P, K) on the simplex and directions g_w = Σ_i λ_pi J_pi (P, n).

    λ_p = argmin_{λ∈Δ} ||J_pᵀλ||². K = 2: the closed form of :func:`solvers.min_norm_weights`
    (Sener & Koltun's Algorithm 1, its rules for identical and zero gradients) batched over the
    particles in float64 (each J_p first scaled by a power of two, max |entry| in [½, 1), when some
    particle's largest entry is outside [1e-100, 1e100]: no underflow or overflow; λ is
    scale-invariant), then certified per particle and per task by the solver layer's
    KKT test ⟨d, g_j⟩ ≥ ||d||² − κ·S·(||g_j|| + S); a particle that fails it, and every particle when
    K ≠ 2, goes through :func:`solvers.min_norm_weights` (certified, SolverError otherwise; D1).
    """
    P, K, _ = J.shape
    if K == 2:
        lam, ok = _two_task_weights(J)  # (P, 2) float64 CPU, (P,)
        todo = [] if bool(ok.all()) else torch.nonzero(~ok).flatten().tolist()
    else:
        lam, todo = torch.empty(P, K, dtype=torch.float64), range(P)
    for p in todo:
        lam[p] = min_norm_weights(rescaled_gramian(J[p])).to(torch.float64).cpu()  # λ_p ∈ Δ, certified
    lam = lam.to(device=J.device, dtype=J.dtype)
    return lam, (lam[:, :, None] * J).sum(1)  # (P, K), (P, n): g_w(x_p) = Σ_i λ_pi ĝ_i(x_p)


def _two_task_weights(J: Tensor) -> tuple[Tensor, Tensor]:
    """K = 2 min-norm weights for every particle (P, 2) float64 CPU, and whether each passed the KKT certificate (P,)."""
    G = J.detach().to("cpu", torch.float64).numpy()  # (P, 2, n); numpy: ~20 small array operations per step
    peak = np.abs(G).reshape(G.shape[0], -1).max(1)  # (P,)
    if not (peak.min() > 1e-100 and peak.max() < 1e100):  # else the Gramian is far from under- and overflow
        _, expo = np.frexp(np.where(peak > 0, peak, 1.0))
        G = np.ldexp(G, -expo[:, None, None])  # exact power-of-two scaling: max |entry| ∈ [½, 1)
    m11, m22 = np.einsum("pn,pn->p", G[:, 0], G[:, 0]), np.einsum("pn,pn->p", G[:, 1], G[:, 1])  # ||g_i||²
    m12 = np.einsum("pn,pn->p", G[:, 0], G[:, 1])  # ⟨g_1, g_2⟩
    denom = m11 + m22 - 2.0 * m12  # ||g_1 − g_2||²
    a = np.maximum(m22 - m12, 0.0)  # γ·denom (weight of g_1), clipped at 0
    b = np.maximum(m11 - m12, 0.0)  # (1 − γ)·denom, its own formula (no cancellation in 1 − γ)
    total = np.where(a + b > 0, a + b, 1.0)
    lam = np.stack([a / total, b / total], 1)  # (P, 2)
    lam[~(denom > 4.0 * EPS64 * np.maximum(m11, m22))] = (1.0, 0.0)  # identical gradients (to rounding): d = g_1
    zero1, zero2 = m11 <= 0, m22 <= 0  # zero gradients: d = 0 with all weight on the first zero row
    lam[zero2] = (0.0, 1.0)
    lam[zero1] = (1.0, 0.0)
    lam[zero1 & zero2] = 0.5  # every gradient zero: uniform weights (the solver's rule)
    # Certificate of the solver layer, per particle and task: ⟨d, g_j⟩ ≥ ||d||² − κ·K·ε·S·(||g_j|| + S).
    eps = max(float(torch.finfo(J.dtype).eps), EPS64)
    norms = np.sqrt(np.stack([m11, m22], 1))  # (P, 2)
    Mlam = np.stack([m11 * lam[:, 0] + m12 * lam[:, 1], m12 * lam[:, 0] + m22 * lam[:, 1]], 1)  # (P, 2): ⟨d, g_j⟩
    dd = (lam * Mlam).sum(1, keepdims=True)  # (P, 1): ||d||²
    S = (lam * norms).sum(1, keepdims=True)  # (P, 1): Σ λ_i ||g_i||
    slack = Mlam - dd + KAPPA * 2 * eps * S * (norms + S)  # (P, 2), ≥ 0 at a certified optimum
    ok = (slack >= 0).all(1) & np.isfinite(lam).all(1)
    return torch.from_numpy(lam), torch.from_numpy(ok)


def numpy_median(values: Tensor) -> Tensor:
    """numpy's median (mean of the two middle values for an even count), as the official ``median``."""
    s = values.flatten().sort().values
    N = s.numel()
    return (s[(N - 1) // 2] + s[N // 2]) / 2


def rbf_kernel(F: Tensor, bandwidth: str = "official", scale: float = 5e-6) -> tuple[Tensor, Tensor, float]:
    """The kernel matrix k (P, P), the pairwise differences F_i − F_j (P, P, K) and the inverse width c.

    k_ij = exp(−c·||F_i − F_j||²) with c = h/scale (official precedence) or 1/h (median rule),
    h = median(D)/log P; P = 1 gives k = [[1]], c = 0 (D4). c = inf marks the median rule at h = 0,
    whose kernel is the indicator of D = 0 and whose repulsion is zero.
    """
    if bandwidth not in BANDWIDTHS:
        raise ValueError(f"moo-svgd: unknown bandwidth {bandwidth!r}; known: {', '.join(BANDWIDTHS)}")
    P = F.shape[0]
    diff = F[:, None, :] - F[None, :, :]  # (P, P, K): F_i − F_j, exactly 0 for identical rows
    D = (diff * diff).sum(-1)  # (P, P): ||F_i − F_j||²
    if not bool(torch.isfinite(D).all()):
        raise ValueError("moo-svgd: the squared distances between objective vectors overflow (|F| too large for the kernel)")
    if P == 1:
        return torch.ones_like(D), diff, 0.0  # a single particle: k = 1, no repulsion (D4)
    h = float(numpy_median(D)) / math.log(P)  # median(D)/log P
    if bandwidth == "official":
        c = h / scale  # exp(−D/5e-6·h) = exp(−D·h/5e-6)
    elif h > 0:
        c = 1.0 / h  # exp(−D/h)
    else:
        return (D == 0).to(D), diff, math.inf  # the limit h → 0 (D4)
    if not math.isfinite(c):
        raise ValueError("moo-svgd: the inverse kernel width c = h/scale overflows (|F| too large for the official bandwidth)")
    return torch.exp(-c * D), diff, c  # (P, P): k_ij = exp(−c D_ij) (an overflowing exponent gives k_ij = 0, its limit)


class MOOSVGD(SetMethod):
    """MOO-SVGD: d_i = (1/P)[Σ_j k_ij g_w(x_j) − 2c J_iᵀ Σ_j k_ij (F_i − F_j)], RBF kernel on the objectives."""

    name: ClassVar[str] = "moo-svgd"
    needs_preferences: ClassVar[bool] = False
    default_optimizer: ClassVar[str | None] = "adam"  # run_zdt_moosvgd.py
    default_lr: ClassVar[float | None] = 1e-2  # official 5e-4 over 10 000 steps, scaled to 500 (D5)
    default_steps: ClassVar[int | None] = 500

    def __init__(self, *, kernel: bool = True, bandwidth: str = "official", scale: float = 5e-6, normalization: str = "coordinate") -> None:
        if bandwidth not in BANDWIDTHS:
            raise ValueError(f"moo-svgd: unknown bandwidth {bandwidth!r}; known: {', '.join(BANDWIDTHS)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"moo-svgd: unknown normalization {normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"moo-svgd: scale must be a positive number, got {scale}")
        self.kernel = bool(kernel)
        self.bandwidth = bandwidth
        self.scale = float(scale)
        self.normalization = normalization
        self.last_kernel: Tensor | None = None  # (P, P) the kernel of the last step (diagnostics)

    def components(self, F: Tensor, J: Tensor) -> tuple[Tensor, Tensor]:
        """The driving term Σ_j k_ij g_w(x_j) (P, n) and the kernel gradient −½∇_{x_i}Σk = 2c J_iᵀΣ_j k_ij(F_i − F_j) (P, n).

        d = (driving − kernel_grad)/P is the step's direction.
        """
        _check_inputs(F, J)
        _, g_w = mgda_directions(normalize_gradients(J, self.normalization))  # (P, n)
        if not self.kernel:
            self.last_kernel = torch.eye(F.shape[0], dtype=F.dtype, device=F.device)
            return g_w, torch.zeros_like(g_w)  # k_ij = δ_ij, no repulsion
        k, diff, c = rbf_kernel(F, self.bandwidth, self.scale)  # (P, P), (P, P, K), c
        self.last_kernel = k
        driving = k @ g_w  # (P, n): Σ_j k_ij g_w(x_j)
        if c == 0.0 or math.isinf(c):
            return driving, torch.zeros_like(driving)  # k constant in F, or the h → 0 limit: no repulsion (D4)
        pull = (k[:, :, None] * diff).sum(1)  # (P, K): Σ_j k_ij (F_i − F_j)
        kernel_grad = 2.0 * c * (pull[:, :, None] * J).sum(1)  # (P, n): −½∇_{x_i}Σ_{jl} k_jl = 2c J_iᵀ Σ_j k_ij (F_i − F_j)
        return driving, kernel_grad

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        driving, kernel_grad = self.components(F, J)
        return (driving - kernel_grad) / F.shape[0]  # (P, n): d_i = (Σ_j k_ij g_w(x_j) − kernel_grad_i)/P


__all__ = ["MOOSVGD", "mgda_directions", "normalize_gradients", "numpy_median", "rbf_kernel"]
