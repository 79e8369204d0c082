"""Hypervolume core (reference_impls/core/hypervolume.py): exact HV, its gradient, non-dominated sorting, UHV.

Gradients are checked against central finite differences of an exact hypervolume (``metrics.hypervolume``)
on random sets in general position (5 seeds each, all must pass), plus exact identities that do not use
finite differences: Euler's relation for the degree-K homogeneous HV, the column sums (∂HV/∂r_k is the
(K−1)-D hypervolume of the projection), the one-point closed form, and scale covariance. The uncrowded
terms are checked against independent brute force: local upper bounds by enumerating their definition,
the box distance by enumerating the grid cells of the non-dominated region, the inner distance by the
2-D staircase's segments, and the UHV gradient against finite differences of the UHV.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from reference_impls import metrics
from reference_impls.core.hypervolume import (
    contributing_mask,
    hypervolume,
    hypervolume_gradient,
    local_upper_bounds,
    nondominated_fronts,
    uncrowded_distance,
    uncrowded_hypervolume,
    uncrowded_hypervolume_gradient,
)

F64 = torch.float64
EPS = float(torch.finfo(F64).eps)


# ----------------------------------------------------------------------------------------------
# Helpers (independent of the implementation)
# ----------------------------------------------------------------------------------------------


def _random_set(seed: int, P: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered around the unit sphere's positive part (many non-dominated, some dominated), plus
    two points outside the box; continuous draws, so in general position with probability one."""
    rng = np.random.default_rng(seed)
    D = rng.random((P, K)) + 0.05
    D = D / np.linalg.norm(D, axis=1, keepdims=True) * (1.0 + 0.4 * rng.random((P, 1)))  # radius 1..1.4
    r = np.full(K, 1.2)
    out = rng.random((2, K)) * 0.5
    out[0, 0] = 1.3  # beyond r in objective 1
    out[1, -1] = 1.25
    return np.concatenate([D, out]), r


def _central_differences(F: np.ndarray, r: np.ndarray, h: float) -> np.ndarray:
    FD = np.zeros_like(F)
    for p, k in itertools.product(range(F.shape[0]), range(F.shape[1])):
        Fp, Fm = F.copy(), F.copy()
        Fp[p, k] += h
        Fm[p, k] -= h
        FD[p, k] = (metrics.hypervolume(Fp, r) - metrics.hypervolume(Fm, r)) / (2 * h)
    return FD


def _brute_hypervolume(F: np.ndarray, r: np.ndarray) -> float:
    """Exact HV by coordinate compression: sum the cells of the grid spanned by all coordinates that some
    point dominates (O(P^K·P), independent of metrics.hypervolume)."""
    F = F[(F < r).all(axis=1)]
    if F.shape[0] == 0:
        return 0.0
    K = F.shape[1]
    edges = [np.unique(np.append(F[:, k], r[k])) for k in range(K)]
    total = 0.0
    for cell in itertools.product(*[range(len(e) - 1) for e in edges]):
        low = np.array([edges[k][c] for k, c in enumerate(cell)])
        if (F <= low).all(axis=1).any():
            total += float(np.prod([edges[k][c + 1] - edges[k][c] for k, c in enumerate(cell)]))
    return total


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-12, atol: float = 0.0) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=rtol, atol=atol)


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a <= b).all() and (a < b).any())


# ----------------------------------------------------------------------------------------------
# Non-dominated sorting
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_nondominated_fronts_match_brute_force(seed, K):
    # Integer-valued points (many ties and exact duplicates). The definition, checked point by point:
    # no point of front i is dominated by a point of front ≥ i, and every point of front i > 0 is
    # dominated by a point of front i − 1; the fronts partition the indices.
    rng = np.random.default_rng(seed)
    F = rng.integers(0, 4, size=(40, K)).astype(np.float64)
    fronts = [f.tolist() for f in nondominated_fronts(torch.tensor(F))]
    assert sorted(itertools.chain(*fronts)) == list(range(40))
    level = {p: i for i, f in enumerate(fronts) for p in f}
    for p in range(40):
        assert not any(_dominates(F[t], F[p]) for t in range(40) if level[t] >= level[p]), (p, level[p])
        if level[p] > 0:
            assert any(_dominates(F[t], F[p]) for t in fronts[level[p] - 1]), (p, level[p])


