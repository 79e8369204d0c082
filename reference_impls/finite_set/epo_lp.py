"""The EPO direction LPs shared by EPO (id ``epo``) and EPO Search (id ``epo-search``).

Mahapatra & Rajan, "Multi-Task Learning with User Preferences: Gradient Descent with Controlled
Ascent in Pareto Optimization", ICML 2020 (§3–4), and "Exact Pareto Optimal Search for Multi-Task
Learning and Multi-Criteria Decision-Making", arXiv:2108.00597; official code dbmptr/EPOSearch
``toy_experiments/solvers/epo_lp.py`` (class EPO_LP, functions ``mu`` and ``adjustments``).

For one solution with losses l (K,) > 0, Jacobian G (K, n) and preference r (K,) > 0 (the full
statement, as rendered math, is the ``Update rule`` of :mod:`reference_impls.finite_set.epo`):

* normalised weighted losses l̂ = r ⊙ l / Σ(r ⊙ l); non-uniformity μ = KL(l̂ ‖ 𝟙/K), 0 exactly when
  r ⊙ l ∝ 𝟙; adjustments a = r ⊙ (log(K l̂) − μ), so that Gᵀa descends μ; C = G Gᵀ; J the
  objectives whose entry of Ca is positive, J* the maximisers of r ⊙ l;
* balance mode (μ > ε): maximise αᵀCa over the simplex subject to (Cα) ≥ (Ca) on the entries
  outside J ∪ J* and (Cα) ≥ 0 on J*; if J is empty, subject to Cα ≥ 0 (ICML 2020 Eq. 21–23;
  ``EPO_LP.prob_bal``);
* descent mode (μ ≤ ε): maximise 𝟙ᵀCα over the simplex subject to Cα ≥ 0 and
  αᵀCa ≥ min(max(Ca), 0) (restricted; ``relax=True`` drops the last constraint;
  ``EPO_LP.prob_dom`` / ``prob_rel``);

and the search direction is d = Gᵀα (x ← x − η d). Each LP is solved by the certified
:func:`reference_impls.core.lp.solve_lp` (HiGHS, KKT-checked); the official code uses cvxpy + GLPK.

Numerics: α is invariant to a positive factor on G (C, Ca, the constraints and objectives all scale
by the same factor), so each solution's Jacobian is divided by its largest row norm before forming
C; all-zero gradients give α = 𝟙/K and d = 0 (no LP: every α is optimal).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.lp import solve_lp
from reference_impls.core.sets import check_preferences


def check_epo_inputs(F: Tensor, J: Tensor, preferences: Tensor | None, name: str) -> Tensor:
    """Validate F (P, K) ≥ 0, J (P, K, n) finite and r (P, K) > 0; returns r (P, K) float64."""
    P, K, _ = J.shape
    if preferences is None:
        raise ValueError(f"{name} needs one preference vector per solution, got None")
    if F.shape != (P, K):
        raise ValueError(f"{name}: F must have shape ({P}, {K}), got {tuple(F.shape)}")
    if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
        raise ValueError(f"{name}: the losses or the Jacobians contain NaN or infinite entries")
    r = check_preferences(preferences, P, K, name=f"{name} preferences").to(torch.float64)  # (P, K)
    if bool((r <= 0).any()):
        raise ValueError(f"{name}: preferences must be strictly positive (the target ray r ⊙ l ∝ 𝟙 means l ∝ 1/r)")
    if bool((F < 0).any()):
        raise ValueError(f"{name}: losses must be non-negative (μ uses log(r ⊙ l)); shift them by a lower bound")
    return r


def adjustments(F: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(r ⊙ l (P, K), μ (P,), a (P, K)) for all P solutions at once (official ``adjustments``), float64."""
    K = F.shape[1]
    rl = r * F.to(torch.float64)  # r ⊙ l, (P, K)
    total = rl.sum(1, keepdim=True)  # (P, 1)
    l_hat = torch.where(total > 0, rl / torch.where(total > 0, total, 1.0), 1.0 / K)  # l̂ (all zero: 𝟙/K), (P, K)
    tiny = torch.finfo(torch.float64).eps
    log_kl = torch.log(K * l_hat.clamp_min(tiny))  # log(K l̂), finite for a zero loss (EPO D6), (P, K)
    mu = torch.where(l_hat > 0, l_hat * log_kl, 0.0).sum(1)  # μ = Σ l̂ log(K l̂), 0·log 0 = 0, (P,)
    a = r * (log_kl - mu[:, None])  # a = r ⊙ (log(K l̂) − μ), (P, K)
    return rl, mu.clamp_min(0.0), a  # μ ≥ 0 (KL); rounding can give −1e-17


