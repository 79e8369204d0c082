"""Which aggregator properties each reference implementation has: a static table, importable without torch.

The properties are those of Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization"
(arXiv 2406.16232, Sec. 2.2 and Table 1; the table of TorchJD's documentation is adapted from it),
plus the scale behaviours the papers claim. ``tests/reference_impls/test_properties.py`` checks every
entry: a property marked ``holds`` on seeded samples (several seeds and shapes, float64 and
float32), a property marked ``fails`` on a counterexample (so the table cannot go stale either way).
The site can render :data:`PROPERTIES` and :data:`TABLE` as they are.

How the methods are run: a fresh instance with the registry defaults (the paper's, unless
:data:`CONFIG` says otherwise), called twice on the same input (stateful methods are read at their
second step, so their state update is exercised), with positive losses f for the methods that use
them. Rescaling a task (linear under scaling, scale equivariance, task-scale invariance) rescales its
gradient and its loss together: f_i → c_i f_i, g_i → c_i g_i.

Statuses: ``holds`` (by design, and checked), ``fails`` (by design, with the reason, and checked on a
counterexample), ``n/a`` (the property does not apply). An entry may carry ``pending``: the property
should hold but a known defect breaks it until the named fix lands (the test is then an xfail).
"""

from __future__ import annotations

from dataclasses import dataclass

HOLDS, FAILS, NA = "holds", "fails", "n/a"

# id -> (title, definition). d = A(J) for a Jacobian J (K, n) with rows g_i.
PROPERTIES: dict[str, tuple[str, str]] = {
    "expected_structure": (
        "Expected structure",
        "d has shape (n,), the dtype and device of J, finite entries, and no exception is raised.",
    ),
    "weighted": ("Weighted", "d = Jᵀw for some w: d lies in the span of the task gradients."),
    "non_conflicting": ("Non-conflicting", "⟨g_i, d⟩ ≥ 0 for every task: no loss increases to first order."),
    "permutation_invariant": ("Permutation invariant", "Relabelling the tasks (permuting the rows of J) leaves d unchanged."),
    "linear_under_scaling": (
        "Linear under scaling",
        "c ↦ A(diag(c) J) is linear on c > 0: a task scaled by c_i counts c_i times as much.",
    ),
    "scale_equivariant": (
        "Scale equivariant",
        "A(σJ) = σ^k A(J) for every σ > 0 (σ from 1e-12 to 1e12), with the degree k given in the table.",
    ),
    "task_scale_invariant": (
        "Task-scale invariant",
        "Rescaling any task (its loss and gradient by c_i > 0) leaves the direction of d unchanged.",
    ),
    "zero_at_strong_stationarity": (
        "Zero at strong stationarity",
        "d = 0 when Jᵀw = 0 for some w > 0 (every task can be traded against all the others).",
    ),
    "zero_at_weak_stationarity": (
        "Zero at weak stationarity",
        "d = 0 when Jᵀw = 0 for some w ≥ 0, w ≠ 0 (a Pareto-stationary point: MGDA's stopping rule).",
    ),
    "nonzero_off_strong_stationarity": (
        "Strongly stationary",
        "d = 0 only if J is strongly stationary (TorchJD's property): d ≠ 0 at weakly but not strongly "
        "stationary points, so the method does not stall there.",
    ),
}


@dataclass(frozen=True)
class Entry:
    status: str  # HOLDS | FAILS | NA
    reason: str = ""  # one line: why (required for FAILS and NA; the argument for a non-obvious HOLDS)
    pending: str = ""  # "pending fix: <item>" while a known defect breaks a property that should hold
    rtol: float | None = None  # a documented looser tolerance (e.g. a regularised solver), else dtype-based
    degree: int = 1  # scale_equivariant only: the k in A(σJ) = σ^k A(J)


