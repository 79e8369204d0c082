"""The catalog site: strict offline build, escaping of record text, links, indexes and downloads."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import bibtexparser

from modl.catalog import load_catalog
from tests.site.conftest import (
    REPO_ROOT,
    build_site,
    internal_targets,
    make_catalog,
    page_url,
    parse_page,
    record,
    relocated_config,
)

CATALOG = load_catalog(REPO_ROOT)


def _html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


# -- the real catalog ------------------------------------------------------------------------------


def test_every_record_and_section_has_a_page(real_site: Path) -> None:
    for paper_id in CATALOG.papers:
        assert (real_site / "papers" / paper_id / "index.html").is_file(), paper_id
    for _, category in CATALOG.walk_categories():
        assert (real_site / "sections" / category.id / "index.html").is_file(), category.id
    for page in ("index.html", "venues/index.html", "years/index.html", "statistics/index.html",
                 "downloads/index.html", "implementations/index.html", "results/index.html",
                 "results/figures/index.html", "results/speed/index.html"):
        assert (real_site / page).is_file(), page


def test_every_paper_page_is_linked_from_a_section_table(real_site: Path) -> None:
    linked: set[str] = set()
    for page in (real_site / "sections").rglob("index.html"):
        linked |= internal_targets(real_site, page)
    papers = {page_url(real_site, p) for p in (real_site / "papers").rglob("index.html")}
    assert papers, "no paper pages were built"
    assert papers - linked == set(), "paper pages no section table links to"
    # and each paper is listed in the table of each of its sections
    for paper in CATALOG.papers.values():
        for category_id in paper.categories:
            section = real_site / "sections" / category_id / "index.html"
            assert f"papers/{paper.id}/" in internal_targets(real_site, section), (paper.id, category_id)


def test_navigation_holds_every_section_and_no_page_is_orphaned(real_site: Path) -> None:
    home = real_site / "index.html"
    text = home.read_text(encoding="utf-8")
    primary = text[text.index("md-nav--primary") : text.index("md-sidebar--secondary")]  # the sidebar nav
    nav = {re.sub(r"^(\.\./)*|index\.html$", "", h) for h in re.findall(r'href="([^"#]*)"', primary)}
    for _, category in CATALOG.walk_categories():
        assert f"sections/{category.id}/" in nav, category.id
    for page in ("venues/", "years/", "statistics/", "downloads/", "implementations/", "results/",
                 "results/figures/", "results/speed/"):
        assert page in nav, page
    if (REPO_ROOT / "site" / "implementations" / "design.md").is_file():
        assert "implementations/design/" in nav
    # every built page is linked from some other page
    linked: set[str] = set()
    pages = _html_files(real_site)
    for page in pages:
        linked |= {t for t in internal_targets(real_site, page) if t != page_url(real_site, page)}
    for page in pages:
        url = page_url(real_site, page)
        if url in ("", "404.html"):
            continue
        assert url in linked, f"{url} is orphaned"


def test_paper_page_content(real_site: Path) -> None:
    paper = CATALOG.papers["pcgrad"]
    page = parse_page(real_site / "papers" / "pcgrad" / "index.html")
    html = (real_site / "papers" / "pcgrad" / "index.html").read_text(encoding="utf-8")
    assert paper.title in page.h1
    assert page.title.startswith(f"{paper.short_name}: {paper.title}")
    assert paper.links.paper in page.hrefs
    assert f"https://arxiv.org/abs/{paper.links.arxiv}" in page.hrefs
    assert "language-bibtex" in html and paper.bibtex.key in html
    for category_id in paper.categories:
        assert f"sections/{category_id}/" in internal_targets(real_site, real_site / "papers" / "pcgrad" / "index.html")
    # tags: venue and year
    assert "NeurIPS" in html and 'href="../../venues/#tag:neurips"' in html


def test_every_paper_page_links_everything_its_record_names(real_site: Path) -> None:
    for paper in CATALOG.papers.values():
        page = real_site / "papers" / paper.id / "index.html"
        hrefs = set(parse_page(page).hrefs)
        links = paper.links
        expected = {links.paper}
        expected |= {links.code} if links.code else set()
        expected |= {f"https://arxiv.org/abs/{links.arxiv}"} if links.arxiv else set()
        expected |= {f"https://doi.org/{links.doi}"} if links.doi else set()
        expected |= {f"https://openreview.net/forum?id={links.openreview}"} if links.openreview else set()
        expected |= {v.url for v in paper.later_versions}
        assert expected <= hrefs, (paper.id, expected - hrefs)
        targets = internal_targets(real_site, page)
        for category_id in paper.categories:
            sections = [category_id] + [c.id for c in CATALOG.parents(category_id)]
            assert {f"sections/{c}/" for c in sections} <= targets, paper.id


def test_venue_and_year_indexes_list_every_paper(real_site: Path) -> None:
    for index in ("venues", "years"):
        targets = internal_targets(real_site, real_site / index / "index.html")
        missing = [p for p in CATALOG.papers if f"papers/{p}/" not in targets]
        assert missing == [], f"{index} misses {missing}"


def test_downloads_are_the_whole_catalog(real_site: Path) -> None:
    bib = (real_site / "downloads" / "catalog.bib").read_text(encoding="utf-8")
    entries = bibtexparser.loads(bib).entries
    assert sorted(e["ID"] for e in entries) == sorted(p.bibtex.key for p in CATALOG.papers.values())
    data = json.loads((real_site / "downloads" / "catalog.json").read_text(encoding="utf-8"))
    assert len(json.dumps(data)) > 1000
    schema = REPO_ROOT / "catalog" / "schema" / "paper.schema.json"
    if schema.is_file():
        assert (real_site / "downloads" / "paper.schema.json").read_bytes() == schema.read_bytes()


def test_statistics_count_every_paper(real_site: Path) -> None:
    text = (real_site / "statistics" / "index.html").read_text(encoding="utf-8")
    assert re.search(rf"<td[^>]*>Papers</td>\s*<td[^>]*>{len(CATALOG.papers)}</td>", text)
    for year in {p.year for p in CATALOG.papers.values()}:
        assert re.search(rf"<td[^>]*>{year}</td>", text), year


def test_site_works_offline(real_site: Path) -> None:
    """No page asks for a remote script, style sheet or font (Google Fonts, CDNs)."""
    remote = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', re.I)
    for page in _html_files(real_site):
        text = page.read_text(encoding="utf-8")
        hits = [m.group(0) for m in remote.finditer(text) if 'rel="canonical"' not in m.group(0)]
        assert hits == [], f"{page}: {hits}"
        assert "fonts.googleapis" not in text


def test_build_does_not_import_torch(real_site: Path) -> None:
    stderr = (real_site.parent / f"{real_site.name}.stderr").read_text(encoding="utf-8")
    assert stderr.rstrip().endswith("MODL-TORCH-NOT-IMPORTED"), stderr[-500:]


# -- hostile records ---------------------------------------------------------------------------------

HOSTILE_TITLE = "<script>alert(1)</script> ](javascript:alert(2)) [x](javascript:alert(3)) *em* $x$ | `c` & {: .y}"


def test_record_text_never_becomes_markup(tmp_path: Path) -> None:
    hostile = record(
        id="hostile",
        title=HOSTILE_TITLE,
        short_name="<i>x</i>",
        authors=["<img src=x onerror=alert(4)>", "[a](javascript:alert(5))", "Bob | Alice"],
        venue_note="<u>track</u>",
        summary="<b>bold</b> ](javascript:alert(6)) ``` --8<-- :x: [^1] <!-- c -->",
        bibtex={"type": "inproceedings", "key": "hostile2021", "fields": {"booktitle": "<script>alert(7)</script> ```"}},
        links={"paper": "https://example.org/hostile?a=1&b=<x>"[:34], "arxiv": "2101.00002"},
    )
    root = make_catalog(tmp_path / "repo", [hostile, record()])
    site = tmp_path / "site"
    done = build_site(site, catalog_root=root)
    assert done.returncode == 0, done.stderr

    for page in [*_html_files(site), site / "search" / "search_index.json"]:
        text = page.read_text(encoding="utf-8")
        lowered = text.lower()
        assert "<script>alert" not in lowered, page
        for href in re.findall(r'(?:href|src)="([^"]*)"', text):
            assert not html.unescape(href).strip().lower().startswith("javascript"), (page, href)
        for tag in ("<img src=x", "<b>bold", "<i>x</i>", "<u>track", "<em>em</em>"):
            assert tag not in lowered, (page, tag)
    paper = site / "papers" / "hostile" / "index.html"
    parsed = parse_page(paper)
    assert HOSTILE_TITLE in parsed.h1, parsed.h1  # shown as the very same text
    assert parsed.title.startswith("<i>x</i>: " + HOSTILE_TITLE)
    assert not any(href.strip().lower().startswith("javascript") for href in parsed.hrefs)
    text = paper.read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(4)&gt;" in text
    assert "<!-- c -->" not in text
    # the section table still has one row per record: "|" in a title does not split cells
    section = (site / "sections" / "gradient-manipulation" / "index.html").read_text(encoding="utf-8")
    body = section.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 2 and all(row.count("<td") == 6 for row in body.split("<tr>")[1:])


def test_unknown_tag_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "site", docs)
    (docs / "bogus.md").write_text("---\ntags: [NotAVenue]\n---\n\n# Bogus\n", encoding="utf-8")
    config = relocated_config(tmp_path / "mkdocs.yml", docs)
    done = build_site(tmp_path / "site", config=config, catalog_root=make_catalog(tmp_path / "repo", [record()]))
    assert done.returncode != 0
    assert "Tags not in allow list: NotAVenue" in done.stdout + done.stderr


def test_invalid_catalog_stops_the_build_with_one_message(tmp_path: Path) -> None:
    root = make_catalog(tmp_path / "repo", [record(venue="no-such-venue")])
    done = build_site(tmp_path / "site", catalog_root=root)
    assert done.returncode == 1
    assert "modl site: the catalog has 1 problem(s)" in done.stderr and "venue" in done.stderr
    assert "Traceback" not in done.stderr


def test_broken_internal_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "site", docs)
    (docs / "index.md").write_text((docs / "index.md").read_text(encoding="utf-8") + "\n[x](papers/no-such-paper.md)\n", encoding="utf-8")
    config = relocated_config(tmp_path / "mkdocs.yml", docs)
    done = build_site(tmp_path / "site", config=config, catalog_root=make_catalog(tmp_path / "repo", [record()]))
    assert done.returncode != 0
    assert "no-such-paper.md" in done.stdout + done.stderr


def test_math_is_rendered_to_mathml_at_build_time(real_site: Path) -> None:
    """TeX in pages becomes MathML in the HTML (no script, no CDN); no TeX delimiters are left."""
    page = (real_site / "implementations" / "design" / "index.html").read_text(encoding="utf-8")
    assert page.count("<math ") >= 5 and 'display="block"' in page
    assert "\\(" not in page and "\\[" not in page and "arithmatex" not in page
    for html_file in real_site.rglob("*.html"):
        text = html_file.read_text(encoding="utf-8")
        assert "cdn.jsdelivr" not in text and "unpkg.com" not in text and "mathjax" not in text.lower(), html_file
