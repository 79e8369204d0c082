"""FAMO: Fast Adaptive Multitask Optimization (balanced log-loss decrease with one backward pass).

Paper: B. Liu, Y. Feng, P. Stone, Q. Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS
2023, arXiv 2306.03792. Official code: Cranial-XIX/FAMO (``famo.py``, ``methods/weight_methods.py``,
``experiments/*/trainer.py`` and ``run.sh``); LibMTL ``weighting/FAMO.py``.

Implemented (Algorithm 1), with logits ξ ∈ R^K (ξ_0 = 0), z = softmax(ξ), the shifted losses
D_i = f_i − f_i* + 1e-8 (f* = 0 by default) and one update per step:

1. Parameter step direction (one backward pass): back-propagate
       Σ_i (z_i / c) log D_i,   c = Σ_j z_j / D_j  (c and z held constant),
   whose gradient is d = Σ_i c_i ∇f_i with c_i = (z_i / D_i) / Σ_j (z_j / D_j) ∈ Δ.
2. After the optimiser step, from the new losses f_i' on the same batch:
       δ_i = log D_i − log D_i'                                  (log-loss decrease of task i)
       ∇_ξ = J_zᵀ δ = z ⊙ (δ − zᵀδ)                              (J_z = ∂z/∂ξ, the softmax Jacobian)
       ξ ← Adam(ξ, ∇_ξ + γ ξ)          (lr β = 0.025, weight decay γ; Adam as in the official code,
                                        torch.optim.Adam's arithmetic written out on Python floats: ListAdam)
   so the tasks that decreased most lose weight; ∇_ξ = 0 exactly when all δ_i are equal.

Training loop (``backward`` does step 1, ``update`` step 2)::

    famo = FAMO()
    for batch in data:
        optimizer.zero_grad()
        famo.backward(model.losses(batch), model.shared_parameters(), model.task_parameters())
        optimizer.step()
        with torch.no_grad():
            famo.update(model.losses(batch))   # new losses, same batch (official NYUv2/CelebA loops)

``FAMO()(J, losses)`` / ``weights(J, losses)`` give the same direction and weights c from an
explicit Jacobian (for analysis and comparison); they also record the losses for ``update``.

Hyperparameters: w_lr β = 0.025 (official code and LibMTL), γ = 1e-3 (official NYUv2, CelebA, QM9 scripts and
LibMTL; 1e-2 for Cityscapes; 0 on the toy; ``famo.py`` defaults to 1e-2, ``weight_methods.py`` to
1e-5), ``min_losses`` f* = 0 (toy: (−21·s, −21)). ``max_norm``: the official code clips the shared
gradient norm to 1.0 (``famo.py`` after the backward pass); off (None) here by default.

Degenerate inputs: the weights c do not depend on J, so zero, identical or opposite gradients give
d = Jᵀc (e.g. d = 0 for all-zero J). Losses with f_i − f_i* + 1e-8 ≤ 0 have no logarithm: ValueError.

Deviations:
  D1. Gradient clipping is optional (``max_norm=None``). In ``methods/weight_methods.py`` (the code of
      the paper's experiments) ``clip_grad_norm_`` runs *before* ``loss.backward()`` and so has no
      effect; ``famo.py`` clips after the backward pass, which ``backward`` does when ``max_norm`` is set.
  D2. z and c are detached in the backward pass; the official code leaves z attached (so the
      backward pass also writes a gradient into ξ, which ``update`` then overwrites).
  D3. ``update`` must be called once after each optimiser step; calling ``backward`` twice without
      ``update`` simply replaces the recorded losses (the official code does the same).
  D4. The "-UB" representation mode does not apply (FAMO computes no task gradients): refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError, Weighting, _accumulate, _as_loss_list, check_losses
from reference_impls.core.solvers import small_tensor


class FAMO(Weighting):
    name = "famo"
    needs_losses = True
    stateful = True

    def __init__(
        self,
        w_lr: float = 0.025,
        gamma: float = 1e-3,
        min_losses: Sequence[float] | Tensor | None = None,
        max_norm: float | None = None,
        eps: float = 1e-8,
    ) -> None:
        if w_lr <= 0.0 or gamma < 0.0:
            raise ValueError(f"famo: need w_lr > 0 and gamma >= 0, got w_lr={w_lr}, gamma={gamma}")
        if max_norm is not None and max_norm <= 0.0:
            raise ValueError(f"famo: max_norm must be > 0 or None, got {max_norm}")
        self.w_lr = float(w_lr)
        self.gamma = float(gamma)
        self.min_losses = None if min_losses is None else torch.as_tensor(min_losses, dtype=torch.float64).reshape(-1)
        self.max_norm = max_norm
        self.eps = float(eps)
        self.reset()

    def reset(self) -> None:
        self._xi: list[float] | None = None  # logits ξ (K Python floats, float64)
        self._grad: list[float] | None = None  # the last ∇_ξ (without the weight decay term)
        self._opt: ListAdam | None = None
        self._prev_log_D: list[float] | None = None  # log D_i at the last step, (K,)

    @property
    def xi(self) -> Tensor | None:
        """The logits ξ (K,) as a new float64 leaf tensor whose ``.grad`` is the last ∇_ξ; None before the first step.

        ξ itself is K Python floats stepped by :class:`ListAdam` (torch.optim.Adam's arithmetic, written out)."""
        if self._xi is None:
            return None
        xi = torch.tensor(self._xi, dtype=torch.float64, requires_grad=True)
        if self._grad is not None:
            xi.grad = torch.tensor(self._grad, dtype=torch.float64)
        return xi

    # ------------------------------------------------------------------------------------------

    def _init_state(self, K: int) -> None:
        if self._xi is None:
            if self.min_losses is not None and self.min_losses.numel() != K:
                raise ValueError(f"famo: min_losses has {self.min_losses.numel()} entries for {K} tasks")
            self._xi = [0.0] * K  # ξ_0 = 0
            self._opt = ListAdam(K, lr=self.w_lr, weight_decay=self.gamma)
            self._f_star = [0.0] * K if self.min_losses is None else self.min_losses.tolist()  # f*, (K,)
        elif len(self._xi) != K:
            raise ValueError(f"famo: the number of tasks changed from {len(self._xi)} to {K}; call reset() first")

    def _softmax(self) -> list[float]:
        top = max(self._xi)
        e = [math.exp(x - top) for x in self._xi]  # exp(ξ_i − max ξ)
        total = math.fsum(e) if len(e) > 2 else sum(e)
        return [v / total for v in e]  # z = softmax(ξ)

    def z(self) -> Tensor:
        """The task weights z = softmax(ξ) (K,), float64 (uniform before the first step)."""
        if self._xi is None:
            raise ValueError("famo: no step has been taken yet")
        return torch.tensor(self._softmax(), dtype=torch.float64)

    def _log_D_tensor(self, losses: Tensor) -> Tensor:
        f = losses.detach().reshape(-1).tolist()  # (K,) as float64 Python floats (exact)
        D = [fi - si + self.eps for fi, si in zip(f, self._f_star)]  # D_i = f_i − f_i* + ε, (K,)
        if not all(d > 0 for d in D):
            raise ValueError(f"famo: log D_i needs f_i - f_i* + eps > 0, got losses {f} and f* {self._f_star}")
        return torch.log(small_tensor(D, torch.float64))  # torch's log (its rounding, as before), (K,)

    def _log_D(self, losses: Tensor) -> list[float]:
        return self._log_D_tensor(losses).tolist()

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        assert losses is not None
        self._init_state(J.shape[0])
        log_D = self._log_D_tensor(losses)  # (K,)
        self._prev_log_D = log_D.tolist()
        inv = [zi * e for zi, e in zip(self._softmax(), torch.exp(-log_D).tolist())]  # z_i / D_i = z_i·exp(−log D_i), (K,)
        total = sum(inv)
        c = [v / total for v in inv]  # c_i = (z_i / D_i) / Σ_j (z_j / D_j), (K,)
        return small_tensor(c, J.dtype) if J.device.type == "cpu" else torch.tensor(c, dtype=J.dtype, device=J.device)

    def update(self, new_losses: Tensor | Sequence[Tensor]) -> Tensor:
        """The ξ step from the losses after the parameter step; returns δ (K,)."""
        if self._prev_log_D is None or self._xi is None:
            raise ValueError("famo: update() needs a preceding backward() or weights() call")
        new = check_losses(new_losses, len(self._xi), required=True)
        delta = [a - b for a, b in zip(self._prev_log_D, self._log_D(new))]  # δ_i = log D_i − log D_i', (K,)
        z = self._softmax()  # (K,)
        mean = sum(zi * di for zi, di in zip(z, delta))  # zᵀδ
        self._grad = [zi * (di - mean) for zi, di in zip(z, delta)]  # ∇_ξ = J_zᵀ δ = z ⊙ (δ − zᵀδ), (K,)
        self._xi = self._opt.step(self._xi, self._grad)  # ξ ← Adam step on ∇_ξ + γ ξ
        self._prev_log_D = None
        return small_tensor(delta, torch.float64)

    # ------------------------------------------------------------------------------------------

    def backward(
        self,
        losses: Sequence[Tensor] | Tensor,
        shared_params: Iterable[Tensor],
        task_params: Iterable[Tensor] = (),
        representation: Tensor | None = None,
    ) -> Tensor:
        """One backward pass of Σ_i (z_i/c) log D_i into ``.grad`` of every parameter; returns d over the shared ones."""
        if representation is not None:
            raise TypeError("famo computes no task gradients: the representation (-UB) mode does not apply")
        losses = _as_loss_list(losses)
        shared_params, task_params = list(shared_params), list(task_params)
        if not shared_params:
            raise ValueError("no shared parameters given")
        f = torch.stack([v.reshape(()) for v in losses])  # (K,), attached
        if not bool(torch.isfinite(f.detach()).all()):
            raise NonFiniteError("the losses contain NaN or infinite values")
        self._init_state(f.numel())
        log_D_now = self._log_D(f)  # also validates D > 0, (K,)
        self._prev_log_D = log_D_now
        f_star = (self.min_losses if self.min_losses is not None else torch.zeros(f.numel(), dtype=torch.float64)).to(f)
        z = self.z().to(f)  # constant, (K,)
        c = (z * torch.exp(-torch.tensor(log_D_now, dtype=torch.float64).to(f))).sum()  # c = Σ_j z_j / D_j (constant)
        surrogate = (z / c * torch.log(f - f_star + self.eps)).sum()  # Σ_i (z_i/c) log D_i
        params = shared_params + task_params
        grads = torch.autograd.grad(surrogate, params, allow_unused=True)  # the single backward pass
        for p, g in zip(params, grads):
            if g is not None:
                _accumulate(p, g)
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(shared_params, self.max_norm)
        return torch.cat(
            [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(shared_params, grads)]
        )  # d = Σ_i c_i ∇f_i (before clipping), (n,)


class ListAdam:
    """torch.optim.Adam on a list of Python floats: the same IEEE operations in the same order as torch's CPU
    single-tensor step (``torch/optim/adam.py`` ``_single_tensor_adam``: L2 weight decay g + γx, m.lerp_(g, 1 − β₁),
    v·β₂ + (1 − β₂)·g·g, bias corrections in Python floats, x + (−lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε)); no amsgrad,
    no maximize. A few µs a step instead of torch.optim's ~50 µs (and no import of torch._dynamo on construction).
    Where the CPU has fused multiply-add, torch's kernels fuse lerp_ and addcmul_ (one rounding instead of two), so the
    two can differ by an ulp per step: tested step for step against torch.optim.Adam to rtol 1e-12 over 500 steps
    (tests/reference_impls/test_famo.py).
    """

    def __init__(self, n: int, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.t = 0
        self.m = [0.0] * n  # first moments
        self.v = [0.0] * n  # second moments

    def step(self, x: list[float], grad: list[float]) -> list[float]:
        """One Adam step of the point x with gradient ``grad``; returns the new x (the moments are updated in place)."""
        b1, b2 = self.betas
        self.t += 1
        step = float(self.t)
        bias_correction1 = 1 - b1**step
        bias_correction2_sqrt = (1 - b2**step) ** 0.5
        step_size = self.lr / bias_correction1
        w1, w2 = 1 - b1, 1 - b2
        out = []
        for i, (xi, g) in enumerate(zip(x, grad)):
            if self.weight_decay != 0:
                g = g + self.weight_decay * xi  # ∇ + γx (grad.add(param, alpha=γ))
            m = self.m[i]
            m = m + w1 * (g - m)  # m.lerp_(g, 1 − β₁): weight < ½ branch
            v = self.v[i] * b2 + w2 * g * g  # v·β₂ + (1 − β₂)·g·g (mul_, addcmul_)
            self.m[i], self.v[i] = m, v
            denom = math.sqrt(v) / bias_correction2_sqrt + self.eps  # √v̂ + ε
            out.append(xi + -step_size * m / denom)  # addcdiv_(m, denom, value=−step_size)
        return out
