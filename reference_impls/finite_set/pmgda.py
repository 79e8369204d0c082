r"""PMGDA (id ``pmgda``): predict-and-correct MGDA towards a preference constraint h(F) = 0.

Paper: Xiaoyuan Zhang, Xi Lin, Qingfu Zhang, "PMGDA: A Preference-based Multiple Gradient Descent
Algorithm", arXiv 2402.09492, 2024. Official code (as integrated in LibMOON):
xzhang2523/libmoon ``libmoon/solver/gradient/methods/pmgda_solver.py`` (``solve_pmgda``,
``get_pmgda_DWA_coeff``, ``constraint``/``pbi``) and ``libmoon/config/pmgda.json``.

Update rule:
    Per solution, with losses :math:`F \in \mathbb{R}^K`, gradients :math:`\nabla f_i` and unit
    preference :math:`\hat\lambda = r / \lVert r \rVert`, the preference constraint is PBI's
    :math:`d_2`, the distance of :math:`F` from the ray through :math:`r` (official
    ``constraint``, PBI mode), with its gradient by the chain rule through the losses:

    .. math::

        e = F - (F^\top \hat\lambda)\, \hat\lambda, \qquad h(F) = \lVert e \rVert, \qquad \frac{\partial h}{\partial F} = \frac{e}{h}, \qquad \nabla h = \sum_{i=1}^K \frac{\partial h}{\partial f_i} \nabla f_i

    Prediction, :math:`h < h_\epsilon` (paper Eq. 8, dual Eq. 11; solved exactly and certified,
    D3): the min-norm point of the gradients in the tangent space of the constraint (primal:
    :math:`\min_{v, a}\ a + \tfrac{1}{2}\lVert v \rVert^2` s.t.
    :math:`\langle \nabla f_i, v \rangle \le a`, :math:`\langle \nabla h, v \rangle = 0`):

    .. math::

        (\mu, \nu) = \arg\min_{\mu \in \Delta^K,\ \nu \in \mathbb{R}} \left\lVert \sum_{i=1}^K \mu_i \nabla f_i + \nu \nabla h \right\rVert^2, \qquad D = \sum_{i=1}^K \mu_i \nabla f_i + \nu \nabla h

    Correction, :math:`h \ge h_\epsilon` (paper Eq. 20, official LP; HiGHS, certified, D1): with
    the unit rows :math:`\hat g_j = G_j / \lVert G_j \rVert` of
    :math:`G = [\nabla f_1; \dots; \nabla f_K; \nabla h]` (zero rows stay zero, D2),

    .. math::

        \min_{\mu \in \Delta^{K+1},\ t \in \mathbb{R}}\ t \quad \text{s.t.} \quad \langle \nabla f_i, d \rangle \ge -t \ (i \le K), \quad \langle \nabla h, d \rangle \ge \sigma \lVert \nabla h \rVert, \qquad d = \sum_{j=1}^{K+1} \mu_j \hat g_j, \qquad D = d

    i.e. loss weights :math:`\mu_i / \lVert \nabla f_i \rVert + (\mu_{K+1} / \lVert \nabla h \rVert)\, \partial h / \partial f_i`
    (paper Eq. 18, ``get_pmgda_DWA_coeff``): the direction decreases :math:`h` at a rate of at
    least :math:`\sigma \lVert \nabla h \rVert` per unit step while keeping the worst objective's
    increase as small as possible. Where :math:`\nabla h` vanishes the constraint is dropped
    (:math:`\nu = 0`, prediction; D4). The runner hands :math:`D` to the problem's optimiser (no
    run defaults are set here; LibMOON uses Adam) and projects onto the box :math:`\mathcal{X}`;
    with plain SGD the step is

    .. math::

        x \leftarrow \Pi_{\mathcal{X}}(x - \eta D)

Preferences: rows of non-negative entries (not all zero); each solution should end on the ray
through its preference from the origin (``target_rays`` is the unit row); a zero entry asks for that
loss to be 0 on that solution. K = 1: h ≡ 0, plain gradient descent.

Defaults (source): ``h_eps`` = 0.01, σ = 0.95 (``libmoon/config/pmgda.json``, the values the LibMOON core
reads); LibMOON's synthetic runs use Adam, lr 1e-3, 500 epochs (``PMGDASolver``, ``GradBaseSolver``).
No run defaults are set here (the problem's apply). The step must keep lr·σ·‖∇h‖ < 2·``h_eps``, or the
correction overshoots the ray and the set 2-cycles with h > ``h_eps`` (VLMOP2: lr ≤ 0.02; the problem's
0.5 fails). On box-constrained ZDT1 the correction direction is largely removed by the projection
onto the box and h stalls above ``h_eps`` (0.013-0.08): see tests/reference_impls/test_pmgda.py.

Deviations: (from the paper and the official code)
    D1. The correction LP is solved by HiGHS and certified (reference_impls.core.lp.solve_lp) instead
        of cvxopt with an unchecked status; its rows are divided by the largest row norm of G (the
        same LP, so the answer does not depend on the scale of the losses).
    D2. The unit rows are :math:`\hat g_j = G_j / \lVert G_j \rVert` exactly (zero rows stay zero).
        LibMOON divides by the row norm plus 1e-4, which makes the LP infeasible whenever
        ‖∇h‖ < σ·1e-4/(1 − σ) ≈ 1.9e-3 (then cvxopt returns no x and ``solve_pmgda`` crashes), and
        its loss weights use the row norms without the 1e-4, so LibMOON's step is not the LP's d.
    D3. The prediction step is the paper's tangent-space QP (solved exactly, certified:
        :func:`reference_impls.finite_set.ferero.simplex_qp`); LibMOON uses plain MGDA there
        (``solve_mgda``, and for K = 2 ``solve_mgda_analy`` clips the weight to [0.001, 0.999]).
    D4. Where ∇h vanishes (F on the ray: h = 0 and its derivative is undefined; or
        :math:`\lVert \nabla h \rVert \le 64 K \epsilon \sum_i \lvert \partial h / \partial f_i \rvert\, \lVert \nabla f_i \rVert`),
        the constraint is dropped for that step: the prediction QP runs with ν = 0 (MGDA), whatever
        h is (the correction LP is not used).
    D5. LibMOON-only defects not reproduced: ``PMGDASolver(sigma=0.1, h_tol=1e-3)`` ignores both
        arguments (the core reads the config file: σ = 0.95, ``h_eps`` = 0.01); older versions read the
        config from a hard-coded Windows path; ``pbi`` casts the preference to float32.
    D6. Losses or Jacobians with NaN/inf raise NonFiniteError (a ValueError).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.lp import solve_lp
from reference_impls.core.sets import SetMethod, check_preferences
from reference_impls.finite_set.ferero import check_finite, simplex_qp, unit_rays


class PMGDA(SetMethod):
    """Prediction (tangent min-norm QP) while h < h_eps, correction (LP) otherwise; h = PBI distance to the ray."""

    name = "pmgda"
    needs_preferences = True

    def __init__(self, h_eps: float = 0.01, sigma: float = 0.95) -> None:
        if not h_eps > 0:
            raise ValueError(f"pmgda: h_eps must be positive, got {h_eps}")
        if not 0 < sigma <= 1:
            raise ValueError(f"pmgda: sigma must be in (0, 1], got {sigma}")
        self.h_eps = float(h_eps)
        self.sigma = float(sigma)

    def target_rays(self, preferences: Tensor) -> Tensor:
        return unit_rays(check_preferences(preferences, name="pmgda preferences").to(torch.float64))

    @staticmethod
    def constraint(F: Tensor, preferences: Tensor) -> tuple[Tensor, Tensor]:
        """h (P,) = ||F − (Fᵀλ̂)λ̂|| and ∂h/∂F (P, K) = e/h (zero where h = 0), λ̂ = r/||r||."""
        lam = unit_rays(preferences.to(F.dtype))  # λ̂, (P, K)
        e = F - (F * lam).sum(1, keepdim=True) * lam  # F − (Fᵀλ̂)λ̂, (P, K)
        h = e.norm(dim=1)  # (P,)
        dh = torch.where(h[:, None] > 0, e / h.clamp_min(torch.finfo(F.dtype).tiny)[:, None], torch.zeros_like(e))  # ∂h/∂F
        return h, dh

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if preferences is None:
            raise ValueError("pmgda needs one preference vector per solution, got None")
        check_finite(F, J, "pmgda")
        r = check_preferences(preferences, P, K, name="pmgda preferences")
        eps = float(torch.finfo(J.dtype).eps)
        F64, J64 = F.detach().to(torch.float64).cpu(), J.detach().to(torch.float64).cpu()
        h, dh = self.constraint(F64, r.to(torch.float64).cpu())  # (P,), (P, K)
        grad_h = torch.einsum("pk,pkn->pn", dh, J64)  # ∇h = Σ_i ∂h/∂f_i ∇f_i, (P, n)
        G = torch.cat([J64, grad_h[:, None, :]], dim=1)  # [∇f_1..∇f_K; ∇h], (P, K + 1, n)
        norms = G.norm(dim=2)  # (P, K + 1)
        h_scale = (dh.abs() * norms[:, :K]).sum(1)  # rounding scale of ∇h
        h_dead = norms[:, K] <= 64.0 * K * eps * h_scale  # D4: no usable ∇h
        D = torch.zeros(P, n, dtype=torch.float64)
        predict = (h < self.h_eps) | h_dead
        if bool(predict.any()):
            D[predict] = self._predict(G[predict], h_dead[predict], eps)
        G_np, norms_np = G.numpy(), norms.numpy()
        for p in torch.nonzero(~predict).flatten().tolist():  # the LP is per solution
            D[p] = torch.from_numpy(self._correct(G_np[p], norms_np[p]))
        return D.to(dtype=J.dtype, device=J.device)

    @staticmethod
    def _predict(G: Tensor, h_dead: Tensor, eps: float) -> Tensor:
        """D = Σ μ_i ∇f_i + ν∇h with (μ, ν) = argmin_{μ∈Δ, ν∈R} ||Σ μ_i ∇f_i + ν∇h||² (paper Eq. 11), (B, n)."""
        Q = torch.einsum("pin,pjn->pij", G, G)  # Gram of [∇f; ∇h], (B, K + 1, K + 1)
        K = G.shape[1] - 1
        Q[h_dead, K, :] = 0.0  # D4: ν = 0 when ∇h vanishes
        Q[h_dead, :, K] = 0.0
        y = simplex_qp(Q.numpy(), np.zeros(Q.shape[:2]), K, eps=eps, what="pmgda prediction QP")  # (μ, ν), (B, K + 1)
        y = torch.from_numpy(y)
        y[h_dead, K] = 0.0
        return torch.einsum("pj,pjn->pn", y, G)  # D = Σ μ_i ∇f_i + ν ∇h

    def _correct(self, G: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """D = d = Σ_j μ_j ĝ_j from the correction LP (paper Eq. 20), (n,)."""
        K = G.shape[0] - 1
        G_hat = G / np.where(norms > 0, norms, 1.0)[:, None]  # ĝ_j (zero rows stay zero), (K + 1, n)
        s = float(norms.max())  # D1: common row scale
        GGn = (G @ G_hat.T) / s  # ⟨G_i, ĝ_j⟩ / s, (K + 1, K + 1)
        A_ub = np.zeros((K + 1, K + 2))
        A_ub[:, : K + 1] = -GGn  # −⟨G_i, d⟩
        A_ub[:K, K + 1] = -1.0  # −⟨∇f_i, d⟩ − t ≤ 0
        b_ub = np.zeros(K + 1)
        b_ub[K] = -self.sigma * float(norms[K]) / s  # −⟨∇h, d⟩ ≤ −σ||∇h||
        A_eq = np.ones((1, K + 2))
        A_eq[0, K + 1] = 0.0  # Σ μ_j = 1
        c = np.zeros(K + 2)
        c[K + 1] = 1.0  # minimise t
        bounds = [(0.0, None)] * (K + 1) + [(None, None)]
        x = solve_lp(c, A_ub, b_ub, A_eq, np.ones(1), bounds, what="pmgda correction LP")
        return x[: K + 1] @ G_hat  # d = Σ_j μ_j ĝ_j
