"""Markdown of every generated page, built from the catalog, the registry and the stored results.

:func:`build_site_model` gathers the data once; :meth:`SiteModel.pages` returns ``{src_uri: markdown}``
for the section, paper, index, statistics, downloads and reference-implementation pages, one page per
registered method (``methods/<id>.md``: update rule, usage, its row of every results table, figures,
deviations, tests, source) and the Results section (``results/``: one page per suite of
benchmarks/results/suites/, the reproduced figures, the speed tables; see :mod:`modl.site.results`);
:meth:`SiteModel.downloads` the files written next to them (BibTeX, JSON, JSON Schema) and
:meth:`SiteModel.images` the figures' PNGs.

Record text enters Markdown only through :mod:`modl.site.escape`, and text that may hold math (record
summaries with ``$..$``, docstring prose with :math:) through :mod:`modl.site.docmath`; internal links
are Markdown links (so mkdocs checks them at build), external links raw ``<a>`` elements with escaped ``href``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modl.catalog import Catalog, entry_order
from modl.schema import Category, Paper
from modl.site import citation, docmath
from modl.site import escape as E
from modl.site import results as R
from modl.site.data import STATUS_TEXT, MethodFacts, SiteError, code_root, method_facts
from modl.site.papers_index import PAPERS_INDEX_URI, papers_index_page, shown_authors

SECTIONS_DIR = "sections"
PAPERS_DIR = "papers"
METHODS_DIR = "methods"
SCHEMA_SOURCE = "catalog/schema/paper.schema.json"
DOWNLOAD_BIB = "downloads/catalog.bib"
DOWNLOAD_JSON = "downloads/catalog.json"
DOWNLOAD_SCHEMA = "downloads/paper.schema.json"
WHATS_NEW = 15  # records listed under "What is new" on the home page
# Search boosts (front matter `search: {boost: ...}`; modl/site/search.py says what is indexed). A paper's
# page outranks its method page (<h1> "pcgrad") for its short name and the pages that list or cite it:
# Material's worker multiplies the scores of a page's entries by its boost, and both pages match the short
# name once in their titles, so the ratio of the boosts is the margin (tests/site/test_browser_search.py).
PAPER_SEARCH_BOOST = 3
METHOD_SEARCH_BOOST = 1


def _renderers():
    """The shared BibTeX and JSON renderers of modl.render, or a clear build error while they are missing."""
    try:
        from modl.render.bibtex import render_bibtex
        from modl.render.jsonexport import render_json
    except ImportError as error:
        raise SiteError(
            f"the site needs modl.render.bibtex.render_bibtex and modl.render.jsonexport.render_json ({error})"
        ) from None
    return render_bibtex, render_json


def method_uri(name: str) -> str:
    return f"{METHODS_DIR}/{name}.md"


def section_uri(category_id: str) -> str:
    return f"{SECTIONS_DIR}/{category_id}.md"


def paper_uri(paper_id: str) -> str:
    return f"{PAPERS_DIR}/{paper_id}.md"


def paper_bib_uri(paper_id: str) -> str:
    """The .bib download of a paper page (served at /papers/<id>.bib, beside /papers/<id>/)."""
    return f"{PAPERS_DIR}/{paper_id}.bib"


def _rel(from_uri: str, to_uri: str) -> str:
    """Relative link between two source files (both relative to docs_dir)."""
    up = from_uri.count("/")
    return "../" * up + to_uri


def _fence(text: str, lang: str, attrs: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run in ``text``."""
    longest = 0
    run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    head = f"{fence} {lang}" + (f" {attrs}" if attrs else "")
    return f"{head}\n{text.rstrip()}\n{fence}\n"


