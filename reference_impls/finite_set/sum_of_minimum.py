r"""Sum-of-minimum optimisation (id ``sum-of-minimum``): k solutions, each objective served by its best one.

Paper: Lisang Ding, Ziang Chen, Xinshang Wang, Wotao Yin, "Efficient Algorithms for Sum-of-Minimum
Optimization", ICML 2024 (PMLR 235), arXiv:2402.07070. Official code: github.com/LisangDing/
Sum-of-Minimum_Optimization (MATLAB ``Mixed_LR_regu_new.m``: ``careful_seeding`` and the exact
alternation ``EM``; Python ``Mixed_NLR_momentum.py``: the gradient-based alternation on networks).

Update rule:
    Problem (1) of the paper, with :math:`P = k` solutions and the :math:`K` objectives (the
    paper's :math:`N`):

    .. math::

        \min_{x_1, \dots, x_P}\ S(X) = \frac{1}{K} \sum_{i=1}^K \min_{1 \le p \le P} f_i(x_p)

    Seeding (``initial_set``; the paper's k-means++-style initialisation, as ``careful_seeding``
    computes it), with :math:`a_i` the minimiser of :math:`f_i` (from the problem) and the weights
    of already drawn indices set to 0:

    .. math::

        i_1 \sim \operatorname{Uniform}\{1, \dots, K\}, \qquad x_p = a_{i_p}, \qquad w_i = \min_{q < p} \lVert \nabla f_i(x_q) \rVert^2, \qquad i_p \sim \frac{w}{\sum_j w_j} \quad (p = 2, \dots, P)

    For :math:`f_i = \lVert x - a_i \rVert^2` the weight is :math:`4 \lVert x_q - a_i \rVert^2`:
    exactly the :math:`D^2` sampling of k-means++ (Arthur & Vassilvitskii 2007).

    Alternation (the generalised Lloyd algorithm; ``step``): every ``reassign_every`` steps each
    objective is assigned to its best solution (ties: the lowest solution index, as MATLAB's ``min``
    in the official ``EM``), and each solution descends the mean of its group (default
    ``normalize="group"``; :math:`D_p = 0` for an empty group) with the runner's optimiser (the
    problem's; shown for plain SGD):

    .. math::

        C_p = \{ i : p = \arg\min_q f_i(x_q) \}, \qquad D_p = \frac{1}{\lvert C_p \rvert} \sum_{i \in C_p} \nabla f_i(x_p), \qquad X \leftarrow X - \eta D

    ``normalize="total"`` uses the gradient of :math:`S` instead (D1):
    :math:`D_p = \tfrac{1}{K} \sum_{i \in C_p} \nabla f_i(x_p)`.

D is the gradient of the mean of each solution's assigned objectives (not the exact inner solve folded
into D): the step must work through the runner's optimiser on any problem, where the group's minimiser
has no closed form; the official network code does the same (gradient steps on ``loss / len(classes[j])``).
On ``clusters`` (squared distances to anchor points, group Hessian 2I) SGD with η = 1/2 *is* the exact
inner minimisation (each solution moves to the mean of its group's anchors), so ``reassign_every=1``,
SGD, lr 0.5 is Lloyd's algorithm exactly (and the official MATLAB ``EM``, whose inner solve is exact):
the tests use it for the monotonicity claim. The minimisers come from ``problem.objective_minimisers()``
(the ``initial_set`` hook's ``minimisers``).

Defaults (None: the problem's runner defaults): the paper fixes no toy step size. ``seeding="careful"``
(the paper's), ``reassign_every=1`` (every step; the official network code takes ``inner_iter = 10``
gradient steps per assignment), ``normalize="group"`` (the official code's per-group mean).

Degenerate inputs: P ≥ K (more solutions than objectives; seeding draws every minimiser, after which all
weights are 0 and the remaining solutions keep their starting points; they are then assigned nothing and
stay, and S = 0 is reached); K = 1 (one group: gradient descent on the one objective for the solution
that serves it); an empty group leaves its solution where it is (the official ``EM`` keeps its point
when nothing is assigned); exact ties go to the lowest index; non-finite F or J raise ValueError.

Deviations:
    D1. Reconstructed in part: the paper's text beyond its abstract was not reachable here; the seeding
        and the exact alternation follow the official MATLAB code (``careful_seeding``, ``EM``), the
        gradient alternation its network code. The paper's analysis of the gradient variant may scale
        the step by the group's share of the objectives, :math:`\lvert C_p \rvert / K` (the gradient of
        S in that solution, ``normalize="total"`` here), where the code uses the group mean; both are
        offered, the code's is the default.
    D2. No momentum buffer: the official network code adds heavy-ball momentum (β = 0.1) to the inner
        steps; here the runner's optimiser (SGD, or Adam's moments) takes its place.
    D3. Seeding draws one index per solution (the code's ``N_sample = 1``) and takes the objective's
        minimiser from the problem instead of minimising that objective numerically; without known
        minimisers (``minimisers=None``) it keeps the problem's starting set (the code's plain random
        start, "EM").
    D4. The official ``EM`` stops when the assignment no longer changes; here the runner's step budget
        ends the run (a fixed point of the assignment with D = 0 simply stays).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.sets import SetMethod

_SEEDINGS = ("careful", "uniform", "none")
_NORMALIZE = ("group", "total")


def assign_objectives(F: Tensor) -> Tensor:
    """The serving solution of each objective (K,): argmin_p F_pi, ties to the lowest index p."""
    is_min = F == F.min(0, keepdim=True).values  # (P, K)
    return is_min.to(torch.int64).argmax(0)  # the first (lowest) p attaining the minimum, (K,)


class SumOfMinimum(SetMethod):
    """Generalised Lloyd alternation on S(X) = (1/K) Σ_i min_p f_i(x_p), with the paper's careful seeding."""

    name = "sum-of-minimum"
    needs_preferences = False
    stateful = True  # the assignment is kept between reassignments
    default_optimizer: ClassVar[str | None] = None
    default_lr: ClassVar[float | None] = None
    default_steps: ClassVar[int | None] = None

    def __init__(self, seeding: str = "careful", reassign_every: int = 1, normalize: str = "group", seed: int | None = None) -> None:
        if seeding not in _SEEDINGS:
            raise ValueError(f"sum-of-minimum: seeding must be one of {_SEEDINGS}, got {seeding!r}")
        if normalize not in _NORMALIZE:
            raise ValueError(f"sum-of-minimum: normalize must be one of {_NORMALIZE}, got {normalize!r}")
        if int(reassign_every) != reassign_every or int(reassign_every) < 1:
            raise ValueError(f"sum-of-minimum: reassign_every must be a positive integer, got {reassign_every!r}")
        self.seeding, self.normalize = seeding, normalize
        self.reassign_every = int(reassign_every)
        self.seed = seed  # None: the global torch RNG (the runner seeds it); else a private generator
        self.reset()

    def reset(self) -> None:
        self.assignment: Tensor | None = None  # (K,) serving solution of each objective
        self._t = 0
        self.seeded_indices: list[int] = []  # the objectives whose minimisers seeded the set

    # ------------------------------------------------------------------------------------------
    # Seeding
    # ------------------------------------------------------------------------------------------

    def initial_set(self, X0: Tensor, evaluate: Callable[[Tensor], tuple[Tensor, Tensor]], *, minimisers: Tensor | None = None) -> Tensor | None:
        self.reset()
        if self.seeding == "none" or minimisers is None:
            return None  # D3: no minimisers, keep the problem's starting set
        A = torch.as_tensor(minimisers).to(X0)  # (K, n)
        if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] != X0.shape[1] or not bool(torch.isfinite(A).all()):
            raise ValueError(f"sum-of-minimum: minimisers must be finite with shape (K, {X0.shape[1]}), got {tuple(A.shape)}")
        P, K = X0.shape[0], A.shape[0]
        gen = torch.Generator().manual_seed(int(self.seed)) if self.seed is not None else None
        X = X0.clone()  # (P, n); rows past the last drawn minimiser keep X0
        if self.seeding == "uniform":  # the code's uniform_seeding: distinct indices uniformly
            idx = torch.randperm(K, generator=gen)[: min(P, K)]
            X[: len(idx)] = A[idx]
            self.seeded_indices = idx.tolist()
            return X
        weights = torch.full((K,), float("inf"), dtype=X0.dtype)  # min_q ||∇f_i(x_q)||², (K,)
        i = int(torch.randint(K, (1,), generator=gen))  # i_1 ~ uniform
        for p in range(P):
            X[p] = A[i]  # x_p = argmin f_{i_p}
            self.seeded_indices.append(i)
            if p == P - 1:
                break
            _, J = evaluate(X[p : p + 1])  # (1, K, n)
            if not bool(torch.isfinite(J).all()):
                raise ValueError("sum-of-minimum: non-finite gradients at a seeding minimiser")
            grad2 = (J[0].to(X0.dtype) ** 2).sum(-1).cpu()  # ||∇f_i(x_p)||², (K,)
            weights = torch.minimum(weights, grad2)  # w_i = min_q ||∇f_i(x_q)||²
            weights[self.seeded_indices] = 0.0  # drawn indices are served (the code's grad_square[i] = 0)
            total = float(weights.sum())
            if not total > 0:
                break  # every objective served exactly (P ≥ K): the rest keep X0
            i = int(torch.multinomial(weights / total, 1, generator=gen))  # i_p ~ w / Σ w
        return X

    # ------------------------------------------------------------------------------------------
    # Alternation
    # ------------------------------------------------------------------------------------------

    def step(self, X: Tensor, F: Tensor, J: Tensor, preferences: Tensor | None) -> Tensor:
        P, K, n = J.shape
        if F.shape != (P, K):
            raise ValueError(f"sum-of-minimum: F has shape {tuple(F.shape)}, expected ({P}, {K})")
        if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
            raise ValueError("sum-of-minimum: non-finite losses or gradients")
        if self.assignment is None or self.assignment.shape[0] != K or self._t % self.reassign_every == 0:
            self.assignment = assign_objectives(F)  # C_p = {i : p = argmin_q f_i(x_q)}, (K,)
        self._t += 1
        member = torch.nn.functional.one_hot(self.assignment, P).T.to(J)  # M_pi = [i ∈ C_p], (P, K)
        summed = torch.einsum("pk,pkn->pn", member, J)  # Σ_{i∈C_p} ∇f_i(x_p), (P, n)
        if self.normalize == "group":
            return summed / member.sum(1).clamp_min(1)[:, None]  # D_p = mean_{i∈C_p} ∇f_i(x_p); 0 if C_p = ∅, (P, n)
        return summed / K  # D_p = ∂S/∂x_p = (1/K) Σ_{i∈C_p} ∇f_i(x_p), (P, n)


def sum_of_minimum_value(F: Tensor) -> Tensor:
    """S(X) = (1/K) Σ_i min_p F_pi for F (P, K) (or (..., P, K) -> (...))."""
    return F.min(-2).values.mean(-1)


__all__ = ["SumOfMinimum", "assign_objectives", "sum_of_minimum_value"]