def scaled_gramians(J: Tensor) -> Tensor:
    """C_p = G_p G_pᵀ (P, K, K), float64, each G_p divided by its largest row norm (α is scale-invariant)."""
    J64 = J.detach().to(torch.float64)  # (P, K, n)
    scale = J64.norm(dim=2).amax(dim=1)  # (P,)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    Js = J64 / scale[:, None, None]  # (P, K, n)
    return Js @ Js.transpose(1, 2)  # (P, K, K)


def epo_alpha(C: np.ndarray, a: np.ndarray, rl: np.ndarray, mu: float, *, eps: float, relax: bool, what: str) -> tuple[np.ndarray, str]:
    """α (K,) on the simplex and the mode ("balance" | "descent") for one solution, by the EPO LPs."""
    K = C.shape[0]
    if not np.any(np.diag(C) > 0):
        return np.full(K, 1.0 / K), "descent" if mu <= eps else "balance"  # G = 0: d = 0 for every α
    Ca = C @ a  # (K,) = G d_bal
    ones = np.ones((1, K))
    if mu > eps:
        J = Ca > 0  # objectives the balance direction would increase
        if J.any():
            rhs = Ca.copy()
            keep = ~J  # (Cα)_j ≥ (Ca)_j for j ∉ J
            J_star = rl == rl.max()  # J* = argmax r ⊙ l (ties: all of them)
            rhs[J_star] = 0.0  # (Cα)_j ≥ 0 for j ∈ J*
            keep = keep | J_star
        else:
            rhs, keep = np.zeros(K), np.ones(K, dtype=bool)  # Cα ≥ 0
        alpha = solve_lp(-Ca, -C[keep], -rhs[keep], ones, np.ones(1), bounds=(0, None), what=f"{what} balance LP")  # max αᵀCa
        mode = "balance"
    else:
        A_ub, b_ub = -C, np.zeros(K)  # Cα ≥ 0
        if not relax:
            A_ub = np.vstack([A_ub, -Ca[None, :]])  # αᵀCa ≥ min(max(Ca), 0)
            b_ub = np.append(b_ub, -min(Ca.max(), 0.0))
        alpha = solve_lp(-C.sum(1), A_ub, b_ub, ones, np.ones(1), bounds=(0, None), what=f"{what} descent LP")  # max 𝟙ᵀCα
        mode = "descent"
    alpha = np.clip(alpha, 0.0, None)  # HiGHS may return −1e-17 on a bound
    return alpha / alpha.sum(), mode


def epo_directions(F: Tensor, J: Tensor, r: Tensor, *, eps: float, relax: bool, name: str) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """(d (P, n) = αᵀG per solution, α (P, K), μ (P,), modes) for validated inputs."""
    P, K, _ = J.shape
    rl, mu, a = adjustments(F, r)
    C = scaled_gramians(J).numpy()  # (P, K, K)
    alpha = np.empty((P, K))
    modes = []
    for p in range(P):  # one LP per solution
        alpha[p], mode = epo_alpha(C[p], a[p].numpy(), rl[p].numpy(), float(mu[p]), eps=eps, relax=relax, what=f"{name} solution {p}")
        modes.append(mode)
    alpha_t = torch.from_numpy(alpha)  # (P, K)
    D = torch.einsum("pk,pkn->pn", alpha_t.to(J), J)  # d_p = Σ_i α_pi g_pi, (P, n)
    return D, alpha_t, mu, modes


def epo_circle_preferences(P: int) -> Tensor:
    """The EPO toy's preferences (P, 2): angles linspace(π/20, 9π/20, P) (official ``circle_points``), scaled onto the simplex."""
    if P < 1:
        raise ValueError(f"need P >= 1, got {P}")
    t = torch.linspace(math.pi / 20, 9 * math.pi / 20, P, dtype=torch.float64)  # (P,)
    u = torch.stack([torch.cos(t), torch.sin(t)], dim=1)  # (P, 2)
    return u / u.sum(1, keepdim=True)


def inverse_rays(preferences: Tensor) -> Tensor:
    """EPO's target rays (P, K): l ∝ 1/r, normalised to unit length (the ray from the ideal point 0)."""
    inv = 1.0 / preferences.to(torch.float64)  # (P, K)
    return inv / inv.norm(dim=1, keepdim=True)
