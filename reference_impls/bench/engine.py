"""The ``modl bench`` engine: plan, shards, the cell store, the process pool and the results files.

    modl bench                       # every suite, full settings, all cores; results in benchmarks/results/suites/
    modl bench --quick               # short settings (CI); results in artifacts/bench-quick/results/
    modl bench --suite set-zdt1 --method epo --seeds 0
    modl bench --shard 2/4           # a quarter of the cells (any scheduler: one shard per machine)
    modl bench --collect             # assemble the results files from the cells on disk
    modl bench --list                # the plan, with each cell's state, without running anything

* Plan: suites × the methods of each suite's family × the mode's seeds (filters ``--suite``,
  ``--method``, ``--seeds``). Methods a suite does not apply to are "n/a" cells with the reason
  (:func:`reference_impls.bench.cells.applicability`), written without running anything.
* Cells: one JSON file each, ``<cells>/<suite>/<method>__s<seed>__<key>.json``, written atomically
  when the cell finishes. The key hashes everything that defines the cell: the suite's problem, its
  knobs and the mode's settings, the method, the seed, the cell format, and the code of the method's
  module and of the problem's module (:func:`code_digest`: the syntax tree without docstrings), so a
  code change reruns exactly the cells it affects and a documentation edit reruns none.
  A cell whose file exists (ok or n/a) is never run again (``--force`` reruns); an "error" cell is
  rerun on the next invocation. Ctrl-C leaves every finished cell on disk.
* Shards: ``--shard i/n`` (1 ≤ i ≤ n) takes a deterministic part of the filtered plan, balanced by an
  estimated cost (longest first, each cell to the least-loaded shard); the n shards are disjoint and
  their union is the plan.
* Pool: ``--jobs N`` worker processes (default: all cores; spawn start method; one torch thread
  each); ``--jobs 1`` runs in this process. Progress on stderr: a refreshed line on a terminal, a line
  every 10 s otherwise (cells done / total, elapsed, estimate left).
* Results: for every suite whose cells (all its methods, all the mode's seeds) are on disk, the
  files ``<output>/<suite>.json`` and ``<suite>.csv`` (format: site/implementations/design.md and
  issue 15's spec; rows aggregate the ok cells over the seeds) and ``<output>/index.json``. The
  results are a function of the cells only (the date in the header is the latest cell's), so
  collecting again gives identical files.

Exit status: 0, or 1 when a cell of the plan ended in an error (after everything else is written),
or for bad arguments (one line, no traceback).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reference_impls.bench import cells as cells_module
from reference_impls.bench.suites import SUITES, Suite, get_suite
from reference_impls.registry import REGISTRY

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding reference_impls/
DEFAULT_CELLS = {"full": "artifacts/bench/cells", "quick": "artifacts/bench-quick/cells"}
DEFAULT_OUTPUT = {"full": "benchmarks/results/suites", "quick": "artifacts/bench-quick/results"}
FORMAT = 1

# Rough CPU ms per step of one cell, by problem (measured on the development machine), for the
# shard balance and the progress estimate only.
_MS_PER_STEP = {
    "cagrad-toy": 0.3, "biquad": 1.0, "bilevel-ridge": 5.0, "mtl-regression": 4.0, "multi-digits": 12.0,
    "vlmop2": 10.0, "zdt1": 5.0, "zdt2": 5.0, "dtlz2": 7.0, "multi-digits-set": 150.0,
}  # fmt: skip


@dataclass(frozen=True)
class CellSpec:
    suite: str
    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.suite}/{self.method}/seed {self.seed}"


# ------------------------------------------------------------------------------------------------
# Plan, keys, shards
# ------------------------------------------------------------------------------------------------


def _split(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in str(value).split(",") if v.strip()]
    return out


def plan(mode: str, suites: Sequence[str] | None = None, methods: Sequence[str] | None = None,
         seeds: Sequence[int] | None = None) -> list[CellSpec]:  # fmt: skip
    """The cells of ``mode`` (suite order, then method, then seed), filtered; ValueError for unknown names."""
    if mode not in ("full", "quick"):
        raise ValueError(f"unknown mode {mode!r}; known: full, quick")
    wanted_suites = _split(suites)
    known = [s.id for s in SUITES]
    unknown = [s for s in wanted_suites if s not in known]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(known)}")
    wanted_methods = _split(methods)
    unknown = [m for m in wanted_methods if m not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
    out = []
    for suite in SUITES:
        if wanted_suites and suite.id not in wanted_suites:
            continue
        for method in cells_module.suite_methods(suite):
            if wanted_methods and method not in wanted_methods:
                continue
            for seed in suite.seeds(mode):
                if seeds is not None and seed not in seeds:
                    continue
                out.append(CellSpec(suite.id, method, seed))
    return out


def code_digest(source: str | bytes) -> str:
    """The hash of a module's code: its syntax tree without docstrings (comments are not in the tree), so editing
    documentation does not rerun a cell while any change of the code does; the raw bytes if it does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return hashlib.sha256(source if isinstance(source, bytes) else source.encode("utf-8")).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode("utf-8")).hexdigest()


