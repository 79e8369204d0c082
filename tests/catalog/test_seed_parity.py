"""The generated README keeps the seed list's sections, order and content.

The seed is the survey's awesome list as it was when the catalog was built
(``<repo>/../shared/seeds/001_*.txt``). It is parsed into entries (section, title, authors, venue
abbreviation, year, paper URL, code URL, later version), and every entry is checked against the
README rendered from the records. Without the seed file the test is skipped, except under CI
(environment variable ``CI`` set), where a missing seed is a failure.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modl.catalog import REPO_ROOT, Catalog, load_catalog
from modl.render.readme import render_readme, site_page_url

SEED_GLOB = "001_*.txt"
SEED_DIR = REPO_ROOT.parent / "shared" / "seeds"
SECTION_COUNTS = [
    ("Related Survey", 9),
    ("Loss Balancing Methods", 9),
    ("Gradient Weighting Methods", 12),
    ("Gradient Manipulation Methods", 3),
    ("Preference Vector-based Methods", 8),
    ("Preference Vector-free Methods", 6),
    ("Hypernetwork-based Methods", 5),
    ("Preference-Conditioned Network-based Methods", 3),
    ("Model Combination-based Methods", 6),
    ("Software", 2),
]


# Deliberate differences from the seed: the upstream list's updates after it and issue 10's audited
# corrections (sources: the records; the renamed sections keep their seed names as former_titles).
# Seed title -> the Entry fields that now differ.
_DOI_MLWA = "https://doi.org/10.1016/j.mlwa.2025.100700"
CORRECTIONS: dict[str, dict[str, object]] = {
    "Multi-task learning with deep neural networks: A survey": {
        "title": "Multi-Task Learning with Deep Neural Networks: A Survey"},
    "LibMTL: A PyTorch Library for Multi-Task Learning": {"title": "LibMTL: A Python Library for Deep Multi-Task Learning"},
    "LibMOON: A Gradient-based MultiObjective OptimizatioN Library in PyTorch": {
        "authors": ("Xiaoyuan Zhang", "Liang Zhao", "Yingying Yu", "Xi Lin", "Yifan Chen", "Han Zhao", "Qingfu Zhang")},
    "A Review on Evolutionary Multi-Task Optimization: Trends and Challenges": {
        "title": "A Review on Evolutionary Multitask Optimization: Trends and Challenges", "year": 2022},  # 26(5)
    "Multi-Task Learning for Dense Prediction Tasks: A Survey": {"year": 2022},  # print volume 44(7)
    "A Survey on Multi-Task Learning": {"year": 2022},  # print volume 34(12)
    "Multi-objective Deep Learning: Taxonomy and Survey of the State of the Art": {
        "title": "Multi-objective deep learning: Taxonomy and survey of the state of the art",
        "authors": ("Sebastian Peitz", "Sèdjro Salomon Hotegni"), "venue": "MLWA", "year": 2025, "paper": _DOI_MLWA},
    "Pareto Manifold Learning: Tackling Multiple Tasks via Ensembles of Single-Task Models": {
        "title": "Pareto Manifold Learning: Tackling multiple tasks via ensembles of single-task models",
        "authors": ("Nikolaos Dimitriadis", "Pascal Frossard", "François Fleuret")},
    "Pareto Low-Rank Adapters: Efficient Multi-Task Learning with Preferences": {
        "authors": ("Nikolaos Dimitriadis", "Pascal Frossard", "François Fleuret"), "venue": "ICLR", "year": 2025,
        "paper": "https://openreview.net/forum?id=icDoYdUhRa", "code": "https://github.com/nik-dim/palora"},
    "Many-Objective Multi-Solution Transport": {
        "venue": "ICLR", "year": 2025, "paper": "https://openreview.net/forum?id=Neb17mimVH"},
    "Few for Many: Tchebycheff Set Scalarization for Many-Objective Optimization": {
        "venue": "ICLR", "year": 2025, "code": "https://github.com/Xi-L/STCH-Set"},
    "You Only Merge Once: Learning the Pareto Set of Preference-Aware Model Merging": {
        "title": "Pareto Merging: Multi-Objective Optimization for Preference-Aware Model Merging", "venue": "ICML",
        "year": 2025, "paper": "https://proceedings.mlr.press/v267/chen25af.html"},
    # Published at EMO 2023 under a new title (the Springer DOI 10.1007/978-3-031-27250-9_8; CWI's record ir.cwi.nl/pub/32983).
    "Multi-Objective Learning to Predict Pareto Fronts Using Hypervolume Maximization": {
        "title": "Multi-objective Learning Using HV Maximization", "venue": "EMO", "year": 2023,
        "paper": "https://doi.org/10.1007/978-3-031-27250-9_8", "code": "https://github.com/timodeist/multi_objective_learning"},
    "Dual-Balancing for Multi-Task Learning": {
        "authors": ("Baijiong Lin", "Weisen Jiang", "Feiyang Ye", "Yu Zhang", "Pengguang Chen", "Ying-Cong Chen",
                    "Shu Liu", "Ivor W. Tsang", "James T. Kwok")},
}

# Papers the upstream list added after the seed (issue 10), imported with `modl import-awesome`:
# title -> section. They are records but not seed entries.
ADDED_AFTER_SEED = {
    "The stochastic multi-gradient algorithm for multi-objective optimization and its application to supervised "
    "machine learning": "Gradient Weighting Methods",
    "On the Convergence of Stochastic Multi-Objective Gradient Manipulation and Beyond": "Gradient Weighting Methods",
    "Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance":
        "Gradient Weighting Methods",
    "PSMGD: Periodic Stochastic Multi-Gradient Descent for Fast Multi-Objective Optimization": "Gradient Weighting Methods",
    "MGDA Converges under Generalized Smoothness, Provably": "Gradient Weighting Methods",
}


@dataclass(frozen=True)
class Entry:
    section: str
    title: str
    authors: tuple[str, ...]
    venue: str  # abbreviation as the seed shows it in bold ('NeurIPS', 'TKDE'), or 'arXiv'
    year: int
    paper: str
    code: str | None
    later: tuple[str, str, int] | None  # (url, venue abbreviation, year)


def split_authors(text: str) -> tuple[str, ...]:
    """'A, B, and C' / 'A and B' / 'A' -> names."""
    text = text.strip()
    if ", and " in text:
        head, last = text.rsplit(", and ", 1)
        return tuple(name.strip() for name in head.split(",")) + (last.strip(),)
    if " and " in text:
        return tuple(name.strip() for name in text.split(" and "))
    return (text,)


def parse_seed(text: str) -> list[Entry]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and "Contents" not in line)
    entries: list[Entry] = []
    section = ""
    index = start
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        item = re.match(r"^\d+\. \*\*(.+?)\*\* \[\[Paper\]\((\S+?)\)\](?: \[\[Code\]\((\S+?)\)\])?", line)
        if item:
            following = [lines[j].strip() for j in range(index + 1, min(index + 6, len(lines))) if lines[j].strip()]
            authors_line, venue_line = following[0], following[1]
            assert authors_line.startswith("*") and authors_line.endswith("*"), authors_line
            main, _, rest = venue_line.partition(";")
            bold = re.search(r"\*\*(.+?)\*\*", main)
            venue = bold.group(1) if bold else main.split(":")[0].split(",")[0].strip()
            year = int(re.findall(r"\b(\d{4})\b", main)[-1])
            later_match = re.search(r"\[Journal version\]\((\S+?)\) in \*\*(.+?)\*\*, (\d{4})", rest)
            later = (later_match.group(1), later_match.group(2), int(later_match.group(3))) if later_match else None
            entries.append(Entry(section, item.group(1).strip(), split_authors(authors_line.strip("*")), venue, year,
                                 item.group(2), item.group(3), later))
        index += 1
    return entries


def _unescape(markdown_text: str) -> str:
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown_text))


@dataclass(frozen=True)
class Item:
    section: str
    title: str
    url: str
    authors: tuple[str, ...]
    venue: str  # the emphasised venue text, e.g. 'NeurIPS 2018'
    description: str


def parse_readme(text: str) -> list[Item]:
    items = []
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        match = re.match(r"^\d+\. \[((?:\\.|[^\]\\])*)\]\(([^)\s]+)\) - (.*?)\. \*(.+?)\.\*(.*)$", line)
        if match:
            items.append(Item(section, _unescape(match.group(1)), match.group(2), split_authors(_unescape(match.group(3))),
                              _unescape(match.group(4)), match.group(5)))
    return items


def _https(url: str) -> str:
    """Records hold https links only; the seed has a few http:// ones."""
    return "https://" + url[len("http://"):] if url.startswith("http://") else url


