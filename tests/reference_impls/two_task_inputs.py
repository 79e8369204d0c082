"""Random two-task Jacobians for the tests of the K = 2 fast paths, generic and near-degenerate.

Each family is generated from its own seed, so a test can say which family an input came from.
"""

from __future__ import annotations

import torch

FAMILIES = (
    "generic",  # rows of comparable norms, any angle
    "nearly-opposite",  # g_2 = −g_1 (1 + δ) + δ' noise, δ ~ 1e-9 (0 ∈ conv{g_i} to ~1e-9)
    "nearly-collinear",  # g_2 = 3 g_1 + 1e-12 noise (the same direction to ~1e-12)
    "unequal-scales",  # one row multiplied by 10^k, k ∈ [−8, 8]
    "global-scale",  # J multiplied by 10^k, k ∈ [−30, 30)
    "identical",  # g_2 = g_1 exactly
    "opposite",  # g_2 = −g_1 exactly
    "orthogonal",  # ⟨g_1, g_2⟩ = 0 up to rounding
    "zero-row",  # one row exactly zero
    "toy",  # the cagrad-toy Jacobian (n = 2) at random points of [−10, 10]² and near its Pareto set
)


def two_task_jacobians(family: str, count: int, dtype: torch.dtype = torch.float64, seed: int = 0, n: int = 5) -> list[torch.Tensor]:
    """``count`` Jacobians (2, n) of one family, in ``dtype`` (generated in float64, then rounded)."""
    gen = torch.Generator().manual_seed(1000 * FAMILIES.index(family) + seed)
    out = []
    if family == "toy":
        from reference_impls.problems import get_problem

        problem = get_problem("cagrad-toy")
        x = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 20 - 10  # (count, 2)
        x[count // 2 :, 1] = -8.6 + 0.4 * torch.rand(count - count // 2, generator=gen, dtype=torch.float64)  # near the set
        x[count // 2 :, 0] = -7 + 14 * torch.rand(count - count // 2, generator=gen, dtype=torch.float64)
        _, J = problem.value_and_jacobian(x)  # (count, 2, 2)
        return [J[i].to(dtype) for i in range(count)]
    for _ in range(count):
        J = torch.randn(2, n, generator=gen, dtype=torch.float64)  # (2, n)
        noise = torch.randn(n, generator=gen, dtype=torch.float64)
        if family == "nearly-opposite":
            J[1] = -J[0] * (1 + 1e-9 * float(torch.randn(1, generator=gen, dtype=torch.float64))) + 1e-9 * noise
        elif family == "nearly-collinear":
            J[1] = 3.0 * J[0] + 1e-12 * noise
        elif family == "unequal-scales":
            J[int(torch.randint(2, (1,), generator=gen))] *= 10.0 ** float(torch.randint(-8, 9, (1,), generator=gen))
        elif family == "global-scale":
            J *= 10.0 ** float(torch.randint(-30, 30, (1,), generator=gen))
        elif family == "identical":
            J[1] = J[0]
        elif family == "opposite":
            J[1] = -J[0]
        elif family == "orthogonal":
            J[1] -= (J[1] @ J[0]) / (J[0] @ J[0]) * J[0]
        elif family == "zero-row":
            J[int(torch.randint(2, (1,), generator=gen))] = 0.0
        out.append(J.to(dtype))
    return out


def all_two_task_jacobians(count: int = 200, dtype: torch.dtype = torch.float64, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(family, J) for ``count`` Jacobians of every family."""
    return [(family, J) for family in FAMILIES for J in two_task_jacobians(family, count, dtype, seed)]
