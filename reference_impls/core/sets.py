"""Interfaces of the methods that produce several solutions: finite sets and Pareto-set models.

Finite-set methods (ParetoMTL, EPO, PMGDA, hypervolume ascent, MOO-SVGD, ...) move P solutions at
once; the update of one may depend on the others (hypervolume contributions, SVGD kernels) and on
a preference vector per solution::

    D = method.step(X, F, J, preferences)   # X (P, n), F (P, K), J (P, K, n), preferences (P, K)
    X ← X − η D                             # then projected onto the box, if any

``initial_set`` may replace the starting set once (the method's own seeding), and per-sample methods
(``per_sample = True``: HV front prediction) weight each sample's losses L (P, N, K) of a problem with
``per_sample_losses`` instead: D = ∇_X Σ_{p,s,k} W_psk·L_psk / N with W = ``sample_weights(L)``
(:func:`reference_impls.core.hooks.start_set`, :func:`~reference_impls.core.hooks.set_direction`).

Pareto-set models (PHN, COSMOS, PaMaL, ...) learn the whole front: a torch module maps a
preference r ∈ Δ (K,) to a solution (the parameters of a target network, or its prediction), and
``loss(losses, r)`` is the criterion the model is trained with on preferences sampled from Δ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.hooks import default_hook


class SetMethod(ABC):
    """A method that updates a set of P solutions jointly."""

    name: ClassVar[str] = ""  # registry id
    needs_preferences: ClassVar[bool] = True  # False for preference-free methods (HV ascent, MOO-SVGD)
    stateful: ClassVar[bool] = False
    # Run defaults that override the problem's (None: use the problem's default_*). For methods whose
    # paper fixes the toy settings, or whose step-size rule is folded into D (EPO: plain SGD).
    default_optimizer: ClassVar[str | None] = None  # "sgd" | "adam"
    default_lr: ClassVar[float | None] = None
    default_steps: ClassVar[int | None] = None
    default_betas: ClassVar[tuple[float, float] | None] = None  # Adam's (β1, β2) where the paper fixes them; None: (0.9, 0.999)
    # Per-sample methods (HV front prediction) weight each sample's losses separately: on a problem with
    # ``per_sample_losses`` (L (P, N, K)) the step is D = ∇_X Σ_{p,s,k} W_psk·L_psk / N with
    # W = :meth:`sample_weights`; on a point problem (N = 1) :meth:`step` is used.
    per_sample: ClassVar[bool] = False

    @abstractmethod
    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        """Directions D (P, n) for the solutions X (P, n) with losses F (P, K) and Jacobians J (P, K, n).

        ``preferences`` (P, K) holds one preference vector per solution (rows on the simplex, or
        the method's own convention, stated in its docstring); None when ``needs_preferences`` is False.
        """

    def default_preferences(self, P: int, K: int) -> Tensor:
        """Preferences used when the caller gives none: :func:`simplex_preferences`."""
        return simplex_preferences(P, K)

    def target_rays(self, preferences: Tensor) -> Tensor | None:
        """The objective-space direction (P, K) from the ideal point that each solution should reach.

        Used by the preference-error metric (distance and angle of F − z from the ray). None (the
        default) when the method targets sectors or scalarisation optima rather than rays (ParetoMTL,
        LS); EPO returns 1/r normalised (r ⊙ f ∝ 𝟙), PMGDA/XWC/FERERO their own convention.
        """
        return None

    def sample_weights(self, L: Tensor) -> Tensor:
        """Weights W (P, N, K) of each sample's losses L (P, N, K) (detached), for ``per_sample`` methods.

        The per-sample step is D = ∇_X Σ_{p,s,k} W_psk·L_psk / N
        (:func:`reference_impls.core.hooks.set_step` forms it by autograd through the problem).
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} sets per_sample = True but defines no sample_weights(L)")

    def reset(self) -> None:
        """Forget all state."""

    # Hooks (see reference_impls.core.hooks): driven by the runner and by the documented set loop.
    hook_names: ClassVar[tuple[str, ...]] = ("parameters", "initial_set", "begin", "update", "adapt_preferences", "on_epoch_end")

    @default_hook
    def initial_set(self, X0: Tensor, evaluate: Callable[[Tensor], tuple[Tensor, Tensor]], *, minimisers: Tensor | None = None) -> Tensor | None:
        """Called once, before :meth:`begin`, with the problem's starting set X0 (P, n) (projected onto
        the box, if any), ``evaluate``: X (B, n) -> (F (B, K), J (B, K, n)) detached, and the minimisers
        (K, n) of the single objectives where the problem knows them (``problem.objective_minimisers()``),
        else None.

        Returns the method's own starting set (P, n) (its seeding: sum-of-minimum's k-means++-style
        choice among the minimisers), or None to keep X0. The caller projects it onto the box."""
        return None

    @default_hook
    def begin(self, X0: Tensor, F0: Tensor, preferences: Tensor | None, *, steps: int, ideal: Tensor | None = None) -> None:
        """Called once before the first step with the initial set X0 (P, n), its losses F0 (P, K), the
        preferences (P, K) or None, the planned number of steps, and the problem's ideal point (K,)
        where it is known (min of each objective over the Pareto front), else None.

        For methods whose rule depends on the iteration budget (ParetoMTL's 20 % initial phase) or on
        the starting set (warm starts, reference points)."""

    @default_hook
    def adapt_preferences(self, X: Tensor, F: Tensor, preferences: Tensor | None, t: int) -> Tensor | None:
        """Called after step t (after :meth:`update`) with the moved set X (P, n) and its losses F (P, K).

        Returns the preferences (P, K) for the following steps (adaptive reference vectors, UMOD),
        or None to keep the current ones."""
        return None

    @default_hook
    def parameters(self) -> Sequence[Tensor]:
        """Learnable tensors of the method, optimised with the solutions; none by default."""
        return ()

    @default_hook
    def update(self, new_F: Tensor) -> object:
        """Called after every step with the losses (P, K) at the moved solutions."""
        return None

    @default_hook
    def on_epoch_end(self, epoch: int) -> None:
        """Called after each pass over the data (after every step on full-batch problems)."""