@pytest.fixture(scope="module")
def seed() -> list[Entry]:
    candidates = sorted(SEED_DIR.glob(SEED_GLOB))
    if not candidates:
        message = f"seed list {SEED_DIR / SEED_GLOB} is missing"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return parse_seed(candidates[-1].read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT)


@pytest.fixture(scope="module")
def items(catalog: Catalog) -> list[Item]:
    return parse_readme(render_readme(catalog))


def test_seed_parses_completely(seed: list[Entry]) -> None:
    assert len(seed) == 63
    assert len({e.title for e in seed}) == 61
    assert [(s, sum(1 for e in seed if e.section == s)) for s, _ in SECTION_COUNTS] == SECTION_COUNTS


def renames(catalog: Catalog) -> dict[str, str]:
    """Seed section name -> the section's title now (taxonomy.yaml keeps the old one in former_titles)."""
    renamed: dict[str, str] = {}

    def walk(categories: list) -> None:  # noqa: ANN001 - the taxonomy's Category list
        for category in categories:
            renamed.update({former: category.title for former in category.former_titles})
            walk(category.children)

    walk(catalog.categories)
    return renamed


def readme_sections(catalog: Catalog) -> list[tuple[str, int]]:
    renamed = renames(catalog)
    return [(renamed.get(s, s), n) for s, n in SECTION_COUNTS]


