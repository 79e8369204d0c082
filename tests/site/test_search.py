"""The site search (issue 16): what Material's search plugin indexes.

Unit level: modl/site/search.py marks a page, and the plugin's own parser (material.plugins.search)
reads it back, so the tests check what the plugin really indexes, not what the marks look like.
Build level: the real site's search/search_index.json.

Measured on this catalog (66 papers, 63 methods): 2,041,617 bytes and 1,224 entries before issue 16
(1.39 MB of it method pages, mostly their Source sections; the largest entry an 80 kB list of per-method
property reasons), 487,800 bytes and 672 entries after; the largest entry is now 3.5 kB.
"""

from __future__ import annotations

import html
import json
import random
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from material.plugins.search.plugin import Parser, SearchIndex

from modl.catalog import load_catalog
from modl.site.data import method_facts
from modl.site.search import EXCLUDE_ATTRIBUTE, _Elements, mark_search_exclusions
from tests.site.conftest import REPO_ROOT

INDEX_MAX_BYTES = 1_000_000  # 0.49 MB today; 2.04 MB before issue 16
ENTRY_MAX_CHARS = 6_000  # largest today: 3.5 kB (a results page's "not applicable" list); was 80 kB
_STRIP = re.compile(r'\s?data-search-\w+="[^"]+"')  # what the plugin removes from the page after indexing


# -- unit level: the marks as the plugin reads them -----------------------------------------------------


def _sections(page_html: str) -> list[tuple[str, str]]:
    """(title, text) of each section the plugin indexes, markup dropped."""
    parser = Parser()
    parser.feed(page_html)
    parser.close()
    plain = lambda parts: re.sub(r"<[^>]+>", "", "".join(parts)).strip()  # noqa: E731
    return [(plain(s.title), plain(s.text)) for s in parser.data if not s.is_excluded()]


def _entries(page_html: str, title: str, url: str = "page/") -> list[dict]:
    """The index entries the plugin makes of a page whose front-matter title is ``title``."""
    index = SearchIndex(lang=["en"], separator=r"[\s\-]+", pipeline=[], fields={})
    page = SimpleNamespace(content=page_html, meta={"title": title}, title=title, toc=[], url=url)
    index.add_entry_from_context(page)
    return index.entries


def _indexed_text(page_html: str) -> str:
    return " ".join(f"{t} {x}" for t, x in _sections(page_html))


LINE_NUMBERED_CODE = (
    '<div class="language-python highlight"><table class="highlighttable"><tr><td class="linenos">'
    '<div class="linenodiv"><pre><span></span><span class="normal">1</span></pre></div></td>'
    '<td class="code"><div><pre><span></span><code>def secret_source(): return 1\n</code></pre></div>'
    "</td></tr></table></div>"
)


def test_line_numbered_code_is_not_indexed() -> None:
    """Pygments' line-numbered block nests divs in its div.highlight; the plugin's skip set compares
    elements by tag, so marking only the outer div would index the code after the line numbers (checked
    here too, so the test shows why the marks go deeper)."""
    page = f'<h1 id="m">m</h1><p>before</p>{LINE_NUMBERED_CODE}<p>after</p>'
    naive = page.replace('<div class="language-python highlight"', f'<div {EXCLUDE_ATTRIBUTE}="true" class="x"', 1)
    assert "secret_source" in _indexed_text(naive)  # the plugin's pitfall
    text = _indexed_text(mark_search_exclusions(page, "methods/m.md"))
    assert "before" in text and "after" in text
    assert "secret_source" not in text and "1" not in text.split()


def test_tables_code_details_display_math_and_forms_are_not_indexed() -> None:
    page = (
        '<h1 id="t">Topic</h1><p>intro words</p>'
        "<table><thead><tr><th>Head</th></tr></thead><tbody><tr><td>cellvalue</td></tr></tbody></table>"
        "<pre><code>import torch</code></pre>"
        "<details><summary>summarytext</summary><p>hidden</p><details><p>inner</p></details><p>tail</p></details>"
        '<p>inline <math display="inline"><mi>lambda</mi></math> kept</p>'
        '<math display="block"><mi>blockmath</mi></math>'
        '<form id="f"><label>Venue <select name="venue"><option value="icml">ICMLoption</option></select></label></form>'
        '<h2 id="more">More</h2><p>closing words</p>'
    )
    text = _indexed_text(mark_search_exclusions(page, "sections/x.md"))
    for gone in ("cellvalue", "Head", "import", "summarytext", "hidden", "inner", "tail", "blockmath", "Venue", "ICMLoption"):
        assert gone not in text, gone
    for kept in ("Topic", "intro words", "lambda", "More", "closing words"):
        assert kept in text, kept


