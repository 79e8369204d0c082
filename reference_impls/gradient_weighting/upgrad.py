r"""UPGrad — Unconflicting Projection of Gradients.

Paper: P. Quinton and V. Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232,
2024. Official code: TorchJD (github.com/TorchJD/torchjd, ``aggregation/_upgrad.py`` and
``aggregation/_utils/dual_cone.py``).

Update rule:
    In the paper's notation (rows :math:`g_i` of the Jacobian :math:`J`, Gramian :math:`M = J J^\top`),
    Eq. (3) defines the projection onto the dual cone of the rows, and UPGrad (the paper's
    definition) averages the projected gradients with the preference :math:`p = \mathbf{1}/K`:

    .. math::

        \pi_J(x) = \arg\min_{y:\ J y \ge 0} \lVert y - x \rVert^2, \qquad d = \sum_{i=1}^{K} p_i \, \pi_J(g_i)

    By Proposition 1, :math:`\pi_J(J^\top u) = J^\top v` with
    :math:`v = \arg\min_{v \ge u} v^\top M v`, so the code computes weights from the Gramian alone,
    with the official code's numerics in :math:`\tilde M`: :math:`\epsilon_{\mathrm{norm}}` =
    ``norm_eps`` and :math:`\epsilon_{\mathrm{reg}}` = ``reg_eps``, both 1e-4 by default (both 0 give
    the paper's exact operator, see D2 and D3); with :math:`e_i` the i-th standard basis vector,
    :math:`g_i = J^\top e_i`:

    .. math::

        \tilde M = \begin{cases} M / \operatorname{tr}(M) + \epsilon_{\mathrm{reg}} I & \text{if } \operatorname{tr}(M) \ge \epsilon_{\mathrm{norm}} \text{ and } \operatorname{tr}(M) > 0 \\ \epsilon_{\mathrm{reg}} I & \text{otherwise} \end{cases}

    .. math::

        v^{(i)} = \arg\min_{v \ge p_i e_i} v^\top \tilde M v, \qquad w = \sum_{i=1}^{K} v^{(i)}, \qquad d = J^\top w

    Each K-dimensional quadratic program is solved exactly, in float64 on the CPU, by the certified
    active-set solver ``reference_impls.core.solvers.dual_cone_weights``: zero rows are removed
    first (they constrain nothing and keep their lower bound), the Gramian is Jacobi-scaled
    (:math:`C = D \tilde M D` with :math:`D = \operatorname{diag}(\tilde M_{ii})^{-1/2}`, so rows of very
    different norms cost no precision), and the K problems (sharing C) are solved together by
    batched block principal pivoting (Júdice & Pires 1994; Kim & Park 2011), a row left uncertified
    after a few sweeps falling back to Lawson–Hanson on C. The KKT conditions of the QP with lower
    bound :math:`u`,

    .. math::

        \tilde M v \ge 0, \qquad v \ge u, \qquad (v - u)^\top \tilde M v = 0

    are checked per task with tolerance
    :math:`\kappa \lVert g_i \rVert \sum_j \lvert v_j \rvert \lVert g_j \rVert`
    (:math:`\kappa = 32 K \varepsilon`, ε the machine epsilon of the input dtype), and SolverError
    is raised when they fail. Summed over i, the first one gives
    :math:`J d = M w \ge -\epsilon_{\mathrm{reg}} \operatorname{tr}(M) \, w`, i.e. :math:`J d \ge 0`
    (no conflict) when ``reg_eps`` = 0, to that per-task rounding tolerance. A float32 Gramian that
    is PSD only to rounding is replaced by its nearest PSD matrix (a change of order K·ε).

Hyperparameters (paper / official code): ``pref_vector`` = 𝟙/K, ``norm_eps`` = 1e-4,
``reg_eps`` = 1e-4 (both official-code numerics; 0 and 0 give the paper's exact operator).

Properties: J d ≥ 0 (``reg_eps = 0``; otherwise J d ≥ −reg_eps·tr(M)·w); d(cJ) = c·d(J) for c > 0
(the weights depend on M only up to a positive factor); with ``reg_eps = 0`` the map is linear
under positive row scalings (the dual cone of diag(c)J is that of J); row-permutation invariant
(with the mean preference); for K = 2, ``pref_vector = (1, 1)`` and ``norm_eps = reg_eps = 0`` it
equals PCGrad.

Degenerate inputs: all-zero J → d = 0 (w = p); a zero row is projected to zero and constrains
nothing (it is removed before the solve, so d equals the answer without it); identical rows → d =
the common row; opposite rows g, −g → d = 0 (the dual cone is the hyperplane g⊥); collinear rows of both signs → d = 0 with reg_eps = 0 (a small multiple of g,
O(reg_eps), otherwise); K = 1 → d = the single row; ‖J‖ (Frobenius) < 0.01 → d = Jᵀp with the defaults (D2).

Deviations:
    D1. Solver: certified batched block pivoting / active set on the Jacobi-scaled Gramian (KKT
        residual at float64 rounding, per task) instead of the official quadprog dense QP, one call
        per row; the solution is the same (tests compare it with scipy's NNLS on Gᵀ, row by row). K = 2
        runs the same steps on Python floats, each row's QP by enumerating its at most four faces
        (``solvers.dual_cone_weights2``, certified by the same per-task KKT test; agreement with the
        general path tested to 1e-12 relative), falling back to the general solver when it declines.
    D2. The official normalisation threshold ``norm_eps`` = 1e-4 applies to
        :math:`\operatorname{tr}(M) = \lVert J \rVert_F^2` in absolute terms: when
        :math:`\lVert J \rVert_F < 0.01` the official code (and this one, by default) replaces
        :math:`\tilde M` by :math:`\epsilon_{\mathrm{reg}} I`, so the weights become p and
        :math:`d = J^\top p` (the mean of the gradients, which may conflict). Set ``norm_eps = 0`` to keep
        the paper's operator at every scale.
    D3. With ``reg_eps`` > 0 (official default) the operator is the UPGrad of the augmented Jacobian
        :math:`[J, \sqrt{\epsilon_{\mathrm{reg}} \operatorname{tr}(M)} \, I]`: :math:`J d \ge 0` holds only up to
        :math:`-\epsilon_{\mathrm{reg}} \operatorname{tr}(M) \, w`, and linearity under row scalings is lost
        (relative errors up to ~0.8 for K = 32 with unequal row norms); positive homogeneity
        d(cJ) = c·d(J) stays exact. ``reg_eps = 0`` gives the paper's exact properties.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_weighting.upgrad import UPGrad
    >>> d = UPGrad()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.2929, 1.9004, 1.9004]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting
from reference_impls.core.solvers import (
    _EPS64,
    combine2,
    dtype_eps,
    dual_cone_weights,
    dual_cone_weights2,
    float_info,
    gramian2_entries,
    gramian2_rows,
    small_tensor,
)

__all__ = ["UPGrad", "dual_cone_weights"]  # dual_cone_weights: the certified solver of core.solvers


class UPGrad(GramianWeighting):
    """d = Σ_i p_i π_J(g_i): the preference-weighted projections of the g_i onto the dual cone of J."""

    name = "upgrad"

    def __init__(
        self,
        pref_vector: Sequence[float] | Tensor | None = None,
        norm_eps: float = 1e-4,
        reg_eps: float = 1e-4,
    ) -> None:
        if norm_eps < 0 or reg_eps < 0:
            raise ValueError(f"norm_eps and reg_eps must be >= 0, got {norm_eps} and {reg_eps}")
        self.pref_vector = None if pref_vector is None else [float(p) for p in torch.as_tensor(pref_vector).reshape(-1)]
        if self.pref_vector is not None and min(self.pref_vector) < 0:
            raise ValueError("pref_vector must be non-negative")
        self.norm_eps = float(norm_eps)
        self.reg_eps = float(reg_eps)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        if K == 2:
            w = self._weights2(M)
            if w is not None:
                return w
        M64 = M.detach().to("cpu", torch.float64).numpy()  # (K, K)
        if self.pref_vector is None:
            p = np.full(K, 1.0 / K)  # p = 𝟙/K
        elif len(self.pref_vector) != K:
            raise ValueError(f"pref_vector has {len(self.pref_vector)} entries for {K} tasks")
        else:
            p = np.asarray(self.pref_vector, dtype=np.float64)
        trace = float(np.trace(M64))
        M_tilde = np.zeros_like(M64) if trace < self.norm_eps or trace == 0.0 else M64 / trace  # M̃ = M / tr(M)
        M_tilde = M_tilde + self.reg_eps * np.eye(K)  # M̃ + reg_eps·I
        V = dual_cone_weights(M_tilde, np.diag(p), eps=dtype_eps(M))  # (K, K): row i is v^(i), v^(i) ≥ p_i e_i
        w = V.sum(axis=0)  # w = Σ_i v^(i)
        return torch.from_numpy(w).to(device=M.device, dtype=M.dtype)

    def _weights2(self, M: Tensor) -> Tensor | None:
        """K = 2 on Python floats (D1): the steps below on the entries, then the dual-cone projections of the
        two rows by :func:`~reference_impls.core.solvers.dual_cone_weights2` (at most four faces each, closed
        form, certified). None when that solver declines: the general path then runs."""
        entries = gramian2_entries(M)  # Python floats; None: not a finite 2×2 CPU tensor
        if entries is None:
            return None
        w = self._weights2_entries(*entries, float_info(M.dtype)[0])
        return None if w is None else small_tensor(w, M.dtype)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): the weights of :meth:`_weights2` from M = J Jᵀ and d = Jᵀw on
        Python floats, the general (batched Gramian) path's bits; None where the general path must decide."""
        entries = gramian2_rows(rows)  # M as torch's J @ J.T rounds it; None: not two finite rows of two floats
        w = None if entries is None else self._weights2_entries(*entries, _EPS64)
        return None if w is None else combine2(w[0], w[1], rows[0], rows[1])  # d = Jᵀw

    def _weights2_entries(self, m11: float, m12: float, m21: float, m22: float, eps: float) -> tuple[float, float] | None:
        """:meth:`_weights2` on the entries of a finite 2×2 Gramian (``eps``: its dtype's), w = (w_1, w_2) or None."""
        if self.pref_vector is None:
            p1 = p2 = 0.5  # p = 𝟙/K
        elif len(self.pref_vector) != 2:
            return None  # the general path raises the error
        else:
            p1, p2 = self.pref_vector
        trace = m11 + m22
        if trace < self.norm_eps or trace == 0.0:
            return None  # M̃ = reg_eps·I (D2): the general path
        reg = self.reg_eps
        V = dual_cone_weights2(m11 / trace + reg, m12 / trace, m21 / trace, m22 / trace + reg, ((p1, 0.0), (0.0, p2)), eps)
        if V is None:
            return None
        (v11, v12), (v21, v22) = V  # v^(i) ≥ p_i e_i
        return v11 + v21, v12 + v22  # w = Σ_i v^(i)
