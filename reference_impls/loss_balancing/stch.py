r"""STCH — smooth Tchebycheff scalarisation, as a loss weighting (two registry ids: ``stch``, ``stch-mtl``).

Paper: X. Lin, X. Zhang, Z. Yang, F. Liu, Z. Wang, Q. Zhang, "Smooth Tchebycheff Scalarization for
Multi-Objective Optimization", ICML 2024 (PMLR 235; arXiv 2402.19078). Official code: Xi-L/STCH,
``STCH_PSL/run_stch_psl.py`` (the preference-driven form) and ``STCH_MTL/LibMTL/weighting/STCH.py``
(the multi-task recipe; the same file is LibMTL ``weighting/STCH.py``). No code is copied.

Update rule:
    ``stch`` (class ``STCH``). With K losses :math:`f`, a preference :math:`\lambda \ge 0` and an ideal
    point :math:`z`, the Tchebycheff (TCH) scalarisation :math:`\max_i \lambda_i (f_i - z_i)` is
    replaced by its log-sum-exp smoothing with parameter :math:`\mu > 0` (defaults: :math:`\mu = 0.01`,
    :math:`\lambda = \mathbf{1}/K`, :math:`z = 0`), which has the paper's bounded-approximation property
    for every :math:`f`:

    .. math::

        g_\mu(f \mid \lambda) = \mu \log \sum_{i=1}^{K} \exp\big( u_i / \mu \big), \quad u_i = \lambda_i (f_i - z_i), \qquad
        \max_i u_i \le g_\mu(f \mid \lambda) \le \max_i u_i + \mu \log K

    (the upper bound attained when all :math:`u_i` are equal). The paper shows that the minimisers of
    :math:`g_\mu` are weakly Pareto optimal (Pareto optimal for :math:`\lambda > 0`) and that, under
    mild conditions and for :math:`\mu` small enough, every Pareto solution (on non-convex parts of the
    front too) minimises :math:`g_\mu` for some :math:`\lambda`, which linear scalarisation cannot do.
    Its gradient is a non-negative combination of the task gradients, and ``weights()`` returns
    exactly these weights (no heuristic weights: the gradient of the objective):

    .. math::

        w_i = \frac{\partial g_\mu}{\partial f_i} = \lambda_i p_i, \quad p = \mathrm{softmax}(u / \mu), \qquad
        d = \sum_{i=1}^{K} w_i \nabla f_i = J^\top w

    so :math:`\sum_i w_i / \lambda_i = \sum_i p_i = 1` when every :math:`\lambda_i > 0` (a task with
    :math:`\lambda_i = 0` keeps a share :math:`p_i > 0` of the softmax but gets weight 0). Limits: :math:`\mu \to 0`
    gives the TCH subgradient :math:`w = \lambda_{i^\star} e_{i^\star}` at
    :math:`i^\star = \arg\max_i u_i`; :math:`\mu \to \infty` gives :math:`w = \lambda / K` (linear
    scalarisation). Computed as :math:`m + \mu \log \sum_i \exp((u_i - m)/\mu)` with
    :math:`m = \max_i u_i`: every exponent is ≤ 0 and the sum lies in [1, K], so nothing overflows for
    any :math:`\mu > 0` and any representable :math:`u` (tested for μ from 1e-8 to 1e8 and losses up
    to 1e12, in float64 and float32); the lower bound then holds exactly in floating point.

    ``stch-mtl`` (class ``STCHMTL``): the multi-task recipe of the official code, driven by the
    training loop's epochs :math:`e` (0-based; ``observe`` after every step, ``on_epoch_end`` after
    each pass over the data). During the warm-up, epochs :math:`e < W` (:math:`W` =
    ``warmup_epochs`` = 5, D2), the objective is the sum of log-losses; the nadir :math:`n` is then
    the mean of the per-step losses observed during epoch :math:`W - 1` (D4); from epoch :math:`W` on,
    the objective is K times the smooth Tchebycheff function of the log-ratios (:math:`\mu` = 1 by
    default; the full value is returned, D3):

    .. math::

        L = \sum_{i=1}^{K} \log f_i \quad (e < W), \qquad
        L = K \mu \log \sum_{i=1}^{K} \exp\big( \log(f_i / n_i) / \mu \big) = K\, g_\mu\big( \log(f / n) \mid \mathbf{1} \big) \quad (e \ge W)

    with gradient weights

    .. math::

        w_i = \frac{1}{f_i} \quad (e < W), \qquad
        w_i = \frac{K p_i}{f_i}, \quad p = \mathrm{softmax}\big( \log(f / n) / \mu \big) \quad (e \ge W)

    For :math:`\mu = 1` this is :math:`L = K \log \sum_i f_i / n_i` and
    :math:`w_i = K / (n_i \sum_j f_j / n_j)`.

``stch`` is the default of ``modl run stch`` because the point toys (VLMOP2's concave front, biquad,
...) are where the paper's claims apply: one fixed preference per run, z = 0. On problems that declare
loss lower bounds ℓ* the runner passes f − ℓ*, so z = 0 is then the problem's lower bound.

Step size: near the crossing where the two weighted losses are equal the smooth max has curvature
about :math:`(\lambda \lvert \nabla (f_1 - f_2) \rvert)^2 / (4\mu)`, so plain gradient descent needs
lr below ~2/that: on VLMOP2 with μ = 0.01 the problem's default SGD lr 0.5 leaves the iterates
alternating across the crossing (both on the Pareto set), while
``modl run stch --problem vlmop2 --lr 0.1`` converges to the symmetric point f = (1 − 1/e)·𝟙.

Hyperparameters (defaults and their source):

* ``stch``: ``mu`` = 0.01 (``run_stch_psl.py``: ``mu = 0.01``, objectives normalised to [0, 1] there,
  as VLMOP2's are); ``preference`` λ = 𝟙/K when None (the centre of the simplex; the PSL code samples
  λ ~ Dirichlet(𝟙) on the simplex); ``ideal`` z = 0 when None (the PSL code's ``z = zeros`` after
  normalising by the ideal point).
* ``stch-mtl``: ``mu`` = 1 (``config.py``: ``--STCH_mu 1.0``); ``warmup_epochs`` = 5 (``config.py``:
  ``--STCH_warmup_epoch 4``, which the official code uses as the 0-based index of the last warm-up
  epoch: epochs 0..4 are warm-up, so 5 epochs); ``nadir`` = None (measured as above; give K positive
  numbers to fix it, then ``warmup_epochs`` may be 0).

Deviations: (P: from the paper, C: from the official code)
    D1. (C) ``stch-mtl`` takes no ``+1e-20`` inside its logs: a loss or nadir that is zero, negative
        or non-finite raises a ValueError naming the method and the task (the official code floors
        log f at log 1e-20 ≈ −46 and continues; for positive losses above ~1e-18 the two agree to
        rounding).
    D2. (C) ``stch-mtl`` counts warm-up epochs (``warmup_epochs`` = 5) instead of naming the index of
        the last one (``STCH_warmup_epoch`` = 4); same schedule. The epoch comes from the
        ``on_epoch_end(epoch)`` calls (the next epoch is ``epoch + 1``), not from a trainer attribute;
        a loop that never calls ``on_epoch_end`` stays in the warm-up (Σ log f).
    D3. (C) ``stch-mtl``'s ``objective`` returns the full value
        :math:`K (m + \mu \log \sum_i \exp((\ell_i - m)/\mu))` with :math:`\ell_i = \log(f_i / n_i)` and
        :math:`m = \max_i \ell_i`; the official loss drops the (detached) shift m, which changes the
        logged value by K·m but not the gradient.
    D4. (C) the nadir is computed in ``on_epoch_end`` of the last warm-up epoch (the official code does
        it lazily at the first STCH step: same value), and it can be given (``nadir``), which the
        official code does not offer.
    D5. (P, C) ``stch`` accepts any preference λ ≥ 0 with a positive entry, not only the simplex, and
        does not renormalise it (:math:`g_\mu(f \mid c\lambda) = c\, g_{\mu/c}(f \mid \lambda)`, so a scaled
        λ is a changed μ).
    D6. (P, C) One preference per method instance (one solution). The paper's Pareto set learning
        (a hypernetwork trained on Dirichlet-sampled λ, ``run_stch_psl.py``) belongs with the Pareto
        set models and is not implemented here.
    D7. On point problems the runner calls ``on_epoch_end`` after every step (full batch), so
        ``stch-mtl``'s warm-up lasts ``warmup_epochs`` steps and its nadir is the loss of one step.

Degenerate inputs: NaN or infinite losses raise :class:`~reference_impls.core.aggregator.NonFiniteError`
(a ValueError) naming the method and the task; ``stch`` also raises when :math:`\lambda_i (f_i - z_i)` overflows;
``stch-mtl`` raises on zero or negative losses or nadir (the log form needs f > 0). K = 1 works:
``stch`` is λ(f − z) with weight λ, ``stch-mtl`` is log(f/n) with weight 1/f. Any loss scale works
for ``stch`` (the weights do not depend on a common shift of u and the exponents never overflow);
``stch-mtl``'s updates are invariant to per-task loss scales c in both phases (log(c f) = log c + log f,
and log(c f / (c n)) = log(f/n) with the nadir measured on the scaled losses).

Usage (``model`` and the task losses ``f1``, ``f2`` are yours)::

    method = STCH(mu=0.01, preference=[0.3, 0.7])         # or reference_impls.create("stch", ...)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    method.objective(torch.stack([f1, f2]), step).backward()  # ∇ = Σ w_i ∇f_i, w = λ ⊙ softmax(λ(f − z)/μ)
    optimiser.step()

    # the multi-task recipe: drive its hooks with reference_impls.core.hooks.train_step / end_epoch
    method = STCHMTL()                                     # μ = 1, 5 warm-up epochs
    for epoch in range(epochs):
        for step, batch in ...:
            train_step(method, lambda: losses(batch), optimiser, shared, heads, step=step)  # calls observe
        end_epoch(method, epoch)                           # calls on_epoch_end: warm-up, then nadir
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError
from reference_impls.core.loss_weighting import LossWeighting, StartBatch


def _vector(name: str, method: str, values: Sequence[float] | Tensor) -> Tensor:
    """A finite 1-D float64 tensor from ``values``, or a ValueError naming the method and the argument."""
    v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if v.ndim != 1 or v.numel() < 1:
        raise ValueError(f"{method}: {name} must be a non-empty 1-D sequence, got shape {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{method}: {name} must be finite, got {v.tolist()}")
    return v


def _first_bad(mask: Tensor) -> int:
    """The 0-based index of the first True entry of a 1-D boolean mask."""
    return int(mask.nonzero()[0, 0])


def tchebycheff(losses: Tensor, preference: Tensor | float, ideal: Tensor | float = 0.0) -> Tensor:
    """The Tchebycheff scalarisation max_i λ_i (f_i − z_i) over the last dimension, (...,)."""
    return (preference * (losses - ideal)).amax(-1)  # max_i u_i


def smooth_tchebycheff(losses: Tensor, preference: Tensor | float, ideal: Tensor | float = 0.0, mu: float = 0.01) -> Tensor:
    """g_μ(f | λ) = μ log Σ_i exp(λ_i (f_i − z_i)/μ) over the last dimension of ``losses`` (..., K) → (...,).

    Computed as m + μ log Σ_i exp((u_i − m)/μ) with u = λ ⊙ (f − z) and m = max_i u_i (detached, so
    the autograd gradient is exactly λ ⊙ softmax(u/μ)): the exponents are ≤ 0 and nothing overflows.
    Differentiable in ``losses``; no input checks (the classes check).
    """
    u = preference * (losses - ideal)  # u_i = λ_i (f_i − z_i), (..., K)
    m = u.detach().amax(-1, keepdim=True)  # (..., 1)
    return m.squeeze(-1) + mu * torch.exp((u - m) / mu).sum(-1).log()  # m + μ log Σ e^{(u_i − m)/μ}, (...,)


def smooth_tchebycheff_weights(losses: Tensor, preference: Tensor | float, ideal: Tensor | float = 0.0, mu: float = 0.01) -> Tensor:
    """∂g_μ/∂f = λ ⊙ softmax(λ ⊙ (f − z)/μ) over the last dimension, (..., K); exact, overflow-free."""
    u = preference * (losses - ideal)  # (..., K)
    e = torch.exp((u - u.amax(-1, keepdim=True)) / mu)  # e^{(u_i − m)/μ} ∈ (0, 1], one entry = 1, (..., K)
    return preference * e / e.sum(-1, keepdim=True)  # w_i = λ_i p_i, p = softmax(u/μ), (..., K)


class STCH(LossWeighting):
    """g_μ(f | λ) = μ log Σ_i exp(λ_i (f_i − z_i)/μ); weights λ ⊙ softmax(λ(f − z)/μ) (the exact gradient)."""

    name = "stch"

    def __init__(self, mu: float = 0.01, preference: Sequence[float] | None = None, ideal: Sequence[float] | None = None) -> None:
        mu = float(mu)
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"stch: mu must be a positive finite number, got {mu}")
        self.mu = mu
        self.preference = None if preference is None else _vector("preference", "stch", preference)  # (K,) or None: 𝟙/K
        if self.preference is not None and (bool((self.preference < 0).any()) or not float(self.preference.sum()) > 0):
            raise ValueError(f"stch: the preference must be >= 0 with a positive entry, got {self.preference.tolist()}")
        self.ideal = None if ideal is None else _vector("ideal", "stch", ideal)  # (K,) or None: 0
        if self.preference is not None and self.ideal is not None and self.preference.numel() != self.ideal.numel():
            raise ValueError(f"stch: preference has {self.preference.numel()} entries but ideal has {self.ideal.numel()}")

    def _terms(self, losses: Tensor) -> tuple[Tensor, Tensor | float, Tensor | float]:
        """(f (K,), λ, z) checked: K matches, u = λ ⊙ (f − z) finite; errors name the task."""
        if not isinstance(losses, Tensor):
            losses = torch.stack([torch.as_tensor(f) for f in losses])
        f = losses.reshape(-1)  # (K,)
        K = f.numel()
        for name, v in (("preference", self.preference), ("ideal", self.ideal)):
            if v is not None and v.numel() != K:
                raise ValueError(f"stch: the {name} has {v.numel()} entries but got {K} losses")
        lam = 1.0 / K if self.preference is None else self.preference.to(f)  # λ, scalar or (K,)
        z = 0.0 if self.ideal is None else self.ideal.to(f)  # z, scalar or (K,)
        u = (lam * (f.detach() - z)).reshape(-1)  # (K,)
        finite = torch.isfinite(u)
        if not bool(finite.all()):
            bad = ~torch.isfinite(f.detach())
            if bool(bad.any()):
                i = _first_bad(bad)
                raise NonFiniteError(f"stch: the loss of task {i} is {float(f[i])}: losses must be finite")
            i = _first_bad(~finite)
            raise ValueError(f"stch: λ_{i}(f_{i} − z_{i}) overflows for task {i} (f = {float(f[i])})")
        return f, lam, z

    def objective(self, losses: Tensor, step: int = 0) -> Tensor:
        f, lam, z = self._terms(losses)
        return smooth_tchebycheff(f, lam, z, self.mu)  # g_μ(f | λ), scalar

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f, lam, z = self._terms(losses)
        return smooth_tchebycheff_weights(f.detach(), lam, z, self.mu)  # ∂g_μ/∂f = λ ⊙ softmax(u/μ), (K,)

    @classmethod
    def start_batch(cls, methods: Sequence["STCH"], optimizer=None) -> "STCHBatch | None":
        """The runner's speed path (:class:`STCHBatch`) when every start has the same μ, λ and z; None otherwise."""
        return STCHBatch(methods) if STCHBatch.applies(methods) else None