def test_section_counts_and_order_of_sections(items: list[Item], catalog: Catalog) -> None:
    sections = list(dict.fromkeys(item.section for item in items))
    expected = [(s, n + list(ADDED_AFTER_SEED.values()).count(s)) for s, n in readme_sections(catalog)]
    assert sections == [s for s, _ in expected]
    assert [(s, sum(1 for i in items if i.section == s)) for s, _ in expected] == expected


def test_renamed_sections_are_the_upstream_renames(catalog: Catalog) -> None:
    assert {old: new for old, new in renames(catalog).items() if "Preference Vector" in old} == {
        "Preference Vector-based Methods": "Methods Based on Preference Vectors",
        "Preference Vector-free Methods": "Methods without Using Preference Vectors",
    }


def corrected(seed: list[Entry], catalog: Catalog) -> list[Entry]:
    """The seed entries as the catalog should show them: CORRECTIONS applied, sections renamed."""
    renamed = renames(catalog)
    return [dataclasses.replace(e, section=renamed.get(e.section, e.section), **CORRECTIONS.get(e.title, {}))  # type: ignore[arg-type]
            for e in seed]


def test_corrections_name_seed_entries(seed: list[Entry]) -> None:
    assert set(CORRECTIONS) <= {e.title for e in seed}


def test_every_seed_entry_is_in_the_readme(seed: list[Entry], items: list[Item], catalog: Catalog) -> None:
    by_title = {p.title: p for p in catalog.papers.values()}
    problems = []
    for entry in corrected(seed, catalog):
        found = [i for i in items if i.section == entry.section and i.title == entry.title]
        if len(found) != 1:
            problems.append(f"{entry.section}: {entry.title!r} listed {len(found)} times")
            continue
        item = found[0]
        paper = by_title[entry.title]
        if item.authors != entry.authors:
            problems.append(f"{entry.title!r}: authors {item.authors} != seed {entry.authors}")
        if str(entry.year) not in item.venue or entry.venue not in item.venue:
            problems.append(f"{entry.title!r}: venue {item.venue!r} lacks seed's {entry.venue} {entry.year}")
        primary = catalog.category(paper.categories[0]).title == entry.section
        if primary:
            if item.url != _https(entry.paper):
                problems.append(f"{entry.title!r}: paper link {item.url} != seed {entry.paper}")
            if entry.code and f"[Code]({entry.code})" not in item.description:
                problems.append(f"{entry.title!r}: code link {entry.code} missing")
            if entry.later:
                url, venue, year = entry.later
                if f"[Journal version in {venue} {year}]({url})" not in item.description:
                    problems.append(f"{entry.title!r}: journal version {venue} {year} {url} missing")
        else:
            if item.url != site_page_url(catalog, paper):
                problems.append(f"{entry.title!r}: a cross-listed item must link to the catalog page")
            if entry.paper in item.description:
                problems.append(f"{entry.title!r}: a cross-listed item repeats the paper link")
    assert not problems, "\n".join(problems)


def test_order_within_sections_is_year_then_title(items: list[Item], catalog: Catalog) -> None:
    by_title = {p.title: p for p in catalog.papers.values()}
    for section, _ in readme_sections(catalog):
        keys = [(by_title[i.title].year, i.title.casefold()) for i in items if i.section == section]
        assert keys == sorted(keys), section


def test_every_record_is_a_seed_entry(seed: list[Entry], catalog: Catalog) -> None:
    titles = {e.title for e in corrected(seed, catalog)}
    assert len(titles) == 61 and not titles & set(ADDED_AFTER_SEED)
    assert sorted(p.title for p in catalog.papers.values()) == sorted(titles | set(ADDED_AFTER_SEED))


def test_readme_on_disk_is_fresh(catalog: Catalog) -> None:
    readme = REPO_ROOT / "README.md"
    assert readme.read_text(encoding="utf-8") == render_readme(catalog), "README.md is stale: run `python -m modl readme`"
    result = subprocess.run([sys.executable, "-m", "modl", "readme", "--check"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text("# Stale\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "modl", "readme", "--check", "--output", str(stale)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "+# Awesome Multi-Objective Deep Learning" in result.stdout and "-# Stale" in result.stdout
    assert "Traceback" not in result.stderr
