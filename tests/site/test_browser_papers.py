"""The All papers page (/papers/) in Chromium: the filters combine, live in the URL and come back from
it; free text over authors (accents ignored); a parent section's filter holds its subsections' papers,
and a section page links to that view; the empty message; the sort arrows of the headers (none on a
one-row table), in light and dark; each control alone and combined against the records (regex and HTML
characters are plain text); text with "&", "+", "#" and accents through the address, reload and back;
unknown address values ignored and named; sorting and filtering in either order; labels and keyboard;
no JavaScript (whole table, no form, no sort hint); strokes and ligatures folded ("lukasz" finds
"Łukasz"). Screenshots: papers-filtered.png (desktop, filtered by venue and code), papers-phone.png
(390x844, filtered by venue).

The expected rows are computed from the catalog's records here, not read from the page's attributes.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from modl.catalog import entry_order, load_catalog
from tests.site.conftest import PHONE_VIEWPORT, REPO_ROOT, SCREENSHOTS, open_page

pytestmark = pytest.mark.browser

CATALOG = load_catalog(REPO_ROOT)
PAPERS = sorted(CATALOG.papers.values(), key=entry_order)
TOTAL = len(PAPERS)



def _address(page) -> str:
    """The document's address as its script left it. Playwright's page.url follows history.replaceState
    through an asynchronous event, so it can lag behind a filter that just changed (seen in CI)."""
    return page.evaluate("() => window.location.href")

def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).lower()


def _under(category_id: str) -> set[str]:
    """Ids of the records in the category or any of its subsections."""
    leaves = {c.id for _, c in CATALOG.walk_categories() if category_id in {c.id, *(p.id for p in CATALOG.parents(c.id))}}
    return {p.id for p in PAPERS if leaves & set(p.categories)}


def _shown(page) -> list[str]:
    """data-id of the rows the reader sees, in table order."""
    return page.locator("#modl-papers tbody tr:visible").evaluate_all("rows => rows.map(r => r.dataset.id)")


def _open_papers(page, base: str, query: str = "") -> None:
    page.goto(base + "papers/" + query)
    page.locator("#modl-paper-filters").wait_for(state="visible")  # papers.js has run


def _busiest_mixed_venue() -> str:
    """The venue with most papers among those with papers both with and without official code."""
    counts = Counter(p.venue for p in PAPERS)
    mixed = [v for v in counts if {bool(p.links.code) for p in PAPERS if p.venue == v} == {True, False}]
    return max(mixed, key=lambda v: (counts[v], v))


def test_venue_and_code_filters_combine_and_live_in_the_url(browser, served_site: str) -> None:
    venue = _busiest_mixed_venue()
    of_venue = [p.id for p in PAPERS if p.venue == venue]
    with_code = [p.id for p in PAPERS if p.venue == venue and p.links.code]
    assert 0 < len(with_code) < len(of_venue) < TOTAL  # each filter removes rows: the check can fail
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser) as page:
        _open_papers(page, served_site)
        assert len(_shown(page)) == TOTAL
        page.select_option("#modl-paper-filters select[name=venue]", venue)
        assert _shown(page) == of_venue
        assert page.locator("#modl-papers-count").inner_text() == f"{len(of_venue)} of {TOTAL} papers"
        page.select_option("#modl-paper-filters select[name=code]", "yes")
        assert _shown(page) == with_code
        assert page.locator("#modl-papers-count").inner_text() == f"{len(with_code)} of {TOTAL} papers"
        assert parse_qs(urlparse(_address(page)).query) == {"venue": [venue], "code": ["yes"]}
        page.screenshot(path=str(SCREENSHOTS / "papers-filtered.png"), full_page=True)
        shared = _address(page)
    with open_page(browser) as fresh:  # the shared address gives the same view
        fresh.goto(shared)
        fresh.locator("#modl-paper-filters").wait_for(state="visible")
        assert _shown(fresh) == with_code
        assert fresh.locator("select[name=venue]").input_value() == venue
        assert fresh.locator("select[name=code]").input_value() == "yes"
        assert fresh.locator("select[name=year]").input_value() == ""
        # Clear filters: every row again, and an address without a query
        fresh.get_by_role("button", name="Clear filters").click()
        fresh.wait_for_function("() => window.location.search === ''")
        assert len(_shown(fresh)) == TOTAL
        assert fresh.locator("select[name=venue]").input_value() == ""


def test_free_text_parent_section_and_the_empty_message(page, served_site: str) -> None:
    # An author's name typed without its accents ("Francois" for "François"): every word must match.
    expected = [p.id for p in PAPERS if any(_fold(a) == "francois fleuret" for a in p.authors)]
    assert 0 < len(expected) < TOTAL
    _open_papers(page, served_site)
    page.fill("#modl-paper-filters input[name=text]", "  Fleuret   FRANCOIS ")
    assert _shown(page) == expected
    assert parse_qs(urlparse(_address(page)).query)["text"] == ["Fleuret   FRANCOIS"]

    # A top-level section holds its subsections' papers (its leaves are all below it).
    parent = next(c for _, c in CATALOG.walk_categories() if c.children and any(g.children for g in c.children))
    in_parent = _under(parent.id)
    assert not any(set(p.categories) & {parent.id} for p in PAPERS)  # papers name leaves only
    page.fill("#modl-paper-filters input[name=text]", "")
    page.select_option("#modl-paper-filters select[name=section]", parent.id)
    assert set(_shown(page)) == in_parent and len(_shown(page)) == len(in_parent)
    assert 0 < len(in_parent) < TOTAL

    # No match: the message shows and the count says 0.
    assert page.locator("#modl-papers-empty").is_hidden()
    page.fill("#modl-paper-filters input[name=text]", "zzqx-no-such-word")
    assert _shown(page) == []
    assert page.locator("#modl-papers-empty").inner_text() == "No paper matches these filters."
    assert page.locator("#modl-papers-empty").is_visible()
    assert page.locator("#modl-papers-count").inner_text() == f"0 of {TOTAL} papers"

    # A section page's link opens All papers filtered to that section (its subsections included).
    page.goto(served_site + f"sections/{parent.id}/")
    page.get_by_role("link", name="Filter these papers by venue, year, code and more on All papers").click()
    page.locator("#modl-paper-filters").wait_for(state="visible")
    assert page.locator("select[name=section]").input_value() == parent.id
    assert set(_shown(page)) == in_parent


def test_sort_headers_show_their_direction(page, served_site: str) -> None:
    _open_papers(page, served_site)
    year = page.locator("#modl-papers thead th", has_text="Year")
    title = page.locator("#modl-papers thead th", has_text="Title")

    def arrow(header) -> tuple[str, str, str]:
        return tuple(header.evaluate(
            "th => { const s = getComputedStyle(th, '::after'); return [s.content, s.maskImage || s.webkitMaskImage, th.getAttribute('aria-sort')]; }"
        ))

    # one arrow, drawn as text (Material's masked icon is switched off, so it cannot draw a second one)
    assert arrow(year) == ('"↕"', "none", "none")
    title.click()  # the table starts in year order: sort by title first, so sorting by year has work to do
    years = [int(y) for y in page.locator("#modl-papers tbody tr").evaluate_all("rows => rows.map(r => r.dataset.year)")]
    assert years != sorted(years)
    year.click()
    assert arrow(year) == ('"▲"', "none", "ascending") and arrow(title)[0] == '"↕"'
    years = [int(y) for y in page.locator("#modl-papers tbody tr").evaluate_all("rows => rows.map(r => r.dataset.year)")]
    assert years == sorted(years)
    year.click()
    assert arrow(year) == ('"▼"', "none", "descending")
    years = [int(y) for y in page.locator("#modl-papers tbody tr").evaluate_all("rows => rows.map(r => r.dataset.year)")]
    assert years == sorted(years, reverse=True)
    # the hint is above the table
    hint_bottom, table_top = page.evaluate(
        "() => [document.querySelector('.modl-sort-hint').getBoundingClientRect().bottom,"
        " document.getElementById('modl-papers').getBoundingClientRect().top]"
    )
    assert hint_bottom <= table_top
    # and a section table shows the same arrows
    page.goto(served_site + "sections/gradient-weighting/")
    header = page.locator(".modl-sortable table thead th").first
    header.wait_for()
    page.wait_for_function("() => document.querySelector('.modl-sortable th[aria-sort]') !== null")
    assert arrow(header) == ('"↕"', "none", "none")
    # a one-row table (a method's row of a results table) has nothing to sort: no arrows, no aria-sort
    page.goto(served_site + "methods/pcgrad/")
    one_row = page.locator(".modl-sortable table").filter(has=page.locator("tbody tr")).first
    one_row.wait_for()
    assert one_row.evaluate("t => t.tBodies[0].rows.length") == 1
    assert one_row.locator("th[aria-sort]").count() == 0
    assert one_row.locator("thead th").first.evaluate("th => getComputedStyle(th, '::after').content") in ("none", "normal")


def test_phone_form_fits_the_screen(browser, served_site: str) -> None:
    venue = _busiest_mixed_venue()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with open_page(browser, viewport=PHONE_VIEWPORT) as phone:
        _open_papers(phone, served_site, f"?venue={venue}")
        assert _shown(phone) == [p.id for p in PAPERS if p.venue == venue]
        phone.screenshot(path=str(SCREENSHOTS / "papers-phone.png"))
        # every control of the form lies inside the screen's width (the form wraps, one control a line)
        rights = phone.locator("#modl-paper-filters select, #modl-paper-filters input, #modl-paper-filters button").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)"
        )
        assert rights and max(rights) <= PHONE_VIEWPORT["width"], rights


# -- review (R1): every filter against the records, the address, keyboard, no JavaScript ------------


def _status(paper, site) -> str:
    """The site's status of a record: 'implemented' only when one of its methods has its page."""
    status = paper.implementation.status
    if status == "implemented" and not any((site / "methods" / m / "index.html").is_file() for m in paper.implementation.methods):
        return "planned"
    return status