# Hyperparameters of the property checks where they differ from the registry defaults.
CONFIG: dict[str, tuple[dict, str]] = {
    "upgrad": (
        {"norm_eps": 0.0, "reg_eps": 0.0},
        "the paper's operator: the default reg_eps = 1e-4 (TorchJD's numerics, D2/D3 of upgrad.py) makes "
        "every property hold only up to ~1e-4, as tests/reference_impls/test_upgrad.py checks",
    ),
}

def _H(reason: str = "", **kw) -> Entry:
    return Entry(HOLDS, reason, **kw)


def _F(reason: str, **kw) -> Entry:
    return Entry(FAILS, reason, **kw)


def _NA(reason: str) -> Entry:
    return Entry(NA, reason)


_STRUCT = _H()
_WEIGHTED = _H("a weighting: d = Jᵀw by construction")
_NONZERO_POSITIVE = "d = Jᵀw with every w_i > 0, so d = 0 forces Jᵀw = 0 with w > 0"
_D3 = "at Pareto-stationary inputs (D3) the deadlocked tasks get ⟨g_i, d⟩ = 0 and d = 0 when J is strongly stationary"

TABLE: dict[str, dict[str, Entry]] = {
    "aligned-mtl": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("aligns the singular values, it does not constrain ⟨g_i, d⟩ (TorchJD: ✗)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("d = σ_min·Jᵀ M^{+1/2} p depends on the spectrum of M, not linearly on c (TorchJD: ✗)"),
        "scale_equivariant": _H("scale_mode='min': d scales with σ_min"),
        "task_scale_invariant": _F("rescaling one task changes the singular vectors of J"),
        "zero_at_strong_stationarity": _F("d = 0 needs 𝟙 ⟂ range(M); a strongly stationary J with a non-uniform w gives d ≠ 0"),
        "zero_at_weak_stationarity": _F("d = 0 needs Jᵀ𝟙 = 0"),
        "nonzero_off_strong_stationarity": _H("d = 0 forces M^{+1/2}𝟙 ∈ ker M, i.e. Jᵀ𝟙 = 0: strongly stationary"),
    },
    "cagrad": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("c = 0.5 < 1 maximises the worst improvement in a ball around the mean only (TorchJD: ✗)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("the ball radius c·||g_0|| and the inner min-max are not linear in c (TorchJD: ✗)"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("g_0 is the mean of the raw gradients"),
        "zero_at_strong_stationarity": _F("⟨d, g_0⟩ ≥ (1 − c)||g_0||², so d ≠ 0 whenever the mean g_0 ≠ 0"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("c < 1: ⟨d, g_0⟩ ≥ (1 − c)||g_0||² > 0 unless Jᵀ𝟙 = 0 (strongly stationary)"),
    },
    "db-mtl": {
        "expected_structure": _STRUCT,
        "weighted": _H("d = Σ α_i ĝ_i and, on a repeated input, the EMA ĝ_i is a multiple of g_i"),
        "non_conflicting": _F("normalises and sums the log-loss gradients: no conflict constraint"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("d depends on the ratios of the gradient norms (normalisation to the largest)"),
        "scale_equivariant": _F("ε = 1e-8 in log(f_i + ε) (LibMTL): d ignores a common scale only while f_i ≫ 1e-8; fails at σ = 1e-12",
                                degree=0),
        "task_scale_invariant": _H("the paper's claim: ∇log(c f) = ∇log f, and the magnitudes are then equalised"),
        "zero_at_strong_stationarity": _F("d ∝ Σ ĝ_i/||ĝ_i|| is zero only if the unit gradients sum to 0"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H(_NONZERO_POSITIVE + " (w_i = max_j ||ĝ_j|| / (f_i ||ĝ_i||))"),
    },
    "fairgrad": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("(Mw)_i = ⟨g_i, d⟩ = w_i^{-1/α} > 0; " + _D3),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("(Mw)_i = w_i^{-1/α} is not linear in the task scales for α ≠ 1"),
        "scale_equivariant": _F("d(σJ) = σ^{(1−α)/(1+α)} d(J) (σ^{-1/3} at α = 2), then clipped to ||d|| ≤ max_norm = 1"),
        "task_scale_invariant": _F("α-fairness is scale invariant only at α = 1 (Nash-MTL)"),
        "zero_at_strong_stationarity": _H("non-conflicting and weighted: w > 0 with Jᵀw = 0 gives ||d||² = 0; " + _D3),
        "zero_at_weak_stationarity": _F("D3: at weakly stationary inputs only the deadlocked tasks get ⟨g_i, d⟩ = 0; the others still descend, so d ≠ 0"),
        "nonzero_off_strong_stationarity": _H(_NONZERO_POSITIVE),
    },
    "famo": {
        "expected_structure": _STRUCT,
        "weighted": _H("d = Σ c_i g_i with c_i ∝ z_i/f_i"),
        "non_conflicting": _F("the weights depend on the losses only, not on the gradients"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("c_i ∝ z_i/f_i: scaling a task's loss by c_i divides its weight by c_i"),
        "scale_equivariant": _F("ε = 1e-8 is added to every loss (official code): exact only while f_i ≫ 1e-8, fails at σ = 1e-12"),
        "task_scale_invariant": _H("g_i/f_i is unchanged by f_i → c f_i (the log-loss gradient); tolerance 1e-6 for the ε = 1e-8", rtol=1e-6),
        "zero_at_strong_stationarity": _F("weights from the losses: a generic positive w is not the one with Jᵀw = 0"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H(_NONZERO_POSITIVE),
    },
    "graddrop": {
        "expected_structure": _STRUCT,
        "weighted": _F("drops gradient entries coordinate by coordinate: d leaves the span of the g_i (TorchJD: ✗)"),
        "non_conflicting": _F("random sign selection per coordinate (TorchJD: ✗)"),
        "permutation_invariant": _H("the sign purity P and the uniform draws U are per coordinate, not per task"),
        "linear_under_scaling": _F("the masks depend on the gradient values (TorchJD: ✗)"),
        "scale_equivariant": _H("P = ½(1 + Σg/Σ|g|) ignores a common scale"),
        "task_scale_invariant": _F("P depends on the relative magnitudes of the tasks"),
        "zero_at_strong_stationarity": _F("each coordinate keeps the entries of one sign, which do not cancel"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("each nonzero coordinate keeps a nonzero same-sign sum: d = 0 only if J = 0"),
    },
    "gradnorm": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("learned loss weights, no conflict constraint"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("the weight step uses ||g_i|| and the target Ḡ·r_i^α"),
        "scale_equivariant": _F("the weight step w_i − lr·sign(·)·||g_i|| is not scale free"),
        "task_scale_invariant": _F("the weights equalise w_i||g_i|| only at convergence, not in one step"),
        "zero_at_strong_stationarity": _F("the weights do not depend on stationarity"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("w_i > 0 at the default Adam step (lr = 1e-4); a large SGD step can clip a "
                                              "w_i to 0 (D1) and then d = 0 at J = [g; 0]"),
    },
    "gradvac": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("for K ≥ 3 a later projection can re-create a conflict (as PCGrad)"),
        "permutation_invariant": _F("for K ≥ 3 each task's partners are visited in a random order"),
        "linear_under_scaling": _H("the added multiple of g_j is ∝ ||g_i||/||g_j|| times a function of the cosine"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("d is a sum of the adjusted gradients on their own scales"),
        "zero_at_strong_stationarity": _F("a sum of adjusted gradients, not a stationarity test"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("the adjustment adds positive multiples (sin(θ − θ̂) > 0): " + _NONZERO_POSITIVE),
    },
    "imtl-g": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("⟨d, g_i⟩ = c·||g_i|| with c of the sign of Σ(M⁻¹𝔫)_i, which can be negative (TorchJD: ✗)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("α(CJ) = C⁻¹α/Σ_i(α_i/c_i) is not linear in c (TorchJD: ✗)"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("d(CJ) = d(J)/Σ_i(α_i/c_i): the factor is negative for some c when α has a negative entry; "
                                   "singular M take the minimum-norm solution"),
        "zero_at_strong_stationarity": _H("equal projections c on every u_i and Σ w_i⟨g_i, d⟩ = 0 with w > 0 give c = 0, so d = 0"),
        "zero_at_weak_stationarity": _F("a zero gradient row is left out of the conditions (documented), so J = [g; 0] gives d = g"),
        "nonzero_off_strong_stationarity": _F("equal projections on all u_i force d = 0 at every weakly stationary J without zero rows"),
    },
    "imtl-l": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "ew": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "uw": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "dwa": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "rlw": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "stch": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "stch-mtl": {p: _NA("loss-level method: its weights come from the losses alone and it takes no Jacobian") for p in PROPERTIES},
    "auto-lambda": {p: _NA("bi-level loss weighting: its weights come from a meta-gradient on validation losses and it takes no Jacobian") for p in PROPERTIES},
    "moml": {p: _NA("bi-level loss weighting: its weights come from MGDA on hypergradients of validation losses and it takes no Jacobian") for p in PROPERTIES},
    "forum": {p: _NA("bi-level loss weighting: its weights and model step come from a value-function constrained QP on validation gradients; it takes no Jacobian of the task losses") for p in PROPERTIES},
    "mgda": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("min-norm point of conv{g_i}: ⟨g_i, d⟩ ≥ ||d||² (KKT)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("the min-norm point moves non-linearly with the task scales (TorchJD: ✗)"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("the min-norm point favours the smallest gradients"),
        "zero_at_strong_stationarity": _H("0 ∈ conv{g_i}"),
        "zero_at_weak_stationarity": _H("0 ∈ conv{g_i} for any w ≥ 0, w ≠ 0 with Jᵀw = 0"),
        "nonzero_off_strong_stationarity": _F("stops at every weakly stationary point (the reason UPGrad was proposed)"),
    },
    # SMG on one (stochastic) Jacobian is MGDA on it: the same properties, for the same reasons.
    "smg": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("MGDA on the sampled J: ⟨ĝ_i, d⟩ ≥ ||d||² for the SAMPLED gradients (not for the true ones)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("MGDA's min-norm point moves non-linearly with the task scales"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("the min-norm point favours the smallest gradients"),
        "zero_at_strong_stationarity": _H("0 ∈ conv{ĝ_i}"),
        "zero_at_weak_stationarity": _H("0 ∈ conv{ĝ_i} for any w ≥ 0, w ≠ 0 with Ĵᵀw = 0"),
        "nonzero_off_strong_stationarity": _F("MGDA's rule: stops at every weakly stationary sampled J"),
    },
    # PSMGD read on a repeated input (the table's protocol for stateful methods): its reused weights
    # are MGDA's weights of that same J. Across steps with a changing J the reused λ is an older J's,
    # so non-conflict and the zero-at-stationarity rules hold on recompute steps only.
    "psmgd": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("recompute steps: MGDA's KKT ⟨g_i, d⟩ ≥ ||d||²; reuse steps on a changed J carry no guarantee"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("MGDA's min-norm point moves non-linearly with the task scales"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("the min-norm point favours the smallest gradients"),
        "zero_at_strong_stationarity": _H("0 ∈ conv{g_i} on the J the weights were computed from"),
        "zero_at_weak_stationarity": _H("0 ∈ conv{g_i} on the J the weights were computed from"),
        "nonzero_off_strong_stationarity": _F("MGDA's rule on recompute steps: stops at every weakly stationary J"),
    },
    # MGDA-GS read at its second step on a repeated input, after its warm start (40 + 2 projected-gradient
    # steps on the ρ-regularised subproblem with β = ρ = 0.5): an approximation of argmin wᵀ(M + ρI)w, not MGDA's λ.
    "mgda-gs": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("42 projected-gradient steps with a fixed β and ρ = 0.5 do not reach MGDA's min-norm point"),
        "permutation_invariant": _H("the projected-gradient step and the simplex projection commute with relabelling"),
        "linear_under_scaling": _F("the weights' step β(M + ρI)w mixes the task scales"),
        "scale_equivariant": _F("the step β(M + ρI)w has a fixed β and ρ: the weights depend on the gradient scale"),
        "task_scale_invariant": _F("as scale equivariance, task by task"),
        "zero_at_strong_stationarity": _F("ρ > 0 and finitely many steps: w is not the stationarity certificate"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("at the table's second step: a step from a vertex re-spreads βρ/K onto every task; "
                                              "transiently (e.g. the FIRST call on J = [100, 0; 0, 0]) w can sit on a vertex with d = 0 (test_mgda_gs.py)"),
    },
    "moco": {
        "expected_structure": _STRUCT,
        "weighted": _H("d = Yᵀλ and, on a repeated input, each tracked Y_i is a multiple of g_i"),
        "non_conflicting": _F("one projected-gradient step on the MGDA dual per iteration, not its solution"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("λ − γ(YYᵀ)λ mixes the task scales"),
        "scale_equivariant": _F("the step γ(YYᵀ)λ has a fixed γ: the weights depend on the gradient scale"),
        "task_scale_invariant": _F("as scale equivariance, task by task"),
        "zero_at_strong_stationarity": _F("λ after one projected step is not the stationarity certificate"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _F("the projection can put λ on a vertex: J = [g; 0] with large ||g|| gives λ = (0, 1), d = 0"),
    },
    "cr-mogm": {  # base MGDA; the table's protocol repeats the input, so λ_2 = (1 − α)λ̂ + αλ̂ = MGDA's λ̂
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("on a repeated input the average of MGDA's weights is MGDA's: ⟨g_i, d⟩ ≥ ||d||² (KKT); "
                              "on changing inputs the averaged weights are not the current min-norm point"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("MGDA's min-norm point moves non-linearly with the task scales"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("the min-norm point favours the smallest gradients"),
        "zero_at_strong_stationarity": _H("0 ∈ conv{g_i} (MGDA's weights, repeated input)"),
        "zero_at_weak_stationarity": _H("0 ∈ conv{g_i} for any w ≥ 0, w ≠ 0 with Jᵀw = 0 (MGDA's weights, repeated input)"),
        "nonzero_off_strong_stationarity": _F("stops at every weakly stationary point, as its base MGDA"),
    },
    "modo": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("one projected-gradient step on the (regularised) MGDA dual per iteration, not its solution"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("λ − γ(JJᵀ + ρI)λ mixes the task scales"),
        "scale_equivariant": _F("the step γ(JJᵀ + ρI)λ has a fixed γ: the weights depend on the gradient scale"),
        "task_scale_invariant": _F("as scale equivariance, task by task"),
        "zero_at_strong_stationarity": _F("λ after two projected steps from 𝟙/K is not the stationarity certificate"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("ρ = 0.1 > 0: a step from a vertex shrinks it to (1 − γρ)e_j and the projection re-centres "
                                              "it, so for J = [g; 0] the second λ keeps weight on g for every ||g|| (d ≠ 0; "
                                              "test_modo.py); checked on every sample, not proven for every J (MoCo, ρ = 0, fails)"),
    },
    "nash-mtl": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("⟨g_i, d⟩ = 1/α_i > 0 at the bargaining solution (Jacobian-descent paper: ✓); " + _D3),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("(Mα)_i = 1/α_i gives d(CJ) = d(J): invariant, not linear (TorchJD: ✗)"),
        "scale_equivariant": _H("the bargaining solution ignores a common scale; the clip to max_norm = 1 too", degree=0),
        "task_scale_invariant": _H("the Nash bargaining solution is invariant to the utilities' scales (paper); " + _D3),
        "zero_at_strong_stationarity": _H("non-conflicting and weighted: w > 0 with Jᵀw = 0 gives ||d||² = 0; " + _D3),
        "zero_at_weak_stationarity": _F("D3: at weakly stationary inputs only the deadlocked tasks get ⟨g_i, d⟩ = 0; the others still descend, so d ≠ 0"),
        "nonzero_off_strong_stationarity": _H(_NONZERO_POSITIVE),
    },
    "pcgrad": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("only for K = 2 (the paper's theorem); for K ≥ 3 a later projection can re-create a conflict (TorchJD: ✗)"),
        "permutation_invariant": _F("for K ≥ 3 each task's partners are visited in a random order"),
        "linear_under_scaling": _H("projections are homogeneous in the projected row and scale free in the other (Jacobian-descent paper: ✓)"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("d is a sum of the projected gradients on their own scales"),
        "zero_at_strong_stationarity": _F("a sum of projected gradients, not a stationarity test"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("each projection adds a positive multiple of the other gradient: " + _NONZERO_POSITIVE),
    },
    "sdmgrad": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _F("λ = 0.3 pulls d towards the mean g_0, which may conflict"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _F("a min-norm problem on shifted points: not linear in the scales"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("g_0 is the mean of the raw gradients"),
        "zero_at_strong_stationarity": _F("needs a w > 0 with Jᵀw = 0 and w_i ≥ λ/(K(1 + λ)) for all i"),
        "zero_at_weak_stationarity": _F("as for strong stationarity"),
        "nonzero_off_strong_stationarity": _H("d = Jᵀ(w + λ𝟙/K) with w ∈ Δ: every weight ≥ λ/K > 0"),
    },
    "upgrad": {
        "expected_structure": _STRUCT,
        "weighted": _WEIGHTED,
        "non_conflicting": _H("each projection lies in the dual cone {x : Jx ≥ 0} (TorchJD: ✓)"),
        "permutation_invariant": _H(),
        "linear_under_scaling": _H("the dual cone of diag(c)J is that of J, so π(c_i g_i) = c_i π(g_i) (TorchJD: ✓)"),
        "scale_equivariant": _H(),
        "task_scale_invariant": _F("linear under scaling instead: a task scaled by c_i counts c_i times as much"),
        "zero_at_strong_stationarity": _H("non-conflicting and weighted: w > 0 with Jᵀw = 0 gives ||d||² = 0"),
        "zero_at_weak_stationarity": _F("strongly stationary instead: it does not stall at weakly stationary points"),
        "nonzero_off_strong_stationarity": _H("Jacobian-descent paper, Prop. on UPGrad (TorchJD: ✓)"),
    },
}


def _set_method_rows() -> None:
    """Set methods (registry interface "set") move P solutions from (X, F, J (P, K, n), preferences):
    they are not aggregators d = A(J) of one Jacobian, so no aggregator property applies."""
    from reference_impls.registry import REGISTRY

    reason = "set method: it moves P solutions jointly from their Jacobians and preferences, it is not an aggregator d = A(J) of one Jacobian"
    for name, entry in REGISTRY.items():
        if entry.interface == "set":
            TABLE.setdefault(name, {p: _NA(reason) for p in PROPERTIES})
        elif entry.interface == "pareto-model":  # PHN, ...: a module r ↦ x(r) trained on sampled preferences
            pareto = "Pareto-set model: it maps a preference to a solution and is trained on sampled preferences, it is not an aggregator d = A(J) of one Jacobian"
            TABLE.setdefault(name, {p: _NA(pareto) for p in PROPERTIES})


_set_method_rows()


def status(method: str, prop: str) -> Entry:
    return TABLE[method][prop]
