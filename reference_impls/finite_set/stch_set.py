r"""TCH-Set and STCH-Set: a few solutions that together serve many objectives ("few for many").

Paper: Xi Lin, Yilu Liu, Xiaoyuan Zhang, Fei Liu, Zhenkun Wang, Qingfu Zhang, "Few for Many: Tchebycheff
Set Scalarization for Many-Objective Optimization", ICLR 2025 (arXiv 2405.19650). Official code:
Xi-L/STCH-Set (``run_quad_func.py``: the scalarisations and the synthetic run; ``problem.py``;
``model_set_quad_func.py``: the set is one (K, n) parameter initialised U(0, 1)).

Source of the formulas: the official code (exact for λ = 𝟙, z = 0, one μ) and the paper's definitions as
transcribed from arXiv v3 (the full text was not reachable here; the bounds below are derived, not copied).

Notation. The paper has m objectives and K solutions; this project's sets have P solutions and K
objectives (F (P, K), J (P, K, n)). Below, with the project's letters: P solutions, K objectives.

Update rule:
    TCH-Set (id ``tch-set``, the paper's Tchebycheff set scalarisation, ``tch_set_value``), with a
    positive preference :math:`\lambda \in \mathbb{R}^K_{>0}` and the ideal point :math:`z`: every
    objective is judged by the best solution for it, and minimising :math:`g` minimises the
    worst-served objective:

    .. math::

        g(X) = \max_{1 \le i \le K} \lambda_i \Big( \min_{1 \le p \le P} f_i(x_p) - z_i \Big)

    :math:`g` is not differentiable where the max or a min is tied, so the direction is the
    min-norm element of the convex hull of the active pieces' gradients (D3; as ``tch`` does for
    one solution). With :math:`u_{pi} = \lambda_i (f_i(x_p) - z_i)`,
    :math:`t_i = \min_p u_{pi}` and :math:`a_i = \min_p f_i(x_p)`, a pair :math:`(i, p)` is active
    when objective :math:`i` attains the max and solution :math:`p` attains its min, both within the
    band :math:`\tau` (``tie_tol`` defaults to 1e-3; :math:`\epsilon` the dtype's epsilon):

    .. math::

        \mathcal{A} = \{ (i, p) : t_i \ge g - \tau,\ u_{pi} \le t_i + \tau \}, \qquad \tau = \mathrm{tie\_tol}\, \lvert g \rvert + 64\, \epsilon \sum_{i=1}^K \lambda_i \big( \lvert a_i \rvert + \lvert z_i \rvert \big)

    Each active pair's generator is :math:`\lambda_i \nabla f_i(x_p)` placed in row :math:`p` of a
    :math:`P \times n` direction (generators of different rows are orthogonal, so the Gram matrix
    is block-diagonal); the certified min-norm weights :math:`\nu` give the direction, and the
    runner steps :math:`X \leftarrow X - \eta D`:

    .. math::

        \nu = \arg\min_{\nu \in \Delta^{|\mathcal{A}|}} \sum_{p=1}^P \left\lVert \sum_{(i, p) \in \mathcal{A}} \nu_{ip}\, \lambda_i \nabla f_i(x_p) \right\rVert^2, \qquad D_p = \sum_{(i, p) \in \mathcal{A}} \nu_{ip}\, \lambda_i \nabla f_i(x_p)

    With a single active pair this is the plain gradient :math:`\lambda_i \nabla f_i(x_p)` in row
    :math:`p`, what the official code's autograd of max(min(·)) gives. :math:`-D` decreases every
    active piece at a rate of at least :math:`\lVert D \rVert^2`, and :math:`D = 0` exactly when 0
    lies in that hull (Clarke stationarity with the band's pieces).

    STCH-Set (id ``stch-set``, the smooth version, ``stch_set_value``) replaces the min by a smooth
    minimum and the max by a smooth maximum with the same smoothing parameter :math:`\mu > 0` (the
    paper's smooth set scalarisation, :math:`\lambda` outside the smooth minimum), computed with
    shifted log-sum-exps (D4):

    .. math::

        \operatorname{smin}_i(X) = -\mu \log \sum_{p=1}^P e^{-f_i(x_p)/\mu}, \qquad g_\mu(X) = \mu \log \sum_{i=1}^K e^{\lambda_i (\operatorname{smin}_i(X) - z_i)/\mu}

    Its gradient for solution :math:`p` is the direction (``stch_set_weights``; the runner steps
    :math:`X \leftarrow X - \eta D`):

    .. math::

        D_p = \sum_{i=1}^K w_i \lambda_i \pi_{pi} \nabla f_i(x_p), \qquad w = \operatorname{softmax}_i\Big( \frac{\lambda_i (\operatorname{smin}_i - z_i)}{\mu} \Big), \qquad \pi_{\cdot i} = \operatorname{softmax}_p\Big( -\frac{f_i(x_p)}{\mu} \Big)

    Smoothing bounds (derived here from the definitions, since
    :math:`a_i - \mu \log P \le \operatorname{smin}_i \le a_i` and the log-sum-exp lies within
    :math:`\mu \log K` above the max; tested in ``test_stch_set.py``):

    .. math::

        g(X) - \mu \max_i \lambda_i \log P \ \le\ g_\mu(X) \ \le\ g(X) + \mu \log K

    which is the paper's "TCH-Set − μ log K ≤ STCH-Set ≤ TCH-Set + μ log m" (its letters) when the
    largest preference entry is at most 1 (λ on the simplex, or the official λ = 𝟙). Both ends are
    approached: the lower when the P solutions coincide and one objective dominates the others; the
    upper when every objective has one solution far better than the rest and all terms
    :math:`\lambda_i (a_i - z_i)` are equal. :math:`g_\mu \to g` as :math:`\mu \to 0` at rate μ.

Defaults and their source:
    * μ = 0.1 (official ``run_quad_func.py``: ``mu = 0.1`` for STCH-Set).
    * λ = 𝟙 (the official code has no preference: ``max(min(value_set))`` and ``logsumexp`` with unit weights);
      ``preference=`` takes any positive (K,) vector.
    * z = the problem's ideal point when the runner passes ``begin(ideal=...)``, else 0 (the official code's
      z = 0; every non-negative toy whose objectives reach 0 has ideal point 0, D2).
    * Optimiser: plain SGD, lr 1e-2, 10 000 steps (official ``run_quad_func.py`` on its 128-objective
      quadratic: schedule-free SGD, lr 1e-2, warm-up 100, 10 000 steps; D1).

μ is in the losses' units: on ``clusters`` (losses ~0.02 at the optimum) μ = 0.1 smooths the outer max
towards a mean, and the worst objective lands between the sum-of-minimum and the minimax optima
(0.0244 vs 0.0248 and 0.0171 on seed 0); μ = 1e-3 reaches the minimax optimum within 2 % from a start in
its basin, but from random starts a small μ strands solutions as TCH-Set does (tests/reference_impls/test_stch_set.py).

Deviations: (from the paper and from the official code)
    D1. Plain SGD (the runner's) instead of ``schedulefree.SGDScheduleFree(lr=1e-2, warmup_steps=100)`` (its
        base sequence is SGD at the same lr; it returns an average of the iterates); the starting set is the
        problem's, not uniform in the unit cube.
    D2. The ideal point: the problem's where known (the runner passes it), else 0 as in the official code.
    D3. TCH-Set's direction at ties is the min-norm element of the active pieces (a steepest-descent
        ε-subgradient with the ``tie_tol`` band) instead of autograd's arbitrary one-piece subgradient; with
        ``tie_tol=0`` and no exact tie both agree.
    D4. Computed stably in the input dtype: the smooth minimum as
        :math:`a_i - \mu \log \sum_p \exp(-(f_i(x_p) - a_i)/\mu)` and the outer log-sum-exp shifted by
        its maximum, so losses from 1e-12 to 1e12 (and μ from 1e-8 up) neither overflow nor lose the
        minimum (torch.logsumexp shifts too; the official code relies on it).
    D5. The paper also allows a separate smoothing parameter per objective for the inner smooth minimum;
        like the official code, one μ is used for both.

Degenerate inputs: P = 1 (the smooth minimum is f exactly, and the smooth scalarisation is the
single-solution smooth Tchebycheff), K = 1 (only the best solution moves under TCH-Set; STCH-Set moves
each by its softmin share), identical solutions (the softmin shares are uniform: each gets 1/P of the
objective's weight), zero gradients (D = 0). Non-finite F or J, a non-positive or non-finite μ,
preference or ideal raise ValueError; so does an overflow of a weighted term.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod
from reference_impls.core.solvers import min_norm_weights


def _check(F: Tensor, J: Tensor | None, what: str) -> None:
    if F.ndim != 2 or F.shape[0] < 1 or F.shape[1] < 1:
        raise ValueError(f"{what}: expected F of shape (P, K) with P, K >= 1, got {tuple(F.shape)}")
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"{what}: the losses contain NaN or infinite values")
    if J is not None:
        if J.ndim != 3 or J.shape[:2] != F.shape:
            raise ValueError(f"{what}: expected J of shape (P, K, n) matching F {tuple(F.shape)}, got {tuple(J.shape)}")
        if not bool(torch.isfinite(J).all()):
            raise ValueError(f"{what}: the Jacobians contain NaN or infinite values")


def _vector(value: Tensor | float | None, F: Tensor, default: float, what: str, *, positive: bool) -> Tensor:
    """λ or z as a (K,) tensor in F's dtype (``default`` everywhere when None); checked."""
    K = F.shape[1]
    if value is None:
        return torch.full((K,), default, dtype=F.dtype, device=F.device)
    v = torch.as_tensor(value, dtype=F.dtype, device=F.device).reshape(-1)
    if v.numel() == 1:
        v = v.expand(K)
    if v.shape[0] != K or not bool(torch.isfinite(v).all()):
        raise ValueError(f"{what}: expected {K} finite entries, got {tuple(v.shape)}")
    if positive and not bool((v > 0).all()):
        raise ValueError(f"{what}: entries must be positive")
    return v


