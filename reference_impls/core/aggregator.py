"""Interfaces shared by every single-solution method.

Notation (used by every module): K tasks with losses f_1..f_K, shared parameters θ_sh with n
entries, the Jacobian J ∈ R^{K×n} whose row i is g_i = ∇_{θ_sh} f_i, the Gramian M = J Jᵀ ∈ R^{K×K},
and the update direction d ∈ R^n (the optimiser then steps θ_sh ← θ_sh − η d).

Three levels, from the most general to the most structured:

* :class:`Aggregator` — ``d = A(J)``: any map from the Jacobian to a direction (PCGrad, GradVac,
  GradDrop, DB-MTL's normalisation).
* :class:`Weighting` — ``d = Jᵀ w(J)``: the direction is a weighted sum of task gradients and
  ``weights(J)`` exposes w (GradNorm, FAMO, IMTL-G, ...).
* :class:`GramianWeighting` — ``w = w(M)``: the weights depend on J only through M = J Jᵀ (MGDA,
  CAGrad, Nash-MTL, FairGrad, UPGrad, Aligned-MTL, SDMGrad, ...). These are the cheapest: one K×n
  by n×K product, then a K×K problem.

Methods that also need the loss values (FAMO, DB-MTL, GradNorm) set ``needs_losses = True`` and
receive them as the second argument. Stateful methods (EMA of gradients, warm starts, learned
weights) set ``stateful = True`` and implement :meth:`Aggregator.reset`.

Every method is usable in a training loop through :meth:`Aggregator.backward`, which computes J
with autograd (:func:`jacobian`), aggregates it and writes ``.grad`` of the shared parameters;
task-specific parameters get the plain sum of their task gradients. With ``representation=Z`` a
:class:`Weighting` computes its weights from the Jacobian with respect to the shared representation
Z instead (the "-UB" variants of MGDA and Aligned-MTL) and back-propagates Σ w_i f_i once.

Loss-level methods (uncertainty weighting, DWA, STCH, ...) and set/Pareto-model methods have their
own interfaces in :mod:`reference_impls.core.loss_weighting` and :mod:`reference_impls.core.sets`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from reference_impls.core.hooks import default_hook


_SMALL_K = 8  # up to this many tasks, K×K checks run on Python floats (per-call overhead, not arithmetic)


class NonFiniteError(ValueError):
    """Raised when a Jacobian, Gramian or loss vector contains NaN or infinity."""


def check_jacobian(J: Tensor, *, finite: bool = True) -> Tensor:
    """Validate a Jacobian: a 2-D floating tensor with at least one row, all entries finite.

    ``finite=False`` skips the finiteness pass over the K×n entries; Gramian-based methods use it
    and check the K×K Gramian instead, which is non-finite whenever J is (see :func:`gramian`).
    """
    if not isinstance(J, Tensor):
        raise TypeError(f"expected a torch.Tensor Jacobian, got {type(J).__name__}")
    if J.ndim != 2:
        raise ValueError(f"expected a Jacobian of shape (K, n), got shape {tuple(J.shape)}")
    if J.shape[0] < 1:
        raise ValueError("the Jacobian has no rows: at least one task is needed")
    if not J.is_floating_point():
        raise TypeError(f"expected a floating-point Jacobian, got dtype {J.dtype}")
    if finite and not _all_finite(J):
        raise NonFiniteError("the Jacobian contains NaN or infinite entries")
    return J


def _all_finite(x: Tensor) -> bool:
    # One reduction (no n-sized boolean temporary): a NaN or ±inf entry makes the sum non-finite.
    # A finite sum proves finiteness; a non-finite one may be overflow, so confirm entry-wise.
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_gramian(M: Tensor) -> Tensor:
    """Validate a Gramian: square (K, K), floating, finite."""
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 1:
        raise ValueError(f"expected a Gramian of shape (K, K), got shape {tuple(M.shape)}")
    if not M.is_floating_point():
        raise TypeError(f"expected a floating-point Gramian, got dtype {M.dtype}")
    if not torch.isfinite(M).all():
        raise NonFiniteError("the Gramian contains NaN or infinite entries")
    return M


def check_losses(losses: Tensor | Sequence[Tensor] | None, K: int, *, required: bool) -> Tensor | None:
    """Turn the losses into a detached (K,) tensor, or raise a clear error."""
    if losses is None:
        if required:
            raise ValueError("this method needs the task losses: call it as method(J, losses)")
        return None
    if not isinstance(losses, Tensor):
        losses = torch.stack([torch.as_tensor(f) for f in losses])
    losses = losses.detach().reshape(-1)
    if losses.numel() != K:
        raise ValueError(f"got {losses.numel()} losses for a Jacobian with {K} rows")
    if K <= _SMALL_K and losses.device.type == "cpu" and math.isfinite(sum(losses.tolist())):
        return losses  # a finite sum of K Python floats proves them finite (cheaper than a torch reduction)
    if not torch.isfinite(losses).all():
        raise NonFiniteError("the losses contain NaN or infinite values")
    return losses


# J Jᵀ of a short, very wide J in column blocks (see gram_product): from this width, for these numbers of rows.
GRAM_BLOCK = 16384
GRAM_BLOCKED_MIN_N = 1 << 19
GRAM_BLOCKED_K = range(3, 11)


def gram_product(J: Tensor) -> Tensor:
    """J Jᵀ (K, K), with no checks; for 3 ≤ K ≤ 10 rows and n ≥ 2^19 columns on the CPU, as the sum of
    the Gramians of column blocks of :data:`GRAM_BLOCK` columns (one batched product).

    Why: for such shapes torch's CPU matmul (MKL sgemm, measured on an AMD EPYC with torch 2.13) takes
    a slow path that accumulates each entry along the whole row: K = 8, n = 10^6 float32 takes
    21 ms at one thread and has a relative error of 6e-5 (float32 summation of 10^6 terms); in blocks
    it takes 8.5 ms with a relative error of 2e-7. Other shapes keep ``J @ J.T`` (blocks were not
    faster there).
    """
    K, n = J.shape
    if n < GRAM_BLOCKED_MIN_N or K not in GRAM_BLOCKED_K or J.device.type != "cpu":
        return J @ J.T  # (K, K)
    blocks = n // GRAM_BLOCK
    head = J[:, : blocks * GRAM_BLOCK].unflatten(1, (blocks, GRAM_BLOCK)).transpose(0, 1)  # (blocks, K, GRAM_BLOCK), a view
    M = torch.bmm(head, head.transpose(1, 2)).sum(0)  # Σ_b J_b J_bᵀ over the column blocks, (K, K)
    tail = J[:, blocks * GRAM_BLOCK :]  # (K, n mod GRAM_BLOCK)
    return M.addmm_(tail, tail.T) if tail.shape[1] else M


def gramian(J: Tensor) -> Tensor:
    """M = J Jᵀ, the (K, K) matrix of inner products ⟨g_i, g_j⟩; raises if J or M is not finite.

    Any NaN or infinite entry of J makes a diagonal entry M_ii non-finite, so checking M (K² numbers)
    replaces a pass over J (K·n numbers). A finite J whose Gramian overflows is reported as such.
    """
    M = gram_product(J)  # (K, K)
    if M.shape[0] <= _SMALL_K and M.device.type == "cpu":
        # K² Python floats (one tolist, ~1 µs) instead of a torch reduction (~10 µs per call at small K)
        if math.isfinite(sum(map(sum, M.tolist()))):  # a finite sum proves every entry finite
            return M
    if not bool(torch.isfinite(M).all()):
        if not _all_finite(J):
            raise NonFiniteError("the Jacobian contains NaN or infinite entries")
        raise NonFiniteError(f"the Gramian J Jᵀ overflows {J.dtype}: rescale the losses or use float64")
    return M


class Aggregator:
    """A map from the Jacobian J (K, n) to an update direction d (n,)."""

    name: ClassVar[str] = ""  # registry id
    needs_losses: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    # Whether __call__ scans all K·n entries of J for NaN/inf. Gram-based methods check the K×K
    # Gramian instead; a method may also check its own reduced quantities (and must then say so).
    scans_jacobian: ClassVar[bool] = True

    def __call__(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        J = check_jacobian(J, finite=self.scans_jacobian)
        return self.aggregate(J, check_losses(losses, J.shape[0], required=self.needs_losses))

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state (EMAs, warm starts, learned weights). Stateless methods do nothing."""

    # Hooks (see reference_impls.core.hooks): driven by the runner and by hooks.train_step.
    hook_names: ClassVar[tuple[str, ...]] = ("parameters", "update", "on_epoch_end", "attach")

    @default_hook
    def parameters(self) -> Sequence[Tensor]:
        """Learnable tensors of the method, optimised with the model; none by default."""
        return ()

    @default_hook
    def update(self, new_losses: Tensor) -> object:
        """Called after every optimiser step with the (K,) losses at the new parameters, same batch."""
        return None

    @default_hook
    def on_epoch_end(self, epoch: int) -> None:
        """Called after each pass over the training data (after every step on full-batch problems)."""

    @default_hook
    def attach(self, losses: Sequence[Tensor] | Tensor, representation: Tensor):  # pragma: no cover - interface
        """Activation hook: make the shared representation's incoming gradient the method's output.

        Returns a handle with ``remove()``. Only methods that work on activations define it (GradDrop).
        """
        raise TypeError(f"{type(self).__name__} has no activation hook")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------------------------------
    # Drop-in use in a training loop
    # ------------------------------------------------------------------------------------------

    def backward(
        self,
        losses: Sequence[Tensor] | Tensor,
        shared_params: Iterable[Tensor],
        task_params: Iterable[Tensor] = (),
        representation: Tensor | None = None,
    ) -> Tensor:
        """Compute the task gradients with autograd, aggregate them, and accumulate into ``.grad``.

        J comes from :func:`jacobian`: each task's own part of the graph (its head) is differentiated
        on its own, the shared part in one vectorised backward pass for all K tasks.

        Args:
            losses: K scalar losses (a sequence or a (K,) tensor) built from the same graph.
            shared_params: parameters every task depends on; their ``.grad`` receives d.
            task_params: task-specific parameters (heads); they receive Σ_i ∇f_i, i.e. each head
                its own task's gradient.
            representation: optional shared representation Z (output of the shared encoder).
                When given, the weights are computed from ∂f_i/∂Z (the "-UB" variants) and
                Σ_i w_i f_i is back-propagated once; only :class:`Weighting` methods support it.

        Returns:
            The direction d over the shared parameters (flattened), or, with ``representation``,
            the weights w.
        """
        losses = _as_loss_list(losses)
        shared_params = [p for p in shared_params]
        task_params = [p for p in task_params]
        if representation is not None:
            return _backward_through_representation(self, losses, shared_params, task_params, representation)
        J, task_grads = jacobian(losses, shared_params, task_params)  # (K, n)
        values = torch.stack([f.detach() for f in losses])  # (K,)
        d = self(J, values if self.needs_losses else None)  # (n,)
        write_flat_grad(shared_params, d)
        for p, g in zip(task_params, task_grads):
            _accumulate(p, g)
        return d


