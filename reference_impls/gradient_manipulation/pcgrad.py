r"""PCGrad — Projecting Conflicting Gradients ("gradient surgery").

Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020, arXiv 2001.06782. Official code: github.com/tianheyu927/PCGrad
(``PCGrad_tf.py``, TensorFlow).

Update rule:
    Algorithm 1 of the paper. Each task gradient :math:`g_i` (row :math:`i` of the Jacobian
    :math:`J`, :math:`K` tasks) is projected in turn on the normal plane of every other task
    gradient it conflicts with. The projections are on the ORIGINAL :math:`g_j`, visited for each
    :math:`i` in its own random order (``random_order=True``; the fixed order 1..K otherwise, D2);
    a zero :math:`g_j` is never a target (D4):

    .. math::

        g_i^{\mathrm{PC}} \leftarrow g_i, \qquad
        g_i^{\mathrm{PC}} \leftarrow g_i^{\mathrm{PC}} - \frac{\langle g_i^{\mathrm{PC}}, g_j \rangle}{\lVert g_j \rVert^2}\, g_j
        \quad \text{if } \langle g_i^{\mathrm{PC}}, g_j \rangle < 0, \qquad j \neq i

    The update is the sum (not the mean) of the projected gradients:

    .. math::

        d = \sum_{i=1}^{K} g_i^{\mathrm{PC}}

    Every projected gradient is a combination :math:`g_i^{\mathrm{PC}} = \sum_j C_{ij}\, g_j` of the
    original ones, and every inner product the algorithm needs is
    :math:`\langle g_i^{\mathrm{PC}}, g_j \rangle = (C M)_{ij}` with the Gramian :math:`M = J J^\top`.
    So the whole algorithm runs on K×K numbers (vectorised over :math:`i`), and the update is one
    weighted sum of rows at the end (D1):

    .. math::

        d = J^\top w, \qquad w_j = \sum_{i=1}^{K} C_{ij}

Hyperparameters: ``random_order`` = True (the paper's Algorithm 1); ``seed`` = 0 seeds the
``torch.Generator`` that draws the orders (``reset()`` re-seeds it).

Properties: for K = 2 with :math:`\langle g_1, g_2 \rangle < 0`,
:math:`\langle g_1^{\mathrm{PC}}, g_2 \rangle = \langle g_2^{\mathrm{PC}}, g_1 \rangle = 0` and
:math:`\langle d, g_i \rangle \ge 0` (the two-task setting of the paper's analysis); without conflict
:math:`d = \sum_i g_i`; for K = 2 PCGrad
equals UPGrad with preference (1, 1) and no normalisation. For K ≥ 3, d can conflict with a task
even when a common descent direction exists (tested counterexample).

Degenerate inputs: a zero :math:`g_j` is skipped as a projection target (⟨·, 0⟩ = 0 is never < 0); all-zero
J → d = 0; identical rows → d = K·g; opposite rows g, −g → d = 0; K = 1 → :math:`d = g_1`. Any scale of J
that its dtype can hold gives the same direction (D5); NaN/inf in J or an overflowing d: NonFiniteError.

Deviations:
    D1. Computed through the Gramian (coefficients :math:`C`, :math:`M`) instead of on n-dimensional
        vectors: same result up to rounding (tested against a direct implementation),
        :math:`O(K^2 n + K^3)` work.
    D2. The official TF code calls ``tf.random.shuffle(loss)`` and discards the result, so it
        projects in the fixed order 1..K; its loop also visits :math:`j = i` (a projection on
        :math:`g_i` itself, which acts only if :math:`\langle g_i^{\mathrm{PC}}, g_i \rangle < 0`,
        possible for K ≥ 3). ``random_order=False`` gives the fixed order 1..K without
        :math:`j = i`; the default (random orders) follows the paper.
    D3. The orders come from a seeded ``torch.Generator`` (reproducible), not from the global RNG.
    D4. LibMTL adds 1e-8 to :math:`\lVert g_j \rVert^2`; here zero-norm targets are skipped exactly
        instead.
    D5. From a Jacobian, :math:`M = J J^\top` is one product in J's dtype, kept when certified
        (finite, every :math:`M_{ii} \ge \mathrm{tiny}/\mathrm{eps}`: no square lost to underflow
        beyond :math:`\mathrm{eps}^2 M_{ii}`); otherwise (a zero, tiny or huge row) it is formed from
        rows scaled by powers of two and restored in float64 up to a common factor
        (``gramian_up_to_scale``, ``normalized_gramian``; :math:`C` does not change under
        :math:`M \to c^2 M`, and both paths round the same products), so float32 gradients at scales
        1e-23 or 1e+30 give the float64 direction to float32 precision; the plain :math:`J J^\top`
        underflows there (every row then looked like a zero row and the plain sum came back) or
        overflows. A :math:`d` that overflows the dtype raises NonFiniteError (certified from
        :math:`\sum_i |w_i|\, \lVert g_i \rVert` without a pass over :math:`d` when :math:`M` is the
        plain one). J is read twice, :math:`J J^\top` and :math:`w^\top J`, as in TorchJD.

Usage::

    >>> import torch
    >>> from reference_impls.gradient_manipulation.pcgrad import PCGrad
    >>> d = PCGrad()(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]))  # ≈ [0.5848, 3.8012, 3.8012]
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from reference_impls.core.aggregator import GramianWeighting, NonFiniteError, gram_product
from reference_impls.core.solvers import _INFO64, combine2, float_info, float_max, gramian2_entries, gramian2_rows, small_tensor


def scale_rows_by_powers_of_two(J: Tensor) -> tuple[Tensor, Tensor]:
    """(J̃, e): J̃_i = 2^{−e_i} J_i with max_j |J̃_ij| ∈ [½, 1) (e_i = 0 for a zero row), e (K,) int64.

    Exact (a power-of-two scaling only moves exponents), so products of the rows of J̃ neither
    underflow nor overflow whatever the scale of J (1e-23 or 1e+30 in float32, 1e-300 in float64).
    Raises NonFiniteError if J has a NaN or infinite entry (its row maximum is then not finite).
    """
    row_max = J.abs().amax(dim=1)  # max_j |J_ij|, (K,); NaN/inf propagate
    if not bool(torch.isfinite(row_max).all()):
        raise NonFiniteError("the Jacobian contains NaN or infinite entries")
    _, e = torch.frexp(row_max)  # row_max = m·2^e, m ∈ [½, 1); e = 0 for a zero row, (K,)
    e = e.to(torch.int64)
    half = torch.div(e, 2, rounding_mode="floor")  # two factors 2^{−⌊e/2⌋}, 2^{⌊e/2⌋−e}: each representable in J's dtype
    first = torch.pow(2.0, (-half).to(torch.float64)).to(J.dtype)  # (K,)
    second = torch.pow(2.0, (half - e).to(torch.float64)).to(J.dtype)  # (K,)
    return J * first[:, None] * second[:, None], e  # J̃, (K, n)


def normalized_gramian(J: Tensor) -> Tensor:
    """J Jᵀ / 4^{e_max} in float64 (K, K), with 2^{e_max} ≥ max |J| a power of two; no under/overflow.

    Rows are scaled by powers of two before the product (:func:`scale_rows_by_powers_of_two`), so
    M̃ = J̃ J̃ᵀ has entries of magnitude ≤ n in J's dtype; the scales are restored in float64
    relative to the largest row. Methods whose weights are invariant under M → c²M (PCGrad, GradVac)
    use it instead of J Jᵀ, which underflows to 0 in float32 at gradient scales ~1e-23 (so every row
    looked like a zero row) and overflows at ~1e+19.
    """
    J_scaled, e = scale_rows_by_powers_of_two(J)  # (K, n), (K,)
    M_scaled = (J_scaled @ J_scaled.T).to(torch.float64)  # J̃ J̃ᵀ, (K, K)
    s = torch.pow(2.0, (e - e.max()).to(torch.float64)).to(M_scaled.device)  # 2^{e_i − e_max} ∈ (0, 1], (K,)
    return M_scaled * s[:, None] * s[None, :]  # M_ij / 4^{e_max} = 2^{e_i − e_max} 2^{e_j − e_max} M̃_ij, (K, K)


def row_norms(J: Tensor) -> Tensor:
    """||J_i|| (K,) in float64 without under/overflow of the squares.

    Fast path: one ``vector_norm`` pass over J in its dtype, kept when every norm is finite and at
    least √(tiny/eps) (no square lost to underflow beyond eps²·||J_i||²); otherwise (a zero row, a
    tiny or huge row) the rows are scaled by powers of two first (:func:`scale_rows_by_powers_of_two`).
    """
    finfo = torch.finfo(J.dtype)
    norms = torch.linalg.vector_norm(J, dim=1)  # ||J_i|| in J's dtype, (K,)
    if bool(((norms >= math.sqrt(finfo.tiny / finfo.eps)) & (norms < finfo.max)).all()):  # NaN fails too
        return norms.to(torch.float64)
    J_scaled, e = scale_rows_by_powers_of_two(J)  # (K, n), (K,)
    norms_scaled = torch.linalg.vector_norm(J_scaled, dim=1).to(torch.float64)  # ||J̃_i|| ∈ [½, √n], (K,)
    return norms_scaled * torch.pow(2.0, e.to(torch.float64)).to(norms_scaled.device)  # ||J_i|| = 2^{e_i} ||J̃_i||


def gramian_up_to_scale(J: Tensor) -> tuple[Tensor, bool]:
    """(M, exact): M (K, K) float64 equal to c²·J Jᵀ for a power of two c > 0; exact says c = 1.

    Fast path (exact): M = J Jᵀ computed in J's dtype, the one K×n by n×K product every Gram-based
    method needs, kept when it is certified: every entry finite and every M_ii ≥ tiny/eps of the dtype.
    Then no partial sum overflowed and the products lost to underflow (≤ tiny·eps each) change M_ij by
    at most n·eps²·√(M_ii M_jj), far below the rounding error n·eps·√(M_ii M_jj) of any float product.
    Otherwise (a zero, tiny or huge row, NaN/inf) :func:`normalized_gramian` (rows scaled by powers of
    two; raises NonFiniteError for NaN/inf). Both paths round the same K×K float products (an exact
    power-of-two scaling moves only exponents), so the weights of a method invariant under M → c²M
    are the same on either path, bit for bit on the same BLAS kernel.
    """
    finfo = torch.finfo(J.dtype)
    M = gram_product(J).detach().to("cpu", torch.float64)  # (K, K): J Jᵀ rounded in J's dtype (blocked when very wide), widened
    Mn = M.numpy()  # the K×K checks in NumPy: per-call overhead, not arithmetic, is their cost
    if np.isfinite(Mn).all() and (np.diagonal(Mn) >= finfo.tiny / finfo.eps).all():
        return M, True
    return normalized_gramian(J), False


def combine_rows(w: Tensor, J: Tensor, M: Tensor | None, what: str) -> Tensor:
    """d = Jᵀ w (n,) in J's dtype; NonFiniteError "<what> overflows <dtype>" if d is not finite.

    With M the exact float64 Gramian J Jᵀ (not a rescaled one), |d_k| ≤ Σ_i |w_i| |J_ik| ≤ Σ_i |w_i| √M_ii
    certifies d without a pass over its n entries whenever that bound (with room for the rounding of
    M, of w to J's dtype and of the K-term sums) stays below the dtype's largest number.
    """
    d = w.to(J) @ J  # d = Jᵀ w, (n,)
    finfo = torch.finfo(J.dtype)
    if M is not None:
        Mn, wn = M.detach().to("cpu").numpy(), w.detach().to("cpu", torch.float64).numpy()  # (K, K), (K,)
        bound = float(np.abs(wn) @ np.sqrt(np.maximum(np.diagonal(Mn), 0.0)))  # Σ_i |w_i| ||g_i|| ≥ max_k |d_k|
        slack = 2.0 * (1.0 + J.shape[1] * finfo.eps) * (1.0 + (J.shape[0] + 1) * finfo.eps)
        if J.shape[1] * finfo.eps < 0.5 and bound * slack < finfo.max:
            return d
    if not bool(torch.isfinite(d.sum())):
        raise NonFiniteError(f"{what} overflows {J.dtype}; rescale the losses or use float64")
    return d


@functools.lru_cache(maxsize=64)
def _other_tasks(K: int) -> Tensor:
    """(K, K−1) int64: row i lists the tasks j ≠ i in increasing order (cached per K)."""
    return torch.arange(K - 1).expand(K, K - 1) + (torch.arange(K - 1)[None, :] >= torch.arange(K)[:, None])


def draw_orders(K: int, generator: torch.Generator | None, random_order: bool = True) -> Tensor:
    """(K, K−1) int64: row i lists the tasks j ≠ i in the order task i is projected on them."""
    others = _other_tasks(K)
    if not random_order or K <= 2:
        return others
    perms = torch.rand(K, K - 1, generator=generator).argsort(dim=1)  # an independent random order per task
    return torch.gather(others, 1, perms)


def pcgrad_coefficients(M: Tensor, orders: Tensor) -> Tensor:
    """C (K, K) with g_i^PC = Σ_j C_ij g_j, from the Gramian M (K, K) and the orders (K, K−1).

    Runs in NumPy float64 (K×K numbers: per-call overhead, not arithmetic, is the cost here).
    """
    Mn = M.detach().to("cpu", torch.float64).numpy()  # (K, K)
    order = orders.numpy()
    K = Mn.shape[0]
    C = np.eye(K)  # (K, K): g_i^PC = g_i
    rows = np.arange(K)
    diag = np.diag(Mn)  # (K,): ||g_j||²
    for t in range(K - 1):
        j = order[:, t]  # (K,): the target of each i at step t
        inner = np.einsum("ik,ik->i", C, Mn[j])  # (K,): ⟨g_i^PC, g_j⟩ = Σ_k C_ik M_kj
        norm2 = diag[j]  # (K,): ||g_j||²
        conflict = (inner < 0) & (norm2 > 0)
        C[rows, j] -= np.where(conflict, inner / np.where(norm2 > 0, norm2, 1.0), 0.0)  # g_i^PC ← g_i^PC − ⟨g_i^PC, g_j⟩/||g_j||² g_j
    return torch.from_numpy(C).to(dtype=M.dtype, device=M.device)


def exact_gramian2(J: Tensor) -> tuple[float, float, float, float] | None:
    """The entries of J Jᵀ (Python floats) for a (2, n) CPU Jacobian when :func:`gramian_up_to_scale` would keep
    the plain product (finite, every M_ii ≥ tiny/eps of J's dtype), else None: the same M, without its
    float64 copy and NumPy checks (per-call overhead at K = 2)."""
    if J.device.type != "cpu":
        return None
    entries = gramian2_entries(J @ J.T)  # None: not a finite 2×2 CPU tensor
    if entries is None:
        return None
    eps, tiny = float_info(J.dtype)
    return entries if entries[0] >= tiny / eps and entries[3] >= tiny / eps else None


class ScaleFreeGramianWeighting(GramianWeighting):
    """A Gramian weighting whose weights are invariant under M → c²M (PCGrad, GradVac): it may use J Jᵀ
    when that is certified and the normalised Gramian otherwise (D5), and forms d with one pass over J.

    K = 2: subclasses give ``_weights2`` (the weights from the four float64 entries of M, Python floats,
    the same operations as their NumPy K×K code), used when M is the certified plain product."""

    update_label = "the update d"  # named in the error when d overflows

    def _weights2(self, m11: float, m12: float, m21: float, m22: float) -> tuple[float, float] | None:
        return None

    def _state2(self) -> object:
        """What :meth:`_weights2` changes (GradVac: φ̂), to restore when :meth:`direction2` declines after calling it."""
        return None

    def _restore2(self, state: object) -> None:
        pass

    def direction2(self, rows, losses) -> list[float] | None:
        """The runner's K = 2 protocol (solvers.py): :meth:`aggregate`'s K = 2 path on Python floats (the plain M = J Jᵀ
        when certified, :meth:`_weights2`, d = Jᵀw and its overflow certificate), the general path's bits; None (no
        state changed) where the general path must decide."""
        entries = gramian2_rows(rows)  # M as torch's J @ J.T rounds it; None: not two finite rows of two floats
        eps, tiny = _INFO64
        if entries is None or not (entries[0] >= tiny / eps and entries[3] >= tiny / eps):
            return None  # exact_gramian2 declines: the normalised Gramian (general path)
        state = self._state2()
        w = self._weights2(*entries)
        if w is None:
            return None
        d = combine2(w[0], w[1], rows[0], rows[1])  # d = Jᵀw
        bound = abs(w[0]) * math.sqrt(entries[0]) + abs(w[1]) * math.sqrt(entries[3])  # combine_rows' certificate
        if bound * (2.0 * (1.0 + 2 * eps) * (1.0 + 3 * eps)) < float_max(torch.float64) or math.isfinite(sum(d)):
            return d
        self._restore2(state)
        return None  # d overflows: the general path raises

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        if J.shape[0] == 2:
            entries = exact_gramian2(J)
            w = None if entries is None else self._weights2(*entries)
            if w is not None:
                return small_tensor(w, J.dtype)
        M, _ = gramian_up_to_scale(J)  # (K, K) float64: J Jᵀ when certified, else the normalised Gramian
        return self.compute_weights_from_gramian(M, losses).to(J)

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        if J.shape[0] == 2:
            entries = exact_gramian2(J)
            w = None if entries is None else self._weights2(*entries)
            if w is not None:
                d = small_tensor(w, J.dtype) @ J  # d = Jᵀ w, (n,)
                # combine_rows' certificate: |d_k| ≤ Σ_i |w_i| ||g_i|| below the dtype's largest number
                eps, _ = float_info(J.dtype)
                bound = abs(w[0]) * math.sqrt(entries[0]) + abs(w[1]) * math.sqrt(entries[3])
                slack = 2.0 * (1.0 + J.shape[1] * eps) * (1.0 + 3 * eps)
                if J.shape[1] * eps < 0.5 and bound * slack < float_max(J.dtype):
                    return d
                if not bool(torch.isfinite(d.sum())):
                    raise NonFiniteError(f"{self.name}: {self.update_label} overflows {J.dtype}; rescale the losses or use float64")
                return d
        M, exact = gramian_up_to_scale(J)  # (K, K) float64, = J Jᵀ when exact
        w = self.compute_weights_from_gramian(M, losses)  # (K,) float64
        return combine_rows(w, J, M if exact else None, f"{self.name}: {self.update_label}")  # d = Jᵀ w, (n,)


class PCGrad(ScaleFreeGramianWeighting):
    """d = Σ_i g_i^PC, each g_i projected on the normal plane of every g_j it conflicts with."""

    name = "pcgrad"
    update_label = "the update d = Σ_i g_i^PC"

    def __init__(self, random_order: bool = True, seed: int = 0) -> None:
        self.random_order = bool(random_order)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        self._generator.manual_seed(self.seed)

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:
        K = M.shape[0]
        if K == 2 and M.dtype == torch.float64:
            entries = gramian2_entries(M)
            if entries is not None:
                return small_tensor(self._weights2(*entries), torch.float64)
        orders = draw_orders(K, self._generator, self.random_order)  # (K, K−1)
        C = pcgrad_coefficients(M, orders)  # (K, K), computed in float64
        return C.sum(dim=0)  # d = Σ_i g_i^PC = Σ_j (Σ_i C_ij) g_j

    def _weights2(self, m11: float, m12: float, m21: float, m22: float) -> tuple[float, float]:
        """pcgrad_coefficients for K = 2 on Python floats (one order, no draw; the same operations, same bits)."""
        c21 = -(m12 / m11) if m12 < 0.0 and m11 > 0.0 else 0.0  # g_2^PC = g_2 − ⟨g_2, g_1⟩/||g_1||² g_1 on conflict
        c12 = -(m21 / m22) if m21 < 0.0 and m22 > 0.0 else 0.0  # g_1^PC = g_1 − ⟨g_1, g_2⟩/||g_2||² g_2
        return 1.0 + c21, c12 + 1.0  # w_j = Σ_i C_ij

