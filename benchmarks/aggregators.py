"""Time every gradient-balancing method on Gaussian and real-network Jacobians, beside TorchJD and the floor.

    make bench-aggregators          # installs TorchJD into .bench-deps/ (benchmark only), then runs this
    .venv/bin/python benchmarks/aggregators.py --quick      # smoke run: tiny sizes, few rounds
    ... --threads 1 --clock cpu    # on a busy machine: one thread, process CPU time (steadier)

Jacobians (float32, K ∈ {2, 8, 32} rows):

* ``gaussian``: random J (K, n) with row scales from 0.1 to 10, n ∈ {10^4, 10^6};
* ``mlp-init`` / ``mlp-trained``: the Jacobian of a 3-layer ReLU MLP with K heads (148,224 shared
  parameters), at initialisation and after 20 SGD steps;
* ``cnn-init`` / ``cnn-trained``: the same for a small CNN (37,920 shared parameters); see
  benchmarks/common.py for both networks.

Each method is called on the same J (with losses where it needs them) on this machine's CPU threads
(2 by default, as CI) and timed as the best of interleaved rounds (floor, ours, TorchJD in turn).
Two references in the same run:

* floor: the work no Gram-based method can avoid, M = J Jᵀ (formed as our methods form it,
  ``reference_impls.core.aggregator.gram_product``) plus one weighted sum of rows wᵀJ;
* TorchJD (PyPI ``torchjd``, its aggregators with matching hyperparameters), where it has the method.

Printed: milliseconds per call and the ratios ours/TorchJD and ours/floor, and the worst ratio to
TorchJD. Results are stored as data in benchmarks/results/aggregators.json (with the torch and
TorchJD versions, threads, CPU and the load average before and after the run).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    TRAINED_STEPS,
    environment,
    network_jacobian,
    ratio,
    time_interleaved,
    torchjd_counterparts,
    write_results,
)

import torch  # noqa: E402

import reference_impls  # noqa: E402
from reference_impls.core.aggregator import gram_product  # noqa: E402

GRADIENT_BALANCING = ("gradient-weighting", "gradient-manipulation")
JACOBIANS = ("gaussian", "mlp-init", "mlp-trained", "cnn-init", "cnn-trained")


def gaussian_jacobian(K: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(K * 1000 + n)
    return torch.randn(K, n, generator=gen) * torch.logspace(-1, 1, K)[:, None]  # (K, n), imbalanced rows


def cases(kinds: list[str], Ks: list[int], ns: list[int], quick: bool):
    """(jacobian kind, K, J) for every benchmarked Jacobian."""
    for kind in kinds:
        if kind == "gaussian":
            for n in ns:
                for K in Ks:
                    yield kind, K, gaussian_jacobian(K, n)
        else:
            network, stage = kind.split("-")
            for K in Ks:
                yield kind, K, network_jacobian(network, K, trained_steps=TRAINED_STEPS if stage == "trained" else 0, quick=quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall time, or process CPU time (steadier on a loaded machine)"
    )
    parser.add_argument("--K", type=int, nargs="*", default=None, help="numbers of tasks (default 2 8 32)")
    parser.add_argument("--n", type=int, nargs="*", default=None, help="Gaussian widths (default 10^4 10^6)")
    parser.add_argument("--jacobians", nargs="*", default=list(JACOBIANS), choices=JACOBIANS)
    parser.add_argument("--methods", nargs="*", default=None, help="registry ids (default: all gradient-balancing methods)")
    parser.add_argument("--quick", action="store_true", help="smoke run: K = 2 and 4, tiny networks, two rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds at least (more: steadier minima on a busy machine)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "aggregators.json"))
    args = parser.parse_args(argv)
    Ks = args.K or ([2, 4] if args.quick else [2, 8, 32])
    ns = args.n or ([1000] if args.quick else [10_000, 1_000_000])
    timing = {"rounds": 2, "min_seconds": 0.0} if args.quick else {"rounds": args.rounds, "min_seconds": 0.15, "max_rounds": max(50, args.rounds)}
    timing["clock"] = args.clock

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    env = {**environment(args.threads, args.clock), "rounds": timing["rounds"]}
    methods = args.methods or [
        name for name in reference_impls.names() if reference_impls.info(name).family in GRADIENT_BALANCING
    ]
    rows = []
    header = f"{'jacobian':12s} {'method':12s} {'K':>3s} {'n':>8s} {'ours ms':>9s} {'torchjd ms':>11s} {'ours/tjd':>9s} {'ours/floor':>10s}"
    print(header)
    print("-" * len(header))
    for kind, K, J in cases(args.jacobians, Ks, ns, args.quick):
        n = J.shape[1]
        losses = torch.rand(K, generator=torch.Generator().manual_seed(K)) + 0.5  # (K,)
        w = torch.full((K,), 1.0 / K)

        def floor():
            M = gram_product(J)  # (K, K), J Jᵀ as our methods form it (column blocks for short, very wide J)
            return w @ J + 0 * M[0, 0]  # (n,)

        theirs = torchjd_counterparts(K)
        t_floor = None
        for name in methods:
            try:
                method = reference_impls.create(name)
            except Exception as error:
                print(f"{kind:12s} {name:12s} {K:3d} {n:8d}   not available: {error}")
                continue
            needs = getattr(method, "needs_losses", False)
            fns = {"floor": floor, "ours": (lambda: method(J, losses)) if needs else (lambda: method(J))}
            if name in theirs:
                fns["torchjd"] = lambda: theirs[name](J)
            best = time_interleaved(fns, **timing)
            t_ours, t_tjd = best["ours"], best.get("torchjd")
            t_floor = best["floor"] if t_floor is None else min(t_floor, best["floor"])
            rows.append({
                "jacobian": kind,
                "method": name,
                "K": K,
                "n": n,
                "ours_s": t_ours,
                "torchjd_s": t_tjd,
                "floor_s": best["floor"],
                "ours_over_torchjd": ratio(t_ours, t_tjd),
                "ours_over_floor": t_ours / best["floor"],
            })  # fmt: skip
            tjd = f"{t_tjd * 1e3:11.3f}" if t_tjd else f"{'-':>11s}"
            r = f"{t_ours / t_tjd:9.2f}" if t_tjd else f"{'-':>9s}"
            print(f"{kind:12s} {name:12s} {K:3d} {n:8d} {t_ours * 1e3:9.3f} {tjd} {r} {t_ours / best['floor']:10.2f}")
        rows.append({"jacobian": kind, "method": "floor", "K": K, "n": n, "ours_s": t_floor})
        print(f"{kind:12s} {'floor':12s} {K:3d} {n:8d} {(t_floor or float('nan')) * 1e3:9.3f}")
    compared = [r for r in rows if r.get("ours_over_torchjd")]
    if compared:
        worst = max(compared, key=lambda r: r["ours_over_torchjd"])
        print(
            f"\nworst ours/TorchJD: {worst['ours_over_torchjd']:.2f} ({worst['method']}, {worst['jacobian']}, "
            f"K = {worst['K']}, n = {worst['n']})"
        )
    write_results(args.output, "aggregators", env, quick=args.quick, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
