"""The site's Results section, read from the stored results files (never from torch or reference_impls).

* Suites: ``benchmarks/results/suites/<suite-id>.json``, written by ``modl bench`` (reference_impls/bench/),
  ordered by ``benchmarks/results/suites/index.json``. :func:`load_suites` reads and checks them;
  :func:`format_stat` is the one formatter of a table cell (mean ± std over seeds, in the metric's
  format), used by the suite tables and by each method page's rows, so the two cannot disagree.
* Figures: ``benchmarks/results/figures/<figure-id>.json`` beside ``<figure-id>.png``, written by
  ``benchmarks/figures/figure_io.py``; :func:`load_figures` reads them and :func:`figure_markdown` shows one.

A missing folder is no error: the section then says that no results exist yet. A malformed file stops
the build with one line naming it (a table must never show a value its file does not hold).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modl.site import escape as E
from modl.site.data import SiteError

SUITES_DIR = Path("benchmarks") / "results" / "suites"
FIGURES_DIR = Path("benchmarks") / "results" / "figures"
RESULTS_DIR = "results"  # the section's folder in the site
FIGURES_URI = f"{RESULTS_DIR}/figures.md"
SPEED_URI = f"{RESULTS_DIR}/speed.md"
INDEX_URI = f"{RESULTS_DIR}/index.md"
FORMAT = 1
KINDS = {
    "single": "single-solution methods",
    "set": "methods that find a set of solutions",
    "pareto-model": "Pareto-set models",
}
BETTER = {"lower": "↓", "higher": "↑"}
MISSING = "–"  # a metric that does not apply, or a method without an ok cell
_FORMAT_SPEC = re.compile(r"^[+ ]?,?(\.\d{1,2})?[eEfgG%]$")
_ID = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


def suite_uri(suite_id: str) -> str:
    return f"{RESULTS_DIR}/{suite_id}.md"


def figure_image_uri(figure_id: str) -> str:
    return f"{RESULTS_DIR}/figures/{figure_id}.png"


# ------------------------------------------------------------------------------------------------
# The results files
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    id: str
    label: str
    better: str | None  # "lower" | "higher" | None
    format: str  # a format spec such as ".3g"
    description: str


@dataclass(frozen=True)
class Stat:
    """One metric of one method, aggregated over its ok cells (seeds)."""

    mean: float
    std: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int | None
    status: str  # "ok" | "n/a" | "error"
    reason: str | None


@dataclass(frozen=True)
class Row:
    method: str
    paper: str | None
    seeds: int
    metrics: dict[str, Stat | None]


@dataclass
class Suite:
    id: str
    path: Path
    title: str
    description: str
    kind: str
    problem: str
    problem_params: dict[str, Any]
    settings: dict[str, Any]
    mode: str
    seeds: list[Any]
    environment: dict[str, Any]
    metrics: list[Metric]
    cells: list[Cell]
    rows: list[Row]

    def row(self, method: str) -> Row | None:
        return next((r for r in self.rows if r.method == method), None)

    def not_applicable(self) -> dict[str, str]:
        """Methods with no ok and no failed cell (only n/a ones), with their reason: left out of the table."""
        shown = {r.method for r in self.rows}
        failed = {c.method for c in self.cells if c.status == "error"}
        out: dict[str, str] = {}
        for cell in self.cells:
            if cell.status == "n/a" and cell.method not in shown and cell.method not in failed:
                out.setdefault(cell.method, cell.reason or "not applicable")
        return out

    def errors(self) -> list[Cell]:
        return [c for c in self.cells if c.status == "error"]

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "n/a": 0, "error": 0}
        for cell in self.cells:
            out[cell.status] = out.get(cell.status, 0) + 1
        return out


@dataclass
class Results:
    suites: list[Suite] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)  # index.json, or {} when absent


def _problem(path: Path, message: str) -> SiteError:
    return SiteError(f"{path}: {message}")


def _read_json(path: Path) -> Any:
    try:
        # Non-finite numbers are not JSON: a NaN or inf in a results file is an error, never a table cell.
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _problem(path, f"cannot be read: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} (a non-finite value is a failed cell)")


def _text(path: Path, data: dict, key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _problem(path, f"{key!r} must be a non-empty string")
    return value


def _number(path: Path, where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _problem(path, f"{where}: {value!r} is not a finite number")
    return float(value)


def _metric(path: Path, data: Any) -> Metric:
    if not isinstance(data, dict):
        raise _problem(path, f"a metric must be an object, not {data!r}")
    metric_id = _text(path, data, "id")
    better = data.get("better")
    if better not in (None, "lower", "higher"):
        raise _problem(path, f"metric {metric_id}: better must be 'lower', 'higher' or null, not {better!r}")
    spec = data.get("format") or ".3g"
    if not isinstance(spec, str) or not _FORMAT_SPEC.match(spec):
        raise _problem(path, f"metric {metric_id}: format {spec!r} is not a number format such as '.3g'")
    return Metric(
        id=metric_id,
        label=_text(path, data, "label"),
        better=better,
        format=spec,
        description=_text(path, data, "description", required=False),
    )


def _stat(path: Path, where: str, data: Any) -> Stat | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _problem(path, f"{where}: expected {{mean, std, min, max}}, got {data!r}")
    mean = _number(path, f"{where}.mean", data.get("mean"))
    if mean is None:
        return None
    return Stat(
        mean=mean,
        std=_number(path, f"{where}.std", data.get("std")),
        min=_number(path, f"{where}.min", data.get("min")),
        max=_number(path, f"{where}.max", data.get("max")),
    )


def load_suite(path: Path) -> Suite:
    """One suite's results file, checked against api15 section 1; SiteError naming the file otherwise."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise _problem(path, "must hold a JSON object")
    if data.get("format") != FORMAT:
        raise _problem(path, f"format {data.get('format')!r} is not {FORMAT}")
    suite_id = _text(path, data, "suite")
    if suite_id != path.stem:
        raise _problem(path, f"suite {suite_id!r} does not match the file name")
    kind = _text(path, data, "kind")
    if kind not in KINDS:
        raise _problem(path, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    metrics = [_metric(path, m) for m in data.get("metrics") or []]
    ids = [m.id for m in metrics]
    if len(set(ids)) != len(ids):
        raise _problem(path, "metric ids repeat")
    cells = []
    for raw in data.get("cells") or []:
        status = raw.get("status") if isinstance(raw, dict) else None
        if status not in ("ok", "n/a", "error"):
            raise _problem(path, f"cell {raw!r}: status must be ok, n/a or error")
        cells.append(Cell(str(raw.get("method")), raw.get("seed"), status, raw.get("reason")))
    rows = []
    for raw in data.get("rows") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("method"), str):
            raise _problem(path, f"row {raw!r}: needs a method")
        method = raw["method"]
        values = raw.get("metrics") or {}
        unknown = sorted(set(values) - set(ids))
        if unknown:
            raise _problem(path, f"row {method}: metrics {unknown} are not among the suite's metrics")
        rows.append(
            Row(
                method=method,
                paper=raw.get("paper"),
                seeds=int(raw.get("seeds") or 0),
                metrics={m: _stat(path, f"row {method}, {m}", values.get(m)) for m in ids},
            )
        )
    if len({r.method for r in rows}) != len(rows):
        raise _problem(path, "a method has two rows")
    return Suite(
        id=suite_id,
        path=path,
        title=_text(path, data, "title"),
        description=_text(path, data, "description", required=False),
        kind=kind,
        problem=_text(path, data, "problem", required=False),
        problem_params=dict(data.get("problem_params") or {}),
        settings=dict(data.get("settings") or {}),
        mode=str(data.get("mode") or ""),
        seeds=list(data.get("seeds") or []),
        environment=dict(data.get("environment") or {}),
        metrics=metrics,
        cells=cells,
        rows=rows,
    )


