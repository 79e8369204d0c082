"""The base class of the toy problems: batched losses, Jacobians, analytic Pareto sets and fronts.

Every point problem works on a batch of B decision vectors at once: ``x`` has shape (B, n),
``losses(x)`` returns (B, K) and ``jacobian(x)`` returns (B, K, n) (row k of ``J[b]`` is
∇_x f_k(x_b)). The B points never interact, so one call serves B independent runs. A 1-D ``x`` of
shape (n,) is accepted and answered without the batch dimension.

Float64 by default; every tensor a problem creates follows its ``dtype`` and ``device``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor


class Problem:
    """A multi-objective toy problem min_x (f_1(x), ..., f_K(x)), x ∈ R^n (optionally a box).

    Subclasses set ``id``, ``K``, ``n`` and implement :meth:`_losses` (batched, differentiable);
    they override :meth:`pareto_front`, :meth:`pareto_set` and :meth:`distance_to_pareto_set`
    where these are known, and :meth:`_jacobian` where an analytic Jacobian is cheaper.
    """

    id: ClassVar[str] = ""
    #: runner defaults: optimiser ("adam" | "sgd"), step count and learning rate
    default_optimizer: ClassVar[str] = "adam"
    default_steps: ClassVar[int] = 500
    default_lr: ClassVar[float] = 1e-2

    def __init__(self, K: int, n: int, *, dtype: torch.dtype = torch.float64, device: Any = None) -> None:
        if K < 1 or n < 1:
            raise ValueError(f"{self.id}: need K >= 1 and n >= 1, got K={K}, n={n}")
        self.K = int(K)
        self.n = int(n)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        #: (lower, upper) tensors of shape (n,), or None when the problem is unbounded
        self.bounds: tuple[Tensor, Tensor] | None = None
        #: reference point for the hypervolume (K,), or None
        self.hv_reference: tuple[float, ...] | None = None
        #: known lower bounds ℓ*_i of the losses (K,) where the losses can be negative, or None.
        #: Methods that use loss values (FAMO, DB-MTL, GradNorm, MGDA "loss" normalisation) are
        #: given f_i − ℓ*_i by the runner: FAMO's toy convention, which leaves gradients unchanged.
        self.loss_lower_bound: tuple[float, ...] | None = None

    # ------------------------------------------------------------------------------------------
    # Losses and Jacobians
    # ------------------------------------------------------------------------------------------

    def _losses(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        """(B, n) -> (B, K), differentiable in x."""
        raise NotImplementedError

    def _jacobian(self, x: Tensor) -> Tensor:
        """(B, n) -> (B, K, n); subclasses with an analytic Jacobian override this."""
        return self._autograd(x)[1]

    def _autograd(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(F (B, K), J (B, K, n)) by autograd: the points are independent, so ∂(Σ_b f_k(x_b))/∂x_b = ∇f_k(x_b)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            F = self._losses(x)  # (B, K)
            rows = [
                torch.autograd.grad(F[:, k].sum(), x, retain_graph=k < self.K - 1)[0]  # (B, n)
                for k in range(self.K)
            ]
        return F.detach(), torch.stack(rows, dim=1)  # (B, K), (B, K, n)

    def losses(self, x: Tensor) -> Tensor:
        """Objective values: (B, n) -> (B, K), or (n,) -> (K,)."""
        xb, single = self._batch(x)
        F = self._losses(xb)  # (B, K)
        return F[0] if single else F

    def jacobian(self, x: Tensor) -> Tensor:
        """Jacobians: (B, n) -> (B, K, n), or (n,) -> (K, n). Detached."""
        xb, single = self._batch(x)
        J = self._jacobian(xb).detach()  # (B, K, n)
        return J[0] if single else J

    def losses_and_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both at once (one forward pass when the Jacobian comes from autograd); detached."""
        xb, single = self._batch(x)
        if type(self)._jacobian is Problem._jacobian:
            F, J = self._autograd(xb)  # one forward pass
        else:
            with torch.no_grad():
                F = self._losses(xb)  # (B, K)
            J = self._jacobian(xb).detach()  # (B, K, n)
        return (F[0], J[0]) if single else (F, J)

    def _np_value_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Closed-form (F (B, K), J (B, K, n)) in numpy for x (B, n); None where a problem has none."""
        return None

    @property
    def has_closed_form(self) -> bool:
        """Whether :meth:`value_and_jacobian` runs in numpy without autograd (the runner's fast path)."""
        return type(self)._np_value_and_jacobian is not Problem._np_value_and_jacobian and self.device.type == "cpu"

    def value_and_jacobian(self, x: Tensor | np.ndarray) -> tuple[Any, Any]:
        """Losses and Jacobians in closed form: (B, n) -> F (B, K), J (B, K, n), or (n,) -> (K,), (K, n).

        No autograd and no torch round trips where the problem defines the numpy closed form (every
        point problem but ``mtl-linear``; CPU only): ~10× faster than :meth:`losses_and_jacobian` on
        a toy batch. Equal to it up to rounding (tests: 1e-12 relative per entry of each row). A numpy
        ``x`` gives numpy arrays, a tensor gives (detached) tensors, in the problem's dtype.
        """
        as_numpy = isinstance(x, np.ndarray)
        xb, single = self._batch(torch.from_numpy(x) if as_numpy else x)
        out = self._np_value_and_jacobian(xb.detach().numpy()) if self.has_closed_form else None
        if out is None:
            F, J = self.losses_and_jacobian(xb)
            out = (F.cpu().numpy(), J.cpu().numpy()) if as_numpy else (F, J)
        elif not as_numpy:
            out = (torch.from_numpy(out[0]), torch.from_numpy(out[1]))
        F, J = out
        return (F[0], J[0]) if single else (F, J)

    def _batch(self, x: Tensor) -> tuple[Tensor, bool]:
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if x.ndim == 1:
            x = x.unsqueeze(0)
            single = True
        else:
            single = False
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"{self.id}: expected x of shape (B, {self.n}) or ({self.n},), got {tuple(x.shape)}")
        return x, single

    # ------------------------------------------------------------------------------------------
    # Feasible set
    # ------------------------------------------------------------------------------------------

    def project(self, x: Tensor) -> Tensor:
        """Euclidean projection onto the box (clamping); the identity for unbounded problems."""
        if self.bounds is None:
            return x
        lower, upper = self.bounds
        return torch.maximum(torch.minimum(x, upper.to(x)), lower.to(x))

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The layout of a decision vector x ∈ R^n as named tensors, in flatten (row-major) order.

        Default: one vector ``[("x", (n,))]``. Problems whose x is a network's parameters list its
        tensors; 2-D entries are weight matrices (out, in), where low-rank adapters go (model
        combinations read it through :class:`~reference_impls.pareto_set.combination.ParameterLayout`).
        """
        return [("x", (self.n,))]

    # ------------------------------------------------------------------------------------------
    # Starting points and known solutions
    # ------------------------------------------------------------------------------------------

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:  # pragma: no cover - interface
        """The problem's standard starting points (B, n); ``num`` points (num, n) from the same seeded
        distribution when given (set methods: one per solution; B = ``num_starts`` otherwise)."""
        raise NotImplementedError

    def _num_points(self, num: int | None) -> int:
        """The number of starting points: ``num`` if given (≥ 1), else the problem's ``num_starts``."""
        if num is None:
            return int(self.num_starts)
        if int(num) != num or int(num) < 1:
            raise ValueError(f"{self.id}: need num >= 1 starting points, got {num!r}")
        return int(num)

    def ideal_point(self) -> Tensor | None:
        """The ideal point z* (K,): the minimum of each objective over the Pareto front, where known.

        Default: the minimum of a dense front sample (exact for the fronts whose samples include the
        end points: every sampled 2-objective front here); None without an analytic front.
        """
        if not self.has_pareto_front:
            return None
        return self.pareto_front(2001).min(0).values  # (K,)

    def objective_minimisers(self) -> Tensor | None:
        """The minimiser of each single objective, (K, n), where the problem knows them; None by default.

        Given to a set method's ``initial_set`` hook (sum-of-minimum's seeding chooses among them)."""
        return None

    @property
    def has_pareto_front(self) -> bool:
        return type(self).pareto_front is not Problem.pareto_front

    @property
    def has_pareto_set(self) -> bool:
        return type(self).distance_to_pareto_set is not Problem.distance_to_pareto_set

    def pareto_front(self, num: int = 1000) -> Tensor:
        """``num`` points of the analytic Pareto front, (num, K)."""
        raise NotImplementedError(f"{self.id}: no analytic Pareto front")

    def pareto_set(self, num: int = 1000) -> Tensor:
        """``num`` points of the Pareto set, (num, n)."""
        raise NotImplementedError(f"{self.id}: no known Pareto set")

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        """Euclidean distance of each point to the Pareto set: (B, n) -> (B,)."""
        raise NotImplementedError(f"{self.id}: no known Pareto set")

    # helpers for subclasses
    def _tensor(self, values: Any) -> Tensor:
        return torch.as_tensor(values, dtype=self.dtype, device=self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(int(seed))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, K={self.K}, n={self.n})"


