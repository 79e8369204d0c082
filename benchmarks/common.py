"""Shared pieces of the speed benchmarks: TorchJD counterparts, interleaved timing, small real networks.

Imported by benchmarks/aggregators.py and benchmarks/training_step.py (run as scripts, so this module
is found next to them). TorchJD is a benchmark-only dependency installed into .bench-deps/ by
``make bench-deps``; without it every comparison column is empty and the scripts still run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DEPS = ROOT / ".bench-deps"
if BENCH_DEPS.is_dir() and str(BENCH_DEPS) not in sys.path:
    sys.path.insert(0, str(BENCH_DEPS))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import reference_impls  # noqa: E402

# Registry ids of our methods that TorchJD also implements, in table order.
TORCHJD_METHODS = (
    "upgrad",
    "mgda",
    "cagrad",
    "nash-mtl",
    "pcgrad",
    "gradvac",
    "imtl-g",
    "aligned-mtl",
    "fairgrad",
    "graddrop",
    "sdmgrad",
)


TRAINED_STEPS = 20  # SGD steps before the "trained" Jacobians and networks are taken


def torchjd_counterparts(K: int, names: tuple[str, ...] = TORCHJD_METHODS) -> dict[str, object]:
    """TorchJD aggregators with the hyperparameters our defaults use (empty if TorchJD is absent)."""
    try:
        import torchjd.aggregation as A
    except ImportError:
        return {}

    def ours(name: str) -> object:
        return reference_impls.create(name)

    table: dict[str, Callable[[], object]] = {
        "upgrad": lambda: A.UPGrad(),
        "mgda": lambda: A.MGDA(),
        "cagrad": lambda: A.CAGrad(c=getattr(ours("cagrad"), "c", 0.5)),
        "nash-mtl": lambda: A.NashMTL(n_tasks=K),
        "pcgrad": lambda: A.PCGrad(),
        "gradvac": lambda: A.GradVac(),
        "imtl-g": lambda: A.IMTLG(),
        "aligned-mtl": lambda: A.AlignedMTL(),
        "fairgrad": lambda: A.FairGrad(alpha=getattr(ours("fairgrad"), "alpha", 2.0)),
        "graddrop": lambda: A.GradDrop(),
        # TorchJD's SDMGrad weighting is meant for A = J₁J₂ᵀ from two batches; here, like ours, on J Jᵀ
        # (it runs 20 inner SGD steps where ours solves the QP exactly).
        "sdmgrad": lambda: A.GramianWeightedAggregator(A.SDMGradWeighting(lambda_=getattr(ours("sdmgrad"), "lamda", 0.3))),
    }
    out = {}
    for name in names:
        if name not in table:
            continue
        try:
            out[name] = table[name]()
        except Exception as error:  # an optional dependency of TorchJD missing: report, don't hide
            print(f"  (TorchJD {name} unavailable: {error})", file=sys.stderr)
    return out


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    rounds: int = 7,
    min_seconds: float = 0.5,
    max_rounds: int = 50,
    clock: str = "wall",
) -> dict[str, float]:
    """Best-of-rounds seconds per call for each function, measured in interleaved rounds.

    Each round calls every function once, in turn, so that a slow spell of a shared machine hits all
    of them alike; the minimum over rounds is the least-disturbed measurement (as timeit advises).
    Functions taking under a millisecond are repeated inside a round and averaged. ``clock="cpu"``
    measures the process's CPU time (all its threads) instead of wall time: on a loaded machine
    with one thread it counts our work without the time spent waiting for a core.
    """
    now = CLOCKS[clock]
    inner: dict[str, int] = {}
    for name, fn in fns.items():  # warm-up and calibration
        fn()
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        inner[name] = max(1, min(1000, int(1e-3 / max(once, 1e-7))))
    best = {name: float("inf") for name in fns}
    start = time.perf_counter()
    done = 0
    while done < rounds or (time.perf_counter() - start < min_seconds and done < max_rounds):
        for name, fn in fns.items():
            t0 = now()
            for _ in range(inner[name]):
                fn()
            best[name] = min(best[name], (now() - t0) / inner[name])
        done += 1
    return best


def environment(threads: int, clock: str) -> dict[str, object]:
    """What the timings depend on: versions, threads, CPU, and the machine's load when they were taken."""
    try:
        from importlib.metadata import version

        tjd_version = version("torchjd")
    except Exception:  # not installed: no comparison was made
        tjd_version = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "dtype": "float32",
        "threads": threads,
        "clock": clock,
        "torch": torch.__version__,
        "torchjd": tjd_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_before": list(os.getloadavg()),
    }


