r"""FAMO: Fast Adaptive Multitask Optimization (balanced log-loss decrease with one backward pass).

Paper: B. Liu, Y. Feng, P. Stone, Q. Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS
2023, arXiv 2306.03792. Official code: Cranial-XIX/FAMO (``famo.py``, ``methods/weight_methods.py``,
``experiments/*/trainer.py`` and ``run.sh``); LibMTL ``weighting/FAMO.py``.

Update rule:
    The paper's practical algorithm (Appendix C, Algorithm 2), which the official code implements
    (as TorchJD PR #737 reports; the PDF was not re-read here); the paper's Algorithm 1 is the same
    up to how the logits are optimised (Adam in the code). With logits :math:`\xi \in \mathbb{R}^K` (initially 0), task weights
    :math:`z = \operatorname{softmax}(\xi)`, the shifted losses
    :math:`D_i = f_i - f_i^\star + \epsilon` (:math:`f^\star` = ``min_losses``, 0 by default;
    :math:`\epsilon = 10^{-8}`) and one update per step. First the parameter step direction, from one
    backward pass of a surrogate whose factors :math:`z` and :math:`c` are held constant; its gradient
    combines the task gradients with weights :math:`c_i` on the probability simplex:

    .. math::

        \mathcal{L} = \sum_{i=1}^{K} \frac{z_i}{c} \log D_i, \qquad c = \sum_{j=1}^{K} \frac{z_j}{D_j}, \qquad d = \nabla \mathcal{L} = \sum_{i=1}^{K} c_i \nabla f_i, \qquad c_i = \frac{z_i / D_i}{c}

    Then, after the optimiser step, from the new losses :math:`f_i'` on the same batch (shifted
    :math:`D_i'`), the log-loss decreases :math:`\delta` drive a step of Adam on the logits
    (learning rate :math:`\beta` = ``w_lr`` = 0.025, weight decay :math:`\gamma` = ``gamma``, so Adam
    is fed the gradient plus :math:`\gamma \xi`; torch.optim.Adam's arithmetic written out on Python
    floats: ``ListAdam``), where :math:`J_z = \partial z / \partial \xi` is the softmax Jacobian:

    .. math::

        \delta_i = \log D_i - \log D_i', \qquad \nabla_\xi = J_z^\top \delta = z \odot (\delta - z^\top \delta)

    .. math::

        \xi \leftarrow \operatorname{Adam}(\xi, \nabla_\xi + \gamma \xi)

    so the tasks that decreased most lose weight; :math:`\nabla_\xi = 0` exactly when all the
    :math:`\delta_i` are equal. With ``max_norm`` set, the shared gradient is clipped to that norm
    after the backward pass (off by default, D1).

Training loop (``backward`` takes the parameter direction, ``update`` the logit step)::

    famo = FAMO()
    for batch in data:
        optimizer.zero_grad()
        famo.backward(model.losses(batch), model.shared_parameters(), model.task_parameters())
        optimizer.step()
        with torch.no_grad():
            famo.update(model.losses(batch))   # new losses, same batch (official NYUv2/CelebA loops)

``FAMO()(J, losses)`` / ``weights(J, losses)`` give the same direction and weights c from an
explicit Jacobian (for analysis and comparison); they also record the losses for ``update``.

Hyperparameters: ``w_lr`` β = 0.025 (official code and LibMTL), ``gamma`` γ = 1e-3 (official NYUv2,
CelebA, QM9 scripts and LibMTL; 1e-2 for Cityscapes; 0 on the toy; ``famo.py`` defaults to 1e-2,
``weight_methods.py`` to 1e-5), ``min_losses`` f* = 0 (toy: (−21·s, −21)). ``max_norm``: the
official code clips the shared gradient norm to 1.0 (``famo.py`` after the backward pass); off
(None) here by default.

Degenerate inputs: the weights c do not depend on J, so zero, identical or opposite gradients give
d = Jᵀc (e.g. d = 0 for all-zero J). Losses with D ≤ 0 (f − f* + 1e-8 ≤ 0) have no logarithm: ValueError.

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

import numpy as np

from reference_impls.core.aggregator import NonFiniteError, Weighting, _accumulate, _as_loss_list, check_losses
from reference_impls.core.loss_weighting import StartBatch
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


    @classmethod
    def start_batch(cls, methods: Sequence["FAMO"], optimizer=None) -> "FAMOBatch | None":
        """The runner's speed path (:class:`FAMOBatch`) for fresh instances with equal hyperparameters; None otherwise."""
        return FAMOBatch(methods) if FAMOBatch.applies(methods) else None


