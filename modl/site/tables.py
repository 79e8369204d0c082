"""Tables readable on a phone (issue 16): every ``<td>`` of a table with a header gets the text of its
column's header as ``data-label``, so site/assets/modl.css can stack a row's cells under their labels on
narrow screens (``td::before { content: attr(data-label) }``), with no script.

Runs at build time on each page's content (hooks.on_page_content), after the math is rendered. The
attribute is inserted into the original text at each ``<td`` start tag, so nothing else of the page
changes (no re-serialisation). The page is split into tags, comments, ``<script>``/``<style>`` text and
text by regular expressions, as :class:`html.parser.HTMLParser` (Python 3.11) splits it, but only table
tags and what lies inside header cells is handled in Python: the rest is skipped in one regular-expression
call. Driving HTMLParser itself took ~3 s of CPU per build (time.process_time over the 173 pages), most
of it on the ~120 000 ``<span>`` tags of highlighted source code; this takes ~0.5 s and gave
byte-identical pages on all of them. tests/site/test_tables.py checks every label of the built site
against HTMLParser's reading of its pages.

Rules:

- A table is labelled only when it has a ``<thead>`` (Markdown tables always do); tables without one
  (Pygments' ``highlighttable`` of line-numbered code, hand-written layout tables) are left alone.
- A header's text is its plain text with whitespace collapsed: markup inside (links, spans, MathML) is
  flattened; ``aria-hidden="true"`` elements (decorative sort arrows), permalinks and MathML
  ``<annotation>`` source are left out.
- ``colspan`` and ``rowspan`` are followed on a grid, in the header and in the body. A header cell that
  spans columns labels each of them; with several header rows a column's label joins the distinct texts
  above it with " / "; a body cell that spans columns gets the distinct labels of those columns.
- A cell whose column has no header text (or lies beyond the header) gets no ``data-label``; a cell
  that already has one keeps it. Nested tables are labelled on their own.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

LABEL_ATTRIBUTE = "data-label"
JOIN = " / "  # between the texts of stacked header rows, or of the columns a body cell spans
# Elements whose text is not part of a header's visible label.
_SKIPPED = {"annotation", "annotation-xml", "script", "style", "template"}
_STRUCTURE = {"table", "thead", "tbody", "tfoot", "tr", "td", "th"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _span(value: str | None) -> int:
    """A colspan/rowspan attribute as HTML reads it: digits, at least 1 (garbage counts as 1)."""
    match = re.match(r"\s*(\d+)", value or "")
    return max(1, int(match.group(1))) if match else 1


@dataclass
class _Cell:
    kind: str  # "td" or "th"
    start: int  # offset of "<td" in the page
    attrs: dict[str, str | None]
    text: list[str] = field(default_factory=list)


@dataclass
class _Table:
    in_thead: bool = False
    has_thead: bool = False
    header_rows: list[list[_Cell]] = field(default_factory=list)
    body_rows: list[list[_Cell]] = field(default_factory=list)
    row: list[_Cell] | None = None
    row_in_head: bool = False
    cell: _Cell | None = None


# The page is read as HTMLParser (Python 3.11) tokenises it: comments, raw-text elements (script, style:
# their text is not markup), start and end tags (a quoted attribute value may hold ">" or "<td", an unquoted
# one may hold quotes), declarations; text is what lies between them, a "<" that starts none of them
# included. A tag's name and attributes are matched once, never re-split ("(?=(?P<x>...))(?P=x)" is an
# atomic group), so a "<td" that never closes costs one scan, not a backtrack.
_NAME = r"[a-z][^\t\n\r\f\x20/>\x00]*"
_ATTRS = r"""(?:[^>"'=]+|=+\s*(?:"[^"]*"|'[^']*'|(?!["'])[^>\s]*)|["'])*"""
_TABLE_TAG = r"/?(?:table|thead|tbody|tfoot|tr|td|th)(?=[\s/>])"
_RAW_TEXT = r"(?:script|style)(?=[\s/>])"
# Any token: used inside header cells, whose text and decorations are read.
_TOKEN = re.compile(
    rf"""<!--.*?(?:--\s*>|\Z)
      | <!\[CDATA\[.*?(?:\]\s*\]\s*>|\Z)
      | <(?P<raw>{_RAW_TEXT})(?:[^>"']|"[^"]*"|'[^']*')*>.*?(?:</(?P=raw)\s*>|\Z)
      | <(?P<end>/)?(?=(?P<tag>{_NAME}))(?P=tag)(?=(?P<attrs>{_ATTRS}))(?P=attrs)>
      | <[!?][^>]*(?:>|\Z)""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
# Everything up to the next table tag, comment or raw-text element: text, and the other tags whole (their
# attribute values may hold "<td"). Elsewhere than in a header cell only table tags matter, and this skips
# the rest in one call (the ~120 000 <span> of highlighted source code on the method pages).
_UP_TO_TABLE_TAG = re.compile(
    rf"""(?=(?P<run>(?:[^<]+
      | <(?!{_TABLE_TAG}|!--|!\[CDATA\[|{_RAW_TEXT})
        (?:/?[a-z][a-z0-9]*(?:\s+[a-z][a-z-]*="[^"]*")*>  # the common case, quickly: <span class="n">
          | (?=(?P<tag>/?{_NAME}))(?P=tag)(?=(?P<attrs>{_ATTRS}))(?P=attrs)>
          | [!?][^>]*>
        )?
      )*))(?P=run)""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_THEAD = re.compile(r"<thead", re.IGNORECASE)  # a page without one has no table to label
# HTMLParser's own reading of attributes (html.parser.attrfind_tolerant): a name, then an optional value,
# quoted or bare.
_ATTRIBUTE = re.compile(r"""((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?(?:\s|/(?!>))*""")


def _attributes(text: str) -> dict[str, str | None]:
    """A start tag's attributes (the text after its name) as HTMLParser gives them: lower-case names, the
    first of repeated names, values unquoted and unescaped, None for a name without a value."""
    out: dict[str, str | None] = {}
    for name, has_value, value in _ATTRIBUTE.findall(" " + text):
        if not has_value:
            value = None
        elif value[:1] == value[-1:] in {"'", '"'} and len(value) > 1:
            value = value[1:-1]
        out.setdefault(name.lower(), html.unescape(value) if value else value)
    return out


class _TableReader:
    """Finds every table's header and body cells with the offsets of their start tags."""

    def __init__(self) -> None:
        self._stack: list[_Table] = []
        self._skip: list[str] = []  # open elements whose text is left out of a header's text
        self.tables: list[_Table] = []

    def feed(self, page_html: str) -> None:
        position, end = 0, len(page_html)
        while position < end:
            table = self._stack[-1] if self._stack else None
            in_header_cell = table is not None and table.cell is not None and table.row_in_head
            if in_header_cell:
                token = _TOKEN.search(page_html, position)
                text_end = token.start() if token else end
                if text_end > position:
                    self.handle_data(html.unescape(page_html[position:text_end]))
            else:
                position = _UP_TO_TABLE_TAG.match(page_html, position).end()
                token = _TOKEN.match(page_html, position)
                if token is None:  # at the end, or a "<" that is text ("<td" that never closes)
                    position += 1
                    continue
            if token is None:
                break
            position = token.end()
            tag = token.group("tag")
            if tag is None:
                continue  # comment, script or style, declaration: not part of any header's text
            tag = tag.lower()
            if token.group("end"):
                self.handle_endtag(tag)
                continue
            attrs = token.group("attrs")
            if attrs.endswith("/"):  # <td/>: opened and closed; <br/>, <span/>: no text, nothing to open
                if tag in _STRUCTURE:
                    self.handle_starttag(tag, _attributes(attrs[:-1]), token.start())
                    self.handle_endtag(tag)
                continue
            self.handle_starttag(tag, _attributes(attrs), token.start())

    def handle_starttag(self, tag: str, attributes: dict[str, str | None], offset: int) -> None:
        table = self._stack[-1] if self._stack else None
        if tag == "table":
            self._skip.clear()
            self._stack.append(_Table())
            return
        if table is None:
            return
        if table.cell is not None and tag not in {"td", "th", "tr"}:
            hidden = (attributes.get("aria-hidden") or "").lower() == "true"
            permalink = tag == "a" and "headerlink" in (attributes.get("class") or "").split()
            if (self._skip or hidden or permalink or tag in _SKIPPED) and tag not in _VOID:
                self._skip.append(tag)
            return
        self._skip.clear()
        if tag == "thead":
            table.in_thead = table.has_thead = True
        elif tag in {"tbody", "tfoot"}:
            table.in_thead = False
        elif tag == "tr":
            self._end_row(table)
            table.row, table.row_in_head = [], table.in_thead
        elif tag in {"td", "th"}:
            self._end_cell(table)
            if table.row is None:  # a cell straight under <table>: HTML opens a row for it
                table.row, table.row_in_head = [], table.in_thead
            table.cell = _Cell(tag, offset, attributes)
            table.row.append(table.cell)

    def handle_endtag(self, tag: str) -> None:
        if not self._stack:
            return
        table = self._stack[-1]
        if self._skip and tag not in _STRUCTURE:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        self._skip.clear()  # a cell, row or table ends: anything left open inside it ends with it
        if tag == "table":
            self._end_row(table)
            self.tables.append(self._stack.pop())
        elif tag == "thead":
            self._end_row(table)
            table.in_thead = False
        elif tag in {"tbody", "tfoot", "tr"}:
            self._end_row(table)
        elif tag in {"td", "th"}:
            self._end_cell(table)

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1].cell is not None and not self._skip:
            self._stack[-1].cell.text.append(data)

    @staticmethod
    def _end_cell(table: _Table) -> None:
        table.cell = None

    def _end_row(self, table: _Table) -> None:
        self._end_cell(table)
        self._skip.clear()
        if table.row is not None:
            (table.header_rows if table.row_in_head else table.body_rows).append(table.row)
        table.row = None


def _grid(rows: list[list[_Cell]]) -> list[list[tuple[_Cell, int, int]]]:
    """Each row's cells with the first column and the number of columns they cover, after the
    rowspans of the rows above (HTML's table model, simplified: no ``rowspan=0``)."""
    carried: dict[int, int] = {}  # column -> rows still covered by a rowspan from above
    out = []
    for row in rows:
        placed, column = [], 0
        for cell in row:
            while carried.get(column, 0) > 0:
                column += 1
            width = _span(cell.attrs.get("colspan"))
            placed.append((cell, column, width))
            height = _span(cell.attrs.get("rowspan"))
            if height > 1:
                for c in range(column, column + width):
                    carried[c] = height  # counts this row: decremented with the others below
            column += width
        carried = {c: n - 1 for c, n in carried.items() if n - 1 > 0}
        out.append(placed)
    return out


def _text(cell: _Cell) -> str:
    return " ".join("".join(cell.text).split())


def _distinct(texts: list[str]) -> str:
    seen: list[str] = []
    for text in texts:
        if text and text not in seen:
            seen.append(text)
    return JOIN.join(seen)


def _column_labels(table: _Table) -> dict[int, str]:
    """Column index -> the text of its header (several header rows: their distinct texts joined)."""
    texts: dict[int, list[str]] = {}
    for row in _grid(table.header_rows):
        for cell, column, width in row:
            for c in range(column, column + width):
                texts.setdefault(c, []).append(_text(cell))
    return {c: _distinct(t) for c, t in texts.items()}


def label_table_cells(page_html: str) -> str:
    """``page_html`` with ``data-label="<its column header's text>"`` on every ``<td>`` of every table
    that has a ``<thead>``; see the module's docstring for the rules."""
    if not _THEAD.search(page_html):
        return page_html  # no table with a header (line-numbered source code has none): nothing to label
    reader = _TableReader()
    reader.feed(page_html)
    inserts: list[tuple[int, str]] = []  # (offset just after "<td", ' data-label="..."')
    for table in reader.tables:
        if not table.has_thead or not table.header_rows:
            continue
        labels = _column_labels(table)
        for row in _grid(table.body_rows):
            for cell, column, width in row:
                if cell.kind != "td" or LABEL_ATTRIBUTE in cell.attrs:
                    continue
                label = _distinct([labels.get(c, "") for c in range(column, column + width)])
                if not label:
                    continue
                assert page_html[cell.start : cell.start + 3].lower() == "<td", page_html[cell.start : cell.start + 20]
                inserts.append((cell.start + 3, f' {LABEL_ATTRIBUTE}="{html.escape(label, quote=True)}"'))
    pieces, done = [], 0
    for offset, text in sorted(inserts):
        pieces += [page_html[done:offset], text]
        done = offset
    return "".join(pieces) + page_html[done:]
