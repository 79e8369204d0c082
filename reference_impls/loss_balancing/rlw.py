r"""RLW — Random Loss Weighting: fresh random loss weights at every step.

Paper: B. Lin, F. Ye, Y. Zhang, I. W. Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test
for Multi-Task Learning", TMLR 2022 (arXiv 2111.10603; v1 was titled "A Closer Look at Loss Weighting in
Multi-Task Learning"). Code by the authors: LibMTL ``weighting/RLW.py`` (today: normal + softmax only);
its version of 31 December 2021 (LibMTL commit d884c93, ``dist`` option, default 'Normal'; reduced to
normal-only in 523841a, 6 January 2022) had the distributions as an option.

Update rule:
    At every training step :math:`t`, draw :math:`\tilde\lambda_t` from a distribution
    :math:`p(\tilde\lambda)`, normalise it to weights :math:`\lambda_t` on the simplex, and take one
    optimiser step on the weighted sum of the K task losses (no gradient flows through the weights);
    by default (``distribution="normal"``) the weights are the softmax of a standard normal draw:

    .. math::

        L_t = \sum_{i=1}^{K} \lambda_{t,i}\, f_i, \qquad
        \lambda_t = \mathrm{softmax}(\tilde\lambda_t), \quad \tilde\lambda_t \sim \mathcal{N}(0, I_K)

    The other distributions (``distribution``) of the paper's study, as the authors' code draws them:
    "uniform", :math:`\lambda = \mathrm{softmax}(\tilde\lambda)` with :math:`\tilde\lambda \sim \mathcal{U}(0, 1)^K`
    (LibMTL 2021 "Uniform"); "dirichlet", :math:`\lambda = \mathrm{softmax}(\tilde\lambda)` with
    :math:`\tilde\lambda \sim \mathrm{Dirichlet}(\mathbf{1})` (LibMTL 2021 "Dirichlet", softmax included, D2);
    "random_normal", :math:`\lambda = \mathrm{softmax}(\tilde\lambda)` with
    :math:`\tilde\lambda \sim \mathcal{N}(\mu, \operatorname{diag}(\sigma^2))` and
    :math:`\mu_i, \sigma_i \sim \mathcal{U}(0, 1)` drawn once per run (the paper's "random normal" ⚠:
    μ and σ as in a port of the authors' ICLR 2022 submission code; not in LibMTL); "bernoulli",
    :math:`\lambda = b / \sum_i b_i` with :math:`b_i \sim \mathrm{Bernoulli}(1/2)` i.i.d., redrawn while
    :math:`b = 0` (LibMTL 2021 "Bernoulli", normalised here, D1); "constrained_bernoulli",
    :math:`\lambda = e_j` with :math:`j` uniform on 1..K, one task per step (LibMTL 2021
    "constrained_Bernoulli").

These are the six distributions of the paper's study of p(λ̃) (uniform, normal, Dirichlet, Bernoulli,
constrained Bernoulli, random normal) ⚠: the list and the parameters above are those of the authors'
code; the paper's text was not available here to check them against.

Properties tested: every draw is on the simplex; the coordinates of all distributions but "random_normal"
are exchangeable, so :math:`\mathbb{E}[\lambda_i] = 1/K` exactly; with SGD on a convex quadratic the update is linear in λ, so
the time-averaged iterate tends to the minimiser of the equal-weight objective.

Randomness and reproducibility: each instance draws from its own ``torch.Generator``. With ``seed=None``
(default) the generator is seeded at the first draw from torch's global RNG, so the runner (which seeds
the global RNG with the run seed) gives every start's instance its own reproducible stream. An explicit
``seed`` fixes the stream; ``reset()`` restarts it.

One draw per step: ``weights(losses, step)`` draws when called for a new step (or after ``observe``), and
returns the same λ when called again for the same step, so ``weights`` and ``objective`` of one step share
λ. ``observe(losses, step)`` (called after every step by the runner and ``train_step``) ends the step: the
next call draws afresh even with the same step number. ``last_weights`` holds the current λ.

Hyperparameters (defaults and source):
    distribution: "normal" (paper's main setting and LibMTL's only one).
    num_tasks: K, or None (default) to take K from the first losses seen.
    seed: None (from the global RNG at the first draw) or an int.

Degenerate inputs: RLW takes neither logs nor ratios: any finite losses work (negative ones too); a
non-finite loss raises a NonFiniteError naming ``rlw`` and the task. K = 1 gives λ = 1 for every
distribution.

Deviations:
    D1. "bernoulli" is normalised to the simplex (λ = b/Σb); LibMTL's 2021 code used the raw 0/1 vector
        (Σλ between 1 and K, a random step size), and a port of the ICLR 2022 code rescaled every draw
        to sum K. Here all distributions give weights on the simplex.
    D2. "dirichlet" keeps the softmax of LibMTL's 2021 code (a Dirichlet draw is already on the
        simplex; the softmax pulls it towards 𝟙/K). The ICLR 2022 port used the draw itself.
    D3. An own generator per instance (LibMTL draws from the global RNG), so that each start of a batched
        run has an independent, reproducible stream.
    D4. Non-finite losses raise (LibMTL back-propagates the NaN).

Usage::

    method = RLW()                                    # normal + softmax
    loss = method.objective(torch.stack([f1, f2]), step)  # Σ λ_i f_i with a fresh λ
    loss.backward(); optimiser.step()
    method.observe(torch.stack([f1, f2]).detach(), step)
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.loss_weighting import LossWeighting, StartBatch
from reference_impls.loss_balancing.ew import check_losses

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "random_normal", "bernoulli", "constrained_bernoulli")


class RLW(LossWeighting):
    """Σ_i λ_i f_i with λ drawn afresh at every step (default λ = softmax(z), z ~ N(0, I))."""

    name: ClassVar[str] = "rlw"
    stateful: ClassVar[bool] = True

    def __init__(self, distribution: str = "normal", num_tasks: int | None = None, seed: int | None = None) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"rlw: distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        if num_tasks is not None and int(num_tasks) < 1:
            raise ValueError(f"rlw: num_tasks must be >= 1, got {num_tasks}")
        self.distribution = distribution
        self.num_tasks = None if num_tasks is None else int(num_tasks)
        self.seed = None if seed is None else int(seed)
        self.reset()

    def reset(self) -> None:
        """Restart the random stream (from ``seed``, or from the seed taken at the first draw) and forget λ."""
        self._generator: torch.Generator | None = None
        self._random_normal: tuple[Tensor, Tensor] | None = None  # (μ, σ), (K,) each, for "random_normal"
        self.last_weights: Tensor | None = None  # (K,) float64: λ of the current step
        self._step: int | None = None  # the step λ was drawn for; None = draw at the next call
        self.draws = 0

    def _rng(self) -> torch.Generator:
        if self._generator is None:
            if self.seed is None:
                self.seed = int(torch.randint(0, 2**62, ()).item())  # from the global RNG: the run seed decides
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def draw(self, K: int) -> Tensor:
        """One λ (K,) float64 on the simplex from the chosen distribution (advances the stream)."""
        return self.sample(1, K)[0]

    def sample(self, N: int, K: int) -> Tensor:
        """N independent λ (N, K) float64, one per row, on the simplex (advances the stream; ``draw`` is N = 1)."""
        g, dist = self._rng(), self.distribution
        kw = dict(generator=g, dtype=torch.float64)
        if dist == "normal":
            lam = torch.softmax(torch.randn(N, K, **kw), dim=1)  # λ = softmax(z), z ~ N(0, I)
        elif dist == "uniform":
            lam = torch.softmax(torch.rand(N, K, **kw), dim=1)  # λ = softmax(u), u ~ U(0, 1)^K
        elif dist == "dirichlet":
            gamma = torch._standard_gamma(torch.ones(N, K, dtype=torch.float64), generator=g)  # (N, K) Gamma(1, 1)
            lam = torch.softmax(gamma / gamma.sum(1, keepdim=True), dim=1)  # λ = softmax(d), d ~ Dirichlet(𝟙)
        elif dist == "random_normal":
            if self._random_normal is None:
                self._random_normal = (torch.rand(K, **kw), torch.rand(K, **kw))  # μ, σ ~ U(0, 1), once per run
            mu, sigma = self._random_normal  # (K,), (K,)
            lam = torch.softmax(mu + sigma * torch.randn(N, K, **kw), dim=1)  # λ = softmax(z), z ~ N(μ, σ²)
        elif dist == "bernoulli":
            b = torch.bernoulli(torch.full((N, K), 0.5, dtype=torch.float64), generator=g)  # (N, K) b_i ~ Bernoulli(½)
            empty = ~b.any(1)  # (N,) rows to redraw: the all-zero vector is excluded
            while bool(empty.any()):
                b[empty] = torch.bernoulli(torch.full((int(empty.sum()), K), 0.5, dtype=torch.float64), generator=g)
                empty = ~b.any(1)
            lam = b / b.sum(1, keepdim=True)  # λ = b / Σb
        else:  # constrained_bernoulli
            j = torch.randint(0, K, (N,), generator=g)  # (N,) the task of each step, uniform
            lam = torch.nn.functional.one_hot(j, K).to(torch.float64)  # λ = e_j
        self.draws += N
        return lam

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f = check_losses("rlw", losses, self.num_tasks)  # (K,)
        if self.num_tasks is None:
            self.num_tasks = f.numel()
        if self.last_weights is None or self._step is None or self._step != step:
            self.last_weights = self.draw(f.numel())  # one fresh λ per step
            self._step = step
        return self.last_weights.to(f.detach())

    def observe(self, losses: Tensor, step: int) -> None:
        """End of the step: the next ``weights`` call draws a new λ (even for the same step number)."""
        check_losses("rlw", losses, self.num_tasks)
        self._step = None

    @classmethod
    def start_batch(cls, methods, optimizer=None) -> "RLWBatch | None":
        """The runner's speed path (:class:`RLWBatch`); None where it does not apply."""
        return RLWBatch(methods) if RLWBatch.applies(methods) else None