PAPER_PAGE = (
    '<h1 id="gradient-surgery">Gradient Surgery &amp; More<a class="headerlink" href="#gradient-surgery" '
    'title="Permanent link">&para;</a></h1>\n<p><strong>PCGrad</strong> · NeurIPS 2020</p>\n'
    "<p>Projects conflicting gradients</p>\n<ul>\n<li><strong>Authors:</strong> Tianhe Yu, Chelsea Finn</li>\n</ul>\n"
    '<h2 id="links">Links<a class="headerlink" href="#links">&para;</a></h2>\n<ul><li>Paper: https://x.org</li></ul>\n'
    '<h2 id="bibtex">BibTeX</h2>\n<div class="language-bibtex highlight"><pre><code>@inproceedings{yu2020,}</code></pre></div>\n'
    '<h2 id="reference-implementation">Reference implementation</h2>\n<p>class PCGrad</p>\n'
)


def test_a_paper_page_is_one_entry_titled_by_its_front_matter() -> None:
    """The article only, titled "<short name>: <title>" (the front matter), holding summary and authors;
    the served page keeps its <h1> (id, permalink, text) once the plugin strips its attributes."""
    marked = mark_search_exclusions(PAPER_PAGE, "papers/pcgrad.md")
    entries = _entries(marked, "PCGrad: Gradient Surgery &amp; More", url="papers/pcgrad/")
    assert [e["location"] for e in entries] == ["papers/pcgrad/"]
    (entry,) = entries
    assert entry["title"] == "PCGrad: Gradient Surgery &amp; More"
    for kept in ("PCGrad", "Projects conflicting gradients", "Tianhe Yu, Chelsea Finn"):
        assert kept in entry["text"]
    for gone in ("Gradient Surgery", "x.org", "yu2020", "class PCGrad"):
        assert gone not in entry["text"]
    served = _STRIP.sub("", marked)
    assert served.replace("<span>", "", 1).replace("</span>", "", 1) == PAPER_PAGE
    assert '<h1 id="gradient-surgery"><span>Gradient Surgery &amp; More</span><a class="headerlink"' in served


def test_the_papers_index_page_is_not_a_paper_page() -> None:
    page = '<h1 id="all-papers">All papers</h1><p>Filter the table.</p><h2 id="x">X</h2><p>y</p>'
    entries = _entries(mark_search_exclusions(page, "papers/index.md"), "All papers")
    assert [e["title"] for e in entries] == ["All papers", "X"]


METHOD_PAGE = (
    '<h1 id="pcgrad">pcgrad</h1><p>Reference implementation of PCGrad</p>'
    '<h2 id="update-rule">Update rule</h2><p>Algorithm 1</p>'
    '<h2 id="usage">Usage</h2><div class="language-python highlight"><pre><code>import reference_impls</code></pre></div>'
    '<h2 id="results">Results</h2><p>Mean over seeds</p>'
    '<h3 id="cagrad-toy">CAGrad toy</h3><table><tr><td>pcgrad</td><td>0.1</td></tr></table>'
    '<h3 id="k-quad">K-Quad</h3><table><tr><td>pcgrad</td><td>0.2</td></tr></table>'
    '<h2 id="reproduced-figures">Reproduced figures</h2><h3 id="figure-x">Figure 1 of the nash-mtl paper</h3><p>caption</p>'
    '<h2 id="tests">Tests</h2><p>18 test functions</p>'
    '<h2 id="source">Source</h2><details class="note"><summary>pcgrad.py</summary>' + LINE_NUMBERED_CODE + "</details>"
    '<h3 id="under-source">Helpers</h3><p>more source talk</p>'
)


def test_a_method_page_keeps_its_headings_but_not_its_source_or_suite_tables() -> None:
    entries = _entries(mark_search_exclusions(METHOD_PAGE, "methods/pcgrad.md"), "pcgrad: PCGrad (reference implementation)")
    assert [e["title"] for e in entries] == [
        "pcgrad", "Update rule", "Usage", "Results", "Reproduced figures", "Figure 1 of the nash-mtl paper", "Tests",
    ]
    text = " ".join(e["text"] for e in entries)
    assert "import" not in text and "secret_source" not in text and "more source talk" not in text
    assert "Mean over seeds" in text and "caption" in text and "18 test functions" in text


