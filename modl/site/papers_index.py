"""The page of every paper in one filterable table (``papers/index.md``, served at /papers/).

The table is raw HTML (Markdown tables cannot carry attributes on ``<tr>``): one row per record, in the
catalog's entry order (:func:`modl.catalog.entry_order`), with the facts the filters read as ``data-*``
attributes. The filter form and the live count sit above it; ``site/assets/papers.js`` applies the
filters and keeps their state in the query string (``/papers/?venue=icml&code=yes&text=...``; not ``q``,
which Material's search takes as its own query, opening its dialog). Without
JavaScript the form stays hidden and the whole table shows.

DOM contract (tests/site/test_papers_index.py, tests/site/test_browser_papers.py):

* ``<div class="modl-sortable modl-papers"><table id="modl-papers">``; each ``<tbody>`` row has
  ``data-id``, ``data-sections`` (every category of the record and all their ancestors, space-separated),
  ``data-venue``, ``data-year``, ``data-code`` (``yes``/``no``), ``data-impl`` (``implemented``/``planned``/
  ``not-applicable``, as the site shows it: an implemented record without a registered method is planned)
  and ``data-text`` (:func:`search_text`: title, short name, every author and the summary, lower-cased,
  accents removed).
* ``<form id="modl-paper-filters">`` with selects ``section``, ``venue``, ``year``, ``code``, ``impl`` and
  ``<input type="search" name="text">``; ``<span id="modl-papers-count">N of M papers</span>``;
  ``<p id="modl-papers-empty">`` shown when no row matches; ``<p id="modl-papers-ignored">`` names the values of
  the address that none of the choices has (papers.js drops them from the address).

Record text goes through :mod:`modl.site.escape` (E.html for content, E.attr for attribute values).
Links are relative to /papers/ and computed here (raw HTML is not rewritten by mkdocs); the tests
check that each resolves to a built page.
"""

from __future__ import annotations

import unicodedata
from typing import Protocol

from modl.catalog import Catalog
from modl.schema import Category, Paper
from modl.site import escape as E
from modl.site.data import STATUS_TEXT
from modl.site.results import sort_hint


class SiteModel(Protocol):
    """What this page needs of modl.site.pages.SiteModel (which imports this module, so it is not imported here)."""

    catalog: Catalog

    def papers_under(self, category: Category) -> list[Paper]: ...

    def paper_status(self, paper: Paper) -> str: ...

