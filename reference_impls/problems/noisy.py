"""Noisy point problems: an exact toy problem with a stochastic first-order oracle of known noise.

API (fixed; stochastic methods such as SMG, PSMGD, CR-MOGM and MoDo code against it)
------------------------------------------------------------------------------------

    >>> from reference_impls.problems import get_problem
    >>> p = get_problem("noisy-biquad", sigma=0.1)          # or NoisyProblem("biquad", sigma=0.1, K=3)
    >>> x = p.initial_points(seed=0)                         # (B, n), the base problem's starts
    >>> F, J = p.losses(x), p.jacobian(x)                    # EXACT (B, K), (B, K, n): metrics use these
    >>> g = p.noise_generator(seed=0)                        # torch.Generator (CPU), seeded
    >>> Fs, Js = p.sample_value_and_jacobian(x, g, samples=2)  # (S, B, K), (S, B, K, n)
    >>> Fs, Js = p.perturb(F, J, g, samples=2)               # the same draw from F, J already at hand

* ``NoisyProblem(base="biquad", sigma=0.1, **base_knobs)``: ``base`` is a point-problem id (built
  with ``base_knobs``, e.g. ``K=3``, ``scale=0.1``, ``dtype``) or a :class:`Problem` instance. Its id
  is ``f"noisy-{base.id}"``. Registered ids: ``noisy-biquad`` (:class:`NoisyBiQuad`) and
  ``noisy-cagrad-toy`` (:class:`NoisyCAGradToy`), whose knobs are ``sigma`` plus the base's knobs
  (``modl run smg --problem noisy-biquad -p problem.sigma=0.5 -p problem.K=3``).
* Everything deterministic is the base problem's, unchanged: ``losses``, ``jacobian``,
  ``losses_and_jacobian``, ``value_and_jacobian`` (and the numpy fast path), ``initial_points``,
  ``bounds``/``project``, ``pareto_set``, ``pareto_front``, ``distance_to_pareto_set``,
  ``hv_reference``, ``loss_lower_bound`` and the runner defaults (optimiser, steps, lr).
* The oracle: S independent unbiased samples at x,

      J_s = J(x) + σ·ξ_s,   F_s = F(x) + σ·ζ_s,   ξ_s ~ N(0, I) i.i.d. over sample/start/task/coordinate,
                                                 ζ_s ~ N(0, I) i.i.d. over sample/start/task, independent of ξ,

  so E[J_s] = J, E[J_s J_tᵀ] = J Jᵀ for s ≠ t and E[J_s J_sᵀ] = J Jᵀ + σ² n I (per start): the
  Gramian of ONE sample is biased, which is the bias of SMG's min-norm weights and the one MoDo's
  double sampling removes. ``samples`` is S ≥ 1; the leading S axis is always present (S = 1 too).
  A 1-D x (n,) gives (S, K), (S, K, n).
* The draw: first ξ = randn(S, B, K, n), then ζ = randn(S, B, K), both from ``generator`` in the
  problem's dtype on the CPU (then moved to the problem's device), so a seeded generator reproduces
  the draw bit for bit on every machine. σ = 0 returns F and J exactly (J + 0·ξ = J).
* ``noise_generator(seed)``: a CPU generator seeded from ``seed`` but on a stream distinct from
  :meth:`initial_points` (which draws from ``seed`` itself), so the starts and the noise are not the
  same numbers.

The runner (``reference_impls/runner.py``, ``_run_points``): on a NoisyProblem a method that declares
``jacobian_samples: ClassVar[int] = S`` (default 1 when it declares nothing) receives, per start and
per step, J of shape (K, n) when S = 1, else (S, K, n); methods reading losses receive F_1 (K,) (the
first sample's losses). The samples come from ``noise_generator(seed)`` of the run's seed, drawn once
per step for the whole batch: ``perturb(F, J, generator, S)`` on the exact F, J of the loop. The
post-step hooks (``update``) get F + σ·ζ at the new iterate. The iterate moves along the method's
direction; trajectories and the final metrics (PS measure, distance, HV) use the exact F and J.
On an exact (non-noisy) problem a method with S > 1 gets the S identical samples J (S, K, n) (a
deterministic oracle). Loss weightings must have S = 1; set methods are refused on noisy problems.
With σ = 0 a run equals the run on the base problem bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference_impls.problems.base import Problem
from reference_impls.problems.biquad import BiQuad
from reference_impls.problems.cagrad_toy import CAGradToy

#: offset of the noise stream from the starting points' stream (the golden-ratio constant of splitmix64)
_NOISE_STREAM = 0x9E3779B97F4A7C15


class NoisyProblem(Problem):
    """A point problem with a Gaussian stochastic oracle: J_s = J(x) + σξ_s, F_s = F(x) + σζ_s."""

    def __init__(self, base: str | Problem = "biquad", sigma: float = 0.1, **base_knobs: Any) -> None:
        if isinstance(base, Problem):
            if base_knobs:
                raise ValueError("noisy: knobs can only be given with a base problem id")
            inner = base
        else:
            from reference_impls.problems import get_problem

            inner = get_problem(str(base), **base_knobs)
            if not isinstance(inner, Problem):
                raise ValueError(f"noisy: the base must be a point problem, got {base!r}")
        if isinstance(inner, NoisyProblem):
            raise ValueError("noisy: the base problem is already noisy")
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noisy: sigma must be a finite number >= 0, got {sigma!r}")
        super().__init__(inner.K, inner.n, dtype=inner.dtype, device=inner.device)
        self.base = inner
        self.sigma = sigma
        self.id = f"noisy-{inner.id}"  # instance attribute: f"noisy-{base.id}"
        self.bounds = inner.bounds
        self.hv_reference = inner.hv_reference
        self.loss_lower_bound = inner.loss_lower_bound
        # runner defaults: the base problem's (instance attributes shadow the class defaults)
        self.default_optimizer = inner.default_optimizer
        self.default_steps = inner.default_steps
        self.default_lr = inner.default_lr

    # ---- the stochastic oracle ---------------------------------------------------------------

    def noise_generator(self, seed: int = 0) -> torch.Generator:
        """A seeded CPU generator for the oracle, on a stream distinct from :meth:`initial_points`'."""
        return torch.Generator(device="cpu").manual_seed((int(seed) + _NOISE_STREAM) % 2**64)

    def perturb(self, F: Tensor, J: Tensor, generator: torch.Generator, samples: int = 1) -> tuple[Tensor, Tensor]:
        """S noisy samples around exact values: F (B, K), J (B, K, n) -> (S, B, K), (S, B, K, n).

        Also accepts F (K,), J (K, n) -> (S, K), (S, K, n). Draws ξ (S, *J.shape) first, then ζ (S, *F.shape).
        """
        samples = int(samples)
        if samples < 1:
            raise ValueError(f"noisy: samples must be >= 1, got {samples}")
        if J.shape[:-1] != F.shape or J.shape[-1] != self.n:
            raise ValueError(f"noisy: F {tuple(F.shape)} and J {tuple(J.shape)} do not match (.., K) and (.., K, {self.n})")
        xi = torch.randn((samples, *J.shape), generator=generator, dtype=J.dtype)  # ξ, (S, B, K, n)
        zeta = torch.randn((samples, *F.shape), generator=generator, dtype=F.dtype)  # ζ, (S, B, K)
        J_s = J.unsqueeze(0) + self.sigma * xi.to(J.device)  # J_s = J + σξ_s, (S, B, K, n)
        F_s = F.unsqueeze(0) + self.sigma * zeta.to(F.device)  # F_s = F + σζ_s, (S, B, K)
        return F_s, J_s

    def sample_value_and_jacobian(self, x: Tensor, generator: torch.Generator, samples: int = 1) -> tuple[Tensor, Tensor]:
        """S independent unbiased samples at x: (B, n) -> F (S, B, K), J (S, B, K, n); (n,) -> (S, K), (S, K, n)."""
        F, J = self.losses_and_jacobian(x)  # exact, (B, K), (B, K, n) or (K,), (K, n)
        return self.perturb(F, J, generator, samples)

    # ---- everything deterministic is the base problem's ---------------------------------------

    def _losses(self, x: Tensor) -> Tensor:
        return self.base._losses(x)

    def _jacobian(self, x: Tensor) -> Tensor:
        return self.base._jacobian(x)

    def losses_and_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.losses_and_jacobian(x)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return self.base._np_value_and_jacobian(x)

    @property
    def has_closed_form(self) -> bool:
        return self.base.has_closed_form

    def project(self, x: Tensor) -> Tensor:
        return self.base.project(x)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        return self.base.initial_points(seed, num)

    @property
    def has_pareto_front(self) -> bool:
        return self.base.has_pareto_front

    @property
    def has_pareto_set(self) -> bool:
        return self.base.has_pareto_set

    def pareto_front(self, num: int = 1000) -> Tensor:
        return self.base.pareto_front(num)

    def pareto_set(self, num: int = 1000) -> Tensor:
        return self.base.pareto_set(num)

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        return self.base.distance_to_pareto_set(x)

    def __getattr__(self, name: str) -> Any:
        # base-specific extras (BiQuad.anchors, linear_scalarisation_solution, CAGradToy.scale, ...)
        if name == "base":  # not yet set: avoid recursion during __init__
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"NoisyProblem(base={self.base!r}, sigma={self.sigma:g})"


class NoisyBiQuad(NoisyProblem):
    """``biquad`` with a Gaussian stochastic oracle (J_s = J + σξ, F_s = F + σζ; knobs: sigma + biquad's)."""

    id = "noisy-biquad"
    default_optimizer = BiQuad.default_optimizer
    default_steps = BiQuad.default_steps
    default_lr = BiQuad.default_lr

    def __init__(self, sigma: float = 0.1, **knobs: Any) -> None:
        super().__init__("biquad", sigma, **knobs)


class NoisyCAGradToy(NoisyProblem):
    """``cagrad-toy`` with a Gaussian stochastic oracle (J_s = J + σξ, F_s = F + σζ; knobs: sigma + cagrad-toy's)."""

    id = "noisy-cagrad-toy"
    default_optimizer = CAGradToy.default_optimizer
    default_steps = CAGradToy.default_steps
    default_lr = CAGradToy.default_lr

    def __init__(self, sigma: float = 0.1, **knobs: Any) -> None:
        super().__init__("cagrad-toy", sigma, **knobs)