def _column_sum(A: np.ndarray) -> np.ndarray:
    """Σ_k A[:, k] left to right, (B,): Python's sum over each row's K floats, in its order (exact for K = 2)."""
    if A.shape[1] == 2:
        return A[:, 0] + A[:, 1]
    total = A[:, 0].copy()
    for k in range(1, A.shape[1]):
        total += A[:, k]
    return total


def _float64_array(x: Tensor) -> np.ndarray:
    """The values of x as a float64 numpy array (a view when x already is a CPU float64 tensor), exact."""
    if x.dtype == torch.float64 and x.device.type == "cpu" and not x.requires_grad:
        return x.numpy()
    return x.detach().to(dtype=torch.float64, device="cpu").numpy()


class FAMOBatch(StartBatch):
    """B fresh :class:`FAMO` instances stepped as one (B, K) computation by the runner (see ``StartBatch``).

    Per start, the arithmetic of ``__call__`` (``compute_weights``) and ``update``, in the same order and
    on the same functions: torch's log and exp (on a (B, K) tensor: element-wise, the same per entry),
    Python's math.exp for the softmax, sums left to right (``math.fsum`` for K > 2, as ``_softmax``), and
    :class:`ListAdam`'s IEEE operations element-wise in numpy (separately rounded, as on Python floats).
    z = softmax(ξ) is computed once per step: ``compute_weights`` and the following ``update`` see the same ξ.
    """

    method_class = FAMO
    replicates = ("__call__", "weights", "aggregate", "compute_weights", "update", "_softmax", "_log_D", "_log_D_tensor", "_init_state", "on_epoch_end")

    @classmethod
    def applies(cls, methods: Sequence[FAMO]) -> bool:
        if not super().applies(methods) or any(m._xi is not None for m in methods):
            return False  # fresh instances only (the runner's are)
        first = methods[0]
        same = lambda m: (m.w_lr, m.gamma, m.eps, m.max_norm) == (first.w_lr, first.gamma, first.eps, first.max_norm) and (  # noqa: E731
            (m.min_losses is None and first.min_losses is None)
            or (m.min_losses is not None and first.min_losses is not None and torch.equal(m.min_losses, first.min_losses))
        )
        return all(same(m) for m in methods)

    def __init__(self, methods: Sequence[FAMO]) -> None:
        self.methods = list(methods)
        first = self.methods[0]
        self.eps, self.w_lr, self.gamma = first.eps, first.w_lr, first.gamma
        self.xi: np.ndarray | None = None  # (B, K) logits ξ
        self.z: np.ndarray | None = None  # (B, K) softmax(ξ) of the current ξ
        self.grad: np.ndarray | None = None  # (B, K) last ∇_ξ
        self.prev_log_D: np.ndarray | None = None  # (B, K)
        self.opt: ListAdam | None = None  # its t and scalars; the moments are (B, K) arrays here
        self.adam_m = self.adam_v = None

    def _log_D(self, F: Tensor) -> np.ndarray:
        D = _float64_array(F) - self.f_star  # f_i − f_i*, (B, K)
        D += self.eps  # D_i = f_i − f_i* + ε
        if not (D > 0).all():
            for m, F_b in zip(self.methods, F):
                m._log_D_tensor(F_b)  # the per-start error
        return torch.log(torch.from_numpy(D)).numpy()  # torch's log, (B, K)

    def _softmax(self) -> np.ndarray:
        if self.z is None:
            xi = self.xi
            top = xi.max(axis=1, keepdims=True)  # max ξ per row, (B, 1)
            e = np.fromiter(map(math.exp, (xi - top).ravel().tolist()), dtype=np.float64, count=xi.size).reshape(xi.shape)  # math.exp(ξ_i − max ξ)
            total = np.array([math.fsum(row) for row in e]) if xi.shape[1] > 2 else _column_sum(e)  # (B,)
            self.z = e / total[:, None]  # z = softmax(ξ), (B, K)
        return self.z

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        B, K = F.shape
        if not math.isfinite(float(J.sum())) or not math.isfinite(float(F.sum())):
            for m, J_b, F_b in zip(self.methods, J, F):
                m(J_b, F_b)  # the per-start error of the interface's checks
        if self.xi is None:  # _init_state(K)
            for m in self.methods:
                m._init_state(K)
            self.f_star = np.array(self.methods[0]._f_star, dtype=np.float64)  # (K,)
            self.xi = np.zeros((B, K))  # ξ_0 = 0
            self.opt = ListAdam(0, lr=self.w_lr, weight_decay=self.gamma)
            self.adam_m, self.adam_v = np.zeros((B, K)), np.zeros((B, K))
        log_D = self._log_D(F)  # (B, K)
        self.prev_log_D = log_D
        inv = self._softmax() * torch.exp(torch.from_numpy(-log_D)).numpy()  # z_i / D_i = z_i·exp(−log D_i), (B, K)
        c = inv / _column_sum(inv)[:, None]  # c_i = (z_i / D_i) / Σ_j (z_j / D_j), (B, K)
        return torch.from_numpy(c).to(J.dtype)

    def after_step(self, t: int, F_new: Tensor) -> None:
        if not math.isfinite(float(F_new.sum())):
            for m, F_b in zip(self.methods, F_new):
                check_losses(F_b, F_new.shape[1], required=True)  # update()'s error
        delta = self.prev_log_D - self._log_D(F_new)  # δ_i = log D_i − log D_i', (B, K)
        z = self._softmax()  # (B, K)
        mean = _column_sum(z * delta)  # zᵀδ, (B,)
        self.grad = z * (delta - mean[:, None])  # ∇_ξ = z ⊙ (δ − zᵀδ), (B, K)
        self.xi = self._adam_step(self.xi, self.grad)  # ξ ← Adam step on ∇_ξ + γ ξ
        self.z = None  # ξ moved
        self.prev_log_D = None

    def _adam_step(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        x, self.adam_m, self.adam_v = list_adam_step_rows(self.opt, self.adam_m, self.adam_v, x, grad)
        return x

    def finish(self) -> None:
        if self.xi is None:
            return
        for b, m in enumerate(self.methods):
            m._xi = self.xi[b].tolist()
            m._grad = None if self.grad is None else self.grad[b].tolist()
            m._prev_log_D = None if self.prev_log_D is None else self.prev_log_D[b].tolist()
            opt = ListAdam(len(m._xi), lr=self.w_lr, weight_decay=self.gamma)
            opt.t, opt.m, opt.v = self.opt.t, self.adam_m[b].tolist(), self.adam_v[b].tolist()
            m._opt = opt


def list_adam_step_rows(opt: "ListAdam", m: np.ndarray, v: np.ndarray, x: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`ListAdam.step` for B points at once: x, m, v, grad (B, K) arrays, one shared step count ``opt.t``
    (advanced here) and ``opt``'s scalars. The same IEEE operations element-wise (numpy rounds each one
    separately, as Python floats do), so each row equals a :class:`ListAdam` of its own. Returns (x, m, v)."""
    b1, b2 = opt.betas
    opt.t += 1
    step = float(opt.t)
    bias_correction1 = 1 - b1**step
    bias_correction2_sqrt = (1 - b2**step) ** 0.5
    step_size = opt.lr / bias_correction1
    w1, w2 = 1 - b1, 1 - b2
    g = grad + opt.weight_decay * x if opt.weight_decay != 0 else grad  # ∇ + γx
    m = m + w1 * (g - m)  # m.lerp_(g, 1 − β₁)
    v = v * b2 + w2 * g * g  # v·β₂ + (1 − β₂)·g·g
    denom = np.sqrt(v) / bias_correction2_sqrt + opt.eps  # √v̂ + ε
    return x + -step_size * m / denom, m, v


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
