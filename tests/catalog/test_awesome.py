"""``modl import-awesome``: parsing the survey's awesome list, diffing two versions of it, reporting
against the catalog, and ``--write`` (on temporary copies of the catalog only).

The two seed lists are ``<repo>/../shared/seeds/000_*.txt`` (older) and ``001_*.txt`` (the version the
catalog was built from). Without them the seed tests are skipped, except under CI (``CI`` set).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import yaml

import modl.validate
from modl.awesome import AwesomeError, diff_lists, import_awesome, parse_awesome, set_fields
from modl.catalog import REPO_ROOT, load_catalog
from modl.cli import main
from modl.validate import normalise_title

SEED_DIR = REPO_ROOT.parent / "shared" / "seeds"
TODAY = dt.date(2026, 12, 1)


def _seed(pattern: str) -> Path:
    found = sorted(SEED_DIR.glob(pattern))
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"seed list {SEED_DIR / pattern} is missing (required when CI is set)")
        pytest.skip(f"seed list {SEED_DIR / pattern} is missing")
    return found[-1]


@pytest.fixture(scope="module")
def seed0() -> Path:
    return _seed("000_*.txt")


@pytest.fixture(scope="module")
def seed1() -> Path:
    return _seed("001_*.txt")


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def bold_titles(text: str) -> set[str]:
    """Titles of the numbered entries, read with a plain regular expression (independent of the parser)."""
    return {normalise_title(m.group(1)) for m in re.finditer(r"(?m)^\d+\. \*\*(.+?)\*\*", text)}


@pytest.fixture
def empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This repository's vocabularies and taxonomy with no records (and an empty registry)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "catalog", root / "catalog")
    for path in (root / "catalog" / "papers").glob("*.yaml"):
        path.unlink()
    monkeypatch.setattr(modl.validate, "default_registry", lambda _root: {})
    return root


def summaries_for(root: Path, list_path: Path, base: Path | None = None) -> dict[str, str]:
    report = import_awesome(root, list_path, base_path=base)
    return {proposed: f"Summary of {paper.title[:40]}." for paper, proposed in report.new}


def build(root: Path, list_path: Path) -> None:
    import_awesome(root, list_path, write=True, summaries=summaries_for(root, list_path), today=TODAY)


# -- parsing -----------------------------------------------------------------------------------------


def test_the_seeds_parse_completely(seed0: Path, seed1: Path) -> None:
    for path, entries, papers in ((seed0, 34, 31), (seed1, 63, 61)):
        text = path.read_text(encoding="utf-8")
        parsed = parse_awesome(text, str(path))
        assert len(parsed.entries) == len(re.findall(r"(?m)^\d+\. \*\*", text)) == entries
        assert len(parsed.papers) == papers  # IMTL and DB-MTL cross-listed; 000 lists MOML's AIJ version apart
        assert {normalise_title(p.title) for p in parsed.papers} == bold_titles(text)


def test_the_list_quirks_are_read(seed0: Path, seed1: Path) -> None:
    old = parse_awesome(seed0.read_text(encoding="utf-8"))
    new = parse_awesome(seed1.read_text(encoding="utf-8"))

    def paper(lst, start: str):
        return next(p for p in lst.papers if p.title.startswith(start))

    # MOML's journal version: an entry of its own in 000, on the venue line in 001; the same version.
    assert [(v.venue, v.year, v.url) for v in paper(old, "Multi-Objective Meta").later] == \
        [(v.venue, v.year, v.url) for v in paper(new, "Multi-Objective Meta").later] == \
        [("AIJ", 2024, "https://doi.org/10.1016/j.artint.2024.104184")]
    assert paper(new, "Multi-Objective Meta").main.venue == "NeurIPS" and paper(new, "Multi-Objective Meta").main.year == 2021
    # Cross-listed papers: one paper in two sections.
    assert paper(new, "Towards Impartial").sections == ("Loss Balancing Methods", "Gradient Weighting Methods")
    # Badges next to the code link are not links of the entry.
    assert paper(new, "LibMTL").main.code == "https://github.com/median-research-group/LibMTL"
    # Venue styles: track after the bold label, full name before it, arXiv id, no comma, no period.
    libmoon = paper(new, "LibMOON").main
    assert (libmoon.venue, libmoon.venue_note, libmoon.year) == ("NeurIPS", "Datasets and Benchmarks Track", 2024)
    rlw = paper(new, "Reasonable Effectiveness").main
    assert (rlw.venue, rlw.venue_name, rlw.year) == ("TMLR", "Transactions on Machine Learning Research", 2022)
    epo = paper(new, "Exact Pareto Optimal Search").main  # 'arXiv:2108.00597, 2021' without a period
    assert (epo.venue, epo.arxiv, epo.year) == ("arXiv", "2108.00597", 2021)
    yoto = paper(new, "You Only Train Once").main  # '**ICLR** 2020.' without a comma
    assert (yoto.venue, yoto.year) == ("ICLR", 2020)
    # A code link into a file, kept as it is.
    assert paper(new, "Just Pick a Sign").main.code.endswith("/lingvo/core/graddrop.py")
    # Authors with and without the Oxford comma, and without 'and' at all.
    assert paper(old, "Multi-Task Learning as Multi-Objective").main.authors == ("Ozan Sener", "Vladlen Koltun")
    assert paper(old, "Auto-Lambda").main.authors == paper(new, "Auto-Lambda").main.authors == (
        "Shikun Liu", "Stephen James", "Andrew Davison", "Edward Johns")


# -- list against list -------------------------------------------------------------------------------


def test_000_to_001_shows_exactly_what_001_added(seed0: Path, seed1: Path) -> None:
    text0, text1 = seed0.read_text(encoding="utf-8"), seed1.read_text(encoding="utf-8")
    diff = diff_lists(parse_awesome(text0), parse_awesome(text1))
    added = bold_titles(text1) - bold_titles(text0)
    assert len(added) == 30
    assert {normalise_title(p.title) for p in diff.new} == added
    assert diff.changed == [] and diff.removed == []
    assert [(r.old, r.new) for r in diff.renamed] == [("Finding a Single Pareto Optimal Solution", "Finding a Single Solution")]
    assert diff.new_sections == [
        "Finding a Finite Set of Solutions", "Preference Vector-based Methods", "Preference Vector-free Methods",
        "Finding an Infinite Set of Solutions", "Hypernetwork-based Methods",
        "Preference-Conditioned Network-based Methods", "Model Combination-based Methods",
    ]
    assert diff.removed_sections == []
    # And backwards: what 001 added is what 000 lacks.
    back = diff_lists(parse_awesome(text1), parse_awesome(text0))
    assert {normalise_title(p.title) for p in back.removed} == added and back.new == [] and back.changed == []
    assert [(r.old, r.new) for r in back.renamed] == [("Finding a Single Solution", "Finding a Single Pareto Optimal Solution")]


@pytest.mark.parametrize("seed", range(5))
def test_matching_never_depends_on_position(seed1: Path, seed: int) -> None:
    """Shuffling the entries inside every section (5 seeds, all must pass) changes nothing."""
    text = seed1.read_text(encoding="utf-8")
    blocks = re.split(r"(?m)^(?=#{2,4} )", text)
    rng = random.Random(seed)
    shuffled = []
    for block in blocks:
        head, *items = re.split(r"(?m)^(?=\d+\. \*\*)", block)
        rng.shuffle(items)
        items = [item if item.endswith("\n\n") else item.rstrip("\n") + "\n\n" for item in items]
        shuffled.append(head + "".join(items))
    moved = "".join(shuffled)
    assert moved != text
    diff = diff_lists(parse_awesome(text), parse_awesome(moved))
    assert (diff.new, diff.removed, diff.changed, diff.renamed) == ([], [], [], [])


def test_a_changed_entry_is_reported_field_by_field(seed1: Path) -> None:
    text = seed1.read_text(encoding="utf-8")
    changed = text.replace(
        "6. **Many-Objective Multi-Solution Transport** [[Paper](https://arxiv.org/abs/2403.04099)]",
        "6. **Many-Objective Multi-Solution Transport** [[Paper](https://openreview.net/forum?id=Neb17mimVH)] "
        "[[Code](https://github.com/example/most)]",
    ).replace("   arXiv:2403.04099, 2024.", "   **ICLR**, 2025.").replace("*Ziyue Li, Tian Li,", "*Ziyue Li, Tian Lee,")
    diff = diff_lists(parse_awesome(text), parse_awesome(changed))
    [change] = diff.changed
    assert change.title == "Many-Objective Multi-Solution Transport"
    assert [(c.field, c.old, c.new) for c in change.changes] == [
        ("authors", "Ziyue Li, Tian Li, Virginia Smith, Jeff Bilmes, Tianyi Zhou",
         "Ziyue Li, Tian Lee, Virginia Smith, Jeff Bilmes, Tianyi Zhou"),
        ("venue", "arXiv", "ICLR"),
        ("year", "2024", "2025"),
        ("links.paper", "https://arxiv.org/abs/2403.04099", "https://openreview.net/forum?id=Neb17mimVH"),
        ("links.code", "-", "https://github.com/example/most"),
    ]
    assert diff.new == [] and diff.removed == []


# -- list against the catalog ------------------------------------------------------------------------


def test_report_of_001_against_the_current_catalog(seed1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog was built from 001: every paper of 001 is a record, every section a taxonomy
    section. Differences are the catalog's own corrections, in the fields the audit corrected."""
    report = import_awesome(REPO_ROOT, seed1)
    catalog = load_catalog(REPO_ROOT)
    assert report.new == [] and report.unknown_sections == [] and report.renamed == [] and report.problems == []
    matched = {c.label for c in report.changed} | {c.label for c in report.behind}
    assert all(label.startswith("catalog/papers/") for label in matched)
    text = seed1.read_text(encoding="utf-8")
    for record_id in report.catalog_only:  # records added after 001 (the list's newer papers)
        paper = catalog.papers[record_id]
        assert normalise_title(paper.title) not in bold_titles(text) and paper.links.paper not in text
        assert paper.links.arxiv is None or paper.links.arxiv not in text
    assert len(catalog.papers) - len(report.catalog_only) == report.list_papers == 61
    for change in report.changed:
        assert {c.field for c in change.changes} <= {"title", "authors", "year", "venue", "links.paper", "links.code",
                                                     "later_versions"}, change


