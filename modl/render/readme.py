"""Render README.md, the awesome list, from the records and ``modl/templates/readme_header.md``.

The template holds the hand-written parts (title, the fresh-machine commands, the intro, how to
cite the survey, the Contributing pointer) with ``{{placeholders}}``; this module fills in

- ``{{contents}}``: the Contents list, H2 and H3 sections only (awesome-lint allows two levels);
- ``{{sections}}``: one heading per taxonomy node (H2, H3, H4 by depth) and, under each leaf,
  an ordered list of its papers in :func:`modl.catalog.entry_order` (year, then title);
- ``{{reference_implementations}}``: the "Reference implementations" section, a short summary from
  the registry, the test files and the results index (how many methods, per family, how many tested,
  the benchmark suites, a link to the site's Results page), in the Contents after the sections;
- ``{{name}}``, ``{{tagline}}``, ``{{site_url}}`` (ending in ``/``), ``{{repo_url}}``, ``{{paper_count}}``.

Item format (passes awesome-lint 2.3.0)::

    1. [Title](paper-url) - A, B, and C. *NeurIPS 2018.* [Code](...) · [Reference implementation](...) · [Catalog page](...)

A paper listed in more than one section (``categories[1:]``) appears in full only in its primary
section (``categories[0]``); elsewhere its main link is its catalog page and the description
says where it is listed, so no URL is repeated. Every record string is escaped with
:mod:`modl.render.markdown` (``html_breaks=False`` in link text and headings). The output depends on the
catalog, the registry, the test files' test counts and benchmarks/results/suites/ only: byte-stable, LF,
one final newline.
"""

from __future__ import annotations

import re
from importlib import resources

from modl.catalog import Catalog
from modl.render.markdown import Slugger, escape_markdown_text, markdown_url
from modl.render.bibtex import render_survey_entry
from modl.schema import Category, Paper, Survey, Venue

SEPARATOR = " · "
IMPLEMENTATIONS_HEADING = "Reference implementations"
_PLACEHOLDER_RE = re.compile(r"\{\{([a-z_]+)\}\}")


