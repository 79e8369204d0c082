"""Hyper-Transformer for controllable Pareto front learning with split feasibility constraints (id ``hyper-transformer``).

Tuan, Dung, Thang, "A Hyper-Transformer model for Controllable Pareto Front Learning with Split
Feasibility Constraints", arXiv 2402.05955 (2024). Official code tuantran23012000/CPFL_Hyper_Transformer,
``CPFL_MOP/Connected_PF/``: ``models.py`` (Hypernet_trans), ``train.py`` (train_epoch: ray sampling, output
activation, loss), ``tools/scalarization_function.py`` (CS_functions.chebyshev_function),
``configs/ex1.yaml`` (defaults), ``problems/get_problem.py`` (ex1, ex2: :mod:`reference_impls.problems.cpfl_toys`).

The hypernetwork maps a preference r ∈ Δ (K,) to a solution x(r) ∈ C; each component r_i is a token:

    e_i = ReLU(w_i r_i + b_i)                  token embedding, one Linear(1, h) per objective   (K, h)
    a   = e + MHA(e, e, e)                     multi-head self-attention over the K tokens (2 heads), residual
    u   = a + W_2 ReLU(W_1 a + b_1) + b_2      feed-forward block, residual                       (K, h)
    y   = mean_i (W_o u_i + b_o)               linear output per token, averaged over tokens      (n,)
    x   = lo + (hi − lo) σ(y)                  the decision-space constraint C = [lo, hi]^n (box problems)

Criterion (the paper's default, Chebyshev with the lower bound c of the split feasibility constraint):

    ℓ(r) = max_i r_i (f_i(x(r)) − c_i),   minimised in expectation over r           (chebyshev_function)
    r = u / ||u||_1,  u_i ~ U(c_i, 1)                                                 (train.py ray sampler)

Split feasibility constraints (the split problem: find x ∈ C with f(x) ∈ Q): C is the box of the
problem, held exactly by the output activation (x = lo + (hi − lo)σ(y) never leaves it); Q = {y ∈ R^K :
y ≥ c} is the part of the front above the lower bound c, reached through the Chebyshev criterion with
reference point c: when c lies below the front, argmin_x max_i r_i (f_i − c_i) satisfies r ⊙ (f − c) ∝ 𝟙
with a positive constant, so f(x*(r)) − c ∝ 1/r > 0 for every interior r, and the learned map is
trained only on the rays of the region u ≥ c (official ``c_s`` per example, e.g. ex1 (0.1, 0.6)). This
reading of Q is reconstructed from the official code (the paper's formal statement was not reachable
here): see D2.

Target (``target``, for the evaluation's oracle): "ray" (r ⊙ (f − z) ∝ 𝟙 with z = 0, the ideal point of
the CPFL examples, the default c = 0). For c ≠ 0 the closed-form map is
``problem.chebyshev_solution(r, c)`` (:mod:`reference_impls.problems.cpfl_toys`).

Defaults (``configs/ex1.yaml``, ``models.py``): h = 30 (Ray_hidden_dim), 2 heads, Adam lr 1e-3, one ray
per step, c = 0 (the first entry of ex1's ``c_s`` has c_1 = 0; the ideal point). Steps: 10000 epochs
officially, 1500 here (D4).

Deviations:
    D1 Batched: the tokens of B preferences are one (B, K, h) tensor (batch_first attention), the K
       per-objective Linear(1, h) embeddings are one (K, h) weight and bias (the same function and the
       same initialisation bound 1/√1 = 1). The official model supports K ∈ {2, 3} only (named layers);
       any K ≥ 1 here (K = 1: one token, the criterion is f_1 − c_1).
    D2 The split feasibility constraint is reconstructed from the official code (train.py / predict.py):
       C by the output activation, Q = {f ≥ c} by the Chebyshev reference point c and the ray region
       u ≥ c. Not implemented: the sphere constraint of ex3 (x = √softmax(y)), the disconnected-front
       model (CPFL_MOP/Disconnected_PF), the MTL experiments (CPFL_MTL).
    D3 The output activation is chosen from the problem's box (``problem.bounds``, adopted on the first
       ``task_losses`` call, or the ``box`` knob); unbounded problems get the identity output. The
       official code hard-codes it per example (ex1 σ, ex2 5σ, ex3 √softmax).
    D4 Toy budget: 1500 steps (official 10000 epochs of one ray) so that tests run in seconds; float64
       (official float32) so that the results do not depend on the BLAS kernel.
    D5 Only the Chebyshev criterion (the paper's experiments and the official default ``--solver Cheby``);
       the official code's other scalarisations (LS, utility, KL, cosine, ...) are not exposed.
    D6 The official predictor samples test rays from the same region u ≥ c; the runner's held-out rays
       are Dirichlet(1) on the whole simplex (correct for c = 0, where the training region is the whole
       simplex too); the split-feasibility test draws its held-out rays from the region u ≥ c.

Degenerate inputs: vertices (a zero r_i: that objective drops out of the max; with c = 0 the optimum is
the minimiser of the other objective), K = 1, non-finite losses / preferences or a negative preference
→ ValueError; a lower bound c with the wrong length, non-finite entries or an entry outside [0, 1) → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, loss_batch, preference_batch


class HyperTransformer(ParetoModel):
    """Hyper-Trans: per-objective token embeddings of r, self-attention + FFN, linear output averaged over tokens."""

    name = "hyper-transformer"
    target = "ray"  # Chebyshev with z = c = 0: r ⊙ f ∝ 𝟙
    default_batch: ClassVar[int] = 1  # one ray per step (train.py)
    default_optimizer: ClassVar[str | None] = "adam"  # configs/ex1.yaml
    default_lr: ClassVar[float | None] = 1e-3  # configs/ex1.yaml
    default_steps: ClassVar[int | None] = 1500  # D4

    def __init__(
        self,
        hidden: int = 30,
        heads: int = 2,
        lower_bound: Any = None,
        box: tuple[float, float] | None = None,
        K: int | None = None,
        n: int | None = None,
        batch: int = 1,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if int(hidden) < 1 or int(heads) < 1 or int(hidden) % int(heads) != 0 or int(batch) < 1:
            raise ValueError(f"hyper-transformer: need hidden >= 1 divisible by heads >= 1 and batch >= 1, got {hidden}, {heads}, {batch}")
        self.hidden, self.heads, self.batch, self.dtype = int(hidden), int(heads), int(batch), dtype
        self.lower_bound: Tensor | None = None if lower_bound is None else torch.as_tensor(lower_bound, dtype=torch.float64).reshape(-1)
        if self.lower_bound is not None and (not bool(torch.isfinite(self.lower_bound).all()) or bool((self.lower_bound >= 1).any()) or bool((self.lower_bound < 0).any())):
            raise ValueError(f"hyper-transformer: the lower bound c must be finite with 0 <= c_i < 1 (u_i ~ U(c_i, 1)), got {self.lower_bound.tolist()}")
        self.box: tuple[float, float] | None = None
        if box is not None:
            self.set_box(box)
        self.K: int | None = None
        self.n: int | None = None
        self.built = False
        if K is not None and n is not None:
            self.build(int(K), int(n))

    # -- construction ---------------------------------------------------------------------------
    def build(self, K: int, n: int) -> None:
        """Create the layers for K objectives and n outputs (PyTorch's default initialisations)."""
        if K < 1 or n < 1:
            raise ValueError(f"hyper-transformer: need K >= 1 and n >= 1, got K={K}, n={n}")
        if self.lower_bound is not None and self.lower_bound.numel() != K:
            raise ValueError(f"hyper-transformer: the lower bound has {self.lower_bound.numel()} entries, the problem K = {K}")
        h, dt = self.hidden, self.dtype
        self.K, self.n = K, n
        self.embed_weight = nn.Parameter(torch.empty(K, h, dtype=dt).uniform_(-1.0, 1.0))  # w_i of Linear(1, h): bound 1/√1 (D1)
        self.embed_bias = nn.Parameter(torch.empty(K, h, dtype=dt).uniform_(-1.0, 1.0))  # b_i
        self.attention = nn.MultiheadAttention(h, self.heads, batch_first=True).to(dt)
        self.ffn1 = nn.Linear(h, h).to(dt)
        self.ffn2 = nn.Linear(h, h).to(dt)
        self.output = nn.Linear(h, n).to(dt)
        self.built = True

    def set_box(self, box: tuple[float, float]) -> None:
        lo, hi = float(box[0]), float(box[1])
        if not (lo < hi) or not all(map(lambda v: v == v and abs(v) != float("inf"), (lo, hi))):
            raise ValueError(f"hyper-transformer: the box must be finite with lo < hi, got {box}")
        self.box = (lo, hi)

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the layers for the problem (K, n), or check the ones built already."""
        if not self.built:
            self.build(K, n)
        elif (self.K, self.n) != (K, n):
            raise ValueError(f"hyper-transformer was built for K={self.K}, n={self.n}; the problem has K={K}, n={n}")

    def c(self, K: int) -> Tensor:
        """The lower bound c (K,) of the split feasibility constraint (default 0, the ideal point of the CPFL toys)."""
        return torch.zeros(K, dtype=torch.float64) if self.lower_bound is None else self.lower_bound

    # -- the map r -> x ---------------------------------------------------------------------------
    def forward(self, preference: Tensor) -> Tensor:
        if not self.built:
            raise ValueError("hyper-transformer: the model is not built: call begin(K, n, ...) (or pass K and n)")
        rb, single = preference_batch(preference, self.K, self.dtype, name="hyper-transformer preference")  # (B, K)
        e = torch.relu(rb[:, :, None] * self.embed_weight + self.embed_bias)  # e_i = ReLU(w_i r_i + b_i), (B, K, h)
        a = e + self.attention(e, e, e, need_weights=False)[0]  # e + MHA(e, e, e), (B, K, h)
        u = a + self.ffn2(torch.relu(self.ffn1(a)))  # a + FFN(a), (B, K, h)
        y = self.output(u).mean(1)  # mean_i (W_o u_i + b_o), (B, n)
        if self.box is not None:
            lo, hi = self.box
            y = lo + (hi - lo) * torch.sigmoid(y)  # x ∈ C = [lo, hi]^n by construction
        return y[0] if single else y

    def task_losses(self, problem: Any, preferences: Tensor) -> Tensor:
        """f(x(r)) (B, K); adopts the problem's box as the output constraint C on first use (D3)."""
        bounds = getattr(problem, "bounds", None)
        if bounds is not None:
            lo, hi = float(bounds[0].min()), float(bounds[1].max())
            if not (bool((bounds[0] == lo).all()) and bool((bounds[1] == hi).all())):
                raise ValueError("hyper-transformer: the problem's box must have the same bounds in every coordinate")
            if self.box is None:
                self.set_box((lo, hi))
            elif self.box != (lo, hi):
                raise ValueError(f"hyper-transformer: the model's box {self.box} differs from the problem's {(lo, hi)}")
        return problem.losses(self(preferences))

    # -- training ---------------------------------------------------------------------------------
    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """r = u/||u||_1 with u_i ~ U(c_i, 1) (train.py), (num, K)."""
        c = self.c(K)  # (K,)
        u = c + (1 - c) * torch.rand(num, K, generator=generator, dtype=torch.float64)  # u_i ~ U(c_i, 1), (num, K)
        return u / u.sum(1, keepdim=True)

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        F, r = loss_batch(losses, preferences, name="hyper-transformer")  # (B, K), (B, K)
        c = self.c(F.shape[1]).to(F)  # (K,)
        return (r * (F - c)).max(1).values.mean()  # mean_b max_i r_bi (f_bi − c_i)


__all__ = ["HyperTransformer"]
