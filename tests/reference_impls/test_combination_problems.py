"""The model-combination toys and their shared tools: ``lowrank-regression``, ``merging-mlp``, ParameterLayout, fine_tune.

``lowrank-regression``'s generic point-problem facts (Jacobian vs central differences, the Pareto set
conv{Ŵ_k} is stationary and maps onto the front, points off it are not) run in test_problems.py; here the
designed structure that the low-rank models' capacity claims rely on is proven exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reference_impls.pareto_set.combination import ParameterLayout, fine_tune
from reference_impls.pareto_set.oracles import oracle_for
from reference_impls.problems import get_problem

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# ParameterLayout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layout_splits_the_network_exactly_as_the_problem_unflattens_it(seed):
    problem = get_problem("mtl-regression-set", num_starts=3)
    x = torch.randn(3, problem.n, generator=torch.Generator().manual_seed(seed), dtype=F64)  # (B, n)
    layout = ParameterLayout.of(problem)
    ours, theirs = layout.split(x), problem.unflatten(x)
    assert layout.names == ["W_enc", "b_enc", "W_heads", "b_heads"] and layout.matrices == [0, 2]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert torch.equal(layout.join(ours), x)
    assert torch.equal(layout.join([t[0] for t in ours]), x[0])  # one vector: (n,) <-> (*shape)


def test_layout_defaults_to_one_vector_and_rejects_bad_layouts():
    assert ParameterLayout.of(get_problem("biquad")).shapes == [(2,)]  # Problem.parameter_shapes default
    with pytest.raises(ValueError, match="no tensors"):
        ParameterLayout([])
    with pytest.raises(ValueError, match="repeated"):
        ParameterLayout([("a", (2,)), ("a", (3,))])
    with pytest.raises(ValueError, match="positive shape"):
        ParameterLayout([("a", (0, 2))])
    layout = ParameterLayout([("W", (2, 3)), ("b", (2,))])
    with pytest.raises(ValueError, match="last dimension 8"):
        layout.split(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="W has shape"):
        layout.join([torch.zeros(4, 3, 2), torch.zeros(4, 2)])

    class Wrong:
        id, n = "wrong", 5

        def parameter_shapes(self):
            return [("x", (4,))]

    with pytest.raises(ValueError, match="hold 4 numbers, the problem has n = 5"):
        ParameterLayout.of(Wrong())


# ---------------------------------------------------------------------------------------------
# lowrank-regression
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K,rank,data_seed", [(2, 1, 0), (2, 2, 1), (2, 3, 2), (3, 2, 0), (3, 3, 1), (4, 2, 2)])
def test_task_differences_have_exactly_the_designed_rank_and_singular_values(K, rank, data_seed):
    """σ_j(Ŵ_k − Ŵ_l) = |c_k[j] − c_l[j]| (U, V orthonormal), the rest vanish; Ŵ_k − W_0 has rank ρ too."""
    p = get_problem("lowrank-regression", K=K, task_rank=rank, data_seed=data_seed)
    W = p.task_optima.reshape(K, p.d_out, p.d_in)
    W0 = p.base.reshape(p.d_out, p.d_in)
    scale = float(torch.linalg.matrix_norm(W0, ord=2))
    for k in range(K):
        s0 = torch.linalg.svdvals(W[k] - W0)
        torch.testing.assert_close(s0[:rank], p.C[k].abs().sort(descending=True).values, rtol=1e-10, atol=0)
        assert (float(s0[rank:].max()) if s0.numel() > rank else 0.0) <= 1e-12 * scale
        for l in range(k + 1, K):
            s = torch.linalg.svdvals(W[k] - W[l])  # (min(d_out, d_in),)
            expected = (p.C[k] - p.C[l]).abs().sort(descending=True).values  # (ρ,)
            torch.testing.assert_close(s[:rank], expected, rtol=1e-10, atol=0)
            assert float(expected.min()) >= (1.0 / rank) / K - 1e-12  # m_j ≥ 1/ρ, levels at least m_j/K apart
            assert (float(s[rank:].max()) if s.numel() > rank else 0.0) <= 1e-12 * scale


@pytest.mark.parametrize("rank,seed", [(1, 0), (2, 1), (3, 2)])
def test_the_ls_map_is_the_base_plus_an_exactly_rank_rho_part(rank, seed):
    """W*(r) − W_0 = U diag(Σ μ_k c_k) Vᵀ: rank ρ at every r; the certified oracle gives it."""
    p = get_problem("lowrank-regression", K=3, task_rank=rank)
    g = torch.Generator().manual_seed(seed)
    r = torch._standard_gamma(torch.ones(6, 3, dtype=F64), generator=g)
    X, F = oracle_for(p, "ls")(r)  # (6, n), (6, K)
    mu = r / r.sum(1, keepdim=True)
    D = (X - p.base).reshape(6, p.d_out, p.d_in)
    expected = torch.einsum("oj,bj,ij->boi", p.U, mu @ p.C, p.V)  # U diag(Σ μ_k c_k) Vᵀ
    torch.testing.assert_close(D, expected, rtol=0, atol=1e-12)
    assert int(torch.linalg.matrix_rank(D[0], atol=1e-9)) == rank
    torch.testing.assert_close(F, p.losses(X))


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_the_closed_form_front_is_the_image_of_the_segment(noise):
    """Each front point is F(Ŵ_1 + t(Ŵ_2 − Ŵ_1)) for the t at which f_1 takes its value (f_1 rises strictly on the
    segment, from its minimum at Ŵ_1): f_2 there, evaluated on the data, agrees to 1e-10; the ends are exact."""
    p = get_problem("lowrank-regression", noise=noise)
    F = p.pareto_front(60)  # (60, 2)
    W1, W2 = p.task_optima
    torch.testing.assert_close(F[[0, -1]], p.losses(torch.stack([W1, W2])), rtol=1e-12, atol=1e-15)
    grid = torch.linspace(0, 1, 2001, dtype=F64)
    f1 = p.losses(W1 + grid[:, None] * (W2 - W1))[:, 0]  # (T,) direct evaluation, increasing
    assert bool((f1.diff() > 0).all())
    idx = torch.searchsorted(f1.contiguous(), F[1:-1, 0].contiguous()).clamp(1, len(grid) - 1)
    lo, hi = f1[idx - 1], f1[idx]
    t = grid[idx - 1] + (F[1:-1, 0] - lo) / (hi - lo) * (grid[idx] - grid[idx - 1])  # bracketed, then one secant
    for _ in range(3):  # Newton on the quadratic f_1(t) = F_1: exact to rounding
        x = (W1 + t[:, None] * (W2 - W1)).requires_grad_(True)
        g = torch.autograd.grad(p.losses(x)[:, 0].sum(), x)[0] @ (W2 - W1)  # df_1/dt, (M,)
        t = t - (p.losses(x.detach())[:, 0] - F[1:-1, 0]) / g
    direct = p.losses(W1 + t[:, None] * (W2 - W1))  # (M, 2)
    torch.testing.assert_close(direct[:, 1], F[1:-1, 1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(p.ideal_point(), torch.stack([F[:, 0].min(), F[:, 1].min()]), rtol=1e-12, atol=1e-15)


def test_noise_makes_the_fits_differ_from_the_planted_optima_and_the_oracle_stays_certified():
    p = get_problem("lowrank-regression", noise=0.1)
    W_star = p.base + torch.einsum("oj,kj,ij->koi", p.U, p.C, p.V).reshape(2, -1)
    assert float((p.task_optima - W_star).norm(dim=1).min()) > 1e-3
    X, _ = oracle_for(p, "ls")(torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=F64))
    torch.testing.assert_close(X[[0, 2]], p.task_optima)
    with pytest.raises(ValueError, match="task_rank"):
        get_problem("lowrank-regression", task_rank=9)
    with pytest.raises(ValueError, match="N >= d_in"):
        get_problem("lowrank-regression", N=4)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.3, 0.7), (0.5, 0.5)])
def test_fine_tune_reaches_the_closed_form_weighted_optimum(weights):
    """Adam on Σ w_k f_k of a convex quadratic lands next to Σ μ_k Ŵ_k (the closed form) from a random start:
    within 1 % of its norm (Adam with a constant step hovers: 0.2 % measured), the task optima being ≥ 50 % apart."""
    p = get_problem("lowrank-regression")
    x = fine_tune(p, p.initial_points(3, num=1)[0], torch.tensor(weights, dtype=F64), steps=3000, lr=2e-2)
    expected, _ = oracle_for(p, "ls")(torch.tensor([weights], dtype=F64))
    assert float((p.task_optima[0] - p.task_optima[1]).norm()) > 0.5 * float(expected[0].norm())
    assert float((x - expected[0]).norm()) < 1e-2 * float(expected[0].norm())
    with pytest.raises(ValueError, match="non-negative finite"):
        fine_tune(p, x, torch.tensor([1.0, -1.0], dtype=F64), steps=1, lr=1e-2)
    with pytest.raises(ValueError, match="non-negative finite"):
        fine_tune(p, x, torch.tensor([0.0, 0.0], dtype=F64), steps=1, lr=1e-2)


# ---------------------------------------------------------------------------------------------
# merging-mlp
# ---------------------------------------------------------------------------------------------


def _torch_network(problem, x):
    """The same network as an nn.Sequential (an independent forward pass)."""
    W1, b1, W2, b2, W3, b3 = ParameterLayout.of(problem).split(x)
    net = nn.Sequential(nn.Linear(problem.p, problem.hidden), nn.Tanh(), nn.Linear(problem.hidden, problem.hidden), nn.Tanh(), nn.Linear(problem.hidden, 1)).double()
    with torch.no_grad():
        for layer, (W, b) in zip([net[0], net[2], net[4]], [(W1, b1), (W2, b2), (W3, b3)]):
            layer.weight.copy_(W)
            layer.bias.copy_(b)
    return net


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_merging_mlp_losses_are_each_tasks_mse_of_the_network(data_seed):
    p = get_problem("merging-mlp", data_seed=data_seed)
    x = torch.cat([p.base[None], p.task_models, p.initial_points(0, num=2)])  # (5, n)
    F, F_test = p.losses(x), p.test_losses(x)
    for b in range(x.shape[0]):
        net = _torch_network(p, x[b])
        with torch.no_grad():
            for k in range(p.K):
                torch.testing.assert_close(F[b, k], ((net(p.X[k])[:, 0] - p.Y[k]) ** 2).mean(), rtol=1e-12, atol=0)
                torch.testing.assert_close(F_test[b, k], ((net(p.X_test[k])[:, 0] - p.Y_test[k]) ** 2).mean(), rtol=1e-12, atol=0)
                torch.testing.assert_close(p.predict(x[b], p.X[k]), net(p.X[k])[:, 0], rtol=1e-12, atol=1e-14)
    J = p.jacobian(x[:2])  # autograd through the batched pass
    h, e = 1e-6, torch.zeros(p.n, dtype=F64)
    for j in (0, 100, 368):
        e.zero_()
        e[j] = h
        torch.testing.assert_close(J[:, :, j], (p.losses(x[:2] + e) - p.losses(x[:2] - e)) / (2 * h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_task_models_specialise_and_task_arithmetic_is_dominated(data_seed):
    """Each θ_k beats θ_0 and the other task model on task k (train and test); task arithmetic θ_0 + λΣτ_k
    (λ ∈ {0.3, 0.5, 0.8, 1}) is strictly dominated by the reference front's equal-preference point:
    the interference the merging methods must overcome. Holds for data seeds 0–2 (3/3)."""
    p = get_problem("merging-mlp", data_seed=data_seed)
    F = p.losses(torch.cat([p.base[None], p.task_models]))  # (3, K): base, θ_1, θ_2
    F_test = p.test_losses(torch.cat([p.base[None], p.task_models]))
    for k in range(p.K):
        for G in (F, F_test):
            assert float(G[1 + k, k]) < 0.5 * float(G[0, k])  # fine-tuning halves the base's loss at least
            assert float(G[1 + k, k]) < 0.5 * float(G[2 - k, k])
    torch.testing.assert_close(p.ideal_point(), torch.diagonal(F[1:]))
    assert all(float(F[:, k].max()) < ref for k, ref in enumerate(p.hv_reference))
    _, Fr = p.reference_front(torch.tensor([[0.5, 0.5]], dtype=F64), steps=600, lr=1e-2)
    ta = p.losses(p.base + torch.tensor([0.3, 0.5, 0.8, 1.0], dtype=F64)[:, None] * p.task_vectors.sum(0))  # (4, K)
    assert bool((Fr[0] < ta).all())


def test_merging_mlp_is_deterministic_and_its_starts_follow_the_default_initialisation():
    a, b = get_problem("merging-mlp"), get_problem("merging-mlp", dtype=torch.float32)
    torch.testing.assert_close(b.task_models, a.task_models.float())
    assert b.losses(b.task_models).dtype == torch.float32
    x = a.initial_points(4, num=3)
    torch.testing.assert_close(x, a.initial_points(4, num=3))
    assert not torch.equal(x[0], x[1])
    bounds = [1 / math.sqrt(a.p)] * 2 + [1 / math.sqrt(a.hidden)] * 4  # U(±1/√fan_in) for W1, b1 | W2, b2, W3, b3
    many = a.initial_points(0, num=200)  # ≥ 200 draws per tensor: P(max < 0.9·bound) ≤ 0.9^200
    for t, bound in zip(ParameterLayout.of(a).split(many), bounds):
        assert 0.9 * bound < float(t.abs().max()) <= bound
        assert abs(float(t.pow(2).mean()) - bound**2 / 3) < 0.25 * bound**2 / 3  # the variance of U(±b): b²/3
    r = torch.tensor([[0.2, 0.8]], dtype=F64)
    X1, F1 = a.reference_front(r, steps=50)
    X2, F2 = a.reference_front(r, steps=50)
    assert torch.equal(X1, X2) and torch.equal(F1, F2)
    with pytest.raises(ValueError, match="negative"):
        a.reference_front(torch.tensor([[-0.2, 1.2]], dtype=F64))


def test_plots_of_merging_problems_show_the_reference_front_and_task_arithmetic():
    """`modl run ... --problem merging-mlp --plot`: with no true front, the plot shows the reference front's estimate,
    task arithmetic and the task models; every task-arithmetic point but λ = 0 and 1 is strictly dominated by a
    reference point (what the plot conveys). Problems with an analytic front show it instead."""
    from reference_impls.pareto_runner import reference_curves

    assert reference_curves(get_problem("biquad")) == {} and reference_curves(get_problem("lowrank-regression")) == {}
    p = get_problem("merging-mlp")
    curves = reference_curves(p, num=5)
    assert list(curves) == ["reference front (estimate)", "task arithmetic θ_0 + λΣτ_k", "task models"]
    R, TA = curves["reference front (estimate)"], curves["task arithmetic θ_0 + λΣτ_k"]  # (5, 2), (11, 2)
    for f in TA[1:-1]:
        assert bool((R < f).all(1).any()), f
    torch.testing.assert_close(curves["task models"], p.losses(p.task_models))