def adam_minimise(x0: Tensor, objective: Any, *, steps: int, lr: float, what: str = "adam_minimise") -> Tensor:
    """Full-batch Adam on ``objective(x) -> scalar`` from x0 (a copy; any shape), ``steps`` steps, deterministic; returns x.

    Used to build seeded models (``merging-mlp``'s pretrained base and task models, its reference front) and by
    :func:`reference_impls.pareto_set.combination.fine_tune`. A non-finite objective raises a ValueError naming ``what``."""
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for t in range(int(steps)):
        opt.zero_grad(set_to_none=True)
        value = objective(x)
        if not bool(torch.isfinite(value)):
            raise ValueError(f"{what}: non-finite loss at step {t} (lower the learning rate)")
        value.backward()
        opt.step()
    return x.detach()


def distance_to_segment(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of each row of x (B, n) to the segment [a, b] (n,): clamp the projection parameter to [0, 1]."""
    d = b - a  # (n,)
    dd = (d @ d).clamp_min(torch.finfo(x.dtype).tiny)
    t = ((x - a) @ d / dd).clamp(0.0, 1.0)  # (B,)
    return torch.linalg.vector_norm(x - (a + t[:, None] * d), dim=1)  # (B,)


def distance_to_polyline(x: Tensor, vertices: Tensor) -> Tensor:
    """Distance of each row of x (B, n) to the polyline through ``vertices`` (V, n)."""
    a, b = vertices[:-1], vertices[1:]  # (V-1, n)
    d = b - a
    dd = (d * d).sum(1).clamp_min(torch.finfo(x.dtype).tiny)  # (V-1,)
    rel = x[:, None, :] - a[None]  # (B, V-1, n)
    t = ((rel * d[None]).sum(2) / dd).clamp(0.0, 1.0)  # (B, V-1)
    gap = rel - t[..., None] * d[None]  # (B, V-1, n)
    return torch.linalg.vector_norm(gap, dim=2).min(dim=1).values  # (B,)


def distance_to_hull(x: Tensor, vertices: Tensor) -> Tensor:
    """Distance of each row of x (B, n) to conv{vertices} (V, n).

    The nearest point of the hull is Σ_i λ_i a_i with λ the min-norm weights of the rows a_i − x,
    i.e. ``min_norm_weights`` of the Gramian (A − x)(A − x)ᵀ (reference_impls.core.solvers).
    """
    if vertices.shape[0] == 1:
        return torch.linalg.vector_norm(x - vertices[0], dim=1)
    if vertices.shape[0] == 2:
        return distance_to_segment(x, vertices[0], vertices[1])
    from reference_impls.core.solvers import min_norm_weights

    out = []
    for xb in x:
        R = vertices - xb  # (V, n)
        lam = min_norm_weights(R @ R.T)  # (V,)
        out.append(torch.linalg.vector_norm(lam.to(R) @ R))
    return torch.stack(out)  # (B,)


def resample_by_arc_length(points: Tensor, num: int) -> Tensor:
    """``num`` points spaced uniformly in arc length along the polyline ``points`` (M, K), M ≫ num."""
    seg = torch.linalg.vector_norm(points[1:] - points[:-1], dim=1)  # (M-1,)
    s = torch.cat([seg.new_zeros(1), torch.cumsum(seg, 0)])  # (M,) cumulative arc length
    target = torch.linspace(0, float(s[-1]), num, dtype=points.dtype, device=points.device)  # (num,)
    idx = torch.searchsorted(s, target).clamp(1, len(s) - 1)  # right end of the bracketing segment
    s0, s1 = s[idx - 1], s[idx]
    w = ((target - s0) / (s1 - s0).clamp_min(torch.finfo(points.dtype).tiny)).clamp(0, 1)[:, None]
    return points[idx - 1] + w * (points[idx] - points[idx - 1])  # (num, K)


def arc_length_parameters(params: Tensor, points: Tensor, num: int) -> Tensor:
    """Parameter values (num,) spaced uniformly in arc length along the curve sampled at ``params`` (M,) -> ``points`` (M, K).

    Callers evaluate their exact curve at these parameters, so the returned points lie exactly on it.
    """
    seg = torch.linalg.vector_norm(points[1:] - points[:-1], dim=1)  # (M-1,)
    s = torch.cat([seg.new_zeros(1), torch.cumsum(seg, 0)])  # (M,)
    target = torch.linspace(0, float(s[-1]), num, dtype=points.dtype, device=points.device)
    idx = torch.searchsorted(s, target).clamp(1, len(s) - 1)
    s0, s1 = s[idx - 1], s[idx]
    w = ((target - s0) / (s1 - s0).clamp_min(torch.finfo(points.dtype).tiny)).clamp(0, 1)
    return params[idx - 1] + w * (params[idx] - params[idx - 1])  # (num,)
