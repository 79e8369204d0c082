"""Pareto Merging (id ``pareto-merging``, record ``yomo``): preference-aware merging of task vectors.

Claims (issue 14; seeded runs, figures measured under default BLAS, threads = 1):

* merging-mlp (a pretrained tanh MLP and two models fine-tuned from it; 100 steps), seeds 0, 1, 2
  (also measured on seeds 3, 4: 5/5 pass every assertion; thresholds and figures in each test):
  - the merged models' losses follow the preference: on an 11-point grid r = (t, 1 − t), f_1
    strictly decreases and f_2 strictly increases with t;
  - the learned front beats fixed task arithmetic: its hypervolume exceeds that of task arithmetic
    θ_0 + λ Σ τ_k (λ ∈ {0, 0.05, ..., 1}) and, by ≥ 2 %, of preference-weighted task arithmetic
    θ_0 + c Σ μ_k τ_k (the best c ∈ {0.5, 1, 1.5, 2}); every task-arithmetic point is dominated by a
    merged model. The weaker claim that holds for preference-weighted TA: at c = 1 it interpolates
    the task models, so near the ends (t ≤ 0.2, t ≥ 0.9) it is NOT dominated (the merge does not
    reach the task models at the vertices), while its points at t ∈ [0.4, 0.7] are;
  - at the vertices r = e_k the merge recovers ≥ 80 % of task k's fine-tuning gain:
    f_k(θ(e_k)) − f_k(θ_k) ≤ 0.2 (f_k(θ_0) − f_k(θ_k)) (measured 2.8-14 %).
* lowrank-regression (shared design, so the LS map is x*(r) = Σ μ_k ŵ_k exactly), LS variant: the
  structure holds the LS map exactly from rank ρ = K − 1 (constructed, to rounding), and training
  (seeds 0, 1, 2; measured 5/5 seeds) reaches it within 3 % of ||ŵ_1 − ŵ_2|| on held-out preferences
  (160 steps; measured 4.7e-4 to 7.1e-3 of 1.68); the data-free objective ||θ − θ_k||² reaches the
  same map (its LS optimum is also Σ μ_k θ_k; seed 0: 4.5e-4).

Exact properties (random inputs): a zero low-rank part gives AdaMerging's preference-independent
layer-wise merge θ_0 + Σ_k λ_k^l τ_k^l; the merge is affine in r, so θ(r) = Σ_p r_p θ(e_p) on the
simplex; θ(c·r) = θ(r); the learned-number count is the structure's formula; the smooth Tchebycheff
criterion lies in [max_k r_k(f_k − z_k), that + μ log K] and its gradient matches finite differences.
Degenerate inputs: K = 1, problems without task models, unbuilt models, non-finite or negative inputs.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from reference_impls import metrics
from reference_impls.pareto_runner import run_pareto
from reference_impls.pareto_set.evaluation import held_out_preferences, training_generator
from reference_impls.pareto_set.oracles import oracle_for
from reference_impls.pareto_set.pareto_merging import ParetoMerging, merge_inputs, preference_task_arithmetic, task_arithmetic
from reference_impls.pareto_set.training import pareto_step, start_pareto_model
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)
EPS = torch.finfo(torch.float64).eps
MLP_SHAPES = [("W1", (16, 4)), ("b1", (16,)), ("W2", (16, 16)), ("b2", (16,)), ("W3", (1, 16)), ("b3", (1,))]


class FakeMerge:
    """A merging problem with random θ_0 and task models on a given layout (no losses needed for the structure)."""

    id = "fake-merge"
    dtype = torch.float64

    def __init__(self, shapes, K, seed=0, scale=1.0):
        g = torch.Generator().manual_seed(seed)
        self.shapes, self.K = shapes, K
        self.n = sum(math.prod(s) for _, s in shapes)
        self.base = scale * torch.randn(self.n, generator=g, dtype=torch.float64)
        self.task_models = self.base + scale * torch.randn(K, self.n, generator=g, dtype=torch.float64)

    def parameter_shapes(self):
        return self.shapes

    def losses(self, x):  # f_k = ||x − θ_k||² / n, only for the K = 1 and loss-path tests
        return ((x[:, None, :] - self.task_models[None]) ** 2).mean(-1)


def built(problem, seed=0, **kw):
    torch.manual_seed(seed)
    model = ParetoMerging(**kw)
    model.begin(problem.K, problem.n, steps=1, ideal=None, problem=problem)
    return model


def randomise(model, seed, *, core=True):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.base_coefficients.copy_(torch.randn(model.base_coefficients.shape, generator=g, dtype=torch.float64))
        for p in model.factors:
            if core or p.ndim < 3:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))


def dominated_by(P, Q):
    """(|Q|,) bool: q is weakly dominated by some p ∈ P (p ≤ q in every loss)."""
    return (P[None, :, :] <= Q[:, None, :]).all(-1).any(1)


# ---------------------------------------------------------------------------------------------------
# Exact properties
@pytest.mark.parametrize("K", [1, 2, 3])
def test_zero_low_rank_part_is_adamergings_preference_independent_layerwise_merge(K):
    problem = FakeMerge(MLP_SHAPES, K, seed=K)
    model = built(problem, seed=K)
    randomise(model, seed=10 + K, core=False)  # random λ and factors, G = 0 (its initial value)
    lam = model.base_coefficients.detach()  # (L, K)
    coef = torch.cat([lam[l][:, None].expand(K, math.prod(s)) for l, (_, s) in enumerate(MLP_SHAPES)], dim=1)  # (K, n) λ_k^l per element
    tau = problem.task_models - problem.base  # (K, n)
    expected = problem.base + (coef * tau).sum(0)  # θ_0 + Σ_k λ_k^l τ_k^l (AdaMerging, layer-wise)
    r = torch.distributions.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((6,)) if K > 1 else torch.ones(6, 1, dtype=torch.float64)
    theta = model(r).detach()  # (6, n)
    scale = (problem.base.abs() + (coef * tau).abs().sum(0))  # per-element magnitude of the sum
    assert ((theta - expected).abs() <= 64 * EPS * scale).all()


@pytest.mark.parametrize("K", [2, 3])
def test_merge_is_affine_in_the_preference_so_the_set_is_the_simplex_of_the_vertex_models(K):
    problem = FakeMerge(MLP_SHAPES, K, seed=3)
    model = built(problem, seed=4)
    randomise(model, seed=5)
    g = torch.Generator().manual_seed(6)
    r = torch._standard_gamma(torch.ones(20, K, dtype=torch.float64), generator=g)
    r = r / r.sum(1, keepdim=True)  # (20, K) on the simplex
    vertices = model(torch.eye(K, dtype=torch.float64)).detach()  # θ(e_p), (K, n)
    theta = model(r).detach()  # (20, n)
    scale = (r[:, :, None] * vertices.abs()[None]).sum(1) + 1.0  # per-element magnitude
    assert ((theta - r @ vertices).abs() <= 1e3 * EPS * scale).all()
    # the preference really moves the merge once G ≠ 0 (the vertices differ)
    assert float((vertices[0] - vertices[1]).abs().max()) > 1e-3
    # a scaled preference is the same preference (D5)
    assert torch.allclose(model(7.5 * r).detach(), theta, rtol=0, atol=1e3 * EPS * float(scale.max()))


def test_parameter_count_is_the_structure_formula_and_far_below_elementwise_coefficients():
    problem = FakeMerge(MLP_SHAPES, 2)
    for rank in (1, 2, 3):
        model = built(problem, rank=rank)
        learned = sum(p.numel() for p in model.parameters())
        K, rho = 2, rank
        formula = sum(K + rho**3 * K + (s[0] + s[1] + K) * rho if len(s) == 2 else K + rho**2 * K + (s[0] + K) * rho for _, s in MLP_SHAPES)
        assert learned == model.parameter_count() == formula
    assert built(problem, rank=2).parameter_count() == 312  # merging-mlp, ρ = 2 (the docstring's figure)
    assert 312 < 0.5 * 2 * problem.n  # element-wise coefficients would need K·n = 738


def test_smooth_tchebycheff_brackets_the_weighted_max_and_has_the_finite_difference_gradient():
    problem = FakeMerge([("x", (3,))], 3)
    model = built(problem, mu=0.05)
    g = torch.Generator().manual_seed(0)
    F = torch.rand(5, 3, generator=g, dtype=torch.float64)
    r = torch._standard_gamma(torch.ones(5, 3, dtype=torch.float64), generator=g)
    r = r / r.sum(1, keepdim=True)
    r[0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # a vertex
    for b in range(5):
        s = float(model.loss(F[b : b + 1], r[b : b + 1]))
        wmax = float((r[b] * F[b]).max())  # z = 0 (no ideal given)
        assert wmax - 1e-15 <= s <= wmax + 0.05 * math.log(3) + 1e-15
    Fg = F.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: model.loss(x, r), (Fg,), eps=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------------
# The LS map where it is known exactly
@pytest.mark.parametrize("rank", [1, 2])
def test_structure_holds_the_exact_ls_map_of_lowrank_regression_from_rank_k_minus_1(rank):
    # x*(r) = Σ μ_k ŵ_k needs λ_k + Λ(r)_k = μ_k at every element. With λ = e_1 (per tensor),
    # μ − λ = (−r_2, r_2) = C·r_2 with C = (−1, 1): one column of A, B (the constant vectors) and of
    # C, and a core picking r_2, so rank ρ ≥ K − 1 = 1 suffices (the base λ absorbs the constant).
    problem = get_problem("lowrank-regression")
    model = built(problem, rank=rank, scalarisation="ls")
    with torch.no_grad():
        for p in model.factors:
            p.zero_()
        G, A, B, C = model.factors  # one tensor W: (ρ, ρ, ρ, K), (m, ρ), (n, ρ), (K, ρ)
        model.base_coefficients.copy_(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # λ = e_1
        A[:, 0], B[:, 0], C[:, 0] = 1.0, 1.0, torch.tensor([-1.0, 1.0], dtype=torch.float64)
        G[0, 0, 0, :] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # Λ_k(r) = C_k r_2
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    R = torch.stack([r, 1 - r], 1)
    expected = R @ problem.task_optima  # Σ μ_k ŵ_k, (11, n)
    scale = (R[:, :, None] * problem.task_optima.abs()[None]).sum(1) + problem.base.abs()  # per element
    assert ((model(R).detach() - expected).abs() <= 64 * EPS * scale).all()


@functools.lru_cache(maxsize=None)
def lowrank_errors(seed, objective="task-loss"):
    """Held-out errors ||x̂(r) − x*(r)|| (25,) of a seeded training run (the runner's loop and preference
    streams; its evaluation's analytic front is skipped: this problem's pareto_front is slow to sample)."""
    problem = get_problem("lowrank-regression")
    torch.manual_seed(seed)
    model = ParetoMerging(scalarisation="ls", objective=objective, batch=8)
    start_pareto_model(model, problem, steps=160, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    gen = training_generator(seed)
    for step in range(160):
        pareto_step(model, problem, opt, batch=8, generator=gen, step=step)
    held_out = held_out_preferences(2)
    X_star, _ = oracle_for(problem, "ls")(held_out)  # the certified LS map Σ μ_k ŵ_k
    with torch.no_grad():
        return torch.linalg.vector_norm(model(held_out) - X_star, dim=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_ls_variant_learns_the_ls_map_of_lowrank_regression(seed):
    # Measured (160 steps, seeds 0-4): max held-out error 4.7e-4, 7.1e-3, 5.0e-4, 1.4e-3, 4.0e-3 against
    # ||ŵ_1 − ŵ_2|| = 1.68 (Adam's fixed step leaves a small oscillation); threshold 3 % of it (0.05).
    problem = get_problem("lowrank-regression")
    gap = float(torch.linalg.vector_norm(problem.task_optima[0] - problem.task_optima[1]))
    err = lowrank_errors(seed)
    assert float(err.max()) <= 0.03 * gap, (float(err.max()), gap)


def test_data_free_objective_reaches_the_same_map_on_lowrank_regression():
    problem = get_problem("lowrank-regression")
    gap = float(torch.linalg.vector_norm(problem.task_optima[0] - problem.task_optima[1]))
    err = lowrank_errors(0, "data-free")
    assert float(err.max()) <= 0.03 * gap, (float(err.max()), gap)


# ---------------------------------------------------------------------------------------------------
# merging-mlp: the paper's claims
@functools.lru_cache(maxsize=None)
def mlp_run(seed):
    return run_pareto("pareto-merging", "merging-mlp", seed=seed, steps=100, lr=3e-2, batch=4, grid=11).extra["metrics"]


@functools.lru_cache(maxsize=None)
def mlp_problem():
    return get_problem("merging-mlp")


@pytest.mark.parametrize("seed", SEEDS)
def test_merged_losses_follow_the_preference(seed):
    Fg = mlp_run(seed)["grid_f"]  # (11, 2) at r = (t, 1 − t), t = 0, 0.1, ..., 1
    assert (Fg[1:, 0] < Fg[:-1, 0]).all(), Fg[:, 0]  # f_1 falls as r_1 grows
    assert (Fg[1:, 1] > Fg[:-1, 1]).all(), Fg[:, 1]  # f_2 rises as r_2 falls


@pytest.mark.parametrize("seed", SEEDS)
def test_learned_front_beats_fixed_and_preference_weighted_task_arithmetic(seed):
    problem = mlp_problem()
    m = mlp_run(seed)
    Fg, ref = m["grid_f"], problem.hv_reference
    F_ta = problem.losses(task_arithmetic(problem, torch.linspace(0, 1, 21, dtype=torch.float64)))  # (21, 2)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    R = torch.stack([t, 1 - t], 1)
    F_pta = {c: problem.losses(preference_task_arithmetic(problem, R, c)) for c in (0.5, 1.0, 1.5, 2.0)}
    hv_ta = metrics.hypervolume(F_ta, ref)
    hv_pta = max(metrics.hypervolume(F, ref) for F in F_pta.values())
    # Measured (100 steps, seeds 0-4): HV 0.2992-0.3052 against 0.2815 (best c = 1) and 0.2209 (TA):
    # ratio to the best preference-weighted TA 1.063-1.084.
    assert m["hypervolume"] >= 1.02 * hv_pta and hv_pta > hv_ta, (m["hypervolume"], hv_pta, hv_ta)
    assert dominated_by(Fg, F_ta).all()  # every task-arithmetic model is dominated by a merged one
    # c = 1 interpolates the task models, so near the ends it beats the merge; its points at
    # t = 0.3, ..., 0.8 were dominated in every measured run (seeds 0-4), 0.4 ... 0.7 asserted
    assert dominated_by(Fg, F_pta[1.0][4:8]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_vertex_merges_recover_most_of_each_tasks_fine_tuning_gain(seed):
    problem = mlp_problem()
    Fg = mlp_run(seed)["grid_f"]
    f_base = problem.losses(problem.base[None])[0]  # f_k(θ_0)
    f_task = torch.diagonal(problem.losses(problem.task_models))  # f_k(θ_k)
    at_vertex = torch.stack([Fg[-1, 0], Fg[0, 1]])  # f_1(θ(e_1)), f_2(θ(e_2))
    # Measured (seeds 0-4): the remaining gap is 2.8-14 % of f_k(θ_0) − f_k(θ_k); threshold 20 %
    assert (at_vertex - f_task <= 0.2 * (f_base - f_task)).all(), (at_vertex, f_task, f_base)


# ---------------------------------------------------------------------------------------------------
# Degenerate inputs
def test_single_task_merge_and_its_criterion():
    problem = FakeMerge(MLP_SHAPES, 1)
    model = built(problem)
    theta = model(torch.ones(3, 1, dtype=torch.float64))
    assert theta.shape == (3, problem.n) and torch.isfinite(theta).all()
    F = torch.tensor([[0.3], [0.7]], dtype=torch.float64)
    assert float(model.loss(F, torch.ones(2, 1, dtype=torch.float64))) == pytest.approx(0.5, abs=1e-15)  # μ log exp(f/μ) = f


def test_degenerate_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no base model and task models"):
        ParetoMerging().begin(2, 2, steps=1, problem=get_problem("biquad"))  # no starting points given
    with pytest.raises(ValueError, match="needs the problem"):
        ParetoMerging().begin(2, 10, steps=1)
    with pytest.raises(ValueError, match="not built"):
        ParetoMerging()(torch.tensor([0.5, 0.5]))
    bad = FakeMerge(MLP_SHAPES, 2)
    bad.task_models[1, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        merge_inputs(bad)
    model = built(FakeMerge(MLP_SHAPES, 2))
    for r in ([float("nan"), 1.0], [-0.5, 1.5], [0.0, 0.0]):
        with pytest.raises(ValueError):
            model(torch.tensor([r], dtype=torch.float64))
    for kw in ({"rank": 0}, {"scalarisation": "epo"}, {"mu": 0.0}, {"objective": "entropy"}):
        with pytest.raises(ValueError):
            ParetoMerging(**kw)
    # a vertex and a single (K,) preference are fine
    assert model(torch.tensor([1.0, 0.0], dtype=torch.float64)).shape == (bad.n,)
