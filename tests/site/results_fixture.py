r"""A small repository for the Results-section tests: a registry of two methods, two suites, one figure.

``write_fixture(root)`` writes, under ``root``: a catalog (records of this repository's vocabularies), a
registry with ``plain`` (an aggregator whose docstring has an update rule with math and deviations with
:math: roles) and ``other`` (a loss weighting without one, not tested), their modules and one test file,
two suites in ``benchmarks/results/suites/`` (api15 section 1) and one figure in
``benchmarks/results/figures/`` (api15 section 2). Building a site from it takes a few seconds: only two
method pages.

``table_mismatches(site, root)`` is the check that every suite table (and every method page's row of it)
shows its file's values; it formats the file's numbers itself, from the format the spec defines
("mean ± std" in the metric's format spec, "–" without a value), not with the site's formatter.
"""

from __future__ import annotations

import html
import json
import re
import struct
import zlib
from pathlib import Path

from tests.site.conftest import make_catalog, record

MODULE = r'''r"""Plain: sums the task gradients.

Paper: A Plain Method for Multi-Task Learning (ICML 2021), Eq. (1).

Update rule:
    The direction is the sum of the rows of :math:`J \in \mathbb{R}^{K \times n}`:

    .. math::

        d = J^\top \mathbb{1} = \sum_{i=1}^{K} g_i

Deviations:
    D1. Sums instead of averaging: the paper divides by :math:`K`.
    D2. <script>alert(1)</script> is text, not markup; ``code_i`` stays code.
"""


class Plain:
    def __call__(self, J):
        return J.sum(0)  # Eq. (1): d = J^T 1
'''

OTHER = '''"""Other: a loss weighting without an update-rule section (yet)."""


class Other:
    pass
'''

TESTS = """\
def test_one():
    assert True


def test_two():
    assert True
"""

REGISTRY = '''\
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    name: str
    paper: str
    family: str
    module: str
    cls: str
    interface: str


REGISTRY = {
    "plain": MethodInfo("plain", "plain-method", "gradient-manipulation", "gradient_manipulation.plain", "Plain", "aggregator"),
    "other": MethodInfo("other", "other-method", "loss-balancing", "loss_balancing.other", "Other", "loss-weighting"),
}
'''

# Text from a results file is shown as text: no markup, link, table cell boundary or math comes out of it.
HOSTILE_REASON = "SolverError: <script>alert(1)</script> | [x](javascript:alert(2)) *em* `c` residual 3e-2 > 1e-9"
HOSTILE_CPU = "<img src=x onerror=alert(3)> | CPU"

ENVIRONMENT = {
    "python": "3.11.7", "torch": "2.13.0", "numpy": "2.1.0", "scipy": "1.14.1", "sklearn": "1.5.2",
    "modl_commit": "0123456789abcdef", "machine": "Linux-x86_64-fixture", "cpu": HOSTILE_CPU,
    "cpu_count": 2, "torch_threads": 1, "date": "2026-12-02T01:00:00Z",
}  # fmt: skip


def _stat(mean: float, std: float | None, spread: float = 0.1) -> dict:
    return {"mean": mean, "std": std, "min": mean - spread * abs(mean), "max": mean + spread * abs(mean)}


SINGLE = {
    "format": 1,
    "suite": "toy-single",
    "title": "Fixture toy, loss scale 1",
    "description": "The fixture's single-solution suite: final losses, the PS measure $\\lVert d \\rVert$ and time.",
    "kind": "single",
    "problem": "cagrad-toy",
    "problem_params": {"scale": 1.0},
    "settings": {"steps": 100, "lr": 0.001, "optimizer": "adam"},
    "mode": "full",
    "seeds": [0, 1, 2],
    "environment": ENVIRONMENT,
    "metrics": [
        {"id": "loss_mean", "label": "mean final loss", "better": "lower", "format": ".3g", "description": "Mean of the final task losses."},
        {"id": "ps", "label": "PS measure", "better": "lower", "format": ".2e", "description": "Norm $|d|$ (or $\\|d\\|$) of the min-norm point of the convex hull of the gradients."},
        {"id": "accuracy", "label": "test accuracy", "better": "higher", "format": ".1%", "description": "Share of correct test predictions."},
        {"id": "time_per_step_ms", "label": "time per step (ms)", "better": None, "format": ".3g", "description": "CPU time per step."},
    ],
    "cells": [
        *({"method": "plain", "seed": s, "status": "ok", "reason": None, "metrics": {}, "cpu_s": 1.0, "wall_s": 1.1} for s in (0, 1, 2)),
        *({"method": "ghost", "seed": s, "status": "ok", "reason": None, "metrics": {}, "cpu_s": 1.0, "wall_s": 1.1} for s in (0, 1)),
        {"method": "ghost", "seed": 2, "status": "error", "reason": HOSTILE_REASON},
        {"method": "lonely", "seed": 0, "status": "ok", "reason": None, "metrics": {}},
        *({"method": "other", "seed": s, "status": "n/a", "reason": "bi-level method: needs a validation split"} for s in (0, 1, 2)),
    ],
    "rows": [
        {"method": "plain", "paper": "plain-method", "seeds": 3, "metrics": {
            "loss_mean": _stat(0.123456, 0.0123), "ps": _stat(1.5e-7, 2.25e-8), "accuracy": _stat(0.9512, 0.004),
            "time_per_step_ms": _stat(0.5321, 0.0101)}},
        {"method": "ghost", "paper": None, "seeds": 2, "metrics": {
            "loss_mean": _stat(12.5, 3.25), "ps": None, "accuracy": _stat(0.5, 0.25), "time_per_step_ms": _stat(1.75, None)}},
        {"method": "lonely", "paper": None, "seeds": 1, "metrics": {  # one seed: no spread shown
            "loss_mean": _stat(-2.0, 0.0), "ps": _stat(0.0, 0.0), "accuracy": _stat(1.0, 0.0), "time_per_step_ms": None}},
    ],
}  # fmt: skip

