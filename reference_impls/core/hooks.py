"""The hooks a method may define besides its update rule, and the one training step that drives them.

Every interface lists the hooks it offers in its ``hook_names`` class attribute and gives each a
no-op default marked with :func:`default_hook`; a method *defines* a hook when it overrides that
default (:func:`defined_hooks`). The runner (:mod:`reference_impls.runner`) and the documented
training loop (:func:`train_step`, :func:`bilevel_step` and :func:`end_epoch`, shown in ``site/implementations/design.md``)
call every defined hook, as does the set loop (for set methods: :func:`start_set` calls ``initial_set`` and
``begin`` once, then :func:`set_step` calls ``update``, ``adapt_preferences`` and ``on_epoch_end`` after every
step); ``tests/reference_impls/test_hooks.py`` checks that they do, for every registered method.

=====================  ===========================  ==================================================  ==========
hook                   interfaces                   called                                              example
=====================  ===========================  ==================================================  ==========
``parameters()``       Aggregator, LossWeighting,   once, before training: the tensors are optimised    IMTL-L's
                       SetMethod                    with the model (same optimiser, same step)          log-scales
``update(new_losses)`` Aggregator, SetMethod        after every optimiser step, with the losses at the  FAMO's ξ
                                                    new parameters on the same batch                    step
``observe(losses, t)`` LossWeighting                after every step, with that step's losses           history
``on_epoch_end(e)``    Aggregator, LossWeighting,   after each pass over the training data (after every per-epoch
                       SetMethod                    step on full-batch problems)                        weights
``attach(losses, Z)``  Aggregator                   in representation mode, instead of ``backward``:    GradDrop
                                                    hooks the shared activations Z
``outer_step(...)``    BilevelLossWeighting         every ``outer_every`` steps, before the inner step, Auto-Lambda's
                                                    with the validation losses (:func:`bilevel_step`)   meta step
``initial_set(X0,``    SetMethod                    once, before ``begin``, with the problem's starting sum-of-min.
``evaluate, ...)``                                  set; returns the method's own starting set or None  seeding
``begin(X0, F0, r,``   SetMethod                    once, before the first step, with the initial set,  ParetoMTL's
``steps, ideal)``                                   the preferences, the step budget, the ideal point   init phase
``adapt_preferences``  SetMethod                    after every step (after ``update``), with the moved adaptive
``(X, F, r, t)``                                    set; returns the next preferences or None           ref. vectors
=====================  ===========================  ==================================================  ==========
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])


def default_hook(fn: F) -> F:
    """Mark an interface's no-op default of a hook (a method overriding it *defines* the hook)."""
    fn.__default_hook__ = True  # type: ignore[attr-defined]
    return fn


def defined_hooks(method: Any) -> tuple[str, ...]:
    """The hooks, among those its interface declares in ``hook_names``, that ``method`` overrides."""
    cls = type(method)
    found = []
    for name in getattr(cls, "hook_names", ()):
        attr = getattr(cls, name, None)
        if attr is not None and not getattr(attr, "__default_hook__", False):
            found.append(name)
    return tuple(found)


def optimised_tensors(optimizer: Any) -> list[Tensor]:
    """The tensors an optimiser steps (torch.optim optimisers and the runner's own ``SGD``/``Adam``)."""
    if hasattr(optimizer, "param_groups"):
        return [p for group in optimizer.param_groups for p in group["params"]]
    return list(getattr(optimizer, "params", ()))


def check_optimised(method: Any, optimizer: Any) -> None:
    """Raise a ValueError naming the method when one of its ``parameters()`` is not in ``optimizer``.

    A learnable parameter left out of the optimiser silently keeps its initial value (IMTL-L's
    scales would stay 1, i.e. plain Σ f_i).
    """
    if "parameters" not in defined_hooks(method):
        return
    stepped = {id(p) for p in optimised_tensors(optimizer)}
    missing = [p for p in method.parameters() if id(p) not in stepped]
    if missing:
        name = getattr(method, "name", "") or type(method).__name__
        raise ValueError(
            f"{name} has {len(missing)} learnable parameter tensor(s) that the optimiser does not update: "
            "build the optimiser with [*model.parameters(), *method.parameters()]"
        )