def _expected(site, **state: str) -> list[str]:
    """Ids of the records a filter state keeps, in table order, from the records alone: every control ANDs;
    a section holds its subsections' papers; each word of the text, case and accents ignored, lies in the title,
    the short name, an author or the summary."""
    words = _fold(state.get("text", "")).split()
    out = []
    for p in PAPERS:
        fields = [_fold(" ".join(t.split())) for t in (p.title, p.short_name or "", *p.authors, p.summary)]
        if state.get("section") and p.id not in _under(state["section"]):
            continue
        if state.get("venue") and p.venue != state["venue"]:
            continue
        if state.get("year") and str(p.year) != state["year"]:
            continue
        if state.get("code") and ("yes" if p.links.code else "no") != state["code"]:
            continue
        if state.get("impl") and _status(p, site) != state["impl"]:
            continue
        if not all(any(w in f for f in fields) for w in words):
            continue
        out.append(p.id)
    return out


def _controls(page) -> dict[str, str]:
    return {n: page.locator(f"#modl-paper-filters [name={n}]").input_value() for n in ("section", "venue", "year", "code", "impl", "text")}


def test_every_filter_and_their_combinations_keep_the_records_that_match(browser, served_site: str, real_site) -> None:
    """Each control alone, pairs, a triple and free-text queries (any word order, regex and HTML characters)
    opened from the address, compared with the rows computed from the records. Each single filter keeps a
    proper, non-empty part of the table and each combination fewer rows than one of its parts (checked
    below), so no case passes with an empty or a whole table."""
    venue = _busiest_mixed_venue()
    year = str(Counter(p.year for p in PAPERS).most_common(1)[0][0])
    section = next(c.id for _, c in CATALOG.walk_categories() if c.children and any(g.children for g in c.children))
    pcgrad = CATALOG.papers["pcgrad"]
    surname = pcgrad.authors[0].split()[-1]
    singles = [
        {"section": section}, {"venue": venue}, {"year": year}, {"code": "yes"}, {"code": "no"},
        {"impl": "implemented"}, {"impl": "not-applicable"},
        {"text": pcgrad.short_name.upper()}, {"text": f"{pcgrad.title.split()[-1]} {surname}"},  # title word + author, any order
        {"text": "(" }, {"text": "\\"}, {"text": "pareto front"}, {"text": "front pareto"},
    ]
    combos = [
        {"venue": venue, "code": "yes"}, {"section": section, "impl": "implemented"}, {"year": year, "code": "no"},
        {"section": section, "venue": venue, "code": "yes"}, {"impl": "implemented", "text": "gradient"},
    ]
    unmatched = [{"text": "c++"}, {"text": "<b>"}, {"text": "[a-z]*"}, {"text": ".*"}]  # would match anything as a regex
    unchecked = [{"impl": "planned"}]  # no planned record today: compared, but it proves nothing by itself
    for state in singles:
        assert 0 < len(_expected(real_site, **state)) < TOTAL, state
    for state in combos:
        rows = _expected(real_site, **state)
        assert rows and any(len(rows) < len(_expected(real_site, **{k: v})) for k, v in state.items()), state
    for state in unmatched:
        assert _expected(real_site, **state) == [], state
    with open_page(browser) as page:
        for state in singles + combos + unmatched + unchecked:
            _open_papers(page, served_site, "?" + urlencode(state))
            expected = _expected(real_site, **state)
            assert _shown(page) == expected, state
            assert page.locator("#modl-papers-count").inner_text() == f"{len(expected)} of {TOTAL} papers", state
            assert page.locator("#modl-papers-empty").is_visible() == (not expected), state
            assert {k: v for k, v in _controls(page).items() if v} == state
            assert not page.locator("#__search").is_checked(), state  # Material's search dialog stays shut
            assert parse_qs(urlparse(_address(page)).query) == {k: [v] for k, v in state.items()}


