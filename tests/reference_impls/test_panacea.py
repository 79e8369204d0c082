"""Panacea (SVD-LoRA with the preference as singular values): the paper's claims at small scale.

Behaviour (held-out preferences: the 25 fixed Dirichlet(1) draws of ``evaluation.held_out_preferences``,
never trained on; each run seeded):

* Representable configurations (``lowrank-regression``, K = 2, frozen base W_0, rank k = 8): task_rank
  ρ = 1 and ρ = 2, where the LS map W*(λ) = Σ λ_k Ŵ_k is exactly of Panacea's form (proof in
  ``pareto_set/panacea.py``); the trained adapter (300 Adam steps, 4 preferences per step) reproduces
  it at held-out preferences: seeds 0, 1, 2 for each ρ, all pass (max error ≤ 1 % of ||Ŵ_1 − Ŵ_2||,
  measured 0.02–0.06 %), and its grid front has HV ratio ≥ 0.99 against the exact front HV (5/6)Q²
  (measured 0.99596: the 101-point grid itself caps the ratio there).
* Non-representable configuration (ρ = 3: rank(Ŵ_1 − Ŵ_2) = 3 > 2): every Panacea model, trained or not,
  is on average at least the certified bound τ·mean|t − median t| from the LS map (τ = σ_3(Ŵ_1 − Ŵ_2),
  Eckart–Young; proof in the module), and training attains it: seeds 0, 1, 2 all pass (bound 0.113,
  mean error measured 0.119, 0.121, 0.132 ≤ 1.25 × bound; max error 0.23–0.29; the grid's HV ratio
  still 0.983–0.984: the front is nearly traced by wrong weights).
* Tchebycheff aggregation follows its rays f − z ∝ 1/λ more closely than LS (ρ = 1): seeds 0, 1, 2, all
  pass (mean angle ≤ 0.8 × LS's; measured 0.106, 0.096, 0.083 rad against LS's 0.149, every point within
  0.05·||Ŵ_1 − Ŵ_2|| of the Pareto set). W(λ) is affine in λ while the ray map is not (t = √λ_2/(√λ_1 + √λ_2)
  on the segment), so the angle cannot reach 0 on this problem.
* ``merging-mlp`` (adapters on the three weight matrices of the pretrained MLP, biases frozen; 300 steps):
  no point of fixed task arithmetic θ_0 + c·Σ τ_k (c ∈ [0, 1.5]) dominates a learned point, the learned
  front's HV is ≥ 1.3 × task arithmetic's (measured 0.318–0.323 against 0.221) and ≥ 0.9 × the HV of
  three ``reference_front`` points (λ_1 = 0.8, 0.5, 0.2; HV 0.340; measured ratio 0.935–0.950): seeds
  0, 1, 2, all pass. Not converged there: the LS value Σ λ_k f_k at those preferences is 0.6–2.0× above
  the reference's (0.06–0.9× at five preferences after 800 steps at lr 1e-2).

Exact properties (random adapters): W(λ) is affine in λ on the simplex and W(λ) − W(λ') has rank ≤ 2
(K = 2); the frozen base and the biases never change; at initialisation W(λ) = W_0. Degenerate inputs:
K = 1, simplex vertices, one row, scaled rows, NaN / negative preferences, unbuilt models, bad arguments.
"""

from __future__ import annotations

import functools

import pytest
import torch

import reference_impls
from reference_impls import metrics
from reference_impls.pareto_runner import run_pareto
from reference_impls.pareto_set.evaluation import held_out_preferences, preference_grid, training_generator
from reference_impls.pareto_set.oracles import mtl_linear_ls
from reference_impls.pareto_set.panacea import Panacea
from reference_impls.pareto_set.training import pareto_step
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)
STEPS = 300  # Adam steps on lowrank-regression (4 preferences each)


@functools.lru_cache(maxsize=None)
def lowrank(task_rank: int, K: int = 2):
    return get_problem("lowrank-regression", task_rank=task_rank, K=K)


@functools.lru_cache(maxsize=None)
def merging():
    return get_problem("merging-mlp")


