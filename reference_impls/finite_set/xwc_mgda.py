r"""XWC-MGDA (id ``xwc-mgda``): MGDA-type descent on the extended weighted Chebyshev problem. Reconstructed.

Paper: Michinari Momma, Chaosheng Dong, Jia Liu, "A Multi-objective / Multi-task Learning Framework
Induced by Pareto Stationarity", ICML 2022 (PMLR 162, momma22a). No official code for the paper was
found; the closest code by the authors' group is the ``WCMGDA`` combinator of amazon-science/MO-LightGBM
(``LightGBM/src/objective/mg_combinator.hpp``, defaults in ``LightGBM/include/LightGBM/config.h``),
a gradient-boosting port. The paper text could not be read here: this implementation follows that
code and the project notes (method-specs D4) and is marked **reconstructed**.

Update rule:
    The problem is the weighted Chebyshev problem with a reference point :math:`z` and a
    preference :math:`r \ge 0`, whose optimum on a front that meets the ray has all weighted gaps
    equal, i.e. :math:`F - z \propto 1/r` (``target_rays``); "extended" (X): the
    Pareto-stationarity weights :math:`\alpha` are bounded below, :math:`\alpha \ge l`:

    .. math::

        \min_x\ \max_{1 \le i \le K}\ r_i \big( f_i(x) - z_i \big)

    Each step, per solution (MO-LightGBM ``WCMGDA::GetCoefficients`` / ``getAlpha``), with
    :math:`J` the Jacobian and :math:`x_0` the solution at the first step (the scales are fixed
    there: ``init_rc_norm``, ``init_K_norm``; D4):

    .. math::

        \tilde r = \frac{r}{\lVert r \odot F(x_0) \rVert}, \qquad c = \tilde r \odot (F - z), \qquad \tilde M = \frac{(\tilde r \tilde r^\top) \odot (J J^\top)}{k_0^2}, \qquad k_0^2 = \lambda_{\max}\big( (\tilde r \tilde r^\top) \odot (J J^\top) \big|_{x_0} \big)

    (``wc − wb`` and ``G2``). The weights solve the proximal dual QP (exact and certified, D1; the
    code's penalty is :math:`u \lVert \tilde M^{1/2} \alpha \rVert`), with :math:`u = 1` (D2) and
    :math:`l` = ``lower`` (0 when :math:`K = 1`):

    .. math::

        \alpha = \arg\max_{\alpha \in \Delta^K,\ \alpha \ge l}\ \alpha^\top c - \frac{u}{2}\, \alpha^\top \tilde M \alpha

    and are mapped back through the preference (``alpha = r_pref ⊙ alpha; alpha /= sum``); the
    runner hands :math:`D` to the problem's optimiser (no run defaults; plain SGD shown, see
    below on Adam) and projects onto the box :math:`\mathcal{X}`:

    .. math::

        w = \frac{r \odot \alpha}{\sum_i r_i \alpha_i}, \qquad D = \sum_{i=1}^K w_i \nabla f_i(x), \qquad x \leftarrow \Pi_{\mathcal{X}}(x - \eta D)

    For :math:`l = 0` the QP is the dual of the prox-linear Chebyshev step
    :math:`\min_d \max_i \big[ c_i - \langle \tilde r_i \nabla f_i, d \rangle / k_0 \big] + \lVert d \rVert^2 / (2u)`
    (the code's SOCP is the dual of the same model under a trust region
    :math:`\lVert d \rVert \le u`); the lower bound :math:`l` keeps every objective in the
    combination. Its fixed points are exactly the Pareto-stationary points
    (:math:`\sum_i w_i \nabla f_i = 0`) whose :math:`c_i` are equal wherever
    :math:`\alpha_i > l` and no larger elsewhere (the QP's KKT conditions at
    :math:`\tilde M \alpha = 0`): the weighted-Chebyshev optimum.

Preferences: rows of non-negative entries, not all zero (a zero entry drops that objective from the
max: weakly Pareto optimal, the other losses reach their reference values; its target ray is then the
indicator of the zero entries). K = 1: gradient descent. Reference point z: ``reference_point`` if
given, else the problem's ideal point passed to :meth:`begin`, else 0 (the code's default
``mo_wc_mgda_refpt = "0"``).

Defaults (source, MO-LightGBM ``config.h``): lower bound l = 1e-6 (``mo_wc_mgda_lb``), z = 0
(``mo_wc_mgda_refpt``); u = 1 (D2: inside the code's tuning range [``mo_mgda_min_u`` = 0.1, max_u = 10]).
Toy settings: the problem's (VLMOP2: SGD, lr 0.5, 500 steps; biquad: SGD, lr 0.05). Not on ZDT1 with
its default Adam: Adam rescales D per coordinate, which is not a combination of the gradients any more,
and the set ends 0.57 from the target rays (5 preferences, seeds 0..2).

Deviations:
    D1. The dual uses the squared penalty :math:`\tfrac{u}{2} \lVert \tilde M^{1/2} \alpha \rVert^2`
        (a QP, solved exactly and certified: :func:`reference_impls.finite_set.ferero.simplex_qp`)
        instead of the code's :math:`u \lVert \tilde M^{1/2} \alpha \rVert` (an SOCP solved by ECOS);
        both are duals of the same linearised Chebyshev model, with a proximal term instead of a
        trust region. The fixed points are the same.
    D2. u is fixed (the code's ``mo_mgda_use_fix_u = true`` mode), at 1: the default code re-tunes u
        in [0.1, 10] every step by a second SOCP (``getUTunedAlpha``), not reproduced, nor the optional
        EMA of α (``wc_mgda_decay``). With u fixed at the code's minimum 0.1, the dual is nearly an LP
        once the gradients have shrunk below their first-step scale: α jumps between vertices and
        the set oscillates around the target (biquad, 5 preferences, 600 steps: distance from the
        target ray 0.055 with u = 0.1, 0 with u = 1).
    D3. z defaults to the problem's ideal point when the runner knows it (the code's default 0 equals
        it on every toy problem here).
    D4. The first-step scales (the norm of the weighted starting losses, and the largest eigenvalue
        of the weighted Gramian) are kept per solution; a zero scale (zero starting losses or a zero
        starting Jacobian) is replaced by 1. Losses or Jacobians with NaN/inf raise NonFiniteError.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod, check_preferences
from reference_impls.finite_set.ferero import check_finite, simplex_qp


class XWCMGDA(SetMethod):
    """D = Σ w_i ∇f_i, w ∝ r ⊙ α, α from the proximal weighted-Chebyshev dual QP (reconstructed)."""

    name = "xwc-mgda"
    needs_preferences = True
    stateful = True

    def __init__(self, u: float = 1.0, lower: float = 1e-6, reference_point: Tensor | None = None) -> None:
        if not u > 0:
            raise ValueError(f"xwc-mgda: u must be positive, got {u}")
        if not 0 <= lower < 1:
            raise ValueError(f"xwc-mgda: the lower bound of the weights must be in [0, 1), got {lower}")
        self.u = float(u)
        self.lower = float(lower)
        self.reference_point = None if reference_point is None else torch.as_tensor(reference_point, dtype=torch.float64)
        self.reset()

    def reset(self) -> None:
        self._z: Tensor | None = None  # (K,) reference point chosen at begin
        self._r_scale: Tensor | None = None  # (P,) ||r ⊙ F(x_0)||
        self._k0_sq: Tensor | None = None  # (P,) k_0² = λ_max(M̃ at x_0)

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self.reset()
        if self.reference_point is None and ideal is not None:
            self._z = torch.as_tensor(ideal, dtype=torch.float64).cpu()

    def target_rays(self, preferences: Tensor) -> Tensor:
        """F − z ∝ 1/r (normalised); rows with zero entries: the indicator of those entries."""
        r = check_preferences(preferences, name="xwc-mgda preferences").to(torch.float64)
        zero = r == 0
        inv = torch.where(zero, torch.zeros_like(r), 1.0 / r.clamp_min(torch.finfo(r.dtype).tiny))
        ray = torch.where(zero.any(1, keepdim=True), zero.to(r), inv)  # (P, K)
        return ray / ray.norm(dim=1, keepdim=True)

    def weights(self, F: Tensor, J: Tensor, preferences: Tensor) -> Tensor:
        """w (P, K) on the simplex with D = Σ_i w_i ∇f_i."""
        P, K, n = J.shape
        check_finite(F, J, "xwc-mgda")
        r = check_preferences(preferences, P, K, name="xwc-mgda preferences").to(torch.float64).cpu()
        F64, J64 = F.detach().to(torch.float64).cpu(), J.detach().to(torch.float64).cpu()
        z = self.reference_point if self.reference_point is not None else self._z
        z = torch.zeros(K, dtype=torch.float64) if z is None else z.to(torch.float64).cpu()
        if z.shape != (K,):
            raise ValueError(f"xwc-mgda: reference point must have {K} entries, got {tuple(z.shape)}")
        M = torch.einsum("pkn,pln->pkl", J64, J64)  # J Jᵀ, (P, K, K)
        if self._r_scale is None or self._r_scale.shape[0] != P:  # first step: fix the scales (D4)
            rs = (r * F64).norm(dim=1)  # ||r ⊙ F(x_0)||, (P,)
            self._r_scale = torch.where(rs > 0, rs, torch.ones_like(rs))
            rt = r / self._r_scale[:, None]
            k0 = torch.linalg.eigvalsh(rt[:, :, None] * M * rt[:, None, :])[:, -1]  # λ_max(M̃_0) = k_0², (P,)
            self._k0_sq = torch.where(k0 > 0, k0, torch.ones_like(k0))
        rt = r / self._r_scale[:, None]  # r̃, (P, K)
        c = rt * (F64 - z)  # r̃ ⊙ (F − z), (P, K)
        Mt = rt[:, :, None] * M * rt[:, None, :] / self._k0_sq[:, None, None]  # M̃ = (r̃r̃ᵀ) ⊙ JJᵀ / k_0²
        lower = np.full((P, K), self.lower if K > 1 else 0.0)
        eps = float(torch.finfo(J.dtype).eps)
        alpha = simplex_qp((self.u * Mt).numpy(), c.numpy(), K, lower=lower, eps=eps, what="xwc-mgda dual QP")  # α, (P, K)
        w = r * torch.from_numpy(alpha)  # r ⊙ α
        s = w.sum(1, keepdim=True)
        w = torch.where(s > 0, w / s.clamp_min(torch.finfo(w.dtype).tiny), torch.full_like(w, 1.0 / K))  # w ∝ r ⊙ α
        return w.to(dtype=J.dtype, device=J.device)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        if preferences is None:
            raise ValueError("xwc-mgda needs one preference vector per solution, got None")
        w = self.weights(F, J, preferences)  # (P, K)
        return torch.einsum("pk,pkn->pn", w, J)  # D = Σ_i w_i ∇f_i, (P, n)