def test_the_address_keeps_any_text_through_reload_and_back(page, served_site: str, real_site) -> None:
    """Typed text with spaces, "&", "+", "#", "%" and accents round-trips through the address; reload and
    going back from a paper page give the same view."""
    text = "Müller & + # %20 Pareto"
    venue = _busiest_mixed_venue()
    _open_papers(page, served_site)
    page.select_option("#modl-paper-filters select[name=venue]", venue)
    page.fill("#modl-paper-filters input[name=text]", text)
    assert parse_qs(urlparse(_address(page)).query) == {"venue": [venue], "text": [text]}
    assert urlparse(_address(page)).fragment == ""  # "#" stays inside the query
    page.fill("#modl-paper-filters input[name=text]", "gradient")
    view = _expected(real_site, venue=venue, text="gradient")
    assert 0 < len(view) < len(_expected(real_site, venue=venue)) and _shown(page) == view
    page.reload()
    page.locator("#modl-paper-filters").wait_for(state="visible")
    assert _controls(page)["text"] == "gradient" and _shown(page) == view
    page.locator(f'#modl-papers tbody tr[data-id="{view[0]}"] td a').first.click()
    page.wait_for_url(f"**/papers/{view[0]}/")
    page.go_back()
    page.locator("#modl-paper-filters").wait_for(state="visible")
    assert _controls(page)["venue"] == venue and _controls(page)["text"] == "gradient"
    assert _shown(page) == view
    page.fill("#modl-paper-filters input[name=text]", text)  # and the address gives the text back as typed
    page.reload()
    page.locator("#modl-paper-filters").wait_for(state="visible")
    assert _controls(page) == {"section": "", "venue": venue, "year": "", "code": "", "impl": "", "text": text}