MODELS = {
    "format": 1,
    "suite": "models-biquad",
    "title": "Fixture Pareto-set models on the bi-quadratic",
    "description": "Held-out preferences.",
    "kind": "pareto-model",
    "problem": "biquad",
    "problem_params": {"K": 3},
    "settings": {"steps": 50},
    "mode": "full",
    "seeds": [0, 1, 2],
    "environment": ENVIRONMENT,
    "metrics": [
        {"id": "held_out_error", "label": "held-out error", "better": "lower", "format": ".3g", "description": "Mean distance to the true front."},
        {"id": "hv", "label": "hypervolume", "better": "higher", "format": ".4f", "description": "Dominated volume."},
    ],
    "cells": [{"method": "plain", "seed": s, "status": "ok", "reason": None, "metrics": {}} for s in (0, 1, 2)]
    + [{"method": "ghost", "seed": s, "status": "ok", "reason": None, "metrics": {}} for s in (0, 1, 2)],
    "rows": [
        {"method": "ghost", "paper": None, "seeds": 3, "metrics": {"held_out_error": _stat(0.0042, 0.001), "hv": _stat(0.87654, 0.01)}},
        {"method": "plain", "paper": "plain-method", "seeds": 3, "metrics": {"held_out_error": _stat(0.25, 0.05), "hv": _stat(0.5, 0.02)}},
    ],
}  # fmt: skip

SUITES = [SINGLE, MODELS]

FIGURE = {
    "id": "plain-toy-trajectories",
    "methods": ["plain"],
    "paper": "plain-method",
    "paper_figure": "Figure 1",
    "title": "Plain on the fixture toy",
    "caption": "Trajectories of plain from five starts; the loss is $f_1 + f_2$.",
    "settings": "100 steps of Adam, as in the paper.",
    "match": "Matches the paper: every run reaches the Pareto set.",
    "command": ".venv/bin/python benchmarks/figures/fixture.py plain",
    "environment": {"python": "3.11.7"},
}