def test_write_builds_a_catalog_from_001_that_reports_no_difference(empty_root: Path, seed1: Path) -> None:
    build(empty_root, seed1)
    catalog = load_catalog(empty_root)
    assert len(catalog.papers) == 61
    by_title = {p.title: p for p in catalog.papers.values()}
    assert sorted(p.title for p in catalog.papers.values() if len(p.categories) == 2) == [
        "Dual-Balancing for Multi-Task Learning", "Towards Impartial Multi-task Learning"]
    assert by_title["Towards Impartial Multi-task Learning"].categories == ["loss-balancing", "gradient-weighting"]
    moml = by_title["Multi-Objective Meta Learning"]
    assert (moml.venue, moml.year, [(v.venue, v.year) for v in moml.later_versions]) == ("neurips", 2021, [("aij", 2024)])
    assert moml.later_versions[0].doi == "10.1016/j.artint.2024.104184" and moml.links.openreview == "wKf9iSu_TEm"
    libmoon = by_title["LibMOON: A Gradient-based MultiObjective OptimizatioN Library in PyTorch"]
    assert (libmoon.id, libmoon.short_name, libmoon.venue_note) == ("libmoon", "LibMOON", "Datasets and Benchmarks Track")
    assert by_title["Gradient Surgery for Multi-Task Learning"].id == "yu-2020-gradient"
    assert all(p.added == TODAY and p.updated is None for p in catalog.papers.values())
    again = import_awesome(empty_root, seed1)
    assert (again.new, again.changed, again.behind, again.catalog_only, again.renamed) == ([], [], [], [], [])


