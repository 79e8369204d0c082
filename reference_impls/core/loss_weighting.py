"""Interface of the loss-level methods: the weights come from the loss values, not from gradients.

Uncertainty weighting, DWA, RLW, IMTL-L, STCH and the like combine the task losses into one scalar
L = Σ_i w_i f_i (+ a regulariser for learned weights) and back-propagate it once, so they cost one
backward pass per step. Bi-level methods (Auto-Lambda, MOML, FORUM) update the weights with an
outer step on validation losses.

Protocol of one training step (what :func:`reference_impls.runner.run` does)::

    w = method.weights(losses.detach(), step)   # (K,) weights used at this step
    L = method.objective(losses, step)          # scalar; gradient w.r.t. the model = Σ w_i ∇f_i
    L.backward(); optimiser.step()              # method.parameters() (e.g. UW's log σ²) are
                                                #   optimised by the same optimiser as the model
    method.observe(losses.detach(), step)       # history updates (DWA's loss ratios, ...)
    method.on_epoch_end(epoch)                  # after each pass over the data

:func:`reference_impls.core.hooks.train_step` does exactly this (and checks that the optimiser
holds ``method.parameters()``). On point problems the runner may instead step the instances of all
starting points at once through the class's :class:`StartBatch` (an optional speed path with the same
arithmetic, below).

and, for a :class:`BilevelLossWeighting`, every ``outer_every`` steps ``method.outer_step(...)`` before
the inner step (:func:`reference_impls.core.hooks.bilevel_step`; the signature is in
:meth:`BilevelLossWeighting.outer_step` and in the docstring of ``reference_impls/problems/bilevel_ridge.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from torch import Tensor

from reference_impls.core.hooks import default_hook


class LossWeighting(ABC):
    """A method that turns the K losses into one scalar objective through weights w (K,)."""

    name: ClassVar[str] = ""  # registry id
    stateful: ClassVar[bool] = False  # True when weights depend on history or learned parameters
    bilevel: ClassVar[bool] = False

    @abstractmethod
    def weights(self, losses: Tensor, step: int) -> Tensor:
        """The weights w (K,) applied to the losses (K,) at ``step`` (0-based); detached.

        For a linear objective L = Σ w_i f_i these are the exact gradient weights (d = Jᵀ w); for a
        non-linear one (STCH's smooth max) they are ∂L/∂f at the given losses.
        """

    def objective(self, losses: Tensor, step: int) -> Tensor:
        """The scalar to back-propagate. Default: Σ_i w_i f_i with w from :meth:`weights`.

        Methods with learned weights override it to include their regulariser, e.g. uncertainty
        weighting Σ_i exp(−s_i) f_i + s_i, differentiable in both the losses and :meth:`parameters`.
        """
        return (self.weights(losses.detach(), step).to(losses) * losses).sum()

    # Hooks (see reference_impls.core.hooks): driven by the runner and by hooks.train_step.
    hook_names: ClassVar[tuple[str, ...]] = ("parameters", "observe", "on_epoch_end")

    @default_hook
    def parameters(self) -> Sequence[Tensor]:
        """Learnable tensors of the method (optimised with the model); none by default."""
        return ()

    @default_hook
    def observe(self, losses: Tensor, step: int) -> None:
        """Called once after every step with the detached losses (K,); history updates go here."""

    @default_hook
    def on_epoch_end(self, epoch: int) -> None:
        """Called after each pass over the training data (after every step on full-batch problems)."""

    def reset(self) -> None:
        """Forget all state (loss history, learned weights)."""


class BilevelLossWeighting(LossWeighting):
    """A loss weighting whose weights are updated by an outer (hypergradient or meta) step.

    One training step of a bi-level method (:func:`reference_impls.core.hooks.bilevel_step`, and the
    runner on ``bilevel-ridge``, do exactly this)::

        if step % method.outer_every == 0:
            method.outer_step(params, train_losses, val_losses, lr, train_losses_at=..., val_losses_at=...,
                              weight_decay=..., optimizer=..., step=step)   # updates the weights
        if not (that outer step happened and method.moves_model):
            L = method.objective(train_losses(), step) (+ weight decay)     # plain inner step on Σ w_i f_i^tr
            L.backward(); optimizer.step()
        method.observe(losses_before_the_step, step); method.on_epoch_end(epoch)

    The outer step comes first, as in Auto-Lambda's and MOML's official training loops (meta update,
    then the model update with the new weights).
    """

    bilevel: ClassVar[bool] = True
    stateful: ClassVar[bool] = True
    outer_every: ClassVar[int] = 1  # outer steps happen every ``outer_every`` inner steps (at steps 0, k, 2k, ...)
    #: True when outer_step also updates the model params in place (FORUM's joint (α, ω) step): the
    #: loop then takes no plain inner step Σ w_i f_i^tr on the steps that have an outer step.
    moves_model: ClassVar[bool] = False
    hook_names: ClassVar[tuple[str, ...]] = (*LossWeighting.hook_names, "outer_step")

    @abstractmethod
    def outer_step(
        self,
        params: Sequence[Tensor],
        train_losses: Callable[[], Tensor],
        val_losses: Callable[[], Tensor],
        lr: float,
        *,
        train_losses_at: Callable[[Sequence[Tensor]], Tensor],
        val_losses_at: Callable[[Sequence[Tensor]], Tensor],
        weight_decay: float = 0.0,
        optimizer: Any = None,
        step: int = 0,
    ) -> None:
        """Update the weights (and, when ``moves_model``, the params) from the validation objective.

        Args:
            params: the model tensors θ of the inner problem (leaves with requires_grad). Read, not
                modified, unless ``moves_model`` (then updated in place under ``torch.no_grad()``);
                methods that unroll a virtual step θ' = θ − lr·∇(Σ w_i f_i^tr) build θ' as new tensors
                and evaluate the losses there with ``train_losses_at``/``val_losses_at``.
            train_losses: recomputes the (K,) training losses at the current params, with a graph
                (equal to ``train_losses_at(params)``).
            val_losses: recomputes the (K,) validation losses at the current params, with a graph.
            lr: the inner (model) learning rate α, for virtual or unrolled steps.
            train_losses_at: a list of tensors shaped like ``params`` -> the (K,) training losses
                there, differentiable in those tensors (the same batch as ``train_losses``).
            val_losses_at: the same for the validation losses.
            weight_decay: the L2 weight decay of the inner step (gradient weight_decay·θ, i.e. of
                ½·weight_decay·‖θ‖²); on ``bilevel-ridge`` it is the lower level's ridge term.
            optimizer: the model optimiser, read-only (Auto-Lambda folds its SGD momentum buffer into
                the virtual step); None when unknown.
            step: the 0-based inner step counter.
        """


class StartBatch(ABC):
    """Optional speed path of :func:`reference_impls.runner.run`: B instances of one method, one per start, stepped as one.

    On a point problem the runner drives one instance per start (B of them) through the per-start
    protocol above: B calls of ``weights``, B autograd graphs of ``objective``, B optimisers, B calls of
    each hook, every step. A method class may offer a batch instead: ``cls.start_batch(methods,
    optimizer)`` returns a :class:`StartBatch` (or None to decline) holding the B instances' state as
    (B, K) arrays, and the runner then calls, at every step t,

        W = batch.step(t, F, J)         # (B, K) weights of step t for the (B, K) losses F (and (B, K, n) J);
                                        # also everything else the per-start protocol does in step t:
                                        # parameter gradients and the optimiser step, observe(F_b, t)
        d_b = W[b] @ J[b]               # the runner, with the same product as the per-start path
        batch.after_step(t, F_new)      # update(F_new_b) and on_epoch_end(t) (full batch: every step is an epoch)

    and ``batch.finish()`` at the end, which writes the state back into the B instances (so the
    instances after a batched run are those of a per-start run).

    Contract: each row of the batch follows the same arithmetic, in the same order, as the instance of
    that start would (the method's own formulas, written for (B, K) arrays: gradients of the objective
    in closed form where the per-start path uses autograd, with the same products), so that the runner's
    results are those of the per-start loop (tested per method, bit for bit where the operations are
    the same, tests/reference_impls/test_start_batches.py). The input checks run once per step on the
    whole batch; where they fail, the instance of the first offending start raises its own error.

    ``optimizer(P)`` (given by the runner) returns an optimiser over a (B, ...) parameter tensor P whose
    step moves each row exactly as the run's per-start optimiser would move that row on its own.

    A batch replicates the class's own code, so it applies only when the instances are of exactly that
    class and run its own functions: :meth:`applies` checks that no replicated attribute (``weights``,
    ``objective``, the hooks) was overridden by a subclass, patched on the class (e.g. by a test's spy)
    or set on an instance; otherwise the runner takes the per-start path.
    """

    #: The method class this batch replicates, and the attributes of it whose code the batch replicates.
    method_class: ClassVar[type]
    replicates: ClassVar[tuple[str, ...]] = ()
    _originals: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "method_class" in cls.__dict__:  # snapshot the functions as defined, before any patching
            cls._originals = {name: getattr(cls.method_class, name) for name in cls.replicates}

    @classmethod
    def applies(cls, methods: Sequence[Any]) -> bool:
        """Whether every instance is exactly ``method_class`` running the replicated code unchanged."""
        target = cls.method_class
        if not methods or any(type(m) is not target for m in methods):
            return False
        if any(getattr(target, name) is not original for name, original in cls._originals.items()):
            return False  # patched on the class
        return not any(name in vars(m) for m in methods for name in cls._originals)  # set on an instance

    @abstractmethod
    def step(self, t: int, F: Tensor, J: Tensor) -> Tensor:
        """The weights W (B, K) of step t, in J's dtype, and the step's other per-start effects."""

    def after_step(self, t: int, F_new: Tensor) -> None:
        """Post-step hooks for every start with the (B, K) losses at the new iterates."""

    def finish(self) -> None:
        """Write the batch's state back into the instances."""


__all__ = ["BilevelLossWeighting", "LossWeighting", "StartBatch"]
