"""``bilevel-ridge``: task-weighted ridge regression with a train/validation split, a bi-level toy whose lower level is closed form.

Data (float64, seeded by ``seed``; the model's initialisation :meth:`BilevelRidge.reset` uses an independent stream): task i has training inputs A_i (m_train, n) with targets b_i and
validation inputs C_i (m_val, n) with targets d_i, all rows N(0, I), targets y = X w_i + σ ε.

* lower level (the model ω ∈ R^n):  ω*(λ) = argmin_ω Σ_i λ_i f_i^tr(ω) + ½·ridge·‖ω‖²,
  f_i^tr(ω) = ½ mean_j (A_i ω − b_i)_j², so ω*(λ) solves (Σ_i λ_i H_i + ridge·I) ω = Σ_i λ_i A_iᵀb_i / m_train
  with H_i = A_iᵀA_i / m_train (:meth:`BilevelRidge.lower_solution`, differentiable in λ);
* upper level: the validation losses f_k^val(ω) = ½ mean_j (C_k ω − d_k)_j² at ω*(λ);
  :meth:`BilevelRidge.hypergradient` is the exact (K, K) matrix ∂f_k^val(ω*(λ))/∂λ_j by autograd through
  the closed form; by the implicit-function theorem it equals −∇f_k^val(ω*)ᵀ M⁻¹ ∇f_j^tr(ω*) with
  M = Σ_i λ_i H_i + ridge·I (checked in ``tests/reference_impls/test_bilevel_ridge.py``).

The ridge term belongs to the lower level only: the runner trains ω on Σ_i w_i f_i^tr(ω) with weight
decay ``ridge`` (gradient ridge·ω, i.e. the gradient of ½·ridge·‖ω‖²), whose fixed point for fixed
weights w is exactly ``lower_solution(w)``.

Variants: ``"default"``: task maps w_i = u + ½ v_i around a shared u (related, not identical tasks);
``"auxiliary"`` (K = 3, for Auto-Lambda's claim): task 0 is the primary task (map w_0), task 1 a
helpful auxiliary (the same map w_0 on fresh inputs) and task 2 a harmful one (target −y: map −w_0);
``primary_tasks`` is (0,) there and every task otherwise.

Interface for bi-level methods (:class:`reference_impls.core.loss_weighting.BilevelLossWeighting`),
one call per outer step, made by the runner and by :func:`reference_impls.core.hooks.bilevel_step`::

    method.outer_step(
        params,                 # [ω]: the model tensors (leaves); read-only unless method.moves_model
        train_losses,           # () -> (K,) f_i^tr at the CURRENT params, with a graph
        val_losses,             # () -> (K,) f_i^val at the current params, with a graph
        lr,                     # the inner (model) learning rate α, for virtual/unrolled steps
        *,
        train_losses_at,        # (list of tensors shaped like params) -> (K,) f_i^tr there (functional form:
        val_losses_at,          #   unrolled θ' = θ − α∇… stays differentiable); same for f_i^val
        weight_decay=0.0,       # the inner step's L2 weight decay (here: ridge); part of the lower level
        optimizer=None,         # the model optimiser (read-only: e.g. its SGD momentum buffers)
        step=0,                 # 0-based inner step counter
    )

A method with ``moves_model = True`` (FORUM) updates params in place under ``torch.no_grad()`` in its
outer step, and the loop then skips the plain inner step of that step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.solvers import SolverError

VARIANTS = ("default", "auxiliary")


def _stream(seed: int, purpose: str) -> int:
    """An independent 63-bit torch seed per (seed, purpose), via numpy's SeedSequence."""
    key = {"data": 0, "model": 1}[purpose]
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class BilevelRidge:
    """Task-weighted ridge regression with a train/validation split: a bi-level toy with a closed-form lower level."""

    id: ClassVar[str] = "bilevel-ridge"
    default_optimizer: ClassVar[str] = "sgd"
    default_steps: ClassVar[int] = 500
    default_lr: ClassVar[float] = 0.1
    has_pareto_set: ClassVar[bool] = False
    has_pareto_front: ClassVar[bool] = False

    def __init__(
        self,
        K: int = 3,
        n: int = 8,
        m_train: int = 20,
        m_val: int = 20,
        ridge: float = 1e-1,
        variant: str = "default",
        seed: int = 0,
        noise: float = 0.1,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"bilevel-ridge: unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        if variant == "auxiliary" and K != 3:
            raise ValueError(f"bilevel-ridge: the auxiliary variant has K = 3 tasks (primary, helpful, harmful), got K={K}")
        if K < 1 or n < 1 or m_train < 1 or m_val < 1:
            raise ValueError(f"bilevel-ridge: need K, n, m_train, m_val >= 1, got K={K}, n={n}, m_train={m_train}, m_val={m_val}")
        if not (ridge >= 0 and torch.isfinite(torch.tensor(float(ridge)))):
            raise ValueError(f"bilevel-ridge: ridge must be a finite number >= 0, got {ridge}")
        self.K, self.n, self.m_train, self.m_val = int(K), int(n), int(m_train), int(m_val)
        self.ridge, self.variant, self.seed, self.noise = float(ridge), variant, int(seed), float(noise)
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        self.hv_reference = None
        self.bounds = None
        g = torch.Generator().manual_seed(_stream(self.seed, "data"))
        dt = self.dtype
        if variant == "auxiliary":
            w0 = torch.randn(n, generator=g, dtype=dt)  # (n,) the primary task's map
            maps = torch.stack([w0, w0, -w0])  # primary, helpful (same map), harmful (target −y), (3, n)
            self.primary_tasks: tuple[int, ...] = (0,)
        else:
            u = torch.randn(n, generator=g, dtype=dt)  # (n,) shared component
            maps = u + 0.5 * torch.randn(K, n, generator=g, dtype=dt)  # w_i = u + ½ v_i, (K, n)
            self.primary_tasks = tuple(range(K))
        self.maps = maps  # (K, n)
        self.A = torch.randn(K, m_train, n, generator=g, dtype=dt)  # (K, m_train, n)
        self.b = torch.einsum("kmn,kn->km", self.A, maps) + noise * torch.randn(K, m_train, generator=g, dtype=dt)  # (K, m_train)
        self.C = torch.randn(K, m_val, n, generator=g, dtype=dt)  # (K, m_val, n)
        self.d = torch.einsum("kmn,kn->km", self.C, maps) + noise * torch.randn(K, m_val, generator=g, dtype=dt)  # (K, m_val)
        if variant == "auxiliary":
            # target −y of the harmful task: the primary's map on its inputs, negated (noise included)
            self.b[2] = -(self.A[2] @ maps[0] + noise * torch.randn(m_train, generator=g, dtype=dt))
            self.d[2] = -(self.C[2] @ maps[0] + noise * torch.randn(m_val, generator=g, dtype=dt))
        self.H = torch.einsum("kmi,kmj->kij", self.A, self.A) / m_train  # H_i = A_iᵀA_i / m, (K, n, n)
        self.r = torch.einsum("kmi,km->ki", self.A, self.b) / m_train  # r_i = A_iᵀb_i / m, (K, n)

    # ------------------------------------------------------------------------------------------
    # The model and its losses
    # ------------------------------------------------------------------------------------------

    def reset(self, seed: int = 0) -> Tensor:
        """A fresh model ω (n,), N(0, I) seeded by ``seed``: a float64 leaf with requires_grad.

        Drawn from a stream independent of the data's (the same integer seeds both without making
        ω equal to a task's target map).
        """
        g = torch.Generator().manual_seed(_stream(int(seed), "model"))
        return torch.randn(self.n, generator=g, dtype=self.dtype).requires_grad_(True)

    def _check(self, omega: Tensor) -> Tensor:
        if omega.shape != (self.n,):
            raise ValueError(f"bilevel-ridge: the model ω must have shape ({self.n},), got {tuple(omega.shape)}")
        return omega

    def train_losses(self, omega: Tensor) -> Tensor:
        """f_i^tr(ω) = ½ mean_j (A_i ω − b_i)_j², (K,), differentiable in ω."""
        residual = self.A @ self._check(omega) - self.b  # (K, m_train)
        return 0.5 * residual.pow(2).mean(dim=1)  # (K,)

    def val_losses(self, omega: Tensor) -> Tensor:
        """f_k^val(ω) = ½ mean_j (C_k ω − d_k)_j², (K,), differentiable in ω."""
        residual = self.C @ self._check(omega) - self.d  # (K, m_val)
        return 0.5 * residual.pow(2).mean(dim=1)  # (K,)

    def losses(self, x: Tensor) -> Tensor:
        """Validation losses of a batch of models (the objectives ``modl run`` records and plots): (B, n) -> (B, K), or (n,) -> (K,)."""
        residual = torch.einsum("kmn,...n->...km", self.C, x.to(self.dtype)) - self.d  # (..., K, m_val)
        return 0.5 * residual.pow(2).mean(dim=-1)  # (..., K)

    def train_losses_at(self, params: Sequence[Tensor]) -> Tensor:
        """Functional form for methods: ``params`` = [ω] -> (K,) training losses."""
        (omega,) = params
        return self.train_losses(omega)

    def val_losses_at(self, params: Sequence[Tensor]) -> Tensor:
        """Functional form for methods: ``params`` = [ω] -> (K,) validation losses."""
        (omega,) = params
        return self.val_losses(omega)

    def train_gradients(self, omega: Tensor) -> Tensor:
        """Closed-form ∇f_i^tr(ω) = H_i ω − r_i, (K, n)."""
        return self.H @ self._check(omega) - self.r  # (K, n)

    def val_gradients(self, omega: Tensor) -> Tensor:
        """Closed-form ∇f_k^val(ω) = C_kᵀ(C_k ω − d_k)/m_val, (K, n)."""
        residual = self.C @ self._check(omega) - self.d  # (K, m_val)
        return torch.einsum("kmn,km->kn", self.C, residual) / self.m_val  # (K, n)

    # ------------------------------------------------------------------------------------------
    # The lower level in closed form
    # ------------------------------------------------------------------------------------------

    def _weights(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam, dtype=self.dtype)
        if lam.shape != (self.K,):
            raise ValueError(f"bilevel-ridge: weights λ must have shape ({self.K},), got {tuple(lam.shape)}")
        if not bool(torch.isfinite(lam.detach()).all()):
            raise ValueError(f"bilevel-ridge: weights λ must be finite, got {lam.detach().tolist()}")
        return lam

    def lower_matrix(self, lam: Tensor) -> Tensor:
        """M(λ) = Σ_i λ_i H_i + ridge·I, the Hessian of the lower level, (n, n)."""
        lam = self._weights(lam)
        return torch.einsum("k,kij->ij", lam, self.H) + self.ridge * torch.eye(self.n, dtype=self.dtype)  # (n, n)

    def lower_solution(self, lam: Tensor) -> Tensor:
        """ω*(λ) = argmin_ω Σ λ_i f_i^tr(ω) + ½·ridge·‖ω‖², (n,), differentiable in λ (K,).

        Solves M(λ) ω = Σ_i λ_i r_i. Raises ValueError when M(λ) is not positive definite (smallest
        eigenvalue ≤ n·eps·largest: the lower level then has no unique minimiser; negative weights can
        make Σ λ_i f_i^tr unbounded below), and
        :class:`~reference_impls.core.solvers.SolverError` when the solution does not satisfy the
        stationarity M ω = Σ λ_i r_i to a tolerance relative to its parts (‖M‖‖ω‖ and ‖Σ λ_i r_i‖).
        """
        lam = self._weights(lam)
        M = self.lower_matrix(lam)  # (n, n)
        rhs = lam @ self.r  # Σ_i λ_i r_i, (n,)
        eigenvalues = torch.linalg.eigvalsh(M.detach())  # ascending, (n,); ~50× faster than cholesky_ex on CPU here
        if not float(eigenvalues[0]) > self.n * torch.finfo(self.dtype).eps * float(eigenvalues[-1].abs()):
            raise ValueError(
                f"bilevel-ridge: the lower level Σ λ_i f_i^tr + ½·ridge·‖ω‖² is not strongly convex at "
                f"λ = {lam.detach().tolist()} (ridge = {self.ridge}): no minimiser"
            )
        omega = torch.linalg.solve(M, rhs)  # (n,)
        with torch.no_grad():
            residual = float((M @ omega - rhs).norm())  # ‖∇ of the lower level at ω‖
            scale = float(eigenvalues[-1] * omega.norm() + rhs.norm())  # ‖M‖₂‖ω‖ + ‖Σ λ_i r_i‖ (M symmetric PD)
            if not residual <= 1e3 * self.n * torch.finfo(self.dtype).eps * scale:
                raise SolverError(f"bilevel-ridge: lower-level stationarity residual {residual:.3e} exceeds the tolerance (scale {scale:.3e})")
        return omega

    def hypergradient(self, lam: Tensor) -> Tensor:
        """(K, K) exact ∂f_k^val(ω*(λ))/∂λ_j (row k, column j), by autograd through :meth:`lower_solution`."""
        lam = self._weights(lam).detach()
        return torch.autograd.functional.jacobian(lambda l: self.val_losses(self.lower_solution(l)), lam)  # (K, K)

    # ------------------------------------------------------------------------------------------
    # Batches (the toy is full batch: one epoch per step)
    # ------------------------------------------------------------------------------------------

    def train_batches(self, seed: int = 0) -> Iterator[None]:
        """Full-batch: every step sees all rows (yields None forever)."""
        while True:
            yield None

    val_batches = train_batches

    def __repr__(self) -> str:
        return f"BilevelRidge(K={self.K}, n={self.n}, m_train={self.m_train}, m_val={self.m_val}, ridge={self.ridge}, variant={self.variant!r}, seed={self.seed})"


__all__ = ["BilevelRidge", "VARIANTS"]