class ParetoModel(nn.Module, ABC):
    """A model of the Pareto set: ``forward(preference)`` maps r ∈ Δ (K,) or (B, K) to solution(s).

    The solution is a point x ∈ R^n of the problem: the decision vector itself on the toy problems,
    or the flattened parameters of a target network (``mtl-regression`` through
    :class:`~reference_impls.problems.mtl_set.MTLRegressionSet`). The model is trained on preferences
    drawn by :meth:`sample_preferences` with the scalar criterion :meth:`loss`; one training step is
    :func:`reference_impls.pareto_set.training.pareto_step` (the runner's and the documented loop's).

    The families this interface is built for:

    * hypernetworks (PHN, PHN-HVI, Hyper-Transformer): ``forward(r)`` = h_φ(r), the target's parameters;
    * preference-conditioned networks (COSMOS, YOTO): r is an input (concatenated or FiLM); such a
      model whose output is a prediction rather than a parameter vector overrides :meth:`task_losses`;
    * model combinations (PaMaL): θ(α) = Σ_k α_k θ_k with anchors θ_k built in :meth:`begin` from
      ``initial_points``.

    Class attributes: ``target`` states which preference-to-solution map the criterion targets
    ("ls": argmin_x Σ r_i f_i(x); "ray": the ray point r ⊙ (f − z) ∝ 𝟙 of EPO / Tchebycheff;
    None: no closed form, e.g. COSMOS's cosine term), so the evaluation compares with the matching
    oracle (:mod:`reference_impls.pareto_set.oracles`). ``preference_alpha`` is the Dirichlet
    concentration of the training preferences, ``default_batch`` the preferences per step.

    A criterion that needs per-task gradients (PHN-EPO's LP on the hypernetwork-parameter
    gradients) computes them inside :meth:`loss` with ``torch.autograd.grad(losses[b, k],
    list(self.parameters()), retain_graph=True)``: the losses passed in carry the graph to the
    model's parameters.
    """

    name: ClassVar[str] = ""  # registry id
    target: ClassVar[str | None] = "ls"  # "ls" | "ray" | None: the map the criterion targets
    preference_alpha: ClassVar[float] = 1.0  # Dirichlet(α𝟙) concentration of the training preferences
    default_batch: ClassVar[int] = 1  # preferences per training step
    default_optimizer: ClassVar[str | None] = None  # run defaults (None: the problem's)
    default_lr: ClassVar[float | None] = None
    default_steps: ClassVar[int | None] = None

    # Hooks (see reference_impls.core.hooks): driven by pareto_runner.run_pareto and by the documented
    # loop ``train_pareto_model`` (site/implementations/design.md). The learnable tensors are the
    # module's own ``parameters()`` (nn.Module), stepped by the run's optimiser.
    hook_names: ClassVar[tuple[str, ...]] = ("begin", "update", "on_epoch_end")

    @abstractmethod
    def forward(self, preference: Tensor) -> Tensor:  # pragma: no cover - interface
        """The solution(s): (K,) -> (n,), (B, K) -> (B, n)."""

    @abstractmethod
    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """The scalar training criterion for the task losses (B, K) obtained at ``preferences`` (B, K),
        e.g. the mean over rows of r·f (linear scalarisation), EPO's weighted loss, a Tchebycheff
        criterion, COSMOS' r·f − λ cos(r, f). ``losses`` carry the graph to ``self.parameters()``."""

    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num`` training preferences (num, K): Dirichlet(``preference_alpha``·𝟙) by default (PHN, COSMOS)."""
        return sample_preferences(num, K, alpha=self.preference_alpha, generator=generator)

    def task_losses(self, problem: object, preferences: Tensor) -> Tensor:
        """The task losses (B, K) of the solutions for ``preferences`` (B, K), with a graph to the parameters.

        Default: ``problem.losses(self(preferences))`` (a point problem; the target network's losses
        on ``mtl-regression-set``). A model whose output is a prediction overrides this."""
        return problem.losses(self(preferences))  # type: ignore[attr-defined]

    def target_rays(self, preferences: Tensor) -> Tensor | None:
        """The objective-space directions (B, K) from the ideal point that the solutions should reach
        (EPO: 1/r normalised), or None when the target is not a ray (LS: the oracle's F* gives it)."""
        return None

    @default_hook
    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Called once before training, before the optimiser is built: K objectives, n the dimension of a
        solution, the planned steps, the ideal point (K,) or None, ``initial_points(num)`` (num, n)
        from the problem's seeded starting distribution, and the problem itself (model combinations read
        its layout ``problem.parameter_shapes()``, base model and task models). Build the layers sized
        for the problem here."""

    @default_hook
    def update(self, new_losses: Tensor, preferences: Tensor) -> None:
        """Called after every optimiser step with the losses (B, K) of the moved model at the step's preferences."""

    @default_hook
    def on_epoch_end(self, epoch: int) -> None:
        """Called after each pass over the data (after every step on full-batch problems)."""