class STCHMTL(LossWeighting):
    """The official multi-task recipe: Σ log f during the warm-up, then K·μ log Σ exp(log(f_i/n_i)/μ)."""

    name = "stch-mtl"
    stateful = True

    def __init__(self, mu: float = 1.0, warmup_epochs: int = 5, nadir: Sequence[float] | None = None) -> None:
        mu = float(mu)
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"stch-mtl: mu must be a positive finite number, got {mu}")
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(f"stch-mtl: warmup_epochs must be an integer >= 0, got {warmup_epochs}")
        self.mu, self.warmup_epochs = mu, int(warmup_epochs)
        self._given_nadir = None if nadir is None else _vector("nadir", "stch-mtl", nadir)  # (K,) or None
        if self._given_nadir is not None and bool((self._given_nadir <= 0).any()):
            i = _first_bad(self._given_nadir <= 0)
            raise ValueError(f"stch-mtl: the nadir of task {i} is {float(self._given_nadir[i])}: the log form needs a positive nadir")
        if self._given_nadir is None and self.warmup_epochs == 0:
            raise ValueError("stch-mtl: with warmup_epochs=0 give the nadir (it is measured in the last warm-up epoch)")
        self.reset()

    def reset(self) -> None:
        self.epoch = 0  # the epoch in progress (0-based): one more than the last on_epoch_end(epoch)
        self.nadir: Tensor | None = None if self._given_nadir is None else self._given_nadir.clone()  # (K,) float64
        self._sum: Tensor | None = None  # Σ of the losses observed in the last warm-up epoch, (K,) float64
        self._count = 0

    @property
    def in_warmup(self) -> bool:
        """Whether the current epoch is a warm-up epoch (objective Σ log f)."""
        return self.epoch < self.warmup_epochs

    def _check(self, losses: Tensor) -> Tensor:
        """f (K,) finite and positive, K matching the nadir; errors name the task."""
        if not isinstance(losses, Tensor):
            losses = torch.stack([torch.as_tensor(f) for f in losses])
        f = losses.reshape(-1)  # (K,)
        fd = f.detach()
        if self.nadir is not None and self.nadir.numel() != f.numel():
            raise ValueError(f"stch-mtl: the nadir has {self.nadir.numel()} entries but got {f.numel()} losses")
        if not bool((fd > 0).all()):  # also catches NaN (NaN > 0 is False)
            i = _first_bad(~(fd > 0))
            value = float(fd[i])
            if math.isnan(value):
                raise NonFiniteError(f"stch-mtl: the loss of task {i} is nan: losses must be finite")
            raise ValueError(f"stch-mtl: the loss of task {i} is {value}: the log form needs positive losses")
        if not bool(torch.isfinite(fd).all()):
            i = _first_bad(~torch.isfinite(fd))
            raise NonFiniteError(f"stch-mtl: the loss of task {i} is {float(fd[i])}: losses must be finite")
        return f

    def _nadir(self, f: Tensor) -> Tensor:
        if self.nadir is None:
            raise ValueError(
                "stch-mtl: the warm-up is over but no nadir was measured: call observe(losses, step) after every step and "
                "on_epoch_end(epoch) after each epoch (reference_impls.core.hooks.train_step and end_epoch do)"
            )
        return self.nadir.to(f)  # (K,)

    def objective(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses)  # (K,)
        if self.in_warmup:
            return torch.log(f).sum()  # Σ_i log f_i
        log_ratio = torch.log(f / self._nadir(f))  # ℓ_i = log(f_i / n_i), (K,)
        return f.numel() * smooth_tchebycheff(log_ratio, 1.0, 0.0, self.mu)  # K μ log Σ_i e^{ℓ_i/μ}

    def weights(self, losses: Tensor, step: int = 0) -> Tensor:
        f = self._check(losses).detach()  # (K,)
        if self.in_warmup:
            return 1.0 / f  # ∂/∂f_i Σ log f = 1/f_i, (K,)
        p = smooth_tchebycheff_weights(torch.log(f / self._nadir(f)), 1.0, 0.0, self.mu)  # softmax(ℓ/μ), (K,)
        return f.numel() * p / f  # ∂L/∂f_i = K p_i / f_i, (K,)

    def observe(self, losses: Tensor, step: int) -> None:
        if self._given_nadir is None and self.epoch == self.warmup_epochs - 1:  # the last warm-up epoch
            f = self._check(losses).detach().to(torch.float64).cpu()  # (K,)
            self._sum = f.clone() if self._sum is None else self._sum + f
            self._count += 1

    def on_epoch_end(self, epoch: int) -> None:
        if self._given_nadir is None and self.nadir is None and epoch >= self.warmup_epochs - 1:
            if self._count == 0:
                raise ValueError(
                    f"stch-mtl: no losses were observed during the last warm-up epoch (epoch {self.warmup_epochs - 1}), so the "
                    "nadir is unknown: call observe(losses, step) after every step (reference_impls.core.hooks.train_step does)"
                )
            self.nadir = self._sum / self._count  # n = mean loss of the last warm-up epoch, (K,)
        self.epoch = int(epoch) + 1

    @classmethod
    def start_batch(cls, methods: Sequence["STCHMTL"], optimizer=None) -> "STCHMTLBatch | None":
        """The runner's speed path (:class:`STCHMTLBatch`) for fresh instances with equal hyperparameters; None otherwise."""
        return STCHMTLBatch(methods) if STCHMTLBatch.applies(methods) else None


