"""What the site search indexes (issue 16): titles, short names, authors, summaries, prose and headings;
never source code, whole tables or BibTeX.

:func:`mark_search_exclusions` runs at build time on each page's content (hooks.on_page_content, after
the math and the table labels), before Material's search plugin reads ``page.content``. It inserts
``data-search-exclude="true"`` into the start tag of what the index must skip; the plugin drops those
attributes from the page once it has indexed it, so the served HTML does not change (one exception,
paper pages' ``<h1>``, below). The attribute is inserted into the original text, so nothing else of the
page changes (no re-serialisation).

The page is read by :class:`_Elements`, one regular-expression pass over its tags that builds the element
tree by html.parser's rules (end tags close the elements left open inside them, stray end tags are
ignored, void and ``<x/>`` elements have no content, script/style hold text). It replaced
html.parser.HTMLParser (36 Python calls a tag, 6 s of CPU a site build; now 0.1 calls a tag and 0.5-0.9 s)
with byte-identical output on all 173 pages of the site; tests/site/test_search.py compares the two trees
on random tag soup and on real pages. Attribute values with unbalanced quotes are not read as html.parser
reads them (generated HTML has none), and the reader does not change with Python's html.parser.

How mkdocs-material 9.8's search plugin (material/plugins/search/plugin.py) reads the page, and why
the rules below are what they are:

- It splits a page into one index entry per heading that has an ``id`` (the first one, the page's
  article, without an anchor). An entry's title is its heading's text; when that text is empty the
  page's front-matter ``title`` is used instead.
- A heading carrying ``data-search-exclude`` drops its whole section (title and text) from the index.
- Any other element carrying it is skipped with everything inside it. The plugin tracks skipped
  elements in a set that compares elements by tag name only, so the first nested element of the same
  tag that closes inside a skipped one ends the skip early (``<div class="highlight">`` of
  line-numbered code holds ``<div class="linenodiv">``: marking the outer div alone would index the
  code that follows the line numbers). So an element is marked only when no element of its own tag
  lies inside it; otherwise its child elements are marked instead, recursively.

Rules, on every page:

- skipped: tables (``<table>``), code (``<pre>``; Pygments' ``div.highlight``), ``<details>`` blocks
  (the Source of method pages), display-mode MathML and MathML ``<annotation>`` source, forms and
  their controls (the option lists of /papers/'s filters) and inline SVG.

Paper pages (``papers/<id>.md``, not the index ``papers/index.md``):

- only the article is indexed (short name, summary, authors, venue, sections): the Links, BibTeX,
  reference-implementation and any later sections are dropped;
- the article's title is the page's front-matter title, which puts the paper's short name first
  ("PCGrad: Gradient Surgery for Multi-Task Learning"). Material's lunr index weighs a title match
  1000 times a text match, and the ``<h1>`` holds the bare paper title, so without this the method page
  (``<h1>`` "pcgrad") outranks the paper's page for its own short name. The ``<h1>``'s text is wrapped
  in a ``<span>`` that the index skips, which makes the entry's title fall back to the front matter;
  the served ``<h1>`` keeps its id and permalink and shows the same text (inside a bare ``<span>``).

Method pages (``methods/<name>.md``):

- the Source section and the Results section's per-suite subsections (which hold only tables; the
  results pages index their headings) are dropped; the other headings and prose stay.

Generated Markdown may also carry the attribute itself: pages.properties_section wraps its per-method
list of property reasons (80 kB, a table's worth of text) in ``<div data-search-exclude="true">``.

Ranking: Material's worker (lunr, no length normalisation) scores a term match as idf x saturated term
frequency x field boost (title 1000, text 1, tags 10^6) x the page's ``search.boost`` front matter, then
multiplies a page's article by 5 and its sections by 2 when all query terms match. A paper page
(pages.PAPER_SEARCH_BOOST = 3) and its method page (METHOD_SEARCH_BOOST = 1) both match the short name
once in their titles, so the paper page comes first by a factor of 3 (PCGrad: 32188 vs 10731). A
surname matches only the paper page's article text once tables (section listings) are not indexed.
The separator (mkdocs.yml) splits at hyphens and punctuation, as lunr's query parser does.
"""

from __future__ import annotations

import html
import re