@pytest.mark.parametrize("src_uri", ["methods/pcgrad.md", "sections/x.md", "papers/index.md"])
def test_the_served_page_is_unchanged(src_uri: str) -> None:
    """Only the attribute is inserted (and the plugin strips it after indexing)."""
    page = METHOD_PAGE + "<p>unclosed <li>list item" + PAPER_PAGE
    marked = mark_search_exclusions(page, src_uri)
    assert marked != page and _STRIP.sub("", marked) == page


# -- the page reader: html.parser's tree, without html.parser's cost ----------------------------------


class _ParserTree(HTMLParser):
    """html.parser's reading of a page, the reference for search._Elements: one row per element in
    document order, (tag, start, start-tag end, end, one past the last descendant, class, id, display),
    with the tree rules the hook relies on (an end tag closes the elements left open inside it, a stray
    one is ignored, void and <x/> elements are empty, never-closed elements hold the rest)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.lines = [0] + [m.end() for m in re.finditer("\n", text)]
        self.text, self.rows, self.open_rows = text, [], []
        self.feed(text)
        self.close()
        for i in self.open_rows:
            self.rows[i][4] = len(self.rows)

    def position(self) -> int:
        line, column = self.getpos()
        return self.lines[line - 1] + column

    def add(self, tag, attrs, empty: bool) -> None:
        start = self.position()
        start_end = start + len(self.get_starttag_text())
        a = dict(attrs)
        self.rows.append([tag, start, start_end, start_end if empty else -1, len(self.rows) + 1, a.get("class"), a.get("id"), a.get("display")])
        if not empty:
            self.open_rows.append(len(self.rows) - 1)

    def handle_starttag(self, tag, attrs):
        self.add(tag, attrs, tag in self.VOID)

    def handle_startendtag(self, tag, attrs):
        self.add(tag, attrs, True)

    def handle_endtag(self, tag):
        if tag not in [self.rows[i][0] for i in self.open_rows]:
            return
        end = self.text.find(">", self.position()) + 1
        while True:
            i = self.open_rows.pop()
            self.rows[i][3], self.rows[i][4] = end, len(self.rows)
            if self.rows[i][0] == tag:
                return


def _reader_rows(text: str) -> list[list]:
    page = _Elements(text)
    return [
        [page.tags[i], page.starts[i], page.start_ends[i], page.ends[i], page.last[i]]
        + [page.attrs(i).get(name) for name in ("class", "id", "display")]
        for i in range(len(page.tags))
    ]


_TAGS = ["div", "span", "p", "li", "ul", "pre", "code", "table", "tr", "td", "h1", "h2", "a", "math", "br", "img",
         "details", "svg", "script", "style", "DIV", "annotation-xml"]
_ATTRS = ['class="highlight"', "class='x highlight'", 'id="sec-1"', "id=bare", 'display="block"', 'title="a > b"',
          "title='x\"y'", "data-x", 'href="/a/b/"', "href=/a/b/", "x=1", 'id="&amp;x"', "class=headerlink", 'a="="']
_PIECES = ["text", " ", "\n", "a < b", "&amp;", "<!-- c <div> -->", "<!DOCTYPE html>", "<?pi x?>", "<![CDATA[ <p> ]]>",
           "</>", "x>y", "<3", "</ div>", "</div junk>", "</ p >"]


def _random_page(rng: random.Random) -> str:
    """Tag soup: nested and unclosed elements, stray and odd end tags, attributes quoted, bare and empty,
    "/>" endings, comments, declarations, script/style text."""
    out, open_tags = [], []
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        if r < 0.4:
            tag = rng.choice(_TAGS)
            attrs = "".join(rng.choice([" ", "  ", "\n"]) + rng.choice(_ATTRS) for _ in range(rng.randint(0, 3)))
            out.append(f"<{tag}{attrs}{rng.choice(['>', '>', '>', '/>', ' />'])}")
            open_tags.append(tag)
        elif r < 0.7 and open_tags:
            out.append(f"</{open_tags.pop() if rng.random() < 0.8 else rng.choice(_TAGS)}>")
        else:
            out.append(rng.choice(_PIECES))
    return "".join(out)


def test_the_page_reader_builds_html_parsers_tree_for_all_seeds() -> None:
    """500 random pages (seeds 0..499, 500/500 pass; 20,000 seeds checked once): the same elements,
    offsets, nesting and attributes as html.parser. (The served pages of the real site: next test.)"""
    for seed in range(500):
        text = _random_page(random.Random(seed))
        assert _reader_rows(text) == _ParserTree(text).rows, (seed, text)


def test_the_page_reader_builds_html_parsers_tree_of_real_pages(real_site: Path) -> None:
    """The served HTML of one page of each kind (Material's header, scripts, inline SVG, MathML, tables,
    line-numbered code); all 174 pages and the marks of all 173 hooked pages matched when it was written."""
    pages = ["index.html", "papers/index.html", "papers/nash-mtl/index.html", "methods/pcgrad/index.html",
             "statistics/index.html", "implementations/index.html", "sections/gradient-manipulation/index.html"]
    results = sorted((real_site / "results").glob("*/index.html"))
    for page in [real_site / p for p in pages] + results[:1]:
        text = page.read_text(encoding="utf-8")
        assert _reader_rows(text) == _ParserTree(text).rows, page


def test_marking_a_page_costs_no_python_call_per_tag() -> None:
    """The hook runs on every page of every site build. html.parser made 36 Python calls per tag (6 s a
    build); the reader tokenises with one regular expression and calls Python functions only for the
    elements the rules look at: 0.10 calls per tag over the real site. Counted, not timed."""
    code = "".join(f'<span class="n">x{i}</span><span class="o">=</span><span class="mi">{i}</span>\n' for i in range(300))
    rows = "".join(f"<tr><td>m{i}</td><td>{i}</td></tr>" for i in range(300))
    page = (
        '<h1 id="m">m</h1>' + "".join(f"<p>prose {i} <code>f()</code></p>" for i in range(300))
        + f'<div class="language-python highlight"><pre><span></span><code>{code}</code></pre></div>'
        + f"<table><tbody>{rows}</tbody></table>" + '<h2 id="source">Source</h2><details><p>x</p></details>'
    )
    tags = page.count("<") - page.count("</")
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        marked = mark_search_exclusions(page, "methods/m.md")
    finally:
        sys.setprofile(None)
    assert marked != page
    assert calls <= tags / 10, (calls, tags)  # 27.8 per tag before (66,904 for 2,410 tags); 0.06 now (135)


# -- build level: the real site's index ---------------------------------------------------------------


def _index(site: Path) -> dict:
    return json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))


def _plain(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _tokens(text: str, separator: str) -> set[str]:
    """The terms Material's worker makes of ``text`` (lower-cased pieces between separator matches)."""
    return {t.lower() for t in re.split(separator, re.sub(r"<[^>]+>", " ", text)) if t}  # text stays HTML-escaped


