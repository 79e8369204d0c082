"""``jacobian()``: the vectorised backward pass (``batched=True``, the default) gives the rows of the
K one-row passes (``batched=False``), on real layers (linear, conv, batch norm, pooling), with heads,
task-specific parameters and parameters no loss reaches; chunking, graph release and the fallback to
the K passes when vmap cannot batch the graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reference_impls.core.aggregator as aggregator_module
from reference_impls.core.aggregator import jacobian

SEEDS = (0, 1, 2)


def _network(kind: str, K: int, dtype: torch.dtype, seed: int):
    """A shared encoder with K heads on a fixed batch; an extra shared parameter no loss uses.

    Head i's loss is scaled by 10^(i - K/2) so that the rows span several orders of magnitude."""
    torch.manual_seed(seed)
    if kind == "mlp":
        encoder = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.Tanh())
        X = torch.randn(10, 6)  # (B, d_in)
    else:
        encoder = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )  # fmt: skip  # -> (B, 12)
        X = torch.randn(10, 2, 8, 8)  # (B, C, H, W)
    heads = nn.ModuleList([nn.Linear(12, 2) for _ in range(K)])
    unused = nn.Parameter(torch.randn(5, dtype=dtype))  # shared, but no loss depends on it
    encoder.to(dtype)
    heads.to(dtype)
    Y = torch.randn(10, K, 2, dtype=dtype)  # (B, K, 2)
    X = X.to(dtype)

    def losses():
        Z = encoder(X)  # (B, 12)
        return [10.0 ** (i - K // 2) * ((head(Z) - Y[:, i]) ** 2).mean() for i, head in enumerate(heads)]

    shared = [*list(encoder.parameters())[:2], unused, *list(encoder.parameters())[2:]]
    return losses, shared, list(heads.parameters())


def _assert_rows_close(J: torch.Tensor, J_ref: torch.Tensor, rtol: float) -> None:
    """Row-wise relative agreement: ‖J_i − J_ref_i‖ ≤ rtol ‖J_ref_i‖ for every task i."""
    err = (J - J_ref).norm(dim=1)  # (K,)
    scale = J_ref.norm(dim=1)  # (K,)
    assert bool((scale > 0).all()), "every task reaches some shared parameter"
    assert bool((err <= rtol * scale).all()), f"row errors {(err / scale).tolist()} exceed {rtol}"


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed", SEEDS)
def test_batched_rows_equal_the_one_row_passes(kind, dtype, rtol, seed):
    """Over 3 seeds × {MLP, CNN with batch norm} × {float64, float32}: the batched Jacobian equals the
    loop's row by row (relative to each row's own norm), the unused parameter's columns are exactly
    zero in both, and the heads get the same Σ_i ∇f_i, each head exactly its own task's gradient."""
    K = 5
    losses, shared, heads = _network(kind, K, dtype, seed)
    J_loop, heads_loop = jacobian(losses(), shared, heads, batched=False)  # (K, n)
    J_batched, heads_batched = jacobian(losses(), shared, heads, batched=True)  # (K, n)
    assert J_batched.dtype == J_loop.dtype == dtype
    _assert_rows_close(J_batched, J_loop, rtol)
    start = shared[0].numel() + shared[1].numel()
    assert bool((J_batched[:, start : start + 5] == 0).all()) and bool((J_loop[:, start : start + 5] == 0).all())
    # Each head's gradient: only its own loss depends on it, computed here on its own.
    f = losses()
    for i in range(K):
        own = torch.autograd.grad(f[i], heads[2 * i : 2 * i + 2], retain_graph=True)
        for got_b, got_l, want in zip(heads_batched[2 * i : 2 * i + 2], heads_loop[2 * i : 2 * i + 2], own):
            for got in (got_b, got_l):
                assert torch.allclose(got, want, rtol=rtol, atol=rtol * float(want.abs().max()))


def test_rows_beyond_one_chunk_are_computed_in_several_batched_passes(monkeypatch):
    """K = 7 tasks with chunks of 3 rows (passes of 3, 3, 1): same rows as the loop, graph released after."""
    monkeypatch.setattr(aggregator_module, "BATCHED_ROWS", 3)
    losses, shared, heads = _network("mlp", 7, torch.float64, 0)
    J_loop, _ = jacobian(losses(), shared, heads, batched=False)
    f = losses()
    J_batched, _ = jacobian(f, shared, heads, batched=True)
    _assert_rows_close(J_batched, J_loop, 1e-12)
    with pytest.raises(RuntimeError, match="second time"):
        sum(f).backward()


@pytest.mark.parametrize("batched", [False, True])
def test_the_graph_is_kept_only_with_keep_graph(batched):
    losses, shared, heads = _network("mlp", 3, torch.float64, 0)
    f = losses()
    J1, _ = jacobian(f, shared, heads, keep_graph=True, batched=batched)
    J2, _ = jacobian(f, shared, heads, batched=batched)  # the kept graph serves a second time
    assert torch.equal(J1, J2)
    with pytest.raises(RuntimeError, match="second time"):
        sum(f).backward()


class _SignGate(torch.autograd.Function):
    """Identity whose backward branches on the incoming gradient's values: vmap cannot batch it."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        if bool(grad.sum() >= 0):  # data-dependent control flow: an error under vmap
            return grad
        return grad.clone()


def _gated_network(gate_below_tanh: bool):
    """Encoder (linear, tanh) and 3 heads; the unbatchable gate sits at the split (on Z) or under the tanh."""
    torch.manual_seed(0)
    encoder = nn.Linear(4, 6).double()
    heads = nn.ModuleList([nn.Linear(6, 1).double() for _ in range(3)])
    X = torch.randn(8, 4, dtype=torch.float64)

    def losses(gate: bool = True):
        pre = encoder(X)  # (B, 6)
        if gate and gate_below_tanh:
            pre = _SignGate.apply(pre)
        Z = torch.tanh(pre)  # (B, 6)
        if gate and not gate_below_tanh:
            Z = _SignGate.apply(Z)
        return [(head(Z) ** 2).mean() for head in heads]

    return losses, list(encoder.parameters()), list(heads.parameters())


def test_an_unbatchable_node_in_a_task_specific_part_is_differentiated_unbatched():
    """The gate wraps each loss: it lies in the task-specific parts, which are differentiated one task
    at a time, so even batched=True works and gives the loop's rows."""
    losses, shared, heads = _network("mlp", 4, torch.float64, 1)
    J_loop, _ = jacobian(losses(), shared, heads, batched=False)
    J_batched, _ = jacobian([_SignGate.apply(f) for f in losses()], shared, heads, batched=True)
    _assert_rows_close(J_batched, J_loop, 1e-12)


def test_falls_back_to_one_row_passes_when_vmap_cannot_batch_the_shared_part():
    """The gate is the first shared node (on Z, where the heads split off): the batched pass fails
    before freeing anything, so the default falls back to K passes and gives their rows;
    batched=True raises."""
    losses, shared, heads = _gated_network(gate_below_tanh=False)
    J_loop, _ = jacobian(losses(gate=False), shared, heads, batched=False)  # the gate is an identity
    J_auto, _ = jacobian(losses(), shared, heads)
    _assert_rows_close(J_auto, J_loop, 1e-12)
    with pytest.raises(RuntimeError):
        jacobian(losses(), shared, heads, batched=True)


def test_a_failed_batched_pass_that_freed_the_graph_says_to_use_the_loop():
    """The gate sits under the tanh: the batched pass frees the tanh's saved output before failing,
    so the K passes cannot run on that graph; the error says what to do."""
    losses, shared, heads = _gated_network(gate_below_tanh=True)
    with pytest.raises(RuntimeError, match="batched=False"):
        jacobian(losses(), shared, heads)


def _graph_case(case: str):
    """Graph shapes that exercise where the automatic split between heads and encoder goes, or why
    it is not used: returns (losses(), shared params, task params)."""
    torch.manual_seed(3)
    lin1, lin2, lin3 = nn.Linear(4, 5).double(), nn.Linear(5, 5).double(), nn.Linear(5, 5).double()
    heads = nn.ModuleList([nn.Linear(5, 1).double() for _ in range(4)])
    tied = nn.Parameter(torch.randn(5, dtype=torch.float64))  # a "task" vector two heads share
    solo = nn.Parameter(torch.randn(5, dtype=torch.float64))  # a "shared" vector only task 0 uses
    X, Y = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    shared, task = [*lin1.parameters(), *lin2.parameters(), *lin3.parameters()], list(heads.parameters())

    def losses():
        A = torch.tanh(lin1(X))  # (B, 5)
        Z = torch.relu(lin2(A))  # (B, 5)
        if case == "one-tensor":  # every loss a slice of one shared (K,) vector
            return list(((torch.cat([h(Z) for h in heads], 1) - Y) ** 2).mean(0).unbind())
        if case == "skip":  # heads read Z and A, and A lies under Z
            return [((h(Z + A) - Y[:, i : i + 1]) ** 2).mean() + (A**2).mean() * i for i, h in enumerate(heads)]
        if case == "leaf":  # heads use a shared weight directly
            return [((h(Z) - Y[:, i : i + 1]) ** 2).mean() + (lin2.weight**2).sum() * i for i, h in enumerate(heads)]
        if case == "tied-head":  # a task parameter used by two heads
            return [((h(Z * (tied if i < 2 else 1)) - Y[:, i : i + 1]) ** 2).mean() for i, h in enumerate(heads)]
        if case == "solo":  # a shared parameter only task 0 reaches
            return [((h(Z + (solo if i == 0 else 0)) - Y[:, i : i + 1]) ** 2).mean() for i, h in enumerate(heads)]
        if case == "nested":  # tasks 0, 1 read Z; tasks 2, 3 read A, which lies under Z
            return [((h(Z if i < 2 else A) - Y[:, i : i + 1]) ** 2).mean() for i, h in enumerate(heads)]
        if case == "branches":  # tasks 0, 1 read Z; tasks 2, 3 read a second branch on A
            B = torch.sigmoid(lin3(A))  # (B, 5)
            return [((h(Z if i < 2 else B) - Y[:, i : i + 1]) ** 2).mean() for i, h in enumerate(heads)]
        raise AssertionError(case)

    extra_shared = [solo] if case == "solo" else []
    extra_task = [tied] if case == "tied-head" else []
    return losses, shared + extra_shared, task + extra_task


@pytest.mark.parametrize("case", ["one-tensor", "skip", "leaf", "tied-head", "nested", "solo", "branches"])
def test_batched_rows_equal_the_loop_for_every_graph_shape(case):
    """Whether the graph is split at the heads (branches, solo) or batched whole (one-tensor, skip,
    leaf, tied-head, nested): the same rows and the same task-parameter gradients as the K one-row passes."""
    losses, shared, task = _graph_case(case)
    J_loop, task_loop = jacobian(losses(), shared, task, batched=False)
    J_batched, task_batched = jacobian(losses(), shared, task, batched=True)
    _assert_rows_close(J_batched, J_loop, 1e-12)
    for got, want in zip(task_batched, task_loop):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "case, splits",
    [("one-tensor", False), ("skip", False), ("leaf", False), ("tied-head", False), ("nested", False), ("solo", True), ("branches", True)],
)
def test_the_graph_is_split_only_where_the_chain_rule_gives_exact_rows(case, splits):
    from reference_impls.core.aggregator import _split_graph

    losses, shared, task = _graph_case(case)
    assert (_split_graph(losses(), shared, task) is not None) == splits


@pytest.mark.parametrize("case", ["one-tensor", "solo"])
def test_works_under_no_grad_like_the_loop(case):
    """Called inside ``torch.no_grad()`` on losses built with grad enabled (as the one-row passes allow)."""
    losses, shared, task = _graph_case(case)
    J_loop, _ = jacobian(losses(), shared, task, batched=False)
    f = losses()
    with torch.no_grad():
        J_batched, _ = jacobian(f, shared, task, batched=True)
    _assert_rows_close(J_batched, J_loop, 1e-12)
