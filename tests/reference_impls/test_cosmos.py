"""COSMOS (x = MLP(r), criterion Σ r_i ℓ_i − λ cos(ℓ, r)): the paper's claims on the bi-quadratic.

Behaviour (seeded, on the runner's 25 held-out Dirichlet(1) preferences, disjoint from training;
300 steps of 8 preferences, Adam 3e-3):

* λ = 0 reproduces the LS map x*(r) = r_1 a_1 + r_2 a_2 (seeds 0, 1, 2; all pass: max error ≤ 0.02,
  measured 0.0047–0.0062; grid HV ratio ≥ 0.99, measured 0.996).
* The mean cos(F(r), r) over the held-out preferences rises with λ ∈ {0, 1, 5} (seeds 0, 1, 2; all pass;
  mean cos measured 0.497–0.499, 0.977–0.978, 0.997; mean angle from r 0.985, 0.18, 0.058 rad; seeds 3–5
  pass too), while the solutions stay on the Pareto set (max distance ≤ 0.02, measured ≤ 0.0046): the
  cosine term moves them along the front towards their rays.

Exact properties: at ℓ ∥ r the cosine term is stationary (∂cos/∂ℓ = 0), so the criterion's gradient
in ℓ is r; the cosine is invariant to the scale of ℓ. Degenerate inputs: simplex vertices, K = 1,
ℓ = 0, non-finite or negative inputs, unbuilt models.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

import reference_impls
from reference_impls.pareto_runner import run_pareto
from reference_impls.pareto_set.cosmos import COSMOS, cosine_to_preference
from reference_impls.problems import get_problem

SEEDS = (0, 1, 2)


@lru_cache(maxsize=None)
def _metrics(lamda: float, seed: int) -> tuple[dict, float]:
    result = run_pareto("cosmos", "biquad", steps=300, lr=3e-3, batch=8, seed=seed, params={"lamda": lamda})
    return result.extra["metrics"], float(result.distance.max())


@pytest.mark.parametrize("seed", SEEDS)
def test_cosmos_without_the_cosine_term_learns_the_linear_scalarisation_map(seed):
    m, _ = _metrics(0.0, seed)
    assert m["target"] == "ls"  # λ = 0: the LS oracle is the reference
    assert m["solution_error_max"] <= 0.02, m["solution_error_max"]
    assert m["hypervolume_ratio"] >= 0.99, m["hypervolume_ratio"]
    assert m["held_out_min_distance"] > 0  # the held-out preferences were never trained on


@pytest.mark.parametrize("seed", SEEDS)
def test_the_cosine_weight_moves_the_solutions_towards_their_rays_along_the_front(seed):
    cosines, angles = [], []
    for lamda in (0.0, 1.0, 5.0):
        m, distance = _metrics(lamda, seed)
        r = m["held_out"].to(m["held_out_f"])  # (25, 2)
        cos = cosine_to_preference(m["held_out_f"], r)  # cos(F(r), r), (25,)
        cosines.append(float(cos.mean()))
        angles.append(float(torch.arccos(cos.clamp(-1, 1)).mean()))  # mean angle from the ray r (rad)
        assert distance <= 0.02, (lamda, distance)  # still Pareto optimal (the front is the segment's image)
    assert cosines[1] >= cosines[0] + 0.3 and cosines[2] > cosines[1], cosines
    assert angles[1] <= 0.5 * angles[0] and angles[2] <= 0.6 * angles[1], angles


def test_the_cosine_term_is_stationary_on_the_ray_and_ignores_the_loss_scale():
    gen = torch.Generator().manual_seed(0)
    model = COSMOS(lamda=3.0, K=3, n=2)
    for _ in range(20):
        r = torch._standard_gamma(torch.ones(1, 3, dtype=torch.float64), generator=gen)
        r = r / r.sum()
        scale = float(10.0 ** (torch.rand(1, generator=gen, dtype=torch.float64) * 18 - 6))  # 1e-6 .. 1e12 (below 1e-8: the clamp, D4)
        F = (scale * r).clone().requires_grad_(True)  # ℓ ∥ r
        (grad,) = torch.autograd.grad(model.loss(F, r), F)
        # ∂(r·ℓ − λ cos)/∂ℓ = r at ℓ ∥ r; the cosine's gradient is a difference of terms of size λ/||ℓ||,
        # so its rounding is 64·eps·λ/||ℓ|| (the tolerance follows each input's own scale)
        tol = 64 * torch.finfo(torch.float64).eps * (1 + model.lamda / float(torch.linalg.vector_norm(F.detach())))
        torch.testing.assert_close(grad, r, rtol=0, atol=tol)
        G = torch.rand(4, 3, generator=gen, dtype=torch.float64) + 0.01
        torch.testing.assert_close(cosine_to_preference(scale * G, r.expand(4, 3)), cosine_to_preference(G, r.expand(4, 3)), rtol=1e-14, atol=0)


def test_degenerate_preferences_zero_losses_and_a_single_objective():
    problem = get_problem("biquad")
    model = COSMOS(K=2, n=2)
    vertices = torch.eye(2, dtype=torch.float64)
    X = model(vertices)
    assert torch.isfinite(X).all()
    assert torch.allclose(model(vertices[0]), X[0], rtol=1e-13, atol=1e-15)  # (K,) -> (n,) is the batch's row
    F = problem.losses(X)
    value = model.loss(F, vertices)
    assert torch.isfinite(value)
    zero = model.loss(torch.zeros(1, 2, dtype=torch.float64, requires_grad=True), torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert float(zero.detach()) == 0.0  # ℓ = 0: cos is 0 by the norm clamp (D4), not NaN
    # K = 1: the cosine term is dropped (D4): the single objective's minimiser a_1 = 0 (fails without D4: ℓ_1 = 9.45)
    m = run_pareto("cosmos", "biquad", problem_params={"K": 1, "n": 2}, steps=150, lr=1e-2, seed=0, grid=11).extra["metrics"]
    assert m["held_out_f"].max() <= 1e-3, m["held_out_f"].max()


def test_invalid_inputs_raise_clear_errors():
    model = COSMOS(K=2, n=3)
    with pytest.raises(ValueError, match="not built"):
        COSMOS()(torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="was built for"):
        model.begin(2, 4, steps=1)
    for bad in ({"lamda": -1.0}, {"lamda": float("nan")}, {"alpha": 0.0}):
        with pytest.raises(ValueError):
            reference_impls.create("cosmos", **bad)
