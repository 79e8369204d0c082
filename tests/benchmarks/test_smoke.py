"""Smoke runs of the speed benchmarks in ``--quick`` mode on tiny sizes: they run end to end and
write well-formed results. No timing is asserted (times depend on the machine and its load)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path, *args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--threads", "1", "--output", str(out), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_aggregator_benchmark_quick_run(tmp_path: Path) -> None:
    data = _run(
        "aggregators.py", tmp_path / "agg.json", "--K", "2", "--jacobians", "gaussian", "cnn-trained",
        "--methods", "upgrad", "famo",
    )  # fmt: skip
    assert data["quick"] is True and data["threads"] == 1 and data["torch"]
    rows = {(r["jacobian"], r["method"]): r for r in data["rows"]}
    assert set(rows) == {(j, m) for j in ("gaussian", "cnn-trained") for m in ("upgrad", "famo", "floor")}
    assert rows[("cnn-trained", "upgrad")]["n"] == 268  # the quick CNN's shared parameters
    for (_, method), r in rows.items():
        assert _positive(r["ours_s"])
        if method != "floor":
            assert math.isclose(r["ours_over_floor"], r["ours_s"] / r["floor_s"])
            if r["torchjd_s"] is not None:  # TorchJD installed in .bench-deps/
                assert math.isclose(r["ours_over_torchjd"], r["ours_s"] / r["torchjd_s"])
    assert rows[("gaussian", "famo")]["torchjd_s"] is None  # TorchJD has no FAMO aggregator


def test_training_step_benchmark_quick_run(tmp_path: Path) -> None:
    data = _run("training_step.py", tmp_path / "step.json", "--K", "2", "--networks", "mlp", "--methods", "mgda")
    assert data["quick"] is True and data["trained_steps"] == 20
    methods = [r["method"] for r in data["rows"]]
    assert methods == ["jacobian-loop", "jacobian-batched", "mgda"]
    for r in data["rows"]:
        assert r["network"] == "mlp" and r["K"] == 2 and _positive(r["ours_s"]) and _positive(r["floor_s"])


def test_toy_run_benchmark_short_run(tmp_path: Path) -> None:
    """benchmarks/toy_runs.py times two methods (a Gramian weighting and a loss weighting) on short runs."""
    out = tmp_path / "toy.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toy_runs.py"), "mgda", "imtl-l", "--steps", "20", "--store", "--output", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["benchmark"] == "toy_runs" and data["problem"] == "cagrad-toy" and data["quick"] is True
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"mgda", "imtl-l"}
    for r in rows.values():
        assert r["steps"] == 20 and r["starts"] == 5 and r["direction_calls"] == 20
        assert all(_positive(r[k]) for k in ("run_wall_s", "run_cpu_s", "method_wall_s", "method_cpu_s", "us_per_start_call"))
        assert r["method_wall_s"] <= r["run_wall_s"]  # the method's calls are part of the run
        assert r["under_target"] is None  # the 20 s target is judged on paper-default runs only