class Weighting(Aggregator):
    """An aggregator of the form d = Jᵀ w(J): ``weights(J)`` exposes the task weights w (K,)."""

    def weights(self, J: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        J = check_jacobian(J, finite=self.scans_jacobian)
        return self.compute_weights(J, check_losses(losses, J.shape[0], required=self.needs_losses))

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def aggregate(self, J: Tensor, losses: Tensor | None) -> Tensor:
        w = self.compute_weights(J, losses)  # (K,)
        return w @ J  # d = Jᵀ w, (n,)


class GramianWeighting(Weighting):
    """A weighting whose weights depend on J only through the Gramian M = J Jᵀ."""

    scans_jacobian: ClassVar[bool] = False  # gramian() checks M, which is non-finite whenever J is

    def weights_from_gramian(self, M: Tensor, losses: Tensor | Sequence[Tensor] | None = None) -> Tensor:
        M = check_gramian(M)
        return self.compute_weights_from_gramian(M, check_losses(losses, M.shape[0], required=self.needs_losses))

    def compute_weights_from_gramian(self, M: Tensor, losses: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def compute_weights(self, J: Tensor, losses: Tensor | None) -> Tensor:
        return self.compute_weights_from_gramian(gramian(J), losses)


# ----------------------------------------------------------------------------------------------
# Autograd helpers
# ----------------------------------------------------------------------------------------------


def _as_loss_list(losses: Sequence[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(losses, Tensor):
        losses = list(losses.reshape(-1).unbind())
    losses = list(losses)
    if not losses:
        raise ValueError("no losses given: at least one task is needed")
    for f in losses:
        if f.numel() != 1:
            raise ValueError(f"each loss must be a scalar, got shape {tuple(f.shape)}")
    return losses


# Rows of the identity sent through one batched backward pass at most; bounds the memory of the
# batched pass (it holds this many copies of every activation's gradient) at large K.
BATCHED_ROWS = 32


def jacobian(
    losses: Sequence[Tensor],
    shared_params: Sequence[Tensor],
    task_params: Sequence[Tensor] = (),
    keep_graph: bool = False,
    *,
    batched: bool | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Rows g_i = ∇_{θ_sh} f_i (flattened, concatenated over ``shared_params``) and Σ_i ∇ f_i over ``task_params``.

    By default (``batched=None``) the K rows come from one vectorised backward pass (``is_grads_batched``:
    autograd under ``torch.vmap``, :data:`BATCHED_ROWS` rows a pass) instead of K one-row passes. When
    the graph splits into task-specific parts (heads) over a shared part (encoder), found by walking
    the graph, each head is differentiated on its own down to the split, and only the shared part is
    vectorised, with the stacked (K, ...) gradients at the split as cotangents (chain rule; the same
    scheme as TorchJD's ``mtl_backward``, without being told the features). Otherwise the stacked
    losses are differentiated with the identity as cotangents. ``batched=False`` forces the K passes,
    ``batched=True`` the vectorised pass. Both give the same rows up to float rounding.
    If vmap cannot batch an operation of the graph (a custom ``autograd.Function`` with data-dependent
    control flow, say), the K passes are tried instead; when the failed attempt has already freed part
    of the graph, a RuntimeError says to pass ``batched=False``. The graph is kept after the call only
    with ``keep_graph``. Parameters a loss does not depend on get zero gradients.
    """
    if not shared_params:
        raise ValueError("no shared parameters given")
    losses = list(losses)
    if batched is False or len(losses) == 1:
        return _jacobian_loop(losses, list(shared_params), list(task_params), keep_graph)
    try:
        with torch.enable_grad():  # stacking the losses and finding the leaves' nodes record a graph
            return _jacobian_batched(losses, list(shared_params), list(task_params), keep_graph)
    except RuntimeError as vmap_error:
        if batched:
            raise
        try:
            return _jacobian_loop(losses, list(shared_params), list(task_params), keep_graph)
        except RuntimeError as loop_error:
            if "second time" not in str(loop_error):  # not caused by the batched attempt
                raise
            raise RuntimeError(
                f"the vectorised backward pass failed ({vmap_error}) and freed part of the graph, so the "
                "one-row passes cannot run either: recompute the losses and call with batched=False"
            ) from loop_error


def _jacobian_batched(
    losses: list[Tensor], shared_params: list[Tensor], task_params: list[Tensor], keep_graph: bool
) -> tuple[Tensor, list[Tensor]]:
    """J by vmap over backward. Where the graph splits into task-specific parts (heads) on top of a
    shared part (encoder), each task's part is differentiated on its own down to the split and only
    the shared part is batched (:func:`_split_graph`); otherwise the whole graph is batched."""
    K = len(losses)
    sizes = [p.numel() for p in shared_params]
    J = shared_params[0].new_empty(K, sum(sizes))  # (K, n), each block written once below
    blocks = J.split(sizes, dim=1)  # views (K, numel(p))
    split = _split_graph(losses, shared_params, task_params)
    if split is None:
        stacked = torch.stack([f.reshape(()) for f in losses])  # (K,)
        eye = torch.eye(K, dtype=stacked.dtype, device=stacked.device)  # (K, K): cotangent e_i selects f_i
        task_grads = _batched_into(blocks, shared_params, task_params, [stacked], lambda rows: [eye[rows]], keep_graph)
        return J, task_grads
    edges, single, task_single = split
    # Stage 1, one pass per task through its own part only: the cotangent at each split edge,
    # the rows of shared parameters that only this task reaches, and the heads' gradients.
    edge_list = list(edges)
    cotangents: list[list[Tensor | None]] = [[None] * K for _ in edge_list]  # [edge][task]
    task_grads = [torch.zeros_like(p) for p in task_params]
    for j in single:
        blocks[j].zero_()
    for i, f in enumerate(losses):
        own_edges = [e for e, edge in enumerate(edge_list) if i in edges[edge]]
        own_single = [j for j, t in single.items() if t == i]
        own_heads = [j for j, t in task_single.items() if t == i]
        inputs = [edge_list[e] for e in own_edges] + [shared_params[j] for j in own_single] + [task_params[j] for j in own_heads]
        if not inputs:
            continue
        grads = torch.autograd.grad(f, inputs, retain_graph=True, allow_unused=True)  # the shared part stays for stage 2
        for e, g in zip(own_edges, grads):
            cotangents[e][i] = g
        for j, g in zip(own_single, grads[len(own_edges) :]):
            if g is not None:
                blocks[j][i].copy_(g.reshape(-1))
        for j, g in zip(own_heads, grads[len(own_edges) + len(own_single) :]):
            if g is not None:
                task_grads[j] += g
    # Stage 2: the stacked cotangents (K, ...) of the split edges through the shared part, batched.
    outputs, stacked = [], []
    for edge, per_task in zip(edge_list, cotangents):
        like = next((g for g in per_task if g is not None), None)
        if like is not None:
            outputs.append(edge)
            stacked.append(torch.stack([torch.zeros_like(like) if g is None else g for g in per_task]))  # (K, *shape)
    multi = [j for j in range(len(shared_params)) if j not in single]
    if outputs and multi:
        _batched_into(
            [blocks[j] for j in multi], [shared_params[j] for j in multi], [], outputs, lambda rows: [c[rows] for c in stacked], keep_graph
        )  # fmt: skip
    else:
        for j in multi:
            blocks[j].zero_()
    return J, task_grads


def _batched_into(
    blocks: list[Tensor], shared_params: list[Tensor], task_params: list[Tensor], outputs: list, cotangents, keep_graph: bool
) -> list[Tensor]:
    """Write the rows of ∂(outputs)/∂θ_sh for the K stacked cotangents ``cotangents(rows)`` into
    ``blocks`` (views (K, numel(p)) of J), BATCHED_ROWS rows a pass; returns Σ_i ∂/∂θ_task."""
    K = blocks[0].shape[0]
    params = shared_params + task_params
    task_grads = [torch.zeros_like(p) for p in task_params]
    for start in range(0, K, BATCHED_ROWS):
        rows = slice(start, start + BATCHED_ROWS)
        retain = keep_graph or start + BATCHED_ROWS < K  # freed by the last chunk, as by the last of K passes
        grads = torch.autograd.grad(
            outputs, params, grad_outputs=cotangents(rows), retain_graph=retain, allow_unused=True, is_grads_batched=True
        )  # each (k, *p.shape) or None
        for block, g in zip(blocks, grads):
            if g is None:
                block[rows].zero_()  # a parameter no loss reaches
            else:
                block[rows].copy_(g.reshape(g.shape[0], -1))  # (k, numel(p))
        for j, g in enumerate(grads[len(shared_params) :]):
            if g is not None:
                task_grads[j] += g.sum(0)  # Σ_i ∇f_i over this chunk's tasks
    return task_grads


def _split_graph(losses: list[Tensor], shared_params: list[Tensor], task_params: list[Tensor]):
    """Where the autograd graph of the K losses splits into task-specific parts over a shared part.

    Each node gets the set of losses that reach it (a bit mask, propagated in reverse topological
    order). A node reached by one loss is task i's; an edge from task i's node into a node reached by
    several losses is a split edge. Returns ({split edge: tasks}, {shared param index: its one task},
    {task param index: its one task}), or None when the split would not give exact rows by the chain
    rule or would not save work: a split node below another one (its cotangent would double-count
    the path between them), a task parameter reached by several losses, a split at a leaf, or no
    task-specific part at all.
    """
    from torch.autograd.graph import GradientEdge

    roots = [f.grad_fn for f in losses]
    if any(r is None for r in roots):
        return None
    order: list = []  # nodes, each after all its consumers (reverse topological order)
    seen: set = set()
    for root in roots:  # iterative post-order DFS, then reversed
        stack = [(root, iter(root.next_functions))]
        if root in seen:
            continue
        seen.add(root)
        while stack:
            node, children = stack[-1]
            for child, _ in children:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append((child, iter(child.next_functions)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    mask: dict = {node: 0 for node in order}
    for i, root in enumerate(roots):
        mask[root] |= 1 << i
    for node in order:
        for child, _ in node.next_functions:
            if child is not None:
                mask[child] |= mask[node]
    if all(mask[r] & (mask[r] - 1) for r in roots):
        return None  # every loss is already shared: nothing task-specific to split off
    edges: dict = {}
    for node in order:
        m = mask[node]
        if m & (m - 1):  # shared node
            continue
        task = m.bit_length() - 1
        for child, nr in node.next_functions:
            if child is not None and mask[child] & (mask[child] - 1):
                if not child.next_functions and hasattr(child, "variable"):
                    return None  # split straight into a leaf (a shared parameter used by several heads)
                edges.setdefault(GradientEdge(child, nr), set()).add(task)
    for i, root in enumerate(roots):  # a loss computed by a shared node: its split edge is the loss itself
        if mask[root] & (mask[root] - 1):
            edges.setdefault(GradientEdge(root, losses[i].output_nr), set()).add(i)
    split_nodes = {e.node for e in edges}
    below: set = set()
    stack = [child for node in split_nodes for child, _ in node.next_functions if child is not None]
    while stack:  # every node under a split node
        node = stack.pop()
        if node in below:
            continue
        if node in split_nodes:
            return None
        below.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)

    def leaf_task(p: Tensor, allow_shared: bool) -> int | None | bool:
        node = _accumulate_grad_node(p)
        m = mask.get(node, 0) if node is not None else 0
        if m & (m - 1):
            return True if allow_shared else False  # shared: batched (or, for a head, unsupported)
        return m.bit_length() - 1 if m else None  # task-specific, or unused

    single: dict[int, int] = {}
    for j, p in enumerate(shared_params):
        t = leaf_task(p, allow_shared=True)
        if t is not True and t is not None:
            single[j] = t
    task_single: dict[int, int] = {}
    for j, p in enumerate(task_params):
        t = leaf_task(p, allow_shared=False)
        if t is False:
            return None
        if t is not None:
            task_single[j] = t
    return edges, single, task_single


def _accumulate_grad_node(p: Tensor):
    """The AccumulateGrad node of a leaf that requires grad (None otherwise)."""
    if p.grad_fn is not None or not p.requires_grad:
        return None
    return p.view_as(p).grad_fn.next_functions[0][0]


def _jacobian_loop(
    losses: list[Tensor], shared_params: list[Tensor], task_params: list[Tensor], keep_graph: bool
) -> tuple[Tensor, list[Tensor]]:
    """K backward passes, one per loss: row i of J is written in place (no per-row concatenation)."""
    params = shared_params + task_params
    sizes = [p.numel() for p in shared_params]
    first = shared_params[0]
    J = first.new_empty(len(losses), sum(sizes))  # (K, n), each entry written once below (no zero-fill pass)
    task_grads: list[Tensor] = [torch.zeros_like(p) for p in task_params]
    for i, f in enumerate(losses):
        grads = torch.autograd.grad(f, params, retain_graph=keep_graph or i < len(losses) - 1, allow_unused=True)
        for block, g in zip(J[i].split(sizes), grads):
            if g is None:
                block.zero_()  # a parameter this loss does not reach
            else:
                block.copy_(g.reshape(-1))
        for k, g in enumerate(grads[len(shared_params) :]):
            if g is not None:
                task_grads[k] += g
    return J, task_grads


def write_flat_grad(params: Sequence[Tensor], d: Tensor) -> None:
    """Split the flat direction d over ``params`` and accumulate it into their ``.grad``."""
    offset = 0
    for p in params:
        size = p.numel()
        _accumulate(p, d[offset : offset + size].view_as(p))
        offset += size
    if offset != d.numel():
        raise ValueError(f"direction has {d.numel()} entries but the parameters have {offset}")


def _accumulate(p: Tensor, g: Tensor) -> None:
    g = g.to(dtype=p.dtype)
    if p.grad is None:
        p.grad = g.detach().clone()
    else:
        p.grad.add_(g)


def _backward_through_representation(
    method: Aggregator,
    losses: list[Tensor],
    shared_params: list[Tensor],
    task_params: list[Tensor],
    Z: Tensor,
) -> Tensor:
    if not isinstance(method, Weighting):
        raise TypeError(f"{type(method).__name__} is not a weighting: it cannot use the representation (-UB) mode")
    J_Z, _ = jacobian(losses, [Z], keep_graph=True)  # (K, numel(Z)): ∂f_i/∂Z, the "upper bound" surrogate Jacobian
    values = torch.stack([f.detach() for f in losses])
    w = method.weights(J_Z, values if method.needs_losses else None).detach()  # (K,)
    shared_total = sum(wi * f for wi, f in zip(w, losses))  # Σ w_i f_i
    grads = torch.autograd.grad(shared_total, shared_params, retain_graph=bool(task_params), allow_unused=True)
    for p, g in zip(shared_params, grads):
        if g is not None:
            _accumulate(p, g)
    if task_params:
        head_grads = torch.autograd.grad(sum(losses), task_params, allow_unused=True)
        for p, g in zip(task_params, head_grads):
            if g is not None:
                _accumulate(p, g)
    return w