def load_header_template() -> str:
    return resources.files("modl").joinpath("templates/readme_header.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Pieces shared with other renderers (the site uses the same wording)
# ----------------------------------------------------------------------------------------------


def format_authors(authors: list[str]) -> str:
    """'A', 'A and B', 'A, B, and C' (the survey's style, with the serial comma). Plain text."""
    if len(authors) == 1:
        return authors[0]
    if len(authors) == 2:
        return f"{authors[0]} and {authors[1]}"
    return ", ".join(authors[:-1]) + ", and " + authors[-1]


def format_venue(paper: Paper, venue: Venue) -> str:
    """Venue and year as the list shows them. Plain text.

    Conferences and workshops 'NeurIPS 2018'; journals 'IEEE Transactions on Knowledge and Data
    Engineering (TKDE), 2021'; arXiv 'arXiv:2308.12029, 2023'; a venue_note is appended
    ('NeurIPS 2024 Datasets and Benchmarks Track').
    """
    if venue.kind == "journal":
        text = f"{venue.name} ({venue.short}), {paper.year}" if venue.short != venue.name else f"{venue.name}, {paper.year}"
    elif venue.kind == "preprint":
        if venue.id == "arxiv" and paper.links.arxiv:
            text = f"arXiv:{paper.links.arxiv}, {paper.year}"
        else:
            text = f"{venue.short}, {paper.year}"
    else:
        text = f"{venue.short} {paper.year}"
    if paper.venue_note:
        text = f"{text} {paper.venue_note}"
    return text


def later_version_label(venue: Venue, year: int) -> str:
    """'Journal version in AIJ 2024' (or 'Conference version', 'Later version'). Plain text."""
    kind = {"journal": "Journal version", "conference": "Conference version"}.get(venue.kind, "Later version")
    return f"{kind} in {venue.short} {year}"


def earlier_version_label(venue: Venue, year: int) -> str:
    """'Earlier version: arXiv 2024' (or the venue's short name). Plain text."""
    return f"Earlier version: {venue.short} {year}"


def site_page_url(catalog: Catalog, paper: Paper) -> str:
    base = catalog.project.site_url
    return f"{base if base.endswith('/') else base + '/'}papers/{paper.id}/"


def reference_impl_links(catalog: Catalog, paper: Paper) -> list[tuple[str, str]]:
    """(registry id, URL of the source file) of each reference implementation of an implemented paper.

    The URL is ``<repo_url>/blob/main/<source_path>`` from ``reference_impls.registry``; several
    registry ids in one file give one link. Empty unless the status is 'implemented'.
    """
    if paper.implementation.status != "implemented":
        return []
    from reference_impls.registry import REGISTRY  # a static table; never imports torch

    repo = catalog.project.repo_url.rstrip("/")
    links: list[tuple[str, str]] = []
    seen: set[str] = set()
    for method in paper.implementation.methods:
        if method not in REGISTRY:
            raise ValueError(f"{paper.id}: implementation method {method!r} is not in reference_impls.registry")
        url = f"{repo}/blob/main/{REGISTRY[method].source_path}"
        if url not in seen:
            seen.add(url)
            links.append((method, url))
    return links


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def _link(text: str, url: str) -> str:
    return f"[{escape_markdown_text(text, html_breaks=False)}]({markdown_url(url)})"


def _venue_markdown(catalog: Catalog, paper: Paper) -> str:
    venue = catalog.venues[paper.venue]
    parts = [f"*{escape_markdown_text(format_venue(paper, venue))}.*"]
    for later in paper.later_versions:
        label = later_version_label(catalog.venues[later.venue], later.year)
        text = _link(label, later.url)
        if later.title:
            text += f" titled “{escape_markdown_text(later.title)}”"
        parts.append(text + ".")
    for earlier in paper.earlier_versions:
        text = _link(earlier_version_label(catalog.venues[earlier.venue], earlier.year), earlier.url)
        if earlier.title:
            text += f" titled “{escape_markdown_text(earlier.title)}”"
        parts.append(text + ".")
    return " ".join(parts)


def render_item(catalog: Catalog, paper: Paper, leaf_id: str, anchors: dict[str, str]) -> str:
    """One list item (without its number) of ``paper`` in section ``leaf_id``."""
    authors = escape_markdown_text(format_authors(paper.authors))
    venue = _venue_markdown(catalog, paper)
    page = site_page_url(catalog, paper)
    if not catalog.is_primary(paper, leaf_id):
        primary = catalog.category(paper.categories[0])
        where = f"[{escape_markdown_text(primary.title, html_breaks=False)}](#{anchors[primary.id]})"
        there = "paper and code links there" if paper.links.code else "paper link there"
        return f"{_link(paper.title, page)} - {authors}. {venue} Cross-listed from {where}; {there}."
    extras: list[str] = []
    if paper.links.code:
        extras.append(_link("Code", paper.links.code))
    impls = reference_impl_links(catalog, paper)
    # A reconstruction (the paper leaves steps open and no official code exists) is flagged where users pick code.
    caveat = " (reconstructed)" if impls and paper.implementation.reconstructed else ""
    if len(impls) == 1:
        extras.append(_link("Reference implementation", impls[0][1]) + caveat)
    elif impls:
        extras.append("Reference implementations: " + ", ".join(_link(name, url) for name, url in impls) + caveat)
    extras.append(_link("Catalog page", page))
    return f"{_link(paper.title, paper.links.paper)} - {authors}. {venue} {SEPARATOR.join(extras)}"


def _heading_anchors(catalog: Catalog) -> dict[str, str]:
    """GitHub anchor of every category heading, then of the implementations section, in document order."""
    slugger = Slugger()
    slugger.slug("Contents")  # the only heading generated before the sections besides the title
    anchors = {cat.id: slugger.slug(cat.title) for _, cat in catalog.walk_categories()}
    anchors[IMPLEMENTATIONS_HEADING] = slugger.slug(IMPLEMENTATIONS_HEADING)
    return anchors


def render_contents(catalog: Catalog, anchors: dict[str, str]) -> str:
    lines = ["## Contents", ""]
    for depth, cat in catalog.walk_categories():
        if depth <= 1:
            lines.append(f"{'  ' * depth}- [{escape_markdown_text(cat.title, html_breaks=False)}](#{anchors[cat.id]})")
    lines.append(f"- [{IMPLEMENTATIONS_HEADING}](#{anchors[IMPLEMENTATIONS_HEADING]})")
    return "\n".join(lines)


def render_sections(catalog: Catalog, anchors: dict[str, str]) -> str:
    blocks: list[str] = []

    used = set(anchors.values()) | {"contents"}

    def visit(cat: Category, depth: int) -> None:
        blocks.append(f"{'#' * (depth + 2)} {escape_markdown_text(cat.title, html_breaks=False)}")
        # Links to a renamed section's old heading still land on it: one empty anchor per former title.
        former = [slug for slug in (Slugger().slug(title) for title in cat.former_titles) if slug not in used]
        used.update(former)
        if former:
            blocks.append("".join(f'<a id="{slug}"></a>' for slug in former))
        if cat.children:
            for child in cat.children:
                visit(child, depth + 1)
            return
        papers = catalog.papers_in(cat.id)
        if papers:
            blocks.append(
                "\n".join(f"{n}. {render_item(catalog, p, cat.id, anchors)}" for n, p in enumerate(papers, start=1))
            )
        else:
            blocks.append("No papers in this section yet.")

    for top in catalog.categories:
        visit(top, 0)
    return "\n\n".join(blocks)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_implementations(catalog: Catalog) -> str:
    """The "Reference implementations" section: counts from the registry and the tests, the suites, a link.

    Prose only (awesome-lint checks every list after the Contents as a list of resources), and no link the
    header already has (awesome-lint rejects a repeated URL)."""
    from modl.site.data import code_root, method_facts  # reads the registry and tests as text; no torch
    from modl.site.results import load_suites

    methods = method_facts(code_root(catalog.root))
    base = catalog.project.site_url if catalog.project.site_url.endswith("/") else catalog.project.site_url + "/"
    results_url = markdown_url(base + "results/")
    lines = [f"## {IMPLEMENTATIONS_HEADING}", ""]
    if not methods:
        lines.append("No method has a reference implementation in `reference_impls/` yet.")
        return "\n".join(lines)
    families: dict[str, int] = {}
    for m in methods.values():
        families[m.family] = families.get(m.family, 0) + 1
    order = {cat.id: i for i, (_, cat) in enumerate(catalog.walk_categories())}
    parts = []
    for family in sorted(families, key=lambda f: (order.get(f, len(order)), f)):
        title = catalog.category(family).title if family in order else family
        parts.append(f"{families[family]} {escape_markdown_text(title)}")
    papers = {m.paper for m in methods.values()}
    tested = sum(1 for m in methods.values() if m.tested)
    text = (
        f"`reference_impls/` holds {_count(len(methods), 'method')} of "
        f"{_count(len(papers), 'paper')} as small PyTorch reference implementations: " + ", ".join(parts) + ". "
        f"{tested} of the {len(methods)} have tests (exact properties on random inputs and behaviour on toy "
        "problems with a known Pareto set); each has a page on the site with its update rule, usage, "
        "deviations from the paper, results and reproduced figures."
    )
    lines.append(text)
    lines.append("")
    suites = load_suites(catalog.root).suites
    if suites:
        titles = "; ".join(escape_markdown_text(s.title) for s in suites)
        seeds = sorted({len(s.seeds) for s in suites})
        over = _count(seeds[0], "seed") if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]} seeds"
        lines.append(
            f"`modl bench` runs every method on those of the {_count(len(suites), 'benchmark suite')} it applies "
            f"to, over {over} ({titles}); the tables, the reproduced figures of the papers and the speed "
            f"against TorchJD are on the site's [Results]({results_url}) page."
        )
    else:
        lines.append(
            f"`modl bench` runs every method on the benchmark suites it applies to; its tables, the reproduced "
            f"figures of the papers and the speed against TorchJD are on the site's [Results]({results_url}) page."
        )
    return "\n".join(lines)