def train(model: Panacea, problem, *, steps: int, lr: float, batch: int, seed: int, ideal=None) -> Panacea:
    """The runner's training (pareto_step with the seeded preference stream), without its evaluation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = torch.zeros(problem.K, dtype=torch.float64) if ideal is None else ideal
        model.begin(problem.K, problem.n, steps=steps, ideal=z, problem=problem)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        generator = training_generator(seed)
        for t in range(steps):
            pareto_step(model, problem, opt, batch=batch, generator=generator, step=t)
    return model


@functools.lru_cache(maxsize=None)
def trained_lowrank(task_rank: int, aggregation: str, seed: int) -> Panacea:
    return train(Panacea(aggregation=aggregation), lowrank(task_rank), steps=STEPS, lr=1e-2, batch=4, seed=seed)


# ----------------------------------------------------------------------------------------------
# Behaviour
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_rank", (1, 2))
@pytest.mark.parametrize("seed", SEEDS)
def test_representable_lowrank_regression_learns_the_ls_map_at_held_out_preferences(task_rank, seed):
    problem = lowrank(task_rank)
    model = trained_lowrank(task_rank, "ls", seed)
    held = held_out_preferences(2)  # (25, 2)
    X_star, _ = mtl_linear_ls(problem, held)  # the certified LS map Σ λ_k Ŵ_k
    with torch.no_grad():
        err = torch.linalg.vector_norm(model(held) - X_star, dim=1)  # ||W(λ) − W*(λ)||_F, (25,)
        grid_f = problem.losses(model(preference_grid(2)))  # (101, 2)
    scale = float(torch.linalg.vector_norm(problem.task_optima[0] - problem.task_optima[1]))
    assert float(err.max()) <= 0.01 * scale, (float(err.max()), scale)
    Q = float(problem.losses(problem.task_optima[1:2])[0, 0])  # f_1(Ŵ_2) = f_2(Ŵ_1): the front is (t²Q, (1 − t)²Q)
    true_hv = 5.0 / 6.0 * Q * Q  # its HV at the reference (Q, Q)
    assert problem.hv_reference == pytest.approx((Q, Q), rel=1e-12)
    assert metrics.hypervolume(grid_f, problem.hv_reference) / true_hv >= 0.99


@pytest.mark.parametrize("seed", SEEDS)
def test_non_representable_lowrank_regression_attains_but_never_beats_the_certified_error_bound(seed):
    problem = lowrank(3)
    held = held_out_preferences(2)
    t = held[:, 0] / held.sum(1)  # λ = (t, 1 − t), (25,)
    delta = (problem.task_optima[0] - problem.task_optima[1]).reshape(problem.d_out, problem.d_in)  # Ŵ_1 − Ŵ_2
    sv = torch.linalg.svdvals(delta)
    tau = float(torch.sqrt((sv[2:] ** 2).sum()))  # distance of Ŵ_1 − Ŵ_2 from the rank-2 matrices (Eckart–Young)
    assert tau == pytest.approx(abs(float(problem.C[0, 2] - problem.C[1, 2])), rel=1e-9)  # σ_3 = |c_13 − c_23| by construction
    bound = tau * float((t - t.median()).abs().mean())  # mean_h ||E(t_h)|| ≥ τ·mean_h |t_h − median t|
    X_star, _ = mtl_linear_ls(problem, held)
    trained = trained_lowrank(3, "ls", seed)
    untrained = Panacea()
    untrained.begin(2, problem.n, steps=0, problem=problem)
    with torch.no_grad():
        for scale in (0.0, 1.0):  # the bound holds for any adapter, e.g. random ones
            for p in untrained.parameters():
                p.copy_(torch.randn_like(p) * scale)
            assert float(torch.linalg.vector_norm(untrained(held) - X_star, dim=1).mean()) >= bound
        err = torch.linalg.vector_norm(trained(held) - X_star, dim=1)  # (25,)
    assert bound >= 0.1, bound  # the representable case (previous test) reaches 1 % of ||Ŵ_1 − Ŵ_2||
    assert float(err.mean()) >= bound and float(err.max()) >= tau * float(t.max() - t.min()) / 2
    assert float(err.mean()) <= 1.25 * bound, (float(err.mean()), bound)  # and training attains it: the bound is tight


@pytest.mark.parametrize("seed", SEEDS)
def test_tchebycheff_aggregation_follows_its_rays_more_closely_than_ls(seed):
    problem = lowrank(1)
    held = held_out_preferences(2)
    tch, ls = trained_lowrank(1, "tchebycheff", seed), trained_lowrank(1, "ls", seed)
    assert tch.target == "ray" and ls.target == "ls"
    rays = tch.target_rays(held)  # 1/λ normalised: the ray point λ ⊙ (f − z) ∝ 𝟙, z = 0 here (noise 0)
    assert torch.allclose(rays * held, (rays * held)[:, :1].expand(-1, 2), rtol=1e-12)
    with torch.no_grad():
        X_t, X_l = tch(held), ls(held)
    ang_t = metrics.preference_angle(problem.losses(X_t).numpy(), rays.numpy(), [0.0, 0.0])  # (25,)
    ang_l = metrics.preference_angle(problem.losses(X_l).numpy(), rays.numpy(), [0.0, 0.0])
    assert ang_t.mean() <= 0.8 * ang_l.mean(), (ang_t.mean(), ang_l.mean())
    scale = float(torch.linalg.vector_norm(problem.task_optima[0] - problem.task_optima[1]))
    assert float(problem.distance_to_pareto_set(X_t).max()) <= 0.05 * scale  # still on (near) the Pareto set


@functools.lru_cache(maxsize=None)
def merging_reference():
    P = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    return merging().reference_front(P)


@pytest.mark.parametrize("seed", SEEDS)
def test_merging_mlp_front_dominates_task_arithmetic_and_nears_the_reference_front(seed):
    problem = merging()
    model = train(Panacea(), problem, steps=300, lr=3e-2, batch=4, seed=seed, ideal=problem.ideal_point())
    with torch.no_grad():
        X = model(preference_grid(2, 21))  # (21, n)
        F = problem.losses(X)  # the learned front, (21, 2)
    c = torch.linspace(0.0, 1.5, 16, dtype=torch.float64)[:, None]
    F_ta = problem.losses(problem.base + c * problem.task_vectors.sum(0))  # task arithmetic θ_0 + c Σ τ_k, (16, 2)
    dominated = ((F_ta[:, None] <= F[None]).all(-1) & (F_ta[:, None] < F[None]).any(-1))  # TA point i dominates learned j
    assert not bool(dominated.any())
    ref = problem.hv_reference
    hv, hv_ta = metrics.hypervolume(F, ref), metrics.hypervolume(F_ta, ref)
    hv_reference = metrics.hypervolume(merging_reference()[1], ref)
    assert hv >= 1.3 * hv_ta, (hv, hv_ta)
    assert hv >= 0.9 * hv_reference, (hv, hv_reference)
    # the frozen parts: every bias of every θ(λ) is the pretrained one
    layout = model.layout
    for index, shape in enumerate(layout.shapes):
        if len(shape) == 1:
            assert torch.equal(X[:, layout.slices[index]], problem.base[layout.slices[index]].expand(21, -1))


# ----------------------------------------------------------------------------------------------
# Exact properties
# ----------------------------------------------------------------------------------------------


def randomised(problem, K: int = 2, rank: int = 3) -> Panacea:
    model = Panacea(rank=rank)
    model.begin(K, problem.n, steps=0, problem=problem)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return model


def test_weights_are_affine_in_the_preference_and_differ_by_rank_at_most_two():
    problem = merging()
    model = randomised(problem)
    g = torch.Generator().manual_seed(3)
    lam = torch._standard_gamma(torch.ones(4, 2, dtype=torch.float64), generator=g)
    lam = lam / lam.sum(1, keepdim=True)  # (4, 2) on the simplex
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # convex weights
    with torch.no_grad():
        X = model(lam)  # (4, n)
        mixed = model((a @ lam)[None])[0]  # W(Σ a_j λ_j)
    scale = float(X.abs().max())
    assert torch.allclose(mixed, a @ X, rtol=0, atol=1e-13 * scale)
    layout = model.layout
    for index in layout.matrices:
        W = layout.split(X)[index]  # (4, out, in)
        diff = W[0] - W[1]
        sv = torch.linalg.svdvals(diff)
        assert float(sv[0]) > 1e-3 and (len(sv) <= 2 or float(sv[2]) <= 1e-12 * float(sv[0]))


def test_initial_model_is_the_frozen_base_which_training_never_changes():
    problem = lowrank(2)
    model = Panacea()
    model.begin(2, problem.n, steps=0, problem=problem)
    held = held_out_preferences(2)
    with torch.no_grad():
        assert torch.equal(model(held), problem.base.expand(25, -1))  # σ = s = 0: W(λ) = W_0
    assert all(p is not model.base for p in model.parameters()) and not model.base.requires_grad
    trained = trained_lowrank(1, "ls", 0)
    assert torch.equal(trained.base, lowrank(1).base)  # the buffer never moved
    assert trained.base.data_ptr() != lowrank(1).base.data_ptr()  # a copy: the problem's tensor is not aliased


# ----------------------------------------------------------------------------------------------
# Runner, point problems, degenerate inputs
# ----------------------------------------------------------------------------------------------


def test_biquad_vector_is_one_layer_and_the_runner_learns_its_ls_map():
    # biquad has no weight matrix: x is adapted as one (n, 1) layer on the first seeded start (D1);
    # its LS map Σ λ_i a_i (equal scales) is affine in λ, hence representable
    result = run_pareto("panacea", "biquad", steps=300, lr=1e-2, batch=4, seed=0)
    m = result.extra["metrics"]
    assert m["target"] == "ls" and m["solution_error_max"] <= 0.01, m["solution_error_max"]
    assert m["hypervolume_ratio"] >= 0.99 and m["held_out_min_distance"] > 0


def test_degenerate_preferences_and_a_single_objective():
    problem = lowrank(1)
    model = trained_lowrank(1, "ls", 0)
    vertices = torch.eye(2, dtype=torch.float64)
    with torch.no_grad():
        X = model(vertices)  # the task optima Ŵ_1, Ŵ_2
        assert torch.allclose(model(vertices[1]), X[1], rtol=0, atol=0)  # (K,) -> (n,) is the batch's row
        assert torch.allclose(model(3.7 * vertices + 0.0), X, rtol=1e-15, atol=1e-15)  # λ = r/Σr (D4)
    scale = float(torch.linalg.vector_norm(problem.task_optima[0] - problem.task_optima[1]))
    assert float(torch.linalg.vector_norm(X - problem.task_optima, dim=1).max()) <= 0.01 * scale
    F = problem.losses(X)
    tch = Panacea(aggregation="tchebycheff", ideal=torch.zeros(2, dtype=torch.float64))
    assert float(tch.loss(F, vertices)) == pytest.approx(float((F[0, 0] + F[1, 1]) / 2), rel=1e-15)  # zero weights drop out
    # K = 1: an ordinary SVD-LoRA fitting the single task
    single = lowrank(1, K=1)
    one = train(Panacea(), single, steps=300, lr=1e-2, batch=1, seed=0)
    with torch.no_grad():
        x = one(torch.ones(1, dtype=torch.float64))
    assert float(torch.linalg.vector_norm(x - single.task_optima[0])) <= 0.01 * float(torch.linalg.vector_norm(single.task_optima[0] - single.base))


def test_preference_sampling_mixes_the_simplex_and_its_vertices():
    model = Panacea(vertex_probability=0.25)
    r = model.sample_preferences(4000, 3, generator=torch.Generator().manual_seed(0))  # (4000, 3)
    assert torch.allclose(r.sum(1), torch.ones(4000, dtype=torch.float64), rtol=0, atol=1e-14) and bool((r >= 0).all())
    vertex = (r == 1).any(1)
    assert abs(float(vertex.double().mean()) - 0.25) < 0.03  # binomial sd 0.007
    assert Panacea(vertex_probability=0.0).sample_preferences(1000, 2, generator=torch.Generator().manual_seed(0)).max() < 1


def test_invalid_inputs_raise_clear_errors():
    problem = lowrank(1)
    model = Panacea()
    with pytest.raises(ValueError, match="not built"):
        model(torch.tensor([0.5, 0.5], dtype=torch.float64))
    model.begin(2, problem.n, steps=0, problem=problem)
    with pytest.raises(ValueError, match="was built for"):
        model.begin(2, problem.n + 1, steps=1)
    for kwargs in ({"rank": -1}, {"alpha": 0.0}, {"aggregation": "epo"}, {"vertex_probability": 1.5}, {"batch": 0}, {"init_std": float("nan")}):
        with pytest.raises(ValueError):
            reference_impls.create("panacea", **kwargs)
    tch = Panacea(aggregation="tchebycheff", ideal=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="ideal point"):
        tch.loss(torch.ones(1, 2, dtype=torch.float64), torch.tensor([[0.5, 0.5]], dtype=torch.float64))