def load_suites(root: Path) -> Results:
    """Every suite of ``root/benchmarks/results/suites`` in the index's order (then by id); empty without the folder."""
    folder = root / SUITES_DIR
    if not folder.is_dir():
        return Results()
    index_path = folder / "index.json"
    index = _read_json(index_path) if index_path.is_file() else {}
    if not isinstance(index, dict):
        raise _problem(index_path, "must hold a JSON object")
    files = {p.stem: p for p in folder.glob("*.json") if p.name != "index.json"}
    for stem in files:
        if not _ID.match(stem):
            raise _problem(files[stem], "a suite id is lower-case words joined by hyphens")
        if stem in ("figures", "speed"):  # the section's own pages
            raise _problem(files[stem], f"the suite id {stem!r} is taken by the Results page of that name")
    order = [s for s in index.get("suites") or [] if s in files]
    order += sorted(set(files) - set(order))
    return Results([load_suite(files[s]) for s in order], index)


# ------------------------------------------------------------------------------------------------
# Cells
# ------------------------------------------------------------------------------------------------


def format_value(value: float | None, spec: str) -> str:
    if value is None:
        return MISSING
    return format(value, spec)


def format_stat(stat: Stat | None, metric: Metric, seeds: int) -> str:
    """A table cell: the mean over the row's seeds, then ``± std`` when there are two seeds or more (one seed
    has no spread), both in the metric's format; ``–`` without a value."""
    if stat is None:
        return MISSING
    text = format_value(stat.mean, metric.format)
    if stat.std is not None and seeds > 1:
        text += f" ± {format_value(stat.std, metric.format)}"
    return text


