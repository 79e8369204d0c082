r"""Hyper-Transformer for controllable Pareto front learning with split feasibility constraints (id ``hyper-transformer``).

Tuan, Dung, Thang, "A Hyper-Transformer model for Controllable Pareto Front Learning with Split
Feasibility Constraints", arXiv 2402.05955 (2024). Official code tuantran23012000/CPFL_Hyper_Transformer,
``CPFL_MOP/Connected_PF/``: ``models.py`` (Hypernet_trans), ``train.py`` (train_epoch: ray sampling, output
activation, loss), ``tools/scalarization_function.py`` (CS_functions.chebyshev_function),
``configs/ex1.yaml`` (defaults), ``problems/get_problem.py`` (ex1, ex2: ``reference_impls.problems.cpfl_toys``).

The hypernetwork maps a preference r in the simplex (K,) to a solution x(r) ∈ C; each component of r is
a token. It is trained on the Chebyshev criterion with the lower bound c of the split feasibility
constraint (the paper's default; ``chebyshev_function``).

Split feasibility constraints (the split problem: find x ∈ C with f(x) ∈ Q): C is the box of the
problem, held exactly by the output activation (x = lo + (hi − lo)σ(y) never leaves it); Q = {y ∈ Rᴷ :
y ≥ c} is the part of the front above the lower bound c, reached through the Chebyshev criterion with
reference point c: when c lies below the front, the Chebyshev minimiser satisfies r ⊙ (f − c) ∝ 𝟙
with a positive constant, so f(x*(r)) − c ∝ 1/r > 0 for every interior r, and the learned map is
trained only on the rays of the region u ≥ c (official ``c_s`` per example, e.g. ex1 (0.1, 0.6)). This
reading of Q is reconstructed from the official code (the paper's formal statement was not reachable
here): see D2.

Target (``target``, for the evaluation's oracle): "ray" (r ⊙ (f − z) ∝ 𝟙 with z = 0, the ideal point of
the CPFL examples, the default c = 0). For c ≠ 0 the closed-form map is
``problem.chebyshev_solution(r, c)`` (``reference_impls.problems.cpfl_toys``).

Defaults (``configs/ex1.yaml``, ``models.py``): h = 30 (``Ray_hidden_dim``), 2 heads, Adam lr 1e-3, one ray
per step; c = 0 is ours (the ideal point of the CPFL toys, so the target is the whole front; the
official train.py loops over five bounds per example, none of them 0, e.g. ex1's first (0, 0.8)).
Steps: 10000 epochs officially, 1500 here (D4).

Update rule:
    The model (``Hypernet_trans``) embeds each component :math:`r_i` of the preference as a token,
    applies one transformer block (2-head self-attention and a feed-forward layer, both residual,
    no normalisation), averages a linear output over the :math:`K` tokens and squashes it into the
    box :math:`C = [\mathrm{lo}, \mathrm{hi}]^n` (D3); :math:`\sigma` is the logistic sigmoid:

    .. math::

        e_i = \operatorname{ReLU}(w_i r_i + b_i) \in \mathbb{R}^h, \qquad a = e + \operatorname{MHA}(e, e, e), \qquad u = a + W_2 \operatorname{ReLU}(W_1 a + b_1) + b_2

    .. math::

        y = \frac{1}{K}\sum_{i=1}^{K} (W_o u_i + b_o) \in \mathbb{R}^n, \qquad x(r) = \mathrm{lo} + (\mathrm{hi} - \mathrm{lo})\,\sigma(y)

    Each step draws one ray (``batch`` B = 1) from the region above the lower bound
    :math:`c` (``train.py``'s sampler) and takes one Adam step on the model's weights for the
    Chebyshev criterion with reference point :math:`c` (default :math:`c = 0`):

    .. math::

        r = \frac{v}{\sum_j v_j}, \quad v_i \sim U(c_i, 1), \qquad \mathcal{L} = \frac{1}{B}\sum_{b=1}^{B} \max_{i} r_{b,i}\,\big(f_i(x(r_b)) - c_i\big)

Deviations:
    D1 Batched: the tokens of B preferences are one (B, K, h) tensor (``batch_first`` attention), the K
       per-objective Linear(1, h) embeddings are one (K, h) weight and bias (the same function and the
       same initialisation bound 1/√1 = 1). The official model supports K ∈ {2, 3} only (named layers);
       any K ≥ 1 here (K = 1: one token, the criterion is the single loss minus its bound).
    D2 The split feasibility constraint is reconstructed from the official code (train.py / predict.py):
       C by the output activation, Q = {f ≥ c} by the Chebyshev reference point c and the ray region
       u ≥ c. Not implemented: the sphere constraint of ex3 (x = √softmax(y)), the disconnected-front
       model (``CPFL_MOP/Disconnected_PF``), the MTL experiments (``CPFL_MTL``).
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

Degenerate inputs: vertices (a zero entry of r: that objective drops out of the max; with c = 0 the
optimum is the minimiser of the other objective), K = 1, non-finite losses / preferences or a negative
preference → ValueError; a lower bound c with the wrong length, non-finite entries or an entry outside
[0, 1) → ValueError.
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
