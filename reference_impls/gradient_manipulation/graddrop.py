r"""GradDrop: Gradient Sign Dropout.

Paper: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai, D. Anguelov, "Just Pick a
Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020, arXiv 2010.06808.
Official code: TensorFlow lingvo ``lingvo/core/graddrop.py`` (read); LibMTL ``weighting/GradDrop.py``.

Update rule:
    Paper Sec. 3, Eq. 1 and Algorithm 1, on the gradients of the K losses :math:`f_i` with respect to
    one shared layer's activations :math:`A` (shape (B, ...), batch first). The signed gradient
    :math:`\nabla_i` of task :math:`i` is summed over the batch, and its sign purity :math:`P`
    (elementwise, Eq. 1; :math:`P = 1/2` where every :math:`\nabla_i` is zero, D1) sets the
    probability of keeping the positive sign at each coordinate:

    .. math::

        \nabla_i = \sum_{b=1}^{B} \operatorname{sign}(A_b) \odot \nabla_{A_b} f_i, \qquad
        P = \frac{1}{2} \left( 1 + \frac{\sum_i \nabla_i}{\sum_i \lvert \nabla_i \rvert} \right)

    With one uniform draw :math:`U \sim \mathcal{U}(0, 1)` per coordinate (shared by the tasks and
    the batch), each task keeps its gradient where its sign is the one drawn, and the output sent
    down the network is the masked sum, with leak :math:`\ell_i` (``leak``, 0 by default: the
    paper's setting) letting a fraction of a task's gradient pass unmasked:

    .. math::

        M_i = \mathbb{1}[P > U]\, \mathbb{1}[\nabla_i > 0] + \mathbb{1}[P < U]\, \mathbb{1}[\nabla_i < 0]

    .. math::

        \mathrm{out}_b = \sum_{i=1}^{K} \left( \ell_i + (1 - \ell_i)\, M_i \right) \odot \nabla_{A_b} f_i

    So at each coordinate the tasks with a positive :math:`\nabla_i` are all kept with probability
    :math:`P` and those with a negative one with probability :math:`1 - P`; with :math:`\ell = 0` the
    kept :math:`\nabla_i` share one sign. In the Jacobian interface (``GradDrop()(J)``, D5) the rows :math:`g_i` of :math:`J`
    stand for :math:`\nabla_{A} f_i` with no batch and :math:`\operatorname{sign}(A) = 1` (or the
    given ``activations_sign`` :math:`s`, then :math:`\nabla_i = s \odot g_i`), and the update is
    :math:`d = \sum_i (\ell_i + (1 - \ell_i) M_i) \odot g_i`.

Two ways to use it:

* ``GradDrop()(J)`` — the aggregator interface on a Jacobian J (K, n): the rows of J play the role
  of the signed gradients :math:`\nabla_i`, i.e. sign(A) = 1 and no batch dimension (the rows are the
  :math:`\nabla_A f_i` themselves). Pass ``activations_sign`` (n,) to use
  :math:`\nabla_i = \operatorname{sign}(A) \odot g_i` for the mask.
* On activations, as in the paper: :meth:`transform` takes the per-task activation gradients
  (K, B, ...) and the activations A (B, ...); :meth:`attach` registers a tensor hook on the shared
  representation Z so that a single ``sum(losses).backward()`` sends the GradDrop output into the
  encoder while the heads receive their plain gradients::

      Z = encoder(x)                                  # shared activations, (B, h)
      losses = [loss_fn(head(Z), y_i) for ...]         # K scalars
      handle = graddrop.attach(losses, Z)             # K backward passes to ∂f_i/∂Z, then a hook on Z
      sum(losses).backward()                          # heads: Σ_i ∇f_i; encoder: GradDrop(∂f_i/∂Z)
      handle.remove()

  (``backward(..., representation=Z)`` of the base class is for weightings and refuses GradDrop.)

Hyperparameters: leak ℓ = 0 (paper, lingvo, LibMTL): one number for every loss, or one per loss
(``leak=(ℓ1, ..., ℓK)``), as lingvo's ``SetLosses([(loss, leak_ratio), ...])``, whose docstring
suggests a leak of 1 for a main task in transfer learning (its gradient passes unchanged) and 0 for the
others; the masks are drawn from all K gradients either way. ``seed`` seeds the torch.Generator
that draws U (:meth:`reset` re-seeds).

Degenerate inputs: where :math:`\sum_i \lvert \nabla_i \rvert = 0` (every :math:`\nabla_i` is zero
there) P is defined as ½ and the output is 0; where all :math:`\nabla_i` share a sign P ∈ {0, 1} and the output is the plain sum there. The formula is
scale-free (P depends only on ratios), so huge and tiny scales are handled exactly.

Deviations:
  D1. P is computed exactly, P = ½ where :math:`\sum_i \lvert \nabla_i \rvert = 0`; LibMTL divides
      by :math:`\sum_i \lvert \nabla_i \rvert + 10^{-7}` and lingvo computes
      :math:`\tfrac{1}{2} + \sum_i \nabla_i / (2 \sum_i \lvert \nabla_i \rvert + 10^{-7})`, which biases
      P towards ½ when the activation gradients are smaller than ~1e-7.
  D2. lingvo keeps coordinates with P ≥ U for the positive sign (P > U here; equal with
      probability 0) and keeps zero gradients either way (they contribute 0 anyway).
  D3. lingvo rescales the output by :math:`\lVert \mathrm{out} \rVert / \lVert \sum_i \nabla_A f_i \rVert`
      by default (``keep_gradnorm_constant``) and offers a sigmoid keep-probability and a scale;
      the paper's Eq. 1 (linear, unscaled) is implemented and the output is not rescaled, as in
      LibMTL.
  D4. lingvo's sign(A) (``use_input_sign_only``) is :math:`A / \lvert A \rvert`, replaced by
      :math:`A / \lvert 1 + A \rvert \approx A` where :math:`\lvert A \rvert \le 10^{-7}` (nearly 0);
      here torch.sign(A) (0 only at A = 0).
  D5. In the Jacobian interface (no activations) the per-parameter gradients stand in for the
      activation gradients with sign(A) = 1; this is GradDrop's mask rule applied to parameter
      gradients, not the paper's setting.
  D6. LibMTL takes a single leak for all losses; lingvo (and ``leak=(...)`` here) one per loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import Aggregator, NonFiniteError, _as_loss_list
from reference_impls.core.solvers import _NUMPY_DTYPES, small_tensor

_SMALL_N = 64  # two rows of at most this many entries: _kept_sum runs in NumPy (per-call overhead)


class GradDrop(Aggregator):
    name = "graddrop"
    stateful = True  # the random stream U
    scans_jacobian = False  # _kept_sum checks its column sums, which are non-finite whenever J is

    def __init__(
        self, leak: float | Sequence[float] = 0.0, seed: int = 0, activations_sign: Tensor | None = None
    ) -> None:
        leaks = [float(leak)] if isinstance(leak, (int, float)) else [float(v) for v in leak]
        if not leaks or not all(0.0 <= v <= 1.0 for v in leaks):
            raise ValueError(f"graddrop: leak must lie in [0, 1] (one number, or one per loss), got {leak}")
        self.leak: float | tuple[float, ...] = leaks[0] if isinstance(leak, (int, float)) else tuple(leaks)
        self.seed = int(seed)
        self.activations_sign = activations_sign
        self.reset()

    def reset(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    # ------------------------------------------------------------------------------------------

    def leaks(self, K: int) -> Tensor | None:
        """The per-loss leaks ℓ_i (K,) float64, or None for a single leak (``self.leak`` a number)."""
        if isinstance(self.leak, float):
            return None
        if len(self.leak) != K:
            raise ValueError(f"graddrop: {len(self.leak)} leaks given for {K} losses")
        return torch.tensor(self.leak, dtype=torch.float64)

    def sign_purity(self, signed: Tensor) -> Tensor:
        """P = ½(1 + Σ_i ∇_i / Σ_i |∇_i|) for signed gradients (K, ...); ½ where Σ_i|∇_i| = 0."""
        total = signed.sum(0)  # Σ_i ∇_i, (...)
        total_abs = signed.abs().sum(0)  # Σ_i |∇_i|, (...)
        nonzero = total_abs > 0
        ratio = torch.where(nonzero, total / torch.where(nonzero, total_abs, 1.0), 0.0)  # (...)
        return 0.5 * (1.0 + ratio)  # Eq. 1, (...)

    def masks(self, signed: Tensor) -> Tensor:
        """The keep masks M_i (K, ...) for signed gradients ∇_i (K, ...), drawing U from the generator."""
        P = self.sign_purity(signed)  # (...)
        U = torch.rand(P.shape, generator=self._generator, dtype=torch.float64).to(P)  # U ~ Unif(0, 1), (...)
        keep_positive = (P > U) & (signed > 0)  # 1[P > U]·1[∇_i > 0], (K, ...)
        keep_negative = (P < U) & (signed < 0)  # 1[P < U]·1[∇_i < 0], (K, ...)
        return (keep_positive | keep_negative).to(signed.dtype)  # M_i, (K, ...)

    def transform(self, grads: Tensor, activations: Tensor | None = None) -> Tensor:
        """GradDrop of per-task activation gradients ``grads`` (K, B, ...) given the activations A (B, ...).

        Returns Σ_i (ℓ + (1 − ℓ) M_i) ⊙ ∂f_i/∂A, shape (B, ...). With ``activations=None`` the
        gradients are taken as already signed and summed over the batch: shape (K, ...) → (...).
        """
        if not torch.isfinite(grads).all():
            raise NonFiniteError("the activation gradients contain NaN or infinite entries")
        if activations is None:
            signed = grads  # ∇_i (K, ...)
            M = self.masks(signed)  # (K, ...)
        else:
            if grads.shape[1:] != activations.shape:
                raise ValueError(
                    f"graddrop: gradients of shape {tuple(grads.shape)} do not match activations {tuple(activations.shape)}"
                )
            signed = (torch.sign(activations.detach()) * grads).sum(1)  # ∇_i = Σ_batch sign(A) ⊙ ∇_A f_i, (K, ...)
            M = self.masks(signed).unsqueeze(1)  # same mask for every batch element, (K, 1, ...)
        leak = self.leaks(grads.shape[0])
        if leak is None:
            return ((self.leak + (1.0 - self.leak) * M) * grads).sum(0)  # Σ_i (ℓ + (1 − ℓ)M_i) ⊙ ∇_A f_i
        leak = leak.to(grads).reshape(-1, *([1] * (grads.ndim - 1)))  # ℓ_i, (K, 1, ...)
        return ((leak + (1.0 - leak) * M) * grads).sum(0)  # Σ_i (ℓ_i + (1 − ℓ_i) M_i) ⊙ ∇_A f_i

    def _kept_sum(self, signed: Tensor, row_weights: Tensor | None = None) -> Tensor:
        """Σ_i c_i M_i ⊙ ∇_i for signed gradients (K, n) (c_i = ``row_weights``, 1 by default), no (K, n) mask.

        M_i keeps, per coordinate, either every positive or every negative ∇_i, so the masked sum
        is 1[P > U]·Σ_i max(∇_i, 0) + 1[P < U]·Σ_i min(∇_i, 0). With S = Σ_i ∇_i, A = Σ_i |∇_i| and
        V = 2U − 1: P > U ⇔ S > V·A and P < U ⇔ S < V·A (no division; where A = 0 nothing is kept,
        as every ∇_i is 0 there). Equal to (masks(∇) * ∇).sum(0) up to rounding at P = U. Weights c_i
        (per-loss leaks) scale the kept contributions, not P: Σ_i c_i max(∇_i, 0) etc.
        """
        if row_weights is None and signed.shape[0] == 2 and signed.shape[1] <= _SMALL_N and signed.device.type == "cpu":
            if signed.dtype in _NUMPY_DTYPES and not signed.requires_grad:
                return self._kept_sum2(signed)
        positive = signed.clamp(min=0.0).sum(0)  # Σ_i max(∇_i, 0), (n,)
        negative = signed.clamp(max=0.0).sum(0)  # Σ_i min(∇_i, 0), (n,)
        # A NaN/inf entry of J reaches these sums (clamp keeps NaN); confirm on J before blaming it.
        if not bool(torch.isfinite(positive.sum() + negative.sum())) and not bool(torch.isfinite(signed).all()):
            raise NonFiniteError("the Jacobian contains NaN or infinite entries")
        S = positive + negative  # Σ_i ∇_i, (n,)
        # U ~ Unif(0, 1), drawn in float64 so that a seed gives the same masks in every dtype, (n,)
        VA = torch.rand(S.shape, generator=self._generator, dtype=torch.float64).to(S)
        VA.mul_(2.0).sub_(1.0).mul_(positive - negative)  # V·A = (2U − 1)·Σ_i|∇_i|, (n,)
        if row_weights is not None:
            c = row_weights.to(signed)[:, None]  # (K, 1)
            positive = (c * signed.clamp(min=0.0)).sum(0)  # Σ_i c_i max(∇_i, 0), (n,)
            negative = (c * signed.clamp(max=0.0)).sum(0)  # Σ_i c_i min(∇_i, 0), (n,)
        return positive * (S > VA) + negative * (S < VA)  # 1[P > U]·pos + 1[P < U]·neg, (n,)

    def _kept_sum2(self, signed: Tensor) -> Tensor:
        """:meth:`_kept_sum` for two rows and a small n in NumPy: the same elementwise IEEE operations in the
        same dtype (a two-row sum has one order) and the same draw of U, so the same result; a dozen torch
        calls on tiny tensors cost more than the arithmetic (the toy problems: n = 2)."""
        if signed.dtype == torch.float64 and signed.shape[1] <= 16:  # the same on Python floats (NumPy calls cost µs)
            (a, b) = signed.tolist()
            pos = [max(x, 0.0) + max(y, 0.0) for x, y in zip(a, b)]  # Σ_i max(∇_i, 0) (NaN propagates, as in NumPy)
            neg = [min(x, 0.0) + min(y, 0.0) for x, y in zip(a, b)]  # Σ_i min(∇_i, 0)
            if not math.isfinite(sum(pos) + sum(neg)) and not all(math.isfinite(v) for v in a + b):
                raise NonFiniteError("the Jacobian contains NaN or infinite entries")
            U = torch.rand(len(a), generator=self._generator, dtype=torch.float64).tolist()  # U ~ Unif(0, 1)
            out = []
            for p_k, n_k, u in zip(pos, neg, U):
                s_k, va = p_k + n_k, (u * 2.0 - 1.0) * (p_k - n_k)  # S, V·A
                out.append(p_k * (1.0 if s_k > va else 0.0) + n_k * (1.0 if s_k < va else 0.0))
            return small_tensor(out, torch.float64)
        G = signed.numpy()  # (2, n)
        positive = np.maximum(G[0], 0.0) + np.maximum(G[1], 0.0)  # Σ_i max(∇_i, 0), (n,)
        negative = np.minimum(G[0], 0.0) + np.minimum(G[1], 0.0)  # Σ_i min(∇_i, 0), (n,)
        if not np.isfinite(positive.sum() + negative.sum()) and not np.isfinite(G).all():
            raise NonFiniteError("the Jacobian contains NaN or infinite entries")
        S = positive + negative  # Σ_i ∇_i, (n,)
        U = torch.rand(S.shape, generator=self._generator, dtype=torch.float64).numpy().astype(G.dtype)  # U ~ Unif(0, 1)
        VA = (U * 2.0 - 1.0) * (positive - negative)  # V·A = (2U − 1)·Σ_i|∇_i|, (n,)
        return torch.from_numpy(positive * (S > VA) + negative * (S < VA))  # 1[P > U]·pos + 1[P < U]·neg, (n,)

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (core/solvers.py): :meth:`_kept_sum2`'s Python-float path on ``J.tolist()``
        (leak 0, no activation signs: d = the kept sum), the same operations and the same draw of U, the general
        path's bits; None (no draw made) where the general path must decide."""
        if self.activations_sign is not None or not isinstance(self.leak, float) or self.leak != 0.0:
            return None
        if len(rows) != 2 or not rows[0] or type(rows[0][0]) is not float or len(rows[0]) > 16:
            return None
        a, b = rows
        pos = [max(x, 0.0) + max(y, 0.0) for x, y in zip(a, b)]  # Σ_i max(∇_i, 0)
        neg = [min(x, 0.0) + min(y, 0.0) for x, y in zip(a, b)]  # Σ_i min(∇_i, 0)
        if not math.isfinite(sum(pos) + sum(neg)):
            return None  # NaN/inf (the general path raises) or an overflowing sum: the general path decides
        U = torch.rand(len(a), generator=self._generator, dtype=torch.float64).tolist()  # U ~ Unif(0, 1)
        out = []
        for p_k, n_k, u in zip(pos, neg, U):
            s_k, va = p_k + n_k, (u * 2.0 - 1.0) * (p_k - n_k)  # S, V·A
            out.append(p_k * (1.0 if s_k > va else 0.0) + n_k * (1.0 if s_k < va else 0.0))  # 1[P > U]·pos + 1[P < U]·neg
        return out

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        leak = self.leaks(J.shape[0])  # (K,) or None
        keep = None if leak is None else 1.0 - leak  # 1 − ℓ_i, (K,)
        if self.activations_sign is None:
            kept = self._kept_sum(J, keep)  # rows of J = ∇_i (sign(A) = 1), Σ_i (1 − ℓ_i) M_i ⊙ ∇_i, (n,)
        else:
            s = torch.sign(torch.as_tensor(self.activations_sign).to(J).reshape(-1))  # sign(A), (n,)
            if s.numel() != J.shape[1]:
                raise ValueError(f"graddrop: activations_sign has {s.numel()} entries, the Jacobian {J.shape[1]} columns")
            # Masks come from ∇_i = sign(A) ⊙ J_i; Σ_i M_i ⊙ J_i = sign(A) ⊙ Σ_i M_i ⊙ ∇_i (sign² = 1, and
            # M_i = 0 where sign(A) = 0).
            kept = s * self._kept_sum(s * J, keep)  # (n,)
        if leak is not None:
            return leak.to(J) @ J + kept  # Σ_i (ℓ_i + (1 − ℓ_i)M_i) ⊙ J_i, (n,)
        if self.leak == 0.0:
            return kept
        return self.leak * J.sum(0) + (1.0 - self.leak) * kept  # Σ_i (ℓ + (1 − ℓ)M_i) ⊙ J_i, (n,)

    def attach(self, losses: Sequence[Tensor] | Tensor, representation: Tensor):
        """Compute ∂f_i/∂Z for each task and hook Z so that its incoming gradient becomes the GradDrop output.

        Call ``sum(losses).backward()`` (or the weighted total of your choice for the heads) next; the
        encoder then receives GradDrop's gradient. Returns the hook handle (remove it after use).
        """
        losses = _as_loss_list(losses)
        Z = representation
        rows = [torch.autograd.grad(f, Z, retain_graph=True, allow_unused=True)[0] for f in losses]  # ∂f_i/∂Z
        grads = torch.stack([torch.zeros_like(Z) if g is None else g for g in rows])  # (K, B, ...)
        new_grad = self.transform(grads, Z.detach())  # (B, ...)
        return Z.register_hook(lambda _incoming: new_grad.to(_incoming.dtype))