def metric_header(metric: Metric) -> str:
    """A column header: the label and the better direction (↓ lower is better, ↑ higher is better)."""
    arrow = BETTER.get(metric.better or "")
    return E.md(metric.label) + (f" {arrow}" if arrow else "")


def table_rows(
    suite: Suite, rows: list[Row], method_cell: Callable[[Row], str]
) -> list[str]:
    """The Markdown table (header, rule, one line per row) of ``rows`` of ``suite``."""
    out = ["| Method | Seeds | " + " | ".join(metric_header(m) for m in suite.metrics) + " |"]
    out.append("| --- | ---: | " + " | ".join("---:" for _ in suite.metrics) + " |")
    for row in rows:
        cells = [format_stat(row.metrics.get(m.id), m, row.seeds) for m in suite.metrics]
        out.append(f"| {method_cell(row)} | {row.seeds} | " + " | ".join(cells) + " |")
    return out


_INLINE_MATH = re.compile(r"\\\((.+?)\\\)", re.S)


def in_table(markdown: str) -> str:
    """Markdown with inline math made safe for a table cell: a ``|`` in TeX would end the cell."""

    def fix(match: re.Match[str]) -> str:
        tex = match.group(1).replace("\\|", "\\Vert{}").replace("|", "\\vert{}")
        return f"\\({tex}\\)"

    return _INLINE_MATH.sub(fix, markdown)


SORT_HINT = "Click a column header to sort the table."


def sort_hint() -> str:
    """The hint paragraph that goes right ABOVE a sortable table (sortable.js makes its headers clickable)."""
    return f"{SORT_HINT}\n{{: .modl-sort-hint }}\n"


def sortable(lines: list[str], *, hint: bool = True) -> str:
    """A results table that sortable.js makes sortable, after the sort hint (``hint=False``: a one-row table)."""
    table = '<div class="modl-sortable modl-results" markdown="1">\n\n' + "\n".join(lines) + "\n\n</div>\n"
    return (sort_hint() + "\n" if hint else "") + table


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def key_values(values: dict[str, Any]) -> str:
    """``a = 1, b = adam`` as inline code, in the file's order."""
    return ", ".join(f"`{k} = {_value_text(v)}`" if "`" not in f"{k}{v}" else E.md(f"{k} = {v}") for k, v in values.items())


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    id: str
    path: Path  # the PNG
    methods: list[str]
    paper: str
    paper_figure: str
    title: str
    caption: str
    settings: str
    match: str
    command: str


