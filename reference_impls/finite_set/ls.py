r"""Linear scalarisation (id ``ls``): the baseline every preference-vector paper compares with.

Each solution p minimises its own weighted sum of the losses with its preference r_p scaled onto the
simplex. Where that sum is convex (biquad, ZDT1's convex front) the limit is the front point whose
normal is r_p; on a concave front (VLMOP2) every interior preference ends at one of the front's
ends: the failure that "Pareto Multi-Task Learning" (Lin et al., NeurIPS 2019, Figure 2, its synthetic example; the catalog
record this baseline is filed under) and EPO (Mahapatra & Rajan, ICML 2020) show against it.

Source: the weighted-sum method (Zadeh 1963; Miettinen, Nonlinear Multiobjective Optimization,
1999, §3.1); the papers above use it with the same preference vectors as their own method.

Update rule:
    Solution :math:`p` (of :math:`P`) at :math:`x_p` with losses :math:`f_1, \dots, f_K` and
    preference :math:`r_p \in \mathbb{R}^K_{\ge 0}` descends the weighted sum of its losses, with
    the weights scaled onto the simplex (D1); all :math:`P` directions are one batched product.

    .. math::

        \hat r_p = \frac{r_p}{\sum_{i=1}^K r_{p,i}}, \qquad g_p(x) = \sum_{i=1}^K \hat r_{p,i}\, f_i(x), \qquad D_p = \nabla g_p(x_p) = \sum_{i=1}^K \hat r_{p,i}\, \nabla f_i(x_p)

    The runner hands :math:`D_p` to its optimiser as the gradient of :math:`x_p` (the problem's
    default optimiser; no run defaults are set here) and projects onto the problem's box
    :math:`\mathcal{X}`; with plain SGD the step is

    .. math::

        x_p \leftarrow \Pi_{\mathcal{X}}\big(x_p - \eta\, D_p\big)

Preferences: rows of non-negative entries with at least one positive entry (ValueError otherwise).
A zero entry drops that objective from solution p's sum (its limit is then a minimiser of the
others, weakly Pareto optimal); K = 1 is plain gradient descent; duplicate rows give identical
directions.

Deviations:
    D1. Rows are scaled onto the simplex (r̂ = r / Σr), so only a row's direction matters and the
        step size does not depend on how the caller scales r.
"""

from __future__ import annotations

from torch import Tensor

from reference_impls.core.sets import SetMethod, check_preferences


class LS(SetMethod):
    """D_p = Σ_i r̂_pi ∇f_i(x_p) with r̂_p = r_p/Σ_i r_pi (linear scalarisation of each solution)."""

    name = "ls"
    needs_preferences = True

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, _ = J.shape
        if preferences is None:
            raise ValueError("ls needs one preference vector per solution, got None")
        r = check_preferences(preferences, P, K, name="ls preferences").to(J)  # (P, K)
        r_hat = r / r.sum(1, keepdim=True)  # r̂ = r/Σr, (P, K)
        return (r_hat[:, :, None] * J).sum(1)  # D_p = Σ_i r̂_pi ∇f_i(x_p), (P, n)
