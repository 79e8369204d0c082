"""How load + validate (and the README render) scale with the number of records.

    .venv/bin/python benchmarks/catalog_scaling.py [--sizes 1000 2000 5000 10000] [--repeats 3]

For each N, writes N synthetic valid records into a temporary catalog (with copies of the real
vocabularies), then times, in this process (no interpreter start-up):

- parse: reading and composing every YAML file (modl.yamlload), the largest single cost;
- validate: modl.catalog.load_and_validate, i.e. parse + pydantic models + every cross-record check;
- render: modl.render.readme.render_readme on the loaded catalog (skipped if that module is absent).

It prints CPU microseconds per record (fastest of --repeats runs; wall-clock is stored too) and the
linearity ratio time(N) / time(N0) / (N / N0), N0 being the smallest size: about 1 for linear growth,
about N/N0 for quadratic. It also times ``modl validate`` on the real catalog (median of 5 in-process
runs of the CLI entry point, after a warm-up) and stores everything, with machine information, in
benchmarks/results/catalog_scaling.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from modl import yamlload  # noqa: E402
from modl.cli import main as modl_main  # noqa: E402
from modl.io import atomic_write  # noqa: E402
from modl.catalog import load_and_validate  # noqa: E402
from modl.validate import load_vocabularies  # noqa: E402

try:
    from modl.render.readme import render_readme  # noqa: E402
except ImportError:  # pragma: no cover - the renderer is written separately
    render_readme = None

RESULTS = REPO_ROOT / "benchmarks" / "results" / "catalog_scaling.json"
VOCABULARIES = ("project.yaml", "venues.yaml", "taxonomy.yaml")

RECORD = """\
# yaml-language-server: $schema=../schema/paper.schema.json
id: {id}
title: Synthetic Study Number {i} of Balancing {word} Objectives
short_name: SYN{i}
authors:
  - Author {i} First
  - Author {j} Second
  - Author {k} Third
venue: {venue}
year: {year}
categories: [{category}]
links:
  paper: https://papers.example.org/{year}/{id}
  code: https://github.com/example/{id}
  arxiv: "{arxiv}"
  doi: 10.5555/synthetic.{i}
summary: >-
  Synthetic record {i}: balances {word} objectives with a made-up rule, written only to measure how
  the catalog engine scales.
bibtex:
  type: misc
  key: author{i}synthetic
  fields:
    note: Synthetic record for benchmarking
implementation:
  status: planned