def test_duplicates_share_a_front():
    F = torch.tensor([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0]], dtype=F64)
    fronts = nondominated_fronts(F)
    assert [f.tolist() for f in fronts] == [[0, 1, 2], [3]]
    assert fronts[0].dtype == torch.long


# ----------------------------------------------------------------------------------------------
# Hypervolume value
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("K", [1, 2, 3])
def test_hypervolume_matches_cell_enumeration(seed, K):
    # Includes ties (values on a coarse grid), duplicates and points outside / on the box boundary.
    rng = np.random.default_rng(seed)
    F = np.round(rng.random((12, K)) * 1.2, 1)
    r = np.full(K, 1.0)
    hv = hypervolume(torch.tensor(F), torch.tensor(r))
    assert hv == pytest.approx(_brute_hypervolume(F, r), rel=1e-12, abs=0.0)
    assert hv == pytest.approx(metrics.hypervolume(F, r), rel=1e-12, abs=0.0)


# ----------------------------------------------------------------------------------------------
# Exact gradient
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("K", [2, 3])
def test_gradient_matches_central_differences(seed, K):
    # Per point p: |G_p − FD_p| ≤ 1e-6·||G_p|| + 1e3·eps·HV/h (the rounding of a difference quotient of
    # HV values). HV is piecewise polynomial with kinks only where coordinates cross; h = 1e-7 is far below
    # the smallest coordinate gap of these sets (asserted), so the central difference is exact up to rounding.
    F, r = _random_set(seed, 25 if K == 2 else 18, K)
    h = 1e-7
    gaps = np.abs(F[:, None, :] - F[None, :, :])[~np.eye(F.shape[0], dtype=bool)]
    assert gaps.min() > 10 * h and np.abs(F - r).min() > 10 * h
    G = hypervolume_gradient(torch.tensor(F), torch.tensor(r)).numpy()
    FD = _central_differences(F, r, h)
    hv = metrics.hypervolume(F, r)
    tol = 1e-6 * np.linalg.norm(G, axis=1) + 1e3 * EPS * hv / h
    err = np.linalg.norm(G - FD, axis=1)
    assert (err <= tol).all(), (err / np.maximum(tol, 1e-300)).max()
    assert (G <= 0).all()
    # the non-zero rows are exactly the non-dominated points inside the box
    inside_nd = metrics.nondominated(F) & (F < r).all(axis=1)
    assert np.array_equal(np.abs(G).sum(axis=1) > 0, inside_nd)
    assert np.array_equal(contributing_mask(torch.tensor(F), torch.tensor(r)).numpy(), inside_nd)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("K", [2, 3])
def test_euler_relation_and_column_sums(seed, K):
    # HV(r + c(F − r); r) = c^K·HV, so by Euler Σ_{p,k} G_pk (F_pk − r_k) = K·HV; and HV(F + c e_k; r + c e_k)
    # is constant, so Σ_p G_pk = −∂HV/∂r_k = −HV_{K−1} of the projection onto the other objectives.
    F, r = _random_set(seed, 60, K)
    G = hypervolume_gradient(torch.tensor(F), torch.tensor(r)).numpy()
    hv = metrics.hypervolume(F, r)
    assert (G * (F - r)).sum() == pytest.approx(K * hv, rel=1e-12)
    inside = (F < r).all(axis=1)
    for k in range(K):
        rest = [j for j in range(K) if j != k]
        face = metrics.hypervolume(F[inside][:, rest], r[rest])
        assert G[:, k].sum() == pytest.approx(-face, rel=1e-12)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_one_point_closed_form(K):
    f = torch.tensor([[0.3, -1.0, 2.0][:K]], dtype=F64)
    r = torch.tensor([1.0, 0.5, 4.0][:K], dtype=F64)
    G = hypervolume_gradient(f, r)[0]
    for k in range(K):
        expected = -float(torch.prod(torch.cat([r[:k] - f[0, :k], r[k + 1 :] - f[0, k + 1 :]])))
        assert float(G[k]) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
