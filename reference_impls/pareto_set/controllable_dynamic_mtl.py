r"""Controllable dynamic multi-task architectures (id ``controllable-dynamic-mtl``), at small scale.

Raychaudhuri, Suh, Schulter, Yu, Faraki, Roy-Chowdhury, Chandraker, "Controllable Dynamic Multi-Task
Architectures", CVPR 2022 (arXiv 2203.14949). No official code was found (NEC Labs; none public); the
equations below are the paper's §3 as printed in its patent US 2023/0196122 (same authors, same text
with the equations; the paper's supplementary, which details the node-use probability and the
affinity A, was not read).

Given a task preference r in the simplex (K,) and a resource preference c ∈ [0, 1] (larger c: more
frugal), a controller of two hypernetworks turns an N-stream *anchor net* (N = K single-task streams
of L blocks, pre-trained one per task, then frozen) into a tree-structured multi-task network: an edge
hypernet gives each node's distribution over its parent in the block below (§3.2), a weight hypernet
perturbs the normalisation layers (§3.3.2), and a branching regulariser (the budget term) weighted by
c pushes the active tasks to share nodes (update rule below).

Training (§3.3): stage 0 trains each anchor stream on its own task; stage 1 trains the edge hypernet
on the task loss plus the regulariser (weights unmodulated); stage 2 trains the weight hypernet on
the task loss alone with the anchor and the edge hypernet frozen. At test time the maximum-likelihood
tree (each node's most likely parent) is used. Its compute cost here is the fraction of the K·L anchor
nodes that the tree uses (the paper's "ratio of the size of the predicted architecture to the anchor
net", Fig. 5).

Here (mtl-regression, the runner's ``mtl-regression-set`` data): streams of L = 3 blocks Linear(·, h) →
BN (batch statistics over the N rows) → tanh, h = 16, and head i: Linear(h, 1) on node (L, i).
The node-use probability (reconstructed, D2): every task reads its own stream's last node, and a node
is used if a used child picks it, children independent. The affinity of streams i, j at block l: RSA
(the paper's choice) on the anchor net: the Pearson correlation of the two representational
dissimilarity matrices (1 − the correlation of the N rows' features), clipped at 0.

On a point problem (``biquad``, ``vlmop2``...: no data, one decision vector x ∈ Rⁿ shared by every
task) the anchor streams read a constant input 𝟙 and head i outputs x ∈ Rⁿ; since every task must
be evaluated at the same x, one extra categorical (logits from the edge hypernet) picks the stream
whose head gives x (so the top node's use probability is its probability). The criterion's target is
then the LS map (``target = "ls"``), compared with the problem's oracle by the runner.

``forward(r)`` (the "solution" the interface returns): the decision vector x (B, n) on a point
problem; on mtl-regression the architecture and weights: the one-hot ML tree (B, (L−1)·N·N) followed
by the perturbations (Δγ, Δβ) (B, 2·L·N·h). The runner's evaluation budget is ``budget`` (c = 0 by
default: no resource pressure); ``compute_cost`` and ``evaluate`` take any c.

Defaults and sources: :math:`\lambda_A = 1`, :math:`\lambda_I = 0.1` (paper §3.3.1; the patent prints :math:`\lambda_A = 0.05`); τ = 1/(2K)
(the patent only says τ < 1/N); ζ = 1 (not stated: reconstructed); r ~ Dir(1), c ~ U(0, 1) (the paper's
evaluation draws r uniformly from the simplex; the training distribution of (r, c) is not stated);
hypernets MLP(K+1 → 32 → 32) (ours); Adam 1e-2, 300 steps, 8 preferences per step, half the steps for
each stage, 200 anchor steps (ours: the paper's settings are for ResNet/NYU-v2).

Update rule:
    The tree network. Node :math:`j` of block :math:`l+1` reads one node of block :math:`l`, chosen by
    :math:`d_j^l` (one-hot, or a relaxed sample in stage 1: D3); every node applies its frozen anchor
    layer with a batch-normalisation whose scale and shift the weight hypernet perturbs (§3.2,
    §3.3.2); :math:`X` is the data (a constant 1 on point problems) and :math:`\mu, s` the mean and
    standard deviation over the :math:`N` rows (no normalisation when :math:`N = 1`):

    .. math::

        x_j^{1} = X, \qquad x_j^{l+1} = \sum_{k=1}^{K} d_j^l(k)\, y_k^l, \qquad y_j^l = \tanh\Big((\gamma_j^l + \Delta\gamma_j^l)\,\frac{z_j^l - \mu}{\sqrt{s^2 + 10^{-5}}} + \beta_j^l + \Delta\beta_j^l\Big), \quad z_j^l = W_j^l x_j^l + b_j^l

    and task :math:`i` reads its head on node :math:`(L, i)`, with the mean squared error as its loss
    :math:`L_i`. The two hypernetworks read :math:`(r, c)` (:math:`r` rescaled onto the simplex):

    .. math::

        \alpha = \operatorname{softmax}\big(h(r, c; \phi)\big), \qquad \{\Delta\gamma, \Delta\beta\} = \bar h(r, c; \varphi), \qquad v_j^l(k) = \operatorname{softmax}_k\Big(\frac{\log \alpha_j^l(k) + G_j^l(k)}{\zeta}\Big)

    with :math:`G` standard Gumbel noise and the temperature :math:`\zeta = 1` (the Gumbel-softmax
    sample of :math:`d_j^l`). The branching regulariser, with the active tasks
    :math:`\mathcal{A} = \{i : r_i \ge \tau\}`, the inactive ones
    :math:`\mathcal{I} = \{i : r_i < \tau\}` (:math:`\tau = 1/(2K)`), the weights
    :math:`\lambda_A = 1`, :math:`\lambda_I = 0.1`, the affinity :math:`A_l(i, j)` of the parent
    block and the node-use probability :math:`P_{\mathrm{use}}` of the two choosing nodes (D2):

    .. math::

        \Omega(r, c) = c\,\lambda_A \sum_{l=1}^{L-1} \frac{L - l}{L} \sum_{i \ne j \in \mathcal{A}} A_l(i, j)\, P_{\mathrm{use}}(l{+}1, i)\, P_{\mathrm{use}}(l{+}1, j)\, \lVert v_i^l - v_j^l \rVert^2 + \lambda_I \sum_{l=1}^{L-1} \sum_{j \in \mathcal{I}} \min_{i \in \mathcal{A}} \lVert v_i^l - v_j^l \rVert^2

    .. math::

        P_{\mathrm{use}}(L, i) = 1, \qquad P_{\mathrm{use}}(l, i) = 1 - \prod_{j=1}^{K} \big(1 - P_{\mathrm{use}}(l{+}1, j)\, \alpha_j^l(i)\big)

    Each step draws :math:`B = 8` pairs :math:`r \sim \operatorname{Dir}(\mathbb{1})`,
    :math:`c \sim U(0, 1)` and takes one Adam step on the mean over them of the stage's criterion
    (stage 1 for the first half of the steps, D4):

    .. math::

        \text{stage 1 } (\phi):\ \sum_{i=1}^{K} r_i L_i(\text{relaxed net } d = v,\ \Delta = 0) + \Omega(r, c), \qquad \text{stage 2 } (\varphi):\ \sum_{i=1}^{K} r_i L_i(d = \operatorname{onehot}(\operatorname{arg\,max} v),\ \Delta = \bar h(r, c; \varphi))

    At test time :math:`d_j^l = \operatorname{onehot}(\operatorname{arg\,max}_k \alpha_j^l(k))`. On a
    point problem the solution is the head output of the stream picked by one more categorical of the
    edge hypernet (D6), and its use probability replaces :math:`P_{\mathrm{use}}(L, i) = 1`.

Deviations:
    D1 Small scale: MLP blocks on the synthetic mtl-regression (or a constant input on the toys) instead
       of ResNet-34/MobileNetV2 streams on PASCAL-Context / NYU-v2 / CIFAR-100; the anchor is trained
       inside ``task_losses`` on the first call (stage 0), not loaded from single-task checkpoints.
    D2 The node-use probability and the affinity are reconstructed (the supplementary was not read):
       the use probability by the independence recursion above, taken at the two choosing nodes; the
       affinity per parent block, clipped at 0; affinity 1 on point problems (one row: no RSA). The
       cost is the fraction of anchor nodes used (memory), not GFLOPs.
    D3 The task loss in stage 1 is computed on the relaxed network (each node reads the soft Gumbel
       sample's mixture of the parent nodes); stage 2 trains the weight hypernet on hard trees drawn
       from the frozen edge hypernet's categorical distributions (the paper does not say which trees
       stage 2 sees); test time uses the ML tree (as the paper). Training stage 2 on the ML tree
       instead was tried: on mtl-regression the weight hypernet then repaired the tree for every task
       and task 1's loss stopped following r (seed 0: 0.0085 → 0.0064 → 0.0092 → 0.0082 as task 1's
       preference goes from 0 to 1), so it was not kept.
    D4 One optimiser over both hypernets: in stage 1 the weight hypernet gets no gradient (the
       modulation is off), in stage 2 the edge hypernet's logits are detached (frozen), so Adam steps
       only the stage's hypernet. The weight hypernet's last layer starts at zero (Δ = 0: the anchor).
    D5 Batches of B (r, c) pairs per step (the criterion is the mean over them); float64 throughout.
    D6 Point problems (the extra output categorical above) are ours: the paper's networks read data.

Degenerate inputs: K = 1 (one stream; every node is used: cost 1; r = (1)); simplex vertices
(one active task, the others inactive); c outside [0, 1], non-finite r or c → ValueError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_impls.core.sets import ParetoModel, check_preferences, loss_batch, sample_preferences


def gumbel_softmax(log_alpha: Tensor, zeta: float, generator: torch.Generator | None) -> Tensor:
    """v(k) = softmax_k((log α(k) + G(k)) / ζ), G = −log(−log U), U ~ Unif(0, 1); same shape as log_alpha."""
    U = torch.rand(log_alpha.shape, dtype=log_alpha.dtype, generator=generator).clamp_(1e-12, 1 - 1e-12)
    G = -torch.log(-torch.log(U))  # standard Gumbel noise
    return torch.softmax((log_alpha + G) / zeta, dim=-1)


def rsa_affinity(features: Tensor) -> Tensor:
    """A (S, S): Pearson correlation of the streams' representational dissimilarity matrices, clipped at 0.

    features (S, N, h): each stream's features of the same N rows. RDM_s = 1 − corr(rows of stream s), (N, N).
    """
    S = features.shape[0]
    Z = features - features.mean(2, keepdim=True)  # centre each row's feature vector, (S, N, h)
    Z = Z / Z.norm(dim=2, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny)
    rdm = 1 - Z @ Z.transpose(1, 2)  # 1 − corr(row a, row b), (S, N, N)
    iu = torch.triu_indices(rdm.shape[1], rdm.shape[1], offset=1)
    U = rdm[:, iu[0], iu[1]]  # upper triangles, (S, M)
    U = U - U.mean(1, keepdim=True)
    U = U / U.norm(dim=1, keepdim=True).clamp_min(torch.finfo(U.dtype).tiny)
    A = (U @ U.T).clamp(min=0.0)  # (S, S)
    return A + torch.eye(S, dtype=A.dtype) * (1 - A.diagonal())  # a stream is fully similar to itself


class ControllableDynamicMTL(ParetoModel):
    """Edge hypernet + weight hypernet over a frozen N-stream anchor net (see the module docstring)."""

    name = "controllable-dynamic-mtl"
    target: ClassVar[str | None] = "ls"  # Σ r_i L_i (on point problems the LS map; Ω only moves the tree)
    preference_alpha: ClassVar[float] = 1.0
    default_batch: ClassVar[int] = 8
    default_optimizer: ClassVar[str | None] = "adam"
    default_lr: ClassVar[float | None] = 1e-2
    default_steps: ClassVar[int | None] = 300

    def __init__(
        self, blocks: int = 3, width: int = 16, hyper_hidden: int = 32, lambda_active: float = 1.0, lambda_inactive: float = 0.1,
        tau: float | None = None, zeta: float = 1.0, budget: float = 0.0, stage1_fraction: float = 0.5, anchor_steps: int = 200,
        anchor_lr: float = 1e-2, batch: int = 8, dtype: torch.dtype = torch.float64,
    ) -> None:  # fmt: skip
        super().__init__()
        if int(blocks) < 2 or int(width) < 1 or int(hyper_hidden) < 1 or int(batch) < 1 or int(anchor_steps) < 0:
            raise ValueError(f"{self.name}: need blocks >= 2, width, hyper_hidden, batch >= 1, anchor_steps >= 0")
        if not (lambda_active >= 0 and lambda_inactive >= 0 and zeta > 0 and 0 <= stage1_fraction <= 1 and anchor_lr > 0):
            raise ValueError(f"{self.name}: need λ_A, λ_I >= 0, ζ > 0, 0 <= stage1_fraction <= 1, anchor_lr > 0")
        self.L, self.h, self.hyper_hidden = int(blocks), int(width), int(hyper_hidden)
        self.lambda_active, self.lambda_inactive, self.tau, self.zeta = float(lambda_active), float(lambda_inactive), tau, float(zeta)
        self.budget = self._check_budget(torch.tensor([budget], dtype=torch.float64))[0].item()
        self.stage1_fraction, self.anchor_steps, self.anchor_lr = float(stage1_fraction), int(anchor_steps), float(anchor_lr)
        self.batch, self.dtype = int(batch), dtype
        self.K: int | None = None
        self.steps_planned, self.steps_done = 0, 0
        self.edge_hypernet: nn.Module | None = None
        self.weight_hypernet: nn.Module | None = None
        self.anchor: dict[str, Tensor] | None = None  # frozen anchor weights (plain tensors, not parameters)
        self.affinity: Tensor | None = None  # A_l (L, K, K)
        self._mode: str | None = None  # "data" | "point"
        self._stash: dict[str, Any] | None = None  # the training draw (r, c, generator) and the last Ω terms

    # ------------------------------------------------------------------ building
    def _check_budget(self, c: Tensor) -> Tensor:
        if not bool(torch.isfinite(c).all()) or bool(((c < 0) | (c > 1)).any()):
            raise ValueError(f"{self.name}: the resource preference c must be finite and in [0, 1], got {c.tolist()}")
        return c

    def build(self, K: int) -> None:
        """The two hypernets for K tasks (the anchor is built on the first call that sees the problem)."""
        if K < 1:
            raise ValueError(f"{self.name}: need K >= 1, got {K}")
        self.K = K
        H, L, h = self.hyper_hidden, self.L, self.h
        n_edges = (L - 1) * K * K + K  # α_j^l for blocks 2..L, plus the output categorical (point problems)
        self.edge_hypernet = nn.Sequential(nn.Linear(K + 1, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, n_edges)).to(self.dtype)
        self.weight_hypernet = nn.Sequential(nn.Linear(K + 1, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 2 * L * K * h)).to(self.dtype)
        with torch.no_grad():  # D4: start at the anchor (Δγ = Δβ = 0)
            self.weight_hypernet[-1].weight.zero_()
            self.weight_hypernet[-1].bias.zero_()

    def begin(self, K: int, n: int, *, steps: int, ideal: Tensor | None = None, initial_points: Callable[[int], Tensor] | None = None, problem: Any = None) -> None:
        """Build the hypernets for K tasks and plan the two stages over ``steps``."""
        if self.edge_hypernet is None:
            self.build(K)
        elif self.K != K:
            raise ValueError(f"{self.name} was built for K={self.K}; the problem has K={K}")
        self.steps_planned, self.steps_done = int(steps), 0

    def on_epoch_end(self, epoch: int) -> None:
        """Count the steps (full batch: one epoch per step): the stage switches at stage1_fraction·steps."""
        self.steps_done = int(epoch) + 1

    @property
    def stage(self) -> int:
        """1: train the edge hypernet (L_task + Ω); 2: train the weight hypernet (L_task), edge frozen."""
        return 1 if self.steps_done < self.stage1_fraction * self.steps_planned else 2

    def _tau(self) -> float:
        return float(self.tau) if self.tau is not None else 0.5 / self.K  # τ < 1/N (patent)

    # ------------------------------------------------------------------ the anchor net (stage 0)
    def _data(self, problem: Any) -> tuple[Tensor, Tensor | None]:
        net = getattr(problem, "network", None)
        if net is not None and hasattr(net, "X") and hasattr(net, "Y"):
            X, Y = net.X, net.Y
            if X.ndim != 2 or Y.ndim != 2 or Y.shape != (X.shape[0], self.K) or not Y.is_floating_point():
                raise ValueError(
                    f"{self.name}: its tree network regresses one real target per task from (N, p) inputs; "
                    f"{getattr(problem, 'id', 'this problem')} has inputs {tuple(X.shape)} and targets {tuple(Y.shape)} "
                    f"({Y.dtype}): not supported"
                )
            return X.to(self.dtype), Y.to(self.dtype)  # (N, p), (N, K)
        return torch.ones(1, 1, dtype=self.dtype), None  # point problem: a constant input 𝟙

    def _ensure_anchor(self, problem: Any) -> None:
        if self.K is None:
            raise ValueError(f"{self.name}: the hypernets are not built: call begin(K, n, ...) (or run_pareto)")
        if problem.K != self.K:
            raise ValueError(f"{self.name} was built for K={self.K}; the problem has K={problem.K}")
        if self.anchor is not None:
            return
        Xd, Y = self._data(problem)
        self._mode = "data" if Y is not None else "point"
        out = 1 if self._mode == "data" else int(problem.n)
        K, L, h = self.K, self.L, self.h
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))  # from the run's seed

        def init(fan_in: int, shape: tuple[int, ...]) -> Tensor:
            bound = fan_in**-0.5  # PyTorch's Linear default range
            return ((torch.rand(shape, dtype=self.dtype, generator=g) * 2 - 1) * bound).requires_grad_()

        p = Xd.shape[1]
        W = [init(p if l == 0 else h, (K, h, p if l == 0 else h)) for l in range(L)]  # W_i^l, (K, h, in)
        b = [init(p if l == 0 else h, (K, h)) for l in range(L)]
        gamma = [torch.ones(K, h, dtype=self.dtype, requires_grad=True) for _ in range(L)]
        beta = [torch.zeros(K, h, dtype=self.dtype, requires_grad=True) for _ in range(L)]
        Wo, bo = init(h, (K, out, h)), init(h, (K, out))
        self.anchor = {"W": W, "b": b, "gamma": gamma, "beta": beta, "Wo": Wo, "bo": bo}  # type: ignore[dict-item]
        params = W + b + gamma + beta + [Wo, bo]
        opt = torch.optim.Adam(params, lr=self.anchor_lr)
        eye = torch.eye(K, dtype=self.dtype).expand(L - 1, K, K)  # every node reads its own stream: K single-task nets
        with torch.enable_grad():  # the first call may come from a no-grad evaluation
            for _ in range(self.anchor_steps):  # stage 0: stream i trained on task i alone
                opt.zero_grad(set_to_none=True)
                F = self._stream_losses(problem, Xd, Y, eye[None], None, torch.eye(K, dtype=self.dtype)[None])  # (1, K)
                F.sum().backward()  # Σ_i L_i(stream i): the streams are independent
                opt.step()
        for key, value in self.anchor.items():
            self.anchor[key] = [t.detach() for t in value] if isinstance(value, list) else value.detach()  # type: ignore[index]
        with torch.no_grad():
            self.affinity = self._affinity(Xd)

    def _affinity(self, Xd: Tensor) -> Tensor:
        """A_l (L, K, K) from the anchor's single-task streams (RSA, D2); ones on point problems."""
        K, L = self.K, self.L
        if Xd.shape[0] < 3:
            return torch.ones(L, K, K, dtype=self.dtype)
        rows = Xd[: min(Xd.shape[0], 128)]  # a fixed subset of the inputs
        eye = torch.eye(K, dtype=self.dtype).expand(L - 1, K, K)[None]
        feats = self._features(rows, eye, None)  # list over blocks of (1, K, N', h)
        return torch.stack([rsa_affinity(f[0]) for f in feats])  # (L, K, K)

    def _features(self, Xd: Tensor, parents: Tensor, delta: Tensor | None) -> list[Tensor]:
        """The node outputs y^l (B, K, N, h) of every block, for parent weights (B, L−1, K, K) (rows: child j, columns: parent k)."""
        a = self.anchor
        B, K, L, h = parents.shape[0], self.K, self.L, self.h
        outs = []
        x = Xd[None, None].expand(B, K, *Xd.shape)  # block 1 reads the input, (B, K, N, p)
        for l in range(L):
            if l > 0:
                x = torch.einsum("bjk,bknh->bjnh", parents[:, l - 1], outs[-1])  # x_j^{l+1} = Σ_k d_j(k) y_k^l, (B, K, N, h)
            z = torch.einsum("bknp,khp->bknh", x, a["W"][l]) + a["b"][l][None, :, None, :]  # (B, K, N, h)
            if z.shape[2] > 1:  # BN with the batch statistics of the node input (the N rows)
                z = (z - z.mean(2, keepdim=True)) / torch.sqrt(z.var(2, unbiased=False, keepdim=True) + 1e-5)
            gamma, beta = a["gamma"][l][None], a["beta"][l][None]  # (1, K, h)
            if delta is not None:
                gamma, beta = gamma + delta[:, 0, l], beta + delta[:, 1, l]  # γ + Δγ, β + Δβ, (B, K, h)
            outs.append(torch.tanh(gamma[:, :, None, :] * z + beta[:, :, None, :]))  # y_i^l, (B, K, N, h)
        return outs

    def _stream_losses(self, problem: Any, Xd: Tensor, Y: Tensor | None, parents: Tensor, delta: Tensor | None, out_choice: Tensor) -> Tensor:
        """Task losses (B, K) of the tree given by ``parents`` (B, L−1, K, K) and, on point problems, ``out_choice`` (B, K) (or (1, K, K) per task)."""
        a = self.anchor
        yL = self._features(Xd, parents, delta)[-1]  # (B, K, N, h)
        heads = torch.einsum("bknh,koh->bkno", yL, a["Wo"]) + a["bo"][None, :, None, :]  # head i on node (L, i), (B, K, N, out)
        if Y is not None:
            pred = heads[..., 0]  # ŷ_i, (B, K, N)
            return ((pred - Y.T[None]) ** 2).mean(2)  # L_i = mean_n (ŷ_i − y_i)², (B, K)
        x_heads = heads[:, :, 0, :]  # each stream's candidate x, (B, K, n)
        if out_choice.ndim == 3:  # anchor training: task i evaluated on stream i's own x
            return torch.stack([problem.losses(x_heads[:, i])[:, i] for i in range(self.K)], dim=1)
        x = torch.einsum("bk,bkn->bn", out_choice, x_heads)  # the output edge picks a stream's x, (B, n)
        return problem.losses(x.to(problem.dtype)).to(self.dtype)  # every task at the same x, (B, K)

    # ------------------------------------------------------------------ the controller
    def _inputs(self, preferences: Tensor, budget: Tensor | float | None) -> tuple[Tensor, Tensor, bool]:
        r = torch.as_tensor(preferences, dtype=self.dtype)
        single = r.ndim == 1
        r = r[None] if single else r  # (B, K)
        check_preferences(r.detach(), None, self.K, name=f"{self.name} preference")
        r = r / r.sum(1, keepdim=True)
        c = torch.as_tensor(self.budget if budget is None else budget, dtype=self.dtype).reshape(-1)
        c = self._check_budget(c.expand(r.shape[0]) if c.numel() == 1 else c)  # (B,)
        if c.shape[0] != r.shape[0]:
            raise ValueError(f"{self.name}: {c.shape[0]} budgets for {r.shape[0]} preferences")
        return r, c, single

    def branching_logits(self, r: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """log α (B, L−1, K, K) of the blocks' parent choices and (B, K) of the output choice: h(r, c; ϕ)."""
        B, K, L = r.shape[0], self.K, self.L
        raw = self.edge_hypernet(torch.cat([r, c[:, None]], 1))  # (B, (L−1)K² + K)
        log_alpha = torch.log_softmax(raw[:, : (L - 1) * K * K].reshape(B, L - 1, K, K), dim=-1)  # Σ_k α_j^l(k) = 1
        return log_alpha, torch.log_softmax(raw[:, (L - 1) * K * K :], dim=-1)

    def modulation(self, r: Tensor, c: Tensor) -> Tensor:
        """{Δγ, Δβ} = h̄(r, c; φ), (B, 2, L, K, h)."""
        return self.weight_hypernet(torch.cat([r, c[:, None]], 1)).reshape(r.shape[0], 2, self.L, self.K, self.h)

    def usage(self, parents: Tensor, out_choice: Tensor) -> Tensor:
        """P_use (B, L, K): P_use(L, i) = 1 (data) or the output choice (point); P_use(l, i) = 1 − Π_j (1 − P_use(l+1, j) α_j^l(i))."""
        B, L, K = parents.shape[0], self.L, self.K
        top = torch.ones(B, K, dtype=parents.dtype) if self._mode == "data" else out_choice  # (B, K)
        use = [top]
        for l in range(L - 2, -1, -1):
            picked = use[0][:, :, None] * parents[:, l]  # P_use(l+1, j)·α_j^l(i), (B, j, i)
            use.insert(0, 1 - torch.prod(1 - picked, dim=1))  # (B, K)
        return torch.stack(use, 1)  # (B, L, K)

    def ml_tree(self, r: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """The maximum-likelihood tree: one-hot parents (B, L−1, K, K) and output choice (B, K)."""
        log_alpha, log_out = self.branching_logits(r, c)
        K = self.K
        return nn.functional.one_hot(log_alpha.argmax(-1), K).to(self.dtype), nn.functional.one_hot(log_out.argmax(-1), K).to(self.dtype)

    def compute_cost(self, preferences: Tensor, budget: Tensor | float | None = None) -> Tensor:
        """Fraction of the K·L anchor nodes used by the ML tree (B,): in [(L − 1 + K)/(K·L), 1] on data (every
        task keeps its last node), [1/K, 1] on a point problem. c is the paper's resource preference, not a
        hard cap: the cost falls as c grows only as far as training taught the edge hypernet (tests)."""
        self._require_anchor()
        with torch.no_grad():
            r, c, _ = self._inputs(preferences, budget)
            parents, out = self.ml_tree(r, c)
            return self.usage(parents, out).sum((1, 2)) / (self.K * self.L)  # (B,)

    def _require_anchor(self) -> None:
        if self.anchor is None:
            raise ValueError(f"{self.name}: the anchor net is not trained yet: call task_losses(problem, r) (or run_pareto) first")

    # ------------------------------------------------------------------ ParetoModel interface
    def sample_preferences(self, num: int, K: int, *, generator: torch.Generator | None = None) -> Tensor:
        """r ~ Dir(1) (num, K) and c ~ U(0, 1) (num,) from ``generator``; (r, c) is kept for the next task_losses(r)."""
        r = sample_preferences(num, K, alpha=self.preference_alpha, generator=generator)
        c = torch.rand(num, dtype=torch.float64, generator=generator)  # c ~ U(0, 1)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())  # the Gumbel noise of this draw
        self._stash = {"r": r, "c": c, "gumbel": torch.Generator().manual_seed(seed)}
        return r

    def evaluate(self, problem: Any, preferences: Tensor, budget: Tensor | float | None = None) -> Tensor:
        """Task losses (B, K) of the ML tree with modulated weights at (r, c) (test time)."""
        self._ensure_anchor(problem)
        r, c, _ = self._inputs(preferences, budget)
        Xd, Y = self._data(problem)
        parents, out = self.ml_tree(r, c)
        delta = self.modulation(r, c)
        return self._stream_losses(problem, Xd, Y, parents, delta, out)

    def task_losses(self, problem: Any, preferences: Tensor) -> Tensor:
        """Training draw (the preferences just sampled): the stage's relaxed / sampled tree at the drawn c; else :meth:`evaluate` at ``budget``."""
        self._ensure_anchor(problem)
        stash = self._stash
        r_in = torch.as_tensor(preferences, dtype=torch.float64)
        if stash is None or stash["r"].shape != r_in.shape or not torch.equal(stash["r"], r_in):
            return self.evaluate(problem, preferences)
        self._stash = None  # one use: a later call with the same r is an evaluation
        r, c, _ = self._inputs(preferences, stash["c"])
        Xd, Y = self._data(problem)
        log_alpha, log_out = self.branching_logits(r, c)
        if self.stage == 1:
            v = gumbel_softmax(log_alpha, self.zeta, stash["gumbel"])  # relaxed samples v_j^l, (B, L−1, K, K)
            v_out = gumbel_softmax(log_out, self.zeta, stash["gumbel"])  # (B, K)
            F = self._stream_losses(problem, Xd, Y, v, None, v_out)  # D3: the relaxed network, anchor weights
            self._omega = self.regulariser(r, c, v, self.usage(log_alpha.exp(), log_out.exp()), r.detach())
        else:  # stage 2: hard samples of the frozen edge hypernet, modulated weights (D3, D4)
            with torch.no_grad():
                v = gumbel_softmax(log_alpha, self.zeta, stash["gumbel"])
                v_out = gumbel_softmax(log_out, self.zeta, stash["gumbel"])
                d = nn.functional.one_hot(v.argmax(-1), self.K).to(self.dtype)  # a tree drawn from Cat(α), no graph to ϕ
                d_out = nn.functional.one_hot(v_out.argmax(-1), self.K).to(self.dtype)
            F = self._stream_losses(problem, Xd, Y, d, self.modulation(r, c), d_out)
            self._omega = None
        return F

    def regulariser(self, r: Tensor, c: Tensor, v: Tensor, use: Tensor, key: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Ω (B,) = c·λ_A·L_active + λ_I·L_inactive for samples v (B, L−1, K, K) (v[:, l, i]: node i of block l+2's parent distribution) and P_use (B, L, K)."""
        B, K, L = r.shape[0], self.K, self.L
        tau = self._tau()
        active = r >= tau  # (B, K)
        if K == 1:
            return torch.zeros(B, dtype=self.dtype), key
        diff = ((v[:, :, :, None, :] - v[:, :, None, :, :]) ** 2).sum(-1)  # ||v_i^l − v_j^l||², (B, L−1, K, K)
        layers = torch.arange(1, L, dtype=self.dtype)  # the parent block l of each choice x^{l+1} = d·Y^l, l = 1..L−1
        depth = ((L - layers) / L)[None, :, None, None]  # (L − l)/L, (1, L−1, 1, 1)
        A = self.affinity[:-1][None]  # A_l at the parent blocks, (1, L−1, K, K)
        P = use[:, 1:, :, None] * use[:, 1:, None, :]  # P_use of the two choosing nodes (block l+1): D2, (B, L−1, K, K)
        pair = (active[:, :, None] & active[:, None, :] & ~torch.eye(K, dtype=torch.bool)[None])[:, None]  # i ≠ j ∈ A, (B, 1, K, K)
        l_active = (depth * A * P * diff * pair).sum((1, 2, 3))  # (B,)
        far = diff.masked_fill(~active[:, None, :, None].expand_as(diff), float("inf")).amin(2)  # min_{i∈A} ||v_i − v_j||², (B, L−1, K)
        far = torch.where(torch.isfinite(far), far, torch.zeros_like(far))  # no active task: no term
        l_inactive = (far * (~active)[:, None, :]).sum((1, 2))  # Σ_l Σ_{j∈I}, (B,)
        return c * self.lambda_active * l_active + self.lambda_inactive * l_inactive, key  # Ω, (B,)

    def forward(self, preference: Tensor) -> Tensor:
        """x (B, n) on a point problem; else the ML tree one-hots and (Δγ, Δβ), flattened (module docstring)."""
        if self.edge_hypernet is None:
            raise ValueError(f"{self.name}: the hypernets are not built: call begin(K, n, ...) (or run_pareto)")
        r, c, single = self._inputs(preference, None)  # the input's own errors first
        self._require_anchor()
        parents, out = self.ml_tree(r, c)
        delta = self.modulation(r, c)
        if self._mode == "point":
            a = self.anchor
            yL = self._features(torch.ones(1, 1, dtype=self.dtype), parents, delta)[-1][:, :, 0]  # (B, K, h)
            x_heads = torch.einsum("bkh,koh->bko", yL, a["Wo"]) + a["bo"][None]  # (B, K, n)
            sol = torch.einsum("bk,bkn->bn", out, x_heads)  # (B, n)
        else:
            sol = torch.cat([parents.reshape(r.shape[0], -1), delta.reshape(r.shape[0], -1)], 1)
        return sol[0] if single else sol

    def loss(self, losses: Tensor, preferences: Tensor) -> Tensor:
        """mean_b [Σ_i r_bi L_bi + Ω_b] (stage 1) or mean_b Σ_i r_bi L_bi (stage 2; Ω only of the training draw)."""
        F, r = loss_batch(losses, preferences, name=self.name)  # (B, K), (B, K)
        r = r / r.sum(1, keepdim=True)
        task = (r * F).sum(1)  # L_task = Σ_i r_i L_i, (B,)
        omega = getattr(self, "_omega", None)
        self._omega = None
        if omega is not None:
            value, key = omega
            if key is not None and key.shape == r.shape and torch.equal(key.to(r), r.detach()):
                task = task + value.to(task)  # + Ω(r, c, α̂)
        return task.mean()


__all__ = ["ControllableDynamicMTL", "gumbel_softmax", "rsa_affinity"]
