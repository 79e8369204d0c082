"""The built site in a real browser: search, a paper page, a sortable section table, a results table
sorted by a metric, and a method page with its reproduced figure.

Drives Debian's Chromium (never a downloaded browser) with Playwright's Python API against the site
served by ``http.server`` on 127.0.0.1. Screenshots go to artifacts/screenshots/ (ignored by git).
Without Chromium the test is skipped, except under CI (environment variable CI set), where it fails.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modl.catalog import load_catalog
from tests.site import conftest as site_conftest
from tests.site.conftest import REPO_ROOT, SCREENSHOTS, build_site, serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def results_site(browser, real_site: Path, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """(base URL, suite id, method id): this repository's site when it has a suite table of two or more
    rows and a reproduced figure, else the site of tests/site/results_fixture.py (so the test always runs)."""
    from modl.site import results as R
    from tests.site.results_fixture import FIGURE, SINGLE, write_fixture

    suites = [s for s in R.load_suites(REPO_ROOT).suites if len(s.rows) >= 2 and s.metrics]
    figures = [f for f in R.load_figures(REPO_ROOT) if (real_site / "methods" / f.methods[0]).is_dir()]
    if suites and figures:
        site, suite, method = real_site, suites[0].id, figures[0].methods[0]
    else:
        base = tmp_path_factory.mktemp("browser-results")
        site = base / "site"
        done = build_site(site, catalog_root=write_fixture(base / "repo"))
        assert done.returncode == 0, done.stdout + done.stderr
        suite, method = SINGLE["suite"], FIGURE["methods"][0]
    with serve(site) as url:
        yield url, suite, method


def test_search_leads_to_the_pcgrad_page(page, served_site: str) -> None:
    record = load_catalog(REPO_ROOT).papers["pcgrad"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(served_site)
    assert load_catalog(REPO_ROOT).project.name in page.title()
    search = page.locator("input.md-search__input")
    search.click()
    search.type("PCGrad", delay=30)
    results = page.locator("li.md-search-result__item > a.md-search-result__link")
    results.first.wait_for(state="visible")
    page.screenshot(path=str(SCREENSHOTS / "search-pcgrad.png"))
    # The paper's own page first, its method's page among the next ones (links carry "?h=<terms>").
    hrefs = [h or "" for h in results.evaluate_all("links => links.slice(0, 6).map(a => a.getAttribute('href'))")]
    assert "papers/pcgrad/" in hrefs[0], hrefs
    assert any("methods/pcgrad/" in h for h in hrefs[:3]), hrefs
    results.first.click()
    page.wait_for_url("**/papers/pcgrad/**")

    assert page.title().startswith(f"{record.short_name}: {record.title}")  # the method's name leads
    assert page.locator("article h1").first.inner_text().strip().startswith(record.title)
    bibtex = page.locator("div.language-bibtex code").first
    bibtex.wait_for(state="visible")
    text = bibtex.inner_text()
    assert text.lstrip().startswith(f"@{record.bibtex.type}{{{record.bibtex.key},")
    assert record.title in text
    # content.code.copy puts a copy button on the block
    copy = page.locator("div.language-bibtex [data-md-type='copy'], div.language-bibtex button.md-clipboard")
    assert copy.count() >= 1
    paper_link = page.locator("a.modl-paper-link")
    assert paper_link.get_attribute("href") == record.links.paper
    page.screenshot(path=str(SCREENSHOTS / "paper-pcgrad.png"), full_page=True)


def _column(page, index: int) -> list[str]:
    return page.locator(".modl-sortable table tbody tr").evaluate_all(
        f"rows => rows.map(r => r.cells[{index}].textContent.trim())"
    )


def test_clicking_a_column_header_sorts_the_section_table(page, served_site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(served_site + "sections/single-solution/")
    headers = page.locator(".modl-sortable table thead th")
    assert headers.count() == 6
    titles_before = _column(page, 0)
    years_before = [int(y) for y in _column(page, 3)]
    assert len(titles_before) >= 3 and years_before == sorted(years_before)  # catalog order: oldest first

    year = headers.nth(3)
    year.click()
    assert year.get_attribute("aria-sort") == "ascending"
    year.click()
    assert year.get_attribute("aria-sort") == "descending"
    years_desc = [int(y) for y in _column(page, 3)]
    assert years_desc == sorted(years_before, reverse=True)
    assert _column(page, 0) != titles_before  # the rows moved, not only the year cells

    venue = headers.nth(2)
    venue.click()
    venues = _column(page, 2)
    assert venues == sorted(venues, key=str.casefold)
    assert sorted(_column(page, 0)) == sorted(titles_before)  # same rows, new order
    page.screenshot(path=str(SCREENSHOTS / "section-sorted-by-venue.png"), full_page=False)


_LEADING_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", re.I)


def _leading_number(cell: str) -> float | None:
    """The mean of a "mean ± std" cell ("95.1% ± 0.4%" -> 95.1); None for "–" (no value)."""
    match = _LEADING_NUMBER.match(cell)
    return float(match.group(0)) if match else None


def test_sorting_a_results_table_by_a_metric_column(page, results_site) -> None:
    """A click on a metric header sorts the rows by the mean (exponents understood, the "± std" ignored),
    ascending then descending; cells without a value ("–") stay last; method names move with their rows.
    Every metric column is checked."""
    url, suite, _ = results_site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{url}results/{suite}/")
    table = page.locator(".modl-sortable table").first
    headers = table.locator("thead th")
    names = [h.strip() for h in headers.all_inner_texts()]
    assert names[:2] == ["Method", "Seeds"] and len(names) > 2

    def column(index: int) -> list[tuple[str, str]]:
        return table.locator("tbody tr").evaluate_all(
            f"rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[{index}].textContent.trim()])"
        )

    before = {index: sorted(map(tuple, column(index))) for index in range(2, len(names))}
    assert max(len({_leading_number(c) for _, c in rows} - {None}) for rows in before.values()) >= 2
    for index in range(2, len(names)):
        header = headers.nth(index)
        for direction in ("ascending", "descending"):
            header.click()
            assert header.get_attribute("aria-sort") == direction
            rows = [tuple(r) for r in column(index)]
            assert sorted(rows) == before[index]  # same rows, each method with its own value
            values = [_leading_number(c) for _, c in rows]
            present = [v for v in values if v is not None]
            assert present == sorted(present, reverse=direction == "descending"), (names[index], direction, rows)
            assert values[len(present) :] == [None] * (len(values) - len(present)), (names[index], rows)  # "–" last
    # the screenshot: sorted by the first metric, ascending
    headers.nth(2).click()
    if headers.nth(2).get_attribute("aria-sort") != "ascending":
        headers.nth(2).click()
    page.screenshot(path=str(SCREENSHOTS / "results-table-sorted.png"), full_page=False)


def test_method_page_shows_its_figure_and_math(page, results_site) -> None:
    url, _, method = results_site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{url}methods/{method}/")
    assert page.locator("article h1").first.inner_text().strip().startswith(method)
    assert page.locator("#update-rule ~ .modl-math math, #update-rule ~ p math").count() >= 1  # MathML
    figure = page.locator("img.modl-figure").first
    figure.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle())
    assert figure.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(SCREENSHOTS / f"method-{method}-figure.png"), full_page=False)
    page.screenshot(path=str(SCREENSHOTS / f"method-{method}.png"), full_page=True)


def test_missing_chromium_skips_but_fails_under_ci(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(site_conftest, "CHROMIUM_DEFAULT", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        site_conftest.chromium_path()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Chromium is not installed"):
        site_conftest.chromium_path()
