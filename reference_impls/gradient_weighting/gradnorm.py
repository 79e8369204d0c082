r"""GradNorm: learned task weights that equalise the weighted gradient norms (adjusted by training rates).

Paper: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018, arXiv 1711.02257. No official code
was released; LibMTL ``weighting/GradNorm.py`` is the reference re-implementation read here.

Update rule:
    Sec. 3, Eqs. 1-2 and Algorithm 1, with task weights :math:`w_i` (:math:`w_i(0) = 1`),
    :math:`W` the shared weights whose gradient norms are balanced (the paper's last shared layer;
    all shared parameters by default here, see "Which columns are W" and D2) and :math:`g_i` the gradient of :math:`f_i` with respect to all
    shared parameters (the rows of J). The weighted gradient norms, their mean, the inverse training
    rates :math:`r_i` and the gradient loss (Eq. 2, its target held constant) are

    .. math::

        G_i = \lVert \nabla_W (w_i f_i) \rVert = w_i \lVert \nabla_W f_i \rVert, \qquad \bar G = \frac{1}{K} \sum_{i=1}^{K} G_i

    .. math::

        \tilde L_i = \frac{f_i(t)}{f_i(0)}, \qquad r_i = \frac{\tilde L_i}{\frac{1}{K} \sum_j \tilde L_j}

    .. math::

        L_{\mathrm{grad}} = \sum_{i=1}^{K} \left\lvert G_i - [\bar G \, r_i^{\alpha}]_{\mathrm{const}} \right\rvert

    .. math::

        \frac{\partial L_{\mathrm{grad}}}{\partial w_i} = \operatorname{sign}\big(G_i - \bar G \, r_i^{\alpha}\big) \, \lVert \nabla_W f_i \rVert

    (:math:`G_i` is linear in :math:`w_i`; sign(0) = 0). The weights take one Adam step on that
    gradient (learning rate ``lr`` = 1e-4; ``optimizer="sgd"`` takes the plain step
    :math:`w - \mathrm{lr} \, \nabla_w L_{\mathrm{grad}}` instead, D1), are clipped at 0 and renormalised
    to sum to K:

    .. math::

        w' = \max\big(0, \operatorname{Adam}(w, \nabla_w L_{\mathrm{grad}})\big), \qquad w(t+1) = K \, \frac{w'}{\sum_j w'_j}, \qquad d = \sum_{i=1}^{K} w_i(t) \, g_i

    The network is updated with the weights from before this step's update (Algorithm 1 computes both
    gradients at :math:`w(t)`, then steps both). ``weights(J, losses)`` returns :math:`w(t)` and
    advances the state to :math:`w(t+1)`; the first call records :math:`f_i(0)`.

Which columns are W: the rows of J are the gradients with respect to all shared parameters; with
``last_layer_size=m`` the last m columns of J are taken as :math:`\nabla_W f_i` (in ``backward`` list the last
shared layer's parameters last in ``shared_params``). Default ``None``: all of J (as LibMTL).

Hyperparameters: α = 1.5 (paper, NYUv2; 0.12 on the paper's regression toy; LibMTL 1.5).
The w step: Adam with lr = 1e-4 by default (``optimizer="adam"``, ``lr=1e-4``; torch.optim.Adam's
arithmetic written out on Python floats, famo.ListAdam). Source: official
practice — no official code exists; LibMTL makes w a parameter of the model, so the model's optimiser
trains it (``LibMTL/config.py``: Adam, lr 1e-4, the defaults of its examples), and the widely used
reproduction of the paper's toy, brianlan/pytorch-grad-norm ``train.py``, steps w with the network's
Adam at lr 1e-4. The paper's own optimiser and rate for w were not re-read here. Use the network's
learning rate for ``lr`` when it differs. Adam's step (≈ lr per step whatever the gradient scale)
matters here: :math:`\partial L_{\mathrm{grad}} / \partial w_i = \pm \lVert \nabla_W f_i \rVert` scales with
the gradients, so a plain step (``optimizer="sgd"``) with a fixed lr overshoots to negative weights
(clipped to 0) whenever the gradients are
large — the former default (sgd, lr 0.025, no source) put some weights at exactly 0 on half the steps of
the ``mtl-regression`` toy with scales (1, 100). ``lr`` may be changed between steps (a schedule);
L_grad is an L1 loss, so constant steps make w oscillate around the balance point with an amplitude
∝ lr.

Degenerate inputs: all-zero J gives a zero gradient of the gradient loss (w unchanged) and d = 0; if
every loss is 0, every :math:`r_i = 1`. Initial losses :math:`f_i(0)` must be positive and later losses
non-negative (:math:`\tilde L_i = f_i / f_i(0)` and :math:`r_i^\alpha` need :math:`f_i \ge 0`; a negative loss
made :math:`r_i^\alpha` NaN and sign(NaN) = 0 silently froze :math:`w_i`): otherwise a ValueError names the
task. :math:`\lVert \nabla_W f_i \rVert` is the plain norm when certified, else computed
from rows scaled by powers of two in float64 (no under/overflow of the squares at any float32 scale,
``pcgrad.row_norms``); a norm that overflows float64 raises NonFiniteError (it used to reset w to 𝟙
silently).

    >>> gradnorm = GradNorm(alpha=1.5, lr=1e-4, last_layer_size=last.weight.numel() + last.bias.numel())
    >>> for batch in data:
    ...     optimizer.zero_grad()
    ...     gradnorm.backward(model.losses(batch), encoder_params + list(last.parameters()), head_params)
    ...     optimizer.step()

Deviations:
  D1. w has its own Adam (default) or plain gradient step on :math:`\nabla_w L_{\mathrm{grad}}` with its own ``lr``;
      LibMTL and brianlan/pytorch-grad-norm step it with the network's optimiser (the same Adam
      state as the network's parameters). Weights driven below 0 by a large step are clipped at 0
      before the renormalisation (the paper does not say; if every weight is clipped, w is reset to
      𝟙 — possible only with large plain steps).
  D2. LibMTL parametrises w = K·softmax(ŵ) (so Σw = K without renormalisation), measures
      :math:`G_i` on all shared parameters rather than the last shared layer, and uses equal weights
      during the first epoch with :math:`f_i(0)` the first epoch's mean loss; here w is the paper's
      direct parametrisation, :math:`f_i(0)` is the first loss seen, and W defaults to all of J unless
      ``last_layer_size`` is set.
  D3. The network gradient uses w(t), not w(t + 1) (Algorithm 1's order); LibMTL likewise.
  D4. Heads receive :math:`\sum_i w_i(t) \nabla f_i` (the paper back-propagates
      :math:`L = \sum_i w_i f_i` through the whole network); LibMTL gives them the unweighted task
      gradients.
  D5. :math:`\partial L_{\mathrm{grad}} / \partial w_i` is computed in closed form (the subgradient
      sign(0) = 0 at a kink, as autograd's abs); no autograd graph through J.
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
import numpy as np

from reference_impls.core.loss_weighting import StartBatch
from reference_impls.core.solvers import float_info, float_max, small_tensor
from reference_impls.gradient_manipulation.pcgrad import row_norms
from reference_impls.gradient_weighting.famo import ListAdam, _column_sum, _float64_array, list_adam_step_rows


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


    @classmethod
    def start_batch(cls, methods: Sequence["GradNorm"], optimizer=None) -> "GradNormBatch | None":
        """The runner's speed path (:class:`GradNormBatch`) for fresh instances with equal hyperparameters; None otherwise."""
        return GradNormBatch(methods) if GradNormBatch.applies(methods) else None