def _source_digest(relative: str) -> str:
    path = PACKAGE_ROOT / relative
    return code_digest(path.read_bytes()) if path.is_file() else "missing"


def _problem_source(problem_id: str) -> str:
    from reference_impls.problems import _PROBLEMS

    module = _PROBLEMS[problem_id][0]
    return f"reference_impls/problems/{module.replace('.', '/')}.py"


def cell_key(spec: CellSpec, mode: str) -> str:
    """The hash of everything that defines the cell (16 hex digits)."""
    suite = get_suite(spec.suite)
    method_source = REGISTRY[spec.method].source_path
    problem_source = _problem_source(suite.problem)
    defining = {
        "format": cells_module.CELL_FORMAT, "suite": suite.id, "kind": suite.kind, "problem": suite.problem,
        "problem_params": suite.problem_params, "settings": suite.run_settings(mode), "mode": mode,
        "method": spec.method, "seed": spec.seed,
        "sources": {method_source: _source_digest(method_source), problem_source: _source_digest(problem_source)},
    }  # fmt: skip
    return hashlib.sha256(json.dumps(defining, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def estimated_cost(spec: CellSpec, mode: str) -> float:
    """A rough CPU-seconds estimate of one cell (shard balance, progress)."""
    suite = get_suite(spec.suite)
    settings = suite.run_settings(mode)
    steps = settings.get("steps", settings.get("max_steps", 100))
    per_step = _MS_PER_STEP.get(suite.problem, 5.0) * (3.0 if suite.kind == "pareto-model" else 1.0)
    return 0.2 + steps * per_step / 1000.0


def shard(cells: Sequence[CellSpec], index: int, count: int, mode: str) -> list[CellSpec]:
    """Shard ``index`` (1-based) of ``count``: longest estimated cells first, each to the least-loaded shard."""
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard i/n needs 1 <= i <= n, got {index}/{count}")
    order = sorted(cells, key=lambda c: (-estimated_cost(c, mode), c.suite, c.method, c.seed))
    loads = [0.0] * count
    mine = set()
    for c in order:
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += estimated_cost(c, mode)
        if target == index - 1:
            mine.add(c)
    return [c for c in cells if c in mine]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be i/n (e.g. 2/4), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard i/n needs 1 <= i <= n, got {text}")
    return i, n


# ------------------------------------------------------------------------------------------------
# The cell store
# ------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cell_path(cells_dir: Path, spec: CellSpec, key: str) -> Path:
    return cells_dir / spec.suite / f"{spec.method}__s{spec.seed}__{key}.json"


def load_cell(cells_dir: Path, spec: CellSpec, key: str) -> dict[str, Any] | None:
    path = cell_path(cells_dir, spec, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if data.get("key") == key else None


def _store(cells_dir: Path, spec: CellSpec, key: str, cell: dict[str, Any]) -> None:
    cell = {**cell, "key": key, "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    _write_json(cell_path(cells_dir, spec, key), cell)
    for stale in (cells_dir / spec.suite).glob(f"{spec.method}__s{spec.seed}__*.json"):  # older versions of the cell
        if stale.name != cell_path(cells_dir, spec, key).name:
            stale.unlink(missing_ok=True)


def _worker_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _work(spec: CellSpec, mode: str, key: str, cells_dir: str) -> tuple[CellSpec, str]:
    """Run one cell and store it (in the worker, so a finished cell survives an interrupt of the main process)."""
    cell = cells_module.run_cell(spec.suite, spec.method, spec.seed, mode)
    _store(Path(cells_dir), spec, key, cell)
    return spec, cell["status"]


# ------------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------------


class Progress:
    """Cells done / total, elapsed and an estimate on stderr: refreshed on a terminal, a line every 10 s otherwise."""

    def __init__(self, total: int, cost_total: float, enabled: bool = True) -> None:
        self.total, self.cost_total, self.done, self.cost_done = total, max(cost_total, 1e-9), 0, 0.0
        self.start = time.monotonic()
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.next_line = self.start + 10.0
        self.errors = 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        frac = self.cost_done / self.cost_total
        left = f", ~{elapsed * (1 - frac) / frac:.0f} s left" if frac > 0 and self.done < self.total else ""
        errors = f", {self.errors} error(s)" if self.errors else ""
        return f"modl bench: {self.done}/{self.total} cells, {elapsed:.0f} s elapsed{left}{errors}"

    def advance(self, cost: float, status: str) -> None:
        self.done += 1
        self.cost_done += cost
        self.errors += status == "error"
        self.show()

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r" + self.line() + "\x1b[K")
            sys.stderr.flush()
        elif force or time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + 10.0
            sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            if self.tty:
                sys.stderr.write("\r" + self.line() + "\x1b[K\n")
            else:
                sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def execute(specs: Sequence[CellSpec], mode: str, cells_dir: Path, *, jobs: int = 1, force: bool = False,
            progress: bool = True) -> dict[str, int]:  # fmt: skip
    """Run the cells of ``specs`` that are not on disk yet; returns counts (run, skipped, n/a, errors)."""
    cells_dir.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[CellSpec, str]] = []
    counts = {"run": 0, "skipped": 0, "n/a": 0, "errors": 0}
    for spec in specs:
        key = cell_key(spec, mode)
        existing = None if force else load_cell(cells_dir, spec, key)
        if existing is not None and existing.get("status") in ("ok", "n/a"):
            counts["skipped"] += 1
            continue
        reason = cells_module.applicability(get_suite(spec.suite), spec.method)
        if reason is not None:  # n/a: written at once, nothing to run
            _store(cells_dir, spec, key, {"suite": spec.suite, "method": spec.method, "seed": spec.seed, "mode": mode,
                                          "status": "n/a", "reason": reason})  # fmt: skip
            counts["n/a"] += 1
            continue
        pending.append((spec, key))
    pending.sort(key=lambda item: -estimated_cost(item[0], mode))  # longest first: the pool ends together
    bar = Progress(len(pending), sum(estimated_cost(s, mode) for s, _ in pending), enabled=progress)
    try:
        if jobs <= 1 or len(pending) <= 1:
            for spec, key in pending:
                _, status = _work(spec, mode, key, str(cells_dir))
                counts["run"] += 1
                counts["errors"] += status == "error"
                bar.advance(estimated_cost(spec, mode), status)
        else:
            import multiprocessing
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init) as pool:
                futures = {pool.submit(_work, spec, mode, key, str(cells_dir)): spec for spec, key in pending}
                waiting = set(futures)
                try:
                    while waiting:
                        done, waiting = wait(waiting, timeout=1.0, return_when=FIRST_COMPLETED)
                        for future in done:
                            spec = futures[future]
                            _, status = future.result()
                            counts["run"] += 1
                            counts["errors"] += status == "error"
                            bar.advance(estimated_cost(spec, mode), status)
                        bar.show()
                except BaseException:
                    for future in waiting:
                        future.cancel()
                    raise
    finally:
        bar.close()
    return counts


# ------------------------------------------------------------------------------------------------
# Results files
# ------------------------------------------------------------------------------------------------


def _versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for label, dist in (("torch", "torch"), ("numpy", "numpy"), ("scipy", "scipy"), ("sklearn", "scikit-learn")):
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = None
    return out


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(date: str | None) -> dict[str, Any]:
    return {
        **_versions(), "modl_commit": _commit(), "machine": platform.platform(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "torch_threads": 1, "date": date,
    }  # fmt: skip


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values), "max": max(values),
    }  # fmt: skip


def suite_result(suite: Suite, mode: str, cells: list[dict[str, Any]], env: dict[str, Any]) -> dict[str, Any]:
    """The results document of one suite from its cells (issue 15's format)."""
    order = {name: i for i, name in enumerate(REGISTRY)}  # the registry's order: families together
    cells = sorted(cells, key=lambda c: (order[c["method"]], c["seed"]))
    metric_ids = [m.id for m in suite.metrics]
    rows = []
    for method in sorted({c["method"] for c in cells}, key=order.__getitem__):
        ok = [c for c in cells if c["method"] == method and c["status"] == "ok"]
        if not ok:
            continue
        metrics = {mid: _stats([c["metrics"][mid] for c in ok if c["metrics"].get(mid) is not None]) for mid in metric_ids}
        rows.append({"method": method, "paper": REGISTRY[method].paper, "seeds": len(ok), "metrics": metrics})
    public = []
    for c in cells:
        entry = {"method": c["method"], "seed": c["seed"], "status": c["status"], "reason": c.get("reason")}
        if c["status"] == "ok":
            entry["metrics"] = {mid: c["metrics"].get(mid) for mid in metric_ids}
            entry["initial"] = c.get("initial")
            entry["run"] = c.get("run")
        if c["status"] != "n/a":
            entry["cpu_s"], entry["wall_s"] = c.get("cpu_s"), c.get("wall_s")
        public.append(entry)
    return {
        "format": FORMAT, "suite": suite.id, "title": suite.title, "description": suite.description, "kind": suite.kind,
        "problem": suite.problem, "problem_params": suite.problem_params, "settings": suite.run_settings(mode),
        "mode": mode, "seeds": suite.seeds(mode), "environment": env, "metrics": [m.as_dict() for m in suite.metrics],
        "cells": public, "rows": rows, "cpu_s": sum(c.get("cpu_s") or 0.0 for c in cells),
    }  # fmt: skip


def suite_csv(doc: dict[str, Any]) -> str:
    """One row per cell; header lines ``# key: value`` with the suite, settings, seeds and the environment."""
    out = io.StringIO()
    header = {"suite": doc["suite"], "title": doc["title"], "kind": doc["kind"], "problem": doc["problem"],
              "problem_params": json.dumps(doc["problem_params"]), "settings": json.dumps(doc["settings"]),
              "mode": doc["mode"], "seeds": " ".join(str(s) for s in doc["seeds"])}  # fmt: skip
    header.update({key: "" if value is None else str(value) for key, value in doc["environment"].items()})
    for key, value in header.items():
        out.write(f"# {key}: {value}\n")
    metric_ids = [m["id"] for m in doc["metrics"]]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "seed", "status", "reason", *metric_ids, "cpu_s", "wall_s"])
    for c in doc["cells"]:
        values = c.get("metrics") or {}
        cells = ["" if values.get(mid) is None else repr(float(values[mid])) for mid in metric_ids]
        timing = ["" if c.get(k) is None else repr(float(c[k])) for k in ("cpu_s", "wall_s")]
        writer.writerow([c["method"], c["seed"], c["status"], c.get("reason") or "", *cells, *timing])
    return out.getvalue()


