"""``lowrank-regression``: multi-output linear regression whose tasks differ from a base model by a known low rank.

The toy on which low-rank Pareto-set models (LORPMAN, PaLoRA, Panacea) either can or provably cannot
represent the Pareto set, depending on their rank.

Data (seeded by ``data_seed``): one design X ∈ R^{N×d_in}, X ~ N(0, I), shared by all K tasks; a
"pretrained" base W_0 ∈ R^{d_out×d_in}, entries N(0, 1/d_in); task optima

    W_k* = W_0 + U diag(c_k) Vᵀ,      U ∈ R^{d_out×ρ}, V ∈ R^{d_in×ρ} with orthonormal columns (one pair for all tasks),

where ρ = ``task_rank`` and column j of C = (c_k[j]) (K × ρ) is a seeded permutation of the levels
m_j·(−1)^i (i + 1)/K, i = 0..K−1 (non-zero and pairwise distinct), m_j = ``task_scale``·(ρ − j)/ρ.
Targets Y_k = X W_k*ᵀ + σ E_k (σ = ``noise``). Hence, U and V being orthonormal, the singular values
are known exactly: σ(W_k* − W_0) = {|c_k[j]|} and σ(W_k* − W_l*) = {|c_k[j] − c_l[j]|} (≥ m_j/K > 0), so
every task difference and every task's deviation from the base has rank exactly ρ.

Objectives, with W = unvec(x) (x = vec(W) row-major, n = d_out·d_in; ``parameter_shapes()`` =
[("W", (d_out, d_in))]):

    f_k(W) = (1/(N d_out)) ||X Wᵀ − Y_k||_F² = tr((W − Ŵ_k) Σ̂ (W − Ŵ_k)ᵀ)/d_out + const_k,   Σ̂ = XᵀX/N,

with Ŵ_k the least-squares fit of task k (= W_k* when σ = 0). All tasks share the Hessian, so
Σ_k λ_k ∇f_k = 0 exactly on conv{Ŵ_k}: the Pareto set is conv{Ŵ_k} and the linear-scalarisation map
is W*(r) = Σ_k μ_k Ŵ_k, μ = r/Σr (the oracle ``("lowrank-regression", "ls")``). With σ = 0,
W*(r) − W_0 = U diag(Σ_k μ_k c_k) Vᵀ: rank ρ for every r.

Attributes: ``X`` (N, d_in), ``Y`` (K, N, d_out), ``base`` (n,) = vec(W_0), ``task_optima`` (K, n) =
vec(Ŵ_k) (also ``W_hat``), ``task_rank``, ``U``, ``V``, ``C``. Starting points: Gaussian matrices,
entries N(0, 1/d_in), seeded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from reference_impls.problems.base import Problem, arc_length_parameters, distance_to_hull


class LowRankRegression(Problem):
    id = "lowrank-regression"
    default_optimizer = "adam"
    default_steps = 300
    default_lr = 1e-2

    def __init__(
        self,
        K: int = 2,
        d_in: int = 8,
        d_out: int = 8,
        task_rank: int = 2,
        N: int = 128,
        noise: float = 0.0,
        task_scale: float = 1.0,
        data_seed: int = 0,
        num_starts: int = 8,
        **kw: Any,
    ) -> None:
        if not 1 <= int(task_rank) <= min(d_in, d_out):
            raise ValueError(f"lowrank-regression: need 1 <= task_rank <= min(d_in, d_out) = {min(d_in, d_out)}, got {task_rank}")
        if N < d_in:
            raise ValueError(f"lowrank-regression: need N >= d_in for a unique least-squares fit, got N={N}, d_in={d_in}")
        if not (noise >= 0 and task_scale > 0):
            raise ValueError(f"lowrank-regression: need noise >= 0 and task_scale > 0, got {noise}, {task_scale}")
        super().__init__(K, d_out * d_in, **kw)
        self.d_in, self.d_out, self.task_rank, self.num_starts = int(d_in), int(d_out), int(task_rank), int(num_starts)
        rho, dt = self.task_rank, torch.float64
        g = torch.Generator().manual_seed(int(data_seed))
        X = torch.randn(N, d_in, generator=g, dtype=dt)  # (N, d_in), shared design
        W0 = torch.randn(d_out, d_in, generator=g, dtype=dt) / d_in**0.5  # the base model, (d_out, d_in)
        U = torch.linalg.qr(torch.randn(d_out, rho, generator=g, dtype=dt)).Q  # (d_out, ρ), orthonormal columns
        V = torch.linalg.qr(torch.randn(d_in, rho, generator=g, dtype=dt)).Q  # (d_in, ρ)
        i = torch.arange(K, dtype=dt)
        levels = (-1.0) ** i * (i + 1) / K  # (−1)^i (i + 1)/K: non-zero, pairwise distinct, (K,)
        m = task_scale * (rho - torch.arange(rho, dtype=dt)) / rho  # m_j, (ρ,)
        C = torch.stack([levels[torch.randperm(K, generator=g)] for _ in range(rho)], dim=1) * m  # c_k[j], (K, ρ)
        W_star = W0 + torch.einsum("oj,kj,ij->koi", U, C, V)  # W_k* = W_0 + U diag(c_k) Vᵀ, (K, d_out, d_in)
        Y = torch.einsum("ni,koi->kno", X, W_star) + noise * torch.randn(K, N, d_out, generator=g, dtype=dt)  # (K, N, d_out)
        W_hat = torch.linalg.lstsq(X, Y.permute(1, 0, 2).reshape(N, K * d_out)).solution  # (d_in, K·d_out)
        W_hat = W_hat.reshape(d_in, K, d_out).permute(1, 2, 0)  # Ŵ_k, (K, d_out, d_in)
        to = dict(dtype=self.dtype, device=self.device)
        self.X, self.Y = X.to(**to), Y.to(**to)
        self.U, self.V, self.C = U.to(**to), V.to(**to), C.to(**to)
        self.base = W0.reshape(-1).to(**to)  # vec(W_0), (n,)
        self.task_optima = W_hat.reshape(K, -1).to(**to)  # vec(Ŵ_k), (K, n)
        self.W_hat = self.task_optima  # the name the shared-Hessian LS oracle reads (as mtl-linear's)
        F_vertices = self._losses(self.task_optima)  # (K, K): f_i(Ŵ_j) in row j
        self.hv_reference = tuple(F_vertices.max(dim=0).values.tolist())  # each f_i is convex on the hull: max at a vertex

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [("W", (self.d_out, self.d_in))]

    def _residuals(self, x: Tensor) -> Tensor:
        W = x.reshape(x.shape[0], self.d_out, self.d_in)  # (B, d_out, d_in)
        pred = torch.einsum("ni,boi->bno", self.X, W)  # X Wᵀ, (B, N, d_out)
        return pred[:, None] - self.Y[None]  # (B, K, N, d_out)

    def _losses(self, x: Tensor) -> Tensor:
        return (self._residuals(x) ** 2).mean((2, 3))  # f_k = mean_{n,o} (X Wᵀ − Y_k)², (B, K)

    def _jacobian(self, x: Tensor) -> Tensor:
        R = self._residuals(x)  # (B, K, N, d_out)
        G = 2.0 / (self.X.shape[0] * self.d_out) * torch.einsum("bkno,ni->bkoi", R, self.X)  # ∇_W f_k = (2/(N d_out)) Rᵀ X
        return G.reshape(x.shape[0], self.K, self.n)  # (B, K, n)

    def initial_points(self, seed: int = 0, num: int | None = None) -> Tensor:
        g = self._generator(seed)
        return (torch.randn(self._num_points(num), self.n, generator=g, dtype=self.dtype) / self.d_in**0.5).to(self.device)

    def objective_minimisers(self) -> Tensor:
        return self.task_optima.clone()

    def pareto_set(self, num: int = 1000) -> Tensor:
        if self.K == 1:
            return self.task_optima.expand(num, -1).clone()
        if self.K == 2:
            t = torch.linspace(0, 1, num, dtype=self.dtype, device=self.device)[:, None]
            return self.task_optima[0] + t * (self.task_optima[1] - self.task_optima[0])
        g = self._generator(12345)
        w = torch._standard_gamma(torch.ones(num, self.K, dtype=self.dtype), generator=g)
        return (w / w.sum(1, keepdim=True)).to(self.device) @ self.task_optima

    def pareto_front(self, num: int = 1000) -> Tensor:
        if self.K == 2:
            # Along W(t) = Ŵ_1 + tΔ each loss is a quadratic in t: f_k(t) = f_k(Ŵ_1) + b_k t + c t² with
            # b_k = 2⟨R_k(Ŵ_1), XΔᵀ⟩/(N d_out) and c = ||XΔᵀ||²/(N d_out): three numbers, not 20 001 passes over the data.
            W1 = self.task_optima[:1]  # (1, n)
            delta = (self.task_optima[1] - self.task_optima[0]).reshape(self.d_out, self.d_in)  # Δ, (d_out, d_in)
            D = self.X @ delta.T  # XΔᵀ, (N, d_out)
            R = self._residuals(W1)[0]  # (K, N, d_out)
            m = D.numel()
            a, b, c = self._losses(W1)[0], 2 * torch.einsum("kno,no->k", R, D) / m, (D**2).sum() / m  # (K,), (K,), ()

            def curve(t: Tensor) -> Tensor:
                return a + t[:, None] * b + t[:, None] ** 2 * c  # (T, K)

            t = torch.linspace(0, 1, max(20 * num, 20001), dtype=self.dtype, device=self.device)
            return curve(arc_length_parameters(t, curve(t), num))  # (num, 2), uniform in arc length
        return self._losses(self.pareto_set(num))

    def ideal_point(self) -> Tensor:
        """min_k f_k over the Pareto set: f_k(Ŵ_k) (each f_k is minimised at its own fit, a vertex of the set)."""
        return torch.diagonal(self._losses(self.task_optima)).clone()  # (K,)

    def distance_to_pareto_set(self, x: Tensor) -> Tensor:
        xb, _ = self._batch(x)
        return distance_to_hull(xb, self.task_optima)


__all__ = ["LowRankRegression"]