added: 2026-11-22
"""
WORDS = ("Two", "Three", "Many", "Conflicting", "Competing", "Related")


def make_catalog(root: Path, n: int) -> None:
    """A valid catalog of ``n`` distinct synthetic records under ``root``."""
    (root / "catalog" / "papers").mkdir(parents=True)
    for name in VOCABULARIES:
        shutil.copy(REPO_ROOT / "catalog" / name, root / "catalog" / name)
    venues, leaves = load_vocabularies(root)
    papers = root / "catalog" / "papers"
    for i in range(n):
        record_id = f"synthetic-{i:05d}"
        text = RECORD.format(
            id=record_id, i=i, j=i + 1, k=i + 2, word=WORDS[i % len(WORDS)],
            venue=venues[i % len(venues)], year=2000 + i % 25, category=leaves[i % len(leaves)],
            arxiv=f"{2001 + i // 90000:04d}.{i % 90000 + 10000:05d}",
        )
        (papers / f"{record_id}.yaml").write_text(text, encoding="utf-8")


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds of the fastest of ``repeats`` runs of ``fn()``, and its last result.

    CPU time (this process) is the figure the ratios use, and the fastest run, not the median: both
    are the least disturbed by other jobs sharing the machine's cores, which only ever add time.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus), result


def parse_all(root: Path) -> int:
    count = 0
    for path in sorted((root / "catalog" / "papers").glob("*.yaml")):
        count += yamlload.load_yaml_file(path, root).data is not None
    return count


def real_validate_seconds(runs: int = 5) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of ``modl validate`` on this checkout, in-process (warm imports)."""
    walls, cpus = [], []
    for _ in range(runs + 1):  # the first run also imports pydantic models and the registry: dropped
        sink = io.StringIO()
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            rc = modl_main(["--root", str(REPO_ROOT), "validate"])
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
        if rc != 0:
            raise SystemExit(f"modl validate failed on the real catalog:\n{sink.getvalue()}")
    return walls[1:], cpus[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the fastest is reported")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="modl-scaling-") as tmp:
        for n in args.sizes:
            root = Path(tmp) / f"n{n}"
            make_catalog(root, n)
            parse_wall, parse_s, parsed = best_time(lambda: parse_all(root), args.repeats)
            # registry={}: the synthetic records plan no method, and the real registry's papers are absent.
            validate_wall, validate_s, catalog = best_time(lambda: load_and_validate(root, {}), args.repeats)
            assert parsed == n and len(catalog.papers) == n
            render_wall = render_s = None
            if render_readme is not None:
                render_wall, render_s, text = best_time(lambda: render_readme(catalog), args.repeats)
                assert "Synthetic Study Number 0 " in text
            rows.append({
                "n": n, "parse_s": parse_s, "validate_s": validate_s, "render_s": render_s,
                "parse_wall_s": parse_wall, "validate_wall_s": validate_wall, "render_wall_s": render_wall,
            })
            shutil.rmtree(root)

    n0, first = rows[0]["n"], rows[0]
    for row in rows:
        for what in ("parse", "validate", "render"):
            seconds = row[f"{what}_s"]
            row[f"{what}_us_per_record"] = None if seconds is None else seconds / row["n"] * 1e6
            base = first[f"{what}_s"]
            row[f"{what}_linearity"] = None if seconds is None else (seconds / base) / (row["n"] / n0)

    real, real_cpu = real_validate_seconds()
    from modl.catalog import load_catalog

    real_records = len(load_catalog().papers)

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    print(f"YAML loader: {yamlload.DEFAULT_LOADER.__mro__[1].__name__}; CPU time, fastest of {args.repeats} runs per size")
    print(f"{'N':>6} | {'validate s':>10} {'us/rec':>7} {'linear':>6} {'(wall s)':>8} | {'parse us/rec':>12} {'linear':>6} | "
          f"{'render s':>8} {'us/rec':>7} {'linear':>6}")
    for r in rows:
        print(f"{r['n']:>6} | {r['validate_s']:>10.3f} {r['validate_us_per_record']:>7.1f} {r['validate_linearity']:>6.2f} "
              f"{r['validate_wall_s']:>8.3f} | {r['parse_us_per_record']:>12.1f} {r['parse_linearity']:>6.2f} | "
              f"{cell(r['render_s'], '8.3f')} {cell(r['render_us_per_record'], '7.1f')} {cell(r['render_linearity'], '6.2f')}")
    print(f"linear = time(N) / time({n0}) / (N / {n0}): 1 for linear growth, N/{n0} for quadratic")
    print(f"modl validate on the real catalog ({real_records} records, in-process): median "
          f"{statistics.median(real) * 1e3:.1f} ms wall, {statistics.median(real_cpu) * 1e3:.1f} ms CPU over {len(real)} runs")

    result = {
        "benchmark": "catalog_scaling",
        "machine": {
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "yaml_loader": yamlload.DEFAULT_LOADER.__mro__[1].__name__,
        "repeats": args.repeats,
        "linearity": f"cpu_time(N) / cpu_time({n0}) / (N / {n0}); *_s are CPU seconds, *_wall_s wall-clock",
        "synthetic": rows,
        "real_catalog": {
            "records": real_records,
            "validate_runs_s": real,
            "validate_median_s": statistics.median(real),
            "validate_cpu_runs_s": real_cpu,
            "validate_cpu_median_s": statistics.median(real_cpu),
            "note": "python -m modl validate, in-process, after one warm-up run; excludes interpreter start-up",
        },
    }
    atomic_write(args.output, json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output.relative_to(REPO_ROOT) if args.output.is_relative_to(REPO_ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
