"""Mixture-of-experts model fusion (PWE MoE, ids ``moe-fusion`` / ``moe-fusion-epo``): the paper's claims on toys.

Exact properties:

* The router reads only the preference, so for a given r every MoE module collapses to one set of
  weights: the network θ(r) returned by ``forward`` computes, on any inputs, exactly what the MoE
  forward computes, i.e. each up-scaled linear layer's output = base output + Σ_k w_k(r)·(output of
  task vector k) (an independent path through the experts' outputs, written here layer by layer on
  ``merging-mlp``), the remaining layer being the task-arithmetic merge θ_0 + λ Σ τ_k. Checked on
  random routers, per output relative to the output's own scale (200 eps).
* Identical experts (τ_k = 0) give θ(r) = θ_0 on the MoE tensors for every router; a one-expert model (K = 1).

Behaviour (seeded; the seed sets the routers' initialisation and the training preferences; linear
routers, 400 steps of 8 preferences, lr 1e-2):

* lowrank-regression: the LS map W*(r) = W_0 + Σ_k μ_k τ_k (τ_k = Ŵ_k − W_0, μ = r/Σr) is exactly
  of the model's form, so the trained routers reach it: held-out max ||θ(r) − W*(r)|| ≤ 2 % of
  ||Ŵ_1 − Ŵ_2|| and grid HV ratio ≥ 0.99 (seeds 0, 1, 2; all pass).
* merging-mlp (a tanh MLP whose task vectors interfere): the router combines the task experts into
  models whose grid front has a larger hypervolume than task arithmetic θ_0 + λ Σ τ_k (best λ ∈ [0, 1.5]),
  lowers the LS criterion at every held-out preference, and at r = e_k is better on task k than task
  arithmetic and within a stated factor of task k's model; with every layer up-scaled ("all") it also
  beats the task models' interpolation Σ r_k θ_k. Its held-out r·f stays 4.5–6× the reference front's
  (``reference_front``: full fine-tuning from θ_0): the stated tolerance documents that the merge family
  does not reach this toy's LS front. Seeds 0, 1, 2 for both up-scalings (measured over seeds 0–9: all
  pass; figures beside BOUNDS).

Degenerate inputs: vertices, B = 1, a (K,) preference, non-finite / negative preferences, a problem
without a base and task models, experts of the wrong shape or non-finite, unbuilt models → defined
results or ValueError.
"""

from __future__ import annotations

import pytest
import torch

import reference_impls
from reference_impls import metrics
from reference_impls.pareto_set.combination import ParameterLayout
from reference_impls.pareto_set.evaluation import held_out_preferences, preference_grid, training_generator
from reference_impls.pareto_set.moe_fusion import MoEFusion, MoEFusionEPO, layers_of
from reference_impls.pareto_set.oracles import oracle_for
from reference_impls.pareto_set.training import pareto_step, start_pareto_model
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def mlp():
    return get_problem("merging-mlp")


@pytest.fixture(scope="module")
def lowrank():
    return get_problem("lowrank-regression")


