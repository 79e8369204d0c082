"""Time ``mkdocs build --strict`` of the catalog site: the real catalog and 1,000 synthetic records.

    .venv/bin/python benchmarks/site_build.py [--records 1000] [--repeat 3]

Each build runs in a fresh process (as ``make site`` does), so the times include Python start-up and
the import of mkdocs; the median of ``--repeat`` runs is reported, as wall-clock time and as the
build process's CPU time (user + system), which is less sensitive to other load on the machine. Results go to
benchmarks/results/site_build.json (written atomically) and a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from modl.io import atomic_write  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "site_build.json"


def synthetic_catalog(dest: Path, n: int) -> Path:
    """A catalog root with this repository's vocabularies and ``n`` generated records."""
    (dest / "catalog" / "papers").mkdir(parents=True)
    for name in ("project.yaml", "taxonomy.yaml", "venues.yaml"):
        shutil.copy(ROOT / "catalog" / name, dest / "catalog" / name)
    taxonomy = yaml.safe_load((ROOT / "catalog" / "taxonomy.yaml").read_text(encoding="utf-8"))
    venues = [v["id"] for v in yaml.safe_load((ROOT / "catalog" / "venues.yaml").read_text(encoding="utf-8"))["venues"]]
    leaves: list[str] = []

    def visit(nodes: list[dict]) -> None:
        for node in nodes:
            if node.get("children"):
                visit(node["children"])
            else:
                leaves.append(node["id"])

    visit(taxonomy["categories"])
    for i in range(n):
        record = {
            "id": f"synthetic-{i:05d}",
            "title": f"Synthetic Method Number {i} for Balancing Task Gradients",
            "short_name": f"Syn{i}",
            "authors": [f"Author {i} One", f"Author {i} Two", f"Author {i} Three", f"Author {i} Four"],
            "venue": venues[i % len(venues)],
            "year": 2015 + i % 11,
            "categories": [leaves[i % len(leaves)]] + ([leaves[(i + 3) % len(leaves)]] if i % 4 == 0 else []),
            "links": {
                "paper": f"https://example.org/papers/{i}",
                "code": f"https://github.com/example/synthetic-{i}",
                "arxiv": f"2{i // 10000:01d}01.{i % 10000:05d}",
            },
            "summary": "Combines the task gradients into one update direction with a synthetic rule, for timing.",
            "bibtex": {"type": "misc", "key": f"synthetic{i}", "fields": {"howpublished": "Synthetic"}},
            "implementation": {"status": "planned", "methods": []},
            "added": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
        }
        text = "# yaml-language-server: $schema=../schema/paper.schema.json\n" + yaml.safe_dump(record, sort_keys=False)
        (dest / "catalog" / "papers" / f"{record['id']}.yaml").write_text(text, encoding="utf-8")
    return dest


def build_once(site_dir: Path, catalog_root: Path | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system of the child) of one build."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env.pop("MODL_CATALOG_ROOT", None)
    if catalog_root is not None:
        env["MODL_CATALOG_ROOT"] = str(catalog_root)
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site_dir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"site_build: mkdocs build failed:\n{done.stderr.strip()[-2000:]}")
    return elapsed, cpu


def measure(label: str, catalog_root: Path | None, repeat: int, work: Path) -> dict:
    times, cpus = [], []
    site = work / f"site-{label}"
    for _ in range(repeat):
        shutil.rmtree(site, ignore_errors=True)
        wall, cpu = build_once(site, catalog_root)
        times.append(wall)
        cpus.append(cpu)
    pages = sum(1 for _ in site.rglob("index.html"))
    records = len(list(((catalog_root or ROOT) / "catalog" / "papers").glob("*.yaml")))
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    index = site / "search" / "search_index.json"
    return {
        "label": label,
        "records": records,
        "pages": pages,
        "seconds_median": round(statistics.median(times), 3),
        "seconds_all": [round(t, 3) for t in times],
        "cpu_seconds_median": round(statistics.median(cpus), 3),
        "ms_per_page": round(1000 * statistics.median(times) / pages, 2),
        "site_mib": round(size / 2**20, 2),
        "search_index_mib": round(index.stat().st_size / 2**20, 2) if index.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="synthetic records (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="builds per catalog (median reported)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modl-site-bench-") as tmp:
        work = Path(tmp)
        real = measure("real", None, args.repeat, work)
        synthetic = measure(f"synthetic-{args.records}", synthetic_catalog(work / "synthetic", args.records), args.repeat, work)
    result = {
        "benchmark": "site_build",
        "command": "mkdocs build --strict (fresh process per build)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "runs": [real, synthetic],
        "ratio_synthetic_to_real_seconds": round(synthetic["seconds_median"] / real["seconds_median"], 2),
        "ratio_synthetic_to_real_cpu": round(synthetic["cpu_seconds_median"] / real["cpu_seconds_median"], 2),
    }
    atomic_write(args.output, json.dumps(result, indent=2) + "\n")
    for run in result["runs"]:
        print(
            f"{run['label']:>16}: {run['records']:5d} records, {run['pages']:5d} pages, "
            f"{run['seconds_median']:.2f} s median wall, {run['cpu_seconds_median']:.2f} s CPU "
            f"({run['ms_per_page']:.1f} ms/page), site {run['site_mib']} MiB"
        )
    print(
        f"synthetic / real: {result['ratio_synthetic_to_real_seconds']}x wall, "
        f"{result['ratio_synthetic_to_real_cpu']}x CPU; wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
