"""``gram_product`` / ``gramian``: J Jᵀ of a short, very wide J in column blocks (3 ≤ K ≤ 10, n ≥ 2^19) is the
Gramian, to the rounding of J's dtype, with the tail block and any memory layout; NaN anywhere is reported."""

from __future__ import annotations

import pytest
import torch

import reference_impls.core.aggregator as aggregator_module
from reference_impls.core.aggregator import NonFiniteError, gram_product, gramian

WIDE = aggregator_module.GRAM_BLOCKED_MIN_N + 77  # a partial tail block after 32 full ones


def _relative_error(M: torch.Tensor, J: torch.Tensor) -> float:
    """max_ij |M_ij − ⟨g_i, g_j⟩| / (||g_i|| ||g_j||), against the float64 Gramian (per pair of tasks)."""
    J64 = J.double()
    exact = J64 @ J64.T  # (K, K)
    norms = exact.diagonal().sqrt()  # ||g_i||, (K,)
    return float(((M.double() - exact).abs() / (norms[:, None] * norms[None, :])).max())


@pytest.mark.parametrize("K", [3, 8, 10])
def test_blocked_gramian_is_the_gramian_in_float64(K):
    """float64, rows of scales 10^-3..10^3: each entry within 1e-13 of ||g_i|| ||g_j|| (the blocked sum has
    ~1e-15; dropping the 77-column tail would err by ~1e-4, a wrong block stride by O(1))."""
    gen = torch.Generator().manual_seed(K)
    J = torch.randn(K, WIDE, generator=gen, dtype=torch.float64) * torch.logspace(-3, 3, K, dtype=torch.float64)[:, None]
    assert _relative_error(gram_product(J), J) <= 1e-13


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocked_gramian_float32_is_accurate(seed):
    """Regression (issue 8, MGDA on Gaussian K = 8, n = 10^6 was 1.01x TorchJD, 1.18x its floor): float32 J with
    K = 8 and n = 2^19 + 77, tasks sharing a component: every entry within 1e-5 of ||g_i|| ||g_j|| of the float64
    Gramian (3/3 seeds; blocked: ~2e-7; torch's J @ J.T with MKL on this shape: ~3e-5, 21 ms against 9 ms
    blocked at n = 10^6, one thread)."""
    gen = torch.Generator().manual_seed(seed)
    shared = torch.randn(WIDE, generator=gen)  # (n,)
    J = torch.randn(8, WIDE, generator=gen) + shared  # (K, n), positive mean correlation: large ⟨g_i, g_j⟩
    assert _relative_error(gramian(J), J) <= 1e-5


def test_blocked_gramian_of_a_transposed_jacobian():
    """J given as the transpose of an (n, K) tensor (column stride 1 along K): the same Gramian."""
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(WIDE, 5, generator=gen, dtype=torch.float64)  # (n, K)
    J = X.T  # (K, n), not contiguous
    assert not J.is_contiguous()
    assert _relative_error(gram_product(J), J) <= 1e-13


@pytest.mark.parametrize("column", [3, WIDE - 5])  # in the first block, in the tail
def test_blocked_gramian_reports_nan(column):
    J = torch.ones(4, WIDE)
    J[2, column] = float("nan")
    with pytest.raises(NonFiniteError):
        gramian(J)


def test_other_shapes_keep_the_plain_product():
    """Outside 3 ≤ K ≤ 10 with n ≥ 2^19 the Gramian is torch's J @ J.T, bit for bit (the K = 2 float paths rely on it)."""
    gen = torch.Generator().manual_seed(7)
    for K, n in [(2, WIDE), (11, WIDE), (8, 1000), (32, 5000)]:
        J = torch.randn(K, n, generator=gen)
        assert torch.equal(gram_product(J), J @ J.T)


@pytest.mark.parametrize("seed", range(3))
def test_pcgrad_gramian_is_the_blocked_product_too(seed):
    """Regression (issue 8, PCGrad on Gaussian K = 8, n = 10^6 was 1.04-1.09x TorchJD: its Gramian, shared with
    GradVac, used torch's J @ J.T): the same bound as :func:`gramian` on the same inputs (3/3 seeds), the exact path."""
    from reference_impls.gradient_manipulation.pcgrad import gramian_up_to_scale

    gen = torch.Generator().manual_seed(seed)
    shared = torch.randn(WIDE, generator=gen)  # (n,)
    J = torch.randn(8, WIDE, generator=gen) + shared  # (K, n)
    M, exact = gramian_up_to_scale(J)  # (K, K) float64
    assert exact and _relative_error(M, J) <= 1e-5