def train(model, problem, *, steps, lr, batch, seed):
    """The documented loop (site/implementations/design.md) without the runner's evaluation."""
    torch.manual_seed(seed)
    start_pareto_model(model, problem, steps=steps, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = training_generator(seed)
    for t in range(steps):
        pareto_step(model, problem, opt, batch=batch, generator=generator, step=t)
    return model


def built(problem, seed=0, **params):
    torch.manual_seed(seed)
    model = MoEFusion(**params)
    start_pareto_model(model, problem, steps=1, seed=seed)
    return model


def moe_forward(model, problem, r, inputs):
    """The MoE network on inputs (M, p), written layer by layer from the experts' OUTPUTS: (B, M).

    An up-scaled linear layer returns W_0 h + b_0 + Σ_k w_k(r) (τ^W_k h + τ^b_k); the task-arithmetic
    layer uses the merged tensors; tanh between layers (merging-mlp's network)."""
    layout = ParameterLayout.of(problem)
    base = layout.split(model.base)  # θ_0 per tensor
    merged = layout.split(model.merged)  # θ_0 + λ Σ τ_k per tensor
    taus = [layout.split(model.task_vectors[k]) for k in range(problem.K)]
    w = model.routing_weights(r).detach()  # (B, M, K)
    layers = layers_of(layout)
    h = inputs[None].expand(r.shape[0], -1, -1)  # (B, M, p)
    for i, (jW, jb) in enumerate(layers):
        m = model.module_index[jW]
        if m < 0:
            out = h @ merged[jW].T + merged[jb]  # (B, M, out)
        else:
            out = h @ base[jW].T + base[jb]  # the pretrained layer's output
            for k in range(problem.K):
                out = out + w[:, m, k, None, None] * (h @ taus[k][jW].T + taus[k][jb])  # + w_k · expert k's task-vector output
        h = torch.tanh(out) if i < len(layers) - 1 else out
    return h[..., 0]  # (B, M)


# ------------------------------------------------------------------------------------------------
# Exact properties
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upscale", ["hidden", "all", ["W2", "b2"]])
def test_the_preference_only_router_collapses_the_moe_to_one_network_per_preference(mlp, upscale):
    model = built(mlp, seed=3, upscale=upscale)
    with torch.no_grad():  # random routers whose weights depend on r strongly (not just the N(0, 0.01²) init)
        g = torch.Generator().manual_seed(7)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    expected = {"hidden": 2, "all": 3}.get(upscale if isinstance(upscale, str) else "", 1)
    assert len(model.routers) == expected
    r = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.3, 0.7], [0.0, 1.0]], dtype=torch.float64)
    inputs = torch.randn(50, mlp.p, generator=g, dtype=torch.float64) * 2  # (M, p)
    with torch.no_grad():
        collapsed = mlp.predict(model(r), inputs)  # the merged-and-unloaded network, (B, M)
        moe = moe_forward(model, mlp, r, inputs)  # (B, M)
    scale = moe.abs().amax(1, keepdim=True) + 1.0  # each preference's own output scale
    assert bool(((collapsed - moe).abs() <= 200 * EPS * scale).all()), float(((collapsed - moe).abs() / scale).max())
    # the routers matter: preferences give different networks (else the check above is vacuous)
    assert float((moe[0] - moe[-1]).abs().max()) > 1e-2


def test_identical_experts_give_the_base_for_every_preference_and_one_expert_works(lowrank):
    n = lowrank.n
    base = lowrank.base
    model = MoEFusion(base=base, task_models=base.expand(2, n).clone(), upscale="all")
    torch.manual_seed(0)
    start_pareto_model(model, lowrank, steps=1)
    r = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(r), base.expand(3, n))  # τ_k = 0: θ(r) = θ_0 whatever the router says
    # K = 1: one expert, r = (1); training moves its single routing weight to 1 (θ = Ŵ_1)
    single = get_problem("lowrank-regression", K=1)
    one = train(MoEFusion(), single, steps=150, lr=3e-2, batch=1, seed=0)
    with torch.no_grad():
        err = float(torch.linalg.vector_norm(one(torch.ones(1, 1, dtype=torch.float64))[0] - single.task_optima[0]))
    assert err <= 1e-3 * float(torch.linalg.vector_norm(single.task_optima[0] - single.base)), err


# ------------------------------------------------------------------------------------------------
# Behaviour
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_routers_learn_the_linear_scalarisation_map_on_lowrank_regression(lowrank, seed):
    # W*(r) = W_0 + Σ μ_k τ_k is of the model's form: the trained router reaches it (its weights are
    # not identifiable here: τ_1 = −τ_2 for K = 2, only w_1 − w_2 = μ_1 − μ_2 is fixed).
    model = train(MoEFusion(), lowrank, steps=400, lr=1e-2, batch=8, seed=seed)
    H = held_out_preferences(2)
    X_star, F_star = oracle_for(lowrank, "ls")(H)
    with torch.no_grad():
        X = model(H)
        Fg = lowrank.losses(model(preference_grid(2)))
    width = float(torch.linalg.vector_norm(lowrank.task_optima[0] - lowrank.task_optima[1]))
    err = float(torch.linalg.vector_norm(X - X_star, dim=1).max())
    ratio = metrics.hypervolume(Fg, lowrank.hv_reference) / metrics.hypervolume(lowrank.pareto_front(500), lowrank.hv_reference)
    assert err <= 0.02 * width, (err, width)
    assert ratio >= 0.99, ratio