EXCLUDE_ATTRIBUTE = "data-search-exclude"
# The plugin strips `data-search-*="<non-empty>"` from the page after indexing; a bare attribute would stay.
_MARK = f' {EXCLUDE_ATTRIBUTE}="true"'
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_RAW_TEXT = {"script", "style"}  # their content is text up to their end tag (html.parser's CDATA elements)
_HEADINGS = {f"h{level}" for level in range(1, 7)}
_SKIPPED_TAGS = {"table", "pre", "details", "annotation", "annotation-xml", "form", "select", "svg"}
_MAYBE_SKIPPED = _SKIPPED_TAGS | {"div", "math"}  # the tags _is_skipped may accept
METHOD_DROPPED_SECTIONS = ("source",)  # heading ids of method-page sections left out of the index
METHOD_RESULTS_SECTION = "results"  # its subsections (one table per benchmark suite) are left out

_NAME = r"[a-zA-Z][^\t\n\r\f />\x00]*"  # a tag name as html.parser reads it
# One token of markup; everything between tokens is text. Quoted attribute values may hold ">".
_TOKEN = re.compile(
    r"<!--.*?--\s*>"  # comment
    r"|<!\[CDATA\[.*?\]\s*\]\s*>"  # marked section
    rf"|</(?P<end>{_NAME})[^>]*>"  # end tag (anything after the name up to ">" is ignored)
    r"|</\s+(?P<spaced_end>[a-zA-Z][-.a-zA-Z0-9:_]*)\s*>"  # "</ p>", an end tag for html.parser too
    r"|<[!?/][^>]*>"  # declaration, processing instruction, bogus comment
    rf"|<(?P<start>{_NAME})(?P<attrs>[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*)>",  # start tag
    re.S,
)
# "<a b=c/>": the "/" belongs to the bare value c/, so the element is not self-closing (html.parser's rule).
_BARE_VALUE_BEFORE_CLOSE = re.compile(r"=\s*(?![\"'])[^>\s\"']*/\Z")
# An attribute in a start tag, as html.parser's tolerant attribute pattern reads it.
_ATTRIBUTE = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)
_AFTER_NAME = re.compile(r"(?:\s|/(?!>))*")


class _Elements:
    """The page's elements in document order with their offsets in the original text; element ``i``'s
    descendants are the elements ``i + 1 .. last[i] - 1`` (html.parser's tree rules, see the module)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tags: list[str] = []
        self.starts: list[int] = []  # offset of "<tag"
        self.start_ends: list[int] = []  # offset just past the start tag's ">"
        self.ends: list[int] = []  # offset just past the end tag (-1 when never closed)
        self.last: list[int] = []  # one past the element's last descendant
        self._attrs: dict[int, dict[str, str | None]] = {}
        tags, starts, start_ends, ends, last = self.tags, self.starts, self.start_ends, self.ends, self.last
        open_elements: list[int] = []
        open_tags: list[str] = []
        search, position = _TOKEN.search, 0
        while (token := search(text, position)) is not None:
            position = token.end()
            end_name, spaced_end_name, name, attrs = token.groups()
            if name is not None:
                tag, i = name.lower(), len(tags)
                tags.append(tag)
                starts.append(token.start())
                start_ends.append(position)
                if tag in _VOID or (attrs.endswith("/") and not _BARE_VALUE_BEFORE_CLOSE.search(attrs)):
                    ends.append(position)  # no content: void, or self-closing "<x/>"
                    last.append(i + 1)
                    continue
                ends.append(-1)
                last.append(-1)
                open_elements.append(i)
                open_tags.append(tag)
                if tag in _RAW_TEXT:  # skip to its end tag, which the next search finds
                    close = re.compile(rf"</\s*{tag}\s*>", re.I).search(text, position)
                    position = len(text) if close is None else close.start()
                continue
            name = end_name or spaced_end_name
            if name is None:
                continue  # comment, declaration, processing instruction
            tag = name.lower()
            if tag not in open_tags:
                continue  # a stray end tag: ignored, as browsers do
            while True:  # elements left open inside (e.g. <p> before </li>) end here
                i = open_elements.pop()
                ends[i] = position
                last[i] = len(tags)
                if open_tags.pop() == tag:
                    break
        for i in open_elements:  # never closed: everything after them is inside
            self.last[i] = len(self.tags)

    def attrs(self, i: int) -> dict[str, str | None]:
        """Element ``i``'s attributes (names lower-cased, values unescaped; the last of a repeated name)."""
        if i not in self._attrs:
            out: dict[str, str | None] = {}
            start = self.starts[i] + 1 + len(self.tags[i])
            position = _AFTER_NAME.match(self.text, start).end()
            end = self.start_ends[i] - 1
            while position < end and (m := _ATTRIBUTE.match(self.text, position, end)) is not None:
                name, rest, value = m.group(1, 2, 3)
                if not rest:
                    value = None
                elif value[:1] == value[-1:] and value[:1] in ("'", '"'):
                    value = value[1:-1]
                out[name.lower()] = html.unescape(value) if value else value
                position = m.end()
            self._attrs[i] = out
        return self._attrs[i]

    def classes(self, i: int) -> set[str]:
        return set((self.attrs(i).get("class") or "").split())

    def children(self, i: int):
        child = i + 1
        while child < self.last[i]:
            yield child
            child = self.last[child]

    def has_tag_inside(self, i: int) -> bool:
        return self.tags[i] in self.tags[i + 1 : self.last[i]]