def _same_vectors(a: Tensor | None, b: Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


class STCHBatch(StartBatch):
    """B instances of :class:`STCH` for the runner (see ``StartBatch``): ``smooth_tchebycheff_weights`` on the
    (B, K) losses (it works row by row over the last dimension), the checks of ``_terms`` once per step."""

    method_class = STCH
    replicates = ("weights", "objective", "_terms", "observe", "on_epoch_end")

    @classmethod
    def applies(cls, methods) -> bool:
        first = methods[0] if methods else None
        return super().applies(methods) and all(
            m.mu == first.mu and _same_vectors(m.preference, first.preference) and _same_vectors(m.ideal, first.ideal) for m in methods
        )

    def __init__(self, methods) -> None:
        self.methods = list(methods)

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        first = self.methods[0]
        f = F.detach()  # (B, K)
        K = f.shape[1]
        lam = 1.0 / K if first.preference is None else first.preference.to(f)  # λ, scalar or (K,)
        z = 0.0 if first.ideal is None else first.ideal.to(f)  # z, scalar or (K,)
        sizes_ok = all(v is None or v.numel() == K for v in (first.preference, first.ideal))
        if not sizes_ok or not math.isfinite(sum((lam * (f - z)).reshape(-1).tolist())):
            for m, f_b in zip(self.methods, F):
                m._terms(f_b)  # the per-start error
            if not sizes_ok:  # pragma: no cover - _terms raised
                raise AssertionError("unreachable")
        return smooth_tchebycheff_weights(f, lam, z, first.mu).to(J)  # ∂g_μ/∂f = λ ⊙ softmax(u/μ) per row, (B, K)


class STCHMTLBatch(StartBatch):
    """B fresh instances of :class:`STCHMTL` for the runner (see ``StartBatch``): the warm-up weights 1/f, the
    nadir as the float64 mean of the last warm-up epoch, then K·softmax(log(f/n)/μ)/f, row by row as per start."""

    method_class = STCHMTL
    replicates = ("weights", "objective", "_check", "_nadir", "observe", "on_epoch_end", "in_warmup")

    @classmethod
    def applies(cls, methods) -> bool:
        if not super().applies(methods):
            return False
        first = methods[0]
        fresh = all(m.epoch == 0 and m._sum is None and m._count == 0 for m in methods)
        return fresh and all(
            (m.mu, m.warmup_epochs) == (first.mu, first.warmup_epochs) and _same_vectors(m._given_nadir, first._given_nadir) for m in methods
        )

    def __init__(self, methods) -> None:
        self.methods = list(methods)
        first = self.methods[0]
        self.mu, self.warmup, self.given = first.mu, first.warmup_epochs, first._given_nadir
        self.epoch = 0
        self.nadir: Tensor | None = None if self.given is None else self.given.clone()  # (K,) given, or (B, K) measured
        self.sum: Tensor | None = None  # (B, K) float64
        self.count = 0

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        f = F.detach()  # (B, K)
        K = f.shape[1]
        if (self.nadir is not None and self.nadir.shape[-1] != K) or not bool((f > 0).all()) or not math.isfinite(float(f.sum())):
            for b, (m, f_b) in enumerate(zip(self.methods, F)):
                self._sync(m, b)
                m._check(f_b)  # the per-start error
        if self.epoch < self.warmup:
            W = 1.0 / f  # ∂/∂f_i Σ log f = 1/f_i, (B, K)
        else:
            if self.nadir is None:
                self._sync(self.methods[0], 0)
                self.methods[0]._nadir(f[0])  # raises: no nadir measured
            p = smooth_tchebycheff_weights(torch.log(f / self.nadir.to(f)), 1.0, 0.0, self.mu)  # softmax(ℓ/μ), (B, K)
            W = K * p / f  # ∂L/∂f_i = K p_i / f_i, (B, K)
        if self.given is None and self.epoch == self.warmup - 1:  # observe: the last warm-up epoch
            f64 = f.to(torch.float64).cpu()
            self.sum = f64.clone() if self.sum is None else self.sum + f64
            self.count += 1
        return W.to(J)

    def after_step(self, t: int, F_new: Tensor) -> None:  # on_epoch_end(t): full batch, an epoch is a step
        if self.given is None and self.nadir is None and t >= self.warmup - 1:
            if self.count == 0:
                self._sync(self.methods[0], 0)
                self.methods[0].on_epoch_end(t)  # raises: nothing observed
            self.nadir = self.sum / self.count  # n = mean loss of the last warm-up epoch, (B, K)
        self.epoch = int(t) + 1

    def _sync(self, m: "STCHMTL", b: int) -> None:
        m.epoch, m._count = self.epoch, self.count
        m._sum = None if self.sum is None else self.sum[b].clone()
        m.nadir = None if self.nadir is None else (self.nadir[b] if self.nadir.ndim == 2 else self.nadir).clone()

    def finish(self) -> None:
        for b, m in enumerate(self.methods):
            self._sync(m, b)


__all__ = ["STCH", "STCHBatch", "STCHMTL", "STCHMTLBatch", "smooth_tchebycheff", "smooth_tchebycheff_weights", "tchebycheff"]