def train_step(
    method: Any,
    closure: Callable[[], Tensor | tuple[Tensor, Tensor]],
    optimizer: Any,
    shared_params: Sequence[Tensor],
    task_params: Sequence[Tensor] = (),
    *,
    step: int = 0,
    representation: bool = False,
) -> Tensor:
    """One optimiser step of a multi-task network with ``method``, calling every hook it defines.

    Args:
        method: an :class:`~reference_impls.core.aggregator.Aggregator` (or a bare callable
            ``d = method(J)``) or a :class:`~reference_impls.core.loss_weighting.LossWeighting`.
        closure: evaluates the K task losses on the current batch with a graph and returns them as
            a (K,) tensor, or ``(losses, Z)`` with Z the shared representation when
            ``representation`` is True. It is called again after the step (without a graph) when the
            method defines ``update`` (FAMO needs the new losses on the same batch).
        optimizer: steps the model parameters and ``method.parameters()`` (checked: ValueError if not).
        shared_params, task_params: the parameters every task uses, and the task heads.
        step: the 0-based step counter passed to loss weightings.
        representation: compute the update through the shared representation Z: ``attach`` for
            methods with an activation hook (GradDrop), the "-UB" mode of ``backward`` for weightings.

    Returns:
        The detached (K,) losses before the step.
    """
    from reference_impls.core.aggregator import jacobian, write_flat_grad
    from reference_impls.core.loss_weighting import LossWeighting

    hooks = defined_hooks(method)
    check_optimised(method, optimizer)
    optimizer.zero_grad(set_to_none=True)
    out = closure()
    losses, Z = out if representation else (out, None)  # (K,), (b, ...) or None
    if isinstance(method, LossWeighting):
        if representation:
            raise ValueError("a loss weighting has no representation (-UB) mode: it needs no task gradients")
        method.objective(losses, step).backward()  # ∇ of Σ w_i f_i (+ regulariser) into the model and parameters()
    elif representation and "attach" in hooks:
        handle = method.attach(losses, Z)  # the shared activations receive the method's gradient
        try:
            losses.sum().backward()  # heads: Σ_i ∇f_i; encoder: through the hook on Z
        finally:
            handle.remove()
    elif hasattr(method, "backward"):
        method.backward(losses, shared_params, task_params, representation=Z)
    elif callable(method):
        if representation:
            raise ValueError("a bare callable d = method(J) has no representation (-UB) mode")
        J, head_grads = jacobian(list(losses.unbind()), list(shared_params), list(task_params))  # (K, n)
        write_flat_grad(list(shared_params), method(J))  # shared parameters get d
        for p, g in zip(task_params, head_grads):
            p.grad = g.detach().clone()
    else:
        raise ValueError(f"{method!r} is not a method usable in a training loop")
    optimizer.step()
    if "update" in hooks:
        with torch.no_grad():
            new = closure()
        method.update((new[0] if representation else new).detach())  # post-step losses, same batch
    if isinstance(method, LossWeighting):
        method.observe(losses.detach(), step)
    return losses.detach()


def bilevel_step(
    method: Any,
    params: Sequence[Tensor],
    train_losses_at: Callable[[Sequence[Tensor]], Tensor],
    val_losses_at: Callable[[Sequence[Tensor]], Tensor],
    optimizer: Any,
    *,
    lr: float,
    step: int = 0,
    weight_decay: float = 0.0,
) -> Tensor:
    """One training step of a bi-level loss weighting (Auto-Lambda, MOML, FORUM), calling every hook.

    Every ``method.outer_every`` steps (at step 0 first) the outer step updates the weights from the
    validation losses; then the plain inner step minimises Σ w_i f_i^tr (+ ½·weight_decay·‖θ‖²) with
    ``optimizer`` — skipped on outer steps of a method with ``moves_model`` (FORUM moves θ itself).

    Args:
        method: a :class:`~reference_impls.core.loss_weighting.BilevelLossWeighting` (any other
            :class:`~reference_impls.core.loss_weighting.LossWeighting` takes the inner step only).
        params: the model tensors θ (leaves, stepped by ``optimizer``).
        train_losses_at, val_losses_at: map a list of tensors shaped like ``params`` to the (K,)
            training / validation losses there (on the current batches), with a graph.
        optimizer: steps ``params`` (and ``method.parameters()``, checked, if the method has any).
        lr: the inner learning rate (the optimiser's), used by virtual/unrolled steps.
        step: the 0-based step counter.
        weight_decay: L2 weight decay of the inner step (the lower level's ridge term on ``bilevel-ridge``).

    Returns:
        The detached (K,) training losses before the step.
    """
    from reference_impls.core.loss_weighting import LossWeighting

    if not isinstance(method, LossWeighting):
        raise ValueError(f"{getattr(method, 'name', '') or type(method).__name__} is not a loss weighting: bilevel_step trains Σ w_i f_i^tr")
    check_optimised(method, optimizer)
    params = list(params)
    outer = method.bilevel and step % method.outer_every == 0  # a plain loss weighting only takes the inner step
    moved = outer and method.moves_model
    before = None
    if moved:
        with torch.no_grad():
            before = train_losses_at(params).detach()  # (K,) the losses at the step's start
    if outer:
        method.outer_step(
            params, lambda: train_losses_at(params), lambda: val_losses_at(params), lr,
            train_losses_at=train_losses_at, val_losses_at=val_losses_at,
            weight_decay=weight_decay, optimizer=optimizer, step=step,
        )  # fmt: skip
    if not moved:
        optimizer.zero_grad(set_to_none=True)
        losses = train_losses_at(params)  # (K,)
        objective = method.objective(losses, step)  # Σ w_i f_i^tr
        if weight_decay:
            objective = objective + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params)  # + ½·wd·‖θ‖²
        objective.backward()
        optimizer.step()
        before = losses.detach()
    method.observe(before, step)
    return before


