"""Scholarly metadata of the paper pages (modl/site/citation.py, overrides/main.html): the citation_* meta
tags Google Scholar and Zotero read, the page's own description, the per-paper .bib download and the
Semantic Scholar / DBLP / Google Scholar searches, checked on every paper page of the real site against
the record; escaping with a temporary catalog; the text helpers on fixed and random inputs."""

from __future__ import annotations

import html
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import bibtexparser
import pytest
from bibtexparser.bparser import BibTexParser
from bibtexparser.customization import splitname

from modl.catalog import load_catalog
from modl.render.bibtex import latex_to_text, render_bibtex
from modl.schema import Links, Paper, Venue
from modl.site import citation as C
from tests.site.conftest import REPO_ROOT, build_site, make_catalog, record

CATALOG = load_catalog(REPO_ROOT)
PAPERS = sorted(CATALOG.papers.values(), key=lambda p: p.id)
SERVICES = {
    "semantic-scholar": ("www.semanticscholar.org", "/search"),
    "dblp": ("dblp.org", "/search"),
    "google-scholar": ("scholar.google.com", "/scholar"),
}


class _Page(HTMLParser):
    """The <head>'s meta tags in order, every <a>'s attributes, and the text of the BibTeX code block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: list[tuple[str, str]] = []
        self.body_meta: list[str] = []
        self.links: list[dict[str, str]] = []
        self.bibtex = ""
        self._in_head = False
        self._div_depth = 0
        self._bibtex_depth: int | None = None  # div depth of div.modl-bibtex while inside it
        self._in_code = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "head":
            self._in_head = True
        if tag == "meta" and "name" in attrs:
            if self._in_head:
                self.meta.append((attrs["name"], attrs.get("content", "")))
            else:
                self.body_meta.append(attrs["name"])
        if tag == "a":
            self.links.append(attrs)
        if tag == "div":
            self._div_depth += 1
            if "modl-bibtex" in attrs.get("class", "").split():
                self._bibtex_depth = self._div_depth
        if tag == "code" and self._bibtex_depth is not None:
            self._in_code = True

    def handle_endtag(self, tag):
        if tag == "head":
            self._in_head = False
        if tag == "div":
            if self._bibtex_depth == self._div_depth:
                self._bibtex_depth = None
            self._div_depth -= 1
        if tag == "code":
            self._in_code = False

    def handle_data(self, data):
        if self._in_code:
            self.bibtex += data

    def values(self, name: str) -> list[str]:
        return [content for key, content in self.meta if key == name]


def read_page(site: Path, paper_id: str) -> _Page:
    parser = _Page()
    parser.feed((site / "papers" / paper_id / "index.html").read_text(encoding="utf-8"))
    return parser


def parse_bibtex(text: str) -> list[dict]:
    """Entries as bibtexparser 1.x reads them (field names lower-cased, ID and ENTRYTYPE)."""
    return bibtexparser.loads(text, parser=BibTexParser(common_strings=True, ignore_nonstandard_types=False)).entries


def expected_pdf(links: Links) -> str | None:
    """The documented rule, written out: the paper link if it is a PDF, else OpenReview's, else arXiv's."""
    if links.paper.lower().split("?")[0].endswith(".pdf"):
        return links.paper
    if links.openreview:
        return "https://openreview.net/pdf?id=" + links.openreview
    if links.arxiv:
        return "https://arxiv.org/pdf/" + links.arxiv
    return None


def zotero_family(name: str) -> str:
    """The family name Zotero's Embedded Metadata translator gives a citation_author (ZU.cleanAuthor):
    the part before the comma of "Last, First", else the last word."""
    return name.split(",")[0].strip() if "," in name else name.split()[-1]


def bib_families(author_field: str) -> list[str]:
    """The family names (von + last) BibTeX gives each name of an author field, LaTeX read back to text."""
    out = []
    for name in re.split(r"\s+and\s+", author_field):
        parts = splitname(name)
        out.append(latex_to_text(" ".join(parts["von"] + parts["last"])))
    return out


# -- every paper page of the real site ---------------------------------------------------------------


def test_every_paper_page_carries_its_records_citation_tags(real_site: Path) -> None:
    kinds_seen = set()
    for paper in PAPERS:
        page = read_page(real_site, paper.id)
        venue = CATALOG.venues[paper.venue]
        where = paper.id
        assert page.body_meta == [], (where, page.body_meta)  # all meta tags sit in <head>
        assert page.values("citation_title") == [paper.title], where
        # each author, in order, read by Zotero as the page's .bib reads it (same family name)
        authors = page.values("citation_author")
        bib_authors = parse_bibtex((real_site / "papers" / f"{paper.id}.bib").read_text(encoding="utf-8"))[0]["author"]
        assert [zotero_family(a) for a in authors] == bib_families(bib_authors), where
        reordered = [a if a == r else " ".join(a.split(", ")[::-1]) for a, r in zip(authors, paper.authors)]
        assert reordered == list(paper.authors), where  # "Last, First" only reorders the record's name
        assert page.values("citation_publication_date") == [str(paper.year)], where
        conference, journal = page.values("citation_conference_title"), page.values("citation_journal_title")
        kinds_seen.add(venue.kind)
        if venue.kind in ("conference", "workshop"):
            assert (conference, journal) == ([venue.name], []), where
        elif venue.kind == "journal":
            assert (conference, journal) == ([], [venue.name]), where
        else:  # preprints name no container, as arXiv's own pages
            assert (conference, journal) == ([], []), where
        assert page.values("citation_arxiv_id") == ([paper.links.arxiv] if paper.links.arxiv else []), where
        assert page.values("citation_doi") == ([paper.links.doi] if paper.links.doi else []), where
        pdf = expected_pdf(paper.links)
        assert page.values("citation_pdf_url") == ([pdf] if pdf else []), where
        fields = paper.bibtex.fields
        assert page.values("citation_volume") == ([fields["volume"]] if "volume" in fields else []), where
        assert page.values("citation_issue") == ([fields["number"]] if "number" in fields else []), where
        assert page.values("citation_publisher") == ([fields["publisher"]] if "publisher" in fields else []), where
        pages = fields.get("pages")
        first_last = page.values("citation_firstpage") + page.values("citation_lastpage")
        assert "--".join(first_last) == (pages or ""), where  # "5824--5836" -> 5824, 5836; "100700" -> 100700
        # one version only: nothing of a later or earlier version (its title, DOI, page, venue, year) unless
        # the record's own value is the same (an earlier arXiv version shares the record's arXiv id)
        own = {paper.title, paper.links.doi, paper.links.paper, str(paper.year), venue.name, expected_pdf(paper.links)}
        for version in [*paper.later_versions, *paper.earlier_versions]:
            other = {version.title, version.doi, version.url, str(version.year), CATALOG.venues[version.venue].name}
            leaked = {value for _, value in page.meta} & (other - own - {None})
            assert not leaked, (where, leaked)
        # each single-valued tag once
        single = [name for name, _ in page.meta if name.startswith("citation_") and name != "citation_author"]
        assert len(single) == len(set(single)), (where, single)
    assert {"conference", "journal", "preprint"} <= kinds_seen  # every branch above was exercised


def test_pdf_rule_covers_each_source_in_the_catalog() -> None:
    """The catalog has records of each PDF source, so the comparison above checks all three branches."""
    sources = {C.pdf_url(p.links).split("/")[2] if C.pdf_url(p.links) else None for p in PAPERS}
    assert {"arxiv.org", "openreview.net"} <= sources
    assert any(p.links.paper.endswith(".pdf") and C.pdf_url(p.links) == p.links.paper for p in PAPERS)


def test_each_paper_page_has_its_own_description(real_site: Path) -> None:
    tagline = CATALOG.project.tagline
    seen: dict[str, str] = {}
    for paper in PAPERS:
        page = read_page(real_site, paper.id)
        [description] = page.values("description")
        assert description != tagline and description, paper.id
        assert len(description) <= C.DESCRIPTION_LIMIT, paper.id
        assert "$" not in description and "\\" not in description, (paper.id, description)  # math reduced
        assert description not in seen, (paper.id, seen.get(description))
        seen[description] = paper.id
        summary = " ".join(paper.summary.split())
        if "$" not in summary:  # plain summaries: the text itself, or its start cut at a word and "…"
            if len(summary) <= C.DESCRIPTION_LIMIT:
                assert description == summary, paper.id
            else:
                assert description.endswith("…") and summary.startswith(description[:-1].rstrip()), paper.id
                assert summary[len(description) - 1] in " ,;:", paper.id  # cut at a word boundary
    # the tagline is still the description of pages that have none of their own
    home = _Page()
    home.feed((real_site / "index.html").read_text(encoding="utf-8"))
    assert home.values("description") == [tagline]
    assert not [name for name, _ in home.meta if name.startswith("citation_")]  # Scholar reads paper pages only


def test_method_pages_have_their_own_description(real_site: Path) -> None:
    tagline = CATALOG.project.tagline
    methods = sorted((real_site / "methods").glob("*/index.html"))
    assert methods
    seen = set()
    for path in methods:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        [description] = page.values("description")
        assert description != tagline and description not in seen, path
        assert description.startswith(f"{path.parent.name}, "), path  # the method first: a paper may have several
        assert not [name for name, _ in page.meta if name.startswith("citation_")], path
        seen.add(description)


def test_every_paper_has_a_bib_download_beside_its_entry(real_site: Path) -> None:
    for paper in PAPERS:
        page = read_page(real_site, paper.id)
        bib_path = real_site / "papers" / f"{paper.id}.bib"
        text = bib_path.read_text(encoding="utf-8")
        assert text == render_bibtex(CATALOG, [paper.id]), paper.id  # what `modl bib <id>` prints
        entries = parse_bibtex(text)
        assert len(entries) == 1 and text.count("@") == 1, paper.id  # one entry, none dropped
        [entry] = entries
        assert (entry["ID"], entry["ENTRYTYPE"]) == (paper.bibtex.key, paper.bibtex.type), paper.id
        if paper.title.isascii() and not set(paper.title) & set("\\{}&%$#_~^"):  # no LaTeX escapes in it
            assert entry["title"].strip("{}") == paper.title, paper.id
        # the code block shows the same entry
        assert page.bibtex.strip() == text.strip(), paper.id
        # the link next to it: download attribute and an href that resolves to that file
        [link] = [a for a in page.links if "modl-bib-download" in a.get("class", "").split()]
        assert link["download"] == f"{paper.id}.bib" and link["title"] == f"Download {paper.id}.bib", paper.id
        resolved = urlparse(urljoin(f"http://site.invalid/papers/{paper.id}/", link["href"])).path
        assert resolved == f"/papers/{paper.id}.bib", (paper.id, link["href"])


def test_scholar_links_search_for_the_title(real_site: Path) -> None:
    for paper in PAPERS:
        page = read_page(real_site, paper.id)
        links = [a for a in page.links if "modl-scholar" in a.get("class", "").split()]
        assert sorted(a["data-service"] for a in links) == sorted(SERVICES), paper.id
        for a in links:
            url = urlparse(a["href"])
            assert (url.scheme, url.netloc, url.path) == ("https", *SERVICES[a["data-service"]]), a["href"]
            [query] = parse_qs(url.query)["q"]  # decodes + and %xx
            expected = f'"{paper.title}"' if a["data-service"] == "google-scholar" else paper.title
            assert query == " ".join(expected.split()), (paper.id, a["href"])
            assert "noopener" in a["rel"].split()


# -- escaping: a record whose text holds quotes, angle brackets and ampersands -------------------------

TRICKY_TITLE = 'Quotes "Q" <b>Tags</b> & Ampersands &amp; \'Apostrophes\': C++ for Ünïcödé α, 50% #1 a=b?'
TRICKY_AUTHOR = 'O\'Brien "The <i>Author</i>" & Co'
TRICKY_SUMMARY = 'Weights "w" <script>x</script> & more: the update solves $G G^\\top \\alpha = 1/\\alpha$.'


def test_meta_tags_escape_record_text_exactly_once(tmp_path: Path) -> None:
    tricky = record(id="tricky", title=TRICKY_TITLE, authors=[TRICKY_AUTHOR, "Alan Turing"], summary=TRICKY_SUMMARY)
    site = tmp_path / "site"
    done = build_site(site, catalog_root=make_catalog(tmp_path / "repo", [tricky]))
    assert done.returncode == 0, done.stdout + done.stderr
    raw = (site / "papers" / "tricky" / "index.html").read_text(encoding="utf-8")
    head = raw.split("</head>", 1)[0]
    page = read_page(site, "tricky")
    # the parser unescapes once: the values are the record's text, so they were escaped exactly once
    assert page.values("citation_title") == [TRICKY_TITLE]
    assert page.values("citation_author") == [TRICKY_AUTHOR, "Alan Turing"]
    assert page.values("description") == ["Weights \"w\" <script>x</script> & more: the update solves G Gᵀ α = 1/α."]
    for tag in ("<b>", "<i>", "<script>x"):
        assert tag not in head, tag  # never markup
    assert "&amp;amp;" in head  # the record's literal "&amp;" (escaped once) ...
    assert "&amp;amp;amp;" not in head and "&amp;lt;" not in head and "&amp;#34;" not in head  # ... not twice
    assert html.unescape(re.search(r'<meta name="citation_title" content="([^"]*)"', head)[1]) == TRICKY_TITLE
    # the searches carry the title exactly: ":", "&", "+", quotes, "%", "#", "=", "?" and non-ASCII encoded
    searches = {a["data-service"]: a["href"] for a in page.links if "modl-scholar" in a.get("class", "").split()}
    assert sorted(searches) == sorted(SERVICES)
    for service, href in searches.items():
        url = urlparse(href)
        assert not url.fragment and url.query.count("=") == 1, href  # "#", "=" and "&" inside the title are encoded
        [query] = parse_qs(url.query)["q"]
        assert query == (f'"{TRICKY_TITLE}"' if service == "google-scholar" else TRICKY_TITLE), href
    bib = (site / "papers" / "tricky.bib").read_text(encoding="utf-8")
    assert [e["ID"] for e in parse_bibtex(bib)] == [tricky["bibtex"]["key"]]


# -- the helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tex", "text"),
    [
        (r"G G^\top w = w^{-1/\alpha}", "G Gᵀ w = w^(-1/α)"),
        (r"\tfrac{1}{2} \lVert J^\top \lambda \rVert^2", "1/2 ‖ Jᵀ λ ‖²"),
        (r"J_1 J_2^\top", "J₁ J₂ᵀ"),
        (r"\alpha \to \infty", "α → ∞"),
        (r"\mathbb{R}^{K \times n}", "ℝ^(K × n)"),
        (r"\mathrm{diag}(x)_{i}", "diag(x)_i"),
    ],
)
def test_math_text_reads_as_plain_text(tex: str, text: str) -> None:
    assert C.math_text(tex) == text


def test_shorten_cuts_at_a_word_boundary_for_all_seeds() -> None:
    """50 random texts (seeds 0..49) of words of 1-20 letters: every cut text fits the limit, is a prefix of
    the text ending at a whole word followed by "…", and texts that fit come back unchanged (50/50)."""
    for seed in range(50):
        rng = random.Random(seed)
        words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 20))) for _ in range(rng.randint(1, 80))]
        text = " ".join(words)
        limit = rng.randint(20, 300)
        out = C.shorten(text, limit)
        assert len(out) <= limit
        if len(text) <= limit:
            assert out == text
        else:
            assert out.endswith("…")
            kept = out[:-1]
            assert text.startswith(kept) and text[len(kept)] == " " and kept.split() == words[: len(kept.split())]


def test_shorten_of_a_single_long_word_still_fits() -> None:
    assert C.shorten("x" * 500, 300) == "x" * 299 + "…"


def test_pdf_url_prefers_the_published_pdf() -> None:
    both = Links(paper="https://example.org/paper.PDF", arxiv="2101.00001", openreview="AbCdEf")
    assert C.pdf_url(both) == "https://example.org/paper.PDF"
    assert C.pdf_url(Links(paper="https://example.org/abs", arxiv="2101.00001", openreview="AbCdEf")) == (
        "https://openreview.net/pdf?id=AbCdEf"
    )
    assert C.pdf_url(Links(paper="https://example.org/abs", arxiv="2101.00001")) == "https://arxiv.org/pdf/2101.00001"
    assert C.pdf_url(Links(paper="https://example.org/paper.pdf.html")) is None
    assert C.pdf_url(Links(paper="https://example.org/get?file=paper.pdf")) is None  # the path decides, not the query


@pytest.mark.parametrize(
    ("name", "only_author", "tag"),
    [
        ("Luc Van Gool", False, "Van Gool, Luc"),  # Zotero would read "Luc Van" / "Gool" without the comma
        ("Ludwig von Mises", False, "von Mises, Ludwig"),
        ("Ada Lovelace", False, "Ada Lovelace"),
        ("Frank J.W.M. Dankers", False, "Frank J.W.M. Dankers"),
        ("Martin Luther King, Jr.", False, "Martin Luther King, Jr."),  # a comma already: kept
        ("Juan Carlos de la Cruz", False, "de la Cruz, Juan Carlos"),
        # a page's only author tag with spaces on both sides of its comma is split by Zotero into two names
        ("Juan Carlos de la Cruz", True, "Juan Carlos de la Cruz"),
        ("Luc Van Gool", True, "Van Gool, Luc"),
    ],
)
def test_citation_author_keeps_a_particle_in_the_family_name(name: str, only_author: bool, tag: str) -> None:
    assert C.highwire_author(name, only_author) == tag


@pytest.mark.parametrize(
    ("kind", "container"),
    [("conference", "citation_conference_title"), ("workshop", "citation_conference_title"),
     ("journal", "citation_journal_title"), ("preprint", None)],
)
def test_container_tag_follows_the_venue_kind(kind: str, container: str | None) -> None:
    paper = Paper.model_validate(record())
    venue = Venue(id="some-venue", short="SV", name="The Venue's Full Name", kind=kind)
    tags = C.citation_tags(paper, venue)
    containers = [(n, v) for n, v in tags if n in ("citation_conference_title", "citation_journal_title")]
    assert containers == ([(container, venue.name)] if container else [])
