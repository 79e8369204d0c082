"""Search in a real browser (issue 16): Material's search box on the built site (Debian's Chromium through
Playwright; see tests/site/conftest.py) lists a paper's own page FIRST for its short name and for its
first author's surname, and no result is source code.

The queries come from the catalog, with the expected page computed from the records:

- every short name that no other record's title or short name also matches (the worker appends "*" to
  each query term, so a term matches every index term it begins; "EPO" also matches "EPO Search", "MGDA"
  also the title "MGDA Converges under ...", so those are left out), minus short names holding one of
  lunr's English stop words (dropped from queries: "MosT" finds nothing), read from the worker bundle;
- every first author's surname that matches no other record's title, short name, authors or summary
  ("Navon" is first author of Nash-MTL and PHN, "Chen" of many: left out).

Today that is 43 short names and 14 surnames. The list with the first three results of each query is
written to artifacts/screenshots/search-queries.txt; screenshots search-nash.png and search-kendall.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import material
import pytest

from modl.catalog import load_catalog
from tests.site.conftest import REPO_ROOT, SCREENSHOTS

pytestmark = pytest.mark.browser

RESULT_LINKS = "li.md-search-result__item > a.md-search-result__link"
SOURCE_MARKERS = ("def ", "import ", "self.", "return ", "__init__", "torch.")


def _stop_words() -> set[str]:
    """lunr's English stop-word list, as the search worker bundled with mkdocs-material has it."""
    workers = Path(material.__file__).parent / "templates" / "assets" / "javascripts" / "workers"
    bundle = next(workers.glob("search.*.min.js")).read_text(encoding="utf-8")
    match = re.search(r"generateStopWordFilter\(\[([^\]]*)\]\)", bundle)
    assert match, "the search worker no longer holds lunr's stop-word list: update this test"
    words = set(json.loads(f"[{match.group(1)}]"))
    assert {"most", "the", "and"} <= words
    return words


def _terms(text: str, separator: str) -> set[str]:
    return {t.lower() for t in re.split(separator, text) if t}


def queries(separator: str) -> list[tuple[str, str]]:
    """(query, record id of the page that must come first), computed from the catalog (module docstring)."""
    papers = list(load_catalog(REPO_ROOT).papers.values())
    stop = _stop_words()

    def covers(query_terms: set[str], terms: set[str]) -> bool:
        return all(any(t.startswith(q) for t in terms) for q in query_terms)

    def title_terms(paper) -> set[str]:
        return _terms(paper.title, separator) | _terms(paper.short_name or "", separator)

    def all_terms(paper) -> set[str]:
        out = title_terms(paper) | _terms(paper.summary, separator)
        for author in paper.authors:
            out |= _terms(author, separator)
        return out

    out = []
    for paper in papers:
        if paper.short_name:
            wanted = _terms(paper.short_name, separator)
            if not wanted & stop and not any(covers(wanted, title_terms(p)) for p in papers if p is not paper):
                out.append((paper.short_name, paper.id))
    for paper in papers:
        surname = paper.authors[0].split()[-1]
        wanted = _terms(surname, separator)
        if len(wanted) == 1 and len(surname) >= 3 and not wanted & stop:
            if not any(covers(wanted, all_terms(p)) for p in papers if p is not paper):
                out.append((surname, paper.id))
    return out


def _search(page, query: str) -> list[tuple[str, str]]:
    """(page, title) of the result groups Material lists for ``query``, best first (page: "papers/pcgrad/")."""
    box = page.locator("input.md-search__input")
    box.fill("")
    box.press("End")  # Material reads the box on keyup
    page.wait_for_function(f"document.querySelectorAll({RESULT_LINKS!r}).length === 0")
    box.fill(query)
    box.press("End")
    page.locator(RESULT_LINKS).first.wait_for(state="visible")
    links = page.locator(RESULT_LINKS).evaluate_all(
        "links => links.map(a => [a.href, (a.querySelector('h1') || a).textContent.trim()])"
    )
    # site-relative page and anchor; search.highlight adds "?h=<terms>" to each link
    out = []
    for href, title in links:
        parts = urlsplit(href)
        out.append((parts.path.lstrip("/") + (f"#{parts.fragment}" if parts.fragment else ""), " ".join(title.split())))
    return out


@pytest.fixture
def search_page(page, served_site: str):
    page.goto(served_site)
    page.locator("input.md-search__input").click()
    return page


def test_a_papers_short_name_and_first_authors_surname_find_its_page_first(search_page, real_site: Path) -> None:
    separator = json.loads((real_site / "search" / "search_index.json").read_text(encoding="utf-8"))["config"]["separator"]
    checks = queries(separator)
    names = {q for q, _ in checks}
    assert len(checks) >= 12 and {"PCGrad", "Nash-MTL", "CAGrad", "Aligned-MTL", "Kendall", "Sener"} <= names
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lines, wrong = [], []
    for query, paper_id in checks:
        results = _search(search_page, query)
        lines.append(f"{query!r}: expected papers/{paper_id}/ first; got")
        lines.extend(f"    {i}. {where}  {title[:70]}" for i, (where, title) in enumerate(results[:3], 1))
        if results[0][0] != f"papers/{paper_id}/":
            wrong.append((query, paper_id, [where for where, _ in results[:3]]))
    (SCREENSHOTS / "search-queries.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    assert wrong == [], wrong


def test_nash_finds_nash_mtl_and_no_source_code(search_page) -> None:
    """Before issue 16, "Nash" listed whole modules of other methods (docstrings, code) as results."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = _search(search_page, "Nash")
    assert results[0][0] == "papers/nash-mtl/", results[:3]
    items = search_page.locator("li.md-search-result__item")
    texts = items.evaluate_all("items => items.map(li => li.textContent)")
    assert len(texts) >= 2
    for text in texts:
        assert not any(marker in text for marker in SOURCE_MARKERS), text[:300]
    assert search_page.locator("li.md-search-result__item pre, li.md-search-result__item table").count() == 0
    search_page.screenshot(path=str(SCREENSHOTS / "search-nash.png"))


def test_kendall_finds_the_uncertainty_weighting_paper(search_page) -> None:
    papers = load_catalog(REPO_ROOT).papers
    (paper_id,) = [p.id for p in papers.values() if p.authors[0].split()[-1] == "Kendall"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = _search(search_page, "Kendall")
    assert results[0][0] == f"papers/{paper_id}/", results[:3]
    first = search_page.locator("li.md-search-result__item").first
    assert "Kendall" in first.inner_text()  # the authors are shown, with the match highlighted
    assert first.locator("mark").count() >= 1
    search_page.screenshot(path=str(SCREENSHOTS / "search-kendall.png"))