def simplex_preferences(P: int, K: int, *, seed: int = 0) -> Tensor:
    """P preference vectors on the simplex (P, K), float64.

    K = 2: evenly spaced interior points ((i + 1)/(P + 1), 1 − (i + 1)/(P + 1)), no zero entry (so 1/r
    is defined). K = 1: ones. K ≥ 3: Dirichlet(1) draws from ``seed``.
    """
    if P < 1 or K < 1:
        raise ValueError(f"need P >= 1 and K >= 1, got P={P}, K={K}")
    if K == 1:
        return torch.ones(P, 1, dtype=torch.float64)
    if K == 2:
        t = torch.arange(1, P + 1, dtype=torch.float64) / (P + 1)
        return torch.stack([t, 1 - t], dim=1)
    g = torch.Generator().manual_seed(int(seed))
    w = torch._standard_gamma(torch.ones(P, K, dtype=torch.float64), generator=g)
    return w / w.sum(1, keepdim=True)


def check_preferences(preferences: Tensor, P: int | None = None, K: int | None = None, *, name: str = "preferences") -> Tensor:
    """Validate a preference matrix: shape (P, K), finite, non-negative, no all-zero row; returns it.

    Raises a ValueError that says what is wrong. Rows are not rescaled (a method that needs rows on
    the simplex divides by the row sums itself; zero entries are allowed here, and each method states
    what a zero entry means for it).
    """
    if not isinstance(preferences, Tensor):
        preferences = torch.as_tensor(preferences, dtype=torch.float64)
    if preferences.ndim != 2 or (P is not None and preferences.shape[0] != P) or (K is not None and preferences.shape[1] != K):
        want = f"({'P' if P is None else P}, {'K' if K is None else K})"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(preferences.shape)}")
    if not bool(torch.isfinite(preferences).all()):
        raise ValueError(f"{name}: contains NaN or infinite entries")
    if bool((preferences < 0).any()):
        raise ValueError(f"{name}: entries must be non-negative (rows on the simplex), got a negative entry")
    if bool((preferences.sum(1) <= 0).any()):
        raise ValueError(f"{name}: a row is all zero (a preference vector needs a positive entry)")
    return preferences


def preference_batch(preference: Tensor, K: int, dtype: torch.dtype, *, name: str) -> tuple[Tensor, bool]:
    """A Pareto-set model's input: (K,) or (B, K) -> ((B, K) checked with :func:`check_preferences`, whether it was one row)."""
    r = torch.as_tensor(preference, dtype=dtype)
    single = r.ndim == 1
    rb = r[None] if single else r  # (B, K)
    check_preferences(rb.detach(), None, K, name=name)
    return rb, single


def loss_batch(losses: Tensor, preferences: Tensor, *, name: str, what: str = "preferences") -> tuple[Tensor, Tensor]:
    """The inputs of ``ParetoModel.loss`` as (F (B, K), r (B, K)): same shape, finite losses, valid preferences (ValueError)."""
    F = losses[None] if losses.ndim == 1 else losses  # (B, K)
    r = torch.as_tensor(preferences, dtype=F.dtype)
    r = r[None] if r.ndim == 1 else r  # (B, K)
    if F.shape != r.shape:
        raise ValueError(f"{name}: losses {tuple(F.shape)} and {what} {tuple(r.shape)} must have the same shape (B, K)")
    if not bool(torch.isfinite(F).all()):
        raise ValueError(f"{name}: the losses contain NaN or infinite entries")
    check_preferences(r.detach(), None, F.shape[1], name=f"{name} {what}")
    return F, r


def sample_preferences(num: int, K: int, *, alpha: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``num`` preferences ~ Dirichlet(α𝟙) (num, K), as Pareto-set models sample them during training."""
    conc = torch.full((num, K), float(alpha), dtype=torch.float64)
    w = torch._standard_gamma(conc, generator=generator)
    return w / w.sum(1, keepdim=True)


__all__ = ["ParetoModel", "SetMethod", "check_preferences", "loss_batch", "preference_batch", "sample_preferences", "simplex_preferences"]