def _front(title: str, tags: list[str] | None = None, extra: dict[str, object] | None = None) -> str:
    lines = ["---", f"title: {E.title(title)}"]
    if tags:
        lines.append("tags:")
        lines.extend(f"  - {json.dumps(t)}" for t in tags)
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {json.dumps(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class Change:
    """One entry of "What is new": a record added after the catalog started, or changed since."""

    date: _dt.date
    kind: str  # "added" or "updated"
    paper: Paper


@dataclass(frozen=True)
class WhatsNew:
    started: _dt.date | None  # the first 'added' date: the initial import
    started_with: int  # records added on that date
    changes: list[Change]  # newest first


def whats_new(papers: Iterable[Paper]) -> WhatsNew:
    """Records by their latest date (``updated``, else ``added``), newest first, labelled "added" or
    "updated"; records whose only date is the initial import (the earliest ``added``) are left out,
    since that date says when the catalog was built, not when the paper became news."""
    papers = list(papers)
    if not papers:
        return WhatsNew(None, 0, [])
    started = min(p.added for p in papers)
    changes = []
    for paper in papers:
        if paper.updated is not None and paper.updated != paper.added:
            changes.append(Change(paper.updated, "updated", paper))
        elif paper.added != started:
            changes.append(Change(paper.added, "added", paper))
    # Same day: additions before updates, then the sections' entry order.
    changes.sort(key=lambda c: (-c.date.toordinal(), c.kind != "added", entry_order(c.paper)))
    return WhatsNew(started, sum(1 for p in papers if p.added == started), changes)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "–"


@dataclass
class SiteModel:
    catalog: Catalog
    methods: dict[str, MethodFacts]  # registry id -> facts
    repo_url: str
    render_bibtex: object
    render_json: object

    # -- shared facts --------------------------------------------------------------------------

    def venue_tag(self, paper: Paper) -> str:
        return self.catalog.venues[paper.venue].short

    def allowed_tags(self) -> list[str]:
        """The tags allow-list: every venue's short name and every year from the first record to next year."""
        years = [p.year for p in self.catalog.papers.values()]
        first = min(years, default=_dt.date.today().year)
        last = max(years + [_dt.date.today().year + 1])
        return [v.short for v in self.catalog.venues.values()] + [str(y) for y in range(first, last + 1)]

    def paper_methods(self, paper: Paper) -> list[MethodFacts]:
        """Registered reference implementations of a paper (its record's ids found in the registry)."""
        if paper.implementation.status != "implemented":
            return []
        return [self.methods[m] for m in paper.implementation.methods if m in self.methods]

    def paper_status(self, paper: Paper) -> str:
        """implemented (and registered) / planned / not-applicable."""
        status = paper.implementation.status
        if status == "implemented" and not self.paper_methods(paper):
            return "planned"
        return status

    def paper_tested(self, paper: Paper) -> bool:
        methods = self.paper_methods(paper)
        return bool(methods) and all(m.tested for m in methods)

    def descendants(self, category: Category) -> list[str]:
        """Ids of the leaves at or below a category."""
        if not category.children:
            return [category.id]
        return [leaf for child in category.children for leaf in self.descendants(child)]

    def papers_under(self, category: Category) -> list[Paper]:
        leaves = set(self.descendants(category))
        return sorted((p for p in self.catalog.papers.values() if leaves & set(p.categories)), key=entry_order)

    def paper_bibtex(self, paper: Paper) -> str:
        """One record's entry: render_entry (what render_bibtex joins) when available, else render_bibtex."""
        try:
            from modl.render.bibtex import render_entry
        except ImportError:
            return self.render_bibtex(self.catalog, [paper.id])
        return render_entry(paper)

    def repo_file_url(self, path: str) -> str:
        return f"{self.repo_url.rstrip('/')}/blob/main/{path}"

    # -- pages ---------------------------------------------------------------------------------

    def pages(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for _, category in self.catalog.walk_categories():
            out[section_uri(category.id)] = self.section_page(category)
        for paper in self.catalog.papers.values():
            out[paper_uri(paper.id)] = self.paper_page(paper)
        out["venues.md"] = self.tag_index_page(
            "Papers by venue", "venue", [v.short for v in self.catalog.venues.values()]
        )
        years = sorted({str(p.year) for p in self.catalog.papers.values()}, reverse=True)
        out["years.md"] = self.tag_index_page("Papers by year", "year", years)
        out[PAPERS_INDEX_URI] = papers_index_page(self)
        out["statistics.md"] = self.statistics_page()
        out["downloads.md"] = self.downloads_page()
        out["implementations/index.md"] = self.implementations_page()
        for name in self.methods:
            out[method_uri(name)] = self.method_page(name)
        out.update(self.results_pages())
        return out

    def images(self) -> dict[str, bytes]:
        """Binary files of the site: every reproduced figure's PNG, at the uri its pages link to."""
        return {R.figure_image_uri(f.id): f.path.read_bytes() for f in self.figures}

    def downloads(self) -> dict[str, str]:
        out = {
            DOWNLOAD_BIB: self.render_bibtex(self.catalog, None),
            DOWNLOAD_JSON: self.render_json(self.catalog),
        }
        schema = self.catalog.root / SCHEMA_SOURCE
        if schema.is_file():
            out[DOWNLOAD_SCHEMA] = schema.read_text(encoding="utf-8")
        for paper in self.catalog.papers.values():  # each paper page's .bib download: its entry alone
            out[paper_bib_uri(paper.id)] = self.paper_bibtex(paper).rstrip("\n") + "\n"
        return out

    # home page fragments (inserted at markers of the hand-written site/index.md)

    def home_taxonomy(self) -> str:
        lines = []
        for depth, category in self.catalog.walk_categories():
            count = len(self.papers_under(category))
            noun = "paper" if count == 1 else "papers"
            lines.append(f"{'    ' * depth}- [{E.md(category.title)}]({section_uri(category.id)}) ({count} {noun})")
        return "\n".join(lines) + "\n"

    def home_whats_new(self) -> str:
        news = whats_new(self.catalog.papers.values())
        if news.started is None:
            return "No records yet.\n"
        lines = []
        for change in news.changes[:WHATS_NEW]:
            paper = change.paper
            lines.append(
                f"- {change.date.isoformat()}, {change.kind}: [{E.md(paper.title)}]({paper_uri(paper.id)})"
                f" ({E.md(self.venue_tag(paper))} {paper.year})"
            )
        more = len(news.changes) - WHATS_NEW
        if more > 0:
            lines.append(f"- … and {more} more changes (each paper's page gives its dates).")
        noun = "paper" if news.started_with == 1 else "papers"
        started = f"{news.started.isoformat()} with {news.started_with} {noun}"
        if not news.changes:
            return f"No records added or changed since the catalog started on {started}.\n"
        return "\n".join(lines) + f"\n\nThe catalog started on {started}.\n"

    def home_cite(self) -> str:
        """The survey the catalog follows (catalog/project.yaml), with its BibTeX entry."""
        from modl.render.bibtex import render_survey_entry
        from modl.render.readme import format_authors

        survey = self.catalog.project.survey
        return (
            f"The taxonomy and the list of papers follow the survey [{E.md(survey.title)}]({survey.url}) by "
            f"{E.md(format_authors(survey.authors))} (arXiv:{survey.arxiv}, {survey.year}). "
            "Please cite it when you use the catalog:\n\n" + _fence(render_survey_entry(survey), "bibtex")
        )

    def home_counts(self) -> str:
        n = len(self.catalog.papers)
        implemented = sum(1 for p in self.catalog.papers.values() if self.paper_status(p) == "implemented")
        return (
            f"The catalog holds **{n}** papers in **{len(self.catalog.leaf_ids())}** sections; "
            f"**{implemented}** have a reference implementation here "
            f"([statistics](statistics.md), [downloads](downloads.md)).\n"
        )

    # section pages

    def _paper_table(self, uri: str, papers: list[Paper], *, primary_of: str | None = None) -> str:
        if not papers:
            return "*No papers in this section yet.*\n"
        head = (
            R.sort_hint() + "\n"  # the hint goes above the table, where a reader looks before clicking
            + '<div class="modl-sortable" markdown="1">\n\n'
            "| Title | Authors | Venue | Year | Code | Ref. impl. |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
        )
        rows = []
        for paper in papers:
            title = f"[{E.md(paper.title)}]({_rel(uri, paper_uri(paper.id))})"
            if paper.short_name:
                title += f" ({E.md(paper.short_name)})"
            if primary_of and not self.catalog.is_primary(paper, primary_of):
                title += " ↗"
            code = E.link("code", paper.links.code) if paper.links.code else "–"
            status = STATUS_TEXT[self.paper_status(paper)]
            if self.paper_status(paper) == "implemented":
                status = f"[{status}]({_rel(uri, paper_uri(paper.id))}#reference-implementation)"
            rows.append(
                f"| {title} | {E.md(', '.join(shown_authors(paper)))} | {E.md(self.venue_tag(paper))} | {paper.year} | {code} | {status} |"
            )
        return head + "\n".join(rows) + "\n\n</div>\n"

    def section_page(self, category: Category) -> str:
        uri = section_uri(category.id)
        parents = self.catalog.parents(category.id)
        out = [_front(category.title), f"# {E.md(category.title)}\n"]
        if parents:
            trail = " › ".join(f"[{E.md(p.title)}]({_rel(uri, section_uri(p.id))})" for p in parents)
            out.append(f"Part of {trail}.\n")
        out.append(f"{E.md(category.description)}\n")
        if category.former_titles:
            out.append(f"Formerly titled: {E.md('; '.join(category.former_titles))}.\n")
        if category.children:
            out.append("## Subsections\n")
            for child in category.children:
                n = len(self.papers_under(child))
                out.append(f"- [{E.md(child.title)}]({_rel(uri, section_uri(child.id))}) ({n}): {E.md(child.description)}")
            out.append("")
            out.append("## All papers in this section\n")
            out.append(self._paper_table(uri, self.papers_under(category)))
        else:
            papers = self.catalog.papers_in(category.id)
            out.append("## Papers\n")
            out.append(self._paper_table(uri, papers, primary_of=category.id))
            if any(not self.catalog.is_primary(p, category.id) for p in papers):
                out.append("↗ marks a paper whose primary section is another one.\n")
        if self.papers_under(category):
            # /papers/?section=<id>: papers.js sets the section filter from the query string.
            out.append(
                f"[Filter these papers by venue, year, code and more on All papers]"
                f"({_rel(uri, PAPERS_INDEX_URI)}?section={category.id}).\n"
            )
        return "\n".join(out)

    # paper pages

    def paper_page(self, paper: Paper) -> str:
        uri = paper_uri(paper.id)
        venue = self.catalog.venues[paper.venue]
        # Paper pages rank above section pages that merely list them in search results.
        # The method's name leads the page title (browser tab, search results) unless the title has it.
        page_title = paper.title
        if paper.short_name and paper.short_name.casefold() not in paper.title.casefold():
            page_title = f"{paper.short_name}: {paper.title}"
        out = [_front(page_title, [venue.short, str(paper.year)], {"search": {"boost": PAPER_SEARCH_BOOST}, **self.paper_meta(paper)}), f"# {E.md(paper.title)}\n"]
        if paper.short_name:
            out.append(f"**{E.md(paper.short_name)}** · {E.md(venue.short)} {paper.year}\n")
        out.append(f"{docmath.summary_markdown(paper.summary)}\n")
        venue_text = f"{E.md(venue.short)} {paper.year} ({E.md(venue.name)}"
        venue_text += f", {E.md(paper.venue_note)})" if paper.venue_note else ")"
        cats = []
        for i, cat_id in enumerate(paper.categories):
            cat = self.catalog.category(cat_id)
            trail = " › ".join(f"[{E.md(p.title)}]({_rel(uri, section_uri(p.id))})" for p in self.catalog.parents(cat_id))
            label = f"[{E.md(cat.title)}]({_rel(uri, section_uri(cat_id))})"
            cats.append((f"{trail} › " if trail else "") + label + (" (primary)" if i == 0 else ""))
        facts = [
            ("Authors", E.md(", ".join(paper.authors))),
            ("Venue", venue_text),
            ("Sections", "; ".join(cats)),
            ("Reference implementation", STATUS_TEXT[self.paper_status(paper)]),
            ("Added to the catalog", paper.added.isoformat()),
            *([("Last changed", paper.updated.isoformat())] if paper.updated else []),
            ("Record", E.link(f"catalog/papers/{paper.id}.yaml", self.repo_file_url(f"catalog/papers/{paper.id}.yaml"))),
        ]
        out.append("\n".join(f"- **{label}:** {value}" for label, value in facts) + "\n")

        out.append("## Links\n")
        links = paper.links
        out.append(f'- Paper: <a class="modl-paper-link" href="{E.attr(links.paper)}">{E.md(links.paper)}</a>')
        if links.code:
            out.append(f"- Code: {E.link(links.code, links.code)}")
        if links.arxiv:
            out.append(f"- arXiv: {E.link(links.arxiv, 'https://arxiv.org/abs/' + links.arxiv)}")
        if links.doi:
            out.append(f"- DOI: {E.link(links.doi, 'https://doi.org/' + links.doi)}")
        if links.openreview:
            out.append(f"- OpenReview: {E.link(links.openreview, 'https://openreview.net/forum?id=' + links.openreview)}")
        for version in paper.later_versions:
            later_venue = self.catalog.venues[version.venue].short if version.venue in self.catalog.venues else version.venue
            text = f"- Later version: {E.link(f'{later_venue} {version.year}', version.url)}"
            if version.title:
                text += f", {E.md(version.title)}"
            if version.doi:
                text += f" (DOI {E.link(version.doi, 'https://doi.org/' + version.doi)})"
            out.append(text)
        for version in paper.earlier_versions:
            earlier_venue = self.catalog.venues[version.venue].short if version.venue in self.catalog.venues else version.venue
            text = f"- Earlier version: {E.link(f'{earlier_venue} {version.year}', version.url)}"
            if version.title:
                text += f", {E.md(version.title)}"
            if version.arxiv:
                text += f" (arXiv {E.link(version.arxiv, 'https://arxiv.org/abs/' + version.arxiv)})"
            if version.doi:
                text += f" (DOI {E.link(version.doi, 'https://doi.org/' + version.doi)})"
            out.append(text)
        searches = ", ".join(
            f'<a class="modl-scholar" data-service="{link.service}" href="{E.attr(link.url)}" rel="noopener">{link.label}</a>'
            for link in citation.scholar_links(paper)
        )
        out.append(f"- Search for its title on {searches}")
        out.append("")

        out.append("## BibTeX\n")
        out.append(self._bibtex_block(paper))

        out.append("## Reference implementation\n")
        out.append(self._implementation_block(paper))
        return "\n".join(out)

    def paper_meta(self, paper: Paper) -> dict[str, object]:
        """Front matter of the paper page's <head>: the description (escaped HTML, as Material inserts it
        unescaped) and the citation_* tags as [name, content] pairs (overrides/main.html escapes those)."""
        venue = self.catalog.venues[paper.venue]
        return {
            "description": E.attr(citation.page_description(paper)),
            "citation": [[name, content] for name, content in citation.citation_tags(paper, venue)],
        }

    def _bibtex_block(self, paper: Paper) -> str:
        """The entry in a code block (Material adds its copy button) with the .bib download beside that button;
        a Markdown link, so the build checks it (papers/<id>.bib, :meth:`downloads`)."""
        name = f"{paper.id}.bib"
        link = (
            f'[.bib]({_rel(paper_uri(paper.id), paper_bib_uri(paper.id))})'
            f'{{: .modl-bib-download download="{name}" title="Download {name}" aria-label="Download {name}" }}'
        )
        return f'<div class="modl-bibtex" markdown>\n\n{link}\n\n{_fence(self.paper_bibtex(paper), "bibtex")}\n</div>\n'

    def _implementation_block(self, paper: Paper) -> str:
        impl = paper.implementation
        methods = self.paper_methods(paper)
        if impl.status == "not-applicable":
            return f"Not applicable: {E.md(impl.reason or '')}\n"
        if not methods:
            ids = ", ".join(f"`{m}`" for m in impl.methods if all(c.isalnum() or c == "-" for c in m))
            planned = f" (registry id{'s' if len(impl.methods) > 1 else ''} {ids})" if ids else ""
            if any(m in self.methods for m in impl.methods):
                return (
                    f"Planned{planned}: registered in `reference_impls`; its code, deviations and tests are "
                    "shown here once the record's status is `implemented`.\n"
                )
            return f"Planned{planned}: this paper's method has no reference implementation in `reference_impls` yet.\n"
        uri = paper_uri(paper.id)
        out = self._caveats(paper)
        noun = "implementation" if len(methods) == 1 else "implementations"
        out.append(f"This paper's method has {len(methods)} reference {noun} in `reference_impls`; each page shows "
                   "its update rule, usage, results, figures, deviations from the paper, tests and source:\n")
        for m in methods:
            out.append(f"- [{E.md(m.name)}]({_rel(uri, method_uri(m.name))}): {self._method_line(m)}")
        out.append("")
        return "\n".join(out)

    def _caveats(self, paper: Paper) -> list[str]:
        """The record's notes on a reconstruction and on what stands in at toy scale, as admonitions."""
        impl = paper.implementation
        out = []
        if impl.reconstructed:
            out.append(f'!!! warning "Reconstructed"\n    {E.md(impl.reconstructed)}\n')
        if impl.toy_scale:
            out.append(f'!!! note "At toy scale"\n    {E.md(impl.toy_scale)}\n')
        return out

    def _method_line(self, m: MethodFacts) -> str:
        """class, interface and tests of a method, in one line."""
        if m.source is None:
            tests = "source missing"
        elif m.tested:
            tests = f"{m.test_count} test {'function' if m.test_count == 1 else 'functions'}"
        else:
            tests = "no tests yet"
        return f"class `{m.cls}`, interface `{m.interface}`, {tests}."

    # method pages

    def _family_link(self, uri: str, family: str) -> str:
        if _has_category(self.catalog, family):
            return f"[{E.md(self.catalog.category(family).title)}]({_rel(uri, section_uri(family))})"
        return E.md(family)

    def method_link(self, name: str) -> str | None:
        return method_uri(name) if name in self.methods else None

    def _paper_name_link(self, paper_id: str) -> tuple[str, str] | None:
        """(page, name) of a paper: its short name, else its title."""
        paper = self.catalog.papers.get(paper_id)
        return (paper_uri(paper.id), paper.short_name or paper.title) if paper else None

    def method_problem(self, m: MethodFacts) -> str:
        """A toy ``modl run`` accepts for the method: bi-level methods need bilevel-ridge's validation split;
        set methods run on VLMOP2, Pareto-set models on the bi-quadratic, the rest on the CAGrad toy."""
        if m.bilevel:
            return "bilevel-ridge"
        return {"set": "vlmop2", "pareto-model": "biquad"}.get(m.interface, "cagrad-toy")

    def method_page(self, name: str) -> str:
        m = self.methods[name]
        uri = method_uri(name)
        paper = self.catalog.papers.get(m.paper)
        label = (paper.short_name or paper.title) if paper else m.paper
        venue = self.catalog.venues.get(paper.venue) if paper else None
        description = E.attr(citation.method_description(name, paper, venue))
        out = [_front(f"{name}: {label} (reference implementation)", extra={"description": description, "search": {"boost": METHOD_SEARCH_BOOST}})]
        out.append(f"# {E.md(name)}\n")
        if paper is not None:
            venue = self.catalog.venues[paper.venue]
            out.append(
                f"Reference implementation of [{E.md(paper.title)}]({_rel(uri, paper_uri(paper.id))})"
                f"{' (' + E.md(paper.short_name) + ')' if paper.short_name else ''}, {E.md(venue.short)} {paper.year}.\n"
            )
            out.append(f"{docmath.summary_markdown(paper.summary)}\n")
        else:
            out.append(f"Reference implementation of the paper `{E.md(m.paper)}` (not in the catalog).\n")
        if m.source is None:
            status = "source missing"
        elif m.tested:
            status = "tested"
        else:
            status = "untested"
        facts = [
            ("Family", self._family_link(uri, m.family)),
            ("Interface", f"`{m.interface}` (see [the design page]({_rel(uri, 'implementations/design.md')}))"
             if self._has_design else f"`{m.interface}`"),
            ("Class", f"`{m.cls}` in {E.link(m.source_path, self.repo_file_url(m.source_path))}"),
            ("Status", status),
        ]
        out.append("\n".join(f"- **{k}:** {v}" for k, v in facts) + "\n")
        if paper is not None and m in self.paper_methods(paper):
            out.extend(self._caveats(paper))

        out.append("## Update rule\n")
        if m.update_rule:
            out.append(docmath.block_markdown(m.update_rule))
        else:
            out.append(f"*The module docstring of `{m.source_path}` has no `Update rule:` section yet.*\n")

        out.append("## Usage\n")
        out.append(_fence(usage_snippet(m), "python"))
        out.append("From the command line (needs torch):\n")
        out.append(_fence(f"modl run {name} --problem {self.method_problem(m)}\nmodl bench --method {name}", "sh"))

        out.append("## Results\n")
        out.append(self._method_results(m, uri))

        figures = [f for f in self.figures if name in f.methods]
        if figures:
            out.append("## Reproduced figures\n")
            for figure in figures:
                out.append(self._figure(figure, uri, "###"))

        out.append("## Deviations from the paper and the official code\n")
        if m.deviations:
            labels = [d.label for d in m.deviations]
            plain = labels == [f"D{i}" for i in range(1, len(labels) + 1)]
            for i, d in enumerate(m.deviations, start=1):
                text = docmath.markdown(d.text)
                out.append(f"{i}. {text}" if plain else f"{i}. **{E.md(d.label)}** {text}")
            out.append("")
        else:
            out.append("None listed in the module docstring.\n")

        out.append("## Tests\n")
        if m.tested:
            noun = "function" if m.test_count == 1 else "functions"
            out.append(f"{E.link(m.test_path, self.repo_file_url(m.test_path))}: {m.test_count} test {noun}, run in CI.\n")
        else:
            out.append(f"None yet (expected in `{m.test_path}`).\n")

        out.append("## Source\n")
        if m.source is None:
            out.append(f"The module file `{m.source_path}` is missing.\n")
        else:
            out.append(f'??? note "{E.md(m.source_path)}"\n')
            block = _fence(m.source, "python", 'linenums="1"')
            out.append("".join(f"    {line}" if line.strip() else line for line in block.splitlines(True)))
        return "\n".join(out)

    def _method_results(self, m: MethodFacts, uri: str) -> str:
        """The method's row of every suite table (same cells as the suite pages), then n/a and failed cells."""
        out = []
        not_applicable = []
        failed = []
        for suite in self.results.suites:
            link = f"[{E.md(suite.title)}]({_rel(uri, R.suite_uri(suite.id))})"
            row = suite.row(m.name)
            if row is not None:
                out.append(f"### {link}\n")
                out.append(R.sortable(R.table_rows(suite, [row], lambda r: E.md(r.method)), hint=False))
            reason = suite.not_applicable().get(m.name)
            if reason is not None:
                not_applicable.append(f"- {link}: {E.md(reason)}")
            failed += [f"- {link}, seed {E.md(c.seed)}: {E.md(c.reason or 'no reason given')}"
                       for c in suite.errors() if c.method == m.name]
        if not self.results.suites:
            return f"*No results yet:* `modl bench` writes them ([Results]({_rel(uri, R.INDEX_URI)})).\n"
        head = (
            f"Mean ± standard deviation over seeds, from the [results files]({_rel(uri, R.INDEX_URI)}); "
            "↓ lower is better, ↑ higher is better.\n"
        )
        if not out:
            head = f"This method has no finished cell in the [results]({_rel(uri, R.INDEX_URI)}).\n"
        if not_applicable:
            out.append("Not applicable:\n")
            out += not_applicable + [""]
        if failed:
            out.append("Failed cells:\n")
            out += failed + [""]
        return head + "\n" + "\n".join(out)

    def _figure(self, figure: R.Figure, uri: str, heading: str) -> str:
        return R.figure_markdown(
            figure, uri, rel=_rel, paper_link=self._paper_name_link, method_link=self.method_link,
            prose=docmath.summary_markdown, heading=heading,
        )

    # the Results section

    def results_pages(self) -> dict[str, str]:
        out = {R.INDEX_URI: self.results_index_page(), R.FIGURES_URI: self.figures_page(), R.SPEED_URI: self.speed_page()}
        for suite in self.results.suites:
            out[R.suite_uri(suite.id)] = self.suite_page(suite)
        return out

    def results_nav(self) -> list[dict[str, str]]:
        nav = [{"Overview": R.INDEX_URI}]
        nav += [{E.html(s.title): R.suite_uri(s.id)} for s in self.results.suites]
        return nav + [{"Reproduced figures": R.FIGURES_URI}, {"Speed against TorchJD": R.SPEED_URI}]

    def results_index_page(self) -> str:
        uri = R.INDEX_URI
        out = [_front("Results"), "# Results\n"]
        out.append(
            "Every registered method run on the suites it applies to, over several seeds (each suite gives its "
            "own): single-solution methods "
            "on the CAGrad / Nash-MTL / FAMO 2-D toy (loss scales 1 and 0.1, five standard starts), the synthetic "
            "multi-task regression and the bi-quadratic with 3 tasks; set methods on the bi-quadratic, VLMOP2, "
            "ZDT1, ZDT2 and DTLZ2; Pareto-set models on held-out preferences of the same; every family on "
            "Multi-Digits. Each table is generated from its results file when the site is built.\n"
        )
        out.append("## Suites\n")
        if not self.results.suites:
            out.append("*No results yet: run `modl bench` to produce them.*\n")
        else:
            rows = ["| Suite | Compares | Problem | Methods | Cells ok / n/a / failed | Mode |",
                    "| --- | --- | --- | ---: | --- | --- |"]
            for suite in self.results.suites:
                c = suite.counts()
                problem = f"`{suite.problem}`" if suite.problem else R.MISSING
                rows.append(
                    f"| [{E.md(suite.title)}]({_rel(uri, R.suite_uri(suite.id))}) | {E.md(R.KINDS[suite.kind])} | "
                    f"{problem} | {len(suite.rows)} | {c['ok']} / {c['n/a']} / {c['error']} | {E.md(suite.mode)} |"
                )
            out.append(R.sortable(rows))
        out.append("## Run the suites\n")
        out.append(R.commands_markdown())
        sweep = self.results.index.get("full_sweep") if isinstance(self.results.index, dict) else None
        if isinstance(sweep, dict):
            out.append(
                f"The last full sweep ran {E.md(sweep.get('cells', '?'))} cells in {R.duration(sweep.get('wall_s'))} "
                f"of wall time ({R.duration(sweep.get('cpu_s'))} of CPU time) with {E.md(sweep.get('jobs', '?'))} "
                "worker processes.\n"
            )
        out.append("## Figures and speed\n")
        n = len(self.figures)
        out.append(
            f"- [Reproduced figures]({_rel(uri, R.FIGURES_URI)}): {n} figure{'' if n == 1 else 's'} of the papers "
            "regenerated from our implementations, each with a sentence on how it matches the paper."
        )
        out.append(f"- [Speed against TorchJD]({_rel(uri, R.SPEED_URI)}): aggregation and training-step times.")
        out.append(f"- [Reference implementations]({_rel(uri, 'implementations/index.md')}): every method's page.\n")
        return "\n".join(out)

    def suite_page(self, suite: R.Suite) -> str:
        uri = R.suite_uri(suite.id)
        out = [_front(suite.title), f"# {E.md(suite.title)}\n"]
        if suite.description:
            out.append(f"{docmath.summary_markdown(suite.description)}\n")
        facts = [("Compares", E.md(R.KINDS[suite.kind]))]
        if suite.problem:
            params = f" with {R.key_values(suite.problem_params)}" if suite.problem_params else ""
            facts.append(("Problem", f"`{suite.problem}`{params}"))
        if suite.settings:
            facts.append(("Settings", R.key_values(suite.settings)))
        facts.append(("Seeds", E.md(", ".join(str(s) for s in suite.seeds)) or R.MISSING))
        facts.append(("Mode", E.md(suite.mode or R.MISSING)))
        rel_path = suite.path.relative_to(self.catalog.root).as_posix() if suite.path.is_relative_to(self.catalog.root) else suite.path.name
        facts.append(("Results file", E.link(rel_path, self.repo_file_url(rel_path))))
        facts.append(("Run", f"`modl bench --suite {suite.id}`"))
        out.append("\n".join(f"- **{k}:** {v}" for k, v in facts) + "\n")

        out.append("## Table\n")
        if suite.rows:
            def method_cell(row: R.Row) -> str:
                target = self.method_link(row.method)
                return f"[{E.md(row.method)}]({_rel(uri, target)})" if target else E.md(row.method)

            out.append(R.sortable(R.table_rows(suite, suite.rows, method_cell)))
            out.append(
                "Mean ± standard deviation over each method's finished seeds (*Seeds*; one seed shows the "
                "mean alone); ↓ lower is better, "
                f"↑ higher is better; {R.MISSING} where a metric does not apply.\n"
            )
        else:
            out.append("*No method finished a cell of this suite.*\n")
        if suite.metrics:
            out.append("## Metrics\n")
            out.append("| Metric | Better | Description |\n| --- | --- | --- |")
            for metric in suite.metrics:
                better = {"lower": "lower ↓", "higher": "higher ↑"}.get(metric.better or "", R.MISSING)
                out.append(f"| {E.md(metric.label)} (`{metric.id}`) | {better} | {R.in_table(docmath.summary_markdown(metric.description)) or R.MISSING} |")
            out.append("")
        not_applicable = suite.not_applicable()
        if not_applicable:
            out.append("## Not applicable\n")
            for method, reason in not_applicable.items():
                target = self.method_link(method)
                name = f"[{E.md(method)}]({_rel(uri, target)})" if target else E.md(method)
                out.append(f"- {name}: {E.md(reason)}")
            out.append("")
        errors = suite.errors()
        if errors:
            out.append("## Failed cells\n")
            for cell in errors:
                out.append(f"- {E.md(cell.method)}, seed {E.md(cell.seed)}: {E.md(cell.reason or 'no reason given')}")
            out.append("")
        out.append("## Environment\n")
        if suite.environment:
            out.append("| Key | Value |\n| --- | --- |")
            out += [f"| {E.md(k)} | {E.md(v)} |" for k, v in suite.environment.items()]
            out.append("")
        else:
            out.append("Not recorded.\n")
        return "\n".join(out)

    def figures_page(self) -> str:
        uri = R.FIGURES_URI
        out = [_front("Reproduced figures"), "# Reproduced figures\n"]
        out.append(
            "Toy figures of the papers, regenerated from our reference implementations with the paper's "
            "settings or documented shorter ones. Each says what it reproduces and whether and how it matches "
            "the paper; `make figures` regenerates them all.\n"
        )
        if not self.figures:
            out.append("*No figures yet.*\n")
        for figure in self.figures:
            out.append(self._figure(figure, uri, "##"))
        return "\n".join(out)

    def speed_page(self) -> str:
        out = [_front("Speed against TorchJD"), "# Speed against TorchJD\n"]
        out.append(
            "Our aggregators and training steps timed against TorchJD in the same process "
            f"(see also the [reference implementations]({_rel(R.SPEED_URI, 'implementations/index.md')})).\n"
        )
        out.append(speed_section(Path(self.catalog.root), heading=False) or "*No speed measurements stored yet.*\n")
        return "\n".join(out)

    # indexes

    def tag_index_page(self, title: str, kind: str, tags: list[str]) -> str:
        used = {self.venue_tag(p) for p in self.catalog.papers.values()} | {
            str(p.year) for p in self.catalog.papers.values()
        }
        tags = [t for t in tags if t in used]
        out = [_front(title), f"# {E.md(title)}\n"]
        out.append(f"Every paper of the catalog, grouped by {kind}.\n")
        if tags:
            out.append(f"<!-- material/tags {{ include: [{', '.join(json.dumps(t) for t in tags)}] }} -->\n")
        else:
            out.append("No records yet.\n")
        return "\n".join(out)

    def statistics_page(self) -> str:
        papers = list(self.catalog.papers.values())
        n = len(papers)
        with_code = sum(1 for p in papers if p.links.code)
        implemented = sum(1 for p in papers if self.paper_status(p) == "implemented")
        tested = sum(1 for p in papers if self.paper_tested(p))
        applicable = sum(1 for p in papers if p.implementation.status != "not-applicable")
        out = [_front("Statistics"), "# Statistics\n"]
        out.append("| Measure | Count | Share |\n| --- | ---: | ---: |")
        out.append(f"| Papers | {n} | |")
        out.append(f"| With official code | {with_code} | {_pct(with_code, n)} |")
        out.append(f"| Methods (implementation applicable) | {applicable} | {_pct(applicable, n)} |")
        out.append(f"| With a reference implementation | {implemented} | {_pct(implemented, applicable)} of methods |")
        out.append(f"| With a tested reference implementation | {tested} | {_pct(tested, applicable)} of methods |\n")

        def table(heading: str, label: str, counts: list[tuple[str, int]]) -> None:
            peak = max((c for _, c in counts), default=0)
            out.append(f"## {heading}\n")
            out.append(f"| {label} | Papers | Share | |\n| --- | ---: | ---: | --- |")
            for key, count in counts:
                width = round(100 * count / peak) if peak else 0
                bar = f'<span class="modl-bar-track"><span class="modl-bar" style="width: {width}%"></span></span>'
                out.append(f"| {key} | {count} | {_pct(count, n)} | {bar} |")
            out.append("")

        years = Counter(p.year for p in papers)
        table("Papers per year", "Year", [(str(y), years[y]) for y in sorted(years)])
        venues = Counter(p.venue for p in papers)
        table(
            "Papers per venue",
            "Venue",
            [
                (f"{E.md(v.short)} ({E.md(v.name)})", venues[v.id])
                for v in sorted(self.catalog.venues.values(), key=lambda v: (-venues[v.id], v.short.casefold()))
                if venues[v.id]
            ],
        )
        rows = []
        for depth, cat in self.catalog.walk_categories():
            indent = "&nbsp;" * 4 * depth
            rows.append((f"{indent}[{E.md(cat.title)}]({section_uri(cat.id)})", len(self.papers_under(cat))))
        table("Papers per section", "Section", rows)
        out.append(
            "Counts per section include cross-listed papers, and a parent section counts every paper of its "
            "subsections once.\n"
        )
        return "\n".join(out)

    def downloads_page(self) -> str:
        out = [_front("Downloads"), "# Downloads\n"]
        out.append("Every record of the catalog, generated from the same data as these pages at build time.\n")
        out.append(f"- [catalog.bib]({DOWNLOAD_BIB}): all {len(self.catalog.papers)} records as BibTeX.")
        out.append(f"- [catalog.json]({DOWNLOAD_JSON}): all records and the taxonomy as JSON.")
        out.append(
            f"- One BibTeX file per paper, `papers/<id>.bib`: the \"⤓ .bib\" button beside the copy button of "
            f"each paper page's BibTeX block ([all papers]({PAPERS_INDEX_URI}))."
        )
        if (self.catalog.root / SCHEMA_SOURCE).is_file():
            out.append(f"- [paper.schema.json]({DOWNLOAD_SCHEMA}): the JSON Schema of one record (`catalog/papers/<id>.yaml`).")
        out.append("")
        out.append(
            f"The same files come from the command line: `modl bib --output catalog.bib` and "
            f"`modl export json --output catalog.json`. The records themselves are YAML files in "
            f"{E.link('catalog/papers/', self.repo_url.rstrip('/') + '/tree/main/catalog/papers')}.\n"
        )
        return "\n".join(out)

    def implementations_page(self) -> str:
        uri = "implementations/index.md"
        out = [_front("Reference implementations"), "# Reference implementations\n"]
        out.append(
            "Every method registered in `reference_impls/registry.py`, with its family, status and tests; "
            "each method's page shows its update rule, usage, results, figures, deviations and source. "
            "Usage: `method = reference_impls.create(\"<id>\")`. "
            f"[Results]({_rel(uri, R.INDEX_URI)}) compares them on the benchmark suites.\n"
        )
        if not self.methods:
            out.append("*No method is registered yet; implementations are listed here as they land.*\n")
        else:
            out.append(R.sort_hint())
            out.append('<div class="modl-sortable" markdown="1">\n')
            out.append("| Method | Paper | Family | Interface | Status | Tests |\n| --- | --- | --- | --- | --- | ---: |")
            for m in self.methods.values():
                paper = self.catalog.papers.get(m.paper)
                paper_cell = f"[{E.md(paper.title)}]({_rel(uri, paper_uri(paper.id))})" if paper else E.md(m.paper)
                shown = paper is not None and m in self.paper_methods(paper)
                name = f"[{E.md(m.name)}]({_rel(uri, method_uri(m.name))})"
                family = (
                    f"[{E.md(self.catalog.category(m.family).title)}]({_rel(uri, section_uri(m.family))})"
                    if _has_category(self.catalog, m.family)
                    else E.md(m.family)
                )
                if m.source is None:
                    status = "source missing"
                elif not shown:
                    status = "registered (record: " + STATUS_TEXT[paper.implementation.status if paper else "planned"] + ")"
                elif m.tested:
                    status = "tested"
                else:
                    status = "untested"
                out.append(f"| {name} | {paper_cell} | {family} | {E.md(m.interface)} | {status} | {m.test_count} |")
            out.append("\n</div>\n")
        out.append(properties_section(Path(self.catalog.root)))
        out.append(
            f"## Speed\n\nThe speed tables against TorchJD are in the Results section: "
            f"[Speed against TorchJD]({_rel(uri, R.SPEED_URI)}).\n"
        )
        out.append("See also: [Design of the reference implementations](design.md).\n" if self._has_design else "")
        return "\n".join(out)

    results: R.Results = field(default_factory=R.Results)
    figures: list[R.Figure] = field(default_factory=list)
    _has_design: bool = False


# ----------------------------------------------------------------------------------------------
# Aggregator properties (reference_impls/properties.py, checked by tests/reference_impls/test_properties.py)
# ----------------------------------------------------------------------------------------------

_PROPERTY_MARK = {"holds": "✓", "fails": "✗", "n/a": "–"}


def properties_section(root: Path) -> str:
    """The method × property table and, per method, why each property holds or fails by design."""
    from modl.site.data import load_properties

    properties, table = load_properties(root)
    if not properties or not table:
        return ""
    ids = list(properties)
    out = ["## Properties\n"]
    out.append(
        "Which aggregator properties each method has, in the sense of the Jacobian-descent paper (Quinton & Rey, "
        "arXiv 2406.16232) and TorchJD, plus the scale behaviours the papers claim. Every cell is a test: a ✓ is "
        "checked on seeded samples (several seeds and shapes, float64 and float32), a ✗ on a counterexample, so "
        "the table cannot go stale either way (`tests/reference_impls/test_properties.py`). Data: "
        "`reference_impls/properties.py`.\n"
    )
    out.append("| Property | Definition |\n| --- | --- |")
    for pid in ids:
        title, definition = properties[pid]
        out.append(f"| {E.md(title)} | {E.md(definition)} |")
    out.append("")
    out.append(R.sort_hint())
    out.append('<div class="modl-sortable" markdown="1">\n')
    out.append("| Method | " + " | ".join(E.md(properties[p][0]) for p in ids) + " |")
    out.append("| --- | " + " | ".join(":---:" for _ in ids) + " |")
    for method in sorted(table):
        row = table[method]
        cells = []
        for pid in ids:
            entry = row.get(pid)
            if entry is None:
                cells.append("–")
                continue
            mark = _PROPERTY_MARK.get(entry.status, E.md(entry.status))
            if entry.status == "holds" and pid == "scale_equivariant" and entry.degree != 1:
                mark += f" (k = {entry.degree})"
            if entry.pending:
                mark += " (pending fix)"
            cells.append(mark)
        out.append(f"| {E.md(method)} | " + " | ".join(cells) + " |")
    out.append("\n</div>\n")
    out.append("Why, per method (✗ entries are by design):\n")
    # A table's worth of text (~80 kB): kept out of the search index (modl/site/search.py).
    out.append('<div data-search-exclude="true" markdown="1">\n')
    for method in sorted(table):
        reasons = [
            f"{E.md(properties[pid][0])} {_PROPERTY_MARK.get(entry.status, '')}: {E.md(entry.reason)}"
            for pid, entry in table[method].items()
            if entry.reason and pid in properties
        ]
        if reasons:
            out.append(f"- **{E.md(method)}**: " + "; ".join(reasons) + ".")
    out.append("\n</div>\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Speed tables (benchmarks/aggregators.py and benchmarks/training_step.py write the JSON)
# ----------------------------------------------------------------------------------------------

_JACOBIAN_TITLES = {
    "gaussian": "Gaussian J",
    "mlp-init": "MLP at initialisation",
    "mlp-trained": "MLP after {steps} SGD steps",
    "cnn-init": "CNN at initialisation",
    "cnn-trained": "CNN after {steps} SGD steps",
}
_NETWORK_TITLES = {"mlp": "MLP", "cnn": "CNN"}


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _load_results(path: Path) -> dict | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if data.get("rows") else None


def _run_facts(data: dict) -> str:
    """Threads, clock, versions and the load average when the run started, for the prose."""
    clock = "CPU time" if data.get("clock") == "cpu" else "wall time"
    load = data.get("load_before")
    load_text = f", load average {load[0]:.1f} at the start" if load else ""
    return (
        f"{data.get('threads')} CPU thread(s), {clock}, torch {E.md(str(data.get('torch')))}, "
        f"TorchJD {E.md(str(data.get('torchjd')))} in the same run{load_text}"
    )


def _wide_table(rows: list[dict], first_header: str, order: list[str], floor_label: str) -> list[str]:
    """One row per method; for each K three labelled columns: ours (ms), TorchJD (ms), ours / TorchJD.

    The floor is a last row whose time is in the "ours" columns (the same for every method)."""
    Ks = sorted({r["K"] for r in rows})
    header = [first_header]
    for K in Ks:
        header += [f"Ours (ms), K = {K}", f"TorchJD (ms), K = {K}", f"Ours / TorchJD, K = {K}"]
    out = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (3 * len(Ks))]
    by_key = {(r["method"], r["K"]): r for r in rows}
    for name in order:
        cells = [E.md(name)]
        for K in Ks:
            r = by_key.get((name, K), {})
            cells += [_ms(r.get("ours_s")), _ms(r.get("torchjd_s")), _times(r.get("ours_over_torchjd"))]
        out.append("| " + " | ".join(cells) + " |")
    floor = [floor_label]
    for K in Ks:
        times = [r["floor_s"] for r in rows if r["K"] == K and r.get("floor_s")]
        floor += [_ms(min(times)) if times else "", "", ""]
    out.append("| " + " | ".join(floor) + " |")
    return out


def speed_section(root: Path, *, heading: bool = True) -> str:
    """The implementations page's speed tables, times and ratios in separate labelled columns.

    One table per Jacobian of benchmarks/results/aggregators.json (aggregation alone) and one per
    network of benchmarks/results/training_step.json (a whole training step); empty without them."""
    agg = _load_results(root / "benchmarks" / "results" / "aggregators.json")
    step = _load_results(root / "benchmarks" / "results" / "training_step.json")
    if agg is None and step is None:
        return ""
    out = ["## Speed\n"] if heading else []
    if agg is not None:
        rows = [r for r in agg["rows"] if r.get("method") != "floor"]
        out.append(f"{'###' if heading else '##'} Aggregation of one Jacobian\n")
        out.append(
            "Milliseconds per call of `method(J)` on a float32 Jacobian J (K, n), best of interleaved rounds "
            f"(`benchmarks/aggregators.py`; {_run_facts(agg)}). *Ours / TorchJD* below 1 means ours is faster; "
            "TorchJD cells are empty for methods it does not have. "
            "The floor row is the work no Gram-based method avoids: J Jᵀ plus one weighted sum of rows. "
            "Gaussian J has rows scaled from 0.1 to 10; the networks are those of the training-step table "
            "below, with their n shared parameters.\n"
        )
        steps = agg.get("trained_steps", 20)
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in rows:
            kind = r.get("jacobian", "gaussian")
            groups.setdefault((kind, r["n"] if kind == "gaussian" else 0), []).append(r)
        kinds = list(_JACOBIAN_TITLES)
        for kind, n in sorted(groups, key=lambda g: (kinds.index(g[0]) if g[0] in kinds else len(kinds), g[0], g[1])):
            group = groups[(kind, n)]
            title = _JACOBIAN_TITLES.get(kind, kind).format(steps=steps)
            out.append(f"**{E.md(title)}, n = {group[0]['n']:,}**\n")
            out += _wide_table(group, "Method", sorted({r["method"] for r in group}), "floor (J Jᵀ + wᵀJ)")
            out.append("")
    if step is not None:
        rows = step["rows"]
        out.append(f"{'###' if heading else '##'} Training step\n")
        out.append(
            "Milliseconds per training step (zero the gradients, forward pass, backward) on a network with K "
            f"linear heads after {step.get('trained_steps', 20)} SGD steps (`benchmarks/training_step.py`; "
            f"{_run_facts(step)}). Ours: `method.backward(losses, shared_params, task_params)`; TorchJD: "
            "`mtl_backward(losses, features=Z)` then `jac_to_grad(shared_params, aggregator)`; the floor row is "
            "one backward pass of the summed loss. The *jacobian* rows time the forward pass and J alone: "
            "K one-row backward passes (loop) or one vectorised pass (batched, what `backward()` uses), "
            "against TorchJD's `mtl_backward` alone.\n"
        )
        known = list(_NETWORK_TITLES)
        for network in sorted({r["network"] for r in rows}, key=lambda k: (known.index(k) if k in known else len(known), k)):
            group = [r for r in rows if r["network"] == network]
            title = _NETWORK_TITLES.get(network, network)
            out.append(f"**{E.md(title)}, n = {group[0]['n']:,} shared parameters**\n")
            methods = list(dict.fromkeys(r["method"] for r in group))
            order = [m for m in methods if not m.startswith("jacobian")] + [m for m in methods if m.startswith("jacobian")]
            out += _wide_table(group, "Method", order, "floor (Σ f_i backward)")
            out.append("")
    return "\n".join(out) + "\n"


def usage_snippet(m: MethodFacts) -> str:
    """How to call a method from Python, by its interface (the one snippet of the site)."""
    usage = f'import reference_impls\nmethod = reference_impls.create("{m.name}")\n'
    if m.interface in ("aggregator", "weighting", "gramian-weighting"):
        usage += "d = method(J)  # J: (K, n) task gradients as rows -> d: (n,) update direction\n"
    elif m.interface == "set" and m.family == "preference-vector-free":
        usage += (
            "# X (P, n) solutions, F (P, K) losses, J (P, K, n) Jacobians; no preferences\n"
            "D = method.step(X, F, J, None)  # -> D: (P, n), then X <- X - lr * D\n"
            "# or: reference_impls.set_runner.run_set(method, problem, solutions=P)\n"
        )
    elif m.interface == "loss-weighting":
        usage += (
            "w = method.weights(losses, step)  # losses: (K,) task losses -> w: (K,) loss weights\n"
            "# in a training loop: reference_impls.core.hooks.train_step(method, closure, optimizer, shared_params)\n"
        )
    elif m.interface == "pareto-model":
        usage += (
            "from reference_impls.pareto_runner import run_pareto\n"
            "result = run_pareto(method, \"biquad\")  # trains a copy on sampled preferences, evaluates held-out ones\n"
            "model = result.extra[\"methods\"][0]  # the trained model\n"
            "x = model(preferences)  # (B, K) preferences -> (B, n) solutions\n"
            "print(result.extra[\"metrics\"])  # held-out error, HV and IGD of the learned front\n"
        )
    elif m.interface == "set":
        usage += (
            "# X (P, n) solutions, F (P, K) losses, J (P, K, n) Jacobians, preferences (P, K)\n"
            "D = method.step(X, F, J, preferences)  # -> D: (P, n), then X <- X - lr * D\n"
        )
    else:
        usage += f"# interface {m.interface!r}: see the class docstring for how to call it\n"
    return usage


def _has_category(catalog: Catalog, category_id: str) -> bool:
    try:
        catalog.category(category_id)
    except KeyError:
        return False
    return True


def build_site_model(catalog: Catalog, *, has_design: bool = False) -> SiteModel:
    render_bibtex, render_json = _renderers()
    model = SiteModel(
        catalog=catalog,
        methods=method_facts(code_root(Path(catalog.root))),
        repo_url=catalog.project.repo_url,
        render_bibtex=render_bibtex,
        render_json=render_json,
        results=R.load_suites(Path(catalog.root)),
        figures=R.load_figures(Path(catalog.root)),
    )
    model._has_design = has_design
    return model
