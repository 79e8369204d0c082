"""GradNorm: learned task weights that equalise the weighted gradient norms (adjusted by training rates).

Paper: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018, arXiv 1711.02257. No official code
was released; LibMTL ``weighting/GradNorm.py`` is the reference re-implementation read here.

Implemented (Sec. 3, Eqs. 1-2 and Algorithm 1), with task weights w_i (w_i(0) = 1) and W the
last shared layer:

    G_i = ||∇_W (w_i f_i)|| = w_i ||∇_W f_i||,   Ḡ = mean_i G_i
    L̃_i = f_i(t) / f_i(0),   r_i = L̃_i / mean_j L̃_j                     (inverse training rate)
    L_grad = Σ_i | G_i − [Ḡ · r_i^α]_const |                              (Eq. 2; target held constant)
    ∂L_grad/∂w_i = sign(G_i − target_i) · ||∇_W f_i||                     (G_i is linear in w_i)
    w ← w − lr ∇_w L_grad, then w ← K · w / Σ_j w_j                       (renormalisation)

The network is updated with d = Σ_i w_i(t) g_i using the weights *before* this step's update
(Algorithm 1 computes both gradients at w(t), then steps both). ``weights(J, losses)`` returns
w(t) and advances the state to w(t + 1); the first call records f_i(0).

Which columns are W: the rows of J are the gradients with respect to all shared parameters; with
``last_layer_size=m`` the last m columns of J are taken as ∇_W f_i (in ``backward`` list the last
shared layer's parameters last in ``shared_params``). Default ``None``: all of J (as LibMTL).

Hyperparameters: α = 1.5 (paper, NYUv2; 0.12 on the paper's regression toy; LibMTL 1.5).
The w step: Adam with lr = 1e-4 by default (``optimizer="adam"``, ``lr=1e-4``; torch.optim.Adam's
arithmetic written out on Python floats, famo.ListAdam). Source: official
practice — no official code exists; LibMTL makes w a parameter of the model, so the model's optimiser
trains it (``LibMTL/config.py``: Adam, lr 1e-4, the defaults of its examples), and the widely used
reproduction of the paper's toy, brianlan/pytorch-grad-norm ``train.py``, steps w with the network's
Adam at lr 1e-4. The paper's own optimiser and rate for w were not re-read here. Use the network's
learning rate for ``lr`` when it differs. Adam's step (≈ lr per step whatever the gradient scale)
matters here: ∂L_grad/∂w_i = ±||∇_W f_i|| scales with the gradients, so a plain step
(``optimizer="sgd"``) with a fixed lr overshoots to w_i < 0 (clipped to 0) whenever the gradients are
large — the former default (sgd, lr 0.025, no source) put some w_i at exactly 0 on half the steps of
the ``mtl-regression`` toy with scales (1, 100). ``lr`` may be changed between steps (a schedule);
L_grad is an L1 loss, so constant steps make w oscillate around the balance point with an amplitude
∝ lr.

Degenerate inputs: all-zero J gives ∂L_grad/∂w = 0 (w unchanged) and d = 0; if every loss is 0,
r_i = 1. Initial losses f_i(0) must be positive and later losses non-negative (L̃_i = f_i/f_i(0)
and r_i^α need f_i ≥ 0; a negative loss made r_i^α NaN and sign(NaN) = 0 silently froze w_i):
otherwise a ValueError names the task. ||∇_W f_i|| is the plain norm when certified, else computed
from rows scaled by powers of two in float64 (no under/overflow of the squares at any float32 scale,
``pcgrad.row_norms``); a norm that overflows float64 raises NonFiniteError (it used to reset w to 𝟙
silently).

    >>> gradnorm = GradNorm(alpha=1.5, lr=1e-4, last_layer_size=last.weight.numel() + last.bias.numel())
    >>> for batch in data:
    ...     optimizer.zero_grad()
    ...     gradnorm.backward(model.losses(batch), encoder_params + list(last.parameters()), head_params)
    ...     optimizer.step()

Deviations:
  D1. w has its own Adam (default) or plain gradient step on ∇_w L_grad with its own ``lr``;
      LibMTL and brianlan/pytorch-grad-norm step it with the network's optimiser (the same Adam
      state as the network's parameters). Weights driven below 0 by a large step are clipped at 0
      before the renormalisation (the paper does not say; if every weight is clipped, w is reset to
      𝟙 — possible only with large plain steps).
  D2. LibMTL parametrises w = K·softmax(ŵ) (so Σw = K without renormalisation), measures G_i on all
      shared parameters rather than the last shared layer, and uses equal weights during the first
      epoch with f_i(0) the first epoch's mean loss; here w is the paper's direct parametrisation,
      f_i(0) is the first loss seen, and W defaults to all of J unless ``last_layer_size`` is set.
  D3. The network gradient uses w(t), not w(t + 1) (Algorithm 1's order); LibMTL likewise.
  D4. Heads receive Σ_i w_i(t) ∇f_i (the paper back-propagates L = Σ_i w_i f_i through the whole
      network); LibMTL gives them the unweighted task gradients.
  D5. ∂L_grad/∂w_i is computed in closed form (the subgradient sign(0) = 0 at a kink, as autograd's
      abs); no autograd graph through J.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from reference_impls.core.aggregator import (
    NonFiniteError,
    Weighting,
    _accumulate,
    _as_loss_list,
    jacobian,
    write_flat_grad,
)
from reference_impls.core.solvers import float_info, float_max, small_tensor
from reference_impls.gradient_manipulation.pcgrad import row_norms
from reference_impls.gradient_weighting.famo import ListAdam


class GradNorm(Weighting):
    name = "gradnorm"
    needs_losses = True
    stateful = True

    def __init__(
        self,
        alpha: float = 1.5,
        lr: float = 1e-4,
        last_layer_size: int | None = None,
        optimizer: str = "adam",
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"gradnorm: lr must be > 0, got {lr}")
        if last_layer_size is not None and last_layer_size < 1:
            raise ValueError(f"gradnorm: last_layer_size must be a positive number of columns, got {last_layer_size}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"gradnorm: optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.last_layer_size = last_layer_size
        self.optimizer = optimizer
        self.reset()

    def reset(self) -> None:
        self._w: list[float] | None = None  # task weights w(t + 1), (K,) Python floats (float64)
        self._f0: list[float] | None = None  # f_i(0), (K,)
        self._opt: ListAdam | None = None
        self._G: list[float] | None = None  # G_i at the last step, (K,)

    @property
    def w(self) -> Tensor | None:
        """The weights w(t + 1) for the next step (K,), float64, detached, None before the first step."""
        return None if self._w is None else torch.tensor(self._w, dtype=torch.float64)

    @property
    def initial_losses(self) -> Tensor | None:
        """f_i(0) (K,), recorded at the first step."""
        return None if self._f0 is None else torch.tensor(self._f0, dtype=torch.float64)

    @property
    def last_gradient_norms(self) -> Tensor | None:
        """G_i = w_i(t) ||∇_W f_i|| at the last step (K,)."""
        return None if self._G is None else torch.tensor(self._G, dtype=torch.float64)

    def loss_grad_gradient(self, a: Tensor, w: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """(∇_w L_grad, G) for norms a_i = ||∇_W f_i||, weights w and inverse training rates r (all (K,))."""
        G = w * a  # G_i = w_i ||∇_W f_i||, (K,)
        target = G.mean() * r**self.alpha  # [Ḡ r_i^α]_const, (K,)
        return torch.sign(G - target) * a, G  # ∂L_grad/∂w_i = sign(G_i − target_i) ||∇_W f_i||

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        # The K-vector arithmetic runs on Python floats (each torch op on a K-vector costs µs); the formulas are those of
        # loss_grad_gradient, and the Adam step is torch.optim.Adam's, written out (famo.ListAdam).
        assert losses is not None
        K = J.shape[0]
        f = losses.detach().reshape(-1).tolist()  # (K,) float64 (exact)
        negative = [i for i in range(K) if f[i] < 0]
        if negative:
            raise ValueError(
                f"gradnorm: task(s) {negative} have negative losses {[f[i] for i in negative]}: the training rate "
                "L_i(t)/L_i(0) and r_i^alpha need losses >= 0 (shift each loss by a lower bound)"
            )
        if self._w is None:
            if not all(fi > 0 for fi in f):
                raise ValueError(f"gradnorm: the initial losses f_i(0) must be positive, got {f}")
            self._f0 = list(f)
            self._w = [1.0] * K  # w_i(0) = 1
            if self.optimizer == "adam":
                self._opt = ListAdam(K, lr=self.lr)
        elif len(self._w) != K:
            raise ValueError(f"gradnorm: the number of tasks changed from {len(self._w)} to {K}; call reset() first")
        m = self.last_layer_size
        if m is not None and m > J.shape[1]:
            raise ValueError(f"gradnorm: last_layer_size={m} exceeds the {J.shape[1]} columns of the Jacobian")
        W_cols = J if m is None else J[:, J.shape[1] - m :]  # ∇_W f_i, (K, m)
        a = _row_norms(W_cols)  # ||∇_W f_i|| in float64, no under/overflow (rows scaled when not certified), (K,)
        if not all(math.isfinite(ai) for ai in a):
            raise NonFiniteError(f"gradnorm: the gradient norms ||∇_W f_i|| overflow float64: {a}")
        L_tilde = [fi / f0 for fi, f0 in zip(f, self._f0)]  # L̃_i = f_i(t)/f_i(0), (K,)
        mean = sum(L_tilde) / K
        r = [lt / mean for lt in L_tilde] if mean > 0 else [1.0] * K  # r_i = L̃_i / mean_j L̃_j
        w_t = self._w  # w(t), used for this step's direction
        G = [wi * ai for wi, ai in zip(w_t, a)]  # G_i = w_i ||∇_W f_i||, (K,)
        G_bar = sum(G) / K
        grad = []
        for Gi, ai, ri in zip(G, a, r):
            gap = Gi - G_bar * ri**self.alpha  # G_i − [Ḡ r_i^α]_const
            grad.append(((gap > 0) - (gap < 0)) * ai)  # ∂L_grad/∂w_i = sign(G_i − target_i) ||∇_W f_i|| (sign(0) = 0)
        self._G = G
        if self._opt is not None:
            self._opt.lr = self.lr  # follows a schedule set through ``self.lr``
            w = self._opt.step(w_t, grad)  # Adam step on ∇_w L_grad
        else:
            w = [wi - self.lr * gi for wi, gi in zip(w_t, grad)]  # w ← w − lr ∇_w L_grad
        w = [wi if wi > 0.0 else 0.0 for wi in w]  # D1
        total = sum(w)
        self._w = [wi * (K / total) for wi in w] if total > 0 else [1.0] * K  # renormalise Σ_i w_i = K
        return small_tensor(w_t, J.dtype) if J.device.type == "cpu" else torch.tensor(w_t, dtype=J.dtype, device=J.device)

    def backward(
        self,
        losses: Sequence[Tensor] | Tensor,
        shared_params: Iterable[Tensor],
        task_params: Iterable[Tensor] = (),
        representation: Tensor | None = None,
    ) -> Tensor:
        """Write d = Σ_i w_i(t) g_i into the shared ``.grad`` and Σ_i w_i(t) ∇f_i into the heads (the paper's L = Σ w_i f_i).

        With ``representation=Z`` the base class's mode is used instead: w from ∂f_i/∂Z (Z plays the
        role of W), Σ w_i f_i back-propagated once, heads with their plain gradients.
        """
        if representation is not None:
            return super().backward(losses, shared_params, task_params, representation)
        losses = _as_loss_list(losses)
        shared_params, task_params = list(shared_params), list(task_params)
        n = sum(p.numel() for p in shared_params)
        J_all, _ = jacobian(losses, shared_params + task_params)  # rows ∇f_i over every parameter, (K, n + n_task)
        values = torch.stack([f.detach().reshape(()) for f in losses])  # (K,)
        w = self.weights(J_all[:, :n], values)  # w(t), (K,)
        d_all = w @ J_all  # ∇(Σ_i w_i f_i), (n + n_task,)
        write_flat_grad(shared_params, d_all[:n])
        offset = n
        for p in task_params:
            _accumulate(p, d_all[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return d_all[:n]


def _row_norms(W: Tensor) -> list[float]:
    """pcgrad.row_norms(W) as Python floats; on CPU its fast path (the plain norms, kept when every one lies in
    [√(tiny/ε), max) of W's dtype) is taken here without the tensor comparisons."""
    if W.device.type == "cpu":
        norms = torch.linalg.vector_norm(W, dim=1).tolist()  # ||W_i|| in W's dtype, exactly as float64
        eps, tiny = float_info(W.dtype)
        low, high = math.sqrt(tiny / eps), float_max(W.dtype)
        if all(low <= x < high for x in norms):  # NaN fails too
            return norms
    return row_norms(W).tolist()
