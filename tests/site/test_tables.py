"""Phone-readable tables (issue 16): modl.site.tables.label_table_cells gives every ``<td>`` of a table
with a header ``data-label="<its column header's text>"``, which site/assets/modl.css shows before the
value when rows are stacked on a narrow screen (the browser side is tests/site/test_browser_theme.py).

The expectations of the handmade cases are written out by hand; the output is read back with a small
tree-building parser of this file (not the streaming reader of modl/site/tables.py), so a test cannot
pass by repeating the code's own arithmetic. The last test checks every table of the real site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from modl.site.tables import label_table_cells

# -- a small DOM, independent of modl/site/tables.py ------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def elements(self, tag: str) -> list[Node]:
        """Descendants named ``tag``, in document order, NOT looking inside nested tables of this one."""
        out: list[Node] = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag:
                    out.append(child)
                if child.tag != "table":
                    out.extend(child.elements(tag))
        return out

    def all_tables(self) -> list[Node]:
        out: list[Node] = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == "table":
                    out.append(child)
                out.extend(child.all_tables())
        return out

    def text(self) -> str:
        """Visible text: no aria-hidden decorations, permalinks or MathML annotations."""
        parts = []
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif not (
                child.attrs.get("aria-hidden") == "true"
                or "headerlink" in (child.attrs.get("class") or "").split()
                or child.tag in {"annotation", "annotation-xml"}
            ):
                parts.append(child.text())
        return "".join(parts)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def tree(page_html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page_html)
    builder.close()
    return builder.root


def labels(page_html: str, table: int = 0) -> list[list[str | None]]:
    """data-label of each body cell, row by row, of the ``table``-th table of the labelled page."""
    found = tree(label_table_cells(page_html)).all_tables()[table]
    return [[cell.attrs.get("data-label") for cell in row.elements("td")] for row in found.elements("tbody")[0].elements("tr")]


def strip_labels(page_html: str) -> str:
    """The page without the labels label_table_cells inserts (right after "<td")."""
    return re.sub(r'(?<=<td) data-label="[^"]*"', "", page_html, flags=re.IGNORECASE)


# -- handmade tables -------------------------------------------------------------------------------------

MARKDOWN_TABLE = """<h2 id="x">Papers</h2>
<table>
<thead>
<tr>
<th>Title</th>
<th style="text-align: right;">Count</th>
<th></th>
</tr>
</thead>
<tbody>
<tr>
<td><a href="../a/">A &amp; B</a> (AB)</td>
<td style="text-align: right;">3</td>
<td><span class="modl-bar-track"><span class="modl-bar" style="width: 19%"></span></span></td>
</tr>
<tr>
<td>C</td>
<td style="text-align: right;">4</td>
<td></td>
</tr>
</tbody>
</table>
<p>After.</p>
"""


def test_every_cell_of_a_markdown_table_gets_its_headers_text_and_nothing_else_changes() -> None:
    out = label_table_cells(MARKDOWN_TABLE)
    # the empty third header gives no label
    assert labels(MARKDOWN_TABLE) == [["Title", "Count", None], ["Title", "Count", None]]
    assert strip_labels(out) == MARKDOWN_TABLE  # only attributes were inserted, the rest is byte-identical
    assert '<td data-label="Count" style="text-align: right;">3</td>' in out  # existing attributes kept
    assert label_table_cells(out) == out  # labelling twice changes nothing


def test_header_text_is_plain_text_of_nested_markup_without_decorations() -> None:
    page = (
        "<table><thead><tr>"
        '<th><a href="#t">Paper <em>title</em></a>\n  <span aria-hidden="true">↕</span></th>'
        '<th><math><mi>f</mi><mn>1</mn><annotation encoding="TeX">f_1</annotation></math> ↓</th>'
        '<th>Link<a class="headerlink" href="#l">¶</a></th>'
        "<th>A &amp; &quot;B&quot; &lt;C&gt; it's</th>"
        "</tr></thead><tbody><tr><td>1</td><td>2</td><td>3</td><td>4</td></tr></tbody></table>"
    )
    assert labels(page) == [["Paper title", "f1 ↓", "Link", "A & \"B\" <C> it's"]]
    assert 'data-label="A &amp; &quot;B&quot; &lt;C&gt; it&#x27;s"' in label_table_cells(page)  # escaped for an attribute


def test_tables_without_a_header_and_pages_without_tables_are_left_alone() -> None:
    code = (
        '<table class="highlighttable"><tr><td class="linenos"><div class="linenodiv"><pre>1</pre></div></td>'
        '<td class="code"><div><pre><span></span>x = 1</pre></div></td></tr></table>'
    )
    layout = "<table><tbody><tr><td>a</td><td>b</td></tr></tbody></table>"
    plain = "<p>No table here; a &lt;table&gt; in text.</p>"
    for page in (code, layout, plain):
        assert label_table_cells(page) == page


def test_spans_are_followed_in_header_and_body() -> None:
    page = """<table>