def read_csv(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(header, rows) of a results CSV written by :func:`suite_csv`."""
    header: dict[str, str] = {}
    lines = text.splitlines()
    body = []
    for line in lines:
        if line.startswith("# ") and not body:
            key, _, value = line[2:].partition(": ")
            header[key] = value
        else:
            body.append(line)
    return header, list(csv.DictReader(body))


def collect(mode: str, cells_dir: Path, output: Path, *, sweep: dict[str, Any] | None = None) -> list[str]:
    """Write the results files of every suite whose cells are all on disk; returns the suite ids written."""
    written, env_date, totals = [], None, {"cpu_s": 0.0, "cells": 0}
    docs = []
    for suite in SUITES:
        specs = plan(mode, suites=[suite.id])
        found = [load_cell(cells_dir, s, cell_key(s, mode)) for s in specs]
        if not specs or any(c is None for c in found):
            continue
        dates = [c["finished"] for c in found if c.get("finished")]
        docs.append((suite, found, max(dates) if dates else None))
    if not docs:
        return []
    env_date = max((d for _, _, d in docs if d), default=None)
    env = environment(env_date)
    for suite, found, _ in docs:
        doc = suite_result(suite, mode, found, env)
        _write_json(output / f"{suite.id}.json", doc)
        _write_text(output / f"{suite.id}.csv", suite_csv(doc))
        written.append(suite.id)
        totals["cpu_s"] += doc["cpu_s"]
        totals["cells"] += len(found)
    index_path = output / "index.json"
    previous = {}
    if index_path.is_file():
        try:
            previous = json.loads(index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
    full_sweep = {"cpu_s": round(totals["cpu_s"], 3), "cells": totals["cells"],
                  "suites_cpu_s": {s.id: round(sum(c.get("cpu_s") or 0.0 for c in f), 3) for s, f, _ in docs}}  # fmt: skip
    if sweep is not None and sweep.get("complete"):
        full_sweep.update({"wall_s": round(sweep["wall_s"], 1), "jobs": sweep["jobs"], "cells_run": sweep.get("cells_run")})
    else:  # a partial invocation (filters, a shard, --collect): keep the figures of the last whole sweep
        old = previous.get("full_sweep") or {}
        full_sweep.update({"wall_s": old.get("wall_s"), "jobs": old.get("jobs"), "cells_run": old.get("cells_run")})
    _write_json(index_path, {"format": FORMAT, "mode": mode, "suites": written, "full_sweep": full_sweep})
    return written


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def main(args: Any, root: Path) -> int:
    """``modl bench`` (arguments parsed by modl.cli)."""
    mode = "quick" if args.quick else "full"
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    specs = plan(mode, args.suite, args.method, _seeds(args.seeds))
    part = parse_shard(args.shard)
    if part is not None:
        specs = shard(specs, part[0], part[1], mode)
    if not specs:
        raise ValueError("the plan is empty (check --suite, --method and --seeds)")
    cells_dir = Path(args.cells) if args.cells else root / DEFAULT_CELLS[mode]
    output = Path(args.output) if args.output else root / DEFAULT_OUTPUT[mode]
    if args.list:
        done = 0
        for spec in specs:
            key = cell_key(spec, mode)
            cell = load_cell(cells_dir, spec, key)
            state = "pending" if cell is None else cell["status"]
            done += cell is not None and state in ("ok", "n/a")
            print(f"{spec.suite}\t{spec.method}\t{spec.seed}\t{state}")
        print(f"{len(specs)} cells ({mode}), {done} done, {len(specs) - done} to run", file=sys.stderr)
        return 0
    errors = 0
    if not args.collect:
        jobs = args.jobs or os.cpu_count() or 1
        start = time.monotonic()
        counts = execute(specs, mode, cells_dir, jobs=jobs, force=args.force, progress=not args.no_progress)
        wall = time.monotonic() - start
        errors = counts["errors"]
        # the whole plan, and something ran (a rerun with every cell on disk keeps the last sweep's figures)
        complete = len(specs) == len(plan(mode)) and counts["run"] > 0
        written = collect(mode, cells_dir, output, sweep={"complete": complete, "wall_s": wall, "jobs": jobs,
                                                          "cells_run": counts["run"]})  # fmt: skip
        print(f"modl bench: ran {counts['run']} cell(s) in {wall:.0f} s ({counts['skipped']} already done, {counts['n/a']} n/a, "
              f"{errors} error(s)); results for {len(written)} suite(s) in {output}", file=sys.stderr)  # fmt: skip
    else:
        written = collect(mode, cells_dir, output)
        print(f"modl bench: results for {len(written)} suite(s) in {output}", file=sys.stderr)
    failed = []
    for spec in specs:
        cell = load_cell(cells_dir, spec, cell_key(spec, mode))
        if cell is not None and cell["status"] == "error":
            failed.append(f"{spec.label}: {cell['reason']}")
    for line in failed[:20]:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed or errors else 0


__all__ = ["CellSpec", "cell_key", "collect", "execute", "main", "plan", "read_csv", "shard", "suite_result"]