def test_unknown_values_in_the_address_are_ignored_and_said(page, served_site: str, real_site) -> None:
    """?venue=nosuch (and the like) leaves its control at Any, leaves the address and is named on the page;
    the known values still apply, and a parameter that is no filter's is left alone."""
    _open_papers(page, served_site, "?venue=nosuch&year=1900&code=maybe&impl=done&section=nope&text=gradient&from=mail")
    expected = _expected(real_site, text="gradient")
    assert 0 < len(expected) < TOTAL
    assert _shown(page) == expected
    assert _controls(page) == {"section": "", "venue": "", "year": "", "code": "", "impl": "", "text": "gradient"}
    page.wait_for_function("() => window.location.search === '?text=gradient&from=mail'")  # a parameter not ours stays
    note = page.locator("#modl-papers-ignored")
    assert note.is_visible()
    for pair in ("section=nope", "venue=nosuch", "year=1900", "code=maybe", "impl=done"):
        assert pair in note.inner_text(), pair
    page.select_option("#modl-paper-filters select[name=code]", "yes")  # the reader moves on: the note goes
    assert note.is_hidden()


def test_sorting_and_filtering_in_either_order(page, served_site: str, real_site) -> None:
    venue = _busiest_mixed_venue()
    _open_papers(page, served_site)
    page.select_option("#modl-paper-filters select[name=venue]", venue)
    year = page.locator("#modl-papers thead th", has_text="Year")
    year.click()
    year.click()  # descending: not the table's own (ascending) order
    of_venue = _expected(real_site, venue=venue)
    shown = _shown(page)
    assert set(shown) == set(of_venue) and len(shown) == len(of_venue)
    years = [CATALOG.papers[i].year for i in shown]
    assert years == sorted(years, reverse=True) and years != sorted(years)
    page.select_option("#modl-paper-filters select[name=code]", "yes")  # filter after the sort: still sorted
    shown = _shown(page)
    assert set(shown) == set(_expected(real_site, venue=venue, code="yes")) and len(shown) < len(of_venue)
    years = [CATALOG.papers[i].year for i in shown]
    assert years == sorted(years, reverse=True)
    assert page.locator("#modl-papers-count").inner_text() == f"{len(shown)} of {TOTAL} papers"