# Measured over seeds 0–9 (400 steps of 8 preferences, lr 1e-2, linear routers; all seeds pass every bound):
# upscale "hidden" (the paper's partial up-scaling: output layer by task arithmetic) grid HV 0.2687–0.2696,
# "all" 0.2948–0.2960, against task arithmetic's 0.2209 (best λ in [0, 1.5]) and the task models'
# interpolation Σ r_k θ_k's 0.2876; trained / untrained r·f at the held-out preferences at most 0.869 / 0.710;
# r·f over the reference front's at most 5.99 / 4.62: the merge family θ_0 + Σ_m Σ_k w^m_k τ_k does NOT
# reach the LS front of this toy (the reference is full fine-tuning from θ_0); f_k(θ(e_k)) at most
# 0.0227 / 0.0149 (task 1) and 0.0547 / 0.0293 (task 2), the task models' own 0.0051 and 0.0064.
BOUNDS = {"hidden": dict(hv_gain=0.04, beats_interpolation=False, reduction=0.92, ratio=6.5, vertex=10.0),
          "all": dict(hv_gain=0.07, beats_interpolation=True, reduction=0.75, ratio=5.0, vertex=6.0)}  # fmt: skip


@pytest.mark.parametrize("upscale", ["hidden", "all"])
@pytest.mark.parametrize("seed", SEEDS)
def test_router_combines_the_task_experts_better_than_task_arithmetic_on_merging_mlp(mlp, upscale, seed):
    bound = BOUNDS[upscale]
    model = train(MoEFusion(upscale=upscale), mlp, steps=400, lr=1e-2, batch=8, seed=seed)
    H = held_out_preferences(2, 8)
    _, F_ref = mlp.reference_front(H)  # (8, 2), the LS optimum estimated by Adam from θ_0
    grid = preference_grid(2, 21)
    with torch.no_grad():
        F = mlp.losses(model(H))  # (8, 2)
        F_grid = mlp.losses(model(grid))
        F_vertex = mlp.losses(model(torch.eye(2, dtype=torch.float64)))  # row k: the model at e_k
        lam = torch.linspace(0, 1.5, 31, dtype=torch.float64)[:, None]
        F_ta = mlp.losses(mlp.base + lam * mlp.task_vectors.sum(0))  # task arithmetic θ_0 + λ Σ τ_k
        F_interp = mlp.losses(grid @ mlp.task_models)  # Σ_k r_k θ_k
        F_start = mlp.losses(built(mlp, seed=seed, upscale=upscale)(H))  # the same model untrained: ≈ task arithmetic at λ = 0.3
        F_models = mlp.losses(mlp.task_models)  # row k: task model k
    ref = mlp.hv_reference
    hv, hv_ta, hv_interp = metrics.hypervolume(F_grid, ref), metrics.hypervolume(F_ta, ref), metrics.hypervolume(F_interp, ref)
    assert hv >= hv_ta + bound["hv_gain"], (hv, hv_ta)
    if bound["beats_interpolation"]:
        assert hv > hv_interp, (hv, hv_interp)
    reduction = (H * F).sum(1) / (H * F_start).sum(1)  # the LS criterion, trained over untrained, (8,)
    assert float(reduction.max()) <= bound["reduction"], reduction
    ratio = (H * F).sum(1) / (H * F_ref).sum(1)  # over the reference front's, (8,)
    assert float(ratio.max()) <= bound["ratio"], ratio
    for k in range(2):  # at r = e_k: better on task k than task arithmetic's best λ, near task k's model
        assert float(F_vertex[k, k]) < float(F_ta[:, k].min()), (k, F_vertex, F_ta[:, k].min())
        assert float(F_vertex[k, k]) <= bound["vertex"] * float(F_models[k, k]), (k, F_vertex, F_models)