def png(width: int = 8, height: int = 6) -> bytes:
    """A valid RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x30\x60\xc0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_suites(root: Path, suites: list[dict] = SUITES, *, order: list[str] | None = None) -> Path:
    folder = root / "benchmarks" / "results" / "suites"
    folder.mkdir(parents=True, exist_ok=True)
    for suite in suites:
        (folder / f"{suite['suite']}.json").write_text(json.dumps(suite, indent=1), encoding="utf-8")
    index = {"format": 1, "mode": "full", "suites": order or [s["suite"] for s in suites],
             "full_sweep": {"wall_s": 734.2, "cpu_s": 1402.9, "jobs": 2, "cells": 1234}}  # fmt: skip
    (folder / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return folder


def write_fixture(root: Path) -> Path:
    for path, text in {
        "reference_impls/registry.py": REGISTRY,
        "reference_impls/gradient_manipulation/plain.py": MODULE,
        "reference_impls/loss_balancing/other.py": OTHER,
        "tests/reference_impls/test_plain.py": TESTS,
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    plain = record(implementation={"status": "implemented", "methods": ["plain"],
                                   "reconstructed": "Step 3's schedule, left open by the paper.",
                                   "toy_scale": "A 4-unit MLP stands in for the paper's ResNet."},
                   summary="Sums the task gradients $g_i$ into $d = \\sum_i g_i$.")  # fmt: skip
    other = record(id="other-method", title="Another Method", links={"paper": "https://example.org/other"},
                   categories=["loss-balancing"], bibtex={"type": "misc", "key": "other2021"},
                   implementation={"status": "implemented", "methods": ["other"]})  # fmt: skip
    make_catalog(root, [plain, other])
    write_suites(root)
    figures = root / "benchmarks" / "results" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    (figures / f"{FIGURE['id']}.json").write_text(json.dumps(FIGURE, indent=1), encoding="utf-8")
    (figures / f"{FIGURE['id']}.png").write_bytes(png())
    return root


# ------------------------------------------------------------------------------------------------
# The check: tables against files
# ------------------------------------------------------------------------------------------------


def expected_cell(stat: dict | None, spec: str, seeds: int) -> str:
    """What a cell must show: ``format(mean, spec)``, then `` ± format(std, spec)`` when there is a std and
    the row has two seeds or more; "–" without a value."""
    if not stat or stat.get("mean") is None:
        return "–"
    text = format(stat["mean"], spec)
    return text if stat.get("std") is None or seeds < 2 else f"{text} ± {format(stat['std'], spec)}"


def html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of a built page as rows of cell texts (header first), tags and entities removed."""
    tables = []
    for table in re.findall(r"<table[^>]*>(.*?)</table>", page, flags=re.S):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
        cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S) for row in rows]
        tables.append([[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row] for row in cells])
    return tables


def _header(metric: dict) -> str:
    arrow = {"lower": " ↓", "higher": " ↑"}.get(metric.get("better") or "", "")
    return metric["label"] + arrow


def _compare(table: list[list[str]], suite: dict, methods: list[str], where: str) -> tuple[list[str], int]:
    """Mismatches of one rendered table against the file's rows of ``methods`` (in that order), cells compared."""
    problems: list[str] = []
    metrics = suite["metrics"]
    header = ["Method", "Seeds", *(_header(m) for m in metrics)]
    if table[0] != header:
        return [f"{where}: header {table[0]} != {header}"], 0
    rows = {r["method"]: r for r in suite["rows"]}
    shown = [row[0] for row in table[1:]]
    if shown != methods:
        problems.append(f"{where}: rows {shown} != {methods}")
    compared = 0
    for row in table[1:]:
        data = rows.get(row[0])
        if data is None:
            continue
        if row[1] != str(data["seeds"]):
            problems.append(f"{where}: {row[0]} seeds {row[1]!r} != {data['seeds']}")
        for metric, cell in zip(metrics, row[2:]):
            want = expected_cell(data["metrics"].get(metric["id"]), metric.get("format") or ".3g", data["seeds"])
            compared += 1
            if cell != want:
                problems.append(f"{where}: {row[0]}, {metric['id']}: shows {cell!r}, the file holds {want!r}")
    return problems, compared


def _suite_files(root: Path) -> list[dict]:
    folder = root / "benchmarks" / "results" / "suites"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json")) if p.name != "index.json"]


def table_mismatches(site: Path, root: Path) -> tuple[list[str], int]:
    """(mismatches, cells compared) between every suite file of ``root`` and the built ``site``: the suite
    page's table, and each method page's table of that suite (one row, the method's)."""
    problems: list[str] = []
    compared = 0
    for suite in _suite_files(root):
        page = site / "results" / suite["suite"] / "index.html"
        if not page.is_file():
            problems.append(f"{suite['suite']}: no page")
            continue
        tables = [t for t in html_tables(page.read_text(encoding="utf-8")) if t and t[0][:2] == ["Method", "Seeds"]]
        if len(tables) != 1:
            problems.append(f"{suite['suite']}: {len(tables)} results tables")
            continue
        found, n = _compare(tables[0], suite, [r["method"] for r in suite["rows"]], suite["suite"])
        problems += found
        compared += n
        for row in suite["rows"]:
            method_page = site / "methods" / row["method"] / "index.html"
            if not method_page.is_file():
                continue  # a method not in the registry has no page
            text = method_page.read_text(encoding="utf-8")
            text = text[text.find("<article") :]  # the page itself, not the navigation (which links every suite)
            # the method page's table of this suite follows the heading that links to the suite's page
            anchor = text.find(f'href="../../results/{suite["suite"]}/"')
            mine = [t for t in html_tables(text[anchor:]) if t and t[0][:2] == ["Method", "Seeds"]] if anchor >= 0 else []
            if not mine:
                problems.append(f"methods/{row['method']}: no table of {suite['suite']}")
                continue
            found, n = _compare(mine[0], suite, [row["method"]], f"methods/{row['method']} ({suite['suite']})")
            problems += found
            compared += n
    return problems, compared