def test_every_control_has_its_label_and_the_headers_sort_from_the_keyboard(page, served_site: str) -> None:
    _open_papers(page, served_site)
    names = {
        "combobox": ["Section", "Venue", "Year", "Official code", "Reference implementation"],
        "searchbox": ["Title, authors, summary"],
        "button": ["Clear filters"],
    }
    for role, labels in names.items():
        for label in labels:
            control = page.get_by_role(role, name=label, exact=True)
            assert control.count() == 1, label
            control.focus()
            assert control.evaluate("e => e === document.activeElement && e.tabIndex >= 0"), label
    year = page.locator("#modl-papers thead th", has_text="Year")
    year.focus()
    page.keyboard.press("Enter")
    assert year.get_attribute("aria-sort") == "ascending"
    page.keyboard.press(" ")
    assert year.get_attribute("aria-sort") == "descending"


def test_without_javascript_the_whole_table_shows_and_no_dead_control(browser, served_site: str) -> None:
    venue = _busiest_mixed_venue()
    with open_page(browser, java_script_enabled=False) as page:
        page.goto(served_site + f"papers/?venue={venue}")  # the address cannot filter without JavaScript
        assert page.locator("#modl-papers tbody tr:visible").count() == TOTAL
        assert page.locator("#modl-paper-filters").is_hidden()
        assert page.locator("#modl-papers-count").inner_text() == f"{TOTAL} of {TOTAL} papers"
        # headers that do nothing get no "click to sort" hint, here or on a section page
        assert page.locator(".modl-sort-hint").count() == 1 and page.locator(".modl-sort-hint").is_hidden()
        page.goto(served_site + "sections/gradient-weighting/")
        assert page.locator(".modl-sort-hint").count() == 1 and page.locator(".modl-sort-hint").is_hidden()
    with open_page(browser) as page:  # with JavaScript the hint shows above the sortable table
        page.goto(served_site + "sections/gradient-weighting/")
        page.locator(".modl-sort-hint").wait_for(state="visible")


def test_the_sort_arrow_shows_in_the_dark_scheme(browser, served_site: str) -> None:
    """The arrow is text in the header's own colour: light on the dark (slate) background, fully opaque once sorted."""
    with open_page(browser, color_scheme="dark") as page:
        _open_papers(page, served_site)
        assert page.evaluate("() => document.body.getAttribute('data-md-color-scheme')") == "slate"
        year = page.locator("#modl-papers thead th", has_text="Year")
        year.click()
        style = year.evaluate(
            "th => { const a = getComputedStyle(th, '::after'); const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);"
            " return {content: a.content, opacity: a.opacity, arrow: rgb(a.color), header: rgb(getComputedStyle(th).color),"
            " page: rgb(getComputedStyle(document.body).backgroundColor)}; }"
        )
        assert style["content"] == '"▲"' and style["opacity"] == "1"
        assert style["arrow"] == style["header"]
        assert sum(style["arrow"]) > 3 * 150 and sum(style["page"]) < 3 * 80, style  # light text on a dark page


def test_free_text_ignores_strokes_and_ligatures_as_well_as_accents(browser, tmp_path) -> None:
    """Letters that NFD leaves whole ("Ł", "ø", "ß", "Æ") are folded alike in the rows' data-text (Python)
    and in the typed query (papers.js): a reader without those keys finds the paper, and so does one with
    them. A temporary catalog: the real one has no such name today."""
    from tests.site.conftest import build_site, make_catalog, record, serve

    names = record(
        id="folded-names", title="Straße Networks", short_name="SN", authors=["Łukasz Kaiser", "Søren Æbelø"],
        links={"paper": "https://example.org/folded"},
        bibtex={"type": "inproceedings", "key": "kaiser2021strasse", "fields": {"booktitle": "ICML"}},
    )
    root = make_catalog(tmp_path / "repo", [names, record()])
    site = tmp_path / "site"
    done = build_site(site, catalog_root=root)
    assert done.returncode == 0, done.stderr
    with serve(site) as base, open_page(browser) as page:
        _open_papers(page, base)
        for query, expected in [
            ("lukasz", ["folded-names"]), ("ŁUKASZ kaiser", ["folded-names"]), ("soren AEBELO", ["folded-names"]),
            ("strasse", ["folded-names"]), ("Straße", ["folded-names"]), ("lovelace", ["plain-method"]),
        ]:
            page.fill("#modl-paper-filters input[name=text]", query)
            assert _shown(page) == expected, query
