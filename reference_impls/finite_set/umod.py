r"""UMOD: uniform designs on the Pareto front by max-min preference adjustment.

Paper: Xiaoyuan Zhang, Genghui Li, Xi Lin, Yichi Zhang, Yifan Chen, Qingfu Zhang, "Gliding over the
Pareto Front with Uniform Designs", NeurIPS 2024 (OpenReview WoEXVQcHFw). Official code: xzhang2523/libmoon,
``libmoon/solver/gradient/methods/umod_solver.py`` (UMODSolver), ``base_solver.py`` (GradBaseSolver.solve,
umod_train_pfl_model, umod_adjust_pref), ``util/scalarization.py`` (tche, mtche), ``util/prefs.py``
(pref2angle, angle2pref), ``model/simple.py`` (PFLModel), ``metrics/metrics.py`` (compute_lmin).

The P solutions solve P preference-conditioned subproblems; every so often a small model of the
Pareto front, preference angle θ → F, is fitted on the (θ, F) pairs collected so far, and the angles
are moved to maximise the smallest pairwise distance of the predicted points (a max-packing design,
whose fill distance the paper shows is at most 4× the minimum, and asymptotically uniform on the
front). The loop is libmoon's GradBaseSolver.solve with solver_name "UMOD".

Update rule:
    Lower level, every step, per solution :math:`k` with preference :math:`\lambda_k` and ideal
    point :math:`z` (modified Tchebycheff, "mTche"): the active objective's gradient (libmoon's
    ``tche`` returns the active loss itself, D1; a zero entry of :math:`\lambda_k` is the limit
    :math:`\lambda \to 0`, ties go to the first index):

    .. math::

        i^\ast_k = \arg\max_{1 \le i \le K} \frac{f_i(x_k) - z_i}{\lambda_{k,i}}, \qquad D_k = \nabla f_{i^\ast_k}(x_k)

    The runner hands :math:`D_k` to the problem's optimiser (libmoon: Adam; with plain SGD the step
    is :math:`x_k \leftarrow x_k - \eta D_k`).

    Upper level, after 20 %, 40 %, 60 % and 80 % of the step budget (libmoon: every 2000 of 10 000
    epochs; D3): collect the pairs :math:`(\theta_k, F(x_k))` for all :math:`k`, with
    :math:`\theta_k` the hyperspherical angles of :math:`u_k = \lambda_k / \lVert \lambda_k \rVert`
    (``pref2angle``; D4 for :math:`K \ge 3`); fit the front model :math:`h_\phi` (an MLP) by a
    fixed number of full-batch Adam steps (D3) on the mean squared error over all :math:`N` pairs
    collected so far (``umod_train_pfl_model``, warm-started; the arg min below is what those
    steps approximate):

    .. math::

        \theta_{k,j} = \operatorname{atan2}\Big( \sqrt{\textstyle\sum_{i > j} u_{k,i}^2},\ u_{k,j} \Big), \qquad \phi \leftarrow \arg\min_\phi \frac{1}{N K} \sum_{(\theta, F)} \lVert h_\phi(\theta) - F \rVert^2

    then move the angles to maximise the smallest pairwise distance of the predicted points, by a
    fixed number of Adam steps on :math:`-l_{\min}` (from the current angles, duplicates first
    separated, D6) with :math:`\theta` clamped to :math:`[m, \pi/2 - m]` after every step
    (``umod_adjust_pref``, ``compute_lmin``; :math:`m` = ``angle_margin``, D9):

    .. math::

        \theta \leftarrow \arg\max_{\theta \in [m, \pi/2 - m]^{P \times (K-1)}} l_{\min}\big(h_\phi(\theta)\big), \qquad l_{\min}(Y) = \min_{j \ne k} \lVert y_j - y_k \rVert

    and map them back to preferences (``angle2pref``, returned on the simplex, D8):

    .. math::

        u_{k,j} = \cos\theta_{k,j} \prod_{i < j} \sin\theta_{k,i} \ (j < K), \qquad u_{k,K} = \prod_{i < K} \sin\theta_{k,i}, \qquad \lambda_k \leftarrow \frac{u_k}{\sum_i u_{k,i}}

mTche's optimum for a preference is where the ray from z along it meets the front (Pareto optimal
points on it), so :meth:`UMOD.target_rays` returns the unit preference: the preference error of the
run measures how far each solution is from its (adjusted) ray.

Defaults and their source:
    * aggregation mTche with z = 0 (libmoon ``mtche(f, w, z=0)``); ``begin(ideal=...)`` replaces z by the
      problem's ideal point where it is known (D2).
    * model: MLP (K − 1) → 128 → 128 → K, ReLU (libmoon ``PFLModel``); Adam lr 1e-3, 2000 epochs per fit
      (for libmoon's 10 000-epoch run; 20 % of the step budget in general, D3),
      model and optimiser kept across fits (libmoon keeps both on the solver).
    * adjustment: Adam lr 1e-3, 2000 steps on the angles (scaled as the fit, D3), hard minimum
      distance, clamp to [0, π/2] (libmoon; here [1e-3, π/2 − 1e-3], D9).
    * schedule: adjust after 20/40/60/80 % of the steps (libmoon's 2000-of-10 000; D3).
    * solutions: Adam lr 1e-3, 10 000 epochs in libmoon's test script (``auto_tester/test_synthetic.py``);
      here the problem's optimiser and step count (the runner's), and the schedule scales with them.

Deviations: (from the paper and from libmoon)
    D1. The lower-level direction is the active objective's gradient (libmoon's ``tche`` returns the
        active loss itself, not its gap to z divided by its preference entry); the paper's
        subgradient of the modified Tchebycheff function is that gradient divided by the active
        preference entry, a positive per-solution rescaling that Adam mostly absorbs. Kept as
        libmoon: it stays finite for zero entries.
    D2. Ideal point: the problem's ideal point when the runner passes it (libmoon uses z = 0, equal to
        the ideal of ZDT1/ZDT2 and of every non-negative toy whose front touches the axes).
    D3. The schedule is expressed as fractions of the step budget (``begin(steps=...)``) so that a short
        run still adjusts, and so are the default model and adjustment epochs (20 % of the steps, at
        most 2000); with libmoon's 10 000 epochs both are libmoon's. Tests scale the model
        and adjustment epochs down and their learning rates up (stated in the tests).
    D4. K ≥ 3: libmoon handles K = 2 only (pref2angle uses atan2 of the first two entries); here the
        angles are hyperspherical, K − 1 angles in [0, π/2], which is libmoon's angle for K = 2.
    D5. Float64 model and data (libmoon float32); the model is initialised from ``seed`` (reproducible).
    D6. Duplicate preferences (or duplicates created by the clamp) make the hard-min gradient
        undefined at coincident predictions; they are separated by a deterministic 1e-3 rad offset
        before the adjustment (libmoon would produce NaN angles).
    D7. libmoon records the pair (θ, F) with F evaluated before the step of that epoch; here F is the
        loss at the moved set passed to ``adapt_preferences`` (one step later).
    D8. Preferences are returned as rows on the simplex (λ/Σλ; the mTche ray is unchanged by scaling);
        libmoon returns the unit vectors (cos θ, sin θ).
    D9. The adjusted angles are clamped to [m, π/2 − m], m = ``angle_margin`` = 1e-3 rad, not [0, π/2]:
        an angle on the boundary gives a zero preference entry, whose mTche minimisers are only weakly
        Pareto optimal (in a box, the first loss never reaches its ideal value, objective 1 stays
        active forever and the second loss is never decreased: observed 1.35 instead of ≤ 1 on
        zdt-skewed).

Degenerate inputs: zero preference entries follow mTche's limit (an objective with a zero entry and
a loss above its ideal value is active first: the solution goes to the end of the front where that
loss is smallest); K = 1 is plain gradient descent and nothing is adjusted; P = 1 adjusts nothing
(no pair); non-finite losses or Jacobians raise ValueError; invalid preferences (negative, all-zero
row, wrong shape) raise ValueError.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import SetMethod, check_preferences

HALF_PI = math.pi / 2


def _check_inputs(F: Tensor, J: Tensor, preferences: Tensor | None, what: str) -> Tensor:
    """Validate F (P, K), J (P, K, n) and the preferences (P, K); returns the preferences."""
    if F.ndim != 2 or J.ndim != 3 or J.shape[:2] != F.shape:
        raise ValueError(f"{what}: expected F (P, K) and J (P, K, n), got {tuple(F.shape)} and {tuple(J.shape)}")
    if preferences is None:
        raise ValueError(f"{what}: needs one preference vector per solution, got None")
    prefs = check_preferences(preferences, F.shape[0], F.shape[1])
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"{what}: the losses contain NaN or infinite values")
    if not bool(torch.isfinite(J).all()):
        raise ValueError(f"{what}: the Jacobians contain NaN or infinite values")
    return prefs.to(F)


def mtche_active(F: Tensor, preferences: Tensor, ideal: Tensor) -> Tensor:
    """Active objective i*_k = argmax_i (f_{k,i} − z_i)/λ_{k,i} of the modified Tchebycheff, (P,) long.

    λ_{k,i} = 0 is the limit λ → 0: such an objective with f_i > z_i has an infinite ratio, so the
    largest f_i − z_i among the zero entries is active; when none is above the ideal, the ratio over
    the positive entries decides. Ties go to the first index (torch.argmax).
    """
    lam = preferences / preferences.sum(1, keepdim=True)  # (P, K) on the simplex
    gap = F - ideal  # (P, K), f − z
    zero = lam == 0  # (P, K)
    neg_inf = torch.tensor(-math.inf, dtype=F.dtype, device=F.device)
    ratio = torch.where(zero, neg_inf, gap / torch.where(zero, torch.ones_like(lam), lam))  # (f_i − z_i)/λ_i
    zero_gap = torch.where(zero, gap, neg_inf)  # the zero-entry objectives' f_i − z_i
    zero_wins = (zero_gap > 0).any(1)  # (P,): an infinite ratio exists
    return torch.where(zero_wins, zero_gap.argmax(1), ratio.argmax(1))  # (P,)


def mtche_directions(F: Tensor, J: Tensor, preferences: Tensor, ideal: Tensor) -> Tensor:
    """mTche subgradient directions D (P, n): d_k = ∇f_{i*_k}(x_k) (libmoon's tche, D1)."""
    active = mtche_active(F, preferences, ideal)  # (P,)
    return J[torch.arange(J.shape[0], device=J.device), active]  # (P, n)


def preferences_to_angles(preferences: Tensor) -> Tensor:
    """Hyperspherical angles θ ∈ [0, π/2]^{K−1} (P, K−1) of the unit vectors u = λ/||λ|| (P, K).

    θ_j = atan2(||u_{j+1:}||, u_j); for K = 2 this is libmoon's pref2angle, atan2(λ_2, λ_1).
    """
    u = preferences / preferences.norm(dim=1, keepdim=True)  # (P, K)
    tail = torch.flip(torch.cumsum(torch.flip(u**2, [1]), 1), [1])  # (P, K): Σ_{i≥j} u_i²
    return torch.atan2(tail[:, 1:].clamp_min(0).sqrt(), u[:, :-1])  # (P, K−1)


def angles_to_unit(theta: Tensor) -> Tensor:
    """Unit vectors (P, K) from angles (P, K−1): u_j = (Π_{i<j} sin θ_i) cos θ_j, u_K = Π sin θ_i (angle2pref)."""
    P = theta.shape[0]
    ones = torch.ones(P, 1, dtype=theta.dtype, device=theta.device)
    sin_prod = torch.cumprod(torch.cat([ones, torch.sin(theta)], 1), 1)  # (P, K): Π_{i<j} sin θ_i
    cos_part = torch.cat([torch.cos(theta), ones], 1)  # (P, K)
    return sin_prod * cos_part  # (P, K), ||u|| = 1


def min_pairwise_distance(Y: Tensor) -> Tensor:
    """l_min(Y) = min_{j≠k} ||y_j − y_k|| (libmoon compute_lmin), a scalar; +inf for one point."""
    P = Y.shape[0]
    if P < 2:
        return torch.tensor(math.inf, dtype=Y.dtype, device=Y.device)
    j, k = torch.triu_indices(P, P, 1, device=Y.device)
    return (Y[j] - Y[k]).norm(dim=1).min()


class UMOD(SetMethod):
    """UMOD: mTche descent per preference, with periodic max-min (l_min) preference adjustment."""

    name: ClassVar[str] = "umod"
    stateful: ClassVar[bool] = True

    def __init__(
        self,
        *,
        adjust_at: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8),
        hidden: int = 128,
        model_epochs: int | None = None,
        model_lr: float = 1e-3,
        adjust_epochs: int | None = None,
        adjust_lr: float = 1e-3,
        angle_margin: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if any(not 0 < a < 1 for a in adjust_at):
            raise ValueError(f"umod: adjust_at fractions must lie in (0, 1), got {adjust_at}")
        if hidden < 1 or (model_epochs or 0) < 0 or (adjust_epochs or 0) < 0 or model_lr <= 0 or adjust_lr <= 0:
            raise ValueError("umod: need hidden >= 1, epochs >= 0 and positive learning rates")
        self.adjust_at = tuple(sorted(adjust_at))
        self.hidden = int(hidden)
        self._model_epochs = model_epochs  # None: 20 % of the step budget, at most 2000 (D3)
        self.model_epochs = 2000 if model_epochs is None else int(model_epochs)
        self.model_lr = float(model_lr)
        self._adjust_epochs = adjust_epochs
        self.adjust_epochs = 2000 if adjust_epochs is None else int(adjust_epochs)
        self.adjust_lr = float(adjust_lr)
        if not 0 <= angle_margin < HALF_PI / 2:
            raise ValueError(f"umod: angle_margin must lie in [0, π/4), got {angle_margin}")
        self.angle_margin = float(angle_margin)
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        self.ideal: Tensor | None = None  # z (K,)
        self._adjust_steps: set[int] = set()  # step indices t after which the preferences are adjusted
        self.model: nn.Module | None = None
        self._model_opt: torch.optim.Optimizer | None = None
        self.history: list[tuple[Tensor, Tensor]] = []  # (θ (P, K−1), F (P, K)) pairs collected so far
        self.fit_mse: list[float] = []  # final training MSE of each model fit
        self.lmin_predicted: list[tuple[float, float]] = []  # predicted l_min before and after each adjustment

    # ------------------------------------------------------------------------------------------
    def target_rays(self, preferences: Tensor) -> Tensor:
        """mTche's optimum lies on the ray z + tλ: the ray direction λ/||λ|| (P, K)."""
        return preferences / preferences.norm(dim=1, keepdim=True)

    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        """Fix z (the ideal point, or 0 as libmoon) and the adjustment steps (fractions of ``steps``, D3)."""
        self.reset()
        K = F0.shape[1]
        self.ideal = torch.zeros(K, dtype=F0.dtype, device=F0.device) if ideal is None else ideal.to(F0)
        self._adjust_steps = {round(a * steps) - 1 for a in self.adjust_at if round(a * steps) >= 1}
        scaled = min(2000, max(1, round(0.2 * steps)))  # libmoon: 2000 epochs = 20 % of its 10 000 (D3)
        self.model_epochs = scaled if self._model_epochs is None else int(self._model_epochs)
        self.adjust_epochs = scaled if self._adjust_epochs is None else int(self._adjust_epochs)

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        prefs = _check_inputs(F, J, preferences, "umod")
        z = self.ideal if self.ideal is not None and self.ideal.shape[0] == F.shape[1] else torch.zeros_like(F[0])
        return mtche_directions(F, J, prefs, z.to(F))  # (P, n)

    # ------------------------------------------------------------------------------------------
    def _new_model(self, K: int, dtype: torch.dtype, device: torch.device) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # reproducible initialisation (D5)
            self.model = nn.Sequential(  # PFLModel: (K − 1) → 128 → 128 → K
                nn.Linear(K - 1, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Linear(self.hidden, K)
            ).to(device=device, dtype=dtype)
        self._model_opt = torch.optim.Adam(self.model.parameters(), lr=self.model_lr)

    def fit_front_model(self) -> float:
        """Fit h_φ: θ ↦ F on every collected pair (Adam on the MSE, warm-started); returns the final MSE."""
        theta = torch.cat([t for t, _ in self.history])  # (N, K−1)
        Y = torch.cat([f for _, f in self.history])  # (N, K)
        assert self.model is not None and self._model_opt is not None
        loss = torch.tensor(math.nan)
        with torch.enable_grad():
            for _ in range(self.model_epochs):
                loss = ((self.model(theta) - Y) ** 2).mean()  # MSE(h_φ(θ), F)
                self._model_opt.zero_grad()
                loss.backward()
                self._model_opt.step()
            with torch.no_grad():
                loss = ((self.model(theta) - Y) ** 2).mean()
        mse = float(loss)
        if not math.isfinite(mse):
            raise ValueError("umod: the Pareto-front model fit diverged (non-finite MSE)")
        self.fit_mse.append(mse)
        return mse

    def adjust_angles(self, theta: Tensor) -> Tensor:
        """θ ← argmax l_min(h_φ(θ)) by Adam on −l_min, clamped to [m, π/2 − m] after each step (umod_adjust_pref; D9)."""
        assert self.model is not None
        lo, hi = self.angle_margin, HALF_PI - self.angle_margin
        theta = _separate_duplicates(theta.clamp(lo, hi))  # D6
        var = theta.clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=self.adjust_lr)
        with torch.no_grad():
            before = float(min_pairwise_distance(self.model(var)))
        with torch.enable_grad():
            for _ in range(self.adjust_epochs):
                lmin = min_pairwise_distance(self.model(var))  # l_min of the predicted points
                opt.zero_grad()
                (-lmin).backward()  # maximise l_min
                opt.step()
                with torch.no_grad():
                    var.clamp_(lo, hi)
        out = var.detach()
        with torch.no_grad():
            self.lmin_predicted.append((before, float(min_pairwise_distance(self.model(out)))))
        if not bool(torch.isfinite(out).all()):
            raise ValueError("umod: the preference adjustment produced non-finite angles")
        return out

    def adapt_preferences(self, X: Tensor, F: Tensor, preferences: Tensor | None, t: int) -> Tensor | None:
        if t not in self._adjust_steps or preferences is None:
            return None
        P, K = F.shape
        if K < 2 or P < 2:
            return None  # one objective or one solution: nothing to spread
        prefs = check_preferences(preferences, P, K).to(F)
        if not bool(torch.isfinite(F).all()):
            raise ValueError("umod: the losses contain NaN or infinite values")
        theta = preferences_to_angles(prefs)  # (P, K−1)
        self.history.append((theta, F.detach().clone()))
        if self.model is None:
            self._new_model(K, F.dtype, F.device)
        self.fit_front_model()
        u = angles_to_unit(self.adjust_angles(theta))  # (P, K) unit, ≥ 0
        return u / u.sum(1, keepdim=True)  # rows on the simplex (D8)


def _separate_duplicates(theta: Tensor, gap: float = 1e-3) -> Tensor:
    """Offset repeated angle rows by a deterministic multiple of ``gap`` (rad), inward from the box faces (D6)."""
    theta = theta.clone()
    seen: dict[tuple[float, ...], int] = {}
    for k in range(theta.shape[0]):
        key = tuple(theta[k].tolist())
        c = seen.get(key, 0)
        seen[key] = c + 1
        if c:
            row = theta[k]
            direction = torch.where(row < HALF_PI / 2, torch.ones_like(row), -torch.ones_like(row))  # away from the nearer face
            theta[k] = (row + direction * gap * c).clamp(0, HALF_PI)
    return theta


__all__ = ["UMOD", "angles_to_unit", "min_pairwise_distance", "mtche_active", "mtche_directions", "preferences_to_angles"]
