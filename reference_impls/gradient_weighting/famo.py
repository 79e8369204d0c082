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
       ξ ← Adam(ξ, ∇_ξ + γ ξ)          (lr β = 0.025, weight decay γ; Adam as in the official code)
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

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import NonFiniteError, Weighting, _accumulate, _as_loss_list, check_losses


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
        self._xi: Tensor | None = None  # logits ξ, (K,), float64 CPU
        self._opt: torch.optim.Adam | None = None
        self._prev_log_D: Tensor | None = None  # log D_i at the last step, (K,)

    @property
    def xi(self) -> Tensor | None:
        """The logits ξ (K,) (a leaf tensor stepped by Adam), None before the first step."""
        return self._xi

    # ------------------------------------------------------------------------------------------

    def _init_state(self, K: int) -> None:
        if self._xi is None:
            if self.min_losses is not None and self.min_losses.numel() != K:
                raise ValueError(f"famo: min_losses has {self.min_losses.numel()} entries for {K} tasks")
            self._xi = torch.zeros(K, dtype=torch.float64, requires_grad=True)  # ξ_0 = 0
            self._opt = torch.optim.Adam([self._xi], lr=self.w_lr, weight_decay=self.gamma)
        elif self._xi.numel() != K:
            raise ValueError(f"famo: the number of tasks changed from {self._xi.numel()} to {K}; call reset() first")

    def z(self) -> Tensor:
        """The task weights z = softmax(ξ) (K,), detached (uniform before the first step)."""
        if self._xi is None:
            raise ValueError("famo: no step has been taken yet")
        return torch.softmax(self._xi.detach(), dim=0)

    def _log_D(self, losses: Tensor) -> Tensor:
        f = losses.detach().to("cpu", torch.float64).reshape(-1)  # (K,)
        f_star = self.min_losses if self.min_losses is not None else torch.zeros_like(f)
        D = f - f_star + self.eps  # D_i = f_i − f_i* + ε, (K,)
        if not bool((D > 0).all()):
            raise ValueError(f"famo: log D_i needs f_i - f_i* + eps > 0, got losses {f.tolist()} and f* {f_star.tolist()}")
        return torch.log(D)

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        assert losses is not None
        self._init_state(J.shape[0])
        log_D = self._log_D(losses)  # (K,)
        self._prev_log_D = log_D
        inv = self.z() * torch.exp(-log_D)  # z_i / D_i, (K,)
        c = inv / inv.sum()  # c_i = (z_i / D_i) / Σ_j (z_j / D_j), (K,)
        return c.to(J)

    def update(self, new_losses: Tensor | Sequence[Tensor]) -> Tensor:
        """The ξ step from the losses after the parameter step; returns δ (K,)."""
        if self._prev_log_D is None or self._xi is None:
            raise ValueError("famo: update() needs a preceding backward() or weights() call")
        new = check_losses(new_losses, self._xi.numel(), required=True)
        delta = self._prev_log_D - self._log_D(new)  # δ_i = log D_i − log D_i', (K,)
        z = torch.softmax(self._xi.detach(), dim=0)  # (K,)
        grad = z * (delta - z @ delta)  # ∇_ξ = J_zᵀ δ = z ⊙ (δ − zᵀδ), (K,)
        self._opt.zero_grad(set_to_none=False)
        self._xi.grad = grad.clone()
        self._opt.step()  # ξ ← Adam step on ∇_ξ + γ ξ
        self._prev_log_D = None
        return delta

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
        c = (z * torch.exp(-log_D_now.to(f))).sum()  # c = Σ_j z_j / D_j (constant)
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
