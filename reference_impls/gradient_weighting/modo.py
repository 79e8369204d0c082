r"""MoDo: multi-objective gradient descent with double sampling (a stochastic MGDA whose λ step is unbiased).

Paper: L. Chen, H. Fernando, Y. Ying and T. Chen, "Three-Way Trade-Off in Multi-Objective Learning:
Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023, arXiv 2305.20057; journal version
JMLR 25 (2024). Official code: github.com/heshandevaka/Trade-Off-MOL (``Toy-MNIST*/moo.py``
``grad_modo``, the three-sample driver ``Toy-MNIST/toy_fast_3sample.py``, and the LibMTL port
``LibMTL/LibMTL/weighting/MoDo.py`` with its defaults in ``LibMTL/LibMTL/config.py``).

Update rule:
    The paper's MoDo update, Algorithm 1 ("eq. 2.9a" in the JMLR numbering, as cited in TorchJD
    PR #717; the PDF was not reachable from this workplace, so the update was checked against the
    official code's ``grad_modo`` and LibMTL port instead). At step t, with three independent
    stochastic Jacobians :math:`J_{\xi_1}, J_{\xi_2}, J_{\xi_3}` (K × n) at :math:`x_t`,
    :math:`\lambda_0 = \mathbf{1}/K` and :math:`\Pi_\Delta` the Euclidean projection onto the
    probability simplex, the weights take one projected step with the constant step size γ and
    the optimiser then steps :math:`x \leftarrow x - \alpha d`:

    .. math::

        \lambda_{t+1} = \Pi_\Delta\big(\lambda_t - \gamma (J_{\xi_1} J_{\xi_2}^\top + \rho I) \lambda_t\big), \qquad d = J_{\xi_3}^\top \lambda_{t+1}

    :math:`J_{\xi_1} J_{\xi_2}^\top` is the "two-batch Gramian": for independent samples
    :math:`\mathbb{E}[J_{\xi_1} J_{\xi_2}^\top] = J J^\top`, so the pre-projection step is an unbiased
    estimate of the true-gradient step :math:`\lambda - \gamma (J J^\top + \rho I) \lambda` (a projected
    gradient step on the MGDA dual :math:`\tfrac12 \lambda^\top (J J^\top + \rho I) \lambda`). One sample
    used twice is biased: :math:`\mathbb{E}[J_\xi J_\xi^\top] = J J^\top + \operatorname{Cov}`, e.g.
    :math:`J J^\top + \sigma^2 n I` for i.i.d. Gaussian gradient noise of variance σ²
    (``problems/noisy.py``); ``tests/reference_impls/test_modo.py`` measures both. The two-batch Gramian is
    not symmetric: MGDA's min-norm solver does not apply to it, only this gradient step. With two
    samples (``samples=2``, the official toy's variant, D2) the direction averages them,
    :math:`d = \tfrac12 (J_{\xi_1} + J_{\xi_2})^\top \lambda_{t+1}`; a single Jacobian is used for
    every draw (D3).

Input: ``method(J)`` with J of shape (S, K, n), S independent samples (the runner draws
``jacobian_samples`` of them on a noisy problem), or (K, n), a single Jacobian used for every draw (a
deterministic oracle: the paper's update with the exact gradient). S = 3: ξ1, ξ2 for λ, ξ3 for d (the
paper). S = 2: ξ1, ξ2 for λ and d averages the two (the official toy's two-sample variant,
``grad_modo`` with ``num_samples = 2``). ``samples`` (the hyperparameter) sets ``jacobian_samples``.

Hyperparameters (official defaults): ``gamma`` γ = 0.1 (``--gamma_modo``), ``rho`` ρ = 0.1
(``--rho_modo``), 3 samples (``--num_samples_modo`` of the toy scripts); constant γ (the official code
has no decay). TorchJD's ``MoDoWeighting`` defaults to ρ = 0. λ is kept in float64 on the CPU; the K×K
two-batch product is formed in float64 (a float32 input whose product would overflow float32 still
gets a defined λ). Stateful (λ, t): :meth:`reset` forgets them; a change of K raises until reset.

Degenerate inputs: all-zero J gives λ = 𝟙/K (the step (1 − γρ)λ is uniform) and d = 0; K = 1 gives
λ = (1,) and d = the third sample's gradient; opposite rows (g, −g) keep λ = (½, ½) and d = 0. Huge
scales send λ to a vertex of the simplex (finite); tiny ones leave λ ≈ its previous value. NaN or
infinite input raises NonFiniteError; a finite input whose K×K product overflows float64 raises
NonFiniteError too.

Deviations:
  D1. The projection onto the simplex is ``reference_impls.core.solvers.project_simplex``
      (sort-based, exact, shifted by the maximum so huge steps do not cancel) and its result is
      certified (λ ≥ 0, :math:`\lvert \sum_i \lambda_i - 1 \rvert \le 8 K \varepsilon`, else SolverError);
      the official ``_projection2simplex`` is the same sort-based rule in a Python loop, without the
      shift.
  D2. S = 2 averages the two samples in d, as the official toy (``0.5 * lambd @ (grad1 + grad2)``);
      the official LibMTL port back-propagates the SUM of the two samples (a factor 2 in the step,
      "handle avging via lr of x").
  D3. A single (K, n) Jacobian (the ``backward`` training loop, where autograd gives one batch, and
      the exact toy problems) is used as ξ1 = ξ2 = ξ3: the deterministic algorithm on exact
      gradients, but on a minibatch Jacobian it is the biased single-sample step. For the unbiased
      step pass independent samples (S, K, n).
  D4. The optional gradient normalisation of the official LibMTL port (``modo_gn``, commented out
      there) is not implemented; the paper has none.
  D5. Task-specific parameters (heads) receive their raw gradients (the base-class ``backward``).

Usage:
    >>> modo = MoDo()
    >>> d = modo(torch.stack([J1, J2, J3]))   # three independent minibatch Jacobians (K, n) -> d (n,)
    >>> modo.lambd                            # λ_{t+1}, float64 (K,)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError, Weighting, check_jacobian, check_losses
from reference_impls.core.solvers import SolverError, combine2, project_simplex, project_simplex2, small_tensor

_EPS64 = float(torch.finfo(torch.float64).eps)


class MoDo(Weighting):
    """λ ← Π_Δ(λ − γ(J_{ξ1}J_{ξ2}ᵀ + ρI)λ), d = J_{ξ3}ᵀλ: stochastic MGDA with a double-sampled λ step."""

    name: ClassVar[str] = "modo"
    stateful: ClassVar[bool] = True
    jacobian_samples: ClassVar[int] = 3  # the runner draws this many independent samples per step

    def __init__(self, gamma: float = 0.1, rho: float = 0.1, samples: int = 3) -> None:
        if not (gamma > 0.0 and gamma < float("inf")):
            raise ValueError(f"modo: gamma must be a finite number > 0, got {gamma!r}")
        if not (rho >= 0.0 and rho < float("inf")):
            raise ValueError(f"modo: rho must be a finite number >= 0, got {rho!r}")
        if samples not in (2, 3):
            raise ValueError(f"modo: samples must be 2 or 3 (the paper uses 3), got {samples!r}")
        self.gamma = float(gamma)
        self.rho = float(rho)
        self.samples = int(samples)
        self.jacobian_samples = self.samples  # instance value: what the runner reads
        self.reset()

    def reset(self) -> None:
        self._lambd: Tensor | None = None  # λ_t ∈ Δ, (K,), float64 CPU
        self._t = 0

    @property
    def lambd(self) -> Tensor | None:
        """The current weights λ_t ∈ Δ (K,), float64, None before the first step."""
        return self._lambd

    @property
    def t(self) -> int:
        """The number of steps taken."""
        return self._t

    # ---- input handling: (K, n) or (S, K, n) ------------------------------------------------

    def _draws(self, J: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(J_ξ1, J_ξ2, J_ξ3) from J (K, n) or (S, K, n); J_ξ3 None for S = 2 (d averages ξ1 and ξ2)."""
        if not isinstance(J, Tensor):
            raise TypeError(f"expected a torch.Tensor Jacobian, got {type(J).__name__}")
        if J.ndim == 2:
            check_jacobian(J)
            return J, J, J  # one Jacobian for every draw (D3)
        if J.ndim != 3:
            raise ValueError(f"modo: expected J of shape (K, n) or (S, K, n), got shape {tuple(J.shape)}")
        S = J.shape[0]
        if S == 1:
            return self._draws(J[0])
        if S not in (2, 3):
            raise ValueError(f"modo: expected 2 or 3 Jacobian samples (S, K, n), got S = {S}")
        for s in range(S):
            check_jacobian(J[s])
        if S == 2:
            return J[0], J[1], None
        return J[0], J[1], J[2]

    def __call__(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        J1, J2, J3 = self._draws(J)
        check_losses(losses, J1.shape[0], required=False)
        lam = self._step(J1, J2)  # λ_{t+1}, (K,) float64
        if J3 is None:
            return 0.5 * (lam.to(J1) @ J1 + lam.to(J2) @ J2)  # d = ½(J_ξ1 + J_ξ2)ᵀλ (S = 2, D2), (n,)
        return lam.to(J3) @ J3  # d = J_ξ3ᵀ λ_{t+1}, (n,)

    def weights(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        """Advance λ one step on J (K, n) or (S, K, n) and return λ_{t+1} in J's dtype."""
        J1, J2, _ = self._draws(J)
        check_losses(losses, J1.shape[0], required=False)
        return self._step(J1, J2).to(J1)

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        return self._step(J, J).to(J)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): :meth:`__call__` on Python floats for J (2, 2) or S = 2, 3 samples
        (S, 2, 2) as nested lists: the two-batch Gramian, the λ step, project_simplex's formula for two entries, its
        check and d, the same operations in the same order, the general path's bits; None (no step taken) otherwise."""
        if not rows or not rows[0]:
            return None
        if type(rows[0][0]) is float:
            draws = (rows, rows, rows)  # J (K, n): one Jacobian for every draw (D3)
        elif len(rows) == 1:
            draws = (rows[0], rows[0], rows[0])  # S = 1
        elif len(rows) in (2, 3):
            draws = (rows[0], rows[1], rows[2] if len(rows) == 3 else None)  # S = 3: ξ1, ξ2, ξ3; S = 2: ξ1, ξ2
        else:
            return None
        for J in draws:
            if J is not None and not (len(J) == 2 and len(J[0]) == 2 and len(J[1]) == 2 and type(J[0][0]) is float):
                return None  # K = 2, n = 2 only: the products below are two-term sums
        (a, b), (c, d) = draws[0]
        (e, f), (g, h) = draws[1]
        J3 = draws[2]
        if not math.isfinite(a + b + c + d + e + f + g + h + (0.0 if J3 is None else sum(J3[0]) + sum(J3[1]))):
            return None  # NaN/inf (or a sum that overflows): the general path's check_jacobian decides
        if self._lambd is None:
            l1 = l2 = 0.5  # λ_0 = 𝟙/K
        elif self._lambd.shape[0] == 2:
            l1, l2 = self._lambd.tolist()
        else:
            return None  # the general path raises (the number of tasks changed)
        A11, A12, A21, A22 = a * e + b * f, a * g + b * h, c * e + d * f, c * g + d * h  # J_ξ1 J_ξ2ᵀ as torch rounds it
        if not math.isfinite(A11 + A12 + A21 + A22):
            return None
        gamma, rho = self.gamma, self.rho
        v1 = l1 - gamma * ((A11 * l1 + A12 * l2) + rho * l1)  # λ_t − γ(J_ξ1J_ξ2ᵀ + ρI)λ_t
        v2 = l2 - gamma * ((A21 * l1 + A22 * l2) + rho * l2)
        lam = project_simplex2(v1, v2)  # λ_{t+1} = Π_Δ(v) (D1)
        if lam is None or not (lam[0] >= 0.0 and lam[1] >= 0.0 and abs((lam[0] + lam[1]) - 1.0) <= 8 * 2 * _EPS64):
            return None  # the general path raises
        self._lambd = small_tensor(lam, torch.float64)
        self._t += 1
        if J3 is None:  # d = ½(J_ξ1 + J_ξ2)ᵀλ (S = 2, D2)
            return [0.5 * (x + y) for x, y in zip(combine2(lam[0], lam[1], *draws[0]), combine2(lam[0], lam[1], *draws[1]))]
        return combine2(lam[0], lam[1], J3[0], J3[1])  # d = J_ξ3ᵀ λ_{t+1}

    # ---- the λ step ----------------------------------------------------------------------------

    def _step(self, J1: Tensor, J2: Tensor) -> Tensor:
        K = J1.shape[0]
        if J2.shape != J1.shape:
            raise ValueError(f"modo: the samples differ in shape: {tuple(J1.shape)} and {tuple(J2.shape)}")
        if self._lambd is None:
            self._lambd = torch.full((K,), 1.0 / K, dtype=torch.float64)  # λ_0 = 𝟙/K (official code)
        elif self._lambd.shape[0] != K:
            raise ValueError(f"modo: the number of tasks changed from {self._lambd.shape[0]} to {K}; call reset() first")
        A = (J1.to(torch.float64) @ J2.to(torch.float64).T).cpu()  # two-batch Gramian J_ξ1 J_ξ2ᵀ, (K, K), not symmetric
        if not bool(torch.isfinite(A).all()):
            raise NonFiniteError("modo: the product J_ξ1 J_ξ2ᵀ overflows float64: rescale the losses")
        lam = self._lambd
        v = lam - self.gamma * (A @ lam + self.rho * lam)  # λ_t − γ(J_ξ1J_ξ2ᵀ + ρI)λ_t, (K,)
        new = project_simplex(v)  # λ_{t+1} = Π_Δ(v)  (D1)
        if not (bool((new >= 0).all()) and abs(float(new.sum()) - 1.0) <= 8 * K * _EPS64):
            raise SolverError(f"modo: the simplex projection of {v.tolist()} is not on the simplex: {new.tolist()}")
        self._lambd = new
        self._t += 1
        return new