def render_survey_citation(survey: Survey) -> str:
    """"[Title](url) by A, B, and C (arXiv:ID, YEAR)", escaped for Markdown."""
    title = escape_markdown_text(survey.title)
    authors = escape_markdown_text(format_authors(survey.authors))
    return f"[{title}]({markdown_url(survey.url)})\nby {authors}\n(arXiv:{survey.arxiv}, {survey.year})"


def render_readme(catalog: Catalog) -> str:
    """The full README.md text for ``catalog`` (deterministic)."""
    anchors = _heading_anchors(catalog)
    values = {
        "name": escape_markdown_text(catalog.project.name, html_breaks=False),
        "tagline": escape_markdown_text(catalog.project.tagline),
        "site_url": markdown_url(catalog.project.site_url.rstrip("/") + "/"),  # "{{site_url}}papers/" works either way
        "repo_url": markdown_url(catalog.project.repo_url),
        "paper_count": str(len(catalog.papers)),
        "survey_citation": render_survey_citation(catalog.project.survey),
        "survey_bibtex": render_survey_entry(catalog.project.survey).rstrip("\n"),
        "contents": render_contents(catalog, anchors),
        "sections": render_sections(catalog, anchors),
        "reference_implementations": render_implementations(catalog),
    }

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"modl/templates/readme_header.md: unknown placeholder {{{{{key}}}}}")
        return values[key]

    # Placeholders are filled in one pass, so text coming from records is never re-scanned.
    text = _PLACEHOLDER_RE.sub(fill, load_header_template())
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