def test_gradient_scale_covariance(K, scale):
    # G(cF, cr) = c^{K−1}·G(F, r) (HV is homogeneous of degree K), to a few eps relative per row.
    F, r = _random_set(7, 30, K)
    G = hypervolume_gradient(torch.tensor(F), torch.tensor(r))
    Gs = hypervolume_gradient(torch.tensor(F * scale), torch.tensor(r * scale)) / scale ** (K - 1)
    err = torch.linalg.vector_norm(Gs - G, dim=1)
    assert bool((err <= 64 * EPS * torch.linalg.vector_norm(G, dim=1)).all())


def test_duplicates_first_index_carries_the_group():
    # Two copies of a front point: the first gets the gradient of the de-duplicated set, the copy a zero
    # row, so the group's rows sum to the (two-sided) derivative of translating both copies together.
    F = np.array([[0.2, 0.9, 0.5], [0.6, 0.3, 0.4], [0.6, 0.3, 0.4], [0.9, 0.5, 0.1]])
    r = np.ones(3)
    G = hypervolume_gradient(torch.tensor(F), torch.tensor(r)).numpy()
    assert np.array_equal(G[2], np.zeros(3)) and (G[1] < 0).all()
    h = 1e-7
    for k in range(3):
        Fp, Fm = F.copy(), F.copy()
        Fp[1:3, k] += h
        Fm[1:3, k] -= h
        fd = (metrics.hypervolume(Fp, r) - metrics.hypervolume(Fm, r)) / (2 * h)
        assert G[1:3, k].sum() == pytest.approx(fd, rel=1e-6)


def test_coordinate_tie_in_3d_is_the_derivative_for_increasing_f():
    # a and b share f_1 (both non-dominated): HV has a kink in a_1; G[a, 0] is the one-sided derivative
    # from above (t_1 ≤ s_1 counts), checked by a forward difference; the backward one differs.
    F = np.array([[0.5, 0.2, 0.7], [0.5, 0.6, 0.3], [0.2, 0.8, 0.8]])
    r = np.ones(3)
    G = hypervolume_gradient(torch.tensor(F), torch.tensor(r)).numpy()
    h = 1e-7
    for p in (0, 1):
        Fp, Fm = F.copy(), F.copy()
        Fp[p, 0] += h
        Fm[p, 0] -= h
        hv = metrics.hypervolume(F, r)
        forward = (metrics.hypervolume(Fp, r) - hv) / h
        backward = (hv - metrics.hypervolume(Fm, r)) / h
        assert G[p, 0] == pytest.approx(forward, rel=1e-6)
        assert abs(forward - backward) > 0.01  # the kink is real


def test_boundary_outside_and_dominated_points_get_zero_rows():
    F = torch.tensor(
        [
            [0.2, 0.5],  # front
            [0.5, 0.2],  # front
            [1.0, 0.1],  # on the boundary f_1 = r_1
            [1.5, 0.0],  # outside
            [0.5, 0.5],  # dominated
            [0.2, 0.7],  # weakly dominated (shares f_1 with the first point)
        ],
        dtype=F64,
    )
    G = hypervolume_gradient(F, torch.ones(2, dtype=F64))
    assert bool((G[2:] == 0).all())
    # closed form of the 2-D staircase: (0.2, 0.5) → (−(1 − 0.5), −(0.5 − 0.2)), (0.5, 0.2) → (−(0.5 − 0.2), −(1 − 0.5))
    _assert_close(G[:2], torch.tensor([[-0.5, -0.3], [-0.3, -0.5]], dtype=F64), rtol=1e-15, atol=0)


def test_all_outside_gives_zero_gradient_and_volume():
    F = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    r = torch.ones(3, dtype=F64)
    assert hypervolume(F, r) == 0.0
    assert bool((hypervolume_gradient(F, r) == 0).all())