def test_epo_criterion_step_lowers_the_non_uniformity_on_an_off_ray_preference(lowrank):
    # PWE MoE-EPO: α from EPO's LP on the gradients w.r.t. the routers; a small step along −∇ Σ K α_k f_k
    # moves r ⊙ f towards the ray (EPO's non-uniformity μ decreases) at every tested preference.
    torch.manual_seed(0)
    model = MoEFusionEPO()
    start_pareto_model(model, lowrank, steps=1)
    params = list(model.parameters())
    for r0 in (0.2, 0.5, 0.8):
        r = torch.tensor([[r0, 1 - r0]], dtype=torch.float64)
        F = lowrank.losses(model(r))  # (1, 2)
        before = float(metrics.epo_non_uniformity(F.detach(), r[0]))
        assert before > model.eps
        grads = torch.autograd.grad(model.loss(F, r), params)
        assert model.last_modes == ["balance"]
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(1e-4 * g)
            after = float(metrics.epo_non_uniformity(lowrank.losses(model(r)), r[0]))
            for p, q in zip(params, saved):
                p.copy_(q)
        assert after < before, (r0, before, after)
    vertices = torch.eye(2, dtype=torch.float64)
    model.loss(lowrank.losses(model(vertices)), vertices)
    assert model.last_modes == ["vertex", "vertex"] and torch.equal(model.last_alpha, vertices)  # LS weights at a vertex


def test_degenerate_preferences_and_invalid_inputs(lowrank):
    model = built(lowrank)
    vertices = torch.eye(2, dtype=torch.float64)
    with torch.no_grad():
        X = model(vertices)
        assert torch.isfinite(X).all()
        assert torch.equal(model(vertices[1]), X[1])  # (K,) -> (n,) is the batch's row; B = 1
        assert torch.equal(model(2.0 * vertices), X)  # the router reads r/Σr (D2)
    F = lowrank.losses(X)
    assert float(model.loss(F, vertices)) == pytest.approx(float((F[0, 0] + F[1, 1]) / 2), rel=1e-15)  # vertices: the single task
    with pytest.raises(ValueError, match="not built"):
        MoEFusion()(torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="was built for"):
        model.begin(3, lowrank.n, steps=1)
    with pytest.raises(ValueError, match="pretrained model and fine-tuned"):  # vlmop2 knows no experts
        start_pareto_model(MoEFusion(), get_problem("vlmop2"), steps=1)
    with pytest.raises(ValueError, match="must be"):
        start_pareto_model(MoEFusion(base=lowrank.base, task_models=lowrank.task_optima[:1]), lowrank, steps=1)
    bad = lowrank.task_optima.clone()
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        start_pareto_model(MoEFusion(base=lowrank.base, task_models=bad), lowrank, steps=1)
    for kwargs in ({"router_hidden_layers": 3}, {"upscale": "mlp"}, {"batch": 0}, {"base": lowrank.base}, {"init_lambda": float("nan")}):
        with pytest.raises(ValueError):
            MoEFusion(**kwargs)
    with pytest.raises(ValueError, match="tensor names"):
        start_pareto_model(MoEFusion(upscale=["W9"]), lowrank, steps=1)
    with pytest.raises(ValueError, match="eps"):
        MoEFusionEPO(eps=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        built_epo = MoEFusionEPO()
        start_pareto_model(built_epo, lowrank, steps=1)
        built_epo.loss(torch.tensor([[-1.0, 1.0]], dtype=torch.float64), torch.tensor([[0.5, 0.5]], dtype=torch.float64))


def test_registry_builds_both_criteria():
    assert isinstance(reference_impls.create("moe-fusion"), MoEFusion) and reference_impls.create("moe-fusion").target == "ls"
    assert isinstance(reference_impls.create("moe-fusion-epo"), MoEFusionEPO) and reference_impls.create("moe-fusion-epo").target == "ray"
