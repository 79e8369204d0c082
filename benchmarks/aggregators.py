"""Time every gradient-balancing method on random Jacobians, side by side with TorchJD and the floor.

    make bench-aggregators          # installs TorchJD into .bench-deps/ (benchmark only), then runs this

For K ∈ {2, 8, 32} tasks and n ∈ {10^4, 10^6} parameters, on this machine's CPU threads (2 by
default, as CI), each method is called on the same float32 Jacobian J (K, n) (with losses where
the method needs them) and timed as the best of interleaved rounds (floor, ours, TorchJD in turn). Two references in the same run:

* floor: the work no Gram-based method can avoid, M = J Jᵀ plus one weighted sum of rows wᵀJ;
* TorchJD (PyPI ``torchjd``, its aggregators with matching hyperparameters), where it has the method.

Printed: milliseconds per call and the ratios ours/TorchJD and ours/floor. Results are stored as
data in benchmarks/results/aggregators.json (with torch version, threads and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DEPS = ROOT / ".bench-deps"
if BENCH_DEPS.is_dir():
    sys.path.insert(0, str(BENCH_DEPS))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import reference_impls  # noqa: E402
from modl.io import atomic_write  # noqa: E402

GRADIENT_BALANCING = ("gradient-weighting", "gradient-manipulation")


def torchjd_counterparts(K: int) -> dict[str, object]:
    """TorchJD aggregators with the hyperparameters our defaults use (empty if TorchJD is absent)."""
    try:
        import torchjd.aggregation as A
    except ImportError:
        return {}
    ours = {name: reference_impls.create(name) for name in ("cagrad", "fairgrad", "sdmgrad")}
    table = {
        "upgrad": lambda: A.UPGrad(),
        "mgda": lambda: A.MGDA(),
        "cagrad": lambda: A.CAGrad(c=getattr(ours["cagrad"], "c", 0.5)),
        "nash-mtl": lambda: A.NashMTL(n_tasks=K),
        "pcgrad": lambda: A.PCGrad(),
        "gradvac": lambda: A.GradVac(),
        "imtl-g": lambda: A.IMTLG(),
        "aligned-mtl": lambda: A.AlignedMTL(),
        "fairgrad": lambda: A.FairGrad(alpha=getattr(ours["fairgrad"], "alpha", 2.0)),
        "graddrop": lambda: A.GradDrop(),
    }
    out = {}
    for name, make in table.items():
        try:
            out[name] = make()
        except Exception as error:  # an optional dependency of TorchJD missing: report, don't hide
            print(f"  (TorchJD {name} unavailable: {error})", file=sys.stderr)
    return out


def time_interleaved(fns: dict[str, object], *, rounds: int = 7, min_seconds: float = 0.5) -> dict[str, float]:
    """Best-of-rounds seconds per call for each function, measured in interleaved rounds.

    Each round calls every function once, in turn, so that a slow spell of a shared machine hits all
    of them alike; the minimum over rounds is the least-disturbed measurement (as timeit advises).
    Functions taking under a millisecond are repeated inside a round and averaged.
    """
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
    while done < rounds or (time.perf_counter() - start < min_seconds and done < 50):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / inner[name])
        done += 1
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--K", type=int, nargs="*", default=[2, 8, 32])
    parser.add_argument("--n", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--methods", nargs="*", default=None, help="registry ids (default: all gradient-balancing methods)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "aggregators.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    methods = args.methods or [
        name
        for name in reference_impls.names()
        if reference_impls.info(name).family in GRADIENT_BALANCING
    ]
    rows = []
    header = f"{'method':12s} {'K':>3s} {'n':>8s} {'ours ms':>9s} {'torchjd ms':>11s} {'ours/tjd':>9s} {'ours/floor':>10s}"
    print(header)
    print("-" * len(header))
    for n in args.n:
        for K in args.K:
            gen = torch.Generator().manual_seed(K * 1000 + n)
            J = torch.randn(K, n, generator=gen) * torch.logspace(-1, 1, K)[:, None]  # (K, n), imbalanced rows
            losses = torch.rand(K, generator=gen) + 0.5  # (K,)
            w = torch.full((K,), 1.0 / K)

            def floor():
                M = J @ J.T  # (K, K)
                return w @ J + 0 * M[0, 0]  # (n,)

            theirs = torchjd_counterparts(K)
            t_floor = None
            for name in methods:
                try:
                    method = reference_impls.create(name)
                except Exception as error:
                    print(f"{name:12s} {K:3d} {n:8d}   not available: {error}")
                    continue
                needs = getattr(method, "needs_losses", False)
                fns = {"floor": floor, "ours": (lambda: method(J, losses)) if needs else (lambda: method(J))}
                if name in theirs:
                    fns["torchjd"] = lambda: theirs[name](J)
                best = time_interleaved(fns)
                t_ours, t_tjd = best["ours"], best.get("torchjd")
                t_floor = best["floor"] if t_floor is None else min(t_floor, best["floor"])
                row = {
                    "method": name,
                    "K": K,
                    "n": n,
                    "ours_s": t_ours,
                    "torchjd_s": t_tjd,
                    "floor_s": best["floor"],
                    "ours_over_torchjd": t_ours / t_tjd if t_tjd else None,
                    "ours_over_floor": t_ours / best["floor"],
                }
                rows.append(row)
                tjd = f"{t_tjd * 1e3:11.3f}" if t_tjd else f"{'-':>11s}"
                ratio = f"{t_ours / t_tjd:9.2f}" if t_tjd else f"{'-':>9s}"
                print(f"{name:12s} {K:3d} {n:8d} {t_ours * 1e3:9.3f} {tjd} {ratio} {t_ours / best['floor']:10.2f}")
            rows.append({"method": "floor", "K": K, "n": n, "ours_s": t_floor})
            print(f"{'floor':12s} {K:3d} {n:8d} {(t_floor or float('nan')) * 1e3:9.3f}")
    try:
        from importlib.metadata import version

        tjd_version = version("torchjd")
    except Exception:  # not installed: no comparison was made
        tjd_version = None
    result = {
        "benchmark": "aggregators",
        "dtype": "float32",
        "threads": args.threads,
        "torch": torch.__version__,
        "torchjd": tjd_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    atomic_write(Path(args.output), json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
