"""The All papers page (/papers/): one row per record with the facts the filters read, the filter
options, escaping, links; and the sort hint above every sortable table.

The expected facts are computed here from the YAML files themselves (records, taxonomy, venues), not
through modl.site: a wrong attribute in the generator cannot be mirrored by the test.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import yaml

from tests.site.conftest import REPO_ROOT, build_site, internal_targets, make_catalog, record

SORT_HINT = "Click a column header to sort the table."
HINT_PARAGRAPH = f'<p class="modl-sort-hint">{SORT_HINT}</p>'


# -- the catalog's facts, read from the YAML files -------------------------------------------------


def _records(root: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((root / "catalog" / "papers").glob("*.yaml"))]


def _taxonomy(root: Path) -> list[tuple[str, str, list[str]]]:
    """(id, title, ancestor ids) of every category, depth-first in file order."""
    out: list[tuple[str, str, list[str]]] = []

    def visit(nodes: list[dict], trail: list[str]) -> None:
        for node in nodes:
            out.append((node["id"], node["title"], trail))
            visit(node.get("children", []), trail + [node["id"]])

    visit(yaml.safe_load((root / "catalog" / "taxonomy.yaml").read_text(encoding="utf-8"))["categories"], [])
    return out


def _venues(root: Path) -> dict[str, dict]:
    venues = yaml.safe_load((root / "catalog" / "venues.yaml").read_text(encoding="utf-8"))["venues"]
    return {v["id"]: v for v in venues}


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).lower()


def _expected_impl(rec: dict, site: Path) -> str:
    """What the site shows: 'implemented' only when one of the record's methods has its page."""
    status = rec["implementation"]["status"]
    if status == "implemented":
        built = [m for m in rec["implementation"].get("methods", []) if (site / "methods" / m / "index.html").is_file()]
        return "implemented" if built else "planned"
    return status


# -- the page, parsed ------------------------------------------------------------------------------


