"""The dark scheme and the phone layout of tables (issue 16), in Debian's Chromium.

- On a 390-px-wide phone (conftest.PHONE_VIEWPORT) a section table, a results table, the statistics tables
  and the /papers/ table are stacked rows: nothing scrolls sideways, each row's first cell (the title)
  spans the row, every other non-empty cell is inside the screen and shows its column's label before it.
- At desktop width the same section table is a table (header row visible, a row's cells side by side);
  results tables scroll sideways under their sticky method column.
- At 1280 px the catalog tables (sections, /papers/, implementations) give the title at least 35% of the
  table and their short columns (venue, year, code, status...) one line; from 600 px to 1024 px they fit
  their box (no sideways scroll).
- The palette follows the system setting (dark -> Material's "slate" scheme, light -> "default"), its
  toggle changes the scheme and the choice survives a reload; table text keeps a contrast ratio of at
  least 4.5:1 (WCAG AA) in the dark scheme, stacked labels included, and so does the text of the site's
  own components (sort hint, filters, Clear filters button, .bib download, scholar links) in both schemes.

Screenshots (artifacts/screenshots/): section-phone, results-phone, statistics-phone, papers-phone,
section-desktop, papers-600, home-dark, section-dark, section-phone-dark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.site.conftest import PHONE_VIEWPORT, REPO_ROOT, SCREENSHOTS, open_page

pytestmark = pytest.mark.browser

SECTION = "sections/single-solution/"


def _first_suite(real_site: Path) -> str:
    from modl.site import results as R

    suites = [s.id for s in R.load_suites(REPO_ROOT).suites if len(s.rows) >= 2 and (real_site / "results" / s.id).is_dir()]
    if not suites:
        pytest.skip("this checkout has no results suite with two rows or more")
    return "results/mtl-regression/" if "mtl-regression" in suites else f"results/{suites[0]}/"


# Per row of every content table: the rectangles and labels of its cells, in the browser's own DOM.
_ROWS = """() => Array.from(document.querySelectorAll("article table:not([class])")).flatMap(table => {
  const headers = table.tHead ? Array.from(table.tHead.rows[0].cells).map(th => th.textContent.replace(/\\s+/g, " ").trim()) : [];
  return Array.from(table.tBodies).flatMap(body => Array.from(body.rows)).filter(row => !row.hidden).map(row =>
    Array.from(row.cells).map(cell => {
      const box = cell.getBoundingClientRect();
      const before = getComputedStyle(cell, "::before").content;
      return {
        left: box.left, right: box.right, top: box.top, width: box.width,
        empty: cell.textContent.trim() === "" && !cell.querySelector("*"),
        label: cell.getAttribute("data-label"), header: headers[cell.cellIndex] || "",
        before: before, position: getComputedStyle(cell).position, results: !!table.closest(".modl-results"),
      };
    }));
})"""


def _show_first_table(page) -> None:
    """Scroll the first table's top just under the header bar, for the screenshot."""
    page.evaluate("window.scrollTo(0, document.querySelector('article table').getBoundingClientRect().top + window.scrollY - 120)")
    page.wait_for_timeout(500)  # Material cross-fades the header's title after a scroll: let it settle