def test_three_way_000_then_001_equals_building_from_001(tmp_path: Path, empty_root: Path, seed0: Path,
                                                         seed1: Path) -> None:
    direct = tmp_path / "direct"
    shutil.copytree(empty_root, direct)
    build(direct, seed1)
    build(empty_root, seed0)
    before = snapshot(empty_root)
    report = import_awesome(empty_root, seed1, base_path=seed0, write=True,
                            summaries=summaries_for(empty_root, seed1, seed0), today=TODAY)
    assert len(report.new) == 30 and report.apply == [] and report.conflicts == []
    assert [(r.old, r.new) for r in report.renames_already] == [
        ("Finding a Single Pareto Optimal Solution", "Finding a Single Solution")]
    after = snapshot(empty_root)
    assert {k: v for k, v in after.items() if k in before} == before, "records of 000 are untouched"
    assert len(set(after) - set(before)) == 30

    def fields(root: Path) -> dict[str, dict]:
        return {p.id: p.model_dump(exclude={"summary", "added", "updated"}) for p in load_catalog(root).papers.values()}

    assert fields(empty_root) == fields(direct)


def test_three_way_applies_the_lists_changes_and_nothing_else(tmp_path: Path, empty_root: Path, seed1: Path) -> None:
    build(empty_root, seed1)
    ids = {p.title.split(":")[0]: p.id for p in load_catalog(empty_root).papers.values()}
    pamal_id, most_id = ids["Pareto Manifold Learning"], ids["Many-Objective Multi-Solution Transport"]
    # The catalog corrects an author's name itself (an audit correction the list does not have).
    pamal = empty_root / "catalog" / "papers" / f"{pamal_id}.yaml"
    pamal.write_text(pamal.read_text(encoding="utf-8").replace("Francois Fleuret", "François Fleuret"), encoding="utf-8")
    text = seed1.read_text(encoding="utf-8")
    newer = (text
             .replace("[[Paper](https://arxiv.org/abs/2403.04099)]", "[[Paper](https://openreview.net/forum?id=Neb17mimVH)]")
             .replace("   arXiv:2403.04099, 2024.", "   **ICLR**, 2025.")
             .replace("### Preference Vector-free Methods", "### Methods without Using Preference Vectors")
             .replace("[[Paper](https://openreview.net/forum?id=BUlx0rh7ha)] [[Code](https://github.com/nik-dim/pamal)]",
                      "[[Paper](https://openreview.net/forum?id=BUlx0rh7ha)] [[Code](https://github.com/nik-dim/pamal2)]")
             .replace("*Nikolaos Dimitriadis, Pascal Frossard, and Francois Fleuret*  \n   **ICML**, 2023.",
                      "*Nikolaos Dimitriadis, Pascal Frossard, and F. Fleuret*  \n   **ICML**, 2023."))
    assert newer.count("F. Fleuret") == 1
    newer_path = tmp_path / "newer.md"
    newer_path.write_text(newer, encoding="utf-8")
    # Make the renamed section's old title current in this copy's taxonomy, as it was when 001 was listed.
    taxonomy = empty_root / "catalog" / "taxonomy.yaml"
    tax_text = taxonomy.read_text(encoding="utf-8")
    tax_text = tax_text.replace("title: Methods without Using Preference Vectors\n        former_titles: [Preference Vector-free Methods]",
                                "title: Preference Vector-free Methods")
    assert "title: Preference Vector-free Methods\n" in tax_text
    taxonomy.write_text(tax_text, encoding="utf-8")
    before = snapshot(empty_root)

    report = import_awesome(empty_root, newer_path, base_path=seed1, write=True, today=TODAY)
    assert sorted(report.written) == sorted([f"catalog/papers/{most_id}.yaml", f"catalog/papers/{pamal_id}.yaml",
                                             "catalog/taxonomy.yaml"])
    after = snapshot(empty_root)
    assert {k for k in after if after[k] != before.get(k)} == set(report.written)
    # Conflict: the list and the catalog both changed PaMaL's authors; the catalog's version stays.
    assert [(c.label, [x.field for x in c.changes]) for c in report.conflicts] == [
        (f"catalog/papers/{pamal_id}.yaml", ["authors"])]
    catalog = load_catalog(empty_root)
    pamal_record = catalog.papers[pamal_id]
    assert pamal_record.authors[-1] == "François Fleuret" and pamal_record.links.code == "https://github.com/nik-dim/pamal2"
    most = catalog.papers[most_id]
    assert (most.venue, most.year, most.links.paper, most.links.openreview) == (
        "iclr", 2025, "https://openreview.net/forum?id=Neb17mimVH", "Neb17mimVH")
    assert [(v.venue, v.year, v.url) for v in most.earlier_versions] == [("arxiv", 2024, "https://arxiv.org/abs/2403.04099")]
    assert most.links.arxiv == "2403.04099" and most.updated == TODAY and most.bibtex.type == "inproceedings"
    assert most.bibtex.fields == {"booktitle": "International Conference on Learning Representations"}
    free = catalog.category("preference-vector-free")
    assert (free.title, free.former_titles) == ("Methods without Using Preference Vectors", ["Preference Vector-free Methods"])
    again = import_awesome(empty_root, newer_path, base_path=seed1)
    assert again.apply == [] and again.apply_renames == []