def start_set(
    method: Any,
    X0: Tensor,
    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]],
    preferences: Tensor | None,
    *,
    steps: int,
    ideal: Tensor | None = None,
    minimisers: Tensor | None = None,
    project: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Start a set method on P solutions: ``initial_set`` then ``begin``, each once if the method defines it.

    X0 (P, n) is the problem's starting set (already projected). ``initial_set(X0, evaluate,
    minimisers=...)`` may replace it (checked: shape (P, n), finite; then projected with ``project``);
    ``begin(X, F, preferences, steps=..., ideal=...)`` sees the set the first step starts from.
    :func:`reference_impls.set_runner.run_set` and the documented loop (``train_set``) both start here.

    Returns:
        (X, F, J): the starting set (P, n) (a fresh tensor, not a leaf with a graph), its losses (P, K)
        and Jacobians (P, K, n).

    Raises:
        ValueError: ``initial_set`` returned a wrong shape or non-finite entries; the losses at the
            starting set are not finite.
    """
    hooks = defined_hooks(method)
    X = X0.detach().clone()  # (P, n)
    if "initial_set" in hooks:
        name = getattr(method, "name", "") or type(method).__name__
        seeded = method.initial_set(X.clone(), evaluate, minimisers=minimisers)
        if seeded is not None:
            seeded = torch.as_tensor(seeded).detach()
            if seeded.shape != X.shape:
                raise ValueError(f"{name}.initial_set returned shape {tuple(seeded.shape)}, expected {tuple(X.shape)}")
            if not bool(torch.isfinite(seeded).all()):
                raise ValueError(f"{name}.initial_set returned non-finite entries")
            X = seeded.to(X).clone()
            if project is not None:
                X = project(X)  # Π_box
    F, J = evaluate(X)  # (P, K), (P, K, n)
    if not bool(torch.isfinite(F).all() and torch.isfinite(J).all()):
        raise ValueError("the losses or their gradients are non-finite at the initial set")
    if "begin" in hooks:
        method.begin(X.clone(), F, preferences, steps=steps, ideal=ideal)
    return X, F, J


def set_direction(
    method: Any,
    X: Tensor,
    F: Tensor,
    J: Tensor,
    preferences: Tensor | None,
    per_sample_losses: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The direction D (P, n) of a set method: ``method.step(X, F, J, preferences)``, or, for a
    ``per_sample`` method on a problem with per-sample losses L (P, N, K),

        W = method.sample_weights(L)           (P, N, K), from the detached losses
        D = ∇_X Σ_{p,s,k} W_psk·L_psk / N      by autograd through ``per_sample_losses``

    (with N = 1 and L = F this is Σ_k W_pk ∇f_k, what a per-sample method's ``step`` computes).

    Raises:
        ValueError: non-finite per-sample losses, or weights of the wrong shape or non-finite.
    """
    if not (getattr(method, "per_sample", False) and per_sample_losses is not None):
        return method.step(X.detach(), F, J, preferences)  # (P, n)
    name = getattr(method, "name", "") or type(method).__name__
    Xg = X.detach().requires_grad_(True)  # (P, n)
    with torch.enable_grad():
        L = per_sample_losses(Xg)  # (P, N, K)
        if L.ndim != 3 or L.shape[0] != X.shape[0]:
            raise ValueError(f"per_sample_losses returned shape {tuple(L.shape)}, expected (P={X.shape[0]}, N, K)")
        if not bool(torch.isfinite(L).all()):
            raise ValueError(f"{name}: the per-sample losses are non-finite")
        W = torch.as_tensor(method.sample_weights(L.detach())).to(L)  # (P, N, K)
        if W.shape != L.shape:
            raise ValueError(f"{name}.sample_weights returned shape {tuple(W.shape)}, expected {tuple(L.shape)}")
        if not bool(torch.isfinite(W).all()):
            raise ValueError(f"{name}.sample_weights returned non-finite weights")
        (D,) = torch.autograd.grad((W * L).sum() / L.shape[1], Xg)  # ∇_X Σ W·L / N, (P, n)
    return D.detach()