def test_single_objective():
    F = torch.tensor([[0.4], [0.1], [0.1], [2.0]], dtype=F64)
    assert hypervolume(F, [1.0]) == pytest.approx(0.9)
    _assert_close(hypervolume_gradient(F, [1.0]), torch.tensor([[0.0], [-1.0], [0.0], [0.0]], dtype=F64))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="K=4"):
        hypervolume_gradient(torch.rand(5, 4, dtype=F64), torch.ones(4))
    with pytest.raises(ValueError, match="K=4"):
        hypervolume(torch.rand(5, 4, dtype=F64), torch.ones(4))
    F = torch.rand(5, 2, dtype=F64)
    F[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        hypervolume_gradient(F, torch.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        nondominated_fronts(F)
    with pytest.raises(ValueError, match="NaN"):
        hypervolume_gradient(torch.rand(5, 2), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="reference point"):
        hypervolume_gradient(torch.rand(5, 2), torch.ones(3))


@pytest.mark.parametrize("K", [2, 3])
def test_float32_input(K):
    # float32 in -> float32 out: the float64 gradient of the same float32 points, rounded once (≤ eps/2 per entry).
    F, r = _random_set(3, 40, K)
    F32, r32 = torch.tensor(F, dtype=torch.float32), torch.tensor(r, dtype=torch.float32)
    G32 = hypervolume_gradient(F32, r32)
    G64 = hypervolume_gradient(F32.double(), r32.double())
    assert G32.dtype == torch.float32
    err = torch.linalg.vector_norm(G32.double() - G64, dim=1)
    assert bool((err <= 4 * torch.finfo(torch.float32).eps * torch.linalg.vector_norm(G64, dim=1)).all())


def test_three_hundred_points_in_3d():
    # P = 300 in 3-D (batched, O(P² log P)): the Euler relation still holds to rounding.
    g = torch.Generator().manual_seed(0)
    D = torch.rand(300, 3, generator=g, dtype=F64) + 0.01
    F = D / torch.linalg.vector_norm(D, dim=1, keepdim=True)
    r = torch.full((3,), 1.1, dtype=F64)
    G = hypervolume_gradient(F, r)
    assert float((G * (F - r)).sum()) == pytest.approx(3 * hypervolume(F, r), rel=1e-11)


# ----------------------------------------------------------------------------------------------
# Local upper bounds and the uncrowded distance
# ----------------------------------------------------------------------------------------------


def _front_set(seed: int, M: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """M mutually non-dominated points on a sphere patch inside the box r = 1.2 (general position)."""
    rng = np.random.default_rng(seed)
    D = rng.random((M, K)) + 0.05
    return D / np.linalg.norm(D, axis=1, keepdims=True), np.full(K, 1.2)


def _brute_lubs(C: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Every u with u_j ∈ {c_j} ∪ {r_j} that no point strictly dominates and whose every coordinate has a
    defining point (n_j = u_j, n_i < u_i for i ≠ j) or equals r_j — the definition, enumerated."""
    K = C.shape[1]
    out = []
    for u in itertools.product(*[np.append(C[:, j], r[j]) for j in range(K)]):
        u = np.array(u)
        if (C < u).all(axis=1).any():
            continue
        ok = True
        for j in range(K):
            others = [i for i in range(K) if i != j]
            defined = (C[:, j] == u[j]) & (C[:, others] < u[others]).all(axis=1)
            ok &= bool(u[j] == r[j] or defined.any())
        if ok:
            out.append(u)
    return np.unique(np.array(out), axis=0)


def _brute_box_distance(C: np.ndarray, r: np.ndarray, p: np.ndarray) -> float:
    """Distance of p to the closure of the part of the box [lo, r] that no point of C dominates, by
    enumerating the cells of the grid spanned by the coordinates (a cell is free iff no c ≤ its low corner)."""
    K = C.shape[1]
    lo = min(C.min(), p.min()) - 1.0
    edges = [np.unique(np.concatenate([[lo], C[:, k], [r[k]]])) for k in range(K)]
    best = np.inf
    for cell in itertools.product(*[range(len(e) - 1) for e in edges]):
        a = np.array([edges[k][c] for k, c in enumerate(cell)])
        b = np.array([edges[k][c + 1] for k, c in enumerate(cell)])
        if (C <= a).all(axis=1).any():
            continue
        best = min(best, float(np.linalg.norm(np.maximum(np.maximum(a - p, p - b), 0.0))))
    return best


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-300), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("K", [2, 3])
def test_local_upper_bounds_match_their_definition(seed, K):
    C, r = _front_set(seed, 9 if K == 3 else 12, K)
    U, owner = local_upper_bounds(torch.tensor(C), torch.tensor(r))
    U = U.numpy()
    assert np.array_equal(np.unique(U, axis=0), _brute_lubs(C, r))
    # owners: coordinate j of U is coordinate j of its owner row (or r_j for −1)
    own = owner.numpy()
    expected = np.where(own >= 0, C[np.maximum(own, 0), np.arange(K)], r)
    assert np.array_equal(U, expected)
    if K == 3:
        # |U(N)| = 2|N| + 1 for 3 objectives in general position (Dächert & Klamroth, J. Glob. Optim. 2015)
        assert len(U) == 2 * len(C) + 1


@pytest.mark.parametrize("K", [2, 3])
def test_local_upper_bounds_with_shared_coordinates(K):
    # Integer points (many shared coordinates; 30 seeds, all must pass): the bounds still match the definition.
    for seed in range(30):
        rng = np.random.default_rng(seed)
        F = rng.integers(0, 5, size=(10, K)).astype(np.float64)
        r = np.full(K, 5.0)
        C = F[contributing_mask(torch.tensor(F), torch.tensor(r)).numpy()]
        U, _ = local_upper_bounds(torch.tensor(C), torch.tensor(r))
        assert np.array_equal(np.unique(U.numpy(), axis=0), _brute_lubs(C, r)), seed


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("K", [2, 3])
def test_box_distance_is_the_distance_to_the_non_dominated_part_of_the_box(seed, K):
    # boundary="box": ud(p) = min_u ||max(p − u, 0)|| equals the exact distance to the closure of the
    # non-dominated part of the box (brute force over grid cells), for dominated points and for points
    # outside the box.
    rng = np.random.default_rng(100 + seed)
    C, r = _front_set(seed, 7, K)
    Q = np.concatenate([C[rng.integers(0, 7, 6)] + rng.random((6, K)) * 0.4, rng.random((3, K)) * 0.3 + r - 0.1])
    F = np.concatenate([C, Q])
    ud = uncrowded_distance(torch.tensor(F), torch.tensor(r), boundary="box").numpy()
    assert (ud[:7] == 0).all()
    for i, p in enumerate(Q):
        assert ud[7 + i] == pytest.approx(_brute_box_distance(C, r, p), rel=1e-12, abs=1e-15), i


@pytest.mark.parametrize("seed", range(4))
def test_inner_distance_is_the_distance_to_the_2d_staircase(seed):
    # boundary="inner" (the paper's code), K = 2: for dominated points, the distance to the staircase
    # polyline from the first to the last front point (outer segments to the box edges excluded).
    rng = np.random.default_rng(200 + seed)
    C, r = _front_set(seed, 6, 2)
    C = C[np.argsort(C[:, 0])]
    Q = C[rng.integers(0, 6, 10)] + rng.random((10, 2)) * 0.3
    Q = Q[(Q < r).all(axis=1)]
    ud = uncrowded_distance(torch.tensor(np.concatenate([C, Q])), torch.tensor(r)).numpy()[6:]
    segments = []
    for a, b in zip(C[:-1], C[1:]):
        corner = np.array([b[0], a[1]])
        segments += [(a, corner), (corner, b)]
    for i, p in enumerate(Q):
        brute = min(_segment_distance(p, a, b) for a, b in segments)
        assert ud[i] == pytest.approx(brute, rel=1e-12, abs=1e-15), i


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("K", [2, 3])
def test_box_distance_never_exceeds_the_inner_distance(seed, K):
    # The inner target set lies in the closure of the box's non-dominated part, so ud_box ≤ ud_inner.
    F, r = _random_set(seed, 40, K)
    inner = uncrowded_distance(torch.tensor(F), torch.tensor(r)).numpy()
    box = uncrowded_distance(torch.tensor(F), torch.tensor(r), boundary="box").numpy()
    assert (box <= inner * (1 + 1e-15)).all() and (box[inner > 0] > 0).all()


def test_uncrowded_closed_forms():
    r = torch.ones(2, dtype=F64)
    # one front point s = (0.5, 0.5) and a dominated p = (0.7, 0.9): ud = ||(0.2, 0.4)||,
    # UHV = 0.25 − (1/2)(0.2² + 0.4²) = 0.15, ∂UHV/∂p = −(2/2)(0.2, 0.4)
    F = torch.tensor([[0.5, 0.5], [0.7, 0.9]], dtype=F64)
    assert uncrowded_hypervolume(F, r) == pytest.approx(0.15, rel=1e-14)
    _assert_close(uncrowded_distance(F, r), torch.tensor([0.0, 0.2**2 + 0.4**2], dtype=F64).sqrt())
    G = uncrowded_hypervolume_gradient(F, r)
    _assert_close(G, torch.tensor([[-0.5, -0.5], [-0.2, -0.4]], dtype=F64), rtol=1e-14, atol=0)
    # no point inside the box: ud = ||max(f − r, 0)||, UHV = −(1/P) Σ ud^K
    F = torch.tensor([[1.5, 0.5], [2.0, 2.0]], dtype=F64)
    assert uncrowded_hypervolume(F, r) == pytest.approx(-(0.25 + 2.0) / 2, rel=1e-14)
    # K = 3, one front point and a dominated point: exponent 3, factor K·ud^{K−2}
    F = torch.tensor([[0.5, 0.5, 0.5], [0.6, 0.7, 0.5]], dtype=F64)
    ud = (0.1**2 + 0.2**2) ** 0.5
    assert uncrowded_hypervolume(F, torch.ones(3, dtype=F64)) == pytest.approx(0.125 - ud**3 / 2, rel=1e-14)
    G = uncrowded_hypervolume_gradient(F, torch.ones(3, dtype=F64))
    _assert_close(G[1], -(3 / 2) * ud * torch.tensor([0.1, 0.2, 0.0], dtype=F64), rtol=1e-13, atol=0)
    # inner vs box for a point outside the box to the right of a two-point front: the inner distance
    # runs to the inner corner (0.6, 0.5), the box distance to the box edge f_1 = 1
    F = torch.tensor([[0.2, 0.5], [0.6, 0.3], [1.5, 0.1]], dtype=F64)
    assert float(uncrowded_distance(F, r)[2]) == pytest.approx(0.9)
    assert float(uncrowded_distance(F, r, boundary="box")[2]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("K", [2, 3])
def test_uhv_equals_hv_exactly_when_every_point_contributes(seed, K):
    C, r = _front_set(seed, 10, K)
    assert uncrowded_hypervolume(torch.tensor(C), torch.tensor(r)) == hypervolume(torch.tensor(C), torch.tensor(r))
    F, r = _random_set(seed, 30, K)  # has dominated and outside points
    assert uncrowded_hypervolume(torch.tensor(F), torch.tensor(r)) < hypervolume(torch.tensor(F), torch.tensor(r))


# ----------------------------------------------------------------------------------------------
# UHV gradient against finite differences
# ----------------------------------------------------------------------------------------------


def _uhv_differences(F: np.ndarray, r: np.ndarray, h: float, boundary: str) -> np.ndarray:
    FD = np.zeros_like(F)
    for p, k in itertools.product(range(F.shape[0]), range(F.shape[1])):
        Fp, Fm = F.copy(), F.copy()
        Fp[p, k] += h
        Fm[p, k] -= h
        up = uncrowded_hypervolume(torch.tensor(Fp), torch.tensor(r), boundary=boundary)
        down = uncrowded_hypervolume(torch.tensor(Fm), torch.tensor(r), boundary=boundary)
        FD[p, k] = (up - down) / (2 * h)
    return FD


@pytest.mark.parametrize("boundary", ["inner", "box"])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("K", [2, 3])
def test_uhv_gradient_matches_central_differences(K, seed, boundary):
    # Sets with dominated points and points outside the box (5 seeds, all must pass). The paper's gradient
    # (exact=False) equals the finite differences on every non-contributing row and the HV gradient on the
    # front; exact=True equals them on every row. ud^K is smooth off ties of the nearest corner, so the
    # central difference with h = 1e-7 is exact to O(h²) + rounding; per-row tolerance 1e-6·||FD_p|| + 1e3·eps·|UHV|/h.
    F, r = _random_set(seed, 16 if K == 2 else 12, K)
    h = 1e-7
    FD = _uhv_differences(F, r, h, boundary)
    Ft, rt = torch.tensor(F), torch.tensor(r)
    tol = 1e-6 * np.linalg.norm(FD, axis=1) + 1e3 * EPS * (1 + abs(uncrowded_hypervolume(Ft, rt))) / h
    exact = uncrowded_hypervolume_gradient(Ft, rt, boundary=boundary, exact=True).numpy()
    assert (np.linalg.norm(exact - FD, axis=1) <= tol).all()
    paper = uncrowded_hypervolume_gradient(Ft, rt, boundary=boundary).numpy()
    front = contributing_mask(Ft, rt).numpy()
    assert (np.linalg.norm(paper - FD, axis=1)[~front] <= tol[~front]).all()
    assert np.array_equal(paper[front], hypervolume_gradient(Ft, rt).numpy()[front])
    assert (np.abs(paper[~front]).sum(axis=1) > 0).all()  # every non-contributing point is pulled
    if boundary == "inner":  # every inner corner moves with front points: the extra terms are really there
        assert not np.array_equal(paper, exact)


def test_uhv_degenerate_inputs():
    r = torch.ones(2, dtype=F64)
    # P = 1: inside, UHV = HV = Π(r − f); outside, UHV = −||max(f − r, 0)||^K
    assert uncrowded_hypervolume(torch.tensor([[0.2, 0.5]], dtype=F64), r) == pytest.approx(0.4)
    assert uncrowded_hypervolume(torch.tensor([[1.3, 1.4]], dtype=F64), r) == pytest.approx(-(0.09 + 0.16))
    # duplicates: the copy has ud = 0 and a zero row
    F = torch.tensor([[0.2, 0.5], [0.2, 0.5], [0.6, 0.3]], dtype=F64)
    assert float(uncrowded_distance(F, r)[1]) == 0.0
    assert bool((uncrowded_hypervolume_gradient(F, r)[1] == 0).all())
    # K = 1: HV = r − min f, ud = f − min f for the others
    F = torch.tensor([[0.4], [0.1], [1.5]], dtype=F64)
    assert uncrowded_hypervolume(F, [1.0]) == pytest.approx(0.9 - (0.3 + 1.4) / 3)
    _assert_close(uncrowded_hypervolume_gradient(F, [1.0]), torch.tensor([[-1 / 3], [-1.0], [-1 / 3]], dtype=F64))
    # the empty set: no volume, no penalty, empty gradient; fronts: none
    E = torch.zeros(0, 2, dtype=F64)
    assert uncrowded_hypervolume(E, r) == 0.0 and hypervolume(E, r) == 0.0
    assert uncrowded_hypervolume_gradient(E, r).shape == (0, 2) and nondominated_fronts(E) == []
    # errors
    with pytest.raises(ValueError, match="K=4"):
        uncrowded_hypervolume_gradient(torch.rand(3, 4, dtype=F64), torch.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        uncrowded_distance(torch.tensor([[0.1, float("nan")]]), r)
    with pytest.raises(ValueError, match="boundary"):
        uncrowded_distance(F, [1.0], boundary="outer")


@pytest.mark.parametrize("K", [2, 3])
def test_uhv_float32_and_scale(K):
    # float32 in -> float32 out (the float64 result rounded once); G(cF, cr) = c^{K−1} G(F, r) for c = 1e±6, 1e±12
    # (ud^K and the HV gradient are homogeneous of degrees K and K − 1).
    F, r = _random_set(5, 30, K)
    F32, r32 = torch.tensor(F, dtype=torch.float32), torch.tensor(r, dtype=torch.float32)
    G32 = uncrowded_hypervolume_gradient(F32, r32)
    G64 = uncrowded_hypervolume_gradient(F32.double(), r32.double())
    assert G32.dtype == torch.float32
    assert bool((torch.linalg.vector_norm(G32.double() - G64, dim=1) <= 4 * 1.2e-7 * torch.linalg.vector_norm(G64, dim=1)).all())
    G = uncrowded_hypervolume_gradient(torch.tensor(F), torch.tensor(r))
    for c in (1e-12, 1e-6, 1e6, 1e12):
        Gs = uncrowded_hypervolume_gradient(torch.tensor(F * c), torch.tensor(r * c)) / c ** (K - 1)
        assert bool((torch.linalg.vector_norm(Gs - G, dim=1) <= 1e-13 * torch.linalg.vector_norm(G, dim=1)).all())