def _page_width(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def _phone_checks(page, url: str, screenshot: str, *, title_header: str | None) -> list[list[dict]]:
    page.goto(url)
    page.locator("article table").first.wait_for(state="attached")
    scroll_width, width = _page_width(page)
    assert width == PHONE_VIEWPORT["width"]
    assert scroll_width <= width, f"the page scrolls sideways: {scroll_width} px wide in a {width} px viewport"
    rows = page.evaluate(_ROWS)
    assert len(rows) >= 3
    for row in rows:
        first, rest = row[0], row[1:]
        assert first["width"] >= 300, row  # the title (method, year...) spans the row, not ~70 px
        assert first["before"] in ("none", "normal")  # the heading cell shows no label
        if title_header is not None:
            assert first["header"] == title_header
        tops = [cell["top"] for cell in rest if not cell["empty"]]
        assert tops == sorted(tops) and len(set(tops)) == len(tops), row  # one cell per line, in order
        for cell in rest:
            if cell["empty"]:
                continue
            assert 0 <= cell["left"] and cell["right"] <= width, cell  # inside the screen
            # the label put at build time is the browser's own header text, and CSS shows it
            assert (cell["label"] or "") == cell["header"], cell
            assert cell["before"] == (f'"{cell["header"]}"' if cell["header"] else "none"), cell
            assert cell["position"] == "static", cell
    assert page.evaluate("Math.max(...Array.from(document.querySelectorAll('article table:not([class]) thead')).map(h => h.getBoundingClientRect().height))") <= 1
    hints = page.locator(".modl-sort-hint")
    assert all(not hints.nth(i).is_visible() for i in range(hints.count()))  # no headers to click on a phone
    _show_first_table(page)
    page.screenshot(path=str(SCREENSHOTS / screenshot))
    return rows


def test_a_section_table_is_stacked_rows_on_a_phone(browser, served_site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, viewport=PHONE_VIEWPORT) as page:
        rows = _phone_checks(page, served_site + SECTION, "section-phone.png", title_header="Title")
    # the columns the issue saw pushed off screen are on every row, inside the screen
    for row in rows:
        labels = {cell["label"] for cell in row}
        assert {"Code", "Ref. impl."} <= labels, row


def test_a_results_table_is_stacked_rows_on_a_phone(browser, served_site: str, real_site: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, viewport=PHONE_VIEWPORT) as page:
        rows = _phone_checks(page, served_site + _first_suite(real_site), "results-phone.png", title_header=None)
    results = [row for row in rows if row[0]["results"]]
    assert len(results) >= 2
    for row in results:
        assert row[0]["header"] == "Method" and row[0]["position"] == "static"  # sticky column off when stacked


def test_the_statistics_tables_are_stacked_rows_on_a_phone(browser, served_site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, viewport=PHONE_VIEWPORT) as page:
        _phone_checks(page, served_site + "statistics/", "statistics-phone.png", title_header=None)
        # the bars of "Papers per year" fit the screen too
        bars = page.evaluate("Array.from(document.querySelectorAll('.modl-bar-track')).map(b => b.getBoundingClientRect().right)")
        assert bars and max(bars) <= PHONE_VIEWPORT["width"]


def test_the_papers_table_is_stacked_rows_on_a_phone(browser, served_site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, viewport=PHONE_VIEWPORT) as page:
        _phone_checks(page, served_site + "papers/", "papers-phone.png", title_header=None)


OTHER_TABLE_PAGES = ["implementations/", "implementations/design/", "results/", "results/speed/", "methods/pcgrad/"]


def test_no_page_with_tables_scrolls_sideways_on_a_phone(browser, served_site: str, real_site: Path) -> None:
    """One page of each other kind with tables: every non-empty cell inside the screen, no sideways scroll
    (code blocks and display math scroll inside their own boxes, as they should)."""
    pages = [p for p in OTHER_TABLE_PAGES if "<table" in (real_site / p / "index.html").read_text(encoding="utf-8")]
    assert len(pages) >= 4
    with open_page(browser, viewport=PHONE_VIEWPORT) as page:
        for path in pages:
            page.goto(served_site + path)
            scroll_width, width = _page_width(page)
            assert scroll_width <= width, (path, scroll_width)
            outside = [
                (cell["label"], round(cell["left"]), round(cell["right"]))
                for row in page.evaluate(_ROWS)
                for cell in row
                if not cell["empty"] and (cell["left"] < 0 or cell["right"] > width)
            ]
            assert outside == [], (path, outside[:5])


def test_the_section_table_stays_a_table_on_a_desktop(page, served_site: str, real_site: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(served_site + SECTION)
    headers = page.locator("article table thead th")
    assert headers.count() == 6 and all(headers.nth(i).is_visible() for i in range(6))
    rows = page.evaluate(_ROWS)
    for row in rows:
        assert len({round(cell["top"]) for cell in row}) == 1, row  # a row's cells side by side
        lefts = [cell["left"] for cell in row]
        assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
        assert all(cell["before"] in ("none", "normal") for cell in row)  # no stacked labels
    _show_first_table(page)
    page.screenshot(path=str(SCREENSHOTS / "section-desktop.png"))
    # the results table keeps its sticky method column where it scrolls sideways
    page.goto(served_site + _first_suite(real_site))
    results = [row for row in page.evaluate(_ROWS) if row[0]["results"]]
    assert results and all(row[0]["position"] == "sticky" for row in results)
    # ... and it does scroll: scrolled to its end, the metrics move by the whole scroll under the method
    # column, which moves at most the table box's side padding (0.8rem) before it sticks to the edge
    moved = page.evaluate(
        """() => { const table = document.querySelector('article .modl-results table');
          const wrap = table.closest('.md-typeset__scrollwrap'); const cells = table.tBodies[0].rows[0].cells;
          const before = [cells[0].getBoundingClientRect().left, cells[1].getBoundingClientRect().left];
          wrap.scrollLeft = wrap.scrollWidth;
          return [wrap.scrollLeft, cells[0].getBoundingClientRect().left - before[0],
                  cells[1].getBoundingClientRect().left - before[1]]; }"""
    )
    scrolled, first_moved, second_moved = moved
    assert scrolled >= 50 and first_moved >= -20 and abs(second_moved + scrolled) < 1, moved


# Per catalog table at desktop width: the table's width, each column's header text and width, and for the
# cells of each column the number of lines their text takes (distinct tops of the text's line boxes).
_COLUMNS = """() => Array.from(document.querySelectorAll("article .modl-sortable table")).map(table => {
  const lines = element => { const range = document.createRange(); range.selectNodeContents(element);
    return new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top))).size; };
  const head = table.tHead.rows[0];
  const style = getComputedStyle(head.cells[0]);
  const headLines = (head.cells[0].clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)) / parseFloat(style.lineHeight);
  return {
    width: table.getBoundingClientRect().width, headLines: headLines,
    columns: Array.from(head.cells).map((th, i) => ({
      header: th.textContent.trim(), width: th.getBoundingClientRect().width,
      lines: Math.max(...Array.from(table.tBodies[0].rows).map(row => row.cells[i] ? lines(row.cells[i]) : 0)),
    })),
  };
})"""
SHORT_COLUMNS = {"Venue", "Year", "Code", "Ref. impl.", "Interface", "Status", "Tests"}


@pytest.mark.parametrize(("path", "title"), [(SECTION, "Title"), ("papers/", "Title"), ("implementations/", "Paper")])
def test_short_columns_fit_their_content_and_the_title_gets_the_rest(page, served_site: str, path: str, title: str) -> None:
    """At 1280 px the title column is at least 35% of the table (it was 148 of 688 px: Material's 5rem
    minimum header width gave a 4-digit year 100 px), no cell of a short column (venue, year, code, status...)
    wraps, and the header row is one line (the sort arrow beside its header's text)."""
    page.goto(served_site + path)
    page.locator("article .modl-sortable table th[aria-sort]").first.wait_for()  # sortable.js added its arrows
    tables = [t for t in page.evaluate(_COLUMNS) if any(c["header"] == title for c in t["columns"])]
    assert len(tables) == 1, tables
    table = tables[0]
    columns = {column["header"]: column for column in table["columns"]}
    short = SHORT_COLUMNS & columns.keys()
    assert len(short) >= 3, columns.keys()  # a renamed header would silently drop its column's rule
    assert columns[title]["width"] >= 0.35 * table["width"], (columns[title]["width"], table["width"])
    assert {name: columns[name]["lines"] for name in short} == {name: 1 for name in short}
    assert table["headLines"] < 1.5, table["headLines"]


@pytest.mark.parametrize("width", [600, 768, 1024])
def test_catalog_tables_fit_the_page_at_tablet_widths(browser, served_site: str, width: int) -> None:
    """From 600 px (where rows stop stacking) up, the section, /papers/ and implementations tables fit their
    box: nothing scrolls sideways inside it (at 600 px /papers/ was 659 px wide in 568, Ref. impl. cut off)."""
    overflowing = {}
    with open_page(browser, viewport={"width": width, "height": 900}) as page:
        for path in (SECTION, "papers/", "implementations/"):
            page.goto(served_site + path)
            box = page.evaluate(
                "(() => { const w = document.querySelector('article .modl-sortable table').closest('.md-typeset__scrollwrap');"
                " return [w.scrollWidth, w.clientWidth]; })()"
            )
            if box[0] > box[1]:
                overflowing[path] = box
            if width == 600 and path == "papers/":
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                _show_first_table(page)
                page.screenshot(path=str(SCREENSHOTS / "papers-600.png"))
    assert overflowing == {}, overflowing


@pytest.mark.parametrize(("width", "stacked"), [(599, True), (600, False)])
def test_rows_stack_below_600_px(browser, served_site: str, width: int, stacked: bool) -> None:
    """The breakpoint of the issue: narrower than 600 px stacks, 600 px is a table (no width gets both)."""
    with open_page(browser, viewport={"width": width, "height": 900}) as page:
        page.goto(served_site + SECTION)
        row = page.evaluate(_ROWS)[0]
        thead = page.evaluate("document.querySelector('article table thead').getBoundingClientRect().height")
    assert (thead <= 1) == stacked and (len({round(cell["top"]) for cell in row}) > 1) == stacked, (thead, row)


def _scheme(page, expected: str | None = None) -> str:
    """body[data-md-color-scheme], once it is ``expected`` (Material's palette script sets it) or after
    the page's timeout, whichever comes first."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if expected is not None:
        try:
            page.wait_for_function("s => document.body.getAttribute('data-md-color-scheme') === s", arg=expected)
        except PlaywrightTimeout:
            pass  # the caller's assertion reports the scheme found
    return page.evaluate("document.body.getAttribute('data-md-color-scheme')")


def test_the_scheme_follows_the_system_setting(browser, served_site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, color_scheme="light") as page:
        page.goto(served_site + SECTION)
        assert _scheme(page, "default") == "default"
    with open_page(browser, color_scheme="dark") as page:
        page.goto(served_site)
        assert _scheme(page, "slate") == "slate"
        page.screenshot(path=str(SCREENSHOTS / "home-dark.png"))
        page.goto(served_site + SECTION)
        assert _scheme(page, "slate") == "slate"
        _show_first_table(page)
        page.screenshot(path=str(SCREENSHOTS / "section-dark.png"))
    with open_page(browser, color_scheme="dark", viewport=PHONE_VIEWPORT) as page:
        page.goto(served_site + SECTION)
        assert _scheme(page, "slate") == "slate"
        _show_first_table(page)
        page.screenshot(path=str(SCREENSHOTS / "section-phone-dark.png"))


def test_the_toggle_changes_the_scheme_and_the_choice_persists(browser, served_site: str) -> None:
    with open_page(browser, color_scheme="dark") as page:
        page.goto(served_site + SECTION)
        toggle = page.locator("form[data-md-component=palette] label:not([hidden])")
        assert toggle.count() == 1
        assert toggle.get_attribute("title") == "Switch to light mode"  # automatic is the starting option
        assert _scheme(page, "slate") == "slate"
        toggle.click()
        assert _scheme(page, "default") == "default"  # light, although the system is dark
        page.reload()
        assert _scheme(page, "default") == "default"  # kept across pages (localStorage "__palette")
        # the light option, restored from storage (not the template's first option, whose scheme is also "default")
        assert page.locator("form[data-md-component=palette] label:not([hidden])").get_attribute("title") == "Switch to dark mode"
        stored = page.evaluate("Object.keys(localStorage).filter(k => k.endsWith('__palette')).map(k => JSON.parse(localStorage.getItem(k)))")
        assert len(stored) == 1 and stored[0]["index"] == 1 and stored[0]["color"]["scheme"] == "default", stored
        page.locator("form[data-md-component=palette] label:not([hidden])").click()
        assert _scheme(page, "slate") == "slate"  # dark
        page.locator("form[data-md-component=palette] label:not([hidden])").click()
        assert page.locator("form[data-md-component=palette] label:not([hidden])").get_attribute("title") == "Switch to light mode"
        assert _scheme(page, "slate") == "slate"  # back to following the (dark) system


# Contrast of an element's text with what lies behind it, from computed styles (colours with alpha are
# blended over the first opaque background up the tree), per WCAG 2's relative luminance.
_CONTRAST = """([selector, pseudo]) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => top.slice(0, 3).map((v, i) => v * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const element = document.querySelector(selector);
  if (!element) return null;
  const layers = [];
  for (let e = element; e; e = e.parentElement) {
    const bg = parse(getComputedStyle(e).backgroundColor);
    if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; }
  }
  let background = [255, 255, 255, 1];
  for (const layer of layers.reverse()) background = over(layer, background);
  const text = over(parse(getComputedStyle(element, pseudo || null).color), background);
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const [a, b] = [lum(text), lum(background)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

_CELLS = {
    "text cell": ("article table tbody td[data-label=Authors]", ""),
    "link in a cell": ("article table tbody td a", ""),
    "header": ("article table thead th", ""),
}


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_table_text_is_readable_in_the_dark_scheme(browser, served_site: str, viewport: str) -> None:
    options = {"viewport": PHONE_VIEWPORT} if viewport == "phone" else {}
    cells = dict(_CELLS)
    if viewport == "phone":
        del cells["header"]  # hidden there
        cells["stacked label"] = ("article table tbody td[data-label=Authors]", "::before")
    with open_page(browser, color_scheme="dark", **options) as page:
        page.goto(served_site + SECTION)
        assert _scheme(page, "slate") == "slate"
        ratios = {name: page.evaluate(_CONTRAST, list(target)) for name, target in cells.items()}
    assert all(ratio is not None and ratio >= 4.5 for ratio in ratios.values()), ratios


# The site's own components, each on a page that has it: (page, selector, pseudo-element).
_COMPONENTS = {
    "sort hint": ("sections/single-solution/", ".modl-sort-hint", ""),
    "sorted header": ("sections/single-solution/", "article table th[aria-sort]", ""),
    "filter label": ("papers/", "#modl-paper-filters .modl-filter > span", ""),
    "filter select": ("papers/", "#modl-paper-filters select", ""),
    "clear filters button": ("papers/", "#modl-paper-filters .md-button", ""),
    "papers count": ("papers/", "#modl-papers-count", ""),
    ".bib download": ("papers/pcgrad/", ".modl-bib-download", ""),
    "scholar link": ("papers/pcgrad/", "a.modl-scholar", ""),
    "statistics cell": ("statistics/", "article table td", ""),
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sites_own_components_are_readable_in_both_schemes(browser, served_site: str, scheme: str) -> None:
    """WCAG AA (4.5:1) for the text of every custom component in either scheme. In the dark scheme
    Material's outlined button (Clear filters) was indigo on slate, 2.3:1."""
    with open_page(browser, color_scheme=scheme) as page:
        ratios = {}
        for name, (path, selector, pseudo) in _COMPONENTS.items():
            if page.url != served_site + path:
                page.goto(served_site + path)
                _scheme(page, "slate" if scheme == "dark" else "default")
            ratios[name] = page.evaluate(_CONTRAST, [selector, pseudo])
    low = {name: ratio for name, ratio in ratios.items() if ratio is None or ratio < 4.5}
    assert low == {}, ratios