def _check_mu(mu: float) -> float:
    mu = float(mu)
    if not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"stch-set: the smoothing parameter mu must be positive and finite, got {mu}")
    return mu


def tch_set_value(F: Tensor, preference: Tensor | None = None, ideal: Tensor | None = None) -> Tensor:
    """g(X) = max_i λ_i (min_p f_i(x_p) − z_i) for F (P, K); λ = 𝟙, z = 0 by default. A scalar tensor."""
    _check(F, None, "tch-set")
    lam = _vector(preference, F, 1.0, "tch-set preference", positive=True)  # (K,)
    z = _vector(ideal, F, 0.0, "tch-set ideal point", positive=False)  # (K,)
    return (lam * (F.min(0).values - z)).max()  # max_i λ_i (a_i − z_i)


def smooth_min(F: Tensor, mu: float) -> Tensor:
    """smin_i = −μ log Σ_p exp(−f_i(x_p)/μ) per objective, (K,) from F (P, K), shifted by a_i = min_p f_pi (D4)."""
    mu = _check_mu(mu)
    a = F.min(0).values  # (K,)
    return a - mu * torch.logsumexp(-(F - a) / mu, dim=0)  # a_i − μ log Σ_p e^{−(f_pi − a_i)/μ}, (K,)


def _terms(F: Tensor, mu: float, preference: Tensor | None, ideal: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """t_i = λ_i (smin_i − z_i) (K,), λ (K,) and the shifted exponents E = (F − a)/μ ≥ 0 (P, K)."""
    _check(F, None, "stch-set")
    mu = _check_mu(mu)
    lam = _vector(preference, F, 1.0, "stch-set preference", positive=True)  # (K,)
    z = _vector(ideal, F, 0.0, "stch-set ideal point", positive=False)  # (K,)
    a = F.min(0).values  # a_i = min_p f_pi, (K,)
    E = (F - a) / mu  # (f_pi − a_i)/μ ≥ 0, (P, K)
    smin = a - mu * torch.logsumexp(-E, dim=0)  # smin_i = −μ log Σ_p e^{−f_pi/μ}, shifted by a_i (D4), (K,)
    t = lam * (smin - z)  # t_i = λ_i (smin_i − z_i), (K,)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("stch-set: λ_i (smin_i − z_i) overflows the dtype")
    return t, lam, E


def stch_set_value(F: Tensor, mu: float = 0.1, preference: Tensor | None = None, ideal: Tensor | None = None) -> Tensor:
    """g_μ(X) = μ log Σ_i exp(λ_i (smin_i − z_i)/μ) for F (P, K); a scalar tensor (differentiable in F)."""
    t, _, _ = _terms(F, mu, preference, ideal)  # (K,)
    top = t.max()
    return top + mu * torch.logsumexp((t - top) / mu, dim=0)  # μ log Σ_i e^{t_i/μ}, shifted (D4)


def stch_set_weights(F: Tensor, mu: float = 0.1, preference: Tensor | None = None, ideal: Tensor | None = None) -> Tensor:
    """∂g_μ/∂f_i(x_p) = w_i λ_i π_pi, (P, K): non-negative, Σ_p of column i is w_i λ_i, Σ_i w_i = 1."""
    t, lam, E = _terms(F, mu, preference, ideal)  # (K,), (K,), (P, K)
    w = torch.softmax(t / mu, dim=0)  # w_i = softmax_i(t_i/μ), (K,)
    pi = torch.softmax(-E, dim=0)  # π_pi = softmax_p(−f_pi/μ), (P, K)
    return pi * (w * lam)  # (P, K)


def tch_set_direction(
    F: Tensor, J: Tensor, preference: Tensor | None = None, ideal: Tensor | None = None, *, tie_tol: float = 1e-3
) -> Tensor:
    """The min-norm element of the active pieces' gradients of g(X) = max_i min_p λ_i (f_i(x_p) − z_i), (P, n)."""
    _check(F, J, "tch-set")
    P, K, n = J.shape
    lam = _vector(preference, F, 1.0, "tch-set preference", positive=True)  # (K,)
    z = _vector(ideal, F, 0.0, "tch-set ideal point", positive=False)  # (K,)
    u = lam * (F - z)  # u_pi = λ_i (f_i(x_p) − z_i), (P, K)
    t = u.min(0).values  # t_i = min_p u_pi, (K,)
    if not bool(torch.isfinite(u).all()):
        raise ValueError("tch-set: λ_i (f_i − z_i) overflows the dtype")
    top = t.max()  # g(X)
    eps = torch.finfo(F.dtype).eps
    band = tie_tol * top.abs() + 64 * eps * (lam * (F.min(0).values.abs() + z.abs())).sum()  # τ
    active_obj = t >= top - band  # (K,)
    pairs = active_obj[None, :] & (u <= t[None, :] + band)  # (P, K): objective i active and x_p (nearly) its best
    D = torch.zeros(P, n, dtype=J.dtype, device=J.device)
    idx = torch.nonzero(pairs)  # (A, 2): rows (p, i)
    G = lam[idx[:, 1], None] * J[idx[:, 0], idx[:, 1]]  # generators λ_i ∇f_i(x_p), (A, n)
    if idx.shape[0] == 1:
        D[idx[0, 0]] = G[0]  # one active piece: its gradient
        return D
    same_row = idx[:, 0, None] == idx[None, :, 0]  # (A, A): generators in the same row p
    gram = torch.where(same_row, G @ G.T, torch.zeros((), dtype=G.dtype, device=G.device))  # block-diagonal Gram
    nu = min_norm_weights(gram).to(G)  # ν ∈ Δ, certified (SolverError otherwise)
    D.index_add_(0, idx[:, 0], nu[:, None] * G)  # D_p = Σ_{(i,p) active} ν_(i,p) λ_i ∇f_i(x_p)
    return D


class _SetScalarisation(SetMethod):
    """Shared: the preference λ, the ideal point z (from ``begin``), the paper's toy run defaults."""

    needs_preferences: ClassVar[bool] = False
    default_optimizer: ClassVar[str | None] = "sgd"  # official: schedule-free SGD (D1)
    default_lr: ClassVar[float | None] = 1e-2  # official run_quad_func.py
    default_steps: ClassVar[int | None] = 10_000  # official run_quad_func.py

    def __init__(self, preference: Tensor | None = None) -> None:
        if preference is not None:
            p = torch.as_tensor(preference, dtype=torch.float64).reshape(-1)
            if p.numel() < 1 or not bool(torch.isfinite(p).all()) or not bool((p > 0).all()):
                raise ValueError(f"{self.name}: the preference must have positive finite entries, got {p.tolist()}")
            preference = p
        self.preference: Tensor | None = preference
        self.reset()

    def reset(self) -> None:
        self.ideal: Tensor | None = None  # z (K,) from begin(), else 0

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        self.reset()
        if self.preference is not None and self.preference.shape[0] != F0.shape[1]:
            raise ValueError(f"{self.name}: the preference has {self.preference.shape[0]} entries, the problem K={F0.shape[1]}")
        if ideal is not None:
            self.ideal = _vector(ideal, F0, 0.0, f"{self.name} ideal point", positive=False)

    def _lam_z(self, F: Tensor) -> tuple[Tensor | None, Tensor | None]:
        z = self.ideal.to(F) if self.ideal is not None and self.ideal.shape[0] == F.shape[1] else None
        lam = self.preference.to(F) if self.preference is not None else None
        return lam, z


class TCHSet(_SetScalarisation):
    """TCH-Set: descent on max_i λ_i (min_p f_i(x_p) − z_i) with the min-norm element at ties (D3)."""

    name: ClassVar[str] = "tch-set"

    def __init__(self, preference: Tensor | None = None, tie_tol: float = 1e-3) -> None:
        if not (0 <= tie_tol < 1):
            raise ValueError(f"tch-set: tie_tol must be in [0, 1), got {tie_tol}")
        self.tie_tol = float(tie_tol)
        super().__init__(preference)

    def value(self, F: Tensor) -> Tensor:
        lam, z = self._lam_z(F)
        return tch_set_value(F, lam, z)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        lam, z = self._lam_z(F)
        return tch_set_direction(F, J, lam, z, tie_tol=self.tie_tol)  # (P, n)


class STCHSet(_SetScalarisation):
    """STCH-Set: gradient descent on μ log Σ_i exp(λ_i (smin_i − z_i)/μ), smin_i = −μ log Σ_p exp(−f_i(x_p)/μ)."""

    name: ClassVar[str] = "stch-set"

    def __init__(self, mu: float = 0.1, preference: Tensor | None = None) -> None:
        self.mu = _check_mu(mu)
        super().__init__(preference)

    def value(self, F: Tensor) -> Tensor:
        lam, z = self._lam_z(F)
        return stch_set_value(F, self.mu, lam, z)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        _check(F, J, "stch-set")
        lam, z = self._lam_z(F)
        W = stch_set_weights(F, self.mu, lam, z)  # ∂g_μ/∂f_pi, (P, K)
        return torch.einsum("pk,pkn->pn", W, J)  # D_p = Σ_i w_i λ_i π_pi ∇f_i(x_p), (P, n)


__all__ = ["STCHSet", "TCHSet", "smooth_min", "stch_set_value", "stch_set_weights", "tch_set_direction", "tch_set_value"]