class _PapersPage(HTMLParser):
    """Rows of table#modl-papers (attributes, cell texts), the options of each select, the form's attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict] = []
        self.headers: list[str] = []
        self.options: dict[str, list[tuple[str, str]]] = {}
        self.form: dict[str, str | None] | None = None
        self.count = ""
        self.empty: dict[str, str | None] | None = None
        self.tables = 0
        self._table = False
        self._section = ""  # thead / tbody
        self._cell: list[str] | None = None
        self._select = ""
        self._option: list | None = None
        self._in_count = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "modl-papers":
            self._table, self.tables = True, self.tables + 1
        elif tag in ("thead", "tbody") and self._table:
            self._section = tag
        elif tag == "tr" and self._table and self._section == "tbody":
            self.rows.append({"attrs": a, "cells": []})
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "form" and a.get("id") == "modl-paper-filters":
            self.form = a
        elif tag == "select":
            self._select = a["name"]
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self._option = [a.get("value"), ""]
        elif tag == "span" and a.get("id") == "modl-papers-count":
            self._in_count = True
        elif tag == "p" and a.get("id") == "modl-papers-empty":
            self.empty = a

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if self._section == "thead":
                self.headers.append(text)
            else:
                self.rows[-1]["cells"].append(text)
            self._cell = None
        elif tag == "option" and self._option is not None:
            self.options[self._select].append(tuple(self._option))
            self._option = None
        elif tag == "select":
            self._select = ""
        elif tag == "span":
            self._in_count = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._option is not None:
            self._option[1] += data
        if self._in_count:
            self.count += data


def _parse(path: Path) -> _PapersPage:
    parser = _PapersPage()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# -- the real catalog ------------------------------------------------------------------------------


def test_every_record_is_one_row_with_its_facts(real_site: Path) -> None:
    page = _parse(real_site / "papers" / "index.html")
    records = _records(REPO_ROOT)
    ancestors = {cid: trail for cid, _, trail in _taxonomy(REPO_ROOT)}
    assert page.tables == 1
    assert page.headers == ["Title", "Authors", "Section", "Venue", "Year", "Code", "Ref. impl."]
    # entry order: year, then title case-insensitively, then id
    expected_order = [r["id"] for r in sorted(records, key=lambda r: (r["year"], r["title"].casefold(), r["id"]))]
    assert [row["attrs"]["data-id"] for row in page.rows] == expected_order
    by_id = {r["id"]: r for r in records}
    for row in page.rows:
        a, rec = row["attrs"], by_id[row["attrs"]["data-id"]]
        sections = {c for leaf in rec["categories"] for c in [leaf, *ancestors[leaf]]}
        assert set(a["data-sections"].split()) == sections, rec["id"]
        assert len(a["data-sections"].split()) == len(sections), rec["id"]  # no repeats
        assert a["data-venue"] == rec["venue"]
        assert a["data-year"] == str(rec["year"])
        assert a["data-code"] == ("yes" if rec["links"].get("code") else "no"), rec["id"]
        assert a["data-impl"] == _expected_impl(rec, real_site), rec["id"]
        for part in [rec["title"], rec.get("short_name") or "", *rec["authors"], " ".join(rec["summary"].split())]:
            assert _fold(part) in a["data-text"], (rec["id"], part)
        assert a["data-text"] == _fold(a["data-text"])  # lower case, no accents
        assert len(row["cells"]) == 7
        assert row["cells"][0].startswith(rec["title"]) and str(rec["year"]) == row["cells"][4]
        shown = rec["authors"] if len(rec["authors"]) <= 3 else [*rec["authors"][:3], "et al."]
        assert row["cells"][1] == ", ".join(shown), rec["id"]
    # the live count starts at the whole catalog; the form waits for JavaScript; the empty message is hidden
    assert page.count == f"{len(records)} of {len(records)} papers"
    assert page.form is not None and "hidden" in page.form
    assert page.empty is not None and "hidden" in page.empty


def test_filter_options_are_the_catalogs_sections_venues_and_years(real_site: Path) -> None:
    page = _parse(real_site / "papers" / "index.html")
    records = _records(REPO_ROOT)
    venues = _venues(REPO_ROOT)
    taxonomy = _taxonomy(REPO_ROOT)

    sections = page.options["section"]
    assert sections[0][0] == "" and [v for v, _ in sections[1:]] == [cid for cid, _, _ in taxonomy]
    ancestors = {cid: trail for cid, _, trail in taxonomy}
    for (value, label), (cid, title, trail) in zip(sections[1:], taxonomy):
        under = sum(1 for r in records if any(cid in [c, *ancestors[c]] for c in r["categories"]))
        # indented by depth (three no-break spaces a level), then the title and the papers under it
        assert label == "\u00a0" * 3 * len(trail) + f"{title} ({under})", (cid, label)

    used = {r["venue"] for r in records}
    venue_options = page.options["venue"]
    assert venue_options[0][0] == "" and {v for v, _ in venue_options[1:]} == used
    assert len(venue_options) == len(used) + 1
    for value, label in venue_options[1:]:
        assert label == f"{venues[value]['short']} ({venues[value]['name']})"
    assert ("icml", "ICML (International Conference on Machine Learning)") in venue_options

    years = sorted({r["year"] for r in records}, reverse=True)
    assert page.options["year"] == [("", "All years")] + [(str(y), str(y)) for y in years]
    assert [v for v, _ in page.options["code"]] == ["", "yes", "no"]
    assert [v for v, _ in page.options["impl"]] == ["", "implemented", "planned", "not-applicable"]
    assert set(page.options) == {"section", "venue", "year", "code", "impl"}
    text = (real_site / "papers" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<input type="search" name="text"', text)
    # never "q" in the address: Material's search opens its dialog on any page whose address has ?q=
    assert 'name="q"' not in text
    assert re.search(r'<p id="modl-papers-ignored"[^>]* hidden', text)  # papers.js names ignored address values here


def test_every_link_of_the_papers_page_resolves(real_site: Path) -> None:
    page = real_site / "papers" / "index.html"
    targets = internal_targets(real_site, page)
    records = _records(REPO_ROOT)
    for rec in records:
        assert f"papers/{rec['id']}/" in targets, rec["id"]
        assert f"sections/{rec['categories'][0]}/" in targets, rec["id"]
    for target in targets:
        assert (real_site / target / "index.html").is_file() or (real_site / target).is_file(), target


def test_the_sort_hint_sits_right_above_every_sortable_table(real_site: Path) -> None:
    pages = [
        real_site / "papers" / "index.html",
        real_site / "implementations" / "index.html",
        real_site / "results" / "index.html",
        *sorted((real_site / "sections").glob("*/index.html")),
        *[p for p in sorted((real_site / "results").glob("*/index.html")) if "modl-sortable" in p.read_text(encoding="utf-8")],
    ]
    assert len(pages) > 5
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        tables = [m.start() for m in re.finditer(r'<div class="modl-sortable', text)]
        for start in tables:
            before = text[:start].rstrip()
            assert before.endswith(HINT_PARAGRAPH), (page, text[max(0, start - 200) : start])
            checked += 1
        assert text.count(SORT_HINT) == len(tables), page  # and never below a table
    assert checked >= len(pages)


def test_section_pages_link_to_their_filtered_view(real_site: Path) -> None:
    for cid, _, _ in _taxonomy(REPO_ROOT):
        text = (real_site / "sections" / cid / "index.html").read_text(encoding="utf-8")
        if "<table" in text:
            assert f'href="../../papers/?section={cid}"' in text, cid


# -- a temporary catalog ---------------------------------------------------------------------------

HOSTILE_TITLE = '<script>alert("t")</script> & | "quoted" \'single\''
HOSTILE_AUTHORS = ['O"Brien & <b>Sons</b> | Co', "Jürgen Müller"]


def test_record_text_is_escaped_and_folded_in_the_table(tmp_path: Path) -> None:
    hostile = record(
        id="hostile",
        title=HOSTILE_TITLE,
        short_name="<i>H</i>",
        authors=HOSTILE_AUTHORS,
        categories=["gradient-manipulation", "hypernetwork"],
        links={"paper": "https://example.org/hostile"},
        summary='Sums "quoted" <b>gradients</b> & more.',
        venue="neurips",
        year=2022,
        bibtex={"type": "inproceedings", "key": "obrien2022hostile", "fields": {"booktitle": "NeurIPS"}},
    )
    root = make_catalog(tmp_path / "repo", [hostile, record()])
    site = tmp_path / "site"
    done = build_site(site, catalog_root=root)
    assert done.returncode == 0, done.stderr

    path = site / "papers" / "index.html"
    text = path.read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<b>Sons" not in text and "<i>H</i>" not in text
    page = _parse(path)
    assert [row["attrs"]["data-id"] for row in page.rows] == ["plain-method", "hostile"]  # 2021 before 2022
    row = page.rows[1]
    assert all(len(r["cells"]) == 7 for r in page.rows)  # "|" splits no cell
    assert row["cells"][0] == f"{HOSTILE_TITLE} (<i>H</i>)"  # shown as the very same text
    assert row["cells"][1] == ", ".join(HOSTILE_AUTHORS)
    a = row["attrs"]
    assert set(a) >= {"data-id", "data-sections", "data-venue", "data-year", "data-code", "data-impl", "data-text"}
    assert a["data-text"].startswith(HOSTILE_TITLE.lower())  # quotes and brackets survive the attribute
    assert "jurgen muller" in a["data-text"] and 'o"brien & <b>sons</b> | co' in a["data-text"]
    assert set(a["data-sections"].split()) == {
        "gradient-manipulation", "gradient-balancing", "single-solution", "hypernetwork", "infinite-set",
    }
    assert (a["data-venue"], a["data-year"], a["data-code"], a["data-impl"]) == ("neurips", "2022", "no", "planned")
    assert page.rows[0]["attrs"]["data-code"] == "yes"
    assert page.count == "2 of 2 papers"
    assert [v for v, _ in page.options["venue"]] == ["", "icml", "neurips"]
    assert [v for v, _ in page.options["year"]] == ["", "2022", "2021"]
    for target in internal_targets(site, path):
        assert (site / target / "index.html").is_file() or (site / target).is_file(), target


def test_the_filter_form_is_not_indexed_by_search(real_site: Path) -> None:
    """The option lists (every venue's full name, every section) are not text a search should return."""
    import json

    docs = json.loads((real_site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    entries = [d for d in docs if d["location"].split("#")[0] == "papers/"]
    assert entries, "the All papers page is not in the index"
    for entry in entries:
        assert "All venues" not in entry["text"] and "Without official code" not in entry["text"], entry
    assert 'data-search-exclude' not in (real_site / "papers" / "index.html").read_text(encoding="utf-8")


def test_the_row_text_is_folded_as_papers_js_folds_a_query() -> None:
    """data-text and the typed query meet only if both sides fold alike: papers.js holds the same table of
    letters that NFD leaves whole, and both drop every combining mark after lower-casing."""
    import json

    from modl.site.papers_index import LETTER_FOLDS, fold

    js = (REPO_ROOT / "site" / "assets" / "papers.js").read_text(encoding="utf-8")
    table = re.search(r"var LETTER_FOLDS = (\{[^}]*\});", js)
    assert table is not None and json.loads(table.group(1)) == LETTER_FOLDS
    letters = re.search(r"var FOLDED_LETTERS = /\[([^\]]*)\]/g;", js)
    assert letters is not None and set(letters.group(1)) == set(LETTER_FOLDS)
    assert r'normalize("NFD").replace(/\p{M}/gu, "")' in js
    assert fold("Łukasz SØREN Straße Æbelø Jürgen François İzmir Ağ") == "lukasz soren strasse aebelo jurgen francois izmir ag"
    for letter, spelt in LETTER_FOLDS.items():  # each is a letter NFD leaves whole, spelt in plain a-z
        assert unicodedata.normalize("NFD", letter) == letter and re.fullmatch("[a-z]+", spelt), letter