def write_results(output: str | Path, benchmark: str, env: dict[str, object], *, quick: bool, rows: list[dict]) -> None:
    """Store one run as JSON (atomically): the environment, the load after the run, and the rows."""
    import json

    from modl.io import atomic_write

    result = {
        "benchmark": benchmark,
        **env,
        "load_after": list(os.getloadavg()),
        "quick": quick,
        "trained_steps": TRAINED_STEPS,
        "rows": rows,
    }
    atomic_write(Path(output), json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {output}")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# ----------------------------------------------------------------------------------------------
# Small real networks: a shared encoder, K linear heads, one regression loss per head
# ----------------------------------------------------------------------------------------------

NETWORKS = ("mlp", "cnn")


@dataclass
class MultiTaskNet:
    """A shared encoder with K heads on one fixed batch (X, Y); task i regresses column i of Y."""

    name: str
    encoder: nn.Module
    heads: nn.ModuleList
    X: Tensor  # (B, ...) inputs
    Y: Tensor  # (B, K) targets

    @property
    def shared_params(self) -> list[Tensor]:
        return list(self.encoder.parameters())

    @property
    def task_params(self) -> list[Tensor]:
        return list(self.heads.parameters())

    @property
    def n(self) -> int:
        return sum(p.numel() for p in self.shared_params)

    def forward(self) -> tuple[Tensor, list[Tensor]]:
        """The shared representation Z (B, h) and the K scalar losses f_i = mean_b (head_i(Z)_b − Y_bi)²."""
        Z = self.encoder(self.X)  # (B, h)
        losses = [((head(Z).squeeze(-1) - self.Y[:, i]) ** 2).mean() for i, head in enumerate(self.heads)]
        return Z, losses

    def zero_grad(self) -> None:
        for p in self.shared_params + self.task_params:
            p.grad = None

    def train(self, steps: int, lr: float = 0.05) -> None:
        """Plain SGD on the mean loss, so that the Jacobian is that of a network partway through training."""
        opt = torch.optim.SGD(self.shared_params + self.task_params, lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            _, losses = self.forward()
            (sum(losses) / len(losses)).backward()
            opt.step()
        self.zero_grad()


def make_network(kind: str, K: int, *, quick: bool = False, seed: int = 0) -> MultiTaskNet:
    """The benchmark networks, float32, at initialisation.

    * ``mlp``: 64 → 256 → 256 → 256 with ReLUs (148,224 shared parameters), batch 64;
    * ``cnn``: two 3×3 conv + ReLU + 2×2 max-pool blocks (3 → 16 → 32 channels) on 16×16 RGB
      inputs, then a 512 → 64 linear + ReLU (37,920 shared parameters), batch 32.

    Each of the K heads is a linear map from the representation to one output. The targets are a
    shared random teacher of the inputs mixed differently per task plus noise, so that the tasks are
    related (correlated gradients), as in multi-task practice. ``quick`` shrinks both networks for
    smoke runs.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "mlp":
        d_in, h, B = (8, 16, 8) if quick else (64, 256, 64)
        encoder = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        X = torch.randn(B, d_in, generator=gen)  # (B, d_in)
    elif kind == "cnn":
        c1, c2, side, h, B = (2, 4, 8, 8, 4) if quick else (16, 32, 16, 64, 32)
        encoder = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, h), nn.ReLU(),
        )  # fmt: skip
        X = torch.randn(B, 3, side, side, generator=gen)  # (B, 3, side, side)
    else:
        raise ValueError(f"unknown network {kind!r}: choose from {NETWORKS}")
    heads = nn.ModuleList([nn.Linear(h, 1) for _ in range(K)])
    teacher = torch.tanh(X.reshape(B, -1) @ torch.randn(X[0].numel(), 8, generator=gen) / X[0].numel() ** 0.5)  # (B, 8)
    Y = teacher @ torch.randn(8, K, generator=gen) + 0.1 * torch.randn(B, K, generator=gen)  # (B, K)
    return MultiTaskNet(kind, encoder, heads, X, Y)


def network_jacobian(kind: str, K: int, *, trained_steps: int, quick: bool = False) -> Tensor:
    """The (K, n) float32 Jacobian of the K losses w.r.t. the shared parameters of ``kind``."""
    from reference_impls.core.aggregator import jacobian

    net = make_network(kind, K, quick=quick)
    if trained_steps:
        net.train(trained_steps)
    _, losses = net.forward()
    J, _ = jacobian(losses, net.shared_params, net.task_params, batched=False)  # (K, n)
    return J.detach()