def _is_skipped(page: _Elements, i: int) -> bool:
    tag = page.tags[i]
    if tag in _SKIPPED_TAGS:
        return True
    if tag == "div":
        return "highlight" in page.classes(i)
    return tag == "math" and page.attrs(i).get("display") == "block"


def _mark(page: _Elements, i: int, marks: set[int]) -> None:
    """Skip element ``i`` and its content, working around the plugin's skip set that compares by tag."""
    if not page.has_tag_inside(i):
        marks.add(page.starts[i])
        return
    for child in page.children(i):  # text directly inside element i stays indexed (none in our pages)
        _mark(page, child, marks)


def _mark_skipped(page: _Elements, marks: set[int]) -> None:
    """Mark the outermost skipped elements (document order, not looking inside those)."""
    i, tags = 0, page.tags
    while i < len(tags):
        if tags[i] in _MAYBE_SKIPPED and _is_skipped(page, i):
            _mark(page, i, marks)
            i = page.last[i]
        else:
            i += 1


def _headings(page: _Elements) -> list[int]:
    """Headings that start index sections (those with an id), in document order."""
    return [i for i, tag in enumerate(page.tags) if tag in _HEADINGS and page.attrs(i).get("id")]


def _level(page: _Elements, heading: int) -> int:
    return int(page.tags[heading][1])


def _drop_sections(page: _Elements, headings: list[int], first: int, marks: set[int]) -> None:
    """Drop the section of ``headings[first]`` and its subsections from the index."""
    level = _level(page, headings[first])
    for heading in headings[first:]:
        if heading != headings[first] and _level(page, heading) <= level:
            break
        marks.add(page.starts[heading])


def _is_paper_page(src_uri: str) -> bool:
    return bool(re.fullmatch(r"papers/[^/]+\.md", src_uri)) and src_uri != "papers/index.md"


def mark_search_exclusions(page_html: str, src_uri: str) -> str:
    """``page_html`` with ``data-search-exclude`` on what the search index must skip (see the module)."""
    page = _Elements(page_html)
    marks: set[int] = set()  # offsets of start tags that get the attribute
    _mark_skipped(page, marks)
    headings = _headings(page)
    wraps: list[tuple[int, int]] = []  # (start, end) of text wrapped in an index-skipped <span>

    if _is_paper_page(src_uri) and headings and page.tags[headings[0]] == "h1" and page.ends[headings[0]] > 0:
        for heading in headings[1:]:
            marks.add(page.starts[heading])
        h1 = headings[0]
        permalink = next((c for c in page.children(h1) if page.tags[c] == "a" and "headerlink" in page.classes(c)), None)
        title_end = page.starts[permalink] if permalink is not None else page.ends[h1] - len("</h1>")
        inner = page_html[page.start_ends[h1] : title_end]
        if "<span" not in inner.lower():  # a nested <span> would end the skip early (see the module)
            wraps.append((page.start_ends[h1], title_end))
    elif src_uri.startswith("methods/"):
        for n, heading in enumerate(headings):
            heading_id = page.attrs(heading).get("id")
            if heading_id in METHOD_DROPPED_SECTIONS:
                _drop_sections(page, headings, n, marks)
            elif heading_id == METHOD_RESULTS_SECTION:
                for later in headings[n + 1 :]:
                    if _level(page, later) <= _level(page, heading):
                        break
                    marks.add(page.starts[later])

    edits: list[tuple[int, str]] = []  # (offset, text to insert)
    for start in marks:
        tag_end = start + 1
        while tag_end < len(page_html) and (page_html[tag_end].isalnum() or page_html[tag_end] in "-:"):
            tag_end += 1
        edits.append((tag_end, _MARK))
    for start, end in wraps:
        edits.append((start, f"<span{_MARK}>"))
        edits.append((end, "</span>"))
    pieces, done = [], 0
    for offset, text in sorted(edits, key=lambda e: e[0]):  # offsets are distinct: tags' insides vs boundaries
        pieces += [page_html[done:offset], text]
        done = offset
    pieces.append(page_html[done:])
    return "".join(pieces)