FIGURE_KEYS = ("id", "methods", "paper", "paper_figure", "title", "caption", "settings", "match", "command")


def load_figures(root: Path) -> list[Figure]:
    """Every reproduced figure of ``root/benchmarks/results/figures``, by id; a JSON without its PNG is an error."""
    folder = root / FIGURES_DIR
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        data = _read_json(path)
        if not isinstance(data, dict):
            raise _problem(path, "must hold a JSON object")
        missing = [k for k in FIGURE_KEYS if not data.get(k)]
        if missing:
            raise _problem(path, f"lacks {', '.join(missing)}")
        if data["id"] != path.stem or not _ID.match(path.stem):
            raise _problem(path, f"id {data['id']!r} must be the file name, lower-case words joined by hyphens")
        methods = data["methods"]
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise _problem(path, "methods must be a list of registry ids")
        png = path.with_suffix(".png")
        if not png.is_file():
            raise _problem(path, f"its image {png.name} is missing")
        out.append(
            Figure(
                id=path.stem,
                path=png,
                methods=list(methods),
                **{k: str(data[k]) for k in FIGURE_KEYS if k not in ("id", "methods")},
            )
        )
    return out


def figure_markdown(
    figure: Figure,
    uri: str,
    *,
    rel: Callable[[str, str], str],
    paper_link: Callable[[str], tuple[str, str] | None],
    method_link: Callable[[str], str | None],
    prose: Callable[[str], str],
    heading: str = "###",
) -> str:
    """One figure: heading, image, caption, what it reproduces, settings, the match sentence, methods, command.

    ``paper_link`` gives a paper's (src uri, name) and ``method_link`` a method page's src uri, or None;
    ``prose`` turns metadata text into Markdown (escaped, with ``$..$`` math)."""
    out = [f"{heading} {E.md(figure.title)} {{ #figure-{figure.id} }}\n"]
    image = rel(uri, figure_image_uri(figure.id))
    out.append(f'![{E.md(figure.title)}]({image}){{ .modl-figure loading="lazy" }}\n')
    target = paper_link(figure.paper)
    paper = f"[{E.md(target[1])}]({rel(uri, target[0])})" if target else E.md(figure.paper)
    out.append(f"{prose(figure.caption)}\n")
    out.append(f"- **Reproduces:** {E.md(figure.paper_figure)} of {paper}.")
    out.append(f"- **Settings:** {prose(figure.settings)}")
    out.append(f"- **Match:** {prose(figure.match)}")
    methods = []
    for m in figure.methods:
        target = method_link(m)
        methods.append(f"[{E.md(m)}]({rel(uri, target)})" if target else E.md(m))
    out.append(f"- **Methods:** {', '.join(methods)}")
    out.append("")
    out.append("Reproduce it:\n")
    out.append(f"```sh\n{figure.command.strip()}\n```\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

BENCH_COMMANDS = [
    ("modl bench", "the full sweep: every registered method on every suite it applies to, 3 seeds"),
    ("modl bench --quick", "the short version CI runs: checks that results are produced and sane"),
    ("modl bench --suite ID", "one suite"),
    ("modl bench --method ID", "one method on every suite it applies to"),
    ("modl bench --shard i/n", "the i-th of n shares of the cells, for a scheduler with several machines"),
]


def commands_markdown() -> str:
    rows = ["| Command | What it runs |", "| --- | --- |"]
    rows += [f"| `{command}` | {E.md(text)} |" for command, text in BENCH_COMMANDS]
    return (
        "\n".join(rows)
        + "\n\nCells are independent and resumable: a finished cell (one method, suite and seed) is not run "
        "again, so an interrupted sweep continues where it stopped. Locally a process pool uses every core. "
        "The results files land in `benchmarks/results/suites/`; this section is generated from them when "
        "the site is built.\n"
    )


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"