# -- --write: what it needs, and broken input ----------------------------------------------------------


def test_write_needs_a_summary_for_every_new_paper(empty_root: Path, seed1: Path, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    before = snapshot(empty_root)
    summaries = summaries_for(empty_root, seed1)
    missing = sorted(summaries)[0]
    del summaries[missing]
    summaries[sorted(summaries)[0]] = "Summary to be written."
    with pytest.raises(AwesomeError) as caught:
        import_awesome(empty_root, seed1, write=True, summaries=summaries)
    text = str(caught.value)
    assert f"add '{missing}: " in text and "placeholder is not accepted" in text
    assert re.search(rf"{re.escape(str(seed1))}:\d+: new paper", text)
    assert len(caught.value.problems) == 2
    assert snapshot(empty_root) == before
    # The command line: exit 1, the problems on stderr, nothing written.
    path = tmp_path / "summaries.yaml"
    path.write_text(yaml.safe_dump(summaries), encoding="utf-8")
    status = main(["--root", str(empty_root), "import-awesome", str(seed1), "--write", "--summaries", str(path)])
    err = capsys.readouterr().err
    assert status == 1 and "nothing written" in err and "Traceback" not in err
    assert snapshot(empty_root) == before


GOOD_LIST = """# A List

## Contents
- [Methods](#methods)

## Related Survey

1. **A Survey of Things** [[Paper](https://arxiv.org/abs/2101.00001)]
   *Ann Author and Bob Writer*
   arXiv:2101.00001, 2021.
"""


@pytest.mark.parametrize("broken, line, message", [
    (GOOD_LIST.replace("1. **A Survey of Things**", "1. A Survey of Things"), 8, "must start with the title in bold"),
    (GOOD_LIST.replace("   arXiv:2101.00001, 2021.\n", ""), 8, "needs an author line and a venue line"),
    (GOOD_LIST.replace("arXiv:2101.00001, 2021.", "arXiv preprint."), 10, "has no year"),
    (GOOD_LIST.replace("[[Paper](https://arxiv.org/abs/2101.00001)]", "[[Slides](https://example.org/s)]"), 8,
     "has no [Paper](url) link"),
    (GOOD_LIST + "\n```\n@article{x,\n", 12, "code block that opens here is never closed"),
    (GOOD_LIST + "\n## Related Survey\n", 12, "appears twice (first at line 6)"),
    ("# Nothing here\n\nJust text.\n", 1, "no list entries found"),
])
def test_broken_input_is_reported_with_line_numbers_and_nothing_is_written(
        empty_root: Path, tmp_path: Path, broken: str, line: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_awesome(GOOD_LIST).papers[0].main.year == 2021
    path = tmp_path / "broken.md"
    path.write_text(broken, encoding="utf-8")
    before = snapshot(empty_root)
    status = main(["--root", str(empty_root), "import-awesome", str(path), "--write"])
    err = capsys.readouterr().err
    assert status == 1 and f"{path}:{line}: " in err and message in err and "Traceback" not in err, err
    assert snapshot(empty_root) == before


def test_an_unknown_venue_in_the_lists_change_stops_the_write(tmp_path: Path, empty_root: Path, seed1: Path) -> None:
    build(empty_root, seed1)
    newer = tmp_path / "newer.md"
    newer.write_text(seed1.read_text(encoding="utf-8").replace("   **UAI**, 2022.", "   **Journal of Nowhere**, 2023."),
                     encoding="utf-8")
    before = snapshot(empty_root)
    with pytest.raises(AwesomeError, match=r"newer\.md:\d+: venue 'Journal of Nowhere' of 'Learning a Neural Pareto "
                                           r"Manifold Extractor with Constraints' is not in catalog/venues\.yaml"):
        import_awesome(empty_root, newer, base_path=seed1, write=True)
    assert snapshot(empty_root) == before


def test_a_failed_write_restores_every_file(empty_root: Path, seed1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modl.io

    real = modl.io.atomic_write_bytes
    calls = []

    def fail_on_third(path: Path, data: bytes, **kwargs: object) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, data, **kwargs)

    before = snapshot(empty_root)
    summaries = summaries_for(empty_root, seed1)
    monkeypatch.setattr(modl.io, "atomic_write_bytes", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        import_awesome(empty_root, seed1, write=True, summaries=summaries)
    assert len(calls) == 3 and snapshot(empty_root) == before


def test_cli_report_and_root_after_the_command(empty_root: Path, seed1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-awesome", str(seed1), "--root", str(empty_root)]) == 0
    out = capsys.readouterr().out
    assert "New papers, not in the catalog (61):" in out and "+ yu-2020-gradient: line " in out
    assert main(["import-awesome", str(empty_root / "missing.md"), "--root", str(empty_root)]) == 1
    assert "missing.md: no such file" in capsys.readouterr().err


def test_set_fields_replaces_only_the_named_fields() -> None:
    text = ("# schema line\nid: x\ntitle: Old\nauthors:\n  - A\nvenue: arxiv\nyear: 2024\ncategories: [a]\n"
            "links:\n  paper: https://arxiv.org/abs/2101.00001\nsummary: >-\n  Two\n  lines.\nadded: 2026-11-22\n")
    out = set_fields(text, {"title": "New", "year": 2025, "earlier_versions": [{"venue": "arxiv", "year": 2024,
                                                                                 "url": "https://arxiv.org/abs/2101.00001"}],
                            "updated": TODAY})
    assert out == text.replace("title: Old", "title: New").replace("year: 2024", "year: 2025").replace(
        "summary: >-", "earlier_versions:\n  - venue: arxiv\n    year: 2024\n    url: https://arxiv.org/abs/2101.00001\n"
        "summary: >-") + "updated: 2026-12-01\n"
