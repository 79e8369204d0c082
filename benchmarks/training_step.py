"""Time a whole training step of our ``backward()`` against TorchJD's and against one plain backward pass.

    make bench-step                 # (if the Makefile has it) or:
    .venv/bin/python benchmarks/training_step.py [--quick]
    ... --threads 1 --clock cpu    # on a busy machine: one thread, process CPU time (steadier)

On the two networks of benchmarks/common.py (a 3-layer ReLU MLP with 148,224 shared parameters and a
small CNN with 37,920, each with K linear heads, after 20 SGD steps), for K ∈ {2, 8, 32} and every
method TorchJD also has, one step is: zero the gradients, forward pass, then

* ours: ``method.backward(losses, shared_params, task_params)`` (J by autograd, aggregate, ``.grad``);
* TorchJD 0.18: ``mtl_backward(losses, features=Z)`` then ``jac_to_grad(shared_params, aggregator)``;
* floor: ``sum(losses).backward()``, the one backward pass that plain summed-loss training needs.

The Jacobian alone is also timed (forward pass + J), both ways that ``reference_impls.core.aggregator
.jacobian`` can compute it, each against TorchJD's ``mtl_backward`` alone computing it the same way:
K one-row backward passes (``batched=False`` against ``parallel_chunk_size=1``; row ``jacobian-loop``)
and one vectorised pass (``batched=True`` against TorchJD's default, all rows under ``torch.vmap``;
row ``jacobian-batched``).

Times are the best of interleaved rounds (floor, ours, TorchJD in turn) on ``--threads`` CPU threads.
Printed: milliseconds per step and the ratios ours/TorchJD and ours/floor, and the worst ratio to
TorchJD. Stored in benchmarks/results/training_step.json with versions, CPU and load averages.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    NETWORKS,
    ROOT,
    TORCHJD_METHODS,
    TRAINED_STEPS,
    environment,
    make_network,
    ratio,
    time_interleaved,
    torchjd_counterparts,
    write_results,
)

import torch  # noqa: E402

import reference_impls  # noqa: E402
from reference_impls.core.aggregator import jacobian  # noqa: E402



def torchjd_autojac():
    try:
        from torchjd.autojac import jac_to_grad, mtl_backward
    except ImportError:
        return None
    return mtl_backward, jac_to_grad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall time, or process CPU time (steadier on a loaded machine)"
    )
    parser.add_argument("--K", type=int, nargs="*", default=None, help="numbers of tasks (default 2 8 32)")
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--methods", nargs="*", default=list(TORCHJD_METHODS), help="registry ids (default: those TorchJD has)")
    parser.add_argument("--quick", action="store_true", help="smoke run: K = 2 and 4, tiny networks, two rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds at least (more: steadier minima on a busy machine)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "training_step.json"))
    args = parser.parse_args(argv)
    Ks = args.K or ([2, 4] if args.quick else [2, 8, 32])
    timing = {"rounds": 2, "min_seconds": 0.0} if args.quick else {"rounds": args.rounds, "min_seconds": 0.3, "max_rounds": max(20, args.rounds)}
    timing["clock"] = args.clock

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    env = {**environment(args.threads, args.clock), "rounds": timing["rounds"]}
    autojac = torchjd_autojac()
    rows = []
    header = f"{'network':8s} {'method':17s} {'K':>3s} {'ours ms':>9s} {'torchjd ms':>11s} {'ours/tjd':>9s} {'ours/floor':>10s}"
    print(header)
    print("-" * len(header))

    def report(network: str, name: str, K: int, n: int, best: dict[str, float]) -> None:
        t_ours, t_tjd, t_floor = best["ours"], best.get("torchjd"), best["floor"]
        rows.append({
            "network": network,
            "method": name,
            "K": K,
            "n": n,
            "ours_s": t_ours,
            "torchjd_s": t_tjd,
            "floor_s": t_floor,
            "ours_over_torchjd": ratio(t_ours, t_tjd),
            "ours_over_floor": t_ours / t_floor,
        })  # fmt: skip
        tjd = f"{t_tjd * 1e3:11.3f}" if t_tjd else f"{'-':>11s}"
        r = f"{t_ours / t_tjd:9.2f}" if t_tjd else f"{'-':>9s}"
        print(f"{network:8s} {name:17s} {K:3d} {t_ours * 1e3:9.3f} {tjd} {r} {t_ours / t_floor:10.2f}")

    for network in args.networks:
        for K in Ks:
            net = make_network(network, K, quick=args.quick)
            net.train(TRAINED_STEPS)
            shared, heads = net.shared_params, net.task_params

            def floor():
                net.zero_grad()
                _, losses = net.forward()
                sum(losses).backward()

            def tjd_jacobian(chunk=None):
                net.zero_grad()
                Z, losses = net.forward()
                autojac[0](losses, features=Z, parallel_chunk_size=chunk)  # .jac of the shared parameters, .grad of the heads
                for p in shared:
                    del p.jac

            for mode in ("loop", "batched"):
                fns = {"floor": floor, "ours": lambda b=mode == "batched": jacobian(net.forward()[1], shared, heads, batched=b)}
                if autojac:  # like for like: K one-row passes against TorchJD's (parallel_chunk_size=1), vmap against vmap
                    fns["torchjd"] = (lambda: tjd_jacobian(1)) if mode == "loop" else tjd_jacobian
                report(network, f"jacobian-{mode}", K, net.n, time_interleaved(fns, **timing))

            theirs = torchjd_counterparts(K, tuple(args.methods))
            for name in args.methods:
                method = reference_impls.create(name)

                def ours(method=method):
                    net.zero_grad()
                    _, losses = net.forward()
                    method.backward(losses, shared, heads)

                fns = {"floor": floor, "ours": ours}
                if autojac and name in theirs:

                    def tjd(aggregator=theirs[name]):
                        net.zero_grad()
                        Z, losses = net.forward()
                        autojac[0](losses, features=Z)
                        autojac[1](shared, aggregator)

                    fns["torchjd"] = tjd
                report(network, name, K, net.n, time_interleaved(fns, **timing))
    compared = [r for r in rows if r.get("ours_over_torchjd") and not r["method"].startswith("jacobian")]
    if compared:
        worst = max(compared, key=lambda r: r["ours_over_torchjd"])
        print(f"\nworst step ours/TorchJD: {worst['ours_over_torchjd']:.2f} ({worst['method']}, {worst['network']}, K = {worst['K']})")
    write_results(args.output, "training_step", env, quick=args.quick, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