PAPERS_INDEX_URI = "papers/index.md"
SHOWN_AUTHORS = 3  # paper tables (here and section pages) show the first three, then "et al."
CODE_LABELS = {"": "Any", "yes": "With official code", "no": "Without official code"}
IMPL_LABELS = {"": "Any", "implemented": "Implemented here", "planned": "Planned", "not-applicable": "Not applicable"}
EMPTY_MESSAGE = "No paper matches these filters."
# Letters whose stroke or ligature is no combining mark, so NFD leaves them whole: "lukasz" must find
# "Łukasz" all the same. papers.js holds the same table (tests/site/test_papers_index.py compares them).
LETTER_FOLDS = {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i"}


def fold(text: str) -> str:
    """Lower case without accents, exactly as papers.js folds a query: lower-cased, NFD, every combining
    mark (general category M*, JavaScript's \\p{M}) dropped, then LETTER_FOLDS spelt out."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    bare = "".join(ch for ch in decomposed if not unicodedata.category(ch).startswith("M"))
    return "".join(LETTER_FOLDS.get(ch, ch) for ch in bare)


def search_text(paper: Paper) -> str:
    """What the free-text filter searches: title, short name, all authors, summary, folded (:func:`fold`)."""
    return fold(" ".join(" ".join([paper.title, paper.short_name or "", *paper.authors, paper.summary]).split()))


def shown_authors(paper: Paper) -> list[str]:
    """The authors a paper table shows (here and on the section pages): all, or the first three and "et al."."""
    if len(paper.authors) <= SHOWN_AUTHORS:
        return list(paper.authors)
    return [*paper.authors[:SHOWN_AUTHORS], "et al."]


def paper_href(paper_id: str) -> str:
    """/papers/<id>/ seen from /papers/ (use_directory_urls: true)."""
    return f"{paper_id}/"


def section_href(category_id: str) -> str:
    """/sections/<id>/ seen from /papers/."""
    return f"../sections/{category_id}/"


def section_ids(model: SiteModel, paper: Paper) -> list[str]:
    """Every category of the record and all their ancestors, outermost first, without repeats."""
    out: list[str] = []
    for leaf in paper.categories:
        for category_id in [p.id for p in model.catalog.parents(leaf)] + [leaf]:
            if category_id not in out:
                out.append(category_id)
    return out


def _option(value: str, label: str, *, indent: int = 0) -> str:
    pad = "\u00a0\u00a0\u00a0" * indent  # <option> text cannot hold markup: indent the depth with no-break spaces
    return f'<option value="{E.attr(value)}">{pad}{E.html(label)}</option>'


def _select(name: str, label: str, options: list[str]) -> str:
    return (
        f'<label class="modl-filter"><span>{E.html(label)}</span> '
        f'<select name="{name}">' + "".join(options) + "</select></label>"
    )


def _filters(model: SiteModel, papers: list[Paper], total: int) -> str:
    catalog = model.catalog
    sections = [_option("", "All sections")]
    for depth, category in catalog.walk_categories():
        count = len(model.papers_under(category))
        sections.append(_option(category.id, f"{category.title} ({count})", indent=depth))
    used_venues = {p.venue for p in papers}
    venues = [_option("", "All venues")] + [
        _option(v.id, f"{v.short} ({v.name})")
        for v in sorted((catalog.venues[i] for i in used_venues), key=lambda v: (v.short.casefold(), v.id))
    ]
    years = [_option("", "All years")] + [_option(str(y), str(y)) for y in sorted({p.year for p in papers}, reverse=True)]
    code = [_option(value, label) for value, label in CODE_LABELS.items()]
    impl = [_option(value, label) for value, label in IMPL_LABELS.items()]
    # hidden until papers.js runs: without JavaScript the page is the whole table, with no dead controls.
    # data-search-exclude: the option lists are not text to find (the search plugin drops the attribute).
    return "\n".join(
        [
            '<form id="modl-paper-filters" class="modl-paper-filters" role="search" data-search-exclude="true" hidden>',
            _select("section", "Section", sections),
            _select("venue", "Venue", venues),
            _select("year", "Year", years),
            _select("code", "Official code", code),
            _select("impl", "Reference implementation", impl),
            '<label class="modl-filter modl-filter-text"><span>Title, authors, summary</span> '
            '<input type="search" name="text" placeholder="e.g. Nash, Sener, conflict" autocomplete="off"></label>',
            '<button type="reset" class="md-button">Clear filters</button>',
            "</form>",
            f'<p class="modl-papers-status"><span id="modl-papers-count" aria-live="polite">{total} of {total} papers</span></p>',
            # papers.js names here the values of the address it ignored (?venue=nosuch): none of the choices.
            '<p id="modl-papers-ignored" class="modl-papers-ignored" role="status" hidden></p>',
        ]
    )


def _row(model: SiteModel, paper: Paper) -> str:

    status = model.paper_status(paper)
    attrs = {
        "data-id": paper.id,
        "data-sections": " ".join(section_ids(model, paper)),
        "data-venue": paper.venue,
        "data-year": str(paper.year),
        "data-code": "yes" if paper.links.code else "no",
        "data-impl": status,
        "data-text": search_text(paper),
    }
    title = f'<a href="{E.attr(paper_href(paper.id))}">{E.html(paper.title)}</a>'
    if paper.short_name:
        title += f" ({E.html(paper.short_name)})"
    primary = model.catalog.category(paper.categories[0])
    section = f'<a href="{E.attr(section_href(primary.id))}">{E.html(primary.title)}</a>'
    venue = model.catalog.venues[paper.venue]
    venue_cell = f'<abbr title="{E.attr(venue.name)}">{E.html(venue.short)}</abbr>'
    code = f'<a href="{E.attr(paper.links.code)}">code</a>' if paper.links.code else "–"
    impl = E.html(STATUS_TEXT[status])
    if status == "implemented":
        impl = f'<a href="{E.attr(paper_href(paper.id))}#reference-implementation">{impl}</a>'
    cells = [title, E.html(", ".join(shown_authors(paper))), section, venue_cell, str(paper.year), code, impl]
    attributes = " ".join(f'{key}="{E.attr(value)}"' for key, value in attrs.items())
    return f"<tr {attributes}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def papers_index_page(model: SiteModel) -> str:
    from modl.catalog import entry_order

    papers = sorted(model.catalog.papers.values(), key=entry_order)
    total = len(papers)
    with_code = sum(1 for p in papers if p.links.code)
    implemented = sum(1 for p in papers if model.paper_status(p) == "implemented")
    # hide: toc gives the wide table the table-of-contents column (the page has no subheadings).
    out = ["---\ntitle: All papers\nhide:\n  - toc\n---\n", "# All papers\n"]
    noun = "paper" if total == 1 else "papers"
    out.append(
        f"Every paper of the catalog in one table: **{total}** {noun}, **{with_code}** with official code, "
        f"**{implemented}** with a reference implementation here. The filters combine; the address keeps "
        "them, so a filtered view can be shared or bookmarked.\n"
    )
    if not papers:
        out.append("*No papers yet.*\n")
        return "\n".join(out)
    out.append(_filters(model, papers, total) + "\n")
    out.append(sort_hint())
    header = "".join(
        f"<th>{name}</th>" for name in ("Title", "Authors", "Section", "Venue", "Year", "Code", "Ref. impl.")
    )
    out.append(
        '<div class="modl-sortable modl-papers">\n<table id="modl-papers">\n'
        f"<thead><tr>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(_row(model, p) for p in papers)
        + "\n</tbody>\n</table>\n</div>\n"
    )
    out.append(f'<p id="modl-papers-empty" class="modl-papers-empty" hidden>{EMPTY_MESSAGE}</p>\n')
    return "\n".join(out)