class RLWBatch(StartBatch):
    """B instances of :class:`RLW` for the runner (see ``StartBatch``): the losses checked once per step for
    the whole batch, then each start's own ``draw`` from its own generator (the same stream as per start)."""

    method_class = RLW
    replicates = ("weights", "objective", "observe", "on_epoch_end", "draw", "sample", "_rng")

    @classmethod
    def applies(cls, methods) -> bool:
        return super().applies(methods) and all(m.num_tasks == methods[0].num_tasks for m in methods)

    def __init__(self, methods) -> None:
        self.methods = list(methods)

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        f = F.detach()  # (B, K)
        K = self.methods[0].num_tasks
        if K is None or F.shape[1] != K or not math.isfinite(sum(f.reshape(-1).tolist())):
            for m, f_b in zip(self.methods, F):
                check_losses("rlw", f_b, m.num_tasks)  # the per-start error
                if m.num_tasks is None:
                    m.num_tasks = f_b.numel()
        lams = []
        for m in self.methods:
            m.last_weights = m.draw(F.shape[1])  # one fresh λ per step, (K,) float64
            m._step = None  # observe() ends the step
            lams.append(m.last_weights)
        return torch.stack(lams).to(J)  # (B, K)


__all__ = ["DISTRIBUTIONS", "RLW", "RLWBatch"]