class GradNormBatch(StartBatch):
    """B fresh :class:`GradNorm` instances stepped as one (B, K) computation by the runner (see ``StartBatch``).

    Per start, the arithmetic of ``__call__`` (``compute_weights``) in the same order: the norms by the
    module's ``_row_norms`` on each start's Jacobian, sums left to right, Python's ``**`` for r_i^α, and
    :class:`~reference_impls.gradient_weighting.famo.ListAdam`'s operations element-wise in numpy.
    """

    method_class = GradNorm
    replicates = ("__call__", "weights", "aggregate", "compute_weights", "loss_grad_gradient", "update", "on_epoch_end")

    @classmethod
    def applies(cls, methods: Sequence[GradNorm]) -> bool:
        if not super().applies(methods) or any(m._w is not None for m in methods):
            return False  # fresh instances only (the runner's are)
        key = lambda m: (m.alpha, m.lr, m.last_layer_size, m.optimizer)  # noqa: E731
        return all(key(m) == key(methods[0]) for m in methods)

    def __init__(self, methods: Sequence[GradNorm]) -> None:
        self.methods = list(methods)
        first = self.methods[0]
        self.alpha, self.lr, self.cols, self.kind = first.alpha, first.lr, first.last_layer_size, first.optimizer
        self.w: np.ndarray | None = None  # (B, K) w(t + 1)
        self.f0: np.ndarray | None = None  # (B, K) f_i(0)
        self.G: np.ndarray | None = None  # (B, K) G_i at the last step
        self.opt: ListAdam | None = None  # step count and scalars; moments (B, K) below
        self.adam_m = self.adam_v = None

    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        B, K = F.shape
        f = _float64_array(F)  # (B, K) as Python floats (exact)
        low = f.min()
        bad = not math.isfinite(float(J.sum())) or not math.isfinite(float(f.sum())) or not low >= 0
        if self.w is None:
            bad = bad or not low > 0
        m = self.cols
        if bad or (m is not None and m > J.shape[2]):
            for method, J_b, F_b in zip(self.methods, J, F):
                method(J_b, F_b)  # the per-start error (non-finite, negative or first non-positive losses, bad last_layer_size)
        if self.w is None:
            self.f0 = f.copy()
            self.w = np.ones((B, K))  # w_i(0) = 1
            if self.kind == "adam":
                self.opt = ListAdam(0, lr=self.lr)
                self.adam_m, self.adam_v = np.zeros((B, K)), np.zeros((B, K))
        a = _batch_row_norms(J if m is None else J[:, :, J.shape[2] - m :])  # ||∇_W f_i||, (B, K)
        if not np.isfinite(a).all():
            for method, J_b, F_b in zip(self.methods, J, F):
                method(J_b, F_b)  # the per-start NonFiniteError
        L_tilde = f / self.f0  # L̃_i = f_i(t)/f_i(0), (B, K)
        mean = _column_sum(L_tilde) / K  # (B,)
        if (mean > 0).all():
            r = L_tilde / mean[:, None]  # r_i = L̃_i / mean_j L̃_j, (B, K)
        else:
            r = np.where((mean > 0)[:, None], L_tilde / np.where(mean > 0, mean, 1.0)[:, None], 1.0)  # r = 𝟙 where the mean is 0
        w_t = self.w  # w(t), this step's weights
        G = w_t * a  # G_i = w_i ||∇_W f_i||, (B, K)
        G_bar = _column_sum(G) / K  # (B,)
        r_alpha = np.array([ri**self.alpha for ri in r.ravel().tolist()]).reshape(B, K)  # Python's ** (libm pow), (B, K)
        gap = G - G_bar[:, None] * r_alpha  # G_i − [Ḡ r_i^α]_const
        grad = ((gap > 0).astype(np.float64) - (gap < 0)) * a  # ∂L_grad/∂w_i = sign(gap_i) ||∇_W f_i|| (sign(0) = 0)
        self.G = G
        if self.opt is not None:
            self.opt.lr = self.lr
            w, self.adam_m, self.adam_v = list_adam_step_rows(self.opt, self.adam_m, self.adam_v, w_t, grad)  # Adam on ∇_w L_grad
        else:
            w = w_t - self.lr * grad  # w ← w − lr ∇_w L_grad
        w = np.where(w > 0.0, w, 0.0)  # D1
        total = _column_sum(w)  # (B,)
        positive = total > 0
        if positive.all():
            self.w = w * (K / total)[:, None]  # renormalise Σ_i w_i = K
        else:
            self.w = np.where(positive[:, None], w * (K / np.where(positive, total, 1.0))[:, None], 1.0)  # 𝟙 where all w_i are 0
        return torch.from_numpy(w_t).to(J.dtype)

    def finish(self) -> None:
        if self.w is None:
            return
        for b, method in enumerate(self.methods):
            method._w, method._f0, method._G = self.w[b].tolist(), self.f0[b].tolist(), self.G[b].tolist()
            if self.opt is not None:
                opt = ListAdam(len(method._w), lr=self.lr)
                opt.t, opt.m, opt.v = self.opt.t, self.adam_m[b].tolist(), self.adam_v[b].tolist()
                method._opt = opt


def _batch_row_norms(W: Tensor) -> np.ndarray:
    """``_row_norms(W[b])`` for every b, (B, K) float64: one vector_norm over the last dimension (the same
    reduction per row as on W[b] alone), each row kept where it is certified, else ``_row_norms`` on that start."""
    if W.device.type != "cpu":
        return np.array([_row_norms(W_b) for W_b in W])
    a = torch.linalg.vector_norm(W, dim=2).to(torch.float64).numpy()  # ||W_bi|| in W's dtype, exactly as float64, (B, K)
    eps, tiny = float_info(W.dtype)
    certified = ((a >= math.sqrt(tiny / eps)) & (a < float_max(W.dtype))).all(axis=1)  # (B,), NaN fails
    for b in np.flatnonzero(~certified).tolist():
        a[b] = _row_norms(W[b])  # the rescaled norms of pcgrad.row_norms
    return a


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
