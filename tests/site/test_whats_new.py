"""The home page's "What is new": records by their latest real date, not by the initial import.

Issue 10: every record said ``added: 2026-11-22`` (the day the catalog was built from the survey's
list), so "What is new" listed papers from 2018. Now a record appears only when it was added after the
catalog started or changed since (its ``updated`` date), newest first and labelled "added" or
"updated"; the import itself is one line saying when the catalog started and with how many papers.
"""

from __future__ import annotations

import datetime as _dt
import re
from types import SimpleNamespace

import pytest

from modl.catalog import REPO_ROOT, load_and_validate
from modl.schema import Paper
from modl.site.pages import WHATS_NEW, SiteModel, build_site_model, paper_uri, whats_new

_RECORD = {
    "title": "A Plain Method for Multi-Task Learning",
    "authors": ["Ada Lovelace"],
    "venue": "icml",
    "year": 2018,
    "categories": ["gradient-manipulation"],
    "links": {"paper": "https://example.org/plain"},
    "summary": "Sums the task gradients.",
    "bibtex": {"type": "inproceedings", "key": "lovelace2018plain", "fields": {"booktitle": "ICML"}},
    "implementation": {"status": "planned", "methods": []},
}
START = _dt.date(2026, 11, 22)


def _paper(record_id: str, added: _dt.date, updated: _dt.date | None = None, year: int = 2018) -> Paper:
    data = dict(_RECORD, id=record_id, year=year, added=added.isoformat())
    if updated is not None:
        data["updated"] = updated.isoformat()
    return Paper.model_validate(data)


def test_changes_are_dated_labelled_and_leave_out_the_initial_import() -> None:
    day = lambda n: START + _dt.timedelta(days=n)  # noqa: E731
    papers = [
        _paper("imported", START),  # only the import date: not news
        _paper("imported-same-day", START, START),  # 'updated' on the import day is still the import
        _paper("corrected", START, day(8)),
        _paper("added-later", day(3), year=2025),
        _paper("added-and-corrected", day(3), day(6)),
        _paper("added-same-day-as-update", day(3), day(3), year=2019),
        _paper("newest-addition", day(8), year=2025),
    ]
    news = whats_new(papers)
    assert news.started == START and news.started_with == 3
    got = [(c.date, c.kind, c.paper.id) for c in news.changes]
    assert got == [
        (day(8), "added", "newest-addition"),  # same day: additions before corrections
        (day(8), "updated", "corrected"),
        (day(6), "updated", "added-and-corrected"),
        (day(3), "added", "added-same-day-as-update"),  # same day and kind: entry order (year, title)
        (day(3), "added", "added-later"),
    ]


def test_no_changes_and_no_records() -> None:
    assert whats_new([]).started is None and whats_new([]).changes == []
    papers = [_paper("first", START), _paper("second", START)]
    news = whats_new(papers)
    assert (news.started, news.started_with, news.changes) == (START, 2, [])
    model = SiteModel(catalog=SimpleNamespace(papers={p.id: p for p in papers}), methods={},
                      repo_url="https://example.org/repo", render_bibtex=None, render_json=None)
    assert model.home_whats_new() == "No records added or changed since the catalog started on 2026-11-22 with 2 papers.\n"
    assert SiteModel(catalog=SimpleNamespace(papers={}), methods={}, repo_url="https://example.org/repo",
                     render_bibtex=None, render_json=None).home_whats_new() == "No records yet.\n"


@pytest.fixture(scope="module")
def site_model():
    return build_site_model(load_and_validate(REPO_ROOT))


def test_home_page_lists_only_real_changes_of_the_catalog(site_model) -> None:
    """Against the real catalog: every listed paper was added after the catalog started or changed
    since, with that date and label; the newest come first; the started line counts the import."""
    papers = site_model.catalog.papers
    start = min(p.added for p in papers.values())
    text = site_model.home_whats_new()
    items = re.findall(r"^- (\d{4}-\d{2}-\d{2}), (added|updated): \[.*\]\((papers/[^)]+\.md)\)", text, re.M)
    assert items, text
    by_uri = {paper_uri(p.id): p for p in papers.values()}
    dates = []
    for date, kind, uri in items:
        paper = by_uri[uri]
        if kind == "added":
            assert paper.added > start and paper.updated in (None, paper.added), paper.id
            assert date == paper.added.isoformat(), paper.id
        else:
            assert paper.updated is not None and paper.updated > paper.added, paper.id
            assert date == paper.updated.isoformat(), paper.id
        dates.append(date)
    assert dates == sorted(dates, reverse=True)
    changed = [p for p in papers.values() if p.added > start or (p.updated or p.added) > p.added]
    assert len(items) == min(len(changed), WHATS_NEW)
    if len(changed) > WHATS_NEW:
        assert f"… and {len(changed) - WHATS_NEW} more changes" in text
    imported = sum(1 for p in papers.values() if p.added == start)
    assert text.rstrip().endswith(f"The catalog started on {start.isoformat()} with {imported} papers.")
    # The symptom: a 2018 paper known to the catalog only through the import is not news.
    assert "papers/mgda.md" not in text and papers["mgda"].added == start and papers["mgda"].updated is None


def test_upstream_papers_added_after_the_seed_are_news(site_model) -> None:
    """The five papers the upstream list gained after the seed are in "What is new", dated by their
    addition (or by a later change)."""
    text = site_model.home_whats_new()
    for record_id in ("smg", "cr-mogm", "modo", "psmgd", "mgda-gs"):
        paper = site_model.catalog.papers[record_id]
        date = (paper.updated or paper.added).isoformat()
        assert re.search(rf"^- {date}, (added|updated): \[.*\]\({re.escape(paper_uri(record_id))}\)", text, re.M), record_id


def test_paper_page_gives_the_last_change(site_model) -> None:
    papers = site_model.catalog.papers
    changed = next(p for p in papers.values() if p.updated is not None)
    assert f"**Last changed:** {changed.updated.isoformat()}" in site_model.paper_page(changed)
    assert "Last changed" not in site_model.paper_page(papers["mgda"])
