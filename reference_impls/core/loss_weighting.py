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
holds ``method.parameters()``).

and, for a :class:`BilevelLossWeighting`, every ``outer_every`` steps ``method.outer_step(...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

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
    """A loss weighting whose weights are updated by an outer (hypergradient or meta) step."""

    bilevel: ClassVar[bool] = True
    stateful: ClassVar[bool] = True
    outer_every: ClassVar[int] = 1  # outer steps happen every ``outer_every`` inner steps

    @abstractmethod
    def outer_step(
        self,
        params: Sequence[Tensor],
        train_losses: Callable[[], Tensor],
        val_losses: Callable[[], Tensor],
        lr: float,
    ) -> None:
        """Update the weights from the validation objective.

        Args:
            params: the model parameters θ of the inner problem (read, not modified: methods that
                unroll a virtual step θ' = θ − lr·∇(Σ w_i f_i^train) work on copies).
            train_losses: recomputes the (K,) training losses at the current θ, with a graph.
            val_losses: recomputes the (K,) validation losses, with a graph.
            lr: the inner learning rate (for the virtual step).
        """


__all__ = ["BilevelLossWeighting", "LossWeighting"]