<thead>
<tr><th rowspan="2">Method</th><th colspan="2">K = 2</th><th colspan="2">K = 8</th></tr>
<tr><th>ms</th><th>ratio</th><th>ms</th><th>ratio</th></tr>
</thead>
<tbody>
<tr><td rowspan="2">upgrad</td><td>1.0</td><td>0.5</td><td colspan="2">n/a</td></tr>
<tr><td>2.0</td><td>0.7</td><td>3.0</td><td>0.9</td></tr>
<tr><td>mgda</td><td colspan="4">failed</td></tr>
</tbody>
</table>"""
    assert labels(page) == [
        ["Method", "K = 2 / ms", "K = 2 / ratio", "K = 8 / ms / K = 8 / ratio"],
        # the first column is still taken by "upgrad" (rowspan): these cells start at the second
        ["K = 2 / ms", "K = 2 / ratio", "K = 8 / ms", "K = 8 / ratio"],
        ["Method", "K = 2 / ms / K = 2 / ratio / K = 8 / ms / K = 8 / ratio"],
    ]


def test_row_headers_count_as_columns_and_extra_cells_get_no_label() -> None:
    page = (
        "<table><thead><tr><th>Name</th><th>Value</th></tr></thead><tbody>"
        '<tr><th scope="row">a</th><td>1</td><td>beyond the header</td></tr>'
        '<tr><td data-label="Own">b</td><td>2</td></tr>'
        "</tbody></table>"
    )
    # a <th> in the body takes the first column; a cell that already has a label keeps it
    assert labels(page) == [["Value", None], ["Own", "Value"]]


def test_nested_tables_are_labelled_on_their_own() -> None:
    page = (
        "<table><thead><tr><th>Outer</th><th>Detail</th></tr></thead><tbody><tr><td>x</td><td>"
        "<table><thead><tr><th>Inner</th></tr></thead><tbody><tr><td>y</td></tr></tbody></table>"
        "</td></tr><tr><td>z</td><td>w</td></tr></tbody></table>"
    )
    assert labels(page, 0) == [["Outer", "Detail"], ["Outer", "Detail"]]
    assert labels(page, 1) == [["Inner"]]


def test_cells_without_end_tags_and_upper_case_tags() -> None:
    page = "<TABLE><THEAD><TR><TH>A<TH>B</THEAD><TBODY><TR><TD>1<TD>2<TR><TD>3<TD>4</TBODY></TABLE>"
    out = label_table_cells(page)
    assert out == '<TABLE><THEAD><TR><TH>A<TH>B</THEAD><TBODY><TR><TD data-label="A">1<TD data-label="B">2<TR><TD data-label="A">3<TD data-label="B">4</TBODY></TABLE>'


def test_tables_inside_scripts_are_text() -> None:
    page = '<script>var s = "<table><thead><tr><th>H</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>";</script>'
    assert label_table_cells(page) == page


def test_markup_that_only_looks_like_a_table_is_not_read_as_one() -> None:
    """The page is read by a tokeniser of its own (not HTMLParser): table tags inside attribute values
    (quoted or not), comments, style text and CDATA are no table tags, "<" in text is text, and a tag that
    never closes ends the reading without a label or a hang."""
    page = (
        "<!-- <table><thead><tr><th>C</th></tr></thead><tbody><tr><td>0</td></tr></tbody></table> -->"
        "<style>td::before { content: '<td>' }</style>"
        '<table><thead><tr><th title="a > b">H<span title=\'<td>\'>1</span></th>'
        "<th data-x=<td>x<![CDATA[ <th> y > z ]]></th>"
        "<th>a < b<!-- <th>no</th> --> &amp; c</th></tr></thead>"
        '<tbody><tr><td title="</tr><td>">1</td><td x=y\'z>2</td><td>3 < 4</td></tr></tbody></table>'
        '<p>then <td class="x" title="' + "=a '" * 3000
    )
    assert labels(page) == [["H1", "x", "a < b & c"]]
    assert strip_labels(label_table_cells(page)) == page


# -- the real site ---------------------------------------------------------------------------------------


def _expected(table: Node) -> list[tuple[str | None, str | None]]:
    """(label found, label expected) of every body cell of a table with one header row and no spans."""
    heads = table.elements("thead")
    header_rows = heads[0].elements("tr")
    assert len(header_rows) == 1, "the real site's tables have one header row: extend this check"
    headers = [" ".join(th.text().split()) for th in header_rows[0].elements("th")]
    out = []
    for body in table.elements("tbody"):
        for row in body.elements("tr"):
            cells = [c for c in row.children if isinstance(c, Node) and c.tag in {"td", "th"}]
            for index, cell in enumerate(cells):
                assert "colspan" not in cell.attrs and "rowspan" not in cell.attrs, "spans: extend this check"
                if cell.tag == "td":
                    expected = headers[index] if index < len(headers) and headers[index] else None
                    out.append((cell.attrs.get("data-label"), expected))
    return out


def test_every_cell_of_every_table_of_the_site_has_its_column_label(real_site: Path) -> None:
    checked: dict[str, int] = {}
    for page in sorted(real_site.rglob("*.html")):
        built = page.read_text(encoding="utf-8")
        # the labels of the whole page (theme, scripts and all) are those of its content, and only them
        assert label_table_cells(strip_labels(built)) == built, page
        if "<table" not in built:
            continue
        for table in tree(built).all_tables():
            if not table.elements("thead"):
                assert not any("data-label" in td.attrs for td in table.elements("td")), page  # left alone
                continue
            pairs = _expected(table)
            wrong = [(found, expected) for found, expected in pairs if found != expected]
            assert wrong == [], f"{page.relative_to(real_site)}: {wrong[:5]}"
            rel = page.relative_to(real_site).parent.as_posix()
            checked[rel] = checked.get(rel, 0) + sum(1 for found, _ in pairs if found)
    # the kinds of table the phone layout must serve all have labelled cells
    for rel in ("sections/single-solution", "statistics", "implementations"):
        assert checked.get(rel, 0) > 10, (rel, checked.get(rel))
    assert any(rel.startswith("results/") and n > 10 for rel, n in checked.items())
    assert checked.get("papers", 0) > 10