def test_no_index_entry_holds_source_code(real_site: Path) -> None:
    """No statement line of any method's module (def/class/import/return lines of 25+ characters) is in
    the index, no code block is (<pre>), and inline code stays short (a call signature in prose)."""
    texts = [html.unescape(e["text"]) for e in _index(real_site)["docs"]]
    everything = "\n".join(texts)
    statement = re.compile(r"^\s*(def |class |import |from \S+ import |return )")
    checked = 0
    for facts in method_facts(REPO_ROOT).values():
        for line in (facts.source or "").splitlines():
            if statement.match(line) and len(line.strip()) >= 25:
                checked += 1
                assert line.strip() not in everything, (facts.source_path, line)
    assert checked > 100
    for text in texts:
        assert "<pre" not in text
        assert all(len(code) <= 200 for code in re.findall(r"<code>(.*?)</code>", text, flags=re.S))


class _TableRows(HTMLParser):
    """The text of each table row of a page, cells joined by one space."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_no_index_entry_holds_a_table_row(real_site: Path) -> None:
    """No row (3+ cells, 30+ characters) of any table of any page appears flattened in an entry."""
    texts = [_plain(e["text"]) for e in _index(real_site)["docs"]]
    everything = "\n".join(texts)
    checked = 0
    for page in real_site.rglob("*.html"):
        parser = _TableRows()
        parser.feed(page.read_text(encoding="utf-8"))
        for row in parser.rows:
            flat = " ".join(c for c in row if c)
            if len(row) >= 3 and len(flat) >= 30:
                checked += 1
                assert flat not in everything, (page.relative_to(real_site).as_posix(), flat)
    assert checked > 500


def test_every_paper_page_is_one_entry_with_its_short_name_authors_and_summary(real_site: Path) -> None:
    """Per record: one entry (the article), titled by the page's front matter ("<short name>: <title>"
    unless the title holds the short name), whose terms hold each author's names exactly and the summary's
    words as prefixes."""
    index = _index(real_site)
    separator = index["config"]["separator"]
    by_page: dict[str, list[dict]] = {}
    for entry in index["docs"]:
        by_page.setdefault(entry["location"].split("#")[0], []).append(entry)
    for paper in load_catalog(REPO_ROOT).papers.values():
        entries = by_page.get(f"papers/{paper.id}/")
        assert entries is not None and len(entries) == 1, (paper.id, entries)
        (entry,) = entries
        title = paper.title
        if paper.short_name and paper.short_name.casefold() not in title.casefold():
            title = f"{paper.short_name}: {title}"
        assert " ".join(html.unescape(entry["title"]).split()) == " ".join(title.split()), paper.id
        terms = _tokens(entry["title"] + " " + entry["text"], separator)
        wanted = set()
        for name in [*paper.authors, paper.short_name or ""]:
            wanted |= _tokens(html.escape(name), separator)
        summary_words = re.findall(r"(?<![$\\\w])[A-Za-z]{4,}(?![\w$])", re.sub(r"\$[^$]*\$", " ", paper.summary))
        assert wanted <= terms, (paper.id, sorted(wanted - terms))
        # the worker appends "*" to every query term: "batch" finds "batch's"
        missing = {w.lower() for w in summary_words if not any(t.startswith(w.lower()) for t in terms)}
        assert not missing, (paper.id, sorted(missing))


def _heading_ids(page: Path) -> list[tuple[int, str]]:
    return [(int(level), hid) for level, hid in re.findall(r'<h([1-6]) id="([^"]+)"', page.read_text(encoding="utf-8"))]


def test_method_pages_index_their_headings_but_not_source_or_suite_tables(real_site: Path) -> None:
    """Each method page's entries are exactly its headings, less the Source section and the Results
    section's per-suite subsections (tables only; the results pages index those headings)."""
    index = _index(real_site)
    names = sorted(p.parent.name for p in (real_site / "methods").glob("*/index.html"))
    assert len(names) == len(method_facts(REPO_ROOT))
    for name in names:
        headings = _heading_ids(real_site / "methods" / name / "index.html")
        expected, dropped_under = [], None  # dropped_under: level of the section being dropped
        for level, hid in headings[1:]:
            if dropped_under is not None and level > dropped_under:
                continue
            dropped_under = None
            if hid == "source":
                dropped_under = level
                continue
            expected.append(hid)
            if hid == "results":
                dropped_under = level
        location = f"methods/{name}/"
        anchors = [e["location"].split("#", 1)[1] for e in index["docs"] if e["location"].startswith(location + "#")]
        assert anchors == expected, name
        assert {"update-rule", "usage", "results", "tests"} <= set(anchors), name
        assert any(e["location"] == location and e["title"] == name for e in index["docs"]), name


def test_the_index_is_small_and_has_no_wall_of_text(real_site: Path) -> None:
    path = real_site / "search" / "search_index.json"
    assert path.stat().st_size <= INDEX_MAX_BYTES
    for entry in _index(real_site)["docs"]:
        assert len(entry["text"]) <= ENTRY_MAX_CHARS, (entry["location"], len(entry["text"]))


def test_the_separator_splits_names_at_hyphens_and_punctuation(real_site: Path) -> None:
    """The worker's query parser splits "Nash-MTL" at the hyphen (lunr's own term separator), so the
    index must too; "Kendall," and "(Nash-MTL)" must give the bare names, and "0.5" stays one term."""
    separator = _index(real_site)["config"]["separator"]
    assert _tokens("(Nash-MTL) by Alex Kendall, Yarin Gal et al. &lt;x&gt; c = 0.5", separator) == {
        "nash", "mtl", "by", "alex", "kendall", "yarin", "gal", "et", "al", "x", "c", "0.5",
    }