def set_step(
    method: Any,
    X: Tensor,
    F: Tensor,
    J: Tensor,
    preferences: Tensor | None,
    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]],
    optimizer: Any,
    *,
    step: int = 0,
    project: Callable[[Tensor], Tensor] | None = None,
    per_sample_losses: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One step of a set method (:class:`~reference_impls.core.sets.SetMethod`) on P solutions, calling every hook.

    D = method.step(X, F, J, preferences) (or the per-sample direction, :func:`set_direction`);
    X ← Π(X − η·D) with ``optimizer`` (which must also step ``method.parameters()``: checked,
    ValueError if not); then ``update(F_new)``, ``adapt_preferences(X, F_new, preferences, step)`` and
    ``on_epoch_end(step)`` (full batch: every step is an epoch).
    :func:`reference_impls.set_runner.run_set` runs exactly this step; ``initial_set`` and ``begin``
    are called once by :func:`start_set` before the first step.

    Args:
        X: the solutions (P, n), a leaf tensor stepped by ``optimizer`` (its ``.grad`` is set to D).
        F, J: the losses (P, K) and Jacobians (P, K, n) at X (the previous call's return value).
        preferences: (P, K) or None (preference-free methods).
        evaluate: X (P, n) -> (F (P, K), J (P, K, n)), detached.
        project: the feasible-set projection (a box's clamp), or None.
        per_sample_losses: X (P, n) -> L (P, N, K) with a graph (``problem.per_sample_losses`` where
            the problem has one), used by ``per_sample`` methods; None otherwise.

    Returns:
        (F_new, J_new, preferences): the losses and Jacobians at the moved set, and the preferences
        for the next step (changed only by ``adapt_preferences``).

    Raises:
        ValueError: the direction or the new losses are not finite (names the step).
    """
    hooks = defined_hooks(method)
    check_optimised(method, optimizer)
    optimizer.zero_grad(set_to_none=True)
    D = set_direction(method, X, F, J, preferences, per_sample_losses)  # (P, n); may write .grad of method.parameters()
    if not bool(torch.isfinite(D).all()):
        raise ValueError(f"the set method returned a non-finite direction at step {step}")
    X.grad = D.detach().to(X)
    optimizer.step()  # X ← X − η D (or Adam's step)
    if project is not None:
        with torch.no_grad():
            X.copy_(project(X))  # Π_box
    F_new, J_new = evaluate(X.detach())  # (P, K), (P, K, n)
    if not bool(torch.isfinite(F_new).all() and torch.isfinite(J_new).all()):
        raise ValueError(f"the losses or their gradients became non-finite after step {step} (lower the learning rate)")
    if "update" in hooks:
        method.update(F_new)  # losses at the moved set
    if "adapt_preferences" in hooks:
        new = method.adapt_preferences(X.detach(), F_new, preferences, step)
        if new is not None:
            preferences = new
    end_epoch(method, step)
    return F_new, J_new, preferences


def end_epoch(method: Any, epoch: int) -> None:
    """Call ``method.on_epoch_end(epoch)`` if the method defines it (after each pass over the data)."""
    if "on_epoch_end" in defined_hooks(method):
        method.on_epoch_end(epoch)


def learnable_parameters(methods: Iterable[Any]) -> list[Tensor]:
    """The tensors of ``parameters()`` of each method that defines it."""
    return [p for m in methods if "parameters" in defined_hooks(m) for p in m.parameters()]


__all__ = [
    "bilevel_step", "check_optimised", "default_hook", "defined_hooks", "end_epoch", "learnable_parameters", "optimised_tensors",
    "set_direction", "set_step", "start_set", "train_step",
]  # fmt: skip
